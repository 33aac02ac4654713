import json

from typer.testing import CliRunner

from xtc_core.cli import app

runner = CliRunner()


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_compress_eval_inspect_round_trip(tmp_path, tiny_model_dir, glue_dir):
    out = tmp_path / "ckpt"
    result = _run("compress", "--model", tiny_model_dir, "--task", "mrpc", "--glue-dir", glue_dir,
                  "--weight-bits", "1", "--layers", "0,2", "--budget", "smoke", "--out", out,
                  "--set", "max_train_examples=16", "--set", "max_eval_examples=16", "--json")
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "metrics.json").read_text())
    assert set(recorded["student"]) == {"f1", "accuracy"}

    # No terminal here (as under nohup or CI): progress still reaches the log as plain lines, each
    # stage's last step included.
    for stage, total in (("layer_reduction", 4), ("quantization", 6)):
        assert f"{stage} {total}/{total} loss=" in result.output

    result = _run("eval", out, "--task", "mrpc", "--glue-dir", glue_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == recorded["student"]

    result = _run("inspect", out, "--json")
    report = json.loads(result.stdout)
    assert report["packed_bytes"] == (out / "model.safetensors").stat().st_size
    assert report["ratio"] == report["fp32_bytes"] / report["packed_bytes"]
    assert report["teacher_layers"] == [0, 2]


def test_bad_inputs_give_one_line_errors(tmp_path, tiny_model_dir, glue_dir):
    common = ["--glue-dir", glue_dir, "--out", tmp_path / "o", "--budget", "smoke"]
    cases = [
        (["--model", tiny_model_dir, "--task", "sst2", "--layers", "a,b"], "--layers takes"),
        (["--model", tiny_model_dir, "--task", "nope"], "unknown GLUE task"),
        (["--model", tmp_path / "missing", "--task", "sst2"], "no such model folder"),
        (["--model", tiny_model_dir, "--task", "sst2", "--weight-bits", "4"], "weight_bits must be 1 or 2"),
        (["--model", tiny_model_dir, "--task", "sst2", "--embedding-bits", "3"], "embedding_bits must be"),
        (["--model", tiny_model_dir, "--task", "sst2", "--budget", "huge"], "unknown budget"),
        (["--model", tiny_model_dir, "--task", "sst2", "--set", "nosuch=1"], "unknown training option"),
        (["--model", tiny_model_dir, "--task", "sst2", "--activation-bits", "x"], "--activation-bits"),
    ]
    for args, message in cases:
        budget = [] if "--budget" in args else ["--budget", "smoke"]
        result = _run("compress", *args, *common[:4], *budget)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and message in result.output, result.output
    result = _run("eval", tmp_path, "--task", "sst2", "--glue-dir", glue_dir)
    assert result.exit_code == 2 and "not an XTC checkpoint" in result.output
    result = _run("inspect", tmp_path)
    assert result.exit_code == 2 and "not an XTC checkpoint" in result.output
