"""Cross-modal retrieval: the metrics against a hand-computed case, the InfoNCE heads on toy
pairs, zero-shot classification, saving, and the errors a user can cause."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.retrieval import (
    blocks,
    match_ranks,
    recall_in_blocks,
    retrieval_metrics,
)
from shoptransfer.retrieval import (
    PROMPT,
    CrossModalRetriever,
    SymmetricInfoNCE,
    read_pairs,
)

COLOURS = ["red", "blue", "green", "black", "white", "yellow"]
KINDS = ["shirt", "shoe", "watch", "bag", "belt"]


# -- metrics ---------------------------------------------------------------------------------


def test_recall_and_mrr_match_a_hand_computed_case() -> None:
    similarity = np.array(
        [
            [0.9, 0.1, 0.2],  # match first: rank 0
            [0.8, 0.5, 0.5],  # one above, one tied: rank 1 + 1/2
            [0.3, 0.7, 0.1],  # two above: rank 2
        ]
    )
    assert match_ranks(similarity).tolist() == [0.0, 1.5, 2.0]
    metrics = retrieval_metrics(similarity, ks=(1, 2, 3))
    assert metrics["recall@1"] == pytest.approx(1 / 3)
    assert metrics["recall@2"] == pytest.approx(2 / 3)
    assert metrics["recall@3"] == pytest.approx(1.0)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2.5 + 1 / 3) / 3)


def test_scoring_everything_alike_gets_no_credit() -> None:
    metrics = retrieval_metrics(np.zeros((10, 10)), ks=(1, 5))
    assert metrics["recall@1"] == 0.0  # every rank is 4.5: the expected rank of a random draw
    assert metrics["recall@5"] == 1.0


def test_blocks_are_disjoint_of_the_asked_size_and_count_what_is_left_out() -> None:
    parts = blocks(2500, 1000, seed=3)
    assert [len(p) for p in parts] == [1000, 1000]
    assert len(np.unique(np.concatenate(parts))) == 2000
    assert [len(p) for p in blocks(30, 1000)] == [30]
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(25, 4)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    found = recall_in_blocks(queries, queries, size=10, ks=(1,))
    assert (found["blocks"], found["candidates"], found["left_out"]) == (2, 10, 5)
    assert found["recall@1"] == 1.0  # a unit vector's best match is itself


def test_one_block_of_all_pairs_is_the_whole_similarity_matrix() -> None:
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(8, 3))
    candidates = rng.normal(size=(8, 3))
    whole = recall_in_blocks(queries, candidates, size=8, ks=(1, 3))
    direct = retrieval_metrics(queries.astype(np.float32) @ candidates.astype(np.float32).T, (1, 3))
    assert whole["recall@1"] == pytest.approx(direct["recall@1"])
    assert whole["recall@3"] == pytest.approx(direct["recall@3"])


# -- the loss and the heads --------------------------------------------------------------------


def test_info_nce_is_low_for_aligned_pairs_and_high_for_shuffled_ones() -> None:
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(32, 16), dim=-1)
    loss = SymmetricInfoNCE(temperature=0.05)
    aligned = loss(a, a).item()
    shuffled = loss(a, a[torch.randperm(32)]).item()
    assert aligned < 0.1
    assert shuffled > np.log(32) - 1  # about chance: log(batch)
    assert loss.scale.item() == pytest.approx(20.0)


def paired_features(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Photos and titles as two different noisy linear views of one hidden product vector."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(count, 8))
    view = np.random.default_rng(100)  # the same views for every call
    to_image, to_text = view.normal(size=(8, 48)), view.normal(size=(8, 24))
    images = np.maximum(hidden @ to_image + 0.3 * rng.normal(size=(count, 48)), 0)
    texts = hidden @ to_text + 0.3 * rng.normal(size=(count, 24))
    return images.astype(np.float32), texts.astype(np.float32)


def test_heads_learn_to_find_held_out_pairs_far_above_chance() -> None:
    images, texts = paired_features(600, seed=0)
    retriever = CrossModalRetriever(dim=16, epochs=30, batch_size=64, seed=0)
    retriever.fit_features(images, texts)
    test_images, test_texts = paired_features(200, seed=1)
    found = retriever.evaluate_features(test_images, test_texts, candidates=200)
    # chance: Recall@1 = 1 / 200, Recall@10 = 10 / 200
    assert found["title_to_photo"]["recall@1"] > 0.3
    assert found["photo_to_title"]["recall@10"] > 0.8
    history = retriever.history
    assert history[-1]["loss"] < history[0]["loss"]
    assert "validation" in history[0]
    assert history[-1]["scale"] != pytest.approx(1 / 0.07)  # the temperature is learned


def test_search_returns_the_best_candidates_first() -> None:
    retriever = CrossModalRetriever()
    candidates = np.eye(4, dtype=np.float32)
    query = np.array([[0.1, 0.9, 0.0, 0.5]], dtype=np.float32)
    top, scores = retriever.search(query, candidates, k=2)
    assert top.tolist() == [[1, 3]]
    assert scores.tolist()[0] == pytest.approx([0.9, 0.5])


# -- zero-shot and saving, through the encoders and the embedding cache --------------------------


class WordsEncoder:
    """A frozen 'text backbone' for tests: the sum of a fixed random vector per word."""

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim

    def identity(self) -> dict[str, Any]:
        return {"backbone": "test-words", "dim": self.dim}

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).normal(size=self.dim)

    def encode(self, texts: list[str], show_progress: bool = True) -> np.ndarray:
        return np.stack([sum(self._word(w) for w in t.lower().split()) for t in texts])


class ColourPhotoEncoder:
    """A frozen 'image backbone' for tests: a photo file holds its colour and kind as text; its
    features are a fixed vector per colour and per kind, and noise."""

    def identity(self) -> dict[str, Any]:
        return {"backbone": "test-photos"}

    @staticmethod
    def input_key(path: str) -> bytes:
        return hashlib.sha256(Path(path).read_bytes()).digest()

    def encode(self, paths: list[str], show_progress: bool = True) -> np.ndarray:
        rows = []
        for path in paths:
            colour, kind, number = Path(path).read_text().split()
            vector = np.zeros(len(COLOURS) + len(KINDS))
            vector[COLOURS.index(colour)] = 1.0
            vector[len(COLOURS) + KINDS.index(kind)] = 1.0
            noise = np.random.default_rng(int(number)).normal(scale=0.2, size=vector.size)
            rows.append(np.concatenate([vector + noise, noise[:4] ** 2]))
        return np.stack(rows)


def toy_retriever(**settings: Any) -> CrossModalRetriever:
    retriever = CrossModalRetriever(dim=16, epochs=40, batch_size=32, seed=0, **settings)
    retriever.text_encoder = WordsEncoder  # type: ignore[method-assign]
    retriever.image_encoder = ColourPhotoEncoder  # type: ignore[method-assign]
    return retriever


def write_products(root: Path, count: int, seed: int) -> tuple[list[str], list[str]]:
    """Photo files (colour, kind, a number) and titles naming a brand, the colour and kind."""
    rng = np.random.default_rng(seed)
    photos, titles = [], []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        colour, kind = COLOURS[rng.integers(len(COLOURS))], KINDS[rng.integers(len(KINDS))]
        path = root / f"{seed}-{i}.txt"
        path.write_text(f"{colour} {kind} {seed * 10_000 + i}")
        photos.append(str(path))
        titles.append(f"brand{rng.integers(20)} men {colour} {kind}")
    return photos, titles


def test_zero_shot_names_the_kind_of_unseen_photos(tmp_path: Path) -> None:
    from shoptransfer.backbones import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    photos, titles = write_products(tmp_path / "train", 300, seed=0)
    retriever = toy_retriever().fit(photos, titles, cache)
    test_photos, _ = write_products(tmp_path / "test", 60, seed=1)
    kinds = [Path(p).read_text().split()[1] for p in test_photos]
    predicted = retriever.zero_shot(test_photos, KINDS, cache)
    accuracy = np.mean([p == k for p, k in zip(predicted, kinds)])
    assert accuracy > 0.8  # chance: 1 / 5
    assert PROMPT.format("shoe") in {"a product photo of shoe"}


def test_saved_heads_load_back_and_embed_the_same(tmp_path: Path) -> None:
    images, texts = paired_features(200, seed=0)
    retriever = CrossModalRetriever(dim=8, hidden=16, epochs=3, batch_size=32)
    retriever.fit_features(images, texts)
    folder = retriever.save(tmp_path / "heads")
    loaded = CrossModalRetriever.load(folder)
    assert loaded.settings() == retriever.settings()
    assert loaded.history == retriever.history
    np.testing.assert_array_equal(
        loaded.embed_image_features(images), retriever.embed_image_features(images)
    )
    np.testing.assert_array_equal(
        loaded.embed_text_features(texts), retriever.embed_text_features(texts)
    )
    assert loaded.loss.scale.item() == pytest.approx(retriever.loss.scale.item())  # type: ignore[union-attr]
    (folder / "heads.safetensors").write_bytes(b"not weights")
    with pytest.raises(DataError, match="heads.safetensors"):
        CrossModalRetriever.load(folder)


# -- errors ------------------------------------------------------------------------------------


def test_mismatched_pairs_bad_features_and_settings_are_clear_errors(tmp_path: Path) -> None:
    images, texts = paired_features(20, seed=0)
    with pytest.raises(DataError, match="20 photos but 19 titles; expected one title per photo"):
        CrossModalRetriever(epochs=1).fit_features(images, texts[:19])
    with pytest.raises(DataError, match="at least 2"):
        CrossModalRetriever(epochs=1).fit_features(images[:1], texts[:1])
    with pytest.raises(ConfigError, match="dim=0"):
        CrossModalRetriever(dim=0).fit_features(images, texts)
    with pytest.raises(ConfigError, match="validation_fraction"):
        CrossModalRetriever(validation_fraction=1.0).fit_features(images, texts)
    with pytest.raises(ConfigError, match="no trained heads"):
        CrossModalRetriever().embed_image_features(images)
    retriever = CrossModalRetriever(dim=4, epochs=1).fit_features(images, texts)
    with pytest.raises(DataError, match="24 columns, but the heads were trained on 48"):
        retriever.embed_image_features(texts)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        retriever.zero_shot_scores(images, ["shirt"], None)
    with pytest.raises(ConfigError, match="given twice"):
        retriever.zero_shot_scores(images, ["shirt", "shirt"], None)
    with pytest.raises(DataError, match="no such folder"):
        CrossModalRetriever.load(tmp_path / "nothing")


def test_a_pairs_table_names_a_missing_column_and_counts_rows_without_a_title(
    tmp_path: Path,
) -> None:
    from PIL import Image

    for name in ("a", "b", "c"):
        Image.new("RGB", (40, 40), (200, 20, 20)).save(tmp_path / f"{name}.png")
    table = tmp_path / "pairs.csv"
    table.write_text("photo,name,kind\na.png,Red Shirt,shirt\nb.png,,shirt\nc.png,Blue Shoe,shoe\n")
    pairs = read_pairs(table, image="photo", text="name", label="kind")
    assert pairs.titles == ["Red Shirt", "Blue Shoe"]
    assert pairs.labels == ["shirt", "shoe"]
    assert [Path(p).name for p in pairs.photos] == ["a.png", "c.png"]
    assert pairs.dropped == {"missing title": 1}
    with pytest.raises(DataError, match=r"pairs.csv: no column 'title'"):
        read_pairs(table, image="photo", text="title")


# -- the command line ----------------------------------------------------------------------------


def write_pairs_table(root: Path, count: int = 16) -> Path:
    from PIL import Image

    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    lines = ["photo,name,kind"]
    for i in range(count):
        colour = list(colours)[i % 3]
        Image.new("RGB", (48, 64), colours[colour]).save(root / f"p{i}.png")
        lines.append(f"p{i}.png,Brand{i} {colour} item,{colour}")
    lines.append("p0.png,,red")  # no title: left out and counted
    table = root / "pairs.csv"
    table.write_text("\n".join(lines) + "\n")
    return table


def test_cli_trains_saves_and_searches_and_names_bad_input_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from .test_cli_input import one_line, shoptransfer

    monkeypatch.setenv("SHOPTRANSFER_CACHE", str(tmp_path / "cache"))
    table = write_pairs_table(tmp_path)
    heads = tmp_path / "heads"
    train = ["train-retrieval", str(table), "-o", str(heads), "--image-column", "photo"]
    train += ["--text-column", "name", "--label-column", "kind", "--epochs", "3"]
    train += ["--test-fraction", "0.25", "--candidates", "4", "-q"]
    status, out, err = shoptransfer(monkeypatch, capsys, *train)
    assert status == 0, err
    assert "title -> photo among 4: R@1" in out
    assert "zero-shot accuracy" in out
    assert one_line(err) == f"warning: {table}: rows left out: 1 missing title"
    saved = json.loads((heads / "metrics.json").read_text())
    assert (saved["train_pairs"], saved["test_pairs"]) == (12, 4)
    assert saved["dropped"] == {str(table): {"missing title": 1}}

    other = tmp_path / "other"
    other.mkdir()
    transfer = [*train[:2], "-o", str(tmp_path / "heads2"), *train[4:8], "--epochs", "2"]
    transfer += ["--test", str(write_pairs_table(other, count=6)), "--candidates", "3", "-q"]
    status, out, err = shoptransfer(monkeypatch, capsys, *transfer)
    assert status == 0, err
    assert "16 pairs trained on, 6 tested on" in out
    assert "title -> photo among 3: R@1" in out
    assert len(err.strip().splitlines()) == 2  # a warning per table

    search = ["search", str(heads), str(table), "--image-column", "photo", "--text-column", "name"]
    status, out, err = shoptransfer(monkeypatch, capsys, *search, "--text", "red item", "-k", "3")
    assert status == 0, err
    assert [line.split(". ")[0] for line in out.splitlines()] == ["1", "2", "3"]

    for args, message in [
        ([*train[:6], "--text-column", "title"], "pairs.csv: no column 'title'"),
        (search, "give one query"),
        (["search", str(tmp_path / "none"), str(table), "--text", "red"], "no such folder"),
        ([*search, "--photo", str(tmp_path / "missing.png")], "missing.png: photo file not found"),
    ]:
        status, _, err = shoptransfer(monkeypatch, capsys, *args)
        assert status == 2, err
        assert message in one_line(err)


def test_api_refuses_an_unknown_setting_before_reading_anything(tmp_path: Path) -> None:
    from shoptransfer.api import train_retriever

    with pytest.raises(ConfigError, match="unknown retriever setting 'epoch'"):
        train_retriever(tmp_path / "absent.csv", tmp_path / "out", epoch=3)
