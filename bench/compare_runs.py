"""Two recipes, seed by seed, against the same teacher: the paired test a default change needs.

bench/fidelity.py compares each XTC variant with its no-distillation baseline inside one table. A
recipe change that is a global option (``--weight-groups``, ``--set quant_lr_w2=...``) runs under
its own ``--tag``, so its table and the default's are two files; this script reads both runs'
cached per-seed dev predictions and tests A against B on the same dev examples:

    python bench/compare_runs.py --task sst2 --work-dir /work/fid/work \\
        --a w2-g64:xtc-w2 --b w2-g1:xtc-w2 --out bench/results/compare_sst2_w2_g64-vs-g1

It trains nothing. It refuses runs made against different teachers (another teacher moves every
score) and pairs only the seeds both runs have. The report says which run inputs differ, so the
table names the change it measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity import DEFAULT_GLUE, _read_json, _slug, _write_json, paired_test  # noqa: E402


class CompareError(Exception):
    """A comparison that would not mean anything; the message says why."""


def load_runs(work_dir: Path, model: str, task: str, tag: str, variant: str) -> dict[int, dict]:
    """{seed: cached run} of one variant under one tag."""
    folder = work_dir / f"{_slug(model)}-{task}-{tag}" / "variants"
    runs = {}
    for path in sorted(folder.glob(f"{variant}-s*.json")):
        run = _read_json(path)
        if run and "dev_predictions" in run and path.stem == f"{variant}-s{run.get('seed')}":
            runs[int(run["seed"])] = run
    if not runs:
        raise CompareError(f"no cached seeded runs of {variant!r} in {folder} (run bench/fidelity.py with "
                           f"--tag {tag} --variants {variant} --seeds ... first)")
    return runs


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def input_differences(a: dict, b: dict) -> dict[str, list]:
    """Run inputs (cache keys) that differ between A and B, the seed aside: what the table measures."""
    fa, fb = _flatten(a["key"]), _flatten(b["key"])
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb))
            if k != "training.seed" and fa.get(k) != fb.get(k)}


def compare(runs_a: dict[int, dict], runs_b: dict[int, dict], labels: list, metric_names, main: str,
            regression: bool) -> dict[str, Any]:
    seeds = sorted(set(runs_a) & set(runs_b))
    if not seeds:
        raise CompareError(f"no seed in common (A: {sorted(runs_a)}, B: {sorted(runs_b)})")
    first_a, first_b = runs_a[seeds[0]], runs_b[seeds[0]]
    teachers = {json.dumps(r["key"]["teacher"], sort_keys=True) for r in [*runs_a.values(), *runs_b.values()]}
    checks = {r.get("teacher_check") for r in [*runs_a.values(), *runs_b.values()]}
    if len(teachers) > 1 or len(checks) > 1:
        raise CompareError(f"the runs were made against different teachers (configurations {len(teachers)}, "
                           f"teacher scores {sorted(c for c in checks if c is not None)}): compare runs "
                           f"that share one teacher (the same --work-dir)")
    per_seed = [{"seed": s, "a": runs_a[s]["score"], "b": runs_b[s]["score"],
                 "diff": runs_a[s]["score"] - runs_b[s]["score"]} for s in seeds]
    test = paired_test([runs_a[s]["dev_predictions"] for s in seeds],
                       [runs_b[s]["dev_predictions"] for s in seeds], labels, metric_names, main, regression)

    def summary(key: str) -> dict[str, float]:
        values = [row[key] for row in per_seed]
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {"seeds": seeds, "per_seed": per_seed, "a": summary("a"), "b": summary("b"),
            "diff": summary("diff"), "paired": test, "teacher_score": first_a.get("teacher_check"),
            "differences": input_differences(first_a, first_b)}


def report(result: dict, names: tuple[str, str], task: str, metric: str, command: str) -> str:
    pct = 100.0
    a, b = names
    p = result["paired"]
    lines = [f"# {task}: {a} against {b} ({metric}, paired by seed)", "",
             f"Command: `{command}`", "",
             f"- teacher (shared): {result['teacher_score'] * pct:.2f}",
             "- what differs (A, B): " + ("; ".join(f"`{k}`: {va!r} vs {vb!r}" for k, (va, vb)
                                                  in result["differences"].items()) or "nothing but the tag"),
             "", f"| seed | A: {a} | B: {b} | A - B |", "|---|---|---|---|"]
    for row in result["per_seed"]:
        lines.append(f"| {row['seed']} | {row['a'] * pct:.2f} | {row['b'] * pct:.2f} | "
                     f"{row['diff'] * pct:+.2f} |")
    lines.append(f"| mean ± std | {result['a']['mean'] * pct:.2f} ± {result['a']['std'] * pct:.2f} | "
                 f"{result['b']['mean'] * pct:.2f} ± {result['b']['std'] * pct:.2f} | "
                 f"{result['diff']['mean'] * pct:+.2f} ± {result['diff']['std'] * pct:.2f} |")
    lo, hi = p["bootstrap_ci95"]
    lines += ["", f"Paired over dev examples and seeds: bootstrap 95% CI of A - B [{lo * pct:+.2f}, "
              f"{hi * pct:+.2f}], p(A not ahead) = {p['bootstrap_p_not_better']:.3f}"]
    if "mcnemar" in p:
        m = p["mcnemar"]
        lines[-1] += (f"; McNemar p = {m['p_two_sided']:.3f} (only A right {m['xtc_only_right']}, "
                      f"only B right {m['baseline_only_right']})")
    if "ttest_rel_p_two_sided" in p:
        lines[-1] += f"; t-test over seeds p = {p['ttest_rel_p_two_sided']:.3f}"
    return "\n".join(lines) + "\n"


def _side(text: str) -> tuple[str, str]:
    tag, sep, variant = text.partition(":")
    if not sep or not tag or not variant:
        raise argparse.ArgumentTypeError(f"expected TAG:VARIANT, got {text!r}")
    return tag, variant


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", required=True)
    p.add_argument("--a", type=_side, required=True, help="TAG:VARIANT of the change")
    p.add_argument("--b", type=_side, required=True, help="TAG:VARIANT it is measured against")
    p.add_argument("--work-dir", type=Path, required=True, help="bench/fidelity.py's --work-dir of both runs")
    p.add_argument("--model", default="bundled:minilm-l6")
    p.add_argument("--glue-dir", type=Path, default=DEFAULT_GLUE)
    p.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    args = p.parse_args(argv)

    from xtc_core.config import DataSource
    from xtc_core.data import load_task_data
    from xtc_core.tasks import get_task

    spec = get_task(args.task)
    try:
        runs_a = load_runs(args.work_dir, args.model, spec.name, *args.a)
        runs_b = load_runs(args.work_dir, args.model, spec.name, *args.b)
        task = load_task_data(DataSource(task=spec.name, glue_dir=str(args.glue_dir)))
        labels = [row.label for row in next(iter(task.dev.values()))]
        result = compare(runs_a, runs_b, labels, task.metrics, task.main_metric, task.is_regression)
    except CompareError as e:
        sys.exit(f"compare_runs: {e}")
    names = (":".join(args.a), ":".join(args.b))
    command = "python bench/compare_runs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(result, names, spec.name, task.main_metric, command)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        _write_json(args.out.with_suffix(".json"), {"task": spec.name, "a": names[0], "b": names[1],
                                                    "metric": task.main_metric, "command": command, **result})
    return result


if __name__ == "__main__":
    main()
