"""Following a job: new events (GET /jobs/{id}/events?after=N) plus its status, until it finishes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from .api import Api
from .errors import JOB_CANCELLED, JOB_FAILED, UNAVAILABLE, ClientError

TERMINAL = ("succeeded", "failed", "cancelled")
MAX_MISSED_POLLS = 5  # ride out a short server restart instead of abandoning a long job
T = TypeVar("T")


def poll(fetch: Callable[[], T], status: Callable[[T], str], interval: float) -> Iterator[T]:
    """Yields ``fetch()`` every ``interval`` seconds until ``status`` of the result is terminal; rides out
    a short server restart (unreachable or 5xx) with exponential backoff."""
    missed = 0
    while True:
        try:
            value = fetch()
        except ClientError as exc:
            missed += 1
            if exc.exit_code != UNAVAILABLE or missed > MAX_MISSED_POLLS:
                raise
            time.sleep(interval * 2**missed)
            continue
        missed = 0
        yield value
        if status(value) in TERMINAL:
            return
        time.sleep(interval)


def follow(api: Api, job_id: str, interval: float = 0.5) -> Iterator[tuple[dict | None, list[dict]]]:
    """Yields (job, new events) per poll; the last yield carries the terminal job and its last events."""
    after: int | None = None

    def fetch() -> tuple[dict, list[dict]]:
        nonlocal after
        job = api.job(job_id)
        events, cursor = [], after
        while True:  # drain: a fast job can write more events than one page between polls
            page = api.events(job_id, after=cursor)
            events += page["data"]
            cursor = page["next_after"]
            if len(page["data"]) < 1000:
                break
        after = cursor  # only once the whole batch arrived: a failed poll re-reads it
        return job, events

    return poll(fetch, lambda polled: polled[0]["status"], interval)


def outcome(job: dict[str, Any]) -> None:
    """Raise the job's failure or cancellation as a ClientError; return quietly when it succeeded."""
    if job["status"] == "failed":
        err = job.get("error") or {}
        raise ClientError(f"job {job['id']} failed: {err.get('code', 'error')}: {err.get('message', '')}",
                          JOB_FAILED, err.get("code"))
    if job["status"] == "cancelled":
        raise ClientError(f"job {job['id']} was cancelled", JOB_CANCELLED)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    seconds = int(seconds)
    return f"ETA {seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _scalars(metrics: dict[str, Any] | None) -> str:
    items = [(k, v) for k, v in (metrics or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "  ".join(f"{k} {v:.4f}" for k, v in items)


class StageBars:
    """One rich bar per stage (loss and latest dev metric beside it) and one for the whole job."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.overall = progress.add_task("job", total=100, info="queued")
        self.bars: dict[str, TaskID] = {}

    def event(self, e: dict[str, Any]) -> None:
        if e["kind"] != "progress" or e.get("stage") in (None, "done"):
            return
        stage, total = e["stage"], e.get("total") or 0
        if total <= 0:
            self.progress.console.print(f"[cyan]{stage}[/]: {e.get('message') or ''}", highlight=False)
            return
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(stage, total=total, info="")
        loss = f"loss {e['loss']:.4f}" if e.get("loss") is not None else ""
        info = "  ".join(filter(None, [loss, _scalars(e.get("metrics"))]))
        self.progress.update(self.bars[stage], total=total, completed=e.get("step") or 0, info=info)

    def job(self, job: dict[str, Any]) -> None:
        stage = f" · {job['stage']}" if job.get("stage") else ""
        self.progress.update(self.overall, completed=100 * (job.get("progress") or 0),
                             info=f"{job['status']}{stage} · {_fmt_eta(job.get('eta_seconds'))}")


def watch(api: Api, job_id: str, *, as_json: bool, console: Console, interval: float = 0.5) -> dict:
    """Follow to the end; returns the final job. JSON mode prints one JSON object per line."""
    job = api.job(job_id)  # an unknown id or a bad key fails here, before any bar is drawn
    if as_json:
        for job, events in follow(api, job_id, interval):  # noqa: B007 (the last job is the result)
            for e in events:
                print(json.dumps({"event": e}), flush=True)
        print(json.dumps({"job": job}), flush=True)
        return job
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bars = StageBars(progress)
        for job, events in follow(api, job_id, interval):
            for e in events:
                bars.event(e)
            bars.job(job)
    return job
