"""Test examples that are also in the training data are counted and warned about, for every
task; rows a reader dropped are counted once, where the file was read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoptransfer.api import run_experiment
from shoptransfer.backbones import EmbeddingCache
from shoptransfer.config import parse_config
from shoptransfer.data import FeatureDomain, TextDomain
from shoptransfer.data.leakage import duplicates_in_training
from shoptransfer.errors import DataError
from shoptransfer.tasks import make_task


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def prepare(tmp_path: Path, settings: dict):
    """A task's data as a run reads it (no training)."""
    config = parse_config({"name": "leak", "output_dir": "runs", **settings}, "x.yaml", tmp_path)
    return make_task(config).prepare(EmbeddingCache(tmp_path / "cache"))


def reviews(tmp_path: Path) -> dict:
    """A source, a target and a separate target test file: of the four test texts, one is in
    the source and two in the target (one of them in other case and spacing)."""
    write(tmp_path / "books.csv", "text,label\nA good read,pos\ndull plot,neg\nfine,pos\nmeh,neg\n")
    write(
        tmp_path / "kitchen.csv",
        "text,label\nGreat pan,pos\nbroken lid,neg\nnice mug,pos\nsad kettle,neg\n,pos\n  ,neg\n",
    )
    write(
        tmp_path / "kitchen_test.csv",
        "text,label\n  great   PAN ,pos\nbroken lid,neg\na good read,pos\nnew text,neg\n,pos\n",
    )
    return {"source": {"path": "books.csv"}, "target": {"path": "kitchen.csv"}}


def test_classification_counts_test_texts_found_in_source_and_pool(tmp_path: Path) -> None:
    data = prepare(
        tmp_path,
        {
            **reviews(tmp_path),
            "target_test": {"path": "kitchen_test.csv"},
            "recipes": ["scratch-tfidf"],
            "budgets": [1],
        },
    )
    leakage = data.description["leakage"]
    assert leakage == {
        "compared": "identical texts after whitespace and case normalisation",
        "test_examples": 4,
        "duplicates": 3,
        "share": 0.75,
        "by_part": {"source": 1, "target_pool": 2},
    }
    assert any("3 of 4 test examples (75.0%) also appear" in line for line in data.warnings)


def test_dropped_rows_are_counted_once_where_the_file_was_read(tmp_path: Path) -> None:
    """They were repeated under target, target_pool and target_test (three times the loss)."""
    settings = {**reviews(tmp_path), "recipes": ["scratch-tfidf"], "budgets": [1]}
    data = prepare(tmp_path, {**settings, "target_test": {"path": "kitchen_test.csv"}})
    parts = data.description
    assert parts["target"]["dropped_rows"] == {"empty text": 2}
    assert parts["target_test"]["dropped_rows"] == {"empty text": 1}  # its own file
    assert "dropped_rows" not in parts["target_pool"]
    assert parts["target_pool"]["part_of"] == "target"
    dropped = [line for line in data.warnings if "dropped while reading" in line]
    assert dropped == [
        f"{tmp_path / 'kitchen.csv'}: 2 rows dropped while reading (empty text: 2)",
        f"{tmp_path / 'kitchen_test.csv'}: 1 row dropped while reading (empty text: 1)",
    ]
    # held out from the target: both splits are parts of it and say nothing of its rows
    parts = prepare(tmp_path, {**settings, "test_fraction": 0.5}).description
    assert parts["target"]["dropped_rows"] == {"empty text": 2}
    for split in ("target_pool", "target_test"):
        assert "dropped_rows" not in parts[split] and parts[split]["part_of"] == "target"


def test_regression_and_multi_task_report_duplicates_too(tmp_path: Path) -> None:
    rows = "text,stars,mood,kind\n" + "".join(
        f"review {i % 6},{i % 5},{'pos' if i % 2 else 'neg'},{'a' if i % 3 else 'b'}\n"
        for i in range(24)
    )
    write(tmp_path / "stars.csv", rows)  # each text four times: a held-out test meets its twins
    data = prepare(
        tmp_path,
        {
            "task": "regression",
            "target": {"path": "stars.csv", "value": "stars"},
            "recipes": ["scratch-tfidf"],
            "budgets": [2],
        },
    )
    leakage = data.description["leakage"]
    assert leakage["duplicates"] == leakage["test_examples"] > 0
    assert leakage["share"] == 1.0 and leakage["by_part"] == {"target_pool": leakage["duplicates"]}
    data = prepare(
        tmp_path,
        {
            "task": "multi-task",
            "target": {"path": "stars.csv", "labels": {"mood": "mood", "kind": "kind"}},
            "recipes": ["scratch-transformer"],
            "budgets": [2],
        },
    )
    assert data.description["leakage"]["share"] == 1.0
    assert any("test examples (100.0%) also appear" in line for line in data.warnings)


