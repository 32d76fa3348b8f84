"""Running recommendation experiments and recommending with a saved run.

``run_recommendation`` trains every recipe x seed on the target's training histories (after
pre-training on the source, for the transfer recipes), evaluates by full ranking on the
validation and test cases, and writes ``results.json`` (same layout as a classification run:
per result the metrics, train and evaluation seconds, peak memory and trainable parameters).
Recipes that share a pre-training on the source train it once per run; each is charged its
full time (``reused_stage_seconds`` of its ``train_seconds``), as in a classification run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.catalogue import make_recipe
from shoptransfer.config import InteractionDomainConfig, RecommendationConfig, load_config
from shoptransfer.data.interactions import (
    InteractionDomain,
    read_interactions,
    read_recbole_split,
)
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.ranking import evaluate_ranking
from shoptransfer.files import atomic_write_json, atomic_write_text
from shoptransfer.metering import StageCache, measure
from shoptransfer.progress import showing_progress
from shoptransfer.recommenders.base import ItemRanker, load_ranker
from shoptransfer.runs import (
    RESULTS_FILE,
    PeakMemory,
    environment,
    load_results,
    new_run_dir,
    resident_mb,
)


def read_interaction_domain(config: InteractionDomainConfig) -> InteractionDomain:
    """Read the interaction domain a config entry describes."""
    path = Path(config.path).expanduser()
    fmt = config.format or ("recbole-split" if path.is_dir() else None)
    if fmt == "recbole-split":
        domain = read_recbole_split(path)
    else:
        domain = read_interactions(
            path,
            user=config.user,
            item=config.item,
            time=config.time,
            items_path=config.items,
            item_id=config.item_id,
            item_text=config.item_text,
            format=None if fmt == "atomic" else fmt,
            k_core_threshold=config.k_core,
            max_history=config.max_history,
        )
    if config.name:
        domain.name = config.name
    return domain


def _recipes(config: RecommendationConfig, has_source: bool) -> list[Any]:
    recipes = []
    for entry in config.recipes:
        recipe = make_recipe(entry.name, **entry.options)
        if getattr(recipe, "task", "") != "recommendation":
            raise ConfigError(
                f"recipe '{entry.name}' is a {recipe.task} recipe; a recommendation run takes "
                "popularity, item-knn, bpr, sasrec or the text-seq recipes"
            )
        recipe.validate(None)
        if getattr(recipe, "pretrain", False) and not has_source:
            raise ConfigError(
                f"recipe '{entry.name}' pre-trains on a source domain; add 'source:' to the "
                "config or set pretrain: false"
            )
        recipes.append(recipe)
    return recipes


def run_recommendation(
    config: RecommendationConfig,
    show_progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train and evaluate every recipe x seed; return the run folder.

    ``show_progress=False`` silences every progress bar of the run.
    """
    with showing_progress(show_progress):
        return _run_recipes(config, on_result)


def _run_recipes(
    config: RecommendationConfig, on_result: Callable[[dict[str, Any]], None] | None
) -> Path:
    target = read_interaction_domain(config.target)
    source = read_interaction_domain(config.source) if config.source else None
    _recipes(config, source is not None)  # every name and option checked before any work
    run_dir = new_run_dir(config.output_dir, config.name)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False))
    cache = EmbeddingCache(Path(config.cache_dir) / "embeddings" if config.cache_dir else None)
    stages = StageCache()  # pre-trainings shared by this run's recipes (each charged in full)
    payload: dict[str, Any] = {
        "task": "recommendation",
        "config": config.model_dump(),
        "domains": {
            "target": target.summary(),
            **({"source": source.summary()} if source else {}),
        },
        "results": [],
        **environment(),
    }
    for seed in config.seeds:
        for entry, recipe in zip(config.recipes, _recipes(config, source is not None)):
            recipe.seed = seed
            with PeakMemory() as train_memory, measure() as meter:
                started = time.perf_counter()
                ranker = recipe.fit(source, target, cache, stages=stages)
                train_seconds = time.perf_counter() - started
            result = {
                "recipe": entry.name,
                "family": recipe.family,
                "seed": seed,
                "options": entry.options,
                # a stage reused from an earlier recipe of the run costs this one its full time
                "train_seconds": round(train_seconds + meter.reused_seconds, 2),
                "reused_stage_seconds": round(meter.reused_seconds, 2),
                "train_peak_mb": round(train_memory.peak_mb, 1),
                "trainable_parameters": ranker.trainable_parameters,
                **evaluate(ranker, target, config.ks, config.eval_batch_size),
            }
            if config.save_models:
                ranker.save(run_dir / "models" / f"{entry.name}-seed{seed}")
            payload["results"].append(result)
            payload["summary"] = summarise(payload["results"])
            atomic_write_json(run_dir / RESULTS_FILE, payload)
            if on_result is not None:
                on_result(result)
    return run_dir


def evaluate(
    ranker: ItemRanker, domain: InteractionDomain, ks: list[int], batch_size: int
) -> dict[str, Any]:
    """Validation and test metrics by full ranking, with time and memory of the test pass."""
    valid = evaluate_ranking(ranker.scores, domain.valid, ks, batch_size)
    before = resident_mb() or 0.0
    with PeakMemory() as memory:
        started = time.perf_counter()
        test = evaluate_ranking(ranker.scores, domain.test, ks, batch_size)
        seconds = time.perf_counter() - started
    return {
        "valid": valid,
        "test": test,
        "eval_seconds": round(seconds, 2),
        "eval_peak_mb": round(memory.peak_mb, 1),
        "eval_extra_mb": round(max(0.0, memory.peak_mb - before), 1),
    }


