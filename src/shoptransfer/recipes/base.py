"""What every recipe and predictor share, and the registry of named recipes."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import types
import typing
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import TypeAdapter, ValidationError

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.image import MAX_IMAGE_SIZE
from shoptransfer.backbones.precision import PRECISIONS
from shoptransfer.backbones.text import TRUNCATIONS
from shoptransfer.data.domain import Domain, TextDomain
from shoptransfer.errors import ConfigError, DataError, ShopTransferError
from shoptransfer.files import atomic_write_json
from shoptransfer.heads import Outputs
from shoptransfer.metering import StageCache
from shoptransfer.runs import read_json

FAMILIES = ("baseline", "model-based", "feature-based", "network-based", "adaptive")


class SavedModel(ABC):
    """A trained model of any task, saved without pickle (weights in safetensors, metadata in
    ``model.json``) and loaded back by its ``kind`` from the one registry of kinds."""

    kind: ClassVar[str]
    # the keys of ``model.json`` that loading reads, with their types: checked before loading
    # (a key whose type admits None may be absent)
    metadata_types: ClassVar[dict[str, Any]] = {}

    @property
    @abstractmethod
    def trainable_parameters(self) -> int:
        """How many parameters training changed."""

    @abstractmethod
    def _save_weights(self, folder: Path) -> dict[str, Any]:
        """Write the weights into ``folder``; return the metadata needed to load them."""

    def _metadata(self) -> dict[str, Any]:
        """What every model of this kind records besides its weights (classes, catalogue)."""
        return {}

    def save(self, folder: str | Path) -> Path:
        """Write the model into ``folder`` atomically: every file goes into a staging folder
        beside it, renamed into place once complete (a crash leaves no half-written model;
        an older model of the same name is replaced)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir()  # with the umask's permissions, as the folder it becomes
        try:
            metadata = {"kind": self.kind, **self._metadata(), **self._save_weights(staging)}
            atomic_write_json(staging / MODEL_FILE, metadata)
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, metadata: dict[str, Any], **context: Any) -> SavedModel:
        """The model saved in ``folder``; ``context`` holds what some kinds need to rebuild
        themselves (a recommender's domain and embedding cache)."""


class Predictor(SavedModel):
    """A trained model that reads inputs (texts, images or vectors): class probabilities, a
    regression's numbers, or a multi-task model's classes per task (:attr:`outputs`)."""

    classes: list[str]
    metadata_types: ClassVar[dict[str, Any]] = {"classes": list[str]}

    @abstractmethod
    def predict_proba(self, inputs: Sequence[str] | np.ndarray) -> np.ndarray:
        """An (n_inputs, n_classes) array of probabilities, columns in ``self.classes`` order."""

    def predict(self, inputs: Sequence[str] | np.ndarray) -> Any:
        """Class labels (a regression model: numbers; a multi-task model: labels per task)."""
        return [self.classes[i] for i in self.predict_proba(inputs).argmax(axis=1)]

    @property
    def outputs(self) -> Outputs:
        """What the model predicts (:class:`~shoptransfer.heads.Outputs`): its classes here."""
        return Outputs.of_classes(self.classes)

    def _metadata(self) -> dict[str, Any]:
        return {"classes": self.classes}


MODEL_FILE = "model.json"
LEGACY_KINDS = {("ranker.json", "neural"): "neural-ranker"}  # saved before kinds were one registry
_MODEL_KINDS: dict[str, type[SavedModel]] = {}


def register_model(cls: type[SavedModel]) -> type[SavedModel]:
    """Add a saved-model class to the one registry, under its unique ``kind``."""
    if cls.kind in _MODEL_KINDS and _MODEL_KINDS[cls.kind] is not cls:
        raise ValueError(f"model kind '{cls.kind}' is registered twice")
    _MODEL_KINDS[cls.kind] = cls
    return cls


