"""The public Python API: run an experiment, read its results, predict with a saved model.

The CLI is a thin shell over these functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shoptransfer.backbones import make_encoder
from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.catalogue import make_recipe
from shoptransfer.config import DomainConfig, ExperimentConfig
from shoptransfer.data.domain import Domain, shared_label_vocabulary
from shoptransfer.data.features import FEATURE_FORMATS, read_features
from shoptransfer.data.images import read_image_folder, read_image_table
from shoptransfer.data.readers import TABLE_FORMATS, read_blitzer, read_table
from shoptransfer.data.sampling import sample_fraction, sample_per_class
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.compare import analyse, domain_gap
from shoptransfer.evaluation.metrics import classification_metrics
from shoptransfer.files import atomic_write_json, atomic_write_text
from shoptransfer.metering import QualityMonitor, measure, monitoring
from shoptransfer.progress import showing_progress
from shoptransfer.recipes import load_predictor
from shoptransfer.recipes.base import Predictor, Recipe
from shoptransfer.runs import RESULTS_FILE, PeakMemory, environment, load_results, new_run_dir


def read_domain(config: DomainConfig) -> Domain:
    """Read the domain a config entry describes."""
    path = Path(config.path).expanduser()
    if config.image is not None:
        return read_image_table(
            path,
            image=config.image,
            label=config.label,
            root=config.image_root,
            name=config.name,
            format=config.format,
        )
    fmt = config.format
    if fmt is None and path.is_dir():
        blitzer = all((path / name).exists() for name in ("positive.parsed", "negative.parsed"))
        fmt = "blitzer" if blitzer else "images"
    if fmt == "images":
        return read_image_folder(path, name=config.name)
    suffix = path.suffix.lower()
    only_vectors = suffix in FEATURE_FORMATS and suffix not in TABLE_FORMATS
    if (
        config.vectors is not None
        or fmt in {"npy", "npz", "mat", "svmlight"}
        or (fmt is None and only_vectors)
    ):
        return read_features(
            path,
            vectors=config.vectors or "vectors",
            label=config.label,
            name=config.name,
            format=fmt,
        )
    if fmt == "blitzer":
        return read_blitzer(path, name=config.name)
    return read_table(path, text=config.text, label=config.label, name=config.name, format=fmt)


def _describe_domain(domain: Domain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "path": domain.source,
        "examples": len(domain),
        "class_counts": domain.class_counts(),
        "holds": domain.holds,
        "dropped_rows": domain.dropped,
        **({"converted": domain.converted} if getattr(domain, "converted", None) else {}),
        "data_hash": domain.data_hash(),
    }


def default_backbone(config: ExperimentConfig, source: Domain) -> str:
    """The configured backbone, else the default for what the source holds."""
    if config.backbone is not None:
        return config.backbone
    return "efficientnet-lite0" if source.holds == "images" else "minilm-l6"


def _build_recipes(config: ExperimentConfig, seed: int) -> list[tuple[str, Recipe]]:
    """Each recipe entry's label and recipe, with the experiment's settings and ``seed``."""
    recipes = []
    for entry in config.recipes:
        options = dict(entry.options)
        recipe = make_recipe(entry.name, **options)  # validates the name and options
        if recipe.task != "classification":
            raise ConfigError(
                f"recipe '{entry.name}' is a {recipe.task} recipe; set task: {recipe.task} "
                "and give interaction domains"
            )
        settings = (
            ("backbone", config.backbone),
            ("max_length", config.max_length),
            ("image_size", config.image_size),
        )
        for key, value in settings:
            if hasattr(recipe, key) and key not in options and value is not None:
                setattr(recipe, key, value)
        recipe.seed = seed
        recipes.append((entry.label or entry.name, recipe))
    return recipes


def draw_budget(pool: Domain, budget: int | float | str, seed: int) -> Domain | None:
    """The labeled target examples of a budget: k per class, a fraction, or the whole pool."""
    if budget == "all":
        return pool
    if isinstance(budget, float):
        return sample_fraction(pool, budget, seed)[0]
    return sample_per_class(pool, int(budget), seed)[0] if int(budget) > 0 else None


def _check_budgets(config: ExperimentConfig, pool: Domain) -> None:
    counts = pool.class_counts()
    smallest = min(counts.values())
    too_large = [b for b in config.budgets if isinstance(b, int) and b > smallest]
    if too_large:
        raise ConfigError(
            f"budgets: {too_large} labels per class asked for, but the target's labeled pool "
            f"'{pool.name}' has only {counts} (at most {smallest} per class)"
        )


def prepare_target(config: ExperimentConfig, target: Domain) -> tuple[Domain, Domain]:
    """The target's labeled pool (budgets are drawn from it) and its test set."""
    if config.target_test is not None:
        test = read_domain(config.target_test)
        if not test.labeled:
            raise DataError(f"{test.source}: the target test set needs labels")
        return target, test
    if not target.labeled:
        raise DataError(
            f"{target.source}: the target has no labels; give target_test to evaluate on"
        )
    test, pool = sample_fraction(target, config.test_fraction, config.split_seed)
    return pool, test


