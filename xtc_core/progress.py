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
    stage_index: int = 0  # position of this stage among the run's stages (0-based)
    num_stages: int = 1

    @property
    def fraction(self) -> float:
        """Progress within the stage."""
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)

    @property
    def overall(self) -> float:
        """Progress of the whole run, counting stages as equal parts."""
        return min(1.0, (self.stage_index + self.fraction) / max(1, self.num_stages))


ProgressCallback = Callable[[ProgressEvent], None]
ShouldStop = Callable[[], bool]
