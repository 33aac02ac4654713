"""Progress reporting: the library calls back; it never knows who listens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # "load" | "finetune_teacher" | "layer_reduction" | "quantization" | "export" | "done"
    step: int
    total: int
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


ProgressCallback = Callable[[ProgressEvent], None]
ShouldStop = Callable[[], bool]
