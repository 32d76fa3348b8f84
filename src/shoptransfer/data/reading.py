"""Reading the domain an experiment file's entry describes, whatever it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoptransfer.data.domain import Domain, TextDomain
from shoptransfer.data.features import FEATURE_FORMATS, read_features
from shoptransfer.data.images import read_image_folder, read_image_table
from shoptransfer.data.multi import MultiInputDomain, read_multi_input_table
from shoptransfer.data.readers import TABLE_FORMATS, read_blitzer, read_table
from shoptransfer.errors import DataError


def scrubbed(domain: Domain, entry: Any) -> Domain:
    """``domain``, its texts scrubbed of personal data unless the entry says ``scrub_pii:
    false`` (photos and vectors are kept as they are)."""
    if isinstance(domain, TextDomain | MultiInputDomain) and getattr(entry, "scrub_pii", True):
        domain.scrub_pii()
    return domain


def read_domain(entry: Any) -> Domain:
    """Read the domain ``entry`` describes, its texts scrubbed of personal data unless the entry
    says ``scrub_pii: false`` (see :func:`_read_as_is`)."""
    return scrubbed(_read_as_is(entry), entry)


def _read_as_is(entry: Any) -> Domain:
    """Read the domain ``entry`` describes (a ``DomainConfig``: path, format and columns).

    The format is guessed when not given: a folder holding ``positive.parsed`` and
    ``negative.parsed`` (either gzipped) is a Blitzer domain, another folder holds images (one
    sub-folder per class), a file of arrays holds vectors, and any other file is a table of
    texts.
    """
    path = Path(entry.path).expanduser()
    if getattr(entry, "inputs", None) is not None:
        return read_multi_input_table(
            path,
            {name: spec.kind_and_column() for name, spec in entry.inputs.items()},
            label=entry.label,
            root=entry.image_root,
            name=entry.name,
            format=entry.format,
            encoding=entry.encoding,
        )
    if entry.image is not None:
        return read_image_table(
            path,
            image=entry.image,
            label=entry.label,
            root=entry.image_root,
            name=entry.name,
            format=entry.format,
            encoding=entry.encoding,
        )
    fmt = entry.format
    if (
        fmt is None
        and path.is_dir()
        and path.suffix.lower() in {**TABLE_FORMATS, **FEATURE_FORMATS}
    ):
        raise DataError(f"{path}: is a folder; expected a {path.suffix} file")
    if fmt is None and path.is_dir():
        blitzer = all(
            (path / name).exists() or (path / f"{name}.gz").exists()
            for name in ("positive.parsed", "negative.parsed")
        )
        fmt = "blitzer" if blitzer else "images"
    if fmt == "images":
        return read_image_folder(path, name=entry.name)
    suffix = path.suffix.lower()
    only_vectors = suffix in FEATURE_FORMATS and suffix not in TABLE_FORMATS
    if (
        entry.vectors is not None
        or fmt in {"npy", "npz", "mat", "svmlight"}
        or (fmt is None and only_vectors)
    ):
        return read_features(
            path,
            vectors=entry.vectors or "vectors",
            label=entry.label,
            name=entry.name,
            format=fmt,
        )
    if fmt == "blitzer":
        return read_blitzer(path, name=entry.name, encoding=entry.encoding)
    return read_table(
        path,
        text=entry.text,
        label=entry.label,
        name=entry.name,
        format=fmt,
        encoding=entry.encoding,
    )


def read_annotated_table(entry: Any, label: str | None = None, **annotations: Any) -> Domain:
    """:func:`_read_table_as_is`, its texts scrubbed of personal data unless the entry says
    ``scrub_pii: false``."""
    return scrubbed(_read_table_as_is(entry, label, **annotations), entry)


def _read_table_as_is(entry: Any, label: str | None = None, **annotations: Any) -> Domain:
    """A table of texts, or of photos when ``entry.image`` names a column of file paths, with
    the ``annotations`` :func:`read_table` takes (``value``, ``label_columns``) and the label
    column ``label`` (none by default)."""
    path = Path(entry.path).expanduser()
    if getattr(entry, "image", None) is not None:
        return read_image_table(
            path,
            image=entry.image,
            label=label,
            root=entry.image_root,
            name=entry.name,
            format=entry.format,
            encoding=entry.encoding,
            **annotations,
        )
    return read_table(
        path,
        text=entry.text,
        label=label,
        name=entry.name,
        format=entry.format,
        encoding=entry.encoding,
        **annotations,
    )
