"""Inference speed, memory and load time: the teacher as users would run it vs our compressed students.

    python bench/inference.py [--quick] [--w1 CKPT] [--w2 CKPT] [--threads 1,2] [--tag NAME]

Models (bundled MiniLM-L6 teacher, hidden 384): fp32 teacher (PyTorch eager), torch dynamic int8
teacher (the one-line baseline), ONNX Runtime fp32 and int8-dynamic teacher (quantize_dynamic), our
students through ``load_compressed`` (PyTorch: the exact default and the integer ``fast=True``) and
through the ONNX export + ``xtc_core.runtime``.
Students default to untrained W1 3-layer and W2 6-layer students built from the teacher (speed does
not depend on the weights' values); pass trained checkpoints with --w1/--w2.

Latency: every model is loaded in one process and timed in interleaved rounds (model order rotates
each round), medians over rounds, for batch 1 at real SST-2 dev lengths (mean per sentence), batch
1 x 128 tokens and batch 32 x 128, at each thread count. RSS and load time: each model in a fresh
process (load, one prediction, then RSS read from /proc). Results: bench/results/inference[_TAG].json
and a table printed (paste into bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "inference"
RESULTS = ROOT / "bench" / "results"
TEACHER = "bundled:minilm-l6"
NAMES = {
    "teacher_torch_fp32": "fp32 teacher, PyTorch eager",
    "teacher_torch_int8": "teacher, torch dynamic int8",
    "teacher_ort_fp32": "teacher, ONNX Runtime fp32",
    "teacher_ort_int8": "teacher, ONNX Runtime int8 dynamic",
    "w2l6_torch": "ours W2 6 layers, load_compressed (exact)",
    "w1l3_torch": "ours W1 3 layers, load_compressed (exact)",
    "w2l6_torch_fast": "ours W2 6 layers, load_compressed(fast=True)",
    "w1l3_torch_fast": "ours W1 3 layers, load_compressed(fast=True)",
    "w2l6_onnx": "ours W2 6 layers, ONNX (xtc_core.runtime)",
    "w1l3_onnx": "ours W1 3 layers, ONNX (xtc_core.runtime)",
}


# ---- preparing the artifacts (torch allowed here) -----------------------------------------------------
def prepare(w1: str | None, w2: str | None) -> dict[str, Path]:
    import torch

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = {"teacher": CACHE / "teacher", "teacher_onnx": CACHE / "teacher.onnx",
             "teacher_int8": CACHE / "teacher-int8.onnx"}
    from xtc_core.models import load_teacher

    if not (paths["teacher"] / "config.json").exists():
        t = load_teacher(TEACHER, num_labels=2, regression=False)
        t.model.save_pretrained(paths["teacher"])
        t.tokenizer.save_pretrained(paths["teacher"])
    if not paths["teacher_int8"].exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(paths["teacher"],
                                                                   attn_implementation="eager")
        ids = torch.randint(1000, 2000, (1, 16))
        names = ["input_ids", "attention_mask", "token_type_ids"]
        torch.onnx.export(model.eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                          str(paths["teacher_onnx"]), input_names=names, output_names=["logits"],
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names}, opset_version=17,
                          dynamo=False)
        quantize_dynamic(str(paths["teacher_onnx"]), str(paths["teacher_int8"]), weight_type=QuantType.QInt8)
    for name, given, layers, bits in (("w1l3", w1, [1, 3, 5], 1), ("w2l6", w2, list(range(6)), 2)):
        ckpt = Path(given) if given else CACHE / name
        if not given and not (ckpt / "xtc.json").exists():
            _untrained_student(paths["teacher"], ckpt, layers, bits)
        paths[name] = ckpt
        onnx_dir = CACHE / f"{name}-onnx-{_stamp(ckpt)}"
        if not (onnx_dir / "model.onnx").exists():
            from xtc_core.export_onnx import export_onnx

            export_onnx(ckpt, onnx_dir, max_length=128)
        paths[f"{name}_onnx"] = onnx_dir
    return paths


def _stamp(ckpt: Path) -> str:
    return str(int((ckpt / "model.safetensors").stat().st_mtime))


def _untrained_student(teacher_dir: Path, out: Path, layers: list[int], bits: int) -> None:
    import torch

    from xtc_core.checkpoint import save_compressed
    from xtc_core.models import load_teacher
    from xtc_core.student import apply_quantization, build_student, count_params, round_unquantized_floats

    t = load_teacher(str(teacher_dir), num_labels=2, regression=False)
    student = build_student(t.model, layers)
    plan = apply_quantization(student, weight_bits=bits, activation_bits=8, weight_groups=1)
    student.eval()
    round_unquantized_floats(student, torch.float16, set(plan))
    params = count_params(t.model)
    meta = {"quantized": plan, "float_storage": "fp16", "activation_bits": 8, "weight_bits": bits,
            "weight_groups": 1, "teacher_layers": layers, "teacher": {"fp32_bytes": params * 4},
            "eval": {"max_seq_length": 128, "batch_size": 32},
            "task": {"name": "sst2", "labels": ["0", "1"], "metrics": ["accuracy"]}}
    save_compressed(student, t.tokenizer, out, meta=meta)


# ---- runners: the same call signature for every model -----------------------------------------------
def make_runner(key: str, paths: dict[str, Path], threads: int):
    """A function feeds -> logits. ONNX students go through xtc_core.runtime's session."""
    if key.endswith("_onnx") or key.startswith("teacher_ort"):
        import onnxruntime as ort

        if key.endswith("_onnx"):
            from xtc_core.runtime import Predictor

            session = Predictor(paths[key], threads=threads).session
        else:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            model = paths["teacher_onnx" if key == "teacher_ort_fp32" else "teacher_int8"]
            session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(["logits"], feeds)[0]
    import torch

    torch.set_num_threads(threads)
    if key.startswith("teacher_torch"):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(paths["teacher"],
                                                                   attn_implementation="eager").eval()
        if key == "teacher_torch_int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    else:
        from xtc_core.checkpoint import load_compressed

        model = load_compressed(paths[key.split("_")[0]], fast=key.endswith("_fast"))

    def run(feeds):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()

    return run


