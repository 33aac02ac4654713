"""`xtc jobs submit|list|show|watch|cancel|download` (and `xtc sweeps`, sweeps.py): the service from a
terminal or a script.

Exit codes (see errors.py): 0 ok / job succeeded, 1 job failed, 2 bad input, 3 auth, 4 not found,
5 server unreachable or 5xx, 6 job cancelled, 7 checksum mismatch. Failures print one line on stderr.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from . import options as opt
from .api import Api
from .config import resolve_key, resolve_server
from .download import download_artifact, prepare_out_dir
from .errors import UNAVAILABLE, USAGE, ClientError
from .render import jobs_table, print_job
from .watch import outcome, watch

jobs_app = typer.Typer(help="Submit and follow compression jobs on an XTC server (HTTP).",
                       no_args_is_help=True)
err = Console(stderr=True)
# One-line messages stay one line for scripts that grep them; piped tables are not squeezed to 80.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)

F = TypeVar("F", bound=Callable[..., Any])

SERVER = typer.Option(None, "--server", envvar="XTC_SERVER", help="Server URL (default http://127.0.0.1:8000).")
API_KEY = typer.Option(None, "--api-key", envvar="XTC_API_KEY",
                       help="API key (default: the key file `xtc serve` wrote, $XTC_DATA_DIR/api_key).")
JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def one_line_errors(fn: F) -> F:
    """Every failure a user can cause or meet is one line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from xtc_core.errors import ConfigError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            _fail(exc.message, exc.exit_code)
        except ConfigError as exc:
            _fail(exc.message, USAGE)
        except httpx.HTTPError as exc:
            _fail(f"HTTP error talking to the server: {type(exc).__name__}: {exc}", UNAVAILABLE)
        except json.JSONDecodeError:
            _fail("the server answered with something that is not JSON; is --server an XTC server?",
                  UNAVAILABLE)
        except KeyboardInterrupt:
            _fail("interrupted; a submitted job keeps running on the server (`xtc jobs watch ID`)", 130)

    return wrapper  # type: ignore[return-value]


def _api(server: str | None, api_key: str | None) -> Api:
    return Api(resolve_server(server), resolve_key(api_key))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _activation_bits(value: str) -> int | None:
    if value.lower() in ("none", "null", "0"):
        return None
    if value != "8":
        raise ClientError(f"--activation-bits takes 8 or none, got {value!r}", USAGE)
    return 8


def _dataset_id(api: Api, value: str, cols: dict[str, Any]) -> str:
    """An existing dataset id is used as is; a local file is uploaded with the column mapping first."""
    path = Path(value).expanduser()
    if not path.exists() and value.startswith("ds_"):
        return value
    if not path.is_file():
        raise ClientError(f"{value}: no such file (nor a dataset id ds_...)", USAGE)
    if not cols["text_column"] or not cols["label_column"]:
        raise ClientError("uploading a dataset needs --text-column and --label-column", USAGE)
    ds = api.upload_dataset(path, cols["text_column"], cols["label_column"], cols["text_pair_column"],
                            cols["regression"])
    err.print(f"uploaded {escape(path.name)} as {ds['id']} ({ds['size']:,} bytes)", highlight=False)
    return ds["id"]


def _task(api: Api, task: str | None, train: str | None, dev: str | None, dataset: str | None,
          cols: dict[str, Any]) -> str | dict[str, Any]:
    if dataset and (train or dev):
        raise ClientError("give --dataset FILE, or --train and --dev, not both", USAGE)
    if task and (dataset or train or dev):
        raise ClientError("give a GLUE --task or your own data (--train/--dev or --dataset), not both", USAGE)
    if task:
        return task
    if dataset:
        train = dev = _dataset_id(api, dataset, cols)
    elif train and dev:
        train, dev = _dataset_id(api, train, cols), _dataset_id(api, dev, cols)
    else:
        raise ClientError("give a GLUE --task (sst2, mrpc, ...), or --train and --dev, or --dataset", USAGE)
    spec: dict[str, Any] = {"train_dataset": train, "dev_dataset": dev}
    if cols["text_column"] and cols["label_column"]:
        spec["columns"] = {"text": cols["text_column"], "label": cols["label_column"],
                           "text_pair": cols["text_pair_column"]}
    if cols["regression"]:
        spec["regression"] = True
    return spec


