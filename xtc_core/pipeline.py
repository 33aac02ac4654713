"""The XTC pipeline: (0) fine-tune the teacher if it has no task head, (1) layer reduction with
full-precision KD, (2) quantization-aware KD from (1)'s best student, then export the packed checkpoint.

Every finished stage leaves its best weights in the work folder, and every running stage leaves
periodic checkpoints, so a rerun with the same config resumes where the last one stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .batches import encode, model_inputs
from .checkpoint import save_compressed, write_metrics
from .config import CompressConfig
from .data import load_task_data
from .device import pick_device
from .distill import kd_loss, label_loss
from .evaluate import encode_dev, score_splits
from .models import load_teacher
from .progress import ProgressCallback, ProgressEvent, ShouldStop
from .quant import freeze_quantized_weights
from .stage_cache import CACHEABLE_STAGES, StageCache, StageStore
from .student import (
    apply_quantization,
    build_student,
    count_params,
    disable_dropout,
    resolve_layers,
    round_unquantized_floats,
)
from .trainer import Stage, StageResult, Trainer, atomic_save

log = logging.getLogger(__name__)
# Layout of a finished stage's `<stage>.done.pt`: {"format", "state_dict", "result", "outcome"}
# (format 1 was a bare state dict beside a `.done.json`).
DONE_FORMAT = 2
_STORAGE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


@dataclass
class CompressResult:
    output_dir: Path
    metrics: dict[str, Any]

    @property
    def student(self) -> dict[str, float]:
        return self.metrics["student"]


def compress(cfg: CompressConfig, on_progress: ProgressCallback | None = None,
             should_stop: ShouldStop | None = None, stage_store: StageStore | None = None) -> CompressResult:
    """Run XTC end to end and write the packed checkpoint to ``cfg.output_dir``.

    With a ``stage_store``, the fine-tuned teacher (stage 0) and the layer-reduced student (stage 1)
    are loaded from it when an earlier run with the same inputs stored them, and stored otherwise."""
    cfg.validate()
    started = time.perf_counter()
    t = cfg.training
    device = pick_device(cfg.device)
    work = Path(cfg.work_dir) if cfg.work_dir else Path(cfg.output_dir) / ".work"
    _prepare_work_dir(work, cfg)

    def emit(stage: str, message: str, index: int = 0, total: int = 1) -> None:
        if on_progress:
            on_progress(ProgressEvent(stage, 0, 0, message=message, stage_index=index, num_stages=total))

    emit("load", "loading data and model")
    task = load_task_data(cfg.data)
    # A new task head is initialised from torch's global generator: seed it, so a run's teacher does not
    # depend on what ran before in this process (and a stage-cache hit is exactly what it would train).
    torch.manual_seed(t.seed)
    teacher = load_teacher(cfg.model, num_labels=task.num_labels, regression=task.is_regression)
    tokenizer = teacher.tokenizer
    teacher_model = teacher.model.to(device)
    train_rows = _subsample(task.train, t.max_train_examples, t.seed)
    train = encode(tokenizer, train_rows, t.max_seq_length)
    first_split = next(iter(task.dev))
    select_dev = encode_dev(tokenizer, {first_split: task.dev[first_split]}, t.max_seq_length,
                            t.max_eval_examples)
    full_dev = encode_dev(tokenizer, task.dev, t.max_seq_length)

    total_layers = teacher_model.config.num_hidden_layers
    layers = resolve_layers(cfg.layers, total_layers)
    plan = []
    if not teacher.has_task_head:
        plan.append(Stage("finetune_teacher", t.finetune_steps, t.finetune_lr))
    if len(layers) < total_layers:
        plan.append(Stage("layer_reduction", t.reduction_steps, t.lr))
    if cfg.quantize:
        plan.append(Stage("quantization", t.quant_steps, t.stage2_lr(cfg.weight_bits)))
    for i, stage in enumerate(plan):
        stage.index, stage.num_stages = i, len(plan)

    trainer = Trainer(tokenizer, train, t, device, task.is_regression, task.main_metric, work,
                      on_progress, should_stop)

    def selection_score(model) -> dict[str, float]:
        return score_splits(model, tokenizer, select_dev, task.metrics, task.is_regression,
                            t.eval_batch_size, device)

    cache = StageCache.for_run(stage_store, teacher.source_dir, task, train_rows, task.dev[first_split], t,
                               on_progress) if stage_store is not None else None
    cache_extra = {"finetune_teacher": {}, "layer_reduction": {"layers": layers, "distill": cfg.distill}}

    def run_stage(model, stage: Stage, loss_fn) -> StageResult | None:
        """Train a stage, or load its finished result from the work folder or the stage cache."""
        key = cache.key(stage, cache_extra[stage.name]) if cache and stage.name in CACHEABLE_STAGES else None
        done = work / f"{stage.name}.done.pt"
        if cfg.resume and done.exists():
            record = torch.load(done, map_location="cpu", weights_only=True)
            _load_state(model, record["state_dict"], device)
            emit(stage.name, "finished earlier; loaded from the work folder", stage.index, stage.num_stages)
            if cache and record.get("outcome"):
                cache.outcomes[stage.name] = record["outcome"]
            return StageResult(**record["result"]) if record.get("result") else None
        runner = kd_trainer.get("trainer", trainer) if stage.name != "finetune_teacher" else trainer
        if key is not None:
            result = cache.run(stage, key, load=lambda state: _load_state(model, state, device),
                               train=lambda: runner.run(model, stage, loss_fn, selection_score),
                               state=model.state_dict, scratch=work)
        else:
            result = runner.run(model, stage, loss_fn, selection_score)
        # One record, written whole: the weights with what the stage cost, so a resumed run still
        # reports it (a kill between two files would have kept the weights and lost the cost).
        atomic_save(done, {
            "format": DONE_FORMAT, "state_dict": model.state_dict(),
            "result": None if result is None else {k: v for k, v in dataclasses.asdict(result).items()
                                                   if k != "history"},
            "outcome": cache.outcomes.get(stage.name) if cache else None})
        (work / f"{stage.name}.ckpt.pt").unlink(missing_ok=True)
        return result

    def supervised(model, batch, labels):
        out = model(**model_inputs(model, batch))
        loss = label_loss(out.logits, labels, task.is_regression)
        return loss, {"ce": float(loss.detach())}

    stage_reports: list[dict] = []
    kd_trainer: dict[str, Trainer] = {}  # the KD stages' trainer when they train on augmented data

    # Stage 0: a model without a task head is first fine-tuned on the task (it becomes the teacher).
    stages = {s.name: s for s in plan}
    if "finetune_teacher" in stages:
        result = run_stage(teacher_model, stages["finetune_teacher"], supervised)
        stage_reports.append(_report(cache, stages["finetune_teacher"], result))
    teacher_model.eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)
    if cfg.distill and t.augment:
        emit("load", f"augmenting the training set ({t.augment} copies per example)")
        kd_trainer["trainer"] = Trainer(
            tokenizer, encode(tokenizer, train_rows + _augmented(teacher, teacher_model, train_rows, t),
                              t.max_seq_length),
            t, device, task.is_regression, task.main_metric, work, on_progress, should_stop)

    scores_kd = cfg.distill and bool(t.kd_attention) and t.kd_attention_target == "scores"
    if scores_kd:
        from .attention import use_scores_attention

        teacher_attn = use_scores_attention(teacher_model)

    def distilled(model, batch, labels):
        inputs = model_inputs(model, batch)
        progress = kd_trainer.get("trainer", trainer).progress
        is_quant_student = getattr(model, "_orig_mod", model) is student_ref.get("quant")  # compiled or not
        w_logits, w_hidden, w_attention = (t.kd_weights(progress) if is_quant_student
                                           else (t.kd_logits, t.kd_hidden, t.kd_attention))
        probs = bool(w_attention) and not scores_kd
        t_scores = s_scores = None
        if w_attention and scores_kd:
            from .attention import capture_scores

            with torch.no_grad(), capture_scores() as t_scores:
                t_out = teacher_model(**inputs, output_hidden_states=True)
            with capture_scores() as s_scores:
                s_out = model(**inputs, output_hidden_states=True)
        else:
            with torch.no_grad():
                t_out = teacher_model(**inputs, output_hidden_states=True, output_attentions=probs)
            s_out = model(**inputs, output_hidden_states=True, output_attentions=probs)
        return kd_loss(s_out, t_out, layers, regression=task.is_regression, w_logits=w_logits,
                       w_hidden=w_hidden, w_attention=w_attention, temperature=t.temperature,
                       attention_mask=batch.get("attention_mask"), hidden_mask=t.kd_hidden_mask,
                       student_scores=s_scores, teacher_scores=t_scores)

    student_loss = distilled if cfg.distill else supervised
    student = build_student(teacher_model, layers)
    student_ref: dict = {}  # the student of stage 2 (late KD weights apply there only)
    for p in student.parameters():
        p.requires_grad_(True)
    if cfg.distill and not t.kd_student_dropout:
        disable_dropout(student)
    if "layer_reduction" in stages:
        result = run_stage(student, stages["layer_reduction"], student_loss)
        stage_reports.append(_report(cache, stages["layer_reduction"], result))

    quantized: dict[str, dict] = {}
    if cfg.quantize:
        quantized = apply_quantization(student, weight_bits=cfg.weight_bits,
                                       activation_bits=cfg.activation_bits, weight_groups=cfg.weight_groups,
                                       embedding_bits=cfg.embedding_bits)
        student_ref["quant"] = student
        result = run_stage(student, stages["quantization"], student_loss)
        stage_reports.append(_report(cache, stages["quantization"], result))

    emit("export", "final evaluation and export", len(plan) - 1 if plan else 0, max(1, len(plan)))
    student.eval()
    if scores_kd:
        teacher_model.set_attn_implementation(teacher_attn)
        student.set_attn_implementation(teacher_attn)
    # The checkpoint stores unquantized floats in float_storage and quantized weights as codes and
    # scales computed once (deterministically): make the in-memory student exactly that before
    # measuring it, so the recorded metric is the checkpoint's metric on this device, with any thread
    # count (another device's arithmetic can round a few 8-bit activations the other way).
    round_unquantized_floats(student, _STORAGE_DTYPES[cfg.float_storage], set(quantized))
    frozen = freeze_quantized_weights(student)
    with torch.inference_mode():
        teacher_scores = score_splits(teacher_model, tokenizer, full_dev, task.metrics, task.is_regression,
                                      t.eval_batch_size, device)
        student_scores = score_splits(student, tokenizer, full_dev, task.metrics, task.is_regression,
                                      t.eval_batch_size, device)

    teacher_params = count_params(teacher_model)
    meta = {
        "weight_bits": cfg.weight_bits if cfg.quantize else None,
        "activation_bits": cfg.activation_bits if cfg.quantize else None,
        "activation_quant": "symmetric, dynamic range per token" if cfg.quantize else None,
        "weight_groups": cfg.weight_groups,
        "embedding_bits": (cfg.embedding_bits or cfg.weight_bits) if cfg.quantize else None,
        "float_storage": cfg.float_storage,
        "quantized": quantized,
        "teacher_layers": layers,
        "teacher": {"model": cfg.model, "num_layers": total_layers, "num_params": teacher_params,
                    "fp32_bytes": teacher_params * 4},
        "task": {"name": task.name, "labels": list(task.labels) if task.labels else None,
                 "metrics": list(task.metrics)},
        "eval": {"max_seq_length": t.max_seq_length, "batch_size": t.eval_batch_size},
        "recipe": {"budget": cfg.budget_name, "distill": cfg.distill, "training": dataclasses.asdict(t)},
    }
    out = save_compressed(student, tokenizer, cfg.output_dir, meta=meta)
    _check_export(out, meta, frozen)
    packed = (out / "model.safetensors").stat().st_size
    main = task.main_metric
    metrics = {
        "task": task.name,
        "main_metric": main,
        "teacher": teacher_scores,
        "student": student_scores,
        "delta": student_scores[main] - teacher_scores[main],
        "fp32_bytes": teacher_params * 4,
        "packed_bytes": packed,
        "ratio": teacher_params * 4 / packed,
        "stages": stage_reports,
        "train_examples": len(train),
        "dev_examples": {split: len(enc) for split, enc in full_dev.items()},
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "library_version": __version__,
    }
    write_metrics(out, metrics)
    if on_progress:
        on_progress(ProgressEvent("done", 1, 1, None, {"student": student_scores}, "finished",
                                  max(0, len(plan) - 1), max(1, len(plan))))
    return CompressResult(out, metrics)


def _prepare_work_dir(work: Path, cfg: CompressConfig) -> None:
    """Training state is only resumed for the very same run: any change to the request (model, data,
    layers, bits, schedule...) discards it rather than loading weights that mean something else."""
    work.mkdir(parents=True, exist_ok=True)
    fields = dataclasses.asdict(cfg)
    for ignored in ("output_dir", "work_dir", "resume", "device"):
        fields.pop(ignored)
    for key in ("train_file", "dev_file"):  # by content: a service re-downloads them to new paths
        path = Path(fields["data"][key] or "")
        if path.is_file():  # a missing file is reported by the data loader, with its name
            fields["data"][key] = hashlib.sha256(path.read_bytes()).hexdigest()
    if fields["embedding_bits"] in (None, cfg.weight_bits):  # the default, however spelled: folders
        fields.pop("embedding_bits")                       # written before the option still resume
    fields["work_format"] = DONE_FORMAT  # a folder another layout wrote is started afresh, not misread
    fingerprint = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
    marker = work / "run.json"
    previous = json.loads(marker.read_text()).get("fingerprint") if marker.exists() else None
    if not cfg.resume or previous != fingerprint:
        for stale in work.glob("*.pt"):
            stale.unlink()
    marker.write_text(json.dumps({"fingerprint": fingerprint}))


def _augmented(teacher, teacher_model, rows: list, t) -> list:
    """TinyBERT-style substitutions: the model's masked-LM head when its checkpoint has one, else
    nearest neighbours in the (fine-tuned) teacher's word embeddings."""
    from .augment import augment_examples, load_mlm

    mlm = load_mlm(teacher.source_dir)
    embeddings = None if mlm is not None else teacher_model.get_input_embeddings().weight
    return augment_examples(rows, teacher.tokenizer, copies=t.augment, prob=t.augment_prob,
                            neighbors=t.augment_neighbors, seed=t.seed, embeddings=embeddings, mlm=mlm)


