"""Helpers shared by the service tests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx


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
