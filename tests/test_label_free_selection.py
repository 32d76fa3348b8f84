"""Choosing epochs and settings of the alignment and self-training recipes without target
labels (``model_selection``, ``selection_grid``)."""

from __future__ import annotations

import numpy as np
import pytest

from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation import label_free
from shoptransfer.recipes import FitData, make_recipe

from .test_methods import feature_domains

FAST = {"epochs": 8, "patience": 8, "mlp_hidden": 16}


def fit_data() -> FitData:
    source, target = feature_domains()
    return FitData(source, unlabeled=target.without_labels())


def test_default_selection_is_unchanged_and_records_the_source_stage_only() -> None:
    recipe = make_recipe("mlp-dann", **FAST)
    recipe.fit(fit_data())
    scores = [r["validation_macro_f1"] for r in recipe.history_]
    assert len(scores) == FAST["epochs"]
    kept = max(i for i, score in enumerate(scores) if score == max(scores))  # ties: the later
    assert recipe.fitted() == {
        "source_stage": {
            "epochs": FAST["epochs"],
            "kept_epoch": kept + 1,
            "validation_macro_f1": max(scores),
        }
    }


@pytest.mark.parametrize("criterion", ["im", "dev"])
def test_a_label_free_criterion_keeps_its_best_epoch(criterion: str) -> None:
    data = fit_data()
    recipe = make_recipe("mlp-dann", model_selection=criterion, **FAST)
    model = recipe.fit(data)
    record = recipe.fitted()["model_selection"]
    scores = record["scores"]
    assert record["criterion"] == criterion
    assert set(scores) == set(label_free.CRITERIA)  # every criterion, beside the chosen one
    assert all(len(values) == FAST["epochs"] for values in scores.values())
    chosen = record["chosen_epoch"]
    assert scores[criterion][chosen - 1] == max(scores[criterion])
    # the model returned is that epoch's: its target predictions score what was recorded
    probabilities = model.predict_proba(data.unlabeled.vectors)
    assert label_free.entropy(probabilities) == pytest.approx(scores["entropy"][chosen - 1])
    assert label_free.information_maximization(probabilities) == pytest.approx(
        scores["im"][chosen - 1]
    )


def test_selection_grid_keeps_the_setting_the_criterion_scores_highest() -> None:
    data = fit_data()
    recipe = make_recipe(
        "mlp-dann", model_selection="im", selection_grid={"dann.weight": [0.0, 1.0]}, **FAST
    )
    model = recipe.fit(data)
    grid = recipe.fitted()["selection_grid"]
    assert [c["setting"] for c in grid["candidates"]] == [
        {"dann.weight": 0.0},
        {"dann.weight": 1.0},
    ]
    im = [c["scores"]["im"] for c in grid["candidates"]]
    assert grid["chosen"] == grid["candidates"][label_free.best_index(im)]["setting"]
    assert "model_selection" in recipe.fitted()  # the chosen candidate's epochs
    # the model is the chosen setting's, as a recipe with that setting fits it
    alone = make_recipe(
        "mlp-dann",
        model_selection="im",
        objectives=[{"name": "dann", "weight": grid["chosen"]["dann.weight"]}],
        **FAST,
    ).fit(data)
    vectors = data.unlabeled.vectors
    np.testing.assert_allclose(model.predict_proba(vectors), alone.predict_proba(vectors))


def test_selection_grid_over_the_pseudo_label_share_of_self_training() -> None:
    data = fit_data()
    recipe = make_recipe(
        "mlp",
        self_training_rounds=1,
        model_selection="bnm",
        selection_grid={"pseudo_label_share": [0.2, 0.8]},
        **FAST,
    )
    recipe.fit(data)
    grid = recipe.fitted()["selection_grid"]
    shares = [c["setting"]["pseudo_label_share"] for c in grid["candidates"]]
    assert shares == [0.2, 0.8]
    alone = recipe.with_setting(grid["chosen"])
    alone.fit(data)

    def kept(r: object) -> list[int]:
        return [h["pseudo_labeled"] for h in r.history_ if "pseudo_labeled" in h]

    assert kept(recipe) == kept(alone)  # the chosen share's self-training round


def test_source_validation_grid_scores_the_source_split() -> None:
    recipe = make_recipe("mlp-coral", selection_grid={"coral.weight": [0.5, 2.0]}, **FAST)
    recipe.fit(fit_data())
    grid = recipe.fitted()["selection_grid"]
    assert grid["criterion"] == "source-validation"
    scores = [c["scores"]["source-validation"] for c in grid["candidates"]]
    assert grid["chosen"] == grid["candidates"][label_free.best_index(scores)]["setting"]
    assert "model_selection" not in recipe.fitted()  # epochs: the trainer's early stopping


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"model_selection": "accuracy"},
            "option 'model_selection' is 'accuracy'; expected one of",
        ),
        ({"selection_grid": {"weight": [1.0]}}, "selection_grid: unknown key 'weight'; expected"),
        ({"selection_grid": {"mmd.weight": [1.0]}}, "names objective 'mmd', which this recipe"),
        ({"selection_grid": {"dann.weight": 0.1}}, "option 'selection_grid' is"),
        ({"selection_grid": {"dann.weight": []}}, "expected a non-empty list of values"),
        (
            {"selection_grid": {"pseudo_label_share": [0.5, 2]}},
            "selection_grid: option 'pseudo_label_share' is 2",
        ),
        (
            {"selection_grid": {"dann.weight": ["a"]}},
            "selection_grid: objectives: objective 'dann': weight 'a'",
        ),
        ({"selection_grid": {"seed": [1, 2]}}, "unknown key 'seed'"),
    ],
)
def test_bad_selection_options_are_one_line_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="recipe 'mlp-dann'") as error:
        make_recipe("mlp-dann", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_label_free_selection_needs_unlabeled_target_data_and_classes() -> None:
    source, _ = feature_domains()
    with pytest.raises(DataError, match="model_selection 'snd' scores models on unlabeled"):
        make_recipe("mlp", model_selection="snd", **FAST).fit(FitData(source))
    with pytest.raises(ConfigError, match="model_selection 'im' is for classification only"):
        make_recipe("mlp", model_selection="im").check_task("regression")


def test_a_reused_source_stage_keeps_its_epoch_scores() -> None:
    from shoptransfer.metering import StageCache

    source, target = feature_domains()
    data = FitData(source, unlabeled=target.without_labels(), stages=StageCache())
    first = make_recipe("mlp-coral", model_selection="bnm", **FAST)
    first.fit(data)
    again = make_recipe("mlp-coral", model_selection="bnm", target_epochs=3, **FAST)
    again.fit(data)  # the source stage comes from the cache
    assert again.fitted() == first.fitted() != {}


def test_an_experiment_file_names_the_entry_and_the_grid_key() -> None:
    from shoptransfer.config import parse_config

    config = {
        "name": "x",
        "source": {"path": "books.csv"},
        "target": {"path": "kitchen.csv"},
        "recipes": [
            {"name": "mlp-dann", "model_selection": "im"},
            {"name": "mlp-dann", "selection_grid": {"dann.weight": [0.1, -1]}},
        ],
    }
    with pytest.raises(ConfigError) as error:
        parse_config(config, "x.yaml")
    assert str(error.value) == (
        "x.yaml: key 'recipes.1': recipe 'mlp-dann': selection_grid: objectives: "
        "objective 'dann': weight must be 0 or more"
    )
