"""Helpers shared by the service tests."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

import httpx

PG_ADMIN = os.environ.get("XTC_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
REDIS_URL = os.environ.get("XTC_TEST_REDIS", "redis://127.0.0.1:6379/15")
RUN = secrets.token_hex(4)  # isolates this session's databases, queues and bucket from other runs


def client(url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


SMOKE = {"budget": "smoke", "overrides": {"max_train_examples": 32, "max_eval_examples": 48}}


def job_body(model: str | Path, **extra) -> dict:
    body = {"model": str(model), "task": "sst2", "compression": {"weight_bits": 1, "layers": 2},
            "training": SMOKE}
    body.update(extra)
    return body


def wait_for(c: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.1)


TERMINAL = ("succeeded", "failed", "cancelled")


def download_all(c: httpx.Client, job_id: str, dest: Path) -> dict[str, str]:
    """Stream every artifact to ``dest``; check size and sha256 against headers and listing."""
    listing = c.get(f"/jobs/{job_id}/artifacts").json()["data"]
    dest.mkdir(parents=True, exist_ok=True)
    for art in listing:
        digest = hashlib.sha256()
        with c.stream("GET", art["url"]) as r, open(dest / art["name"], "wb") as out:
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == art["size"]
            assert r.headers["x-content-sha256"] == art["sha256"]
            for chunk in r.iter_bytes():
                digest.update(chunk)
                out.write(chunk)
        assert digest.hexdigest() == art["sha256"], art["name"]
        assert (dest / art["name"]).stat().st_size == art["size"]
    return {a["name"]: a["sha256"] for a in listing}


def assert_reproduces(folder: Path, job: dict, glue: Path) -> None:
    from xtc_core.checkpoint import load_compressed
    from xtc_core.config import DataSource
    from xtc_core.evaluate import evaluate_checkpoint

    metrics = job["metrics"]
    again = evaluate_checkpoint(folder, DataSource(task="sst2", glue_dir=str(glue)))
    assert again[metrics["main_metric"]] == metrics["student"][metrics["main_metric"]]  # exactly
    model = load_compressed(folder)
    assert model.config.num_hidden_layers == 2
