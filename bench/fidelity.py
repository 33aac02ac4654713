"""Fidelity benchmark: XTC against what users would try instead, on the full official GLUE dev sets.

One run = one task, one teacher, one training subset, every variant:

* teacher      the given model; without a task head it is first fine-tuned on the task (the
               pipeline's stage 0, run once here and saved as a local HF folder that every variant
               then loads, so all variants share the very same teacher)
* xtc-*        XTC (layer reduction + 1/2-bit weight QAT + 8-bit activations + one-stage KD)
* nokd-*       the same student and quantizers trained on the labels only (distill=False)
* ptq-w1/-w2   post-training binarization / ternarization of the teacher (same quantizers, 8-bit
               activations, no training)
* int8-dynamic torch dynamic int8 quantization of the teacher's nn.Linear layers

Every variant's result is cached as JSON under the work folder (reused unless ``--force`` or the
config changed), so an interrupted run resumes. Tables go to ``bench/results/fidelity_<task>_<tag>``
(.md and .json) with the command that made them.

    python bench/fidelity.py --task sst2 --budget quick
    python bench/fidelity.py --task bert-base-uncased-folder --budget paper --device cuda   # GPU host
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xtc_core.config import EMBEDDING_BITS, KD_RECIPE_0_1  # torch-free: `--help` stays fast

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLUE = Path(os.environ.get("XTC_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "compress" | "ptq" | "int8"
    description: str
    weight_bits: int | None = None
    half: bool = False  # half of the teacher's layers (else every layer)
    distill: bool = True
    quantize: bool = True
    baselines: tuple[str, ...] = ()  # the no-distillation baselines this XTC variant must beat
    goal_drop: float | None = None  # max drop vs the teacher (issue 11's SST-2 goals, strong teacher)
    training: tuple[tuple[str, Any], ...] = ()  # recipe overrides of this variant alone (key, value)


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("xtc-w2", "compress", "XTC W2A8, same depth (ternary QAT + KD)", 2,
            baselines=("nokd-w2", "ptq-w2"), goal_drop=0.5),
    Variant("xtc-w1", "compress", "XTC W1A8, same depth (binary QAT + KD)", 1,
            baselines=("nokd-w1", "ptq-w1"), goal_drop=1.0),
    Variant("xtc-fp-half", "compress", "XTC step 1 only: half depth, fp32, KD", None, half=True,
            quantize=False, baselines=("nokd-fp-half",)),
    Variant("xtc-w1-half", "compress", "XTC W1A8, half depth (layer reduction + binary QAT, KD)", 1,
            half=True, baselines=("nokd-w1-half",), goal_drop=2.0),
    Variant("nokd-w2", "compress", "W2A8 QAT, same depth, labels only (no KD)", 2, distill=False),
    Variant("nokd-w1", "compress", "W1A8 QAT, same depth, labels only (no KD)", 1, distill=False),
    Variant("nokd-fp-half", "compress", "half-depth student fine-tuned, fp32, no KD", None, half=True,
            distill=False, quantize=False),
    Variant("nokd-w1-half", "compress", "W1A8 half depth, labels only (no KD)", 1, half=True,
            distill=False),
    # TinyBERT-style augmentation in both KD stages (its own stage 1: the augmented data is part of it)
    Variant("xtc-w1-half-aug", "compress",
            "XTC W1A8, half depth, both KD stages on augmented data (8 copies per example)", 1, half=True,
            baselines=("nokd-w1-half", "xtc-w1-half"), training=(("augment", 8),)),
    # The 0.1 KD recipe on the same student, so one run measures what the reference recipe is worth
    # against the very same teacher, seed by seed.
    Variant("xtc-w1-half-stock", "compress",
            "XTC W1A8, half depth, 0.1 KD recipe (attention probabilities, padding in the hidden-state "
            "term, student dropout on)", 1, half=True, baselines=("nokd-w1-half", "xtc-w1-half"),
            training=tuple(KD_RECIPE_0_1.items())),
    Variant("ptq-w2", "ptq", "post-training ternarization of the teacher (W2A8, no training)", 2),
    Variant("ptq-w1", "ptq", "post-training binarization of the teacher (W1A8, no training)", 1),
    Variant("int8-dynamic", "int8", "torch dynamic int8 (quantize_dynamic on nn.Linear)"),
]}
DEFAULT_ORDER = list(VARIANTS)
# Default set: everything but the same-depth QAT-without-KD runs (their matching baselines are the
# PTQ rows, which cost no training) and the augmented and 0.1-recipe runs; `--variants all` adds them.
DEFAULT_VARIANTS = [n for n in DEFAULT_ORDER
                    if n not in ("nokd-w2", "nokd-w1", "xtc-w1-half-aug", "xtc-w1-half-stock")]
SIZE_GOAL = ("xtc-w1-half", 30.0)  # the half-depth 1-bit checkpoint: >= 30x smaller than fp32

# Benchmark presets on top of the library budgets (xtc_core.config.BUDGETS). `quick` is sized so the
# full SST-2 run (teacher + every variant) takes about 30 minutes on 2 idle CPU cores: the full
# training set (sampling 20k rows saved nothing: steps set the time); dev sets are always full.
BENCH_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {},
    # Dev evaluation costs as much as ~20 training steps on CPU, so quick runs select on a dev
    # subset and only at the end of each stage (eval_every > steps); the reported scores are full-dev.
    # Sized after the training-step speed-ups (bucketed batches, row-wise embedding quantization,
    # fused AdamW) to about 30 min for SST-2 on 2 idle CPU cores; the earlier 300/80/160 schedule
    # was too short for 1-bit students (see README's log of attempts).
    "quick": dict(finetune_steps=600, reduction_steps=300, quant_steps=800, eval_every=10_000, lr=2e-4,
                  checkpoint_every=200, max_train_examples=None, max_eval_examples=256,
                  max_seq_length=64),
    "standard": {},
    "paper": {},
}


# ----------------------------------------------------------------------------------------- helpers

def _parse_value(text: str) -> Any:
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def _hardware(device) -> dict[str, Any]:
    import torch

    info = {"device": str(device), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # parallel runs write the same table
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    tmp.replace(path)


def _log(msg: str) -> None:
    print(f"[fidelity {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class _Progress:
    """Logs a training stage's step rate every ``every`` steps and each dev evaluation."""

    def __init__(self, label: str, every: int = 20):
        self.label, self.every, self.t0, self.step0 = label, every, None, 0

    def __call__(self, event) -> None:
        if event.message == "started" or self.t0 is None:
            self.t0, self.step0 = time.perf_counter(), event.step
        done = event.step - self.step0
        if event.total and event.step and (event.step % self.every == 0 or event.step == event.total):
            rate = (time.perf_counter() - self.t0) / max(1, done)
            loss = f"{event.loss:.4f}" if event.loss is not None else "-"
            _log(f"{self.label} {event.stage} {event.step}/{event.total} loss {loss} "
                 f"{rate:.2f}s/step {event.message} {event.metrics or ''}")


