"""The multi-task task: one shared encoder, a head per label column, fixed or learned weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from shoptransfer.api import predict, run_experiment
from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.cli import app
from shoptransfer.config import load_config
from shoptransfer.errors import ConfigError
from shoptransfer.heads import Outputs
from shoptransfer.objectives.uncertainty import UncertaintyWeighting
from shoptransfer.recipes import load_predictor
from shoptransfer.tasks import make_task
from shoptransfer.training import MISSING, Examples, Trainer, TrainingSettings

from .conftest import NEGATIVE, POSITIVE, write_experiment
from .test_runs_and_cli import cli


def test_uncertainty_weights_settle_at_one_over_each_loss() -> None:
    """For fixed losses L_t, exp(-s_t) L_t + s_t is smallest at exp(-s_t) = 1 / L_t."""
    weighting = UncertaintyWeighting(2)
    losses = torch.tensor([0.5, 2.0])
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        weighting(losses, [0, 1]).backward()
        optimizer.step()
    assert weighting.weights().tolist() == pytest.approx([2.0, 0.5], rel=1e-2)


def test_learned_weights_favour_the_task_with_less_label_noise() -> None:
    """Kendall et al.'s claim: the task with noisier labels gets the lower weight exp(-s)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    clean = (x[:, 0] > 0).astype(np.int64)
    noisy = (x[:, 1] > 0).astype(np.int64)
    flipped = rng.random(400) < 0.35
    noisy[flipped] = 1 - noisy[flipped]
    noisy[::4] = MISSING  # a quarter of the examples lack the noisy task's label
    outputs = Outputs.of_tasks({"clean": ["no", "yes"], "noisy": ["no", "yes"]}, "uncertainty")
    torch.manual_seed(0)
    model = outputs.build(2)
    assert model.head.task_weights() == {"clean": 1.0, "noisy": 1.0}
    settings = TrainingSettings(
        epochs=30, batch_size=32, learning_rate=0.05, weight_decay=0.0, loss="multi-task"
    )
    Trainer(settings).fit(model, Examples(x, np.stack([clean, noisy], axis=1)))
    weights = model.head.task_weights()
    assert weights["clean"] > 1.5 * weights["noisy"]
    logits = model({"features": torch.from_numpy(x)})
    assert (logits["clean"].argmax(dim=1).numpy() == clean).mean() > 0.95


