"""Pre-softmax attention scores for distillation, captured through transformers' attention-function
registry (no patched model files).

XTC (DeepSpeed's reference) distills the attention *scores* ``QK^T / sqrt(d)`` with padding masked,
not the probabilities that stock transformers returns with ``output_attentions=True`` (those come
after softmax and, in train mode, after dropout). Models switched to ``ATTENTION_NAME`` run the eager
attention math and, inside ``capture_scores()``, append each layer's raw scores to a list in layer
order.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

ATTENTION_NAME = "xtc_scores"
_SINK: contextvars.ContextVar[list[torch.Tensor] | None] = contextvars.ContextVar("xtc_scores", default=None)


def scores_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None,
                     dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention, plus: the unmasked pre-softmax scores go to the active sink."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    sink = _SINK.get()
    if sink is not None:
        sink.append(scores)
    weights = scores
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask[..., : key.shape[-2]]
    probs = nn.functional.softmax(weights, dim=-1)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


AttentionInterface.register(ATTENTION_NAME, scores_attention)
AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


@contextlib.contextmanager
def capture_scores() -> Iterator[list[torch.Tensor]]:
    """Collect the pre-softmax scores of every layer run inside the block (models using
    ``ATTENTION_NAME``), in order: [batch, heads, query, key] each."""
    sink: list[torch.Tensor] = []
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


def use_scores_attention(model: nn.Module) -> str:
    """Switch a model to the capturing attention; returns the previous implementation's name."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION_NAME)
    return previous
