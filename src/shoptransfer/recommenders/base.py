"""What every recommendation recipe shares: trained rankers, training examples from
histories, and the recipe base class (registered in the same registry as the text recipes).

A recommendation recipe's ``fit(source, target)`` reads :class:`InteractionDomain` s: the
optional ``source`` (another domain's histories, to pre-train on) and the ``target`` whose
training histories it learns from. It returns an :class:`ItemRanker`: scores of every item for
a batch of histories.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.metering import StageCache
from shoptransfer.recipes.base import (
    FitData,
    Recipe,
    SavedModel,
    load_saved_model,
    read_model_metadata,
)


class ItemRanker(SavedModel):
    """A trained recommender: a score for every item (column 0 pads) per history."""

    kind: ClassVar[str]
    n_items: int
    metadata_types: ClassVar[dict[str, Any]] = {"n_items": int}
    # how :meth:`contributions` weighs a history item's part in a recommendation
    explanation: ClassVar[str] = "none"

    @abstractmethod
    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        """A ``(len(histories), n_items + 1)`` tensor; higher means more likely next."""

    @property
    def trainable_parameters(self) -> int:
        return 0

    def _metadata(self) -> dict[str, Any]:
        return {"n_items": self.n_items}

    def contributions(self, history: np.ndarray, item: int) -> np.ndarray:
        """How much each history item speaks for recommending ``item`` (same order)."""
        return np.zeros(len(history))


def load_ranker(folder: str | Path, domain: InteractionDomain, cache: Any = None) -> ItemRanker:
    """Load a recommender saved for ``domain`` (its catalogue; a DataError when it changed)."""
    path, metadata = read_model_metadata(folder)
    if "n_items" not in metadata:
        raise DataError(f"{path}: not a recommendation model (kind {metadata['kind']!r})")
    if metadata["n_items"] != domain.n_items:
        raise DataError(
            f"{path}: the model ranks {metadata['n_items']} items but "
            f"'{domain.name}' has {domain.n_items}; was the data changed?"
        )
    model = load_saved_model(folder, domain=domain, cache=cache)
    assert isinstance(model, ItemRanker)
    return model


def padded_histories(histories: list[np.ndarray], max_length: int) -> np.ndarray:
    """Histories as rows of a left-padded int64 matrix keeping the last ``max_length`` items."""
    matrix = np.zeros((len(histories), max_length), dtype=np.int64)
    for row, history in enumerate(histories):
        tail = np.asarray(history[-max_length:], dtype=np.int64)
        if len(tail):
            matrix[row, max_length - len(tail) :] = tail
    return matrix


def next_item_examples(
    sequences: list[np.ndarray], max_length: int, per_sequence: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix of every sequence as (left-padded history, next item); only the latest
    ``per_sequence`` prefixes of each sequence when given."""
    histories, targets = [], []
    for sequence in sequences:
        first = 1 if per_sequence is None else max(1, len(sequence) - per_sequence)
        for end in range(first, len(sequence)):
            histories.append(sequence[max(0, end - max_length) : end])
            targets.append(int(sequence[end]))
    return padded_histories(histories, max_length), np.array(targets, dtype=np.int64)


def sequence_items(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every item of every sequence as (sequence index, item id), in order (both int64)."""
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), [len(s) for s in sequences])
    items = [np.asarray(s, dtype=np.int64) for s in sequences]
    return rows, np.concatenate(items) if items else np.zeros(0, dtype=np.int64)


def interaction_counts(domain: InteractionDomain) -> np.ndarray:
    """How often each item occurs in the training histories (index 0 pads)."""
    counts = np.zeros(domain.n_items + 1, dtype=np.float64)
    for sequence in domain.train:
        np.add.at(counts, sequence, 1.0)
    return counts


@dataclasses.dataclass
class RecommendationRecipe(Recipe):
    """A recipe for next-item recommendation on interaction domains."""

    tasks: ClassVar[tuple[str, ...]] = ("recommendation",)
    uses_source: ClassVar[bool] = False

    def fit(self, data: FitData) -> ItemRanker:
        """Train on the target's training histories (``data.target``; with only a source
        given, the source's) and on ``data.source`` when the recipe pre-trains on it.

        ``data.cache`` holds frozen text embeddings; ``data.stages`` holds the run's trained
        stages (a pre-training on the source) that fits with the same settings reuse, each
        charged their cost. Without it nothing is reused.
        """
        self.validate(data.source)
        target = self._target(data.source, data.target)
        return self._fit(target, data.source, data.cache, data.stages)

    @abstractmethod
    def _fit(
        self, domain: InteractionDomain, source: Any, cache: Any, stages: StageCache | None
    ) -> ItemRanker:
        """Train on ``domain`` (the target, checked to have training interactions)."""

    def _target(self, source: Any, target: Any) -> InteractionDomain:
        domain = target if target is not None else source
        if not isinstance(domain, InteractionDomain):
            raise ConfigError(
                f"recipe '{self.name}' recommends items; it needs interaction domains"
            )
        if not any(len(s) for s in domain.train):
            raise DataError(f"{domain.source or domain.name}: no training interactions")
        return domain
