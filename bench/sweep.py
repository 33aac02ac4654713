"""Wall time of a 2 bits x 2 depths sweep (stage cache: the teacher once, each depth's student once)
against the same four points run as independent jobs (each trains its own teacher and student).

    nice -n 10 python bench/sweep.py --budget smoke --out bench/results/sweep_smoke.json

Both sides run the same library code on the same rows; the independent side gets no stage store, so
it trains stage 0 four times and stage 1 four times. The sweep's points must match the independent
jobs' (same seeds, same data): the table shows both scores side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from xtc_core.config import CompressConfig, DataSource, budget
from xtc_core.data import load_task_data
from xtc_core.models import load_teacher
from xtc_core.pipeline import compress
from xtc_core.sweep import SweepGrid, plan_points, sweep


def run(model: str, task: str, glue_dir: str, preset: str, bits: list[int], layers: list[int], work: Path,
        overrides: dict | None = None, device: str | None = None, sweep_first: bool = False) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    base = CompressConfig(model=model, data=DataSource(task=task, glue_dir=glue_dir), output_dir=str(work),
                          training=budget(preset, **(overrides or {})), budget_name=preset, device=device)
    grid = SweepGrid(weight_bits=bits, layers=layers)

    # Untimed warm-up: the first side measured must not pay alone for cold file caches and imports.
    load_task_data(base.data)
    load_teacher(model, num_labels=2, regression=False)

    def run_independent() -> float:
        started = time.perf_counter()
        for point in plan_points(base, grid, work / "independent"):
            independent[point.name] = compress(point.config).metrics  # no stage store: trains every stage
        return time.perf_counter() - started

    def run_sweep() -> float:
        started = time.perf_counter()
        swept.append(sweep(base, grid, work / "sweep"))
        return time.perf_counter() - started

    independent: dict = {}
    swept: list = []
    if sweep_first:
        sweep_s, independent_s = run_sweep(), run_independent()
    else:
        independent_s, sweep_s = run_independent(), run_sweep()
    swept = swept[0]

    rows = []
    for name, metrics in swept.points.items():
        main = metrics["main_metric"]
        rows.append({"point": name, "sweep_score": metrics["student"][main],
                     "independent_score": independent[name]["student"][main],
                     "reused": [s["stage"] for s in metrics["stages"] if s.get("reused")],
                     "packed_bytes": metrics["packed_bytes"]})
    return {
        "model": model, "task": task, "budget": preset, "overrides": overrides or {},
        "grid": dataclasses.asdict(grid),
        "independent_seconds": round(independent_s, 1), "sweep_seconds": round(sweep_s, 1),
        "speedup": round(independent_s / sweep_s, 3), "order": "sweep first" if sweep_first else
        "independent first", "points": rows,
        "pareto": swept.summary["pareto"], "recommendation": swept.summary["recommendation"],
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "device": next(iter(swept.points.values()))["device"]},
    }


def table(result: dict) -> str:
    what = f"{result['model']}, {result['task']}, {result['budget']}"
    lines = [f"# Sweep vs independent jobs ({what})", "",
             f"independent jobs: {result['independent_seconds']} s; sweep: {result['sweep_seconds']} s; "
             f"**{result['speedup']}x** faster ({result.get('order', 'independent first')})", "",
             "| point | sweep score | independent score | stages reused | bytes |", "|---|---|---|---|---|"]
    for r in result["points"]:
        lines.append(f"| {r['point']} | {r['sweep_score']:.4f} | {r['independent_score']:.4f} | "
                     f"{', '.join(r['reused']) or '-'} | {r['packed_bytes']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="bundled:minilm-l6")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--glue-dir", default=os.environ.get("XTC_GLUE_DIR", "../shared/data/glue"))
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--bits", default="1,2")
    parser.add_argument("--layers", default="2,3")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE (JSON)")
    parser.add_argument("--work-dir", default="/tmp/xtc-bench-sweep")
    parser.add_argument("--device", default=None)
    parser.add_argument("--sweep-first", action="store_true", help="time the sweep before the jobs")
    parser.add_argument("--out", default=None, help="JSON path; a .md table is written beside it")
    args = parser.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    result = run(args.model, args.task, args.glue_dir, args.budget, [int(b) for b in args.bits.split(",")],
                 [int(x) for x in args.layers.split(",")], Path(args.work_dir), overrides, args.device,
                 args.sweep_first)
    result["command"] = "python bench/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(table(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(table(result))
    return result


if __name__ == "__main__":
    main()
