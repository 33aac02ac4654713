"""Load benchmark of the API: GET /jobs/{id} under bounded concurrency, and POST -> running latency.

Starts everything on loopback: a fresh Postgres database (dropped at the end), uvicorn serving the API
in its own process, and for the second part a real Celery worker on Redis. Prints a table and writes
bench/results/load_jobs.json.

    .venv/bin/python bench/load_jobs.py [--seconds 10] [--concurrency 16] [--jobs 5] [--processes 1,4]

The GET load runs once per API process count in --processes (uvicorn --workers, Prometheus in
multiprocess mode as deployed), so the table compares 1 and N processes on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.db import repo  # noqa: E402
from api.db.session import dispose_all, session_scope  # noqa: E402
from api.embedded import settings_env  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from api.settings import Settings  # noqa: E402

PG_ADMIN = os.environ.get("XTC_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
REDIS_URL = os.environ.get("XTC_BENCH_REDIS", "redis://127.0.0.1:6379/14")
OUT = ROOT / "bench" / "results" / "load_jobs.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def hammer(base: str, key: str, job_id: str, seconds: float, concurrency: int,
                 max_requests: int) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                 limits=limits, timeout=10) as client:

        async def one_user() -> None:
            nonlocal errors
            while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
                start = time.perf_counter()
                try:
                    r = await client.get(f"/jobs/{job_id}")
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    if not ms:
        raise RuntimeError(f"every request failed ({errors} errors)")
    return {
        "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
        "concurrency": concurrency, "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 2), "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def post_to_running(base: str, key: str, jobs: int) -> dict:
    """With an idle worker: POST a job, poll until `running`, then cancel it so the worker is idle again."""
    body = {"model": "bundled:minilm-l6", "task": "sst2",
            "training": {"budget": "smoke", "overrides": {"max_train_examples": 32}}}
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    observed, server_side = [], []
    for _ in range(jobs):
        start = time.perf_counter()
        r = client.post("/jobs", json=body)
        r.raise_for_status()
        job_id = r.json()["id"]
        while (job := client.get(f"/jobs/{job_id}").json())["status"] == "queued":
            if time.perf_counter() - start > 60:
                raise RuntimeError(f"job {job_id} never left the queue")
            time.sleep(0.005)
        observed.append((time.perf_counter() - start) * 1000)
        if job["started_at"]:
            created = _ts(job["created_at"])
            server_side.append((_ts(job["started_at"]) - created) * 1000)
        client.post(f"/jobs/{job_id}/cancel")
        while client.get(f"/jobs/{job_id}").json()["status"] in ("queued", "running"):
            time.sleep(0.1)
    return {"jobs": jobs, "observed_ms": [round(x, 1) for x in observed],
            "observed_p50_ms": round(statistics.median(observed), 1),
            "server_created_to_started_ms": [round(x, 1) for x in server_side],
            "server_p50_ms": round(statistics.median(server_side), 1) if server_side else None}


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=5, help="POST -> running samples (0: skip)")
    parser.add_argument("--processes", default="1,4", help="API process counts to compare")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",") if n.strip()]

    run = secrets.token_hex(4)
    db = f"xtc_bench_{run}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
        info = conn.info
        url = f"postgresql+psycopg://{info.user}@{info.host}:{info.port}/{db}"
    procs: list[subprocess.Popen] = []
    tmp = tempfile.TemporaryDirectory(prefix="xtc-bench-")
    try:
        upgrade(url)
        glue = os.environ.get("XTC_GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))
        settings = Settings(database_url=url, broker_url=REDIS_URL, queue=f"xtc-bench-{run}",
                            storage_url=f"file://{tmp.name}/artifacts", work_dir=f"{tmp.name}/work",
                            glue_dir=glue, cancel_check_interval_s=0.2)
        with session_scope(url) as s:
            tenant = repo.get_or_create_tenant(s, "bench")
            key = repo.create_api_key(s, tenant)
            request = {"model": "bundled:minilm-l6", "task": "sst2"}
            job = repo.create_job(s, tenant.id, request, "0" * 64, None)
            job_id = job.id
        env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
        loads = {}
        for n in counts:
            metrics_dir = Path(tmp.name) / f"prom-{n}"
            metrics_dir.mkdir()
            port = free_port()
            api = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", str(n)],
                env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, cwd=ROOT)
            procs.append(api)
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            time.sleep(1.0 if n > 1 else 0)  # every process up, not just the first
            loads[n] = asyncio.run(hammer(base, key, job_id, args.seconds, args.concurrency,
                                          args.max_requests))
            if n != counts[-1]:
                api.terminate()
                api.wait(20)
                procs.remove(api)
        load = loads[counts[0]]
        latency = None
        if args.jobs:
            log = open(Path(tmp.name) / "worker.log", "wb")  # closed with the process
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
                 "--concurrency=1", "-Q", settings.queue, "--loglevel=INFO"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 120
            while b" ready." not in (Path(tmp.name) / "worker.log").read_bytes():
                if time.monotonic() > deadline or procs[-1].poll() is not None:
                    raise RuntimeError("the celery worker did not start")
                time.sleep(0.2)
            latency = post_to_running(base, key, args.jobs)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        dispose_all()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        tmp.cleanup()

    result = {
        "benchmark": "load_jobs", "endpoint": "GET /jobs/{id}", "database": "postgres",
        "server": f"uvicorn, {counts[0]} process(es)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "load": load, "load_by_processes": {str(n): v for n, v in loads.items()}, "post_to_running": latency,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nGET /jobs/{{id}}: {load['concurrency']} concurrent clients for {load['seconds']} s "
          f"(uvicorn, Postgres, {os.cpu_count()} CPUs shared with the load generator; "
          f"load average before: {os.getloadavg()[0]:.1f})")
    header = ("processes", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
    print(" ".join(f"{h:>9}" for h in header))
    for n, one in loads.items():
        row = (n, one["requests"], one["errors"], one["rps"], one["p50_ms"], one["p90_ms"], one["p99_ms"],
               one["max_ms"])
        print(" ".join(f"{v:>9}" for v in row))
    if latency:
        print(f"\nPOST /jobs -> running with an idle worker ({latency['jobs']} jobs): "
              f"client-observed p50 {latency['observed_p50_ms']} ms {latency['observed_ms']}, "
              f"server created->started p50 {latency['server_p50_ms']} ms")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
