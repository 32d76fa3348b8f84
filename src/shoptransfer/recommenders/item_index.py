"""Top-k items of a dot-product recommender: exact (every item scored) or approximate, through
an inverted-file index of FAISS (Johnson, Douze & Jégou, "Billion-scale similarity search with
GPUs", 2017; package ``faiss-cpu``, the optional extra ``[ann]``).

The approximate index clusters the item vectors into ``lists`` cells by k-means (inner-product
metric: the cells are the items' nearest centroids by dot product) and scores a query against
the items of its ``probes`` best cells only: about ``probes / lists`` of the catalogue. Items
are stored uncompressed, so a found item's score is exact; only items in unvisited cells can
be missed. The index is built when a model is loaded for recommending (seconds for a million
items, see ``benchmarks/results/catalogue_scale.md``), not saved with the model: the model
folder stays free of FAISS's format and a changed setting needs no rebuild step.

``index: auto`` (the default) is exact below :data:`APPROXIMATE_FROM` items and approximate
from there when FAISS is installed.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import time
from typing import Any

import numpy as np
import torch

from shoptransfer.errors import ConfigError

INDEX_KINDS = ("auto", "exact", "approximate")
APPROXIMATE_FROM = 100_000  # items from which ``auto`` picks the approximate index
INSTALL_HINT = "pip install 'shoptransfer[ann]' (the package faiss-cpu)"


def faiss_module() -> Any:
    """FAISS, or a ConfigError saying what to install."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ConfigError(
            f"index 'approximate' needs FAISS, which is not installed: {INSTALL_HINT}"
        ) from None


def faiss_installed() -> bool:
    return importlib.util.find_spec("faiss") is not None


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """How a recommender finds its top items (the ``--index`` flags of ``recommend`` and
    ``serve``): ``kind`` of :data:`INDEX_KINDS`; ``lists`` cells (0: 2 x sqrt(items)) and
    ``probes`` cells visited a query (0: 1/64 of the cells, at least 32) when approximate."""

    kind: str = "auto"
    lists: int = 0
    probes: int = 0

    def check(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"--index '{self.kind}'; expected one of {list(INDEX_KINDS)}")
        if self.lists < 0 or self.probes < 0:
            raise ConfigError("--index-lists and --index-probes must be >= 0 (0: the default)")

    def approximate(self, n_items: int) -> bool:
        """Whether a catalogue of ``n_items`` gets the approximate index."""
        self.check()
        if self.kind == "auto":
            return n_items >= APPROXIMATE_FROM and faiss_installed()
        return self.kind == "approximate"


class ApproximateIndex:
    """An inverted-file FAISS index over item vectors (row 0 pads and is never returned)."""

    def __init__(self, items: torch.Tensor | np.ndarray, lists: int = 0, probes: int = 0):
        faiss = faiss_module()
        vectors = np.ascontiguousarray(np.asarray(items, dtype=np.float32)[1:])
        n, dim = vectors.shape
        self.lists = lists or max(1, min(n // 39, round(2 * math.sqrt(n))))
        self.probes = min(self.lists, probes or max(32, self.lists // 64))
        started = time.perf_counter()
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, self.lists, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = 0
        # k-means on a sample of 64 items a cell
        sample = np.random.default_rng(0).permutation(n)[: 64 * self.lists]
        self.index.train(vectors[np.sort(sample)])
        self.index.add(vectors)
        self.index.nprobe = self.probes
        self.build_seconds = time.perf_counter() - started
        self.n_items = n

    @property
    def size_bytes(self) -> int:
        """Bytes of the index: the item vectors, their ids and the centroids."""
        dim = self.index.d
        return self.n_items * (dim * 4 + 8) + self.lists * dim * 4

    def search(self, queries: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items of each query by dot product: (scores, item ids from 1), best
        first; an id of 0 marks a slot the visited cells could not fill."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        scores, ids = self.index.search(queries, min(k, self.n_items))
        return scores, ids + 1  # FAISS's -1 (not found) becomes 0, the padding row


def exact_top(
    queries: torch.Tensor, items: torch.Tensor, k: int, item_batch_size: int = 65_536
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items (ids from 1) of each query by dot product, scoring every item
    ``item_batch_size`` at a time and keeping a running top-k."""
    best_scores = torch.full((len(queries), 0), -torch.inf)
    best_ids = torch.zeros((len(queries), 0), dtype=torch.int64)
    for first in range(1, len(items), item_batch_size):
        last = min(first + item_batch_size, len(items))
        scores = queries @ items[first:last].T
        top = torch.topk(scores, min(k, last - first), dim=1)
        best_scores = torch.cat([best_scores, top.values], dim=1)
        best_ids = torch.cat([best_ids, top.indices + first], dim=1)
        keep = torch.topk(best_scores, min(k, best_scores.shape[1]), dim=1).indices
        best_scores, best_ids = best_scores.gather(1, keep), best_ids.gather(1, keep)
    return best_scores, best_ids