def read_model_metadata(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """Where a saved model's metadata is and what it says, its keys checked against its kind's
    :attr:`~SavedModel.metadata_types` (a DataError naming the file and key otherwise)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: model folder not found")
    for name in (MODEL_FILE, "ranker.json"):
        path = folder / name
        if path.exists():
            break
    else:
        raise DataError(f"{folder}: no {MODEL_FILE}; expected a saved shoptransfer model")
    metadata = read_json(path)
    if not isinstance(metadata, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(metadata).__name__}")
    kind = metadata.get("kind")
    if isinstance(kind, str):
        metadata["kind"] = kind = LEGACY_KINDS.get((path.name, kind), kind)
    if not isinstance(kind, str) or kind not in _MODEL_KINDS:
        raise DataError(
            f"{path}: unknown model kind {kind!r}; expected one of {sorted(_MODEL_KINDS)}"
        )
    for key, annotation in _MODEL_KINDS[kind].metadata_types.items():
        try:
            TypeAdapter(annotation).validate_python(metadata.get(key), strict=True)
        except ValidationError:
            given = f"is {_shown(metadata[key])}" if key in metadata else "is missing"
            raise DataError(
                f"{path}: key '{key}' {given}; expected {_describe_type(annotation)}"
            ) from None
    return path, metadata


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _load(folder: str | Path, expected: type, what: str, **context: Any) -> Any:
    """The model saved in ``folder``, if it is an ``expected`` one (``what``, in words).

    A saved model whose files say one thing and hold another (a key of ``model.json`` that
    does not fit the weights, say) is a DataError naming ``model.json``; the exception behind
    it stays attached as the error's cause.
    """
    path, metadata = read_model_metadata(folder)
    cls = _MODEL_KINDS[metadata["kind"]]
    if not issubclass(cls, expected):
        raise DataError(f"{folder}: a {cls.kind} model, not a {what}")
    try:
        return cls.load(Path(folder), metadata, **context)
    except ShopTransferError as exc:
        if str(folder) in str(exc):
            raise
        raise DataError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise DataError(
            f"{path}: the {cls.kind} model it describes does not load ({detail}); "
            "the file is damaged or from another version"
        ) from exc


def load_saved_model(folder: str | Path, **context: Any) -> SavedModel:
    """Load any model saved by :meth:`SavedModel.save`; ``context`` as its kind needs."""
    model: SavedModel = _load(folder, SavedModel, "saved model", **context)
    return model


def load_predictor(folder: str | Path) -> Predictor:
    """Load a saved classifier (a DataError when the folder holds another kind of model)."""
    model: Predictor = _load(folder, Predictor, "classifier")
    return model


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    group: str | None = None,
) -> Any:
    """A recipe hyper-parameter with the help text that the CLI and docs show.

    Besides its type annotation, a value is checked against ``choices`` (for text) and the
    bounds (for numbers): ``minimum`` / ``maximum`` inclusive, ``above`` / ``below`` exclusive.
    ``group`` names the part of the recipe the option belongs to (listings group by it).
    """
    rule = {"choices": choices, "minimum": minimum, "maximum": maximum}
    rule.update({"above": above, "below": below, "group": group})
    metadata = {"help": help, **{k: v for k, v in rule.items() if v is not None}}
    return dataclasses.field(default=default, metadata=metadata)


_NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclasses.dataclass(frozen=True)
class _OptionRule:
    """How one option is checked: its annotation, and the choices and bounds of option()."""

    annotation: Any
    adapter: TypeAdapter[Any]
    choices: tuple[str, ...] | None
    bounds: tuple[tuple[str, float, Any], ...]  # (">=", 1, test), ...

    def check(self, recipe: str, key: str, value: Any) -> Any:
        where = f"recipe '{recipe}': option '{key}' is {value!r}"
        try:
            checked = self.adapter.validate_python(value, strict=True)
        except ValidationError:
            checked = self._number_from_text(value)
            if checked is None:
                raise ConfigError(f"{where}; expected {_describe_type(self.annotation)}") from None
        if self.choices is not None and isinstance(checked, str) and checked not in self.choices:
            raise ConfigError(f"{where}; expected one of {list(self.choices)}")
        is_number = isinstance(checked, int | float) and not isinstance(checked, bool)
        if is_number and not math.isfinite(checked):
            raise ConfigError(f"{where}; expected a finite number")
        for sign, bound, holds in self.bounds:
            if is_number and not holds(checked, bound):
                raise ConfigError(
                    f"{where}; expected {_describe_type(type(checked))} {sign} {bound}"
                )
        return checked

    def _number_from_text(self, value: Any) -> float | None:
        """A float written as text (YAML reads ``1e-3`` as a string), where floats are allowed."""
        if not isinstance(value, str) or not _NUMBER_TEXT.fullmatch(value.strip()):
            return None
        number = float(value)
        try:
            return float(self.adapter.validate_python(number, strict=True))
        except ValidationError:
            return None


_BOUNDS = {
    "minimum": (">=", lambda v, b: v >= b),
    "maximum": ("<=", lambda v, b: v <= b),
    "above": (">", lambda v, b: v > b),
    "below": ("<", lambda v, b: v < b),
}


@functools.cache
def _option_rules(cls: type[Recipe]) -> dict[str, _OptionRule]:
    hints = typing.get_type_hints(cls)
    rules = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        annotation = hints[field.name]
        choices = field.metadata.get("choices")
        bounds = tuple(
            (sign, field.metadata[name], holds)
            for name, (sign, holds) in _BOUNDS.items()
            if name in field.metadata
        )
        rules[field.name] = _OptionRule(
            annotation,
            TypeAdapter(annotation),
            tuple(choices) if choices is not None else None,
            bounds,
        )
    return rules


def _describe_type(annotation: Any) -> str:
    """What a value of ``annotation`` looks like, in words ('an integer', 'a list of ...')."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe_type(a) for a in typing.get_args(annotation)))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if origin is dict:
        keys, items = typing.get_args(annotation) or (Any, Any)
        return f"a mapping of {_describe_type(keys)} to {_describe_type(items)}"
    if origin in (list, tuple, Sequence):
        items = typing.get_args(annotation)
        return (
            f"a list of {_describe_type(items[0])}" if items and items[0] is not Any else "a list"
        )
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    words[type(None)] = "null"
    return words.get(annotation, getattr(annotation, "__name__", str(annotation)))


@dataclasses.dataclass
class FitData:
    """Everything one fit reads, handed to :meth:`Recipe.fit` as one object.

    - ``source``: labeled source examples (``None``: the backbone's pre-training is the only
      source, and recipes train on the target labels);
    - ``target``: the budget's labeled target examples (``None`` at budget 0); for
      recommendation, the target's training histories;
    - ``unlabeled``: target inputs without labels, for objectives that align the domains;
    - ``classes``: the label vocabulary (default: the labels of source and target);
    - ``cache``: frozen embeddings shared by a run's recipes;
    - ``stages``: trained stages (a source stage, a pre-training) shared by a run's fits,
      each reuse charged its full cost;
    - ``outputs``: what the model predicts, when not ``classes`` (a regression's number, the
      heads of a multi-task model: :class:`~shoptransfer.heads.Outputs`).
    """

    source: Any = None
    target: Any = None
    unlabeled: Any = None
    classes: list[str] | None = None
    cache: EmbeddingCache | None = None
    stages: StageCache | None = None
    outputs: Outputs | None = None

    def predicts(self) -> Outputs:
        """``outputs``, else the classes of :meth:`label_vocabulary`."""
        return self.outputs or Outputs.of_classes(self.label_vocabulary())

    def label_vocabulary(self) -> list[str]:
        """``classes``, else the sorted labels of the source and the target."""
        if self.classes is not None:
            return list(self.classes)
        labels: set[str] = set()
        for domain in (self.source, self.target):
            if domain is not None and getattr(domain, "labeled", False):
                labels.update(domain.classes)
        return sorted(labels)

    def reference(self) -> Any:
        """The domain whose kind of inputs the model reads: the source, else the target."""
        for domain in (self.source, self.target, self.unlabeled):
            if domain is not None:
                return domain
        raise DataError("nothing to train on: no source, no target examples")

    @property
    def has_target_labels(self) -> bool:
        return self.target is not None and len(self.target) > 0


@dataclasses.dataclass
class Recipe(ABC):
    """A transfer strategy: ``fit(data)`` returns a trained model (a :class:`Predictor`).

    ``data`` (:class:`FitData`) holds everything a fit reads. Constructor arguments are the
    hyper-parameters; ``fit`` does the work.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str]
    uses_source: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = ("classification",)  # the tasks it can learn
    # whether it reads a multi-input domain (several named inputs per example)
    several_inputs: ClassVar[bool] = False
    seed: int = option(0, "random seed of splits, initialisation and batch order", minimum=0)

    @abstractmethod
    def fit(self, data: FitData) -> Any:
        """Train on ``data``: its source, the labeled target examples and the unlabeled target
        inputs, as the recipe uses them; return the trained model."""

    def fitted(self) -> dict[str, Any]:
        """What the last ``fit`` chose or estimated from the data (an L2 strength picked by
        cross-validation, the target's class shares), recorded with the cell in results.json."""
        return {}

    def check_task(self, task: str) -> None:
        """Raise a ConfigError when this recipe (with its settings) cannot learn ``task``."""
        if task not in self.tasks:
            raise ConfigError(
                f"recipe '{self.name}' learns {' or '.join(self.tasks)}; this run's task is {task}"
            )

    def validate(self, source: Domain) -> None:
        """Raise a ConfigError for settings that cannot work on ``source``.

        Cheap; a run calls it for every recipe before any training starts.
        """
        self.check_options()  # a value set after make_recipe is checked too

    @classmethod
    def options(cls) -> dict[str, str]:
        """The hyper-parameters a config may set, with their help text."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def option_groups(cls) -> dict[str, list[str]]:
        """The options by the part of the recipe they set (``general`` when ungrouped)."""
        groups: dict[str, list[str]] = {}
        for f in dataclasses.fields(cls):
            if f.init:
                groups.setdefault(f.metadata.get("group") or "general", []).append(f.name)
        return groups

    @classmethod
    def checked_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against each field's type annotation, choices and range.

        An unknown option or a bad value is a ConfigError naming the recipe, the option, the
        value and what was expected. Returns the values as the recipe keeps them: a number that
        YAML read as text (``1e-3``) becomes a float.
        """
        rules = _option_rules(cls)
        unknown = sorted(set(options) - set(rules))
        if unknown:
            raise ConfigError(
                f"recipe '{cls.name}': unknown option(s) {unknown}; allowed: {sorted(rules)}"
            )
        return {key: rules[key].check(cls.name, key, value) for key, value in options.items()}

    def check_options(self) -> None:
        """Check the current value of every option (see :meth:`checked_options`)."""
        current = {key: getattr(self, key) for key in self.options()}
        for key, value in self.checked_options(current).items():
            setattr(self, key, value)


_RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    if cls.name != cls.name.lower() or cls.name in _RECIPES:
        raise ValueError(f"recipe name '{cls.name}' must be lower-case and unique")
    if cls.family not in FAMILIES:
        raise ValueError(f"recipe '{cls.name}': family must be one of {FAMILIES}")
    _RECIPES[cls.name] = cls
    return cls


def list_recipes(task: str | None = None) -> list[type[Recipe]]:
    """Registered recipes by name; only those that learn ``task`` when given."""
    return [
        _RECIPES[name] for name in sorted(_RECIPES) if task is None or task in _RECIPES[name].tasks
    ]


def make_recipe(name: str, **options: Any) -> Recipe:
    """Build a registered recipe; an unknown name or option, or an option of the wrong type,
    choice or range, is a ConfigError naming them (see :meth:`Recipe.checked_options`)."""
    if name not in _RECIPES:
        raise ConfigError(f"unknown recipe '{name}'; expected one of {sorted(_RECIPES)}")
    cls = _RECIPES[name]
    return cls(**cls.checked_options(options))


def require_target_labels(recipe: Recipe, target: Domain | None) -> Domain:
    """The labeled target examples a scratch baseline trains on, or a clear error."""
    if target is None or not (target.labeled or target.annotations) or len(target) == 0:
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
        group="backbone",
    )
    max_length: int = option(128, "tokens kept per text", minimum=1, group="backbone")
    truncation: str = option(
        "head",
        "which tokens a long text keeps: 'head' (the first) or 'head+tail' (first and last)",
        choices=TRUNCATIONS,
        group="backbone",
    )
    image_size: int = option(
        0,
        "pixels per side an image backbone reads (0: its native size, 224 for "
        f"efficientnet-lite0, 260 for efficientnet-lite2; at most {MAX_IMAGE_SIZE})",
        minimum=0,
        maximum=MAX_IMAGE_SIZE,
        group="backbone",
    )
    precision: str = option(
        "auto",
        "'auto': bf16 where the CPU computes bfloat16 natively (AVX512-BF16, AMX; about 2x "
        "faster there), else fp32; 'fp32'; or 'bf16' (mixed precision: several times slower "
        "on CPUs without native bfloat16)",
        choices=PRECISIONS,
        group="backbone",
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
        super().validate(source)
        self.check_backbone(source)
