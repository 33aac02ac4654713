"""Real processes for the fault tests: Celery workers, `xtc serve` and a private redis-server, each
started here and killed by pid with real signals."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from api.db.models import Artifact, Job, JobEvent
from api.db.session import session_scope
from api.embedded import settings_env
from api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# Long enough to be killed mid-stage, with a resumable checkpoint every 20 steps.
LONG = {"budget": "smoke", "overrides": {
    "reduction_steps": 300, "quant_steps": 300, "checkpoint_every": 20, "eval_every": 300,
    "max_train_examples": 64, "max_eval_examples": 48}}



def long_training() -> dict:
    """LONG with a seed no other job of the session used: the stage cache (shared by the session's
    storage) must not hand a fault test a finished stage, or its job ends before the kill."""
    return {**LONG, "overrides": {**LONG["overrides"], "seed": next(_SEEDS)}}


_SEEDS = itertools.count(1000)

# Supervision in seconds, not minutes, so a test sees recovery quickly.
FAST = dict(heartbeat_interval_s=0.5, job_lease_s=4.0, supervisor_interval_s=0.5, queued_grace_s=3.0,
            job_max_attempts=3, progress_interval_s=0.2, cancel_check_interval_s=0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}
    if settings is not None:
        env.update(settings_env(settings))
    return env


class Proc:
    """A subprocess with its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None:
                pytest.fail(f"process exited ({self.proc.returncode}):\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{needle!r} not in the log after {timeout}s:\n{self.text()[-4000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_worker(settings: Settings, log: Path, pool: str = "solo") -> Proc:
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", f"--pool={pool}",
           "--concurrency=1", "-Q", settings.queue, "--loglevel=INFO", "--hostname", f"{log.stem}@%h"]
    worker = Proc(cmd, child_env(settings), log)
    worker.wait_for_log("job supervisor started")
    return worker


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def job_row(settings: Settings, job_id: str) -> Job:
    with session_scope(settings.database_url) as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def wait_running_at_step(c: httpx.Client, job_id: str, min_step: int, timeout: float = 180) -> dict:
    """Until the job is training with at least one resumable checkpoint written."""
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        latest = job.get("latest_metrics") or {}
        if job["status"] == "running" and latest.get("stage") == "layer_reduction" \
                and (latest.get("step") or 0) >= min_step:
            return job
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job never reached step {min_step}: {job}"
        time.sleep(0.05)


def watch_until_done(c: httpx.Client, job_id: str, timeout: float = 240) -> tuple[dict, list[float]]:
    """Poll to the end, recording every progress value seen (it must never go down)."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        seen.append(job["progress"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, seen
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s: {job}"
        time.sleep(0.1)


def assert_recovered(c: httpx.Client, settings: Settings, job_id: str, before: dict, job: dict,
                     progress_seen: list[float], storage_names: set[str] | None = None) -> None:
    assert job["status"] == "succeeded", job
    assert job["started_at"] == before["started_at"]  # the first start is kept
    assert progress_seen == sorted(progress_seen), progress_seen  # never backwards
    assert min(progress_seen) >= before["progress"]
    events = c.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    messages = [e["message"] or "" for e in events]
    assert any("worker was lost" in m and "re-queued" in m for m in messages), messages
    resumed = [m for m in messages
               if m.startswith("resumed at step") and m.endswith("after the worker was lost")]
    assert resumed, messages
    assert int(resumed[0].split()[3]) >= 20  # resumed from a checkpoint, not from step 0
    with session_scope(settings.database_url) as s:
        names = list(s.scalars(select(Artifact.name).where(Artifact.job_id == job_id)))
        attempts = s.scalar(select(Job.attempts).where(Job.id == job_id))
        succeeded = s.scalar(select(func.count()).where(JobEvent.job_id == job_id,
                                                         JobEvent.status == "succeeded"))
    assert attempts == 2 and succeeded == 1
    assert len(names) == len(set(names)) and {"config.json", "model.safetensors", "xtc.json"} <= set(names)
    listing = c.get(f"/jobs/{job_id}/artifacts").json()["data"]
    assert sorted(a["name"] for a in listing) == sorted(names)
    if storage_names is not None:  # exactly one artifact set in the object store too
        assert storage_names == set(names)