# ----------------------------------------------------------------------------------------- teacher

def _teacher_key(training) -> str:
    t = training
    return (f"ft{t.finetune_steps}-lr{t.finetune_lr:g}-bs{t.batch_size}-seq{t.max_seq_length}"
            f"-n{t.max_train_examples}-sel{t.max_eval_examples}-seed{t.seed}")


def prepare_teacher(model_ref: str, task, training, work: Path, device, force: bool,
                    report_only: bool = False) -> dict[str, Any]:
    """The shared teacher as a local HF folder (safetensors + tokenizer). A model without a task head
    is fine-tuned first, with the pipeline's own stage-0 trainer and label loss."""
    import torch

    from xtc_core.batches import encode, model_inputs
    from xtc_core.distill import label_loss
    from xtc_core.evaluate import encode_dev, score_splits
    from xtc_core.models import load_teacher
    from xtc_core.pipeline import _subsample
    from xtc_core.trainer import Stage, Trainer

    folder = work / "teacher"
    info_path = work / "teacher.json"
    info = _read_json(info_path)
    wanted = {"model": model_ref, "finetune_steps": training.finetune_steps, "lr": training.finetune_lr,
              "batch_size": training.batch_size, "max_seq_length": training.max_seq_length,
              "max_train_examples": training.max_train_examples, "seed": training.seed}
    if not force and info and info.get("config") == wanted and (folder / "config.json").exists():
        _log(f"teacher: cached at {folder}")
        return info
    if report_only:  # a typo in the options must not start a stage-0 run
        raise SystemExit(f"--report-only: no teacher is cached under {work} for these options")
    loaded = load_teacher(model_ref, num_labels=task.num_labels, regression=task.is_regression)
    if loaded.has_task_head:
        _log(f"teacher: {model_ref} already has a task head; used as is")
        info = {"config": wanted, "path": model_ref, "finetuned": False, "steps": 0, "seconds": 0.0}
        _write_json(info_path, info)
        return info
    tokenizer, model = loaded.tokenizer, loaded.model.to(device)
    t = training
    train = encode(tokenizer, _subsample(task.train, t.max_train_examples, t.seed), t.max_seq_length)
    first = next(iter(task.dev))
    select_dev = encode_dev(tokenizer, {first: task.dev[first]}, t.max_seq_length, t.max_eval_examples)

    def supervised(m, batch, labels):
        out = m(**model_inputs(m, batch))
        loss = label_loss(out.logits, labels, task.is_regression)
        return loss, {"ce": float(loss.detach())}

    def selection(m):
        return score_splits(m, tokenizer, select_dev, task.metrics, task.is_regression, t.eval_batch_size,
                            device)

    stage_work = work / "teacher-work"
    stage_work.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(tokenizer, train, t, device, task.is_regression, task.main_metric, stage_work,
                      _Progress(f"{task.name}/teacher"))
    _log(f"teacher: stage 0 fine-tuning {t.finetune_steps} steps on {len(train)} examples")
    result = trainer.run(model, Stage("finetune_teacher", t.finetune_steps, t.finetune_lr), supervised,
                         selection)
    if folder.exists():
        shutil.rmtree(folder)
    model.to("cpu").save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    info = {"config": wanted, "path": str(folder), "finetuned": True, "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "step_seconds": round(result.seconds / max(1, result.steps), 4),
            "selection_best": result.best_metrics, "curve": result.history}
    _write_json(info_path, info)
    _log(f"teacher: done in {result.seconds:.0f}s, best {result.best_metrics}")
    return info


# ----------------------------------------------------------------------------------------- variants

# A variant's labels, not inputs of its run: rewording a description or moving a goal keeps the cache.
_LABELS = ("description", "baselines", "goal_drop")


