"""Apply Alembic migrations programmatically (used by `xtc migrate`, `xtc serve` and the tests)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def alembic_config(database_url: str):
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    from alembic import command

    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)
