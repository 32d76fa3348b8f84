"""The predictor shared by every neural recipe, and helpers to build their training data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.domain import TextDomain
from shoptransfer.data.sampling import train_validation_split
from shoptransfer.errors import DataError
from shoptransfer.recipes.base import Predictor, register_predictor
from shoptransfer.training import Classifier, Examples, predict_logits


def labeled_examples(
    domain: TextDomain,
    classes: Sequence[str],
    features: np.ndarray | None = None,
    weight: float | None = None,
) -> Examples:
    """``domain`` as training examples: its texts (or ``features``), label ids and weights."""
    inputs: list[str] | np.ndarray = list(domain.texts) if features is None else features
    weights = None if weight is None else np.full(len(domain), weight, dtype=np.float32)
    return Examples(inputs, domain.label_ids(classes), weights)


def split_source(
    source: TextDomain, validation_fraction: float, seed: int
) -> tuple[TextDomain, TextDomain]:
    """The source's (train, validation) split used for model selection."""
    return train_validation_split(source, validation_fraction, seed)


def frozen_features(
    encoder: TextEncoder, texts: Sequence[str], cache: EmbeddingCache | None
) -> np.ndarray:
    return cache.encode(encoder, texts) if cache is not None else encoder.encode(texts)


@register_predictor
class NeuralPredictor(Predictor):
    """A :class:`Classifier` over a text encoder; the encoder is either frozen or trained.

    A frozen encoder's features come through the embedding cache when one is given. Saving
    writes the head, and the encoder's weights only when training changed them.
    """

    kind = "neural"

    def __init__(
        self,
        classes: list[str],
        model: Classifier,
        encoder: TextEncoder,
        encoder_trained: bool,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.classes = classes
        self.model = model.eval()
        self.encoder = encoder
        self.encoder_trained = encoder_trained
        self.cache = cache

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.encoder_trained:
            logits = predict_logits(self.model, Examples(list(texts)))
        else:
            features = frozen_features(self.encoder, texts, self.cache)
            logits = predict_logits(self.model, Examples(features))
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    @property
    def trainable_parameters(self) -> int:
        head = sum(p.numel() for p in self.model.head.parameters())
        if not self.encoder_trained:
            return head
        return head + sum(p.numel() for p in self.encoder.parameters() if p.requires_grad)

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        state = {
            name: tensor.detach().contiguous().clone()
            for name, tensor in self.model.state_dict().items()
            if name.startswith("head.") or self.encoder_trained
        }
        save_file(state, str(folder / "model.safetensors"))
        return {
            "backbone": self.encoder.backbone,
            "max_length": self.encoder.max_length,
            "pretrained": self.encoder.pretrained,
            "encoder_trained": self.encoder_trained,
            "trainable_parameters": self.trainable_parameters,
        }

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any]) -> NeuralPredictor:
        trained = bool(metadata["encoder_trained"])
        # A trained encoder's weights are all in the file: build the network, then load them.
        encoder = TextEncoder(
            metadata["backbone"],
            metadata["max_length"],
            pretrained=bool(metadata["pretrained"]) and not trained,
        )
        encoder.pretrained = bool(metadata["pretrained"])
        classes = list(metadata["classes"])
        model = Classifier(len(classes), encoder.hidden_size, encoder if trained else None)
        state = load_file(str(folder / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [name for name in missing if not name.endswith("position_ids")]
        if missing or unexpected:
            raise DataError(
                f"{folder}: the saved weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return cls(classes, model, encoder, trained)
