"""End to end on the self-hosted stack: API -> Redis -> real Celery worker -> xtc_core -> S3 -> Postgres."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from api.db.models import Job, JobEvent
from api.db.session import session_scope
from api.queue import JobQueue

from .support import TERMINAL, assert_reproduces, download_all, job_body, wait_for


def test_full_flow_postgres_redis_s3(alice_live, settings, tiny_model_dir, small_glue, tmp_path):
    r = alice_live.post("/jobs", json=job_body(tiny_model_dir))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    seen = {r.json()["status"]}
    deadline = time.monotonic() + 180
    while not seen & set(TERMINAL):
        seen.add(alice_live.get(f"/jobs/{job_id}").json()["status"])
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    job = alice_live.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["stage"] == "done" and job["error"] is None
    assert job["metrics"]["student"]["accuracy"] >= 0
    assert job["latest_metrics"]["stage"] in ("layer_reduction", "quantization", "done")

    events = alice_live.get(f"/jobs/{job_id}/events").json()["data"]
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    stages = [e["stage"] for e in events if e["kind"] == "progress"]
    assert {"load", "layer_reduction", "quantization", "export", "done"} <= set(stages)

    hashes = download_all(alice_live, job_id, tmp_path / "ckpt")
    assert {"config.json", "model.safetensors", "xtc.json", "metrics.json"} <= set(hashes)
    assert_reproduces(tmp_path / "ckpt", job, small_glue)
    _assert_onnx_artifact_predicts(tmp_path / "ckpt" / "model-onnx.zip", tmp_path / "onnx")


def _assert_onnx_artifact_predicts(archive, folder):
    """Every succeeded job also delivers the deployable ONNX model (downloaded above with its sha256)."""
    import zipfile

    from xtc_core.runtime import Predictor

    zipfile.ZipFile(archive).extractall(folder)
    preds = Predictor(folder).predict(["a charming and often affecting journey ."])
    assert preds[0].label is not None and 0.0 < preds[0].score <= 1.0


def test_redelivered_message_does_not_run_twice(alice_live, settings, celery_worker, tiny_model_dir):
    from worker.run_job import run_job

    job_id = alice_live.post("/jobs", json=job_body(tiny_model_dir)).json()["id"]
    JobQueue(settings).enqueue(job_id)  # a duplicate delivery while the first may still be running
    first = wait_for(alice_live, job_id, TERMINAL)
    assert first["status"] == "succeeded"
    # ...and a late redelivery, run right here through the task's body.
    assert run_job(job_id, settings) == "skipped"
    celery_worker.wait_for_log(f"job {job_id} not claimable")
    with session_scope(settings.database_url) as s:
        runs = s.scalar(select(func.count()).where(JobEvent.job_id == job_id, JobEvent.status == "running"))
        attempts, finished = s.execute(select(Job.attempts, Job.finished_at).where(Job.id == job_id)).one()
    assert runs == 1 and attempts == 1
    assert alice_live.get(f"/jobs/{job_id}").json()["finished_at"] == first["finished_at"]


def test_cancel_a_running_job(alice_live, tiny_model_dir):
    long = {"budget": "smoke", "overrides": {"reduction_steps": 100000, "quant_steps": 100000,
                                             "max_train_examples": 32, "max_eval_examples": 48}}
    job_id = alice_live.post("/jobs", json=job_body(tiny_model_dir, training=long)).json()["id"]
    deadline = time.monotonic() + 120
    while (job := alice_live.get(f"/jobs/{job_id}").json())["stage"] != "layer_reduction":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    cancelled_at = time.monotonic()
    r = alice_live.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    job = wait_for(alice_live, job_id, TERMINAL, timeout=60)
    assert job["status"] == "cancelled", job
    assert time.monotonic() - cancelled_at < 10  # honoured between steps, not at the end of training
    assert alice_live.get(f"/jobs/{job_id}/artifacts").json()["data"] == []
    r = alice_live.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_core_errors_become_failed_with_code(alice_live, tiny_model_dir):
    # A hub id passes the API's torch-free check but cannot load here (offline): the worker reports it.
    job_id = alice_live.post("/jobs", json=job_body("someone/no-such-model")).json()["id"]
    job = wait_for(alice_live, job_id, TERMINAL)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "model_load_failed" and "no-such-model" in job["error"]["message"]
    r = alice_live.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"


@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_job_on_uploaded_datasets(alice_live, small_glue, tiny_model_dir, fmt):
    import json

    def upload(name: str, rows: list[list[str]]) -> str:
        if fmt == "tsv":
            text = "review\tsentiment\n" + "".join(f"{t}\t{y}\n" for t, y in rows)
        else:
            text = "".join(json.dumps({"review": t, "sentiment": y}) + "\n" for t, y in rows)
        r = alice_live.post("/datasets", files={"file": (f"{name}.{fmt}", text)},
                            data={"text_column": "review", "label_column": "sentiment"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def rows(split: str, n: int) -> list[list[str]]:
        lines = (small_glue / "SST-2" / f"{split}.tsv").read_text().splitlines()[1: n + 1]
        return [line.split("\t") for line in lines]

    task = {"train_dataset": upload("train", rows("train", 64)),
            "dev_dataset": upload("dev", rows("dev", 24))}
    r = alice_live.post("/jobs", json=job_body(tiny_model_dir, task=task))
    assert r.status_code == 201, r.text
    columns = r.json()["request"]["task"]["columns"]
    assert columns == {"text": "review", "text_pair": None, "label": "sentiment"}
    job = wait_for(alice_live, r.json()["id"], TERMINAL)
    assert job["status"] == "succeeded", job
    assert job["metrics"]["dev_examples"] == {"dev": 24}
