"""Label-free model selection: how good a model is on a target domain without target labels.

Unsupervised domain adaptation has no target labels to choose epochs or hyper-parameters with.
Each criterion here scores one candidate model (an epoch's checkpoint, a setting of a
hyper-parameter) from what is known without target labels: its class probabilities on the
unlabeled target, and for DEV its features and its losses on a labelled source validation
split. Convention: **higher is better** for every criterion, so the candidate with the largest
score is the one to keep (criteria that estimate a risk return its negation).

Numpy only; vectorised. SND is quadratic in the number of examples and reads a seeded sample of
at most :data:`SND_SAMPLE` target rows. Measured on 10,000 x 384 random features and 2 classes,
one thread on a shared machine: SND and DEV (its domain classifier's Newton steps on 384
features, 2,000 rows per domain) under half a second each, the others under 0.01 s.

The scores are comparable between candidates on the same data, not across tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoptransfer.evaluation.metrics import classification_metrics

SND_SAMPLE = 2_000  # SND's pairwise similarities: at most this many target rows (seeded sample)
DEV_SAMPLE = 2_000  # DEV's domain classifier: at most this many rows per domain (seeded sample)
SOURCE_VALIDATION = "source-validation"


def _probabilities(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"expected an (examples x classes) probability array; got {p.shape}")
    return p


def _entropies(p: np.ndarray) -> np.ndarray:
    """The entropy of each row of ``p`` (natural log; 0 log 0 = 0)."""
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=-1)


def entropy(probabilities: np.ndarray) -> float:
    """Minus the mean prediction entropy on the target (entropy minimisation, Grandvalet &
    Bengio, NIPS 2004, used for selection by Morerio et al. 2018): confident predictions score
    high. Blind to collapse: predicting one class for everything with certainty scores best."""
    return float(-_entropies(_probabilities(probabilities)).mean())


def information_maximization(probabilities: np.ndarray) -> float:
    """Information maximisation (Shi & Sha, ICML 2012; SHOT, Liang et al., ICML 2020): the
    entropy of the mean prediction minus the mean entropy of the predictions, ``H(E[p]) -
    E[H(p)]`` (the mutual information between inputs and predicted classes). Confident *and*
    diverse predictions score high; one class for everything scores 0."""
    p = _probabilities(probabilities)
    return float(_entropies(p.mean(axis=0)) - _entropies(p).mean())


def batch_nuclear_norm(probabilities: np.ndarray) -> float:
    """Batch nuclear-norm maximisation (BNM, Cui et al., CVPR 2020): the nuclear norm of the
    ``n x C`` probability matrix divided by ``n``. It grows with both confidence (the Frobenius
    norm) and diversity (the rank): balanced one-hot predictions give ``sqrt(C / n)``, one class
    for everything ``1 / sqrt(n)``."""
    p = _probabilities(probabilities)
    gram = p.T @ p  # C x C: its eigenvalues are the squared singular values of p
    singular = np.sqrt(np.maximum(np.linalg.eigvalsh(gram), 0.0))
    return float(singular.sum() / len(p))


def soft_neighborhood_density(
    probabilities: np.ndarray,
    temperature: float = 0.05,
    sample: int = SND_SAMPLE,
    seed: int = 0,
) -> float:
    """Soft neighbourhood density (SND, Saito et al., ICCV 2021): the target probability
    vectors, L2-normalised; for each, a softmax over its similarities (dot products divided by
    ``temperature``) to every other example; the mean entropy of those rows. High when
    predictions form dense clusters (each example has many close neighbours), low when they
    scatter. Quadratic in ``n``: computed on a seeded sample of at most ``sample`` rows."""
    p = _probabilities(probabilities)
    if len(p) > sample:
        p = p[np.sort(np.random.default_rng(seed).choice(len(p), sample, replace=False))]
    if len(p) < 2:
        return 0.0
    unit = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    logits = unit @ unit.T / temperature
    np.fill_diagonal(logits, -np.inf)  # an example is not its own neighbour
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=1, keepdims=True)
    return float(_entropies(weights).mean())


def domain_importance_weights(
    source_features: np.ndarray,
    target_features: np.ndarray,
    validation_features: np.ndarray,
    l2: float = 1.0,
    steps: int = 25,
    sample: int = DEV_SAMPLE,
    seed: int = 0,
) -> np.ndarray:
    """Density ratios ``p_target(x) / p_source(x)`` at the validation examples, from an
    L2-regularised logistic-regression domain classifier (Newton steps on standardised
    features) trained to tell source from target features: ``w = (n_s / n_t) * P(target | x) /
    P(source | x)``. Each domain reads a seeded sample of at most ``sample`` rows."""
    rng = np.random.default_rng(seed)

    def sampled(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x[np.sort(rng.choice(len(x), sample, replace=False))] if len(x) > sample else x

    source, target = sampled(source_features), sampled(target_features)
    x = np.concatenate([source, target])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-8

    def design(features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - mean) / scale
        return np.hstack([z, np.ones((len(z), 1))])

    a = design(x)
    y = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    penalty = np.full(a.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        gradient = a.T @ (p - y) + penalty * w
        hessian = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    log_odds = np.clip(design(validation_features) @ w, -30.0, 30.0)
    return np.exp(log_odds) * len(source) / len(target)


def deep_embedded_validation(
    source_features: np.ndarray,
    target_features: np.ndarray,
    validation_features: np.ndarray,
    validation_losses: np.ndarray,
    seed: int = 0,
) -> float:
    """Deep Embedded Validation (DEV, You et al., ICML 2019): the target risk estimated by
    importance-weighted validation loss on the labelled source validation split, with the
    paper's control variate. Importance weights ``w`` come from a domain classifier on the
    model's features (:func:`domain_importance_weights`, trained on source-training vs target
    features); with ``L = w * loss``, ``eta = -Cov(L, w) / Var(w)`` and the risk is
    ``mean(L) + eta * mean(w) - eta``. Lower risk is better: returns its negation."""
    losses = np.asarray(validation_losses, dtype=np.float64)
    weights = domain_importance_weights(
        source_features, target_features, validation_features, seed=seed
    )
    weighted = weights * losses
    variance = weights.var(ddof=1) if len(weights) > 1 else 0.0
    eta = -np.cov(weighted, weights)[0, 1] / variance if variance > 1e-12 else 0.0
    risk = weighted.mean() + eta * weights.mean() - eta
    return float(-risk)


def source_validation_macro_f1(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The macro-F1 over every class on the labelled source validation split (``labels``: class
    indices), as the trainer's early stopping computes it by default: no target information."""
    p = _probabilities(probabilities)
    names = [str(c) for c in range(p.shape[1])]
    return float(classification_metrics(np.asarray(labels), p.argmax(axis=1), names)["macro_f1"])


