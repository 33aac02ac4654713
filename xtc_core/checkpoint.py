"""The packed checkpoint: HF-style folder whose model.safetensors holds quantized weights as packed bits.

Layout of ``model.safetensors``: for each quantized weight ``W``: ``W.qweight`` (uint8, packed codes),
``W.qscale`` (fp32, one per group), ``W.qshape`` (int64); every other tensor under its own name in
the storage dtype. ``xtc.json`` says which tensors are quantized and how. Loading reads JSON and
safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from . import __version__
from .canonical import canonicalize_header
from .errors import CheckpointError
from .packing import pack_codes, unpack_codes
from .quant import dequantize_weight, fake_quantize_activation, quantize_weight
from .student import plain_state

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
XTC_META = "xtc.json"
METRICS = "metrics.json"
_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
INT8_CODES, INT8_SCALES = ".i8weight", ".i8scale"  # a float matrix stored at 8 bits (storage8)
PACKED_SUFFIXES = (".qweight", ".qscale", ".qshape", INT8_CODES, INT8_SCALES)
# config.json's model_type: stock loaders (AutoConfig, AutoModel*, pipeline) refuse an unknown type with
# an error that quotes it, so the quoted type tells the user which loader to use. The real type is kept
# under STOCK_TYPE_KEY. A stock model class would otherwise build the architecture and fill every
# packed weight with random values (the packed tensors have other names), returning garbage silently.
PACKED_MODEL_TYPE = "xtc-packed (load it with xtc_core.load_compressed, or `xtc export --format hf`)"
STOCK_TYPE_KEY = "xtc_model_type"


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
    write_packed_config(model.config, out, (meta.get("task") or {}).get("labels"))
    tokenizer.save_pretrained(out)
    full_meta = {"format_version": FORMAT_VERSION, "library_version": __version__, **meta}
    (out / XTC_META).write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    uniform_permissions(out)
    return out


def labelled_config(config, labels, architecture: str | None = None) -> dict[str, Any]:
    """The stock config as a dict, with id2label/label2id from the task's labels (CSV neg/pos stays
    neg/pos; a regression head keeps its single output)."""
    data = config.to_dict()
    data.pop("_name_or_path", None)  # the teacher's local path means nothing to whoever downloads this
    if labels and len(labels) == data.get("num_labels", len(data.get("id2label", {}))):
        data["id2label"] = {str(i): str(name) for i, name in enumerate(labels)}
        data["label2id"] = {str(name): i for i, name in enumerate(labels)}
    data["architectures"] = [architecture or _head_class_name(data)]
    return data


def _head_class_name(data: dict) -> str:
    """The *ForSequenceClassification class a stock loader would build, from the config's own record
    (no lookup in transformers' auto tables: that imports every model module, ~120 MB)."""
    for name in data.get("architectures") or []:
        if name.endswith("ForSequenceClassification"):
            return name
    return "ForSequenceClassification"


def write_packed_config(config, out: Path, labels) -> None:
    data = labelled_config(config, labels, "XTCPackedCheckpoint")
    data[STOCK_TYPE_KEY] = data["model_type"]
    data["model_type"] = PACKED_MODEL_TYPE
    (out / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def head_class(model_type: str):
    """The stock *ForSequenceClassification class, imported alone (the Auto class's lookup imports
    every model module: ~120 MB of RSS)."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    return getattr(transformers, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES[model_type])


def stock_config(path: str | Path):
    """The transformers config of a checkpoint (packed or an older plain one)."""
    from transformers import AutoConfig

    data = json.loads((Path(path) / "config.json").read_text())
    model_type = data.pop(STOCK_TYPE_KEY, None) or data["model_type"]
    data.pop("model_type", None)
    data.pop("architectures", None)  # "XTCPackedCheckpoint"; from_config does not need it
    return AutoConfig.for_model(model_type, **data)


def uniform_permissions(folder: Path) -> None:
    """Every file of the artifact gets the mode a plain file gets under the process umask (safetensors
    writes 0600, the JSON writers 0644 under the usual umask)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def default_work_dir(output_dir: str | Path) -> Path:
    """Training state for ``--out DIR`` lives beside it (``.DIR.xtc-work``), never inside the artifact."""
    out = Path(output_dir).resolve()
    return out.parent / f".{out.name}.xtc-work"


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


def load_state(path: str | Path, meta: dict[str, Any], skip: frozenset[str] = frozenset()
               ) -> dict[str, torch.Tensor]:
    """Unpacked fp32 state dict: quantized weights become codes * scale, exactly as in training.
    Quantized weights named in ``skip`` are left out (the caller keeps them as codes)."""
    quantized = meta["quantized"]
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(Path(path) / WEIGHTS), framework="pt") as f:
        keys = set(f.keys())
        for name, spec in quantized.items():
            if name in skip:
                continue
            shape = tuple(int(d) for d in f.get_tensor(f"{name}.qshape").tolist())
            packed, scales = f.get_tensor(f"{name}.qweight"), f.get_tensor(f"{name}.qscale")
            state[name] = _dequantize_in_chunks(packed, scales, spec["bits"], spec["groups"], shape)
        for key in keys:
            if key.endswith(PACKED_SUFFIXES):
                if key.endswith(INT8_CODES):  # an 8-bit stored float matrix (storage8)
                    name = key[: -len(INT8_CODES)]
                    state[name] = dequantize_rows(f.get_tensor(key), f.get_tensor(name + INT8_SCALES))
                continue
            tensor = f.get_tensor(key)
            state[key] = tensor.float() if tensor.is_floating_point() else tensor
    return state


def load_codes(path: str | Path, meta: dict[str, Any], names) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{name: (int8 codes shaped like the weight, fp32 scale per row)} for the named quantized weights.
    Groups are blocks of whole rows (``quant.groups_for``), so a group's scale is each of its rows'."""
    out = {}
    with safe_open(str(Path(path) / WEIGHTS), framework="pt") as f:
        for name in names:
            bits = meta["quantized"][name]["bits"]
            shape = tuple(int(d) for d in f.get_tensor(f"{name}.qshape").tolist())
            codes = _unpack_in_chunks(f.get_tensor(f"{name}.qweight"), bits, shape)
            scales = f.get_tensor(f"{name}.qscale").float()
            out[name] = (codes, scales.repeat_interleave(shape[0] // scales.numel()))
    return out


def _unpack_in_chunks(packed: torch.Tensor, bits: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``unpack_codes`` a slice of bytes at a time into one int8 tensor (no int32 copy of the whole)."""
    numel = math.prod(shape)
    per_byte = 8 // bits
    out = torch.empty(numel, dtype=torch.int8)
    step = _CHUNK_VALUES // per_byte
    for b0 in range(0, packed.numel(), step):
        b1 = min(packed.numel(), b0 + step)
        n = min(numel, b1 * per_byte) - b0 * per_byte
        out[b0 * per_byte: b0 * per_byte + n] = unpack_codes(packed[b0:b1], bits, (n,))
    return out.reshape(shape)


_CHUNK_VALUES = 1 << 20


def _dequantize_in_chunks(packed: torch.Tensor, scales: torch.Tensor, bits: int, groups: int,
                          shape: tuple[int, ...]) -> torch.Tensor:
    """``dequantize_weight(unpack_codes(...))`` a block of whole rows at a time, into one fp32 tensor.
    Identical values (each value is its code times its group's scale), but the int32/int8
    intermediates of a 30k-row embedding never exist at once, so loading needs ~the model's fp32 size."""
    scales = scales.float()
    rows = shape[0]
    cols = math.prod(shape[1:]) if len(shape) > 1 else 1
    rows_per_group = rows // groups
    per_byte = 8 // bits
    step = max(1, _CHUNK_VALUES // max(1, cols))
    step = max(rows_per_group, step // rows_per_group * rows_per_group) if groups > 1 else step
    while (step * cols) % per_byte and step < rows:  # chunks must start on a byte boundary
        step += rows_per_group if groups > 1 else 1
    if step >= rows or (step * cols) % per_byte:
        return dequantize_weight(unpack_codes(packed, bits, shape), scales, groups)
    out = torch.empty(shape, dtype=torch.float32)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        b0, b1 = r0 * cols // per_byte, -(-r1 * cols // per_byte)
        codes = unpack_codes(packed[b0:b1], bits, (r1 - r0, *shape[1:]))
        if groups == 1:
            out[r0:r1] = dequantize_weight(codes, scales, 1)
        else:
            g0, g1 = r0 // rows_per_group, r1 // rows_per_group
            out[r0:r1] = dequantize_weight(codes, scales[g0:g1], g1 - g0)
    return out


def dequantize_rows(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 codes x one fp32 scale per row, in fp32 (storage8's 8-bit float matrices)."""
    return codes.float() * scales.float()[:, None]


class ActQuantLinear(nn.Linear):
    """A Linear whose input goes through ``quant.fake_quantize_activation`` inside forward: the training
    hook's exact math without a forward-pre-hook and an autograd Function per call. Same parameters
    and state-dict keys as nn.Linear, so the model stays a stock transformers model otherwise."""

    act_bits: int = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(fake_quantize_activation(x, self.act_bits), self.weight, self.bias)


def load_compressed(path: str | Path, device: str | torch.device | None = None, *, fast: bool = False):
    """The student as a stock transformers *ForSequenceClassification, built without allocating random
    weights first (the loaded tensors become its parameters).

    Default: training's fake-quant arithmetic bit for bit (dequantized fp32 weights, each quantized
    Linear quantizing its input per token in its forward, eager attention; the word embedding as int8
    codes + row scales, which gives the same rows): outputs equal the training-time model's exactly,
    which is what recorded metrics and the checkpoint contract rest on.

    ``fast=True`` (inference on CPU): every quantized linear with 8-bit activations computes on
    integers (``int_kernels.Int8Linear``: training's activation codes x the stored weight codes, int32
    sums) and the token-wise word embedding stays int8 codes; attention is SDPA. Faster than the fp32
    teacher and lighter than the fp32 student it represents; outputs equal the default's to float
    rounding. On CUDA it falls back to the default.
    """
    from .int_kernels import Int8Embedding, Int8Linear, integer_matmul_available

    meta = read_meta(path)
    config = stock_config(path)
    act_bits = int(meta.get("activation_bits") or 0)
    target = torch.device(device) if device is not None else torch.device("cpu")
    integer = fast and 0 < act_bits <= 8 and integer_matmul_available(target)
    config._attn_implementation = "sdpa" if integer else "eager"  # eager: the training-time attention
    with torch.device("meta"):
        model = head_class(config.model_type)(config)
    modules = dict(model.named_modules())
    kept_as_codes = {}
    for name, spec in meta["quantized"].items():
        module = modules.get(name.rsplit(".", 1)[0])
        # A token-wise quantized embedding stays int8 in both modes: gathering codes and then scaling
        # is the very multiply that dequantizing does, so rows are bit-identical at a quarter of the
        # memory (a dense fp32 copy of a 30k-row table is most of a small student's RSS).
        if (type(module) is nn.Embedding and spec["groups"] == module.num_embeddings) or (
                integer and type(module) is nn.Linear):
            kept_as_codes[name] = module
    state = load_state(path, meta, skip=frozenset(kept_as_codes))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("position_ids") and k not in kept_as_codes]
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    for name, (codes, row_scale) in load_codes(path, meta, kept_as_codes).items():
        module = kept_as_codes[name]
        if isinstance(module, nn.Linear):
            bias = module.bias.data if module.bias is not None else None
            new: nn.Module = Int8Linear(codes, row_scale, bias, act_bits)
        else:
            new = Int8Embedding(codes, row_scale, module.padding_idx)
        parent, _, child = name.rsplit(".", 1)[0].rpartition(".")
        setattr(modules[parent] if parent else model, child, new)
    _materialize_buffers(model)
    if act_bits:
        modules = dict(model.named_modules())
        for name in meta["quantized"]:
            module = modules.get(name.rsplit(".", 1)[0])
            if type(module) is nn.Linear:
                module.__class__ = ActQuantLinear
                module.act_bits = act_bits
                module._xtc_act_bits = module.act_bits
    model.eval()
    _return_freed_memory()
    return model.to(device) if device is not None else model


def _return_freed_memory() -> None:
    """glibc keeps the heap pages of the load's transients (unpacking, fp16 -> fp32) mapped after they
    are freed, ~2x the int8 model's size: hand them back, so the loaded model weighs what it holds."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _materialize_buffers(model: nn.Module) -> None:
    """Non-persistent buffers (not in the checkpoint) were created on the meta device: rebuild them as
    the stock constructors do (position ids 0..n-1, token type ids 0)."""
    for module_name, module in model.named_modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if not buf.is_meta:
                continue
            if name == "position_ids":
                value = torch.arange(buf.shape[-1], dtype=buf.dtype).expand(buf.shape)
            elif name == "token_type_ids":
                value = torch.zeros(buf.shape, dtype=buf.dtype)
            else:
                raise CheckpointError(f"cannot rebuild buffer {module_name}.{name} of this architecture")
            persistent = name not in module._non_persistent_buffers_set
            module.register_buffer(name, value.clone() if name == "position_ids" else value,
                                   persistent=persistent)
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:
        raise CheckpointError(f"checkpoint lacks tensors {leftover[:3]}")


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    # the stock config is passed so the tokenizer does not read config.json's packed model type
    return AutoTokenizer.from_pretrained(path, config=stock_config(path), trust_remote_code=False)


def load_quantized(path: str | Path, meta: dict[str, Any]):
    """For exporters: {name: (int8 codes shaped like the weight, fp32 scale per row)} for quantized
    weights and {name: numpy array as stored} for the rest. Groups are blocks of whole rows
    (``quant.groups_for``), so a per-group scale expands to one scale per row exactly."""
    codes = {name: (c.numpy(), scale.numpy())
             for name, (c, scale) in load_codes(path, meta, meta["quantized"]).items()}
    floats: dict[str, Any] = {}
    with safe_open(str(Path(path) / WEIGHTS), framework="pt") as f:
        for key in f.keys():
            if key.endswith(INT8_CODES):
                name = key[: -len(INT8_CODES)]
                floats[name] = dequantize_rows(f.get_tensor(key), f.get_tensor(name + INT8_SCALES)).numpy()
            elif not key.endswith(PACKED_SUFFIXES):
                floats[key] = f.get_tensor(key).numpy()
    return codes, floats
