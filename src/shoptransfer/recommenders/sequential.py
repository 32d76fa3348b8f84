"""Neural next-item recommenders, trained by the one :class:`~shoptransfer.training.Trainer`.

Next-item prediction is classification over the catalogue: the encoder reads a history, the
head scores every item, the loss is cross-entropy (BPR for matrix factorisation).

- SASRec (Kang & McAuley, ICDM 2018): item-id embeddings plus learned positions, causal
  self-attention blocks, the last position's vector; an item's score is its dot product with
  that vector (the item embeddings are shared with the input).
- Text-based transferable sequential recommender (after UniSRec, Hou et al., KDD 2022): an item
  enters as the frozen text backbone's embedding of its text, passed through a trainable
  adaptor (parametric whitening ``(x - b) W`` in each of several experts, mixed by a softmax
  gate), optionally plus an item-id embedding (transductive). Scores are cosine similarities
  over a temperature. Because items of any domain enter through their text, the adaptor and
  the sequence encoder pre-trained on a source domain carry over to the target.
- BPR matrix factorisation (Rendle et al., UAI 2009): user and item vectors, pairwise loss
  ``-log sigmoid(s(u, i) - s(u, j))`` against a uniformly drawn item ``j``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.interactions import InteractionDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.ranking import evaluate_ranking
from shoptransfer.recipes.base import option, register_recipe
from shoptransfer.recommenders.base import (
    ItemRanker,
    RecommendationRecipe,
    next_item_examples,
    padded_histories,
    register_ranker,
)
from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings

# -- item representations ---------------------------------------------------------------------


class IdItemVectors(nn.Module):
    """One learned vector per item id (0 pads)."""

    def __init__(self, n_items: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)

    def table(self) -> torch.Tensor:
        return self.embedding.weight


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
        for all experts instead of a centred copy of the text per expert.
        """
        experts_n, size, hidden = self.weight.shape
        weights = self.weight.permute(1, 0, 2).reshape(size, experts_n * hidden)
        mapped = (self.dropout(self.text) @ weights).view(-1, experts_n, hidden)
        experts = mapped - torch.einsum("es,esh->eh", self.bias, self.weight)
        gate = torch.softmax(self.gate(self.text), dim=-1).unsqueeze(-1)
        vectors = (gate * experts).sum(dim=1)
        if self.ids is not None:
            vectors = vectors + self.ids.table()
        return vectors


# -- the sequence encoder and the item head -----------------------------------------------------


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention and a feed-forward layer, each with residual and LayerNorm."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, hidden)
        )
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, hidden = x.shape
        q, k, v = (
            t.view(b, length, self.heads, hidden // self.heads).transpose(1, 2)
            for t in self.qkv(x).chunk(3, dim=-1)
        )
        attention = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout.p if self.training else 0.0
        )
        attention = attention.transpose(1, 2).reshape(b, length, hidden)
        x = self.norm1(x + self.dropout(self.out(attention)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class SequenceEncoder(nn.Module):
    """SASRec's encoder: a left-padded history to the vector at its last position."""

    def __init__(
        self,
        items: nn.Module,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        inner: int = 256,
        dropout: float = 0.5,
        max_history: int = 50,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"hidden size {hidden} must be a multiple of heads {heads}")
        self.items = items
        self.max_history = max_history
        self.positions = nn.Embedding(max_history, hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(hidden, heads, inner, dropout) for _ in range(layers)
        )

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        ids = batch["ids"][:, -self.max_history :]
        used = torch.nonzero(ids.ne(0).any(dim=0))
        ids = ids[:, int(used[0]) :] if len(used) else ids[:, -1:]  # drop all-padding columns
        length = ids.shape[1]
        positions = torch.arange(self.max_history - length, self.max_history)
        x = self.dropout(self.norm(self.items(ids) + self.positions(positions)))
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        diagonal = torch.eye(length, dtype=torch.bool)
        # attend to earlier real items; a padding position attends to itself only
        allowed = (causal & ids.ne(0)[:, None, :]) | diagonal
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed)
        return x[:, -1]


class ItemScores(nn.Module):
    """Scores of every item: dot product (or cosine / temperature) with the items' vectors.

    The item vectors belong to the encoder; the head only reads them.
    """

    def __init__(self, items: nn.Module, n_items: int, temperature: float = 0.0) -> None:
        super().__init__()
        self._items = [items]  # not a submodule: its parameters train with the encoder
        self.out_features = n_items + 1
        self.temperature = temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        table = self._items[0].table()
        if self.temperature > 0:
            features = nn.functional.normalize(features, dim=-1)
            table = nn.functional.normalize(table, dim=-1)
        logits = features @ table.T
        if self.temperature > 0:
            logits = logits / self.temperature
        return logits.masked_fill(torch.arange(logits.shape[1]) == 0, -1e4)


class UserVectors(nn.Module):
    """Matrix factorisation's encoder: a user's vector (the user index is the input)."""

    def __init__(self, n_users: int, n_items: int, hidden: int) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, hidden)
        nn.init.normal_(self.users.weight, std=0.02)
        self.items = IdItemVectors(n_items, hidden)

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.users(batch["ids"][:, 0])


