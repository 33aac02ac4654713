"""API-key authentication: ``Authorization: Bearer <key>`` -> the key's tenant."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .db import repo
from .errors import ApiError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    """The caller's tenant. Every repository read is scoped by ``id``."""

    id: str
    name: str


class KeyCache:
    """Valid keys seen recently (by hash), so polling clients do not cost a key lookup per request.

    Only successes are cached (random bad keys cannot grow it). A revoked key keeps working for at
    most ``ttl`` seconds in each API process; set XTC_AUTH_CACHE_S=0 to look every key up.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000):
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Principal | None:
        hit = self._entries.get(key_hash)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude but bounded; refills from the database
            self._entries[key_hash] = (time.monotonic() + self.ttl, principal)


def _lookup(app, key: str) -> Principal | None:
    with app.state.services.sessions() as session:
        tenant = repo.tenant_for_key(session, key)
        return Principal(tenant.id, tenant.name) if tenant else None


async def authenticate(app, header: str) -> Principal:
    """The tenant of an ``Authorization: Bearer <key>`` header value, or ApiError 401."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", _CHALLENGE)
    if len(key) > 512 or "\x00" in key:
        raise ApiError(401, "unauthorized", "invalid or revoked API key", _CHALLENGE)
    cache: KeyCache = app.state.key_cache
    key_hash = repo.hash_key(key)
    principal = cache.get(key_hash)
    if principal is None:
        principal = await run_in_threadpool(_lookup, app, key)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid or revoked API key", _CHALLENGE)
        cache.put(key_hash, principal)
    return principal


# Declares the bearer scheme in the OpenAPI document; the header itself is read below (auto_error off, so
# a missing key gets our JSON 401 rather than FastAPI's).
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer xtc_...`")


async def current_tenant(
    request: Request, _creds: HTTPAuthorizationCredentials | None = Security(bearer),
) -> Principal:
    # The request guard (api/limits.py) already checked the key of a request that carries a body.
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return principal
    return await authenticate(request.app, request.headers.get("authorization", ""))
