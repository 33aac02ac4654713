import json
import pickle

import pytest
import torch

from xtc_core.batches import collate, encode
from xtc_core.checkpoint import load_compressed, save_compressed
from xtc_core.errors import CheckpointError
from xtc_core.inspect import inspect_checkpoint
from xtc_core.models import load_teacher
from xtc_core.student import apply_quantization, build_student, round_unquantized_floats
from xtc_core.tabular import read_glue_file
from xtc_core.tasks import get_task


@pytest.fixture(scope="module")
def sst2_rows(glue_dir):
    return read_glue_file(get_task("sst2"), glue_dir / "SST-2" / "dev.tsv")[:24]


def _fake_quant_student(model_dir, bits, groups, act_bits=8, embedding_bits=None):
    teacher = load_teacher(str(model_dir), num_labels=2, regression=False)
    student = build_student(teacher.model, [1, 3])
    plan = apply_quantization(student, weight_bits=bits, activation_bits=act_bits, weight_groups=groups,
                              embedding_bits=embedding_bits)
    # a few optimizer steps so the latent weights are no longer the teacher's
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    ids = torch.randint(1000, 2000, (4, 12))
    for _ in range(3):
        opt.zero_grad()
        student(input_ids=ids).logits.pow(2).sum().backward()
        opt.step()
    student.eval()
    round_unquantized_floats(student, torch.float16, set(plan))
    return student, teacher.tokenizer, plan


def _meta(plan, act_bits, teacher_params=1000):
    return {"quantized": plan, "float_storage": "fp16", "activation_bits": act_bits, "weight_bits": 1,
            "teacher_layers": [1, 3], "teacher": {"fp32_bytes": teacher_params * 4},
            "eval": {"max_seq_length": 64, "batch_size": 8}, "task": {"labels": ["0", "1"]}}


@pytest.mark.parametrize("bits,groups,act_bits,embedding_bits", [
    (1, 1, 8, None), (2, 1, 8, None), (1, 4, 8, None), (2, 8, None, None), (2, 1, 8, 8), (1, 4, 8, 4)])
def test_reloaded_logits_equal_fake_quant_logits_exactly(tmp_path, tiny_model_dir, sst2_rows, bits, groups,
                                                         act_bits, embedding_bits):
    student, tokenizer, plan = _fake_quant_student(tiny_model_dir, bits, groups, act_bits, embedding_bits)
    out = save_compressed(student, tokenizer, tmp_path / "ckpt", meta=_meta(plan, act_bits))
    reloaded = load_compressed(out)
    assert type(reloaded) is type(student)  # a stock transformers class
    batch, _ = collate(tokenizer, encode(tokenizer, sst2_rows, 64), range(len(sst2_rows)), "cpu", False)
    with torch.no_grad():
        expected = student(**batch).logits
        got = reloaded(**batch).logits
    assert torch.equal(got, expected)  # zero tolerance
    # the word embedding is stored at its own width, and reloads row for row
    emb = "bert.embeddings.word_embeddings.weight"
    assert plan[emb]["bits"] == (embedding_bits or bits)
    with torch.no_grad():
        ids = torch.arange(student.config.vocab_size)
        assert torch.equal(reloaded.get_input_embeddings()(ids), student.get_input_embeddings()(ids))
    # and the packed weights really are what the fake-quant forward used
    name = next(iter(plan))
    module = dict(reloaded.named_modules())[name.rsplit(".", 1)[0]]
    fq_module = dict(student.named_modules())[name.rsplit(".", 1)[0]]
    assert torch.equal(module.weight, fq_module.weight)


@pytest.mark.parametrize("bits,embedding_bits", [(1, None), (2, None), (2, 8), (1, 4)])
def test_packed_bytes_match_bits_times_params(tmp_path, tiny_model_dir, bits, embedding_bits):
    student, tokenizer, plan = _fake_quant_student(tiny_model_dir, bits, 1, embedding_bits=embedding_bits)
    out = save_compressed(student, tokenizer, tmp_path / "ckpt", meta=_meta(plan, 8))
    state = {k.replace(".parametrizations.weight.original", ".weight"): v
             for k, v in student.state_dict().items()}
    expected = 0
    for name, tensor in state.items():
        if name in plan:
            rows = tensor.shape[0]
            scales = plan[name]["groups"]
            expected += (tensor.numel() * plan[name]["bits"] + 7) // 8 + 4 * scales + 8 * tensor.dim()
            assert scales in (1, rows)
        elif tensor.is_floating_point():
            expected += tensor.numel() * 2  # fp16 storage
        else:
            expected += tensor.numel() * tensor.element_size()
    on_disk = (out / "model.safetensors").stat().st_size
    assert abs(on_disk - expected) / expected < 0.05
    report = inspect_checkpoint(out)
    assert report["packed_bytes"] == on_disk
    assert report["payload_bytes"] == expected
    bits_by_name = {t["name"]: t["bits"] for t in report["tensors"]}
    assert all(bits_by_name[name] == plan[name]["bits"] for name in plan)
    assert bits_by_name["bert.embeddings.word_embeddings.weight"] == (embedding_bits or bits)
    kinds = report["bytes_by_kind"]
    assert f"{embedding_bits or bits}-bit word embeddings (+ scales)" in kinds
    assert bits_by_name["bert.pooler.dense.weight"] == 16


def test_loading_never_unpickles(tmp_path, tiny_model_dir, monkeypatch):
    student, tokenizer, plan = _fake_quant_student(tiny_model_dir, 1, 1)
    out = save_compressed(student, tokenizer, tmp_path / "ckpt", meta=_meta(plan, 8))

    def refuse(*args, **kwargs):
        raise AssertionError("the loader unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_compressed(out)


def test_not_a_checkpoint_gives_a_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(CheckpointError, match="missing xtc.json"):
        load_compressed(tiny_model_dir)
    student, tokenizer, plan = _fake_quant_student(tiny_model_dir, 1, 1)
    out = save_compressed(student, tokenizer, tmp_path / "ckpt", meta=_meta(plan, 8))
    meta = json.loads((out / "xtc.json").read_text())
    meta["format_version"] = 99
    (out / "xtc.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format 99 is not supported"):
        load_compressed(out)
