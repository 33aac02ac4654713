"""Sweeps on the service: one child job per grid point; the stage cache makes them share stage 0 and
each depth's stage 1. A sweep's status, table, Pareto front and recommendation come from its children."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from xtc_core.pareto import point_name, summarize, table_row

from .db import repo
from .db.models import TERMINAL_STATES, Job, Sweep, utcnow
from .errors import ApiError
from .schemas import Compression, JobCreate, Training
from .sweep_schemas import SweepCreate, SweepOut
from .validation import validate_job


def plan_children(body: SweepCreate) -> list[tuple[str, JobCreate]]:
    """(point name, job request) per point, depth-major so points sharing a stage-1 student are
    enqueued together (on one worker the second then finds it cached)."""
    grid = body.grid
    if len({json.dumps(x) for x in grid.layers}) != len(grid.layers) or \
            len(set(grid.weight_bits)) != len(grid.weight_bits) or \
            (grid.budgets and len(set(grid.budgets)) != len(grid.budgets)):
        raise ApiError(422, "invalid_request", "grid: a bit width, depth or budget is repeated")
    out = []
    for preset in grid.budgets or [None]:
        training = Training(budget=preset or body.training.budget, overrides=body.training.overrides)
        for layers in grid.layers:
            for bits in grid.weight_bits:
                try:
                    job = JobCreate(model=body.model, task=body.task, training=training,
                                    compression=Compression(weight_bits=bits, layers=layers,
                                                            activation_bits=body.activation_bits,
                                                            weight_groups=body.weight_groups,
                                                            embedding_bits=body.embedding_bits))
                except ValidationError as exc:  # a point the schema let through must still be a 4xx
                    e = exc.errors()[0]
                    where = ".".join(map(str, e.get("loc", ()))) or "body"
                    raise ApiError(422, "invalid_request", f"grid point {point_name(bits, layers, preset)}: "
                                   f"{where}: {e.get('msg', 'invalid')}") from None
                out.append((point_name(bits, layers, preset), job))
    return out


def create_sweep(s: Session, tenant_id: str, body: SweepCreate, max_points: int, *, model_dirs: str = "",
                 queue: str | None = None, idempotency_key: str | None = None) -> tuple[Sweep, list[Job]]:
    children = plan_children(body)
    if len(children) > max_points:
        raise ApiError(422, "sweep_too_large", f"the grid has {len(children)} points; at most {max_points}")
    stored = [(name, job, validate_job(s, tenant_id, job, model_dirs)) for name, job in children]
    sweep = Sweep(tenant_id=tenant_id, request=body.model_dump(mode="json"), webhook_url=body.webhook_url,
                  max_drop=body.target.max_drop if body.target else None, status="queued",
                  idempotency_key=idempotency_key, request_hash=body.fingerprint())
    s.add(sweep)
    s.flush()
    jobs = []
    for name, job, request in stored:
        request.pop("webhook_url", None)
        request["sweep_point"] = name
        child = repo.create_job(s, tenant_id, request, job.fingerprint(), None)
        child.sweep_id = sweep.id
        child.queue = queue  # the supervisor of this queue re-sends a child whose message was lost
        jobs.append(child)
    s.flush()
    return sweep, jobs


def discard_unqueued_sweep(s: Session, sweep: Sweep, jobs: list[Job]) -> None:
    """The broker refused the children: forget the sweep, so the client's retry starts it afresh (an
    id that did reach the broker then finds no job and is skipped by the worker's claim)."""
    for job in jobs:
        repo.discard_unqueued_job(s, job.id)
    s.execute(delete(Sweep).where(Sweep.id == sweep.id))


def children(s: Session, sweep_id: str) -> list[Job]:
    return list(s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)))


def derive_status(statuses: list[str]) -> str:
    if statuses and all(st in TERMINAL_STATES for st in statuses):
        if all(st == "succeeded" for st in statuses):
            return "succeeded"
        return "failed" if "failed" in statuses else "cancelled"
    return "queued" if all(st == "queued" for st in statuses) else "running"


def refresh(s: Session, sweep: Sweep, jobs: list[Job] | None = None) -> Sweep:
    """Write the status the children imply (a finished sweep is never reopened)."""
    jobs = children(s, sweep.id) if jobs is None else jobs
    status = derive_status([j.status for j in jobs])
    if status != sweep.status and sweep.status not in TERMINAL_STATES:
        values: dict[str, Any] = {"status": status}
        if status in TERMINAL_STATES:
            values["finished_at"] = utcnow()
        s.execute(update(Sweep).where(Sweep.id == sweep.id, Sweep.status.not_in(TERMINAL_STATES))
                  .values(**values))
        s.refresh(sweep)
    return sweep


def table(sweep: Sweep, jobs: list[Job]) -> dict[str, Any]:
    rows = []
    for job in jobs:
        req = job.request
        rows.append(table_row(req.get("sweep_point", job.id), req["compression"]["weight_bits"],
                              req["compression"]["layers"],
                              req["training"]["budget"] if sweep.request["grid"].get("budgets") else None,
                              job.metrics if job.status == "succeeded" else None, status=job.status))
    return summarize(rows, sweep.max_drop)


def sweep_out(s: Session, sweep: Sweep) -> SweepOut:
    from .routes.jobs import job_out

    jobs = children(s, sweep.id)
    refresh(s, sweep, jobs)
    summary = table(sweep, jobs)
    return SweepOut(id=sweep.id, status=sweep.status, cancel_requested=sweep.cancel_requested,
                    request=sweep.request, webhook_url=sweep.webhook_url,
                    children=[job_out(j) for j in jobs],
                    table=summary["table"], pareto=summary["pareto"],
                    recommendation=summary["recommendation"],
                    created_at=repo.as_utc(sweep.created_at), finished_at=repo.as_utc(sweep.finished_at))


def sweep_by_idempotency_key(s: Session, tenant_id: str, key: str) -> Sweep | None:
    return s.scalar(select(Sweep).where(Sweep.tenant_id == tenant_id, Sweep.idempotency_key == key))


def get_sweep(s: Session, tenant_id: str, sweep_id: str) -> Sweep | None:
    return s.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.tenant_id == tenant_id))


def list_sweeps(s: Session, tenant_id: str, *, cursor: str | None, limit: int) -> list[Sweep]:
    """Newest first; ``cursor`` is the last id of the previous page (ids are time-ordered)."""
    q = select(Sweep).where(Sweep.tenant_id == tenant_id)
    if cursor:
        q = q.where(Sweep.id < cursor)
    return list(s.scalars(q.order_by(Sweep.id.desc()).limit(limit)))


def cancel(s: Session, sweep: Sweep) -> None:
    s.execute(update(Sweep).where(Sweep.id == sweep.id).values(cancel_requested=True))
    for job in children(s, sweep.id):
        if job.status not in TERMINAL_STATES:
            repo.request_cancel(s, job)
    s.refresh(sweep)
