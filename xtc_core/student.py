"""Student construction: layer reduction by copying teacher layers, and where quantization goes."""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from .errors import ConfigError
from .quant import add_activation_quant, groups_for, quantize_module_weight


def default_layers(total: int, keep: int) -> list[int]:
    """Evenly spaced teacher layers ending at the top: 6 of 12 -> [1,3,...,11]; 5 of 12 -> [2,4,...,10]."""
    if not 1 <= keep <= total:
        raise ConfigError(f"cannot keep {keep} of {total} layers")
    if total % keep == 0:
        step = total // keep
        return [step * (i + 1) - 1 for i in range(keep)]
    return [round((i + 1) * total / (keep + 1)) for i in range(keep)]


def resolve_layers(spec: int | list[int] | None, total: int) -> list[int]:
    if spec is None:
        return default_layers(total, max(1, total // 2))
    if isinstance(spec, int):
        return default_layers(total, spec)
    bad = [i for i in spec if not 0 <= i < total]
    if bad:
        raise ConfigError(f"layer indices {bad} are outside the teacher's 0..{total - 1}")
    return list(spec)


def layer_list_path(model: nn.Module) -> str:
    """Dotted path of the encoder's layer ModuleList (bert.encoder.layer, distilbert.transformer.layer)."""
    n = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and name.endswith("layer"):
            return name
    raise ConfigError(f"cannot find the {n}-layer stack of {type(model).__name__}")


def build_student(teacher: nn.Module, layers: list[int]) -> nn.Module:
    """Same class and width as the teacher, ``len(layers)`` layers copied from the given teacher layers;
    embeddings, pooler and head copied too."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = type(teacher)(config)
    prefix = layer_list_path(teacher)
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    teacher_state = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        match = pattern.match(key)
        source = key
        if match:
            source = f"{prefix}.{layers[int(match.group(1))]}.{key[match.end():]}"
        state[key] = teacher_state[source].clone()
    student.load_state_dict(state)
    return student.to(next(teacher.parameters()).device)


def word_embeddings(model: nn.Module) -> nn.Embedding:
    return model.get_input_embeddings()


def quantized_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every Linear inside the layer stack: Q/K/V, attention output, FFN in and out (XTC's set).
    The pooler and classifier stay in full precision."""
    prefix = layer_list_path(model)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(prefix + ".")
    }


def quantize_linears(model: nn.Module, *, weight_bits: int, activation_bits: int | None,
                     weight_groups: int) -> dict[str, dict]:
    """The encoder's linears alone (``apply_quantization`` less the word embeddings)."""
    plan: dict[str, dict] = {}
    for name, linear in quantized_linears(model).items():
        groups = groups_for(linear.weight, weight_groups, per_row=False)
        quantize_module_weight(linear, weight_bits, groups)
        if activation_bits:
            add_activation_quant(linear, activation_bits)
        plan[f"{name}.weight"] = {"bits": weight_bits, "groups": groups}
    return plan


def apply_quantization(model: nn.Module, *, weight_bits: int, activation_bits: int | None,
                       weight_groups: int, embedding_bits: int | None = None) -> dict[str, dict]:
    """Make the student fake-quantized in place. Returns {param name: {bits, groups}} for export.
    The word embeddings get one scale per row at ``embedding_bits`` (None: ``weight_bits``, XTC's)."""
    plan = quantize_linears(model, weight_bits=weight_bits, activation_bits=activation_bits,
                            weight_groups=weight_groups)
    emb = word_embeddings(model)
    emb_name = next(n for n, m in model.named_modules() if m is emb)
    groups = groups_for(emb.weight, weight_groups, per_row=True)
    bits = embedding_bits or weight_bits
    quantize_module_weight(emb, bits, groups)
    plan[f"{emb_name}.weight"] = {"bits": bits, "groups": groups}
    return plan


def disable_dropout(model: nn.Module) -> None:
    """Dropout off in every module, the attention probabilities' included (they read ``dropout.p``)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def round_unquantized_floats(model: nn.Module, dtype: torch.dtype, quantized: set[str]) -> None:
    """Round every float tensor that is stored as-is to the storage dtype, so the in-memory model is
    exactly what the checkpoint will hold."""
    if dtype == torch.float32:
        return
    for name, tensor in plain_state(model).items():
        if name not in quantized and tensor.is_floating_point():
            tensor.copy_(tensor.to(dtype).to(tensor.dtype))


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with parametrized weights under their plain names (latent tensors, not copies)."""
    out = {}
    for key, value in model.state_dict(keep_vars=True).items():
        out[key.replace(".parametrizations.weight.original", ".weight")] = value.data
    return out
