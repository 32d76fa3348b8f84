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
