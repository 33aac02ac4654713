"""The fidelity benchmark script runs end to end on a tiny model and writes consistent tables."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_bench():
    spec = importlib.util.spec_from_file_location("fidelity_bench", ROOT / "bench" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, glue_dir):
    from tiny_models import make_tiny_model

    tmp = tmp_path_factory.mktemp("fidelity")
    model = make_tiny_model(tmp / "tiny-base", layers=4, hidden=32, with_head=False)
    bench = _load_bench()
    argv = ["--task", "sst2", "--glue-dir", str(glue_dir), "--model", str(model), "--budget", "smoke",
            "--variants", "xtc-w1-half,ptq-w1", "--results-dir", str(tmp / "results"),
            "--work-dir", str(tmp / "work"), "--threads", "2", "--device", "cpu"]
    results = bench.main(argv)
    return bench, argv, tmp, results


def test_writes_json_and_markdown_with_consistent_numbers(bench_run):
    _, _, tmp, results = bench_run
    data = json.loads((tmp / "results" / "fidelity_sst2_smoke.json").read_text())
    assert data == json.loads(json.dumps(results["sst2"]))
    assert data["task"] == "sst2" and data["metric"] == "accuracy"
    assert data["dev_examples"] == {"dev": 872}  # the full official dev set
    assert data["train_examples"] == 64 and data["train_total"] > 60000
    assert "fidelity.py" in data["command"] and data["hardware"]["device"] == "cpu"
    teacher = data["teacher"]
    assert teacher["finetuned"] and teacher["steps"] == data["training"]["finetune_steps"]
    assert set(data["variants"]) == {"xtc-w1-half", "ptq-w1"}
    for name, v in data["variants"].items():
        for key in ("score", "metrics", "delta", "packed_bytes", "fp32_bytes", "ratio", "train_seconds",
                    "steps", "layers"):
            assert key in v, (name, key)
        assert v["delta"] == pytest.approx(v["score"] - teacher["score"])
        assert v["ratio"] == pytest.approx(v["fp32_bytes"] / v["packed_bytes"])
        assert v["fp32_bytes"] == teacher["fp32_bytes"]
        assert 0.0 <= v["score"] <= 1.0
    half = data["variants"]["xtc-w1-half"]
    assert half["layers"] == 2 and half["teacher_check"] == pytest.approx(teacher["score"])
    assert half["steps"] == data["training"]["reduction_steps"] + data["training"]["quant_steps"]
    assert data["variants"]["ptq-w1"]["steps"] == 0 and data["variants"]["ptq-w1"]["layers"] == 4
    assert data["variants"]["xtc-w1-half"]["packed_bytes"] < data["variants"]["ptq-w1"]["packed_bytes"]
    assert {g["goal"].split(":")[0] for g in data["goals"]} == {"xtc-w1-half"}
    md = (tmp / "results" / "fidelity_sst2_smoke.md").read_text()
    assert "Command: `python bench/fidelity.py" in md
    assert "| xtc-w1-half |" in md and "| ptq-w1 |" in md and "| teacher |" in md
    assert "64 of" in md  # the subsampling is printed


def test_second_run_uses_the_cache(bench_run, capsys):
    bench, argv, tmp, results = bench_run
    again = bench.main(argv)
    out = capsys.readouterr().out
    assert "teacher: cached" in out and "xtc-w1-half: cached" in out and "ptq-w1: cached" in out
    name = "xtc-w1-half"
    assert again["sst2"]["variants"][name]["score"] == results["sst2"]["variants"][name]["score"]


def test_a_reworded_variant_keeps_its_cached_run_and_a_changed_one_does_not(bench_run, capsys, monkeypatch):
    import dataclasses

    bench, argv, tmp, _ = bench_run
    v = bench.VARIANTS["xtc-w1-half"]
    monkeypatch.setitem(bench.VARIANTS, v.name, dataclasses.replace(v, description="reworded", goal_drop=9.0))
    bench.main(argv)
    assert "xtc-w1-half: cached" in capsys.readouterr().out
    (path,) = (tmp / "work").glob("*-sst2-smoke/variants/xtc-w1-half.json")
    cached = json.loads(path.read_text())["key"]
    changed = {**cached, "variant": {**cached["variant"], "weight_bits": 2}}
    assert bench._same_run(cached, cached) and not bench._same_run(cached, changed)


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory, glue_dir):
    from tiny_models import make_tiny_model

    tmp = tmp_path_factory.mktemp("fidelity-seeds")
    model = make_tiny_model(tmp / "tiny-base", layers=4, hidden=32, with_head=False)
    bench = _load_bench()
    argv = ["--task", "sst2", "--glue-dir", str(glue_dir), "--model", str(model), "--budget", "smoke",
            "--variants", "xtc-w1-half,nokd-w1-half", "--seeds", "1,2", "--results-dir", str(tmp / "results"),
            "--work-dir", str(tmp / "work"), "--threads", "1", "--device", "cpu",
            "--teacher-set", "finetune_steps=4"]
    results = bench.main(argv)
    return bench, argv, tmp, results


@pytest.mark.timeout(600)
def test_seeds_give_mean_std_per_variant_and_a_paired_test(seeds_run):
    _, _, tmp, results = seeds_run
    data = json.loads((tmp / "results" / "fidelity_sst2_smoke.json").read_text())
    assert data["seeds"] == [1, 2]
    assert data["teacher"]["steps"] == 4  # the teacher's own schedule (--teacher-set)
    for name in ("xtc-w1-half", "nokd-w1-half"):
        v = data["variants"][name]
        assert v["n_seeds"] == 2 and set(v["seed_scores"]) == {"1", "2"}
        scores = list(v["seed_scores"].values())
        assert v["score"] == pytest.approx(sum(scores) / 2)
        assert v["std"] == pytest.approx(abs(scores[0] - scores[1]) / 2 ** 0.5)
        assert v["artifact_matches_recorded"]  # the reloaded checkpoint scores what was recorded
        for seed in (1, 2):  # cached per variant and seed
            (path,) = (tmp / "work").glob(f"*-sst2-smoke/variants/{name}-s{seed}.json")
            cached = json.loads(path.read_text())
            assert cached["seed"] == seed and len(cached["dev_predictions"]) == 872
            assert cached["artifact_score"] == cached["score"]
    (match,) = data["matches"]
    paired = match["paired"]
    assert paired["seeds_paired"] == 2
    assert paired["margin"] == pytest.approx(match["margin"])
    lo, hi = paired["bootstrap_ci95"]
    assert lo <= paired["margin"] <= hi
    assert 0.0 <= paired["mcnemar"]["p_two_sided"] <= 1.0
    md = (tmp / "results" / "fidelity_sst2_smoke.md").read_text()
    assert "(n=2)" in md and "McNemar p=" in md


@pytest.mark.timeout(600)
def test_a_second_seeded_run_is_served_from_the_per_seed_cache(seeds_run, capsys):
    bench, argv, _, results = seeds_run
    again = bench.main(argv)
    out = capsys.readouterr().out
    assert "xtc-w1-half-s1: cached" in out and "nokd-w1-half-s2: cached" in out
    name = "xtc-w1-half"
    assert again["sst2"]["variants"][name]["score"] == results["sst2"]["variants"][name]["score"]


@pytest.mark.timeout(600)
def test_the_augmented_variant_trains_on_augmented_data_and_only_it(tmp_path, glue_dir, caplog):
    import logging

    from tiny_models import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny-base", layers=4, hidden=32, with_head=False)
    bench = _load_bench()
    assert "xtc-w1-half-aug" not in bench.DEFAULT_VARIANTS  # opt-in: it costs a whole extra student
    argv = ["--task", "sst2", "--glue-dir", str(glue_dir), "--model", str(model), "--budget", "smoke",
            "--variants", "xtc-w1-half-aug,nokd-w1-half,nokd-fp-half", "--results-dir", str(tmp_path / "r"),
            "--work-dir", str(tmp_path / "work"), "--threads", "1", "--device", "cpu",
            "--teacher-set", "finetune_steps=4"]
    with caplog.at_level(logging.INFO, logger="xtc_core.augment"):
        data = bench.main(argv)["sst2"]
    augmented = [r.getMessage() for r in caplog.records if r.name == "xtc_core.augment"]
    assert augmented == ["augmented 64 examples into 512 (embedding neighbours)"]  # one variant, 8 copies
    work = next((tmp_path / "work").glob("*-sst2-smoke"))
    aug = json.loads((work / "variants" / "xtc-w1-half-aug.json").read_text())
    assert aug["key"]["training"]["augment"] == 8 and aug["artifact_score"] == aug["score"]
    assert aug["layers"] == 2 and aug["reused_reduction"] is None  # its own, augmented, stage 1
    nokd = json.loads((work / "variants" / "nokd-w1-half.json").read_text())
    assert nokd["key"]["training"]["augment"] == 0  # the override is the variant's alone
    # The label-only W1 student loads the label-only fp32 student's stage 1 from the stage cache
    # (same layers, same schedule, no distillation) and counts its cost; the augmented one could not.
    fp = json.loads((work / "variants" / "nokd-fp-half.json").read_text())
    (fp_s1,) = [s for s in fp["stages"] if s["stage"] == "layer_reduction"]
    (nokd_s1,) = [s for s in nokd["stages"] if s["stage"] == "layer_reduction"]
    assert nokd_s1["reused"] and not fp_s1["reused"] and nokd_s1["cache_key"] == fp_s1["cache_key"]
    assert nokd_s1["saved_steps"] == fp_s1["steps"]  # the cost kept with the cache entry
    assert data["variants"]["nokd-w1-half"]["reused_reduction"]["from"] == "nokd-fp-half"
    assert nokd["steps"] == fp_s1["steps"] + sum(s.get("steps", 0) for s in nokd["stages"])
    (aug_s1,) = [s for s in aug["stages"] if s["stage"] == "layer_reduction"]
    assert not aug_s1["reused"] and aug_s1["cache_key"] != fp_s1["cache_key"]
    (match,) = data["matches"]  # against the label-only student (xtc-w1-half did not run)
    assert match["xtc"] == "xtc-w1-half-aug" and match["baseline"] == "nokd-w1-half"
    md = (tmp_path / "r" / "fidelity_sst2_smoke.md").read_text()
    assert "| xtc-w1-half-aug | XTC W1A8, half depth, both KD stages on augmented data" in md


@pytest.mark.timeout(600)
def test_report_only_tabulates_the_cached_runs_and_trains_nothing(seeds_run, capsys):
    bench, argv, tmp, results = seeds_run
    cached = sorted(p.name for p in (tmp / "work").glob("*/variants/*.json"))
    wider = [a if a != "1,2" else "1,2,3" for a in argv]
    wider[wider.index("xtc-w1-half,nokd-w1-half")] = "xtc-w1-half,nokd-w1-half,xtc-w2"
    again = bench.main([*wider, "--report-only"])
    out = capsys.readouterr().out
    assert "xtc-w1-half-s3: not run yet" in out and "xtc-w2-s1: not run yet" in out
    assert sorted(p.name for p in (tmp / "work").glob("*/variants/*.json")) == cached  # nothing trained
    variants = again["sst2"]["variants"]
    assert set(variants) == {"xtc-w1-half", "nokd-w1-half"}  # xtc-w2 has no finished run
    assert variants["xtc-w1-half"]["n_seeds"] == 2
    assert variants["xtc-w1-half"]["score"] == results["sst2"]["variants"]["xtc-w1-half"]["score"]
    md = (tmp / "results" / "fidelity_sst2_smoke.md").read_text()
    assert "tabulated from cached runs" in md and "total wall time" not in md
    with pytest.raises(SystemExit):
        bench.main([*argv, "--report-only", "--force"])
    before = md
    with pytest.raises(SystemExit, match="no teacher is cached"):  # a typo must not start a stage 0
        bench.main([*argv, "--report-only", "--teacher-set", "finetune_steps=5"])
    with pytest.raises(SystemExit, match="none of the trained variants"):  # and must not empty the table
        bench.main([*argv, "--report-only", "--set", "quant_steps=7"])
    assert (tmp / "results" / "fidelity_sst2_smoke.md").read_text() == before


def _load_compare():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "bench" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_runs_pairs_two_recipes_seed_by_seed_against_one_teacher(seeds_run, glue_dir, capsys):
    _, argv, tmp, results = seeds_run
    compare = _load_compare()
    model = argv[argv.index("--model") + 1]
    common = ["--task", "sst2", "--work-dir", str(tmp / "work"), "--model", model,
              "--glue-dir", str(glue_dir)]
    out = tmp / "cmp" / "kd-vs-labels"
    result = compare.main([*common, "--a", "smoke:xtc-w1-half", "--b", "smoke:nokd-w1-half",
                           "--out", str(out)])
    variants = results["sst2"]["variants"]
    assert result["seeds"] == [1, 2]
    for row in result["per_seed"]:
        seed = str(row["seed"])
        assert row["a"] == variants["xtc-w1-half"]["seed_scores"][seed]
        assert row["diff"] == row["a"] - variants["nokd-w1-half"]["seed_scores"][seed]
    assert result["differences"]["variant.distill"] == [True, False]  # the change the table measures
    assert "training.seed" not in result["differences"]
    assert result["paired"]["seeds_paired"] == 2
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["diff"]["mean"] == pytest.approx(result["diff"]["mean"])
    assert "`variant.distill`: True vs False" in out.with_suffix(".md").read_text()

    # Another teacher (same configuration, trained again elsewhere) would move every score: refused.
    work = next((tmp / "work").glob("*-sst2-smoke"))
    other = work.with_name(work.name.replace("-smoke", "-retrained"))
    (other / "variants").mkdir(parents=True)
    for seed in (1, 2):
        run = json.loads((work / "variants" / f"nokd-w1-half-s{seed}.json").read_text())
        run["teacher_check"] = run["teacher_check"] + 0.01
        (other / "variants" / f"nokd-w1-half-s{seed}.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="different teachers"):
        compare.main([*common, "--a", "smoke:xtc-w1-half", "--b", "retrained:nokd-w1-half"])
    (other / "variants" / "nokd-w1-half-s1.json").unlink()
    (other / "variants" / "nokd-w1-half-s2.json").rename(other / "variants" / "nokd-w1-half-s7.json")
    with pytest.raises(SystemExit, match="no cached seeded runs"):  # the file's name and seed disagree
        compare.main([*common, "--a", "smoke:xtc-w1-half", "--b", "retrained:nokd-w1-half"])
    with pytest.raises(SystemExit, match="no cached seeded runs"):
        compare.main([*common, "--a", "smoke:xtc-w1-half", "--b", "smoke:xtc-w2"])
    runs = compare.load_runs(tmp / "work", model, "sst2", "smoke", "xtc-w1-half")
    with pytest.raises(compare.CompareError, match="no seed in common"):
        compare.compare({1: runs[1]}, {2: runs[2]}, [], ("accuracy",), "accuracy", False)


def test_the_fp_embeddings_diagnostic_quantizes_the_linears_only_and_says_so(tmp_path, glue_dir):
    from tiny_models import make_tiny_model

    spec = importlib.util.spec_from_file_location("diag_fp_embeddings",
                                                  ROOT / "bench" / "diag_fp_embeddings.py")
    diag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diag)
    model = make_tiny_model(tmp_path / "tiny-base", layers=2, hidden=32, with_head=False)

    def argv(variants: str) -> list[str]:
        return ["--task", "sst2", "--glue-dir", str(glue_dir), "--model", str(model), "--budget", "smoke",
                "--variants", variants, "--seeds", "1", "--tag", "fpemb",
                "--results-dir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "work"),
                "--threads", "1", "--device", "cpu"]

    with pytest.raises(SystemExit, match="trained variants only"):
        diag.main(argv("xtc-w2,ptq-w2"))
    diag.main(argv("xtc-w2"))
    (cached,) = (tmp_path / "work").glob("*-sst2-fpemb/variants/xtc-w2-s1.json")
    run = json.loads(cached.read_text())
    assert run["key"]["variant"]["diagnostic"] == diag.MARK
    meta = json.loads((Path(run["checkpoint"]) / "xtc.json").read_text())
    assert meta["quantized"] and not any("embeddings" in name for name in meta["quantized"])
    assert all(spec["bits"] == 2 for spec in meta["quantized"].values())
    table = (tmp_path / "r" / "fidelity_sst2_fpemb.md").read_text()
    assert "Command: `python bench/diag_fp_embeddings.py " in table  # not passed off as the benchmark
    assert run["artifact_matches_recorded"]
    import xtc_core.pipeline
    from xtc_core.student import apply_quantization

    assert xtc_core.pipeline.apply_quantization is apply_quantization  # restored for what runs next


@pytest.mark.timeout(600)
def test_the_parallel_script_trains_each_group_in_its_own_process_and_tabulates_them(tmp_path, glue_dir):
    import os
    import subprocess

    from tiny_models import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny-base", layers=4, hidden=32, with_head=False)
    common = (f"--task sst2 --glue-dir {glue_dir} --model {model} --budget smoke --threads 1 --device cpu "
              f"--work-dir {tmp_path / 'work'} --results-dir {tmp_path / 'results'}")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "FIDELITY_LOGS": str(tmp_path / "logs"), "FIDELITY_ARGS": common,
           "FIDELITY_GROUPS": "xtc-fp-half,xtc-w1-half nokd-w1-half"}
    script = str(ROOT / "bench" / "fidelity_parallel.sh")
    done = subprocess.run(["bash", script, "par", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=540)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["combined.log", "nokd-w1-half-s1.log", "teacher.log", "xtc-fp-half+xtc-w1-half-s1.log"]
    assert "teacher: cached" in (tmp_path / "logs" / "nokd-w1-half-s1.log").read_text()  # trained once
    # the combining run trains nothing
    assert "running" not in (tmp_path / "logs" / "combined.log").read_text()
    data = json.loads((tmp_path / "results" / "fidelity_sst2_par.json").read_text())
    assert set(data["variants"]) == {"xtc-fp-half", "xtc-w1-half", "nokd-w1-half", "ptq-w2", "ptq-w1",
                                     "int8-dynamic"}
    assert data["variants"]["xtc-w1-half"]["reused_reduction"]  # stage 1 shared inside its process
    assert [m["baseline"] for m in data["matches"] if m["xtc"] == "xtc-w1-half"] == ["nokd-w1-half"]

    # Past its deadline the script trains nothing more and tabulates what finished (exit 3: stopped).
    late = {**env, "FIDELITY_DEADLINE": "1",
            "FIDELITY_GROUPS": "xtc-fp-half,xtc-w1-half nokd-w1-half nokd-fp-half"}
    done = subprocess.run(["bash", script, "par", "1"], cwd=ROOT, env=late, capture_output=True, text=True,
                          timeout=540)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "deadline stopped" in done.stderr and "nokd-fp-half-s1: not run yet" in done.stdout
    again = json.loads((tmp_path / "results" / "fidelity_sst2_par.json").read_text())
    assert set(again["variants"]) == set(data["variants"])
    # --force would have every process retrain the shared teacher: refused before anything runs
    refused = subprocess.run(["bash", script, "par", "1", "--force"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "--force" in refused.stderr
