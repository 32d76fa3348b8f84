"""Classification metrics in plain numpy (checked against scikit-learn in the tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``matrix[i, j]`` counts examples of true class ``i`` predicted as class ``j``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro precision / recall / F1, a per-class report and the confusion matrix.

    Macro averages run over every class of ``classes``; a class with no predictions (or no true
    examples) scores 0 for precision (or recall), as scikit-learn does with ``zero_division=0``.
    """
    n = len(classes)
    matrix = confusion_matrix(y_true, y_pred, n)
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, actual)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = matrix.sum()
    return {
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            cls: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, cls in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
        "n_examples": int(total),
    }
