"""A user's cross-domain recommendation from YAML and CSV files, and `recommend`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from shoptransfer.api import compare, recommend, run_experiment
from shoptransfer.backbones import EmbeddingCache
from shoptransfer.cli import app
from shoptransfer.config import load_config
from shoptransfer.data.interactions import read_interaction_domain
from shoptransfer.evaluation.ranking import evaluate_ranking
from shoptransfer.recommenders.base import load_ranker
from shoptransfer.runs import load_results

from .test_recommenders import WORDS
from .test_runs_and_cli import cli


def write_walks(folder: Path, prefix: str, users: int, seed: int) -> tuple[Path, Path]:
    """Interactions (user, item, time) of users walking a catalogue of 12 items, and the
    catalogue with a title per item."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,time"]
    for u in range(users):
        start = int(rng.integers(12))
        for k in range(int(rng.integers(4, 8))):
            rows.append(f"{prefix}u{u},{prefix}{(start + k) % 12},{100 * u + k}")
    log = folder / f"{prefix}log.csv"
    log.write_text("\n".join(rows) + "\n")
    catalogue = folder / f"{prefix}items.csv"
    catalogue.write_text("item,title\n" + "".join(f"{prefix}{i},{WORDS[i]}\n" for i in range(12)))
    return log, catalogue


