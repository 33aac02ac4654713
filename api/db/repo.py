"""Small repository functions. Every tenant-facing read takes the tenant id: scoping is not optional."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from .models import ApiKey, Artifact, Dataset, Job, JobEvent, Tenant, utcnow

KEY_PREFIX = "xtc_"


# ---- tenants and keys ---------------------------------------------------------------------------

def hash_key(key: str) -> str:
    # The keys are 256-bit random secrets, so a fast unsalted hash is enough (no dictionary to try).
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_tenant(s: Session, name: str) -> Tenant:
    tenant = s.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        s.add(tenant)
        s.flush()
    return tenant


def create_api_key(s: Session, tenant: Tenant) -> str:
    """Store a new key's hash and return the plaintext: the only time it exists outside the client."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    s.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:10]))
    s.flush()
    return key


def tenant_for_key(s: Session, key: str) -> Tenant | None:
    return s.scalar(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )


# ---- jobs (API side) ----------------------------------------------------------------------------

def create_job(
    s: Session, tenant_id: str, request: dict[str, Any], request_hash: str, idempotency_key: str | None
) -> Job:
    job = Job(tenant_id=tenant_id, request=request, request_hash=request_hash,
              idempotency_key=idempotency_key, status="queued")
    s.add(job)
    s.flush()
    s.add(JobEvent(job_id=job.id, kind="status", status="queued", message="job created"))
    return job


def job_by_idempotency_key(s: Session, tenant_id: str, key: str) -> Job | None:
    return s.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def get_job(s: Session, tenant_id: str, job_id: str) -> Job | None:
    return s.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))


def list_jobs(s: Session, tenant_id: str, *, status: str | None, cursor: str | None, limit: int) -> list[Job]:
    """Newest first; ``cursor`` is the last id of the previous page (ids are time-ordered)."""
    q = select(Job).where(Job.tenant_id == tenant_id)
    if status:
        q = q.where(Job.status == status)
    if cursor:
        q = q.where(Job.id < cursor)
    return list(s.scalars(q.order_by(Job.id.desc()).limit(limit)))


def request_cancel(s: Session, job: Job, *, lease: timedelta | None = None) -> Job:
    """Queued jobs are cancelled at once; running ones get a flag the worker polls via should_stop.

    A running job whose lease has expired has no worker left to see the flag: it ends now.
    """
    now = utcnow()
    done = s.execute(
        update(Job).where(Job.id == job.id, Job.status == "queued")
        .values(status="cancelled", cancel_requested=True, finished_at=now, stage=None, eta_seconds=None)
    ).rowcount
    if done:
        s.add(JobEvent(job_id=job.id, kind="status", status="cancelled", message="cancelled before start"))
    else:
        s.execute(update(Job).where(Job.id == job.id, Job.status == "running").values(cancel_requested=True))
        if lease is not None:
            orphaned = s.execute(
                update(Job).where(Job.id == job.id, Job.status == "running", Job.heartbeat_at < now - lease)
                .values(status="cancelled", finished_at=now, eta_seconds=None, worker_id=None)
                # SQLite hands back naive datetimes: never evaluate the time guard in Python (the row is
                # refreshed below anyway).
                .execution_options(synchronize_session=False)
            ).rowcount
            if orphaned:
                s.add(JobEvent(job_id=job.id, kind="status", status="cancelled",
                               message="cancelled; its worker had been lost"))
    s.refresh(job)
    return job


def mark_enqueued(s: Session, job_id: str) -> None:
    s.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))


def discard_unqueued_job(s: Session, job_id: str) -> None:
    """The broker refused the job: forget it, so a retry with the same Idempotency-Key runs."""
    s.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
    s.execute(delete(Job).where(Job.id == job_id, Job.status == "queued"))


def list_events(s: Session, job_id: str, *, after: int | None, limit: int) -> list[JobEvent]:
    q = select(JobEvent).where(JobEvent.job_id == job_id)
    if after is not None:
        q = q.where(JobEvent.id > after)
    return list(s.scalars(q.order_by(JobEvent.id).limit(limit)))


def list_artifacts(s: Session, job_id: str) -> list[Artifact]:
    return list(s.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))


def get_artifact(s: Session, job_id: str, name: str) -> Artifact | None:
    return s.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))


# ---- datasets -----------------------------------------------------------------------------------

def create_dataset(s: Session, **fields: Any) -> Dataset:
    ds = Dataset(**fields)
    s.add(ds)
    s.flush()
    return ds


def get_dataset(s: Session, tenant_id: str, dataset_id: str) -> Dataset | None:
    return s.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))


def get_dataset_unscoped(s: Session, dataset_id: str) -> Dataset | None:
    """Worker side only: the job row that references the dataset was already tenant-checked."""
    return s.get(Dataset, dataset_id)


# ---- jobs (worker side) -------------------------------------------------------------------------

