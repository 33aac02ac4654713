"""The ``xtc`` command line: compress, eval, inspect (+ service commands registered by plugins).

Heavy imports (torch, transformers) happen inside the commands, so ``xtc --help`` and the service
commands stay fast and torch-free.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import ConfigError, XTCError

app = typer.Typer(help="XTC: extreme compression of BERT-family models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console(stderr=True)

GLUE_DIR_HELP = "folder with GLUE tasks in the official TSV layout (default: $XTC_GLUE_DIR, else the hub)"


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def parse_layers(value: str | None) -> int | list[int] | None:
    if value is None or value == "":
        return None
    try:
        if "," in value:
            return [int(v) for v in value.split(",") if v.strip()]
        return int(value)
    except ValueError:
        raise ConfigError(f"--layers takes a count (3) or teacher layers (1,3,5), got {value!r}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set lr=3e-5 --set max_train_examples=2000`` -> typed values (JSON numbers/null/bools)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _activation_bits(value: str) -> int | None:
    if value.lower() in ("none", "null", "0"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--activation-bits takes 8 or none, got {value!r}") from None


def _data_source(task, glue_dir, train, dev, text_column, text_pair_column, label_column, regression):
    from .config import DataSource

    return DataSource(task=task, glue_dir=str(glue_dir) if glue_dir else None,
                      train_file=str(train) if train else None, dev_file=str(dev) if dev else None,
                      text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
                      regression=regression)


class _RichProgress:
    """One bar per stage, fed by the library's progress callback. Without a terminal (nohup, CI, a
    pipe) rich draws no bars until the end, so a plain line goes out at every tenth of a stage and
    after every dev evaluation that changed the best metrics: a long run's log shows where it is."""

    def __init__(self, progress):
        self.progress = progress
        self.bars: dict[str, Any] = {}
        self.printed: dict[str, tuple[int, str]] = {}  # stage -> (tenth, metrics) of its last line

    def __call__(self, event) -> None:
        console = self.progress.console
        if event.total <= 0:
            console.print(f"[cyan]{event.stage}[/]: {event.message}")
            return
        if event.stage not in self.bars:
            self.bars[event.stage] = self.progress.add_task(event.stage, total=event.total)
        metrics = " ".join(f"{k}={v:.4f}" for k, v in event.metrics.items() if isinstance(v, float))
        loss = f"loss={event.loss:.4f}" if event.loss is not None else ""
        self.progress.update(self.bars[event.stage], completed=event.step,
                             description=f"{event.stage} {loss} {metrics}".strip())
        # Events carry the best dev metrics so far on every step after the first evaluation: a change
        # of them is a new evaluation worth a line.
        tenth = event.step * 10 // event.total
        last = self.printed.get(event.stage, (0, ""))
        if not console.is_terminal and (tenth > last[0] or metrics != last[1]):
            self.printed[event.stage] = (tenth, metrics)
            console.print(f"{event.stage} {event.step}/{event.total} {loss} {metrics}".strip(),
                          highlight=False)


