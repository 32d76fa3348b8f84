"""Regression: a number per text (a star rating, a price); RMSE decides, lower is better.

The source (optional) and the target are tables of texts with a column of numbers; a row with an
empty number is dropped and counted, a cell that is not a number is an error naming its line.
The target is split at random into a pool (budgets draw a count of examples, a fraction, or all
of it) and a test set fixed across seeds, unless a separate target test set is given. Metrics:
MAE, RMSE, Spearman's rho and R^2 on the test set.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from shoptransfer.data.domain import Domain
from shoptransfer.errors import DataError
from shoptransfer.evaluation.metrics import regression_metrics
from shoptransfer.evaluation.report import Column
from shoptransfer.heads import VALUE, Outputs
from shoptransfer.tasks.base import TaskData, register_task
from shoptransfer.tasks.held_out import HeldOutTask


@register_task
class RegressionTask(HeldOutTask):
    name: ClassVar[str] = "regression"
    primary_metric: ClassVar[str] = "rmse"
    higher_is_better: ClassVar[bool] = False
    columns: ClassVar[tuple[Column, ...]] = (
        Column("rmse", "RMSE", 1.0, 3),
        Column("mae", "MAE", 1.0, 3),
        Column("spearman", "Spearman", 1.0, 3),
        Column("r2", "R2", 1.0, 3),
    )

    def annotations(self, entry: Any) -> dict[str, Any]:
        return {"value": entry.value}

    def outputs(self, source: Domain | None, pool: Domain, test: Domain) -> Outputs:
        """A number; a DataError when the target's numbers are all one value (nothing to
        learn, and Spearman's rho and R^2 are undefined on the test set)."""
        values = np.unique(np.concatenate([pool.annotations[VALUE], test.annotations[VALUE]]))
        if len(values) < 2:
            raise DataError(
                f"{pool.where}: every target value in column '{self.config.target.value}' is "
                f"{values[0]:g}; expected numbers that vary"
            )
        return Outputs.value()

    def metrics(self, model: Any, test: Domain, data: TaskData) -> dict[str, Any]:
        return regression_metrics(test.annotations[VALUE], model.predict(test.inputs))
