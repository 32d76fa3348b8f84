"""MCC: minimum class confusion on unlabeled target predictions.

Jin, Wang, Long & Wang, "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020.
Objective: minimise the off-diagonal mass of the target batch's class correlation
``C = Y^T W Y`` (``Y``: softmax of logits / T; ``W``: more weight for confident, low-entropy
rows), each row of ``C`` normalised to sum 1, averaged over the classes — so that the model
stops spreading a target example's probability over two classes at once.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from shoptransfer.objectives.base import ObjectiveConfig, register_objective, setting
from shoptransfer.training import Classifier, Objective, Step


class ClassConfusionLoss(nn.Module):
    """Mean over classes of the off-diagonal row mass of the normalised class correlation."""

    def __init__(self, temperature: float = 2.5) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        n, classes = logits.shape
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        entropy = -(probabilities * torch.log(probabilities + 1e-8)).sum(dim=1).detach()
        weights = 1.0 + torch.exp(-entropy)
        weights = n * weights / weights.sum()
        correlation = (probabilities * weights.unsqueeze(1)).T @ probabilities
        correlation = correlation / correlation.sum(dim=1, keepdim=True)
        return (correlation.sum() - torch.trace(correlation)) / classes


class MinimumClassConfusionObjective(Objective):
    """``weight`` x class confusion of the head's predictions on the unlabeled target batch."""

    def __init__(self, weight: float = 1.0, temperature: float = 2.5) -> None:
        super().__init__()
        self.weight = weight
        self.loss = ClassConfusionLoss(temperature)

    def forward(self, step: Step) -> torch.Tensor:
        assert step.target_features is not None
        return self.weight * self.loss(step.model.head(step.target_features))


@register_objective
@dataclasses.dataclass
class MCC(ObjectiveConfig):
    name = "mcc"
    description = "minimum class confusion on unlabeled target predictions (Jin et al. 2020)"
    needs_unlabeled_target = True
    reads_class_scores = True
    temperature: float = setting(2.5, "softmax temperature of the target predictions")

    def build(self, model: Classifier) -> Objective:
        return MinimumClassConfusionObjective(self.weight, self.temperature)
