"""BPR matrix factorisation (Rendle et al., UAI 2009): a scratch baseline.

User and item vectors; the pairwise loss ``-log sigmoid(s(u, i) - s(u, j))`` pushes an item
``i`` the user has above a uniformly drawn item ``j``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.metering import StageCache
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.base import ItemRanker, sequence_items
from shoptransfer.recommenders.layers import IdItemVectors
from shoptransfer.recommenders.neural import (
    NeuralRanker,
    NeuralRecommender,
    ranking_model,
    validation_ndcg,
)
from shoptransfer.training import Classifier, Examples, Trainer


class UserVectors(nn.Module):
    """Matrix factorisation's encoder: a user's vector (the user index is the input)."""

    def __init__(self, n_users: int, n_items: int, hidden: int) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, hidden)
        nn.init.normal_(self.users.weight, std=0.02)
        self.items = IdItemVectors(n_items, hidden)

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.users(batch["ids"][:, 0])


@register_recipe
@dataclasses.dataclass
class BPR(NeuralRecommender):
    name: ClassVar[str] = "bpr"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "BPR matrix factorisation on the target's training histories"

    batch_size: int = option(4096, "examples per step")
    weight_decay: float = option(1e-4, "AdamW (decoupled) weight decay")

    def _fit(
        self, domain: InteractionDomain, source: Any, cache: Any, stages: StageCache | None
    ) -> ItemRanker:
        torch.manual_seed(self.seed)
        users, items = sequence_items(domain.train)
        model = self.build(domain)
        self.history_ = Trainer(self._settings("bpr", loss="bpr")).fit(
            model,
            Examples(users[:, None], items),
            validation_score=validation_ndcg(domain, by_user=True),
        )
        return NeuralRanker(model, self._spec(), by_user=True)

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        encoder = UserVectors(len(domain.users), domain.n_items, self.hidden)
        return ranking_model(encoder, encoder.items, domain.n_items, self.hidden)
