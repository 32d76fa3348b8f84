"""Multi-task: several classifications of one text (sentiment and category, say), one shared
encoder with a head per task; the mean macro-F1 over the heads decides.

Each domain entry maps head names to label columns (``labels: {sentiment: label, category:
cat}``); a row may lack some of them. The source (optional) trains every head it has labels
for; the target trains only the heads of ``target_tasks`` (budgets draw a count of target
examples, a fraction, or all of the pool); the test scores every head the target's test set has
labels for (``<head>/macro_f1``, ``<head>/accuracy``, and their means ``macro_f1`` and
``accuracy``). The losses of the heads are summed with fixed weights or learned uncertainty
weights (:mod:`shoptransfer.objectives.uncertainty`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from shoptransfer.data.domain import Domain
from shoptransfer.data.reading import read_annotated_table
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.metrics import classification_metrics
from shoptransfer.evaluation.report import Column
from shoptransfer.heads import Outputs
from shoptransfer.tasks.base import TaskData, register_task
from shoptransfer.tasks.classification import draw_budget
from shoptransfer.tasks.held_out import HeldOutTask
from shoptransfer.training import MISSING


def head_labels(domain: Domain | None, head: str) -> set[str]:
    """The labels ``domain`` gives ``head`` (none when it lacks the head)."""
    if domain is None or head not in domain.annotations:
        return set()
    return {str(label) for label in domain.annotations[head] if label}


@register_task
class MultiTask(HeldOutTask):
    name: ClassVar[str] = "multi-task"
    primary_metric: ClassVar[str] = "macro_f1"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("accuracy", "accuracy (mean)"),
        Column("macro_f1", "macro-F1 (mean)"),
    )

    def annotations(self, entry: Any) -> dict[str, Any]:
        return {"label_columns": entry.labels}

    def read(self, entry: Any) -> Domain:
        """A domain with a label column per head; the target's (and its test set's) labels
        are the column ``per_class_of`` names, which budgets are drawn per class of."""
        column = self.config.per_class_of
        if column is None or entry is self.config.source:
            return super().read(entry)
        return read_annotated_table(entry, label=column, **self.annotations(entry))

    def target_tasks(self) -> list[str]:
        """The heads the target's labels train."""
        return list(self.config.target_tasks or self.config.target.labels)

    def outputs(self, source: Domain | None, pool: Domain, test: Domain) -> Outputs:
        """A head per task the source or the target names, its classes those of the source
        (when it has the head; the target's labels must be among them) or else the target's."""
        config = self.config
        heads = list(config.source.labels) if config.source is not None else []
        heads += [head for head in config.target.labels if head not in heads]
        trained = self.target_tasks()
        tasks: dict[str, list[str]] = {}
        for head in heads:
            if head_labels(source, head):
                classes = sorted(head_labels(source, head))
                unknown = sorted((head_labels(pool, head) | head_labels(test, head)) - set(classes))
                if unknown:
                    raise DataError(
                        f"{pool.where}: '{head}' labels {unknown} are unknown to the source "
                        f"'{source.name}' (its '{head}' labels: {classes})"
                    )
            elif head in trained:
                classes = sorted(head_labels(pool, head) | head_labels(test, head))
            else:
                raise ConfigError(
                    f"head '{head}' has no training labels: the source has none and "
                    f"target_tasks {trained} leaves it out"
                )
            if len(classes) < 2:
                where = source if head_labels(source, head) else pool
                raise DataError(
                    f"{where.where}: head '{head}' has a single class {classes}; expected at "
                    "least two"
                )
            tasks[head] = classes
        return Outputs.of_tasks(tasks, config.task_weights)

    def check_budgets(self, data: TaskData) -> None:
        if self.config.per_class_of is None:
            super().check_budgets(data)
            return
        counts = data.pool.class_counts()
        too_large = [
            b for b in self.config.budgets if isinstance(b, int) and b > min(counts.values())
        ]
        if too_large:
            raise ConfigError(
                f"budgets: {too_large} target examples per '{self.config.per_class_of}' class "
                f"asked for, but the target's pool '{data.pool.name}' has only {counts}"
            )

    def draw(self, data: TaskData, budget: Any, seed: int) -> Domain | None:
        """The budget's target examples (at random, or per class of ``per_class_of``) with
        the labels of ``target_tasks`` only (examples left with none of them are left out)."""
        if self.config.per_class_of is None:
            drawn = super().draw(data, budget, seed)
        else:
            drawn = draw_budget(data.pool, budget, seed)
        if drawn is None:
            return None
        trained = drawn.keeping_annotations(self.target_tasks())
        keep = np.zeros(len(trained), dtype=bool)
        for labels in trained.annotations.values():
            keep |= np.array([bool(label) for label in labels])
        return trained.subset(np.flatnonzero(keep)) if keep.any() else None

    def metrics(self, model: Any, test: Domain, data: TaskData) -> dict[str, Any]:
        outputs = data.outputs
        probabilities = model.predict_proba(test.inputs)
        labels = outputs.labels(test)
        metrics: dict[str, Any] = {}
        reports: dict[str, Any] = {}
        for column, (head, classes) in enumerate(outputs.tasks):
            rows = labels[:, column] != MISSING
            if not rows.any():
                continue
            predicted = probabilities[head][rows].argmax(axis=1)
            report = classification_metrics(labels[rows, column], predicted, classes)
            metrics[f"{head}/macro_f1"] = report["macro_f1"]
            metrics[f"{head}/accuracy"] = report["accuracy"]
            reports[head] = report
        if not reports:
            raise DataError(f"{test.where}: the target test set has no labels for any head")
        metrics["macro_f1"] = float(np.mean([r["macro_f1"] for r in reports.values()]))
        metrics["accuracy"] = float(np.mean([r["accuracy"] for r in reports.values()]))
        metrics["heads"] = reports
        return metrics

    def evaluate(self, model: Any, data: TaskData, trained_on: Any = None) -> dict[str, Any]:
        evaluation = super().evaluate(model, data, trained_on)
        head = getattr(getattr(model, "model", None), "head", None)
        if hasattr(head, "task_weights"):  # learned weights are worth seeing
            evaluation["task_weights"] = head.task_weights()
        return evaluation
