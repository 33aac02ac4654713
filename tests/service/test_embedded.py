"""The embedded default (`xtc serve`): SQLite + local folder + filesystem broker + worker subprocess."""

from __future__ import annotations

import socket
import stat

import typer
from typer.testing import CliRunner

from api.cli import register
from api.embedded import EmbeddedService

from .support import TERMINAL, assert_reproduces, client, download_all, job_body, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_embedded_service_full_flow(tmp_path, tiny_model_dir, small_glue):
    service = EmbeddedService(tmp_path / "data", port=free_port(), glue_dir=str(small_glue),
                              progress_interval_s=0.2, cancel_check_interval_s=0.2,
                              model_dirs=str(tiny_model_dir.parent))
    service.start()
    try:
        key_file = tmp_path / "data" / "api_key"
        assert key_file.read_text().strip() == service.api_key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        with client(service.base_url, service.api_key) as c:
            assert c.get("/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}
            r = c.post("/jobs", json=job_body(tiny_model_dir), headers={"Idempotency-Key": "k1"})
            assert r.status_code == 201, r.text
            job = wait_for(c, r.json()["id"], TERMINAL, timeout=180)
            assert job["status"] == "succeeded", job
            download_all(c, job["id"], tmp_path / "ckpt")
            assert (tmp_path / "data" / "artifacts" / "jobs" / job["id"] / "model.safetensors").exists()
        assert_reproduces(tmp_path / "ckpt", job, small_glue)
    finally:
        service.stop()
    # A restart keeps the data and the key.
    again = EmbeddedService(tmp_path / "data", port=free_port())
    assert again.prepare() == service.api_key


def test_cli_commands_register_and_work(tmp_path, monkeypatch):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/cli.db"
    result = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--database-url", url])
    assert result.exit_code == 1 and "xtc migrate" in result.output  # no schema yet: a clear hint
    result = runner.invoke(app, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--database-url", url])
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    assert key.startswith("xtc_") and len(key) > 40

    from api.db import repo
    from api.db.session import session_scope

    with session_scope(url) as s:
        assert repo.tenant_for_key(s, key).name == "acme"
    for command in ("serve", "migrate", "worker"):
        assert runner.invoke(app, [command, "--help"]).exit_code == 0
