"""Bit packing of quantization codes: 1-bit codes 8 per byte, 2-bit codes 4 per byte, 4-bit codes 2 per
byte (little-endian within the byte), 8-bit codes one per byte. Lossless for the code alphabets of
``quant.quantize_weight``."""

from __future__ import annotations

import torch

from .quant import qmax

# 2-bit code words: 0 -> 0, +1 -> 1, -1 -> 2 (3 is never written)
_TERNARY_TO_WORD = {0: 0, 1: 1, -1: 2}
_PER_BYTE = {1: 8, 2: 4, 4: 2, 8: 1}


def packed_size(numel: int, bits: int) -> int:
    per = _PER_BYTE[bits]
    return (numel + per - 1) // per


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """int8 codes (any shape) -> flat uint8 tensor."""
    if bits not in _PER_BYTE:
        raise ValueError(f"can pack {', '.join(map(str, _PER_BYTE))} bits, got {bits}")
    flat = codes.reshape(-1).to(torch.int16)
    if bits == 1:
        if ((flat != 1) & (flat != -1)).any():
            raise ValueError("1-bit codes must be -1 or +1")
        words = (flat > 0).to(torch.uint8)
    elif bits == 2:
        if (flat.abs() > 1).any():
            raise ValueError("2-bit codes must be -1, 0 or +1")
        words = torch.where(flat < 0, 2, flat).to(torch.uint8)
    else:  # symmetric codes as two's complement words; the most negative word is never written
        top = qmax(bits)
        if (flat.abs() > top).any():
            raise ValueError(f"{bits}-bit codes must be within [-{top}, {top}]")
        words = (flat & ((1 << bits) - 1)).to(torch.uint8)
    per = _PER_BYTE[bits]
    pad = (-words.numel()) % per
    if pad:
        words = torch.cat([words, words.new_zeros(pad)])
    words = words.reshape(-1, per).to(torch.int32)
    shifts = torch.arange(per, dtype=torch.int32) * bits
    return (words << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """flat uint8 -> int8 codes of ``shape``."""
    if bits not in _PER_BYTE:
        raise ValueError(f"can unpack {', '.join(map(str, _PER_BYTE))} bits, got {bits}")
    numel = 1
    for d in shape:
        numel *= int(d)
    if packed.numel() != packed_size(numel, bits):
        raise ValueError(f"{packed.numel()} packed bytes do not hold {numel} {bits}-bit codes")
    per = _PER_BYTE[bits]
    # in uint8/int8 throughout: an int32 copy of a 30k-row embedding's codes would be 4x its size
    shifts = torch.arange(per, dtype=torch.uint8) * bits
    words = (packed.to(torch.uint8)[:, None] >> shifts) & ((1 << bits) - 1)
    words = words.reshape(-1)[:numel].to(torch.int8)
    if bits == 1:
        codes = words * 2 - 1
    elif bits == 2:
        if (words == 3).any():
            raise ValueError("corrupt 2-bit data: code word 3 is never written")
        codes = torch.where(words == 2, -1, words).to(torch.int8)
    else:
        # words came through int8: 8-bit ones are already signed, 4-bit ones are 0..15
        signed = words if bits == 8 else torch.where(words >= 8, words - 16, words).to(torch.int8)
        if (signed == -(1 << (bits - 1))).any():
            raise ValueError(f"corrupt {bits}-bit data: code {-(1 << (bits - 1))} is never written")
        codes = signed
    return codes.reshape(shape)
