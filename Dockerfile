# syntax=docker/dockerfile:1.7
# Two images from one file:
#   --target api     FastAPI + migrations + CLI; no torch (the API never imports it).
#   --target worker  Celery worker with torch 2.13.0: CUDA build by default, CPU build with
#                    --build-arg TORCH_VARIANT=cpu (docker-compose.cpu.yml does this for you).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Every folder compose mounts a volume at exists here, owned by the non-root user: Docker seeds an empty
# named volume with the image folder's ownership, so the worker can write its work dir and HF cache.
RUN useradd --create-home --uid 10001 xtc \
 && mkdir -p /var/lib/xtc/work /var/lib/xtc/hf /var/lib/xtc/prometheus /data/glue \
 && chown -R xtc:xtc /var/lib/xtc /data/glue
WORKDIR /app

# Sources shared by both images. README.md* tolerates a checkout without it (pyproject names it).
FROM base AS source
COPY pyproject.toml README.md* alembic.ini ./
COPY xtc_core ./xtc_core
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations

FROM base AS api
COPY --from=source /app /app
# xtc_core comes along as code only: the API uses its torch-free modules (tasks, model refs, tabular).
RUN pip install ".[api]"
USER xtc
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# Several API processes (uvicorn reads WEB_CONCURRENCY as its --workers); Prometheus metrics are summed
# over them through files in PROMETHEUS_MULTIPROC_DIR, emptied at every start.
ENV WEB_CONCURRENCY=4 PROMETHEUS_MULTIPROC_DIR=/var/lib/xtc/prometheus
CMD ["sh", "-c", "rm -rf \"$PROMETHEUS_MULTIPROC_DIR\"/* && exec uvicorn api.app:create_app --factory --host 0.0.0.0 --port 8000 --proxy-headers"]

FROM base AS worker
# torch first, in its own layer: it is by far the largest download and changes least often.
ARG TORCH_VARIANT=cu128
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" torch==2.13.0
COPY --from=source /app /app
RUN pip install ".[worker]"
USER xtc
ENV XTC_WORK_DIR=/var/lib/xtc/work HF_HOME=/var/lib/xtc/hf XTC_GLUE_DIR=/data/glue
# prefork (not solo) so Celery's soft/hard time limits are enforced; one job at a time per GPU.
CMD ["celery", "-A", "worker.celery_app", "worker", "--pool=prefork", "--concurrency=1", "--loglevel=INFO"]
