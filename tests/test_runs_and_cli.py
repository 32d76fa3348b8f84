from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoptransfer.api import predict, run_experiment
from shoptransfer.cli import app
from shoptransfer.config import load_config

from .conftest import write_experiment, write_reviews_csv


def write_config(
    tmp_path: Path, source: Path, target: Path, backbone: str, **extra: object
) -> Path:
    config = {
        "name": "toy",
        "source": {"path": source.name, "text": "review", "label": "sentiment"},
        "target": {"path": target.name, "text": "review", "label": "sentiment"},
        "recipes": [
            "scratch-tfidf",
            {"name": "frozen-features", "epochs": 3},
            {"name": "fine-tune", "epochs": 1, "target_epochs": 1},
            {"name": "scratch-transformer", "epochs": 1},
        ],
        "budgets": [0, 2],
    }
    return write_experiment(tmp_path, backbone, config, **extra)


def test_run_writes_results_models_and_config(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    config_path = write_config(tmp_path, *review_csvs, tiny_backbone)
    run_dir = run_experiment(load_config(config_path), show_progress=False)
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.endswith("-toy")
    results = json.loads((run_dir / "results.json").read_text())
    assert (run_dir / "config.yaml").exists()
    assert results["classes"] == ["neg", "pos"]
    assert results["versions"]["torch"]
    assert len(results["data"]["source"]["data_hash"]) == 64
    cells = {(r["recipe"], r["budget"]): r for r in results["results"]}
    assert len(cells) == 8
    assert cells[("scratch-tfidf", 0)]["status"] == "skipped"
    for key in [("frozen-features", 0), ("fine-tune", 2), ("scratch-transformer", 2)]:
        record = cells[key]
        assert record["status"] == "ok"
        assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
        assert record["trainable_parameters"] > 0 and record["peak_rss_mb"] > 0
        assert record["train_seconds"] >= 0 and record["predict_seconds"] >= 0
        assert (run_dir / record["model_dir"] / "model.safetensors").exists()
    assert cells[("fine-tune", 2)]["target_examples"] == 4
    labels, probabilities, classes = predict(
        run_dir, ["great pan, love it"], model="scratch-tfidf-k2-seed0"
    )
    assert labels[0] in classes and probabilities.shape == (1, 2)


def test_dropped_rows_are_reported_in_the_run(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    source, target = review_csvs
    with source.open("a", encoding="utf-8") as handle:
        handle.write(',pos\n"   ",neg\n')
    config_path = write_config(
        tmp_path, source, target, tiny_backbone, recipes=["scratch-tfidf"], budgets=[2]
    )
    run_dir = run_experiment(load_config(config_path), show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["source"]["dropped_rows"] == {"empty text": 2}


def test_cli_run_and_predict(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    config_path = write_config(
        tmp_path,
        *review_csvs,
        tiny_backbone,
        recipes=["scratch-tfidf", "frozen-features"],
        budgets=[2],
    )
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(config_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "frozen-features" in result.output and "macro-F1" in result.output
    run_dir = next((tmp_path / "runs").iterdir())
    (tmp_path / "texts.txt").write_text("awful junk, broke\nlove it, great\n")
    result = runner.invoke(
        app,
        [
            "predict",
            str(run_dir),
            "--input",
            str(tmp_path / "texts.txt"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["text"] for line in lines] == ["awful junk, broke", "love it, great"]
    assert all(abs(line["p_pos"] + line["p_neg"] - 1) < 1e-5 for line in lines)
    result = runner.invoke(app, ["predict", str(run_dir), "--text", "superb", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["text"] == "superb" and abs(sum(record["probabilities"].values()) - 1) < 1e-5
    (tmp_path / "folder.txt").mkdir()
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ok\n".encode("latin-1"))
    for name, message in (("folder.txt", "is a folder"), ("latin1.txt", "not valid UTF-8")):
        done = cli("predict", str(run_dir), "--input", str(tmp_path / name), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoptransfer.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"source": {"path": "missing.csv"}}, "missing.csv: file not found"),
        (
            {"source": {"path": "books.csv", "text": "body", "label": "sentiment"}},
            "no column 'body'",
        ),
        ({"recipes": ["fine-tuning"]}, "unknown recipe 'fine-tuning'"),
        ({"budgets": [100]}, "budgets: [100] labels per class asked for"),
        ({"recipes": [{"name": "fine-tune", "epoch": 2}]}, "unknown option(s) ['epoch']"),
        (
            {"recipes": [{"name": "scratch-tfidf", "c": "abc"}]},
            "key 'recipes.0': recipe 'scratch-tfidf': option 'c' is 'abc'; expected a number",
        ),
        (
            {"recipes": [{"name": "scratch-tfidf", "ngram_max": 0}]},
            "option 'ngram_max' is 0; expected an integer >= 1",
        ),
        ({"seeds": [-1]}, "key 'seeds.0': Input should be greater than or equal to 0"),
        ({"ensemble_seeds": True}, "ensemble_seeds needs at least two seeds (seeds: [0])"),
        ({"budgets": [True]}, "key 'budgets': budget True is not valid"),
    ],
)
def test_cli_bad_input_prints_one_line_and_exits_2(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str, change: dict, message: str
) -> None:
    config_path = write_config(tmp_path, *review_csvs, tiny_backbone)
    config = yaml.safe_load(config_path.read_text())
    config.update(change)
    config_path.write_text(yaml.safe_dump(config))
    result = cli("run", str(config_path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing started


def test_cli_single_class_source_and_unknown_target_label(tmp_path: Path) -> None:
    source = tmp_path / "s.csv"
    source.write_text("text,label\na,pos\nb,pos\n")
    target = write_reviews_csv(tmp_path / "t.csv")
    config = {
        "source": {"path": "s.csv"},
        "target": {"path": "t.csv", "text": "review", "label": "sentiment"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = cli("run", "c.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "single class" in result.stderr
    source.write_text("text,label\na,neg\nb,other\n")
    result = cli("run", "c.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "unknown to the source" in result.stderr
    assert target.exists()


def test_cli_predict_errors(tmp_path: Path) -> None:
    result = cli("predict", str(tmp_path), "--text", "hi", cwd=tmp_path)
    assert result.returncode == 2 and "no results.json" in result.stderr
    result = cli("demo", "--budgets", "a,b", cwd=tmp_path)
    assert result.returncode == 2 and "expected integers" in result.stderr


def test_cli_lists_recipes_and_backbones() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0 and "frozen-features" in result.output
    assert "feature-based" in result.output
    result = runner.invoke(app, ["backbones"])
    assert result.exit_code == 0 and "minilm-l6" in result.output


def test_same_seed_gives_the_same_numbers(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    config_path = write_config(
        tmp_path,
        *review_csvs,
        tiny_backbone,
        recipes=["scratch-tfidf", {"name": "frozen-features", "epochs": 3}],
        budgets=[2],
        save_models=False,
    )
    metrics = []
    for _ in range(2):
        run_dir = run_experiment(load_config(config_path), show_progress=False)
        results = json.loads((run_dir / "results.json").read_text())
        metrics.append([r["metrics"] for r in results["results"]])
        assert not (run_dir / "models").exists()
    assert metrics[0] == metrics[1]


def test_two_entries_of_one_recipe_keep_their_own_models_and_rows(
    tmp_path: Path, review_csvs: tuple[Path, Path]
) -> None:
    from shoptransfer.api import choose_model
    from shoptransfer.backbones.cache import EmbeddingCache
    from shoptransfer.evaluation.compare import analyse
    from shoptransfer.evaluation.metrics import classification_metrics
    from shoptransfer.evaluation.report import format_table
    from shoptransfer.recipes import load_predictor
    from shoptransfer.tasks import make_task

    # the better entry first: a shared folder would hold the second (worse) entry's model
    recipes = [{"name": "scratch-tfidf", "c": 100.0}, {"name": "scratch-tfidf", "c": 1e-4}]
    config_path = write_config(
        tmp_path, *review_csvs, "minilm-l6", recipes=recipes, budgets=[4], test_fraction=0.5
    )
    config = load_config(config_path)
    run_dir = run_experiment(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    rows = results["results"]
    assert [(r["recipe"], r["label"]) for r in rows] == [
        ("scratch-tfidf", "scratch-tfidf-c=100.0"),
        ("scratch-tfidf", "scratch-tfidf-c=0.0001"),
    ]
    assert [r["model_dir"] for r in rows] == [
        "models/scratch-tfidf-c=100.0-k4-seed0",
        "models/scratch-tfidf-c=0.0001-k4-seed0",
    ]
    f1 = [r["metrics"]["macro_f1"] for r in rows]
    assert f1[0] > f1[1]
    assert [(row["recipe"], row["label"]) for row in analyse(rows)] == [
        ("scratch-tfidf", "scratch-tfidf-c=100.0"),
        ("scratch-tfidf", "scratch-tfidf-c=0.0001"),
    ]
    assert "scratch-tfidf-c=0.0001" in format_table(rows)

    best = choose_model(run_dir)
    assert best == run_dir / rows[0]["model_dir"]
    test = make_task(config).prepare(EmbeddingCache(None)).test
    classes = results["classes"]
    for row in rows:  # each saved model scores what its own row reports
        model = load_predictor(run_dir / row["model_dir"])
        predicted = model.predict_proba(test.inputs).argmax(axis=1)
        scored = classification_metrics(test.label_ids(classes), predicted, classes)
        assert scored["macro_f1"] == pytest.approx(row["metrics"]["macro_f1"])
    labels, _, _ = predict(run_dir, test.inputs)
    expected = load_predictor(run_dir / rows[0]["model_dir"]).predict(test.inputs)
    assert labels == expected


def test_without_a_source_the_backbone_is_the_source_and_recipes_train_on_target_labels(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    config_path = write_config(tmp_path, *review_csvs, tiny_backbone, budgets=[2, "all"])
    data = yaml.safe_load(config_path.read_text())
    del data["source"]
    data["recipes"].append({"name": "lora", "epochs": 1, "target_epochs": 2})
    config_path.write_text(yaml.safe_dump(data))
    run_dir = run_experiment(load_config(config_path), show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert "source" not in results["data"] and results["classes"] == ["neg", "pos"]
    cells = {(r["label"], r["budget"]): r for r in results["results"]}
    assert all(r["status"] == "ok" for r in cells.values())
    assert cells[("fine-tune", 2)]["target_examples"] == 4
    assert cells[("fine-tune", "all")]["target_examples"] == 16
    labels, _, _ = predict(run_dir, ["great pan, works perfectly"], model="lora-kall-seed0")
    assert labels[0] in ("neg", "pos")
    # budget 0 has nothing to train on without a source: an error before any work
    data["budgets"] = [0, 2]
    config_path.write_text(yaml.safe_dump(data))
    result = cli("run", str(config_path), cwd=tmp_path)
    assert result.returncode == 2 and "has no source" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_seed_ensembles_average_the_seeds_test_probabilities(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    import numpy as np

    from shoptransfer.evaluation.metrics import classification_metrics

    config_path = write_config(
        tmp_path,
        *review_csvs,
        tiny_backbone,
        recipes=[{"name": "frozen-features", "epochs": 3}, "scratch-tfidf"],
        budgets=[2],
        seeds=[0, 1, 2],
        ensemble_seeds=True,
    )
    result = CliRunner().invoke(app, ["run", str(config_path), "--quiet"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert all("test_probabilities" not in r for r in results["results"])
    ensembles = {e["label"]: e for e in results["seed_ensembles"]}
    assert set(ensembles) == {"frozen-features", "scratch-tfidf"}
    frozen = ensembles["frozen-features"]
    assert frozen["seeds"] == [0, 1, 2] and frozen["budget"] == 2
    records = [r for r in results["results"] if r["label"] == "frozen-features"]
    probabilities = [np.load(run_dir / r["predictions_file"]) for r in records]
    assert all(p.shape == probabilities[0].shape and p.shape[1] == 2 for p in probabilities)
    assert np.allclose(probabilities[0].sum(axis=1), 1.0, atol=1e-5)
    # by hand: the task's test labels against the argmax of the seeds' mean probabilities
    from shoptransfer.backbones.cache import EmbeddingCache
    from shoptransfer.tasks import make_task

    data = make_task(load_config(config_path)).prepare(EmbeddingCache(tmp_path / "cache"))
    labels = data.test.label_ids(results["classes"])
    expected = classification_metrics(
        labels, np.mean(probabilities, axis=0).argmax(axis=1), results["classes"]
    )
    assert frozen["metrics"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert frozen["metrics"]["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert frozen["mean_of_seeds"]["accuracy"] == pytest.approx(
        np.mean([r["metrics"]["accuracy"] for r in records])
    )
    assert frozen["train_seconds"] == pytest.approx(sum(r["train_seconds"] for r in records))
    assert "frozen-features at 2 labels/class, 3 seeds together: accuracy" in result.output
