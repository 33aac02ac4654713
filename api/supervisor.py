"""Job supervision from Postgres: nothing the broker loses or a killed process leaves behind strands a job.

Every worker process runs a `Supervisor` loop (started on Celery's worker_ready), so does `xtc serve`
through its worker. Any number of them may run at once: each decision is a conditional UPDATE on the
job row and only the process whose UPDATE matched sends the id to the broker. See docs/reliability.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from .db.models import Job, JobEvent, utcnow
from .db.repo import as_utc
from .db.session import session_scope
from .settings import Settings

log = logging.getLogger("xtc.supervisor")


class Enqueuer(Protocol):
    def enqueue(self, job_id: str) -> None: ...


def this_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_gone(worker_id: str | None) -> bool:
    """True only for a worker process of this host that no longer runs (a killed pool child, say).

    Another host's process cannot be checked from here; its lease decides instead.
    """
    if not worker_id:
        return False
    host, _, pid = worker_id.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # zombie: killed, not yet reaped
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    except OSError:
        return False


def _step_note(job: Job) -> str:
    latest = job.latest_metrics or {}
    if latest.get("step") is not None:
        return f" at {latest.get('stage') or job.stage} step {latest['step']}"
    return f" in stage {job.stage}" if job.stage else ""


def release_lost(s: Session, job: Job, settings: Settings, reason: str) -> str | None:
    """A running job whose worker is gone: cancel it, fail it (too many attempts) or re-queue it.

    Returns "cancelled" | "failed" | "queued" when this call made the decision, None when the row
    changed meanwhile (its worker came back, or another supervisor acted first).
    """
    now = utcnow()
    guard = [Job.id == job.id, Job.status == "running", Job.attempts == job.attempts]
    where = f"the worker was lost{_step_note(job)} ({reason})"
    if job.cancel_requested:
        values = dict(status="cancelled", finished_at=now, eta_seconds=None, worker_id=None)
        outcome, message = "cancelled", f"cancelled; {where}"
    elif job.attempts >= settings.job_max_attempts:
        message = f"{where}; gave up after {job.attempts} attempts"
        values = dict(status="failed", error_code="worker_lost", error_message=message, finished_at=now,
                      eta_seconds=None, worker_id=None)
        outcome = "failed"
    else:
        values = dict(status="queued", enqueued_at=now, worker_id=None)
        outcome = "queued"
        message = f"{where}; re-queued (attempt {job.attempts + 1} of {settings.job_max_attempts} next)"
    if not s.execute(update(Job).where(*guard).values(**values)).rowcount:
        return None
    s.add(JobEvent(job_id=job.id, kind="status", status=outcome, message=message))
    log.warning("job %s: %s", job.id, message)
    return outcome


def reclaim_if_local_worker_died(settings: Settings, job_id: str) -> bool:
    """Fast path for a redelivered message: the job's worker process on this host is dead (a pool child
    killed mid-job), so the job need not wait for its lease to expire. True when it was re-queued."""
    with session_scope(settings.database_url) as s:
        job = s.scalar(select(Job).where(Job.id == job_id, Job.status == "running"))
        if job is None or not _process_gone(job.worker_id):
            return False
        return release_lost(s, job, settings, "its process on this host died") == "queued"


def _resend_due(job: Job, now: datetime, grace: timedelta) -> bool:
    sent = as_utc(job.enqueued_at) or as_utc(job.created_at)
    # The wait doubles with every resend: a resend happens once the message has been out as long as
    # the job had waited before it was (re)sent.
    waited_before = sent - as_utc(job.created_at)
    return now - sent > max(grace, waited_before)


def _ours(settings: Settings):
    # Jobs of this supervisor's queue, and jobs created without one (code that inserts jobs directly).
    return or_(Job.queue == settings.queue, Job.queue.is_(None))


def sweep(settings: Settings, queue: Enqueuer) -> dict[str, int]:
    """One pass: expired `running` jobs and `queued` jobs whose message was lost. Returns counts."""
    now = utcnow()
    lease = timedelta(seconds=settings.job_lease_s)
    grace = timedelta(seconds=settings.queued_grace_s)
    counts = {"queued": 0, "failed": 0, "cancelled": 0, "resent": 0}
    to_send: list[str] = []
    with session_scope(settings.database_url) as s:
        running = s.scalars(select(Job).where(Job.status == "running", _ours(settings))).all()
        for job in running:
            hb = as_utc(job.heartbeat_at)
            if hb is not None and now - hb > lease:
                reason = f"no heartbeat for {int((now - hb).total_seconds())} s"
            elif _process_gone(job.worker_id):
                reason = "its process on this host died"
            else:
                continue
            outcome = release_lost(s, job, settings, reason)
            if outcome:
                counts[outcome] += 1
                if outcome == "queued":
                    to_send.append(job.id)
    with session_scope(settings.database_url) as s:
        waiting = s.scalars(select(Job).where(
            Job.status == "queued", _ours(settings), Job.cancel_requested.is_(False),
            or_(Job.enqueued_at < now - grace, Job.enqueued_at.is_(None) & (Job.created_at < now - grace)),
        )).all()
        for job in waiting:
            if job.id in to_send or not _resend_due(job, now, grace):
                continue
            sent = job.enqueued_at
            same = Job.enqueued_at.is_(None) if sent is None else Job.enqueued_at == sent
            if s.execute(update(Job).where(Job.id == job.id, Job.status == "queued", same)
                         .values(enqueued_at=now)).rowcount:
                s.add(JobEvent(job_id=job.id, kind="status", status="queued",
                               message="not picked up by a worker; sent to the queue again"))
                to_send.append(job.id)
                counts["resent"] += 1
    for job_id in to_send:  # after the commit, so a worker never receives an id it cannot claim
        try:
            queue.enqueue(job_id)
        except Exception as exc:  # the broker is down: the next sweep resends (enqueued_at is set)
            log.warning("could not enqueue %s: %s", job_id, exc)
    return counts


class Supervisor:
    """`sweep` every supervisor_interval_s in a daemon thread."""

    def __init__(self, settings: Settings, queue: Enqueuer | None = None):
        self.settings = settings
        if queue is None:
            from .queue import JobQueue

            queue = JobQueue(settings)
        self.queue = queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, int]:
        try:
            counts = sweep(self.settings, self.queue)
        except Exception:
            log.exception("supervisor sweep failed; retrying in %.0f s", self.settings.supervisor_interval_s)
            return {}
        if any(counts.values()):
            log.info("supervisor: %s", counts)
        return counts

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._loop, name="xtc-supervisor", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.supervisor_interval_s):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
