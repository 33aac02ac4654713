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


def train_batches(n: int, batch_size: int, seed: int, start_step: int = 0) -> Iterator[list[int]]:
    """Endless seeded shuffled epochs. Deterministic in (seed, step), so a resumed run sees the same
    batches it would have seen without the interruption."""
    per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
        yield order[offset * batch_size:(offset + 1) * batch_size] or order[:batch_size]
        step += 1


@torch.no_grad()
def predict(model, tokenizer, encoded: Encoded, batch_size: int, device, regression: bool) -> torch.Tensor:
    """Logits (or regression outputs) for every example, in order, as a CPU float tensor."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(encoded), batch_size):
        idx = range(start, min(start + batch_size, len(encoded)))
        batch, _ = collate(tokenizer, encoded, idx, device, regression)
        out.append(model(**model_inputs(model, batch)).logits.float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)
