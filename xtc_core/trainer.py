"""The training loop shared by every stage: AdamW, warm-up + linear decay, clipping, periodic dev
evaluation keeping the best weights, resumable checkpoints, progress and cancellation callbacks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .batches import Encoded, collate, lengths, train_batches
from .config import TrainingConfig
from .errors import Cancelled
from .progress import ProgressCallback, ProgressEvent, ShouldStop

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, dict, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
ScoreFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class Stage:
    name: str
    steps: int
    lr: float
    index: int = 0
    num_stages: int = 1


@dataclass
class StageResult:
    best_score: float
    best_metrics: dict[str, float]
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)


@dataclass
class Trainer:
    tokenizer: object
    train: Encoded
    training: TrainingConfig
    device: torch.device
    regression: bool
    main_metric: str
    work_dir: Path | None = None
    on_progress: ProgressCallback | None = None
    should_stop: ShouldStop | None = None
    progress: float = 0.0  # fraction of the running stage done, for loss schedules (see kd_weights)

    def _emit(self, stage: Stage, step: int, loss: float | None, metrics: dict, message: str = "") -> None:
        if self.on_progress:
            self.on_progress(ProgressEvent(stage.name, step, stage.steps, loss, dict(metrics), message,
                                           stage.index, stage.num_stages))

    def _check_stop(self) -> None:
        if self.should_stop and self.should_stop():
            raise Cancelled("cancelled by request")

    def _ckpt_path(self, stage: Stage) -> Path | None:
        return self.work_dir / f"{stage.name}.ckpt.pt" if self.work_dir else None

    def run(self, model: nn.Module, stage: Stage, loss_fn: LossFn, score_fn: ScoreFn) -> StageResult:
        cfg = self.training
        started = time.perf_counter()
        model.to(self.device).train()
        optimizer = adamw(_param_groups(model, cfg.weight_decay), stage.lr)
        scheduler = _linear_warmup(optimizer, int(cfg.warmup_ratio * stage.steps), stage.steps)
        step, best_score, best_metrics, best_state, history = 0, float("-inf"), {}, None, []
        spent = 0.0  # training seconds before a resume, so a resumed stage reports its whole cost

        ckpt = self._ckpt_path(stage)
        if ckpt is not None and ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, best_score, best_metrics = state["step"], state["best_score"], state["best_metrics"]
            best_state, history = state["best_state"], state.get("history", [])
            spent = state.get("seconds", 0.0)
            torch.set_rng_state(state["rng"])
            log.info("resumed %s at step %d", stage.name, step)
            self._emit(stage, step, None, best_metrics, f"resumed at step {step}")
        else:
            torch.manual_seed(cfg.seed + stage.index)

        # Only the forward runs compiled; state dicts, evaluation and the export use the module itself.
        forward_model = torch.compile(model, dynamic=True) if cfg.compile else model
        batches = train_batches(lengths(self.train), cfg.batch_size, cfg.seed + stage.index, start_step=step)
        self._emit(stage, step, None, best_metrics, "started")
        while step < stage.steps:
            self._check_stop()
            batch, labels = collate(self.tokenizer, self.train, next(batches), self.device, self.regression)
            self.progress = step / max(1, stage.steps)
            loss, parts = loss_fn(forward_model, batch, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            last = step == stage.steps
            metrics = best_metrics
            if last or step % cfg.eval_every == 0:
                scores = score_fn(model)
                model.train()
                history.append({"step": step, "loss": float(loss.detach()), **scores})
                if scores[self.main_metric] > best_score:
                    best_score, best_metrics = scores[self.main_metric], scores
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                metrics = scores
            self._emit(stage, step, float(loss.detach()), metrics, " ".join(
                f"{k}={v:.4f}" for k, v in parts.items()))
            if ckpt is not None and not last and step % cfg.checkpoint_every == 0:
                atomic_save(ckpt, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "best_score": best_score,
                    "best_metrics": best_metrics, "best_state": best_state, "history": history,
                    "rng": torch.get_rng_state(), "seconds": spent + time.perf_counter() - started,
                })
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return StageResult(best_score, best_metrics, step, spent + time.perf_counter() - started, history)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No decay on biases and LayerNorm weights (standard BERT fine-tuning practice)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """The fused kernel is ~8x faster on CPU for the 11M-value word embeddings; the result is the same
    update rule."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def _linear_warmup(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def atomic_save(path: Path, obj) -> None:
    """Write then rename, so a worker killed mid-write never leaves a corrupt checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
