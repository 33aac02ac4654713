"""Screenshots of the dashboard for the docs (job page, accuracy-vs-size chart).

    python scripts/dashboard_screenshots.py --server http://127.0.0.1:8000 --job JOB_ID [--out docs]

Signs in with --api-key / $XTC_API_KEY / the `xtc serve` key file, in Debian's headless chromium.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from xtc_client.config import resolve_key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="http://127.0.0.1:8000")
    ap.add_argument("--api-key")
    ap.add_argument("--job", required=True, help="the job whose page to capture")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    key = resolve_key(args.api_key)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(base_url=args.server, viewport={"width": 1280, "height": 1000})
        page.goto("/dashboard")
        page.fill("#key", key)
        page.click("#sign-in-form button[type=submit]")
        page.wait_for_selector("#page-jobs:not([hidden])")
        page.goto(f"/dashboard#/jobs/{args.job}")
        page.wait_for_selector("#job-artifacts tbody tr")
        time.sleep(0.5)
        page.screenshot(path=str(args.out / "dashboard-job.png"))
        page.goto("/dashboard#/tradeoff")
        page.wait_for_selector("#tradeoff-table tbody tr")
        time.sleep(0.5)
        page.screenshot(path=str(args.out / "dashboard-tradeoff.png"))
        page.goto("/dashboard#/jobs")
        page.wait_for_selector("#jobs-table tbody tr")
        page.screenshot(path=str(args.out / "dashboard-jobs.png"))
        browser.close()
    print(f"wrote {args.out}/dashboard-job.png, dashboard-tradeoff.png, dashboard-jobs.png")


if __name__ == "__main__":
    main()
