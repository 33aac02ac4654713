"""Options that `xtc jobs submit` and `xtc sweeps submit` share: the request's model, data and
compression."""

from typing import Any

import typer

MODEL = typer.Option("bundled:minilm-l6", help="bundled:NAME, a hub id, or a model folder on the server")
TASK = typer.Option(None, help="GLUE task (sst2, mrpc, ...); omit for your own data")
TRAIN = typer.Option(None, help="training file to upload (.tsv/.csv/.jsonl) or a dataset id")
DEV = typer.Option(None, help="dev file to upload or a dataset id")
DATASET = typer.Option(None, help="one file (or dataset id) used as both train and dev split")
TEXT_COLUMN = typer.Option(None, help="column holding the text")
TEXT_PAIR_COLUMN = typer.Option(None, help="column holding the second text, if any")
LABEL_COLUMN = typer.Option(None, help="column holding the label")
REGRESSION = typer.Option(False, help="your data has a float target")
ACTIVATION_BITS = typer.Option("8", help="8, or 'none' for full-precision activations")
SET = typer.Option([], "--set", help="training override KEY=VALUE (repeatable)")
WEIGHT_GROUPS = typer.Option(1, help="scales per weight matrix (per-group quantization)")
EMBEDDING_BITS = typer.Option(None, help="word-embedding bits: 1, 2, 4 or 8 (default: the weight bits)")


def added_compression(weight_groups: int, embedding_bits: int | None) -> dict[str, Any]:
    """The compression options added after 0.1, only when set: a server from before them refuses
    unknown keys, so a request that does not use them must not carry them."""
    return {**({"weight_groups": weight_groups} if weight_groups != 1 else {}),
            **({"embedding_bits": embedding_bits} if embedding_bits is not None else {})}
