"""Weight (1-bit BWN / 2-bit TWN; 4/8-bit symmetric for word embeddings) and activation (8-bit) fake
quantization with straight-through grads.

The forward of the fake-quantized weight is *exactly* ``dequantize(*quantize_weight(w))``, the same
function the checkpoint loader runs on the packed codes, so a reloaded model reproduces the
training-time model bit for bit (a ``w + (q - w).detach()`` formulation would not: it rounds).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

TERNARY_DELTA = 0.7  # TWN threshold: delta = 0.7 * mean(|w|) (Li et al. 2016, used by XTC)
# Besides XTC's binary and ternary codes, symmetric 4/8-bit codes (scale = max|w| / qmax) for the word
# embeddings (config.EMBEDDING_BITS), whose 2-bit form costs W2A8 students about half of their accuracy
# gap (bench/results/compare_sst2_w2_fp-embeddings-vs-2bit.md).
_MIN_SCALE = 1e-12  # an all-zero row gets codes 0 rather than 0/0


def _grouped(w: torch.Tensor, groups: int) -> torch.Tensor:
    if w.numel() % groups:
        raise ValueError(f"a tensor of {w.numel()} values cannot be split into {groups} equal groups")
    return w.reshape(groups, -1)


def _group_stats(absg: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-group scale (fp32) and, for 2 bits, the kept-weights mask.

    The reductions run in fp64: fp32 ``mean(|w|)`` is a parallel sum whose last bit depends on the
    thread count and the device (the issue measured 21-27 of 50 matrices differing between 1, 2 and 4
    CPU threads); an fp64 sum of fp32 values rounded back to fp32 is the same everywhere.
    """
    a = absg.double()
    if bits == 1:
        return a.mean(dim=1, keepdim=True).float(), None
    if bits == 2:
        keep = a > TERNARY_DELTA * a.mean(dim=1, keepdim=True)
        kept = (a * keep).sum(dim=1, keepdim=True) / keep.sum(dim=1, keepdim=True).clamp(min=1)
        return kept.float(), keep
    if bits in (4, 8):
        return (a.amax(dim=1, keepdim=True) / qmax(bits)).float().clamp(min=_MIN_SCALE), None
    raise ValueError(f"weight bits must be 1, 2, 4 or 8, got {bits}")


def qmax(bits: int) -> int:
    """The largest code of a symmetric ``bits``-bit integer (the most negative one is never used)."""
    return 2 ** (bits - 1) - 1


def _uniform_codes(g: torch.Tensor, scales: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric codes in [-qmax, qmax] (round half to even), as floats of ``g``'s dtype. ``+ 0.0``
    turns the -0.0 that rounding gives small negative weights into the +0.0 an integer code 0
    dequantizes to, so training's values equal the checkpoint's down to the sign bit."""
    q = qmax(bits)
    return torch.clamp(torch.round(g / scales), -q, q) + 0.0


def quantize_weight(w: torch.Tensor, bits: int, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes in {-1, +1} (1-bit), {-1, 0, +1} (2-bit) or [-qmax, qmax] (4/8-bit), int8 shaped like
    ``w``; fp32 scale per group.

    Computed on the CPU with fp64 statistics (4/8 bits: a max, exact anyway, then one fp32 division
    per weight), so the same latent weights give the same codes and scales whatever the device or
    thread count (this is what the checkpoint stores)."""
    g = _grouped(w.detach().to("cpu", torch.float32), groups)
    scales, keep = _group_stats(g.abs(), bits)
    if bits == 1:
        codes = torch.where(g >= 0, 1, -1).to(torch.int8)  # sign(0) = +1: every weight gets a bit
    elif bits == 2:
        codes = (torch.sign(g) * keep).to(torch.int8)
    else:
        codes = _uniform_codes(g, scales, bits).to(torch.int8)
    return codes.reshape(w.shape), scales[:, 0].contiguous()


def dequantize_weight(codes: torch.Tensor, scales: torch.Tensor, groups: int) -> torch.Tensor:
    """codes * scale, per group, in fp32 (one rounding of an exact product: the same as training's)."""
    g = codes.reshape(groups, -1).to(scales.dtype)
    return (g * scales[:, None]).reshape(codes.shape)


def fake_quantize_weight(w: torch.Tensor, bits: int, groups: int) -> torch.Tensor:
    """``dequantize_weight(*quantize_weight(w))`` computed on ``w``'s device without materializing
    integer codes (it runs every training step). Same arithmetic (fp64 statistics), so on the CPU it is
    equal to it bit for bit: each value is code * scale, rounded once."""
    g = _grouped(w.detach(), groups)
    alpha, keep = _group_stats(g.abs(), bits)
    alpha = alpha.to(g.dtype)
    if bits == 1:
        out = torch.where(g >= 0, alpha, -alpha)
    elif bits == 2:
        zero = torch.zeros((), dtype=g.dtype, device=g.device)
        out = torch.where(keep, torch.where(g >= 0, alpha, -alpha), zero)
    else:
        out = _uniform_codes(g, alpha, bits) * alpha
    return out.reshape(w.shape)


class _WeightSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, bits: int, groups: int):
        return fake_quantize_weight(w, bits, groups)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None  # straight-through estimator