def _summary(job: dict[str, Any]) -> None:
    m = job.get("metrics") or {}
    main = m.get("main_metric")
    if main:
        out.print(f"job {job['id']} succeeded: {main} teacher {m['teacher'][main]:.4f} -> student "
                  f"{m['student'][main]:.4f} ({m['delta']:+.4f}); {m['packed_bytes']:,} bytes, "
                  f"{m['ratio']:.1f}x smaller. Download: xtc jobs download {job['id']} --out DIR",
                  highlight=False)
    else:
        out.print(f"job {job['id']} {job['status']}", highlight=False)


@jobs_app.command("submit")
@one_line_errors
def submit(
    model: str = opt.MODEL, task: str = opt.TASK, train: str = opt.TRAIN, dev: str = opt.DEV,
    dataset: str = opt.DATASET,
    text_column: str = opt.TEXT_COLUMN, text_pair_column: str = opt.TEXT_PAIR_COLUMN,
    label_column: str = opt.LABEL_COLUMN, regression: bool = opt.REGRESSION,
    weight_bits: int = typer.Option(1, help="1 (binary) or 2 (ternary)"),
    activation_bits: str = opt.ACTIVATION_BITS,
    layers: str = typer.Option(None, help="student depth (3) or teacher layers (1,3,5); default half"),
    weight_groups: int = opt.WEIGHT_GROUPS, embedding_bits: int = opt.EMBEDDING_BITS,
    budget: str = typer.Option("quick", help="smoke | quick | standard | paper"),
    set_: list[str] = opt.SET,
    idempotency_key: str = typer.Option(None, help="resubmitting with the same key returns the same job"),
    wait: bool = typer.Option(False, "--wait", help="follow the job to the end; exit code = its outcome"),
    server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON,
) -> None:
    """Submit a compression job (the same options as `xtc compress`)."""
    from xtc_core.cli import parse_layers, parse_overrides  # torch-free helpers shared with compress

    body = {
        "model": model,
        "compression": {"weight_bits": weight_bits, "activation_bits": _activation_bits(activation_bits),
                        "layers": parse_layers(layers),
                        **opt.added_compression(weight_groups, embedding_bits)},
        "training": {"budget": budget, "overrides": parse_overrides(set_)},
    }
    with _api(server, api_key) as api:
        body["task"] = _task(api, task, train, dev, dataset, {
            "text_column": text_column, "label_column": label_column, "text_pair_column": text_pair_column,
            "regression": regression})
        job = api.create_job(body, idempotency_key)
        if not wait:
            _print_json(job) if json_out else out.print(job["id"], highlight=False)
            return
        err.print(f"submitted {job['id']}", highlight=False)
        if json_out:
            job = _quiet_wait(api, job["id"])
        else:
            job = watch(api, job["id"], as_json=False, console=err)
    if json_out:
        _print_json(job)
    else:
        _summary(job) if job["status"] == "succeeded" else None
    outcome(job)


def _quiet_wait(api: Api, job_id: str) -> dict[str, Any]:
    from .watch import follow

    last: dict[str, Any] = {}
    for last, _ in follow(api, job_id):  # noqa: B007 (the loop's last value is the final job)
        pass
    return last


@jobs_app.command("list")
@one_line_errors
def list_(
    status: str = typer.Option(None, help="queued | running | succeeded | failed | cancelled"),
    limit: int = typer.Option(20, help="at most this many (newest first)"),
    server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON,
) -> None:
    """Your tenant's jobs, newest first."""
    with _api(server, api_key) as api:
        page = api.list_jobs(status=status, limit=limit)
    if json_out:
        _print_json(page)
    else:
        out.print(jobs_table(page["data"]))


