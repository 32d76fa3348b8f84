"""Cross-modal retrieval metrics: each query has one matching candidate (its own pair).

``similarity[i, j]`` scores query ``i`` against candidate ``j``; the match of query ``i`` is
candidate ``i`` (a title and its product's photo). The match's rank is the number of
candidates scored above it plus half of those tied with it (the expected rank when ties are
broken at random, as in :mod:`shoptransfer.evaluation.ranking`), so a model that scores
everything alike gets no credit. Recall@K is the share of queries whose match ranks below K.

Among N candidates, searching a large held-out set is split into disjoint blocks of N pairs
(:func:`recall_in_blocks`): each query ranks the candidates of its own block, so the number
reported is "Recall@K among N candidates" whatever the size of the held-out set. Pairs that
fill no whole block are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

KS = (1, 5, 10)


def match_ranks(similarity: np.ndarray) -> np.ndarray:
    """0-based rank of each query's match (candidate ``i`` for query ``i``), ties counted half."""
    scores = np.asarray(similarity, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(f"a square, non-empty similarity matrix is needed, not {scores.shape}")
    match = np.diag(scores)[:, None]
    above = (scores > match).sum(axis=1)
    tied = (scores == match).sum(axis=1) - 1  # the match itself is not a tie
    return above + tied / 2


def recall_at(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@K for each K of ``ks`` (the share of ranks below K), and the mean reciprocal
    rank (``mrr``: the mean of 1 / (rank + 1))."""
    ranks = np.asarray(ranks, dtype=np.float64)
    metrics = {f"recall@{k}": float(np.mean(ranks < k)) for k in ks}
    metrics["mrr"] = float(np.mean(1.0 / (ranks + 1.0)))
    return metrics


def retrieval_metrics(similarity: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@K and MRR of one square similarity matrix (query ``i`` matches candidate ``i``)."""
    return recall_at(match_ranks(similarity), ks)


def blocks(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Disjoint blocks of ``size`` indices of ``range(count)``, in a seeded random order; the
    remainder (fewer than ``size``) is in no block. One block of all when ``count <= size``."""
    if count < 2:
        raise ValueError(f"{count} pairs: at least 2 are needed to rank candidates")
    order = np.random.default_rng(seed).permutation(count)
    if count <= size:
        return [order]
    return [order[start : start + size] for start in range(0, count - size + 1, size)]


def recall_in_blocks(
    queries: np.ndarray,
    candidates: np.ndarray,
    size: int = 1000,
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> dict[str, Any]:
    """Recall@K and MRR of ``queries`` (rows) against ``candidates`` (row ``i`` matches query
    ``i``), each query among the candidates of its block of ``size`` pairs (:func:`blocks`);
    the scores are dot products (unit vectors: cosine similarity). Also the number of blocks,
    of candidates per block and of pairs left out of every block."""
    queries = np.asarray(queries, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.float32)
    if len(queries) != len(candidates):
        raise ValueError(f"{len(queries)} queries but {len(candidates)} candidates")
    parts = blocks(len(queries), size, seed)
    ranks = np.concatenate([match_ranks(queries[idx] @ candidates[idx].T) for idx in parts])
    return {
        **recall_at(ranks, ks),
        "candidates": int(len(parts[0])),
        "blocks": len(parts),
        "left_out": int(len(queries) - sum(len(idx) for idx in parts)),
    }
