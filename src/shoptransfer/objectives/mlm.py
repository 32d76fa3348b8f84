"""Masked-language-model loss on unlabeled target text beside the source's task loss (UDALM).

UDALM (Karouzos, Paraskevopoulos & Potamianos, NAACL 2021): after domain-adaptive
pre-training, train on ``L = L_CE(source labels) + weight * L_MLM(target texts)``, so the
backbone keeps modelling the target's language while it learns the task from the source. The
MLM head is BERT's, tied to the input word embeddings
(:class:`~shoptransfer.backbones.language_model.MaskedLanguageModelHead`), and trains with the
model.
"""

from __future__ import annotations

import dataclasses

import torch

from shoptransfer.backbones.language_model import (
    check_language_model,
    language_model_head,
    masked_lm_loss,
)
from shoptransfer.objectives.base import ObjectiveConfig, register_objective
from shoptransfer.training import Classifier, Objective, Step


class MaskedLanguageModelObjective(Objective):
    """``weight`` x the MLM loss of the unlabeled target batch's texts (15 % masked)."""

    reads_target_features = False

    def __init__(self, model: Classifier, weight: float = 1.0) -> None:
        super().__init__()
        check_language_model(model.encoder, "objective 'mlm'")
        self.weight = weight
        self.head = language_model_head(model.encoder)  # type: ignore[arg-type]

    def forward(self, step: Step) -> torch.Tensor:
        assert step.target_batch is not None
        encoder = step.model.encoder
        loss = masked_lm_loss(encoder, self.head, step.target_batch["texts"])  # type: ignore[arg-type]
        self.last_metrics = {"mlm_loss": float(loss.detach())}
        return self.weight * loss


@register_objective
@dataclasses.dataclass
class MaskedLanguageModel(ObjectiveConfig):
    name = "mlm"
    description = (
        "UDALM: masked-language-model loss on unlabeled target text beside the source's task "
        "loss (trainable text backbones)"
    )
    needs_unlabeled_target = True

    def build(self, model: Classifier) -> Objective:
        return MaskedLanguageModelObjective(model, self.weight)
