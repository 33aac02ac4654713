"""Webhook settings (signing secret, default URL) and the delivery log of a job or sweep."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import sweeps
from ..auth import Principal, current_tenant
from ..db import repo
from ..db.models import TenantWebhook, WebhookAttempt, WebhookDelivery, utcnow
from ..deps import Services, db_session, services
from ..errors import not_found
from ..schemas import Strict, error_responses
from ..webhooks.signing import new_secret
from ..webhooks.targets import validate_webhook_url

router = APIRouter(tags=["webhooks"], responses=error_responses(400, 401, 404, 422))


class SecretOut(BaseModel):
    secret: str  # shown this once; store it to verify signatures
    rotated_at: datetime


class WebhookSettingsIn(Strict):
    default_url: str | None = Field(default=None, max_length=2000)


class WebhookSettingsOut(BaseModel):
    default_url: str | None
    has_secret: bool
    rotated_at: datetime | None


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float | None


class DeliveryOut(BaseModel):
    id: str  # the webhook-id header
    event: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


def _conf(session: Session, tenant_id: str) -> TenantWebhook:
    conf = session.get(TenantWebhook, tenant_id)
    if conf is None:
        conf = TenantWebhook(tenant_id=tenant_id)
        session.add(conf)
    return conf


@router.post("/webhooks/secret", status_code=201, response_model=SecretOut)
def rotate_secret(tenant: Principal = Depends(current_tenant),
                  session: Session = Depends(db_session)) -> SecretOut:
    """Create or rotate the tenant's signing secret. Pending deliveries are signed with the new one."""
    conf = _conf(session, tenant.id)
    conf.secret, conf.rotated_at = new_secret(), utcnow()
    session.commit()
    return SecretOut(secret=conf.secret, rotated_at=repo.as_utc(conf.rotated_at))


def _settings_out(conf: TenantWebhook | None) -> WebhookSettingsOut:
    return WebhookSettingsOut(default_url=conf.default_url if conf else None,
                              has_secret=bool(conf and conf.secret),
                              rotated_at=repo.as_utc(conf.rotated_at) if conf else None)


@router.get("/webhooks/settings", response_model=WebhookSettingsOut)
def get_settings(tenant: Principal = Depends(current_tenant),
                 session: Session = Depends(db_session)) -> WebhookSettingsOut:
    return _settings_out(session.get(TenantWebhook, tenant.id))


@router.put("/webhooks/settings", response_model=WebhookSettingsOut)
def put_settings(body: WebhookSettingsIn, tenant: Principal = Depends(current_tenant),
                 session: Session = Depends(db_session),
                 svc: Services = Depends(services)) -> WebhookSettingsOut:
    """The tenant's default URL: used for every job and sweep that names none (null: no default)."""
    validate_webhook_url(session, tenant.id, body.default_url, svc.settings)
    conf = _conf(session, tenant.id)
    conf.default_url = body.default_url
    session.commit()
    return _settings_out(conf)


def _log(session: Session, subject_id: str) -> DeliveryList:
    deliveries = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.subject_id == subject_id)
                                      .order_by(WebhookDelivery.created_at, WebhookDelivery.id)))
    attempts: dict[str, list[Any]] = {}
    if deliveries:
        for a in session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_([d.id for d in deliveries])).order_by(WebhookAttempt.id)):
            attempts.setdefault(a.delivery_id, []).append(AttemptOut(
                attempted_at=repo.as_utc(a.attempted_at), status_code=a.status_code, error=a.error,
                duration_ms=a.duration_ms))
    return DeliveryList(data=[DeliveryOut(
        id=d.id, event=d.event, url=d.url, status=d.status, attempts=d.attempts,
        next_attempt_at=repo.as_utc(d.next_attempt_at) if d.status == "pending" else None,
        last_status_code=d.last_status_code, last_error=d.last_error, created_at=repo.as_utc(d.created_at),
        delivered_at=repo.as_utc(d.delivered_at), log=attempts.get(d.id, [])) for d in deliveries])


@router.get("/jobs/{job_id}/webhooks", response_model=DeliveryList)
def job_webhooks(job_id: str, tenant: Principal = Depends(current_tenant),
                 session: Session = Depends(db_session)) -> DeliveryList:
    if repo.get_job(session, tenant.id, job_id) is None:
        raise not_found("job", job_id)
    return _log(session, job_id)


@router.get("/sweeps/{sweep_id}/webhooks", response_model=DeliveryList)
def sweep_webhooks(sweep_id: str, tenant: Principal = Depends(current_tenant),
                   session: Session = Depends(db_session)) -> DeliveryList:
    if sweeps.get_sweep(session, tenant.id, sweep_id) is None:
        raise not_found("sweep", sweep_id)
    return _log(session, sweep_id)
