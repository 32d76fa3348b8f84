"""fine-tune: train backbone and head on the source, then on the target labels (model-based).

Objective: minimise cross-entropy over all encoder and head parameters, first on source labels
(epochs chosen on a source validation split), then for a fixed number of epochs on the target
labels when the budget is above 0 (no target labels are used for model selection).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.domain import TextDomain
from shoptransfer.recipes.base import Predictor, Recipe, option, register_recipe
from shoptransfer.recipes.neural import NeuralPredictor, labeled_examples, split_source
from shoptransfer.training import Classifier, Trainer, TrainingSettings


@register_recipe
@dataclasses.dataclass
class FineTune(Recipe):
    name: ClassVar[str] = "fine-tune"
    family: ClassVar[str] = "model-based"
    description: ClassVar[str] = "fine-tune backbone + head on source labels, then on target labels"

    backbone: str = option("minilm-l6", "registered backbone name, local model folder or hub id")
    max_length: int = option(128, "tokens kept per text")
    epochs: int = option(3, "most source epochs (early stopping on source validation)")
    batch_size: int = option(16, "examples per step")
    learning_rate: float = option(3e-5, "AdamW learning rate of the encoder")
    head_learning_rate: float = option(1e-3, "AdamW learning rate of the new head")
    patience: int = option(1, "source epochs without validation improvement before stopping")
    validation_fraction: float = option(0.2, "share of the source held out for model selection")
    target_epochs: int = option(10, "epochs on the target labels (fixed: no target validation)")
    target_learning_rate: float = option(3e-5, "AdamW learning rate of the target stage")
    _source_stage: dict[Any, dict[str, torch.Tensor]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _train_on_source(self, source: TextDomain, classes: list[str]) -> Classifier:
        """The source stage; its weights are kept so other budgets of this seed reuse them."""
        torch.manual_seed(self.seed)
        encoder = TextEncoder(self.backbone, self.max_length)
        model = Classifier(len(classes), encoder.hidden_size, encoder)
        key = (source.data_hash(), self.seed)
        if key in self._source_stage:
            model.load_state_dict(self._source_stage[key])
            return model
        train, validation = split_source(source, self.validation_fraction, self.seed)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            head_learning_rate=self.head_learning_rate,
            patience=self.patience,
            seed=self.seed,
            description="fine-tune on source",
        )
        Trainer(settings).fit(
            model, labeled_examples(train, classes), labeled_examples(validation, classes)
        )
        self._source_stage[key] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    def fit(
        self,
        source: TextDomain,
        target: TextDomain | None = None,
        cache: EmbeddingCache | None = None,
    ) -> Predictor:
        classes = source.classes
        model = self._train_on_source(source, classes)
        if target is not None and len(target):
            settings = TrainingSettings(
                epochs=self.target_epochs,
                batch_size=self.batch_size,
                learning_rate=self.target_learning_rate,
                seed=self.seed,
                description="fine-tune on target",
            )
            Trainer(settings).fit(model, labeled_examples(target, classes))
        assert model.encoder is not None
        return NeuralPredictor(classes, model, model.encoder, encoder_trained=True)
