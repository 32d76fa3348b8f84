"""An on-disk cache of frozen embeddings, keyed by encoder identity, settings and input.

An input's key is the hash of its text, or of its file's bytes for an image (the encoder's
``input_key``).

Each encoder identity gets a folder; each call that computes new vectors adds one shard
(``.npz`` of text keys and vectors, written atomically), so a later run that asks for any
subset of the same texts reads them back instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoptransfer.files import atomic_write_bytes, atomic_write_text


def default_cache_dir() -> Path:
    root = os.environ.get("SHOPTRANSFER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "shoptransfer"


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


BOTTOM_STORE_BYTES = 3 * 2**30


class BottomStore:
    """Outputs of frozen pretrained bottom layers, one float16 tensor per input, in memory.

    Recipes that freeze a backbone's bottom layers compute them once per input and keep them
    here (:meth:`TextEncoder.cache_frozen_bottom`); encoders with the same pretrained weights,
    settings and cached depth share entries. At most ``limit_bytes`` are kept, oldest out first.
    """

    def __init__(self, limit_bytes: int = BOTTOM_STORE_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self._states: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return key in self._states

    def put(self, key: tuple[Any, ...], states: torch.Tensor) -> None:
        """Keep ``states`` (stored as float16) under ``key``."""
        states = states.to(torch.float16).clone()
        if key in self._states:
            self.bytes -= self._states.pop(key).numel() * 2
        self._states[key] = states
        self.bytes += states.numel() * 2

    def take(self, keys: Sequence[tuple[Any, ...]]) -> list[torch.Tensor]:
        """The states of ``keys`` (all present), then make room: oldest entries go first."""
        states = [self._states[key] for key in keys]
        while self.bytes > self.limit_bytes and self._states:
            _, dropped = self._states.popitem(last=False)
            self.bytes -= dropped.numel() * 2
        return states


class EmbeddingCache:
    """Frozen embeddings on disk; ``encode`` computes only what the cache lacks.

    ``bottom`` holds the in-memory outputs of frozen bottom layers that recipes sharing this
    cache reuse while they train (:class:`BottomStore`).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "embeddings"
        self.bottom = BottomStore()
        self._memory: dict[str, dict[bytes, np.ndarray]] = {}
        self.hits = 0
        self.misses = 0

    def _folder(self, encoder: Any) -> tuple[str, Path]:
        identity = json.dumps(encoder.identity(), sort_keys=True)
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:24]
        return digest, self.root / digest

    def _load(self, digest: str, folder: Path) -> dict[bytes, np.ndarray]:
        if digest in self._memory:
            return self._memory[digest]
        table: dict[bytes, np.ndarray] = {}
        for shard in sorted(folder.glob("*.npz")):
            with np.load(shard, allow_pickle=False) as data:
                for key, vector in zip(data["keys"], data["vectors"]):
                    table[key.tobytes()] = vector
        self._memory[digest] = table
        return table

    def encode(self, encoder: Any, texts: Sequence[str], show_progress: bool = True) -> np.ndarray:
        """Frozen features of ``texts`` (texts, or image paths for an image encoder)."""
        digest, folder = self._folder(encoder)
        table = self._load(digest, folder)
        key_of = getattr(encoder, "input_key", _text_key)
        keys = [key_of(t) for t in texts]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in table}.values())
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            vectors = encoder.encode([texts[i] for i in missing], show_progress=show_progress)
            new_keys = np.frombuffer(b"".join(keys[i] for i in missing), dtype=np.uint8)
            new_keys = new_keys.reshape(len(missing), 32)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / "identity.json", json.dumps(encoder.identity(), indent=2))
            shard = folder / f"{hashlib.sha256(new_keys.tobytes()).hexdigest()[:16]}.npz"
            buffer = _npz_bytes(keys=new_keys, vectors=vectors)
            atomic_write_bytes(shard, buffer)
            for i, vector in zip(missing, vectors):
                table[keys[i]] = vector
        return np.stack([table[k] for k in keys]).astype(np.float32)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
