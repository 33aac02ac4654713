"""Sweep results as a table, its size/accuracy Pareto front and a recommended point. Torch-free: the
library's `xtc sweep` and the service's `GET /sweeps/{id}` share it."""

from __future__ import annotations

from typing import Any


def point_name(weight_bits: int, layers: int | list[int] | None, budget: str | None = None) -> str:
    depth = "x".join(map(str, layers)) if isinstance(layers, list) else str(layers if layers else "half")
    return f"w{weight_bits}-l{depth}" + (f"-{budget}" if budget else "")


def table_row(point: str, weight_bits: int, layers: Any, budget: str | None,
              metrics: dict[str, Any] | None, status: str = "succeeded") -> dict[str, Any]:
    """One point: its metric, how far below the teacher (in points, x100), bytes and ratio."""
    row: dict[str, Any] = {"point": point, "weight_bits": weight_bits, "layers": layers, "budget": budget,
                           "status": status, "metric": None, "score": None, "teacher_score": None,
                           "drop_points": None, "packed_bytes": None, "ratio": None}
    if metrics:
        main = metrics["main_metric"]
        score, teacher = metrics["student"][main], metrics["teacher"][main]
        row.update(metric=main, score=score, teacher_score=teacher,
                   drop_points=round((teacher - score) * 100, 4), packed_bytes=metrics["packed_bytes"],
                   ratio=metrics["ratio"])
    return row


def _finished(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["score"] is not None and r["packed_bytes"] is not None]


def pareto_front(rows: list[dict[str, Any]]) -> list[str]:
    """Points no other point beats on both accuracy (higher) and size (smaller), smallest first."""
    done = _finished(rows)
    front = [r for r in done if not any(
        o["score"] >= r["score"] and o["packed_bytes"] <= r["packed_bytes"]
        and (o["score"] > r["score"] or o["packed_bytes"] < r["packed_bytes"]) for o in done)]
    return [r["point"] for r in sorted(front, key=lambda r: (r["packed_bytes"], -r["score"]))]


def recommend(rows: list[dict[str, Any]], max_drop: float | None) -> dict[str, Any]:
    """With a target: the smallest point at most ``max_drop`` points below the teacher. Without one:
    the most accurate point (the smaller on a tie)."""
    done = _finished(rows)
    if not done:
        return {"point": None, "reason": "no point has finished yet"}
    if max_drop is None:
        best = min(done, key=lambda r: (-r["score"], r["packed_bytes"]))
        return {"point": best["point"], "reason": "the most accurate point (no accuracy target given)"}
    ok = [r for r in done if r["drop_points"] <= max_drop]
    if not ok:
        closest = min(done, key=lambda r: (r["drop_points"], r["packed_bytes"]))
        return {"point": None, "reason": f"no point is within {max_drop} points of the teacher; the closest "
                                         f"is {closest['point']} ({closest['drop_points']:.2f} points below)"}
    best = min(ok, key=lambda r: (r["packed_bytes"], -r["score"]))
    return {"point": best["point"],
            "reason": f"the smallest point within {max_drop} points of the teacher "
                      f"({best['drop_points']:.2f} points below, {best['ratio']:.1f}x smaller)"}


def summarize(rows: list[dict[str, Any]], max_drop: float | None) -> dict[str, Any]:
    return {"table": rows, "pareto": pareto_front(rows), "recommendation": recommend(rows, max_drop),
            "max_drop": max_drop}
