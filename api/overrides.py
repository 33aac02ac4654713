"""Training overrides checked with pydantic at the API: types and ranges, so `batch_size: 0` or `lr: -1`
is a 422 now rather than an `internal_error` in the worker later.

The model is built from xtc_core's TrainingConfig, so an option added there is accepted here (typed)
without an edit; the ranges below cover the options whose bad values we know.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError

from xtc_core.config import TrainingConfig

_INT_MAX = 2**31 - 1
_STEPS = dict(ge=0, le=10_000_000)
RANGES: dict[str, dict[str, Any]] = {
    "finetune_steps": _STEPS, "reduction_steps": _STEPS, "quant_steps": _STEPS,
    "batch_size": dict(ge=1, le=4096),
    "eval_batch_size": dict(ge=1, le=4096),
    "max_seq_length": dict(ge=8, le=4096),
    "finetune_lr": dict(gt=0, le=1),
    "lr": dict(gt=0, le=1),
    "weight_decay": dict(ge=0, le=1),
    "warmup_ratio": dict(ge=0, lt=1),
    "max_grad_norm": dict(gt=0, le=1e6),
    "eval_every": dict(ge=1, le=10_000_000),
    "checkpoint_every": dict(ge=1, le=10_000_000),
    "max_train_examples": dict(ge=1, le=_INT_MAX),
    "max_eval_examples": dict(ge=1, le=_INT_MAX),
    "kd_logits": dict(ge=0, le=1e6),
    "kd_hidden": dict(ge=0, le=1e6),
    "kd_attention": dict(ge=0, le=1e6),
    "temperature": dict(gt=0, le=1e3),
    "seed": dict(ge=0, le=2**32 - 1),
    "kd_attention_target": dict(pattern="^(probs|scores)$"),
    "quant_lr_w1": dict(gt=0, le=1),
    "quant_lr_w2": dict(gt=0, le=1),
    "kd_late_start": dict(ge=0, le=1),
    "kd_late_logits": dict(ge=0, le=1e6),
    "kd_late_intermediate": dict(ge=0, le=1e6),
    "augment": dict(ge=0, le=32),
    "augment_prob": dict(gt=0, le=1),
    "augment_neighbors": dict(ge=1, le=100),
}


@lru_cache
def overrides_model() -> type[BaseModel]:
    hints = typing.get_type_hints(TrainingConfig)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(TrainingConfig):
        # The default is never used (only the keys a user set are kept) and is not validated, so
        # an explicit null is refused wherever the option's type has no None.
        fields[f.name] = (hints[f.name], Field(default=None, **RANGES.get(f.name, {})))
    # strict: "5" is not 5, true is not 1; an int is still a valid float.
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    return create_model("TrainingOverrides", __config__=config, **fields)


def check_overrides(value: dict[str, Any]) -> dict[str, Any]:
    """The overrides as given (keys the user set), with types and ranges checked.

    Raises PydanticCustomError (a 422 with the field named) on the first bad option."""
    try:
        model = overrides_model().model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "overrides"
        msg = "unknown training option" if err["type"] == "extra_forbidden" else err["msg"]
        raise PydanticCustomError("invalid_override", "{where}: {msg}",
                                  {"where": where, "msg": msg}) from None
    return model.model_dump(exclude_unset=True)
