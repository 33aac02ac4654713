"""Job routes: create (idempotent), list, read, cancel, events, artifacts."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..auth import Principal, current_tenant
from ..db import repo
from ..db.models import Job
from ..deps import Services, db_session, services
from ..errors import ApiError, not_found
from ..metrics import JOBS_CREATED
from ..ranges import parse_range
from ..schemas import (
    ArtifactList,
    ArtifactOut,
    EventList,
    EventOut,
    JobCreate,
    JobList,
    JobOut,
    error_responses,
)
from ..validation import validate_job
from ..webhooks.targets import validate_webhook_url

log = logging.getLogger("xtc.api")
router = APIRouter(prefix="/jobs", tags=["jobs"], responses=error_responses(400, 401, 404, 422))

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def job_out(job: Job) -> JobOut:
    error = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    return JobOut(
        id=job.id, status=job.status, stage=job.stage, progress=job.progress, eta_seconds=job.eta_seconds,
        cancel_requested=job.cancel_requested, request=job.request, metrics=job.metrics,
        latest_metrics=job.latest_metrics, error=error,
        created_at=repo.as_utc(job.created_at), started_at=repo.as_utc(job.started_at),
        finished_at=repo.as_utc(job.finished_at), sweep_id=job.sweep_id, webhook_url=job.webhook_url,
    )


def _replay(job: Job, fingerprint: str, key: str) -> JobOut:
    if job.request_hash != fingerprint:
        raise ApiError(409, "idempotency_conflict",
                       f"Idempotency-Key {key!r} was already used with a different request body")
    return job_out(job)


@router.post("", status_code=201, response_model=JobOut,
             responses={200: {"model": JobOut, "description": "Replay of an earlier request with the same "
                              "Idempotency-Key"}, **error_responses(409, 413, 503)})
def create_job(
    body: JobCreate,
    response: Response,
    idempotency_key: str | None = Header(default=None, max_length=255),
    tenant: Principal = Depends(current_tenant),
    session: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> JobOut:
    fingerprint = body.fingerprint()
    if idempotency_key:
        existing = repo.job_by_idempotency_key(session, tenant.id, idempotency_key)
        if existing is not None:
            response.status_code = 200
            return _replay(existing, fingerprint, idempotency_key)
    stored = validate_job(session, tenant.id, body, svc.settings.model_dirs)
    validate_webhook_url(session, tenant.id, stored.pop("webhook_url", None), svc.settings)
    try:
        job = repo.create_job(session, tenant.id, stored, fingerprint, idempotency_key)
        job.queue = svc.settings.queue  # the supervisor of this queue re-sends it if the message is lost
        job.webhook_url = body.webhook_url
        session.commit()
    except IntegrityError:
        # Two requests with the same key raced; the loser answers with the winner's job.
        session.rollback()
        existing = repo.job_by_idempotency_key(session, tenant.id, idempotency_key or "")
        if existing is None:
            raise
        response.status_code = 200
        return _replay(existing, fingerprint, idempotency_key or "")
    # Enqueue only after the commit, so a worker never receives an id it cannot read.
    try:
        svc.queue.enqueue(job.id)
    except Exception as exc:
        log.warning("enqueue failed for %s: %s", job.id, exc)
        # Forget the job, so a retry with the same Idempotency-Key creates and runs it.
        repo.discard_unqueued_job(session, job.id)
        session.commit()
        raise ApiError(503, "queue_unavailable", "the job queue is unavailable; retry later",
                       {"Retry-After": "5"}) from None
    repo.mark_enqueued(session, job.id)
    session.commit()
    JOBS_CREATED.inc()
    return job_out(job)


@router.get("", response_model=JobList)
def list_jobs(
    status: Status | None = None,
    cursor: str | None = Query(default=None, pattern=r"^job_[0-9a-f]{24}$",
                               description="next_cursor of the previous page"),
    limit: int = Query(default=20, ge=1, le=100),
    tenant: Principal = Depends(current_tenant),
    session: Session = Depends(db_session),
) -> JobList:
    jobs = repo.list_jobs(session, tenant.id, status=status, cursor=cursor, limit=limit)
    next_cursor = jobs[-1].id if len(jobs) == limit else None
    return JobList(data=[job_out(j) for j in jobs], next_cursor=next_cursor)


def _job(session: Session, tenant: Principal, job_id: str) -> Job:
    job = repo.get_job(session, tenant.id, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, tenant: Principal = Depends(current_tenant),
            session: Session = Depends(db_session)) -> JobOut:
    return job_out(_job(session, tenant, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=error_responses(409, 413))
def cancel_job(job_id: str, tenant: Principal = Depends(current_tenant),
               session: Session = Depends(db_session), svc: Services = Depends(services)) -> JobOut:
    job = _job(session, tenant, job_id)
    if job.status in ("succeeded", "failed"):
        raise ApiError(409, "job_finished", f"job {job_id!r} already {job.status}; nothing to cancel")
    job = repo.request_cancel(session, job, lease=timedelta(seconds=svc.settings.job_lease_s))
    session.commit()
    return job_out(job)


@router.get("/{job_id}/events", response_model=EventList)
def job_events(
    job_id: str,
    after: int | None = Query(default=None, ge=0, le=2**63 - 1),
    limit: int = Query(default=100, ge=1, le=1000),
    tenant: Principal = Depends(current_tenant),
    session: Session = Depends(db_session),
) -> EventList:
    _job(session, tenant, job_id)
    events = repo.list_events(session, job_id, after=after, limit=limit)
    data = [
        EventOut(id=e.id, created_at=repo.as_utc(e.created_at), kind=e.kind, status=e.status, stage=e.stage,
                 step=e.step, total=e.total, loss=e.loss, metrics=e.metrics, message=e.message)
        for e in events
    ]
    return EventList(data=data, next_after=events[-1].id if events else after)


@router.get("/{job_id}/artifacts", response_model=ArtifactList)
def list_artifacts(job_id: str, tenant: Principal = Depends(current_tenant),
                   session: Session = Depends(db_session)) -> ArtifactList:
    _job(session, tenant, job_id)
    return ArtifactList(data=[
        ArtifactOut(name=a.name, size=a.size, sha256=a.sha256, url=f"/jobs/{job_id}/artifacts/{a.name}")
        for a in repo.list_artifacts(session, job_id)
    ])


@router.get("/{job_id}/artifacts/{name}", response_class=StreamingResponse, responses={
    200: {"description": "The file, streamed", "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}},
    206: {"description": "The requested byte range (Range, If-Range), streamed", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    **error_responses(416, 503)})
def download_artifact(
    job_id: str, name: str,
    range_: str | None = Header(default=None, alias="range"),
    if_range: str | None = Header(default=None),
    tenant: Principal = Depends(current_tenant),
    session: Session = Depends(db_session), svc: Services = Depends(services),
) -> StreamingResponse:
    _job(session, tenant, job_id)
    art = repo.get_artifact(session, job_id, name)
    if art is None:
        raise not_found("artifact", name)
    etag = f'"{art.sha256}"'
    headers = {
        "Accept-Ranges": "bytes",
        "X-Content-SHA256": art.sha256,
        "ETag": etag,
        "Content-Disposition": f'attachment; filename="{art.name}"',
    }
    # If-Range: resume only if the file is still the one the client has half of; else send it whole.
    wanted = parse_range(range_, art.size) if if_range in (None, etag) else None
    if wanted is None:
        headers["Content-Length"] = str(art.size)
        return StreamingResponse(svc.storage.stream(art.storage_key), media_type="application/octet-stream",
                                 headers=headers)
    headers["Content-Length"] = str(wanted.length)
    headers["Content-Range"] = wanted.content_range(art.size)
    return StreamingResponse(svc.storage.stream(art.storage_key, wanted.start, wanted.end), status_code=206,
                             media_type="application/octet-stream", headers=headers)
