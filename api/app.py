"""FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .auth import KeyCache
from .dashboard import mount_dashboard
from .db.session import session_factory
from .deps import Services
from .errors import install_error_handlers
from .limits import RequestGuardMiddleware
from .metrics import MetricsMiddleware
from .queue import JobQueue
from .routes import datasets, health, jobs, sweeps, webhooks
from .settings import Settings, get_settings
from .storage import storage_from_settings
from .webhooks.loop import DeliveryLoop

log = logging.getLogger("xtc.api")


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
    app.add_middleware(RequestGuardMiddleware, upload_limit=settings.max_upload_bytes,
                       body_limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    mount_dashboard(app)
    app.include_router(sweeps.router)
    app.include_router(webhooks.router)
    return app
