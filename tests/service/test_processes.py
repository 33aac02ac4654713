"""The API as several processes: keys work in each, and /metrics sums every process's counters."""

from __future__ import annotations

import re
import sys
import time

import httpx
import pytest

from .faults import Proc, child_env, free_port
from .support import job_body

pytestmark = pytest.mark.timeout(240)


def wait_up(url: str, proc: Proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.proc.poll() is None, proc.text()[-3000:]
        time.sleep(0.2)


def healthz_count(metrics_text: str) -> float:
    found = re.search(r'xtc_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)',
                      metrics_text)
    return float(found.group(1)) if found else 0.0


def hit(url: str, n: int) -> None:
    for _ in range(n):  # a new connection each time, so the kernel spreads them over the processes
        assert httpx.get(f"{url}/healthz", headers={"Connection": "close"}).status_code == 200


def test_uvicorn_workers_share_metrics_and_auth(idle_settings, keys, tiny_model_dir, tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "2", "--log-level", "warning"]
    env = child_env(idle_settings, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    proc = Proc(cmd, env, tmp_path / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        before = healthz_count(httpx.get(f"{url}/metrics").text)
        hit(url, 60)
        r = httpx.get(f"{url}/metrics")
        assert r.headers["content-type"].startswith("text/plain")
        assert healthz_count(r.text) - before == 60  # every process's requests, whichever answered
        pids = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
        assert len(pids) >= 2, pids  # both processes served requests
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['alice']}"}) as c:
            for _ in range(6):
                r = c.post("/jobs", json=job_body(tiny_model_dir), headers={"Connection": "close"})
                assert r.status_code == 201, r.text
    finally:
        proc.stop()


def test_xtc_serve_workers_flag(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    cmd = [sys.executable, "-c", "from xtc_core.cli import main; main()", "serve", "--port", str(port),
           "--data-dir", str(data), "--workers", "2"]
    proc = Proc(cmd, child_env(None), tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        key = (data / "api_key").read_text().strip()
        hit(url, 20)
        assert healthz_count(httpx.get(f"{url}/metrics").text) >= 20
        assert len({p.stem.rsplit("_", 1)[1] for p in (data / "prometheus").glob("counter_*.db")}) >= 2
        r = httpx.get(f"{url}/jobs", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json()["data"] == []
    finally:
        proc.stop()
