"""No job is stranded: real workers, `xtc serve` and Redis killed with real signals mid-job.

Each test runs its own processes on its own queue with second-scale supervision settings (lease 4 s).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest

from api.app import create_app
from api.server import ServerThread
from api.settings import Settings

from .faults import (
    FAST,
    Proc,
    assert_recovered,
    child_env,
    children,
    free_port,
    job_row,
    kill_pid,
    long_training,
    start_worker,
    wait_running_at_step,
    watch_until_done,
)
from .support import RUN, client, job_body, wait_for

pytestmark = pytest.mark.timeout(420)


@pytest.fixture
def fault_settings(settings: Settings, tiny_model_dir, request) -> Settings:
    return settings.model_copy(update={**FAST, "queue": f"xtc-test-{RUN}-{request.node.name[:40]}"})


@pytest.fixture
def api(fault_settings: Settings, keys) -> Iterator[httpx.Client]:
    server = ServerThread(create_app(fault_settings)).start()
    with client(server.url, keys["alice"]) as c:
        yield c
    server.stop()


def stored_names(s3: dict, job_id: str) -> set[str]:
    admin = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["key"],
                         aws_secret_access_key=s3["secret"], region_name="us-east-1")
    listed = admin.list_objects_v2(Bucket=s3["bucket"], Prefix=f"artifacts/jobs/{job_id}/")
    return {o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])}


def test_sigkill_of_the_pool_child_resumes(api, fault_settings, tiny_model_dir, s3, tmp_path):
    worker = start_worker(fault_settings, tmp_path / "prefork.log", pool="prefork")
    try:
        job_id = api.post("/jobs", json=job_body(tiny_model_dir, training=long_training())).json()["id"]
        before = wait_running_at_step(api, job_id, 40)
        pid = int(job_row(fault_settings, job_id).worker_id.rsplit(":", 1)[1])
        assert pid in children(worker.pid) and pid != worker.pid  # the pool child runs the job
        killed_at = time.monotonic()
        kill_pid(pid)
        job, seen = watch_until_done(api, job_id)
        assert_recovered(api, fault_settings, job_id, before, job, seen, stored_names(s3, job_id))
        assert worker.proc.poll() is None  # the same worker (a new child) finished it
        print(f"pool child killed -> succeeded in {time.monotonic() - killed_at:.1f} s")
    finally:
        worker.stop()


def test_sigkill_of_the_worker_then_a_new_worker_resumes(api, fault_settings, tiny_model_dir, s3, tmp_path):
    first = start_worker(fault_settings, tmp_path / "first.log")
    second = None
    try:
        job_id = api.post("/jobs", json=job_body(tiny_model_dir, training=long_training())).json()["id"]
        before = wait_running_at_step(api, job_id, 40)
        first.kill()  # solo pool: the main process is the one training
        second = start_worker(fault_settings, tmp_path / "second.log")
        job, seen = watch_until_done(api, job_id)
        assert_recovered(api, fault_settings, job_id, before, job, seen, stored_names(s3, job_id))
        assert f"job {job_id}" in second.text()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_cancel_of_a_job_whose_worker_died(api, fault_settings, tiny_model_dir, tmp_path):
    worker = start_worker(fault_settings, tmp_path / "w.log")
    try:
        job_id = api.post("/jobs", json=job_body(tiny_model_dir, training=long_training())).json()["id"]
        wait_running_at_step(api, job_id, 1)
    finally:
        worker.kill()
    # No worker is left to see the flag: the cancel is recorded, and once the lease has expired the
    # endpoint ends the job itself.
    r = api.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    time.sleep(fault_settings.job_lease_s + 0.5)
    r = api.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["finished_at"] is not None
    # ...and a new worker's supervisor does not bring it back.
    worker = start_worker(fault_settings, tmp_path / "w2.log")
    try:
        time.sleep(2)
        assert api.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    finally:
        worker.stop()


def test_supervisor_cancels_when_the_worker_is_gone(api, fault_settings, tiny_model_dir, tmp_path):
    worker = start_worker(fault_settings, tmp_path / "w.log")
    try:
        job_id = api.post("/jobs", json=job_body(tiny_model_dir, training=long_training())).json()["id"]
        wait_running_at_step(api, job_id, 1)
        # Kill only the job (solo pool: the worker itself), cancel, then a new worker supervises.
    finally:
        worker.kill()
    assert api.post(f"/jobs/{job_id}/cancel").json()["status"] == "running"
    worker = start_worker(fault_settings, tmp_path / "w2.log")
    try:
        job = wait_for(api, job_id, ("cancelled", "failed", "succeeded"), timeout=60)
        assert job["status"] == "cancelled", job
        events = api.get(f"/jobs/{job_id}/events").json()["data"]
        assert any("worker was lost" in (e["message"] or "") for e in events)
    finally:
        worker.stop()


def test_xtc_serve_sigkilled_and_restarted_resumes(tiny_model_dir, small_glue, tmp_path):
    data = tmp_path / "data"
    port = free_port()
    env = child_env(None, **{f"XTC_{k.upper()}": str(v) for k, v in FAST.items()},
                    XTC_GLUE_DIR=str(small_glue), XTC_MODEL_DIRS=str(tiny_model_dir.parent))
    cmd = [sys.executable, "-c", "from xtc_core.cli import main; main()", "serve", "--port", str(port),
           "--data-dir", str(data)]

    def serve(name: str) -> Proc:
        proc = Proc(cmd, env, tmp_path / f"{name}.log")
        proc.wait_for_log("API key for tenant")
        (data / "worker.log").touch()
        deadline = time.monotonic() + 120
        while "job supervisor started" not in (data / "worker.log").read_text(errors="replace"):
            assert time.monotonic() < deadline and proc.proc.poll() is None, proc.text()
            time.sleep(0.2)
        return proc

    first = serve("serve1")
    try:
        key = (data / "api_key").read_text().strip()
        with client(f"http://127.0.0.1:{port}", key) as c:
            job_id = c.post("/jobs", json=job_body(tiny_model_dir, training=long_training())).json()["id"]
            before = wait_running_at_step(c, job_id, 40)
            workers = children(first.pid)
            first.kill()  # the whole `xtc serve`, its worker too (as a crash or an OOM kill would)
            for pid in workers:
                kill_pid(pid)
            (data / "worker.log").write_text("")
            second = serve("serve2")
            try:
                job, seen = watch_until_done(c, job_id)
                settings = Settings(database_url=f"sqlite:///{data.resolve()}/xtc.db")
                stored = {p.name for p in (data / "artifacts" / "jobs" / job_id).iterdir()}
                assert_recovered(c, settings, job_id, before, job, seen, stored)
            finally:
                second.stop()
    finally:
        first.kill()


class PrivateRedis:
    """Our own redis-server (no persistence), so killing it harms nobody else."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.tmp = tmp_path
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = Proc(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], child_env(None), self.tmp / "redis.log")
        self.proc.wait_for_log("Ready to accept connections", timeout=30)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def test_broker_lost_messages_and_503_retries(fault_settings, keys, tiny_model_dir, tmp_path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    settings = fault_settings.model_copy(update={"broker_url": redis.url})
    server = ServerThread(create_app(settings)).start()
    worker = None
    try:
        with client(server.url, keys["alice"]) as c:
            # 1. A job queued while no worker runs; then Redis restarts empty: its message is gone.
            r = c.post("/jobs", json=job_body(tiny_model_dir))
            assert r.status_code == 201, r.text
            lost = r.json()["id"]
            redis.kill()
            # 2. The broker is down: 503, and the Idempotency-Key is not used up by the failure.
            headers = {"Idempotency-Key": f"retry-{RUN}"}
            started = time.monotonic()
            r = c.post("/jobs", json=job_body(tiny_model_dir), headers=headers)
            assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable", r.text
            assert time.monotonic() - started < 20
            redis.start()  # empty
            r = c.post("/jobs", json=job_body(tiny_model_dir), headers=headers)
            assert r.status_code == 201, r.text
            retried = r.json()["id"]
            assert c.post("/jobs", json=job_body(tiny_model_dir), headers=headers).json()["id"] == retried
            # 3. A worker comes up: the retried job runs from its message, the lost one is re-sent.
            worker = start_worker(settings, tmp_path / "worker.log")
            for job_id in (retried, lost):
                job = wait_for(c, job_id, ("succeeded", "failed", "cancelled"), timeout=180)
                assert job["status"] == "succeeded", job
            events = c.get(f"/jobs/{lost}/events").json()["data"]
            assert any("sent to the queue again" in (e["message"] or "") for e in events)
            failed = c.get("/jobs", params={"status": "failed", "limit": 100}).json()["data"]
            assert not [j for j in failed if j["error"]["code"] == "queue_unavailable"]
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        redis.kill()
