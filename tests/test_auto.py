"""The `auto` recipe: candidates scored by cross-validation on target labels (or without
labels), the best trained on everything, the choice recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from shoptransfer.data import FeatureDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes import FitData, make_recipe

SOURCE_ONLY = {
    "name": "frozen-features",
    "label": "source-only",
    "target_weight": 0.0,
    "solver": "lbfgs",
}
TARGET_HEAVY = {
    "name": "frozen-features",
    "label": "target-heavy",
    "target_weight": 1000.0,
    "solver": "lbfgs",
}


def flipped_domains(seed: int = 0) -> tuple[FeatureDomain, FeatureDomain, FeatureDomain]:
    """A source whose labels mean the opposite of the target's: transfer from it hurts.
    Returns source, 10 labelled target examples per class and a target test set."""
    rng = np.random.default_rng(seed)

    def domain(name: str, n: int, flip: bool) -> FeatureDomain:
        labels = np.repeat([0, 1], n // 2)
        x = rng.normal(size=(n, 5)) + np.outer(labels * 2 - 1, [2.0, 0, 0, 0, 0])
        names = [("a", "b")[(y + flip) % 2] for y in labels]
        return FeatureDomain(name, x.astype(np.float32), names)

    return domain("source", 400, True), domain("target", 20, False), domain("test", 400, False)


def test_auto_picks_what_scores_best_on_held_out_target_labels_and_records_why() -> None:
    source, target, test = flipped_domains()
    recipe = make_recipe("auto", candidates=[SOURCE_ONLY, TARGET_HEAVY], seed=0)
    predictor = recipe.fit(FitData(source, target))
    fitted = recipe.fitted()
    assert fitted["picked"] == "target-heavy"
    assert fitted["scores"]["source-only"] < fitted["scores"]["target-heavy"]
    assert set(fitted["candidate_seconds"]) == {"source-only", "target-heavy"}
    assert "3-fold cross-validation" in fitted["scored_by"]
    # the pick was trained again on every label: it reads the test set as the target does
    assert np.mean(np.array(predictor.predict(test.vectors)) == test.labels) > 0.9


def test_auto_folds_are_stratified_and_never_more_than_the_rarest_class_has() -> None:
    _, target, _ = flipped_domains()
    folds = make_recipe("auto", folds=3, seed=1)._folds(target)
    assert len(folds) == 3
    held = sorted(i for _, held_out in folds for i in held_out.vectors[:, 0].tolist())
    assert held == sorted(target.vectors[:, 0].tolist())  # every example held out once
    for fit_part, held_out in folds:
        assert sorted(set(held_out.labels)) == sorted(set(fit_part.labels)) == ["a", "b"]
    two = target.subset([0, 1, 10, 11, 12])  # two examples of class 'a'
    assert len(make_recipe("auto", folds=5)._folds(two)) == 2
    assert make_recipe("auto")._folds(target.subset([0, 10, 11])) is None  # one of class 'a'


def test_auto_records_a_candidate_that_cannot_learn_here_and_goes_on() -> None:
    source, target, _ = flipped_domains()
    candidates = [{"name": "coral-closed-form", "label": "coral"}, TARGET_HEAVY]
    recipe = make_recipe("auto", candidates=candidates)
    recipe.fit(FitData(source, target))  # coral needs unlabeled target data: none here
    assert "unlabeled" in recipe.fitted()["skipped"]["coral"]
    assert recipe.fitted()["picked"] == "target-heavy"


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        (["frozen-features", "frozen-features"], "repeat"),
        ([{"solver": "lbfgs"}], "not a recipe name"),
        (["auto"], "cannot be 'auto'"),
        (["no-such-recipe"], "unknown recipe"),
        ([{"name": "frozen-features", "solver": "newton"}], "solver"),
    ],
)
def test_auto_candidate_mistakes_are_config_errors(candidates: list, message: str) -> None:
    source, _, _ = flipped_domains()
    with pytest.raises(ConfigError, match=message):
        make_recipe("auto", candidates=candidates).validate(source)


def test_auto_without_labels_or_unlabeled_target_says_what_it_needs() -> None:
    source, target, _ = flipped_domains()
    with pytest.raises(DataError, match="unlabeled"):
        make_recipe("auto").fit(FitData(source, target.subset([0, 10, 11])))


def test_auto_runs_in_an_experiment_and_results_json_says_what_it_picked(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import load_config

    source, target = review_csvs
    config = {
        "source": {"path": str(source), "text": "review", "label": "sentiment"},
        "target": {"path": str(target), "text": "review", "label": "sentiment"},
        "test_fraction": 0.25,
        "backbone": tiny_backbone,
        "max_length": 16,
        "budgets": [4],
        "recipes": [{"name": "auto", "candidates": ["scratch-tfidf", "frozen-features"]}],
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = run_experiment(load_config(path), show_progress=False)
    (record,) = json.loads((run_dir / "results.json").read_text())["results"]
    assert record["status"] == "ok" and record["family"] == "adaptive"
    fitted = record["fitted"]
    assert fitted["picked"] in ("scratch-tfidf", "frozen-features")
    assert fitted["transfers"] == (fitted["picked"] == "frozen-features")
    assert set(fitted["scores"]) == {"scratch-tfidf", "frozen-features"}


def test_auto_without_target_labels_scores_candidates_on_the_unlabeled_target() -> None:
    source, _, test = flipped_domains()
    # labels that agree with the target's: the fitted probe separates the target confidently
    # into both classes (high information maximisation); a head given one tiny step predicts
    # near 50/50 everywhere (low)
    source = FeatureDomain(
        "source", source.vectors, ["b" if y == "a" else "a" for y in source.labels]
    )
    confident = {"name": "frozen-features", "label": "confident", "solver": "lbfgs"}
    hesitant = {
        "name": "frozen-features",
        "label": "hesitant",
        "feature_transform": "sqrt-l2",
        "epochs": 1,
        "learning_rate": 1e-6,
    }
    recipe = make_recipe("auto", candidates=[hesitant, confident], label_free_criterion="im")
    recipe.fit(FitData(source, unlabeled=test.without_labels()))
    fitted = recipe.fitted()
    assert "label-free criterion 'im'" in fitted["scored_by"]
    assert fitted["picked"] == "confident"
    assert fitted["scores"]["confident"] > fitted["scores"]["hesitant"]


def test_auto_scores_candidates_on_a_sample_and_trains_the_pick_on_everything() -> None:
    source, target, test = flipped_domains()
    recipe = make_recipe("auto", candidates=[SOURCE_ONLY, TARGET_HEAVY], trial_examples=100)
    predictor = recipe.fit(FitData(source, target))
    assert "trained on 100 source examples" in recipe.fitted()["scored_by"]
    full = make_recipe("auto", candidates=[SOURCE_ONLY, TARGET_HEAVY], trial_examples=0)
    full.fit(FitData(source, target))
    assert "trained on 400 source examples" in full.fitted()["scored_by"]
    assert recipe.fitted()["picked"] == full.fitted()["picked"] == "target-heavy"
    assert np.mean(np.array(predictor.predict(test.vectors)) == test.labels) > 0.9


def test_auto_picks_the_backbone_by_the_estimators_and_trains_the_candidates_on_it(
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    second_tiny_backbone: str,
) -> None:
    from shoptransfer.data import read_table

    source, target = (read_table(p, text="review", label="sentiment") for p in review_csvs)
    recipe = make_recipe(
        "auto",
        candidates=[{"name": "frozen-features", "solver": "lbfgs"}],
        backbones=[tiny_backbone, second_tiny_backbone],
        max_length=16,
    )
    predictor = recipe.fit(FitData(source, target.subset(list(range(0, 32, 2)))))
    fitted = recipe.fitted()
    ranks = fitted["backbone_mean_ranks"]
    assert set(ranks) == {tiny_backbone, second_tiny_backbone}
    assert fitted["backbone"] == min(ranks, key=lambda name: (ranks[name], name != tiny_backbone))
    assert "16 labelled target examples" in fitted["backbone_scored_on"]
    assert {"logme", "knn_accuracy"} <= set(fitted["backbone_scores"][tiny_backbone])
    loaded = json.loads((predictor.save(tmp_path / "m") / "model.json").read_text())
    assert fitted["backbone"] in json.dumps(loaded)


def test_the_picks_are_printed_one_line_per_cell() -> None:
    from shoptransfer.evaluation.report import format_picks

    record = {
        "status": "ok",
        "label": "auto",
        "budget": 16,
        "seed": 0,
        "fitted": {
            "picked": "scratch-tfidf",
            "transfers": False,
            "scores": {"scratch-tfidf": 0.9, "frozen-features": 0.8},
            "scored_by": "accuracy on the 32 labelled target examples",
        },
    }
    line = format_picks([record, {"status": "ok", "label": "frozen-features", "fitted": {}}])
    assert line == (
        "auto, budget 16, seed 0: picked scratch-tfidf (does not transfer); scratch-tfidf 0.900, "
        "frozen-features 0.800 — accuracy on the 32 labelled target examples"
    )
    assert format_picks([{"status": "error", "label": "auto"}]) == ""
