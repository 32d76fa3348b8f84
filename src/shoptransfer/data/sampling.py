"""Stratified, seeded sampling of labeled domains."""

from __future__ import annotations

import numpy as np

from shoptransfer.data.domain import TextDomain
from shoptransfer.errors import ConfigError, DataError


def _indices_by_class(domain: TextDomain) -> dict[str, np.ndarray]:
    if domain.labels is None:
        raise DataError(f"{domain.source or domain.name}: domain '{domain.name}' has no labels")
    labels = np.array(domain.labels)
    return {c: np.flatnonzero(labels == c) for c in domain.classes}


def _take(domain: TextDomain, counts: dict[str, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``counts[c]`` examples of each class at random; return (picked, rest), both sorted."""
    rng = np.random.default_rng(seed)
    picked, rest = [], []
    for cls, idx in _indices_by_class(domain).items():
        shuffled = rng.permutation(idx)
        picked.append(shuffled[: counts[cls]])
        rest.append(shuffled[counts[cls] :])
    return np.sort(np.concatenate(picked)), np.sort(np.concatenate(rest))


def sample_per_class(domain: TextDomain, k: int, seed: int) -> tuple[TextDomain, TextDomain]:
    """``k`` labeled examples of every class, and the remaining examples."""
    if k < 0:
        raise ConfigError(f"budget: {k} labels per class; expected 0 or more")
    by_class = _indices_by_class(domain)
    short = {c: len(i) for c, i in by_class.items() if len(i) < k}
    if short:
        raise ConfigError(
            f"budget: {k} labels per class asked for, but domain '{domain.name}' has only {short}"
        )
    picked, rest = _take(domain, {c: k for c in by_class}, seed)
    return domain.subset(picked), domain.subset(rest)


def sample_fraction(
    domain: TextDomain, fraction: float, seed: int
) -> tuple[TextDomain, TextDomain]:
    """A stratified ``fraction`` of the domain (at least one per class), and the rest."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction: {fraction}; expected a number between 0 and 1 (exclusive)")
    counts = {c: max(1, round(fraction * len(i))) for c, i in _indices_by_class(domain).items()}
    picked, rest = _take(domain, counts, seed)
    return domain.subset(picked), domain.subset(rest)


def train_validation_split(
    domain: TextDomain, validation_fraction: float, seed: int
) -> tuple[TextDomain, TextDomain]:
    """A stratified split into (train, validation)."""
    validation, train = sample_fraction(domain, validation_fraction, seed)
    return train, validation


def train_validation_test_split(
    domain: TextDomain, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[TextDomain, TextDomain, TextDomain]:
    """A stratified split into (train, validation, test)."""
    if validation_fraction + test_fraction >= 1.0:
        raise ConfigError("validation and test fractions must add up to less than 1")
    test, rest = sample_fraction(domain, test_fraction, seed)
    train, validation = train_validation_split(
        rest, validation_fraction / (1.0 - test_fraction), seed + 1
    )
    return train, validation, test
