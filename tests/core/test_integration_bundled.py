"""The issue's acceptance run: the bundled MiniLM on real SST-2, through the installed `xtc` CLI."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _xtc(*args):
    exe = shutil.which("xtc") or str(Path(sys.executable).parent / "xtc")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bundled_minilm_sst2_smoke_1bit_3_layers(tmp_path, glue_dir):
    out = tmp_path / "ckpt"
    _xtc("compress", "--model", "bundled:minilm-l6", "--task", "sst2", "--glue-dir", glue_dir,
         "--weight-bits", "1", "--layers", "3", "--budget", "smoke", "--out", out)
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["dev_examples"] == {"dev": 872}
    assert [s["stage"] for s in recorded["stages"]] == ["finetune_teacher", "layer_reduction", "quantization"]

    evaluated = json.loads(_xtc("eval", out, "--task", "sst2", "--glue-dir", glue_dir, "--json"))
    assert evaluated == recorded["student"]

    report = json.loads(_xtc("inspect", out, "--json"))
    assert report["fp32_bytes"] == recorded["fp32_bytes"] > 90_000_000  # MiniLM-L6 + head in fp32
    assert report["ratio"] >= 30, report["ratio"]
    assert report["layers"] == 3 and report["weight_bits"] == 1
    one_bit = report["params_by_bits"]["1"]
    assert one_bit > 0.85 * sum(report["params_by_bits"].values())
