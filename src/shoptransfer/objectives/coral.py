"""CORAL: align second-order statistics of source and target features.

Deep CORAL (Sun & Saenko, ECCV-W 2016): minimise ``||C_s - C_t||_F^2 / (4 d^2)``, the distance
between the feature covariances of a source and a target batch, beside the task loss.
Closed-form CORAL (Sun, Feng & Saenko, AAAI 2016): whiten the source features with their own
covariance and re-colour them with the target's, ``X_s C_s^{-1/2} C_t^{1/2}``, then train a
classifier on them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from shoptransfer.objectives.base import ObjectiveConfig, register_objective
from shoptransfer.training import Classifier, Objective, Step


def covariance(features: torch.Tensor) -> torch.Tensor:
    centred = features - features.mean(dim=0, keepdim=True)
    return centred.T @ centred / max(1, features.shape[0] - 1)


class CoralLoss(nn.Module):
    """``||cov(source) - cov(target)||_F^2 / (4 d^2)`` for two batches of d-dim features."""

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = source.shape[1]
        return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


class CoralObjective(Objective):
    """``weight`` x CORAL loss between the source batch's and the target batch's features."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.loss = CoralLoss()

    def forward(self, step: Step) -> torch.Tensor:
        assert step.target_features is not None
        return self.weight * self.loss(step.source_features, step.target_features)


@register_objective
@dataclasses.dataclass
class Coral(ObjectiveConfig):
    name = "coral"
    description = "Deep CORAL: match feature covariances of source and unlabeled target batches"
    needs_unlabeled_target = True

    def build(self, model: Classifier) -> Objective:
        return CoralObjective(self.weight)


def _matrix_power(matrix: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.clip(values, 1e-12, None) ** power) @ vectors.T


def coral_transform(source: np.ndarray, target: np.ndarray, eps: float = 1.0) -> np.ndarray:
    """Source features re-coloured with the target covariance (each covariance + ``eps`` I)."""
    identity = np.eye(source.shape[1])
    source_cov = np.cov(source, rowvar=False) + eps * identity
    target_cov = np.cov(target, rowvar=False) + eps * identity
    centred = source - source.mean(axis=0)
    recoloured = centred @ _matrix_power(source_cov, -0.5) @ _matrix_power(target_cov, 0.5)
    return (recoloured + target.mean(axis=0)).astype(np.float32)
