"""The task contract: what a runner needs to know about a learning task.

A task (classification, recommendation, ...) declares how its domains are read and split, how
a budget of target data is drawn, how a trained model is evaluated, its primary metric and
whether higher is better. The one runner (:mod:`shoptransfer.runner`) does the rest for every
task: recipes x budgets x seeds, cost, saving, results and the negative-transfer verdict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.errors import ConfigError
from shoptransfer.evaluation.report import Column
from shoptransfer.heads import Outputs

# the key of an evaluation's test probabilities (classification): the runner keeps them for
# seed ensembles (``ensemble_seeds``) and never writes them into a record
TEST_PROBABILITIES = "test_probabilities"


@dataclass
class TaskData:
    """A task's data for one run.

    ``source`` is ``None`` when the backbone's pre-training is the only source; ``pool`` is what
    budgets are drawn from; ``unlabeled`` holds target inputs without labels (for alignment);
    ``classes`` is the label vocabulary of a classification task; ``outputs`` what the model of
    another task predicts (:class:`~shoptransfer.heads.Outputs`: a number, several heads);
    ``warnings`` what reading and splitting changed or found (rows dropped, test examples
    also in the training data), one line each: the run prints them once and records them.
    """

    source: Any | None
    pool: Any
    test: Any
    unlabeled: Any | None = None
    classes: list[str] | None = None
    description: dict[str, Any] = field(default_factory=dict)
    outputs: Outputs | None = None
    warnings: list[str] = field(default_factory=list)


class Task(ABC):
    """A learning task. Constructed with the run's config; no work in ``__init__``."""

    name: ClassVar[str]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    budget_header: ClassVar[str] = "budget"
    columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, config: Any) -> None:
        self.config = config

    @abstractmethod
    def prepare(self, cache: EmbeddingCache) -> TaskData:
        """Read and split the domains; a DataError names what is wrong."""

    @abstractmethod
    def draw(self, data: TaskData, budget: Any, seed: int) -> Any | None:
        """The target training data of ``budget`` (``None``: none at all)."""

    @abstractmethod
    def evaluate(self, model: Any, data: TaskData, trained_on: Any = None) -> dict[str, Any]:
        """``{"metrics": {...}}`` on the test data (and other keys a task records; under
        ``TEST_PROBABILITIES`` the predicted probabilities, which are not recorded)."""

    def ensemble(self, probabilities: list[Any], data: TaskData) -> dict[str, Any]:
        """The metrics of several models' test probabilities averaged (``ensemble_seeds``)."""
        raise ConfigError(f"the {self.name} task has no seed ensembles")

    def check(self, data: TaskData, recipes: list[Any]) -> None:
        """Raise a ConfigError for settings that cannot work; called before any training."""
        for recipe in recipes:
            recipe.check_task(self.name)

    def quality_scorer(self, data: TaskData) -> Callable[[Any], float] | None:
        """A score of a model on a fixed sample of the target, for the quality curve."""
        return None

    def extra_results(self, data: TaskData, cache: EmbeddingCache) -> dict[str, Any]:
        """Task-level measurements recorded once per run (the domain gap, say)."""
        return {}

    def primary_key(self) -> str:
        """The metric that decides (best model, negative transfer), as recorded."""
        return self.primary_metric


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    if cls.name != cls.name.lower() or cls.name in _TASKS:
        raise ValueError(f"task name '{cls.name}' must be lower-case and unique")
    _TASKS[cls.name] = cls
    return cls


def make_task(config: Any) -> Task:
    """The task a validated config names."""
    if config.task not in _TASKS:
        raise ConfigError(f"unknown task '{config.task}'; expected one of {sorted(_TASKS)}")
    return _TASKS[config.task](config)


def list_tasks() -> list[type[Task]]:
    return [_TASKS[name] for name in sorted(_TASKS)]
