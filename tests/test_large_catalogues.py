"""Catalogues too large to score at once: chunked full ranking and the nearest-neighbour index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoptransfer.evaluation.ranking import (
    DotProductScorer,
    chunked_target_ranks,
    evaluate_ranking,
    target_ranks,
)


def small_case(seed: int = 0, n_items: int = 300, n_cases: int = 70, dim: int = 8):
    """Integer-valued vectors (exact float arithmetic, so ties are real ties) and histories."""
    rng = np.random.default_rng(seed)
    items = torch.from_numpy(rng.integers(-3, 4, (n_items + 1, dim)).astype(np.float32))
    table = torch.from_numpy(rng.integers(-3, 4, (n_cases, dim)).astype(np.float32))
    histories = [rng.integers(1, n_items + 1, rng.integers(0, 6)) for _ in range(n_cases)]
    targets = rng.integers(1, n_items + 1, n_cases)

    def queries(batch: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        return table[torch.from_numpy(np.asarray(users, dtype=np.int64))]

    return DotProductScorer(queries, items), histories, targets


@pytest.mark.parametrize("item_batch_size", [1, 7, 64, 301, 1000])
def test_chunked_ranks_equal_unchunked_ranks(item_batch_size: int) -> None:
    scorer, histories, targets = small_case()
    users = np.arange(len(targets))
    whole = target_ranks(scorer, histories, targets, users, batch_size=16)
    chunked = chunked_target_ranks(scorer, histories, targets, users, 16, item_batch_size)
    np.testing.assert_array_equal(chunked, whole)
    assert (whole != np.round(whole)).any()  # ties occur and count half


def test_evaluate_ranking_chunks_only_a_dot_product_model_over_a_large_catalogue() -> None:
    scorer, histories, targets = small_case(seed=1)

    class Cases:
        pass

    cases = Cases()
    cases.histories, cases.targets, cases.users = histories, targets, np.arange(len(targets))
    whole = evaluate_ranking(scorer, cases, ks=(5, 10))
    assert evaluate_ranking(scorer, cases, ks=(5, 10), item_batch_size=50) == whole
    assert evaluate_ranking(scorer.__call__, cases, ks=(5, 10), item_batch_size=50) == whole
