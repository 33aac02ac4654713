"""The ETA from measured rates, fed a fake run with a fake clock: it must track the real time left."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from worker.eta import EtaEstimator, evals_between


@dataclass
class Event:
    stage: str
    step: int
    total: int
    stage_index: int = 0
    num_stages: int = 1


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(plan, step_s, eval_s, eval_every, load_s=60.0, final_s=None):
    """Yields (event, true seconds left) for a run: load, then each stage's steps with evaluations."""
    final_s = 2 * eval_s if final_s is None else final_s
    timeline = []  # (time, event)
    t = load_s
    timeline.append((0.0, Event("load", 0, 0, 0, len(plan))))
    for i, (stage, steps) in enumerate(plan):
        timeline.append((t, Event(stage, 0, steps, i, len(plan))))
        for step in range(1, steps + 1):
            t += step_s[stage]
            if step % eval_every == 0 or step == steps:
                t += eval_s
            timeline.append((t, Event(stage, step, steps, i, len(plan))))
    timeline.append((t, Event("export", 0, 0, len(plan) - 1, len(plan))))
    end = t + final_s
    timeline.append((end, Event("done", 1, 1, len(plan) - 1, len(plan))))
    return [(when, event, end - when) for when, event in timeline]


def test_evals_between():
    assert evals_between(0, 400, 200) == 2
    assert evals_between(0, 450, 200) == 3  # 200, 400 and the last step
    assert evals_between(199, 200, 200) == 1 and evals_between(200, 200, 200) == 0


@pytest.mark.parametrize("plan", [
    [("finetune_teacher", 600), ("layer_reduction", 400), ("quantization", 800)],
    [("layer_reduction", 400), ("quantization", 800)],
    [("quantization", 2000)],
])
def test_eta_tracks_the_real_time_left(plan):
    # Step times as measured on CPU, a little off the estimator's priors on purpose.
    step_s = {"finetune_teacher": 0.14, "layer_reduction": 0.16, "quantization": 0.17}
    clock = Clock()
    estimator = EtaEstimator({s: n for s, n in plan}, eval_every=200, clock=clock)
    errors, old_errors = [], []  # relative errors while more than 30 s are left
    started = None
    run = simulate(plan, step_s, eval_s=8.0, eval_every=200)
    for when, event, truth in run:
        clock.t = when
        eta = estimator.update(event)
        if event.stage == "load":
            assert eta is None  # nothing measured yet: no number rather than a made-up one
            continue
        if started is None:
            started = when
        if eta is None or truth < 30:
            continue
        errors.append(abs(eta - truth) / truth)
        # The old estimate for comparison: elapsed / progress, stages as equal parts.
        overall = (event.stage_index + (event.step / event.total if event.total else 0)) / event.num_stages
        if overall > 0.05 and event.stage in dict(plan):
            old_errors.append(abs(when / overall * (1 - overall) - truth) / truth)
    errors.sort()
    median, p90 = errors[len(errors) // 2], errors[int(len(errors) * 0.9)]
    assert median < 0.15 and p90 < 0.35, (median, p90)
    if len(plan) > 1:
        assert median < sorted(old_errors)[len(old_errors) // 2]  # better than equal thirds
    assert estimator.update(Event("done", 1, 1)) == 0.0


def test_a_resumed_stage_does_not_count_the_restart_gap():
    clock = Clock()
    estimator = EtaEstimator({"layer_reduction": 100, "quantization": 100}, eval_every=1000, clock=clock)
    for step in range(0, 41):
        clock.t = step * 1.0
        estimator.update(Event("layer_reduction", step, 100, 0, 2))
    clock.t = 500.0  # the worker died; a new one resumes at step 40 much later
    eta = estimator.update(Event("layer_reduction", 40, 100, 0, 2))
    clock.t = 501.0
    eta = estimator.update(Event("layer_reduction", 41, 100, 0, 2))
    assert eta == pytest.approx(59 + 100 * 1.15 / 1.05, rel=0.02)  # quantization steps cost a bit more
