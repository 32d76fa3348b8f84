"""The regression task: star ratings from texts, through the one runner, compare and predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from shoptransfer.api import compare, predict, run_experiment
from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.config import load_config
from shoptransfer.evaluation.compare import analyse
from shoptransfer.evaluation.metrics import regression_metrics
from shoptransfer.heads import Outputs
from shoptransfer.recipes import load_predictor
from shoptransfer.tasks import make_task
from shoptransfer.training import Examples, Trainer, TrainingSettings

from .conftest import NEGATIVE, POSITIVE, write_experiment
from .test_runs_and_cli import cli

NEUTRAL = [
    "it is okay, does the job",
    "average product, nothing special",
    "fine for the price, a bit plain",
    "decent, some good and some bad points",
    "middling quality but it works",
    "acceptable, not great not terrible",
    "so-so, works most of the time",
    "ordinary item, meets basic needs",
]


def write_ratings_csv(path: Path, prefix: str, repeat: int = 2) -> Path:
    """Reviews with a star rating: positive 4-5, neutral 3, negative 1-2."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "stars"])
        for r in range(repeat):
            for i, text in enumerate(POSITIVE):
                writer.writerow([f"{prefix}{text} ({r})", 5.0 - (i % 2)])
            for text in NEUTRAL:
                writer.writerow([f"{prefix}{text} ({r})", 3])
            for i, text in enumerate(NEGATIVE):
                writer.writerow([f"{prefix}{text} ({r})", 1.0 + (i % 2)])
    return path


def write_config(tmp_path: Path, backbone: str, **extra: object) -> Path:
    write_ratings_csv(tmp_path / "books.csv", "book: ")
    write_ratings_csv(tmp_path / "kitchen.csv", "pan: ")
    entry = {"text": "review", "value": "stars"}
    config = {
        "task": "regression",
        "name": "stars",
        "source": {"path": "books.csv", **entry},
        "target": {"path": "kitchen.csv", **entry},
        "recipes": [
            "scratch-tfidf",
            {"name": "frozen-features", "epochs": 5},
            {"name": "frozen-features", "label": "ridge", "solver": "lbfgs"},
            {"name": "fine-tune", "epochs": 1, "target_epochs": 1},
        ],
        "budgets": [0, 12],
    }
    return write_experiment(tmp_path, backbone, config, **extra)


def test_trainer_fits_numbers_with_mse_and_keeps_the_best_epoch_by_rmse() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (3.0 + 2.0 * x[:, 0] - x[:, 1]).astype(np.float32)  # far from 0: the head's center
    outputs = Outputs.value()
    torch.manual_seed(0)
    model = outputs.build(4, values=y[:150])
    settings = TrainingSettings(
        epochs=30, batch_size=16, learning_rate=0.05, warmup_fraction=0.0, loss="mse", patience=30
    )
    history = Trainer(settings).fit(model, Examples(x[:150], y[:150]), Examples(x[150:], y[150:]))
    rmse = [h["validation_rmse"] for h in history]
    assert min(rmse) < 0.1 < rmse[0]
    predicted = outputs.predictions(model(dict(features=torch.from_numpy(x[150:]))).detach())
    # the kept epoch is the best one, although every score (-RMSE) is below zero
    assert np.sqrt(np.mean((predicted - y[150:]) ** 2)) == pytest.approx(min(rmse), rel=1e-4)


