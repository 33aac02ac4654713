import json

import pytest
import torch

from xtc_core.config import CompressConfig, DataSource, budget
from xtc_core.errors import Cancelled, ConfigError, DataError
from xtc_core.evaluate import evaluate_checkpoint
from xtc_core.inspect import inspect_checkpoint
from xtc_core.pipeline import compress


def _config(model_dir, out, data, **kw):
    training = budget("smoke", max_train_examples=32, max_eval_examples=32, **kw.pop("training", {}))
    return CompressConfig(model=str(model_dir), data=data, output_dir=str(out), training=training,
                          budget_name="smoke", **kw)


def test_compress_sst2_then_eval_reproduces_the_recorded_metric(tmp_path, tiny_model_dir, glue_dir):
    events = []
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    cfg = _config(tiny_model_dir, tmp_path / "out", data, weight_bits=2, layers=2, weight_groups=4)
    result = compress(cfg, on_progress=events.append)

    stages = [e.stage for e in events]
    assert stages[0] == "load" and stages[-1] == "done"
    assert "layer_reduction" in stages and "quantization" in stages
    assert "finetune_teacher" not in stages  # the tiny model has a task head
    steps = [e.step for e in events if e.stage == "quantization" and e.total > 0]
    assert max(steps) == cfg.training.quant_steps
    assert all(0.0 <= e.overall <= 1.0 for e in events)

    recorded = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert recorded["student"] == result.student
    assert recorded["dev_examples"] == {"dev": 872}  # the full dev set, whatever the selection subset
    assert evaluate_checkpoint(tmp_path / "out", data) == recorded["student"]  # exactly
    meta = json.loads((tmp_path / "out" / "xtc.json").read_text())
    assert meta["weight_bits"] == 2 and meta["teacher_layers"] == [1, 3]
    assert inspect_checkpoint(tmp_path / "out")["packed_bytes"] == recorded["packed_bytes"]


def test_word_embeddings_at_their_own_width_train_export_and_reload_exactly(tmp_path, tiny_model_dir,
                                                                           glue_dir):
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    sizes = {}
    for embedding_bits in (None, 8):
        out = tmp_path / f"out-{embedding_bits}"
        result = compress(_config(tiny_model_dir, out, data, weight_bits=2, layers=2,
                                  embedding_bits=embedding_bits))
        meta = json.loads((out / "xtc.json").read_text())
        emb = meta["quantized"]["bert.embeddings.word_embeddings.weight"]
        assert emb["bits"] == meta["embedding_bits"] == (embedding_bits or 2)
        encoder = {spec["bits"] for name, spec in meta["quantized"].items() if "word_embeddings" not in name}
        assert encoder == {2}
        assert evaluate_checkpoint(out, data) == result.student  # the recorded metric is the artifact's
        sizes[embedding_bits] = inspect_checkpoint(out)["packed_bytes"]
    config = json.loads((tmp_path / "out-8" / "config.json").read_text())
    vocab, hidden = config["vocab_size"], config["hidden_size"]
    assert sizes[8] - sizes[None] == pytest.approx(vocab * hidden * (8 - 2) / 8, rel=0.01)


def test_headless_model_gets_its_teacher_fine_tuned_first(tmp_path, tiny_headless_model_dir, glue_dir):
    events = []
    data = DataSource(task="rte", glue_dir=str(glue_dir))
    cfg = _config(tiny_headless_model_dir, tmp_path / "out", data, layers=[0, 3])
    compress(cfg, on_progress=events.append)
    seen = [e.stage for e in events]
    assert seen.index("finetune_teacher") < seen.index("layer_reduction") < seen.index("quantization")


def test_regression_task_and_full_depth_skips_layer_reduction(tmp_path, glue_dir):
    from tiny_models import make_tiny_model

    model = make_tiny_model(tmp_path / "m", layers=2, num_labels=1)
    events = []
    data = DataSource(task="stsb", glue_dir=str(glue_dir))
    result = compress(_config(model, tmp_path / "out", data, layers=2), on_progress=events.append)
    assert "layer_reduction" not in {e.stage for e in events}
    assert set(result.student) == {"pearson", "spearman"}
    assert evaluate_checkpoint(tmp_path / "out", data) == result.student


def test_user_files_with_a_column_mapping(tmp_path, tiny_model_dir):
    rows = [("good movie", "pos"), ("bad film", "neg"), ("great acting", "pos"), ("awful plot", "neg")] * 8
    for name, part in (("train.csv", rows), ("dev.csv", rows[:8])):
        (tmp_path / name).write_text("review,sentiment\n" + "".join(f"{t},{y}\n" for t, y in part))
    data = DataSource(train_file=str(tmp_path / "train.csv"), dev_file=str(tmp_path / "dev.csv"),
                      text_column="review", label_column="sentiment")
    result = compress(_config(tiny_model_dir, tmp_path / "out", data, layers=1))
    assert set(result.student) == {"accuracy", "f1"}
    only_dev = DataSource(dev_file=str(tmp_path / "dev.csv"), text_column="review", label_column="sentiment")
    assert evaluate_checkpoint(tmp_path / "out", only_dev) == result.student


