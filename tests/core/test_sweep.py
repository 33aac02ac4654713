"""Sweeps share stages: stage 0 once, stage 1 once per depth, stage 2 per point (real training)."""

import json
from collections import Counter

from typer.testing import CliRunner

from xtc_core.checkpoint import load_compressed
from xtc_core.config import CompressConfig, DataSource, budget
from xtc_core.pareto import pareto_front, recommend, table_row
from xtc_core.stage_cache import LocalStageStore, stage_key
from xtc_core.sweep import SweepGrid, sweep


def _base(model_dir, out, glue_dir):
    training = budget("smoke", max_train_examples=32, max_eval_examples=32)
    return CompressConfig(model=str(model_dir), data=DataSource(task="rte", glue_dir=str(glue_dir)),
                          output_dir=str(out), training=training, budget_name="smoke")


def _cache_events(events):
    return Counter((e.stage, e.metrics["stage_cache"]) for e in events if "stage_cache" in e.metrics)


def test_2x2_sweep_trains_shared_stages_once(tmp_path, tiny_headless_model_dir, glue_dir):
    events = []
    store = LocalStageStore(tmp_path / "cache")
    grid = SweepGrid(weight_bits=[1, 2], layers=[1, 2])
    sweep(_base(tiny_headless_model_dir, tmp_path / "s", glue_dir), grid, tmp_path / "s",
          stage_store=store, on_progress=events.append)

    assert _cache_events(events) == {("finetune_teacher", "miss"): 1, ("finetune_teacher", "hit"): 3,
                                     ("layer_reduction", "miss"): 2, ("layer_reduction", "hit"): 2}
    trained_quant = [e for e in events if e.stage == "quantization" and e.message == "started"]
    assert len(trained_quant) == 4  # stage 2 really runs per point
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3  # 1 teacher + 2 students

    summary = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["point"] for r in summary["table"]] == ["w1-l1", "w2-l1", "w1-l2", "w2-l2"]
    assert summary["pareto"] and set(summary["pareto"]) <= {r["point"] for r in summary["table"]}
    assert summary["recommendation"]["point"] in summary["pareto"]
    for row in summary["table"]:
        folder = tmp_path / "s" / "points" / row["point"]
        model = load_compressed(folder)
        assert model.config.num_hidden_layers == row["layers"]
        assert json.loads((folder / "xtc.json").read_text())["weight_bits"] == row["weight_bits"]
        assert row["packed_bytes"] == (folder / "model.safetensors").stat().st_size
    # Same teacher everywhere: every point reports the same teacher score.
    assert len({r["teacher_score"] for r in summary["table"]}) == 1
    reused = summary["stages"]["w2-l2"]
    assert [s.get("reused") for s in reused] == [True, True, None]
    # Each hit reports what training it saved: the cost stored with the entry by the run that trained it.
    trained = {s["cache_key"]: s for m in summary["stages"].values() for s in m if s.get("reused") is False}
    hits = [s for m in summary["stages"].values() for s in m if s.get("reused")]
    assert len(hits) == 5 and all(s["saved_steps"] == trained[s["cache_key"]]["steps"] > 0 for s in hits)
    assert summary["saved_by_stage_cache"] == {
        "stages": 5, "steps": sum(s["saved_steps"] for s in hits),
        "seconds": round(sum(s["saved_seconds"] for s in hits), 1)}
    assert all(e.metrics["saved_steps"] > 0 for e in events if e.metrics.get("stage_cache") == "hit")

    # A later sweep with the same inputs reuses every shared stage (a new output folder, same cache).
    again = []
    sweep(_base(tiny_headless_model_dir, tmp_path / "t", glue_dir), SweepGrid([2], [2]), tmp_path / "t",
          stage_store=store, on_progress=again.append)
    assert _cache_events(again) == {("finetune_teacher", "hit"): 1, ("layer_reduction", "hit"): 1}