def test_regression_run_from_yaml_writes_metrics_and_models_that_reload(
    tmp_path: Path, tiny_backbone: str
) -> None:
    config = load_config(write_config(tmp_path, tiny_backbone))
    run_dir = run_experiment(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "regression"
    assert results["primary_metric"] == "rmse" and results["higher_is_better"] is False
    assert results["data"]["target"]["annotations"]["value"]["max"] == 5.0
    cells = {(r["label"], r["budget"]): r for r in results["results"]}
    assert cells[("scratch-tfidf", 0)]["status"] == "skipped"
    assert cells[("fine-tune", 12)]["target_examples"] == 12
    test = make_task(config).prepare(EmbeddingCache(None)).test
    for (label, budget), record in cells.items():
        if record["status"] != "ok":
            continue
        metrics = record["metrics"]
        assert set(metrics) >= {"mae", "rmse", "spearman", "r2"}
        assert 0 < metrics["mae"] <= metrics["rmse"]
        # each saved model reloads and predicts the numbers its row was scored on
        model = load_predictor(run_dir / record["model_dir"])
        values = model.predict(test.inputs)
        scored = regression_metrics(test.annotations["value"], values)
        assert scored["rmse"] == pytest.approx(metrics["rmse"], rel=1e-5), (label, budget)
    # transfer helps here: a source of reviews with the same words and ratings
    assert cells[("ridge", 0)]["metrics"]["spearman"] > 0.5
    values, array, classes = predict(run_dir, ["pan: love it, best purchase this year"])
    assert classes == [] and isinstance(values[0], float) and array.shape == (1,)
    best = min(
        (r for r in results["results"] if r["status"] == "ok"), key=lambda r: r["metrics"]["rmse"]
    )
    expected = load_predictor(run_dir / best["model_dir"]).predict(["pan: awful junk"])
    assert predict(run_dir, ["pan: awful junk"])[0] == pytest.approx(list(expected))
    # why a number: each word's score is how much the value falls without it (occlusion)
    from typer.testing import CliRunner

    from shoptransfer.api import explain_predictions
    from shoptransfer.cli import app
    from shoptransfer.errors import ConfigError
    from shoptransfer.explain import without_words

    (why,) = explain_predictions(run_dir, ["pan: awful junk"])
    assert why.method == "occlusion" and why.value == pytest.approx(expected[0], abs=1e-6)
    without = without_words(why.input, why.spans, [2])  # "junk" deleted
    fallen = why.value - predict(run_dir, [without])[0][0]
    assert why.scores[2] == pytest.approx(fallen, abs=1e-6)
    assert why.to_dict()["value"] == why.value and "label" not in why.to_dict()
    with pytest.raises(ConfigError, match="explained by occlusion"):
        explain_predictions(run_dir, ["pan: awful junk"], method="integrated-gradients")
    printed = CliRunner().invoke(
        app, ["predict", str(run_dir), "-t", "pan: awful junk", "--explain"]
    )
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.startswith(f"{why.value:.3f}\t") and "why (occlusion)" in printed.stdout


def test_compare_flags_negative_transfer_when_the_rmse_is_higher(
    tmp_path: Path, tiny_backbone: str
) -> None:
    def cell(label: str, family: str, rmse: float, seed: int) -> dict:
        return {
            "recipe": label,
            "label": label,
            "family": family,
            "budget": 10,
            "seed": seed,
            "status": "ok",
            "metrics": {"rmse": rmse},
            "train_seconds": 1.0,
            "trainable_parameters": 1,
        }

    results = [
        cell("scratch", "baseline", 1.0, 0),
        cell("scratch", "baseline", 1.02, 1),
        cell("worse", "model-based", 1.5, 0),
        cell("worse", "model-based", 1.52, 1),
        cell("better", "model-based", 0.6, 0),
        cell("better", "model-based", 0.62, 1),
    ]
    rows = {row["label"]: row for row in analyse(results, "rmse", higher_is_better=False)}
    assert rows["worse"]["negative_transfer"] is True
    assert rows["worse"]["versus_scratch"] == pytest.approx(-0.5)
    assert rows["better"]["negative_transfer"] is False
    assert rows["better"]["versus_scratch"] == pytest.approx(0.4)
    # the same rule on a real run: one seed, so any higher RMSE than scratch is flagged
    config_path = write_config(
        tmp_path,
        tiny_backbone,
        recipes=["scratch-tfidf", {"name": "frozen-features", "epochs": 3}],
        budgets=[12],
    )
    run_dir = compare(load_config(config_path), show_progress=False)
    comparison = json.loads((run_dir / "results.json").read_text())["comparison"]
    scratch = next(r for r in comparison if r["label"] == "scratch-tfidf")
    frozen = next(r for r in comparison if r["label"] == "frozen-features")
    worse = frozen["rmse"]["mean"] > scratch["rmse"]["mean"]
    assert frozen["negative_transfer"] is worse
    assert frozen["versus_scratch"] == pytest.approx(
        scratch["rmse"]["mean"] - frozen["rmse"]["mean"]
    )


def test_a_bad_number_is_one_line_naming_file_line_and_value(
    tmp_path: Path, tiny_backbone: str
) -> None:
    config_path = write_config(tmp_path, tiny_backbone)
    with (tmp_path / "kitchen.csv").open("a", encoding="utf-8") as handle:
        handle.write("pan: odd one,\n")  # an empty number: dropped and counted
        handle.write("pan: fine pan,four\n")
    result = cli("run", str(config_path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "kitchen.csv line 51: column 'stars' holds 'four'; expected a number" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_empty_numbers_are_dropped_and_counted_and_budgets_are_checked(
    tmp_path: Path, tiny_backbone: str
) -> None:
    config_path = write_config(tmp_path, tiny_backbone, recipes=["scratch-tfidf"], budgets=[12])
    with (tmp_path / "kitchen.csv").open("a", encoding="utf-8") as handle:
        handle.write("pan: odd one,\n")
    run_dir = run_experiment(load_config(config_path), show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["target"]["dropped_rows"] == {"empty stars": 1}
    data = yaml.safe_load(config_path.read_text())
    data["budgets"] = [1000]
    config_path.write_text(yaml.safe_dump(data))
    result = cli("run", str(config_path), cwd=tmp_path)
    assert result.returncode == 2 and "[1000] target examples asked for" in result.stderr


def test_recipes_that_need_class_scores_are_refused_for_regression(
    tmp_path: Path, tiny_backbone: str
) -> None:
    for recipe, message in [
        ("mcc", "recipe 'mcc' learns classification"),
        ({"name": "transfer", "objectives": ["mcc"]}, "objective 'mcc' is for classification"),
        ({"name": "fine-tune", "stages": "joint"}, "stages: joint is for classification"),
    ]:
        config_path = write_config(tmp_path, tiny_backbone, recipes=[recipe], budgets=[12])
        result = cli("run", str(config_path), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_regression_on_the_asap_sample(
    shared_data: Path, tmp_path: Path, tiny_backbone: str
) -> None:
    """Star ratings of real Chinese restaurant reviews (the 100-row samples of ASAP, Bu et al.,
    NAACL 2021; UTF-8 with a byte-order mark, stars written as 4.0): train on the train sample,
    test on the test sample. A smoke test: 100 reviews are too few for a quality claim."""
    folder = shared_data / "asap_sample"
    if not (folder / "train_sample.csv").exists():
        pytest.skip(f"ASAP sample not found in {folder}")
    entry = {"text": "reviewbody", "value": "star"}
    config_path = write_experiment(
        tmp_path,
        tiny_backbone,
        {
            "task": "regression",
            "name": "asap",
            "target": {"path": str(folder / "train_sample.csv"), **entry},
            "target_test": {"path": str(folder / "test_sample.csv"), **entry},
            "recipes": ["scratch-tfidf", {"name": "frozen-features", "solver": "lbfgs"}],
            "budgets": ["all"],
        },
    )
    config = load_config(config_path)
    run_dir = run_experiment(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    stars = results["data"]["target"]["annotations"]["value"]
    assert results["data"]["target"]["examples"] == 100 and (stars["min"], stars["max"]) == (1, 5)
    data = make_task(config).prepare(EmbeddingCache(None))
    truth = data.test.annotations["value"]
    mean = float(np.mean(data.pool.annotations["value"]))
    floor = regression_metrics(truth, np.full(len(truth), mean))["rmse"]
    for record in results["results"]:
        metrics = record["metrics"]
        assert metrics["n_examples"] == 100
        # near the training mean's error (a head that lost the stars' scale is far off)
        assert metrics["rmse"] < 1.25 * floor
        values = load_predictor(run_dir / record["model_dir"]).predict(data.test.inputs)
        assert regression_metrics(truth, values)["rmse"] == pytest.approx(metrics["rmse"])


def test_recipes_declare_the_tasks_they_learn() -> None:
    from shoptransfer.catalogue import list_recipes

    regression = {cls.name for cls in list_recipes("regression")}
    multi_task = {cls.name for cls in list_recipes("multi-task")}
    assert {"scratch-tfidf", "scratch-transformer", "frozen-features", "fine-tune"} <= regression
    assert {"scratch-transformer", "frozen-features", "fine-tune", "lora"} <= multi_task
    assert "scratch-tfidf" not in multi_task
    for name in ("mcc", "mlp-mcc", "self-training", "multi-head"):
        assert name not in regression | multi_task
