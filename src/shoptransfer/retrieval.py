"""Cross-modal retrieval: product photos and titles in one space, learned from (photo, title)
pairs on frozen backbones.

Two small projection heads, one per modality, map frozen image features (EfficientNet-Lite) and
frozen text features (MiniLM) to unit vectors of one shared space; the backbones never train.
The heads learn with the symmetric InfoNCE loss of CLIP (Radford et al., ICML 2021; InfoNCE:
van den Oord et al., 2018) and a learned temperature:

    L = ½ [CE(s · T Iᵀ, diag) + CE(s · I Tᵀ, diag)],  s = exp(learned log-scale) ≤ 100

where row ``i`` of ``I`` and ``T`` are the projected photo and title of pair ``i`` in a batch:
each title must pick its own photo among the batch's photos, and each photo its own title.

With the heads, :class:`CrossModalRetriever` searches photos by a title (and titles by a
photo), and classifies a photo without labelled photos (zero-shot) by matching it against a
text per class, "a product photo of {class}". Frozen features come through the embedding cache,
so a second fit on the same photos and titles costs only the heads' training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones import EmbeddingCache, make_encoder
from shoptransfer.data.images import read_image_table
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.retrieval import KS, recall_in_blocks
from shoptransfer.files import atomic_write_bytes, atomic_write_json
from shoptransfer.runs import read_json, read_weights

PROMPT = "a product photo of {}"
HEADS_FILE, SETTINGS_FILE = "heads.safetensors", "retriever.json"
FORMAT = "shoptransfer-retriever-1"
MAX_SCALE = 100.0  # CLIP's cap on the learned inverse temperature


class SymmetricInfoNCE(nn.Module):
    """The symmetric InfoNCE loss of paired unit vectors with a learned temperature.

    ``forward(a, b)``: row ``i`` of ``a`` and of ``b`` are a pair; the loss is the mean of the
    cross-entropy of picking ``b[i]`` among ``b`` for ``a[i]`` and ``a[i]`` among ``a`` for
    ``b[i]``, on similarities multiplied by ``scale`` (``exp`` of a learned log-scale, started
    at ``1 / temperature`` and capped at 100).
    """

    def __init__(self, temperature: float = 0.07, learn_temperature: bool = True) -> None:
        super().__init__()
        start = torch.tensor(math.log(1.0 / temperature))
        self.log_scale = nn.Parameter(start, requires_grad=learn_temperature)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = self.scale * a @ b.T
        target = torch.arange(len(a), device=a.device)
        return (
            nn.functional.cross_entropy(logits, target)
            + nn.functional.cross_entropy(logits.T, target)
        ) / 2


class Projection(nn.Module):
    """Standardised frozen features → a unit vector of the shared space: a linear map, or an
    MLP with one hidden layer (``hidden`` > 0)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, inputs: int, dim: int, hidden: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(inputs))
        self.register_buffer("std", torch.ones(inputs))
        if hidden:
            self.map: nn.Module = nn.Sequential(
                nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, dim)
            )
        else:
            self.map = nn.Linear(inputs, dim)

    def standardise_with(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(dim=0))
        self.std.copy_(features.std(dim=0) + 1e-6)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.map((features - self.mean) / self.std), dim=-1)


