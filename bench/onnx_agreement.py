"""Does the deployed ONNX model predict what the checkpoint predicts? Full SST-2 dev (872 sentences).

    python bench/onnx_agreement.py CKPT [CKPT ...] [--tag NAME]

For each checkpoint: logits from ``load_compressed`` (PyTorch, exact: the recorded metric's
model) and from the ONNX export through ``xtc_core.runtime.Predictor`` (and from the integer
``load_compressed(fast=True)``); reports the share of equal predictions (goal
>= 99.8%), both accuracies (goal: within 0.1 point), the max |logit difference|, and the accuracy of
the dense ``--format hf`` export under stock transformers (no activation quantization) and of the
``packed8`` rewrite (float matrices at 8 bits). Writes
bench/results/onnx_agreement[_TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def sst2_dev():
    from xtc_core.tabular import read_glue_file
    from xtc_core.tasks import get_task

    glue = Path(os.environ.get("XTC_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))
    return read_glue_file(get_task("sst2"), glue / "SST-2" / "dev.tsv")


def torch_logits(model, tokenizer, rows, max_length, batch_size):
    import torch

    from xtc_core.batches import encode, predict

    with torch.inference_mode():
        encoded = encode(tokenizer, rows, max_length)
        return predict(model, tokenizer, encoded, batch_size, "cpu", False).numpy()


def measure(ckpt: Path, rows) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from xtc_core.checkpoint import load_compressed, load_tokenizer, read_meta
    from xtc_core.export_hf import export_hf
    from xtc_core.export_onnx import export_onnx
    from xtc_core.inspect import inspect_checkpoint
    from xtc_core.runtime import Predictor
    from xtc_core.storage8 import repack_floats_8bit

    meta = read_meta(ckpt)
    max_length, batch_size = meta["eval"]["max_seq_length"], meta["eval"]["batch_size"]
    labels = np.array([r.label for r in rows])
    ref = torch_logits(load_compressed(ckpt), load_tokenizer(ckpt), rows, max_length, batch_size)
    fast = torch_logits(load_compressed(ckpt, fast=True), load_tokenizer(ckpt), rows, max_length, batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = export_onnx(ckpt, Path(tmp) / "onnx")
        onnx_bytes = (out / "model.onnx").stat().st_size
        got = Predictor(out, batch_size=batch_size).logits([r.text for r in rows])
        hf = export_hf(ckpt, Path(tmp) / "hf")
        dense = AutoModelForSequenceClassification.from_pretrained(hf, attn_implementation="eager").eval()
        hf_logits = torch_logits(dense, AutoTokenizer.from_pretrained(hf), rows, max_length, batch_size)
        packed8 = repack_floats_8bit(ckpt, Path(tmp) / "packed8")
        p8_model = load_compressed(packed8)
        p8_logits = torch_logits(p8_model, load_tokenizer(packed8), rows, max_length, batch_size)
        p8_ratio = inspect_checkpoint(packed8)["ratio"]
    acc = {name: float((x.argmax(1) == labels).mean() * 100) for name, x in
           (("load_compressed", ref), ("load_compressed_int", fast), ("onnx", got),
            ("hf_dense_no_act_quant", hf_logits), ("packed8", p8_logits))}
    return {
        "checkpoint": str(ckpt), "weight_bits": meta["weight_bits"],
        "weight_groups": meta.get("weight_groups"), "layers": len(meta["teacher_layers"]),
        "activation_bits": meta["activation_bits"], "examples": len(rows),
        "equal_predictions_pct": float((ref.argmax(1) == got.argmax(1)).mean() * 100),
        "equal_predictions_int_pct": float((ref.argmax(1) == fast.argmax(1)).mean() * 100),
        "max_abs_logit_diff_int": float(np.abs(ref - fast).max()),
        "accuracy": acc, "accuracy_diff_onnx": acc["onnx"] - acc["load_compressed"],
        "accuracy_diff_hf_dense": acc["hf_dense_no_act_quant"] - acc["load_compressed"],
        "accuracy_diff_packed8": acc["packed8"] - acc["load_compressed"],
        "ratio": inspect_checkpoint(ckpt)["ratio"], "ratio_packed8": p8_ratio,
        "max_abs_logit_diff": float(np.abs(ref - got).max()),
        "max_abs_logit": float(np.abs(ref).max()),
        "onnx_model_bytes": onnx_bytes,
        "recorded_student_accuracy": _recorded(ckpt),
    }


def _recorded(ckpt: Path):
    path = ckpt / "metrics.json"
    return json.loads(path.read_text())["student"].get("accuracy") * 100 if path.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    rows = sst2_dev()
    results = []
    for ckpt in args.checkpoints:
        res = measure(ckpt, rows)
        print(json.dumps(res))
        results.append(res)
    lines = ["| checkpoint | W | groups | layers | equal predictions | acc load_compressed | acc ONNX | "
             "max abs logit diff | integer load_compressed: equal, acc | acc hf dense (no act. quant) | "
             "acc packed8 (ratio) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["accuracy"]
        lines.append(f"| {Path(r['checkpoint']).name} | {r['weight_bits']} | {r['weight_groups']} | "
                     f"{r['layers']} | "
                     f"{r['equal_predictions_pct']:.2f}% | {a['load_compressed']:.2f} | {a['onnx']:.2f} | "
                     f"{r['max_abs_logit_diff']:.2e} | {r['equal_predictions_int_pct']:.2f}%, "
                     f"{a['load_compressed_int']:.2f} | {a['hf_dense_no_act_quant']:.2f} | "
                     f"{a['packed8']:.2f} ({r['ratio']:.1f}x -> {r['ratio_packed8']:.1f}x) |")
    suffix = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"onnx_agreement{suffix}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"onnx_agreement{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
