"""Full-ranking evaluation of next-item recommendation, in memory-bounded batches.

Every item of the catalogue is scored for each case (no sampled negatives). The items of the
case's history are removed from the ranking, except the target itself. The target's rank is
the number of items scored above it plus half of those tied with it (the expected rank when
ties are broken at random), so a model that scores everything alike gets no credit.

Users are scored ``batch_size`` at a time: memory holds one ``batch_size x items`` block,
whatever the number of users. A model that scores by a dot product of a history's vector with
each item's vector (:class:`DotProductScorer`) can also be ranked ``item_batch_size`` items at
a time, counting the items above the target chunk by chunk: memory then holds one
``batch_size x item_batch_size`` block beside the item matrix, whatever the catalogue's size.

Metrics at each K (one relevant item per case, so Recall@K = HR@K):
Recall, HR, NDCG (1 / log2(rank + 2)), MRR (1 / (rank + 1)), Precision (hit / K) and F1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

KS = (5, 10, 20, 50)
METRICS = ("recall", "hr", "ndcg", "mrr", "precision", "f1")

# scores(histories, users) -> (len(histories), n_items + 1) scores; column 0 is padding
Scorer = Callable[[list[np.ndarray], np.ndarray], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class DotProductScorer:
    """A model whose score of item ``j`` is ``queries(histories, users) @ items[j]``: one
    vector per history (or user) and one per item (row 0 pads). Calling it gives every item's
    dot product, in the model's order of items, as a :data:`Scorer` does."""

    queries: Callable[[list[np.ndarray], np.ndarray], torch.Tensor]
    items: torch.Tensor
    scale: float = 1.0  # the model's own score is ``scale`` times the dot product

    def __call__(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        return self.queries(histories, users) @ self.items.T


@torch.no_grad()
def target_ranks(
    scorer: Scorer,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    users: np.ndarray | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """0-based rank of each target among all items, history items excluded."""
    users = users if users is not None else np.arange(len(targets))
    ranks = np.zeros(len(targets), dtype=np.float64)
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        batch_histories = list(histories[start:stop])
        scores = scorer(batch_histories, users[start:stop]).float()
        target = torch.from_numpy(np.asarray(targets[start:stop], dtype=np.int64))
        rows = torch.arange(len(target))
        target_scores = scores[rows, target].clone()
        excluded = torch.zeros_like(scores, dtype=torch.bool)
        excluded[:, 0] = True  # padding
        lengths = [len(history) for history in batch_histories]
        if sum(lengths):
            history_rows = torch.from_numpy(np.repeat(np.arange(len(lengths)), lengths))
            history_items = torch.from_numpy(
                np.concatenate([np.asarray(h, dtype=np.int64) for h in batch_histories])
            )
            excluded[history_rows, history_items] = True
        excluded[rows, target] = True  # counted apart below
        above = ((scores > target_scores[:, None]) & ~excluded).sum(dim=1)
        tied = ((scores == target_scores[:, None]) & ~excluded).sum(dim=1)
        ranks[start:stop] = (above.double() + tied.double() / 2).numpy()
    return ranks


@torch.no_grad()
def chunked_target_ranks(
    scorer: DotProductScorer,
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    users: np.ndarray | None = None,
    batch_size: int = 512,
    item_batch_size: int = 65_536,
) -> np.ndarray:
    """:func:`target_ranks` of a dot-product model, ``item_batch_size`` items at a time.

    Each target's score is its own dot product; every chunk of items adds the items scored
    above it (and half of those tied), the padding row, the history's items and the target
    itself left out.
    """
    users = users if users is not None else np.arange(len(targets))
    items = scorer.items.float()
    ranks = np.zeros(len(targets), dtype=np.float64)
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        batch_histories = list(histories[start:stop])
        queries = scorer.queries(batch_histories, users[start:stop]).float()
        target = torch.from_numpy(np.asarray(targets[start:stop], dtype=np.int64))
        target_scores = (queries * items[target]).sum(dim=1, keepdim=True)
        # (row, item) pairs left out of the ranking: padding, history items and the target
        lengths = [len(history) + 2 for history in batch_histories]
        rows = torch.from_numpy(np.repeat(np.arange(len(lengths)), lengths))
        left_out = torch.from_numpy(
            np.concatenate(
                [
                    np.concatenate([[0, int(t)], np.asarray(h, dtype=np.int64)])
                    for h, t in zip(batch_histories, target.tolist())
                ]
            ).astype(np.int64)
        )
        above = torch.zeros(len(target), dtype=torch.float64)
        for first in range(0, len(items), item_batch_size):
            last = min(first + item_batch_size, len(items))
            scores = queries @ items[first:last].T
            inside = (left_out >= first) & (left_out < last)
            scores[rows[inside], left_out[inside] - first] = torch.nan  # never above nor tied
            above += (scores > target_scores).sum(dim=1).double()
            above += (scores == target_scores).sum(dim=1).double() / 2
        ranks[start:stop] = above.numpy()
    return ranks


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """``metric@k`` averaged over cases, from 0-based target ranks (at least one case: a
    mean over none would read as a score of 0)."""
    if not len(ranks):
        raise ValueError("no cases to rank; a task checks that its splits have some")
    results: dict[str, float] = {}
    for k in ks:
        hit = (ranks < k).astype(np.float64)
        precision = hit / k
        values = {
            "recall": hit,
            "hr": hit,
            "ndcg": hit / np.log2(ranks + 2),
            "mrr": hit / (ranks + 1),
            "precision": precision,
            "f1": np.where(hit > 0, 2 * precision * hit / np.maximum(precision + hit, 1e-12), 0),
        }
        for name in METRICS:
            results[f"{name}@{k}"] = float(values[name].mean())
    return results


def case_ranks(
    scorer: Scorer,
    cases: Any,
    batch_size: int = 512,
    item_batch_size: int | None = None,
) -> np.ndarray:
    """0-based rank of each case's target (:class:`~shoptransfer.data.interactions.NextItemCases`);
    a :class:`DotProductScorer` over more than ``item_batch_size`` items (when given) is
    ranked in chunks of that many items."""
    if (
        isinstance(scorer, DotProductScorer)
        and item_batch_size is not None
        and len(scorer.items) > item_batch_size
    ):
        return chunked_target_ranks(
            scorer, cases.histories, cases.targets, cases.users, batch_size, item_batch_size
        )
    return target_ranks(scorer, cases.histories, cases.targets, cases.users, batch_size)


def evaluate_ranking(
    scorer: Scorer,
    cases: Any,
    ks: Sequence[int] = KS,
    batch_size: int = 512,
    item_batch_size: int | None = None,
) -> dict[str, float]:
    """Metrics of ``scorer`` on :class:`~shoptransfer.data.interactions.NextItemCases`
    (ranked as :func:`case_ranks` does)."""
    return ranking_metrics(case_ranks(scorer, cases, batch_size, item_batch_size), ks)
