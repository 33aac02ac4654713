"""One-stage knowledge distillation losses (XTC): logits + hidden states + attention, weight 1 each."""

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


def kd_loss(student_out, teacher_out, student_layers: list[int], *, regression: bool,
            w_logits: float = 1.0, w_hidden: float = 1.0, w_attention: float = 1.0,
            temperature: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Hidden states are matched at the embedding output and after each mapped layer; attention
    probabilities (what stock transformers return) per mapped layer, averaged over layers."""
    parts = {"logits": logit_loss(student_out.logits, teacher_out.logits, regression, temperature)}
    pairs = layer_map(student_layers)
    if w_hidden:
        hs, ht = student_out.hidden_states, teacher_out.hidden_states
        hidden = F.mse_loss(hs[0], ht[0])
        for s, t in pairs:
            hidden = hidden + F.mse_loss(hs[s + 1], ht[t + 1])
        parts["hidden"] = hidden
    if w_attention:
        att = sum(F.mse_loss(student_out.attentions[s], teacher_out.attentions[t]) for s, t in pairs)
        parts["attention"] = att
    total = (w_logits * parts["logits"] + w_hidden * parts.get("hidden", 0.0)
             + w_attention * parts.get("attention", 0.0))
    return total, {k: float(v.detach()) for k, v in parts.items()}
