"""The supervisor's decisions, one sweep at a time, on real Postgres rows (no worker needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from api.db import repo
from api.db.models import Job, JobEvent, utcnow
from api.db.session import session_scope
from api.settings import Settings
from api.supervisor import release_lost, sweep

from .support import RUN


class Recorder:
    """Records the ids a sweep sends (the real broker is exercised in test_faults.py)."""

    def __init__(self):
        self.sent: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self.sent.append(job_id)


@pytest.fixture
def sup_settings(pg_url, request) -> Settings:
    return Settings(database_url=pg_url, queue=f"xtc-test-{RUN}-sup-{request.node.name[:30]}",
                    job_lease_s=60, queued_grace_s=120, job_max_attempts=3)


def make_job(settings: Settings, **values) -> str:
    with session_scope(settings.database_url) as s:
        tenant = repo.get_or_create_tenant(s, f"sup-{RUN}")
        job = repo.create_job(s, tenant.id, {"model": "bundled:minilm-l6", "task": "sst2"}, "0" * 64, None)
        job.queue = settings.queue
        job_id = job.id
        s.flush()
        if values:
            s.execute(update(Job).where(Job.id == job_id).values(**values))
    return job_id


def state(settings: Settings, job_id: str) -> tuple[str, str | None, list[str]]:
    with session_scope(settings.database_url) as s:
        job = s.get(Job, job_id)
        events = list(s.scalars(select(JobEvent.message).where(JobEvent.job_id == job_id)
                                .order_by(JobEvent.id)))
        return job.status, job.error_code, events


def test_expired_running_jobs_are_requeued_failed_or_cancelled(sup_settings):
    old = utcnow() - timedelta(seconds=90)
    requeue = make_job(sup_settings, status="running", attempts=1, heartbeat_at=old,
                       latest_metrics={"stage": "quantization", "step": 120})
    give_up = make_job(sup_settings, status="running", attempts=3, heartbeat_at=old)
    cancel = make_job(sup_settings, status="running", attempts=1, heartbeat_at=old, cancel_requested=True)
    alive = make_job(sup_settings, status="running", attempts=1, heartbeat_at=utcnow())
    sent = Recorder()
    counts = sweep(sup_settings, sent)
    assert counts == {"queued": 1, "failed": 1, "cancelled": 1, "resent": 0}
    assert sent.sent == [requeue]
    status, _, events = state(sup_settings, requeue)
    assert status == "queued"
    assert "worker was lost at quantization step 120" in events[-1] and "attempt 2 of 3" in events[-1]
    assert state(sup_settings, give_up)[:2] == ("failed", "worker_lost")
    assert state(sup_settings, cancel)[0] == "cancelled"
    assert state(sup_settings, alive)[0] == "running"
    assert sweep(sup_settings, Recorder()) == {"queued": 0, "failed": 0, "cancelled": 0, "resent": 0}


def test_lost_messages_are_resent_with_backoff(sup_settings):
    created = utcnow() - timedelta(seconds=300)
    lost = make_job(sup_settings, created_at=created, enqueued_at=created)
    never_sent = make_job(sup_settings, created_at=created, enqueued_at=None)
    fresh = make_job(sup_settings, enqueued_at=utcnow())
    sent = Recorder()
    assert sweep(sup_settings, sent)["resent"] == 2
    assert sorted(sent.sent) == sorted([lost, never_sent]) and fresh not in sent.sent
    assert "sent to the queue again" in state(sup_settings, lost)[2][-1]
    # Just resent after 300 s of waiting: the next resend waits at least as long again.
    assert sweep(sup_settings, Recorder())["resent"] == 0


def test_two_supervisors_decide_once(sup_settings):
    job_id = make_job(sup_settings, status="running", attempts=1, heartbeat_at=utcnow() - timedelta(hours=1))
    with session_scope(sup_settings.database_url) as s:
        seen = s.get(Job, job_id)
        s.expunge(seen)
    with session_scope(sup_settings.database_url) as s:
        assert release_lost(s, seen, sup_settings, "test") == "queued"
    with session_scope(sup_settings.database_url) as s:
        assert release_lost(s, seen, sup_settings, "test") is None  # the row moved on: no second decision


def test_a_stale_attempt_cannot_write(sup_settings):
    job_id = make_job(sup_settings)
    lease = timedelta(seconds=60)
    with session_scope(sup_settings.database_url) as s:
        first = repo.claim_job(s, job_id, lease=lease, worker_id="a:1", max_attempts=3)
    with session_scope(sup_settings.database_url) as s:
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    with session_scope(sup_settings.database_url) as s:
        second = repo.claim_job(s, job_id, lease=lease, worker_id="b:2", max_attempts=3)
    assert (first, second) == (1, 2)
    with session_scope(sup_settings.database_url) as s:
        assert repo.check_job(s, job_id, first) == "lost"
        assert repo.finish_succeeded(s, job_id, metrics={}, artifacts=[], attempt=first) is False
        repo.record_progress(s, job_id, stage="x", progress=0.5, eta=None, event=None, attempt=second)
        repo.record_progress(s, job_id, stage="x", progress=0.2, eta=None, event=None, attempt=second)
    with session_scope(sup_settings.database_url) as s:
        job = s.get(Job, job_id)
        assert job.status == "running" and job.progress == 0.5  # never backwards
        assert job.worker_id == "b:2"
