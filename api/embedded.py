"""The embedded default behind `xtc serve`: SQLite, a local artifact folder and Celery on the
filesystem broker, with the worker supervised as a subprocess. No Redis, Postgres or Docker.

The worker is a separate process (``celery ... --pool=solo``) rather than a thread: torch training
holds the GIL for long stretches and would starve the API's event loop, and a crashed worker must not
take the API down with it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from .db import repo
from .db.session import session_scope
from .settings import Settings

log = logging.getLogger("xtc.embedded")
ROOT = Path(__file__).resolve().parents[1]
LOCAL_TENANT = "local"


def _die_with_parent() -> None:
    """Runs in the child before exec: if `xtc serve` is killed outright (SIGKILL), the worker gets a
    SIGTERM instead of living on as an orphan still consuming the queue."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def embedded_settings(data_dir: str | Path = "./xtc-data", **overrides) -> Settings:
    d = Path(data_dir).expanduser().resolve()
    values = dict(
        data_dir=str(d), database_url=f"sqlite:///{d}/xtc.db", broker_url="filesystem://",
        broker_folder=str(d / "broker"), storage_url=f"file://{d}/artifacts", work_dir=str(d / "work"),
    )
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as XTC_* variables, so a child process sees exactly what this one does."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"XTC_{name.upper()}"] = str(value)
    return env


def ensure_local_key(settings: Settings) -> str:
    """Reuse <data dir>/api_key when it is still valid; otherwise create the local tenant's key."""
    key_file = Path(settings.data_dir) / "api_key"
    with session_scope(settings.database_url) as s:
        if key_file.exists():
            key = key_file.read_text().strip()
            if key and repo.tenant_for_key(s, key) is not None:
                return key
        key = repo.create_api_key(s, repo.get_or_create_tenant(s, LOCAL_TENANT))
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a secret: owner-only
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


class WorkerProcess:
    """A Celery worker subprocess, restarted if it dies while we are running."""

    def __init__(self, settings: Settings, log_file: Path | None = None):
        self.settings = settings
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, **settings_env(self.settings)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=solo",
               "--concurrency=1", "-Q", self.settings.queue, "--loglevel=INFO",
               "--hostname", f"xtc-embedded-{os.getpid()}@%h"]
        if self.log_file is None:
            return subprocess.Popen(cmd, env=env, cwd=str(ROOT), preexec_fn=_die_with_parent)
        with open(self.log_file, "ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent)

    def start(self) -> None:
        self.proc = self._spawn()
        self._watch = threading.Thread(target=self._supervise, name="xtc-worker-watch", daemon=True)
        self._watch.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(2.0):
            if self.proc is not None and self.proc.poll() is not None:
                log.error("worker exited with %s; restarting it", self.proc.returncode)
                self.proc = self._spawn()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # Celery's warm shutdown: a running job's message is not acked
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EmbeddedService:
    """Everything `xtc serve` runs. Tests use start()/stop(); the CLI uses serve_forever()."""

    def __init__(self, data_dir: str | Path = "./xtc-data", host: str = "127.0.0.1", port: int = 8000,
                 workers: int = 1, **overrides):
        self.settings = embedded_settings(data_dir, **overrides)
        self.host, self.port, self.workers = host, port, workers
        self.api_key: str | None = None
        self.worker = WorkerProcess(self.settings, Path(self.settings.data_dir) / "worker.log")
        self._server = None

    def prepare(self) -> str:
        from .migrate import upgrade

        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        upgrade(self.settings.database_url)
        self.api_key = ensure_local_key(self.settings)
        return self.api_key

    def serve_forever(self) -> None:
        import uvicorn

        from .app import create_app

        if self.api_key is None:
            self.prepare()
        self.worker.start()
        try:
            if self.workers > 1:
                self._run_processes(uvicorn)
            else:
                uvicorn.run(create_app(self.settings), host=self.host, port=self.port, access_log=False)
        finally:
            self.worker.stop()

    def _run_processes(self, uvicorn) -> None:
        """Several API processes: they read the settings from XTC_* variables (as the worker does) and
        write their Prometheus samples to one folder that /metrics sums."""
        import shutil

        metrics_dir = Path(self.settings.data_dir) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ.update(settings_env(self.settings))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        uvicorn.run("api.app:create_app", factory=True, host=self.host, port=self.port, access_log=False,
                    workers=self.workers)

    def start(self) -> None:
        """Non-blocking variant for tests: the API in a thread, the worker as a subprocess."""
        from .app import create_app
        from .server import ServerThread

        self.prepare()
        self.worker.start()
        self._server = ServerThread(create_app(self.settings), self.host, self.port).start()

    @property
    def base_url(self) -> str:
        return self._server.url if self._server else f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self.worker.stop()
