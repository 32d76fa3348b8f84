"""What the neural recommenders share: the trained network as a ranker (saved-model kind
``neural``), the recipe base with the trainer's settings, and validation by NDCG@10.

Next-item prediction is classification over the catalogue: the encoder reads a history (or a
user), the head scores every item, and the one :class:`~shoptransfer.training.Trainer` trains
it with cross-entropy (BPR's pairwise loss for matrix factorisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.evaluation.ranking import DotProductScorer, evaluate_ranking
from shoptransfer.recipes.base import make_recipe, option, register_model
from shoptransfer.recommenders.base import (
    ItemRanker,
    RecommendationRecipe,
    padded_histories,
)
from shoptransfer.recommenders.layers import ItemScores
from shoptransfer.runs import read_weights
from shoptransfer.training import Classifier, TrainingSettings


def ranking_model(
    encoder: nn.Module, items: nn.Module, n_items: int, hidden: int, temperature: float = 0.0
) -> Classifier:
    """``encoder`` with a head scoring all ``n_items`` against the item vectors ``items``."""
    model = Classifier(n_items + 1, hidden, encoder)
    model.head = ItemScores(items, n_items, temperature)
    return model


@register_model
class NeuralRanker(ItemRanker):
    """A trained sequence (or user) model as an :class:`ItemRanker`.

    ``recipe`` names the recipe and options that rebuild the network for loading.
    """

    kind = "neural-ranker"
    metadata_types: ClassVar[dict[str, Any]] = {
        "n_items": int,
        "recipe": dict[str, Any],
        "by_user": bool,
    }
    explanation = "cosine similarity of the model's item vectors"

    def __init__(
        self, model: Classifier, recipe: dict[str, Any] | None = None, by_user: bool = False
    ) -> None:
        self.model = model.eval()
        self.n_items = model.head.out_features - 1
        self.by_user = by_user
        self.recipe = recipe or {}

    @torch.no_grad()
    def contributions(self, history: np.ndarray, item: int) -> np.ndarray:
        self.model.eval()
        table = nn.functional.normalize(self.model.head.items.table(), dim=-1)
        return (table[torch.from_numpy(np.asarray(history))] @ table[item]).numpy()

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "ranker.safetensors"))
        return {"recipe": self.recipe, "by_user": self.by_user}

    @classmethod
    def load(  # type: ignore[override]
        cls, folder: Path, metadata: dict[str, Any], domain: Any = None, cache: Any = None
    ) -> ItemRanker:
        spec = metadata["recipe"]
        recipe = make_recipe(spec["name"], **spec["options"])
        model = recipe.build(domain, cache)
        model.load_state_dict(read_weights(folder / "ranker.safetensors"))
        return cls(model, spec, metadata["by_user"])

    @torch.no_grad()
    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        self.model.eval()
        return self.model({"ids": self._ids(histories, users)})

    @torch.no_grad()
    def dot_product(self) -> DotProductScorer:
        """The model as query and item vectors (items computed once): the same order of
        items as :meth:`scores`, for chunked evaluation and a nearest-neighbour index."""
        self.model.eval()
        head = self.model.head

        def queries(histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
            with torch.no_grad():
                features = self.model.features({"ids": self._ids(histories, users)})
                return head.query_vectors(features)

        scale = 1 / head.temperature if head.temperature > 0 else 1.0
        return DotProductScorer(queries, head.item_vectors().detach(), scale)

    def _ids(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        if self.by_user:
            return torch.from_numpy(np.asarray(users, dtype=np.int64)[:, None])
        return torch.from_numpy(padded_histories(histories, self.model.encoder.max_history))

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def validation_ndcg(
    domain: InteractionDomain, by_user: bool = False
) -> Callable[[Classifier], float]:
    """The trainer's ``validation_score``: NDCG@10 on ``domain``'s validation cases."""

    def score(model: Classifier) -> float:
        ranker = NeuralRanker(model, by_user=by_user)
        value = evaluate_ranking(ranker.scores, domain.valid, ks=(10,))["ndcg@10"]
        model.train()
        return value

    return score


@dataclasses.dataclass
class NeuralRecommender(RecommendationRecipe):
    """A recommender trained by the one trainer; :meth:`build` makes its untrained network."""

    hidden: int = option(64, "size of item and history vectors")
    epochs: int = option(50, "most epochs (early stopping on validation NDCG@10)")
    patience: int = option(5, "epochs without validation improvement before stopping")
    batch_size: int = option(2048, "examples per step")
    learning_rate: float = option(1e-3, "Adam learning rate")
    weight_decay: float = option(0.0, "AdamW (decoupled) weight decay")
    micro_batch_size: int = option(
        256,
        "examples through the model at once, their gradients summed into one step of "
        "batch_size (0: the whole batch); bounds training memory: SASRec with batches of "
        "2,048 on Amazon Scientific peaked at 882 MB with 256, 2.7 GB without "
        "(benchmarks/scientific.py --speed)",
        minimum=0,
    )

    def _spec(self) -> dict[str, Any]:
        return {"name": self.name, "options": {k: getattr(self, k) for k in self.options()}}

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        """The untrained network for ``domain``'s catalogue."""
        raise NotImplementedError

    def _settings(self, description: str, epochs: int | None = None, **extra: Any) -> Any:
        return TrainingSettings(
            epochs=epochs or self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            seed=self.seed,
            warmup_fraction=0.0,
            description=description,
            log_epochs=True,
            micro_batch_size=self.micro_batch_size,
            **extra,
        )
