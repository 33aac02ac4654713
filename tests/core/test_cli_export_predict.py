"""`xtc export` and `xtc predict`: outputs, JSON, files with pairs, one-line errors."""

import json

from test_export_onnx import make_checkpoint
from typer.testing import CliRunner

from xtc_core.cli import app

runner = CliRunner()


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_export_then_predict_texts_and_files(tmp_path, tiny_model_dir):
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=1, groups=1, act_bits=8)
    result = _run("export", ckpt, "--format", "onnx", "--out", tmp_path / "onnx", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["labels"] == ["neg", "pos"] and summary["bytes"] > summary["model_bytes"] > 0

    result = _run("predict", tmp_path / "onnx", "--text", "a charming movie", "--text", "dull", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a charming movie", "dull"]
    for r in rows:
        assert r["label"] in ("neg", "pos") and abs(sum(r["probabilities"].values()) - 1) < 1e-5

    # the checkpoint folder itself works too (exported on the fly) and gives the same answer
    again = _run("predict", ckpt, "--text", "a charming movie", "--json")
    assert json.loads(again.stdout.splitlines()[0]) == rows[0]

    pairs = tmp_path / "pairs.txt"
    pairs.write_text("the cat sat\tthe cat was sitting\n\nit rained\tthe sun shone\n")
    result = _run("predict", tmp_path / "onnx", "--file", pairs)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 2


def test_export_and_predict_errors_are_one_line(tmp_path, tiny_model_dir):
    result = _run("export", tmp_path, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "not an XTC checkpoint" in result.output
    ckpt = make_checkpoint(tiny_model_dir, tmp_path / "ckpt", bits=2, groups=1, act_bits=8)
    result = _run("export", ckpt, "--format", "tflite", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--format takes one of" in result.output
    result = _run("predict", tmp_path / "nowhere", "--text", "x")
    assert result.exit_code == 2 and "not an XTC checkpoint" in result.output
    result = _run("predict", ckpt)
    assert result.exit_code == 2 and "give --text or --file" in result.output
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("one text\na\tpair\n")
    result = _run("predict", ckpt, "--file", mixed)
    assert result.exit_code == 2 and "mix of single texts" in result.output
