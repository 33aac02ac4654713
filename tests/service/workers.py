"""Start real Celery worker subprocesses on a queue (shared by the sweep and webhook tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from api.embedded import settings_env
from api.settings import Settings

from .conftest import ROOT, Worker


def start_worker(settings: Settings, log: Path, name: str) -> Worker:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
             "--concurrency=1", "-Q", settings.queue, "--loglevel=INFO", "--hostname", f"{name}@%h"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    return Worker(proc, log)


def stop(worker: Worker) -> None:
    worker.proc.terminate()
    try:
        worker.proc.wait(20)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait(10)
