"""Next-item recommendation: rank the whole catalogue for each held-out case; NDCG@10 decides.

The source (optional) is another domain's histories that transfer recipes pre-train on. A
budget is the share of the target's users whose training histories a model may learn from
(``all``: every user); every user's validation and test cases are ranked, so budgets compare
on the same questions.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data.interactions import InteractionDomain, read_interaction_domain
from shoptransfer.data.leakage import leakage_warning, repeated_next_items
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.compare import domain_gap
from shoptransfer.evaluation.ranking import case_ranks, evaluate_ranking, ranking_metrics
from shoptransfer.evaluation.report import Column
from shoptransfer.recommenders.layers import item_text_embeddings
from shoptransfer.runs import PeakMemory, resident_mb
from shoptransfer.tasks.base import Task, TaskData, register_task

# the text recipes' defaults, for a run whose recipes name no backbone
GAP_BACKBONE = "minilm-l6"
GAP_MAX_LENGTH = 64


@register_task
class RecommendationTask(Task):
    name: ClassVar[str] = "recommendation"
    primary_metric: ClassVar[str] = "ndcg@10"
    budget_header: ClassVar[str] = "users"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("recall@10", "Recall@10", 1.0, 4),
        Column("ndcg@10", "NDCG@10", 1.0, 4),
    )

    def prepare(self, cache: EmbeddingCache) -> TaskData:
        config = self.config
        target = read_interaction_domain(config.target)
        source = read_interaction_domain(config.source) if config.source else None
        for domain, role in ((target, "target"), (source, "source")):
            if domain is None:
                continue
            parts = ("test", "valid") if role == "target" else ("valid",)
            for part in parts:
                if not len(getattr(domain, part)):
                    raise DataError(
                        f"{domain.source or domain.name}: the {role} has no "
                        f"{'validation' if part == 'valid' else 'test'} cases (a leave-one-out "
                        "split needs users with 3 or more interactions); every metric would "
                        "be 0"
                    )
        description = {
            "target": target.summary(),
            **({"source": source.summary()} if source else {}),
            "leakage": repeated_next_items(target),
        }
        warnings = [
            f"{domain.source}: read with changes: {domain.report}"
            for domain in (source, target)
            if domain is not None and domain.report
        ]
        leak = leakage_warning(target.source or target.name, description["leakage"])
        warnings += [leak] if leak else []
        return TaskData(source, target, target, None, None, description, warnings=warnings)

    def extra_results(self, data: TaskData, cache: EmbeddingCache) -> dict[str, Any]:
        """With ``domain_gap`` and a source: how far apart the two catalogues' item texts lie
        on the frozen text backbone the run's first text recipe reads (proxy A-distance and
        MMD on at most 1,000 items of each)."""
        if not self.config.domain_gap or data.source is None:
            return {}
        entries = [entry.options for entry in self.config.recipes if "backbone" in entry.options]
        backbone = entries[0]["backbone"] if entries else GAP_BACKBONE
        length = entries[0].get("text_max_length", GAP_MAX_LENGTH) if entries else GAP_MAX_LENGTH
        vectors = [
            item_text_embeddings(backbone, length, domain.items, domain.item_text, cache)
            for domain in (data.source, data.pool)
        ]
        return {"domain_gap": {**domain_gap(*vectors), "measured_on": f"item texts, {backbone}"}}

    def primary_key(self) -> str:
        """NDCG@10, or the largest cut-off below 10 the run measures (else the smallest)."""
        ks = sorted(self.config.ks)
        below = [k for k in ks if k <= 10]
        return f"ndcg@{below[-1] if below else ks[0]}"

    def check(self, data: TaskData, recipes: list[Any]) -> None:
        super().check(data, recipes)
        for recipe in recipes:
            recipe.validate(None)
            if getattr(recipe, "pretrain", False) and data.source is None:
                raise ConfigError(
                    f"recipe '{recipe.name}' pre-trains on a source domain; add 'source:' to the "
                    "config or set pretrain: false"
                )

    def draw(self, data: TaskData, budget: Any, seed: int) -> InteractionDomain:
        if budget == "all" or budget == 1:
            return data.pool
        return data.pool.with_training_users(float(budget), seed)

    def evaluate(self, model: Any, data: TaskData, trained_on: Any = None) -> dict[str, Any]:
        """Test and validation metrics; given the budget's training domain (``trained_on``),
        also the test cases whose item no training history holds (``cold_start``)."""
        ks, batch_size = self.config.ks, self.config.eval_batch_size
        item_batch_size = self.config.eval_item_batch_size
        # a dot-product model over a large catalogue is ranked in chunks of items
        large = hasattr(model, "dot_product") and model.n_items >= item_batch_size
        scorer = model.dot_product() if large else model.scores
        valid = evaluate_ranking(scorer, data.test.valid, ks, batch_size, item_batch_size)
        before = resident_mb() or 0.0
        with PeakMemory() as memory:
            started = time.perf_counter()
            ranks = case_ranks(scorer, data.test.test, batch_size, item_batch_size)
            test = ranking_metrics(ranks, ks)
            seconds = time.perf_counter() - started
        evaluation = {
            "metrics": test,
            "validation_metrics": valid,
            "eval_seconds": round(seconds, 2),
            "eval_peak_mb": round(memory.peak_mb, 1),
            "eval_extra_mb": round(max(0.0, memory.peak_mb - before), 1),
        }
        if isinstance(trained_on, InteractionDomain):
            cold = trained_on.unseen_targets(data.test.test)
            evaluation["cold_start"] = {
                "cases": int(cold.sum()),
                "metrics": ranking_metrics(ranks[cold], ks) if cold.any() else {},
            }
        return evaluation
