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


def random_catalogue(n_items: int = 20_000, dim: int = 64, n_queries: int = 300, seed: int = 0):
    """Unit vectors around 200 random topic directions (a Gaussian mixture, as text embeddings
    cluster), and queries around the same topics."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((200, dim))

    def around(n: int) -> torch.Tensor:
        x = topics[rng.integers(0, 200, n)] + rng.standard_normal((n, dim))
        return torch.from_numpy((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))

    items = torch.cat([torch.zeros(1, dim), around(n_items)])
    return items, around(n_queries)


def test_exact_top_keeps_a_running_top_k_across_item_chunks() -> None:
    from shoptransfer.recommenders.item_index import exact_top

    items, queries = random_catalogue(n_items=1_000, n_queries=20)
    scores, ids = exact_top(queries, items, 10, item_batch_size=77)
    expected = torch.topk(queries @ items[1:].T, 10, dim=1)
    torch.testing.assert_close(scores, expected.values)
    assert torch.equal(ids, expected.indices + 1)


def test_approximate_top_10_agrees_with_exact_at_the_default_settings() -> None:
    pytest.importorskip("faiss")
    from shoptransfer.recommenders.item_index import ApproximateIndex, exact_top

    items, queries = random_catalogue()
    index = ApproximateIndex(items)
    _, exact = exact_top(queries, items, 10)
    scores, found = index.search(queries.numpy(), 10)
    recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact.tolist(), found.tolist())])
    assert recall >= 0.95
    assert index.probes < index.lists  # it did not simply score everything
    # a found item's score is its exact dot product
    np.testing.assert_allclose(
        scores, (queries[:, None, :] * items[found]).sum(-1).numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.fixture(scope="module")
def chunked_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str):
    """A recommendation run whose dot-product models are ranked 5 items at a time."""
    from shoptransfer.api import run_experiment
    from shoptransfer.config import load_config

    from .test_recommendation_run import write_config

    tmp_path = tmp_path_factory.mktemp("chunked")
    small = {"hidden": 16, "epochs": 2, "batch_size": 32}
    recipes = [
        "popularity",
        {"name": "sasrec", **small},
        {"name": "text-seq-ids", "backbone": tiny_backbone, "source_epochs": 1, **small},
    ]
    config = write_config(tmp_path, tiny_backbone, recipes=recipes, eval_item_batch_size=5)
    return tmp_path, run_experiment(load_config(config), show_progress=False)


@pytest.mark.parametrize("label", ["sasrec", "text-seq-ids"])
def test_a_run_ranked_in_chunks_of_items_scores_as_whole_ranking(chunked_run, label) -> None:
    from shoptransfer.backbones import EmbeddingCache
    from shoptransfer.config import load_config
    from shoptransfer.data.interactions import read_interaction_domain
    from shoptransfer.recommenders.base import load_ranker
    from shoptransfer.runs import load_results

    tmp_path, run_dir = chunked_run
    domain = read_interaction_domain(load_config(run_dir / "config.yaml").target)
    ranker = load_ranker(
        run_dir / "models" / f"{label}-kall-seed0", domain, EmbeddingCache(tmp_path / "cache")
    )
    whole = evaluate_ranking(ranker.scores, domain.test, ks=(1, 5))
    (record,) = [r for r in load_results(run_dir)["results"] if r["recipe"] == label]
    assert whole == pytest.approx({key: record["metrics"][key] for key in whole})


@pytest.mark.parametrize("label", ["sasrec", "text-seq-ids"])
def test_recommend_through_the_approximate_index_as_exact(chunked_run, label) -> None:
    pytest.importorskip("faiss")
    from shoptransfer.api import Recommender
    from shoptransfer.recommenders.item_index import IndexSettings

    _, run_dir = chunked_run
    exact = Recommender(run_dir, label, index=IndexSettings("exact"))
    approximate = Recommender(run_dir, label, index=IndexSettings("approximate"))
    assert exact.index is None and approximate.index is not None
    assert "approximate" in approximate.index_description
    for user in ["shopu3", "shopu7"]:
        want, got = exact.recommend(user=user, k=4), approximate.recommend(user=user, k=4)
        assert [i["item"] for i in got["items"]] == [i["item"] for i in want["items"]]
        assert [i["score"] for i in got["items"]] == pytest.approx(
            [i["score"] for i in want["items"]], rel=1e-4
        )
    history = approximate.recommend(history=["shop1", "shop2"], k=12)
    assert {i["item"] for i in history["items"]}.isdisjoint({"shop1", "shop2"})
    assert len(history["items"]) == 10  # every other item of the 12


def test_index_mistakes_are_one_line_config_errors(chunked_run, monkeypatch) -> None:
    import sys

    from shoptransfer.api import Recommender
    from shoptransfer.errors import ConfigError
    from shoptransfer.recommenders.item_index import IndexSettings

    from .test_runs_and_cli import cli

    _, run_dir = chunked_run
    with pytest.raises(ConfigError, match="expected one of"):
        Recommender(run_dir, "sasrec", index=IndexSettings("fast"))
    with pytest.raises(ConfigError, match="dot product"):
        Recommender(run_dir, "popularity", index=IndexSettings("approximate"))
    # the auto default is exact for a small catalogue, with or without FAISS
    assert Recommender(run_dir, "sasrec").index is None
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"shoptransfer\[ann\]"):
        Recommender(run_dir, "sasrec", index=IndexSettings("approximate"))
    result = cli("recommend", str(run_dir), "--user", "shopu3", "--index", "fast", cwd=run_dir)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--index 'fast'" in result.stderr


def test_text_item_vectors_adapt_a_large_catalogue_in_chunks_as_at_once(monkeypatch) -> None:
    from shoptransfer.recommenders import text_seq

    torch.manual_seed(0)
    items = text_seq.TextItemVectors(torch.randn(50, 12), hidden=8, experts=3).eval()
    whole = items.table()
    monkeypatch.setattr(text_seq, "TABLE_CHUNK", 7)
    torch.testing.assert_close(items.table(), whole)


def test_served_recommender_through_the_approximate_index(chunked_run) -> None:
    pytest.importorskip("faiss")
    pytest.importorskip("fastapi")
    from shoptransfer.errors import ConfigError
    from shoptransfer.serving import ServeSettings, Service

    from .test_serve import client

    _, run_dir = chunked_run
    with pytest.raises(ConfigError, match="--index 'fast'"):
        ServeSettings(str(run_dir), index="fast").check()
    assert (
        "approximate"
        in Service(ServeSettings(str(run_dir), model="sasrec", index="approximate")).describe()[-1]
    )
    body = {"history": ["shop1", "shop2", "shop3"], "k": 5}
    answers = []
    for index in ("exact", "approximate"):
        with client(run_dir, model="sasrec", index=index) as served:
            answers.append(served.post("/v1/recommend", json=body).json())
    assert [i["item"] for i in answers[1]["items"]] == [i["item"] for i in answers[0]["items"]]


def test_a_large_catalogue_without_faiss_is_ranked_exactly_with_a_warning(
    chunked_run, monkeypatch
) -> None:
    import sys

    from shoptransfer import api

    _, run_dir = chunked_run
    assert api.Recommender(run_dir, "sasrec").index_warning is None
    monkeypatch.setattr(api, "APPROXIMATE_FROM", 12)  # the walks' 12 items count as large
    monkeypatch.setitem(sys.modules, "faiss", None)
    monkeypatch.setattr(
        "shoptransfer.recommenders.item_index.importlib.util.find_spec", lambda name: None
    )
    recommender = api.Recommender(run_dir, "sasrec")
    assert recommender.index is None and "shoptransfer[ann]" in recommender.index_warning
