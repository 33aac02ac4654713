"""The outbox: turning job and sweep state into delivery rows, and claiming rows to send.

Rows are derived from the jobs and sweeps tables rather than written by every code path that changes
a status (the worker, the API's cancel, the supervisor that fails lost jobs): whatever finished a job,
the next scan sees it. A unique (subject, event, dedupe) constraint makes a scan idempotent, even
with several delivery loops running.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db.models import TERMINAL_STATES, Job, Sweep, TenantWebhook, WebhookAttempt, WebhookDelivery
from ..settings import Settings


def _existing(s: Session, ids: list[str]) -> tuple[set[tuple[str, str, str]], dict[str, datetime]]:
    """Delivery keys already made for these subjects, and each subject's newest progress row."""
    if not ids:
        return set(), {}
    rows = s.execute(select(WebhookDelivery.subject_id, WebhookDelivery.event, WebhookDelivery.dedupe,
                            WebhookDelivery.created_at).where(WebhookDelivery.subject_id.in_(ids))).all()
    keys = {(r.subject_id, r.event, r.dedupe) for r in rows}
    last: dict[str, datetime] = {}
    for r in rows:
        if r.event.endswith(".progress"):
            last[r.subject_id] = max(last.get(r.subject_id, r.created_at), r.created_at)
    return keys, last


def _add(s: Session, **fields: Any) -> bool:
    try:
        with s.begin_nested():  # a concurrent scan may have made the same row: that is fine
            s.add(WebhookDelivery(**fields))
        return True
    except IntegrityError:
        return False


def _as_aware(dt: datetime) -> datetime:
    from ..db.repo import as_utc

    return as_utc(dt)


def scan(s: Session, settings: Settings, now: datetime) -> int:
    """Create the delivery rows that job and sweep states call for. Returns how many were made."""
    from ..routes.jobs import job_out
    from ..sweeps import refresh, sweep_out

    defaults = {t.tenant_id: t.default_url for t in s.scalars(select(TenantWebhook)) if t.default_url}
    window = now - timedelta(seconds=settings.webhook_scan_window_s)
    every = timedelta(seconds=settings.webhook_progress_interval_s)
    targeted = lambda model: or_(model.webhook_url.is_not(None), model.tenant_id.in_(list(defaults)))  # noqa: E731
    made = 0

    for sweep in s.scalars(select(Sweep).where(Sweep.status.not_in(TERMINAL_STATES))):
        refresh(s, sweep)  # a sweep finishes when its last child does; no process is told
    # Running subjects (progress), and finished ones whose final event has no row yet: a subject that
    # has been announced costs the scan nothing more.
    announced = lambda model: select(WebhookDelivery.id).where(  # noqa: E731
        WebhookDelivery.subject_id == model.id, WebhookDelivery.dedupe == "").exists()
    live = lambda model: or_(model.status.in_(("queued", "running")),  # noqa: E731
                             and_(model.status.in_(TERMINAL_STATES), model.finished_at >= window,
                                  ~announced(model)))
    jobs = list(s.scalars(select(Job).where(targeted(Job), live(Job), Job.status != "queued")))
    sweeps = list(s.scalars(select(Sweep).where(targeted(Sweep), live(Sweep), Sweep.status != "queued")))
    keys, last_progress = _existing(s, [j.id for j in jobs] + [w.id for w in sweeps])

    def want(subject: Any, kind: str, dedupe_progress: str, payload) -> None:
        nonlocal made
        url = subject.webhook_url or defaults.get(subject.tenant_id)
        if subject.status in TERMINAL_STATES:
            event, dedupe = f"{kind}.{subject.status}", ""
        else:
            last = last_progress.get(subject.id)
            if last is not None and _as_aware(last) > now - every:
                return
            event, dedupe = f"{kind}.progress", dedupe_progress
        if (subject.id, event, dedupe) in keys:
            return
        made += _add(s, tenant_id=subject.tenant_id, subject_id=subject.id, event=event, dedupe=dedupe,
                     url=url, payload=payload().model_dump_json(), next_attempt_at=now)

    for job in jobs:
        want(job, "job", f"{job.stage}:{job.progress:.3f}", lambda job=job: job_out(job))
    for sweep in sweeps:
        done = s.scalar(select(func.count()).select_from(Job).where(
            Job.sweep_id == sweep.id, Job.status.in_(TERMINAL_STATES)))
        want(sweep, "sweep", f"done:{done}", lambda sweep=sweep: sweep_out(s, sweep))
    return made


def claim(s: Session, settings: Settings, now: datetime, limit: int = 20) -> list[str]:
    """Claim due rows: a conditional update each, so two loops never both claim one row. A claim
    expires, so a row whose sender died is sent again (same webhook-id) by whoever runs next."""
    due = s.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
    ).order_by(WebhookDelivery.next_attempt_at).limit(limit)).all()
    until = now + timedelta(seconds=settings.webhook_claim_s)
    claimed = []
    for delivery_id in due:
        got = s.execute(update(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        ).values(claimed_until=until, attempts=WebhookDelivery.attempts + 1)).rowcount
        if got:
            claimed.append(delivery_id)
    return claimed


def backoff(settings: Settings, attempts: int) -> float:
    base = settings.webhook_backoff_base_s * 2 ** max(0, attempts - 1)
    return min(settings.webhook_backoff_max_s, base) * random.uniform(0.8, 1.2)


def record(s: Session, settings: Settings, delivery_id: str, now: datetime, *, status_code: int | None,
           error: str | None, duration_ms: float, permanent: bool = False) -> str:
    """The outcome of one attempt; returns the row's new status."""
    d = s.get(WebhookDelivery, delivery_id)
    s.add(WebhookAttempt(delivery_id=delivery_id, attempted_at=now, status_code=status_code, error=error,
                         duration_ms=round(duration_ms, 1)))
    ok = status_code is not None and 200 <= status_code < 300
    if ok:
        values: dict[str, Any] = dict(status="delivered", delivered_at=now, claimed_until=None)
    elif permanent or d.attempts >= settings.webhook_max_attempts:
        values = dict(status="failed", claimed_until=None)
    else:
        retry_at = now + timedelta(seconds=backoff(settings, d.attempts))
        values = dict(claimed_until=None, next_attempt_at=retry_at)
    s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                            WebhookDelivery.status == "pending")
              .values(last_status_code=status_code, last_error=error, **values))
    return values.get("status", "pending")
