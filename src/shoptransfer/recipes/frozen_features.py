"""frozen-features: a linear head on the frozen backbone's pooled features (feature-based).

Objective: minimise cross-entropy of ``W f(x) + b`` with ``f`` the frozen pretrained encoder,
over the source labels plus (when the budget is above 0) the target labels, each domain
weighted as configured. Epochs are chosen on a source validation split.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.domain import TextDomain
from shoptransfer.errors import ConfigError
from shoptransfer.recipes.base import Predictor, Recipe, option, register_recipe
from shoptransfer.recipes.neural import (
    NeuralPredictor,
    frozen_features,
    labeled_examples,
    split_source,
)
from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings


@register_recipe
@dataclasses.dataclass
class FrozenFeatures(Recipe):
    name: ClassVar[str] = "frozen-features"
    family: ClassVar[str] = "feature-based"
    description: ClassVar[str] = (
        "frozen pretrained features, linear head on source (+ target) labels"
    )

    backbone: str = option("minilm-l6", "registered backbone name, local model folder or hub id")
    max_length: int = option(128, "tokens kept per text")
    epochs: int = option(100, "most epochs of head training (early stopping on source validation)")
    batch_size: int = option(32, "examples per step")
    learning_rate: float = option(1e-3, "AdamW learning rate of the head")
    weight_decay: float = option(1e-4, "AdamW weight decay of the head")
    patience: int = option(10, "epochs without validation improvement before stopping")
    validation_fraction: float = option(0.2, "share of the source held out for model selection")
    target_weight: float | str = option(
        "balanced",
        "weight of each target example; 'balanced' gives source and target equal total weight",
    )

    def _target_weight(self, n_source: int, n_target: int) -> float:
        if self.target_weight == "balanced":
            return n_source / n_target
        try:
            return float(self.target_weight)
        except ValueError:
            raise ConfigError(
                f"recipe '{self.name}': target_weight {self.target_weight!r}; expected a number "
                "or 'balanced'"
            ) from None

    def fit(
        self,
        source: TextDomain,
        target: TextDomain | None = None,
        cache: EmbeddingCache | None = None,
    ) -> Predictor:
        classes = source.classes
        encoder = TextEncoder(self.backbone, self.max_length)
        train, validation = split_source(source, self.validation_fraction, self.seed)
        parts = [
            labeled_examples(
                train, classes, frozen_features(encoder, train.texts, cache), weight=1.0
            )
        ]
        if target is not None and len(target):
            weight = self._target_weight(len(train), len(target))
            parts.append(
                labeled_examples(
                    target, classes, frozen_features(encoder, target.texts, cache), weight=weight
                )
            )
        held_out = labeled_examples(
            validation, classes, frozen_features(encoder, validation.texts, cache)
        )
        torch.manual_seed(self.seed)
        model = Classifier(len(classes), encoder.hidden_size)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_fraction=0.0,
            patience=self.patience,
            seed=self.seed,
            description="frozen-features head",
        )
        Trainer(settings).fit(model, Examples.concatenate(parts), held_out)
        return NeuralPredictor(classes, model, encoder, encoder_trained=False, cache=cache)
