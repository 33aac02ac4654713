"""What a checkpoint holds and how small it really is on disk (read from the safetensors header)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import safe_open

from .checkpoint import INT8_CODES, PACKED_SUFFIXES, WEIGHTS, read_meta

_DTYPE_BITS = {"F16": 16, "BF16": 16, "F32": 32, "F64": 64, "I8": 8, "U8": 8, "I16": 16, "I32": 32,
               "I64": 64, "BOOL": 8}


def inspect_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta = read_meta(path)
    quantized = meta["quantized"]
    tensors = []
    payload_bytes = 0
    with safe_open(str(path / WEIGHTS), framework="pt") as f:
        keys = set(f.keys())
        for name, spec in sorted(quantized.items()):
            shape = [int(d) for d in f.get_tensor(f"{name}.qshape").tolist()]
            packed = f.get_slice(f"{name}.qweight").get_shape()[0]
            scales = f.get_slice(f"{name}.qscale").get_shape()[0]
            nbytes = packed + scales * 4 + len(shape) * 8
            payload_bytes += nbytes
            tensors.append({"name": name, "bits": spec["bits"], "shape": shape, "params": _numel(shape),
                            "scales": scales, "bytes": nbytes})
        for key in sorted(keys):
            if key.endswith(INT8_CODES):  # a float matrix stored at 8 bits + a scale per row
                name = key[: -len(INT8_CODES)]
                shape = list(f.get_slice(key).get_shape())
                nbytes = _numel(shape) + shape[0] * 4
                payload_bytes += nbytes
                tensors.append({"name": name, "bits": 8, "shape": shape, "params": _numel(shape),
                                "scales": shape[0], "bytes": nbytes})
                continue
            if key.endswith(PACKED_SUFFIXES):
                continue
            sl = f.get_slice(key)
            shape = list(sl.get_shape())
            bits = _DTYPE_BITS.get(sl.get_dtype(), 64)
            nbytes = _numel(shape) * bits // 8
            payload_bytes += nbytes
            tensors.append({"name": key, "bits": bits, "shape": shape, "params": _numel(shape),
                            "bytes": nbytes})
    packed_bytes = (path / WEIGHTS).stat().st_size
    fp32_bytes = meta["teacher"]["fp32_bytes"]
    by_bits: dict[str, int] = {}
    for t in tensors:
        by_bits[str(t["bits"])] = by_bits.get(str(t["bits"]), 0) + t["params"]
    where: dict[str, int] = {}
    for t in tensors:
        kind = _kind(t, set(quantized))
        where[kind] = where.get(kind, 0) + t["bytes"]
    return {
        "path": str(path),
        "bytes_by_kind": dict(sorted(where.items(), key=lambda kv: -kv[1])),
        "fp32_bytes": fp32_bytes,
        "packed_bytes": packed_bytes,
        "payload_bytes": payload_bytes,  # tensor data alone, without the safetensors header
        "folder_bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file()),
        "ratio": fp32_bytes / packed_bytes,
        "weight_bits": meta.get("weight_bits"),
        "activation_bits": meta.get("activation_bits"),
        "embedding_bits": next((spec["bits"] for name, spec in meta.get("quantized", {}).items()
                                if "word_embeddings" in name), None),
        "layers": len(meta.get("teacher_layers", [])),
        "teacher_layers": meta.get("teacher_layers"),
        "params_by_bits": by_bits,
        "tensors": tensors,
    }


def _kind(t: dict, quantized: set[str]) -> str:
    """Where the bytes go, in words."""
    name = t["name"]
    if name in quantized:
        what = "word embeddings" if "embeddings" in name else "encoder linears"
        return f"{t['bits']}-bit {what} (+ scales)"
    if len(t["shape"]) >= 2:
        return f"{t['bits']}-bit float matrices (pooler, position/type embeddings, head)"
    return f"{t['bits']}-bit vectors (biases, LayerNorm)"


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
