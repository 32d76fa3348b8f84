"""A loss-threshold membership-inference attack: the audit of what a model remembers.

Yeom et al. (CSF 2018): an example the model trained on tends to have a lower loss than one it
never saw, so "member if the loss is below t" is an attack. Its AUC over every threshold ``t``
on a set of training examples (members) and held-out examples from the same distribution is
0.5 when the losses tell the two apart no better than chance; differentially private training
bounds how far above 0.5 it can go.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata


def example_losses(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each example's cross-entropy: ``-log p(true class)`` (probabilities floored at 1e-12)."""
    rows = np.arange(len(labels))
    return -np.log(np.clip(probabilities[rows, labels], 1e-12, 1.0))


def membership_auc(member_losses: np.ndarray, held_out_losses: np.ndarray) -> float:
    """The attack's AUC: the chance that a random member has a lower loss than a random
    held-out example, ties counted half (the Mann-Whitney statistic)."""
    members = np.asarray(member_losses, dtype=np.float64)
    held_out = np.asarray(held_out_losses, dtype=np.float64)
    if len(members) == 0 or len(held_out) == 0:
        raise ValueError("the audit needs members and held-out examples")
    ranks = rankdata(np.concatenate([-members, -held_out]))  # high rank: low loss
    member_rank_sum = ranks[: len(members)].sum()
    u = member_rank_sum - len(members) * (len(members) + 1) / 2
    return float(u / (len(members) * len(held_out)))


def membership_audit(
    member_probabilities: np.ndarray,
    member_labels: np.ndarray,
    held_out_probabilities: np.ndarray,
    held_out_labels: np.ndarray,
) -> dict[str, Any]:
    """The attack on a model's class probabilities for its training examples and for held-out
    ones: the AUC, the best threshold's advantage (true- minus false-positive rate) and the
    mean losses."""
    members = example_losses(member_probabilities, member_labels)
    held_out = example_losses(held_out_probabilities, held_out_labels)
    thresholds = np.unique(np.concatenate([members, held_out]))
    advantage = max(float(np.mean(members <= t) - np.mean(held_out <= t)) for t in thresholds)
    return {
        "auc": membership_auc(members, held_out),
        "advantage": advantage,
        "members": len(members),
        "held_out": len(held_out),
        "member_loss": float(members.mean()),
        "held_out_loss": float(held_out.mean()),
    }
