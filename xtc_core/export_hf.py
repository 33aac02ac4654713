"""``xtc export --format hf``: a dense folder for plain transformers users.

The weights are the checkpoint's exact dequantized values (codes x scales) in fp32, loadable by stock
``AutoModelForSequenceClassification.from_pretrained``. Stock transformers has no activation
quantizer, so the 8-bit per-token activation rounding that training used is NOT applied: outputs
differ slightly from ``load_compressed`` (bench/onnx_agreement.py measures the metric difference).
The folder is as large as the fp32 student: the packed checkpoint or the ONNX export is the small one.
"""

from __future__ import annotations

import json
from pathlib import Path


def export_hf(ckpt: str | Path, out_dir: str | Path) -> Path:
    from torch import nn

    from .checkpoint import labelled_config, load_compressed, load_tokenizer, read_meta, uniform_permissions

    meta = read_meta(ckpt)
    model = load_compressed(ckpt)  # dense fp32 weights: what save_pretrained writes
    for module in model.modules():  # stock transformers has no activation quantizer: plain Linears
        if isinstance(module, nn.Linear):
            module.__class__ = nn.Linear
    labels = (meta.get("task") or {}).get("labels")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    config = labelled_config(model.config, labels, type(model).__name__)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    load_tokenizer(ckpt).save_pretrained(out)
    keys = ("weight_bits", "activation_bits", "weight_groups", "embedding_bits", "teacher_layers", "task",
            "library_version")
    provenance = {k: meta.get(k) for k in keys}
    provenance["note"] = ("dense export: weights are exact dequantized codes; activation quantization "
                          "is not applied by stock transformers")
    (out / "xtc_source.json").write_text(json.dumps(provenance, indent=2, sort_keys=True))
    uniform_permissions(out)
    return out
