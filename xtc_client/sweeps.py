"""`xtc sweeps submit|list|show|cancel`: a bit-width x depth grid on the server, its Pareto front and
the recommended point. Same conventions as `xtc jobs` (exit codes, one-line errors, --json): a waited
sweep exits 0 only when every point succeeded, 1 when one failed, 6 when it was cancelled."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from . import options as opt
from .api import Api
from .cli import API_KEY, JSON, SERVER, _activation_bits, _api, _print_json, _task, err, one_line_errors, out
from .errors import JOB_CANCELLED, JOB_FAILED, USAGE, ClientError
from .render import print_sweep, sweeps_table
from .watch import poll

sweeps_app = typer.Typer(help="Sweep bit widths x depths on an XTC server and pick the trade-off.",
                         no_args_is_help=True)


def _ints(value: str, option: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items:
        raise ClientError(f"{option} takes comma-separated integers (1,2), got {value!r}", USAGE)
    return items


def parse_depths(value: str) -> list[int | list[int]]:
    """``3,6`` is two depths; ``1,3,5;2,4`` two points keeping those teacher layers."""
    from xtc_core.cli import parse_layers  # torch-free
    from xtc_core.errors import ConfigError

    try:
        if ";" not in value:
            points: list[Any] = [int(v) for v in value.split(",") if v.strip()]
        else:
            points = [parse_layers(seg.strip()) for seg in value.split(";") if seg.strip()]
    except (ValueError, ConfigError):
        points = []
    if not points:
        raise ClientError(f"--layers takes depths (3,6) or teacher layers (1,3,5;2,4), got {value!r}", USAGE)
    return points


def outcome(sweep: dict[str, Any]) -> None:
    """Exit like a job: quiet when every point succeeded, else the first failure as one line."""
    if sweep["status"] == "cancelled":
        raise ClientError(f"sweep {sweep['id']} was cancelled", JOB_CANCELLED)
    if sweep["status"] == "failed":
        failed = [j for j in sweep["children"] if j["status"] == "failed"]
        first = failed[0] if failed else {}
        e = first.get("error") or {}
        raise ClientError(f"sweep {sweep['id']} failed: {len(failed)} of {len(sweep['children'])} point(s) "
                          f"failed; {first.get('request', {}).get('sweep_point', '?')}: "
                          f"{e.get('code', 'error')}: {e.get('message', '')}", JOB_FAILED, e.get("code"))


def follow(api: Api, sweep_id: str, interval: float):
    """Yields the sweep per poll until it is finished; rides out a short server restart."""
    return poll(lambda: api.sweep(sweep_id), lambda sweep: sweep["status"], interval)


def wait(api: Api, sweep_id: str, *, quiet: bool, interval: float = 0.5) -> dict[str, Any]:
    """Follow every child to the end (a bar per point on stderr unless quiet); returns the final sweep."""
    sweep = api.sweep(sweep_id)
    columns = (TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=err, disable=quiet) as progress:
        bars: dict[str, TaskID] = {}
        for sweep in follow(api, sweep_id, interval):
            for job in sweep["children"]:
                point = job["request"].get("sweep_point", job["id"])
                if point not in bars:
                    bars[point] = progress.add_task(point, total=100, info="")
                info = job["status"] + (f" · {job['stage']}" if job.get("stage") else "")
                progress.update(bars[point], completed=100 * (job.get("progress") or 0), info=info)
    return sweep


@sweeps_app.command("submit")
@one_line_errors
def submit(
    model: str = opt.MODEL, task: str = opt.TASK, train: str = opt.TRAIN, dev: str = opt.DEV,
    dataset: str = opt.DATASET,
    text_column: str = opt.TEXT_COLUMN, text_pair_column: str = opt.TEXT_PAIR_COLUMN,
    label_column: str = opt.LABEL_COLUMN, regression: bool = opt.REGRESSION,
    weight_bits: str = typer.Option("1,2", help="weight bit widths to sweep, e.g. 1,2"),
    layers: str = typer.Option(..., help="depths to sweep (3,6), or teacher layers per point (1,3,5;2,4)"),
    budgets: str = typer.Option(None, help="budget presets to sweep too, e.g. smoke,quick"),
    budget: str = typer.Option("quick", help="the schedule when --budgets is not given"),
    activation_bits: str = opt.ACTIVATION_BITS,
    weight_groups: int = opt.WEIGHT_GROUPS, embedding_bits: int = opt.EMBEDDING_BITS,  # every point
    set_: list[str] = opt.SET,
    max_drop: float = typer.Option(None, help="target: the smallest point at most this many points (x100) "
                                              "below the teacher"),
    webhook_url: str = typer.Option(None, help="POST sweep.succeeded|failed|cancelled|progress here"),
    idempotency_key: str = typer.Option(None, help="resubmitting with the same key returns the same sweep"),
    wait_: bool = typer.Option(False, "--wait", help="follow every point to the end, then print the table; "
                                                     "exit code = the sweep's outcome"),
    interval: float = typer.Option(0.5, help="seconds between polls with --wait"),
    server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON,
) -> None:
    """Submit a sweep: one job per (bits, depth[, budget]) point; they share the teacher and students."""
    from xtc_core.cli import parse_overrides  # torch-free

    body: dict[str, Any] = {
        "model": model,
        "grid": {"weight_bits": _ints(weight_bits, "--weight-bits"), "layers": parse_depths(layers)},
        "activation_bits": _activation_bits(activation_bits),
        "training": {"budget": budget, "overrides": parse_overrides(set_)},
    }
    body.update(opt.added_compression(weight_groups, embedding_bits))
    if budgets:
        body["grid"]["budgets"] = [b.strip() for b in budgets.split(",") if b.strip()]
    if max_drop is not None:
        body["target"] = {"max_drop": max_drop}
    if webhook_url:
        body["webhook_url"] = webhook_url
    with _api(server, api_key) as api:
        body["task"] = _task(api, task, train, dev, dataset, {
            "text_column": text_column, "label_column": label_column, "text_pair_column": text_pair_column,
            "regression": regression})
        sweep = api.create_sweep(body, idempotency_key)
        if not wait_:
            _print_json(sweep) if json_out else out.print(sweep["id"], highlight=False)
            return
        err.print(f"submitted {sweep['id']} ({len(sweep['children'])} points)", highlight=False)
        sweep = wait(api, sweep["id"], quiet=json_out, interval=interval)
    _print_json(sweep) if json_out else print_sweep(out, sweep)
    outcome(sweep)


@sweeps_app.command("list")
@one_line_errors
def list_(limit: int = typer.Option(20, help="at most this many (newest first)"),
          server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON) -> None:
    """Your tenant's sweeps, newest first."""
    with _api(server, api_key) as api:
        page = api.list_sweeps(limit=limit)
    _print_json(page) if json_out else out.print(sweeps_table(page["data"]))


@sweeps_app.command("show")
@one_line_errors
def show(sweep_id: str = typer.Argument(..., metavar="ID"),
         server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON) -> None:
    """One sweep: per point its job, status, metric, size, ratio, Pareto front (★), recommendation (✓)."""
    with _api(server, api_key) as api:
        sweep = api.sweep(sweep_id)
    _print_json(sweep) if json_out else print_sweep(out, sweep)


@sweeps_app.command("cancel")
@one_line_errors
def cancel(sweep_id: str = typer.Argument(..., metavar="ID"),
           server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON) -> None:
    """Cancel every unfinished point of a sweep."""
    with _api(server, api_key) as api:
        sweep = api.cancel_sweep(sweep_id)
    if json_out:
        _print_json(sweep)
    else:
        state = sweep["status"] if sweep["status"] == "cancelled" else f"{sweep['status']}, cancel requested"
        out.print(f"sweep {sweep['id']}: {state}", highlight=False)
