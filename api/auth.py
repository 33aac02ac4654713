"""API-key authentication: ``Authorization: Bearer <key>`` -> the key's tenant."""

from __future__ import annotations

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from .db import repo
from .db.models import Tenant
from .deps import db_session
from .errors import ApiError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def current_tenant(request: Request, session: Session = Depends(db_session)) -> Tenant:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", _CHALLENGE)
    tenant = repo.tenant_for_key(session, key.strip())
    if tenant is None:
        raise ApiError(401, "unauthorized", "invalid or revoked API key", _CHALLENGE)
    return tenant
