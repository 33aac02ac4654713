"""Dev-set evaluation with the official GLUE metrics, for in-memory models and saved checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from .batches import Encoded, encode, predict
from .config import DataSource
from .device import pick_device
from .errors import ConfigError
from .metrics import compute_metrics


def score_encoded(model, tokenizer, encoded: Encoded, metric_names, regression: bool, batch_size: int,
                  device) -> dict[str, float]:
    logits = predict(model, tokenizer, encoded, batch_size, device, regression)
    preds = logits.squeeze(-1).numpy() if regression else logits.argmax(dim=-1).numpy()
    return compute_metrics(metric_names, preds, encoded.labels)


def score_splits(model, tokenizer, splits: dict[str, Encoded], metric_names, regression: bool,
                 batch_size: int, device) -> dict[str, float]:
    """Metrics of the first dev split under their plain names; other splits (MNLI mismatched) as
    ``<split>/<metric>``."""
    out: dict[str, float] = {}
    for i, (split, encoded) in enumerate(splits.items()):
        scores = score_encoded(model, tokenizer, encoded, metric_names, regression, batch_size, device)
        out.update(scores if i == 0 else {f"{split}/{k}": v for k, v in scores.items()})
    return out


def encode_dev(tokenizer, dev: dict[str, list], max_length: int, limit: int | None = None):
    return {split: encode(tokenizer, rows[:limit] if limit else rows, max_length)
            for split, rows in dev.items()}


def evaluate_checkpoint(path: str | Path, data: DataSource, device: str | None = None,
                        batch_size: int | None = None) -> dict[str, float]:
    """Re-evaluate a compressed checkpoint on the full dev set(s) exactly as the pipeline did."""
    from .checkpoint import load_compressed, load_tokenizer, read_meta

    meta = read_meta(path)
    dev, metric_names, regression = _dev_rows(data, meta)
    dev_device = pick_device(device)
    model = load_compressed(path, device=dev_device)
    tokenizer = load_tokenizer(path)
    eval_cfg = meta["eval"]
    splits = encode_dev(tokenizer, dev, eval_cfg["max_seq_length"])
    with torch.inference_mode():
        return score_splits(model, tokenizer, splits, metric_names, regression,
                            batch_size or eval_cfg["batch_size"], dev_device)


def _dev_rows(data: DataSource, meta: dict):
    """Dev rows to score. User files are read against the labels the checkpoint was trained with,
    so only the dev file is needed and label indices mean what they meant in training."""
    if data.task is not None:
        from .data import load_task_data

        task = load_task_data(data, need_train=False)
        return task.dev, task.metrics, task.is_regression
    from .tabular import read_user_file

    if not data.dev_file:
        raise ConfigError("give the dev file to evaluate on")
    labels = meta["task"]["labels"]
    rows, _ = read_user_file(data.dev_file, text_column=data.text_column, label_column=data.label_column,
                             text_pair_column=data.text_pair_column, labels=labels,
                             regression=labels is None)
    return {"dev": rows}, tuple(meta["task"]["metrics"]), labels is None
