"""What a model predicts, and the heads that predict it.

- ``classes`` (classification): a linear head over the features; cross-entropy.
- ``value`` (regression): :class:`ValueHead`, one number per example in the units of the
  training values; mean squared error.
- ``tasks`` (multi-task): :class:`MultiHead`, one linear head per task over the one shared
  encoder, each a classification; each head's cross-entropy on the examples labelled for it,
  summed with fixed weights or with learned uncertainty weights
  (:mod:`shoptransfer.objectives.uncertainty`). A :class:`~shoptransfer.training.Classifier`
  with this head returns a dict of logits per task.

:class:`Outputs` says which: it turns a domain's labels (or numbers) into training labels,
builds the model, turns its outputs into predictions, and is recorded with a saved model so that
it loads the same way. Recipes read it from :class:`~shoptransfer.recipes.base.FitData`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.data.domain import Domain
from shoptransfer.errors import DataError
from shoptransfer.objectives.uncertainty import UncertaintyWeighting
from shoptransfer.training import MISSING, Classifier

KINDS = ("classes", "value", "tasks")
VALUE = "value"  # the annotation holding a regression's numbers


class ValueHead(nn.Module):
    """``center + scale * (w . f + b)``: one number per example.

    ``center`` and ``scale`` (the mean and standard deviation of the values a model first
    trains on) start a fresh head near the values' mean and let it learn at the same rate
    whatever their units; they are saved with the weights.
    """

    out_features = 1

    def __init__(self, input_size: int, center: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(input_size, 1)
        self.register_buffer("center", torch.tensor(float(center)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.center + self.scale * self.linear(features).squeeze(-1)


class FixedWeighting(nn.Module):
    """``sum_t w_t L_t`` with weights given up front."""

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer(
            "task_weights", torch.tensor(list(weights), dtype=torch.float32), persistent=False
        )

    def forward(self, losses: torch.Tensor, tasks: Sequence[int]) -> torch.Tensor:
        return (self.task_weights[list(tasks)] * losses).sum()

    def weights(self) -> torch.Tensor:
        return self.task_weights.clone()


class MultiHead(nn.Module):
    """A linear head per task over shared features; ``forward`` returns ``{task: logits}``.

    :meth:`loss` is each head's cross-entropy over the examples labelled for it (labels: a
    matrix with a column per task, :data:`~shoptransfer.training.MISSING` where unlabelled),
    combined by ``weighting``: ``"uncertainty"`` or one fixed weight per task. A head with no
    labels in a batch adds nothing, so its weights get no gradient there.
    """

    def __init__(
        self, input_size: int, tasks: Mapping[str, int], weighting: str | Sequence[float]
    ) -> None:
        super().__init__()
        self.names = list(tasks)
        self.heads = nn.ModuleList([nn.Linear(input_size, n) for n in tasks.values()])
        self.weighting: nn.Module = (
            UncertaintyWeighting(len(tasks))
            if weighting == "uncertainty"
            else FixedWeighting(list(weighting))
        )

    @property
    def in_features(self) -> int:
        return self.heads[0].in_features

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(features) for name, head in zip(self.names, self.heads)}

    def loss(
        self,
        logits: dict[str, torch.Tensor],
        labels: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        losses, tasks = [], []
        for column, name in enumerate(self.names):
            target = labels[:, column]
            labelled = target != MISSING
            if not bool(labelled.any()):
                continue
            loss = nn.functional.cross_entropy(
                logits[name][labelled], target[labelled], reduction="none"
            )
            if weights is not None:
                loss = (loss * weights[labelled]).sum() / weights[labelled].sum()
            losses.append(loss.mean())
            tasks.append(column)
        if not losses:  # no head labelled in this batch: nothing to learn from it
            return sum((v.sum() * 0.0 for v in logits.values()), torch.zeros(()))
        return self.weighting(torch.stack(losses), tasks)

    def task_weights(self) -> dict[str, float]:
        """Each task's current loss weight (learned ones: ``exp(-s_t)``)."""
        return dict(zip(self.names, self.weighting.weights().tolist()))


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What a model predicts: ``classes``, a ``value``, or the classes of several ``tasks``.

    ``weighting`` (multi-task): ``"uncertainty"`` or ``"fixed"`` with ``task_weights``, one per
    task in the order of ``tasks``.
    """

    kind: str = "classes"
    classes: tuple[str, ...] = ()
    tasks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    weighting: str = "fixed"
    task_weights: tuple[float, ...] = ()

    @classmethod
    def of_classes(cls, classes: Sequence[str]) -> Outputs:
        return cls("classes", tuple(classes))

    @classmethod
    def value(cls) -> Outputs:
        return cls(VALUE)

    @classmethod
    def of_tasks(
        cls, tasks: Mapping[str, Sequence[str]], weights: Mapping[str, float] | str = "equal"
    ) -> Outputs:
        """Heads ``{task: classes}``; ``weights``: per task (1 where not given), ``"equal"``
        or ``"uncertainty"``."""
        pairs = tuple((name, tuple(classes)) for name, classes in tasks.items())
        if weights == "uncertainty":
            return cls("tasks", tasks=pairs, weighting="uncertainty")
        given = {} if isinstance(weights, str) else dict(weights)
        fixed = tuple(float(given.get(name, 1.0)) for name, _ in pairs)
        return cls("tasks", tasks=pairs, weighting="fixed", task_weights=fixed)

    @property
    def loss(self) -> str:
        """The trainer's loss (:class:`~shoptransfer.training.TrainingSettings`)."""
        return {"classes": "cross-entropy", VALUE: "mse", "tasks": "multi-task"}[self.kind]

    @property
    def task_names(self) -> list[str]:
        return [name for name, _ in self.tasks]

    def labels(self, domain: Domain) -> np.ndarray:
        """``domain``'s training labels: class ids, float32 numbers, or a class-id matrix with
        a column per task (:data:`MISSING` where an example, or the domain, has no label)."""
        if self.kind == "classes":
            return domain.label_ids(self.classes)
        if self.kind == VALUE:
            if VALUE not in domain.annotations:
                raise DataError(f"{domain.where}: domain '{domain.name}' has no numbers to learn")
            return domain.annotations[VALUE].astype(np.float32)
        matrix = np.full((len(domain), len(self.tasks)), MISSING, dtype=np.int64)
        for column, (name, classes) in enumerate(self.tasks):
            if name not in domain.annotations:
                continue
            index = {c: i for i, c in enumerate(classes)}
            cells = domain.annotations[name]
            unknown = sorted({str(c) for c in cells if c and c not in index})
            if unknown:
                raise DataError(
                    f"{domain.where}: '{name}' labels {unknown} of domain '{domain.name}' are "
                    f"not in that head's classes {list(classes)}"
                )
            matrix[:, column] = [index[c] if c else MISSING for c in cells]
        return matrix

    def build(
        self,
        input_size: int,
        encoder: nn.Module | None = None,
        precision: str = "fp32",
        values: np.ndarray | None = None,
    ) -> Classifier:
        """The model: ``encoder`` (or none: it reads features) under this kind's head.

        ``values``: the numbers a regression head first trains on (their mean and spread
        scale the head)."""
        head: nn.Module | None = None
        if self.kind == VALUE:
            center, scale = 0.0, 1.0
            if values is not None and len(values):
                center = float(np.mean(values))
                scale = float(np.std(values)) or 1.0
            head = ValueHead(input_size, center, scale)
        elif self.kind == "tasks":
            sizes = {name: len(classes) for name, classes in self.tasks}
            weighting = "uncertainty" if self.weighting == "uncertainty" else self.task_weights
            head = MultiHead(input_size, sizes, weighting)
        return Classifier(len(self.classes), input_size, encoder, precision, head=head)

    def predictions(self, outputs: Any) -> Any:
        """A model's outputs as predictions: class probabilities, numbers, or per task."""
        if self.kind == VALUE:
            return np.asarray(outputs, dtype=np.float64).reshape(-1)
        if self.kind == "tasks":
            return {name: _softmax(outputs[name]) for name in self.task_names}
        return _softmax(outputs)

    def spec(self) -> dict[str, Any] | None:
        """What a saved model records to rebuild its head (nothing for classification)."""
        if self.kind == "classes":
            return None
        if self.kind == VALUE:
            return {"kind": VALUE}
        return {
            "kind": "tasks",
            "tasks": {name: list(classes) for name, classes in self.tasks},
            "weighting": self.weighting,
            "task_weights": list(self.task_weights),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, classes: Sequence[str]) -> Outputs:
        if spec is None:
            return cls.of_classes(classes)
        if spec["kind"] == VALUE:
            return cls.value()
        pairs = tuple((name, tuple(c)) for name, c in spec["tasks"].items())
        return cls("tasks", (), pairs, spec["weighting"], tuple(spec["task_weights"]))


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1).numpy()
