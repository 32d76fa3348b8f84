"""Learning-rate schedules shared by the trainer and the language-model step."""

from __future__ import annotations

import torch


def warmup_then_linear_decay(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Scale each group's learning rate up linearly over the first ``warmup_fraction`` of
    ``total_steps``, then down linearly to zero at the last step."""
    total = max(1, total_steps)
    warmup = int(total * warmup_fraction)

    def scale(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
