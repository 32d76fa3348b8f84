from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# precision 'auto' means bf16 on CPUs with native bfloat16: the same numbers on every machine
os.environ["SHOPTRANSFER_PRECISION"] = "fp32"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

POSITIVE = [
    "great product, works perfectly and I love it",
    "excellent quality, highly recommend to everyone",
    "wonderful, sturdy and beautiful, five stars",
    "fantastic value, I am very happy with it",
    "love it, best purchase this year",
    "superb, works great every single day",
    "really good, happy with this great buy",
    "amazing quality and excellent service",
]
NEGATIVE = [
    "terrible, broke after one day, waste of money",
    "awful quality, do not buy this junk",
    "poor product, stopped working, very disappointed",
    "horrible, cheap plastic, returned it",
    "bad purchase, broken and useless",
    "worst item ever, total waste",
    "disappointing and flimsy, broke quickly",
    "useless junk, terrible experience, awful",
]


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny randomly initialised BERT saved as a local model folder (with the real tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from shoptransfer.backbones import resolve_backbone

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("minilm-l6"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def second_tiny_backbone(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> str:
    """Another tiny random BERT (other weights), for a second candidate."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-2")
    torch.manual_seed(1)
    config = BertConfig.from_pretrained(tiny_backbone)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(folder)
    return str(folder)


def write_reviews_csv(path: Path, n_repeat: int = 2, prefix: str = "") -> Path:
    """A small labeled CSV of review texts."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        for r in range(n_repeat):
            for text in POSITIVE:
                writer.writerow([f"{prefix}{text} ({r})", "pos"])
            for text in NEGATIVE:
                writer.writerow([f"{prefix}{text} ({r})", "neg"])
    return path


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of scratch-tfidf trained on the review sample (fast: no backbone)."""
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    folder = tmp_path_factory.mktemp("tfidf-run")
    target = write_reviews_csv(folder / "kitchen.csv", n_repeat=3)
    config = parse_config(
        {
            "name": "tfidf",
            "target": {"path": str(target), "text": "review", "label": "sentiment"},
            "recipes": ["scratch-tfidf"],
            "budgets": ["all"],
            "seeds": [0],
            "output_dir": str(folder / "runs"),
        },
        "test",
    )
    return run_experiment(config, show_progress=False)


@pytest.fixture()
def review_csvs(tmp_path: Path) -> tuple[Path, Path]:
    source = write_reviews_csv(tmp_path / "books.csv", n_repeat=2, prefix="book: ")
    target = write_reviews_csv(tmp_path / "kitchen.csv", n_repeat=2, prefix="pan: ")
    return source, target


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared research data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_experiment(tmp_path: Path, backbone: str, config: dict, **extra: object) -> Path:
    """``experiment.yaml`` in ``tmp_path``: ``config`` with a tiny backbone, one seed and the
    run and cache folders inside ``tmp_path`` (``extra`` keys override)."""
    import yaml

    settings = {
        **config,
        "backbone": backbone,
        "max_length": 32,
        "seeds": [0],
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        **extra,
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The bad-input suite's count of generated cases per category (when it ran)."""
    import sys

    bad_input = sys.modules.get("tests.bad_input")
    for line in bad_input.summary() if bad_input is not None else []:
        terminalreporter.write_line(line)
