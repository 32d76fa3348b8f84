"""Label shift: the target's class shares differ from the training data's.

A classifier trained where 69 % of reviews are positive keeps predicting positive on a target
where 33 % are. When only the class shares move (``p(x | y)`` stays), the posterior on the
target is the training posterior re-weighted by ``target share / training share`` and
renormalised. The target's shares are unknown without labels; :func:`em_class_shares`
estimates them from the classifier's probabilities on unlabeled target inputs by
expectation-maximisation (Saerens, Latinne & Decaestecker, Neural Computation 2002):
re-weight the posteriors with the current estimate, average them into a new estimate, repeat
until it stops moving. For a linear head the re-weighting is a shift of its biases by
``log(target share / training share)`` (:func:`bias_shift`), so the corrected model saves,
exports and serves like any other.
"""

from __future__ import annotations

import numpy as np

# a share is never estimated below this (a log of 0 would send a bias to minus infinity)
SMALLEST_SHARE = 1e-4


def em_class_shares(
    probabilities: np.ndarray,
    training_shares: np.ndarray,
    iterations: int = 200,
    tolerance: float = 1e-6,
) -> tuple[np.ndarray, int]:
    """The target's class shares estimated from ``probabilities`` (n_inputs, n_classes), the
    classifier's posteriors on unlabeled target inputs, given the class shares it was trained
    with. Returns the shares and the number of EM steps taken."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    training = np.clip(np.asarray(training_shares, dtype=np.float64), SMALLEST_SHARE, None)
    training = training / training.sum()
    if probabilities.ndim != 2 or probabilities.shape[1] != len(training):
        raise ValueError(
            f"probabilities of shape {probabilities.shape} do not match "
            f"{len(training)} training shares"
        )
    shares = training.copy()
    for step in range(1, iterations + 1):
        estimate = np.clip(
            reweighted(probabilities, shares, training).mean(axis=0), SMALLEST_SHARE, None
        )
        estimate /= estimate.sum()
        moved = float(np.abs(estimate - shares).max())
        shares = estimate
        if moved < tolerance:
            return shares, step
    return shares, iterations


def reweighted(
    probabilities: np.ndarray, target_shares: np.ndarray, training_shares: np.ndarray
) -> np.ndarray:
    """Posteriors of a classifier trained with ``training_shares`` moved to ``target_shares``:
    each column re-weighted by ``target share / training share``, each row renormalised."""
    training = np.clip(np.asarray(training_shares, dtype=np.float64), SMALLEST_SHARE, None)
    weighted = np.asarray(probabilities, dtype=np.float64) * (target_shares / training)
    return weighted / weighted.sum(axis=1, keepdims=True)


def bias_shift(target_shares: np.ndarray, training_shares: np.ndarray) -> np.ndarray:
    """What to add to a linear head's biases so its posteriors follow ``target_shares``."""
    training = np.clip(np.asarray(training_shares, dtype=np.float64), SMALLEST_SHARE, None)
    target = np.clip(np.asarray(target_shares, dtype=np.float64), SMALLEST_SHARE, None)
    return np.log(target / target.sum()) - np.log(training / training.sum())


def weighted_class_shares(
    labels: np.ndarray, weights: np.ndarray | None, n_classes: int
) -> np.ndarray:
    """Each class's share of the total example weight."""
    totals = np.bincount(labels, weights=weights, minlength=n_classes).astype(np.float64)
    return totals / totals.sum()
