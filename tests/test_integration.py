"""A few tests with the real bundled backbone (all-MiniLM-L6-v2) on a handful of reviews."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from shoptransfer.backbones import EmbeddingCache, TextEncoder
from shoptransfer.data import read_blitzer, sample_per_class
from shoptransfer.evaluation import classification_metrics
from shoptransfer.recipes import FitData, load_predictor, make_recipe

pytestmark = pytest.mark.integration

DEMO = resources.files("shoptransfer") / "demo_data" / "blitzer"


def demo_domain(name: str, per_class: int, seed: int = 0):
    return sample_per_class(read_blitzer(Path(str(DEMO / name))), per_class, seed)[0]


def test_minilm_loads_offline_and_separates_sentiment() -> None:
    encoder = TextEncoder("minilm-l6", max_length=64)
    vectors = encoder.encode(
        [
            "I love this blender, it works great",
            "Excellent blender, very happy with it",
            "The blender broke after a week, terrible",
        ],
        show_progress=False,
    )
    assert vectors.shape == (3, 384)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


def test_frozen_features_transfer_books_to_kitchen(tmp_path: Path) -> None:
    source, test = demo_domain("books", 60), demo_domain("kitchen", 30)
    recipe = make_recipe("frozen-features", max_length=96)
    predictor = recipe.fit(FitData(source, None, cache=EmbeddingCache(tmp_path)))
    predicted = np.array(predictor.predict_proba(test.texts).argmax(axis=1))
    metrics = classification_metrics(
        test.label_ids(predictor.classes), predicted, predictor.classes
    )
    assert metrics["accuracy"] > 0.6  # chance is 0.5


def test_fine_tuned_minilm_round_trips(tmp_path: Path) -> None:
    source, test = demo_domain("books", 8), demo_domain("kitchen", 3)
    predictor = make_recipe("fine-tune", max_length=48, epochs=1).fit(FitData(source))
    loaded = load_predictor(predictor.save(tmp_path / "model"))
    np.testing.assert_allclose(
        loaded.predict_proba(test.texts), predictor.predict_proba(test.texts), atol=1e-5
    )
