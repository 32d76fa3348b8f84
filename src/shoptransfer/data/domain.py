"""Domains: named tables of examples, validated on construction."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shoptransfer.errors import DataError


@dataclass
class TextDomain:
    """A named set of texts with optional labels.

    ``dropped`` counts rows the reader removed, by reason (for example ``{"empty text": 3}``),
    so that a run can report them instead of losing them silently.
    """

    name: str
    texts: list[str]
    labels: list[str] | None = None
    source: str = ""
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source or self.name
        if not self.texts:
            raise DataError(f"{where}: domain '{self.name}' has no examples")
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise DataError(
                f"{where}: {len(self.texts)} texts but {len(self.labels)} labels; expected one each"
            )
        for i, text in enumerate(self.texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: example {i} has empty text")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    @property
    def classes(self) -> list[str]:
        """The sorted label vocabulary of this domain (empty when unlabeled)."""
        return sorted(set(self.labels)) if self.labels is not None else []

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels or []).items()))

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> TextDomain:
        """A new domain holding the examples at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return TextDomain(
            name=name or self.name,
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx] if self.labels is not None else None,
            source=self.source,
            dropped=dict(self.dropped),
        )

    def without_labels(self) -> TextDomain:
        return TextDomain(self.name, list(self.texts), None, self.source, dict(self.dropped))

    def data_hash(self) -> str:
        """A SHA-256 over texts and labels: two runs on the same data share it."""
        digest = hashlib.sha256()
        for i, text in enumerate(self.texts):
            digest.update(text.encode("utf-8"))
            digest.update(b"\x1f")
            if self.labels is not None:
                digest.update(self.labels[i].encode("utf-8"))
            digest.update(b"\x1e")
        return digest.hexdigest()

    def label_ids(self, classes: Sequence[str]) -> np.ndarray:
        """Labels as integer ids into ``classes``; an unknown label is a DataError."""
        if self.labels is None:
            raise DataError(f"{self.source or self.name}: domain '{self.name}' has no labels")
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(self.labels) - set(index))
        if unknown:
            raise DataError(
                f"{self.source or self.name}: labels {unknown} of domain '{self.name}' are not in "
                f"the label vocabulary {list(classes)}"
            )
        return np.array([index[label] for label in self.labels], dtype=np.int64)


def shared_label_vocabulary(source: TextDomain, target: TextDomain) -> list[str]:
    """The label vocabulary a source -> target pair shares.

    The source defines it; it needs two classes or more; every target label must be one of them.
    """
    where = source.source or source.name
    if not source.labeled:
        raise DataError(f"{where}: the source domain '{source.name}' needs labels")
    classes = source.classes
    if len(classes) < 2:
        raise DataError(
            f"{where}: the source domain '{source.name}' has a single class {classes}; "
            "expected at least two"
        )
    if target.labeled:
        unknown = sorted(set(target.classes) - set(classes))
        if unknown:
            raise DataError(
                f"{target.source or target.name}: target labels {unknown} are unknown to the "
                f"source domain '{source.name}' (its labels: {classes})"
            )
    return classes
