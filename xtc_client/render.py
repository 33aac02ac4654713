"""Human-readable views of jobs (tables on stdout); --json prints the API's objects instead."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .watch import _fmt_eta


def _bits(job: dict[str, Any]) -> str:
    comp = job["request"].get("compression") or {}
    act = comp.get("activation_bits")
    layers = comp.get("layers")
    depth = "half" if layers is None else (len(layers) if isinstance(layers, list) else layers)
    extra = f" E{comp['embedding_bits']}" if comp.get("embedding_bits") else ""
    extra += f" G{comp['weight_groups']}" if (comp.get("weight_groups") or 1) > 1 else ""
    return f"W{comp.get('weight_bits', 1)}A{act if act else 32} L{depth}{extra}"


def _task(job: dict[str, Any]) -> str:
    task = job["request"].get("task")
    return task if isinstance(task, str) else f"dataset {task.get('train_dataset', '?')}"


def _score(job: dict[str, Any]) -> str:
    m = job.get("metrics") or {}
    main = m.get("main_metric")
    if not main:
        return ""
    return f"{m['student'][main]:.4f} ({m['delta']:+.4f})"


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(jobs)} job(s)")
    for col in ("id", "status", "stage", "progress", "eta", "model", "task", "bits", "student", "ratio"):
        table.add_column(col)
    for j in jobs:
        ratio = (j.get("metrics") or {}).get("ratio")
        table.add_row(j["id"], j["status"], j.get("stage") or "", f"{100 * j['progress']:.0f}%",
                      _fmt_eta(j.get("eta_seconds"))[4:] if j["status"] == "running" else "",
                      str(j["request"].get("model", ""))[-32:], _task(j), _bits(j), _score(j),
                      f"{ratio:.1f}x" if ratio else "")
    return table


def print_job(console: Console, job: dict[str, Any]) -> None:
    table = Table(title=f"job {job['id']}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows = [("status", job["status"]), ("stage", job.get("stage") or ""),
            ("progress", f"{100 * job['progress']:.1f}%"), ("eta", _fmt_eta(job.get("eta_seconds"))[4:]),
            ("model", str(job["request"].get("model"))), ("task", _task(job)), ("compression", _bits(job)),
            ("budget", str((job["request"].get("training") or {}).get("budget", ""))),
            ("created", str(job["created_at"])), ("finished", str(job.get("finished_at") or ""))]
    if job.get("error"):
        rows.append(("error", f"{job['error']['code']}: {job['error']['message']}"))
    m = job.get("metrics") or {}
    if m.get("main_metric"):
        main = m["main_metric"]
        rows += [("teacher " + main, f"{m['teacher'][main]:.4f}"),
                 ("student " + main, f"{m['student'][main]:.4f}"), ("delta", f"{m['delta']:+.4f}"),
                 ("size", f"{m['packed_bytes']:,} bytes (fp32 {m['fp32_bytes']:,}), "
                          f"{m['ratio']:.1f}x smaller")]
    elif job.get("latest_metrics"):
        rows.append(("latest", "  ".join(f"{k}={v}" for k, v in job["latest_metrics"].items())))
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)


def _child_ids(sweep: dict[str, Any]) -> dict[str, str]:
    return {j["request"].get("sweep_point", j["id"]): j["id"] for j in sweep.get("children") or []}


def sweep_table(sweep: dict[str, Any]) -> Table:
    """Every point: its child job, status, metric, size and ratio; ★ on the Pareto front."""
    front, rec = set(sweep["pareto"]), sweep["recommendation"].get("point")
    jobs = _child_ids(sweep)
    table = Table(title=f"sweep {sweep['id']}: {sweep['status']}")
    for col in ("point", "job", "status", "metric", "drop (pts)", "size", "ratio", "pareto", "recommended"):
        table.add_column(col)
    for r in sweep["table"]:
        metric = f"{r['metric']} {r['score']:.4f}" if r["score"] is not None else ""
        table.add_row(r["point"], jobs.get(r["point"], ""), r["status"], metric,
                      f"{r['drop_points']:.2f}" if r["drop_points"] is not None else "",
                      f"{r['packed_bytes']:,} B" if r["packed_bytes"] else "",
                      f"{r['ratio']:.1f}x" if r["ratio"] else "",
                      "★" if r["point"] in front else "", "✓" if r["point"] == rec else "")
    return table


def print_sweep(console: Console, sweep: dict[str, Any]) -> None:
    console.print(sweep_table(sweep))
    rec = sweep["recommendation"]
    console.print(f"recommended: {rec.get('point') or 'none'} ({rec.get('reason', '')})", highlight=False)


def sweeps_table(sweeps: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(sweeps)} sweep(s)")
    for col in ("id", "status", "points", "model", "task", "recommended", "created"):
        table.add_column(col)
    for sw in sweeps:
        done = sum(r["status"] == "succeeded" for r in sw["table"])
        task = sw["request"].get("task")
        table.add_row(sw["id"], sw["status"], f"{done}/{len(sw['table'])}",
                      str(sw["request"].get("model", ""))[-32:],
                      task if isinstance(task, str) else f"dataset {task.get('train_dataset', '?')}",
                      sw["recommendation"].get("point") or "", str(sw["created_at"])[:19])
    return table