@jobs_app.command("show")
@one_line_errors
def show(job_id: str = typer.Argument(..., metavar="ID"),
         server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON) -> None:
    """One job: status, stage, progress, ETA, metrics, error."""
    with _api(server, api_key) as api:
        job = api.job(job_id)
    _print_json(job) if json_out else print_job(out, job)


@jobs_app.command("watch")
@one_line_errors
def watch_(
    job_id: str = typer.Argument(..., metavar="ID"),
    interval: float = typer.Option(0.5, help="seconds between polls"),
    server: str = SERVER, api_key: str = API_KEY,
    json_out: bool = typer.Option(False, "--json", help="one JSON object per line: each event, then the job"),
) -> None:
    """Live progress per stage (loss, latest dev metric, ETA) until the job ends; exit code = outcome."""
    with _api(server, api_key) as api:
        job = watch(api, job_id, as_json=json_out, console=err, interval=interval)
    if not json_out and job["status"] == "succeeded":
        _summary(job)
    outcome(job)


@jobs_app.command("cancel")
@one_line_errors
def cancel(job_id: str = typer.Argument(..., metavar="ID"),
           server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON) -> None:
    """Cancel a queued or running job (a running one stops at its next training step)."""
    with _api(server, api_key) as api:
        job = api.cancel(job_id)
    if json_out:
        _print_json(job)
    else:
        state = job["status"] if job["status"] == "cancelled" else f"{job['status']}, cancel requested"
        out.print(f"job {job['id']}: {state}", highlight=False)


@jobs_app.command("download")
@one_line_errors
def download(
    job_id: str = typer.Argument(..., metavar="ID"),
    out_dir: Path = typer.Option(..., "--out", help="folder for the checkpoint files"),
    name: list[str] = typer.Option([], "--name", help="only this artifact (repeatable)"),
    server: str = SERVER, api_key: str = API_KEY, json_out: bool = JSON,
) -> None:
    """Stream the job's artifacts into a folder, sha256-verified; an interrupted run resumes."""
    with _api(server, api_key) as api:
        listing = api.artifacts(job_id)
        if name:
            missing = sorted(set(name) - {a["name"] for a in listing})
            if missing:
                raise ClientError(f"job {job_id} has no artifact {', '.join(missing)}", 4)
            listing = [a for a in listing if a["name"] in name]
        if not listing:
            status = api.job(job_id)["status"]
            raise ClientError(f"job {job_id} has no artifacts (status {status})", 4)
        prepare_out_dir(out_dir)
        results = []
        columns = (TextColumn("{task.description:<24}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=err, disable=json_out) as progress:
            for art in listing:
                bar = progress.add_task(art["name"], total=art["size"])
                results.append(download_artifact(
                    api, job_id, art, out_dir, lambda n, bar=bar: progress.advance(bar, n)))
    if json_out:
        _print_json({"job": job_id, "out": str(out_dir), "files": results})
    else:
        total = sum(r["size"] for r in results)
        resumed = [r["name"] for r in results if r["resumed_from"]]
        note = f" (resumed {', '.join(resumed)})" if resumed else ""
        out.print(f"{len(results)} file(s), {total:,} bytes in {out_dir}, sha256 verified{note}",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """The `xtc.cli` entry point: adds `xtc jobs ...` and `xtc sweeps ...` to the main command."""
    from .sweeps import sweeps_app  # imports this module's helpers, so not at the top

    app.add_typer(jobs_app, name="jobs")
    app.add_typer(sweeps_app, name="sweeps")


def main() -> None:
    app = typer.Typer(help="XTC service client.", no_args_is_help=True, pretty_exceptions_enable=False,
                      add_completion=False)
    register(app)
    sys.exit(app(prog_name="xtc"))
