"""`shoptransfer select`: candidate backbones ranked on frozen features before training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from shoptransfer.cli import main
from shoptransfer.selection import rank, verdict


def shoptransfer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["shoptransfer", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def _experiment(tmp_path: Path, review_csvs: tuple[Path, Path], **extra: object) -> Path:
    source, target = review_csvs
    config = {
        "source": {"path": str(source), "text": "review", "label": "sentiment"},
        "target": {"path": str(target), "text": "review", "label": "sentiment"},
        "max_length": 16,
        "budgets": [0, 4],
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        **extra,
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_select_ranks_candidates_and_writes_selection_json(
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    second_tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _experiment(tmp_path, review_csvs, candidates=[tiny_backbone, second_tiny_backbone])
    status, out, err = shoptransfer(monkeypatch, capsys, "select", str(path), "--quiet")
    assert status == 0, err
    selection = json.loads(next((tmp_path / "runs").glob("*/selection.json")).read_text())
    assert selection["scored_on"] == "target"
    assert selection["examples"] == 8  # budget 4 labels per class, two classes
    assert {c["backbone"] for c in selection["candidates"]} == {tiny_backbone, second_tiny_backbone}
    first, second = selection["candidates"]
    assert first["mean_rank"] <= second["mean_rank"]
    assert selection["pick"] == {"backbone": first["backbone"], "source": "books"}
    assert {"logme", "h_score", "gbc", "sfda", "transrate", "knn_accuracy"} <= set(first["scores"])
    assert {"proxy_a_distance", "mmd", "source_classifier_accuracy"} <= set(first["domain_gap"])
    assert first["examples_embedded"] > 0 and first["parameters"] > 0
    assert isinstance(selection["transfer_likely_to_hurt"], bool)
    assert 0 <= selection["scratch_cv_accuracy"] <= 1
    assert "pick: " in out and "heuristic" in out
    # a second selection reads every embedding from the cache
    status, _, err = shoptransfer(monkeypatch, capsys, "select", str(path), "--quiet")
    assert status == 0, err
    runs = sorted((tmp_path / "runs").glob("*/selection.json"))
    assert all(c["examples_embedded"] == 0 for c in json.loads(runs[-1].read_text())["candidates"])


def test_select_ranks_each_candidate_source_with_each_backbone(
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    second_tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from .conftest import write_reviews_csv

    other = write_reviews_csv(tmp_path / "toys.csv", n_repeat=1, prefix="toy: ")
    extra = {"path": str(other), "text": "review", "label": "sentiment"}
    path = _experiment(
        tmp_path,
        review_csvs,
        candidates=[tiny_backbone, second_tiny_backbone],
        candidate_sources=[extra],
    )
    status, out, err = shoptransfer(monkeypatch, capsys, "select", str(path), "-q")
    assert status == 0, err
    selection = json.loads(next((tmp_path / "runs").glob("*/selection.json")).read_text())
    options = {(c["source"], c["backbone"]) for c in selection["candidates"]}
    assert options == {
        (s, b) for s in ("books", "toys") for b in (tiny_backbone, second_tiny_backbone)
    }
    assert all("source_classifier_accuracy" in c["source_ranks"] for c in selection["candidates"])
    # the backbones in blocks (by the estimators), each backbone's sources inside its block
    backbones = [c["backbone"] for c in selection["candidates"]]
    assert backbones[0] == backbones[1] and backbones[2] == backbones[3]
    assert selection["pick"]["backbone"] == backbones[0]
    assert "toys" in out and "source rank" in out


def test_select_scores_on_source_labels_when_the_budget_is_zero(
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _experiment(tmp_path, review_csvs, backbone=tiny_backbone)
    status, out, err = shoptransfer(monkeypatch, capsys, "select", str(path), "--budget", "0", "-q")
    assert status == 0, err
    selection = json.loads(next((tmp_path / "runs").glob("*/selection.json")).read_text())
    assert selection["scored_on"] == "source"
    assert selection["examples"] == 32
    assert "proxy_a_distance" in selection["candidates"][0]["source_ranks"]  # the gap votes
    assert "labelled source examples" in out


@pytest.mark.parametrize(
    ("extra", "args", "expected"),
    [
        ({"task": "regression"}, [], "select ranks backbones for classification"),
        ({"candidates": ["efficientnet-lite0"]}, [], "reads images but the target holds texts"),
        ({"candidates": []}, [], "candidates"),
        ({"candidates": ["no-such-backbone"]}, [], "backbone 'no-such-backbone'"),
        ({"source": None}, ["--budget", "0"], "has neither"),
        ({}, ["--budget", "-3"], "--budget"),
        ({}, ["--budget", "x,y"], "--budget"),
    ],
)
def test_select_mistakes_are_one_line_and_exit_2(
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: dict[str, object],
    args: list[str],
    expected: str,
) -> None:
    extra = {"backbone": tiny_backbone, **extra}
    if extra.get("task") == "regression":
        source, target = review_csvs
        extra["source"] = None
        extra["target"] = {"path": str(target), "text": "review", "value": "sentiment"}
    path = _experiment(tmp_path, review_csvs, **extra)
    if extra.get("source", "") is None:
        data = yaml.safe_load(path.read_text())
        del data["source"]
        path.write_text(yaml.safe_dump(data))
    status, _, err = shoptransfer(monkeypatch, capsys, "select", str(path), "-q", *args)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _candidate(name: str, scores: dict[str, float], gap: float | None = None) -> dict:
    return {
        "backbone": name,
        "scores": scores,
        "domain_gap": None if gap is None else {"proxy_a_distance": gap, "mmd": 0.0},
    }


def test_rank_orders_backbones_by_the_estimators_and_their_sources_by_the_gap() -> None:
    # two backbones, one source: the estimators decide, the gap does not
    a = _candidate("a", {"logme": 1.0, "knn_accuracy": 0.9}, gap=1.9)
    b = _candidate("b", {"logme": 0.5, "knn_accuracy": 0.8}, gap=0.1)
    assert [c["backbone"] for c in rank([a, b], on="target")] == ["a", "b"]
    # one backbone, two sources scored on their own labels: the nearer source comes first even
    # where its own labels are the less separable
    far = {**_candidate("m", {"logme": 1.0, "knn_accuracy": 0.9}, gap=1.9), "source": "far"}
    near = {**_candidate("m", {"logme": 0.5, "knn_accuracy": 0.8}, gap=0.4), "source": "near"}
    ranked = rank([far, near], on="source")
    assert [c["source"] for c in ranked] == ["near", "far"]
    assert [c["position"] for c in ranked] == [1, 2]
    assert ranked[0]["source_ranks"] == {"proxy_a_distance": 1, "mmd": 1}
    # two backbones x two sources: the better backbone's sources first, each by the gap; with
    # target labels the source classifier votes too
    rows = []
    for backbone, logme in (("weak", 0.1), ("strong", 0.9)):
        for source, gap, accuracy in (("far", 1.9, 0.9), ("near", 0.4, 0.8)):
            row = {**_candidate(backbone, {"logme": logme}, gap=gap), "source": source}
            row["domain_gap"]["mmd"] = gap / 10
            row["domain_gap"]["source_classifier_accuracy"] = accuracy
            rows.append(row)
    ranked = rank(rows, on="target")
    assert [(c["backbone"], c["source"]) for c in ranked] == [
        ("strong", "near"),
        ("strong", "far"),
        ("weak", "near"),
        ("weak", "far"),
    ]
    assert ranked[0]["source_rank"] == (1 + 1 + 2) / 3


def test_verdict_weighs_cross_validated_scratch_against_transfer_or_reads_the_gap() -> None:
    best = [_candidate("a", {"knn_accuracy": 0.70}, gap=1.9)]
    best[0]["domain_gap"].update({"transfer_cv_accuracy": 0.72, "transfer_cv_noise": 0.02})
    # with target labels: target-only TF-IDF ahead of source + target by more than the noise;
    # the gap does not decide
    hurts, why = verdict(best, scratch=0.75, on_target=True)
    assert hurts is True and "TF-IDF reaches 0.750" in why and "0.030 above the 0.720" in why
    assert verdict(best, scratch=0.73, on_target=True)[0] is False  # ahead, within the noise
    assert verdict(best, scratch=0.60, on_target=True)[0] is False
    # no source: the frozen features of the target labels alone stand for transfer
    alone = [
        {
            **_candidate("a", {"knn_accuracy": 0.7}),
            "target_probe_cv_accuracy": 0.8,
            "target_probe_cv_noise": 0.0,
        }
    ]
    assert verdict(alone, scratch=0.85, on_target=True)[0] is True
    assert verdict(alone, scratch=0.80, on_target=True)[0] is False
    # without target labels: the gap decides
    assert verdict(best, scratch=None, on_target=False)[0] is True
    near = [_candidate("a", {"knn_accuracy": 0.70}, gap=0.4)]
    assert verdict(near, scratch=None, on_target=False)[0] is False
    # images (no TF-IDF baseline): no verdict with labels
    assert verdict(alone, None, on_target=True)[0] is None


def test_cross_validation_sees_what_the_labels_say_and_measures_its_noise() -> None:
    from shoptransfer.data import TextDomain
    from shoptransfer.selection import against_scratch, probe_cv_correct, scratch_cv_correct

    from .conftest import NEGATIVE, POSITIVE

    texts = POSITIVE + NEGATIVE
    labels = ["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE)
    assert scratch_cv_correct(TextDomain("t", texts, labels)).mean() >= 0.75
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 4)) + np.outer(y * 2 - 1, [2.0, 0, 0, 0])
    alone = probe_cv_correct(x, y)
    assert alone.mean() >= 0.9
    # a source whose labels say the opposite drags the transfer classifier down
    flipped = probe_cv_correct(x, y, x + 0.01, 1 - y)
    assert flipped.mean() < alone.mean()
    assert probe_cv_correct(x[:21], y[:21]) is None  # one example of class 1
    # the noise: the standard error of the paired per-example difference
    compared = against_scratch(flipped, alone, "transfer_cv")
    difference = alone.astype(float) - flipped.astype(float)
    assert compared["transfer_cv_accuracy"] == flipped.mean()
    assert compared["transfer_cv_noise"] == pytest.approx(difference.std(ddof=1) / np.sqrt(40))
    assert against_scratch(alone, None, "p") == {"p_accuracy": alone.mean()}


def test_select_on_photos_scores_imagenet_predictions_with_nce_and_leep(tmp_path: Path) -> None:
    from shoptransfer.api import select_backbone
    from shoptransfer.config import parse_config

    from .test_images import write_catalogue

    write_catalogue(tmp_path / "men", per_class=6, seed=0)
    write_catalogue(tmp_path / "women", per_class=6, seed=1)
    config = parse_config(
        {
            "source": {"path": "men"},
            "target": {"path": "women"},
            "image_size": 32,
            "budgets": [2],
            "output_dir": str(tmp_path / "runs"),
            "cache_dir": str(tmp_path / "cache"),
        },
        "photos.yaml",
        tmp_path,
    )
    folder, report = select_backbone(config, show_progress=False)
    (candidate,) = report["candidates"]
    assert candidate["backbone"] == "efficientnet-lite0"
    assert {"nce", "leep"} <= set(candidate["scores"])
    assert candidate["scores"]["nce"] <= 0 and candidate["scores"]["leep"] < 0
    assert report["scratch_cv_accuracy"] is None  # no TF-IDF baseline for photos
    assert (folder / "selection.json").exists()
