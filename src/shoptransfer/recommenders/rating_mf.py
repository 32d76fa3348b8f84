"""Biased matrix factorisation trained with squared error, and its variant whose item vectors
come from the item text read by the pretrained backbone.

- ``rating-mf`` (Koren, Bell & Volinsky, IEEE Computer 2009): ``r(u, i) = mean + b_u + b_i +
  p_u . q_i``; the loss is the squared error plus ``regularization * (b_u^2 + b_i^2 + |p_u|^2
  + |q_i|^2)`` over the rows of each rating in the batch, its strength chosen on validation
  from a list. Users and items without a training rating get the average row.
- ``rating-text-mf``: the same, with ``q_i = W t_i + q'_i`` and ``b_i = w . t_i + b'_i``,
  where ``t_i`` is the frozen backbone's embedding of item ``i``'s text (title, genres, ...)
  and ``q'_i``, ``b'_i`` are per-item corrections that start at 0. ``W`` is shared by all
  items, so what the ratings teach about one item's text carries over to items with few or no
  ratings: a cold item is predicted from its text alone.

Both train with the one :class:`~shoptransfer.training.Trainer` (AdamW, squared error) and
stop early on a validation share of the budget's ratings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data.ratings import RatingDomain
from shoptransfer.errors import ConfigError
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.layers import item_text_embeddings
from shoptransfer.recommenders.ratings import RatingPredictor, RatingRecipe, validation_split
from shoptransfer.training import (
    Classifier,
    Examples,
    Objective,
    Step,
    Trainer,
    TrainingSettings,
    trainable_parameter_count,
)


class RatingFactors(nn.Module):
    """``mean + b_u + b_i + p_u . q_i`` for a batch of (user, item) index pairs (``ids``);
    with ``text`` (one frozen row per item), item biases and vectors are mapped from it."""

    def __init__(
        self, n_users: int, n_items: int, factors: int, mean: float, text: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.user_factors = nn.Embedding(n_users, factors)
        self.item_factors = nn.Embedding(n_items, factors)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)
        nn.init.normal_(self.user_factors.weight, std=0.1)
        self.text_bias: nn.Linear | None = None
        self.text_factors: nn.Linear | None = None
        if text is None:
            nn.init.normal_(self.item_factors.weight, std=0.1)
        else:  # items start from their text alone; per-item corrections learn what it misses
            nn.init.zeros_(self.item_factors.weight)
            self.register_buffer("text", text)
            self.text_bias = nn.Linear(text.shape[1], 1)
            self.text_factors = nn.Linear(text.shape[1], factors, bias=False)
            nn.init.zeros_(self.text_bias.weight)
            nn.init.zeros_(self.text_bias.bias)

    def items(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Biases ``(n,)`` and vectors ``(n, factors)`` of ``items``."""
        bias, vectors = self.item_bias(items)[:, 0], self.item_factors(items)
        if self.text_bias is not None and self.text_factors is not None:
            text = self.text[items]
            bias = bias + self.text_bias(text)[:, 0]
            vectors = vectors + self.text_factors(text)
        return bias, vectors

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        users, items = batch["ids"][:, 0], batch["ids"][:, 1]
        item_bias, item_vectors = self.items(items)
        dot = (self.user_factors(users) * item_vectors).sum(dim=1)
        return (self.mean + self.user_bias(users)[:, 0] + item_bias + dot)[:, None]

    @torch.no_grad()
    def forget(self, users: np.ndarray, items: np.ndarray) -> None:
        """Give ``users`` and ``items`` (indices: those without a training rating, whose rows
        kept their start) the mean own bias and vector of the others: a model without data
        for a user or an item takes it for an average one. An item's text part stays."""
        for tables, rows in (
            ((self.user_bias, self.user_factors), users),
            ((self.item_bias, self.item_factors), items),
        ):
            unseen = torch.zeros(tables[0].num_embeddings, dtype=torch.bool)
            unseen[torch.from_numpy(rows)] = True
            if unseen.all() or not unseen.any():
                continue
            for table in tables:
                table.weight[unseen] = table.weight[~unseen].mean(dim=0)

    @torch.no_grad()
    def tables(self) -> dict[str, np.ndarray]:
        """Every user's and item's bias and vector (text already mapped in)."""
        item_bias, item_vectors = self.items(torch.arange(self.item_bias.num_embeddings))
        return {
            "user_bias": self.user_bias.weight[:, 0].numpy(),
            "item_bias": item_bias.numpy(),
            "user_factors": self.user_factors.weight.numpy(),
            "item_factors": item_vectors.numpy(),
        }


class FactorPenalty(Objective):
    """The L2 term of biased matrix factorisation: ``regularization`` times the mean over the
    batch of the squared own biases and vectors of each rating's user and item (for a model
    that reads text, the items' corrections to it), plus ``text_regularization`` times the
    squared weights that map the text."""

    def __init__(self, regularization: float, text_regularization: float = 0.0) -> None:
        super().__init__()
        self.regularization = regularization
        self.text_regularization = text_regularization
        self.last_metrics: dict[str, float] = {}

    def forward(self, step: Step) -> torch.Tensor:
        factors: RatingFactors = step.model.encoder  # type: ignore[assignment]
        users, items = step.source_batch["ids"][:, 0], step.source_batch["ids"][:, 1]
        squares = (
            factors.user_bias(users)[:, 0] ** 2
            + factors.item_bias(items)[:, 0] ** 2
            + (factors.user_factors(users) ** 2).sum(dim=1)
            + (factors.item_factors(items) ** 2).sum(dim=1)
        )
        penalty = self.regularization * squares.mean()
        if factors.text_bias is not None and factors.text_factors is not None:
            text = (factors.text_bias.weight**2).sum() + (factors.text_factors.weight**2).sum()
            penalty = penalty + self.text_regularization * text
        return penalty


