"""BSS: batch spectral shrinkage against negative transfer in fine-tuning.

Chen, Wang, Fu, Long & Wang, "Catastrophic Forgetting Meets Negative Transfer: Batch Spectral
Shrinkage for Safe Transfer Learning", NeurIPS 2019. Objective: add
``weight * sum_{i=1..k} sigma_{-i}^2``, the squares of the ``k`` smallest singular values of the
training batch's feature matrix, so that the directions the new task barely uses (where
pretrained knowledge that does not transfer sits) are shrunk.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from shoptransfer.objectives.base import ObjectiveConfig, register_objective, setting
from shoptransfer.training import Classifier, Objective, Step


class SpectralShrinkage(nn.Module):
    """Sum of the squared ``k`` smallest singular values of a ``(batch, features)`` matrix."""

    def __init__(self, k: int = 1) -> None:
        super().__init__()
        self.k = k

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        singular_values = torch.linalg.svdvals(features.float())  # descending
        return singular_values[-self.k :].pow(2).sum()


class BatchSpectralShrinkageObjective(Objective):
    """``weight`` x spectral shrinkage of the features of the batch being trained on."""

    def __init__(self, weight: float = 0.001, k: int = 1) -> None:
        super().__init__()
        self.weight = weight
        self.loss = SpectralShrinkage(k)

    def forward(self, step: Step) -> torch.Tensor:
        return self.weight * self.loss(step.source_features)


@register_objective
@dataclasses.dataclass
class BSS(ObjectiveConfig):
    name = "bss"
    description = "batch spectral shrinkage: shrink the smallest singular values of features"
    stages = ("source", "target", "self-training")
    weight: float = setting(0.001, "eta: weight of the penalty")
    k: int = setting(1, "how many of the smallest singular values are shrunk")

    def build(self, model: Classifier) -> Objective:
        return BatchSpectralShrinkageObjective(self.weight, self.k)
