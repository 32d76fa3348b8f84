"""What the tasks learned from a labelled target share (classification, regression,
multi-task): describing a domain, holding out the target's test set, checking the recipes
against the data, the fixed sample of the test set the quality curve scores, and
:class:`HeldOutTask`, the base of the tasks whose budgets count target examples.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data.domain import Domain
from shoptransfer.data.leakage import duplicates_in_training, leakage_warning
from shoptransfer.data.reading import read_annotated_table
from shoptransfer.data.sampling import sample_count, sample_share
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.heads import Outputs
from shoptransfer.tasks.base import Task, TaskData


def describe_domain(domain: Domain, part_of: str | None = None) -> dict[str, Any]:
    """What a run records about a domain: size, classes, dropped rows, data hash (and a
    summary of its numbers or of each head's labels, where it has them).

    ``part_of`` names the domain a split was drawn from (the target's pool and test set): its
    rows were dropped (and photos converted) when that domain's file was read and are counted
    there once, so a part records none of them."""
    read_here = part_of is None
    return {
        "name": domain.name,
        "path": domain.source,
        **({"part_of": part_of} if part_of is not None else {}),
        "examples": len(domain),
        "class_counts": domain.class_counts(),
        "holds": domain.holds,
        **({"dropped_rows": domain.dropped} if read_here else {}),
        **(
            {"converted": domain.converted}
            if read_here and getattr(domain, "converted", None)
            else {}
        ),
        **({"inputs": domain.input_kinds} if hasattr(domain, "input_kinds") else {}),
        **(
            {"missing_inputs": domain.missing}
            if read_here and getattr(domain, "missing", None) is not None
            else {}
        ),
        **(
            {"pii_scrubbed": domain.scrubbed}
            if read_here and domain.holds in ("texts", "inputs")
            else {}
        ),
        **({"annotations": _summary(domain)} if domain.annotations else {}),
        "data_hash": domain.data_hash(),
    }


def describe_data(
    config: Any, source: Domain | None, target: Domain, pool: Domain, test: Domain
) -> tuple[dict[str, Any], list[str]]:
    """What a run records about a task's domains (``data`` in ``results.json``), and the
    warnings it prints once: rows dropped and photos converted by each file read, and test
    examples that are also in the training data (the source, and the target's pool when a
    budget draws labels from it)."""
    own_test_file = config.target_test is not None
    description: dict[str, Any] = {
        **({"source": describe_domain(source)} if source is not None else {}),
        "target": describe_domain(target),
        "target_pool": describe_domain(pool, part_of="target"),
        "target_test": describe_domain(test, part_of=None if own_test_file else "target"),
    }
    warnings = [line for part in description.values() for line in reading_warnings(part)]
    # at budget 0 no label of the pool reaches a fit (its texts may be unlabeled target data,
    # as in unsupervised adaptation, where the pool is the test set by design)
    labelled_pool = pool if any(budget != 0 for budget in config.budgets) else None
    description["leakage"] = duplicates_in_training(
        test, {"source": source, "target_pool": labelled_pool}
    )
    leak = leakage_warning(test.where, description["leakage"])
    return description, warnings + ([leak] if leak else [])


def reading_warnings(part: dict[str, Any]) -> list[str]:
    """One line each for the rows a file's reader dropped, the photos it converted and the
    personal data it replaced in texts (``pii_scrubbed``; ``scrub_pii: false`` keeps it)."""
    lines = []
    changes = (
        ("dropped_rows", "row", "dropped"),
        ("converted", "image", "converted"),
        ("pii_scrubbed", "personal data span", "replaced by placeholders"),
    )
    for key, what, done in changes:
        counts = part.get(key) or {}
        if counts:
            total = sum(counts.values())
            reasons = ", ".join(f"{reason}: {count}" for reason, count in counts.items())
            lines.append(
                f"{part['path']}: {total} {what}{'s' if total > 1 else ''} {done} while reading "
                f"({reasons})"
            )
    missing = {
        name: counts for name, counts in (part.get("missing_inputs") or {}).items() if counts
    }
    if missing:
        total = sum(sum(counts.values()) for counts in missing.values())
        reasons = "; ".join(
            f"{name}: " + ", ".join(f"{reason} {count}" for reason, count in counts.items())
            for name, counts in missing.items()
        )
        lines.append(
            f"{part['path']}: {total} input{'s' if total > 1 else ''} missing, kept as missing "
            f"({reasons})"
        )
    return lines


def _summary(domain: Domain) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, values in domain.annotations.items():
        if values.dtype.kind == "f":
            summary[key] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
            }
        else:
            counts = Counter(str(v) if v else "(none)" for v in values)
            summary[key] = dict(sorted(counts.items()))
    return summary


def hold_out_test(
    config: Any,
    target: Domain,
    read: Callable[[Any], Domain],
    split: Callable[[Domain, float, int], tuple[Domain, Domain]],
) -> tuple[Domain, Domain]:
    """The target's pool (budgets draw from it) and its test set: ``config.target_test`` when
    given, else ``split`` holds out ``test_fraction`` of the target with ``split_seed``."""
    if config.target_test is not None:
        return target, read(config.target_test)
    test, pool = split(target, config.test_fraction, config.split_seed)
    if pool is None:
        counts = target.class_counts()
        raise DataError(
            f"{target.where}: the target '{target.name}' has {len(target)} examples"
            f"{f' {counts}' if counts else ''}; holding out test_fraction "
            f"{config.test_fraction:g} for the test set (at least one per class) leaves none "
            "for the labelled pool; add examples or give target_test"
        )
    return pool, test


def check_recipes(config: Any, data: TaskData, recipes: list[Any]) -> None:
    """Each recipe's settings against the data, and budget 0 against a missing source."""
    reference = data.source if data.source is not None else data.pool
    for recipe in recipes:
        check_inputs(recipe, reference)
        if data.source is None and recipe.uses_source and 0 in config.budgets:
            raise ConfigError(
                f"recipe '{recipe.name}' at budget 0 trains on the source only, and the "
                "experiment has no source; remove budget 0 or add a source"
            )
        recipe.validate(data.source if data.source is not None else data.pool)


def check_inputs(recipe: Any, domain: Domain) -> None:
    """A ConfigError when ``recipe`` reads one input per example and ``domain`` holds several,
    or the other way round."""
    several = domain.holds == "inputs"
    if several and not getattr(recipe, "several_inputs", False):
        names = ", ".join(getattr(domain, "input_kinds", {}))
        raise ConfigError(
            f"recipe '{recipe.name}' reads one input per example; domain '{domain.name}' holds "
            f"several ({names}): use recipe 'fusion' (its option inputs picks one or more)"
        )
    if getattr(recipe, "several_inputs", False) and not several:
        raise ConfigError(
            f"recipe '{recipe.name}' reads several inputs per example; domain '{domain.name}' "
            f"holds {domain.holds}: give the domain inputs: {{name: {{text: column}}, ...}}"
        )


def quality_sample(config: Any, test: Domain) -> Domain:
    """The fixed sample of the target test set scored after every epoch."""
    order = np.random.default_rng(config.split_seed).permutation(len(test))
    return test.subset(np.sort(order[: config.quality_sample]))


class HeldOutTask(Task):
    """A task whose budgets count labelled target examples (an integer, a fraction of the
    pool, or ``all``); the target is split at random into a pool and a test set.

    A subclass says what an entry's examples are annotated with (:meth:`annotations`), what
    the model predicts (:meth:`outputs`) and how predictions are scored (:meth:`metrics`).
    """

    budget_header: ClassVar[str] = "examples"

    @abstractmethod
    def annotations(self, entry: Any) -> dict[str, Any]:
        """The keywords of :func:`~shoptransfer.data.readers.read_table` naming the columns an
        entry's examples are annotated with (its numbers, its label columns)."""

    def read(self, entry: Any) -> Domain:
        """The table (of texts or photos) an entry of the experiment file names, with its
        annotations."""
        return read_annotated_table(entry, **self.annotations(entry))

    @abstractmethod
    def outputs(self, source: Domain | None, pool: Domain, test: Domain) -> Outputs:
        """What the model predicts, checked against the data (a DataError when it cannot)."""

    @abstractmethod
    def metrics(self, model: Any, test: Domain, data: TaskData) -> dict[str, Any]:
        """The metrics of ``model`` on ``test``."""

    def prepare(self, cache: EmbeddingCache) -> TaskData:
        config = self.config
        source = self.read(config.source) if config.source is not None else None
        target = self.read(config.target)
        pool, test = hold_out_test(config, target, self.read, sample_share)
        description, warnings = describe_data(config, source, target, pool, test)
        outputs = self.outputs(source, pool, test)
        return TaskData(
            source, pool, test, pool.without_labels(), None, description, outputs, warnings
        )

    def check(self, data: TaskData, recipes: list[Any]) -> None:
        super().check(data, recipes)
        self.check_budgets(data)
        check_recipes(self.config, data, recipes)

    def check_budgets(self, data: TaskData) -> None:
        """That the pool holds every integer budget."""
        too_large = [b for b in self.config.budgets if isinstance(b, int) and b > len(data.pool)]
        if too_large:
            raise ConfigError(
                f"budgets: {too_large} target examples asked for, but the target's pool "
                f"'{data.pool.name}' has {len(data.pool)}"
            )

    def draw(self, data: TaskData, budget: Any, seed: int) -> Domain | None:
        if budget == "all":
            return data.pool
        if isinstance(budget, float):
            return sample_share(data.pool, budget, seed)[0]
        return sample_count(data.pool, int(budget), seed)[0] if int(budget) > 0 else None

    def evaluate(self, model: Any, data: TaskData, trained_on: Any = None) -> dict[str, Any]:
        return {"metrics": self.metrics(model, data.test, data)}

    def quality_scorer(self, data: TaskData) -> Callable[[Any], float] | None:
        """The primary metric on a fixed sample of the test set, signed so that higher is
        better (a regression's curve holds minus the RMSE)."""
        if not self.config.track_quality:
            return None
        sample = quality_sample(self.config, data.test)
        sign = 1.0 if self.higher_is_better else -1.0

        def score(predictor: Any) -> float:
            return sign * self.metrics(predictor, sample, data)[self.primary_metric]

        return score
