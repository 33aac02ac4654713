"""The real `xtc jobs` client (a subprocess) against real servers: `xtc serve` (SQLite, local files,
embedded broker) and the Postgres/Redis/S3 stack with a Celery worker."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from .client_support import (
    LONG_ARGS,
    ROOT,
    SMOKE_ARGS,
    ServeProcess,
    assert_one_line_error,
    base_env,
    free_port,
    run_client,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def serve(tmp_path_factory, small_glue) -> ServeProcess:
    service = ServeProcess(tmp_path_factory.mktemp("serve") / "data", small_glue).wait_ready()
    yield service
    service.stop()


@pytest.fixture
def env(serve) -> dict[str, str]:
    # No XTC_API_KEY: the client must find the key file `xtc serve` wrote in its data dir.
    return base_env(XTC_SERVER=serve.url, XTC_DATA_DIR=str(serve.data_dir))


def wait_status(env, job_id: str, statuses: tuple[str, ...], stage: str | None = None, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = run_client("jobs", "show", job_id, "--json", env=env).json()
        if job["status"] in statuses and (stage is None or job["stage"] == stage):
            return job
        assert time.monotonic() < deadline and job["status"] in ("queued", "running"), job
        time.sleep(0.3)


def check_download(env, job_id: str, out: Path) -> None:
    """Download, verify, then resume from a half file and recover from a corrupt one."""
    listing = {a["name"]: a for a in httpx.get(
        f"{env['XTC_SERVER']}/jobs/{job_id}/artifacts",
        headers={"Authorization": f"Bearer {env.get('XTC_API_KEY') or key_of(env)}"}).json()["data"]}
    r = run_client("jobs", "download", job_id, "--out", str(out), "--json", env=env)
    assert r.rc == 0, r.stderr
    files = {f["name"]: f for f in r.json()["files"]}
    assert set(files) == set(listing) >= {"model.safetensors", "config.json", "xtc.json", "metrics.json"}
    for name, art in listing.items():
        assert sha256(out / name) == art["sha256"] and (out / name).stat().st_size == art["size"]
        assert not (out / f"{name}.part").exists()

    # An interrupted transfer left the first half behind: the client asks only for the rest.
    model, art = out / "model.safetensors", listing["model.safetensors"]
    half = art["size"] // 2
    (out / "model.safetensors.part").write_bytes(model.read_bytes()[:half])
    model.unlink()
    r = run_client("jobs", "download", job_id, "--out", str(out), "--name", "model.safetensors", "--json",
                   env=env)
    assert r.rc == 0, r.stderr
    (got,) = r.json()["files"]
    assert got["resumed_from"] == half and not got["restarted"] and not got["skipped"]
    assert sha256(model) == art["sha256"]

    # A .part that is not a prefix of the artifact fails verification once, then is fetched whole.
    model.unlink()
    (out / "model.safetensors.part").write_bytes(b"\0" * half)
    r = run_client("jobs", "download", job_id, "--out", str(out), "--name", "model.safetensors", "--json",
                   env=env)
    assert r.rc == 0, r.stderr
    (got,) = r.json()["files"]
    assert got["restarted"] and sha256(model) == art["sha256"]

    # Everything already there and verified: nothing is fetched again.
    r = run_client("jobs", "download", job_id, "--out", str(out), "--json", env=env)
    assert r.rc == 0 and all(f["skipped"] for f in r.json()["files"])


def key_of(env) -> str:
    return (Path(env["XTC_DATA_DIR"]) / "api_key").read_text().strip()


def test_embedded_submit_wait_watch_download(serve, env, tiny_model_dir, tmp_path):
    r = run_client("jobs", "submit", "--model", str(tiny_model_dir), "--task", "sst2", *SMOKE_ARGS,
                   "--embedding-bits", "8", "--wait", "--json", env=env)
    assert r.rc == 0, r.stderr
    job = r.json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert job["request"]["compression"] == {"weight_bits": 1, "activation_bits": 8, "layers": 2,
                                             "weight_groups": 1, "embedding_bits": 8}
    assert job["request"]["training"]["overrides"]["eval_every"] == 4  # --set values arrive typed
    m = job["metrics"]
    assert m["packed_bytes"] < m["fp32_bytes"] and m["main_metric"] == "accuracy"

    # watch --json on the finished job replays every event, then the job; exit 0 = succeeded.
    r = run_client("jobs", "watch", job["id"], "--json", env=env)
    assert r.rc == 0, r.stderr
    lines = r.lines()
    events = [line["event"] for line in lines[:-1]]
    assert lines[-1]["job"]["status"] == "succeeded"
    assert [e["status"] for e in events if e["kind"] == "status"] == ["queued", "running", "succeeded"]
    trained = [e for e in events if e["stage"] == "quantization" and e["loss"] is not None]
    assert trained and trained[-1]["step"] == 16 and "accuracy" in trained[-1]["metrics"]

    # The human view: a bar per stage with its loss and dev metric, and the summary line.
    r = run_client("jobs", "watch", job["id"], env=env)
    assert r.rc == 0, r.stderr
    for needle in ("layer_reduction", "quantization", "loss", "accuracy", "16/16", "succeeded"):
        assert needle in r.stderr, r.stderr
    assert f"job {job['id']} succeeded" in r.stdout

    listed = run_client("jobs", "list", "--json", env=env).json()["data"]
    assert job["id"] in [j["id"] for j in listed]
    shown = run_client("jobs", "show", job["id"], env=env)
    assert shown.rc == 0 and "succeeded" in shown.stdout and "smaller" in shown.stdout

    check_download(env, job["id"], tmp_path / "ckpt")
    # the option reached the worker: 8-bit word embeddings under 1-bit encoder weights
    meta = json.loads((tmp_path / "ckpt" / "xtc.json").read_text())
    assert meta["embedding_bits"] == 8 and meta["weight_bits"] == 1
    assert meta["quantized"]["bert.embeddings.word_embeddings.weight"]["bits"] == 8


def test_embedded_cancel_and_dataset_upload(serve, env, tiny_model_dir, small_glue, tmp_path):
    train = tmp_path / "reviews.csv"
    rows = (small_glue / "SST-2" / "train.tsv").read_text().splitlines()[1:41]
    train.write_text("review,sentiment\n" + "".join(
        '"{}",{}\n'.format(*line.split("\t")) for line in rows))
    r = run_client("jobs", "submit", "--model", str(tiny_model_dir), "--dataset", str(train),
                   "--text-column", "review", "--label-column", "sentiment", *LONG_ARGS, "--json", env=env)
    assert r.rc == 0, r.stderr
    job = r.json()
    assert job["request"]["task"]["columns"] == {"text": "review", "text_pair": None, "label": "sentiment"}
    assert job["request"]["task"]["train_dataset"].startswith("ds_")
    wait_status(env, job["id"], ("running",), stage="layer_reduction")

    watcher = subprocess.Popen([sys.executable, "-m", "xtc_client", "jobs", "watch", job["id"]], env=env,
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r = run_client("jobs", "cancel", job["id"], env=env)
    assert r.rc == 0 and job["id"] in r.stdout, r.stderr
    _, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 6 and f"job {job['id']} was cancelled" in stderr, stderr
    assert run_client("jobs", "show", job["id"], "--json", env=env).json()["status"] == "cancelled"
    assert_one_line_error(run_client("jobs", "download", job["id"], "--out", str(tmp_path / "x"), env=env),
                          4, "no artifacts (status cancelled)")


def test_client_errors(serve, env, tiny_model_dir, tmp_path):
    bad = {**env, "XTC_API_KEY": "xtc_not-a-key"}
    assert_one_line_error(run_client("jobs", "list", env=bad), 3, "invalid or revoked API key")
    no_key = {**env, "XTC_DATA_DIR": str(tmp_path / "nowhere")}
    assert_one_line_error(run_client("jobs", "list", env=no_key), 3, "no API key")
    assert_one_line_error(run_client("jobs", "show", "job_nope", env=env), 4, "not found")
    assert_one_line_error(run_client("jobs", "watch", "job_nope", env=env), 4, "not found")
    down = {**env, "XTC_SERVER": f"http://127.0.0.1:{free_port()}"}
    assert_one_line_error(run_client("jobs", "list", env=down), 5, "cannot reach the XTC server")
    assert_one_line_error(run_client("jobs", "submit", "--task", "nope", env=env), 2, "unknown_task")
    assert_one_line_error(run_client("jobs", "submit", "--task", "sst2", "--layers", "x", env=env), 2,
                          "--layers")
    assert_one_line_error(run_client("jobs", "submit", "--dataset", str(tmp_path / "missing.csv"), env=env),
                          2, "no such file")
    # A job that fails in the worker: --wait exits 1 with the job's error code.
    r = run_client("jobs", "submit", "--model", "someone/no-such-model", "--task", "sst2", *SMOKE_ARGS,
                   "--wait", env=env)
    assert_one_line_error(r, 1, "model_load_failed", after_progress=True)


def test_client_never_imports_torch(serve, env, tmp_path):
    script = textwrap.dedent("""
        import sys
        from xtc_client.cli import main
        runs = ((["jobs", "list", "--json"], 0), (["jobs", "submit", "--help"], 0),
                (["jobs", "submit", "--task", "nope", "--layers", "1,2", "--set", "lr=1e-5"], 2))
        for argv, code in runs:
            sys.argv = ["xtc"] + argv
            try:
                main()
            except SystemExit as exc:
                assert (exc.code or 0) == code, (argv, exc.code)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "fastapi",
                                                                       "sqlalchemy", "celery"))
        assert not loaded, loaded
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("clean")


