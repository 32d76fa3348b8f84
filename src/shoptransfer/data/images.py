"""Image domains: product photos from a folder per class or a table of paths and labels.

Readers open every image once (a fast reduced-size decode) and sort out what a model cannot
use. Nothing is dropped silently; each domain reports, by reason:

- skipped (``dropped``): files that are not images, corrupt or truncated images, images
  smaller than 8 pixels on a side;
- converted (``converted``): grey-scale, palette, CMYK and transparent images (made RGB;
  transparent pixels become white), images under 32 pixels on a side (upscaled when resized).

A missing folder, table or image file named in a table is a one-line error.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shoptransfer.data.domain import Domain
from shoptransfer.data.pixels import MAX_PIXELS, MIN_SIDE, loader_workers, open_image
from shoptransfer.data.readers import (
    annotation_cells,
    label_cell,
    read_rows,
    require_columns,
    text_cell,
)
from shoptransfer.errors import DataError

SMALL_SIDE = 32
PARALLEL_FROM = 2000  # files; fewer are checked in this process
_MODES = {
    "L": "grey-scale (made RGB)",
    "1": "grey-scale (made RGB)",
    "I": "grey-scale (made RGB)",
    "I;16": "grey-scale (made RGB)",
    "F": "grey-scale (made RGB)",
    "LA": "transparent (on white, made RGB)",
    "RGBA": "transparent (on white, made RGB)",
    "PA": "transparent (on white, made RGB)",
    "P": "palette (made RGB)",
    "CMYK": "CMYK (made RGB)",
    "YCbCr": "YCbCr (made RGB)",
}


@dataclass
class ImageDomain(Domain):
    """A named set of image files with optional labels."""

    holds: ClassVar[str] = "images"
    same_when: ClassVar[str] = "identical file bytes (SHA-256)"
    paths: list[str] = field(default_factory=list)
    converted: dict[str, int] = field(default_factory=dict)

    def __init__(
        self,
        name: str,
        paths: list[str],
        labels: list[str] | None = None,
        source: str = "",
        dropped: dict[str, int] | None = None,
        converted: dict[str, int] | None = None,
        file_digests: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__(name, labels, source, dict(dropped or {}))
        self.paths = [str(p) for p in paths]
        self.converted = dict(converted or {})
        # path -> SHA-256 of the file, shared with the domains made from this one, so each
        # file is read once for the data hash and the leakage check
        self._file_digests = file_digests if file_digests is not None else {}
        self._check()

    @property
    def inputs(self) -> list[str]:
        return self.paths

    def _take(self, idx: list[int]) -> list[str]:
        return [self.paths[i] for i in idx]

    def _with(self, inputs: Any, labels: list[str] | None, name: str) -> ImageDomain:
        return ImageDomain(
            name,
            list(inputs),
            labels,
            self.source,
            self.dropped,
            self.converted,
            self._file_digests,
        )

    def example_keys(self) -> list[bytes]:
        digests = self._file_digests
        for path in self.paths:
            if path not in digests:
                digests[path] = hashlib.sha256(Path(path).read_bytes()).digest()
        return [digests[path] for path in self.paths]

    def _hash_inputs(self, digest: Any) -> None:
        files = hashlib.sha256()
        for key in self.example_keys():
            files.update(key)
        digest.update(files.hexdigest().encode("ascii"))


def inspect_image(path: Path) -> tuple[str | None, list[str]]:
    """Why ``path`` cannot be used (or None), and the conversions it will need. A file that
    cannot be read at all (no permission) is a DataError naming it: that is for the user to
    fix, not a bad image to skip."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as image:
            width, height = image.size
            mode = image.mode
            if image.format == "JPEG":
                image.draft(mode if mode in ("RGB", "L") else None, (64, 64))
            image.load()
    except PermissionError:
        raise DataError(f"{path}: cannot read the file (permission denied)") from None
    except UnidentifiedImageError:
        return "not an image", []
    except DataError:
        return f"larger than {MAX_PIXELS:,} pixels", []
    except (OSError, SyntaxError, ValueError):
        return "corrupt or truncated image", []
    if min(width, height) < MIN_SIDE:
        return f"smaller than {MIN_SIDE} px", []
    notes = [_MODES[mode]] if mode in _MODES else []
    if min(width, height) < SMALL_SIDE:
        notes.append(f"smaller than {SMALL_SIDE} px (upscaled)")
    return None, notes


def inspect_images(files: Sequence[Path]) -> list[tuple[str | None, list[str]]]:
    """:func:`inspect_image` of each file, in worker processes from :data:`PARALLEL_FROM`
    files."""
    if len(files) >= PARALLEL_FROM:
        workers = loader_workers(len(files))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(inspect_image, files, chunksize=256))
    return [inspect_image(path) for path in files]


