"""DANN: domain-adversarial training through a gradient reversal layer.

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016. A domain classifier
learns to tell source from target features while the reversed gradient trains the feature
extractor to fool it: ``min_F max_D  L_task(F) - lambda L_domain(D(F))``, with
``lambda_p = 2 / (1 + exp(-10 p)) - 1`` rising from 0 to 1 over training progress ``p``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from shoptransfer.objectives.base import ObjectiveConfig, register_objective, setting
from shoptransfer.training import Classifier, Objective, Step


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(inputs: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity going forward; multiplies the gradient by ``-scale`` going back."""
    return _ReverseGradient.apply(inputs, scale)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """The schedule of Ganin et al.: 0 at the start, approaching 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DomainAdversarialObjective(Objective):
    """A domain classifier on reversed features; its loss is ``weight`` x BCE (source=0)."""

    def __init__(self, feature_size: int, hidden_size: int = 256, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.discriminator = nn.Sequential(
            nn.Linear(feature_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden_size, 1),
        )
        self.last_metrics: dict[str, float] = {}

    def forward(self, step: Step) -> torch.Tensor:
        assert step.target_features is not None
        features = torch.cat([step.source_features, step.target_features])
        domains = torch.cat(
            [torch.zeros(len(step.source_features)), torch.ones(len(step.target_features))]
        )
        logits = self.discriminator(reverse_gradient(features, dann_lambda(step.progress)))
        logits = logits.squeeze(1)
        accuracy = ((logits > 0).float() == domains).float().mean()
        self.last_metrics = {"domain_accuracy": float(accuracy)}
        return self.weight * nn.functional.binary_cross_entropy_with_logits(logits, domains)


@register_objective
@dataclasses.dataclass
class DANN(ObjectiveConfig):
    name = "dann"
    description = "domain-adversarial: a domain classifier on gradient-reversed features"
    needs_unlabeled_target = True
    hidden_size: int = setting(256, "hidden units of the domain classifier")

    def build(self, model: Classifier) -> Objective:
        return DomainAdversarialObjective(model.head.in_features, self.hidden_size, self.weight)
