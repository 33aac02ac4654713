"""Tokenization, batching and prediction. Evaluation batching is fixed (order, batch size, padding to
the longest in the batch), so the same checkpoint always gives the same numbers on the same device."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Encoded:
    features: list[dict[str, list[int]]]
    labels: list[int | float]

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer, examples: Sequence, max_length: int) -> Encoded:
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    has_pairs = any(p is not None for p in pairs)
    enc = tokenizer(
        texts, [p or "" for p in pairs] if has_pairs else None, truncation=True, max_length=max_length,
    )
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    features = [{k: enc[k][i] for k in keys} for i in range(len(texts))]
    return Encoded(features, [e.label for e in examples])


def collate(tokenizer, encoded: Encoded, indices: Sequence[int], device, regression: bool):
    batch = tokenizer.pad([encoded.features[i] for i in indices], return_tensors="pt")
    labels = torch.tensor(
        [encoded.labels[i] for i in indices], dtype=torch.float32 if regression else torch.long
    )
    batch = {k: v.to(device) for k, v in batch.items()}
    return batch, labels.to(device)


def model_inputs(model, batch: dict) -> dict:
    """DistilBERT has no token types: pass only what the model's forward accepts."""
    if getattr(model.config, "model_type", "") == "distilbert":
        return {k: v for k, v in batch.items() if k != "token_type_ids"}
    return batch


def lengths(encoded: Encoded) -> list[int]:
    return [len(f["input_ids"]) for f in encoded.features]


# Batches are formed inside pools of this many batches, sorted by length: padding to the longest in a
# batch then costs little (random SST-2 batches are ~3x padding), while the pools keep batches random.
_POOL_BATCHES = 50


def _epoch_batches(sizes: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(sizes), generator=g).tolist()
    pool = batch_size * _POOL_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: sizes[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()  # a ragged last batch would weigh its few examples more
    shuffle = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in shuffle]


def train_batches(sizes: Sequence[int], batch_size: int, seed: int,
                  start_step: int = 0) -> Iterator[list[int]]:
    """Endless seeded epochs of length-bucketed batches. Deterministic in (seed, step), so a resumed
    run sees exactly the batches it would have seen without the interruption."""
    epoch_len = len(_epoch_batches(sizes, batch_size, seed, 0))
    epoch, offset = divmod(start_step, epoch_len)
    while True:
        batches = _epoch_batches(sizes, batch_size, seed, epoch)
        yield from batches[offset:]
        epoch, offset = epoch + 1, 0


@torch.no_grad()
def predict(model, tokenizer, encoded: Encoded, batch_size: int, device, regression: bool) -> torch.Tensor:
    """Logits (or regression outputs) for every example, in order, as a CPU float tensor."""
    was_training = model.training
    model.eval()
    # Length-sorted batches (less padding); the batching depends only on the data, so every
    # evaluation of the same rows is batched, and therefore computed, identically.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    out: list[torch.Tensor | None] = [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch, _ = collate(tokenizer, encoded, idx, device, regression)
        logits = model(**model_inputs(model, batch)).logits.float().cpu()
        for row, i in zip(logits, idx, strict=True):
            out[i] = row
    model.train(was_training)
    return torch.stack(out) if out else torch.empty(0)
