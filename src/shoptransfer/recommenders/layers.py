"""Network pieces the neural recommenders share: item-id vectors, the frozen embeddings of item
texts, causal self-attention over a history, and the head that scores every item against the
item vectors.

A recommender is a :class:`~shoptransfer.training.Classifier` whose encoder reads a batch of
item ids (``batch["ids"]``: left-padded histories, or user indices) and whose head is
:class:`ItemScores` over the encoder's own item vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones import backbone_modality, make_encoder
from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.errors import ConfigError


def item_text_embeddings(
    backbone: str,
    max_length: int,
    items: Sequence[str],
    texts: Sequence[str],
    cache: EmbeddingCache | None,
) -> np.ndarray:
    """The frozen text backbone's embedding of every item's text (its id where it has none),
    one row per item, through the embedding cache when given."""
    if backbone_modality(backbone) != "text":
        raise ConfigError(f"backbone '{backbone}' reads images; item texts need a text backbone")
    encoder = make_encoder(backbone, max_length=max_length)
    inputs = [text or item for text, item in zip(texts, items)]
    vectors = cache.encode(encoder, inputs) if cache is not None else encoder.encode(inputs)
    return np.asarray(vectors, dtype=np.float32)


class IdItemVectors(nn.Module):
    """One learned vector per item id (0 pads)."""

    def __init__(self, n_items: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)

    def table(self) -> torch.Tensor:
        return self.embedding.weight


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention and a feed-forward layer, each with residual and LayerNorm."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, hidden)
        )
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, hidden = x.shape
        q, k, v = (
            t.view(b, length, self.heads, hidden // self.heads).transpose(1, 2)
            for t in self.qkv(x).chunk(3, dim=-1)
        )
        attention = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout.p if self.training else 0.0
        )
        attention = attention.transpose(1, 2).reshape(b, length, hidden)
        x = self.norm1(x + self.dropout(self.out(attention)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class SequenceEncoder(nn.Module):
    """SASRec's encoder: a left-padded history to the vector at its last position."""

    def __init__(
        self,
        items: nn.Module,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        inner: int = 256,
        dropout: float = 0.5,
        max_history: int = 50,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"hidden size {hidden} must be a multiple of heads {heads}")
        self.items = items
        self.max_history = max_history
        self.positions = nn.Embedding(max_history, hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(hidden, heads, inner, dropout) for _ in range(layers)
        )

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        ids = batch["ids"][:, -self.max_history :]
        used = torch.nonzero(ids.ne(0).any(dim=0))
        ids = ids[:, int(used[0]) :] if len(used) else ids[:, -1:]  # drop all-padding columns
        return self.encode(ids)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """The last position's vector of left-padded histories at most ``max_history`` wide.
        Columns of padding change nothing (a real item attends to earlier real items only),
        so any width gives the same vectors; the ONNX export traces this part."""
        length = ids.shape[1]
        order = torch.arange(length)
        positions = order + (self.max_history - length)
        x = self.dropout(self.norm(self.items(ids) + self.positions(positions)))
        causal = order[None, :] <= order[:, None]
        diagonal = order[None, :] == order[:, None]
        # attend to earlier real items; a padding position attends to itself only
        allowed = (causal & ids.ne(0)[:, None, :]) | diagonal
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed)
        return x[:, -1]


class ItemScores(nn.Module):
    """Scores of every item: dot product (or cosine / temperature) with the items' vectors.

    The item vectors belong to the encoder; the head only reads them.
    """

    def __init__(self, items: nn.Module, n_items: int, temperature: float = 0.0) -> None:
        super().__init__()
        self._items = [items]  # not a submodule: its parameters train with the encoder
        self.out_features = n_items + 1
        self.temperature = temperature

    @property
    def items(self) -> nn.Module:
        """The item vectors scored against (owned by the encoder)."""
        return self._items[0]

    def query_vectors(self, features: torch.Tensor) -> torch.Tensor:
        """History vectors whose dot products with :meth:`item_vectors` order the items as
        the scores do (unit length under a temperature: cosine similarity)."""
        return nn.functional.normalize(features, dim=-1) if self.temperature > 0 else features

    def item_vectors(self) -> torch.Tensor:
        """Every item's vector (row 0 pads), as :meth:`query_vectors` is scored against."""
        table = self.items.table()
        return nn.functional.normalize(table, dim=-1) if self.temperature > 0 else table

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features, table = self.query_vectors(features), self.item_vectors()
        logits = features @ table.T
        if self.temperature > 0:
            logits = logits / self.temperature
        return logits.masked_fill(torch.arange(logits.shape[1]) == 0, -1e4)
