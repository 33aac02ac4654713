"""TinyBERT-style data augmentation, offline: word substitution for the distillation stages.

Each word of a training sentence is replaced with probability ``prob`` by one of ``neighbors``
candidates: the model's masked-LM predictions for that position when the model has a masked-LM head,
otherwise the nearest neighbours (cosine) of its token in the teacher's word-embedding matrix. Only
words that are a single word piece are replaced (TinyBERT used GloVe for the others; nothing is
downloaded here). Augmented rows keep the original label: the KD stages learn from the teacher's
outputs on them, which is what TinyBERT used them for.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _candidate_mask(tokenizer) -> torch.Tensor:
    """Vocabulary entries that may be substituted in: whole words, not specials, pieces or [unusedN]."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
    special = set(tokenizer.all_special_ids)
    ok = [i not in special and t.isalpha() and not t.startswith(("##", "[", "<", "▁▁")) for i, t in
          enumerate(vocab)]
    return torch.tensor(ok)


class EmbeddingNeighbours:
    """Nearest neighbours of word-piece ids in an embedding matrix (cosine), computed lazily in chunks."""

    def __init__(self, embeddings: torch.Tensor, tokenizer, k: int):
        weights = embeddings.detach().float().cpu()
        self.unit = weights / weights.norm(dim=1, keepdim=True).clamp(min=1e-8)
        self.allowed = _candidate_mask(tokenizer)[: self.unit.shape[0]]
        self.k = k
        self.cache: dict[int, list[int]] = {}

    def prepare(self, ids: Sequence[int]) -> None:
        todo = sorted({i for i in ids if i not in self.cache})
        for start in range(0, len(todo), 512):
            chunk = todo[start:start + 512]
            sims = self.unit[chunk] @ self.unit.T
            sims[:, ~self.allowed] = float("-inf")
            sims[torch.arange(len(chunk)), torch.tensor(chunk)] = float("-inf")  # not the word itself
            top = sims.topk(self.k, dim=1).indices
            for i, row in zip(chunk, top.tolist(), strict=True):
                self.cache[i] = row

    def __call__(self, token_id: int) -> list[int]:
        if token_id not in self.cache:
            self.prepare([token_id])
        return self.cache[token_id]


def load_mlm(model_dir: str | Path):
    """The model's masked-LM head, or None when the checkpoint has none (its weights would be new)."""
    from transformers import AutoModelForMaskedLM

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(model_dir, output_loading_info=True,
                                                           use_safetensors=True, trust_remote_code=False)
    except Exception:  # noqa: BLE001 - no usable MLM head in any form: fall back to embeddings
        return None
    missing = list(info.get("missing_keys", [])) + list(info.get("mismatched_keys", []))
    head_missing = [k for k in missing if "decoder" in str(k) or "predictions" in str(k)
                    or "lm_head" in str(k) or "vocab_" in str(k)]
    if head_missing:
        return None
    return model.eval()


def _substitute(text: str, tokenizer, rng: random.Random, prob: float, choose) -> str:
    words = text.split()
    out = []
    for word in words:
        if rng.random() < prob:
            pieces = tokenizer.tokenize(word)
            if len(pieces) == 1:
                token_id = tokenizer.convert_tokens_to_ids(pieces[0])
                candidates = choose(token_id)
                if candidates:
                    out.append(tokenizer.convert_ids_to_tokens(rng.choice(candidates)))
                    continue
        out.append(word)
    return " ".join(out)


def _mlm_substitute(text: str, tokenizer, mlm, rng: random.Random, prob: float, k: int,
                    allowed: torch.Tensor) -> str:
    """Mask the chosen single-piece words together, one MLM forward, pick among the top-k per slot."""
    words = text.split()
    chosen = [i for i, w in enumerate(words) if rng.random() < prob and len(tokenizer.tokenize(w)) == 1]
    if not chosen:
        return text
    masked = [tokenizer.mask_token if i in chosen else w for i, w in enumerate(words)]
    enc = tokenizer(" ".join(masked), return_tensors="pt", truncation=True, max_length=256)
    with torch.inference_mode():
        logits = mlm(**enc).logits[0]
    slots = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    for word_index, slot in zip(chosen, slots, strict=False):
        scores = logits[slot].clone()
        scores[: len(allowed)][~allowed] = float("-inf")
        top = scores.topk(k).indices.tolist()
        words[word_index] = tokenizer.convert_ids_to_tokens(rng.choice(top))
    return " ".join(words)


def augment_examples(examples: Sequence, tokenizer, *, copies: int, prob: float, neighbors: int, seed: int,
                     embeddings: torch.Tensor | None = None, mlm=None) -> list:
    """``copies`` augmented versions of every example (originals not included), deterministic in seed.
    Uses ``mlm`` (a masked-LM model) when given, else nearest neighbours in ``embeddings``."""
    if copies <= 0:
        return []
    if mlm is None and embeddings is None:
        raise ValueError("augmentation needs a masked-LM model or a word-embedding matrix")
    rng = random.Random(seed)
    if mlm is not None:
        allowed = _candidate_mask(tokenizer)

        def sub(text):
            return _mlm_substitute(text, tokenizer, mlm, rng, prob, neighbors, allowed)
    else:
        nn_index = EmbeddingNeighbours(embeddings, tokenizer, neighbors)
        ids = {tokenizer.convert_tokens_to_ids(p[0]) for e in examples
               for t in (e.text, e.text_pair) if t for w in t.split() if len(p := tokenizer.tokenize(w)) == 1}
        nn_index.prepare(sorted(ids))

        def sub(text):
            return _substitute(text, tokenizer, rng, prob, nn_index)
    out = []
    for _ in range(copies):
        for e in examples:
            pair = sub(e.text_pair) if e.text_pair else e.text_pair
            out.append(dataclasses.replace(e, text=sub(e.text), text_pair=pair))
    log.info("augmented %d examples into %d (%s)", len(examples), len(out),
             "masked LM" if mlm is not None else "embedding neighbours")
    return out
