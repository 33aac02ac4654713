"""API behaviour against real Postgres/Redis/S3, on a queue no worker consumes (jobs stay queued)."""

from __future__ import annotations

import httpx
import pytest

from .support import client, job_body

M = "bundled:minilm-l6"
SST2_ROWS = "sentence\tlabel\nit 's a charming and often affecting journey . \t1\nunflinchingly bleak \t0\n"


def error_code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in r.text
    return body["error"]["code"]


def test_health_ready_and_metrics(idle_url):
    with client(idle_url, None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert 'xtc_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text


def test_missing_or_invalid_key_is_401(idle_url, tiny_model_dir):
    with client(idle_url, None) as c:
        r = c.post("/jobs", json=job_body(tiny_model_dir))
        assert r.status_code == 401 and error_code(r) == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    with client(idle_url, "xtc_not-a-real-key") as c:
        for r in (c.get("/jobs"), c.get("/jobs/job_x"), c.post("/datasets")):
            assert r.status_code == 401 and error_code(r) == "unauthorized"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": M}, "invalid_request"),  # no task
        ({"model": M, "task": "sst2", "surprise": 1}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"weight_bits": 3}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"layers": [3, 1]}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"embedding_bits": 3}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"embedding_bits": "8"}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"weight_groups": 0}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"weight_groups": True}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"weight_bits": True}}, "invalid_request"),
        ({"model": M, "task": "sst2", "compression": {"embedding_bits": 8.0}}, "invalid_request"),
        ({"model": M, "task": "sst2",
          "training": {"budget": "smoke", "overrides": {"no_such_option": 1}}}, "invalid_request"),
        ({"model": M, "task": "sst2",
          "training": {"budget": "smoke", "overrides": {"lr": "fast"}}}, "invalid_request"),
        ({"model": M, "task": "sst2", "training": {"budget": "huge"}}, "invalid_request"),
        ({"model": M, "task": "squad"}, "unknown_task"),
        ({"model": "bundled:no-such-model", "task": "sst2"}, "unknown_model"),
        ({"model": "/no/such/folder", "task": "sst2"}, "unknown_model"),
        ({"model": M, "task": {"train_dataset": "ds_nope", "dev_dataset": "ds_nope"}},
         "unknown_dataset"),
    ],
)
def test_bad_job_requests_are_422_with_codes(alice_idle, body, code):
    r = alice_idle.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    assert error_code(r) == code
    assert r.json()["error"]["message"]


def test_malformed_json_is_422_invalid_request(alice_idle):
    r = alice_idle.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_unknown_route_and_job_are_404_json(alice_idle):
    for r in (alice_idle.get("/nope"), alice_idle.get("/jobs/job_missing")):
        assert r.status_code == 404 and error_code(r) == "not_found"


def test_create_list_and_cancel_a_queued_job(alice_idle, tiny_model_dir):
    r = alice_idle.post("/jobs", json=job_body(tiny_model_dir))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["request"]["task"] == "sst2"

    listed = alice_idle.get("/jobs", params={"status": "queued", "limit": 100}).json()["data"]
    assert job["id"] in [j["id"] for j in listed]

    r = alice_idle.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # Cancelling again is harmless; the job shows up under the cancelled filter only.
    assert alice_idle.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    queued = alice_idle.get("/jobs", params={"status": "queued", "limit": 100}).json()["data"]
    assert job["id"] not in [j["id"] for j in queued]
    events = alice_idle.get(f"/jobs/{job['id']}/events").json()["data"]
    assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "cancelled"]


