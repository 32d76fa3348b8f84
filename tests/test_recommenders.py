"""Recommendation recipes learn what they claim, on tiny synthetic histories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from shoptransfer.catalogue import list_recipes, make_recipe
from shoptransfer.data.interactions import InteractionDomain, leave_one_out
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.ranking import evaluate_ranking
from shoptransfer.metering import StageCache, measure
from shoptransfer.recipes import FitData

WORDS = [
    "apple",
    "river",
    "candle",
    "mountain",
    "pencil",
    "garden",
    "violin",
    "rocket",
    "turtle",
    "blanket",
    "mirror",
    "lemon",
]


def cyclic_domain(n_items: int = 12, n_users: int = 60, seed: int = 0, name: str = "shop"):
    """Each user walks the catalogue in order from a random start: the next item is i + 1."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(n_users):
        start = int(rng.integers(n_items))
        length = int(rng.integers(5, 9))
        sequences.append(np.array([(start + k) % n_items + 1 for k in range(length)]))
    train, valid, test = leave_one_out(sequences, 50, {})
    items = [f"{name}-{i}" for i in range(n_items)]
    texts = WORDS[:n_items]
    return InteractionDomain(
        name, items, texts, [str(u) for u in range(n_users)], train, valid, test
    )


def recall_at(ranker, domain, k: int) -> float:
    return evaluate_ranking(ranker.scores, domain.test, ks=(k,))[f"recall@{k}"]


def test_recommendation_recipes_are_registered_with_their_task() -> None:
    tasks = {cls.name: cls.tasks for cls in list_recipes()}
    for name in ["popularity", "item-knn", "bpr", "sasrec", "text-seq", "text-seq-ids"]:
        assert tasks[name] == ("recommendation",)
    assert "classification" in tasks["fine-tune"] and "recommendation" not in tasks["fine-tune"]
    assert {cls.name for cls in list_recipes("recommendation")} >= {"popularity", "sasrec"}


def test_popularity_and_item_knn() -> None:
    domain = cyclic_domain()
    counts = (
        make_recipe("popularity").fit(FitData(None, domain)).scores([np.array([1])], np.array([0]))
    )
    assert counts.shape == (1, 13) and float(counts[0, 0]) == 0.0
    knn = make_recipe("item-knn", neighbours=4).fit(FitData(None, domain))
    scores = knn.scores([np.array([5])], np.array([0]))[0]
    assert set(torch.topk(scores, 2).indices.tolist()) == {4, 6}  # its neighbours in the walk


def test_sasrec_learns_the_next_step_and_beats_popularity() -> None:
    domain = cyclic_domain()
    options = {"hidden": 32, "epochs": 40, "patience": 40, "batch_size": 64, "dropout": 0.1}
    sasrec = make_recipe("sasrec", **options).fit(FitData(None, domain))
    popular = make_recipe("popularity").fit(FitData(None, domain))
    assert recall_at(sasrec, domain, 1) > 0.9
    assert recall_at(popular, domain, 1) < 0.3


def test_bpr_learns_user_preferences() -> None:
    domain = cyclic_domain()
    bpr = make_recipe("bpr", hidden=16, epochs=60, patience=60, batch_size=64, learning_rate=0.05)
    ranker = bpr.fit(FitData(None, domain))
    assert recall_at(ranker, domain, 5) > 0.6  # a user's walk covers a region of the cycle


def test_text_model_pre_trained_on_a_source_transfers_to_new_items(tiny_backbone: str) -> None:
    source = cyclic_domain(name="videos")
    target = cyclic_domain(n_users=30, seed=1, name="products")  # few target histories
    common = {
        "backbone": tiny_backbone,
        "hidden": 32,
        "batch_size": 64,
        "dropout": 0.1,
        "temperature": 0.1,
        "learning_rate": 3e-3,
        "adaptor_dropout": 0.0,
    }
    recipe = make_recipe("text-seq-adaptor", source_epochs=40, epochs=1, patience=5, **common)
    transferred = recipe.fit(FitData(source, target))
    history = [r for r in recipe.history_]
    assert history and "validation_score" in history[0]
    # same texts, new item ids: the pre-trained encoder ranks the next step first at once
    scratch = make_recipe("text-seq-scratch", epochs=1, **common).fit(FitData(None, target))
    assert recall_at(transferred, target, 2) > 0.9  # measured 1.0
    assert recall_at(scratch, target, 2) < 0.8  # measured 0.53: one epoch is not enough
    frozen = [
        p for n, p in transferred.model.encoder.named_parameters() if not n.startswith("items.")
    ]
    assert frozen and not any(p.requires_grad for p in frozen)


