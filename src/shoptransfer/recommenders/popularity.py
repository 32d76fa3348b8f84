"""A scratch baseline without a training loop: the items most often in the target's training
histories, the same for every history."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import save_file

from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.errors import DataError
from shoptransfer.metering import StageCache
from shoptransfer.recipes.base import register_model, register_recipe
from shoptransfer.recommenders.base import (
    ItemRanker,
    RecommendationRecipe,
    interaction_counts,
)
from shoptransfer.runs import read_weights


@register_model
class PopularityRanker(ItemRanker):
    kind = "popularity"

    def __init__(self, counts: np.ndarray) -> None:
        self.n_items = len(counts) - 1
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        return self.counts.expand(len(histories), -1)

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        save_file({"counts": self.counts}, str(folder / "ranker.safetensors"))
        return {}

    @classmethod
    def load(  # type: ignore[override]
        cls, folder: Path, metadata: dict[str, Any], domain: Any = None, cache: Any = None
    ) -> ItemRanker:
        path = folder / "ranker.safetensors"
        counts = read_weights(path, ["counts"])["counts"]
        if counts.shape != (metadata["n_items"] + 1,):
            raise DataError(
                f"{path}: {tuple(counts.shape)} counts for {metadata['n_items']} items; "
                "the file is damaged"
            )
        return cls(counts.numpy())


@register_recipe
@dataclasses.dataclass
class Popularity(RecommendationRecipe):
    name: ClassVar[str] = "popularity"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "the items most often in the target's training histories"

    def _fit(
        self, domain: InteractionDomain, source: Any, cache: Any, stages: StageCache | None
    ) -> ItemRanker:
        return PopularityRanker(interaction_counts(domain))