def test_cancel_then_resume_from_the_last_checkpoint(tmp_path, tiny_model_dir, glue_dir):
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    training = {"quant_steps": 8, "checkpoint_every": 2}
    seen = []

    def stop_after_5_quant_steps():
        return sum(1 for e in seen if e.stage == "quantization" and e.loss is not None) >= 5

    cfg = _config(tiny_model_dir, tmp_path / "out", data, layers=2, training=training)
    with pytest.raises(Cancelled):
        compress(cfg, on_progress=seen.append, should_stop=stop_after_5_quant_steps)
    work = tmp_path / "out" / ".work"
    assert (work / "layer_reduction.done.pt").exists() and (work / "quantization.ckpt.pt").exists()
    assert not (tmp_path / "out" / "metrics.json").exists()

    before = torch.load(work / "quantization.ckpt.pt", weights_only=True)["seconds"]
    assert before > 0
    resumed = []
    result = compress(cfg, on_progress=resumed.append)
    messages = {(e.stage, e.message) for e in resumed}
    assert ("quantization", "resumed at step 4") in messages
    assert any(e.stage == "layer_reduction" and "finished earlier" in e.message for e in resumed)
    q_steps = [e.step for e in resumed if e.stage == "quantization" and e.loss is not None]
    assert q_steps == [5, 6, 7, 8]  # only the steps that were not done yet
    # The report still counts every stage's whole cost: stage 1 from the work folder's record, stage 2
    # its steps before the cancel too (the checkpoint keeps the seconds spent).
    first = {e.stage: e for e in seen if e.loss is not None}
    reports = {r["stage"]: r for r in result.metrics["stages"]}
    assert reports["layer_reduction"]["steps"] == cfg.training.reduction_steps
    assert reports["layer_reduction"]["seconds"] > 0 and "best" in reports["layer_reduction"]
    assert reports["quantization"]["steps"] == 8 and first["quantization"].step == 5
    assert reports["quantization"]["seconds"] > before


def test_a_changed_request_does_not_resume_stale_state(tmp_path, tiny_model_dir, glue_dir):
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    compress(_config(tiny_model_dir, tmp_path / "out", data, layers=[0, 1]))
    work = tmp_path / "out" / ".work"
    assert (work / "layer_reduction.done.pt").exists()
    events = []
    # same depth, other teacher layers: the old stage-1 weights would load without error, wrongly
    cfg = _config(tiny_model_dir, tmp_path / "out", data, layers=[2, 3])
    result = compress(cfg, on_progress=events.append)
    assert not any("finished earlier" in e.message for e in events)
    assert json.loads((tmp_path / "out" / "xtc.json").read_text())["teacher_layers"] == [2, 3]
    assert evaluate_checkpoint(tmp_path / "out", data) == result.student


def test_a_work_folder_of_another_layout_is_started_afresh(tmp_path, tiny_model_dir, glue_dir, monkeypatch):
    import xtc_core.pipeline as pipeline

    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    cfg = _config(tiny_model_dir, tmp_path / "out", data, layers=2)
    monkeypatch.setattr(pipeline, "DONE_FORMAT", 1)  # an older release wrote this folder
    compress(cfg)
    monkeypatch.undo()
    events = []
    compress(cfg, on_progress=events.append)
    assert not any("finished earlier" in e.message for e in events)
    record = torch.load(tmp_path / "out" / ".work" / "layer_reduction.done.pt", weights_only=True)
    assert record["format"] == pipeline.DONE_FORMAT
    assert record["result"]["steps"] == cfg.training.reduction_steps
    events.clear()
    compress(cfg, on_progress=events.append)  # same layout now: resumed
    assert any(e.stage == "layer_reduction" and "finished earlier" in e.message for e in events)


def test_invalid_requests_fail_before_any_work(tmp_path, tiny_model_dir, glue_dir):
    good = DataSource(task="sst2", glue_dir=str(glue_dir))
    with pytest.raises(ConfigError, match="weight_bits"):
        compress(_config(tiny_model_dir, tmp_path / "o", good, weight_bits=3))
    for bad in (3, 16, True):
        with pytest.raises(ConfigError, match="embedding_bits must be 1, 2, 4, 8"):
            compress(_config(tiny_model_dir, tmp_path / "o", good, embedding_bits=bad))
    with pytest.raises(ConfigError, match="unknown GLUE task"):
        compress(_config(tiny_model_dir, tmp_path / "o", DataSource(task="squad", glue_dir=str(glue_dir))))
    with pytest.raises(ConfigError, match="strictly increasing"):
        compress(_config(tiny_model_dir, tmp_path / "o", good, layers=[3, 1]))
    with pytest.raises(ConfigError, match="unknown training option"):
        budget("smoke", learning_rate=1)
    with pytest.raises(DataError, match="no train.tsv"):
        compress(_config(tiny_model_dir, tmp_path / "o", DataSource(task="qnli", glue_dir=str(glue_dir))))


def test_compiled_training_forward_gives_a_checkpoint_that_reproduces_its_metric(tmp_path, tiny_model_dir,
                                                                                  glue_dir):
    """training.compile: the KD stages run the student's forward through torch.compile (inductor, a
    real compilation), while state dicts, evaluation and the export keep using the module itself."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    cfg = _config(tiny_model_dir, tmp_path / "out", data, weight_bits=1, layers=2,
                  training={"compile": True, "kd_attention_target": "scores", "kd_late_start": 0.5,
                            "kd_late_logits": 2.0})
    result = compress(cfg)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # something was compiled
    recorded = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert evaluate_checkpoint(tmp_path / "out", data) == recorded["student"] == result.student
    meta = json.loads((tmp_path / "out" / "xtc.json").read_text())
    assert meta["recipe"]["training"]["compile"] is True
    torch._dynamo.reset()
