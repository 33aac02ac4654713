"""Sweeps on the live stack: children share stage 0 and each depth's stage 1 through the stage cache in
S3, run concurrently on two real Celery workers, and add up to a table with a Pareto front."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

import pytest

from api.app import create_app
from api.server import ServerThread

from .support import RUN, SMOKE, TERMINAL, client, wait_for
from .workers import start_worker, stop


@pytest.fixture(scope="module")
def sweep_settings(settings):
    return settings.model_copy(update={"queue": f"xtc-test-{RUN}-sweeps", "webhook_delivery_in_api": False})


@pytest.fixture(scope="module")
def two_workers(sweep_settings, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep-workers")
    workers = [start_worker(sweep_settings, folder / f"w{i}.log", f"xtc-sweep-{RUN}-{i}") for i in range(2)]
    for w in workers:
        w.wait_for_log(" ready.", timeout=180)
    yield workers
    for w in workers:
        stop(w)


@pytest.fixture(scope="module")
def sweep_client(sweep_settings, two_workers, keys):
    server = ServerThread(create_app(sweep_settings)).start()
    with client(server.url, keys["alice"]) as c:
        yield c
    server.stop()


def _cache_events(c, job_ids):
    seen = Counter()
    for job_id in job_ids:
        for e in c.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]:
            if e["kind"] == "progress" and e["metrics"] and "stage_cache" in e["metrics"]:
                seen[(e["stage"], e["metrics"]["stage_cache"])] += 1
    return seen


def _wait_sweep(c, sweep_id, timeout=420):
    deadline = time.monotonic() + timeout
    while (sweep := c.get(f"/sweeps/{sweep_id}").json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, sweep
        time.sleep(0.5)
    return sweep


def test_2x2_sweep_shares_stages_and_runs_children_concurrently(sweep_client, tiny_headless_model_dir):
    body = {"model": str(tiny_headless_model_dir), "task": "sst2", "training": SMOKE,
            "grid": {"weight_bits": [1, 2], "layers": [1, 2]}, "target": {"max_drop": 100}}
    r = sweep_client.post("/sweeps", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "queued" and len(created["children"]) == 4
    sweep = _wait_sweep(sweep_client, created["id"])
    assert sweep["status"] == "succeeded", [(j["id"], j["status"], j["error"]) for j in sweep["children"]]

    ids = [j["id"] for j in sweep["children"]]
    # Stage 0 once, each depth's stage 1 once, whatever worker ran which child.
    assert _cache_events(sweep_client, ids) == {
        ("finetune_teacher", "miss"): 1, ("finetune_teacher", "hit"): 3,
        ("layer_reduction", "miss"): 2, ("layer_reduction", "hit"): 2}
    reused = Counter((s["stage"], s.get("reused")) for j in sweep["children"] for s in j["metrics"]["stages"])
    assert reused[("finetune_teacher", False)] == 1 and reused[("layer_reduction", False)] == 2

    # Four real checkpoints, one per point, and a table with a Pareto front and a recommendation.
    for job_id in ids:
        names = {a["name"] for a in sweep_client.get(f"/jobs/{job_id}/artifacts").json()["data"]}
        assert {"model.safetensors", "xtc.json", "metrics.json"} <= names
    assert sorted(r["point"] for r in sweep["table"]) == ["w1-l1", "w1-l2", "w2-l1", "w2-l2"]
    assert all(r["packed_bytes"] > 0 and r["ratio"] > 1 for r in sweep["table"])
    assert sweep["pareto"] and sweep["recommendation"]["point"] in sweep["pareto"]
    smallest = min(sweep["table"], key=lambda r: r["packed_bytes"])
    assert sweep["recommendation"]["point"] == smallest["point"]  # max_drop 100: anything qualifies

    # Two workers: some children's running intervals overlap.
    spans = sorted((datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"]))
                   for j in sweep["children"])
    assert any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1)), spans

    # A later job with the same inputs reuses both shared stages from the storage backend.
    job = {"model": str(tiny_headless_model_dir), "task": "sst2", "training": SMOKE,
           "compression": {"weight_bits": 2, "layers": 2}}
    job_id = sweep_client.post("/jobs", json=job).json()["id"]
    assert wait_for(sweep_client, job_id, TERMINAL, timeout=180)["status"] == "succeeded"
    assert _cache_events(sweep_client, [job_id]) == {("finetune_teacher", "hit"): 1,
                                                     ("layer_reduction", "hit"): 1}


def test_cancel_a_sweep_cancels_its_children(alice_idle, tiny_model_dir):
    body = {"model": str(tiny_model_dir), "task": "sst2", "training": SMOKE,
            "grid": {"weight_bits": [1, 2], "layers": [1]}}
    sweep = alice_idle.post("/sweeps", json=body).json()
    r = alice_idle.post(f"/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "cancelled" and out["cancel_requested"] is True
    assert [j["status"] for j in out["children"]] == ["cancelled", "cancelled"]
    assert out["recommendation"]["point"] is None


def test_bad_sweeps_are_4xx(alice_idle, bob_idle, tiny_model_dir):
    base = {"model": str(tiny_model_dir), "task": "sst2", "grid": {"weight_bits": [1], "layers": [1]}}
    cases = [({**base, "grid": {"weight_bits": [3], "layers": [1]}}, "invalid_request"),
             ({**base, "grid": {"weight_bits": [1, 1], "layers": [1]}}, "invalid_request"),
             ({**base, "grid": {"weight_bits": [1], "layers": [0]}}, "invalid_request"),
             ({**base, "embedding_bits": 3}, "invalid_request"),
             ({**base, "embedding_bits": True}, "invalid_request"),
             ({**base, "weight_groups": 0}, "invalid_request"),
             ({**base, "task": "nope"}, "unknown_task"),
             ({**base, "task": ""}, "invalid_request"),
             ({**base, "grid": {"weight_bits": [1, 2], "layers": list(range(1, 13)),
                                "budgets": ["smoke", "quick"]}}, "sweep_too_large")]
    for body, code in cases:
        r = alice_idle.post("/sweeps", json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (body, r.text)
    sweep_id = alice_idle.post("/sweeps", json=base).json()["id"]
    assert bob_idle.get(f"/sweeps/{sweep_id}").status_code == 404  # another tenant's sweep
    assert sweep_id in [w["id"] for w in alice_idle.get("/sweeps").json()["data"]]
    assert sweep_id not in [w["id"] for w in bob_idle.get("/sweeps").json()["data"]]
    page = alice_idle.get("/sweeps", params={"limit": 1}).json()
    assert page["data"][0]["id"] == sweep_id and page["next_cursor"] == sweep_id  # newest first


def test_sweep_wide_compression_options_reach_every_point(alice_idle, tiny_model_dir):
    body = {"model": str(tiny_model_dir), "task": "sst2", "training": SMOKE, "embedding_bits": 8,
            "weight_groups": 4, "grid": {"weight_bits": [1, 2], "layers": [1]}}
    r = alice_idle.post("/sweeps", json=body)
    assert r.status_code == 201, r.text
    children = r.json()["children"]
    assert [(j["request"]["compression"]["weight_bits"], j["request"]["compression"]["embedding_bits"],
             j["request"]["compression"]["weight_groups"]) for j in children] == [(1, 8, 4), (2, 8, 4)]
    alice_idle.post(f"/sweeps/{r.json()['id']}/cancel")
