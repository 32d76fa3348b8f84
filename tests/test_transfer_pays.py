"""Where behaviour transfer should pay: user budgets, cold-start items, several sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from shoptransfer.api import compare, run_experiment
from shoptransfer.config import load_config
from shoptransfer.data.interactions import (
    InteractionDomain,
    NextItemCases,
    merge_domains,
    read_interaction_domain,
)
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.runs import load_results

from .test_recommendation_run import write_config, write_walks


def domain(name: str, train: list[list[int]], n_items: int = 6) -> InteractionDomain:
    users = len(train)
    cases = NextItemCases(
        users=np.arange(users),
        histories=[np.asarray(t, dtype=np.int64) for t in train],
        targets=np.asarray([(t[-1] % n_items) + 1 if t else 1 for t in train], dtype=np.int64),
    )
    return InteractionDomain(
        name=name,
        items=[f"i{k}" for k in range(n_items)],
        item_text=[f"{name} item {k}" for k in range(n_items)],
        users=[f"u{k}" for k in range(users)],
        train=[np.asarray(t, dtype=np.int64) for t in train],
        valid=cases,
        test=cases,
        source=f"{name}.csv",
    )


def test_user_budgets_draw_the_same_users_for_a_seed_and_keep_every_question() -> None:
    full = domain("shop", [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6], [1, 3], [2, 4], [3, 5]])
    half = full.with_training_users(0.5, seed=3)
    again = full.with_training_users(0.5, seed=3)
    other = full.with_training_users(0.5, seed=4)
    kept = [u for u, s in enumerate(half.train) if len(s)]
    assert len(kept) == 4 and len(half) == 4
    assert kept == [u for u, s in enumerate(again.train) if len(s)]  # same users: same seed
    assert kept != [u for u, s in enumerate(other.train) if len(s)]
    for u in kept:  # a kept user's history is whole
        assert half.train[u].tolist() == full.train[u].tolist()
    assert half.valid is full.valid and half.test is full.test  # every question is still asked
    assert len(full.with_training_users(0.01, seed=0)) == 1  # never no users at all


def test_unseen_targets_are_the_items_no_training_history_holds() -> None:
    shop = domain("shop", [[1, 2], [2, 3], [], [1]])
    cases = NextItemCases(
        users=np.arange(4),
        histories=[np.asarray([1]), np.asarray([2]), np.asarray([5]), np.asarray([1])],
        targets=np.asarray([3, 4, 6, 1]),
    )
    assert shop.unseen_targets(cases).tolist() == [False, True, True, False]
    # a history seen only as a question's input does not make its item trained
    assert shop.unseen_targets(cases)[2]


def test_merged_sources_keep_their_items_users_and_texts_apart() -> None:
    videos = domain("videos", [[1, 2, 3], [2, 3]], n_items=3)
    tools = domain("tools", [[1, 2], [4, 4, 1]], n_items=4)
    both = merge_domains([videos, tools])
    assert both.name == "videos + tools" and both.n_items == 7
    assert both.items[:3] == ["videos:i0", "videos:i1", "videos:i2"]
    assert both.items[3] == "tools:i0" and both.users[2] == "tools:u0"
    assert both.train[2].tolist() == [4, 5] and both.train[3].tolist() == [7, 7, 4]
    # an index points at the same item text after the shift
    assert both.item_text[both.train[3][0] - 1] == tools.item_text[tools.train[1][0] - 1]
    assert both.test.users.tolist() == [0, 1, 2, 3]
    assert both.test.targets.tolist() == [*videos.test.targets, *(tools.test.targets + 3)]
    assert both.n_interactions == videos.n_interactions + tools.n_interactions
    with pytest.raises(DataError, match="share a name"):
        merge_domains([videos, domain("videos", [[1, 2]])])


def test_a_run_pre_trains_on_several_sources_and_records_cold_start_items(
    tmp_path: Path, tiny_backbone: str
) -> None:
    data = yaml.safe_load(write_config(tmp_path, tiny_backbone).read_text())
    extra, extra_items = write_walks(tmp_path, "tool", 25, 2)
    columns = {"user": "user", "item": "item", "time": "time", "item_text": ["title"]}
    data["source"] = [
        {**data["source"], "name": "videos"},
        {"path": extra.name, "items": extra_items.name, "name": "tools", **columns},
    ]
    data["recipes"] = ["item-knn", data["recipes"][3]]  # an id model, text-seq (transfer)
    data["budgets"] = [0.05]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "walks.yaml")
    source = read_interaction_domain(config.source)
    assert source.name == "videos + tools" and source.n_items == 24
    results = load_results(run_experiment(config))
    assert results["data"]["source"]["users"] == 65
    target = read_interaction_domain(config.target)
    drawn = target.with_training_users(0.05, seed=0)
    unseen = drawn.unseen_targets(target.test)
    assert unseen.any() and not unseen.all()  # 2 of 30 users train: some items unseen
    for record in results["results"]:
        cold = record["cold_start"]
        assert cold["cases"] == int(unseen.sum())
        assert set(cold["metrics"]) == set(record["metrics"])
    knn = results["results"][0]["cold_start"]["metrics"]
    assert knn["recall@1"] == 0.0  # item-knn has no co-occurrence for an unseen item


def test_a_list_of_sources_needs_names_that_differ(tmp_path: Path, tiny_backbone: str) -> None:
    data = yaml.safe_load(write_config(tmp_path, tiny_backbone).read_text())
    data["source"] = [data["source"], data["source"]]
    data["recipes"] = ["popularity"]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match="share a name"):
        compare(load_config(tmp_path / "walks.yaml"), show_progress=False)
    data["source"] = [{"path": 3}]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="source"):
        load_config(tmp_path / "walks.yaml")


def test_compare_measures_the_gap_between_the_catalogues_item_texts(
    tmp_path: Path, tiny_backbone: str
) -> None:
    data = yaml.safe_load(write_config(tmp_path, tiny_backbone).read_text())
    data["recipes"] = ["popularity", data["recipes"][3]]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    results = load_results(compare(load_config(tmp_path / "walks.yaml"), show_progress=False))
    gap = results["domain_gap"]
    assert gap["measured_on"] == f"item texts, {tiny_backbone}"
    assert -2.0 <= gap["proxy_a_distance"] <= 2.0 and gap["mmd"] >= 0.0
    data.pop("source")
    data["recipes"] = ["popularity"]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    results = load_results(compare(load_config(tmp_path / "walks.yaml"), show_progress=False))
    assert "domain_gap" not in results  # no source, nothing to measure