def source_validation_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Plain accuracy on the labelled source validation split."""
    return float(np.mean(_probabilities(probabilities).argmax(axis=1) == np.asarray(labels)))


@dataclass
class CandidateOutputs:
    """What one candidate model produces, for the criteria to read.

    - ``target_probabilities``: class probabilities on the unlabeled target (``n_t x C``);
    - ``target_features``: the features its head reads, on the same target inputs;
    - ``source_features``: features of the source examples it trained on (DEV's domain
      classifier);
    - ``validation_probabilities``, ``validation_features``, ``validation_labels``: on the
      labelled source validation split (class indices).
    """

    target_probabilities: np.ndarray
    target_features: np.ndarray | None = None
    source_features: np.ndarray | None = None
    validation_probabilities: np.ndarray | None = None
    validation_features: np.ndarray | None = None
    validation_labels: np.ndarray | None = None

    def validation_losses(self) -> np.ndarray:
        """Cross-entropy of each source validation example."""
        assert self.validation_probabilities is not None and self.validation_labels is not None
        rows = np.arange(len(self.validation_labels))
        chosen = self.validation_probabilities[rows, self.validation_labels]
        return -np.log(np.clip(chosen, 1e-12, None))


def _needs(outputs: CandidateOutputs, *names: str) -> list[Any]:
    values = [getattr(outputs, name) for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if value is None]
    if missing:
        raise ValueError(f"this criterion reads {', '.join(missing)}")
    return values


def _source_validation(outputs: CandidateOutputs) -> float:
    probabilities, labels = _needs(outputs, "validation_probabilities", "validation_labels")
    return source_validation_macro_f1(probabilities, labels)


def _dev(outputs: CandidateOutputs) -> float:
    source, target, validation = _needs(
        outputs, "source_features", "target_features", "validation_features"
    )
    return deep_embedded_validation(source, target, validation, outputs.validation_losses())


# name -> criterion over one candidate's outputs; higher is better for each
CRITERIA: dict[str, Callable[[CandidateOutputs], float]] = {
    SOURCE_VALIDATION: _source_validation,
    "entropy": lambda o: entropy(o.target_probabilities),
    "im": lambda o: information_maximization(o.target_probabilities),
    "bnm": lambda o: batch_nuclear_norm(o.target_probabilities),
    "snd": lambda o: soft_neighborhood_density(o.target_probabilities),
    "dev": _dev,
}


# what each criterion reads besides the target probabilities
READS = {
    SOURCE_VALIDATION: ("validation_probabilities", "validation_labels"),
    "dev": ("source_features", "target_features", "validation_features", "validation_labels"),
}


def score_candidate(outputs: CandidateOutputs) -> dict[str, float]:
    """Every criterion of :data:`CRITERIA` whose inputs ``outputs`` holds, on one candidate."""
    return {
        name: criterion(outputs)
        for name, criterion in CRITERIA.items()
        if all(getattr(outputs, field) is not None for field in READS.get(name, ()))
    }


def best_index(scores: list[float]) -> int:
    """The candidate with the highest score; on a tie the later one (a longer-trained epoch),
    as the trainer's early stopping keeps it."""
    values = np.asarray(scores, dtype=np.float64)
    best = np.nanmax(values)
    return int(np.flatnonzero(values == best)[-1])
