"""The one runner: recipes x target budgets x seeds for any task, into one ``results.json``.

Every cell records the same fields whatever the task: the recipe, its label, family, budget and
seed; the metrics on the target test data; the cost (train seconds including reused stages,
peak memory, trainable parameters, a FLOPs estimate); and where its model was saved.
``results.json`` is rewritten atomically after each cell, so an interrupted run keeps the cells
it finished, and each cell saves its training state after every epoch under
``checkpoints/<cell>/`` (removed when the cell finishes): ``run(config, resume=folder)``
continues an interrupted run, keeping its finished cells and continuing the others from their
last epoch, with the numbers an uninterrupted run gives.
"""

from __future__ import annotations

import io
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.features import default_backbone
from shoptransfer.backbones.language import language_warning
from shoptransfer.backbones.precision import (
    check_precision,
    native_bf16,
    precision_warning,
    use_usable_cores,
)
from shoptransfer.backbones.registry import backbone_modality
from shoptransfer.backbones.text import text_length_limit
from shoptransfer.catalogue import make_recipe
from shoptransfer.checkpoints import CHECKPOINTS, checkpointing, remove_checkpoints
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from shoptransfer.metering import QualityMonitor, StageCache, measure, monitoring
from shoptransfer.parallel import is_main, share
from shoptransfer.recipes.base import FitData
from shoptransfer.runs import (
    RESULTS_FILE,
    PeakMemory,
    cell_name,
    check_folder,
    environment,
    load_results,
    remove_orphans,
    resumed_folder,
    run_folder,
)
from shoptransfer.tasks import Task, TaskData, make_task
from shoptransfer.tasks.base import TEST_PROBABILITIES

LENGTH_SETTINGS = ("max_length", "text_max_length")  # tokens per text a text backbone reads
PREDICTIONS = "predictions"  # the run folder's test probabilities per cell (ensemble_seeds)


def _capped_length(backbone: str | None, key: str, value: Any) -> dict[str, Any] | None:
    """What capping ``key`` = ``value`` at the text ``backbone``'s limit changes (None: nothing)."""
    if backbone is None or backbone_modality(backbone) != "text" or not isinstance(value, int):
        return None
    limit = text_length_limit(backbone)
    if value <= limit:
        return None
    return {"setting": key, "given": value, "used": limit, "backbone": backbone}


def build_recipes(
    config: Any, seed: int, capped: list[dict[str, Any]] | None = None
) -> list[tuple[str, Any]]:
    """``(label, recipe)`` for every entry of the config, with the run-wide settings
    (backbone, max_length, image_size) where the entry does not set them. A text length above
    what the recipe's backbone reads is capped at it, and the change added to ``capped``."""
    built = []
    for entry in config.recipes:
        label = entry.label or entry.name
        recipe = make_recipe(entry.name, **entry.options)
        for key in ("backbone", "max_length", "image_size"):
            value = getattr(config, key, None)
            if hasattr(recipe, key) and key not in entry.options and value is not None:
                setattr(recipe, key, value)
        for key in LENGTH_SETTINGS:
            change = _capped_length(
                getattr(recipe, "backbone", None), key, getattr(recipe, key, None)
            )
            if change is not None:
                setattr(recipe, key, change["used"])
                if capped is not None:
                    capped.append({"recipe": label, **change})
        recipe.seed = seed
        built.append((label, recipe))
    return built


