"""What the rating-prediction recipes share (task 'rating'): the trained model as factor tables
(saved-model kind ``rating-factors``), the recipe base, and the validation split.

Every rating model, whatever trained it, predicts
``mean + user_bias[u] + item_bias[i] + user_factors[u] . item_factors[i]``, clipped to the
range of the training ratings (the biases baseline has factors of width 0; a model that reads
item text has its text already mapped into the item tables). A user or item the model has no
row for gets a bias and factors of 0.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from shoptransfer.data.ratings import RatingDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes.base import FitData, Recipe, SavedModel, register_model


@register_model
class RatingPredictor(SavedModel):
    """Biases and factors of users and items; ``item_ratings`` counts each item's ratings in
    the data the model was given (0: a cold item)."""

    kind = "rating-factors"

    def __init__(
        self,
        users: list[str],
        items: list[str],
        mean: float,
        tables: dict[str, np.ndarray],
        item_ratings: np.ndarray,
        rating_range: tuple[float, float],
        trained: int,
    ) -> None:
        self.users, self.items = list(users), list(items)
        self.mean = float(mean)
        self.user_bias = np.asarray(tables["user_bias"], dtype=np.float32)
        self.item_bias = np.asarray(tables["item_bias"], dtype=np.float32)
        self.user_factors = np.asarray(tables["user_factors"], dtype=np.float32)
        self.item_factors = np.asarray(tables["item_factors"], dtype=np.float32)
        self.item_ratings = np.asarray(item_ratings, dtype=np.int64)
        self.rating_range = (float(rating_range[0]), float(rating_range[1]))
        self.trained = int(trained)

    @property
    def trainable_parameters(self) -> int:
        return self.trained

    def predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings of (user index, item index) pairs; index -1: a user or item not known."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        known_user, known_item = users >= 0, items >= 0
        u, i = np.where(known_user, users, 0), np.where(known_item, items, 0)
        value = np.full(len(users), self.mean, dtype=np.float64)
        value += np.where(known_user, self.user_bias[u], 0.0)
        value += np.where(known_item, self.item_bias[i], 0.0)
        both = known_user & known_item
        if self.user_factors.shape[1]:
            dot = np.einsum("nk,nk->n", self.user_factors[u], self.item_factors[i])
            value += np.where(both, dot, 0.0)
        return np.clip(value, *self.rating_range)

    def predict(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """Ratings of (user id, item id) pairs, ids as in the data the model was trained on."""
        if len(users) != len(items):
            raise DataError(f"{len(users)} users but {len(items)} items; expected one of each")
        user_index = {u: k for k, u in enumerate(self.users)}
        item_index = {i: k for k, i in enumerate(self.items)}
        return self.predict_indices(
            np.array([user_index.get(str(u), -1) for u in users], dtype=np.int64),
            np.array([item_index.get(str(i), -1) for i in items], dtype=np.int64),
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "items": self.items,
            "mean": self.mean,
            "rating_range": list(self.rating_range),
            "trainable_parameters": self.trained,
        }

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        tables = {
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "item_ratings": self.item_ratings,
        }
        save_file(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tables.items()},
            str(folder / "rating.safetensors"),
        )
        return {}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], **context: Any) -> RatingPredictor:
        tables = {k: v.numpy() for k, v in load_file(str(folder / "rating.safetensors")).items()}
        return cls(
            metadata["users"],
            metadata["items"],
            metadata["mean"],
            tables,
            tables["item_ratings"],
            tuple(metadata["rating_range"]),  # type: ignore[arg-type]
            metadata["trainable_parameters"],
        )


def validation_split(
    domain: RatingDomain, fraction: float, seed: int
) -> tuple[RatingDomain, RatingDomain]:
    """``(train, validation)``: a seeded ``fraction`` of the budget's ratings for early stopping
    (at least one rating on each side)."""
    if len(domain) < 2:
        raise DataError(f"{domain.name}: {len(domain)} rating; early stopping needs at least 2")
    n_valid = min(len(domain) - 1, max(1, round(fraction * len(domain))))
    order = np.random.default_rng(seed).permutation(len(domain))
    return domain.subset(np.sort(order[n_valid:])), domain.subset(np.sort(order[:n_valid]))


@dataclasses.dataclass
class RatingRecipe(Recipe):
    """A recipe for rating prediction: ``fit`` reads the budget's ratings (``data.target``, a
    :class:`RatingDomain`) and returns a :class:`RatingPredictor`."""

    tasks: ClassVar[tuple[str, ...]] = ("rating",)
    uses_source: ClassVar[bool] = False

    def fit(self, data: FitData) -> RatingPredictor:
        domain = data.target
        if not isinstance(domain, RatingDomain):
            raise ConfigError(f"recipe '{self.name}' predicts ratings; it needs a rating domain")
        if not len(domain):
            raise DataError(f"recipe '{self.name}': no training ratings")
        self.validate(domain)
        return self._fit(domain, data.cache)

    @abstractmethod
    def _fit(self, domain: RatingDomain, cache: Any) -> RatingPredictor:
        """Train on ``domain``'s ratings (at least one)."""

    @staticmethod
    def predictor(
        domain: RatingDomain, mean: float, tables: dict[str, np.ndarray], trained: int
    ) -> RatingPredictor:
        """The trained tables as a :class:`RatingPredictor` for ``domain``'s users and items."""
        low, high = float(domain.rating.min()), float(domain.rating.max())
        return RatingPredictor(
            domain.users,
            domain.items,
            mean,
            tables,
            domain.ratings_per_item(),
            (low, high),
            trained,
        )
