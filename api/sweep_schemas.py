"""Bodies of the sweep routes (kept apart from schemas.py, which other features edit)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator

from .schemas import (
    DatasetTask,
    EmbeddingBits,
    JobOut,
    Name,
    Strict,
    Training,
    WeightGroups,
    _no_nul,
    drop_added_defaults,
    integer_only,
    normalized_task,
)

# The bounds of Compression.layers: a point the grid accepts must make a valid child job (else a 500).
Depth = Annotated[int, Field(ge=1, le=256)] | Annotated[
    list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1, max_length=256)]


class Grid(Strict):
    weight_bits: list[Literal[1, 2]] = Field(min_length=1, max_length=2)
    layers: list[Depth] = Field(min_length=1, max_length=12)
    budgets: list[Name] | None = Field(default=None, min_length=1, max_length=4)


class Target(Strict):
    # "The smallest model within max_drop points of the teacher" (points: the metric x 100).
    max_drop: float = Field(ge=0, le=100)


class SweepCreate(Strict):
    # The same bounds as JobCreate's: every child is a JobCreate built from these.
    model: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
    task: Name | DatasetTask
    grid: Grid
    activation_bits: Literal[8] | None = 8
    weight_groups: WeightGroups = 1  # for every point, as in a job's compression
    embedding_bits: EmbeddingBits = None
    training: Training = Field(default_factory=Training)
    target: Target | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)

    _integers_only = field_validator("activation_bits", "embedding_bits", mode="before")(integer_only)

    def fingerprint(self) -> str:
        """Hash of the normalized request (as JobCreate's): an Idempotency-Key replay must match it."""
        data = self.model_dump(mode="json")
        drop_added_defaults(data)
        if isinstance(self.task, str):
            data["task"] = normalized_task(self.task)
        data["model"] = self.model.strip()
        data["training"]["budget"] = self.training.budget.strip().lower()
        if self.grid.budgets:
            data["grid"]["budgets"] = [b.strip().lower() for b in self.grid.budgets]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SweepOut(BaseModel):
    id: str
    status: str
    cancel_requested: bool
    request: dict[str, Any]
    webhook_url: str | None
    children: list[JobOut]
    table: list[dict[str, Any]]
    pareto: list[str]
    recommendation: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


class SweepList(BaseModel):
    data: list[SweepOut]
    next_cursor: str | None
