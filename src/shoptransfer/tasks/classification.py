"""Classification: labels of texts, images or vectors; macro-F1 decides.

The source domain (optional) defines the label vocabulary; the target is split into a labeled
pool (budgets draw k labels per class, a fraction, or all of it) and a test set fixed across
seeds, unless a separate target test set is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.features import gap_features
from shoptransfer.data import read_domain
from shoptransfer.data.domain import Domain, shared_label_vocabulary
from shoptransfer.data.sampling import sample_fraction, sample_per_class
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.compare import domain_gap
from shoptransfer.evaluation.metrics import classification_metrics
from shoptransfer.evaluation.report import Column
from shoptransfer.tasks.base import TEST_PROBABILITIES, Task, TaskData, register_task
from shoptransfer.tasks.held_out import (
    check_recipes,
    describe_data,
    hold_out_test,
    quality_sample,
)


def draw_budget(pool: Domain, budget: int | float | str, seed: int) -> Domain | None:
    """The labeled target examples of a budget: k per class, a fraction, or the whole pool."""
    if budget == "all":
        return pool
    if isinstance(budget, float):
        return sample_fraction(pool, budget, seed)[0]
    return sample_per_class(pool, int(budget), seed)[0] if int(budget) > 0 else None


@register_task
class ClassificationTask(Task):
    name: ClassVar[str] = "classification"
    primary_metric: ClassVar[str] = "macro_f1"
    budget_header: ClassVar[str] = "labels/class"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("accuracy", "accuracy"),
        Column("macro_f1", "macro-F1"),
    )

    def prepare(self, cache: EmbeddingCache) -> TaskData:
        config = self.config
        source = read_domain(config.source) if config.source is not None else None
        target = read_domain(config.target)
        self.target = target
        pool, test = self._split_target(target)
        classes = self._classes(source, target, test)
        description, warnings = describe_data(config, source, target, pool, test)
        unlabeled = pool.unlabeled_with(test) if config.transductive else pool.without_labels()
        return TaskData(source, pool, test, unlabeled, classes, description, warnings=warnings)

    def _split_target(self, target: Domain) -> tuple[Domain, Domain]:
        """The target's labeled pool (budgets are drawn from it) and its test set."""
        if self.config.target_test is None and not target.labeled:
            raise DataError(
                f"{target.source}: the target has no labels; give target_test to evaluate on"
            )
        pool, test = hold_out_test(self.config, target, read_domain, sample_fraction)
        if not test.labeled:
            raise DataError(f"{test.source}: the target test set needs labels")
        return pool, test

    def _classes(self, source: Domain | None, target: Domain, test: Domain) -> list[str]:
        if source is None:  # the target's labels define the vocabulary
            labeled = target if target.labeled else test
            if len(labeled.classes) < 2:
                raise DataError(
                    f"{labeled.where}: the target '{labeled.name}' has a single class "
                    f"{labeled.classes} and the experiment has no source; expected at least two "
                    "classes"
                )
            classes = shared_label_vocabulary(labeled, test)
        else:
            classes = shared_label_vocabulary(source, target)
            shared_label_vocabulary(source, test)
        return classes

    def check(self, data: TaskData, recipes: list[Any]) -> None:
        super().check(data, recipes)
        counts = data.pool.class_counts()
        scratch = [r.name for r in recipes if not r.uses_source]
        if len(counts) < 2 and scratch and any(b != 0 for b in self.config.budgets):
            raise DataError(
                f"{data.pool.where}: the target's labeled pool holds only {counts} once the test "
                f"set is held out; recipe '{scratch[0]}' trains on target labels alone and needs "
                "two classes (add labeled target rows, or give target_test)"
            )
        smallest = min(counts.values())
        too_large = [b for b in self.config.budgets if isinstance(b, int) and b > smallest]
        if too_large:
            raise ConfigError(
                f"budgets: {too_large} labels per class asked for, but the target's labeled pool "
                f"'{data.pool.name}' has only {counts} (at most {smallest} per class)"
            )
        check_recipes(self.config, data, recipes)

    def draw(self, data: TaskData, budget: Any, seed: int) -> Domain | None:
        return draw_budget(data.pool, budget, seed)

    def evaluate(self, model: Any, data: TaskData, trained_on: Any = None) -> dict[str, Any]:
        probabilities = model.predict_proba(data.test.inputs)
        labels = data.test.label_ids(data.classes)
        predicted = probabilities.argmax(axis=1)
        return {
            "metrics": classification_metrics(labels, predicted, data.classes),
            # for the runner's seed ensembles; not written into a record
            TEST_PROBABILITIES: probabilities,
        }

    def ensemble(self, probabilities: list[np.ndarray], data: TaskData) -> dict[str, Any]:
        """The metrics of several models' test probabilities averaged (an ensemble)."""
        mean = np.mean(np.stack(probabilities), axis=0)
        labels = data.test.label_ids(data.classes)
        return classification_metrics(labels, mean.argmax(axis=1), data.classes)

    def quality_scorer(self, data: TaskData) -> Callable[[Any], float] | None:
        if not self.config.track_quality:
            return None
        sample = quality_sample(self.config, data.test)
        classes = data.classes
        labels = sample.label_ids(classes)

        def score(predictor: Any) -> float:
            predicted = predictor.predict_proba(sample.inputs).argmax(axis=1)
            return classification_metrics(labels, predicted, classes)["macro_f1"]

        return score

    def extra_results(self, data: TaskData, cache: EmbeddingCache) -> dict[str, Any]:
        results: dict[str, Any] = {"classes": data.classes}
        if self.config.domain_gap and data.source is not None:
            features = gap_features(
                data.source,
                self.target,
                self.config.backbone,
                max_length=self.config.max_length,
                image_size=self.config.image_size,
                cache=cache,
            )
            results["domain_gap"] = domain_gap(*features)
        return results
