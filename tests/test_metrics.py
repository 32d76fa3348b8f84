from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from shoptransfer.evaluation import classification_metrics


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 6))
    y_true = rng.integers(0, n_classes, size=200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, n_classes, size=200))
    classes = [f"c{i}" for i in range(n_classes)]
    out = classification_metrics(y_true, y_pred, classes)
    labels = list(range(n_classes))
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for name, fn in (
        ("macro_precision", skm.precision_score),
        ("macro_recall", skm.recall_score),
        ("macro_f1", skm.f1_score),
    ):
        expected = fn(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        assert out[name] == pytest.approx(expected)
    assert out["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    per_class_f1 = skm.f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert [out["per_class"][c]["f1"] for c in classes] == pytest.approx(per_class_f1)


def test_class_never_predicted_scores_zero_precision() -> None:
    out = classification_metrics(np.array([0, 1, 2]), np.array([0, 0, 0]), ["a", "b", "c"])
    assert out["per_class"]["b"]["precision"] == 0.0
    assert out["macro_f1"] == pytest.approx(
        skm.f1_score([0, 1, 2], [0, 0, 0], average="macro", zero_division=0)
    )


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_scipy_and_scikit_learn(seed: int) -> None:
    from scipy import stats

    from shoptransfer.evaluation import regression_metrics

    rng = np.random.default_rng(seed)
    y_true = rng.integers(1, 6, size=120).astype(float)  # star ratings: many ties
    y_pred = y_true + rng.normal(0, 1.0, size=120)
    if seed % 2:  # ties in the predictions too
        y_pred = np.round(y_pred)
    out = regression_metrics(y_true, y_pred)
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert out["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    assert out["r2"] == pytest.approx(skm.r2_score(y_true, y_pred))
    assert out["spearman"] == pytest.approx(stats.spearmanr(y_true, y_pred).statistic)
    assert out["n_examples"] == 120


def test_average_ranks_match_scipy_and_degenerate_cases_are_defined() -> None:
    from scipy import stats

    from shoptransfer.evaluation.metrics import average_ranks, regression_metrics

    values = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    assert average_ranks(values).tolist() == stats.rankdata(values).tolist()
    constant = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    assert constant["spearman"] == 0.0  # no ranking to correlate (SciPy: nan)
    assert constant["r2"] == pytest.approx(skm.r2_score([1, 2, 3], [2, 2, 2]))
    exact = regression_metrics(np.array([4.0, 4.0]), np.array([4.0, 4.0]))
    assert exact["r2"] == skm.r2_score([4.0, 4.0], [4.0, 4.0]) == 1.0
