"""The HTML report of runs (`shoptransfer report`, written at the end of `run` and `compare`)
and experiment tracking in MLflow (`--track`, `tracking:`)."""

from __future__ import annotations

import base64
import re
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shoptransfer.api import compare, run_experiment
from shoptransfer.cli import app, main
from shoptransfer.config import load_config
from shoptransfer.evaluation.html_report import REPORT_FILE
from shoptransfer.runs import load_results
from shoptransfer.tracking import cell_metrics, local_store

from .conftest import write_experiment, write_reviews_csv
from .test_recommendation_run import write_walks

FIGURE = re.compile(r'<figure class="([^"]+)"><img src="data:image/png;base64,([^"]+)"[^>]*>')
CAPTION = re.compile(r'<figure class="([^"]+)">.*?<figcaption>(.*?)</figcaption>', re.S)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def figures(page: str) -> dict[str, tuple[int, int]]:
    """Each inline figure's class and pixel size."""
    return {name: png_size(base64.b64decode(data)) for name, data in FIGURE.findall(page)}


def captions(page: str) -> dict[str, str]:
    return dict(CAPTION.findall(page))


def write_reviews_config(folder: Path, backbone: str, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_reviews_csv(folder / "books.csv", n_repeat=2, prefix="book: ")
    write_reviews_csv(folder / "kitchen.csv", n_repeat=2, prefix="pan: ")
    config = {
        "name": "toy",
        "source": {"path": "books.csv", "text": "review", "label": "sentiment"},
        "target": {"path": "kitchen.csv", "text": "review", "label": "sentiment"},
        "recipes": ["scratch-tfidf", {"name": "frozen-features", "epochs": 3}],
        "budgets": [2, 4],
    }
    return write_experiment(folder, backbone, config, **extra)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> Path:
    """A classification `compare` run of two seeds, tracked in the default local store."""
    pytest.importorskip("mlflow")
    folder = tmp_path_factory.mktemp("compared")
    config = write_reviews_config(folder, tiny_backbone, seeds=[0, 1], tracking=True)
    return compare(load_config(config), show_progress=False)


def test_compare_writes_a_self_contained_report_with_every_figure(compared: Path) -> None:
    page = (compared / REPORT_FILE).read_text(encoding="utf-8")
    assert 'name="viewport"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    sizes = figures(page)
    assert set(sizes) >= {"budget", "cost", "time", "verdicts", "confusion"}
    assert all(width > 100 and height > 100 for width, height in sizes.values())
    shown = captions(page)
    results = load_results(compared)
    for entry in results["comparison"]:  # the budget figure's caption states every mean ± std
        f1 = entry["macro_f1"]
        assert (
            f"{entry['budget']}: {f1['mean'] * 100:.1f} ± {f1['std'] * 100:.1f}"
            in (shown["budget"])
        )
        if entry.get("negative_transfer") is not None:
            assert f"{entry['versus_scratch'] * 100:+.1f} vs scratch-tfidf" in shown["verdicts"]
    gap = results["domain_gap"]
    assert f"{gap['proxy_a_distance']:.3f}" in page and "No 2-D projection" in page


def test_tracked_cells_read_back_from_mlflow_equal_results_json(compared: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(local_store(compared.parent))
    experiment = client.get_experiment_by_name("toy")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name == compared.name)
    cells = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    records = load_results(compared)["results"]
    assert len(cells) == len(records) == 8
    for record in records:
        name = f"{record['label']}-b{record['budget']}-seed{record['seed']}"
        cell = next(r for r in cells if r.info.run_name == name)
        assert cell.data.params["seed"] == str(record["seed"])
        assert cell.data.tags["status"] == record["status"]
        if record["status"] != "ok":
            assert cell.data.metrics == {}
            continue
        assert cell.data.metrics == cell_metrics(record)
        assert cell.data.metrics["macro_f1"] == record["metrics"]["macro_f1"]
        assert cell.data.metrics["train_seconds"] == record["train_seconds"]
        assert cell.data.metrics["peak_rss_mb"] == record["peak_rss_mb"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"config.yaml", "results.json", REPORT_FILE}


def test_report_of_several_runs_side_by_side_and_no_report_on_request(
    compared: Path, tmp_path: Path, tiny_backbone: str
) -> None:
    config = write_reviews_config(tmp_path, tiny_backbone, recipes=["scratch-tfidf"], budgets=[4])
    result = CliRunner().invoke(app, ["run", str(config), "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "report:" not in result.output
    second = next((tmp_path / "runs").iterdir())
    assert not (second / REPORT_FILE).exists()
    output = tmp_path / "both.html"
    result = CliRunner().invoke(app, ["report", str(compared), str(second), "-o", str(output)])
    assert result.exit_code == 0, result.output
    page = output.read_text(encoding="utf-8")
    assert page.count('<section class="run">') == 2
    assert compared.name in page and second.name in page
    # a plain run has no comparison in results.json: the report computes it by the same rule
    assert "scratch baseline" in page


def test_recommendation_report_has_ranking_at_k_and_cold_start(tmp_path: Path) -> None:
    source, source_items = write_walks(tmp_path, "video", 40, 0)
    target, target_items = write_walks(tmp_path, "shop", 30, 1)
    domain = {"user": "user", "item": "item", "time": "time", "item_text": ["title"]}
    settings = {
        "task": "recommendation",
        "name": "walks",
        "target": {"path": target.name, "items": target_items.name, **domain},
        "recipes": ["popularity", "item-knn"],
        "budgets": [0.3, "all"],
        "ks": [1, 5],
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
    }
    (tmp_path / "walks.yaml").write_text(yaml.safe_dump(settings))
    run_dir = run_experiment(load_config(tmp_path / "walks.yaml"), show_progress=False)
    page = (run_dir / REPORT_FILE).read_text(encoding="utf-8")
    assert set(figures(page)) >= {"budget", "ranking", "cold-start", "cost"}
    shown = captions(page)
    records = load_results(run_dir)["results"]
    cell = next(r for r in records if r["label"] == "item-knn" and r["budget"] == "all")
    assert f"item-knn NDCG @1 {cell['metrics']['ndcg@1']:.4f}" in shown["ranking"]
    cold = [r for r in records if r["budget"] == 0.3 and r["label"] == "popularity"][0]
    assert f"popularity @ 0.3: all {cold['metrics']['ndcg@5']:.4f}" in shown["cold-start"]
    assert f"({cold['cold_start']['cases']} cases)" in shown["cold-start"]


def shoptransfer(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """The command line's exit status for ``args`` (run in this process)."""
    monkeypatch.setattr(sys, "argv", ["shoptransfer", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    return int(exit.value.code)


def test_tracking_without_mlflow_is_a_one_line_error_before_the_run(
    tmp_path: Path,
    tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    config = write_reviews_config(tmp_path, tiny_backbone, recipes=["scratch-tfidf"], budgets=[4])
    for flags in (["--track"], ["--tracking-uri", "sqlite:///x.db"]):
        assert shoptransfer(monkeypatch, "run", str(config), "--quiet", *flags) == 2
        err = capsys.readouterr().err
        assert "MLflow is not installed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_report_of_a_folder_without_results_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert shoptransfer(monkeypatch, "report", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no results.json" in err and len(err.strip().splitlines()) == 1
