"""Checks a job request before it is stored, with xtc_core's torch-free modules only.

A request that passes here can still fail in the worker (a hub model that does not exist, say), but
every mistake we can see without torch is reported now, as a 422 with a stable code.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from xtc_core.config import CompressConfig, DataSource, budget
from xtc_core.errors import ConfigError
from xtc_core.tasks import get_task

from .db import repo
from .errors import ApiError
from .model_refs import check_model_ref
from .schemas import DatasetTask, JobCreate


def validate_job(session: Session, tenant_id: str, body: JobCreate, model_dirs: str = "") -> dict[str, Any]:
    """Return the request as stored for the worker (dataset columns resolved), or raise ApiError."""
    stored = body.model_dump(mode="json")
    stored["model"] = check_model_ref(body.model, model_dirs)

    if isinstance(body.task, str):
        try:
            stored["task"] = get_task(body.task).name
        except ConfigError as exc:
            raise ApiError(422, "unknown_task", exc.message) from None
        data = DataSource(task=stored["task"])
    else:
        stored["task"] = _resolve_datasets(session, tenant_id, body.task)
        cols = stored["task"]["columns"]
        data = DataSource(train_file="train", dev_file="dev", text_column=cols["text"],
                          label_column=cols["label"], text_pair_column=cols["text_pair"],
                          regression=stored["task"]["regression"])
    try:
        training = budget(body.training.budget, **body.training.overrides)
        CompressConfig(
            model=stored["model"], data=data, output_dir="unused", weight_bits=body.compression.weight_bits,
            activation_bits=body.compression.activation_bits, layers=body.compression.layers,
            weight_groups=body.compression.weight_groups, embedding_bits=body.compression.embedding_bits,
            training=training, budget_name=body.training.budget,
        ).validate()
    except ConfigError as exc:
        raise ApiError(422, "invalid_request", exc.message) from None
    return stored


def _resolve_datasets(session: Session, tenant_id: str, task: DatasetTask) -> dict[str, Any]:
    found = {}
    for field in ("train_dataset", "dev_dataset"):
        ds_id = getattr(task, field)
        ds = repo.get_dataset(session, tenant_id, ds_id)
        if ds is None:
            raise ApiError(422, "unknown_dataset", f"task.{field}: dataset {ds_id!r} not found")
        found[field] = ds
    train = found["train_dataset"]
    columns = task.columns.model_dump() if task.columns else {
        "text": train.columns["text"], "text_pair": train.columns.get("text_pair"),
        "label": train.columns["label"],
    }
    regression = task.regression if task.regression is not None else bool(train.columns.get("regression"))
    return {"train_dataset": train.id, "dev_dataset": found["dev_dataset"].id,
            "columns": columns, "regression": regression}
