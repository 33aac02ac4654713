"""Bodies of the sweep routes (kept apart from schemas.py, which other features edit)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .schemas import DatasetTask, JobOut, Strict, Training


class Grid(Strict):
    weight_bits: list[Literal[1, 2]] = Field(min_length=1, max_length=2)
    layers: list[int | list[int]] = Field(min_length=1, max_length=12)
    budgets: list[str] | None = Field(default=None, min_length=1, max_length=4)


class Target(Strict):
    # "The smallest model within max_drop points of the teacher" (points: the metric x 100).
    max_drop: float = Field(ge=0, le=100)


class SweepCreate(Strict):
    model: str = Field(min_length=1, max_length=500)
    task: str | DatasetTask
    grid: Grid
    activation_bits: Literal[8] | None = 8
    training: Training = Field(default_factory=Training)
    target: Target | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)


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