def _capped_config(config: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The config with its run-wide ``max_length`` capped at its text backbone's limit (a
    backbone that does not load is left for the recipes that use it to report)."""
    try:
        change = _capped_length(
            getattr(config, "backbone", None), "max_length", getattr(config, "max_length", None)
        )
    except ConfigError:
        return config, []
    if change is None:
        return config, []
    return config.model_copy(update={"max_length": change["used"]}), [change]


def language_warnings(data: TaskData, recipes: list[Any]) -> list[str]:
    """A line for each text backbone the recipes read and each domain (source, target) whose
    language it does not cover (:func:`~shoptransfer.backbones.language.language_warning`)."""
    backbones = sorted({b for r in recipes if isinstance(b := getattr(r, "backbone", None), str)})
    domains = [("source", data.source), ("target", data.pool)]
    found = [
        language_warning(backbone, domain, role)
        for backbone in backbones
        for role, domain in domains
        if domain is not None
    ]
    return [line for line in found if line]


def capped_warning(change: dict[str, Any]) -> str:
    """One line saying what a capped text length was and is."""
    where = f"recipe '{change['recipe']}': " if "recipe" in change else ""
    return (
        f"{where}{change['setting']} {change['given']} is more than backbone "
        f"'{change['backbone']}' reads; texts are cut at {change['used']} tokens"
    )


# settings that change what a run writes besides its results, not the results: a resumed run
# may change them
OUTPUT_ONLY = ("report", "tracking")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config a run folder was started with (its ``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file() or not (Path(run_dir) / RESULTS_FILE).is_file():
        raise ConfigError(
            f"--resume '{run_dir}': no config.yaml and {RESULTS_FILE} there; expected the "
            "folder of a run this tool started"
        )
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return config


def data_hashes(description: Any, where: str = "data") -> dict[str, str]:
    """Every ``data_hash`` in a run's data description, by where it sits (``data.source``)."""
    if not isinstance(description, dict):
        return {}
    found = {where: description["data_hash"]} if "data_hash" in description else {}
    for key, value in description.items():
        found.update(data_hashes(value, f"{where}.{key}"))
    return found


def check_resumable(
    run_dir: Path, previous: dict[str, Any], resolved: dict[str, Any], data: Any, force: bool
) -> None:
    """A one-line error when the config or the data differ from the run's (unless ``force``)."""
    if force:
        return
    saved = read_run_config(run_dir)
    keys = {*saved, *resolved} - set(OUTPUT_ONLY)
    changed = sorted(k for k in keys if saved.get(k) != resolved.get(k))
    if changed:
        raise ConfigError(
            f"--resume '{run_dir}': the config differs from the run's config.yaml in "
            f"{', '.join(changed)}; resume without a config file, or add --force"
        )
    before, now = data_hashes(previous.get("data")), data_hashes(data)
    moved = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
    if moved:
        raise DataError(
            f"--resume '{run_dir}': the data changed since the run began ({', '.join(moved)}); "
            "start a new run, or add --force to mix results of both"
        )