def rating_examples(domain: RatingDomain) -> Examples:
    """(user, item) index pairs with their ratings."""
    pairs = np.stack([domain.user, domain.item], axis=1).astype(np.int64)
    return Examples(pairs, domain.rating.astype(np.float32))


@register_recipe
@dataclasses.dataclass
class RatingMF(RatingRecipe):
    name: ClassVar[str] = "rating-mf"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "biased matrix factorisation, squared error, early stopping"

    factors: int = option(32, "width of the user and item vectors", minimum=1)
    regularization: float | list[float] | tuple[float, ...] = option(
        (0.1, 0.3, 1.0),
        "L2 strength on the batch's user and item biases and vectors, or a list of them: each "
        "is trained and the one with the best validation RMSE kept",
    )
    learning_rate: float = option(0.01, "AdamW learning rate", above=0.0)
    batch_size: int = option(1024, "ratings per step", minimum=1)
    epochs: int = option(60, "most epochs (early stopping on validation RMSE)", minimum=1)
    patience: int = option(3, "epochs without a better validation RMSE before stopping", minimum=1)
    validation_fraction: float = option(
        0.1, "share of the budget's ratings held out for early stopping", above=0.0, below=1.0
    )

    def strengths(self) -> list[float]:
        """The L2 strengths to try."""
        value = self.regularization
        return [float(value)] if isinstance(value, int | float) else [float(v) for v in value]

    def validate(self, source: Any) -> None:
        super().validate(source)
        if not self.strengths() or min(self.strengths()) < 0:
            raise ConfigError(
                f"recipe '{self.name}': option 'regularization' is {self.regularization!r}; "
                "expected a list of one or more numbers >= 0"
            )

    def _fit(self, domain: RatingDomain, cache: Any) -> RatingPredictor:
        train, valid = validation_split(domain, self.validation_fraction, self.seed)
        mean = float(train.rating.mean())
        text = self.item_text(domain, cache)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=0.0,
            warmup_fraction=0.0,
            patience=self.patience,
            seed=self.seed,
            description=self.name,
            loss="mse",
        )
        best: tuple[float, float, RatingFactors] | None = None
        self.history_: dict[float, list[dict[str, float]]] = {}
        for strength in self.strengths():
            torch.manual_seed(self.seed)
            factors = RatingFactors(len(domain.users), len(domain.items), self.factors, mean, text)
            history = Trainer(settings).fit(
                Classifier(1, 1, factors, head=nn.Identity()),
                rating_examples(train),
                rating_examples(valid),
                objectives=[self.penalty(strength)],
            )
            self.history_[strength] = history
            rmse = min(record["validation_rmse"] for record in history)
            if best is None or rmse < best[0]:
                best = (rmse, strength, factors)
        assert best is not None
        self.regularization_, factors = best[1], best[2]
        factors.forget(
            np.flatnonzero(np.bincount(train.user, minlength=len(train.users)) == 0),
            np.flatnonzero(train.ratings_per_item() == 0),
        )
        trained = trainable_parameter_count(factors)
        return self.predictor(domain, mean, factors.tables(), trained)

    def item_text(self, domain: RatingDomain, cache: EmbeddingCache | None) -> torch.Tensor | None:
        """The frozen text embedding of every item (``None``: this recipe reads no text)."""
        return None

    def penalty(self, strength: float) -> FactorPenalty:
        """The L2 term at ``strength``."""
        return FactorPenalty(strength)


@register_recipe
@dataclasses.dataclass
class RatingTextMF(RatingMF):
    name: ClassVar[str] = "rating-text-mf"
    family: ClassVar[str] = "feature-based"
    description: ClassVar[str] = (
        "biased matrix factorisation whose item biases and vectors are mapped from the frozen "
        "backbone's embedding of the item text (cold items are predicted from their text)"
    )

    backbone: str = option("minilm-l6", "text backbone that embeds the item text (frozen)")
    text_max_length: int = option(64, "tokens of item text the backbone reads", minimum=1)
    text_regularization: float = option(
        0.01, "L2 strength on the weights that map the text to biases and vectors", minimum=0.0
    )

    def penalty(self, strength: float) -> FactorPenalty:
        return FactorPenalty(strength, self.text_regularization)

    def item_text(self, domain: RatingDomain, cache: EmbeddingCache | None) -> torch.Tensor:
        """The backbone's embeddings of the item texts, centred on their mean (what all items
        share says nothing about one of them) and scaled to unit length."""
        vectors = item_text_embeddings(
            self.backbone, self.text_max_length, domain.items, domain.item_text, cache
        ).astype(np.float64)
        vectors -= vectors.mean(axis=0)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        return torch.from_numpy(vectors.astype(np.float32))
