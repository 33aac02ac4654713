"""Integer inference modules for ``load_compressed``: the checkpoint's codes kept as int8 and used as
integers, as the ONNX export does.

- ``Int8Linear``: a quantized linear whose input is quantized per token exactly as training does
  (``quant.fake_quantize_activation``'s codes), multiplied int8 x int8 -> int32 by ``torch._int_mm``
  (oneDNN on x86: ~9x faster than the fp32 product of the same shape on one thread), then rescaled by
  (token scale x row scale) and biased. The integer sum is exact; training's fp32 emulation rounds it,
  so outputs agree with the emulation to float rounding, not bit for bit.
- ``Int8Embedding``: the token-wise quantized word embedding as int8 codes + one scale per row.
  Gather-then-scale is the same single multiply as dequantize-then-gather: bit-identical rows at a
  quarter of the memory.

Both hold a quarter (or less) of the fp32 weights' bytes, so a loaded student is lighter than the
fp32 model it represents.
"""

from __future__ import annotations

import torch
from torch import nn

from .quant import activation_codes


def integer_matmul_available(device: torch.device) -> bool:
    # CUDA's _int_mm needs M > 16 and multiples of 8; the CPU kernel takes any shape.
    return device.type == "cpu" and hasattr(torch, "_int_mm")


class _DenseStateDict:
    """``state_dict()`` (and so ``save_pretrained``) writes the dequantized ``weight`` under the stock
    module's key, so a model loaded for inference still saves as the stock model it stands for."""

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.weight


class Int8Linear(_DenseStateDict, nn.Module):
    def __init__(self, codes: torch.Tensor, row_scale: torch.Tensor, bias: torch.Tensor | None,
                 act_bits: int):
        super().__init__()
        if codes.dtype != torch.int8 or codes.dim() != 2 or row_scale.shape != (codes.shape[0],):
            raise ValueError("Int8Linear takes int8 codes [out, in] and one fp32 scale per output row")
        if not 2 <= act_bits <= 8:
            raise ValueError(f"integer products need activations of at most 8 bits, got {act_bits}")
        self.out_features, self.in_features = codes.shape
        self.act_bits = act_bits
        self._xtc_act_bits = act_bits
        self.register_buffer("codes", codes, persistent=False)
        self.register_buffer("row_scale", row_scale.float(), persistent=False)
        self.bias = nn.Parameter(bias.float(), requires_grad=False) if bias is not None else None

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (codes x scale), for inspection: forward never builds it."""
        return self.codes.float() * self.row_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).float()
        if x2.shape[0] == 0:  # an empty batch: nothing to quantize (amax of no values is an error)
            return x2.new_zeros(*lead, self.out_features)
        q, scale = activation_codes(x2, self.act_bits)  # training's codes, by training's function
        if not integer_matmul_available(x2.device):  # the module was moved (e.g. to CUDA) after loading
            y = torch.nn.functional.linear(q * scale, self.weight, self.bias)
            return y.reshape(*lead, self.out_features)
        q = q.to(torch.int8)
        y = torch._int_mm(q, self.codes.t()).float().mul_(scale).mul_(self.row_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, act_bits={self.act_bits}, int8 x int8 -> int32")


class Int8Embedding(_DenseStateDict, nn.Module):
    def __init__(self, codes: torch.Tensor, row_scale: torch.Tensor, padding_idx: int | None):
        super().__init__()
        if codes.dtype != torch.int8 or codes.dim() != 2 or row_scale.shape != (codes.shape[0],):
            raise ValueError("Int8Embedding takes int8 codes [rows, dim] and one fp32 scale per row")
        self.num_embeddings, self.embedding_dim = codes.shape
        self.padding_idx = padding_idx
        self.register_buffer("codes", codes, persistent=False)
        self.register_buffer("row_scale", row_scale.float(), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.codes.float() * self.row_scale[:, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codes[ids].float() * self.row_scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 codes + a scale per row"
