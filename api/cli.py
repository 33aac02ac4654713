"""The service's commands in the `xtc` CLI (plugged in via the `xtc.cli` entry point).

Module-level imports stay light: `xtc --help` must not import FastAPI, SQLAlchemy or torch.
"""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 to expose it)."),
    port: int = typer.Option(8000, help="HTTP port."),
    data_dir: Path = typer.Option(Path("./xtc-data"), help="SQLite database, artifacts, broker, key."),
    workers: int = typer.Option(1, min=1, max=64, help="API processes (the job worker is one more)."),
) -> None:
    """Run the API and a worker on this machine: SQLite, local files, no Redis/Postgres/Docker."""
    from .embedded import EmbeddedService

    service = EmbeddedService(data_dir, host=host, port=port, workers=workers)
    key = service.prepare()
    typer.echo(f"XTC service on http://{host}:{port}  (data: {service.settings.data_dir})")
    typer.echo(f"API key for tenant 'local' (also in {Path(service.settings.data_dir) / 'api_key'}):")
    typer.echo(f"  {key}")
    service.serve_forever()


def migrate(
    database_url: str | None = typer.Option(None, help="Default: XTC_DATABASE_URL or the embedded SQLite."),
) -> None:
    """Apply the database migrations (idempotent)."""
    from .migrate import upgrade
    from .settings import Settings

    url = database_url or Settings().database_url
    upgrade(url)
    typer.echo(f"database is at the latest schema ({url.split('@')[-1]})")


def keys_create(
    tenant: str = typer.Option(..., help="Tenant name; created when new."),
    database_url: str | None = typer.Option(None, help="Default: XTC_DATABASE_URL or the embedded SQLite."),
) -> None:
    """Create an API key for a tenant. The key is printed once and stored only as a hash."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from .db import repo
    from .db.session import session_scope
    from .settings import Settings

    url = database_url or Settings().database_url
    try:
        with session_scope(url) as s:
            key = repo.create_api_key(s, repo.get_or_create_tenant(s, tenant))
    except (OperationalError, ProgrammingError) as exc:
        typer.echo(f"cannot write the key ({type(exc).__name__}); did you run `xtc migrate`?", err=True)
        raise typer.Exit(1) from None
    typer.echo(key)


def worker(
    pool: str = typer.Option("prefork", help="prefork enforces time limits; solo runs in this process."),
    queue: str | None = typer.Option(None, help="Default: XTC_QUEUE."),
) -> None:
    """Run a Celery worker (one job at a time) with settings from XTC_* variables."""
    from worker.celery_app import app as celery_app

    from .settings import get_settings

    celery_app.worker_main(["worker", f"--pool={pool}", "--concurrency=1", "--loglevel=INFO",
                            "-Q", queue or get_settings().queue])


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("migrate")(migrate)
    app.command("worker")(worker)
    keys = typer.Typer(help="Manage API keys.", no_args_is_help=True)
    keys.command("create")(keys_create)
    app.add_typer(keys, name="keys")
