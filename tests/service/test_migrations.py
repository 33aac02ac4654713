"""Migrations are the only way the schema is made: they must match the models on both backends."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from api.db.models import Base
from api.db.session import make_engine
from api.migrate import alembic_config, upgrade

from .support import PG_ADMIN, RUN


def assert_models_match(url: str) -> None:
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


@pytest.fixture
def scratch_pg():
    name = f"xtc_mig_{RUN}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        info = conn.info
        url = f"postgresql+psycopg://{info.user}@{info.host}:{info.port}/{name}"
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_downgrade_upgrade_postgres(scratch_pg):
    upgrade(scratch_pg)
    assert_models_match(scratch_pg)
    command.downgrade(alembic_config(scratch_pg), "base")
    upgrade(scratch_pg)
    upgrade(scratch_pg)  # idempotent: `xtc migrate` may run on every deploy
    assert_models_match(scratch_pg)


def test_upgrade_downgrade_upgrade_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    upgrade(url)
    assert_models_match(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    assert_models_match(url)
