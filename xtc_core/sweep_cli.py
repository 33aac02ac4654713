"""``xtc sweep``: a bit-width x depth grid on this machine, with its Pareto front and a recommendation."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import ConfigError, XTCError


def _int_list(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {value!r}") from None


def print_summary(summary: dict, title: str) -> None:
    table = Table(title=title)
    for col in ("point", "bits", "layers", "metric", "drop (pts)", "bytes", "ratio", ""):
        table.add_column(col)
    front, rec = set(summary["pareto"]), summary["recommendation"]["point"]
    for r in summary["table"]:
        mark = ("recommended " if r["point"] == rec else "") + ("pareto" if r["point"] in front else "")
        score = f"{r['metric']}={r['score']:.4f}" if r["score"] is not None else r["status"]
        table.add_row(r["point"], str(r["weight_bits"]), json.dumps(r["layers"]), score,
                      f"{r['drop_points']:.2f}" if r["drop_points"] is not None else "",
                      f"{r['packed_bytes']:,}" if r["packed_bytes"] else "",
                      f"{r['ratio']:.1f}x" if r["ratio"] else "", mark.strip())
    Console().print(table)
    Console().print(f"recommended: {rec or 'none'} ({summary['recommendation']['reason']})")


def sweep_command(
    model: str = typer.Option("bundled:minilm-l6", help="bundled:NAME, a hub id, or a local model folder"),
    task: str = typer.Option(..., help="GLUE task (sst2, mrpc, ...)"),
    out: Path = typer.Option(..., "--out", help="output folder: points/<name>/ checkpoints + sweep.json"),
    glue_dir: Path = typer.Option(None, envvar="XTC_GLUE_DIR", help="folder with GLUE tasks (TSV layout)"),
    bits: str = typer.Option("1,2", help="weight bit widths, e.g. 1,2"),
    layers: list[str] = typer.Option(..., help="a depth (3) or teacher layers (1,3,5); repeat per point"),
    budgets: str = typer.Option(None, help="budget presets to sweep too, e.g. smoke,quick"),
    budget: str = typer.Option("quick", help="the schedule when --budgets is not given"),
    weight_groups: int = typer.Option(1, help="scales per weight matrix, every point"),
    embedding_bits: int = typer.Option(None, help="word-embedding bits (1, 2, 4, 8), every point "
                                                  "(default: each point's weight bits)"),
    set_: list[str] = typer.Option([], "--set", help="training override KEY=VALUE (repeatable)"),
    max_drop: float = typer.Option(None, help="target: at most this many points (x100) below the teacher"),
    stage_cache: Path = typer.Option(None, help="stage cache folder (default OUT/.stage-cache)"),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Compress a grid of bit widths x depths, sharing the teacher and each depth's student."""
    from .cli import _fail, parse_layers, parse_overrides
    from .config import CompressConfig, DataSource
    from .config import budget as make_budget
    from .stage_cache import LocalStageStore
    from .sweep import SweepGrid
    from .sweep import sweep as run_sweep

    try:
        overrides = parse_overrides(set_)
        grid = SweepGrid(weight_bits=_int_list(bits, "--bits"), layers=[parse_layers(v) for v in layers],
                         budgets=[b.strip() for b in budgets.split(",") if b.strip()] if budgets else None)
        base = CompressConfig(model=model, output_dir=str(out), budget_name=budget,
                              data=DataSource(task=task, glue_dir=str(glue_dir) if glue_dir else None),
                              training=make_budget(budget, **overrides), device=device,
                              weight_groups=weight_groups, embedding_bits=embedding_bits)
        console = Console(stderr=True)
        result = run_sweep(base, grid, out, max_drop=max_drop, training_overrides=overrides,
                           stage_store=LocalStageStore(stage_cache) if stage_cache else None,
                           on_progress=lambda e: console.print(f"[cyan]{e.stage}[/] {e.message}")
                           if e.total <= 0 else None)
    except XTCError as exc:
        _fail(exc.message)
    except ValueError as exc:
        _fail(str(exc))
    if json_out:
        print(json.dumps(result.summary, indent=2))
        return
    print_summary(result.summary, f"XTC sweep {task} -> {out}")
