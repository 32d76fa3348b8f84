"""Multi-input domains: several inputs per example (a product photo, its title, other text
columns), read from one table.

An input is a named column of one kind: ``text`` (the cell's text) or ``image`` (the cell names
an image file). A row may lack an input (an empty cell, an image file that is not there or
cannot be decoded): the example is kept with that input missing (``None``), and the domain
counts the missing inputs per input and reason (``missing``), so a run reports them. Rows
without any input, or without a label, are dropped and counted (``dropped``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shoptransfer.data.domain import Domain
from shoptransfer.data.images import inspect_images
from shoptransfer.data.readers import label_cell, read_rows, require_columns, text_cell
from shoptransfer.errors import DataError
from shoptransfer.pii import scrub_texts

INPUT_KINDS = ("text", "image")


class MultiInputs:
    """Several named inputs per example: ``kinds`` (name -> ``text`` or ``image``) and
    ``values`` (name -> one text or image path per example, ``None`` where it is missing).

    What a fused model reads; :meth:`of` builds one from a mapping of name -> values (a name
    the mapping lacks is missing for every example)."""

    def __init__(self, kinds: Mapping[str, str], values: Mapping[str, Sequence[str | None]]):
        self.kinds = dict(kinds)
        self.values = {name: list(values[name]) for name in self.kinds}
        sizes = {len(v) for v in self.values.values()}
        if len(sizes) > 1:
            raise DataError(f"inputs {list(self.kinds)} hold different numbers of examples")
        self._size = sizes.pop() if sizes else 0

    @classmethod
    def of(cls, kinds: Mapping[str, str], values: Mapping[str, Sequence[str | None]]) -> Any:
        """The inputs ``kinds`` names, from ``values`` (a name it lacks: missing everywhere;
        an empty text: missing); a name ``kinds`` does not know is a DataError."""
        unknown = sorted(set(values) - set(kinds))
        if unknown:
            raise DataError(f"unknown input(s) {unknown}; the model reads {sorted(kinds)}")
        if not values:
            raise DataError(f"no inputs given; the model reads {sorted(kinds)}")
        size = max(len(v) for v in values.values())
        filled = {}
        for name in kinds:
            given = list(values.get(name, [None] * size))
            if len(given) != size:
                raise DataError(
                    f"input '{name}' has {len(given)} values, the others {size}; expected one "
                    "per example (None where it is missing)"
                )
            filled[name] = [v if isinstance(v, str) and v.strip() else None for v in given]
        return cls(kinds, filled)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[dict[str, str | None]]:
        for i in range(self._size):
            yield {name: values[i] for name, values in self.values.items()}

    def present(self, name: str) -> np.ndarray:
        """A boolean per example: whether input ``name`` is there."""
        return np.array([v is not None for v in self.values[name]], dtype=bool)

    def take(self, idx: Sequence[int] | np.ndarray) -> MultiInputs:
        return MultiInputs(self.kinds, {n: [v[i] for i in idx] for n, v in self.values.items()})

    def joined(self, other: MultiInputs) -> MultiInputs:
        return MultiInputs(self.kinds, {n: v + other.values[n] for n, v in self.values.items()})


def scrub_text_inputs(
    kinds: Mapping[str, str], values: Mapping[str, list[str | None]]
) -> dict[str, int]:
    """Replace personal data in the text inputs of ``values`` (input name -> values, ``None``
    where missing) by typed placeholders, in place; return the replacements by kind."""
    total: Counter[str] = Counter()
    for name, column in values.items():
        if kinds.get(name) != "text":
            continue
        rows = [i for i, v in enumerate(column) if v is not None]
        texts, counts = scrub_texts([column[i] for i in rows])  # type: ignore[misc]
        for i, text in zip(rows, texts):
            column[i] = text
        total.update(counts or {})
    return dict(total)


@dataclass
class MultiInputDomain(Domain):
    """A named set of examples with several inputs each (:class:`MultiInputs`), labels
    optional. ``missing``: per input, how many examples lack it, by reason."""

    holds: ClassVar[str] = "inputs"
    same_when: ClassVar[str] = "identical inputs (texts normalised, image files by SHA-256)"
    values: MultiInputs = field(default_factory=lambda: MultiInputs({}, {}))
    missing: dict[str, dict[str, int]] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)
    scrubbed: dict[str, int] | None = None

    def __init__(
        self,
        name: str,
        values: MultiInputs,
        labels: list[str] | None = None,
        source: str = "",
        dropped: dict[str, int] | None = None,
        missing: dict[str, dict[str, int]] | None = None,
        converted: dict[str, int] | None = None,
        file_digests: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__(name, labels, source, dict(dropped or {}))
        self.values = values
        self.missing = {k: dict(v) for k, v in (missing or {}).items()}
        self.converted = dict(converted or {})
        self.scrubbed = None
        self._file_digests = file_digests if file_digests is not None else {}
        self._check()

    @property
    def inputs(self) -> MultiInputs:
        return self.values

    @property
    def input_kinds(self) -> dict[str, str]:
        return dict(self.values.kinds)

    def scrub_pii(self) -> None:
        """Replace personal data in the text inputs by typed placeholders, in place."""
        self.scrubbed = scrub_text_inputs(self.values.kinds, self.values.values)

    def _take(self, idx: list[int]) -> MultiInputs:
        return self.values.take(idx)

    def _with(self, inputs: Any, labels: list[str] | None, name: str) -> MultiInputDomain:
        made = MultiInputDomain(
            name,
            inputs,
            labels,
            self.source,
            self.dropped,
            self.missing,
            self.converted,
            self._file_digests,
        )
        made.scrubbed = self.scrubbed
        return made

    def unlabeled_with(self, other: Domain) -> MultiInputDomain:
        return self._with(self.values.joined(other.inputs), None, self.name)

    def example_keys(self) -> list[tuple[Any, ...]]:
        columns: list[list[Any]] = []
        for name, kind in self.values.kinds.items():
            column = self.values.values[name]
            if kind == "image":
                columns.append([None if v is None else self._digest(v) for v in column])
            else:
                columns.append(
                    [None if v is None else " ".join(v.casefold().split()) for v in column]
                )
        return list(zip(*columns))

    def _digest(self, path: str) -> bytes:
        if path not in self._file_digests:
            self._file_digests[path] = hashlib.sha256(Path(path).read_bytes()).digest()
        return self._file_digests[path]

    def _hash_inputs(self, digest: Any) -> None:
        for name, kind in self.values.kinds.items():
            digest.update(f"{name}:{kind}".encode() + b"\x1d")
        for key in self.example_keys():
            digest.update(repr(key).encode("utf-8") + b"\x1f")


def read_multi_input_table(
    path: str | Path,
    inputs: Mapping[str, tuple[str, str]],
    label: str | None = "label",
    root: str | Path | None = None,
    name: str | None = None,
    format: str | None = None,
    encoding: str = "utf-8",
) -> MultiInputDomain:
    """A domain from a CSV/TSV/JSON Lines/Parquet table with several inputs per row.

    ``inputs``: input name -> (kind, column), kind ``text`` or ``image``. Relative image paths
    are read from ``root`` (default: the table's folder). A missing input (an empty cell, an
    image file not found or not decodable) is kept as missing and counted per input and reason;
    a row without any input or without a label is dropped and counted.
    """
    table = Path(path)
    if not inputs:
        raise DataError(f"{table}: no inputs; expected at least one text or image column")
    for input_name, (kind, _) in inputs.items():
        if kind not in INPUT_KINDS:
            raise DataError(
                f"{table}: input '{input_name}' is of kind '{kind}'; expected one of "
                f"{list(INPUT_KINDS)}"
            )
    rows, lines, columns = read_rows(table, format, encoding)
    wanted = [column for _, column in inputs.values()] + ([label] if label is not None else [])
    require_columns(table, wanted, columns)
    base = Path(root) if root is not None else table.parent
    dropped: Counter[str] = Counter()
    missing: dict[str, Counter[str]] = {n: Counter() for n in inputs}
    converted: Counter[str] = Counter()
    values: dict[str, list[str | None]] = {n: [] for n in inputs}
    labels: list[str] = []
    kept: list[tuple[str, dict[str, str | None], dict[str, str]]] = []
    for row, line in zip(rows, lines):
        tag = label_cell(table, line, label, row.get(label)).strip() if label is not None else ""
        if label is not None and not tag:
            dropped["missing label"] += 1
            continue
        cells: dict[str, str | None] = {}
        reasons: dict[str, str] = {}
        for input_name, (kind, column) in inputs.items():
            cell = text_cell(table, line, column, row.get(column))
            if not cell.strip():
                cells[input_name], reasons[input_name] = None, "empty cell"
            elif kind == "text":
                cells[input_name] = cell
            else:
                file = Path(cell.strip())
                file = file if file.is_absolute() else base / file
                if file.is_file():
                    cells[input_name] = str(file)
                else:
                    cells[input_name], reasons[input_name] = None, "file not found"
        kept.append((tag, cells, reasons))
    # every named photo opened once (in worker processes for many): what cannot be decoded
    # is a missing input too
    photos = sorted(
        {
            cells[n]
            for _, cells, _ in kept
            for n, (kind, _) in inputs.items()
            if kind == "image" and cells[n] is not None
        }
    )
    verdicts = dict(zip(photos, inspect_images([Path(p) for p in photos])))  # type: ignore[arg-type]
    for tag, cells, reasons in kept:
        for input_name, (kind, _) in inputs.items():
            photo = cells[input_name]
            if kind != "image" or photo is None:
                continue
            problem, notes = verdicts[photo]
            if problem is not None:
                cells[input_name], reasons[input_name] = None, problem
        if all(value is None for value in cells.values()):
            dropped["no input"] += 1
            continue
        for input_name, reason in reasons.items():
            missing[input_name][reason] += 1
        for input_name, value in cells.items():
            values[input_name].append(value)
        labels.append(tag)
    for photo in {v for n, (kind, _) in inputs.items() if kind == "image" for v in values[n]}:
        if photo is not None:
            converted.update(verdicts[photo][1])
    if not labels:
        detail = f" ({sum(dropped.values())} dropped: {dict(dropped)})" if dropped else ""
        raise DataError(f"{table}: no usable rows{detail}")
    return MultiInputDomain(
        name or table.stem.split(".")[0],
        MultiInputs({n: kind for n, (kind, _) in inputs.items()}, values),
        labels if label is not None else None,
        source=str(table),
        dropped=dict(dropped),
        missing={n: dict(c) for n, c in missing.items()},
        converted=dict(converted),
    )
