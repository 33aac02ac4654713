"""Checks on a webhook URL given with a job or sweep, at creation time (a 422 now, not a silent
failure later)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..db.models import TenantWebhook
from ..errors import ApiError
from ..settings import Settings
from .urls import BadWebhookUrl, check_url


def validate_webhook_url(s: Session, tenant_id: str, url: str | None, settings: Settings) -> None:
    if url is None:
        return
    conf = s.get(TenantWebhook, tenant_id)
    if conf is None or not conf.secret:
        raise ApiError(409, "webhook_secret_missing",
                       "create a signing secret first (POST /webhooks/secret); it is shown only once")
    try:
        check_url(url, allow_private=settings.webhook_allow_private)
    except BadWebhookUrl as exc:
        raise ApiError(422, "invalid_webhook_url", str(exc)) from None
