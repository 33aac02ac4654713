"""Request and response bodies. Unknown fields are rejected so typos fail loudly, not silently."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .overrides import RANGES, check_overrides


def _no_nul(value: str) -> str:
    # Postgres text cannot hold NUL, and no name, id or path legitimately contains one.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Columns(Strict):
    text: Name
    label: Name
    text_pair: Name | None = None


class DatasetTask(Strict):
    train_dataset: Name
    dev_dataset: Name
    columns: Columns | None = None  # default: the mapping given when the train file was uploaded
    regression: bool | None = None


def integer_only(value: Any) -> Any:
    """A bit width is a JSON integer: lax validation would read true as 1 and 2.0 as 2."""
    if isinstance(value, bool | float):
        raise ValueError("must be an integer")
    return value


# Per-job compression options that apply to every point of a sweep alike (the grid varies the rest).
WeightGroups = Annotated[int, Field(strict=True, ge=1, le=65536)]
EmbeddingBits = Literal[1, 2, 4, 8] | None


class Compression(Strict):
    weight_bits: Literal[1, 2] = 1
    activation_bits: Literal[8] | None = 8
    # A student depth, or teacher layers (0-based) to keep; bounded so no value overflows a column.
    layers: Annotated[int, Field(ge=1, le=256)] | Annotated[
        list[Annotated[int, Field(ge=0, le=255)]], Field(min_length=1, max_length=256)] | None = None
    weight_groups: WeightGroups = 1  # scales per weight matrix
    embedding_bits: EmbeddingBits = None  # word-embedding width (one scale per row); null: weight_bits

    _integers_only = field_validator("weight_bits", "activation_bits", "embedding_bits",
                                     mode="before")(integer_only)

    @model_validator(mode="after")
    def _embedding_bits_of_the_weights_is_the_default(self) -> Compression:
        if self.embedding_bits == self.weight_bits:  # one meaning, one spelling (and one fingerprint)
            self.embedding_bits = None
        return self


class Training(Strict):
    budget: Name = "quick"
    overrides: dict[str, Any] = Field(default_factory=dict)
    # TinyBERT-style augmented copies per training example, as a first-class job option. It is moved
    # into `overrides` (where the worker reads every training option), so `{"augment": 4}` and
    # `{"overrides": {"augment": 4}}` are one request, with one fingerprint.
    augment: Annotated[int, Field(strict=True, **RANGES["augment"])] | None = Field(default=None,
                                                                                    exclude=True)

    @field_validator("overrides")
    @classmethod
    def _typed_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_overrides(value)

    @model_validator(mode="after")
    def _augment_into_overrides(self) -> Training:
        if self.augment is not None:
            if self.overrides.get("augment", self.augment) != self.augment:
                raise ValueError(f"training.augment ({self.augment}) and training.overrides.augment "
                                 f"({self.overrides['augment']}) disagree: set one of them")
            self.overrides = {**self.overrides, "augment": self.augment}
            self.augment = None
        return self


# Compression options added after 0.1, at their defaults: left out of the fingerprint, so a request
# replayed under its idempotency key after an upgrade still matches the job it created.
COMPRESSION_ADDED_DEFAULTS: dict[str, Any] = {"weight_groups": 1, "embedding_bits": None}


def drop_added_defaults(data: dict[str, Any]) -> None:
    for key, default in COMPRESSION_ADDED_DEFAULTS.items():
        if key in data and data[key] == default:
            data.pop(key)


class JobCreate(Strict):
    model: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
    task: Name | DatasetTask
    compression: Compression = Field(default_factory=Compression)
    training: Training = Field(default_factory=Training)
    webhook_url: str | None = Field(default=None, max_length=2000)  # else the tenant's default, if any

    def fingerprint(self) -> str:
        """Hash of the normalized request: same meaning -> same hash, whatever the JSON spelling."""
        data = self.model_dump(mode="json")
        drop_added_defaults(data["compression"])
        if isinstance(self.task, str):
            data["task"] = normalized_task(self.task)
        data["training"]["budget"] = self.training.budget.strip().lower()
        data["model"] = self.model.strip()
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def normalized_task(name: str) -> str:
    """"SST-2", "sst2" and " Sst-2 " are one task (unknown names are left for validation to refuse)."""
    from xtc_core.errors import ConfigError
    from xtc_core.tasks import get_task  # torch-free

    try:
        return get_task(name).name
    except ConfigError:
        return name.strip().lower()


class ErrorInfo(BaseModel):
    code: str
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: clients switch on it")
    message: str
    details: list[dict[str, Any]] | None = None
    checks: dict[str, str] | None = None


class ErrorBody(BaseModel):
    """Every error answer: {"error": {"code": ..., "message": ...}}."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route can give."""
    what = {400: "Malformed request (a NUL byte, a bad Content-Length)", 401: "Missing or invalid API key",
            404: "Not found (or another tenant's)", 409: "Conflict with the current state",
            413: "Request body too large", 415: "Unsupported upload format",
            416: "The requested byte range is outside the file",
            422: "Invalid request (the error names the field)", 503: "A dependency is unavailable"}
    return {code: {"model": ErrorBody, "description": what[code]} for code in statuses}


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
