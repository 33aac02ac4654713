"""8-bit storage for the float matrices a packed checkpoint still holds in fp16 (pooler, position
embeddings, ...): int8 codes + one fp32 scale per row (symmetric, max|row| / 127).

At 1 bit these matrices dominate what is left: BERT-base at 5 layers is 45.8x smaller with them in
fp16 and >= 50x with them at 8 bits (tests/core/test_storage8.py). It is a post-training rewrite of
a finished checkpoint (``xtc export CKPT --format packed8 --out DIR``): the metric can move, so the
rewritten folder drops metrics.json; ``xtc eval`` measures it (bench/onnx_agreement.py reports it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import (
    INT8_CODES,
    INT8_SCALES,
    METRICS,
    PACKED_SUFFIXES,
    WEIGHTS,
    XTC_META,
    read_meta,
    uniform_permissions,
)
from .quant import quantize_weight

MIN_VALUES = 4096  # small matrices (token types, a 2-class head) are not worth a scale per row


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes and one fp32 scale per row: the 8-bit weight quantizer (``quant.quantize_weight``)."""
    return quantize_weight(w.float(), 8, w.shape[0])


def repack_floats_8bit(ckpt: str | Path, out_dir: str | Path, min_values: int = MIN_VALUES) -> Path:
    ckpt, out = Path(ckpt), Path(out_dir)
    meta = read_meta(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    for path in ckpt.iterdir():
        if path.is_file() and path.name not in (WEIGHTS, METRICS, XTC_META):
            shutil.copyfile(path, out / path.name)
    tensors: dict[str, torch.Tensor] = {}
    converted = []
    with safe_open(str(ckpt / WEIGHTS), framework="pt") as f:
        metadata = f.metadata()
        for key in f.keys():
            tensor = f.get_tensor(key)
            if (not key.endswith(PACKED_SUFFIXES) and tensor.is_floating_point() and tensor.dim() == 2
                    and tensor.numel() >= min_values):
                codes, scales = quantize_rows(tensor)
                tensors[key + INT8_CODES], tensors[key + INT8_SCALES] = codes, scales
                converted.append(key)
            else:
                tensors[key] = tensor
    save_file(tensors, str(out / WEIGHTS), metadata=metadata)
    meta["float_matrices_8bit"] = sorted(converted)
    (out / XTC_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    uniform_permissions(out)
    return out
