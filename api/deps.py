"""Per-request dependencies: a database session and the services the app holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from .queue import JobQueue
from .settings import Settings
from .storage import Storage


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    queue: JobQueue


async def services(request: Request) -> Services:
    # async on purpose: a sync dependency costs a thread-pool hop per request for no I/O at all.
    return request.app.state.services


def db_session(request: Request) -> Iterator[Session]:
    # Routes commit explicitly; anything left uncommitted (an error path) is rolled back on close.
    with request.app.state.services.sessions() as session:
        yield session
