"""``Predictor(folder).predict(texts | pairs)``: labels with probabilities (or regression scores)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ONNX_MODEL = "model.onnx"
RUNTIME_META = "xtc_runtime.json"


class RuntimeModelError(ValueError):
    """The folder is not an exported XTC ONNX model."""


@dataclass
class Prediction:
    label: str | None  # None for regression
    score: float  # probability of ``label``, or the regression output
    probabilities: dict[str, float] | None  # every label's probability (classification)

    def as_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "probabilities": self.probabilities}


class Predictor:
    """Loads ``model.onnx``, ``tokenizer.json`` and ``xtc_runtime.json`` from an exported folder."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, max_length: int | None = None,
                 batch_size: int = 32):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(path)
        for needed in (ONNX_MODEL, RUNTIME_META, "tokenizer.json"):
            if not (self.path / needed).is_file():
                raise RuntimeModelError(f"{self.path}: not an exported XTC model (missing {needed}); "
                                        "run `xtc export CKPT --format onnx --out DIR`")
        self.meta = json.loads((self.path / RUNTIME_META).read_text())
        self.max_length = int(max_length or self.meta["max_length"])
        if self.max_length > self.meta["max_position_embeddings"]:
            raise RuntimeModelError(f"max_length {self.max_length} exceeds the model's "
                                    f"{self.meta['max_position_embeddings']} positions")
        self.batch_size = batch_size
        self.labels: list[str] | None = self.meta.get("labels")
        self.regression = bool(self.meta.get("regression"))
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)  # longest_first for pairs, as transformers
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path / ONNX_MODEL), opts,
                                            providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> list:
        items = list(texts)
        if items and isinstance(items[0], (tuple, list)):
            return self.tokenizer.encode_batch([tuple(p) for p in items])
        return self.tokenizer.encode_batch(items)

    def logits(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw outputs, one row per input, in order. Batches are formed from length-sorted inputs
        (little padding); a row's result does not depend on its batch (per-token activation scales)."""
        encodings = self.encode(texts)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        width = 1 if self.regression else len(self.labels or []) or None
        out: list[np.ndarray | None] = [None] * len(encodings)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            feeds = self._feeds([encodings[i] for i in idx])
            result = self.session.run(["logits"], feeds)[0]
            for row, i in zip(result, idx, strict=True):
                out[i] = row
        if not out:
            return np.zeros((0, width or 2), dtype=np.float32)
        return np.stack(out)

    def predict(self, texts: Sequence[str] | Sequence[tuple[str, str]]) -> list[Prediction]:
        logits = self.logits(texts)
        if self.regression:
            return [Prediction(None, float(v), None) for v in logits[:, 0]]
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        names = self.labels or [str(i) for i in range(logits.shape[1])]
        preds = []
        for row in probs:
            best = int(row.argmax())
            preds.append(Prediction(names[best], float(row[best]),
                                    {n: float(p) for n, p in zip(names, row, strict=True)}))
        return preds

    @staticmethod
    def _feeds(encodings: list) -> dict[str, np.ndarray]:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = e.attention_mask
            types[row, :n] = e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
