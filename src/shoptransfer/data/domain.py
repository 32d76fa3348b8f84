"""Domains: named tables of examples (texts or feature vectors), validated on construction."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from shoptransfer.errors import DataError
from shoptransfer.pii import scrub_texts


@dataclass
class Domain:
    """What every domain shares: a name, optional labels, where it came from, dropped rows.

    ``dropped`` counts rows the reader removed, by reason (for example ``{"empty text": 3}``),
    so that a run can report them instead of losing them silently.

    ``annotations`` holds what a model learns to predict besides ``labels``, one array entry
    per example: the numbers of a regression (key ``value``), or the labels of each head of a
    multi-task model (keyed by the head's name; ``""`` where an example has none).
    """

    name: str
    labels: list[str] | None
    source: str
    dropped: dict[str, int]
    annotations: dict[str, np.ndarray] = field(default_factory=dict)
    holds: ClassVar[str] = "examples"  # what the inputs are: texts, vectors or images
    # how two examples are found to be the same (leakage checks compare ``example_keys``)
    same_when: ClassVar[str] = "identical inputs"

    @property
    def inputs(self) -> Any:
        """What a model reads: a list of texts or a feature matrix."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.inputs)

    def _check(self) -> None:
        if len(self.inputs) == 0:
            raise DataError(f"{self.where}: domain '{self.name}' has no examples")
        if self.labels is not None and len(self.labels) != len(self.inputs):
            raise DataError(
                f"{self.where}: {len(self.inputs)} examples but {len(self.labels)} labels; "
                "expected one each"
            )

    @property
    def where(self) -> str:
        return self.source or self.name

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    @property
    def classes(self) -> list[str]:
        """The sorted label vocabulary of this domain (empty when unlabeled)."""
        return sorted(set(self.labels)) if self.labels is not None else []

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels or []).items()))

    def _take(self, idx: list[int]) -> Any:
        raise NotImplementedError

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> Any:
        """A new domain of the same kind holding the examples at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        taken = self._with(
            self._take(idx),
            [self.labels[i] for i in idx] if self.labels is not None else None,
            name or self.name,
        )
        taken.annotations = {key: values[idx] for key, values in self.annotations.items()}
        return taken

    def with_annotations(self, annotations: dict[str, Any]) -> Any:
        """A domain of the same kind with these ``annotations`` (one entry per example each)."""
        arrays = {key: np.asarray(values) for key, values in annotations.items()}
        for key, values in arrays.items():
            if len(values) != len(self):
                raise DataError(
                    f"{self.where}: {len(self)} examples but {len(values)} '{key}' entries; "
                    "expected one each"
                )
        annotated = self._with(self.inputs, self.labels, self.name)
        annotated.annotations = arrays
        return annotated

    def keeping_annotations(self, keys: Sequence[str]) -> Any:
        """The same examples with only the annotations named in ``keys``."""
        kept = self._with(self.inputs, self.labels, self.name)
        kept.annotations = {k: v for k, v in self.annotations.items() if k in keys}
        return kept

    def without_labels(self) -> Any:
        return self._with(self.inputs, None, self.name)

    def unlabeled_with(self, other: Domain) -> Any:
        """A domain of the same kind and name: this domain's inputs, then ``other``'s, and
        no labels (for example unlabeled target data for alignment)."""
        if isinstance(self.inputs, np.ndarray):
            inputs: Any = np.concatenate([self.inputs, np.asarray(other.inputs)])
        else:
            inputs = list(self.inputs) + list(other.inputs)
        return self._with(inputs, None, self.name)

    def _with(self, inputs: Any, labels: list[str] | None, name: str) -> Any:
        raise NotImplementedError

    def _hash_inputs(self, digest: Any) -> None:
        raise NotImplementedError

    def example_keys(self) -> list[Any]:
        """One hashable key per example, equal for examples that are the same input (see
        ``same_when``): what a leakage check compares between training and test data."""
        raise NotImplementedError

    def data_hash(self) -> str:
        """A SHA-256 over inputs and labels: two runs on the same data share it."""
        digest = hashlib.sha256()
        self._hash_inputs(digest)
        for label in self.labels or []:
            digest.update(label.encode("utf-8") + b"\x1e")
        for key in sorted(self.annotations):
            digest.update(key.encode("utf-8") + b"\x1d")
            for value in self.annotations[key].tolist():
                digest.update(repr(value).encode("utf-8") + b"\x1e")
        return digest.hexdigest()

    def label_ids(self, classes: Sequence[str]) -> np.ndarray:
        """Labels as integer ids into ``classes``; an unknown label is a DataError."""
        if self.labels is None:
            raise DataError(f"{self.where}: domain '{self.name}' has no labels")
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(self.labels) - set(index))
        if unknown:
            raise DataError(
                f"{self.where}: labels {unknown} of domain '{self.name}' are not in "
                f"the label vocabulary {list(classes)}"
            )
        return np.array([index[label] for label in self.labels], dtype=np.int64)


@dataclass
class TextDomain(Domain):
    """A named set of texts with optional labels.

    ``scrubbed``: the personal data replaced in the texts when they were read, by kind (see
    :mod:`shoptransfer.pii`); ``None`` when the texts were read as they are."""

    holds: ClassVar[str] = "texts"
    same_when: ClassVar[str] = "identical texts after whitespace and case normalisation"
    texts: list[str] = field(default_factory=list)
    scrubbed: dict[str, int] | None = None

    def __init__(
        self,
        name: str,
        texts: list[str],
        labels: list[str] | None = None,
        source: str = "",
        dropped: dict[str, int] | None = None,
    ) -> None:
        super().__init__(name, labels, source, dict(dropped or {}))
        self.texts = texts
        self.scrubbed = None
        self._check()
        for i, text in enumerate(self.texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{self.where}: example {i} has empty text")

    def scrub_pii(self) -> None:
        """Replace the personal data in the texts by typed placeholders, in place (right after
        reading, before any model or cache sees them); the replacements go to ``scrubbed``."""
        self.texts, self.scrubbed = scrub_texts(self.texts)

    @property
    def inputs(self) -> list[str]:
        return self.texts

    def _take(self, idx: list[int]) -> list[str]:
        return [self.texts[i] for i in idx]

    def _with(self, inputs: Any, labels: list[str] | None, name: str) -> TextDomain:
        made = TextDomain(name, list(inputs), labels, self.source, self.dropped)
        made.scrubbed = self.scrubbed
        return made

    def _hash_inputs(self, digest: Any) -> None:
        for text in self.texts:
            digest.update(text.encode("utf-8") + b"\x1f")

    def example_keys(self) -> list[str]:
        return [" ".join(text.casefold().split()) for text in self.texts]


@dataclass
class FeatureDomain(Domain):
    """A named matrix of precomputed feature vectors (one row per example), labels optional."""

    holds: ClassVar[str] = "vectors"
    same_when: ClassVar[str] = "identical vectors"

    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __init__(
        self,
        name: str,
        vectors: np.ndarray,
        labels: list[str] | None = None,
        source: str = "",
        dropped: dict[str, int] | None = None,
    ) -> None:
        super().__init__(name, labels, source, dict(dropped or {}))
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise DataError(
                f"{self.where}: expected a 2-D matrix of vectors, got shape {vectors.shape}"
            )
        self.vectors = vectors.astype(np.float32)
        self._check()
        bad = np.flatnonzero(~np.isfinite(self.vectors).all(axis=1))
        if len(bad):
            raise DataError(
                f"{self.where}: row {int(bad[0]) + 1} has NaN or infinite values "
                f"({len(bad)} such rows)"
            )

    @property
    def inputs(self) -> np.ndarray:
        return self.vectors

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def _take(self, idx: list[int]) -> np.ndarray:
        return self.vectors[idx]

    def _with(self, inputs: Any, labels: list[str] | None, name: str) -> FeatureDomain:
        return FeatureDomain(name, inputs, labels, self.source, self.dropped)

    def _hash_inputs(self, digest: Any) -> None:
        digest.update(np.ascontiguousarray(self.vectors).tobytes())

    def example_keys(self) -> list[bytes]:
        return [row.tobytes() for row in np.ascontiguousarray(self.vectors)]


def shared_label_vocabulary(source: Domain, target: Domain) -> list[str]:
    """The label vocabulary a source -> target pair shares.

    The source defines it; it needs two classes or more; every target label must be one of them.
    """
    if not source.labeled:
        raise DataError(f"{source.where}: the source domain '{source.name}' needs labels")
    classes = source.classes
    if len(classes) < 2:
        raise DataError(
            f"{source.where}: the source domain '{source.name}' has a single class {classes}; "
            "expected at least two"
        )
    if target.labeled:
        unknown = sorted(set(target.classes) - set(classes))
        if unknown:
            raise DataError(
                f"{target.where}: target labels {unknown} are unknown to the "
                f"source domain '{source.name}' (its labels: {classes})"
            )
    if source.holds != target.holds:
        raise DataError(
            f"{target.where}: the target holds {target.holds} but the source holds "
            f"{source.holds}; expected the same kind"
        )
    if getattr(source, "input_kinds", None) != getattr(target, "input_kinds", None):
        raise DataError(
            f"{target.where}: the target's inputs {getattr(target, 'input_kinds', None)} differ "
            f"from the source's {getattr(source, 'input_kinds', None)}; expected the same names "
            "and kinds"
        )
    if (
        isinstance(source, FeatureDomain)
        and isinstance(target, FeatureDomain)
        and (source.dimension != target.dimension)
    ):
        raise DataError(
            f"{target.where}: vectors have {target.dimension} dimensions but the "
            f"source's have {source.dimension}"
        )
    return classes
