"""The ONNX export computes on integers and agrees with load_compressed; the runtime needs no torch."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from xtc_core.batches import collate, encode
from xtc_core.checkpoint import load_compressed, load_tokenizer, save_compressed
from xtc_core.export_onnx import export_onnx
from xtc_core.models import load_teacher
from xtc_core.runtime import Predictor
from xtc_core.student import apply_quantization, build_student, round_unquantized_floats
from xtc_core.tabular import read_glue_file
from xtc_core.tasks import get_task


def make_checkpoint(model_dir, out, *, bits, groups, act_bits, labels=("neg", "pos"), seed=0,
                    embedding_bits=None):
    """A trained-looking fake-quantized student (a few SGD steps away from the teacher), saved packed."""
    torch.manual_seed(seed)
    teacher = load_teacher(str(model_dir), num_labels=len(labels), regression=False)
    student = build_student(teacher.model, [1, 3])
    plan = apply_quantization(student, weight_bits=bits, activation_bits=act_bits, weight_groups=groups,
                              embedding_bits=embedding_bits)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    ids = torch.randint(1000, 2000, (4, 12))
    for _ in range(3):
        opt.zero_grad()
        student(input_ids=ids).logits.pow(2).sum().backward()
        opt.step()
    student.eval()
    round_unquantized_floats(student, torch.float16, set(plan))
    meta = {"quantized": plan, "float_storage": "fp16", "activation_bits": act_bits, "weight_bits": bits,
            "weight_groups": groups, "teacher_layers": [1, 3], "teacher": {"fp32_bytes": 4000},
            "eval": {"max_seq_length": 64, "batch_size": 8},
            "task": {"name": "user", "labels": list(labels), "metrics": ["accuracy"]}}
    return save_compressed(student, teacher.tokenizer, out, meta=meta)


def reference_logits(ckpt, rows, max_length=64):
    model = load_compressed(ckpt)
    tokenizer = load_tokenizer(ckpt)
    batch, _ = collate(tokenizer, encode(tokenizer, rows, max_length), range(len(rows)), "cpu", False)
    with torch.no_grad():
        return model(**batch).logits.numpy()


@pytest.fixture(scope="module")
def sst2_rows(glue_dir):
    return read_glue_file(get_task("sst2"), glue_dir / "SST-2" / "dev.tsv")[:96]


@pytest.mark.parametrize("bits,groups,act_bits,embedding_bits", [
    (1, 1, 8, None), (2, 1, 8, None), (1, 8, 8, None), (2, 8, 8, None), (1, 1, None, None),
    (2, 8, None, None), (2, 8, 8, 8), (1, 1, 8, 4)])
def test_onnx_predictions_equal_load_compressed(tmp_path, tiny_model_dir, sst2_rows, bits, groups, act_bits,
                                                embedding_bits):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=bits, groups=groups, act_bits=act_bits,
                           embedding_bits=embedding_bits)
    out = export_onnx(ckpt, tmp_path / "onnx")
    expected = reference_logits(ckpt, sst2_rows)
    predictor = Predictor(out, threads=1)
    got = predictor.logits([r.text for r in sst2_rows])
    diff = float(np.abs(got - expected).max())
    print(f"W{bits} groups={groups} act={act_bits}: max |logit diff| = {diff:.2e}")
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    # float summation order differs (int32 accumulation vs fp32); a rare activation code may round
    # the other way, which moves a logit by far less than this
    assert diff < 2e-3 * max(1.0, float(np.abs(expected).max()))
    preds = predictor.predict([r.text for r in sst2_rows[:3]])
    assert {p.label for p in preds} <= {"neg", "pos"}
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-5 for p in preds)


def test_graph_computes_quantized_linears_on_integers(tmp_path, tiny_model_dir):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=2, groups=4, act_bits=8)
    out = export_onnx(ckpt, tmp_path / "onnx")
    model = onnx.load(str(out / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    ops = Counter(n.op_type for n in model.graph.node)
    layers = 2
    assert ops["MatMulInteger"] == 4 * layers  # per layer: fused Q/K/V, attention output, FFN in, FFN out
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            weight = inits[node.input[1]]
            assert weight.data_type == onnx.TensorProto.INT8
            assert set(np.unique(onnx.numpy_helper.to_array(weight))) <= {-1, 0, 1}
            assert onnx.numpy_helper.to_array(inits[node.input[2]]).dtype == np.uint8  # zero point 128
    assert inits["word_codes"].data_type == onnx.TensorProto.INT8
    # only the pooler and the classifier multiply floats by float weights
    float_matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert len(float_matmuls) == 2

    # and ONNX Runtime really runs integer kernels (from its profile)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "prof")
    sess = ort.InferenceSession(str(out / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    ids = np.full((2, 9), 1037, dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    sess.run(None, feeds)
    events = json.loads(open(sess.end_profiling()).read())
    kernels = Counter(e["args"]["op_name"] for e in events
                      if e.get("cat") == "Node" and "op_name" in e["args"])
    assert kernels["MatMulInteger"] >= 4 * layers and kernels["QuantizeLinear"] >= 4 * layers


def test_pairs_tokenize_like_transformers(tmp_path, tiny_model_dir, glue_dir):
    rows = read_glue_file(get_task("mrpc"), glue_dir / "MRPC" / "dev.tsv")[:24]
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=8)
    out = export_onnx(ckpt, tmp_path / "onnx", max_length=24)  # forces longest-first truncation
    predictor = Predictor(out)
    tokenizer = load_tokenizer(ckpt)
    enc = encode(tokenizer, rows, 24)
    mine = predictor.encode([(r.text, r.text_pair) for r in rows])
    for ours, theirs in zip(mine, enc.features, strict=True):
        assert ours.ids == theirs["input_ids"] and ours.type_ids == theirs["token_type_ids"]
    expected = reference_logits(ckpt, rows, max_length=24)
    got = predictor.logits([(r.text, r.text_pair) for r in rows])
    assert np.array_equal(got.argmax(1), expected.argmax(1))


def test_runtime_imports_and_predicts_without_torch(tmp_path, tiny_model_dir):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=8)
    out = export_onnx(ckpt, tmp_path / "onnx")
    code = (
        "import sys\n"
        "from xtc_core.runtime import Predictor\n"
        f"p = Predictor({str(out)!r})\n"
        "preds = p.predict(['a charming movie', 'dull'])\n"
        "assert [x.label in ('neg', 'pos') for x in preds] == [True, True]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    # and so does `xtc predict` on an exported folder
    cli = ("import sys\n"
           "from typer.testing import CliRunner\n"
           "from xtc_core.cli import app\n"
           f"r = CliRunner().invoke(app, ['predict', {str(out)!r}, '--text', 'a charming movie', '--json'])\n"
           "assert r.exit_code == 0, r.output\n"
           "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
           "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_regression_head_gives_scores(tmp_path, glue_dir):
    from tiny_models import make_tiny_model

    model_dir = make_tiny_model(tmp_path / "reg", layers=4, num_labels=1)
    teacher = load_teacher(str(model_dir), num_labels=1, regression=True)
    student = build_student(teacher.model, [0, 2])
    plan = apply_quantization(student, weight_bits=2, activation_bits=8, weight_groups=1)
    student.eval()
    meta = {"quantized": plan, "float_storage": "fp16", "activation_bits": 8, "weight_bits": 2,
            "teacher_layers": [0, 2], "teacher": {"fp32_bytes": 4000}, "eval": {"max_seq_length": 64},
            "task": {"name": "stsb", "labels": None, "metrics": ["pearson"]}}
    round_unquantized_floats(student, torch.float16, set(plan))
    ckpt = save_compressed(student, teacher.tokenizer, tmp_path / "ckpt", meta=meta)
    rows = read_glue_file(get_task("stsb"), glue_dir / "STS-B" / "dev.tsv")[:16]
    predictor = Predictor(export_onnx(ckpt, tmp_path / "onnx"))
    preds = predictor.predict([(r.text, r.text_pair) for r in rows])
    assert all(p.label is None and p.probabilities is None for p in preds)
    expected = reference_logits(ckpt, rows)[:, 0]
    assert np.abs(np.array([p.score for p in preds]) - expected).max() < 1e-3


def test_onnx_archive_is_a_deployable_folder(tmp_path, tiny_model_dir):
    import zipfile

    from xtc_core.export_onnx import export_onnx_archive, sha256_file

    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=8)
    archive = export_onnx_archive(ckpt, tmp_path / "model-onnx.zip")
    zipfile.ZipFile(archive).extractall(tmp_path / "deploy")
    meta = json.loads((tmp_path / "deploy" / "xtc_runtime.json").read_text())
    assert meta["model_sha256"] == sha256_file(tmp_path / "deploy" / "model.onnx")
    assert meta["labels"] == ["neg", "pos"] and meta["max_length"] == 64
    assert Predictor(tmp_path / "deploy").predict(["fine"])[0].label in ("neg", "pos")
