"""Readers for precomputed feature vectors ("bring your own embeddings").

Formats: ``.npy`` (a matrix, unlabeled), ``.npz`` and MATLAB ``.mat`` (named arrays),
Parquet (a list/array column), and svmlight / LIBSVM text.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from shoptransfer.data.domain import FeatureDomain
from shoptransfer.data.readers import read_parquet
from shoptransfer.errors import DataError

FEATURE_FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".mat": "mat",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".svm": "svmlight",
    ".svmlight": "svmlight",
    ".libsvm": "svmlight",
}


def _label_strings(values: Any) -> list[str]:
    out = []
    for value in np.asarray(values).ravel().tolist():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.append(str(value).strip())
    return out


def _named_arrays(path: Path, fmt: str) -> dict[str, Any]:
    import scipy.io

    try:
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable {fmt} file ({exc})") from None
    except Exception as exc:  # scipy raises several types for a broken .mat file
        detail = str(exc) or type(exc).__name__
        raise DataError(f"{path}: not a readable {fmt} file ({detail})") from None


def _vector_rows(path: Path, column: str, rows: list[Any]) -> np.ndarray:
    """A Parquet column of lists of numbers as a matrix; a DataError naming the row of a cell
    that is empty or not a list of numbers, or when the lists differ in length."""
    vectors = []
    for number, row in enumerate(rows, start=1):
        try:
            vectors.append(np.asarray(row, dtype=np.float32).reshape(-1))
        except (TypeError, ValueError):
            vectors.append(None)
        if row is None or vectors[-1] is None or np.ndim(row) != 1:
            raise DataError(
                f"{path} line {number}: column '{column}' holds {str(row)[:40]!r}; expected a "
                "list of numbers"
            )
    widths = sorted({len(vector) for vector in vectors})
    if len(widths) > 1:
        raise DataError(
            f"{path}: column '{column}' holds vectors of lengths {widths}; expected one length"
        )
    return np.array(vectors)


def read_features(
    path: str | Path,
    vectors: str = "vectors",
    label: str | None = "label",
    name: str | None = None,
    format: str | None = None,
    n_features: int | None = None,
) -> FeatureDomain:
    """Read precomputed vectors (and labels, unless ``label=None``) into a FeatureDomain.

    ``vectors`` and ``label`` name the array keys (npz, mat) or columns (Parquet); svmlight
    files carry their labels in the first column and take ``n_features`` to fix the width.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    fmt = format or FEATURE_FORMATS.get(path.suffix.lower())
    if fmt not in set(FEATURE_FORMATS.values()):
        raise DataError(
            f"{path}: cannot read vectors from '{path.suffix}'; expected one of "
            f"{sorted(FEATURE_FORMATS)}"
        )
    labels: list[str] | None = None
    if fmt == "npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy matrix ({exc})") from None
    elif fmt in ("npz", "mat"):
        arrays = _named_arrays(path, fmt)
        for key in [vectors] + ([label] if label is not None else []):
            if key not in arrays:
                raise DataError(f"{path}: no array '{key}'; the arrays are {sorted(arrays)}")
        matrix = arrays[vectors]
        labels = _label_strings(arrays[label]) if label is not None else None
    elif fmt == "parquet":
        frame = read_parquet(path)
        for key in [vectors] + ([label] if label is not None else []):
            if key not in frame.columns:
                raise DataError(f"{path}: no column '{key}'; the columns are {list(frame.columns)}")
        matrix = _vector_rows(path, vectors, frame[vectors].tolist())
        labels = _label_strings(frame[label].to_numpy()) if label is not None else None
    else:
        from sklearn.datasets import load_svmlight_file

        try:
            sparse, targets = load_svmlight_file(str(path), n_features=n_features)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable svmlight file ({exc})") from None
        if sparse.shape[0] == 0:
            raise DataError(f"{path}: no rows; expected a label and its features per line")
        matrix = sparse.toarray()
        labels = _label_strings(targets) if label is not None else None
    if labels is not None and any(not value for value in labels):
        raise DataError(f"{path}: some labels are empty")
    return FeatureDomain(
        name or path.stem, np.asarray(matrix, dtype=np.float32), labels, source=str(path)
    )