@register_ranker
class NeuralRanker(ItemRanker):
    """A trained sequence (or user) model as an :class:`ItemRanker`.

    ``recipe`` names the recipe and options that rebuild the network for loading.
    """

    kind = "neural"
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
        table = nn.functional.normalize(self.model.head._items[0].table(), dim=-1)
        return (table[torch.from_numpy(np.asarray(history))] @ table[item]).numpy()

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "ranker.safetensors"))
        return {"recipe": self.recipe, "by_user": self.by_user}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], domain: Any, cache: Any) -> ItemRanker:
        from shoptransfer.recipes import make_recipe

        spec = metadata["recipe"]
        recipe = make_recipe(spec["name"], **spec["options"])
        model = recipe.build(domain, cache)
        model.load_state_dict(load_file(str(folder / "ranker.safetensors")))
        return cls(model, spec, metadata["by_user"])

    @torch.no_grad()
    def scores(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        self.model.eval()
        if self.by_user:
            ids = torch.from_numpy(np.asarray(users, dtype=np.int64)[:, None])
        else:
            encoder = self.model.encoder
            ids = torch.from_numpy(padded_histories(histories, encoder.max_history))
        return self.model({"ids": ids})

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


# -- recipes ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _NeuralRecommender(RecommendationRecipe):
    hidden: int = option(64, "size of item and history vectors")
    epochs: int = option(50, "most epochs (early stopping on validation NDCG@10)")
    patience: int = option(5, "epochs without validation improvement before stopping")
    batch_size: int = option(2048, "examples per step")
    learning_rate: float = option(1e-3, "Adam learning rate")
    weight_decay: float = option(0.0, "AdamW (decoupled) weight decay")

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
            **extra,
        )


def _validation(domain: InteractionDomain, by_user: bool = False) -> Any:
    def score(model: Classifier) -> float:
        ranker = NeuralRanker(model, by_user=by_user)
        value = evaluate_ranking(ranker.scores, domain.valid, ks=(10,))["ndcg@10"]
        model.train()
        return value

    return score


@register_recipe
@dataclasses.dataclass
class BPR(_NeuralRecommender):
    name: ClassVar[str] = "bpr"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "BPR matrix factorisation on the target's training histories"

    batch_size: int = option(4096, "examples per step")
    weight_decay: float = option(1e-4, "AdamW (decoupled) weight decay")

    def fit(
        self,
        source: InteractionDomain | None,
        target: InteractionDomain | None = None,
        cache: Any = None,
        unlabeled: Any = None,
    ) -> ItemRanker:
        domain = self._target(source, target)
        torch.manual_seed(self.seed)
        users = np.repeat(np.arange(len(domain.train)), [len(s) for s in domain.train])
        items = np.concatenate([s for s in domain.train if len(s)])
        model = self.build(domain)
        self.history_ = Trainer(self._settings("bpr", loss="bpr")).fit(
            model,
            Examples(users[:, None].astype(np.int64), items),
            validation_score=_validation(domain, by_user=True),
        )
        return NeuralRanker(model, self._spec(), by_user=True)

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        encoder = UserVectors(len(domain.users), domain.n_items, self.hidden)
        model = Classifier(domain.n_items + 1, self.hidden, encoder)
        model.head = ItemScores(encoder.items, domain.n_items)
        return model


@register_recipe
@dataclasses.dataclass
class SASRec(_NeuralRecommender):
    name: ClassVar[str] = "sasrec"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = "SASRec on item ids, trained on the target only"

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
            model, Examples(histories, targets), validation_score=_validation(domain)
        )

    def fit(
        self,
        source: InteractionDomain | None,
        target: InteractionDomain | None = None,
        cache: Any = None,
        unlabeled: Any = None,
    ) -> ItemRanker:
        domain = self._target(source, target)
        torch.manual_seed(self.seed)
        model = self.build(domain)
        self.history_ = self._train(model, domain, "sasrec", None)
        return NeuralRanker(model, self._spec())

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        items = IdItemVectors(domain.n_items, self.hidden)
        model = Classifier(domain.n_items + 1, self.hidden, self._encoder(items))
        model.head = ItemScores(items, domain.n_items)
        return model


