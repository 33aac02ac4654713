"""Engines and sessions, one engine per database URL per process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    # psycopg 3 is the driver we ship; a bare postgresql:// would make SQLAlchemy look for psycopg2.
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # API and worker are separate processes writing the same file: WAL lets readers proceed while
    # the worker writes, busy_timeout waits for the lock instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}


def session_factory(url: str) -> sessionmaker[Session]:
    with _lock:
        if url not in _factories:
            _factories[url] = sessionmaker(make_engine(url), expire_on_commit=False)
        return _factories[url]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any exception."""
    with session_factory(url)() as session, session.begin():
        yield session


def dispose_all() -> None:
    with _lock:
        for factory in _factories.values():
            factory.kw["bind"].dispose()
        _factories.clear()


def _after_fork_in_child() -> None:
    """A forked child (Celery's prefork pool) must not reuse the parent's pooled connections: two
    processes on one socket corrupt the protocol and the server drops it (seen as "server closed the
    connection unexpectedly" in a child while the parent's supervisor thread queried). SQLAlchemy's
    recipe: dispose(close=False) in the child, leaving the parent's connections open for the parent.
    The lock is replaced, not taken: another thread of the parent may have held it at fork time."""
    global _lock
    _lock = threading.Lock()
    for factory in _factories.values():
        factory.kw["bind"].dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)
