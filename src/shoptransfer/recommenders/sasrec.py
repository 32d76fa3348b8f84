"""SASRec (Kang & McAuley, ICDM 2018): a scratch baseline on item ids.

Item-id embeddings plus learned positions, causal self-attention blocks, the last position's
vector; an item's score is its dot product with that vector (the item embeddings are shared
with the input). Trained with cross-entropy over the catalogue on every prefix of the target's
training histories, early-stopped on validation NDCG@10.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.errors import DataError
from shoptransfer.metering import StageCache
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.base import ItemRanker, next_item_examples
from shoptransfer.recommenders.layers import IdItemVectors, SequenceEncoder
from shoptransfer.recommenders.neural import (
    NeuralRanker,
    NeuralRecommender,
    ranking_model,
    validation_ndcg,
)
from shoptransfer.training import Classifier, Examples, Trainer


@register_recipe
@dataclasses.dataclass
class SASRec(NeuralRecommender):
    name: ClassVar[str] = "sasrec"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "SASRec on item ids, trained on the target only"

    # the training settings of benchmarks/scientific.py (NEURAL, development run sasrec-b256:
    # stopped early after 23 epochs on Amazon Scientific's 8,442 users)
    epochs: int = option(
        100,
        "most epochs; early stopping on validation NDCG@10 usually ends sooner (23 epochs "
        "on Amazon Scientific, benchmarks/scientific.py)",
    )
    patience: int = option(
        5, "epochs without validation improvement before stopping (5, as benchmarks/scientific.py)"
    )
    batch_size: int = option(
        256,
        "examples per step (256, as benchmarks/scientific.py trains it)",
    )
    layers: int = option(2, "self-attention blocks")
    heads: int = option(2, "attention heads")
    inner: int = option(256, "feed-forward size")
    dropout: float = option(0.5, "dropout of embeddings, attention and feed-forward")
    max_history: int = option(50, "most recent items of a history the model reads")

    def _encoder(self, items: nn.Module) -> SequenceEncoder:
        return SequenceEncoder(
            items,
            self.hidden,
            self.layers,
            self.heads,
            self.inner,
            self.dropout,
            self.max_history,
        )

    def _train(
        self,
        model: Classifier,
        domain: InteractionDomain,
        description: str,
        epochs: int | None,
        per_user: int | None = None,
    ) -> list[dict[str, float]]:
        histories, targets = next_item_examples(domain.train, self.max_history, per_user)
        if not len(targets):
            raise DataError(
                f"{domain.source or domain.name}: no history has two items to learn from"
            )
        return Trainer(self._settings(description, epochs)).fit(
            model, Examples(histories, targets), validation_score=validation_ndcg(domain)
        )

    def _fit(
        self, domain: InteractionDomain, source: Any, cache: Any, stages: StageCache | None
    ) -> ItemRanker:
        torch.manual_seed(self.seed)
        model = self.build(domain)
        self.history_ = self._train(model, domain, "sasrec", None)
        return NeuralRanker(model, self._spec())

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        items = IdItemVectors(domain.n_items, self.hidden)
        return ranking_model(self._encoder(items), items, domain.n_items, self.hidden)