def _sort_out(
    candidates: list[tuple[Path, str | None]],
) -> tuple[list[str], list[str | None], dict[str, int], dict[str, int]]:
    paths: list[str] = []
    labels: list[str | None] = []
    dropped: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    verdicts = inspect_images([path for path, _ in candidates])
    for (path, label), (problem, notes) in zip(candidates, verdicts):
        if problem is not None:
            dropped[problem] += 1
            continue
        converted.update(notes)
        paths.append(str(path))
        labels.append(label)
    return paths, labels, dict(dropped), dict(converted)


def image_files(places: Sequence[str | Path]) -> tuple[list[str], dict[str, int]]:
    """The usable image files among ``places`` (files, or folders searched recursively), and
    what was skipped, by reason. A place that does not exist is a DataError."""
    files: list[Path] = []
    for place in map(Path, places):
        if not place.exists():
            raise DataError(f"{place}: no such file or folder")
        if place.is_dir():
            files += [
                p for p in sorted(place.rglob("*")) if p.is_file() and not p.name.startswith(".")
            ]
        else:
            files.append(place)
    paths, _, dropped, _ = _sort_out([(path, None) for path in files])
    return paths, dropped


def read_image_folder(folder: str | Path, name: str | None = None) -> ImageDomain:
    """A labeled domain from ``folder/<class>/<image files>`` (hidden files are ignored)."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; expected a folder with one sub-folder per class")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no sub-folders; expected one sub-folder of images per class")
    candidates = [
        (path, label.name)
        for label in classes
        for path in sorted(label.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.parts[-1:])
    ]
    return _image_domain(root, candidates, name or root.name)


def read_image_table(
    path: str | Path,
    image: str = "image",
    label: str | None = "label",
    root: str | Path | None = None,
    name: str | None = None,
    format: str | None = None,
    value: str | None = None,
    label_columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> ImageDomain:
    """A domain from a CSV/TSV/JSON Lines/Parquet table of image paths (and labels), its text
    decoded as ``encoding``.

    Relative paths are read from ``root`` (default: the table's folder). A row whose image
    file does not exist is an error naming the line; rows with an empty path or label are
    skipped and counted. ``value`` (a column of numbers) and ``label_columns`` (head name ->
    label column) annotate each photo as :func:`~shoptransfer.data.readers.read_table` does
    for texts: for regression and multi-task models.
    """
    table = Path(path)
    rows, lines, columns = read_rows(table, format, encoding)
    extra = {"value": value} if value is not None else dict(label_columns or {})
    require_columns(
        table, [image] + ([label] if label is not None else []) + list(extra.values()), columns
    )
    base = Path(root) if root is not None else table.parent
    candidates: list[tuple[Path, str | None]] = []
    annotations: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for row, line in zip(rows, lines):
        where = text_cell(table, line, image, row.get(image)).strip()
        tag = label_cell(table, line, label, row.get(label)).strip() if label is not None else None
        if not where:
            skipped["empty image path"] += 1
            continue
        if label is not None and not tag:
            skipped["missing label"] += 1
            continue
        cells = annotation_cells(table, line, row, extra, numbers=value is not None)
        if cells is None:
            skipped["missing annotation"] += 1
            continue
        file = Path(where) if Path(where).is_absolute() else base / where
        if file.is_dir():
            raise DataError(f"{table} line {line}: {file} is a folder; expected an image file")
        if not file.is_file():
            raise DataError(f"{table} line {line}: image file not found: {file}")
        candidates.append((file, tag))
        annotations.append(cells)
    numbered = [(file, str(i)) for i, (file, _) in enumerate(candidates)]
    domain = _image_domain(table, numbered, name or table.stem.split(".")[0], skipped)
    kept = [int(i) for i in domain.labels or []]
    domain.labels = [str(candidates[i][1]) for i in kept] if label is not None else None
    if not extra:
        return domain
    dtype = np.float64 if value is not None else object
    return domain.with_annotations(
        {key: np.array([annotations[i][key] for i in kept], dtype=dtype) for key in extra}
    )


def _image_domain(
    where: Path,
    candidates: list[tuple[Path, str | None]],
    name: str,
    skipped: Counter[str] | None = None,
) -> ImageDomain:
    if not candidates and not skipped:
        raise DataError(f"{where}: no image files; expected image files (JPEG, PNG, ...)")
    paths, labels, dropped, converted = _sort_out(candidates)
    dropped = dict((skipped or Counter()) + Counter(dropped))
    if not paths:
        detail = f" ({sum(dropped.values())} skipped: {dropped})" if dropped else ""
        raise DataError(f"{where}: no usable images{detail}")
    return ImageDomain(
        name,
        paths,
        [str(label) for label in labels] if all(x is not None for x in labels) else None,
        source=str(where),
        dropped=dropped,
        converted=converted,
    )
