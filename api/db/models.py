"""Tables of the service. Postgres is the source of truth; SQLite serves the embedded default."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigIntId = BigInteger().with_variant(Integer, "sqlite")

# Stable constraint names so Alembic migrations are deterministic on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    """Time-ordered id (microseconds, then randomness): keyset pagination can sort on it alone."""
    return f"{prefix}_{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ten"))
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    prefix: Mapped[str] = mapped_column(String(16))  # shown to humans to tell keys apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_status_id", "tenant_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str | None] = mapped_column(String(40), default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    eta_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # final, on success
    # The newest training-time numbers (stage, step, loss, dev scores) while the job runs.
    latest_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # successful claims (1 unless reclaimed)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # Supervision (see docs/reliability.md): when the job id was last handed to the broker, and which
    # worker process ("host:pid") holds the current attempt.
    enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    queue: Mapped[str | None] = mapped_column(String(200), default=None)  # the broker queue it goes to
    worker_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Issue 9: the sweep this job is a point of, and where its webhooks go (else the tenant default).
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True,
                                                 default=None)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))  # "status" | "progress"
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    stage: Mapped[str | None] = mapped_column(String(40), default=None)
    step: Mapped[int | None] = mapped_column(Integer, default=None)
    total: Mapped[int | None] = mapped_column(Integer, default=None)
    loss: Mapped[float | None] = mapped_column(Float, default=None)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(600))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ds"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))  # tsv | csv | jsonl
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(600))
    columns: Mapped[dict[str, Any]] = mapped_column(JSON)  # text / text_pair / label / regression
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sweep(Base):
    """A grid of jobs (weight bits x depths) sharing stage 0 and stage 1 through the stage cache.

    ``status`` is derived from the children and written once they have all finished."""

    __tablename__ = "sweeps"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_sweeps_tenant_idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("swp"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_drop: Mapped[float | None] = mapped_column(Float, default=None)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Idempotency-Key on POST /sweeps: the key and the hash of the normalized body it was first sent with.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class TenantWebhook(Base):
    """A tenant's webhook signing secret (Standard Webhooks ``whsec_...``) and default URL.

    The secret is kept in clear because signing needs it; the API shows it only when it is made."""

    __tablename__ = "tenant_webhooks"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str | None] = mapped_column(String(200), default=None)
    default_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(Base):
    """The outbox: one row per event to deliver. Its id is the ``webhook-id`` header, so a re-send
    after a crash carries the same id and receivers can drop the duplicate."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subject_id", "event", "dedupe", name="uq_webhook_deliveries_subject_event"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[str] = mapped_column(String(40), index=True)  # a job or sweep id
    event: Mapped[str] = mapped_column(String(40))  # job.succeeded, sweep.progress, ...
    dedupe: Mapped[str] = mapped_column(String(80), default="")  # "" for final events; progress: a step
    url: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[str] = mapped_column(Text)  # the exact body that is signed and sent
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                                             index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)
