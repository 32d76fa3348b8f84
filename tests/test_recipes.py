from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from shoptransfer.backbones import EmbeddingCache
from shoptransfer.catalogue import list_recipes, make_recipe
from shoptransfer.data import TextDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes import FitData, load_predictor

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
            make_recipe(name).fit(FitData(SOURCE, None))


def test_tfidf_learns_the_target_and_round_trips(tmp_path: Path) -> None:
    predictor = make_recipe("scratch-tfidf").fit(FitData(SOURCE, TARGET))
    assert predictor.predict(TEST) == ["pos"] * 3 + ["neg"] * 3
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(TEST), predictor.predict_proba(TEST))
    assert not list((tmp_path / "m").glob("*.pkl"))


def test_a_save_that_fails_leaves_the_old_model_whole_and_no_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving writes into a staging folder renamed into place: a crash in the middle (here,
    after the weights and before model.json) loses nothing and leaves nothing behind."""
    first = make_recipe("scratch-tfidf").fit(FitData(SOURCE, TARGET))
    folder = first.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = make_recipe("scratch-tfidf", c=0.01).fit(FitData(SOURCE, TARGET))

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("shoptransfer.recipes.base.atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        second.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left
    monkeypatch.undo()
    loaded = load_predictor(second.save(folder))  # a later save replaces the model whole
    np.testing.assert_allclose(loaded.predict_proba(TEST), second.predict_proba(TEST))


@pytest.mark.parametrize("name", ["frozen-features", "fine-tune", "scratch-transformer"])
def test_neural_recipes_fit_predict_and_round_trip(
    name: str, tiny_backbone: str, tmp_path: Path
) -> None:
    recipe = make_recipe(name, backbone=tiny_backbone, max_length=32, epochs=2)
    predictor = recipe.fit(FitData(SOURCE, TARGET, cache=EmbeddingCache(tmp_path / "cache")))
    probabilities = predictor.predict_proba(TEST)
    assert probabilities.shape == (6, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    loaded = load_predictor(predictor.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict_proba(TEST), probabilities, atol=1e-5)
    assert loaded.classes == ["neg", "pos"]


def test_frozen_features_trains_only_the_head(tiny_backbone: str) -> None:
    predictor = make_recipe("frozen-features", backbone=tiny_backbone, epochs=2).fit(
        FitData(SOURCE)
    )
    assert predictor.trainable_parameters == 16 * 2 + 2


def test_fine_tune_changes_the_encoder_and_saves_it(tiny_backbone: str, tmp_path: Path) -> None:
    from shoptransfer.backbones import TextEncoder

    before = TextEncoder(tiny_backbone).state_dict()
    predictor = make_recipe("fine-tune", backbone=tiny_backbone, epochs=1, learning_rate=1e-2).fit(
        FitData(SOURCE)
    )
    after = predictor.model.encoder.state_dict()  # type: ignore[attr-defined]
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed
    assert predictor.trainable_parameters > 16 * 2 + 2
    predictor.save(tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size > 100_000  # encoder weights included


def test_fine_tune_reuses_its_source_stage_across_budgets(tiny_backbone: str) -> None:
    from shoptransfer.metering import StageCache, measure

    recipe = make_recipe("fine-tune", backbone=tiny_backbone, epochs=1, target_epochs=1)
    stages = StageCache()
    with measure() as first:
        zero = recipe.fit(FitData(SOURCE, None, stages=stages))
    assert len(stages) == 1 and first.reused_seconds == 0
    with measure() as second:
        recipe.fit(FitData(SOURCE, TARGET, stages=stages))
    assert len(stages) == 1 and second.reused_seconds > 0  # reused, and charged
    other = make_recipe("fine-tune", backbone=tiny_backbone, epochs=1, learning_rate=1e-3)
    other.fit(FitData(SOURCE, None, stages=stages))
    assert len(stages) == 2  # other settings: its own source stage
    later = make_recipe(
        "fine-tune", backbone=tiny_backbone, epochs=1, target_epochs=3, self_training_rounds=1
    )
    later.fit(FitData(SOURCE, None, unlabeled=TARGET.without_labels(), stages=stages))
    assert len(stages) == 2  # settings of later stages only: the same source stage, reused
    again = recipe.fit(FitData(SOURCE, None))  # no cache handed in: trains again, same result
    texts = ["a great pan", "broke at once"]
    np.testing.assert_allclose(again.predict_proba(texts), zero.predict_proba(texts), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("scratch-tfidf", {"c": "abc"}, "option 'c' is 'abc'; expected a number"),
        ("scratch-tfidf", {"ngram_max": 0}, "option 'ngram_max' is 0; expected an integer >= 1"),
        ("scratch-tfidf", {"ngram_max": True}, "option 'ngram_max' is True; expected an integer"),
        ("scratch-tfidf", {"max_features": 2.5}, "option 'max_features' is 2.5; expected an int"),
        ("frozen-features", {"solver": "sgd"}, "option 'solver' is 'sgd'; expected one of"),
        ("frozen-features", {"feature_transform": "l2"}, "option 'feature_transform' is 'l2'"),
        ("frozen-features", {"target_weight": "lots"}, "option 'target_weight' is 'lots'"),
        ("frozen-features", {"target_weight": -1.0}, "option 'target_weight' is -1.0"),
        ("frozen-features", {"validation_fraction": 1.0}, "option 'validation_fraction'"),
        ("frozen-features", {"truncation": "tail"}, "option 'truncation' is 'tail'"),
        ("scratch-transformer", {"precision": "fp16"}, "option 'precision' is 'fp16'"),
        ("scratch-transformer", {"epochs": "3"}, "option 'epochs' is '3'; expected an integer"),
        ("fine-tune", {"gradual_unfreezing": "yes"}, "option 'gradual_unfreezing' is 'yes'"),
        ("fine-tune", {"peft_target_modules": 3}, "option 'peft_target_modules' is 3"),
        ("fine-tune", {"seed": -1}, "option 'seed' is -1; expected an integer >= 0"),
        ("fine-tune", {"peft": "lorax"}, "option 'peft' is 'lorax'; expected one of"),
        ("fine-tune", {"stages": "both"}, "option 'stages' is 'both'; expected one of"),
        ("fine-tune", {"encoder": "cnn"}, "option 'encoder' is 'cnn'; expected one of"),
        ("fine-tune", {"layer_decay": 0.0}, "option 'layer_decay' is 0.0"),
        ("self-training", {"pseudo_label_share": 1.5}, "option 'pseudo_label_share' is 1.5"),
        ("self-training", {"self_training_rounds": -1}, "option 'self_training_rounds' is -1"),
    ],
)
def test_recipe_options_are_checked_when_the_recipe_is_made(
    name: str, options: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"recipe '{name}': " + re.escape(message)):
        make_recipe(name, **options)


def test_every_recipe_accepts_its_own_defaults_and_numbers_written_as_text() -> None:
    for cls in list_recipes():
        make_recipe(cls.name).check_options()
    recipe = make_recipe("frozen-features", learning_rate="1e-3", target_weight="2e0")
    assert recipe.learning_rate == 0.001 and recipe.target_weight == 2.0
    assert make_recipe("frozen-features", target_weight="balanced").target_weight == "balanced"
