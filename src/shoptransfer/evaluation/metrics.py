"""Classification and regression metrics in plain numpy (checked against scikit-learn and
SciPy in the tests)."""

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


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1 to n, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # runs of equal values: each gets the mean of the positions it spans (1-based)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Mean absolute error, root mean squared error, Spearman's rho and R^2.

    Spearman's rho is the Pearson correlation of the average ranks (ties share a rank, as in
    ``scipy.stats.spearmanr``); where either side is constant it is 0 (SciPy: undefined).
    R^2 is ``1 - SS_res / SS_tot``; with constant true values it is 1 for a perfect
    prediction and 0 otherwise, as scikit-learn's ``r2_score`` does.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    if not len(y_true):
        raise ValueError("no examples to score")
    error = y_pred - y_true
    residual = float((error**2).sum())
    total = float(((y_true - y_true.mean()) ** 2).sum())
    perfect = 1.0 if residual == 0 else 0.0
    r2 = 1.0 - residual / total if total > 0 else perfect
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "spearman": _pearson(average_ranks(y_true), average_ranks(y_pred)),
        "r2": r2,
        "n_examples": int(len(y_true)),
    }