def test_stage_keys_follow_what_the_stage_depends_on():
    base = budget("smoke")
    key = lambda stage, t, **kw: stage_key(stage, index=1, model="m", data="d", training=t,  # noqa: E731
                                           parent=kw.get("parent"), extra=kw.get("extra"))
    k1 = key("layer_reduction", base, extra={"layers": [1, 3]})
    assert k1 == key("layer_reduction", base.replace(quant_steps=999), extra={"layers": [1, 3]})
    assert k1 != key("layer_reduction", base.replace(seed=7), extra={"layers": [1, 3]})
    assert k1 != key("layer_reduction", base.replace(reduction_steps=5), extra={"layers": [1, 3]})
    assert k1 != key("layer_reduction", base, extra={"layers": [0, 3]})
    assert k1 != key("layer_reduction", base, extra={"layers": [1, 3]}, parent="teacher-b")
    t0 = key("finetune_teacher", base)
    assert t0 == key("finetune_teacher", base.replace(reduction_steps=5, lr=1.0))
    assert t0 != key("finetune_teacher", base.replace(finetune_steps=5))
    assert t0 != stage_key("finetune_teacher", index=1, model="m", data="other", training=base, parent=None)


def test_pareto_front_and_recommendation():
    def row(name, score, size):
        return table_row(name, 1, 2, None, {"main_metric": "accuracy", "student": {"accuracy": score},
                                             "teacher": {"accuracy": 0.90}, "packed_bytes": size,
                                             "ratio": 1000 / size})

    rows = [row("a", 0.89, 100), row("b", 0.85, 50), row("c", 0.84, 60), row("d", 0.80, 40),
            table_row("e", 2, 3, None, None, status="running")]
    assert pareto_front(rows) == ["d", "b", "a"]  # c is beaten by b on both axes
    assert recommend(rows, 5.0)["point"] == "b"  # smallest within 5 points
    assert recommend(rows, 1.0)["point"] == "a"
    assert recommend(rows, None)["point"] == "a"
    missed = recommend(rows, 0.5)
    assert missed["point"] is None and "closest is a" in missed["reason"]


def test_cli_sweep_prints_the_table_and_rejects_bad_grids(tmp_path, tiny_model_dir, glue_dir):
    from xtc_core.cli import app

    runner = CliRunner()
    args = ["sweep", "--model", str(tiny_model_dir), "--task", "rte", "--glue-dir", str(glue_dir),
            "--out", str(tmp_path / "o"), "--budget", "smoke", "--set", "max_train_examples=16",
            "--set", "max_eval_examples=16"]
    r = runner.invoke(app, [*args, "--bits", "2", "--layers", "1", "--max-drop", "100", "--json",
                            "--embedding-bits", "4"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["recommendation"]["point"] == "w2-l1" and summary["pareto"] == ["w2-l1"]
    assert (tmp_path / "o" / "points" / "w2-l1" / "model.safetensors").exists()
    meta = json.loads((tmp_path / "o" / "points" / "w2-l1" / "xtc.json").read_text())
    assert meta["embedding_bits"] == 4 and meta["weight_bits"] == 2
    bad = runner.invoke(app, [*args, "--bits", "3", "--layers", "1"])
    assert bad.exit_code == 2 and "weight_bits must be 1 or 2" in bad.output
    bad = runner.invoke(app, [*args, "--bits", "1", "--layers", "1", "--embedding-bits", "5"])
    assert bad.exit_code == 2 and "embedding_bits must be" in bad.output
    bad = runner.invoke(app, [*args, "--bits", "x", "--layers", "1"])
    assert bad.exit_code == 2 and "--bits" in bad.output


def test_local_store_lock_makes_a_second_thread_wait(tmp_path):
    import threading
    import time

    store = LocalStageStore(tmp_path / "c")
    order = []

    def second():
        with store.lock("k" * 64):
            order.append("second")

    with store.lock("k" * 64):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
    with store.lock("a" * 64), store.lock("b" * 64):  # different keys do not block each other
        pass
