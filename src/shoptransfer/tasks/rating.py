"""Rating prediction: a (user, item) pair's rating, squared error; RMSE decides, lower is better.

The target's ratings are split once (``split_seed``, fixed across seeds) into a pool and a test
set: at random by default — the protocol of the published MovieLens tables, so numbers compare
— or by time (the latest ratings as test, where items first rated late are new items). A budget
draws a seeded share (or count) of the pool's ratings; a recipe that early-stops holds out part
of that draw for validation, never test ratings. The prior knowledge is the text backbone that
reads the item catalogue: there is no source domain.

Metrics on the test set: RMSE, MAE, Spearman's rho, R^2, and the RMSE on the test ratings of
*cold items* — items without a rating in the budget's draw — with their count.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data.ratings import RatingDomain, read_rating_domain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.metrics import regression_metrics
from shoptransfer.evaluation.report import Column
from shoptransfer.tasks.base import Task, TaskData, register_task


@register_task
class RatingTask(Task):
    name: ClassVar[str] = "rating"
    primary_metric: ClassVar[str] = "rmse"
    higher_is_better: ClassVar[bool] = False
    budget_header: ClassVar[str] = "ratings"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("rmse", "RMSE", 1.0, 4),
        Column("mae", "MAE", 1.0, 4),
        Column("cold_items_rmse", "RMSE cold items", 1.0, 4),
    )

    def prepare(self, cache: EmbeddingCache) -> TaskData:
        config = self.config
        target = read_rating_domain(config.target)
        if len(target) < 2:
            raise DataError(f"{target.source}: {len(target)} rating; expected at least 2")
        pool, test = target.split(config.test_fraction, config.split_seed, config.split)
        description = {
            "target": target.summary(),
            "target_pool": pool.summary(),
            "target_test": test.summary(),
        }
        return TaskData(None, pool, test, None, None, description)

    def check(self, data: TaskData, recipes: list[Any]) -> None:
        super().check(data, recipes)
        too_large = [b for b in self.config.budgets if isinstance(b, int) and b > len(data.pool)]
        if too_large:
            raise ConfigError(
                f"budgets: {too_large} training ratings asked for, but the pool has "
                f"{len(data.pool)}"
            )
        for recipe in recipes:
            recipe.validate(data.pool)

    def draw(self, data: TaskData, budget: Any, seed: int) -> RatingDomain | None:
        if budget == "all":
            return data.pool
        if budget == 0:
            return None
        return data.pool.sample(budget, seed)

    def evaluate(self, model: Any, data: TaskData, trained_on: Any = None) -> dict[str, Any]:
        test: RatingDomain = data.test
        predicted = model.predict_indices(test.user, test.item)
        metrics = regression_metrics(test.rating, predicted)
        cold = model.item_ratings[test.item] == 0
        metrics["cold_test_ratings"] = int(cold.sum())
        if cold.any():
            error = predicted[cold] - test.rating[cold]
            metrics["cold_items_rmse"] = float(np.sqrt(np.mean(error**2)))
        return {"metrics": metrics}
