"""Label-shift correction: EM estimates of the target's class shares and the shifted head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoptransfer.data import FeatureDomain
from shoptransfer.errors import DataError
from shoptransfer.recipes import FitData, load_predictor, make_recipe
from shoptransfer.recipes.label_shift import bias_shift, em_class_shares


def two_gaussians(n: int, positive_share: float, seed: int) -> FeatureDomain:
    """Two overlapping classes in 4-D whose class-conditional densities never change."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positive_share).astype(int)
    x = rng.normal(size=(n, 4)) + np.outer(labels * 2 - 1, [0.8, 0.4, 0.0, 0.0])
    names = [("neg", "pos")[y] for y in labels]
    return FeatureDomain(f"share {positive_share}", x.astype(np.float32), names)


def test_em_recovers_the_shares_of_a_calibrated_posterior() -> None:
    rng = np.random.default_rng(0)
    # a calibrated posterior under training shares 0.5 / 0.5 of 1-D Gaussians at -1 and +1
    labels = (rng.random(20_000) < 0.2).astype(int)
    x = rng.normal(size=20_000) + (labels * 2 - 1)
    positive = 1 / (1 + np.exp(-2 * x))
    probabilities = np.stack([1 - positive, positive], axis=1)
    shares, steps = em_class_shares(probabilities, np.array([0.5, 0.5]))
    assert shares[1] == pytest.approx(0.2, abs=0.02)
    assert 1 < steps < 200
    # nothing to correct when the target has the training shares
    balanced = (rng.random(20_000) < 0.5).astype(int)
    x = rng.normal(size=20_000) + (balanced * 2 - 1)
    positive = 1 / (1 + np.exp(-2 * x))
    shares, _ = em_class_shares(np.stack([1 - positive, positive], 1), np.array([0.5, 0.5]))
    assert shares[1] == pytest.approx(0.5, abs=0.02)


def test_bias_shift_is_the_log_ratio_of_the_shares() -> None:
    shift = bias_shift(np.array([0.25, 0.75]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(shift, np.log([0.5, 1.5]))
    with pytest.raises(ValueError, match="do not match"):
        em_class_shares(np.ones((3, 3)) / 3, np.array([0.5, 0.5]))


def test_em_label_shift_lifts_accuracy_when_the_target_leans_the_other_way(
    tmp_path: Path,
) -> None:
    source = two_gaussians(3000, 0.8, seed=1)
    target = two_gaussians(3000, 0.2, seed=2)
    accuracy, recipes = {}, {}
    for shift in ("none", "em"):
        recipe = make_recipe("frozen-features", solver="lbfgs", label_shift=shift)
        predictor = recipe.fit(FitData(source, unlabeled=target.without_labels()))
        accuracy[shift] = np.mean(np.array(predictor.predict(target.vectors)) == target.labels)
        recipes[shift] = recipe
    assert accuracy["em"] > accuracy["none"] + 0.05
    estimated = recipes["em"].fitted()["label_shift"]
    assert estimated["training_shares"]["pos"] == pytest.approx(0.8, abs=0.03)
    assert estimated["target_shares"]["pos"] == pytest.approx(0.2, abs=0.06)
    assert "label_shift" not in recipes["none"].fitted()
    # the shift lives in the head: the saved model predicts the same
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(
        loaded.predict_proba(target.vectors), predictor.predict_proba(target.vectors), atol=1e-5
    )


def test_em_label_shift_needs_unlabeled_target_data() -> None:
    recipe = make_recipe("frozen-features", label_shift="em")
    with pytest.raises(DataError, match="unlabeled target"):
        recipe.fit(FitData(two_gaussians(100, 0.5, seed=0)))


def test_balanced_source_weighting_stops_the_head_learning_the_source_shares() -> None:
    source = two_gaussians(3000, 0.9, seed=3)
    target = two_gaussians(2000, 0.5, seed=4)
    predicted_positive = {}
    for weighting in ("none", "balanced"):
        recipe = make_recipe("frozen-features", solver="lbfgs", source_weighting=weighting)
        predictor = recipe.fit(FitData(source))
        predicted_positive[weighting] = np.mean(
            np.array(predictor.predict(target.vectors)) == "pos"
        )
    # trained where 90 % are positive, the plain head calls too many target reviews positive
    assert predicted_positive["none"] > 0.6
    assert abs(predicted_positive["balanced"] - 0.5) < 0.06


def test_self_training_on_frozen_features_lifts_accuracy_on_a_shifted_target() -> None:
    rng = np.random.default_rng(5)
    source = two_gaussians(2000, 0.5, seed=5)
    target = two_gaussians(2000, 0.5, seed=6)
    # the target's classes sit elsewhere: moved along a direction the source never varied on
    moved = (
        target.vectors
        + np.outer((np.array(target.labels) == "pos") * 2 - 1, [0.0, 0.0, 1.5, 0.0]).astype(
            np.float32
        )
        + rng.normal(scale=0.01, size=target.vectors.shape).astype(np.float32)
    )
    target = FeatureDomain("moved", moved, list(target.labels))
    accuracy, recipes = {}, {}
    for rounds in (0, 3):
        recipe = make_recipe("frozen-features", solver="lbfgs", self_training_rounds=rounds)
        predictor = recipe.fit(FitData(source, unlabeled=target.without_labels()))
        accuracy[rounds] = np.mean(np.array(predictor.predict(target.vectors)) == target.labels)
        recipes[rounds] = recipe
    assert accuracy[3] > accuracy[0] + 0.03
    rounds_report = recipes[3].fitted()["self_training"]
    assert len(rounds_report) == 3
    assert sum(rounds_report[0]["pseudo_labels"].values()) == 1000  # half of the target


def test_self_training_settings_that_cannot_work_are_clear_errors() -> None:
    from shoptransfer.errors import ConfigError

    source = two_gaussians(100, 0.5, seed=0)
    with pytest.raises(ConfigError, match="solver 'lbfgs'"):
        make_recipe("frozen-features", self_training_rounds=2).fit(
            FitData(source, unlabeled=source.without_labels())
        )
    with pytest.raises(DataError, match="self_training_rounds"):
        make_recipe("frozen-features", solver="lbfgs", self_training_rounds=2).fit(FitData(source))
