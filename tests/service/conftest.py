"""Service fixtures: a fresh Postgres database, Redis, a moto S3 server, a real Celery worker.

Everything runs on loopback against the real servers of this machine; nothing is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.app import create_app
from api.db import repo
from api.db.session import dispose_all, session_scope
from api.embedded import settings_env
from api.server import ServerThread
from api.settings import Settings

from .support import PG_ADMIN, REDIS_URL, RUN, client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    from api.migrate import upgrade

    name = f"xtc_test_{RUN}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            info = conn.info
            user, host, port = info.user, info.host, info.port
    except psycopg.OperationalError as exc:
        pytest.fail(f"Postgres is required for tests/service ({PG_ADMIN}): {exc}")
    url = f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    upgrade(url)  # the schema comes from the migrations, so they are tested on every run
    yield url
    dispose_all()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    conf = {"endpoint": f"http://{host}:{port}", "bucket": f"xtc-test-{RUN}", "key": "testing",
            "secret": "testing"}
    import boto3

    admin = boto3.client("s3", endpoint_url=conf["endpoint"], aws_access_key_id="testing",
                         aws_secret_access_key="testing", region_name="us-east-1")
    admin.create_bucket(Bucket=conf["bucket"])
    yield conf
    server.stop()


@pytest.fixture(scope="session")
def small_glue(glue_dir: Path, tmp_path_factory) -> Path:
    """Real SST-2 rows, cut to 400 train / 48 dev, so every job evaluates in well under a second."""
    out = tmp_path_factory.mktemp("glue") / "glue"
    (out / "SST-2").mkdir(parents=True)
    for name, rows in (("train.tsv", 400), ("dev.tsv", 48)):
        lines = (glue_dir / "SST-2" / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (out / "SST-2" / name).write_text("".join(lines[: rows + 1]), encoding="utf-8")
    return out


def _settings(pg_url: str, s3: dict[str, str], small_glue: Path, tmp: Path, queue: str) -> Settings:
    return Settings(
        database_url=pg_url, broker_url=REDIS_URL, queue=queue,
        storage_url=f"s3://{s3['bucket']}/artifacts", s3_endpoint_url=s3["endpoint"],
        s3_access_key=s3["key"], s3_secret_key=s3["secret"], glue_dir=str(small_glue),
        work_dir=str(tmp / "work"), data_dir=str(tmp), max_upload_bytes=20_000,
        progress_interval_s=0.2, cancel_check_interval_s=0.2,
        model_dirs=str(tmp.parent),  # the tests' model folders live under the session's temp root
        # Webhook tests deliver to a receiver on loopback and run their own delivery loop process.
        webhook_allow_private=True, webhook_delivery_in_api=False, webhook_backoff_base_s=0.3,
        webhook_claim_s=4, webhook_poll_s=0.2, webhook_progress_interval_s=0.5,
    )


@pytest.fixture(scope="session")
def settings(pg_url, s3, small_glue, tmp_path_factory) -> Settings:
    """Settings of the live stack: its queue is consumed by the session's worker."""
    return _settings(pg_url, s3, small_glue, tmp_path_factory.mktemp("live"), f"xtc-test-{RUN}")


@pytest.fixture(scope="session")
def idle_settings(settings: Settings) -> Settings:
    """Same database and storage, but a queue nobody consumes: jobs stay `queued`."""
    return settings.model_copy(update={"queue": f"xtc-test-{RUN}-idle"})


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_queues() -> Iterator[None]:
    yield
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*xtc-test-{RUN}*"):
        client.delete(key)


class Worker:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log = proc, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if self.proc.poll() is not None:
                pytest.fail(f"celery worker exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{needle!r} not in the worker log after {timeout}s:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def celery_worker(settings: Settings, tmp_path_factory) -> Iterator[Worker]:
    """A real `celery -A worker.celery_app worker --pool=solo` subprocess on the session's queue."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    # One torch thread: the machine is shared and the tiny model gains nothing from more.
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
             "--concurrency=1", "-Q", settings.queue, "--loglevel=INFO", "--hostname", f"xtc-test-{RUN}@%h"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    worker = Worker(proc, log)
    worker.wait_for_log(" ready.", timeout=120)
    yield worker
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _serve(settings: Settings) -> Iterator[str]:
    server = ServerThread(create_app(settings)).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def live_url(settings: Settings, celery_worker: Worker) -> Iterator[str]:
    yield from _serve(settings)


@pytest.fixture(scope="session")
def idle_url(idle_settings: Settings) -> Iterator[str]:
    yield from _serve(idle_settings)


@pytest.fixture(scope="session")
def keys(pg_url: str) -> dict[str, str]:
    """One API key for each of two tenants."""
    with session_scope(pg_url) as s:
        return {name: repo.create_api_key(s, repo.get_or_create_tenant(s, f"{name}-{RUN}"))
                for name in ("alice", "bob")}


@pytest.fixture
def alice_idle(idle_url, keys) -> Iterator[httpx.Client]:
    with client(idle_url, keys["alice"]) as c:
        yield c


@pytest.fixture
def bob_idle(idle_url, keys) -> Iterator[httpx.Client]:
    with client(idle_url, keys["bob"]) as c:
        yield c


@pytest.fixture
def alice_live(live_url, keys) -> Iterator[httpx.Client]:
    with client(live_url, keys["alice"]) as c:
        yield c