TRAINABLE = ("all", "adaptor")
# options that only change the target stage: pre-trainings that differ only in them are shared
TARGET_ONLY = {"trainable", "id_embeddings", "epochs", "patience"}
_pretrained: dict[tuple[str, str], tuple[dict[str, torch.Tensor], list[Any], float]] = {}


@dataclasses.dataclass
class TextSequential(SASRec):
    """Items by their text: pre-train on the source's histories, then train on the target."""

    name: ClassVar[str] = "text-seq"
    family: ClassVar[str] = "model-based"
    description: ClassVar[str] = (
        "items as adapted text embeddings; pre-trained on the source, fine-tuned on the target"
    )
    uses_source: ClassVar[bool] = True

    backbone: str = option("minilm-l6", "text backbone that embeds item text (frozen)")
    text_max_length: int = option(64, "tokens of item text the backbone reads")
    experts: int = option(8, "whitening experts in the item adaptor")
    adaptor_dropout: float = option(0.2, "dropout on text embeddings in the adaptor")
    temperature: float = option(0.07, "softmax temperature of cosine scores")
    id_embeddings: bool = option(False, "add item-id embeddings (transductive; not cold-start)")
    pretrain: bool = option(True, "pre-train on the source domain's histories first")
    source_epochs: int = option(20, "most pre-training epochs (early stopping on source valid)")
    source_prefixes: int = option(
        0, "latest training prefixes per source user in pre-training (0: all)"
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
        encoder = TextEncoder(self.backbone, self.text_max_length)
        texts = [t if t else domain.items[i] for i, t in enumerate(domain.item_text)]
        vectors = cache.encode(encoder, texts) if cache is not None else encoder.encode(texts)
        table = np.zeros((len(texts) + 1, vectors.shape[1]), dtype=np.float32)
        table[1:] = vectors
        return torch.from_numpy(table)

    def fit(
        self,
        source: InteractionDomain | None,
        target: InteractionDomain | None = None,
        cache: Any = None,
        unlabeled: Any = None,
    ) -> ItemRanker:
        self.validate(source)
        domain = self._target(None, target if target is not None else source)
        if self.pretrain and not isinstance(source, InteractionDomain):
            raise DataError(f"recipe '{self.name}' pre-trains on a source interaction domain")
        torch.manual_seed(self.seed)
        self.history_: list[dict[str, float]] = []
        self.reused_seconds_ = 0.0
        first = source if self.pretrain else domain
        items = TextItemVectors(
            self._text(first, cache), self.hidden, self.experts, self.adaptor_dropout
        )
        encoder = self._encoder(items)
        if self.pretrain:
            assert isinstance(source, InteractionDomain)
            self._pretrain(encoder, items, source)
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
        self, encoder: SequenceEncoder, items: TextItemVectors, source: InteractionDomain
    ) -> None:
        """Train ``encoder`` on the source's histories, or load the state an identical
        pre-training (same source, seed and settings) left in this process.

        Variants that differ only in what they do on the target share one pre-training;
        ``reused_seconds_`` is its training time, to charge to each of them.
        """
        settings = {k: getattr(self, k) for k in self.options() if k not in TARGET_ONLY}
        key = (source.data_hash(), json.dumps(settings, sort_keys=True, default=str))
        if key in _pretrained:
            state, history, seconds = _pretrained[key]
            encoder.load_state_dict(state)
            self.history_ += history
            self.reused_seconds_ = seconds
            return
        model = Classifier(source.n_items + 1, self.hidden, encoder)
        model.head = ItemScores(items, source.n_items, self.temperature)
        started = time.perf_counter()
        history = self._train(
            model,
            source,
            f"{self.name} on source",
            self.source_epochs,
            self.source_prefixes or None,
        )
        seconds = time.perf_counter() - started
        self.history_ += history
        _pretrained[key] = (
            {k: v.clone() for k, v in encoder.state_dict().items()},
            history,
            seconds,
        )
        while len(_pretrained) > 4:
            _pretrained.pop(next(iter(_pretrained)))

    def build(self, domain: InteractionDomain, cache: Any = None) -> Classifier:
        items = TextItemVectors(
            self._text(domain, cache),
            self.hidden,
            self.experts,
            self.adaptor_dropout,
            self.id_embeddings,
        )
        model = Classifier(domain.n_items + 1, self.hidden, self._encoder(items))
        model.head = ItemScores(items, domain.n_items, self.temperature)
        return model


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
