from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoptransfer.backbones import EmbeddingCache, TextEncoder, list_backbones
from shoptransfer.errors import ConfigError

TEXTS = ["short", "a somewhat longer review text here", "mid length text", "x y z " * 20]


def test_registry_lists_the_bundled_minilm() -> None:
    assert "minilm-l6" in [spec.name for spec in list_backbones()]


def test_encode_keeps_input_order_despite_length_sorting(tiny_backbone: str) -> None:
    encoder = TextEncoder(tiny_backbone, max_length=32)
    together = encoder.encode(TEXTS, batch_size=2, show_progress=False)
    one_by_one = np.stack([encoder.encode([t], show_progress=False)[0] for t in TEXTS])
    assert together.shape == (4, 16)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_layers_are_embeddings_then_blocks(tiny_backbone: str) -> None:
    encoder = TextEncoder(tiny_backbone)
    assert len(encoder.layers()) == 3  # embeddings + 2 transformer blocks


def test_random_init_differs_from_saved_weights(tiny_backbone: str) -> None:
    import torch

    torch.manual_seed(123)
    pretrained = TextEncoder(tiny_backbone).encode(TEXTS, show_progress=False)
    scratch = TextEncoder(tiny_backbone, pretrained=False).encode(TEXTS, show_progress=False)
    assert not np.allclose(pretrained, scratch)


def test_cache_computes_once_and_reuses_subsets(tiny_backbone: str, tmp_path: Path) -> None:
    encoder = TextEncoder(tiny_backbone, max_length=32)
    cache = EmbeddingCache(tmp_path)
    first = cache.encode(encoder, TEXTS, show_progress=False)
    assert (cache.hits, cache.misses) == (0, 4)
    fresh = EmbeddingCache(tmp_path)  # a second run: reads from disk
    again = fresh.encode(encoder, TEXTS[::-1] + ["new text"], show_progress=False)
    assert (fresh.hits, fresh.misses) == (4, 1)
    np.testing.assert_allclose(again[:4], first[::-1], atol=1e-6)


def test_cache_key_includes_settings(tiny_backbone: str, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.encode(TextEncoder(tiny_backbone, max_length=32), TEXTS, show_progress=False)
    cache.encode(TextEncoder(tiny_backbone, max_length=8), TEXTS, show_progress=False)
    assert cache.misses == 8
    assert len(list(tmp_path.iterdir())) == 2


def test_unknown_backbone_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        TextEncoder(str(tmp_path))
    with pytest.raises(ConfigError, match="not a registered name"):
        TextEncoder("no-such-org/no-such-model-anywhere")


def test_cached_bottom_layers_give_the_full_models_features(tiny_backbone: str) -> None:
    import torch

    texts = ["a great kettle", "it broke after two days and the lid leaks badly", "fine"]
    encoder = TextEncoder(tiny_backbone).eval()
    with torch.no_grad():
        full = encoder.embed({"texts": texts})
        encoder.cache_frozen_bottom(2)  # embeddings and the first block
        first = encoder.embed({"texts": texts})  # computes and stores the bottom
        again = encoder.embed({"texts": texts[::-1]})[[2, 1, 0]]  # read back, other order
    torch.testing.assert_close(first, full, atol=1e-2, rtol=1e-2)  # states stored as fp16
    torch.testing.assert_close(again, first)


def test_only_the_layers_above_the_cached_bottom_train(tiny_backbone: str) -> None:

    encoder = TextEncoder(tiny_backbone)
    encoder.cache_frozen_bottom(2)
    for layer in encoder.layers()[:2]:
        layer.requires_grad_(False)
    encoder.train()
    encoder.embed({"texts": ["good", "bad pan"]}).sum().backward()
    layers = encoder.layers()
    assert all(p.grad is None for layer in layers[:2] for p in layer.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in layers[2].parameters())
    with pytest.raises(ValueError, match="pretrained"):
        TextEncoder(tiny_backbone, pretrained=False).cache_frozen_bottom(1)


def test_head_and_tail_truncation_keeps_both_ends(tiny_backbone: str) -> None:
    words = [f"w{i}" for i in range(40)]
    text = " ".join(words)
    head = TextEncoder(tiny_backbone, max_length=10)
    both = TextEncoder(tiny_backbone, max_length=10, truncation="head+tail")
    pieces = head.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = both.tokenize([text])["input_ids"][0].tolist()
    assert len(ids) == 10
    assert ids[1:3] == pieces[:2]  # a quarter of the 8 free places from the start
    assert ids[3:9] == pieces[-6:]  # the rest from the end
    assert ids[0] == head.tokenizer.cls_token_id and ids[-1] == head.tokenizer.sep_token_id
    short = ["a short one", "and another short text"]
    assert both.tokenize(short)["input_ids"].tolist() == head.tokenize(short)["input_ids"].tolist()
    assert both.identity() != head.identity()  # cached embeddings do not mix
    with pytest.raises(ConfigError, match="truncation"):
        TextEncoder(tiny_backbone, truncation="middle")


def test_frozen_bottom_states_live_in_the_store_handed_in(tiny_backbone: str) -> None:
    import torch

    from shoptransfer.backbones.cache import BottomStore, EmbeddingCache

    texts = ["a great kettle", "the lid leaks"]
    shared = BottomStore()
    first, second = TextEncoder(tiny_backbone).eval(), TextEncoder(tiny_backbone).eval()
    first.cache_frozen_bottom(2, shared)
    second.cache_frozen_bottom(2, shared)
    with torch.no_grad():
        first.embed({"texts": texts})
        assert len(shared) == 2  # one entry per text
        second.embed({"texts": texts})
        assert len(shared) == 2  # the second encoder read them back
        alone = TextEncoder(tiny_backbone).eval()
        alone.cache_frozen_bottom(2)  # no store handed in: its own, nothing shared
        alone.embed({"texts": texts})
    assert len(alone.bottom_store) == 2 and len(shared) == 2
    small = BottomStore(limit_bytes=1)  # room for nothing: the oldest go after each read
    small.put(("a",), torch.ones(3))
    small.put(("b",), torch.ones(3))
    assert [t.dtype for t in small.take([("a",), ("b",)])] == [torch.float16] * 2
    assert len(small) == 0 and small.bytes == 0
    assert isinstance(EmbeddingCache(None).bottom, BottomStore)