def run(
    config: Any,
    show_progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    stages: StageCache | None = None,
) -> Path:
    """Run every recipe x budget x seed cell of ``config`` (any task); return the run folder.

    A run that fails before a cell finishes leaves no run folder behind; one that fails later
    keeps the cells that finished (the error says so). Settings the run changed (a text length
    capped at what the backbone reads) are listed under ``capped_settings`` in
    ``results.json``.

    ``resume``: an interrupted run's folder, continued in place. Its finished cells are kept;
    the others start again from their last epoch checkpoint; what the interruption left behind
    (temporary files, checkpoints of finished cells, models of unfinished ones) is removed and
    listed under ``resumed`` in ``results.json``. A config or data that differ from the run's
    are an error unless ``force``.

    ``stages``: trained stages to share with the other runs of this process that are handed
    the same cache (a source stage reused by runs with other targets: its key holds the
    settings and data it depends on); by default the run keeps its own."""
    threads = use_usable_cores()
    resume = Path(resume) if resume is not None else None
    previous = load_results(resume) if resume is not None else None
    check_folder(config.output_dir, "output_dir")
    cache = EmbeddingCache(Path(config.cache_dir) / "embeddings" if config.cache_dir else None)
    check_folder(
        cache.root, "cache_dir" if config.cache_dir else "the embedding cache (SHOPTRANSFER_CACHE)"
    )
    task = make_task(config)
    data = task.prepare(cache)
    if hasattr(config, "backbone") and config.backbone is None:
        config = config.model_copy(update={"backbone": default_backbone(data.pool.holds)})
    config, capped = _capped_config(config)
    task.config = config
    recipes = [recipe for _, recipe in build_recipes(config, config.seeds[0], capped)]
    task.check(data, recipes)
    warnings = [*data.warnings, *(capped_warning(change) for change in capped)]
    asked = {getattr(recipe, "precision", None) for recipe in recipes}
    warnings += [line for line in map(precision_warning, sorted(asked - {None})) if line]
    warnings += language_warnings(data, recipes)
    main = is_main()  # across processes, only the main one prints and writes files
    for line in warnings if main else ():
        print(f"warning: {line}", file=sys.stderr)

    records: list[dict[str, Any]] = []

    def finished() -> int:
        return sum(record["status"] == "ok" for record in records)

    resolved = config.model_dump(mode="json")
    kept: dict[str, dict[str, Any]] = {}
    resumed: list[dict[str, Any]] = []
    if resume is not None and previous is not None:
        check_resumable(resume, previous, resolved, data.description, force)
        kept = {
            cell_name(r["label"], r["budget"], r["seed"]): r
            for r in previous.get("results", [])
            if r.get("status") == "ok"
        }
        orphans = remove_orphans(resume, set(kept)) if main else []
        if orphans:
            print(
                f"warning: resume: removed {len(orphans)} file(s) or folder(s) the "
                f"interruption left behind: {', '.join(orphans)}",
                file=sys.stderr,
            )
        resumed = [
            *previous.get("resumed", []),
            {
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "kept_cells": len(kept),
                "orphans_removed": orphans,
            },
        ]
    folder = (
        nullcontext(resume)
        if not main
        else resumed_folder(resume, finished)
        if resume is not None
        else run_folder(config.output_dir, config.name, finished)
    )
    with folder as made:
        run_dir = Path(share(str(made)))  # the main process's folder, in every process

        def write_results() -> None:
            if main:
                atomic_write_json(run_dir / RESULTS_FILE, payload)

        if main:
            atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        payload: dict[str, Any] = {
            "task": task.name,
            "name": config.name,
            "created": previous["created"]
            if previous is not None and "created" in previous
            else time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **({"resumed": resumed} if resumed else {}),
            "config": resolved,
            "primary_metric": task.primary_key(),
            "higher_is_better": task.higher_is_better,
            "data": data.description,
            **({"capped_settings": capped} if capped else {}),
            "warnings": warnings,
            **environment(),
            "compute": {
                "threads": threads,
                "native_bf16": native_bf16(),
                "precision_auto": check_precision("auto"),
            },
            **task.extra_results(data, cache),
            "results": records,
        }
        write_results()
        scorer = task.quality_scorer(data)
        # trained stages the run's fits share (a source stage across budgets, a pre-training
        # across recipes); each reuse is charged its full cost to the cell that reuses it
        stages = stages if stages is not None else StageCache(limit=max(4, len(config.recipes)))
        ensembles = bool(getattr(config, "ensemble_seeds", False))
        for seed in config.seeds:
            recipes = build_recipes(config, seed)
            for budget in config.budgets:
                fit_data = FitData(
                    source=data.source,
                    target=task.draw(data, budget, seed),
                    unlabeled=data.unlabeled,
                    classes=data.classes,
                    cache=cache,
                    stages=stages,
                    outputs=data.outputs,
                )
                for label, recipe in recipes:
                    cell = cell_name(label, budget, seed)
                    if cell in kept:  # a resumed run's finished cell, in its place
                        records.append(kept[cell])
                        write_results()
                        continue
                    checkpoints = run_dir / CHECKPOINTS / cell
                    with checkpointing(checkpoints):
                        record = run_cell(
                            task,
                            recipe,
                            label,
                            data,
                            fit_data,
                            budget,
                            seed,
                            run_dir if config.save_models and main else None,
                            scorer,
                            run_dir / PREDICTIONS if ensembles and main else None,
                        )
                    records.append(record)
                    write_results()
                    if main:
                        remove_checkpoints(checkpoints)
                    if on_result is not None and main:
                        on_result(record)
        if ensembles and main:
            payload["seed_ensembles"] = seed_ensembles(records, run_dir, task, data)
            write_results()
    return run_dir