def test_photos_are_compared_by_file_bytes_and_vectors_exactly(tmp_path: Path) -> None:
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (255, 0, 0)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (20, 20), colour).save(paths[-1])
    from shoptransfer.data.images import ImageDomain

    train = ImageDomain("train", [str(paths[0]), str(paths[1])], ["a", "b"])
    test = ImageDomain("test", [str(paths[2])], ["a"])  # another file, the same bytes
    found = duplicates_in_training(test, {"target_pool": train})
    assert found["duplicates"] == 1 and found["compared"] == "identical file bytes (SHA-256)"
    vectors = FeatureDomain("v", np.eye(3), ["a", "b", "c"])
    found = duplicates_in_training(vectors.subset([0]), {"target_pool": vectors.subset([0, 1])})
    assert found["duplicates"] == 1 and found["share"] == 1.0
    texts = TextDomain("t", ["Same  Text", "other"], ["a", "b"])
    assert duplicates_in_training(texts, {"source": TextDomain("s", ["same text"])})["by_part"] == {
        "source": 1
    }


def test_a_run_prints_each_warning_once_and_records_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = {
        **reviews(tmp_path),
        "target_test": {"path": "kitchen_test.csv"},
        "recipes": ["scratch-tfidf"],
        "budgets": [1],
        "seeds": [0, 1],
    }
    config = parse_config({"name": "leak", "output_dir": "runs", **settings}, "x.yaml", tmp_path)
    run_dir = run_experiment(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    printed = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning")]
    assert printed == [f"warning: {line}" for line in results["warnings"]]
    assert len(printed) == 3  # the two files' dropped rows and the duplicates
    assert results["data"]["leakage"]["duplicates"] == 3


def write_log(tmp_path: Path, rows: list[tuple[str, str, int]]) -> Path:
    return write(
        tmp_path / "log.csv", "user,item,time\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    )


def recommendation(tmp_path: Path, **target: object) -> dict:
    return {
        "task": "recommendation",
        "target": {"path": "log.csv", "user": "user", "item": "item", "time": "time", **target},
        "recipes": ["popularity"],
    }


def test_recommendation_counts_next_items_already_in_the_history(tmp_path: Path) -> None:
    """A duplicate is a test case whose next item the user's training history holds, by id
    or by identical item text (the same product listed twice)."""
    rows = [("u1", "a", 0), ("u1", "b", 1), ("u1", "c", 2), ("u1", "a", 3)]  # a again: by id
    rows += [("u2", "a", 0), ("u2", "b", 1), ("u2", "c", 2), ("u2", "d", 3)]  # d is a's twin
    rows += [("u3", "a", 0), ("u3", "b", 1), ("u3", "c", 2), ("u3", "e", 3)]  # e is new
    write_log(tmp_path, rows)
    write(tmp_path / "items.csv", "item,title\na,Red Mug\nb,pan\nc,lid\nd,red  mug\ne,kettle\n")
    data = prepare(tmp_path, recommendation(tmp_path, items="items.csv", item_text=["title"]))
    leakage = data.description["leakage"]
    assert leakage["test_examples"] == 3 and leakage["duplicates"] == 2
    assert leakage["share"] == round(2 / 3, 4)
    assert any("2 of 3 test examples" in line for line in data.warnings)


def test_recommendation_without_test_or_validation_cases_is_an_error(tmp_path: Path) -> None:
    """It reported 0.0 for every metric and exited 0."""
    write_log(tmp_path, [("u1", "a", 0), ("u1", "b", 1), ("u2", "a", 0)])
    with pytest.raises(DataError, match="log.csv: the target has no test cases"):
        prepare(tmp_path, recommendation(tmp_path))
    from shoptransfer.evaluation.ranking import ranking_metrics

    with pytest.raises(ValueError, match="no cases to rank"):
        ranking_metrics(np.zeros(0))


def test_pre_split_target_with_an_empty_validation_file_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "S"
    folder.mkdir()
    write(folder / "S.item2index", "A\t0\nB\t1\nC\t2\n")
    write(folder / "S.text", "item_id:token\ttext:token_seq\nA\tan a\nB\ta b\nC\tc\n")
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(folder / "S.train.inter", header + "0\t0\t1\n")
    write(folder / "S.valid.inter", header)
    write(folder / "S.test.inter", header + "0\t0 1\t2\n")
    settings = {
        "task": "recommendation",
        "target": {"path": "S", "format": "recbole-split"},
        "recipes": ["popularity"],
    }
    with pytest.raises(DataError, match="S: the target has no validation cases"):
        prepare(tmp_path, settings)


def test_at_budget_0_the_pool_is_not_training_data(tmp_path: Path) -> None:
    """Unsupervised adaptation (the Blitzer protocol) tests on the pool's own texts, unlabeled:
    no label of the pool reaches a fit, so only the source is compared."""
    settings = {
        **reviews(tmp_path),
        "target_test": {"path": "kitchen.csv"},
        "recipes": ["frozen-features"],
        "budgets": [0],
    }
    leakage = prepare(tmp_path, settings).description["leakage"]
    assert leakage["by_part"] == {"source": 0} and leakage["duplicates"] == 0
    leakage = prepare(tmp_path, {**settings, "budgets": [0, 1]}).description["leakage"]
    assert leakage["by_part"] == {"source": 0, "target_pool": 4} and leakage["share"] == 1.0
