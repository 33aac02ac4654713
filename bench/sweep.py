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

    # Wall time and this process's CPU time: on a shared machine the load of other processes swings
    # wall time by several x between the two sides; CPU time (one torch thread) is far steadier.
    def timed(fn) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    def run_independent() -> None:
        for point in plan_points(base, grid, work / "independent"):
            independent[point.name] = compress(point.config).metrics  # no stage store: trains every stage

    def run_sweep() -> None:
        swept.append(sweep(base, grid, work / "sweep"))

    independent: dict = {}
    swept: list = []
    if sweep_first:
        sweep_t, independent_t = timed(run_sweep), timed(run_independent)
    else:
        independent_t, sweep_t = timed(run_independent), timed(run_sweep)
    swept = swept[0]
    (independent_s, independent_cpu), (sweep_s, sweep_cpu) = independent_t, sweep_t

    rows = []
    for name, metrics in swept.points.items():
        main = metrics["main_metric"]
        rows.append({"point": name, "sweep_score": metrics["student"][main],
                     "independent_score": independent[name]["student"][main],
                     "reused": [s["stage"] for s in metrics["stages"] if s.get("reused")],
                     "packed_bytes": metrics["packed_bytes"],
                     "stage_seconds": {s["stage"]: s.get("seconds") for s in metrics["stages"]},
                     "independent_stage_seconds": {s["stage"]: s.get("seconds")
                                                   for s in independent[name]["stages"]}})
    return {
        "model": model, "task": task, "budget": preset, "overrides": overrides or {},
        "grid": dataclasses.asdict(grid),
        "independent_seconds": round(independent_s, 1), "sweep_seconds": round(sweep_s, 1),
        "speedup": round(independent_s / sweep_s, 3),
        "independent_cpu_seconds": round(independent_cpu, 1), "sweep_cpu_seconds": round(sweep_cpu, 1),
        "cpu_speedup": round(independent_cpu / sweep_cpu, 3), "order": "sweep first" if sweep_first else
        "independent first", "points": rows,
        "pareto": swept.summary["pareto"], "recommendation": swept.summary["recommendation"],
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "device": next(iter(swept.points.values()))["device"]},
    }


def table(result: dict) -> str:
    what = f"{result['model']}, {result['task']}, {result['budget']}"
    lines = [f"# Sweep vs independent jobs ({what})", "",
             f"independent jobs: {result['independent_seconds']} s; sweep: {result['sweep_seconds']} s; "
             f"{result['speedup']}x ({result.get('order', 'independent first')}); CPU time: "
             f"{result.get('independent_cpu_seconds')} s vs {result.get('sweep_cpu_seconds')} s, "
             f"**{result.get('cpu_speedup')}x** faster", "",
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