def test_text_model_options_are_checked(tiny_backbone: str) -> None:
    domain = cyclic_domain()
    with pytest.raises(ConfigError, match="trainable"):
        make_recipe("text-seq", trainable="heads").validate(domain)
    with pytest.raises(DataError, match="pre-trains on a source"):
        make_recipe("text-seq", backbone=tiny_backbone).fit(FitData(None, domain))
    ids = make_recipe(
        "text-seq-ids", backbone=tiny_backbone, pretrain=False, epochs=1, hidden=16
    ).fit(FitData(None, domain))
    assert ids.model.encoder.items.ids is not None


def test_variants_share_one_pre_training_and_the_adaptor_is_one_product(
    tiny_backbone: str,
) -> None:
    from shoptransfer.recommenders.text_seq import TextItemVectors

    source, target = cyclic_domain(name="videos"), cyclic_domain(seed=1, name="shop")
    common = {"backbone": tiny_backbone, "hidden": 16, "source_epochs": 2, "epochs": 1}
    stages = StageCache()  # what one run hands its recipes

    def fit(name: str, seed: int) -> tuple[Any, float]:
        recipe = make_recipe(name, seed=seed, source_prefixes=3, **common)
        with measure() as meter:
            recipe.fit(FitData(source, target, stages=stages))
        return recipe, meter.reused_seconds

    first, first_reused = fit("text-seq", 7)
    assert first_reused == 0.0 and len(stages) == 1
    frozen, frozen_reused = fit("text-seq-adaptor", 7)
    assert frozen_reused > 0  # same source, seed and pre-training settings: charged in full
    assert frozen.history_[:2] == first.history_[:2]
    _, other_reused = fit("text-seq-adaptor", 8)
    assert other_reused == 0.0 and len(stages) == 2

    torch.manual_seed(0)
    items = TextItemVectors(torch.randn(6, 10), hidden=4, experts=3, dropout=0.0)
    with torch.no_grad():
        items.bias.normal_()
    centred = items.text.unsqueeze(1) - items.bias  # (x - b_e) W_e, expert by expert
    experts = torch.einsum("nes,esh->neh", centred, items.weight)
    gate = torch.softmax(items.gate(items.text), dim=-1).unsqueeze(-1)
    assert torch.allclose(items.table(), (gate * experts).sum(dim=1), atol=1e-5)


def test_fits_share_nothing_without_a_stage_cache(tiny_backbone: str, monkeypatch) -> None:
    """No pre-training is kept in class or module state: a fit's result does not depend on
    which fits (or tests) ran before it in the process."""
    from shoptransfer.training import Trainer

    pre_trainings = []
    fit = Trainer.fit

    def counting_fit(self, *args, **kwargs):
        if self.settings.description.endswith("on source"):
            pre_trainings.append(self.settings.description)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", counting_fit)
    source, target = cyclic_domain(name="videos"), cyclic_domain(seed=1, name="shop")
    options = {"backbone": tiny_backbone, "hidden": 16, "source_epochs": 2, "epochs": 1}
    scores = []
    for _ in range(2):
        ranker = make_recipe("text-seq", seed=3, **options).fit(FitData(source, target))
        scores.append(ranker.scores([np.array([1, 2])], np.array([0])))
    assert len(pre_trainings) == 2
    assert torch.equal(scores[0], scores[1])


def test_one_registry_of_saved_model_kinds_for_every_task(tmp_path) -> None:
    import json

    from shoptransfer.errors import DataError
    from shoptransfer.recipes import load_predictor
    from shoptransfer.recommenders.base import load_ranker

    domain = cyclic_domain()
    options = {"epochs": 2, "hidden": 16, "batch_size": 32}
    ranker = make_recipe("sasrec", **options).fit(FitData(None, domain))
    folder = ranker.save(tmp_path / "sasrec")
    metadata = json.loads((folder / "model.json").read_text())
    assert metadata["kind"] == "neural-ranker" and metadata["n_items"] == domain.n_items
    histories, users = [np.array([1, 2, 3])], np.array([0])
    reloaded = load_ranker(folder, domain)
    assert torch.equal(reloaded.scores(histories, users), ranker.scores(histories, users))
    with pytest.raises(DataError, match="not a classifier"):
        load_predictor(folder)
    # a ranker saved before the kinds were one registry: ranker.json, kind 'neural'
    (folder / "model.json").rename(folder / "ranker.json")
    legacy = json.loads((folder / "ranker.json").read_text())
    (folder / "ranker.json").write_text(json.dumps({**legacy, "kind": "neural"}))
    again = load_ranker(folder, domain)
    assert torch.equal(again.scores(histories, users), ranker.scores(histories, users))
