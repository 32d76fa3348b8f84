"""Data-parallel training across two CPU processes (Accelerate over gloo): the same numbers as
one process, within a stated tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoptransfer.api import run_experiment
from shoptransfer.config import load_config

from .conftest import write_experiment

pytest.importorskip("accelerate")

# One process and two sum the same per-example gradients in another order; the last bits of a
# float sum differ, so the metrics are compared within this tolerance (in practice: equal).
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def backbone_without_dropout(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> str:
    """The tiny BERT without dropout: its random masks differ between one process and two."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    config = BertConfig.from_pretrained(tiny_backbone)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(folder)
    return str(folder)


def test_two_processes_train_to_one_process_numbers(
    tmp_path: Path, review_csvs: tuple[Path, Path], backbone_without_dropout: str
) -> None:
    source, target = review_csvs
    config = {
        "name": "processes",
        "source": {"path": str(source), "text": "review", "label": "sentiment"},
        "target": {"path": str(target), "text": "review", "label": "sentiment"},
        "recipes": [
            {
                "name": "fine-tune",
                "epochs": 2,
                "target_epochs": 2,
                "learning_rate": 3e-3,
                "head_learning_rate": 3e-2,
            },
            {"name": "scratch-transformer", "epochs": 2, "learning_rate": 3e-3},
        ],
        "budgets": [4],
        "report": False,
    }
    path = write_experiment(tmp_path, backbone_without_dropout, config)
    one = run_experiment(load_config(path), show_progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    two = subprocess.run(
        [sys.executable, "-m", "shoptransfer.cli", "run", str(path), "-q", "--processes", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    folders = [p for p in (tmp_path / "runs").iterdir() if p != one]
    assert len(folders) == 1  # one folder, written by the main process only
    results = [json.loads((f / "results.json").read_text())["results"] for f in (one, folders[0])]
    assert [r["label"] for r in results[0]] == [r["label"] for r in results[1]]
    for alone, shared in zip(*results, strict=True):
        assert alone["status"] == shared["status"] == "ok"
        for key, value in alone["metrics"].items():
            if isinstance(value, float):
                assert abs(value - shared["metrics"][key]) <= TOLERANCE, (alone["label"], key)
    assert two.stdout.count("run folder:") == 1  # printed once


def test_fine_tune_accumulates_micro_batches_to_the_whole_batch_numbers(
    tmp_path: Path, review_csvs: tuple[Path, Path], backbone_without_dropout: str
) -> None:
    """Gradient accumulation: batches of 16 through the model 3 examples at a time train to
    the numbers of whole batches (the same gradient, summed in another order)."""
    source, target = review_csvs
    entry = {"name": "fine-tune", "epochs": 2, "target_epochs": 2, "learning_rate": 3e-3}
    config = {
        "name": "micro",
        "source": {"path": str(source), "text": "review", "label": "sentiment"},
        "target": {"path": str(target), "text": "review", "label": "sentiment"},
        "recipes": [
            {**entry, "label": "whole"},
            {**entry, "label": "micro", "micro_batch_size": 3},
        ],
        "budgets": [4],
        "report": False,
        "save_models": False,
    }
    path = write_experiment(tmp_path, backbone_without_dropout, config)
    run_dir = run_experiment(load_config(path), show_progress=False)
    whole, micro = json.loads((run_dir / "results.json").read_text())["results"]
    assert micro["options"]["micro_batch_size"] == 3
    for key, value in whole["metrics"].items():
        if isinstance(value, float):
            assert abs(value - micro["metrics"][key]) <= TOLERANCE, key