def write_reviews(path: Path, kinds: dict[str, str], repeat: int = 2) -> Path:
    """Reviews with a sentiment and a product category (``kinds``: category -> product word)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment", "cat"])
        for r in range(repeat):
            for category, word in kinds.items():
                for text in POSITIVE:
                    writer.writerow([f"{word}: {text} ({r})", "pos", category])
                for text in NEGATIVE:
                    writer.writerow([f"{word}: {text} ({r})", "neg", category])
    return path


def write_config(tmp_path: Path, backbone: str, **extra: object) -> Path:
    write_reviews(tmp_path / "shop_a.csv", {"kitchen": "pan", "garden": "hose"})
    write_reviews(tmp_path / "shop_b.csv", {"kitchen": "kettle", "garden": "rake"})
    labels = {"sentiment": "sentiment", "category": "cat"}
    config = {
        "task": "multi-task",
        "name": "attributes",
        "source": {"path": "shop_a.csv", "text": "review", "labels": labels},
        "target": {"path": "shop_b.csv", "text": "review", "labels": labels},
        "target_tasks": ["sentiment"],
        "recipes": [
            {"name": "scratch-transformer", "epochs": 1},
            {"name": "frozen-features", "epochs": 3},
            {"name": "frozen-features", "label": "probe", "solver": "lbfgs"},
            {"name": "fine-tune", "epochs": 1, "target_epochs": 2},
        ],
        "budgets": [0, 8],
    }
    return write_experiment(tmp_path, backbone, config, **extra)


def test_multi_task_run_writes_per_head_metrics_and_models_that_reload(
    tmp_path: Path, tiny_backbone: str
) -> None:
    config_path = write_config(
        tmp_path, tiny_backbone, task_weights={"sentiment": 1.0, "category": 0.5}
    )
    config = load_config(config_path)
    run_dir = run_experiment(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "multi-task" and results["primary_metric"] == "macro_f1"
    cells = {(r["label"], r["budget"]): r for r in results["results"]}
    assert cells[("scratch-transformer", 0)]["status"] == "skipped"
    assert cells[("fine-tune", 8)]["target_examples"] == 8
    task = make_task(config)
    data = task.prepare(EmbeddingCache(None))
    assert dict(data.outputs.tasks) == {
        "sentiment": ("neg", "pos"),
        "category": ("garden", "kitchen"),
    }
    for record in (r for r in results["results"] if r["status"] == "ok"):
        metrics = record["metrics"]
        heads = ("sentiment", "category")
        assert {f"{h}/{m}" for h in heads for m in ("macro_f1", "accuracy")} <= set(metrics)
        assert metrics["macro_f1"] == pytest.approx(
            (metrics["sentiment/macro_f1"] + metrics["category/macro_f1"]) / 2
        )
        assert record["task_weights"] == {"sentiment": 1.0, "category": 0.5}
        model = load_predictor(run_dir / record["model_dir"])  # the round trip
        rescored = task.metrics(model, data.test, data)
        for key in ("sentiment/macro_f1", "category/accuracy", "macro_f1"):
            assert rescored[key] == pytest.approx(metrics[key]), (record["label"], key)
    labels, probabilities, classes = predict(run_dir, ["kettle: love it, best purchase"])
    assert set(labels) == {"sentiment", "category"} and classes["category"] == ["garden", "kitchen"]
    assert probabilities["sentiment"].shape == (1, 2)
    result = CliRunner().invoke(
        app, ["predict", str(run_dir), "--text", "rake: awful junk", "--json"]
    )
    assert result.exit_code == 0, result.output
    line = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("{")))
    assert set(line["labels"]) == {"sentiment", "category"}


def test_target_tasks_train_the_target_on_their_heads_only(
    tmp_path: Path, tiny_backbone: str
) -> None:
    """With target_tasks [sentiment], the target stage leaves the category head (and its
    learned loss weight) exactly as the source stage left it."""
    config_path = write_config(
        tmp_path,
        tiny_backbone,
        recipes=[{"name": "fine-tune", "epochs": 1, "target_epochs": 2}],
        task_weights="uncertainty",
    )
    run_dir = run_experiment(load_config(config_path), show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    by_budget = {r["budget"]: r for r in results["results"]}
    # budget 0: the source stage alone; budget 8: the same source stage, then the target's
    source = load_file(str(run_dir / by_budget[0]["model_dir"] / "model.safetensors"))
    target = load_file(str(run_dir / by_budget[8]["model_dir"] / "model.safetensors"))
    spec = json.loads((run_dir / by_budget[8]["model_dir"] / "model.json").read_text())["spec"]
    c, s = (list(spec["outputs"]["tasks"]).index(h) for h in ("category", "sentiment"))
    category = [
        f"head.heads.{c}.weight",
        f"head.heads.{c}.bias",
        f"head.weighting.log_variance.{c}",
    ]
    sentiment = [f"head.heads.{s}.weight", f"head.weighting.log_variance.{s}"]
    for key in category:
        assert torch.equal(source[key], target[key]), key
    for key in sentiment:
        assert not torch.equal(source[key], target[key]), key
    encoder = [k for k in source if k.startswith("encoder.") and "layer.1." in k]
    assert any(not torch.equal(source[k], target[k]) for k in encoder)
    assert by_budget[8]["task_weights"]["category"] == by_budget[0]["task_weights"]["category"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_tasks": ["colour"]}, "key 'target_tasks': ['colour']: expected each of"),
        ({"task_weights": {"colour": 1.0}}, "key 'task_weights': colour: 1.0; expected a head"),
        ({"target": {"path": "shop_b.csv", "labels": {}}}, "expected at least one head"),
        (
            {"source": None, "target_tasks": ["sentiment"]},
            "head 'category' has no training labels",
        ),
    ],
)
def test_multi_task_config_mistakes_are_one_line(
    tmp_path: Path, tiny_backbone: str, change: dict, message: str
) -> None:
    config_path = write_config(tmp_path, tiny_backbone)
    data = yaml.safe_load(config_path.read_text())
    data.update(change)
    if data["source"] is None:
        del data["source"]
    config_path.write_text(yaml.safe_dump(data))
    result = cli("run", str(config_path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_per_class_of_draws_what_a_classification_run_on_that_column_draws(
    tmp_path: Path, tiny_backbone: str
) -> None:
    """With ``per_class_of: cat`` a budget of 3 is 3 reviews per category, the very reviews a
    classification run on ``cat`` draws with the same seed, and a one-head multi-task run
    (one model per attribute) draws them too; the column need not be a head."""
    config_path = write_config(tmp_path, tiny_backbone)
    raw = yaml.safe_load(config_path.read_text())
    raw.pop("source")
    raw.pop("target_tasks")
    test = {**raw["target"], "path": "shop_a.csv"}
    multi = {**raw, "target_test": test, "per_class_of": "cat", "budgets": [3]}
    single_head = {
        **multi,
        "target": {**raw["target"], "labels": {"sentiment": "sentiment"}},
        "target_test": {**test, "labels": {"sentiment": "sentiment"}},
    }
    plain = {k: v for k, v in raw.items() if k not in ("target",)}
    classification = {
        **plain,
        "task": "classification",
        "target": {"path": "shop_b.csv", "text": "review", "label": "cat"},
        "target_test": {"path": "shop_a.csv", "text": "review", "label": "cat"},
        "budgets": [3],
    }
    drawn = {}
    for name, experiment in (
        ("multi", multi),
        ("single-head", single_head),
        ("classification", classification),
    ):
        config_path.write_text(yaml.safe_dump(experiment))
        task = make_task(load_config(config_path))
        data = task.prepare(EmbeddingCache(None))
        task.check(data, [])
        drawn[name] = task.draw(data, 3, seed=5)
    assert drawn["multi"].class_counts() == {"garden": 3, "kitchen": 3}
    assert drawn["multi"].texts == drawn["classification"].texts == drawn["single-head"].texts
    assert set(drawn["multi"].annotations) == {"sentiment", "category"}
    assert set(drawn["single-head"].annotations) == {"sentiment"}
    config_path.write_text(yaml.safe_dump({**multi, "budgets": [100]}))
    task = make_task(load_config(config_path))
    with pytest.raises(ConfigError, match="per 'cat' class"):
        task.check(task.prepare(EmbeddingCache(None)), [])
