"""Exactness by construction: codes and scales are computed once, deterministically, and the recorded
metric is the artifact's metric."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from xtc_core.config import CompressConfig, DataSource, budget
from xtc_core.evaluate import evaluate_checkpoint
from xtc_core.pipeline import compress
from xtc_core.quant import dequantize_weight, fake_quantize_weight, freeze_quantized_weights, quantize_weight
from xtc_core.student import apply_quantization

SCALES_SCRIPT = textwrap.dedent("""
    import sys, torch
    from xtc_core.quant import quantize_weight
    torch.set_num_threads(int(sys.argv[1]))
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(20):
        w = torch.randn(384, 1536, generator=g) * 0.05
        for bits in (1, 2):
            codes, scales = quantize_weight(w, bits, 1)
            out.append(scales.double())
    # the naive fp32 reduction, for the record that thread count matters to it
    naive = [(torch.randn(384, 1536, generator=g) * 0.05).abs().mean() for _ in range(20)]
    torch.save({"scales": torch.cat(out), "naive": torch.stack(naive)}, sys.argv[2])
""")


def _run_with_threads(script: str, threads: int, out, *args) -> None:
    subprocess.run([sys.executable, "-c", script, str(threads), str(out), *map(str, args)], check=True,
                   timeout=240)


def test_scales_do_not_depend_on_the_thread_count(tmp_path):
    for n in (1, 2):
        _run_with_threads(SCALES_SCRIPT, n, tmp_path / f"t{n}.pt")
    one, two = torch.load(tmp_path / "t1.pt"), torch.load(tmp_path / "t2.pt")
    assert torch.equal(one["scales"], two["scales"])


@pytest.mark.parametrize("bits", [1, 2])
def test_fake_quant_equals_the_exported_codes_and_scales(bits):
    w = torch.randn(256, 1024) * 0.03
    codes, scales = quantize_weight(w, bits, 4)
    assert torch.equal(fake_quantize_weight(w, bits, 4), dequantize_weight(codes, scales, 4))
    # the scale is the fp64 mean rounded once to fp32
    if bits == 1:
        expected = w.reshape(4, -1).double().abs().mean(dim=1).float()
        assert torch.equal(scales, expected)


def test_frozen_student_forward_is_the_stored_codes_times_scales(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    plan = apply_quantization(model, weight_bits=1, activation_bits=8, weight_groups=1)
    frozen = freeze_quantized_weights(model)
    assert {f"{name}.weight" for name in frozen} == set(plan)
    modules = dict(model.named_modules())
    for name, (codes, scales) in frozen.items():
        expected = dequantize_weight(codes, scales, plan[f"{name}.weight"]["groups"])
        assert torch.equal(modules[name].weight, expected)
        # the latent weight moving no longer changes what the model computes
        with torch.no_grad():
            modules[name].parametrizations.weight.original.add_(1.0)
        assert torch.equal(modules[name].weight, expected)


ARTIFACT_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(int(sys.argv[1]))
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from xtc_core.checkpoint import save_compressed
    from xtc_core.quant import freeze_quantized_weights
    from xtc_core.student import apply_quantization
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(sys.argv[3])
    # wide enough (256 x 1024 matrices) that torch reduces in parallel chunks
    config = AutoConfig.for_model("bert", hidden_size=256, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=1024, vocab_size=tok.vocab_size,
                                  max_position_embeddings=64)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    plan = apply_quantization(model, weight_bits=int(sys.argv[4]), activation_bits=8, weight_groups=1)
    freeze_quantized_weights(model)
    meta = {"quantized": plan, "float_storage": "fp16"}
    save_compressed(model, tok, sys.argv[2], meta=meta)
""")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bits", [1, 2])
def test_same_artifact_bytes_with_one_and_two_threads(tmp_path, bits):
    from tiny_models import bundled_tokenizer_dir

    for n in (1, 2):
        _run_with_threads(ARTIFACT_SCRIPT, n, tmp_path / f"a{n}", bundled_tokenizer_dir(), bits)
    one = (tmp_path / "a1" / "model.safetensors").read_bytes()
    two = (tmp_path / "a2" / "model.safetensors").read_bytes()
    assert one == two


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bits", [1, 2])
def test_recorded_metric_equals_the_reloaded_artifacts(tmp_path, tiny_model_dir, glue_dir, bits):
    data = DataSource(task="sst2", glue_dir=str(glue_dir))
    training = budget("smoke", max_train_examples=32, max_eval_examples=32, kd_attention_target="scores",
                      kd_hidden_mask=True, kd_student_dropout=False)
    cfg = CompressConfig(model=str(tiny_model_dir), data=data, output_dir=str(tmp_path / "out"),
                         training=training, budget_name="smoke", weight_bits=bits, layers=2)
    result = compress(cfg)
    recorded = json.loads((tmp_path / "out" / "metrics.json").read_text())["student"]
    assert recorded == result.student
    assert evaluate_checkpoint(tmp_path / "out", data) == recorded
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "xtc_scores" not in json.dumps(config)  # the capture is a training detail, not exported
