"""GLUE metrics against hand-computed values and against sklearn/scipy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from xtc_core.errors import ConfigError
from xtc_core.metrics import compute_metrics, main_score

PREDS = [1, 0, 1, 1, 0, 0]
REFS = [1, 0, 0, 1, 1, 0]  # tp=2, tn=2, fp=1, fn=1


def test_hand_computed_classification_metrics():
    got = compute_metrics(["accuracy", "f1", "matthews_corr"], PREDS, REFS)
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 2tp / (2tp + fp + fn)
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert got["matthews_corr"] == pytest.approx(1 / 3)


def mcc(preds, refs) -> float:
    return compute_metrics(["matthews_corr"], preds, refs)["matthews_corr"]


def test_mcc_extremes_and_undefined():
    assert mcc([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1)
    assert mcc([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a collapsed model must not flood the eval logs with warnings
        assert mcc([1, 1, 1], [0, 1, 0]) == 0.0


def test_f1_positive_class_is_one():
    # Predicting everything as class 0 finds no positive: F1 0 even though accuracy is high.
    got = compute_metrics(["f1", "accuracy"], [0, 0, 0, 0], [0, 0, 0, 1])
    assert got == {"f1": 0.0, "accuracy": 0.75}


def test_hand_computed_correlations():
    got = compute_metrics(["pearson", "spearman"], [1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert got == pytest.approx({"pearson": 1.0, "spearman": 1.0})
    # x = [1,2,3], y = [1,3,2]: centred (-1,0,1) and (-1,1,0); r = 1 / (sqrt(2) sqrt(2)) = 0.5
    got = compute_metrics(["pearson", "spearman"], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert got == pytest.approx({"pearson": 0.5, "spearman": 0.5})
    # Spearman only sees ranks: a monotone but non-linear relation is a perfect 1.
    got = compute_metrics(["pearson", "spearman"], [1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 100.0])
    assert got["spearman"] == pytest.approx(1.0) and got["pearson"] < 1.0


def test_constant_predictions_score_zero_not_nan():
    got = compute_metrics(["pearson", "spearman"], [2.5, 2.5, 2.5], [0.0, 1.0, 5.0])
    assert got == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 2, 200)
    preds = np.where(rng.random(200) < 0.8, refs, 1 - refs)
    got = compute_metrics(["accuracy", "f1", "matthews_corr"], preds, refs)
    assert got["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert got["f1"] == pytest.approx(f1_score(refs, preds))
    assert got["matthews_corr"] == pytest.approx(matthews_corrcoef(refs, preds))

    scores = rng.uniform(0, 5, 300)
    noisy = scores + rng.normal(0, 1, 300)
    got = compute_metrics(["pearson", "spearman"], noisy, scores)
    assert got["pearson"] == pytest.approx(stats.pearsonr(noisy, scores)[0])
    assert got["spearman"] == pytest.approx(stats.spearmanr(noisy, scores)[0])


def test_multiclass_accuracy_and_mcc():
    rng = np.random.default_rng(3)
    refs = rng.integers(0, 3, 150)  # MNLI-like: three classes
    preds = np.where(rng.random(150) < 0.6, refs, rng.integers(0, 3, 150))
    got = compute_metrics(["accuracy", "matthews_corr"], preds, refs)
    assert got["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert got["matthews_corr"] == pytest.approx(matthews_corrcoef(refs, preds))


def test_results_are_plain_python_floats():
    got = compute_metrics(["accuracy", "f1", "matthews_corr", "pearson", "spearman"],
                          np.array([1, 0, 1]), np.array([1, 1, 0]))
    assert all(type(v) is float and math.isfinite(v) for v in got.values())


def test_mnli_is_scored_per_split():
    splits = {"dev_matched": ([0, 1, 2, 2], [0, 1, 2, 1]), "dev_mismatched": ([0, 0], [0, 1])}
    scores = {split: compute_metrics(["accuracy"], p, r) for split, (p, r) in splits.items()}
    assert scores == {"dev_matched": {"accuracy": 0.75}, "dev_mismatched": {"accuracy": 0.5}}


def test_bad_inputs():
    with pytest.raises(ConfigError, match="unknown metric"):
        compute_metrics(["bleu"], [1], [1])
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        compute_metrics(["accuracy"], [1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="1-D"):
        compute_metrics(["accuracy"], [[0.1, 0.9]], [1])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics(["accuracy"], [], [])


def test_main_score_is_the_first_metric():
    metrics = {"f1": 0.8, "accuracy": 0.7}
    assert main_score(metrics, ("f1", "accuracy")) == 0.8
    assert main_score(metrics, ["accuracy"]) == 0.7
    with pytest.raises(ConfigError, match="main metric 'pearson' missing"):
        main_score(metrics, ("pearson",))
