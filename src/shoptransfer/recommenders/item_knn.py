"""Item-kNN (Sarwar et al., WWW 2001): a scratch baseline without a training loop.

Items are similar when the same users have them (cosine over the users x items incidence,
shrunk for rare co-occurrences); an item's score is the summed similarity to the history's
items, each item keeping its ``neighbours`` most similar items.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import sparse

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.errors import DataError
from shoptransfer.metering import StageCache
from shoptransfer.recipes.base import option, register_model, register_recipe
from shoptransfer.recommenders.base import (
    ItemRanker,
    RecommendationRecipe,
    sequence_items,
)


def incidence(sequences: Sequence[np.ndarray], n_items: int) -> sparse.csr_matrix:
    """A ``(len(sequences), n_items + 1)`` matrix: how often each item is in each sequence."""
    rows, items = sequence_items(sequences)
    return sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, items)),
        shape=(len(sequences), n_items + 1),
    )


@register_model
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
    def load(  # type: ignore[override]
        cls, folder: Path, metadata: dict[str, Any], domain: Any = None, cache: Any = None
    ) -> ItemRanker:
        path = folder / "similarity.npz"
        if not path.is_file():
            raise DataError(f"{path}: file not found; the saved model is incomplete")
        size = metadata["n_items"] + 1
        try:
            with np.load(path, allow_pickle=False) as parts:
                matrix = sparse.csr_matrix(
                    (parts["data"], parts["indices"], parts["indptr"]), shape=(size, size)
                )
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            detail = " ".join(str(exc).split())[:120]
            raise DataError(
                f"{path}: not a readable similarity matrix of {size - 1} items ({detail}); "
                "the file is damaged"
            ) from None
        return cls(matrix)

    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        picks = incidence(histories, self.n_items)
        return torch.from_numpy(np.asarray((picks @ self.similarity).todense(), np.float32))


@register_recipe
@dataclasses.dataclass
class ItemKNN(RecommendationRecipe):
    name: ClassVar[str] = "item-knn"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "items co-occurring with the history's items (cosine)"

    neighbours: int = option(100, "most similar items each item keeps")
    shrink: float = option(10.0, "added to the cosine denominator: damps rare co-occurrences")

    def _fit(
        self, domain: InteractionDomain, source: Any, cache: Any, stages: StageCache | None
    ) -> ItemRanker:
        users_items = incidence(domain.train, domain.n_items)
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
