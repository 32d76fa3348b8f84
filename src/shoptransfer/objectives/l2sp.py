"""L2-SP: regularise fine-tuning toward the pretrained weights instead of toward zero.

Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks", ICML 2018: add ``alpha/2 ||w_S - w_S^0||^2 + beta/2 ||w_new||^2`` to the loss, where
``w_S`` are the weights shared with the pretrained model (starting point ``w_S^0``) and
``w_new`` the new head.
"""

from __future__ import annotations

import dataclasses

import torch

from shoptransfer.objectives.base import ObjectiveConfig, register_objective, setting
from shoptransfer.training import Classifier, Objective, Step


class L2SPObjective(Objective):
    """The L2-SP penalty for ``model``: its encoder is pulled back to its weights at creation."""

    def __init__(self, model: Classifier, alpha: float = 0.01, beta: float = 0.01) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        assert model.encoder is not None
        self._start = {
            name: p.detach().clone()
            for name, p in model.encoder.named_parameters()
            if p.requires_grad
        }

    def forward(self, step: Step) -> torch.Tensor:
        encoder = step.model.encoder
        assert encoder is not None
        shared = sum(
            (
                (p - self._start[name]).pow(2).sum()
                for name, p in encoder.named_parameters()
                if name in self._start
            ),
            torch.zeros(()),
        )
        new = sum((p.pow(2).sum() for p in step.model.head.parameters()), torch.zeros(()))
        return 0.5 * self.alpha * shared + 0.5 * self.beta * new


@register_objective
@dataclasses.dataclass
class L2SP(ObjectiveConfig):
    name = "l2-sp"
    description = "L2-SP: pull the encoder toward its pretrained weights (and the head to 0)"
    stages = ("source", "target", "self-training")
    weight: float = setting(0.01, "alpha: weight of the distance to the pretrained weights")
    head_weight: float = setting(0.01, "beta: weight of the L2 norm of the new head")

    def build(self, model: Classifier) -> Objective:
        return L2SPObjective(model, self.weight, self.head_weight)
