"""The official GLUE metrics, as plain Python floats. Torch-free.

| task | metrics (main first) |
|---|---|
| CoLA | matthews_corr |
| SST-2, QNLI, RTE, WNLI | accuracy |
| MRPC, QQP | f1 (positive class 1), accuracy |
| STS-B | pearson, spearman |
| MNLI | accuracy, reported per dev split: call ``compute_metrics`` once for "dev_matched" and once
  for "dev_mismatched" (GLUE reports both; matched is the usual model-selection score) |

Metrics are fractions in [0, 1] (correlations in [-1, 1]), not percentages.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from .errors import ConfigError


def _accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(np.mean(predictions == references))


def _f1(predictions: np.ndarray, references: np.ndarray) -> float:
    # GLUE's F1 is binary with class 1 as positive; 0 (not a warning) when there is no positive at all.
    return float(
        f1_score(references, predictions, pos_label=1, average="binary", labels=[0, 1], zero_division=0)
    )


def _matthews(predictions: np.ndarray, references: np.ndarray) -> float:
    # sklearn returns 0 when MCC is undefined (a single class) but warns each time: an eval loop
    # on a collapsed model would flood the logs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(matthews_corrcoef(references, predictions))


def _correlation(
    fn: Callable[..., object],
) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(predictions: np.ndarray, references: np.ndarray) -> float:
        predictions = predictions.astype(np.float64)
        references = references.astype(np.float64)
        # Undefined when either side is constant (e.g. a collapsed model early in training). scipy
        # returns NaN, which would poison best-checkpoint comparisons; 0 means "no correlation",
        # the same convention sklearn uses for an undefined MCC.
        if len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(fn(predictions, references)[0])
        return 0.0 if np.isnan(value) else value

    return metric


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_corr": _matthews,
    "pearson": _correlation(stats.pearsonr),
    "spearman": _correlation(stats.spearmanr),
}

_CLASS_METRICS = {"accuracy", "f1", "matthews_corr"}


def compute_metrics(
    metric_names: Sequence[str],
    predictions: Sequence[float] | np.ndarray,
    references: Sequence[float] | np.ndarray,
) -> dict[str, float]:
    """{name: value} for each metric. Predictions are class indices (classification) or scores.

    For MNLI call it once per dev split (matched, mismatched) and keep both results.
    """
    unknown = [name for name in metric_names if name not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if preds.ndim != 1 or refs.ndim != 1:
        raise ValueError(
            f"predictions and references must be 1-D (argmax logits first), got shapes {preds.shape} "
            f"and {refs.shape}"
        )
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    if len(preds) == 0:
        raise ValueError("no predictions to score")
    results = {}
    for name in metric_names:
        if name in _CLASS_METRICS:
            results[name] = METRICS[name](preds.astype(np.int64), refs.astype(np.int64))
        else:
            results[name] = METRICS[name](preds, refs)
    return results


def main_score(metrics: dict[str, float], names: Sequence[str]) -> float:
    """The score used to pick the best checkpoint: the task's main (first) metric."""
    if not names:
        raise ConfigError("no metric names given")
    if names[0] not in metrics:
        raise ConfigError(f"main metric {names[0]!r} missing from the results ({', '.join(metrics)})")
    return float(metrics[names[0]])
