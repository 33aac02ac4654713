"""Alembic environment: targets the API's metadata; the URL comes from the caller or the settings."""

from __future__ import annotations

from alembic import context

from api.db.models import Base
from api.db.session import make_engine
from api.settings import Settings

config = context.config


def _url() -> str:
    # `xtc migrate` and the tests pass the URL explicitly; plain `alembic upgrade head` reads XTC_*.
    return config.attributes.get("database_url") or Settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        # Batch mode lets later migrations ALTER tables on SQLite (which copies the table).
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
