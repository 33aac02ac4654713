"""Training step time of the XTC stages on the bundled MiniLM-L6 with real SST-2 rows, side by side:

- naive: random batches (pad to the longest of 32 random rows), the whole 30k-row word-embedding
  matrix quantized every step, the default (unfused) AdamW;
- library: length-bucketed batches, only looked-up embedding rows quantized while training, fused AdamW.

A third row times the KD step with the reference recipe options (attention KD on pre-softmax scores
captured through the attention registry, padding-masked hidden states, student dropout off) against the
stock one (``output_attentions=True`` probabilities), both in library mode.

    python bench/step_time.py --steps 8 --out bench/results/step_time.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import torch

from xtc_core.batches import collate, encode, lengths, model_inputs, train_batches
from xtc_core.distill import kd_loss, label_loss
from xtc_core.models import load_teacher
from xtc_core.student import apply_quantization, build_student
from xtc_core.tabular import read_glue_file
from xtc_core.tasks import get_task
from xtc_core.trainer import adamw


def random_batches(n: int, batch_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=g).tolist()
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i:i + batch_size]


def time_steps(step_fn, batches, steps: int) -> tuple[float, float]:
    """Seconds per step and real (unpadded) tokens per second, after one warm-up step."""
    step_fn(next(batches))
    tokens, started = 0, time.perf_counter()
    for _ in range(steps):
        tokens += step_fn(next(batches))
    seconds = time.perf_counter() - started
    return seconds / steps, tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--glue-dir", default="../shared/data/glue")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--out", default="bench/results/step_time.json")
    parser.add_argument("--compile", action="store_true",
                        help="add a row: the reference-recipe KD step with the student under torch.compile")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec = get_task("sst2")
    rows = read_glue_file(spec, Path(args.glue_dir) / "SST-2" / "train.tsv")[:4000]
    teacher = load_teacher("bundled:minilm-l6", num_labels=2, regression=False)
    tok, model = teacher.tokenizer, teacher.model.to(device)
    data = encode(tok, rows, args.max_seq_length)
    student = build_student(model, [1, 3, 5])
    apply_quantization(student, weight_bits=1, activation_bits=8, weight_groups=1)
    emb = student.get_input_embeddings()
    fast_lookup = emb.forward  # the library's training-time row-wise lookup (an instance attribute)
    opt = {}

    def configure(mode: str) -> None:
        if mode == "naive":
            del emb.forward  # back to nn.Embedding.forward: the whole quantized matrix every step
            opt["t"] = torch.optim.AdamW(model.parameters(), lr=1e-5)
            opt["s"] = torch.optim.AdamW(student.parameters(), lr=1e-5)
        else:
            emb.forward = fast_lookup
            opt["t"] = adamw([{"params": list(model.parameters())}], 1e-5)
            opt["s"] = adamw([{"params": list(student.parameters())}], 1e-5)

    def finetune_step(idx):
        batch, labels = collate(tok, data, idx, device, False)
        loss = label_loss(model(**model_inputs(model, batch)).logits, labels, False)
        opt["t"].zero_grad()
        loss.backward()
        opt["t"].step()
        return int(batch["attention_mask"].sum())

    def qat_kd_step(idx):
        batch, _ = collate(tok, data, idx, device, False)
        inputs = model_inputs(model, batch)
        with torch.no_grad():
            t_out = model(**inputs, output_hidden_states=True, output_attentions=True)
        s_out = student(**inputs, output_hidden_states=True, output_attentions=True)
        loss, _ = kd_loss(s_out, t_out, [1, 3, 5], regression=False)
        opt["s"].zero_grad()
        loss.backward()
        opt["s"].step()
        return int(batch["attention_mask"].sum())

    def kd_recipe_step(reference: bool):
        """The KD step with the stock recipe (``qat_kd_step``) or the reference one."""
        from xtc_core.attention import capture_scores

        if not reference:
            return qat_kd_step

        def step(idx):
            batch, _ = collate(tok, data, idx, device, False)
            inputs = model_inputs(model, batch)
            with torch.no_grad(), capture_scores() as ts:
                t_out = model(**inputs, output_hidden_states=True)
            with capture_scores() as ss:
                s_out = student(**inputs, output_hidden_states=True)
            loss, _ = kd_loss(s_out, t_out, [1, 3, 5], regression=False,
                              attention_mask=batch["attention_mask"], hidden_mask=True,
                              student_scores=ss, teacher_scores=ts)
            opt["s"].zero_grad()
            loss.backward()
            opt["s"].step()
            return int(batch["attention_mask"].sum())
        return step

    results = []
    stages = (("finetune teacher (6 layers)", finetune_step), ("QAT+KD W1A8 student (3 layers)", qat_kd_step))
    for name, fn in stages:
        row = {"stage": name}
        for mode, batches in (("naive", random_batches(len(data), args.batch_size, 0)),
                              ("library", train_batches(lengths(data), args.batch_size, 0))):
            configure(mode)
            sec, tps = time_steps(fn, itertools.islice(batches, args.steps + 1), args.steps)
            row[f"{mode}_s_per_step"], row[f"{mode}_tokens_per_s"] = round(sec, 4), round(tps, 1)
        row["speedup"] = round(row["naive_s_per_step"] / row["library_s_per_step"], 2)
        results.append(row)

    from xtc_core.attention import use_scores_attention
    from xtc_core.student import disable_dropout

    configure("library")
    row = {"stage": "QAT+KD W1A8 3 layers: stock probs KD (naive) vs reference recipe (library)"}
    def same_batches():
        return itertools.islice(train_batches(lengths(data), args.batch_size, 1), args.steps + 1)

    sec, tps = time_steps(kd_recipe_step(False), same_batches(), args.steps)
    row["naive_s_per_step"], row["naive_tokens_per_s"] = round(sec, 4), round(tps, 1)
    previous = use_scores_attention(model)
    use_scores_attention(student)
    disable_dropout(student)
    sec, tps = time_steps(kd_recipe_step(True), same_batches(), args.steps)
    row["library_s_per_step"], row["library_tokens_per_s"] = round(sec, 4), round(tps, 1)
    row["speedup"] = round(row["naive_s_per_step"] / row["library_s_per_step"], 2)
    results.append(row)
    if args.compile:
        # Same step, same batches, the student compiled (inductor, dynamic shapes: batches are
        # length-bucketed). The first step pays the compilation, reported apart.
        row = {"stage": "QAT+KD W1A8 3 layers, reference recipe: eager (naive) vs torch.compile (library)",
               "naive_s_per_step": row["library_s_per_step"],
               "naive_tokens_per_s": row["library_tokens_per_s"]}
        eager_student = student
        student = torch.compile(eager_student, dynamic=True)
        started = time.perf_counter()
        kd_recipe_step(True)(next(itertools.islice(train_batches(lengths(data), args.batch_size, 2), 1)))
        row["compile_first_step_s"] = round(time.perf_counter() - started, 1)
        sec, tps = time_steps(kd_recipe_step(True), same_batches(), args.steps)
        row["library_s_per_step"], row["library_tokens_per_s"] = round(sec, 4), round(tps, 1)
        row["speedup"] = round(row["naive_s_per_step"] / row["library_s_per_step"], 2)
        student = eager_student
        results.append(row)
    model.set_attn_implementation(previous)

    print(f"| stage | naive s/step | library s/step | speedup | device: {device} |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['stage']} | {r['naive_s_per_step']} | {r['library_s_per_step']} | {r['speedup']}x | |")
    report = {"device": str(device), "cpu": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "max_seq_length": args.max_seq_length, "steps": args.steps, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
