"""Webhooks end to end: a real HTTP receiver on loopback verifies every Standard Webhooks signature
with the published reference implementation, answers 500 at first (retries), and hangs once so the
delivery process can be killed mid-delivery; it still sees exactly one `succeeded` webhook-id per job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from api.app import create_app
from api.embedded import settings_env
from api.server import ServerThread
from api.webhooks.urls import BadWebhookUrl, check_url

from .conftest import ROOT
from .support import RUN, TERMINAL, client, job_body, wait_for


class Receiver:
    """Answers 500 to the first delivery of each webhook-id; hangs once on the victim's `succeeded`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.secrets: list[str] = []
        self.seen: list[dict] = []
        self.first: set[str] = set()
        self.ok: set[str] = set()  # webhook-ids answered 200 (the receiver's dedupe set)
        self.victim: str | None = None
        self.hanging, self.release = threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                receiver.handle(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify(self, body: str, headers) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, dict(headers))
                return True
            except WebhookVerificationError:
                continue
        return False

    def handle(self, h: BaseHTTPRequestHandler, body: str) -> None:
        msg_id, event = h.headers.get("webhook-id"), h.headers.get("xtc-event")
        data = json.loads(body)
        with self.lock:
            self.seen.append({"id": msg_id, "event": event, "path": h.path, "subject": data.get("id"),
                              "status": data.get("status"), "verified": self.verify(body, h.headers),
                              "body": data})
            first = msg_id not in self.first
            self.first.add(msg_id)
            hang = (not first and event == "job.succeeded" and data["id"] == self.victim
                    and not self.hanging.is_set())
        if h.path == "/redirect":
            h.send_response(302)
            h.send_header("Location", "/target")
            h.end_headers()
            return
        if first:
            h.send_response(500)
            h.end_headers()
            return
        if hang:
            self.hanging.set()
            self.release.wait(60)  # meanwhile the test kills the delivering process
            return
        with self.lock:
            self.ok.add(msg_id)
        h.send_response(200)
        h.end_headers()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.release.set()
    r.server.shutdown()


class Loop:
    def __init__(self, settings, log):
        env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
        self.out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "api.webhooks.loop"], env=env, cwd=ROOT,
                                     stdout=self.out, stderr=subprocess.STDOUT)

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(20)
        self.out.close()


def _until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return result


def test_signed_retried_and_exactly_once_across_a_killed_sender(
        alice_live, alice_idle, receiver, settings, tiny_model_dir, tmp_path):
    r = alice_live.post("/webhooks/secret")
    assert r.status_code == 201 and r.json()["secret"].startswith("whsec_")
    receiver.secrets.append(r.json()["secret"])
    conf = alice_live.get("/webhooks/settings").json()
    assert conf["has_secret"] is True and "secret" not in conf  # shown once

    loop = Loop(settings, tmp_path / "loop1.log")
    try:
        # Progress webhooks come from the loop's scans while a job runs: a smoke job runs for seconds,
        # so the loop must be polling before the jobs start, not still importing.
        _until(lambda: b"loop started" in (tmp_path / "loop1.log").read_bytes(), 60, "the loop's start")
        hook = f"{receiver.url}/hook"
        jobs = [alice_live.post("/jobs", json=job_body(tiny_model_dir, webhook_url=hook)).json()["id"]
                for _ in range(2)]
        receiver.victim = jobs[0]
        # A job the worker fails (a hub id that cannot load offline): its `job.failed` is delivered too.
        bad = job_body("someone/no-such-model", webhook_url=hook)
        failing = alice_live.post("/jobs", json=bad).json()["id"]
        # A job whose URL redirects: never followed. And a sweep's own webhook.
        redirected = alice_idle.post("/jobs", json=job_body(tiny_model_dir,
                                                            webhook_url=f"{receiver.url}/redirect")).json()
        alice_idle.post(f"/jobs/{redirected['id']}/cancel")
        sweep = alice_idle.post("/sweeps", json={
            "model": str(tiny_model_dir), "task": "sst2", "webhook_url": hook,
            "grid": {"weight_bits": [1], "layers": [1]}}).json()
        alice_idle.post(f"/sweeps/{sweep['id']}/cancel")

        assert receiver.hanging.wait(240), receiver.seen
        loop.kill()  # SIGKILL mid-delivery: the row stays claimed, then its claim expires
        loop = Loop(settings, tmp_path / "loop2.log")
        receiver.release.set()
        for job_id in jobs:
            assert wait_for(alice_live, job_id, TERMINAL, timeout=120)["status"] == "succeeded"

        def delivered():
            with receiver.lock:
                done = {s["subject"] for s in receiver.seen if s["id"] in receiver.ok
                        and s["event"] in ("job.succeeded", "job.failed", "sweep.cancelled")}
            return set(jobs) | {sweep["id"], failing} <= done
        _until(delivered, 120, receiver.seen)

        def recorded():
            # The receiver has its 200 before the sender writes the outcome: killing the loop in
            # between would leave the row pending (re-sent later, same webhook-id) and race the log.
            log = alice_live.get(f"/jobs/{jobs[0]}/webhooks").json()["data"]
            swept = alice_idle.get(f"/sweeps/{sweep['id']}/webhooks").json()["data"]
            return (any(d["event"] == "job.succeeded" and d["status"] == "delivered" for d in log)
                    and bool(swept) and swept[0]["status"] == "delivered")
        _until(recorded, 60, receiver.seen)
    finally:
        loop.kill()

    with receiver.lock:
        seen = list(receiver.seen)
    assert seen and all(s["verified"] for s in seen)  # every signature checks out (reference library)
    by_id = defaultdict(list)
    for s in seen:
        by_id[s["id"]].append(s)
    for job_id in jobs:
        succeeded = {s["id"] for s in seen if s["subject"] == job_id and s["event"] == "job.succeeded"}
        assert len(succeeded) == 1, succeeded  # re-sends carry the same webhook-id
        attempts = by_id[succeeded.pop()]
        assert len(attempts) >= (3 if job_id == jobs[0] else 2)  # 500, (killed,) then 200
        body = attempts[-1]["body"]
        job = alice_live.get(f"/jobs/{job_id}").json()
        assert body["status"] == "succeeded" and body["metrics"] == job["metrics"]  # the GET JSON
    assert any(s["event"] == "job.progress" for s in seen)
    failed = [s["body"] for s in seen if s["event"] == "job.failed"]
    assert failed and failed[-1]["id"] == failing and failed[-1]["error"]["code"] == "model_load_failed"

    log = alice_live.get(f"/jobs/{jobs[0]}/webhooks").json()["data"]
    final = [d for d in log if d["event"] == "job.succeeded"]
    assert len(final) == 1 and final[0]["status"] == "delivered" and final[0]["attempts"] >= 3
    assert [a["status_code"] for a in final[0]["log"]][0] == 500 and final[0]["log"][-1]["status_code"] == 200

    assert not [s for s in seen if s["path"] == "/target"]  # the redirect was not followed
    redirect_log = alice_idle.get(f"/jobs/{redirected['id']}/webhooks").json()["data"]
    assert redirect_log[0]["last_status_code"] == 302 and "redirects" in redirect_log[0]["last_error"]

    sweep_body = [s["body"] for s in seen if s["event"] == "sweep.cancelled"][-1]
    assert sweep_body["id"] == sweep["id"] and sweep_body["status"] == "cancelled"
    assert len(sweep_body["children"]) == 1
    assert alice_idle.get(f"/sweeps/{sweep['id']}/webhooks").json()["data"][0]["status"] == "delivered"