def summarise(results: list[dict[str, Any]], metric: str = "ndcg@10") -> dict[str, Any]:
    """Per recipe: mean and std of the test metrics; transfer worse than the best scratch
    baseline (beyond the seeds' spread) is flagged as negative transfer."""
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_recipe.setdefault(result["recipe"], []).append(result)
    summary: dict[str, Any] = {}
    for name, rows in by_recipe.items():
        metrics = {
            key: {
                "mean": float(np.mean([r["test"][key] for r in rows])),
                "std": float(np.std([r["test"][key] for r in rows])),
            }
            for key in rows[0]["test"]
        }
        summary[name] = {
            "family": rows[0]["family"],
            "seeds": len(rows),
            "test": metrics,
            "train_seconds": float(np.mean([r["train_seconds"] for r in rows])),
            "eval_seconds": float(np.mean([r["eval_seconds"] for r in rows])),
        }
    baselines = [s for s in summary.values() if s["family"] == "baseline"]
    metric = _ndcg_key(results[0]["test"], metric)
    if baselines:
        best = max(baselines, key=lambda s: s["test"][metric]["mean"])
        for entry in summary.values():
            if entry["family"] == "baseline":
                continue
            gap = best["test"][metric]["mean"] - entry["test"][metric]["mean"]
            noise = best["test"][metric]["std"] + entry["test"][metric]["std"]
            entry["negative_transfer"] = bool(gap > noise)
    return summary


def format_recommendation(summary: dict[str, Any], ks: tuple[int, ...] = (10, 50)) -> str:
    """A plain-text table of the run's summary."""
    columns = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    lines = ["recipe                 family         " + "  ".join(f"{c:>10}" for c in columns)]
    for name, entry in summary.items():
        cells = []
        for column in columns:
            value = entry["test"].get(column)
            cells.append(f"{value['mean']:10.4f}" if value else f"{'—':>10}")
        flag = "  NEGATIVE TRANSFER" if entry.get("negative_transfer") else ""
        lines.append(f"{name:<22} {entry['family']:<14} " + "  ".join(cells) + flag)
    return "\n".join(lines)


def _ndcg_key(metrics: dict[str, float], preferred: str = "ndcg@10") -> str:
    """``preferred`` when the run measured it, else the first NDCG cut-off it has."""
    if preferred in metrics:
        return preferred
    return next(key for key in metrics if key.startswith("ndcg@"))


def _best_recipe(results: dict[str, Any]) -> tuple[str, int]:
    metric = _ndcg_key(results["results"][0]["valid"])
    best = max(results["results"], key=lambda r: r["valid"][metric])
    return best["recipe"], best["seed"]


def recommend(
    run_dir: str | Path,
    user: str,
    k: int = 10,
    recipe: str | None = None,
    seed: int | None = None,
    explain: int = 3,
) -> dict[str, Any]:
    """Top-``k`` items for ``user`` after their whole known history, with explanations.

    The model is the run's ``recipe`` (default: the best by validation NDCG@10). Each item
    comes with the history items that contributed most, by the model's own measure
    (``explanation`` says which).
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    if results.get("task") != "recommendation":
        raise DataError(f"{run_dir}: not a recommendation run")
    config = load_config(run_dir / "config.yaml")
    chosen, chosen_seed = _best_recipe(results) if recipe is None else (recipe, seed or 0)
    if seed is not None:
        chosen_seed = seed
    folder = run_dir / "models" / f"{chosen}-seed{chosen_seed}"
    if not folder.exists():
        saved = sorted(p.name for p in (run_dir / "models").glob("*")) or ["none"]
        raise DataError(f"{folder}: no saved model; saved: {', '.join(saved)}")
    domain = read_interaction_domain(config.target)
    if user not in domain.users:
        raise DataError(f"user '{user}' is not in '{domain.name}' ({len(domain.users)} users)")
    cache_root = Path(config.cache_dir) / "embeddings" if config.cache_dir else None
    ranker = load_ranker(folder, domain, EmbeddingCache(cache_root))
    index = domain.users.index(user)
    history = _full_history(domain, index)
    scores = ranker.scores([history], np.array([index]))[0].clone()
    scores[0] = -torch.inf
    scores[torch.from_numpy(history)] = -torch.inf
    top = torch.topk(scores, min(k, domain.n_items - len(set(history.tolist())))).indices
    items = []
    for item in top.tolist():
        weights = ranker.contributions(history, item)
        order = np.argsort(-weights, kind="stable")[:explain] if weights.any() else []
        items.append(
            {
                "item": domain.items[item - 1],
                "text": domain.item_text[item - 1],
                "score": float(scores[item]),
                "because": [
                    {
                        "item": domain.items[history[i] - 1],
                        "text": domain.item_text[history[i] - 1],
                        "weight": round(float(weights[i]), 4),
                    }
                    for i in order
                ],
            }
        )
    return {
        "user": user,
        "recipe": chosen,
        "seed": chosen_seed,
        "explanation": ranker.explanation,
        "history": [domain.items[i - 1] for i in history],
        "items": items,
    }


def _full_history(domain: InteractionDomain, user: int) -> np.ndarray:
    """The user's known history: the test case's history and item, else training."""
    rows = np.flatnonzero(domain.test.users == user)
    if len(rows):
        row = int(rows[0])
        return np.append(domain.test.histories[row], domain.test.targets[row]).astype(np.int64)
    return np.asarray(domain.train[user], dtype=np.int64)