def write_config(tmp_path: Path, backbone: str, **extra: object) -> Path:
    source, source_items = write_walks(tmp_path, "video", 40, 0)
    target, target_items = write_walks(tmp_path, "shop", 30, 1)
    domain = {"user": "user", "item": "item", "time": "time", "item_text": ["title"]}
    config = {
        "task": "recommendation",
        "name": "walks",
        "source": {"path": source.name, "items": source_items.name, **domain},
        "target": {"path": target.name, "items": target_items.name, **domain},
        "recipes": [
            "popularity",
            "item-knn",
            {"name": "sasrec", "epochs": 2, "hidden": 16, "batch_size": 32},
            {
                "name": "text-seq",
                "backbone": backbone,
                "hidden": 16,
                "epochs": 2,
                "source_epochs": 2,
                "batch_size": 32,
            },
        ],
        "seeds": [0],
        "ks": [1, 5],
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        **extra,
    }
    path = tmp_path / "walks.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_recommendation_run_from_yaml_and_recommend(tmp_path: Path, tiny_backbone: str) -> None:
    run_dir = run_experiment(load_config(write_config(tmp_path, tiny_backbone)))
    results = load_results(run_dir)
    assert results["task"] == "recommendation"
    assert [r["recipe"] for r in results["results"]] == [
        "popularity",
        "item-knn",
        "sasrec",
        "text-seq",
    ]
    for result in results["results"]:
        assert set(result["metrics"]) >= {
            "recall@5",
            "hr@1",
            "ndcg@5",
            "mrr@5",
            "precision@1",
            "f1@5",
        }
        assert set(result["validation_metrics"]) == set(result["metrics"])
        assert result["eval_seconds"] >= 0 and result["eval_peak_mb"] > 0
        assert result["budget"] == "all" and result["target_examples"] == 30
    assert results["data"]["target"]["users"] == 30
    assert results["primary_metric"] == "ndcg@5"  # ks [1, 5]: the largest NDCG cut-off <= 10
    answer = recommend(run_dir, "shopu3", k=3, recipe="item-knn")
    assert len(answer["items"]) == 3
    history = set(answer["history"])
    assert all(item["item"] not in history for item in answer["items"])
    assert all(reason["item"] in history for item in answer["items"] for reason in item["because"])
    # a reloaded neural model scores the test cases as the one trained in the run did
    config = load_config(run_dir / "config.yaml")
    domain = read_interaction_domain(config.target)
    ranker = load_ranker(
        run_dir / "models" / "text-seq-kall-seed0", domain, EmbeddingCache(tmp_path / "cache")
    )
    again = evaluate_ranking(ranker.scores, domain.test, ks=(1, 5))
    recorded = results["results"][3]["metrics"]
    assert again == {key: recorded[key] for key in again}
    neural = recommend(run_dir, "shopu3", k=3, recipe="text-seq")
    assert neural["explanation"].startswith("cosine") and neural["items"][0]["text"] in WORDS
    result = CliRunner().invoke(
        app, ["recommend", str(run_dir), "--user", "shopu3", "--k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["items"]) == 2


def test_recommendation_bad_input_is_one_line(tmp_path: Path, tiny_backbone: str) -> None:
    config = write_config(tmp_path, tiny_backbone)
    data = yaml.safe_load(config.read_text())
    data["recipes"] = ["fine-tune"]
    config.write_text(yaml.safe_dump(data))
    result = cli("run", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "learns classification" in result.stderr
    data["recipes"] = ["text-seq"]
    del data["source"]
    config.write_text(yaml.safe_dump(data))
    result = cli("run", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "pre-trains on a source domain" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    run = recommend_missing_user(tmp_path)
    assert run.returncode == 2 and "user 'nobody'" in run.stderr


def recommend_missing_user(tmp_path: Path):
    data = yaml.safe_load((tmp_path / "walks.yaml").read_text())
    data.update(recipes=["popularity"], source=None)
    (tmp_path / "pop.yaml").write_text(yaml.safe_dump(data))
    run_dir = run_experiment(load_config(tmp_path / "pop.yaml"))
    return cli("recommend", str(run_dir), "--user", "nobody", cwd=tmp_path)


def slow_source_stage(monkeypatch, seconds: float) -> list[str]:
    """Make every pre-training on a source take ``seconds`` longer; return the list that
    records each one's description."""
    from shoptransfer.training import Trainer

    trained: list[str] = []
    fit = Trainer.fit

    def slow_fit(self, *args, **kwargs):
        if self.settings.description.endswith("on source"):
            trained.append(self.settings.description)
            time.sleep(seconds)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", slow_fit)
    return trained


def test_a_reused_pre_training_is_charged_to_the_run_that_reuses_it(
    tmp_path: Path, tiny_backbone: str, monkeypatch
) -> None:
    trained = slow_source_stage(monkeypatch, 4.0)
    data = yaml.safe_load(write_config(tmp_path, tiny_backbone).read_text())
    text_seq = data["recipes"][3]
    data["recipes"] = [text_seq, {**text_seq, "name": "text-seq-adaptor"}]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    for run in (1, 2):  # each run trains its own pre-training, shared by its two variants
        results = load_results(run_experiment(load_config(tmp_path / "walks.yaml")))
        assert len(trained) == run
        first, reusing = results["results"]
        assert first["train_seconds"] >= 4.0 and reusing["train_seconds"] >= 4.0
        assert first["reused_stage_seconds"] == 0.0
        assert 4.0 <= reusing["reused_stage_seconds"] <= reusing["train_seconds"]


def test_compare_for_recommendation_budgets_users_and_flags_negative_transfer(
    tmp_path: Path, tiny_backbone: str
) -> None:
    data = yaml.safe_load(write_config(tmp_path, tiny_backbone).read_text())
    data["recipes"] = ["popularity", data["recipes"][3]]  # a baseline, text-seq (transfer)
    data["budgets"] = [0.5, "all"]
    data["seeds"] = [0, 1]
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(data))
    results = load_results(compare(load_config(tmp_path / "walks.yaml"), show_progress=False))
    half = [r for r in results["results"] if r["budget"] == 0.5]
    assert {r["target_examples"] for r in half} == {15}  # half of the 30 users train
    assert all(r["metrics"].keys() == r["validation_metrics"].keys() for r in half)
    rows = {(row["label"], str(row["budget"])): row for row in results["comparison"]}
    assert set(rows) == {
        ("popularity", "0.5"),
        ("popularity", "all"),
        ("text-seq", "0.5"),
        ("text-seq", "all"),
    }
    transfer = rows[("text-seq", "all")]
    assert transfer["best_scratch"] == "popularity" and transfer["seeds"] == 2
    expected = transfer["ndcg@5"]["mean"] - rows[("popularity", "all")]["ndcg@5"]["mean"]
    assert transfer["versus_scratch"] == pytest.approx(expected)
    assert isinstance(transfer["negative_transfer"], bool)