def claim_job(s: Session, job_id: str, *, lease: timedelta, worker_id: str | None = None,
              max_attempts: int | None = None) -> int | None:
    """queued -> running, or reclaim a `running` job whose worker stopped heart-beating.

    A conditional UPDATE, so two deliveries of the same message cannot both win; a cancelled or
    finished job is never touched. Returns the attempt number, the token every later write of this
    run carries (a worker that lost its job can then no longer touch it), or None.
    """
    now = utcnow()
    conditions = [Job.id == job_id, Job.cancel_requested.is_(False),
                  or_(Job.status == "queued", (Job.status == "running") & (Job.heartbeat_at < now - lease))]
    if max_attempts is not None:
        conditions.append(Job.attempts < max_attempts)
    claimed = s.execute(
        update(Job).where(*conditions)
        .values(status="running", started_at=func.coalesce(Job.started_at, now), heartbeat_at=now,
                attempts=Job.attempts + 1, worker_id=worker_id)
        .execution_options(synchronize_session=False)  # the time guard runs in SQL only (see request_cancel)
    ).rowcount
    if not claimed:
        return None
    attempt = s.scalar(select(Job.attempts).where(Job.id == job_id))
    message = "claimed by a worker" if attempt == 1 else \
        f"claimed by a worker (attempt {attempt}); resuming from the work folder"
    s.add(JobEvent(job_id=job_id, kind="status", status="running", message=message))
    return attempt


def _ours(job_id: str, attempt: int | None) -> list:
    conditions = [Job.id == job_id, Job.status == "running"]
    if attempt is not None:
        conditions.append(Job.attempts == attempt)
    return conditions


def load_job(s: Session, job_id: str) -> Job | None:
    return s.get(Job, job_id)


def record_progress(
    s: Session, job_id: str, *, stage: str, progress: float, eta: float | None, event: dict[str, Any] | None,
    attempt: int | None = None,
) -> None:
    # Progress never moves backwards, across resumed attempts too.
    values: dict[str, Any] = dict(stage=stage, eta_seconds=eta, heartbeat_at=utcnow(),
                                  progress=case((Job.progress > progress, Job.progress), else_=progress))
    if event is not None and (event.get("metrics") or event.get("loss") is not None):
        values["latest_metrics"] = {"stage": stage, "step": event.get("step"), "loss": event.get("loss"),
                                    **(event.get("metrics") or {})}
    done = s.execute(update(Job).where(*_ours(job_id, attempt)).values(**values)).rowcount
    if done and event is not None:
        s.add(JobEvent(job_id=job_id, kind="progress", stage=stage, **event))


def heartbeat(s: Session, job_id: str, attempt: int | None = None) -> bool:
    """Refresh the lease; False when the job is no longer this attempt's to run."""
    return bool(s.execute(update(Job).where(*_ours(job_id, attempt)).values(heartbeat_at=utcnow())).rowcount)


def check_job(s: Session, job_id: str, attempt: int | None = None) -> str | None:
    """Refresh the lease and say why the run should stop: "cancelled", "lost" (not ours) or None."""
    if not heartbeat(s, job_id, attempt):
        row = s.execute(select(Job.status, Job.cancel_requested).where(Job.id == job_id)).one_or_none()
        return "cancelled" if row is not None and row.cancel_requested else "lost"
    cancel = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return "cancelled" if cancel else None


def heartbeat_and_check_cancel(s: Session, job_id: str, attempt: int | None = None) -> bool:
    return check_job(s, job_id, attempt) is not None


def finish_succeeded(
    s: Session, job_id: str, *, metrics: dict[str, Any], artifacts: list[dict[str, Any]],
    attempt: int | None = None,
) -> bool:
    """Artifacts, metrics and the final state together: a reader never sees half a result."""
    now = utcnow()
    done = s.execute(
        update(Job).where(*_ours(job_id, attempt))
        .values(status="succeeded", metrics=metrics, progress=1.0, eta_seconds=0.0, stage="done",
                finished_at=now, heartbeat_at=now)
    ).rowcount
    if not done:
        return False  # no longer ours (reclaimed after a lost lease): the other run records its result
    s.execute(delete(Artifact).where(Artifact.job_id == job_id))  # a resumed run replaces old rows
    for art in artifacts:
        s.add(Artifact(job_id=job_id, **art))
    s.add(JobEvent(job_id=job_id, kind="status", status="succeeded", metrics=metrics, message="done"))
    return True


def finish_failed(s: Session, job_id: str, *, code: str, message: str, attempt: int | None = None) -> None:
    done = s.execute(
        update(Job).where(*_ours(job_id, attempt))
        .values(status="failed", error_code=code, error_message=message, eta_seconds=None,
                finished_at=utcnow())
    ).rowcount
    if done:
        s.add(JobEvent(job_id=job_id, kind="status", status="failed", message=f"{code}: {message}"))


def finish_cancelled(s: Session, job_id: str, attempt: int | None = None) -> None:
    done = s.execute(
        update(Job).where(*_ours(job_id, attempt))
        .values(status="cancelled", eta_seconds=None, finished_at=utcnow())
    ).rowcount
    if done:
        s.add(JobEvent(job_id=job_id, kind="status", status="cancelled", message="cancelled while running"))


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; we only ever store UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=timezone.utc)
