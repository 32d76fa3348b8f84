"""Label-free model-selection criteria, each against a case with a known answer."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shoptransfer.evaluation import label_free as lf


def one_hot(classes: np.ndarray, n_classes: int, confidence: float = 1.0) -> np.ndarray:
    p = np.full((len(classes), n_classes), (1 - confidence) / max(n_classes - 1, 1))
    p[np.arange(len(classes)), classes] = confidence
    return p


BALANCED = np.arange(300) % 3
CONFIDENT = one_hot(BALANCED, 3, 0.95)
UNIFORM = np.full((300, 3), 1 / 3)
COLLAPSED = one_hot(np.zeros(300, dtype=int), 3, 0.99)


def test_confident_model_beats_uniform_on_entropy_and_im() -> None:
    assert lf.entropy(CONFIDENT) > lf.entropy(UNIFORM)
    assert lf.information_maximization(CONFIDENT) > lf.information_maximization(UNIFORM)
    assert lf.entropy(UNIFORM) == pytest.approx(-np.log(3))
    assert lf.information_maximization(UNIFORM) == pytest.approx(0.0, abs=1e-12)


def test_im_penalises_one_class_for_all_where_entropy_does_not() -> None:
    assert lf.entropy(COLLAPSED) > lf.entropy(CONFIDENT)  # entropy is blind to collapse
    assert lf.information_maximization(COLLAPSED) < lf.information_maximization(CONFIDENT)
    certain = one_hot(BALANCED, 3)
    assert lf.information_maximization(certain) == pytest.approx(np.log(3))  # its maximum


def test_bnm_prefers_diverse_confident_predictions_over_collapsed() -> None:
    diverse, collapsed = one_hot(BALANCED, 3), one_hot(np.zeros(300, dtype=int), 3)
    assert lf.batch_nuclear_norm(diverse) == pytest.approx(np.sqrt(3 / 300))
    assert lf.batch_nuclear_norm(collapsed) == pytest.approx(1 / np.sqrt(300))
    assert lf.batch_nuclear_norm(CONFIDENT) > lf.batch_nuclear_norm(UNIFORM)
    # the nuclear norm itself, against numpy's SVD
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    assert lf.batch_nuclear_norm(p) == pytest.approx(np.linalg.svd(p)[1].sum() / 50)


def test_snd_prefers_well_clustered_predictions_over_scattered() -> None:
    rng = np.random.default_rng(0)
    clustered = one_hot(BALANCED, 3, 0.9) + rng.normal(0, 0.01, (300, 3))
    scattered = rng.dirichlet(np.ones(3), size=300)
    assert lf.soft_neighborhood_density(clustered) > lf.soft_neighborhood_density(scattered)


def test_snd_reads_a_seeded_sample_of_large_inputs() -> None:
    p = np.random.default_rng(1).dirichlet(np.ones(2), size=lf.SND_SAMPLE + 500)
    assert lf.soft_neighborhood_density(p, seed=3) == lf.soft_neighborhood_density(p, seed=3)
    assert lf.soft_neighborhood_density(p, seed=3) != lf.soft_neighborhood_density(p, seed=4)


def test_dev_equals_source_validation_loss_when_domains_match() -> None:
    rng = np.random.default_rng(0)
    source, target, validation = (rng.normal(size=(n, 8)) for n in (2000, 2000, 1000))
    losses = rng.exponential(0.5, size=1000)
    weights = lf.domain_importance_weights(source, target, validation)
    assert np.abs(weights - 1).mean() < 0.1  # the domain classifier is near chance
    dev = lf.deep_embedded_validation(source, target, validation, losses)
    assert dev == pytest.approx(-losses.mean(), rel=0.03)


def test_dev_weights_the_validation_examples_that_look_like_the_target() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2000, 4))
    target = rng.normal(size=(2000, 4)) + np.array([1.5, 0, 0, 0])
    validation = rng.normal(size=(1000, 4))
    # a model that is wrong exactly where the target lies (large first feature)
    losses = np.where(validation[:, 0] > 0.5, 2.0, 0.1)
    weights = lf.domain_importance_weights(source, target, validation)
    assert weights[validation[:, 0] > 1].mean() > 3 * weights[validation[:, 0] < -1].mean()
    dev = lf.deep_embedded_validation(source, target, validation, losses)
    assert -dev > losses.mean() + 0.3  # the target risk is higher than the source's


def test_source_validation_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    p = one_hot(np.array([0, 1, 1, 1]), 2)
    assert lf.source_validation_accuracy(p, labels) == 0.75
    assert lf.source_validation_macro_f1(p, labels) == pytest.approx((2 / 3 + 0.8) / 2)


def test_score_candidate_skips_criteria_without_their_inputs() -> None:
    outputs = lf.CandidateOutputs(CONFIDENT)
    assert set(lf.score_candidate(outputs)) == {"entropy", "im", "bnm", "snd"}
    labels = np.array([0, 1, 2] * 10)
    features = np.random.default_rng(0).normal(size=(30, 4))
    full = lf.CandidateOutputs(
        CONFIDENT, features, features, one_hot(labels, 3, 0.9), features, labels
    )
    assert set(lf.score_candidate(full)) == set(lf.CRITERIA)


def test_best_index_keeps_the_later_of_tied_candidates() -> None:
    assert lf.best_index([0.1, 0.3, 0.2, 0.3]) == 3
    assert lf.best_index([0.5, float("nan"), 0.2]) == 0


def test_every_criterion_takes_seconds_on_10000_by_384() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10_000, 384))
    labels = rng.integers(0, 2, 2000)
    outputs = lf.CandidateOutputs(
        rng.dirichlet(np.ones(2), size=10_000),
        features,
        features,
        rng.dirichlet(np.ones(2), size=2000),
        features[:2000],
        labels,
    )
    for name, criterion in lf.CRITERIA.items():
        started = time.perf_counter()
        criterion(outputs)
        assert time.perf_counter() - started < 10, name