def test_entry_point_plugs_into_xtc():
    import typer
    from typer.testing import CliRunner

    from xtc_client.cli import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["jobs", "--help"])
    assert result.exit_code == 0
    for command in ("submit", "list", "show", "watch", "cancel", "download"):
        assert command in result.output
    result = CliRunner().invoke(app, ["sweeps", "--help"])
    assert result.exit_code == 0
    for command in ("submit", "list", "show", "cancel"):
        assert command in result.output
    text = (ROOT / "pyproject.toml").read_text()
    assert 'client = "xtc_client.cli:register"' in text


# ---- the Postgres / Redis / S3 stack -------------------------------------------------------------

def test_live_stack_submit_download_cancel_and_tenancy(live_url, keys, tiny_model_dir, small_glue, tmp_path):
    alice = base_env(XTC_SERVER=live_url, XTC_API_KEY=keys["alice"])
    bob = base_env(XTC_SERVER=live_url, XTC_API_KEY=keys["bob"])
    r = run_client("jobs", "submit", "--model", str(tiny_model_dir), "--task", "sst2", *SMOKE_ARGS,
                   "--wait", env=alice)
    assert r.rc == 0, r.stderr
    assert "quantization" in r.stderr and "succeeded" in r.stdout
    job_id = r.stdout.split()[1]
    check_download(alice, job_id, tmp_path / "ckpt")  # S3 (moto) serves the ranges here

    # Another tenant sees nothing of it.
    assert_one_line_error(run_client("jobs", "show", job_id, env=bob), 4, "not found")
    assert_one_line_error(run_client("jobs", "download", job_id, "--out", str(tmp_path / "b"), env=bob),
                          4, "not found")
    assert job_id not in run_client("jobs", "list", "--json", env=bob).stdout

    # Own train and dev files (JSONL), each uploaded with the column mapping, then cancelled mid-run.
    files = {}
    for split, n in (("train", 40), ("dev", 16)):
        rows = (small_glue / "SST-2" / f"{split}.tsv").read_text().splitlines()[1: n + 1]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps({"text": t, "y": int(y)}) + "\n"
                                        for t, y in (line.split("\t") for line in rows)))
    r = run_client("jobs", "submit", "--model", str(tiny_model_dir), "--train", str(files["train"]),
                   "--dev", str(files["dev"]), "--text-column", "text", "--label-column", "y", *LONG_ARGS,
                   "--json", env=alice)
    assert r.rc == 0, r.stderr
    task = r.json()["request"]["task"]
    assert task["train_dataset"] != task["dev_dataset"] and task["columns"]["label"] == "y"
    long_id = r.json()["id"]
    wait_status(alice, long_id, ("running",), stage="layer_reduction")
    assert run_client("jobs", "cancel", long_id, env=alice).rc == 0
    r = run_client("jobs", "watch", long_id, "--json", env=alice, timeout=60)
    assert r.rc == 6 and r.lines()[-1]["job"]["status"] == "cancelled"
    assert_one_line_error(r, 6, "was cancelled", after_progress=True)
