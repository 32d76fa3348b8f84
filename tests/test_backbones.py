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
