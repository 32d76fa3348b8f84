"""Seeded sampling of domains: stratified by label where a domain has labels, else at random
(a domain of numbers, or of several label columns).

Each sampler returns what it drew and the rest; the rest is ``None`` when nothing is left (a
budget equal to the pool is the whole pool), and a split that needs it says what is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoptransfer.data.domain import Domain, TextDomain
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


def _parts(domain: Any, picked: np.ndarray, rest: np.ndarray) -> tuple[Any, Any | None]:
    """The picked examples and the rest (``None`` when none are left)."""
    return domain.subset(picked), domain.subset(rest) if len(rest) else None


def _sizes(domain: Domain) -> str:
    counts = domain.class_counts()
    return f"{len(domain)} examples" + (f" {counts}" if counts else "")


def sample_per_class(domain: TextDomain, k: int, seed: int) -> tuple[TextDomain, TextDomain | None]:
    """``k`` labeled examples of every class, and the remaining examples."""
    if k < 0:
        raise ConfigError(f"budget: {k} labels per class; expected 0 or more")
    by_class = _indices_by_class(domain)
    short = {c: len(i) for c, i in by_class.items() if len(i) < k}
    if short:
        raise ConfigError(
            f"budget: {k} labels per class asked for, but domain '{domain.name}' has only {short}"
        )
    return _parts(domain, *_take(domain, {c: k for c in by_class}, seed))


def sample_fraction(
    domain: TextDomain, fraction: float, seed: int
) -> tuple[TextDomain, TextDomain | None]:
    """A stratified ``fraction`` of the domain (at least one per class), and the rest."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction: {fraction}; expected a number between 0 and 1 (exclusive)")
    counts = {c: max(1, round(fraction * len(i))) for c, i in _indices_by_class(domain).items()}
    return _parts(domain, *_take(domain, counts, seed))


def sample_count(domain: Domain, count: int, seed: int) -> tuple[Any, Any | None]:
    """``count`` examples drawn at random, and the remaining examples (both in file order)."""
    if not 0 <= count <= len(domain):
        raise ConfigError(
            f"budget: {count} examples asked for, but domain '{domain.name}' has {len(domain)}"
        )
    order = np.random.default_rng(seed).permutation(len(domain))
    return _parts(domain, np.sort(order[:count]), np.sort(order[count:]))


def sample_at_most(domain: Domain, limit: int, seed: int) -> Any:
    """``domain`` itself when it holds at most ``limit`` examples, else ``limit`` of them drawn
    at random (:func:`sample_count`, file order kept)."""
    return domain if len(domain) <= limit else sample_count(domain, limit, seed)[0]


def sample_share(domain: Domain, fraction: float, seed: int) -> tuple[Any, Any | None]:
    """A random ``fraction`` of the examples (at least one, and at least one left), and the rest."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction: {fraction}; expected a number between 0 and 1 (exclusive)")
    if len(domain) < 2:
        raise DataError(f"{domain.where}: domain '{domain.name}' has one example; cannot split it")
    count = min(len(domain) - 1, max(1, round(fraction * len(domain))))
    return sample_count(domain, count, seed)


def train_validation_split(
    domain: Domain, validation_fraction: float, seed: int
) -> tuple[Any, Any]:
    """A split into (train, validation): stratified by label, or at random for a domain
    without labels (a regression's numbers, a multi-task domain's label columns)."""
    if domain.labels is None:
        validation, train = sample_share(domain, validation_fraction, seed)
    else:
        validation, train = sample_fraction(domain, validation_fraction, seed)
    if train is None:
        raise DataError(
            f"{domain.where}: domain '{domain.name}' has {_sizes(domain)}; the validation "
            f"split ({validation_fraction:g} of it, at least one per class) takes them all and "
            "leaves none to train on; add examples"
        )
    return train, validation


def train_validation_test_split(
    domain: TextDomain, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[TextDomain, TextDomain, TextDomain]:
    """A stratified split into (train, validation, test)."""
    if validation_fraction + test_fraction >= 1.0:
        raise ConfigError("validation and test fractions must add up to less than 1")
    test, rest = sample_fraction(domain, test_fraction, seed)
    if rest is None:
        raise DataError(
            f"{domain.where}: domain '{domain.name}' has {_sizes(domain)}; the test split "
            f"({test_fraction:g} of it, at least one per class) takes them all; add examples"
        )
    train, validation = train_validation_split(
        rest, validation_fraction / (1.0 - test_fraction), seed + 1
    )
    return train, validation, test
