"""Diagnostic: bench/fidelity.py with the word embeddings left unquantized (fp16 in the checkpoint).

Not a product option (an fp16 vocabulary is most of a MiniLM checkpoint: the ratio falls to ~3x); it
asks whether the token-wise 2-bit/1-bit word embeddings are what holds a same-depth student back.
Takes bench/fidelity.py's options; run it under its own --tag, then pair it with the quantized run:

    python bench/diag_fp_embeddings.py --task sst2 --tag w2-g1-fpemb --variants xtc-w2 --seeds 1 ...
    python bench/compare_runs.py --task sst2 --a w2-g1-fpemb:xtc-w2 --b w2-g1:xtc-w2 ...

The runs' cache keys carry ``diagnostic``, so compare_runs names the difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity  # noqa: E402

import xtc_core.pipeline as pipeline  # noqa: E402
from xtc_core.student import quantize_linears  # noqa: E402

MARK = "word embeddings unquantized (fp16)"


def main(argv: list[str] | None = None) -> dict:
    args = fidelity.parse_args(argv)
    untrained = [n for n in args.variant_list if fidelity.VARIANTS[n].kind != "compress"]
    if untrained:  # PTQ and int8 rows do not go through the pipeline: they would be mislabelled
        sys.exit(f"diag_fp_embeddings: trained variants only, not {', '.join(untrained)}")
    if args.embedding_bits:
        sys.exit("diag_fp_embeddings: the word embeddings stay unquantized here; --embedding-bits is "
                 "bench/fidelity.py's option")
    quantize, inputs = pipeline.apply_quantization, fidelity._run_inputs

    def linears_only(model, *, embedding_bits=None, **options):  # the same call, less the word embeddings
        return quantize_linears(model, **options)

    pipeline.apply_quantization = linears_only
    fidelity._run_inputs = lambda variant: {**inputs(variant), "diagnostic": MARK}
    try:
        return fidelity.main(argv, script="bench/diag_fp_embeddings.py")
    finally:  # callers in the same process (tests) get the library back as it was
        pipeline.apply_quantization, fidelity._run_inputs = quantize, inputs


if __name__ == "__main__":
    main()
