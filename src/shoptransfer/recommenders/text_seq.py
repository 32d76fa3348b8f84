"""Text-based transferable sequential recommender (after UniSRec, Hou et al., KDD 2022).

An item enters as the frozen text backbone's embedding of its text, passed through a trainable
adaptor (parametric whitening ``(x - b) W`` in each of several experts, mixed by a softmax
gate), optionally plus an item-id embedding (transductive). The sequence encoder is SASRec's;
scores are cosine similarities over a temperature. Because items of any domain enter through
their text, the adaptor and the sequence encoder pre-trained on a source domain carry over to
the target.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.checkpoints import keeping_random_states, stage_checkpoints
from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.metering import StageCache, measure, training_clock
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.base import ItemRanker
from shoptransfer.recommenders.layers import IdItemVectors, SequenceEncoder, item_text_embeddings
from shoptransfer.recommenders.neural import NeuralRanker, ranking_model
from shoptransfer.recommenders.sasrec import SASRec
from shoptransfer.training import Classifier

TABLE_CHUNK = 65_536  # items adapted at once outside training


class TextItemVectors(nn.Module):
    """Frozen text embeddings through a mixture of whitening experts (+ item ids)."""

    def __init__(
        self,
        text: torch.Tensor,
        hidden: int,
        experts: int = 8,
        dropout: float = 0.2,
        id_embeddings: bool = False,
    ) -> None:
        super().__init__()
        size = text.shape[1]
        self.register_buffer("text", text, persistent=False)  # rebuilt from the item text
        self.bias = nn.Parameter(torch.zeros(experts, size))
        self.weight = nn.Parameter(torch.randn(experts, size, hidden) * 0.02)
        self.gate = nn.Linear(size, experts, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.ids = IdItemVectors(text.shape[0] - 1, hidden) if id_embeddings else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table()[ids]

    def table(self) -> torch.Tensor:
        """Every item's vector (row 0 pads): the catalogue is small next to a batch of
        histories, so it is adapted once per call and indexed.

        Expert e maps ``(x - b_e) W_e``, computed as ``x W_e - b_e W_e``: one matrix product
        for all experts instead of a centred copy of the text per expert. Outside training
        the items go :data:`TABLE_CHUNK` at a time, so that the experts' intermediate
        vectors stay small beside the table whatever the catalogue's size.
        """
        if self.training or len(self.text) <= TABLE_CHUNK:
            vectors = self._adapted(self.text)
        else:
            vectors = torch.cat(
                [
                    self._adapted(self.text[start : start + TABLE_CHUNK])
                    for start in range(0, len(self.text), TABLE_CHUNK)
                ]
            )
        if self.ids is not None:
            vectors = vectors + self.ids.table()
        return vectors

    def _adapted(self, text: torch.Tensor) -> torch.Tensor:
        experts_n, size, hidden = self.weight.shape
        weights = self.weight.permute(1, 0, 2).reshape(size, experts_n * hidden)
        mapped = (self.dropout(text) @ weights).view(-1, experts_n, hidden)
        experts = mapped - torch.einsum("es,esh->eh", self.bias, self.weight)
        gate = torch.softmax(self.gate(text), dim=-1).unsqueeze(-1)
        return (gate * experts).sum(dim=1)


TRAINABLE = ("all", "adaptor")
# options that only change the target stage: pre-trainings that differ only in them are shared
TARGET_ONLY = {"trainable", "id_embeddings", "epochs", "patience"}


@dataclasses.dataclass
class TextSequential(SASRec):
    """Items by their text: pre-train on the source's histories, then train on the target."""

    name: ClassVar[str] = "text-seq"
    family: ClassVar[str] = "model-based"
    description: ClassVar[str] = (
        "items as adapted text embeddings; pre-trained on the source, fine-tuned on the target"
    )
    uses_source: ClassVar[bool] = True

    # benchmarks/scientific.py's TEXT and PRETRAIN settings (development run ids-hidden128)
    hidden: int = option(
        128,
        "size of item and history vectors (128: valid Recall@10 0.1498 against 0.1434 at 64 "
        "on Amazon Scientific, benchmarks/scientific.py)",
    )
    backbone: str = option("minilm-l6", "text backbone that embeds item text (frozen)")
    text_max_length: int = option(64, "tokens of item text the backbone reads")
    experts: int = option(8, "whitening experts in the item adaptor")
    adaptor_dropout: float = option(0.2, "dropout on text embeddings in the adaptor")
    temperature: float = option(0.07, "softmax temperature of cosine scores")
    id_embeddings: bool = option(False, "add item-id embeddings (transductive; not cold-start)")
    pretrain: bool = option(True, "pre-train on the source domain's histories first")
    source_epochs: int = option(
        10,
        "most pre-training epochs (early stopping on source valid; 10, as "
        "benchmarks/scientific.py)",
    )
    source_prefixes: int = option(
        20,
        "latest training prefixes per source user in pre-training (0: all; 20, as "
        "benchmarks/scientific.py)",
    )
    trainable: str = option(
        "all", f"what trains on the target: {list(TRAINABLE)} (adaptor: encoder frozen)"
    )

    def validate(self, source: Any) -> None:
        if self.trainable not in TRAINABLE:
            raise ConfigError(
                f"recipe '{self.name}': trainable '{self.trainable}'; expected one of "
                f"{list(TRAINABLE)}"
            )
        if self.trainable == "adaptor" and not self.pretrain:
            raise ConfigError(
                f"recipe '{self.name}': trainable 'adaptor' keeps the sequence encoder as "
                "pre-trained; set pretrain: true"
            )

    def _text(self, domain: InteractionDomain, cache: EmbeddingCache | None) -> torch.Tensor:
        vectors = item_text_embeddings(
            self.backbone, self.text_max_length, domain.items, domain.item_text, cache
        )
        table = np.zeros((len(vectors) + 1, vectors.shape[1]), dtype=np.float32)
        table[1:] = vectors
        return torch.from_numpy(table)

    def _fit(
        self, domain: InteractionDomain, source: Any, cache: Any, stages: StageCache | None
    ) -> ItemRanker:
        if self.pretrain and not isinstance(source, InteractionDomain):
            raise DataError(f"recipe '{self.name}' pre-trains on a source interaction domain")
        torch.manual_seed(self.seed)
        self.history_: list[dict[str, float]] = []
        first = source if self.pretrain else domain
        items = TextItemVectors(
            self._text(first, cache), self.hidden, self.experts, self.adaptor_dropout
        )
        encoder = self._encoder(items)
        if self.pretrain:
            self._pretrain(encoder, items, source, stages)
        model = self.build(domain, cache)
        if self.pretrain:  # the adaptor and the encoder carry over; the catalogue changes
            pretrained = {
                k: v for k, v in encoder.state_dict().items() if not k.startswith("items.ids")
            }
            model.encoder.load_state_dict(pretrained, strict=False)
        if self.trainable == "adaptor":
            for name, parameter in model.encoder.named_parameters():
                parameter.requires_grad_(name.startswith("items."))
        self.history_ += self._train(model, domain, f"{self.name} on target", None)
        return NeuralRanker(model, self._spec())

    def _pretrain(
        self,
        encoder: SequenceEncoder,
        items: TextItemVectors,
        source: InteractionDomain,
        stages: StageCache | None,
    ) -> None:
        """Train ``encoder`` on the source's histories, or load the state that an identical
        pre-training (same source, seed and settings) left in ``stages``.

        Variants that differ only in what they do on the target share one pre-training
        through the run's stage cache; reusing it charges its training time and FLOPs to the
        fit that reuses it.
        """
        settings = {k: getattr(self, k) for k in self.options() if k not in TARGET_ONLY}
        key = ("text-seq source stage", source.data_hash(), json.dumps(settings, sort_keys=True))
        kept = stages.get(key) if stages is not None else None
        if kept is not None:
            state, history = kept
            encoder.load_state_dict(state)
            self.history_ += history
            return
        model = ranking_model(encoder, items, source.n_items, self.hidden, self.temperature)
        shared = stages is not None  # trained apart, as in transfer's source stage
        with (
            stage_checkpoints(key) if shared else nullcontext(),
            keeping_random_states() if shared else nullcontext(),
            training_clock() as clock,
            measure() as meter,
        ):
            history = self._train(
                model,
                source,
                f"{self.name} on source",
                self.source_epochs,
                self.source_prefixes or None,
            )
        self.history_ += history
        if stages is not None:
            state = {k: v.clone() for k, v in encoder.state_dict().items()}
            stages.put(key, (state, history), clock.seconds, meter.flops, clock.curve)

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        items = TextItemVectors(
            self._text(domain, cache),
            self.hidden,
            self.experts,
            self.adaptor_dropout,
            self.id_embeddings,
        )
        return ranking_model(
            self._encoder(items), items, domain.n_items, self.hidden, self.temperature
        )


def preset(name: str, family: str, description: str, **defaults: Any) -> None:
    fields = {f.name: f for f in dataclasses.fields(TextSequential) if f.init}
    new_fields = [
        (key, fields[key].type, dataclasses.field(default=value, metadata=fields[key].metadata))
        for key, value in defaults.items()
    ]
    cls = dataclasses.make_dataclass(
        "".join(part.title() for part in name.split("-")),
        new_fields,
        bases=(TextSequential,),
        namespace={"name": name, "family": family, "description": description},
    )
    cls.__module__ = __name__
    register_recipe(cls)


register_recipe(TextSequential)
preset(
    "text-seq-ids",
    "model-based",
    "text-seq plus item-id embeddings (transductive: items must be seen in training)",
    id_embeddings=True,
)
preset(
    "text-seq-adaptor",
    "network-based",
    "pre-trained sequence encoder frozen; only the item adaptor trains on the target",
    trainable="adaptor",
)
preset(
    "text-seq-scratch",
    "feature-based",
    "frozen text features + adaptor and encoder trained on the target only (no source)",
    pretrain=False,
)
