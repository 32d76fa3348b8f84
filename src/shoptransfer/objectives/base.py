"""What every auxiliary objective shares: its config dataclass and the registry of names.

An objective is a loss the one :class:`~shoptransfer.training.Trainer` adds to the task loss
(feature alignment, regularisation toward the pretrained weights, a penalty on the features'
spectrum, ...). Each is registered under a lower-case name with a config dataclass whose fields
are its settings; a recipe lists the objectives it uses, in YAML for instance::

    objectives: [{name: dann, weight: 1.0}, {name: l2-sp, weight: 0.01}]

A config declares what the objective needs: unlabeled target inputs (drawn beside each
training batch), the stages it applies to (``source``: training on the source labels;
``target``: training on the target labels; ``self-training``: rounds on pseudo-labels), and
whether it reads the head's class scores (then it serves classification only).
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from shoptransfer.errors import ConfigError
from shoptransfer.training import Classifier, Objective

STAGES = ("source", "target", "self-training")


def setting(default: Any, help: str) -> Any:
    """An objective setting with the help text that the CLI and docs show."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class ObjectiveConfig(ABC):
    """Settings of one objective; :meth:`build` makes the loss module for a model."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_unlabeled_target: ClassVar[bool] = False
    stages: ClassVar[tuple[str, ...]] = ("source",)
    reads_class_scores: ClassVar[bool] = False  # True: classification only
    weight: float = setting(1.0, "multiplier of the loss")

    @abstractmethod
    def build(self, model: Classifier) -> Objective:
        """The loss for ``model`` (read its sizes or weights; never change it)."""

    @classmethod
    def options(cls) -> dict[str, str]:
        """The settings a config may give, with their help text."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.init}

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


_OBJECTIVES: dict[str, type[ObjectiveConfig]] = {}


def register_objective(cls: type[ObjectiveConfig]) -> type[ObjectiveConfig]:
    """Add an objective to the registry under its lower-case, unique ``name``."""
    if cls.name != cls.name.lower() or cls.name in _OBJECTIVES:
        raise ValueError(f"objective name '{cls.name}' must be lower-case and unique")
    unknown = set(cls.stages) - set(STAGES)
    if unknown:
        raise ValueError(f"objective '{cls.name}': unknown stages {sorted(unknown)}")
    _OBJECTIVES[cls.name] = cls
    return cls


def list_objectives() -> list[type[ObjectiveConfig]]:
    """Registered objectives by name."""
    return [_OBJECTIVES[name] for name in sorted(_OBJECTIVES)]


def make_objective(entry: str | dict[str, Any], where: str = "objectives") -> ObjectiveConfig:
    """An objective's config from a name or a mapping ``{name, weight, ...settings}``.

    An unknown name, an unknown setting or a value of the wrong type is a ConfigError that
    names ``where`` and what was expected.
    """
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(
            f"{where}: expected an objective name or a mapping with a 'name'; got {entry!r}"
        )
    name = entry["name"]
    if name not in _OBJECTIVES:
        raise ConfigError(
            f"{where}: unknown objective '{name}'; expected one of {sorted(_OBJECTIVES)}"
        )
    cls = _OBJECTIVES[name]
    settings = {key: value for key, value in entry.items() if key != "name"}
    unknown = sorted(set(settings) - set(cls.options()))
    if unknown:
        raise ConfigError(
            f"{where}: objective '{name}': unknown setting(s) {unknown}; "
            f"allowed: {sorted(cls.options())}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in settings.items():
        expected = hints[key]
        if not _matches(value, expected):
            raise ConfigError(
                f"{where}: objective '{name}': {key} {value!r}; expected {expected.__name__}"
            )
    config = cls(**settings)
    negative = [f.name for f in dataclasses.fields(config) if _is_negative(getattr(config, f.name))]
    if negative:
        raise ConfigError(f"{where}: objective '{name}': {negative[0]} must be 0 or more")
    return config


def _matches(value: Any, expected: Any) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _is_negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0
