from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shoptransfer.backbones import EmbeddingCache
from shoptransfer.catalogue import list_recipes, make_recipe
from shoptransfer.data import TextDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes import load_predictor

from .conftest import NEGATIVE, POSITIVE


def domain(prefix: str, repeat: int = 3) -> TextDomain:
    texts = [f"{prefix} {t} {r}" for r in range(repeat) for t in POSITIVE + NEGATIVE]
    labels = [lab for _ in range(repeat) for lab in ["pos"] * 8 + ["neg"] * 8]
    return TextDomain(prefix, texts, labels)


SOURCE = domain("book")
TARGET = domain("pan", repeat=1)
TEST = [f"pan {t} again" for t in POSITIVE[:3] + NEGATIVE[:3]]


def test_every_recipe_is_registered_with_a_family_and_description() -> None:
    names = {cls.name: cls for cls in list_recipes()}
    assert {"scratch-tfidf", "scratch-transformer", "frozen-features", "fine-tune"} <= set(names)
    for cls in names.values():
        assert cls.family and cls.description
        assert all(help_text for help_text in cls.options().values())


def test_unknown_recipe_and_option_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'fine-tuning'; expected one of"):
        make_recipe("fine-tuning")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['epoch'\]; allowed"):
        make_recipe("fine-tune", epoch=3)


def test_scratch_recipes_need_target_labels() -> None:
    for name in ("scratch-tfidf", "scratch-transformer"):
        with pytest.raises(DataError, match="target labels only"):
            make_recipe(name).fit(SOURCE, None)


def test_tfidf_learns_the_target_and_round_trips(tmp_path: Path) -> None:
    predictor = make_recipe("scratch-tfidf").fit(SOURCE, TARGET)
    assert predictor.predict(TEST) == ["pos"] * 3 + ["neg"] * 3
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(TEST), predictor.predict_proba(TEST))
    assert not list((tmp_path / "m").glob("*.pkl"))


@pytest.mark.parametrize("name", ["frozen-features", "fine-tune", "scratch-transformer"])
def test_neural_recipes_fit_predict_and_round_trip(
    name: str, tiny_backbone: str, tmp_path: Path
) -> None:
    recipe = make_recipe(name, backbone=tiny_backbone, max_length=32, epochs=2)
    predictor = recipe.fit(SOURCE, TARGET, cache=EmbeddingCache(tmp_path / "cache"))
    probabilities = predictor.predict_proba(TEST)
    assert probabilities.shape == (6, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    loaded = load_predictor(predictor.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict_proba(TEST), probabilities, atol=1e-5)
    assert loaded.classes == ["neg", "pos"]


def test_frozen_features_trains_only_the_head(tiny_backbone: str) -> None:
    predictor = make_recipe("frozen-features", backbone=tiny_backbone, epochs=2).fit(SOURCE)
    assert predictor.trainable_parameters == 16 * 2 + 2


def test_fine_tune_changes_the_encoder_and_saves_it(tiny_backbone: str, tmp_path: Path) -> None:
    from shoptransfer.backbones import TextEncoder

    before = TextEncoder(tiny_backbone).state_dict()
    predictor = make_recipe("fine-tune", backbone=tiny_backbone, epochs=1, learning_rate=1e-2).fit(
        SOURCE
    )
    after = predictor.model.encoder.state_dict()  # type: ignore[attr-defined]
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed
    assert predictor.trainable_parameters > 16 * 2 + 2
    predictor.save(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size > 100_000  # encoder weights included


def test_fine_tune_reuses_its_source_stage_across_budgets(tiny_backbone: str) -> None:
    recipe = make_recipe("fine-tune", backbone=tiny_backbone, epochs=1, target_epochs=1)
    recipe.fit(SOURCE, None)
    assert len(recipe._source_stage) == 1
    recipe.fit(SOURCE, TARGET)
    assert len(recipe._source_stage) == 1


def test_frozen_features_target_weight_validation(tiny_backbone: str) -> None:
    with pytest.raises(ConfigError, match="target_weight"):
        make_recipe("frozen-features", backbone=tiny_backbone, target_weight="lots").fit(
            SOURCE, TARGET
        )
