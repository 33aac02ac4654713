"""The callbacks handed to xtc_core: throttled progress writes and a throttled cancel check."""

from __future__ import annotations

import math
import time
from typing import Any

from api.db import repo
from api.db.session import session_scope
from api.settings import Settings

from .eta import EtaEstimator


def _clean(value: Any) -> Any:
    """JSON-safe copy of a metrics dict (NaN/inf are not JSON; tensors should not leak in)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


class ProgressWriter:
    """Writes at most one event per interval, plus one at every stage change, and moves the job row."""

    def __init__(self, job_id: str, settings: Settings, attempt: int | None = None,
                 estimator: EtaEstimator | None = None):
        self.job_id = job_id
        self.attempt = attempt
        self.estimator = estimator
        self.url = settings.database_url
        self.interval = settings.progress_interval_s
        self.started = time.monotonic()
        self.last_write = -math.inf
        self.stage: str | None = None
        self.progress = 0.0

    def __call__(self, event: Any) -> None:
        measured = self.estimator.update(event) if self.estimator is not None else None
        now = time.monotonic()
        stage_changed = event.stage != self.stage
        # A stage's last step is always written, so its loss and metric curves end where it ended; so is
        # every event that says something (a resume, a stage-cache hit): they are rare and users read them.
        stage_end = bool(event.total) and event.step == event.total
        if not (stage_changed or stage_end or event.message) and now - self.last_write < self.interval:
            return
        self.stage = event.stage
        self.last_write = now
        # Training stages fill 0..0.97; the final evaluation and export (which can take a while on a
        # big dev set) hold 0.98, so 100% means the artifacts really are there.
        if event.stage == "done":
            overall = 1.0
        elif event.stage == "export":
            overall = 0.98
        else:
            overall = 0.97 * float(getattr(event, "overall", event.fraction))
        # Never move backwards: a stage that restarts from a resume point would look like a regression.
        self.progress = max(self.progress, min(overall, 1.0))
        elapsed = now - self.started
        if self.estimator is not None:
            eta = measured
        else:
            eta = elapsed / self.progress * (1 - self.progress) if self.progress >= 0.02 else None
        message = event.message or None
        if message and message.startswith("resumed at step") and (self.attempt or 1) > 1:
            message += " after the worker was lost"
        loss = float(event.loss) if event.loss is not None and math.isfinite(float(event.loss)) else None
        with session_scope(self.url) as s:
            repo.record_progress(
                s, self.job_id, stage=event.stage, progress=round(self.progress, 4),
                eta=round(eta, 1) if eta is not None else None,
                event={"step": event.step, "total": event.total, "loss": loss,
                       "metrics": _clean(dict(event.metrics)) or None, "message": message},
                attempt=self.attempt,
            )


class StopCheck:
    """should_stop for xtc_core: reads the cancel flag at most once per interval; enforces the deadline.

    The deadline is ours rather than Celery's because Celery's time limits are not enforced by the
    solo pool that the embedded worker uses.
    """

    def __init__(self, job_id: str, settings: Settings, attempt: int | None = None,
                 estimator: EtaEstimator | None = None):
        self.job_id = job_id
        self.attempt = attempt
        self.estimator = estimator
        self.url = settings.database_url
        self.interval = settings.cancel_check_interval_s
        self.deadline = time.monotonic() + settings.job_soft_time_limit_s
        self.last_check = -math.inf
        self.reason: str | None = None  # "cancelled" | "time_limit" | "lost" (another attempt owns it)

    def __call__(self) -> bool:
        if self.reason:
            return True
        now = time.monotonic()
        if now >= self.deadline:
            self.reason = "time_limit"
            return True
        if now - self.last_check < self.interval:
            return False
        self.last_check = now
        with session_scope(self.url) as s:
            self.reason = repo.check_job(s, self.job_id, self.attempt)
        return self.reason is not None
