"""`xtc sweeps` (the real client, a subprocess) and `Idempotency-Key` on `POST /sweeps`, against the
Postgres/Redis/S3 stack and its Celery worker."""

from __future__ import annotations

import subprocess
import sys
import time

from api.app import create_app
from api.server import ServerThread

from .client_support import ROOT, assert_one_line_error, base_env, free_port, run_client
from .support import RUN, SMOKE, client

TINY = ["--budget", "smoke", "--set", "max_train_examples=32", "--set", "max_eval_examples=48"]


def test_client_sweep_submit_wait_show_list_and_errors(live_url, keys, tiny_model_dir):
    alice = base_env(XTC_SERVER=live_url, XTC_API_KEY=keys["alice"])
    submit = ["sweeps", "submit", "--model", str(tiny_model_dir), "--task", "sst2", "--weight-bits", "1,2",
              "--layers", "1", *TINY, "--max-drop", "100", "--idempotency-key", f"cli-sweep-{RUN}"]
    r = run_client(*submit, "--wait", "--json", env=alice, timeout=420)
    assert r.rc == 0, (r.stdout, r.stderr)
    sweep = r.json()
    assert sweep["status"] == "succeeded" and [j["status"] for j in sweep["children"]] == ["succeeded"] * 2
    assert sweep["request"]["grid"] == {"weight_bits": [1, 2], "layers": [1], "budgets": None}
    assert sweep["request"]["target"] == {"max_drop": 100.0}
    assert sorted(row["point"] for row in sweep["table"]) == ["w1-l1", "w2-l1"]
    rec = sweep["recommendation"]["point"]
    assert rec in sweep["pareto"]
    assert rec == min(sweep["table"], key=lambda row: row["packed_bytes"])["point"]  # anything qualifies

    # The same key and options again: the same sweep, nothing new runs.
    again = run_client(*submit, "--json", env=alice)
    assert again.rc == 0 and again.json()["id"] == sweep["id"], again.stderr
    assert [j["id"] for j in again.json()["children"]] == [j["id"] for j in sweep["children"]]

    # The human table: every point with its job, the Pareto star and the recommended point.
    r = run_client("sweeps", "show", sweep["id"], env=alice)
    assert r.rc == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines()
            if line.count("│") > 5 and line.split("│")[1].strip() in ("w1-l1", "w2-l1")}
    assert set(rows) == {"w1-l1", "w2-l1"}, r.stdout
    for job in sweep["children"]:
        assert job["id"] in rows[job["request"]["sweep_point"]]
    assert "✓" in rows[rec] and "★" in rows[rec]
    assert sum("✓" in line for line in rows.values()) == 1
    assert f"recommended: {rec} (the smallest point within 100.0 points" in r.stdout
    assert run_client("sweeps", "show", sweep["id"], "--json", env=alice).json()["table"] == sweep["table"]

    r = run_client("sweeps", "list", "--json", env=alice)
    assert r.rc == 0 and sweep["id"] in [s["id"] for s in r.json()["data"]], r.stderr
    r = run_client("sweeps", "list", env=alice)
    assert r.rc == 0 and sweep["id"] in r.stdout and "2/2" in r.stdout, r.stdout

    # Errors: one line and the exit codes of `xtc jobs`.
    assert_one_line_error(run_client("sweeps", "cancel", sweep["id"], env=alice), 2, "sweep_finished")
    assert_one_line_error(run_client(*submit, "--weight-bits", "1", env=alice), 2, "idempotency_conflict")
    bob = base_env(XTC_SERVER=live_url, XTC_API_KEY=keys["bob"])
    assert_one_line_error(run_client("sweeps", "show", sweep["id"], env=bob), 4, "not_found")
    bad_key = {**alice, "XTC_API_KEY": "xtc_not-a-key"}
    assert_one_line_error(run_client("sweeps", "list", env=bad_key), 3, "HTTP 401")
    down = {**alice, "XTC_SERVER": f"http://127.0.0.1:{free_port()}"}
    assert_one_line_error(run_client("sweeps", "list", env=down), 5, "cannot reach the XTC server")
    base = ["sweeps", "submit", "--model", str(tiny_model_dir)]
    assert_one_line_error(run_client(*base, "--task", "sst2", "--layers", "1", "--weight-bits", "3",
                                     env=alice), 2, "weight_bits")
    assert_one_line_error(run_client(*base, "--task", "sst2", "--layers", "two", env=alice), 2,
                          "--layers takes depths")
    assert_one_line_error(run_client(*base, "--layers", "1", env=alice), 2, "give a GLUE --task")
    assert_one_line_error(run_client(*base, "--task", "nope", "--layers", "1", env=alice), 2, "unknown_task")


