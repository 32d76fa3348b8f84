from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoptransfer.data import read_features
from shoptransfer.errors import DataError

VECTORS = np.arange(12, dtype=np.float32).reshape(4, 3)
LABELS = ["a", "b", "a", "b"]


def test_npy_npz_parquet_and_svmlight_read_the_same_vectors(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", VECTORS)
    np.savez(tmp_path / "x.npz", emb=VECTORS, y=np.array(LABELS))
    pd.DataFrame({"emb": list(VECTORS), "y": LABELS}).to_parquet(tmp_path / "x.parquet")
    lines = [
        f"{i % 2} " + " ".join(f"{j + 1}:{v}" for j, v in enumerate(row) if v)
        for i, row in enumerate(VECTORS)
    ]
    (tmp_path / "x.svm").write_text("\n".join(lines) + "\n")
    assert read_features(tmp_path / "x.npy", label=None).labels is None
    np.testing.assert_array_equal(read_features(tmp_path / "x.npy", label=None).vectors, VECTORS)
    for name in ("x.npz", "x.parquet"):
        domain = read_features(tmp_path / name, vectors="emb", label="y")
        np.testing.assert_array_equal(domain.vectors, VECTORS)
        assert domain.labels == LABELS
    svm = read_features(tmp_path / "x.svm", n_features=3)
    np.testing.assert_array_equal(svm.vectors, VECTORS)
    assert svm.labels == ["0", "1", "0", "1"]


def test_bad_vector_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", emb=VECTORS)
    with pytest.raises(DataError, match=r"no array 'label'; the arrays are \['emb'\]"):
        read_features(tmp_path / "x.npz", vectors="emb")
    with pytest.raises(DataError, match="file not found"):
        read_features(tmp_path / "none.npy")
    bad = VECTORS.copy()
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="row 3 has NaN"):
        read_features(tmp_path / "nan.npy", label=None)
    pd.DataFrame({"emb": [[1.0, 2.0], [1.0]], "label": ["a", "b"]}).to_parquet(tmp_path / "r.pq")
    with pytest.raises(DataError, match="vectors of lengths"):
        read_features(tmp_path / "r.pq", vectors="emb")
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(DataError, match="cannot read vectors"):
        read_features(tmp_path / "x.csv")


def test_office_caltech_surf_features(shared_data: Path) -> None:
    domain = read_features(
        shared_data / "office_caltech10_surf" / "webcam_SURF_L10.mat", vectors="fts", label="labels"
    )
    assert domain.vectors.shape == (295, 800)
    assert len(domain.classes) == 10
