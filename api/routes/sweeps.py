"""Sweep routes: create (one child job per grid point), read (table, Pareto front, recommendation),
cancel (every unfinished child)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import sweeps
from ..auth import Principal, current_tenant
from ..db import repo
from ..db.models import Sweep
from ..deps import Services, db_session, services
from ..errors import ApiError, not_found
from ..schemas import error_responses
from ..sweep_schemas import SweepCreate, SweepList, SweepOut
from ..webhooks.targets import validate_webhook_url

log = logging.getLogger("xtc.api")
router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=error_responses(400, 401, 404, 422))


def _replay(session: Session, sweep: Sweep, fingerprint: str, key: str) -> SweepOut:
    if sweep.request_hash != fingerprint:
        raise ApiError(409, "idempotency_conflict",
                       f"Idempotency-Key {key!r} was already used with a different request body")
    out = sweeps.sweep_out(session, sweep)
    session.commit()
    return out


@router.post("", status_code=201, response_model=SweepOut,
             responses={200: {"model": SweepOut, "description": "Replay of an earlier request with the same "
                              "Idempotency-Key"}, **error_responses(409, 413, 503)})
def create_sweep(body: SweepCreate, response: Response,
                 idempotency_key: str | None = Header(default=None, max_length=255),
                 tenant: Principal = Depends(current_tenant),
                 session: Session = Depends(db_session), svc: Services = Depends(services)) -> SweepOut:
    fingerprint = body.fingerprint()
    if idempotency_key:
        existing = sweeps.sweep_by_idempotency_key(session, tenant.id, idempotency_key)
        if existing is not None:
            response.status_code = 200
            return _replay(session, existing, fingerprint, idempotency_key)
    validate_webhook_url(session, tenant.id, body.webhook_url, svc.settings)
    try:
        sweep, jobs = sweeps.create_sweep(session, tenant.id, body, svc.settings.max_sweep_points,
                                          model_dirs=svc.settings.model_dirs, queue=svc.settings.queue,
                                          idempotency_key=idempotency_key)
        session.commit()
    except IntegrityError:
        # Two requests with the same key raced; the loser answers with the winner's sweep.
        session.rollback()
        existing = sweeps.sweep_by_idempotency_key(session, tenant.id, idempotency_key or "")
        if existing is None:
            raise
        response.status_code = 200
        return _replay(session, existing, fingerprint, idempotency_key or "")
    try:
        for job in jobs:
            svc.queue.enqueue(job.id)
            repo.mark_enqueued(session, job.id)
    except Exception as exc:
        log.warning("enqueue failed for sweep %s: %s", sweep.id, exc)
        session.rollback()
        # Forgetting the sweep also frees its Idempotency-Key: a retry with it creates and runs it.
        sweeps.discard_unqueued_sweep(session, sweep, jobs)
        session.commit()
        raise ApiError(503, "queue_unavailable", "the job queue is unavailable; retry later",
                       {"Retry-After": "5"}) from None
    session.commit()
    return sweeps.sweep_out(session, sweep)


@router.get("", response_model=SweepList)
def list_sweeps(cursor: str | None = Query(default=None, max_length=64),
                limit: int = Query(default=20, ge=1, le=100), tenant: Principal = Depends(current_tenant),
                session: Session = Depends(db_session)) -> SweepList:
    found = sweeps.list_sweeps(session, tenant.id, cursor=cursor, limit=limit)
    out = [sweeps.sweep_out(session, sw) for sw in found]
    session.commit()
    return SweepList(data=out, next_cursor=found[-1].id if len(found) == limit else None)


def _sweep(session: Session, tenant: Principal, sweep_id: str):
    sweep = sweeps.get_sweep(session, tenant.id, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: str, tenant: Principal = Depends(current_tenant),
              session: Session = Depends(db_session)) -> SweepOut:
    out = sweeps.sweep_out(session, _sweep(session, tenant, sweep_id))
    session.commit()  # a status the children imply is written on read, too
    return out


@router.post("/{sweep_id}/cancel", response_model=SweepOut, responses=error_responses(409))
def cancel_sweep(sweep_id: str, tenant: Principal = Depends(current_tenant),
                 session: Session = Depends(db_session)) -> SweepOut:
    sweep = _sweep(session, tenant, sweep_id)
    if sweep.status in ("succeeded", "failed"):
        raise ApiError(409, "sweep_finished", f"sweep {sweep_id!r} already {sweep.status}; nothing to cancel")
    sweeps.cancel(session, sweep)
    out = sweeps.sweep_out(session, sweep)
    session.commit()
    return out