def test_client_sweep_wait_exits_6_when_cancelled(idle_url, keys, tiny_model_dir, small_glue):
    """Nobody consumes the idle queue: `--wait` follows queued points until `sweeps cancel` ends them."""
    env = base_env(XTC_SERVER=idle_url, XTC_API_KEY=keys["alice"])
    waiting = subprocess.Popen(
        [sys.executable, "-m", "xtc_client", "sweeps", "submit", "--model", str(tiny_model_dir), "--task",
         "sst2", "--weight-bits", "1,2", "--layers", "1,2", *TINY, "--wait", "--interval", "0.2"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (page := run_client("sweeps", "list", "--json", "--limit", "1", env=env).json()["data"]) \
                or page[0]["request"]["grid"]["layers"] != [1, 2] or page[0]["status"] != "queued":
            assert time.monotonic() < deadline and waiting.poll() is None, waiting.stderr
            time.sleep(0.3)
        sweep_id = page[0]["id"]
        r = run_client("sweeps", "cancel", sweep_id, env=env)
        assert r.rc == 0 and r.stdout.strip() == f"sweep {sweep_id}: cancelled", (r.stdout, r.stderr)
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 6, (stdout, stderr)
    assert stderr.strip().splitlines()[-1] == f"error: sweep {sweep_id} was cancelled", stderr
    assert f"submitted {sweep_id} (4 points)" in stderr and "Traceback" not in stderr
    assert "w2-l2" in stdout and "cancelled" in stdout  # the final table is printed before the exit

    # Your own data, as with `jobs submit`: the file is uploaded and every point trains on it.
    r = run_client("sweeps", "submit", "--model", str(tiny_model_dir), "--dataset",
                   str(small_glue / "SST-2" / "dev.tsv"), "--text-column", "sentence", "--label-column",
                   "label", "--layers", "1;0,2", "--weight-bits", "2", "--json", env=env)
    assert r.rc == 0, r.stderr
    sweep = r.json()
    task = sweep["request"]["task"]
    assert task["train_dataset"].startswith("ds_") and task["train_dataset"] == task["dev_dataset"]
    assert [j["request"]["compression"]["layers"] for j in sweep["children"]] == [1, [0, 2]]
    assert run_client("sweeps", "cancel", sweep["id"], env=env).rc == 0


def test_sweep_idempotency_key(idle_url, idle_settings, keys, tiny_model_dir):
    body = {"model": str(tiny_model_dir), "task": "sst2", "training": SMOKE,
            "grid": {"weight_bits": [1, 2], "layers": [1]}}
    headers = {"Idempotency-Key": f"sweep-once-{RUN}"}
    with client(idle_url, keys["alice"]) as alice, client(idle_url, keys["bob"]) as bob:
        first = alice.post("/sweeps", json=body, headers=headers)
        assert first.status_code == 201, first.text
        # The same request, spelled differently: the same sweep and children, answered with 200.
        same = alice.post("/sweeps", json={**body, "task": " SST-2 ", "model": f" {tiny_model_dir} "},
                          headers=headers)
        assert same.status_code == 200 and same.json()["id"] == first.json()["id"], same.text
        assert [j["id"] for j in same.json()["children"]] == [j["id"] for j in first.json()["children"]]
        other = alice.post("/sweeps", json={**body, "grid": {"weight_bits": [1], "layers": [1]}},
                           headers=headers)
        assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
        # Keys are per tenant; a request without a key always makes a new sweep.
        assert bob.post("/sweeps", json=body, headers=headers).status_code == 201
        assert alice.post("/sweeps", json=body).json()["id"] != first.json()["id"]

        # A broker failure (503) does not use the key up: the retry creates and queues the sweep.
        retry = {"Idempotency-Key": f"sweep-retry-{RUN}"}
        before = alice.get("/sweeps", params={"limit": 100}).json()["data"]
        broken = idle_settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
        server = ServerThread(create_app(broken)).start()
        try:
            with client(server.url, keys["alice"]) as down:
                r = down.post("/sweeps", json=body, headers=retry)
        finally:
            server.stop()
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable", r.text
        assert alice.get("/sweeps", params={"limit": 100}).json()["data"] == before  # nothing left behind
        r = alice.post("/sweeps", json=body, headers=retry)
        assert r.status_code == 201, r.text
        assert [j["status"] for j in r.json()["children"]] == ["queued", "queued"]
        assert alice.post("/sweeps", json=body, headers=retry).json()["id"] == r.json()["id"]
