"""The biases baseline of rating prediction: ``mean + b_u + b_i``.

The biases minimise ``sum (r - mean - b_u - b_i)^2 + user_regularization sum b_u^2 +
item_regularization sum b_i^2``, found by alternating least squares: with the user biases fixed,
each item bias has a closed form (and the other way round); a few rounds converge (Koren,
"Factor in the neighbors", TKDD 2010, section 2.1). Scratch baseline: no training loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from shoptransfer.data.ratings import RatingDomain
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.ratings import RatingPredictor, RatingRecipe


@register_recipe
@dataclasses.dataclass
class RatingBiases(RatingRecipe):
    name: ClassVar[str] = "rating-biases"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "global mean + regularised user and item biases (ALS)"

    user_regularization: float = option(15.0, "L2 strength of the user biases", minimum=0.0)
    item_regularization: float = option(10.0, "L2 strength of the item biases", minimum=0.0)
    rounds: int = option(10, "alternating least-squares rounds", minimum=1)

    def _fit(self, domain: RatingDomain, cache: Any) -> RatingPredictor:
        users, items = domain.user, domain.item
        mean = float(domain.rating.mean())
        residual = domain.rating.astype(np.float64) - mean
        n_users, n_items = len(domain.users), len(domain.items)
        user_count = np.bincount(users, minlength=n_users)
        item_count = np.bincount(items, minlength=n_items)
        user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
        for _ in range(self.rounds):
            item_sum = np.bincount(items, residual - user_bias[users], minlength=n_items)
            item_bias = item_sum / np.maximum(item_count + self.item_regularization, 1e-9)
            user_sum = np.bincount(users, residual - item_bias[items], minlength=n_users)
            user_bias = user_sum / np.maximum(user_count + self.user_regularization, 1e-9)
        tables = {
            "user_bias": user_bias,
            "item_bias": item_bias,
            "user_factors": np.zeros((n_users, 0)),
            "item_factors": np.zeros((n_items, 0)),
        }
        trained = int((user_count > 0).sum() + (item_count > 0).sum()) + 1
        return self.predictor(domain, mean, tables, trained)
