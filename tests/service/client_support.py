"""Running the real client (`python -m xtc_client`) and a real `xtc serve` as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# A few seconds of training with several dev evaluations, so curves and bars have points to show.
SMOKE_ARGS = ["--layers", "2", "--budget", "smoke", "--set", "reduction_steps=12", "--set", "quant_steps=16",
              "--set", "eval_every=4", "--set", "max_train_examples=64", "--set", "max_eval_examples=48"]
LONG_ARGS = ["--layers", "2", "--budget", "smoke", "--set", "reduction_steps=100000",
             "--set", "quant_steps=100000", "--set", "max_train_examples=32", "--set", "max_eval_examples=48"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XTC_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="200")
    env.update(extra)
    return env


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_client(*args: str, env: dict[str, str], timeout: float = 240) -> Result:
    out = subprocess.run([sys.executable, "-m", "xtc_client", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    return Result(out.returncode, out.stdout, out.stderr)


def assert_one_line_error(result: Result, rc: int, needle: str, after_progress: bool = False) -> None:
    """The failure is one `error:` line (the last one, after any progress display) and an exit code."""
    assert result.rc == rc, (result.rc, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert after_progress or len(lines) == 1, result.stderr
    assert lines[-1].startswith("error:") and needle in lines[-1], result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1
    assert "Traceback" not in result.stderr


class ServeProcess:
    """`xtc serve` exactly as a user starts it, in its own process group, stopped by pid."""

    def __init__(self, data_dir: Path, glue_dir: Path, **settings: str):
        self.data_dir, self.port = data_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The tests' model folders live under the session's temp root (data_dir is two levels below it).
        settings.setdefault("XTC_MODEL_DIRS", str(data_dir.parents[1]))
        env = base_env(XTC_GLUE_DIR=str(glue_dir), XTC_PROGRESS_INTERVAL_S="0.1",
                       XTC_CANCEL_CHECK_INTERVAL_S="0.2", **settings)
        self.log = data_dir.parent / f"serve-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from xtc_core.cli import main; main()", "serve", "--port",
                 str(self.port), "--data-dir", str(data_dir)],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise AssertionError(f"xtc serve exited {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    # the worker subprocess is ready once it logs so (it imports torch first)
                    worker_log = self.data_dir / "worker.log"
                    if worker_log.exists() and " ready." in worker_log.read_text(errors="replace"):
                        return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"xtc serve not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    @property
    def key(self) -> str:
        return (self.data_dir / "api_key").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful stop; it then stops its worker
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
