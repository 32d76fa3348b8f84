"""scratch-transformer: the backbone's network with random weights, trained on target labels only
(for an image backbone, the convolutional network: the name is kept for existing configs).

The baseline that shows what pretraining is worth. Objective: minimise cross-entropy of the
randomly initialised encoder and head on the target's labeled examples (a regression: the squared
error of its numbers; a multi-task model: each head's cross-entropy), for a fixed number of
epochs.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from shoptransfer.backbones.inputs import raw_inputs
from shoptransfer.recipes.base import (
    BackboneRecipe,
    FitData,
    Predictor,
    option,
    register_recipe,
    require_target_labels,
)
from shoptransfer.recipes.neural import NeuralPredictor
from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings


@register_recipe
@dataclasses.dataclass
class ScratchTransformer(BackboneRecipe):
    name: ClassVar[str] = "scratch-transformer"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "the backbone's network, randomly initialised, on target labels"
    uses_source: ClassVar[bool] = False
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression", "multi-task")

    epochs: int = option(10, "epochs on the target labels", minimum=1)
    batch_size: int = option(16, "examples per step", minimum=1)
    learning_rate: float = option(1e-4, "AdamW learning rate", above=0)

    def fit(self, data: FitData) -> Predictor:
        target = require_target_labels(self, data.target)
        self.check_backbone(target)
        outputs = data.predicts()
        labels = outputs.labels(target)
        torch.manual_seed(self.seed)
        encoder = self.make_encoder(pretrained=False)
        model = outputs.build(encoder.hidden_size, encoder, self.precision, values=labels)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            description="scratch-transformer",
            loss=outputs.loss,
        )

        def as_predictor(m: Classifier) -> NeuralPredictor:
            return NeuralPredictor.from_training(outputs, m, self, None, None)

        self.history_ = Trainer(settings).fit(
            model, Examples(raw_inputs(encoder, target.inputs), labels), as_predictor=as_predictor
        )
        return as_predictor(model)