def test_cursor_pagination_walks_every_job_once(bob_idle, tiny_model_dir):
    created = [bob_idle.post("/jobs", json=job_body(tiny_model_dir)).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = bob_idle.get("/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in created] == list(reversed(created))  # newest first, no repeats
    assert len(seen) == len(set(seen))
    r = bob_idle.get("/jobs", params={"status": "exploded"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_idempotency_key(alice_idle, tiny_model_dir):
    body = job_body(tiny_model_dir)
    headers = {"Idempotency-Key": "create-once-1"}
    first = alice_idle.post("/jobs", json=body, headers=headers)
    again = alice_idle.post("/jobs", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = alice_idle.post("/jobs", json={**body, "compression": {"weight_bits": 2}}, headers=headers)
    assert other.status_code == 409 and error_code(other) == "idempotency_conflict"
    # options at their defaults are the same request as options left out (and as requests made
    # before the options existed); a set one is another request
    spelled = {**body, "compression": {**body["compression"], "weight_groups": 1, "embedding_bits": None}}
    assert alice_idle.post("/jobs", json=spelled, headers=headers).json()["id"] == first.json()["id"]
    wider = {**body, "compression": {**body["compression"], "embedding_bits": 8}}
    r = alice_idle.post("/jobs", json=wider, headers=headers)
    assert r.status_code == 409 and error_code(r) == "idempotency_conflict"
    # Keys are per tenant: the same key for another request body elsewhere is a new job.
    assert alice_idle.post("/jobs", json=body, headers={"Idempotency-Key": "create-once-2"}).json()["id"] \
        != first.json()["id"]


def test_other_tenants_objects_are_404(alice_idle, bob_idle, tiny_model_dir):
    job_id = alice_idle.post("/jobs", json=job_body(tiny_model_dir)).json()["id"]
    ds_id = alice_idle.post("/datasets", files={"file": ("train.tsv", SST2_ROWS)},
                            data={"text_column": "sentence", "label_column": "label"}).json()["id"]
    for r in (
        bob_idle.get(f"/jobs/{job_id}"), bob_idle.post(f"/jobs/{job_id}/cancel"),
        bob_idle.get(f"/jobs/{job_id}/events"), bob_idle.get(f"/jobs/{job_id}/artifacts"),
        bob_idle.get(f"/jobs/{job_id}/artifacts/config.json"), bob_idle.get(f"/datasets/{ds_id}"),
    ):
        assert r.status_code == 404 and error_code(r) == "not_found", r.text
    assert job_id not in [j["id"] for j in bob_idle.get("/jobs", params={"limit": 100}).json()["data"]]
    r = bob_idle.post("/jobs", json={**job_body(tiny_model_dir),
                                     "task": {"train_dataset": ds_id, "dev_dataset": ds_id}})
    assert r.status_code == 422 and error_code(r) == "unknown_dataset"
    assert alice_idle.get(f"/jobs/{job_id}").status_code == 200


def test_dataset_upload_validated_on_arrival(alice_idle):
    ok = alice_idle.post("/datasets", files={"file": ("train.tsv", SST2_ROWS)},
                         data={"text_column": "sentence", "label_column": "label"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["summary"]["rows"] == 2 and ok.json()["format"] == "tsv"

    jsonl = '{"text": "good", "y": 1}\n{"text": "bad", "y": 0}\n'
    r = alice_idle.post("/datasets", files={"file": ("d.jsonl", jsonl)},
                        data={"text_column": "text", "label_column": "y"})
    assert r.status_code == 201, r.text

    bad = "sentence\tlabel\nfine\t1\nno label column here\n"
    r = alice_idle.post("/datasets", files={"file": ("mine.tsv", bad)},
                        data={"text_column": "sentence", "label_column": "label"})
    assert r.status_code == 422 and error_code(r) == "invalid_dataset"
    message = r.json()["error"]["message"]
    assert "mine.tsv" in message and "line 3" in message and "/tmp" not in message

    r = alice_idle.post("/datasets", files={"file": ("t.tsv", SST2_ROWS)},
                        data={"text_column": "text", "label_column": "label"})
    assert r.status_code == 422 and error_code(r) == "invalid_dataset"  # no such column

    r = alice_idle.post("/datasets", files={"file": ("t.xlsx", b"PK")},
                        data={"text_column": "sentence", "label_column": "label"})
    assert r.status_code == 415 and error_code(r) == "unsupported_format"

    r = alice_idle.post("/datasets", files={"file": ("t.tsv", SST2_ROWS)}, data={"text_column": "sentence"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_oversize_upload_is_413(alice_idle):
    # The session's limit is 20 kB; one request declares its size, the other streams it chunked.
    big = "sentence\tlabel\n" + "a fine film .\t1\n" * 2000
    r = alice_idle.post("/datasets", files={"file": ("big.tsv", big)},
                        data={"text_column": "sentence", "label_column": "label"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"

    medium = "sentence\tlabel\n" + "a fine film .\t1\n" * 1400  # ~22 kB: under the envelope allowance
    r = alice_idle.post("/datasets", files={"file": ("medium.tsv", medium)},
                        data={"text_column": "sentence", "label_column": "label"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