@dataclass
class CrossModalRetriever:
    """Projection heads for photos and titles on frozen backbones (the scikit-learn contract:
    the constructor's arguments are the hyper-parameters, :meth:`fit` does the work).

    Training holds out ``validation_fraction`` of the pairs and keeps the epoch with the best
    mean Recall@1/5/10 on them (title → photo and photo → title), stopping after ``patience``
    epochs without a gain; the held-out pairs are then not trained on.
    """

    image_backbone: str = "efficientnet-lite0"
    text_backbone: str = "minilm-l6"
    image_size: int | None = None
    max_length: int = 64
    precision: str = "fp32"
    dim: int = 256
    hidden: int = 0
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07
    validation_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    # what fit() learns
    image: Projection | None = field(default=None, init=False, repr=False)
    text: Projection | None = field(default=None, init=False, repr=False)
    loss: SymmetricInfoNCE | None = field(default=None, init=False, repr=False)
    history: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    SETTINGS = (
        "image_backbone", "text_backbone", "image_size", "max_length", "precision", "dim",
        "hidden", "epochs", "batch_size", "learning_rate", "weight_decay", "temperature",
        "validation_fraction", "patience", "seed",
    )  # fmt: skip

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SETTINGS}

    def check(self) -> None:
        """A ConfigError naming the first setting out of its range."""
        bounds = {
            "dim": (1, None), "epochs": (1, None), "batch_size": (2, None),
            "learning_rate": (0.0, None), "temperature": (0.0, None), "hidden": (0, None),
            "max_length": (1, None), "patience": (1, None), "weight_decay": (0.0, None),
        }  # fmt: skip
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            strict = isinstance(low, float) and name != "weight_decay"
            if value < low or (strict and value == low) or (high is not None and value > high):
                relation = "above" if strict else "at least"
                raise ConfigError(f"retriever setting {name}={value}: expected {relation} {low}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"retriever setting validation_fraction={self.validation_fraction}: "
                "expected 0 (no early stopping) up to, not including, 1"
            )

    # -- frozen features ---------------------------------------------------------------------

    def image_encoder(self) -> Any:
        return make_encoder(
            self.image_backbone, image_size=self.image_size, precision=self.precision
        )

    def text_encoder(self) -> Any:
        return make_encoder(
            self.text_backbone, max_length=self.max_length, precision=self.precision
        )

    def image_features(
        self, paths: Sequence[str], cache: EmbeddingCache | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Frozen image features of the photos at ``paths`` (through ``cache``)."""
        cache = cache if cache is not None else EmbeddingCache()
        return cache.encode(self.image_encoder(), list(paths), show_progress=show_progress)

    def text_features(
        self, texts: Sequence[str], cache: EmbeddingCache | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Frozen text features of ``texts`` (through ``cache``)."""
        cache = cache if cache is not None else EmbeddingCache()
        return cache.encode(self.text_encoder(), list(texts), show_progress=show_progress)

    # -- training ----------------------------------------------------------------------------

    def fit(
        self,
        photos: Sequence[str],
        titles: Sequence[str],
        cache: EmbeddingCache | None = None,
        show_progress: bool = False,
    ) -> CrossModalRetriever:
        """Train the heads on the pairs (``photos[i]``, ``titles[i]``): image paths and texts."""
        check_pairs(len(photos), len(titles))
        cache = cache if cache is not None else EmbeddingCache()
        return self.fit_features(
            self.image_features(photos, cache, show_progress),
            self.text_features(titles, cache, show_progress),
        )

    def fit_features(
        self, image_features: np.ndarray, text_features: np.ndarray
    ) -> CrossModalRetriever:
        """Train the heads on frozen features: row ``i`` of each is pair ``i``."""
        self.check()
        images = _matrix(image_features, "image features")
        texts = _matrix(text_features, "text features")
        check_pairs(len(images), len(texts))
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        order = torch.randperm(len(images), generator=generator)
        held = int(round(self.validation_fraction * len(images)))
        held = held if held >= 2 and len(images) - held >= 2 else 0
        valid, train = order[:held], order[held:]
        self.image = Projection(images.shape[1], self.dim, self.hidden)
        self.text = Projection(texts.shape[1], self.dim, self.hidden)
        self.image.standardise_with(images[train])
        self.text.standardise_with(texts[train])
        self.loss = SymmetricInfoNCE(self.temperature)
        parts = [self.image, self.text, self.loss]
        parameters = [p for part in parts for p in part.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(
            parameters, lr=self.learning_rate, weight_decay=self.weight_decay
        )
        self.history = []
        best, best_state, waited = -1.0, None, 0
        for epoch in range(self.epochs):
            for part in parts:
                part.train()
            shuffled = train[torch.randperm(len(train), generator=generator)]
            total = 0.0
            for start in range(0, len(shuffled), self.batch_size):
                idx = shuffled[start : start + self.batch_size]
                if len(idx) < 2:
                    continue
                loss = self.loss(self.image(images[idx]), self.text(texts[idx]))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(idx)
            entry = {"epoch": epoch + 1, "loss": total / len(shuffled)}
            entry["scale"] = self.loss.scale.item()
            if held:
                metrics = self._score(images[valid], texts[valid])
                entry["validation"] = metrics
                if metrics > best:
                    best, waited = metrics, 0
                    best_state = [
                        {k: v.clone() for k, v in part.state_dict().items()} for part in parts
                    ]
                else:
                    waited += 1
            self.history.append(entry)
            if held and waited >= self.patience:
                break
        if best_state is not None:
            for part, state in zip(parts, best_state):
                part.load_state_dict(state)
        for part in parts:
            part.eval()
        return self

    def _score(self, images: torch.Tensor, texts: torch.Tensor) -> float:
        """Mean Recall@1/5/10, both directions, of pairs among each other (validation)."""
        with torch.no_grad():
            image_z = self.image(images).numpy()  # type: ignore[misc]
            text_z = self.text(texts).numpy()  # type: ignore[misc]
        found = [recall_in_blocks(q, c, len(q)) for q, c in ((text_z, image_z), (image_z, text_z))]
        return float(np.mean([m[f"recall@{k}"] for m in found for k in KS]))

    # -- using the heads ---------------------------------------------------------------------

    def _fitted(self) -> tuple[Projection, Projection, SymmetricInfoNCE]:
        if self.image is None or self.text is None or self.loss is None:
            raise ConfigError("the retriever has no trained heads: call fit() or load() first")
        return self.image, self.text, self.loss

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """Unit vectors of the shared space for frozen image features."""
        image, _, _ = self._fitted()
        with torch.no_grad():
            return image(_matrix(features, "image features", image.mean.numel())).numpy()

    def embed_text_features(self, features: np.ndarray) -> np.ndarray:
        """Unit vectors of the shared space for frozen text features."""
        _, text, _ = self._fitted()
        with torch.no_grad():
            return text(_matrix(features, "text features", text.mean.numel())).numpy()

    def embed_images(self, paths: Sequence[str], cache: EmbeddingCache | None = None) -> np.ndarray:
        self._fitted()
        return self.embed_image_features(self.image_features(paths, cache))

    def embed_texts(self, texts: Sequence[str], cache: EmbeddingCache | None = None) -> np.ndarray:
        self._fitted()
        return self.embed_text_features(self.text_features(texts, cache))

    def evaluate_features(
        self,
        image_features: np.ndarray,
        text_features: np.ndarray,
        candidates: int = 1000,
        seed: int = 0,
    ) -> dict[str, dict[str, Any]]:
        """Recall@1/5/10 and MRR of held-out pairs, title → photo and photo → title, each
        query among ``candidates`` pairs (disjoint blocks of the pairs, drawn with ``seed``)."""
        check_pairs(len(image_features), len(text_features))
        image_z = self.embed_image_features(image_features)
        text_z = self.embed_text_features(text_features)
        return {
            "title_to_photo": recall_in_blocks(text_z, image_z, candidates, seed=seed),
            "photo_to_title": recall_in_blocks(image_z, text_z, candidates, seed=seed),
        }

    def zero_shot_scores(
        self, image_features: np.ndarray, class_names: Sequence[str], cache: EmbeddingCache | None
    ) -> np.ndarray:
        """Each photo's similarity to each class's prompt (``PROMPT`` with the class name)."""
        names = check_class_names(class_names)
        prompts = [PROMPT.format(name) for name in names]
        class_z = self.embed_text_features(self.text_features(prompts, cache))
        return self.embed_image_features(image_features) @ class_z.T

    def zero_shot(
        self,
        photos: Sequence[str],
        class_names: Sequence[str],
        cache: EmbeddingCache | None = None,
    ) -> list[str]:
        """The class of each photo at ``photos``: the class whose prompt it is closest to."""
        names = check_class_names(class_names)
        scores = self.zero_shot_scores(self.image_features(photos, cache), names, cache)
        return [names[i] for i in scores.argmax(axis=1)]

    def search(
        self,
        query_vectors: np.ndarray,
        candidate_vectors: np.ndarray,
        k: int = 10,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best candidates of each query (shared-space vectors): indices and cosine
        similarities, best first."""
        if k < 1:
            raise ConfigError(f"k={k}: expected at least 1 result per query")
        scores = np.asarray(query_vectors) @ np.asarray(candidate_vectors).T
        k = min(k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return top, np.take_along_axis(scores, top, axis=1)

    # -- saving ------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the heads (safetensors) and the settings, backbones' identities and training
        history (JSON) to ``folder``."""
        from safetensors.torch import save as save_tensors

        image, text, loss = self._fitted()
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            **{f"image.{k}": v.contiguous() for k, v in image.state_dict().items()},
            **{f"text.{k}": v.contiguous() for k, v in text.state_dict().items()},
            "log_scale": loss.log_scale.detach().clone(),
        }
        atomic_write_bytes(out / HEADS_FILE, save_tensors(tensors))
        atomic_write_json(
            out / SETTINGS_FILE,
            {
                "format": FORMAT,
                "settings": self.settings(),
                "image_inputs": int(image.mean.numel()),
                "text_inputs": int(text.mean.numel()),
                "prompt": PROMPT,
                "history": self.history,
            },
        )
        return out

    @classmethod
    def load(cls, folder: str | Path) -> CrossModalRetriever:
        """The retriever :meth:`save` wrote to ``folder``; a DataError naming a missing or
        damaged file."""
        where = Path(folder)
        if not where.is_dir():
            raise DataError(f"{where}: no such folder; expected a saved retriever")
        meta = read_json(where / SETTINGS_FILE)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{where / SETTINGS_FILE}: not a saved retriever (format {FORMAT})")
        settings = meta.get("settings", {})
        unknown = sorted(set(settings) - set(cls.SETTINGS))
        if unknown:
            raise DataError(f"{where / SETTINGS_FILE}: unknown settings {unknown}")
        retriever = cls(**settings)
        retriever.image = Projection(meta["image_inputs"], retriever.dim, retriever.hidden)
        retriever.text = Projection(meta["text_inputs"], retriever.dim, retriever.hidden)
        retriever.loss = SymmetricInfoNCE(retriever.temperature)
        tensors = read_weights(where / HEADS_FILE, ["log_scale"])
        try:
            for prefix, part in (("image.", retriever.image), ("text.", retriever.text)):
                part.load_state_dict(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                )
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:160]
            raise DataError(f"{where / HEADS_FILE}: weights do not fit ({detail})") from None
        with torch.no_grad():
            retriever.loss.log_scale.copy_(tensors["log_scale"])
        retriever.history = list(meta.get("history", []))
        for module in (retriever.image, retriever.text, retriever.loss):
            module.eval()
        return retriever


# -- inputs ----------------------------------------------------------------------------------


@dataclass
class Pairs:
    """Photos and their titles (one title per photo), with optional labels, read from a table;
    rows left out are counted by reason in ``dropped``."""

    photos: list[str]
    titles: list[str]
    labels: list[str] | None
    dropped: dict[str, int]
    source: str

    def __len__(self) -> int:
        return len(self.photos)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Pairs:
        return Pairs(
            [self.photos[i] for i in idx],
            [self.titles[i] for i in idx],
            [self.labels[i] for i in idx] if self.labels is not None else None,
            dict(self.dropped),
            self.source,
        )


def read_pairs(
    path: str | Path,
    image: str = "image",
    text: str = "title",
    label: str | None = None,
    root: str | Path | None = None,
) -> Pairs:
    """(photo, title) pairs from a CSV / TSV / JSON Lines / Parquet table: ``image`` and
    ``text`` name the columns (``label`` optionally a class column; relative photo paths are
    read from ``root``, default the table's folder).

    A missing column or photo file is a DataError naming it; rows without a photo path, a
    title or (when asked for) a label, and unusable photos, are left out and counted.
    """
    domain = read_image_table(
        path, image=image, label=label, root=root, label_columns={"title": text}
    )
    return Pairs(
        list(domain.inputs),
        [str(t) for t in domain.annotations["title"]],
        list(domain.labels) if domain.labels is not None else None,
        {_REASONS.get(k, k): v for k, v in domain.dropped.items()},
        str(path),
    )


_REASONS = {"missing annotation": "missing title", "missing label": "missing label"}


def check_pairs(photos: int, titles: int) -> None:
    """A DataError unless there is one title per photo, and at least two pairs."""
    if photos != titles:
        raise DataError(f"{photos} photos but {titles} titles; expected one title per photo")
    if photos < 2:
        raise DataError(f"{photos} pair(s); at least 2 (photo, title) pairs are needed")


def check_class_names(class_names: Sequence[str]) -> list[str]:
    """The class names as a list; a ConfigError for none, an empty or a repeated name."""
    names = [str(name).strip() for name in class_names]
    if len(names) < 2:
        raise ConfigError(f"{len(names)} class name(s); zero-shot needs at least 2 classes")
    if not all(names):
        raise ConfigError("an empty class name; every class needs a name to match photos with")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"class names given twice: {repeated}")
    return names


def _matrix(values: Any, what: str, columns: int | None = None) -> torch.Tensor:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise DataError(f"{what}: expected a matrix (one row per example), not shape {array.shape}")
    if columns is not None and array.shape[1] != columns:
        raise DataError(
            f"{what}: {array.shape[1]} columns, but the heads were trained on {columns}; "
            "were they computed by the same backbone?"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{what}: not every value is a finite number")
    return torch.from_numpy(array)