def _check_export(out: Path, meta: dict, frozen: dict) -> None:
    """The artifact must hold exactly the codes and scales the recorded metric was measured with."""
    from .checkpoint import load_state
    from .quant import dequantize_weight

    state = load_state(out, meta)
    for module_name, (codes, scales) in frozen.items():
        name = f"{module_name}.weight"
        expected = dequantize_weight(codes, scales, meta["quantized"][name]["groups"])
        if not torch.equal(state[name], expected):
            raise RuntimeError(f"exported {name} differs from the evaluated weights")


def _subsample(rows: list, limit: int | None, seed: int) -> list:
    """A seeded random subset (not the file's first rows, which may be ordered)."""
    if not limit or limit >= len(rows):
        return rows
    return random.Random(seed).sample(rows, limit)


def _load_state(model, state: dict, device) -> None:
    model.load_state_dict(state)
    model.to(device).eval()


def _report(cache: StageCache | None, stage: Stage, result: StageResult | None) -> dict:
    outcome = cache.outcomes.get(stage.name, {}) if cache else {}
    if result is None:
        return {"stage": stage.name, **(outcome or {"resumed": True})}
    return {**outcome, "stage": stage.name, "steps": result.steps, "seconds": round(result.seconds, 2),
            "best": result.best_metrics, "step_seconds": round(result.seconds / max(1, result.steps), 4)}
