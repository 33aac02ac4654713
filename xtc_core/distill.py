"""One-stage knowledge distillation losses (XTC): logits + hidden states + attention, weight 1 each
(by default)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    t = temperature
    target = F.softmax(teacher_logits / t, dim=-1)
    return -(target * F.log_softmax(student_logits / t, dim=-1)).sum(dim=-1).mean() * (t * t)


def logit_loss(student_logits, teacher_logits, regression: bool, temperature: float = 1.0):
    if regression:
        return F.mse_loss(student_logits, teacher_logits)
    return soft_cross_entropy(student_logits, teacher_logits, temperature)


def label_loss(logits, labels, regression: bool):
    """Ground-truth loss: stage 0 (teacher fine-tuning) and the no-distillation baselines."""
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


def layer_map(student_layers: list[int]) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs: student layer i was copied from teacher layer layers[i]."""
    return list(enumerate(student_layers))


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """MSE over the positions where ``mask`` (broadcastable to ``a``'s shape) is true."""
    if mask is None:
        return F.mse_loss(a, b)
    mask = mask.to(a.dtype)
    full = mask.expand_as(a) if mask.shape != a.shape else mask
    return ((a - b).pow(2) * full).sum() / full.sum().clamp(min=1)


def kd_loss(student_out, teacher_out, student_layers: list[int], *, regression: bool,
            w_logits: float = 1.0, w_hidden: float = 1.0, w_attention: float = 1.0,
            temperature: float = 1.0, attention_mask: torch.Tensor | None = None,
            hidden_mask: bool = False, student_scores: list[torch.Tensor] | None = None,
            teacher_scores: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Hidden states are matched at the embedding output and after each mapped layer (over every
    position, or with ``hidden_mask`` only real tokens); attention per mapped layer, summed over layers:
    on pre-softmax scores over real (query, key) pairs when ``student_scores``/``teacher_scores`` are
    given (XTC's reference), else on the probabilities stock transformers returns."""
    parts = {"logits": logit_loss(student_out.logits, teacher_out.logits, regression, temperature)}
    pairs = layer_map(student_layers)
    valid = attention_mask.bool() if attention_mask is not None else None
    if w_hidden:
        hs, ht = student_out.hidden_states, teacher_out.hidden_states
        tok = valid[:, :, None] if (hidden_mask and valid is not None) else None
        hidden = masked_mse(hs[0], ht[0], tok)
        for s, t in pairs:
            hidden = hidden + masked_mse(hs[s + 1], ht[t + 1], tok)
        parts["hidden"] = hidden
    if w_attention:
        if student_scores is not None and teacher_scores is not None:
            both = valid[:, None, :, None] & valid[:, None, None, :] if valid is not None else None
            att = sum(masked_mse(student_scores[s], teacher_scores[t], both) for s, t in pairs)
        else:
            att = sum(F.mse_loss(student_out.attentions[s], teacher_out.attentions[t]) for s, t in pairs)
        parts["attention"] = att
    total = (w_logits * parts["logits"] + w_hidden * parts.get("hidden", 0.0)
             + w_attention * parts.get("attention", 0.0))
    return total, {k: float(v.detach()) for k, v in parts.items()}