def run_experiment(
    config: ExperimentConfig,
    show_progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Run every recipe x budget x seed cell; return the run folder.

    ``results.json`` is rewritten atomically after each cell, so an interrupted run keeps the
    cells it finished. ``show_progress=False`` silences every progress bar of the run.
    """
    with showing_progress(show_progress):
        return _run_cells(config, on_result)


def _run_cells(
    config: ExperimentConfig, on_result: Callable[[dict[str, Any]], None] | None
) -> Path:
    source = read_domain(config.source)
    target = read_domain(config.target)
    classes = shared_label_vocabulary(source, target)
    config = config.model_copy(update={"backbone": default_backbone(config, source)})
    pool, test = prepare_target(config, target)
    shared_label_vocabulary(source, test)
    _check_budgets(config, pool)
    for _, recipe in _build_recipes(config, config.seeds[0]):
        recipe.validate(source)  # fail on a bad recipe before any work
    cache = EmbeddingCache(Path(config.cache_dir) / "embeddings" if config.cache_dir else None)

    run_dir = new_run_dir(config.output_dir, config.name)
    atomic_write_text(
        run_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    payload: dict[str, Any] = {
        "name": config.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.model_dump(mode="json"),
        "classes": classes,
        "data": {
            "source": _describe_domain(source),
            "target": _describe_domain(target),
            "target_pool": _describe_domain(pool),
            "target_test": _describe_domain(test),
        },
        **environment(),
        "results": [],
    }
    if config.domain_gap:
        payload["domain_gap"] = _domain_gap(config, source, target, cache)
    atomic_write_json(run_dir / RESULTS_FILE, payload)
    y_test = test.label_ids(classes)
    unlabeled = _unlabeled_target(pool, test, config.transductive)
    quality_sample = None
    if config.track_quality:
        order = np.random.default_rng(config.split_seed).permutation(len(test))
        quality_sample = test.subset(np.sort(order[: config.quality_sample]))
    for seed in config.seeds:
        recipes = _build_recipes(config, seed)
        for budget in config.budgets:
            labeled = draw_budget(pool, budget, seed)
            for label, recipe in recipes:
                record = _run_cell(
                    label,
                    recipe,
                    source,
                    labeled,
                    unlabeled,
                    test,
                    y_test,
                    classes,
                    cache,
                    run_dir if config.save_models else None,
                    budget,
                    seed,
                    quality_sample,
                )
                payload["results"].append(record)
                atomic_write_json(run_dir / RESULTS_FILE, payload)
                if on_result is not None:
                    on_result(record)
    return run_dir


def _domain_gap(
    config: ExperimentConfig, source: Domain, target: Domain, cache: EmbeddingCache
) -> dict[str, float]:
    """Proxy A-distance and MMD between the domains' frozen features (or their vectors)."""
    if isinstance(source.inputs, np.ndarray):
        both = np.vstack([source.inputs, target.inputs])
        scale = both.std(axis=0) + 1e-6
        return domain_gap(source.inputs / scale, target.inputs / scale)
    encoder = make_encoder(
        config.backbone or "minilm-l6",
        max_length=config.max_length,
        image_size=config.image_size,
    )
    return domain_gap(cache.encode(encoder, source.inputs), cache.encode(encoder, target.inputs))


def compare(
    config: ExperimentConfig,
    show_progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Run the experiment with quality tracking and the domain gap, then add the comparison
    (mean ± std, negative transfer, cost, time to scratch quality) to ``results.json``."""
    config = config.model_copy(update={"track_quality": True, "domain_gap": True})
    run_dir = run_experiment(config, show_progress=show_progress, on_result=on_result)
    results = load_results(run_dir)
    results["comparison"] = analyse(results["results"])
    atomic_write_json(run_dir / RESULTS_FILE, results)
    return run_dir


def _unlabeled_target(pool: Domain, test: Domain, transductive: bool) -> Domain:
    """Target inputs without labels for alignment: the pool, plus the test inputs if asked."""
    return pool.unlabeled_with(test) if transductive else pool.without_labels()


def _run_cell(
    label: str,
    recipe: Recipe,
    source: Domain,
    labeled: Domain | None,
    unlabeled: Domain,
    test: Domain,
    y_test: np.ndarray,
    classes: list[str],
    cache: EmbeddingCache,
    run_dir: Path | None,
    budget: int | float | str,
    seed: int,
    quality_sample: Domain | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "recipe": recipe.name,
        "label": label,
        "family": recipe.family,
        "budget": budget,
        "seed": seed,
    }
    if not recipe.uses_source and labeled is None:
        return {**record, "status": "skipped", "reason": "trains on target labels only"}
    monitor = None
    if quality_sample is not None:
        sample_labels = quality_sample.label_ids(classes)

        def score(predictor: Predictor) -> float:
            predicted = predictor.predict_proba(quality_sample.inputs).argmax(axis=1)
            return classification_metrics(sample_labels, predicted, classes)["macro_f1"]

        monitor = QualityMonitor(score)
    with PeakMemory() as memory, measure() as meter:
        with monitoring(monitor) if monitor is not None else nullcontext():
            started = time.perf_counter()
            predictor = recipe.fit(source, labeled, cache=cache, unlabeled=unlabeled)
            scoring = monitor.scoring_seconds if monitor is not None else 0.0
            train_seconds = time.perf_counter() - started - scoring
            if monitor is not None:
                monitor.observe(predictor)  # the final model, at the end of training
        started = time.perf_counter()
        probabilities = predictor.predict_proba(test.inputs)
        predict_seconds = time.perf_counter() - started
    record.update(
        {
            "status": "ok",
            "options": {k: getattr(recipe, k) for k in recipe.options()},
            "target_labels": len(labeled) if labeled is not None else 0,
            "metrics": classification_metrics(y_test, probabilities.argmax(axis=1), classes),
            "train_seconds": round(train_seconds + meter.reused_seconds, 3),
            "reused_stage_seconds": round(meter.reused_seconds, 3),
            "predict_seconds": round(predict_seconds, 3),
            "trainable_parameters": predictor.trainable_parameters,
            "peak_rss_mb": round(memory.peak_mb, 1),
            "train_flops_estimate": meter.flops,
        }
    )
    if monitor is not None:
        record["quality_curve"] = [[seconds, f1] for seconds, f1 in monitor.curve]
    if run_dir is not None:
        folder = run_dir / "models" / f"{label}-k{budget}-seed{seed}"
        predictor.save(folder)
        record["model_dir"] = str(folder.relative_to(run_dir))
    return record


def choose_model(run_dir: str | Path, model: str | None = None) -> Path:
    """The folder of ``model`` in a run, or of the run's best model by macro-F1."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    saved = [r for r in results.get("results", []) if r.get("model_dir")]
    if not saved:
        raise DataError(f"{run_dir}: the run saved no models (save_models was off?)")
    if model is None:
        best = max(saved, key=lambda r: r["metrics"]["macro_f1"])
        return run_dir / best["model_dir"]
    names = [Path(r["model_dir"]).name for r in saved]
    if model not in names:
        raise ConfigError(f"{run_dir}: no model '{model}'; the run has {names}")
    return run_dir / "models" / model


def load_model(run_dir: str | Path, model: str | None = None) -> Predictor:
    """Load a model saved in a run folder (default: the best one by macro-F1)."""
    return load_predictor(choose_model(run_dir, model))


def model_reads(model_dir: Path) -> str:
    """What a saved model classifies: 'texts', 'images' or 'vectors'."""
    metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    spec = metadata.get("spec", {})
    backbone = spec.get("backbone") or spec.get("frozen_backbone")
    if backbone is not None:
        return "images" if "image_size" in backbone else "texts"
    return "vectors" if metadata.get("kind") == "neural" else "texts"


def predict(
    run_dir: str | Path, texts: Sequence[str], model: str | None = None
) -> tuple[list[str], np.ndarray, list[str]]:
    """Labels and probabilities for ``texts`` (or image paths, for an image model); also
    returns the classes (probability columns)."""
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"input {i + 1} is empty; expected some text to classify")
    predictor = load_model(run_dir, model)
    probabilities = predictor.predict_proba(list(texts))
    labels = [predictor.classes[i] for i in probabilities.argmax(axis=1)]
    return labels, probabilities, predictor.classes