def test_webhook_targets_are_checked(settings, keys, tiny_model_dir, pg_url):
    from api.db import repo
    from api.db.session import session_scope

    strict = settings.model_copy(update={"webhook_allow_private": False})
    with session_scope(pg_url) as s:
        carol = repo.create_api_key(s, repo.get_or_create_tenant(s, f"carol-{RUN}"))
    server = ServerThread(create_app(strict)).start()
    try:
        with client(server.url, carol) as c:
            r = c.post("/jobs", json=job_body(tiny_model_dir, webhook_url="https://example.com/hook"))
            assert r.status_code == 409 and r.json()["error"]["code"] == "webhook_secret_missing"
            assert c.post("/webhooks/secret").status_code == 201
            for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest",
                        "ftp://example.com/x", "http://user:pw@example.com/x"):
                r = c.post("/jobs", json=job_body(tiny_model_dir, webhook_url=url))
                assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_webhook_url", url
            r = c.put("/webhooks/settings", json={"default_url": "http://[::1]:8080/"})
            assert r.status_code == 422
            first = c.post("/webhooks/secret").json()["secret"]
            assert c.post("/webhooks/secret").json()["secret"] != first  # rotation
    finally:
        server.stop()
    check_url("http://127.0.0.1:9/x", allow_private=True)
    with pytest.raises(BadWebhookUrl):
        check_url("http://localhost/x", allow_private=False)


def test_tenant_default_url_gets_a_sweep_on_one_worker_and_its_children(
        live_url, keys, receiver, settings, tiny_model_dir, tmp_path):
    """One worker runs the sweep's children one after another; the tenant's default URL receives each
    child's `job.succeeded` and the sweep's `sweep.succeeded` carrying the GET /sweeps/{id} JSON."""
    with client(live_url, keys["bob"]) as bob:
        receiver.secrets.append(bob.post("/webhooks/secret").json()["secret"])
        r = bob.put("/webhooks/settings", json={"default_url": f"{receiver.url}/default"})
        assert r.status_code == 200 and r.json()["default_url"].endswith("/default")
        loop = Loop(settings, tmp_path / "loop.log")
        try:
            body = {"model": str(tiny_model_dir), "task": "sst2", "target": {"max_drop": 100},
                    "training": {"budget": "smoke", "overrides": {"max_train_examples": 32,
                                                                  "max_eval_examples": 48,
                                                                  # inputs no other test trains: the
                                                                  # stage cache is shared by the session
                                                                  "seed": 4242}},
                    "grid": {"weight_bits": [1, 2], "layers": [1]}}
            sweep_id = bob.post("/sweeps", json=body).json()["id"]

            def done():
                with receiver.lock:
                    return [s for s in receiver.seen if s["event"] == "sweep.succeeded"
                            and s["id"] in receiver.ok]
            final = _until(done, 240, receiver.seen)[-1]["body"]
        finally:
            loop.kill()
            bob.put("/webhooks/settings", json={"default_url": None})
        sweep = bob.get(f"/sweeps/{sweep_id}").json()
    assert final["id"] == sweep_id and final["status"] == "succeeded"
    assert final["table"] == sweep["table"] and final["recommendation"] == sweep["recommendation"]
    assert final["recommendation"]["point"] in ("w1-l1", "w2-l1")
    with receiver.lock:
        seen = list(receiver.seen)
    assert all(s["verified"] and s["path"] == "/default" for s in seen)
    children = {j["id"] for j in sweep["children"]}
    assert {s["subject"] for s in seen if s["event"] == "job.succeeded"} == children
    # One worker: the children ran one after the other, and the second reused the first's stage 1.
    spans = sorted((j["started_at"], j["finished_at"]) for j in sweep["children"])
    assert spans[0][1] <= spans[1][0]
    reused = [s.get("reused") for j in sweep["children"] for s in j["metrics"]["stages"]
              if s["stage"] == "layer_reduction"]
    assert sorted(reused) == [False, True]