def seed_ensembles(
    records: list[dict[str, Any]], run_dir: Path, task: Task, data: TaskData
) -> list[dict[str, Any]]:
    """Per recipe entry and budget with two or more finished seeds: the metrics of their
    models' test probabilities averaged, beside the seeds' mean."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["status"] == "ok" and "predictions_file" in record:
            groups[(record["label"], str(record["budget"]))].append(record)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        probabilities = [np.load(run_dir / r["predictions_file"]) for r in members]
        metrics = task.ensemble(probabilities, data)
        numbers = [k for k, v in metrics.items() if isinstance(v, int | float)]
        out.append(
            {
                "label": members[0]["label"],
                "recipe": members[0]["recipe"],
                "budget": members[0]["budget"],
                "seeds": [r["seed"] for r in members],
                "metrics": metrics,
                "mean_of_seeds": {
                    k: float(np.mean([r["metrics"][k] for r in members])) for k in numbers
                },
                "train_seconds": round(sum(r["train_seconds"] for r in members), 3),
            }
        )
    return out


def run_cell(
    task: Task,
    recipe: Any,
    label: str,
    data: TaskData,
    fit_data: FitData,
    budget: Any,
    seed: int,
    run_dir: Path | None = None,
    scorer: Callable[[Any], float] | None = None,
    predictions_dir: Path | None = None,
) -> dict[str, Any]:
    """Train one recipe at one budget and seed, evaluate it, and save its model (into
    ``run_dir``) and its test probabilities (into ``predictions_dir``)."""
    record: dict[str, Any] = {
        "recipe": recipe.name,
        "label": label,
        "family": recipe.family,
        "budget": budget,
        "seed": seed,
    }
    labeled = fit_data.target
    if not recipe.uses_source and labeled is None:
        return {**record, "status": "skipped", "reason": "trains on target labels only"}
    monitor = QualityMonitor(scorer) if scorer is not None else None
    with PeakMemory() as memory, measure() as meter:
        with monitoring(monitor) if monitor is not None else nullcontext():
            started = time.perf_counter()
            model = recipe.fit(fit_data)
            scoring = monitor.scoring_seconds if monitor is not None else 0.0
            train_seconds = time.perf_counter() - started - scoring
            if monitor is not None:
                monitor.observe(model)  # the final model, at the end of training
        started = time.perf_counter()
        evaluation = task.evaluate(model, data, fit_data.target)
        predict_seconds = time.perf_counter() - started
    probabilities = evaluation.pop(TEST_PROBABILITIES, None)
    record.update(
        {
            "status": "ok",
            "options": {k: getattr(recipe, k) for k in recipe.options()},
            **({"fitted": recipe.fitted()} if recipe.fitted() else {}),
            "target_examples": len(labeled) if labeled is not None else 0,
            **evaluation,
            "train_seconds": round(train_seconds + meter.reused_seconds, 3),
            "reused_stage_seconds": round(meter.reused_seconds, 3),
            "predict_seconds": round(predict_seconds, 3),
            "trainable_parameters": model.trainable_parameters,
            "peak_rss_mb": round(memory.peak_mb, 1),
            "train_flops_estimate": meter.flops,
        }
    )
    if monitor is not None:
        record["quality_curve"] = [[seconds, value] for seconds, value in monitor.curve]
    if predictions_dir is not None and probabilities is not None:
        path = predictions_dir / f"{cell_name(label, budget, seed)}.npy"
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(probabilities, dtype=np.float32))
        atomic_write_bytes(path, buffer.getvalue())
        record["predictions_file"] = str(path.relative_to(predictions_dir.parent))
    if run_dir is not None:
        folder = run_dir / "models" / cell_name(label, budget, seed)
        model.save(folder)
        record["model_dir"] = str(folder.relative_to(run_dir))
    return record