@app.command()
def compress(
    model: str = typer.Option("bundled:minilm-l6", help="bundled:NAME, a hub id, or a local model folder"),
    task: str = typer.Option(None, help="GLUE task (sst2, mrpc, ...); omit for --train/--dev files"),
    out: Path = typer.Option(..., "--out", help="output folder for the compressed checkpoint"),
    glue_dir: Path = typer.Option(None, envvar="XTC_GLUE_DIR", help=GLUE_DIR_HELP),
    train: Path = typer.Option(None, help="user training file (.tsv/.csv/.jsonl)"),
    dev: Path = typer.Option(None, help="user dev file (.tsv/.csv/.jsonl)"),
    text_column: str = typer.Option(None, help="column holding the text"),
    text_pair_column: str = typer.Option(None, help="column holding the second text, if any"),
    label_column: str = typer.Option(None, help="column holding the label"),
    regression: bool = typer.Option(False, help="user data has a float target"),
    weight_bits: int = typer.Option(1, help="1 (binary) or 2 (ternary)"),
    activation_bits: str = typer.Option("8", help="8, or 'none' for full-precision activations"),
    layers: str = typer.Option(None, help="student depth (3) or teacher layers (1,3,5); default half"),
    weight_groups: int = typer.Option(1, help="scales per weight matrix (per-group quantization)"),
    embedding_bits: int = typer.Option(None, help="word-embedding bits: 1, 2, 4 or 8 "
                                                  "(default: --weight-bits)"),
    budget: str = typer.Option("quick", help="smoke | quick | standard | paper"),
    set_: list[str] = typer.Option([], "--set", help="training override KEY=VALUE (repeatable)"),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 (default: cuda when present)"),
    work_dir: Path = typer.Option(None, help="training state (default: beside OUT, removed on success)"),
    resume: bool = typer.Option(True, help="resume from the work folder's checkpoints"),
    json_out: bool = typer.Option(False, "--json", help="print the final metrics as JSON"),
) -> None:
    """Compress a model for a task and write the packed checkpoint."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .checkpoint import default_work_dir
    from .config import CompressConfig
    from .config import budget as make_budget
    from .pipeline import compress as run

    own_work_dir = work_dir is None  # training state beside --out, not inside the artifact; gone on success
    work_dir = work_dir or default_work_dir(out)
    try:
        cfg = CompressConfig(
            model=model, output_dir=str(out),
            data=_data_source(task, glue_dir, train, dev, text_column, text_pair_column, label_column,
                              regression),
            weight_bits=weight_bits, layers=parse_layers(layers), weight_groups=weight_groups,
            embedding_bits=embedding_bits,
            activation_bits=_activation_bits(activation_bits),
            training=make_budget(budget, **parse_overrides(set_)), budget_name=budget, device=device,
            work_dir=str(work_dir) if work_dir else None, resume=resume,
        )
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            result = run(cfg, on_progress=_RichProgress(progress))
    except ValueError as exc:
        _fail(str(exc))
    except XTCError as exc:
        _fail(exc.message)
    if own_work_dir:
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    m = result.metrics
    if json_out:
        print(json.dumps(m, indent=2))
        return
    table = Table(title=f"XTC {m['task']} -> {out}")
    for col in ("", m["main_metric"], "bytes"):
        table.add_column(col)
    table.add_row("teacher (fp32)", f"{m['teacher'][m['main_metric']]:.4f}", f"{m['fp32_bytes']:,}")
    table.add_row("student", f"{m['student'][m['main_metric']]:.4f}", f"{m['packed_bytes']:,}")
    Console().print(table)
    Console().print(f"ratio {m['ratio']:.1f}x, {m['seconds']:.0f} s on {m['device']}")


@app.command("eval")
def eval_(
    path: Path = typer.Argument(..., help="compressed checkpoint folder"),
    task: str = typer.Option(None, help="GLUE task; omit for --dev with a column mapping"),
    glue_dir: Path = typer.Option(None, envvar="XTC_GLUE_DIR", help=GLUE_DIR_HELP),
    dev: Path = typer.Option(None, help="user dev file"),
    text_column: str = typer.Option(None),
    text_pair_column: str = typer.Option(None),
    label_column: str = typer.Option(None),
    device: str = typer.Option(None),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Evaluate a compressed checkpoint on the task's full dev set(s)."""
    from .evaluate import evaluate_checkpoint

    try:
        data = _data_source(task, glue_dir, None, dev, text_column, text_pair_column, label_column, False)
        metrics = evaluate_checkpoint(path, data, device=device)
    except XTCError as exc:
        _fail(exc.message)
    if json_out:
        print(json.dumps(metrics, indent=2))
        return
    table = Table(title=str(path))
    table.add_column("metric")
    table.add_column("value")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="compressed checkpoint folder"),
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Sizes on disk (packed vs the fp32 original) and bits per tensor."""
    from .inspect import inspect_checkpoint

    try:
        report = inspect_checkpoint(path)
    except XTCError as exc:
        _fail(exc.message)
    if json_out:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"{path}: {report['packed_bytes']:,} bytes, {report['ratio']:.1f}x smaller than fp32")
    for col in ("tensor", "bits", "shape", "bytes"):
        table.add_column(col)
    for t in report["tensors"]:
        table.add_row(t["name"], str(t["bits"]), "x".join(map(str, t["shape"])), f"{t['bytes']:,}")
    Console().print(table)
    where = Table(title="where the bytes go")
    for col in ("kind", "bytes", "share"):
        where.add_column(col)
    for kind, nbytes in report.get("bytes_by_kind", {}).items():
        where.add_row(kind, f"{nbytes:,}", f"{100 * nbytes / max(1, report['payload_bytes']):.1f}%")
    Console().print(where)


@app.command("export")
def export_(
    path: Path = typer.Argument(..., help="compressed checkpoint folder"),
    format_: str = typer.Option("onnx", "--format",
                                help="onnx (integer graph + tokenizer), hf (dense), packed8 (8-bit floats)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    max_length: int = typer.Option(None, help="runtime default max tokens (default: the training length)"),
    json_out: bool = typer.Option(False, "--json", help="print a summary as JSON"),
) -> None:
    """Export a checkpoint: an ONNX model that computes on integers, or a dense transformers folder."""
    from .exporting import export_checkpoint

    try:
        summary = export_checkpoint(path, format_, out, max_length=max_length)
    except XTCError as exc:
        _fail(exc.message)
    if json_out:
        print(json.dumps(summary, indent=2))
        return
    Console().print(f"{format_} export of {path} -> {out} ({summary['bytes']:,} bytes)")


@app.command()
def predict(
    path: Path = typer.Argument(..., help="an ONNX export folder, or a checkpoint (exported on the fly)"),
    text: list[str] = typer.Option([], "--text", help="a text to classify (repeatable)"),
    file: Path = typer.Option(None, "--file", help="one input per line; TEXT<tab>PAIR for pair tasks"),
    json_out: bool = typer.Option(False, "--json", help="print predictions as JSON lines"),
    threads: int = typer.Option(None, help="ONNX Runtime threads (default: all cores)"),
) -> None:
    """Predict with the ONNX runtime (no torch needed for an exported folder)."""
    from .runtime.cli import run_predict

    try:
        rows = run_predict(path, text, file, threads)
    except XTCError as exc:
        _fail(exc.message)
    except ValueError as exc:
        _fail(str(exc))
    for row in rows:
        if json_out:
            print(json.dumps(row))
        else:
            value = row["label"] if row["label"] is not None else f"{row['score']:.4f}"
            print(f"{value}\t{row['score']:.4f}\t{row['text']}")


from .sweep_cli import sweep_command  # noqa: E402  (its heavy imports happen inside the command)

app.command("sweep")(sweep_command)


def _load_plugins() -> None:
    """Service commands (serve, migrate, keys) come from the ``xtc.cli`` entry-point group; a core-only
    install simply lacks them."""
    for ep in entry_points(group="xtc.cli"):
        try:
            ep.load()(app)
        except ImportError as exc:
            logging.getLogger(__name__).debug("CLI plugin %s unavailable: %s", ep.name, exc)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _load_plugins()
    app(prog_name="xtc")


if __name__ == "__main__":
    sys.exit(main())
