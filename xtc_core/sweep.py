"""A grid of weight bits x depths (x budgets) on one machine, sharing the stages they have in common.

Points are run depth by depth, so the teacher (stage 0) is trained by the first point and each depth's
layer-reduced student (stage 1) by that depth's first point; every other point loads them from the
stage cache and only runs its own quantization stage (stage 2).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CompressConfig, budget
from .errors import ConfigError
from .pareto import point_name, summarize, table_row
from .pipeline import compress
from .progress import ProgressCallback, ShouldStop
from .stage_cache import LocalStageStore, StageStore


@dataclass
class SweepGrid:
    weight_bits: list[int]
    layers: list[int | list[int]]
    budgets: list[str] | None = None  # None: the base config's schedule only

    def validate(self) -> None:
        if not self.weight_bits or not self.layers:
            raise ConfigError("a sweep needs at least one bit width and one depth")
        if len({json.dumps(x) for x in self.layers}) != len(self.layers) or \
                len(set(self.weight_bits)) != len(self.weight_bits):
            raise ConfigError("the grid repeats a bit width or a depth")


@dataclass
class SweepPoint:
    name: str
    config: CompressConfig


@dataclass
class SweepResult:
    output_dir: Path
    summary: dict[str, Any]  # table, pareto, recommendation, max_drop
    points: dict[str, dict[str, Any]]  # point name -> its compress metrics


def plan_points(base: CompressConfig, grid: SweepGrid, out: Path,
                training_overrides: dict[str, Any] | None = None) -> list[SweepPoint]:
    """Depth-major order: points sharing a stage-1 student run next to each other."""
    grid.validate()
    points = []
    for preset in grid.budgets or [None]:
        training = budget(preset, **(training_overrides or {})) if preset else base.training
        for layers in grid.layers:
            for bits in grid.weight_bits:
                name = point_name(bits, layers, preset)
                cfg = dataclasses.replace(
                    base, weight_bits=bits, layers=layers, training=training,
                    budget_name=preset or base.budget_name, output_dir=str(out / "points" / name),
                    work_dir=str(out / ".work" / name))
                cfg.validate()
                points.append(SweepPoint(name, cfg))
    return points


def sweep(base: CompressConfig, grid: SweepGrid, output_dir: str | Path, *, max_drop: float | None = None,
          training_overrides: dict[str, Any] | None = None, stage_store: StageStore | None = None,
          on_progress: ProgressCallback | None = None, should_stop: ShouldStop | None = None) -> SweepResult:
    """Run every point of the grid; write each checkpoint under ``points/`` and ``sweep.json``.

    ``max_drop``: the accuracy target, in points (x100) below the teacher's main metric.
    """
    out = Path(output_dir)
    points = plan_points(base, grid, out, training_overrides)
    store = stage_store or LocalStageStore(out / ".stage-cache")
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for point in points:
        metrics = compress(point.config, on_progress=on_progress, should_stop=should_stop,
                           stage_store=store).metrics
        results[point.name] = metrics
        rows.append(table_row(point.name, point.config.weight_bits, point.config.layers,
                              point.config.budget_name if grid.budgets else None, metrics))
    summary = summarize(rows, max_drop)
    out.mkdir(parents=True, exist_ok=True)
    reused = [s for m in results.values() for s in m["stages"] if s.get("reused")]
    saved = {"stages": len(reused), "steps": sum(s.get("saved_steps", 0) for s in reused),
             "seconds": round(sum(s.get("saved_seconds", 0.0) for s in reused), 1)}
    (out / "sweep.json").write_text(json.dumps(
        {**summary, "grid": dataclasses.asdict(grid), "saved_by_stage_cache": saved,
         "stages": {name: m["stages"] for name, m in results.items()}}, indent=2))
    return SweepResult(out, summary, results)
