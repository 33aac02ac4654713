"""Celery tasks. Thin on purpose: everything testable lives in worker.run_job."""

from __future__ import annotations

from api.queue import TASK_NAME
from api.settings import get_settings

from .celery_app import app
from .run_job import run_job


@app.task(name=TASK_NAME, acks_late=True, ignore_result=True)
def compress_job(job_id: str) -> str:
    """The message carries only the job id; the request is read from the database."""
    return run_job(job_id, get_settings())
