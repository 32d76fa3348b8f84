"""frozen-features and coral-closed-form: a linear head on frozen features (feature-based).

frozen-features: minimise cross-entropy of ``W f(x) + b`` with ``f`` the frozen pretrained
encoder (or a feature domain's own vectors), over the source labels plus, when the budget is
above 0, the target labels, each domain weighted as configured. Epochs are chosen on a source
validation split.

coral-closed-form (Sun, Feng & Saenko, AAAI 2016, "Return of Frustratingly Easy Domain
Adaptation"): the same head, trained on source features whitened and re-coloured with the
covariance of the unlabeled target features.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data.domain import Domain, FeatureDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes.base import BackboneRecipe, Predictor, option, register_recipe
from shoptransfer.recipes.coral import coral_transform
from shoptransfer.recipes.neural import NeuralPredictor, domain_inputs, split_source
from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings


@register_recipe
@dataclasses.dataclass
class FrozenFeatures(BackboneRecipe):
    name: ClassVar[str] = "frozen-features"
    family: ClassVar[str] = "feature-based"
    description: ClassVar[str] = (
        "frozen pretrained features, linear head on source (+ target) labels"
    )
    recolor: ClassVar[bool] = False

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
        source: Domain,
        target: Domain | None = None,
        cache: EmbeddingCache | None = None,
        unlabeled: Domain | None = None,
    ) -> Predictor:
        classes = source.classes
        self.check_backbone(source)
        frozen = None if isinstance(source, FeatureDomain) else self.make_encoder()
        train, validation = split_source(source, self.validation_fraction, self.seed)
        train_x = domain_inputs(train, frozen, cache)
        assert isinstance(train_x, np.ndarray)
        if self.recolor:
            if unlabeled is None:
                raise DataError(f"recipe '{self.name}' needs unlabeled target data")
            target_x = domain_inputs(unlabeled, frozen, cache)
            train_x = coral_transform(train_x, np.asarray(target_x))
        parts = [Examples(train_x, train.label_ids(classes), np.ones(len(train), dtype=np.float32))]
        if target is not None and len(target):
            weight = self._target_weight(len(train), len(target))
            parts.append(
                Examples(
                    domain_inputs(target, frozen, cache),
                    target.label_ids(classes),
                    np.full(len(target), weight, dtype=np.float32),
                )
            )
        held_out = Examples(domain_inputs(validation, frozen, cache), validation.label_ids(classes))
        torch.manual_seed(self.seed)
        model = Classifier(len(classes), train_x.shape[1])
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_fraction=0.0,
            patience=self.patience,
            seed=self.seed,
            description=self.name,
        )

        def as_predictor(m: Classifier) -> NeuralPredictor:
            return NeuralPredictor.from_training(classes, m, self, frozen, cache)

        Trainer(settings).fit(
            model, Examples.concatenate(parts), held_out, as_predictor=as_predictor
        )
        return as_predictor(model)


@register_recipe
@dataclasses.dataclass
class CoralClosedForm(FrozenFeatures):
    name: ClassVar[str] = "coral-closed-form"
    description: ClassVar[str] = "frozen features; source re-coloured with target covariance"
    recolor: ClassVar[bool] = True
