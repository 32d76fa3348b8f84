"""MMD: match source and target feature distributions with a multi-kernel Gaussian MMD.

DAN (Long, Cao, Wang & Jordan, ICML 2015): minimise the squared maximum mean discrepancy
``E[k(s,s')] + E[k(t,t')] - 2 E[k(s,t)]`` between source and target features, with ``k`` a sum
of Gaussian kernels whose bandwidths are multiples of the batch's mean squared distance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from shoptransfer.objectives.base import ObjectiveConfig, register_objective
from shoptransfer.training import Classifier, Objective, Step


class MultiKernelMMD(nn.Module):
    """Biased estimate of squared MMD with Gaussian kernels at several bandwidths."""

    def __init__(self, bandwidth_multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> None:
        super().__init__()
        self.multipliers = tuple(bandwidth_multipliers)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([source, target])
        distances = torch.cdist(joint, joint).pow(2)
        base = distances.detach().sum() / max(1, joint.shape[0] ** 2 - joint.shape[0])
        kernel = sum(torch.exp(-distances / (base * m + 1e-9)) for m in self.multipliers)
        n = source.shape[0]
        return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class MMDObjective(Objective):
    """``weight`` x multi-kernel MMD between the source and the target batch's features."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.loss = MultiKernelMMD()

    def forward(self, step: Step) -> torch.Tensor:
        assert step.target_features is not None
        return self.weight * self.loss(step.source_features, step.target_features)


@register_objective
@dataclasses.dataclass
class MMD(ObjectiveConfig):
    name = "mmd"
    description = "DAN: multi-kernel MMD between source and unlabeled target features"
    needs_unlabeled_target = True

    def build(self, model: Classifier) -> Objective:
        return MMDObjective(self.weight)
