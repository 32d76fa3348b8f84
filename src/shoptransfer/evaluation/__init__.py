"""Metrics and comparisons."""

from shoptransfer.evaluation.metrics import (
    classification_metrics,
    confusion_matrix,
    regression_metrics,
)

__all__ = ["classification_metrics", "confusion_matrix", "regression_metrics"]
