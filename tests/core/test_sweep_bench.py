"""bench/sweep.py runs end to end on a tiny model: both sides produce the same four points."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_bench_on_a_tiny_model(tmp_path, tiny_headless_model_dir, glue_dir):
    spec = importlib.util.spec_from_file_location("sweep_bench", ROOT / "bench" / "sweep.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "r" / "sweep.json"
    result = bench.main(["--model", str(tiny_headless_model_dir), "--task", "rte", "--glue-dir",
                         str(glue_dir), "--budget", "smoke", "--layers", "1,2",
                         "--set", "max_train_examples=16", "--set", "max_eval_examples=16",
                         "--work-dir", str(tmp_path / "w"), "--out", str(out), "--sweep-first"])
    saved = json.loads(out.read_text())
    assert saved["speedup"] == result["speedup"] > 0 and saved["order"] == "sweep first"
    # Reuse is exact: every point scores what the same point scores when it trains every stage itself.
    assert all(p["sweep_score"] == p["independent_score"] for p in saved["points"]), saved["points"]
    assert [p["point"] for p in saved["points"]] == ["w1-l1", "w2-l1", "w1-l2", "w2-l2"]
    # The first point trains everything; the others reuse what they share with earlier points.
    assert [p["reused"] for p in saved["points"]] == [
        [], ["finetune_teacher", "layer_reduction"], ["finetune_teacher"],
        ["finetune_teacher", "layer_reduction"]]
    assert "faster" in out.with_suffix(".md").read_text() and saved["cpu_speedup"] > 0
