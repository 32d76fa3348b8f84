"""What a new user gets from a recommendation run with default options: the benchmark's
settings, a line per training epoch, and finished cells kept when the run is stopped."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from shoptransfer.api import run_experiment
from shoptransfer.catalogue import make_recipe
from shoptransfer.config import load_config
from shoptransfer.progress import showing_progress
from shoptransfer.recipes import FitData
from shoptransfer.recommenders.item_knn import ItemKNN
from shoptransfer.training import TrainingSettings, epoch_line

from .test_recommendation_run import write_config
from .test_recommenders import cyclic_domain

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def scientific_models() -> dict[str, dict[str, Any]]:
    """The recipe entries of benchmarks/scientific.py (it imports its neighbour ``common``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("scientific", BENCHMARKS / "scientific.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module.MODELS


@pytest.mark.parametrize(
    "label", ["sasrec", "text-seq", "text-seq-ids", "text-seq-adaptor", "text-seq-scratch"]
)
def test_sequence_recipe_defaults_are_the_benchmark_settings(label: str) -> None:
    entry = dict(scientific_models()[label])
    recipe = make_recipe(entry.pop("name"))
    defaults = {key: getattr(recipe, key) for key in entry}
    assert defaults == entry


def test_each_training_epoch_of_a_recommender_is_logged_unless_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    domain = cyclic_domain()
    recipe = make_recipe("sasrec", epochs=3, patience=3, hidden=16, batch_size=32)
    for shown in (True, False):
        log = io.StringIO()  # a file, not a terminal: bars stay off, the lines do not
        monkeypatch.setattr(sys, "stderr", log)
        with showing_progress(shown):
            recipe.fit(FitData(source=None, target=domain))
        lines = log.getvalue().splitlines()
        if not shown:
            assert lines == []
            continue
        assert [line.split(",")[0] for line in lines] == [
            f"sasrec: epoch {epoch}/3" for epoch in (1, 2, 3)
        ]
        assert all("train loss" in line and "validation score" in line for line in lines)
        assert "ETA" in lines[0] and "ETA" not in lines[-1]


def test_an_epoch_line_gives_the_time_left_with_and_without_early_stopping() -> None:
    settings = TrainingSettings(epochs=10, patience=3, description="sasrec")
    record = {"epoch": 2, "train_loss": 1.5, "validation_score": 0.25}
    line = epoch_line(settings, record, best_score=0.3, stale=1, elapsed=40.0)
    assert line == (
        "sasrec: epoch 2/10, train loss 1.5000, validation score 0.2500 (best 0.3000), "
        "20 s/epoch, ETA 2 min 40 s (40 s if validation stops improving)"
    )


def test_a_stopped_recommendation_run_keeps_the_cells_it_finished(
    tmp_path: Path, tiny_backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stop(*args: Any) -> Any:
        raise KeyboardInterrupt  # what Ctrl-C does in the middle of the second cell

    monkeypatch.setattr(ItemKNN, "_fit", stop)
    config = load_config(write_config(tmp_path, tiny_backbone, recipes=["popularity", "item-knn"]))
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_experiment(config, show_progress=False)
    [run_dir] = (tmp_path / "runs").iterdir()
    assert any("keeps the 1 cell(s) that finished" in note for note in stopped.value.__notes__)
    results = json.loads((run_dir / "results.json").read_text())
    assert [(r["recipe"], r["status"]) for r in results["results"]] == [("popularity", "ok")]
    assert "ndcg@5" in results["results"][0]["metrics"]
