"""Scratch baselines without training loops: most popular items, and item-kNN.

Item-kNN (Sarwar et al., WWW 2001): items are similar when the same users have them; an item's
score is the summed cosine similarity to the history's items, each item keeping its
``neighbours`` most similar items.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy import sparse

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.base import (
    ItemRanker,
    RecommendationRecipe,
    interaction_counts,
    register_ranker,
)


@register_ranker
class PopularityRanker(ItemRanker):
    kind = "popularity"

    def __init__(self, counts: np.ndarray) -> None:
        self.n_items = len(counts) - 1
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        return self.counts.expand(len(histories), -1)

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        save_file({"counts": self.counts}, str(folder / "ranker.safetensors"))
        return {}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], domain: Any, cache: Any) -> ItemRanker:
        counts = load_file(str(folder / "ranker.safetensors"))["counts"]
        return cls(counts.numpy())


@register_recipe
@dataclasses.dataclass
class Popularity(RecommendationRecipe):
    name: ClassVar[str] = "popularity"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "the items most often in the target's training histories"

    def fit(
        self,
        source: InteractionDomain | None,
        target: InteractionDomain | None = None,
        cache: Any = None,
        unlabeled: Any = None,
    ) -> ItemRanker:
        return PopularityRanker(interaction_counts(self._target(source, target)))


@register_ranker
class ItemKNNRanker(ItemRanker):
    kind = "item-knn"
    explanation = "item-kNN similarity of the history item to the recommended one"

    def __init__(self, similarity: sparse.csr_matrix) -> None:
        self.n_items = similarity.shape[0] - 1
        self.similarity = similarity

    def contributions(self, history: np.ndarray, item: int) -> np.ndarray:
        return np.asarray(self.similarity[np.asarray(history), item].todense()).ravel()

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        m = self.similarity
        with open(folder / "similarity.npz", "wb") as handle:
            np.savez(handle, data=m.data, indices=m.indices, indptr=m.indptr, shape=m.shape)
        return {}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], domain: Any, cache: Any) -> ItemRanker:
        with np.load(folder / "similarity.npz", allow_pickle=False) as parts:
            matrix = sparse.csr_matrix(
                (parts["data"], parts["indices"], parts["indptr"]), shape=tuple(parts["shape"])
            )
        return cls(matrix)

    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        columns = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories] or [[]])
        picks = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, columns.astype(np.int64))),
            shape=(len(histories), self.n_items + 1),
        )
        return torch.from_numpy(np.asarray((picks @ self.similarity).todense(), np.float32))


@register_recipe
@dataclasses.dataclass
class ItemKNN(RecommendationRecipe):
    name: ClassVar[str] = "item-knn"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "items co-occurring with the history's items (cosine)"

    neighbours: int = option(100, "most similar items each item keeps")
    shrink: float = option(10.0, "added to the cosine denominator: damps rare co-occurrences")

    def fit(
        self,
        source: InteractionDomain | None,
        target: InteractionDomain | None = None,
        cache: Any = None,
        unlabeled: Any = None,
    ) -> ItemRanker:
        domain = self._target(source, target)
        rows = np.repeat(np.arange(len(domain.train)), [len(s) for s in domain.train])
        columns = np.concatenate([s for s in domain.train if len(s)])
        users_items = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, columns)),
            shape=(len(domain.train), domain.n_items + 1),
        )
        users_items.data[:] = 1.0  # repeats count once
        co = (users_items.T @ users_items).tocsr().astype(np.float32)
        norms = np.sqrt(co.diagonal())
        pairs = co.tocoo()
        off_diagonal = pairs.row != pairs.col
        row, col = pairs.row[off_diagonal], pairs.col[off_diagonal]
        cosine = pairs.data[off_diagonal] / (norms[row] * norms[col] + self.shrink)
        similarity = sparse.csr_matrix((cosine.astype(np.float32), (row, col)), shape=co.shape)
        return ItemKNNRanker(_keep_top(similarity, self.neighbours))


def _keep_top(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """Each row's ``k`` largest entries."""
    matrix = matrix.tocsr()
    data, indices, indptr = [], [], [0]
    for row in range(matrix.shape[0]):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        values, columns = matrix.data[start:stop], matrix.indices[start:stop]
        if len(values) > k:
            top = np.argpartition(-values, k)[:k]
            values, columns = values[top], columns[top]
        data.append(values)
        indices.append(columns)
        indptr.append(indptr[-1] + len(values))
    return sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=matrix.shape
    )
