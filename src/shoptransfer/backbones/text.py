"""Text backbones: a transformer encoder with mean pooling, and batched frozen encoding."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.registry import get_backbone_spec, resolve_backbone
from shoptransfer.errors import ConfigError
from shoptransfer.progress import progress


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@functools.lru_cache(maxsize=8)
def _load_tokenizer_and_config(location: str) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(location), AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ConfigError(
            f"backbone '{location}': not a registered name, a local model folder, or a hub id "
            f"in the local cache{offline}: {str(exc).splitlines()[0]}"
        ) from None


class TextEncoder(nn.Module):
    """A transformer encoder that maps tokenised text to one mean-pooled vector per text.

    ``pretrained=False`` builds the same network with random weights (the scratch baseline).
    """

    def __init__(
        self, backbone: str = "minilm-l6", max_length: int | None = None, pretrained: bool = True
    ) -> None:
        super().__init__()
        from transformers import AutoModel

        spec = get_backbone_spec(backbone)
        self.backbone = backbone
        self.location = resolve_backbone(backbone)
        self.max_length = int(max_length or (spec.default_max_length if spec else 128))
        self.pretrained = pretrained
        self.tokenizer, config = _load_tokenizer_and_config(self.location)
        if pretrained:
            self.model = AutoModel.from_pretrained(self.location)
        else:
            self.model = AutoModel.from_config(config)
        self.hidden_size = int(config.hidden_size)

    def identity(self) -> dict[str, Any]:
        """What determines this encoder's frozen output (used as the embedding cache key)."""
        return {
            "backbone": self.backbone,
            "location": self.location,
            "max_length": self.max_length,
            "pooling": "mean",
            "pretrained": self.pretrained,
        }

    def layers(self) -> list[nn.Module]:
        """The encoder's layers from input to output: embeddings, then each transformer block."""
        blocks = getattr(getattr(self.model, "encoder", None), "layer", None)
        embeddings = getattr(self.model, "embeddings", None)
        if blocks is None or embeddings is None:
            raise ConfigError(
                f"backbone '{self.backbone}': cannot find its embeddings and encoder layers"
            )
        return [embeddings, *blocks]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features of ``batch["texts"]`` (the interface a Classifier's encoder has)."""
        return self(**self.tokenize(batch["texts"]))

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = True
    ) -> np.ndarray:
        """Embed ``texts`` without gradients, batching texts of similar length together.

        Rows come back in input order.
        """
        was_training = self.training
        self.eval()
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in progress(
            starts, description=f"encoding with {self.backbone}", enabled=show_progress
        ):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            out[idx] = self(**batch).float().numpy()
        self.train(was_training)
        return out
