"""Uncertainty weighting of the losses of several tasks.

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018. Objective: ``sum_t exp(-s_t) L_t + s_t`` with a learned
log-variance ``s_t`` per task. Minimising over ``s_t`` gives ``exp(-s_t) = 1 / L_t``: a task whose
loss stays high (noisier labels, a harder task) is weighed down, and the ``+ s_t`` term keeps
every weight from falling to 0.

Not an auxiliary objective of the registry: it is how a multi-head model
(:class:`shoptransfer.heads.MultiHead`) combines the losses of its heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    """``sum_t exp(-s_t) L_t + s_t`` over the tasks whose losses are given.

    One scalar parameter per task, so that a task without labels in a stage gets no gradient
    (and its ``s_t`` no update) there.
    """

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.log_variance = nn.ParameterList(
            [nn.Parameter(torch.zeros(())) for _ in range(n_tasks)]
        )

    def forward(self, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        """The weighted sum of ``losses[i]``, the loss of task ``tasks[i]``."""
        s = torch.stack([self.log_variance[t] for t in tasks])
        return (torch.exp(-s) * losses + s).sum()

    def weights(self) -> torch.Tensor:
        """Each task's current weight ``exp(-s_t)``."""
        return torch.exp(-torch.stack(list(self.log_variance))).detach()
