"""The transferability estimators against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from shoptransfer.evaluation import transferability as tr


def _clusters(n: int = 120, d: int = 12, classes: int = 3, spread: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, d)) * 3
    return centres[labels] + spread * rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("name", sorted(tr.FEATURE_ESTIMATORS))
def test_separable_features_rank_above_shuffled_labels_and_noise(name: str) -> None:
    features, labels = _clusters()
    rng = np.random.default_rng(1)
    estimator = tr.FEATURE_ESTIMATORS[name]
    separable = estimator(features, labels)
    shuffled = estimator(features, rng.permutation(labels))
    noise = estimator(rng.normal(size=features.shape), labels)
    assert separable > shuffled
    assert separable > noise


@pytest.mark.parametrize("name", sorted(tr.PROBABILITY_ESTIMATORS))
def test_informative_source_predictions_rank_above_uninformative(name: str) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    # a source model with 6 classes whose prediction follows the target label (two per label)
    informative = rng.dirichlet(np.ones(6), size=90) * 0.1
    informative[np.arange(90), 2 * labels + rng.integers(0, 2, 90)] += 0.9
    uninformative = rng.dirichlet(np.ones(6), size=90)
    estimator = tr.PROBABILITY_ESTIMATORS[name]
    assert estimator(informative, labels) > estimator(uninformative, labels)
    assert estimator(informative, labels) > estimator(informative, rng.permutation(labels))


def _log_evidence(x: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | X, alpha, beta) by brute force: y ~ N(0, X X^T / alpha + I / beta)."""
    covariance = x @ x.T / alpha + np.eye(len(y)) / beta
    return float(multivariate_normal(np.zeros(len(y)), covariance).logpdf(y))


def test_logme_is_the_maximised_brute_force_evidence() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 4))
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0])
    sigma, rotation = np.linalg.eigh(x.T @ x)
    projected, singular = x @ rotation, np.sqrt(sigma)
    target = labels.astype(float)
    per_example, alpha, beta = tr._evidence(projected, singular, sigma, target, 9, 4, 100)
    assert per_example == pytest.approx(_log_evidence(x, target, alpha, beta) / 9, rel=1e-8)
    # the fixed point is the maximum: no nearby (alpha, beta) has a larger evidence
    best = _log_evidence(x, target, alpha, beta)
    for a in (alpha * 0.7, alpha * 1.3):
        for b in (beta * 0.7, beta * 1.3):
            assert _log_evidence(x, target, a, b) < best
    # two classes, one-vs-rest each: LogME is their mean
    other = tr._evidence(projected, singular, sigma, 1 - target, 9, 4, 100)[0]
    assert tr.logme(x, labels) == pytest.approx((per_example + other) / 2, rel=1e-8)


def test_h_score_matches_its_formula() -> None:
    x = np.array([[1.0, 2.0], [2.0, 1.0], [4.0, 5.0], [5.0, 3.0], [0.0, 1.0]])
    labels = ["a", "a", "b", "b", "a"]
    centred = x - x.mean(axis=0)
    covariance = sum(np.outer(r, r) for r in centred) / 5
    mean_a, mean_b = centred[[0, 1, 4]].mean(axis=0), centred[[2, 3]].mean(axis=0)
    between = (3 * np.outer(mean_a, mean_a) + 2 * np.outer(mean_b, mean_b)) / 5
    expected = np.trace(np.linalg.inv(covariance) @ between)
    assert tr.h_score(x, labels, shrinkage=False) == pytest.approx(expected, rel=1e-10)


def test_ledoit_wolf_covariance_matches_scikit_learn() -> None:
    from sklearn.covariance import ledoit_wolf

    x = np.random.default_rng(0).normal(size=(30, 8))
    assert np.allclose(tr.ledoit_wolf_covariance(x), ledoit_wolf(x)[0])


def test_knn_accuracy_is_one_on_separated_clusters() -> None:
    features, labels = _clusters(spread=0.01)
    assert tr.knn_accuracy(features, labels) == 1.0


def test_nce_is_zero_when_the_source_class_determines_the_label() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.8 + 0.2 / 3
    assert tr.nce(probabilities, labels) == pytest.approx(0.0)
    # and -log 3 when the source predicts one class for all: H(Y | Z) = H(Y)
    assert tr.nce(np.tile([0.9, 0.05, 0.05], (6, 1)), labels) == pytest.approx(-np.log(3))


def test_gbc_is_zero_for_far_apart_classes() -> None:
    features, labels = _clusters(spread=0.001)
    assert tr.gbc(features, labels) == pytest.approx(0.0, abs=1e-12)


def test_sfda_sees_separated_classes_whatever_the_features_scale() -> None:
    # classes 10 standard deviations apart: nearly every example's own class is certain, also
    # for features of small scale (sentence embeddings of unit length have per-dimension
    # variances near 1/d); a within-class scatter shrunk toward the unscaled identity ignores
    # their spread and gives posteriors near the class priors
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 2
    centres = np.zeros((2, 16))
    centres[1, 0] = 10.0
    features = centres[labels] + rng.normal(size=(200, 16))
    for scale in (1.0, 0.01):
        assert tr.sfda(scale * features, labels) > 0.95