class _ActivationSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits: int):
        return fake_quantize_activation(x, bits)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def fake_quantize_activation(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric dynamic-range quantization with one scale per token (the last dim's max).

    Token-wise ranges make a token's result independent of the rest of the batch (padding, batch
    size), so evaluation is reproducible however it is batched, and it is more accurate than one
    range per tensor.
    """
    codes, scale = activation_codes(x, bits)
    return codes * scale


def activation_codes(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer codes (as floats, in [-qmax, qmax]) and per-token scales behind
    ``fake_quantize_activation``: the one place this arithmetic lives, so the integer kernels
    (``int_kernels.Int8Linear``) multiply exactly training's codes."""
    top = qmax(bits)
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / top
    return torch.clamp(torch.round(x / scale), -top, top), scale


def binarize(w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    return _WeightSTE.apply(w, 1, groups)


def ternarize(w: torch.Tensor, groups: int = 1) -> torch.Tensor:
    return _WeightSTE.apply(w, 2, groups)


class WeightFakeQuant(nn.Module):
    """A parametrization: the module keeps its latent fp32 weight, forward sees the quantized one."""

    def __init__(self, bits: int, groups: int):
        super().__init__()
        self.bits = bits
        self.groups = groups
        self.frozen: torch.Tensor | None = None  # set by freeze(): the exported weight, fixed

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.frozen is not None:
            return self.frozen
        return _WeightSTE.apply(w, self.bits, self.groups)

    def freeze(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute codes and scales once (deterministically, see ``quantize_weight``) and make the
        forward return exactly ``codes * scales`` from now on."""
        codes, scales = quantize_weight(latent, self.bits, self.groups)
        self.frozen = dequantize_weight(codes, scales, self.groups).to(latent.device)
        return codes, scales


def _activation_hook(bits: int):
    def hook(module, args):
        return (_ActivationSTE.apply(args[0], bits),) + tuple(args[1:])

    return hook


def add_activation_quant(module: nn.Linear, bits: int) -> None:
    module._xtc_act_bits = bits  # marks the module; hooks themselves are not introspectable
    module.register_forward_pre_hook(_activation_hook(bits))


def groups_for(weight: torch.Tensor, requested: int, per_row: bool) -> int:
    """Token-wise (one scale per row) for embeddings; else the requested groups, falling back to a
    divisor of the row count so groups never straddle rows."""
    rows = weight.shape[0]
    if per_row:
        return rows
    groups = max(1, min(requested, rows))
    while rows % groups:
        groups -= 1
    return groups


def quantize_module_weight(module: nn.Module, bits: int, groups: int) -> None:
    parametrize.register_parametrization(module, "weight", WeightFakeQuant(bits, groups))
    if isinstance(module, nn.Embedding) and groups == module.num_embeddings:
        module.forward = types.MethodType(_token_wise_embedding_forward, module)


def _token_wise_embedding_forward(self: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """With one scale per row, quantizing the looked-up rows equals looking up quantized rows. Training
    does the former (a batch touches a few hundred of 30k rows); evaluation and export use the full
    quantized matrix, so the exported model stays bit-exact."""
    if not self.training or self.parametrizations.weight[0].frozen is not None:
        return F.embedding(ids, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)
    latent = self.parametrizations.weight.original
    rows = F.embedding(ids, latent, self.padding_idx, self.max_norm, self.norm_type,
                       self.scale_grad_by_freq, self.sparse)
    bits = self.parametrizations.weight[0].bits
    flat = rows.reshape(-1, rows.shape[-1])
    return _WeightSTE.apply(flat, bits, flat.shape[0]).reshape(rows.shape)


def freeze_quantized_weights(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fix every fake-quantized weight to the codes and scales the checkpoint will store, computed once.
    Returns {module name: (codes, scales)}. Used before the final evaluation, so the recorded metric is
    the artifact's metric (the weights are the same on any device and thread count)."""
    out = {}
    for name, module in model.named_modules():
        if is_weight_quantized(module):
            param = module.parametrizations.weight
            out[name] = param[0].freeze(param.original.detach())
    return out


def is_weight_quantized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") and isinstance(
        module.parametrizations.weight[0], WeightFakeQuant
    )
