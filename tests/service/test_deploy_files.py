"""docker-compose.yml and Dockerfile sanity. This machine has the docker client but no `compose`
plugin and no engine, so `docker compose config` cannot run here: we parse and check the files."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class ComposeLoader(yaml.SafeLoader):
    pass


# Compose's `!reset` tag (used by the CPU override) is not plain YAML.
ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # a SafeLoader subclass


def test_compose_services_healthchecks_and_order():
    services = load("docker-compose.yml")["services"]
    assert set(services) == {"postgres", "redis", "minio", "minio-init", "migrate", "api", "worker"}
    for name in ("postgres", "redis", "minio", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["restart"] == "no" and services["minio-init"]["restart"] == "no"
    assert services["migrate"]["command"] == ["xtc", "migrate"]
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["build"]["target"] == "api" and services["worker"]["build"]["target"] == "worker"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    env = services["api"]["environment"]
    assert env["XTC_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["XTC_BROKER_URL"].startswith("redis://") and env["XTC_STORAGE_URL"].startswith("s3://")
    volumes = load("docker-compose.yml")["volumes"]
    assert {"pgdata", "miniodata", "xtcwork"} <= set(volumes)


def test_cpu_override_drops_the_gpu():
    worker = load("docker-compose.cpu.yml")["services"]["worker"]
    assert worker["deploy"] is None and worker["build"]["args"]["TORCH_VARIANT"] == "cpu"


def test_dockerfile_targets():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, flags=re.M)
    assert {"api", "worker"} <= set(stages)
    api_stage = text.split(" AS api")[1].split("FROM ")[0]
    installs = [line for line in api_stage.splitlines() if "pip install" in line]
    assert installs == ['RUN pip install ".[api]"']  # never torch in the API image
    assert "torch==2.13.0" in text and "TORCH_VARIANT" in text
    assert (ROOT / ".dockerignore").read_text().count(".venv")


def _created_and_owned_folders(dockerfile: str) -> set[str]:
    """Folders the base stage creates with `mkdir -p` and hands to the xtc user with `chown -R`."""
    joined = dockerfile.replace("\\\n", " ")  # continuation lines
    run = re.search(r"^RUN useradd.*$", joined, flags=re.M).group(0)
    made = set(re.search(r"mkdir -p ([^&]+)", run).group(1).split())
    owned_roots = re.search(r"chown -R xtc(?::xtc)? ([^&]+)", run).group(1).split()
    return {m for m in made if any(m == r or m.startswith(r.rstrip("/") + "/") for r in owned_roots)}


def test_worker_volumes_are_folders_the_image_creates_for_its_user():
    text = (ROOT / "Dockerfile").read_text()
    owned = _created_and_owned_folders(text)
    worker = load("docker-compose.yml")["services"]["worker"]
    targets = [v.rsplit(":", 2)[1] if v.endswith((":ro", ":rw")) else v.rsplit(":", 1)[1]
               for v in worker["volumes"]]
    assert targets, worker
    for target in targets:
        # An image folder owned by xtc: a fresh named volume inherits it instead of coming up as root's.
        assert target in owned, (target, owned)
    assert worker["environment"]["XTC_WORK_DIR"] in targets
    glue = [v for v in worker["volumes"] if ":/data/glue" in v][0]
    assert glue.startswith("${XTC_GLUE_HOST_DIR:-") and glue.endswith(":ro")
    assert "XTC_GLUE_HOST_DIR" in (ROOT / "README.md").read_text()


def test_api_runs_several_processes_with_shared_metrics():
    text = (ROOT / "Dockerfile").read_text()
    api_stage = text.split(" AS api")[1].split("FROM ")[0]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(line for line in api_stage.splitlines()
                                                    if line.startswith("ENV "))))
    assert int(env["WEB_CONCURRENCY"]) >= 2  # uvicorn's --workers default
    assert env["PROMETHEUS_MULTIPROC_DIR"] in _created_and_owned_folders(text)
    assert "uvicorn api.app:create_app --factory" in api_stage and "PROMETHEUS_MULTIPROC_DIR" in api_stage
    api = load("docker-compose.yml")["services"]["api"]
    assert api["environment"]["WEB_CONCURRENCY"].startswith("${XTC_API_WORKERS:-")


def test_glue_tasks_fall_back_to_the_hub_without_a_glue_folder(tmp_path):
    from worker.run_job import glue_dir_or_hub

    assert glue_dir_or_hub(None) is None
    assert glue_dir_or_hub(str(tmp_path / "missing")) is None
    (tmp_path / "empty").mkdir()
    assert glue_dir_or_hub(str(tmp_path / "empty")) is None  # compose's empty mount
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    assert glue_dir_or_hub(str(tmp_path / "glue")) == str(tmp_path / "glue")
