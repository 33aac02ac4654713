"""Every bad input is a 4xx with a stable code: never a 500, never a silent empty answer."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, select

from api.db.models import Job
from api.db.session import session_scope

from .support import RUN, job_body


def code(r) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "Traceback" not in r.text
    return r.json()["error"]["code"]


@pytest.mark.parametrize(("method", "url", "expected"), [
    ("GET", "/jobs/job_%00x", "bad_request"),
    ("GET", "/jobs/job_x/events?after=1%00", "bad_request"),
    ("GET", "/jobs?cursor=job_%00", "bad_request"),
    ("GET", "/datasets/ds_%00", "bad_request"),
    ("GET", "/jobs/job_x/artifacts/a%00b", "bad_request"),
    ("GET", f"/jobs/job_x/events?after={2**63}", "invalid_request"),
    ("GET", "/jobs/job_x/events?after=-1", "invalid_request"),
    ("GET", "/jobs?cursor=garbage", "invalid_request"),
    ("GET", "/jobs?cursor=" + "a" * 5000, "invalid_request"),
    ("GET", "/jobs?limit=100000000000000000000000", "invalid_request"),
])
def test_bad_urls(alice_idle, method, url, expected):
    assert code(alice_idle.request(method, url)) == expected


def count_jobs(settings) -> int:
    with session_scope(settings.database_url) as s:
        return s.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize(("change", "expected"), [
    ({"model": "~nosuchuser/x"}, "unknown_model"),
    ({"model": "~/x"}, "unknown_model"),
    ({"model": "a" * 300}, "invalid_request"),
    ({"model": "/" + "a" * 250}, "unknown_model"),
    ({"model": "bert\u0000base"}, "invalid_request"),
    ({"task": "sst2\u0000"}, "invalid_request"),
    ({"task": {"train_dataset": "ds_\u0000", "dev_dataset": "ds_x"}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"batch_size": 0}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"lr": -1}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"lr": "1e-4"}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"reduction_steps": 1.5}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"batch_size": None}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"warmup_ratio": 1}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"max_seq_length": 2**40}}}, "invalid_request"),
    ({"compression": {"layers": 2**70}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"kd_attention_target": "logits"}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"kd_student_dropout": "no"}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"kd_late_start": 1.5}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"quant_lr_w1": 0}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "augment": 33}}, "invalid_request"),
    ({"training": {"budget": "smoke", "augment": "2"}}, "invalid_request"),
    ({"training": {"budget": "smoke", "augment": -1}}, "invalid_request"),
    ({"training": {"budget": "smoke", "overrides": {"augment": 33}}}, "invalid_request"),
    ({"training": {"budget": "smoke", "augment": 2, "overrides": {"augment": 3}}}, "invalid_request"),
])
def test_bad_job_requests_are_refused_before_anything_is_queued(alice_idle, idle_settings, tiny_model_dir,
                                                                  change, expected):
    before = count_jobs(idle_settings)
    r = alice_idle.post("/jobs", json={**job_body(tiny_model_dir), **change})
    assert r.status_code == 422, r.text
    assert code(r) == expected
    if "overrides" in json.dumps(change):
        assert "training.overrides" in r.json()["error"]["message"]
    assert count_jobs(idle_settings) == before


def test_task_spelling_is_one_request_for_idempotency(alice_idle, tiny_model_dir):
    headers = {"Idempotency-Key": f"spelling-{RUN}"}
    first = alice_idle.post("/jobs", json=job_body(tiny_model_dir, task="sst2"), headers=headers)
    again = alice_idle.post("/jobs", json=job_body(tiny_model_dir, task="SST-2"), headers=headers)
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    lr = {"budget": "smoke", "overrides": {"lr": 1, "max_train_examples": 32}}
    lr_float = {"budget": "smoke", "overrides": {"max_train_examples": 32, "lr": 1.0}}
    headers = {"Idempotency-Key": f"numbers-{RUN}"}
    first = alice_idle.post("/jobs", json=job_body(tiny_model_dir, training=lr), headers=headers)
    again = alice_idle.post("/jobs", json=job_body(tiny_model_dir, training=lr_float), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_augment_is_a_job_option_stored_where_the_worker_reads_training_options(alice_idle, tiny_model_dir):
    headers = {"Idempotency-Key": f"augment-{RUN}"}
    short = {"budget": "smoke", "augment": 2}
    first = alice_idle.post("/jobs", json=job_body(tiny_model_dir, training=short), headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["request"]["training"] == {"budget": "smoke", "overrides": {"augment": 2}}
    spelled = {"budget": "smoke", "overrides": {"augment": 2}}
    again = alice_idle.post("/jobs", json=job_body(tiny_model_dir, training=spelled), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # one request
    both = {"budget": "smoke", "augment": 2, "overrides": {"augment": 2, "lr": 1e-4}}
    r = alice_idle.post("/jobs", json=job_body(tiny_model_dir, training=both))
    assert r.status_code == 201 and r.json()["request"]["training"]["overrides"] == {"augment": 2, "lr": 1e-4}


def test_the_earlier_kd_recipe_is_still_a_job_option(alice_idle, tiny_model_dir):
    # The reference recipe is the default; the 0.1 recipe is three overrides, accepted as given.
    from xtc_core.config import KD_RECIPE_0_1

    earlier = dict(KD_RECIPE_0_1)
    training = {"budget": "smoke", "overrides": earlier}
    r = alice_idle.post("/jobs", json=job_body(tiny_model_dir, training=training))
    assert r.status_code == 201, r.text
    assert r.json()["request"]["training"]["overrides"] == earlier


def test_model_folders_only_from_the_model_directories(alice_idle, tiny_model_dir, tmp_path_factory):
    # A real model folder outside the configured directories is refused like a missing one.
    outside = tmp_path_factory.getbasetemp().parent / f"xtc-outside-{RUN}"
    shutil.copytree(tiny_model_dir, outside / "model")
    try:
        answers = {}
        refs = ("/etc", "/root/.ssh", "/no/such/folder", str(outside / "model"), "../" + tiny_model_dir.name,
                str(tiny_model_dir.parent / ".." / ".." / ".." / "etc"))
        for ref in refs:
            r = alice_idle.post("/jobs", json=job_body(ref))
            assert r.status_code == 422 and code(r) == "unknown_model", r.text
            answers[ref] = r.json()["error"]["message"].replace(repr(ref), "REF")
        assert len(set(answers.values())) == 1, answers  # the same answer whatever is on disk
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    # Inside the model directories: a model folder is accepted and stored resolved.
    r = alice_idle.post("/jobs", json=job_body(tiny_model_dir))
    assert r.status_code == 201 and r.json()["request"]["model"] == str(tiny_model_dir.resolve())
    r = alice_idle.post("/jobs", json=job_body(tiny_model_dir.parent))
    assert r.status_code == 422 and "config.json" in r.json()["error"]["message"]


def test_request_fingerprints_are_stable_across_releases():
    """A job's idempotency fingerprint is stored with it: a release that adds compression options
    must hash requests that do not use them as before, or a client replaying its key after an
    upgrade would be told its own request conflicts. The value is what release 0.1 computed."""
    from api.schemas import JobCreate

    body = {"model": "bundled:minilm-l6", "task": "SST-2", "compression": {"weight_bits": 2, "layers": 3},
            "training": {"budget": "quick"}}
    released = "3a8fd100395dced123ef0333fd614ea40fa8a06dd51e35eff9fb9b03e1798382"
    assert JobCreate.model_validate(body).fingerprint() == released
    explicit = {**body, "compression": {**body["compression"], "weight_groups": 1, "embedding_bits": None}}
    assert JobCreate.model_validate(explicit).fingerprint() == released
    same = {**body, "compression": {**body["compression"], "embedding_bits": 2}}  # = weight_bits: the default
    assert JobCreate.model_validate(same).fingerprint() == released
    wider = {**body, "compression": {**body["compression"], "embedding_bits": 8}}
    assert JobCreate.model_validate(wider).fingerprint() != released
    # sweeps likewise
    from api.sweep_schemas import SweepCreate

    sweep = {"model": "m", "task": "sst2", "grid": {"weight_bits": [1, 2], "layers": [1]}}
    released = "b6ed1f702a78974d1dcd06be2678ade95dc226ffcc16694126b1a7de9b6a6d13"
    assert SweepCreate.model_validate(sweep).fingerprint() == released
    assert SweepCreate.model_validate({**sweep, "weight_groups": 1, "embedding_bits": None}).fingerprint() \
        == released
    assert SweepCreate.model_validate({**sweep, "embedding_bits": 8}).fingerprint() != released
