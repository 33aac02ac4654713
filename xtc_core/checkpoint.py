"""The packed checkpoint: HF-style folder whose model.safetensors holds quantized weights as packed bits.

Layout of ``model.safetensors``: for each quantized weight ``W``: ``W.qweight`` (uint8, packed codes),
``W.qscale`` (fp32, one per group), ``W.qshape`` (int64); every other tensor under its own name in
the storage dtype. ``xtc.json`` says which tensors are quantized and how. Loading reads JSON and
safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from . import __version__
from .canonical import canonicalize_header
from .errors import CheckpointError
from .packing import pack_codes, unpack_codes
from .quant import add_activation_quant, dequantize_weight, quantize_weight
from .student import plain_state

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
XTC_META = "xtc.json"
METRICS = "metrics.json"
_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def export_tensors(model: nn.Module, quantized: dict[str, dict],
                   float_storage: str) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors for a (fake-quantized) student."""
    tensors: dict[str, torch.Tensor] = {}
    dtype = _DTYPES[float_storage]
    for name, value in plain_state(model).items():
        value = value.detach().cpu()
        if name in quantized:
            spec = quantized[name]
            codes, scales = quantize_weight(value, spec["bits"], spec["groups"])
            tensors[f"{name}.qweight"] = pack_codes(codes, spec["bits"])
            tensors[f"{name}.qscale"] = scales.float()
            tensors[f"{name}.qshape"] = torch.tensor(list(value.shape), dtype=torch.int64)
        elif value.is_floating_point():
            tensors[name] = value.to(dtype).contiguous()
        else:
            tensors[name] = value.contiguous()
    return tensors


def save_compressed(model: nn.Module, tokenizer, out_dir: str | Path, *, meta: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = export_tensors(model, meta["quantized"], meta["float_storage"])
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt", "xtc_format": str(FORMAT_VERSION)})
    canonicalize_header(out / WEIGHTS)  # same tensors -> same bytes (safetensors orders metadata randomly)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    full_meta = {"format_version": FORMAT_VERSION, "library_version": __version__, **meta}
    (out / XTC_META).write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    return out


def write_metrics(out_dir: str | Path, metrics: dict[str, Any]) -> None:
    (Path(out_dir) / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True))


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_file = path / XTC_META
    for needed in (meta_file, path / WEIGHTS, path / "config.json"):
        if not needed.exists():
            raise CheckpointError(f"{path}: not an XTC checkpoint (missing {needed.name})")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_file}: invalid JSON ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format_version')} is not supported by this library "
            f"(format {FORMAT_VERSION})"
        )
    return meta


def load_state(path: str | Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Unpacked fp32 state dict: quantized weights become codes * scale, exactly as in training."""
    quantized = meta["quantized"]
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(Path(path) / WEIGHTS), framework="pt") as f:
        keys = set(f.keys())
        for name, spec in quantized.items():
            shape = tuple(int(d) for d in f.get_tensor(f"{name}.qshape").tolist())
            codes = unpack_codes(f.get_tensor(f"{name}.qweight"), spec["bits"], shape)
            state[name] = dequantize_weight(codes, f.get_tensor(f"{name}.qscale").float(), spec["groups"])
        for key in keys:
            if key.endswith((".qweight", ".qscale", ".qshape")):
                continue
            tensor = f.get_tensor(key)
            state[key] = tensor.float() if tensor.is_floating_point() else tensor
    return state


def load_compressed(path: str | Path, device: str | torch.device | None = None):
    """A stock transformers *ForSequenceClassification whose outputs equal the training-time
    fake-quantized student exactly: dequantized weights plus the same 8-bit activation hooks."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    meta = read_meta(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    state = load_state(path, meta)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    if meta.get("activation_bits"):
        modules = dict(model.named_modules())
        for name in meta["quantized"]:
            module = modules[name.rsplit(".", 1)[0]]
            if isinstance(module, nn.Linear):
                add_activation_quant(module, meta["activation_bits"])
    model.eval()
    return model.to(device) if device is not None else model


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