def _feeds(ids: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def workloads(paths: dict[str, Path], n_real: int) -> dict[str, list[dict]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(paths["w1l3_onnx"] / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128)
    glue = Path(os.environ.get("XTC_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))
    lines = (glue / "SST-2" / "dev.tsv").read_text().splitlines()[1:1 + n_real]
    real = [_feeds(np.array([tok.encode(line.split("\t")[0]).ids], dtype=np.int64)) for line in lines]
    rng = np.random.default_rng(0)
    return {
        "b1_real": real,
        "b1x128": [_feeds(rng.integers(1000, 20000, (1, 128)).astype(np.int64))],
        "b32x128": [_feeds(rng.integers(1000, 20000, (32, 128)).astype(np.int64))],
    }


def latency(paths, keys, thread_counts, rounds, n_real) -> dict:
    work = workloads(paths, n_real)
    out: dict = {}
    for threads in thread_counts:
        runners = {k: make_runner(k, paths, threads) for k in keys}
        samples = {k: {w: [] for w in work} for k in keys}
        for fn in runners.values():  # warm-up
            for feeds in work["b1x128"] + work["b1_real"][:3]:
                fn(feeds)
        for r in range(rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for w, batches in work.items():
                for k in order:
                    start = time.perf_counter()
                    for feeds in batches:
                        runners[k](feeds)
                    samples[k][w].append((time.perf_counter() - start) / len(batches) * 1000)
            print(f"  threads={threads} round {r + 1}/{rounds} done", file=sys.stderr)
        out[str(threads)] = {k: {w: statistics.median(v) for w, v in ws.items()} for k, ws in samples.items()}
        del runners
    return out


# ---- separate processes: load time and RSS ------------------------------------------------------------
def child(key: str, paths_json: str) -> None:
    paths = {k: Path(v) for k, v in json.loads(paths_json).items()}
    start = time.perf_counter()
    run = make_runner(key, paths, 1)
    load_s = time.perf_counter() - start
    run(_feeds(np.full((1, 128), 1037, dtype=np.int64)))
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
    print(json.dumps({"load_s": load_s, "rss_mb": pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
                      "imports": heavy}))


def memory(paths, keys) -> dict:
    out = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in keys:
        res = subprocess.run([sys.executable, __file__, "--child", key,
                              json.dumps({k: str(v) for k, v in paths.items()})],
                             capture_output=True, text=True, env=env, check=True)
        out[key] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def table(result: dict) -> str:
    base = "teacher_torch_fp32"
    lines = []
    for threads, models in result["latency_ms"].items():
        lines += [f"\n{threads} thread(s): median ms (speed-up vs the fp32 PyTorch teacher)\n",
                  "| model | batch 1, real lengths | batch 1 x 128 | batch 32 x 128 | RSS after load "
                  "| load |",
                  "|---|---|---|---|---|---|"]
        for key, w in models.items():
            cells = [f"{w[x]:.1f} ({models[base][x] / w[x]:.2f}x)" for x in ("b1_real", "b1x128", "b32x128")]
            mem = result["memory"].get(key, {})
            rss = f"{mem['rss_mb']:.0f} MB" if mem else "-"
            load = f"{mem['load_s']:.2f} s" if mem else "-"
            lines.append(f"| {NAMES[key]} | " + " | ".join(cells) + f" | {rss} | {load} |")
    g = result["goals"]
    lines.append("\nGoals (1 thread, batch 1 x 128): " + ", ".join(f"{k} = {v:.2f}" for k, v in g.items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 rounds, 8 real sentences (a contended machine)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--w1", help="trained W1 3-layer checkpoint (default: untrained, same shapes)")
    ap.add_argument("--w2", help="trained W2 6-layer checkpoint")
    ap.add_argument("--models", default=",".join(NAMES))
    ap.add_argument("--tag", default="")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("paths_json", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.paths_json)
        return
    load_at_start = os.getloadavg()
    rounds = args.rounds or (3 if args.quick else 9)
    n_real = 8 if args.quick else 32
    keys = args.models.split(",")
    paths = prepare(args.w1, args.w2)
    print("memory and load time (separate processes)...", file=sys.stderr)
    mem = memory(paths, keys)
    print("latency (interleaved rounds)...", file=sys.stderr)
    lat = latency(paths, keys, [int(t) for t in args.threads.split(",")], rounds, n_real)
    one = lat.get("1", next(iter(lat.values())))
    goals = {}
    if {"w1l3_onnx", "teacher_torch_fp32", "teacher_ort_int8"} <= set(keys):
        goals["W1 3L ONNX vs fp32 teacher (goal >= 5)"] = (one["teacher_torch_fp32"]["b1x128"]
                                                          / one["w1l3_onnx"]["b1x128"])
        goals["W1 3L ONNX vs ORT int8 teacher (goal >= 1.8)"] = (one["teacher_ort_int8"]["b1x128"]
                                                                / one["w1l3_onnx"]["b1x128"])
    if {"w2l6_onnx", "teacher_torch_fp32"} <= set(keys):
        goals["W2 6L ONNX vs fp32 teacher (goal >= 2.5)"] = (one["teacher_torch_fp32"]["b1x128"]
                                                            / one["w2l6_onnx"]["b1x128"])
    if "w1l3_onnx" in mem:
        goals["runtime RSS MB, W1 ONNX (goal <= 120)"] = mem["w1l3_onnx"]["rss_mb"]
    result = {"rounds": rounds, "real_sentences": n_real, "cpu": _cpu(), "load_avg_at_start": load_at_start,
              "onnxruntime": _version("onnxruntime"), "torch": _version("torch"),
              "checkpoints": {"w1l3": str(paths["w1l3"]), "w2l6": str(paths["w2l6"])},
              "latency_ms": lat, "memory": mem, "goals": goals}
    result["load_avg_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"inference{'_' + args.tag if args.tag else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(table(result))


def _cpu() -> str:
    """Model name, core count and the int8 dot-product extensions (VNNI/AMX), which decide how much
    faster the int8 kernels are: "AMD EPYC" alone named machines 1.8x apart in fp32 speed here."""
    name, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and name == "unknown":
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{name} x {os.cpu_count()} ({', '.join(isa) or 'no AVX2'})"


def _version(module: str) -> str:
    from importlib.metadata import version

    try:
        return version(module)
    except Exception:  # noqa: BLE001
        return "not installed"


if __name__ == "__main__":
    main()
