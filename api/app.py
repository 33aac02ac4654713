"""FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import KeyCache
from .db.session import session_factory
from .deps import Services
from .errors import error_response, install_error_handlers
from .metrics import MetricsMiddleware
from .queue import JobQueue
from .routes import datasets, health, jobs, sweeps, webhooks
from .settings import Settings, get_settings
from .storage import storage_from_settings
from .webhooks.loop import DeliveryLoop

log = logging.getLogger("xtc.api")

# Room for the multipart envelope and form fields around the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class UploadLimitMiddleware:
    """Refuse an oversize upload from its Content-Length, before reading a byte of it.

    Chunked uploads (no Content-Length) are still cut off by the route while it copies the file.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                response = error_response(
                    413, "payload_too_large",
                    f"upload exceeds the limit of {self.limit - MULTIPART_OVERHEAD} bytes")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        storage = storage_from_settings(settings)
        app.state.services = Services(
            settings=settings, sessions=session_factory(settings.database_url), storage=storage,
            queue=JobQueue(settings),
        )
        app.state.key_cache = KeyCache(settings.auth_cache_s)
        deliveries = DeliveryLoop(settings).start() if settings.webhook_delivery_in_api else None
        log.info("xtc api ready (database %s, storage %s)", settings.database_url.split("@")[-1],
                 settings.storage_url)
        yield
        if deliveries:
            deliveries.stop()

    app = FastAPI(title="XTC service", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(UploadLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(sweeps.router)
    app.include_router(webhooks.router)
    return app