def _run_inputs(variant: dict) -> dict:
    return {k: v for k, v in variant.items() if k not in _LABELS}


def _same_run(cached_key: dict | None, key: dict) -> bool:
    """Whether a cached run was made from these inputs (keys written before labels were left out of
    them still match)."""
    if not cached_key or "variant" not in cached_key:
        return False
    return {**cached_key, "variant": _run_inputs(cached_key["variant"])} == key


def _run_label(name: str, seed: int | None) -> str:
    """Cache/work name of one run: the variant alone (single-seed runs, the earlier layout) or
    ``<variant>-s<seed>`` with ``--seeds``."""
    return name if seed is None else f"{name}-s{seed}"


def run_compress_variant(v: Variant, teacher_path: str, args, task_name: str, training, work: Path,
                         total_layers: int, device, seed: int | None = None) -> dict[str, Any]:
    from xtc_core.config import CompressConfig, DataSource
    from xtc_core.pipeline import compress
    from xtc_core.stage_cache import LocalStageStore

    vdir = work / "variants" / _run_label(v.name, seed)
    cfg = CompressConfig(
        model=teacher_path, data=DataSource(task=task_name, glue_dir=str(args.glue_dir)),
        output_dir=str(vdir / "checkpoint"), work_dir=str(vdir / "work"),
        weight_bits=v.weight_bits or 1, activation_bits=8,
        layers=max(1, total_layers // 2) if v.half else total_layers,
        weight_groups=args.weight_groups, embedding_bits=args.embedding_bits, training=training,
        budget_name=args.budget, device=device, distill=v.distill, quantize=v.quantize, resume=True,
    )
    # Stage 1 is shared through the pipeline's own content-keyed stage cache (as `xtc sweep` does):
    # a variant whose stage 1 has the same inputs as an earlier one's (same layers, distillation,
    # schedule, seed) loads it instead of training it again.
    result = compress(cfg, on_progress=_Progress(f"{task_name}/{_run_label(v.name, seed)}"),
                      stage_store=LocalStageStore(stage_cache_dir(work)))
    m = result.metrics
    stages = m["stages"]
    reused = _shared_stage1(stages)
    steps = sum(s.get("steps", 0) for s in stages)
    seconds = sum(s.get("seconds", 0.0) for s in stages)
    if reused:
        steps += reused["steps"]
        seconds += reused["seconds"]
    return {
        "score": m["student"][m["main_metric"]], "metrics": m["student"],
        "teacher_check": m["teacher"][m["main_metric"]],
        "packed_bytes": m["packed_bytes"], "fp32_bytes": m["fp32_bytes"],
        "train_seconds": round(seconds, 1), "wall_seconds": round(m["seconds"], 1), "steps": steps,
        "layers": len(cfg.layers) if isinstance(cfg.layers, list) else cfg.layers,
        "stages": stages, "reused_reduction": reused, "checkpoint": str(result.output_dir),
    }


def stage_cache_dir(work: Path) -> Path:
    """One cache per run folder (task and tag); --force empties it, so forced runs retrain stage 1."""
    return work / "stage-cache"


def _shared_stage1(stages: list[dict]) -> dict | None:
    """A run that loaded its stage 1 from the stage cache counts what training it cost (kept with the
    cache entry) as its own: the table's steps and seconds are what the variant took to build."""
    s1 = next((s for s in stages if s.get("stage") == "layer_reduction" and s.get("reused")), None)
    if s1 is None:
        return None
    return {"steps": s1.get("saved_steps", 0), "seconds": s1.get("saved_seconds", 0.0),
            "cache_key": s1["cache_key"]}


def _name_stage1_trainers(runs: dict[str, dict[Any, dict]]) -> None:
    """Name, for each run that reused a stage 1, the variant whose run trained it."""
    trained_by = {s["cache_key"]: name for name, per_seed in runs.items() for res in per_seed.values()
                  for s in res.get("stages", []) if s.get("stage") == "layer_reduction"
                  and s.get("cache_key") and not s.get("reused")}
    for per_seed in runs.values():
        for res in per_seed.values():
            shared = res.get("reused_reduction")
            if shared and not shared.get("from"):
                shared["from"] = trained_by.get(shared["cache_key"], "the stage cache")


def _load_teacher_model(teacher_path: str, task, device):
    from xtc_core.models import load_teacher

    loaded = load_teacher(teacher_path, num_labels=task.num_labels, regression=task.is_regression)
    return loaded.model.to(device).eval(), loaded.tokenizer


def run_ptq_variant(v: Variant, teacher_path: str, task, training, work: Path, args, device) -> dict:
    """The same quantizers as XTC applied to the teacher's weights, no training, then exported with the
    same packer (so the bytes are comparable)."""
    import torch

    from xtc_core.checkpoint import save_compressed
    from xtc_core.evaluate import encode_dev, score_splits
    from xtc_core.quant import freeze_quantized_weights
    from xtc_core.student import apply_quantization, count_params, round_unquantized_floats

    started = time.perf_counter()
    model, tokenizer = _load_teacher_model(teacher_path, task, device)
    fp32_bytes = count_params(model) * 4
    quantized = apply_quantization(model, weight_bits=v.weight_bits, activation_bits=8,
                                   weight_groups=args.weight_groups, embedding_bits=args.embedding_bits)
    round_unquantized_floats(model, torch.float16, set(quantized))
    freeze_quantized_weights(model)  # evaluate exactly the codes and scales that are exported
    dev = encode_dev(tokenizer, task.dev, training.max_seq_length)
    with torch.inference_mode():
        scores = score_splits(model, tokenizer, dev, task.metrics, task.is_regression,
                              training.eval_batch_size, device)
    out = work / "variants" / v.name / "checkpoint"
    meta = {"weight_bits": v.weight_bits, "activation_bits": 8, "weight_groups": args.weight_groups,
            "float_storage": "fp16", "quantized": quantized,
            "teacher_layers": list(range(model.config.num_hidden_layers)),
            "teacher": {"model": teacher_path, "fp32_bytes": fp32_bytes},
            "task": {"name": task.name, "labels": list(task.labels) if task.labels else None,
                     "metrics": list(task.metrics)},
            "eval": {"max_seq_length": training.max_seq_length, "batch_size": training.eval_batch_size},
            "recipe": {"ptq": True}}
    save_compressed(model, tokenizer, out, meta=meta)
    return {"score": scores[task.main_metric], "metrics": scores,
            "packed_bytes": (out / "model.safetensors").stat().st_size, "fp32_bytes": fp32_bytes,
            "train_seconds": 0.0, "wall_seconds": round(time.perf_counter() - started, 1), "steps": 0,
            "layers": model.config.num_hidden_layers, "checkpoint": str(out)}


def run_int8_variant(v: Variant, teacher_path: str, task, training, work: Path) -> dict:
    """torch dynamic int8 quantization of every nn.Linear (CPU kernels: evaluated on CPU)."""
    import torch
    from torch import nn

    from xtc_core.evaluate import encode_dev, score_splits
    from xtc_core.student import count_params

    started = time.perf_counter()
    model, tokenizer = _load_teacher_model(teacher_path, task, "cpu")
    fp32_bytes = count_params(model) * 4
    qmodel = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    dev = encode_dev(tokenizer, task.dev, training.max_seq_length)
    with torch.inference_mode():
        scores = score_splits(qmodel, tokenizer, dev, task.metrics, task.is_regression,
                              training.eval_batch_size, torch.device("cpu"))
    out = work / "variants" / v.name / "state_dict.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(qmodel.state_dict(), out)
    return {"score": scores[task.main_metric], "metrics": scores, "packed_bytes": out.stat().st_size,
            "fp32_bytes": fp32_bytes, "train_seconds": 0.0,
            "wall_seconds": round(time.perf_counter() - started, 1), "steps": 0,
            "layers": model.config.num_hidden_layers, "checkpoint": str(out)}


def artifact_predictions(checkpoint: str, task, training) -> tuple[list, float]:
    """Dev predictions (first split) and main metric of the *reloaded* artifact: the paired tests use
    them, and they prove the recorded metric is the artifact's."""
    import numpy as np
    import torch

    from xtc_core.batches import predict
    from xtc_core.checkpoint import load_compressed, load_tokenizer
    from xtc_core.evaluate import encode_dev
    from xtc_core.metrics import compute_metrics

    model = load_compressed(checkpoint, device="cpu")
    tok = load_tokenizer(checkpoint)
    split, rows = next(iter(task.dev.items()))
    enc = encode_dev(tok, {split: rows}, training.max_seq_length)[split]
    with torch.inference_mode():
        logits = predict(model, tok, enc, training.eval_batch_size, torch.device("cpu"), task.is_regression)
    preds = logits.squeeze(-1) if task.is_regression else logits.argmax(dim=-1)
    preds = preds.tolist()
    score = compute_metrics(task.metrics, np.array(preds), enc.labels)[task.main_metric]
    return preds, score


def paired_test(xtc_runs: list[list], base_runs: list[list], labels: list, metric_names, main: str,
                regression: bool, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """XTC against its baseline on the same dev examples. ``*_runs``: one prediction list per seed
    (paired by seed). Bootstrap over dev examples of the seed-averaged metric difference (95% CI and
    one-sided p = share of resamples where XTC is not ahead); for classification also the exact
    McNemar test on the pooled discordant (example, seed) pairs; with >= 2 seeds a paired t-test
    over the per-seed scores."""
    import numpy as np
    from scipy import stats

    from xtc_core.metrics import compute_metrics

    y = np.asarray(labels)
    xs = [np.asarray(r) for r in xtc_runs]
    bs = [np.asarray(r) for r in base_runs]

    def diff(idx):
        mx = np.mean([compute_metrics((main,), x[idx], y[idx])[main] for x in xs])
        mb = np.mean([compute_metrics((main,), b[idx], y[idx])[main] for b in bs])
        return mx - mb

    rng = np.random.default_rng(seed)
    n = len(y)
    observed = diff(np.arange(n))
    boots = np.array([diff(rng.integers(0, n, n)) for _ in range(resamples)])
    out = {"seeds_paired": len(xs), "margin": float(observed),
           "bootstrap_ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
           "bootstrap_p_not_better": float(np.mean(boots <= 0)), "resamples": resamples}
    if not regression:
        only_x = sum(int(np.sum((x == y) & (b != y))) for x, b in zip(xs, bs, strict=True))
        only_b = sum(int(np.sum((x != y) & (b == y))) for x, b in zip(xs, bs, strict=True))
        p = stats.binomtest(only_x, only_x + only_b, 0.5).pvalue if only_x + only_b else 1.0
        out["mcnemar"] = {"xtc_only_right": only_x, "baseline_only_right": only_b, "p_two_sided": float(p)}
    if len(xs) >= 2:
        sx = [compute_metrics(tuple(metric_names), x, y)[main] for x in xs]
        sb = [compute_metrics(tuple(metric_names), b, y)[main] for b in bs]
        out["ttest_rel_p_two_sided"] = float(stats.ttest_rel(sx, sb).pvalue)
    return out


# ----------------------------------------------------------------------------------------- report

def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _bits(v: Variant) -> str:
    if v.kind == "int8":
        return "W8A8 (dyn)"
    if v.kind == "compress" and not v.quantize:
        return "fp32"
    return f"W{v.weight_bits}A8"


def _dev_noise(r: dict) -> str:
    """How far one run's score moves by the dev set's sampling alone, so readers weigh single runs."""
    n = next(iter(r["dev_examples"].values()))
    if r["metric"] != "accuracy":
        return f"the dev set has {n} examples: weigh margins by the paired tests below"
    p = r["teacher"]["score"]
    se = 100 * (p * (1 - p) / n) ** 0.5
    return f"at the teacher's accuracy one dev set of {n} examples has ~±{se:.2f} points of standard error"


def build_report(task_result: dict) -> str:
    r = task_result
    scale = 100.0
    lines = [
        f"# Fidelity: {r['task']} ({r['metric']}), budget `{r['budget']}`",
        "",
        f"Command: `{r['command']}`",
        "",
        f"- model: `{r['model']}`; teacher: {r['teacher']['description']}",
        f"- teacher {r['metric']}: **{r['teacher']['score'] * scale:.2f}** on the full dev set "
        f"({', '.join(f'{k}: {n}' for k, n in r['dev_examples'].items())} examples)",
        f"- training set: {r['train_examples']} of {r['train_total']} examples"
        + (" (seeded random subsample)" if r['train_examples'] < r['train_total'] else " (all)"),
        "- schedule: " + ", ".join(f"{k}={r['training'][k]}" for k in (
            "finetune_steps", "reduction_steps", "quant_steps", "batch_size", "max_seq_length", "lr",
            "finetune_lr", "eval_every", "weight_decay", "warmup_ratio"))
        + f", weight_groups={r['weight_groups']}"
        + (f", embedding_bits={r['embedding_bits']}" if r.get("embedding_bits") else ""),
        f"- seeds of the trained variants: {r.get('seeds')} (scores: mean ± sample std over seeds); "
        + _dev_noise(r),
        f"- teacher schedule overrides: {r.get('teacher_overrides') or 'none'}",
        f"- hardware: {r['hardware']}",
        (f"- tabulated from cached runs (`--report-only`, {r['total_seconds']:.0f} s): each run's time is "
         f"its train s below (teacher stage 0: {r['teacher']['seconds']:.0f} s)" if r.get("report_only") else
         f"- total wall time: {r['total_seconds'] / 60:.1f} min "
         f"(teacher stage 0: {r['teacher']['seconds']:.0f} s)"),
        "",
        f"| variant | description | layers | bits | KD | {r['metric']} | Δ vs teacher | on disk "
        "| ratio vs fp32 | train s | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| teacher | fp32 teacher (shared by all variants) | {r['teacher']['layers']} | fp32 | - | "
        f"{r['teacher']['score'] * scale:.2f} | - | {_fmt_bytes(r['teacher']['fp32_bytes'])} | 1.0x | "
        f"{r['teacher']['seconds']:.0f} | {r['teacher']['steps']} |",
    ]
    for name, res in r["variants"].items():
        v = VARIANTS[name]
        kd = "yes" if v.kind == "compress" and v.distill else "no"
        reused = res.get("reused_reduction")
        shared = f" (incl. shared stage 1 of {reused['from']})" if reused else ""
        lines.append(
            f"| {name} | {v.description} | {res['layers']} | {_bits(v)} | {kd} | "
            f"{_score_cell(res, scale)} | "
            f"{res['delta'] * scale:+.2f} | {_fmt_bytes(res['packed_bytes'])} | {res['ratio']:.1f}x | "
            f"{res['train_seconds']:.0f}{shared} | {res['steps']} |")
    moved = [name for name, res in r["variants"].items() if res.get("rescored_on_cpu")]
    if moved:
        lines += ["", f"Scores are the reloaded artifacts' on CPU. Measured on {r['hardware']['device']} "
                  f"during the run, these scored differently (same weights, other arithmetic: 8-bit "
                  f"activation rounding flips a few borderline examples): {', '.join(moved)}."]
    lines += ["", "Matching no-distillation baselines (same student, same bits, same steps, labels only; "
              "PTQ = same quantizers, no training):", "",
              "| XTC variant | score | baseline | baseline score | margin | XTC wins | paired test over dev "
              "examples (bootstrap 95% CI of the margin; p(XTC not ahead); McNemar p) |",
              "|---|---|---|---|---|---|---|"]
    for row in r["matches"]:
        lines.append(f"| {row['xtc']} | {row['xtc_score'] * scale:.2f} | {row['baseline']} | "
                     f"{row['baseline_score'] * scale:.2f} | {row['margin'] * scale:+.2f} | "
                     f"{'yes' if row['wins'] else '**no**'} | {_paired_cell(row.get('paired'), scale)} |")
    if r["goals"]:
        lines += ["", "Goals (issue 11's, set for SST-2 with a >= 89.0 teacher; shown for every task):", "",
                  "| goal | value | met |", "|---|---|---|"]
        for g in r["goals"]:
            lines.append(f"| {g['goal']} | {g['value']} | {'yes' if g['met'] else '**no**'} |")
    lines += ["", "Other dev metrics per variant: see the JSON file beside this one.", ""]
    return "\n".join(lines)


def _score_cell(res: dict, scale: float) -> str:
    n = res.get("n_seeds", 1)
    if n > 1:
        return f"{res['score'] * scale:.2f} ± {res['std'] * scale:.2f} (n={n})"
    return f"{res['score'] * scale:.2f}"


def _paired_cell(p: dict | None, scale: float) -> str:
    if not p:
        return "-"
    lo, hi = p["bootstrap_ci95"]
    text = f"[{lo * scale:+.2f}, {hi * scale:+.2f}]; p={p['bootstrap_p_not_better']:.3f}"
    if "mcnemar" in p:
        m = p["mcnemar"]
        text += f"; McNemar p={m['p_two_sided']:.3f} ({m['xtc_only_right']} vs {m['baseline_only_right']})"
    if "ttest_rel_p_two_sided" in p:
        text += f"; t-test over seeds p={p['ttest_rel_p_two_sided']:.3f}"
    return text + f" ({p['seeds_paired']} seed pair(s))"


def _goals(variants: dict[str, dict]) -> list[dict]:
    out = []
    for name, res in variants.items():
        v = VARIANTS[name]
        if v.goal_drop is not None:
            drop = -res["delta"] * 100
            out.append({"goal": f"{name}: drop <= {v.goal_drop} points", "value": f"{drop:.2f}",
                        "met": drop <= v.goal_drop})
    name, ratio = SIZE_GOAL
    if name in variants:
        out.append({"goal": f"{name}: >= {ratio:.0f}x smaller than fp32 on disk",
                    "value": f"{variants[name]['ratio']:.1f}x", "met": variants[name]["ratio"] >= ratio})
    return out


def _aggregate(per_seed: dict[Any, dict]) -> dict[str, Any]:
    """One variant over its seeds: mean score (and mean of every metric), sample std, per-seed scores;
    sizes and layout from the first run; time and steps averaged."""
    import statistics

    results = list(per_seed.values())
    first = results[0]
    scores = [r["score"] for r in results]
    out = {k: val for k, val in first.items() if k not in ("key", "dev_predictions")}
    out["score"] = statistics.fmean(scores)
    out["std"] = statistics.stdev(scores) if len(scores) > 1 else 0.0
    out["n_seeds"] = len(scores)
    out["seed_scores"] = {str(r.get("seed")): r["score"] for r in results}
    out["metrics"] = {m: statistics.fmean(r["metrics"][m] for r in results) for m in first["metrics"]}
    out["train_seconds"] = round(statistics.fmean(r["train_seconds"] for r in results), 1)
    out["artifact_matches_recorded"] = all(r.get("artifact_matches_recorded", True) for r in results)
    out["rescored_on_cpu"] = any("recorded_score" in r for r in results)
    return out


def _matches(variants: dict[str, dict], runs: dict[str, dict] | None = None, labels: list | None = None,
             task=None) -> list[dict]:
    out = []
    for name, res in variants.items():
        for base in VARIANTS[name].baselines:
            if base in variants:
                margin = res["score"] - variants[base]["score"]
                row = {"xtc": name, "baseline": base, "xtc_score": res["score"],
                       "baseline_score": variants[base]["score"], "margin": margin, "wins": margin > 0}
                if runs is not None and task is not None:
                    xs, bs = runs[name], runs[base]
                    # pair by seed; a seed-independent baseline (PTQ) pairs with every seed
                    pairs = [(xs[s], bs[s] if s in bs else bs.get(None)) for s in xs]
                    pairs = [(x, b) for x, b in pairs if b is not None and "dev_predictions" in x
                             and "dev_predictions" in b]
                    if pairs:
                        # a partial table (some seeds unfinished) compares only the seeds both have
                        xm = sum(x["score"] for x, _ in pairs) / len(pairs)
                        bm = sum(b["score"] for _, b in pairs) / len(pairs)
                        row.update(xtc_score=xm, baseline_score=bm, margin=xm - bm, wins=xm > bm)
                        row["paired"] = paired_test([x["dev_predictions"] for x, _ in pairs],
                                                    [b["dev_predictions"] for _, b in pairs], labels,
                                                    task.metrics, task.main_metric, task.is_regression)
                out.append(row)
    return out


# ----------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", help="GLUE task (repeatable); default sst2")
    p.add_argument("--glue-dir", type=Path, default=DEFAULT_GLUE)
    p.add_argument("--model", default="bundled:minilm-l6", help="any supported model reference")
    p.add_argument("--budget", default="quick", help="library budget + benchmark preset")
    p.add_argument("--variants", default="default",
                   help=f"comma-separated subset of {', '.join(VARIANTS)}; 'all'; 'default' (all but the "
                        "same-depth no-KD QAT runs)")
    p.add_argument("--tag", default=None, help="result name suffix (default: the budget)")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "fidelity")
    p.add_argument("--force", action="store_true", help="recompute cached teacher and variants")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: tabulate the runs already cached (e.g. after parallel runs, some "
                        "of which did not finish)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--weight-groups", type=int, default=1)
    p.add_argument("--embedding-bits", type=int, default=None, choices=EMBEDDING_BITS,
                   help="word-embedding bits (default: each variant's weight bits, as XTC)")
    for name in ("finetune-steps", "reduction-steps", "quant-steps", "eval-every", "batch-size",
                 "max-seq-length", "max-train-examples"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seeds", default=None,
                   help="comma-separated training seeds for the trained variants (e.g. 1,2,3): each variant "
                        "runs once per seed (cached per variant and seed); tables show mean +- std")
    p.add_argument("--teacher-set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainingConfig override for the teacher's stage 0 only (repeatable), e.g. "
                        "max_train_examples=none; the teacher's cache key depends only on its own schedule")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainingConfig override (repeatable)")
    args = p.parse_args(argv)
    args.tasks = args.task or ["sst2"]
    try:
        args.seed_list = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else []
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    args.tag = args.tag or args.budget
    if args.report_only and args.force:
        p.error("--report-only reads the cached runs; --force would discard them")
    named = {"all": DEFAULT_ORDER, "default": DEFAULT_VARIANTS}
    args.variant_list = [n for s in args.variants.split(",") if s.strip()
                         for n in named.get(s.strip(), [s.strip()])]
    unknown = [n for n in args.variant_list if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    # run order: the stage-1-only variants first, so the table credits them with training it
    args.variant_list = [n for n in DEFAULT_ORDER if n in args.variant_list]
    return args


def training_config(args):
    from xtc_core.config import budget

    overrides = dict(BENCH_PRESETS.get(args.budget, {}))
    for key in ("finetune_steps", "reduction_steps", "quant_steps", "eval_every", "batch_size",
                "max_seq_length", "max_train_examples", "lr"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = _parse_value(value.strip())
    return budget(args.budget, **overrides), overrides


def teacher_config(args, training):
    """The teacher's stage-0 schedule: the run's config plus ``--teacher-set`` overrides. Its seed is the
    config's own (never a variant seed), so every seed of every variant distills the same teacher."""
    overrides = {}
    for item in args.teacher_set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = _parse_value(value.strip())
    return training.replace(**overrides), overrides


def run_task(task_name: str, args, training, overrides: dict, command: str) -> dict:
    import torch

    from xtc_core.config import DataSource
    from xtc_core.data import load_task_data
    from xtc_core.device import pick_device
    from xtc_core.tasks import get_task

    started = time.perf_counter()
    device = pick_device(args.device)
    spec = get_task(task_name)
    task = load_task_data(DataSource(task=spec.name, glue_dir=str(args.glue_dir)))
    work = args.work_dir / f"{_slug(args.model)}-{spec.name}-{args.tag}"
    work.mkdir(parents=True, exist_ok=True)
    # The teacher depends only on its own schedule, not on the tag: runs with other variant options
    # (another --tag) reuse it, so their numbers compare against the very same teacher.
    teacher_training, teacher_overrides = teacher_config(args, training)
    teachers = args.work_dir / f"{_slug(args.model)}-{spec.name}-teachers"
    teacher_work = teachers / _teacher_key(teacher_training)
    teacher = prepare_teacher(args.model, task, teacher_training, teacher_work, device, args.force,
                              args.report_only)
    teacher_path = teacher["path"]
    tmodel, _ = _load_teacher_model(teacher_path, task, "cpu")
    total_layers = tmodel.config.num_hidden_layers
    from xtc_core.student import count_params

    fp32_bytes = count_params(tmodel) * 4
    del tmodel

    seeds = args.seed_list or [None]
    if args.force:
        shutil.rmtree(stage_cache_dir(work), ignore_errors=True)
    runs: dict[str, dict[Any, dict]] = {}  # variant -> seed (None: the config's seed) -> result
    teacher_score = None
    for name in args.variant_list:
        v = VARIANTS[name]
        runs[name] = {}
        for seed in (seeds if v.kind == "compress" else [None]):
            vtrain = training.replace(**dict(v.training), **({} if seed is None else {"seed": seed}))
            label = _run_label(name, seed)
            cache = work / "variants" / f"{label}.json"
            key = {"variant": _run_inputs(dataclasses.asdict(v)), "training": dataclasses.asdict(vtrain),
                   "weight_groups": args.weight_groups, "teacher": teacher["config"]}
            # only where it changes the run (a quantized variant), and absent by default, so runs cached
            # before the option still match
            if args.embedding_bits and v.weight_bits and v.kind != "int8":
                key["embedding_bits"] = args.embedding_bits
            key = json.loads(json.dumps(key))  # tuples become lists, as in the cached file
            cached = _read_json(cache)
            if not args.force and cached and _same_run(cached.get("key"), key):
                _log(f"{spec.name}/{label}: cached ({cached['score']:.4f})")
                res = cached
            elif args.report_only:
                _log(f"{spec.name}/{label}: not run yet; left out (--report-only)")
                continue
            else:
                _log(f"{spec.name}/{label}: running ({v.description})")
                t0 = time.perf_counter()
                if args.force:
                    shutil.rmtree(work / "variants" / label, ignore_errors=True)
                if v.kind == "compress":
                    res = run_compress_variant(v, teacher_path, args, spec.name, vtrain, work, total_layers,
                                               device, seed)
                elif v.kind == "ptq":
                    res = run_ptq_variant(v, teacher_path, task, training, work, args, device)
                else:
                    res = run_int8_variant(v, teacher_path, task, training, work)
                res["key"] = key
                res["seed"] = vtrain.seed
                _write_json(cache, res)
                _log(f"{spec.name}/{label}: {task.main_metric}={res['score']:.4f} "
                     f"({time.perf_counter() - t0:.0f}s, {res['packed_bytes']} bytes)")
            if v.kind != "int8" and "dev_predictions" not in res and Path(res["checkpoint"]).exists():
                preds, artifact_score = artifact_predictions(res["checkpoint"], task, training)
                res["dev_predictions"], res["artifact_score"] = preds, artifact_score
                res["artifact_matches_recorded"] = artifact_score == res["score"]
                if not res["artifact_matches_recorded"] and device.type != "cpu":
                    # Same weights, other arithmetic: on a GPU, 8-bit activation rounding can flip a
                    # few borderline predictions against the CPU. The table reports what the artifact
                    # scores on CPU (the runtime's device), which the paired tests use too.
                    _log(f"{label}: reloaded artifact on cpu {artifact_score} != recorded on {device} "
                         f"{res['score']}; the table reports the artifact's")
                    res["recorded_score"], res["score"] = res["score"], artifact_score
                    res["metrics"] = {**res["metrics"], task.main_metric: artifact_score}
                elif not res["artifact_matches_recorded"]:  # on CPU this is a bug: say so loudly
                    _log(f"ERROR: {label}: the reloaded artifact scores {artifact_score}, the run recorded "
                         f"{res['score']} on the same device")
                _write_json(cache, res)
            runs[name][seed] = res
            if "teacher_check" in res:
                teacher_score = res["teacher_check"]
    trained = [name for name in runs if VARIANTS[name].kind == "compress"]
    if args.report_only and trained and not any(runs[name] for name in trained):
        # wrong options or every run failed: keep whatever table is there rather than overwrite it
        raise SystemExit(f"--report-only: none of the trained variants has a cached run under {work}")
    runs = {name: per_seed for name, per_seed in runs.items() if per_seed}
    _name_stage1_trainers(runs)
    variants = {name: _aggregate(per_seed) for name, per_seed in runs.items()}

    # The teacher's score on the full dev set, measured the same way as every variant.
    from xtc_core.evaluate import encode_dev, score_splits

    tmodel, tok = _load_teacher_model(teacher_path, task, device)
    dev = encode_dev(tok, task.dev, training.max_seq_length)
    with torch.inference_mode():
        tscores = score_splits(tmodel, tok, dev, task.metrics, task.is_regression, training.eval_batch_size,
                               device)
    if teacher_score is not None and abs(teacher_score - tscores[task.main_metric]) > 1e-6:
        _log(f"warning: pipeline teacher score {teacher_score} != {tscores[task.main_metric]}")
    tscore = tscores[task.main_metric]
    for res in variants.values():
        res["delta"] = res["score"] - tscore
        res["ratio"] = res["fp32_bytes"] / res["packed_bytes"]

    n_train = min(len(task.train), training.max_train_examples or len(task.train))
    result = {
        "task": spec.name, "metric": task.main_metric, "model": args.model, "budget": args.budget,
        "tag": args.tag, "command": command, "overrides": overrides, "teacher_overrides": teacher_overrides,
        "seeds": args.seed_list or [training.seed],
        "training": dataclasses.asdict(training), "weight_groups": args.weight_groups,
        "embedding_bits": args.embedding_bits, "train_examples": n_train, "train_total": len(task.train),
        "dev_examples": {k: len(rows) for k, rows in task.dev.items()},
        "hardware": _hardware(device),
        "teacher": {"score": tscore, "metrics": tscores, "layers": total_layers, "fp32_bytes": fp32_bytes,
                    "finetuned": teacher["finetuned"], "steps": teacher["steps"],
                    "seconds": teacher["seconds"],
                    "description": (f"{args.model} fine-tuned by stage 0 ({teacher['steps']} steps)"
                                    if teacher["finetuned"] else f"{args.model} as given (has a task head)")},
        "variants": {n: {k: v for k, v in res.items() if k != "key"} for n, res in variants.items()},
        "total_seconds": round(time.perf_counter() - started, 1), "report_only": args.report_only,
    }
    first_labels = next(iter(task.dev.values()))
    labels = [row.label for row in first_labels]
    result["matches"] = _matches(result["variants"], runs, labels, task)
    result["goals"] = _goals(result["variants"])
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"fidelity_{spec.name}_{args.tag}"  # not Path.with_suffix: a tag may contain dots
    _write_json(args.results_dir / f"{stem}.json", result)
    report = build_report(result)
    (args.results_dir / f"{stem}.md").write_text(report)
    print(report, flush=True)
    return result


def main(argv: list[str] | None = None, script: str = "bench/fidelity.py") -> dict[str, dict]:
    """``script``: how the tables' command lines name the program (a wrapper names itself)."""
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    training, overrides = training_config(args)
    shown = argv if argv is not None else sys.argv[1:]
    command = f"python {script} " + " ".join(shlex.quote(a) for a in shown)
    _log(f"budget {args.budget} with overrides {overrides}: {training}")
    return {t: run_task(t, args, training, overrides, command) for t in args.tasks}


if __name__ == "__main__":
    main()
