"""8-bit storage of the remaining float matrices: BERT-base at 5 layers, 1 bit, reaches 50x."""

import torch
from test_export_onnx import make_checkpoint, reference_logits

from xtc_core.checkpoint import load_compressed, save_compressed
from xtc_core.inspect import inspect_checkpoint
from xtc_core.storage8 import repack_floats_8bit
from xtc_core.student import apply_quantization, build_student, count_params, default_layers


def test_bert_base_five_layers_one_bit_reaches_50x(tmp_path):
    from tiny_models import bundled_tokenizer_dir
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    teacher = BertForSequenceClassification(BertConfig(num_labels=2))  # BERT-base shapes, 12 layers
    student = build_student(teacher, default_layers(12, 5))
    plan = apply_quantization(student, weight_bits=1, activation_bits=8, weight_groups=1)
    student.eval()
    params = count_params(teacher)
    meta = {"quantized": plan, "float_storage": "fp16", "activation_bits": 8, "weight_bits": 1,
            "teacher_layers": default_layers(12, 5), "teacher": {"fp32_bytes": params * 4},
            "eval": {"max_seq_length": 64}, "task": {"name": "sst2", "labels": ["0", "1"]}}
    tokenizer = BertTokenizerFast.from_pretrained(bundled_tokenizer_dir())
    ckpt = save_compressed(student, tokenizer, tmp_path / "ckpt", meta=meta)
    before = inspect_checkpoint(ckpt)
    assert 44 < before["ratio"] < 50  # the fp16 pooler and position embeddings keep it under 50x
    out = repack_floats_8bit(ckpt, tmp_path / "ckpt8")
    after = inspect_checkpoint(out)
    print(f"BERT-base 5L W1: {before['ratio']:.1f}x -> {after['ratio']:.1f}x; {after['bytes_by_kind']}")
    assert after["ratio"] >= 50
    kinds = after["bytes_by_kind"]
    assert any(k.startswith("8-bit float matrices") for k in kinds)
    assert sum(kinds.values()) == after["payload_bytes"]


def test_8bit_matrices_reload_and_export_close_to_the_original(tmp_path, tiny_model_dir, glue_dir):
    from xtc_core.export_onnx import export_onnx
    from xtc_core.runtime import Predictor
    from xtc_core.tabular import read_glue_file
    from xtc_core.tasks import get_task

    rows = read_glue_file(get_task("sst2"), glue_dir / "SST-2" / "dev.tsv")[:48]
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=8)
    out = repack_floats_8bit(ckpt, tmp_path / "ckpt8", min_values=512)  # tiny model: small matrices
    model = load_compressed(out)
    pos = model.bert.embeddings.position_embeddings.weight
    original = load_compressed(ckpt).bert.embeddings.position_embeddings.weight
    assert not torch.equal(pos, original) and (pos - original).abs().max() <= original.abs().max() / 127
    expected = reference_logits(out, rows)
    got = Predictor(export_onnx(out, tmp_path / "onnx")).logits([r.text for r in rows])
    assert abs(got - expected).max() < 2e-3
    assert (reference_logits(ckpt, rows).argmax(1) == expected.argmax(1)).mean() >= 0.9
