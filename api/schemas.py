"""Request and response bodies. Unknown fields are rejected so typos fail loudly, not silently."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Columns(Strict):
    text: str
    label: str
    text_pair: str | None = None


class DatasetTask(Strict):
    train_dataset: str
    dev_dataset: str
    columns: Columns | None = None  # default: the mapping given when the train file was uploaded
    regression: bool | None = None


class Compression(Strict):
    weight_bits: Literal[1, 2] = 1
    activation_bits: Literal[8] | None = 8
    layers: int | list[int] | None = None


class Training(Strict):
    budget: str = "quick"
    overrides: dict[str, Any] = Field(default_factory=dict)


class JobCreate(Strict):
    model: str = Field(min_length=1, max_length=500)
    task: str | DatasetTask
    compression: Compression = Field(default_factory=Compression)
    training: Training = Field(default_factory=Training)
    webhook_url: str | None = Field(default=None, max_length=2000)  # else the tenant's default, if any

    def fingerprint(self) -> str:
        """Hash of the normalized request: same meaning -> same hash, whatever the JSON spelling."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ErrorInfo(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    id: str
    status: str
    stage: str | None
    progress: float
    eta_seconds: float | None
    cancel_requested: bool
    request: dict[str, Any]
    metrics: dict[str, Any] | None
    latest_metrics: dict[str, Any] | None
    error: ErrorInfo | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sweep_id: str | None = None
    webhook_url: str | None = None


class JobList(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    id: int
    created_at: datetime
    kind: str
    status: str | None
    stage: str | None
    step: int | None
    total: int | None
    loss: float | None
    metrics: dict[str, Any] | None
    message: str | None


class EventList(BaseModel):
    data: list[EventOut]
    next_after: int | None


class ArtifactOut(BaseModel):
    name: str
    size: int
    sha256: str
    url: str


class ArtifactList(BaseModel):
    data: list[ArtifactOut]


class DatasetOut(BaseModel):
    id: str
    filename: str
    format: str
    size: int
    sha256: str
    columns: dict[str, Any]
    summary: dict[str, Any] | None
    created_at: datetime
