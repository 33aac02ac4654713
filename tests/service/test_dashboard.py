"""The dashboard in a real headless Chromium (Debian's, driven by playwright) against `xtc serve`."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from api.db import repo
from api.db.session import session_scope

from .client_support import ServeProcess

CHROMIUM = os.environ.get("XTC_TEST_CHROMIUM", "/usr/bin/chromium")
OVERRIDES = {"reduction_steps": 12, "quant_steps": 16, "eval_every": 4, "max_train_examples": 64,
             "max_eval_examples": 48}
LONG = {"reduction_steps": 100000, "quant_steps": 100000, "max_train_examples": 32, "max_eval_examples": 48}
QUANT_RGB = (217, 130, 43)  # the quantization stage's colour in charts.js


@pytest.fixture(scope="module")
def serve(tmp_path_factory, small_glue) -> ServeProcess:
    service = ServeProcess(tmp_path_factory.mktemp("dash") / "data", small_glue).wait_ready()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def bob_key(serve) -> str:
    with session_scope(f"sqlite:///{serve.data_dir}/xtc.db") as s:
        return repo.create_api_key(s, repo.get_or_create_tenant(s, "bob"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y chromium` (see .ci/run)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, serve):
    context = browser.new_context(accept_downloads=True, base_url=serve.url,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.urls = []
    page.on("request", lambda r: page.urls.append(r.url))
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    context.close()


def sign_in(page, key: str) -> None:
    page.goto("/dashboard")
    page.fill("#key", key)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#page-jobs:not([hidden])")


def stage_pixels(page, canvas: str, rgb: tuple[int, int, int]) -> int:
    """Pixels of the canvas drawn in (about) the given colour: the curve really is on screen."""
    return page.evaluate("""([sel, rgb]) => {
        const c = document.querySelector(sel);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) < 30 && Math.abs(d[i + 1] - rgb[1]) < 30
                && Math.abs(d[i + 2] - rgb[2]) < 30) n++;
        }
        return n;
    }""", [canvas, list(rgb)])


def test_dashboard_flow(page, serve, bob_key, tiny_model_dir, small_glue, tmp_path):
    key = serve.key
    page.goto("/dashboard")
    page.fill("#key", "xtc_wrong")
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('not valid')")
    sign_in(page, key)
    assert page.evaluate("sessionStorage.getItem('xtc.apiKey')") == key
    assert page.evaluate("localStorage.getItem('xtc.apiKey')") is None  # "keep me signed in" unticked

    # Submit a smoke job from the form.
    page.click("nav a[href='#/new']")
    page.fill("#new-job-form input[name=model]", str(tiny_model_dir))
    page.select_option("#new-job-form select[name=task]", "sst2")
    page.select_option("#new-job-form select[name=weight_bits]", "1")
    page.select_option("#new-job-form select[name=embedding_bits]", "8")
    page.fill("#new-job-form input[name=layers]", "2")
    page.select_option("#new-job-form select[name=budget]", "smoke")
    page.fill("#new-job-form textarea[name=overrides]", json.dumps(OVERRIDES))
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    page.click("#new-job-form button[type=submit]")
    page.wait_for_url("**/dashboard#/jobs/job_*")
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#job-status[data-status=queued], #job-status[data-status=running]",
                           timeout=30_000)
    page.wait_for_selector("#job-status[data-status=succeeded]", timeout=180_000)
    assert page.evaluate("window.__sameDocument") is True
    # the form's word-embedding width reached the request, and the job page says so
    job = httpx.get(f"{serve.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["request"]["compression"]["embedding_bits"] == 8
    assert "embeddings 8-bit" in page.inner_text("#job-request")

    # Its curves: one point per progress event with a loss, per stage, up to the last step; plotted
    # (pixels of the stage colour on the canvas).
    page.wait_for_selector("#job-artifacts button[data-artifact='model.safetensors']")
    auth = {"Authorization": f"Bearer {key}"}
    events = httpx.get(f"{serve.url}/jobs/{job_id}/events?limit=1000", headers=auth).json()["data"]
    expected: dict[str, list] = {}
    for e in events:
        if e["kind"] == "progress" and e["loss"] is not None:
            expected.setdefault(e["stage"], []).append([e["step"], e["loss"]])
    series = page.evaluate(
        "Object.fromEntries(window.xtcCharts.loss.data.datasets"
        ".map(d => [d.label, d.data.map(p => [p.x, p.y])]))")
    assert series == expected and set(series) == {"layer_reduction", "quantization"}
    assert series["quantization"][-1][0] == 16 and len(series["quantization"]) >= 3
    metric = page.evaluate("window.xtcCharts.metric.data.datasets.map(d => d.data.length)")
    assert metric and all(n > 0 for n in metric)
    assert stage_pixels(page, "#loss-chart", QUANT_RGB) > 50
    assert stage_pixels(page, "#metric-chart", QUANT_RGB) > 20
    assert "accuracy (main)" in page.inner_text("#job-metrics")
    assert "smaller" in page.inner_text("#job-size")
    assert "succeeded" in page.inner_text("#job-events")

    # Download an artifact: an authorized fetch -> blob; the bytes match the API's sha256.
    arts = httpx.get(f"{serve.url}/jobs/{job_id}/artifacts", headers=auth).json()["data"]
    listing = {a["name"]: a for a in arts}
    with page.expect_download() as info:
        page.click("#job-artifacts button[data-artifact='model.safetensors']")
    saved = tmp_path / "model.safetensors"
    info.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == listing["model.safetensors"]["sha256"]

    # The jobs list and the accuracy-vs-size chart show it (on the Pareto front: it is the only one).
    page.click("nav a[href='#/jobs']")
    page.wait_for_selector(f"#jobs-table tr[data-job-id='{job_id}'] [data-status=succeeded]")
    page.click("nav a[href='#/tradeoff']")
    page.wait_for_selector(f"#tradeoff-table tr[data-job-id='{job_id}']")
    front = page.evaluate("window.xtcCharts.tradeoff.data.datasets.find(d => d.label === 'Pareto front')"
                          ".data.map(p => p.job.id)")
    assert front == [job_id]
    assert page.inner_text(f"#tradeoff-table tr[data-job-id='{job_id}'] td:last-child") == "★"

    # A job on an uploaded file with a column mapping, cancelled from its page.
    train = tmp_path / "reviews.tsv"
    rows = (small_glue / "SST-2" / "train.tsv").read_text().splitlines()[1:41]
    train.write_text("review\tsentiment\n" + "\n".join(rows) + "\n")
    page.click("nav a[href='#/new']")
    page.check("#new-job-form input[name=source][value=upload]")
    page.set_input_files("#new-job-form input[name=train_file]", str(train))
    page.fill("#new-job-form input[name=text_column]", "review")
    page.fill("#new-job-form input[name=label_column]", "sentiment")
    page.fill("#new-job-form textarea[name=overrides]", json.dumps(LONG))
    page.click("#new-job-form button[type=submit]")
    page.wait_for_url(lambda url: "#/jobs/job_" in url and not url.endswith(job_id))
    long_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#job-stage:has-text('layer_reduction')", timeout=120_000)
    assert "dataset ds_" in page.inner_text("#job-request")
    page.click("#job-cancel")
    page.wait_for_selector("#job-status[data-status=cancelled]", timeout=60_000)

    # The key never travelled in a URL, and no script error happened on the way.
    assert not [u for u in page.urls if key in u]
    assert page.errors == []

    # Another tenant sees none of it.
    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('xtc.apiKey')") is None
    sign_in(page, bob_key)
    page.wait_for_selector("#jobs-empty:not([hidden])")
    assert page.locator("#jobs-table tbody tr").count() == 0
    for other in (job_id, long_id):
        page.goto(f"/dashboard#/jobs/{other}")
        page.wait_for_selector("#job-error:has-text('not found')")
        assert page.locator("#job-artifacts tbody tr").count() == 0
        assert page.evaluate("window.xtcCharts.loss.data.datasets.length") == 0
    page.goto("/dashboard#/tradeoff")
    time.sleep(1)
    assert page.locator("#tradeoff-table tbody tr").count() == 0


def test_pareto_front_in_the_browser(page, serve):
    page.goto("/dashboard")
    front = page.evaluate("""async () => {
        const { paretoFront } = await import("/dashboard/static/pareto.js");
        const pts = [{x: 300, y: 0.80, id: "a"}, {x: 100, y: 0.70, id: "b"}, {x: 200, y: 0.69, id: "c"},
                     {x: 400, y: 0.79, id: "d"}, {x: 100, y: 0.65, id: "e"}, {x: 250, y: 0.75, id: "f"}];
        return paretoFront(pts).map(p => p.id);
    }""")
    assert front == ["b", "f", "a"]  # c, d, e are each beaten on both axes by some other job


def test_dashboard_is_served_safely(serve):
    r = httpx.get(f"{serve.url}/dashboard")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["referrer-policy"] == "no-referrer"
    chart = httpx.get(f"{serve.url}/dashboard/static/vendor/chart.umd.min.js")
    assert chart.status_code == 200 and b"Chart.js v4" in chart.content[:200]  # vendored, not a CDN
    assert "https://" not in r.text  # nothing loaded from elsewhere
    assert httpx.get(f"{serve.url}/", follow_redirects=False).headers["location"] == "/dashboard"
