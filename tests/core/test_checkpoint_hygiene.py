"""A checkpoint never loads silently wrong, carries its labels, holds no training state, one file mode."""

import csv
import json
import os
import stat

import pytest
import torch
from test_export_onnx import make_checkpoint, reference_logits
from transformers import AutoModelForSequenceClassification, pipeline
from typer.testing import CliRunner

from xtc_core.checkpoint import load_compressed
from xtc_core.cli import app
from xtc_core.export_hf import export_hf
from xtc_core.tabular import read_glue_file
from xtc_core.tasks import get_task


@pytest.fixture(scope="module")
def sst2_rows(glue_dir):
    return read_glue_file(get_task("sst2"), glue_dir / "SST-2" / "dev.tsv")[:64]


def test_stock_loaders_refuse_a_packed_checkpoint_naming_our_loader(tmp_path, tiny_model_dir):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=8)
    with pytest.raises(ValueError, match="load_compressed"):
        AutoModelForSequenceClassification.from_pretrained(ckpt)
    with pytest.raises(ValueError, match="load_compressed"):
        pipeline("text-classification", model=str(ckpt))
    model = load_compressed(ckpt)  # ours still loads it, as the stock class
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}
    config = json.loads((ckpt / "config.json").read_text())
    assert "_name_or_path" not in config  # no path of the machine that trained it


def test_checkpoint_files_share_one_mode(tmp_path, tiny_model_dir):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=2, groups=1, act_bits=8)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in ckpt.iterdir()}
    mask = os.umask(0)
    os.umask(mask)
    assert set(modes.values()) == {0o666 & ~mask}, modes


@pytest.mark.parametrize("act_bits", [None, 8])
def test_hf_export_loads_in_stock_transformers(tmp_path, tiny_model_dir, sst2_rows, act_bits):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=4, act_bits=act_bits)
    out = export_hf(ckpt, tmp_path / "hf")
    stock, info = AutoModelForSequenceClassification.from_pretrained(out, attn_implementation="eager",
                                                                     output_loading_info=True)
    stock.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    # every tensor is the checkpoint's exact dequantized value (whatever load_compressed's default is)
    reference = load_compressed(ckpt).state_dict()
    for name, tensor in stock.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert stock.config.id2label == {0: "neg", 1: "pos"}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer([r.text for r in sst2_rows], padding=True, truncation=True, max_length=64,
                      return_tensors="pt")
    with torch.no_grad():
        got = stock(**batch).logits.numpy()
    expected = reference_logits(ckpt, sst2_rows)
    if act_bits is None:  # the same dense weights, nothing else: equal up to padding-length effects
        assert abs(got - expected).max() < 1e-4
    else:  # stock transformers skips the 8-bit activation rounding: close, not equal
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    modes = {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert len(modes) == 1


def test_cli_compress_leaves_only_the_artifact_with_csv_label_names(tmp_path, tiny_model_dir, sst2_rows):
    for name, rows in (("train.csv", sst2_rows[:48]), ("dev.csv", sst2_rows[48:])):
        with open(tmp_path / name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["review", "sentiment"])
            writer.writerows([r.text, "pos" if r.label else "neg"] for r in rows)
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(app, [
        "compress", "--model", str(tiny_model_dir), "--train", str(tmp_path / "train.csv"),
        "--dev", str(tmp_path / "dev.csv"), "--text-column", "review", "--label-column", "sentiment",
        "--layers", "0,2", "--budget", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert not any(n.startswith(".") for n in names), names  # no .work/ inside the artifact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # removed on success
    assert len({stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}) == 1
    labels = json.loads((out / "config.json").read_text())["id2label"]
    assert sorted(labels.values()) == ["neg", "pos"]
    model = load_compressed(out)
    assert set(model.config.label2id) == {"neg", "pos"}


def test_load_compressed_quantizes_activations_without_hooks(tmp_path, tiny_model_dir, sst2_rows):
    from xtc_core.checkpoint import ActQuantLinear

    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=2, groups=1, act_bits=8)
    model = load_compressed(ckpt)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    quantized = [m for m in model.modules() if isinstance(m, ActQuantLinear)]
    assert len(quantized) == 2 * 6 and all(m.act_bits == 8 for m in quantized)  # 2 layers x 6 linears
    assert type(model.classifier) is torch.nn.Linear  # the head stays full precision
    # no parameter was left on the meta device or shared with a random initialisation
    assert not any(p.is_meta for p in model.parameters())
    assert not any(b.is_meta for b in model.buffers())
    assert torch.equal(model.bert.embeddings.position_ids[0, :5], torch.arange(5))
