"""What every recipe and predictor share, and the registry of named recipes."""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data.domain import Domain, TextDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.files import atomic_write_json

FAMILIES = ("baseline", "model-based", "feature-based", "network-based")


class Predictor(ABC):
    """A trained model: class probabilities for inputs (texts or vectors), saved without pickle."""

    kind: ClassVar[str]
    classes: list[str]

    @abstractmethod
    def predict_proba(self, inputs: Sequence[str] | np.ndarray) -> np.ndarray:
        """An (n_inputs, n_classes) array of probabilities, columns in ``self.classes`` order."""

    def predict(self, inputs: Sequence[str] | np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(inputs).argmax(axis=1)]

    @property
    @abstractmethod
    def trainable_parameters(self) -> int:
        """How many parameters training changed."""

    @abstractmethod
    def _save_weights(self, folder: Path) -> dict[str, Any]:
        """Write the weights into ``folder``; return the metadata needed to load them."""

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        metadata = {"kind": self.kind, "classes": self.classes, **self._save_weights(folder)}
        atomic_write_json(folder / "model.json", metadata)
        return folder


_PREDICTOR_KINDS: dict[str, Any] = {}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    _PREDICTOR_KINDS[cls.kind] = cls
    return cls


def load_predictor(folder: str | Path) -> Predictor:
    """Load a predictor saved by :meth:`Predictor.save`."""
    folder = Path(folder)
    meta_path = folder / "model.json"
    if not meta_path.exists():
        raise DataError(f"{folder}: no model.json; expected a saved shoptransfer model")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: not valid JSON ({exc})") from None
    kind = metadata.get("kind")
    if kind not in _PREDICTOR_KINDS:
        raise DataError(
            f"{meta_path}: unknown model kind {kind!r}; expected one of {sorted(_PREDICTOR_KINDS)}"
        )
    return _PREDICTOR_KINDS[kind].load(folder, metadata)


@dataclasses.dataclass
class Recipe(ABC):
    """A transfer strategy: ``fit(source, target)`` returns a :class:`Predictor`.

    ``source`` is a labeled domain; ``target`` holds the target labels of the budget (``None``
    when the budget is 0). Constructor arguments are the hyper-parameters; ``fit`` does the work.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str]
    uses_source: ClassVar[bool] = True
    task: ClassVar[str] = "classification"
    seed: int = dataclasses.field(
        default=0, metadata={"help": "random seed of splits, initialisation and batch order"}
    )

    @abstractmethod
    def fit(
        self,
        source: Domain,
        target: Domain | None = None,
        cache: EmbeddingCache | None = None,
        unlabeled: Domain | None = None,
    ) -> Predictor:
        """Train on ``source``, the labeled ``target`` examples and ``unlabeled`` target data.

        ``cache`` holds frozen embeddings shared by a run's recipes; alignment recipes read
        ``unlabeled`` (target inputs without labels).
        """

    def validate(self, source: Domain) -> None:
        """Raise a ConfigError for settings that cannot work on ``source``.

        Cheap; a run calls it for every recipe before any training starts.
        """
        return None

    @classmethod
    def options(cls) -> dict[str, str]:
        """The hyper-parameters a config may set, with their help text."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.init}


def option(default: Any, help: str) -> Any:
    """A recipe hyper-parameter with the help text that the CLI and docs show."""
    return dataclasses.field(default=default, metadata={"help": help})


_RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    if cls.name != cls.name.lower() or cls.name in _RECIPES:
        raise ValueError(f"recipe name '{cls.name}' must be lower-case and unique")
    if cls.family not in FAMILIES:
        raise ValueError(f"recipe '{cls.name}': family must be one of {FAMILIES}")
    _RECIPES[cls.name] = cls
    return cls


def list_recipes(task: str | None = None) -> list[type[Recipe]]:
    """Registered recipes by name; only those of ``task`` when given."""
    return [_RECIPES[name] for name in sorted(_RECIPES) if task in (None, _RECIPES[name].task)]


def make_recipe(name: str, **options: Any) -> Recipe:
    """Build a registered recipe; an unknown name or option is a ConfigError naming them."""
    if name not in _RECIPES:
        raise ConfigError(f"unknown recipe '{name}'; expected one of {sorted(_RECIPES)}")
    cls = _RECIPES[name]
    allowed = cls.options()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"recipe '{name}': unknown option(s) {unknown}; allowed: {sorted(allowed)}"
        )
    return cls(**options)


def require_target_labels(recipe: Recipe, target: Domain | None) -> Domain:
    """The labeled target examples a scratch baseline trains on, or a clear error."""
    if target is None or not target.labeled or len(target) == 0:
        raise DataError(f"recipe '{recipe.name}' trains on target labels only; the budget is 0")
    return target


def require_target_texts(recipe: Recipe, target: Domain | None) -> TextDomain:
    """The labeled target texts a text-only baseline trains on, or a clear error."""
    target = require_target_labels(recipe, target)
    if not isinstance(target, TextDomain):
        raise ConfigError(f"recipe '{recipe.name}' reads texts; the target holds {target.holds}")
    return target


@dataclasses.dataclass
class BackboneRecipe(Recipe):
    """A recipe that reads texts or images through a backbone."""

    backbone: str = option(
        "minilm-l6",
        "registered backbone name (text or image), local model folder or hub id",
    )
    max_length: int = option(128, "tokens kept per text")
    truncation: str = option(
        "head", "which tokens a long text keeps: 'head' (the first) or 'head+tail' (first and last)"
    )
    image_size: int = option(0, "pixels per side an image backbone reads (0: its native size)")
    precision: str = option(
        "fp32",
        "'fp32', or 'bf16': the backbone computes in bfloat16 (mixed precision), about 2x "
        "faster on CPUs with native bfloat16 (AVX512-BF16, AMX), slower on others",
    )

    def make_encoder(self, pretrained: bool = True) -> Any:
        """The backbone's encoder with this recipe's settings."""
        from shoptransfer.backbones import make_encoder

        return make_encoder(
            self.backbone,
            max_length=self.max_length,
            truncation=self.truncation,
            image_size=self.image_size or None,
            pretrained=pretrained,
            precision=self.precision,
        )

    def check_backbone(self, domain: Domain) -> None:
        """A ConfigError when the backbone cannot read ``domain`` (images vs texts)."""
        from shoptransfer.backbones import backbone_modality, list_backbones

        reads = "images" if backbone_modality(self.backbone) == "image" else "texts"
        if domain.holds in ("texts", "images") and domain.holds != reads:
            fitting = [b.name for b in list_backbones() if (b.modality + "s") == domain.holds]
            raise ConfigError(
                f"recipe '{self.name}': backbone '{self.backbone}' reads {reads} but domain "
                f"'{domain.name}' holds {domain.holds}; set backbone to one of {fitting}"
            )

    def validate(self, source: Domain) -> None:
        from shoptransfer.backbones.precision import PRECISIONS
        from shoptransfer.backbones.text import TRUNCATIONS

        self.check_backbone(source)
        for key, allowed in (("truncation", TRUNCATIONS), ("precision", PRECISIONS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"recipe '{self.name}': {key} '{getattr(self, key)}'; "
                    f"expected one of {list(allowed)}"
                )
