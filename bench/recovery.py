"""Time from a worker's death to its job running again, with the default supervision settings.

Real Postgres (a fresh database, dropped at the end), Redis, Celery workers killed with SIGKILL, a tiny
model training long enough to be killed mid-stage. Two cases:
  pool-child  prefork worker, its pool child killed: the redelivered message finds the dead pid on the
              same host and re-queues at once (no lease wait).
  worker      solo worker killed outright, a replacement started at once on the same host: its supervisor
              sees that the job's process is gone and re-queues at once.
  other-host  the same, but the replacement runs under another hostname (its own UTS namespace, as a
              worker on another machine would): it cannot check the pid, so the lease (XTC_JOB_LEASE_S,
              60 s) has to expire first.
Prints a table and writes bench/results/recovery.json.

    .venv/bin/python bench/recovery.py [pool-child] [worker] [other-host]
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import select  # noqa: E402

from api.db import repo  # noqa: E402
from api.db.models import Job, JobEvent  # noqa: E402
from api.db.session import dispose_all, session_scope  # noqa: E402
from api.embedded import settings_env  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from api.queue import JobQueue  # noqa: E402
from api.settings import Settings  # noqa: E402

PG_ADMIN = os.environ.get("XTC_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
REDIS_URL = os.environ.get("XTC_BENCH_REDIS", "redis://127.0.0.1:6379/14")
OUT = ROOT / "bench" / "results" / "recovery.json"
TRAINING = {"budget": "smoke", "overrides": {"reduction_steps": 100000, "quant_steps": 10,
                                             "checkpoint_every": 20, "eval_every": 100000,
                                             "max_train_examples": 64, "max_eval_examples": 48}}


def start_worker(settings: Settings, log: Path, pool: str, other_host: bool = False) -> subprocess.Popen:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = open(log, "ab")  # noqa: SIM115 (kept open by the child)
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", f"--pool={pool}",
           "--concurrency=1", "-Q", settings.queue, "--loglevel=INFO",
           "--hostname", f"{log.stem}-{secrets.token_hex(2)}@%h"]
    if other_host:  # needs root (CAP_SYS_ADMIN) for a UTS namespace of its own
        cmd = ["unshare", "--uts", "sh", "-c", 'hostname xtc-other-host && exec "$@"', "sh", *cmd]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while b"job supervisor started" not in log.read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def submit(settings: Settings, tenant_id: str, model: str) -> str:
    with session_scope(settings.database_url) as s:
        job = repo.create_job(s, tenant_id, {"model": model, "task": "sst2", "training": TRAINING,
                                             "compression": {"weight_bits": 1, "layers": 2}}, "0" * 64, None)
        job.queue = settings.queue
        job_id = job.id
    JobQueue(settings).enqueue(job_id)
    with session_scope(settings.database_url) as s:
        repo.mark_enqueued(s, job_id)
    return job_id


def row(settings: Settings, job_id: str) -> Job:
    with session_scope(settings.database_url) as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def resumed_event_at(settings: Settings, job_id: str) -> bool:
    with session_scope(settings.database_url) as s:
        return s.scalar(select(JobEvent.id).where(JobEvent.job_id == job_id,
                                                  JobEvent.message.like("resumed at step%"))) is not None


def measure(case: str, settings: Settings, tenant_id: str, model: str, tmp: Path) -> dict:
    pool = "prefork" if case == "pool-child" else "solo"
    procs = [start_worker(settings, tmp / f"{case}-1.log", pool)]
    try:
        job_id = submit(settings, tenant_id, model)
        wait(lambda: (row(settings, job_id).latest_metrics or {}).get("step", 0) >= 40, 300, "training")
        pid = int(row(settings, job_id).worker_id.rsplit(":", 1)[1])
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        if case in ("worker", "other-host"):
            procs.append(start_worker(settings, tmp / f"{case}-2.log", pool, other_host=case == "other-host"))
            replacement_ready = time.monotonic() - killed
        else:
            replacement_ready = 0.0
        wait(lambda: (j := row(settings, job_id)).status == "running" and j.attempts == 2, 300, "reclaim")
        running_again = time.monotonic() - killed
        wait(lambda: resumed_event_at(settings, job_id), 300, "resume")
        training_again = time.monotonic() - killed
        with session_scope(settings.database_url) as s:
            repo.request_cancel(s, s.get(Job, job_id))
        wait(lambda: row(settings, job_id).status == "cancelled", 120, "cancel")
        return {"case": case, "pool": pool, "replacement_worker_ready_s": round(replacement_ready, 1),
                "death_to_running_s": round(running_again, 1),
                "death_to_training_s": round(training_again, 1)}
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    from tiny_models import make_tiny_model

    run = secrets.token_hex(4)
    db = f"xtc_recovery_{run}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
        info = conn.info
        url = f"postgresql+psycopg://{info.user}@{info.host}:{info.port}/{db}"
    tmp = tempfile.TemporaryDirectory(prefix="xtc-recovery-")
    results = []
    try:
        upgrade(url)
        model = make_tiny_model(Path(tmp.name) / "model", layers=4)
        glue = os.environ.get("XTC_GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))
        defaults = Settings()
        settings = Settings(database_url=url, broker_url=REDIS_URL, queue=f"xtc-recovery-{run}",
                            storage_url=f"file://{tmp.name}/artifacts", work_dir=f"{tmp.name}/work",
                            glue_dir=glue, model_dirs=tmp.name)
        with session_scope(url) as s:
            tenant_id = repo.get_or_create_tenant(s, "bench").id
        for case in sys.argv[1:] or ("pool-child", "worker", "other-host"):
            results.append(measure(case, settings, tenant_id, str(model), Path(tmp.name)))
            print(results[-1], flush=True)
    finally:
        dispose_all()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        tmp.cleanup()
    result = {"benchmark": "recovery", "settings": {
        "job_lease_s": defaults.job_lease_s, "heartbeat_interval_s": defaults.heartbeat_interval_s,
        "supervisor_interval_s": defaults.supervisor_interval_s}, "results": results,
        "load_average": os.getloadavg(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nDefault settings: lease {defaults.job_lease_s:.0f} s, heartbeat "
          f"{defaults.heartbeat_interval_s:.0f} s, supervisor every {defaults.supervisor_interval_s:.0f} s")
    print(f"{'case':>12} {'replacement up s':>17} {'death->running s':>17} {'death->training s':>18}")
    for r in results:
        print(f"{r['case']:>12} {r['replacement_worker_ready_s']:>17} {r['death_to_running_s']:>17} "
              f"{r['death_to_training_s']:>18}")
    print(f"\nwrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
