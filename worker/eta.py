"""A time-left estimate from measured rates: seconds per training step (per stage), seconds per dev
evaluation, and the steps and evaluations still ahead in this stage and the stages after it.

The previous estimate, elapsed / progress with every stage counted as an equal third, was several times
too high for most of a run: stages differ in length by 2x or more and loading dominates the first
minutes. Fed with every progress event (cheap: no I/O).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The training stages in the order xtc_core runs them; a run uses a suffix-closed subset of them.
STAGE_ORDER = ("finetune_teacher", "layer_reduction", "quantization")
# Relative cost of a step in each stage, for stages not yet measured (bench/results: 0.138, 0.145 and
# 0.159 s/step for fine-tuning, layer-reduction KD and quantization-aware KD on CPU at the quick preset).
STAGE_COST = {"finetune_teacher": 1.0, "layer_reduction": 1.05, "quantization": 1.15}
_STEP_FIELDS = {"finetune_teacher": "finetune_steps", "layer_reduction": "reduction_steps",
                "quantization": "quant_steps"}


def evals_between(done: int, total: int, every: int) -> int:
    """Dev evaluations the trainer still runs after step ``done``: every ``every`` steps and at the end."""
    if total <= done:
        return 0
    n = total // every - done // every
    return n + (0 if total % every == 0 else 1)


@dataclass
class EtaEstimator:
    stage_steps: dict[str, int]
    eval_every: int
    clock: Callable[[], float] = time.monotonic
    step_s: dict[str, float] = field(default_factory=dict)  # measured seconds per step, per stage
    eval_s: float | None = None  # measured seconds per selection evaluation
    _last: tuple[str, int, float] | None = None

    @classmethod
    def from_training(cls, training: Any) -> EtaEstimator:
        steps = {stage: int(getattr(training, name, 0) or 0) for stage, name in _STEP_FIELDS.items()}
        return cls(steps, max(1, int(getattr(training, "eval_every", 1) or 1)))

    def _measure(self, stage: str, step: int, now: float) -> None:
        last, self._last = self._last, (stage, step, now)
        if last is None or last[0] != stage or step <= last[1]:
            return  # a new stage or a resume: its first event has no interval to measure
        steps, dt = step - last[1], now - last[2]
        per_step = self.step_s.get(stage)
        evaluated = (step // self.eval_every > last[1] // self.eval_every
                     or step == self.stage_steps.get(stage))
        if evaluated and per_step is not None:
            # This interval held a dev evaluation: what exceeds the usual step time is its cost.
            sample = max(0.0, dt - steps * per_step)
            self.eval_s = sample if self.eval_s is None else 0.5 * self.eval_s + 0.5 * sample
            return
        if evaluated:
            return
        rate = dt / steps
        self.step_s[stage] = rate if per_step is None else 0.8 * per_step + 0.2 * rate

    def _scaled_rate(self, stage: str) -> float | None:
        """A stage not yet measured, timed from the latest measured one and the relative step costs."""
        if not self.step_s:
            return None
        measured = next(reversed(self.step_s))
        return self.step_s[measured] * STAGE_COST.get(stage, 1.0) / STAGE_COST.get(measured, 1.0)

    def update(self, event: Any) -> float | None:
        """Seconds left after this event, or None until a step rate has been measured."""
        now = self.clock()
        stage = event.stage
        if stage not in STAGE_ORDER:
            if stage == "export" and self.eval_s is not None:
                return round(2 * self.eval_s, 1)  # teacher and student on the dev set, then a write
            return 0.0 if stage == "done" else None
        total = int(event.total or self.stage_steps.get(stage, 0))
        self.stage_steps[stage] = total
        self._measure(stage, int(event.step), now)
        rate = self.step_s.get(stage) or self._scaled_rate(stage)
        if rate is None:
            return None
        eval_s = self.eval_s if self.eval_s is not None else 0.0
        left = (total - event.step) * rate + evals_between(int(event.step), total, self.eval_every) * eval_s
        later = STAGE_ORDER[STAGE_ORDER.index(stage) + 1:]
        remaining_stages = max(0, int(getattr(event, "num_stages", 1)) - int(getattr(event, "stage_index", 0))
                               - 1)
        for name in later[len(later) - remaining_stages:] if remaining_stages else ():
            steps = self.stage_steps.get(name, 0)
            # A stage not yet run is timed at the nearest measured rate (KD stages cost about the same).
            left += steps * (self.step_s.get(name) or self._scaled_rate(name) or rate) \
                + evals_between(0, steps, self.eval_every) * eval_s
        return round(left + 2 * eval_s, 1)  # plus the final evaluation of teacher and student
