"""The public Python API: run an experiment of any task, read its results, predict with a
saved model, recommend with a saved recommender, predict ratings with a saved rating model.

The CLI is a thin shell over these functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.inputs import saved_model_reads
from shoptransfer.config import load_config, parse_config
from shoptransfer.data import read_domain
from shoptransfer.data.interactions import InteractionDomain, read_interaction_domain
from shoptransfer.data.multi import scrub_text_inputs
from shoptransfer.errors import ConfigError, DataError, ShopTransferError
from shoptransfer.evaluation.compare import analyse
from shoptransfer.evaluation.html_report import REPORT_FILE, ReportRun, render_report
from shoptransfer.evaluation.ranking import DotProductScorer
from shoptransfer.explain import explain, explain_fused
from shoptransfer.export.exporter import HeldOut, export_onnx
from shoptransfer.export.rankers import HeldOutCases, export_ranker, exportable
from shoptransfer.export.runtime import OnnxPredictor, OnnxRanker, export_folder, open_export
from shoptransfer.files import atomic_write_json, atomic_write_text
from shoptransfer.metering import StageCache
from shoptransfer.parallel import is_main
from shoptransfer.pii import scrub_texts
from shoptransfer.progress import showing_progress
from shoptransfer.recipes import load_predictor
from shoptransfer.recipes.base import Predictor, load_saved_model, read_model_metadata
from shoptransfer.recipes.neural import NeuralPredictor
from shoptransfer.recommenders.base import load_ranker
from shoptransfer.recommenders.item_index import (
    APPROXIMATE_FROM,
    INSTALL_HINT,
    ApproximateIndex,
    IndexSettings,
    faiss_installed,
)
from shoptransfer.recommenders.neural import NeuralRanker
from shoptransfer.recommenders.ratings import RatingPredictor
from shoptransfer.retrieval import CrossModalRetriever, check_pairs, read_pairs
from shoptransfer.runner import read_run_config, run
from shoptransfer.runs import RESULTS_FILE, check_folder, choose_model, load_results, saved_cells
from shoptransfer.selection import select
from shoptransfer.tasks import Task, list_tasks, make_task
from shoptransfer.tracking import check_tracking, track_run

__all__ = [
    "choose_model",
    "compare",
    "export_model",
    "labelled",
    "load_classifier",
    "load_model",
    "predict",
    "predict_ratings",
    "read_domain",
    "recommend",
    "Recommender",
    "run_experiment",
    "search_pairs",
    "select_backbone",
    "task_class",
    "track_run",
    "train_retriever",
    "write_report",
]


def task_class(name: str) -> type[Task]:
    """The registered task called ``name`` (its metrics' columns, budget unit, ...)."""
    return next(t for t in list_tasks() if t.name == name)


def run_config(run_dir: str | Path) -> Any:
    """The validated config of a run folder (what ``resume`` continues it with)."""
    return parse_config(read_run_config(run_dir), str(Path(run_dir) / "config.yaml"))


def run_experiment(
    config: Any,
    show_progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    stages: StageCache | None = None,
) -> Path:
    """Run every recipe x budget x seed cell of an experiment (any task); return the run
    folder. ``results.json`` is rewritten after each cell, so an interrupted run keeps the
    cells it finished; ``on_result`` sees each cell's record as it lands. At the end the run
    writes ``report.html`` (config ``report: false`` skips it) and logs its cells to MLflow
    when ``tracking:`` asks for it. ``resume``: an interrupted run's folder to continue
    (:func:`shoptransfer.runner.run`; ``config`` is usually :func:`run_config` of it).
    ``stages``: a :class:`~shoptransfer.metering.StageCache` shared by several runs of this
    process, so that a source stage trained for one target is reused for the next (each reuse
    charged its full cost to the cell, as within a run)."""
    _check_tracking(config)
    with showing_progress(show_progress):
        run_dir = run(config, on_result=on_result, resume=resume, force=force, stages=stages)
    if is_main():  # across processes, the main one writes the report
        _finish(config, run_dir)
    return run_dir


def _check_tracking(config: Any) -> None:
    if getattr(config, "tracking", False) is not False:
        check_tracking()


def _finish(config: Any, run_dir: Path) -> None:
    """The run's report and its tracking, as its config asks."""
    if getattr(config, "report", True):
        write_report([run_dir], run_dir / REPORT_FILE)
    tracking = getattr(config, "tracking", False)
    if tracking is not False:
        track_run(run_dir, None if tracking is True else tracking)


def report_run(run_dir: str | Path) -> ReportRun:
    """What the report shows of a run folder: its results, its task's metric columns (the
    primary metric first) and budget unit."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    names = [t.name for t in list_tasks()]
    task = task_class(results["task"]) if results.get("task") in names else None
    columns = task.columns if task is not None else ()
    primary = results.get("primary_metric")
    columns = tuple(sorted(columns, key=lambda c: c.key != primary))
    title = f"{results.get('name', run_dir.name)} ({run_dir.name})"
    return ReportRun(title, results, columns, task.budget_header if task else "budget")


def write_report(run_dirs: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """One self-contained HTML report of the runs, side by side; return its path (default:
    ``report.html`` in the run folder for one run, in the current folder for several)."""
    if not run_dirs:
        raise ConfigError("report: expected at least one run folder")
    runs = [report_run(run_dir) for run_dir in run_dirs]
    if output is None:
        output = Path(run_dirs[0]) / REPORT_FILE if len(run_dirs) == 1 else Path(REPORT_FILE)
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"--output '{output}': is a folder; expected an HTML file name")
    check_folder(output.parent, "--output")
    atomic_write_text(output, render_report(runs))
    return output


def compare(
    config: Any,
    show_progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    stages: StageCache | None = None,
) -> Path:
    """Run the experiment with quality tracking and the domain gap (where the task has them),
    then add the comparison (mean ± std, negative transfer, cost, time to scratch quality) to
    ``results.json``. ``resume``: an interrupted comparison's folder to continue; ``stages``:
    as for :func:`run_experiment`."""
    extra = {key: True for key in ("track_quality", "domain_gap") if hasattr(config, key)}
    config = config.model_copy(update=extra)
    _check_tracking(config)
    with showing_progress(show_progress):
        run_dir = run(config, on_result=on_result, resume=resume, force=force, stages=stages)
    if not is_main():  # across processes, the main one analyses and writes
        return run_dir
    results = load_results(run_dir)
    results["comparison"] = analyse(
        results["results"], results["primary_metric"], results["higher_is_better"]
    )
    atomic_write_json(run_dir / RESULTS_FILE, results)
    _finish(config, run_dir)
    return run_dir


def select_backbone(
    config: Any, budget: Any = None, show_progress: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Rank an experiment's candidate backbones for its target by transferability estimators
    on frozen features, before any training (:func:`shoptransfer.selection.select`); return
    the run folder holding ``selection.json`` and what it holds."""
    with showing_progress(show_progress):
        return select(config, budget=budget, show_progress=show_progress)


def load_model(run_dir: str | Path, model: str | None = None) -> Predictor:
    """Load a model saved in a run folder (default: the best one by macro-F1)."""
    return load_predictor(choose_model(run_dir, model))


def model_reads(model_dir: Path) -> str:
    """What a saved model classifies: 'texts', 'images' or 'vectors'."""
    path, metadata = read_model_metadata(model_dir)
    try:
        return saved_model_reads(metadata)
    except (AttributeError, TypeError):
        raise DataError(f"{path}: key 'spec' does not say what the model reads") from None


def predict(
    run_dir: str | Path,
    texts: Sequence[str] | Mapping[str, Sequence[str | None]],
    model: str | None = None,
    onnx: bool = False,
) -> tuple[Any, Any, Any]:
    """Labels and probabilities for ``texts`` (or image paths, for an image model); also
    returns the classes (probability columns).

    A fused model (recipe ``fusion``) reads a mapping of input name -> values instead (a text
    or an image path each, ``None`` where missing; an input left out is missing throughout),
    such as ``{"photo": ["shirt.jpg"], "title": ["Men Blue Shirt"]}``.

    A regression model returns its numbers (a list, the same as an array) and no classes; a
    multi-task model returns the three per task, each a dict keyed by the task's name.
    ``onnx``: score with the model's ONNX export (``shoptransfer export``; its int8 model when
    it has one, else fp32) through onnxruntime instead of PyTorch.

    Texts are scrubbed of personal data first (:func:`shoptransfer.pii.scrub`), as training
    texts are when read: the model sees placeholders where it learned them."""
    reads = model_reads(choose_model(run_dir, model))
    if isinstance(texts, Mapping) or reads == "inputs":
        return _predict_inputs(run_dir, texts, model, onnx, reads)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"input {i + 1} is empty; expected some text to classify")
    if reads == "texts":
        texts = scrub_texts(texts)[0]
    return labelled(load_classifier(run_dir, model, onnx), texts)


def _predict_inputs(
    run_dir: str | Path, inputs: Any, model: str | None, onnx: bool, reads: str
) -> tuple[Any, Any, Any]:
    """:func:`predict` for a fused model: a mapping of input name -> values, its texts
    scrubbed of personal data."""
    predictor = _fused_predictor(run_dir, inputs, model, onnx, reads)
    probabilities = predictor.predict_proba(fused_values(predictor, inputs))
    labels = [predictor.classes[i] for i in probabilities.argmax(axis=1)]
    return labels, probabilities, predictor.classes


def _fused_predictor(
    run_dir: str | Path, inputs: Any, model: str | None, onnx: bool, reads: str
) -> Any:
    """A fused model's predictor, once ``inputs`` (a mapping of input name -> values) and the
    model (``reads``) are known to go together."""
    folder = choose_model(run_dir, model)
    if reads != "inputs":
        raise ConfigError(
            f"model {folder.name} reads {reads}; give a list of them, not a mapping of inputs"
        )
    if not isinstance(inputs, Mapping):
        kinds = read_model_metadata(folder)[1]["spec"].get("inputs", {})
        raise ConfigError(
            f"model {folder.name} reads several inputs {kinds}; give a mapping of input name -> "
            "values"
        )
    if onnx:
        raise ConfigError(f"model {folder.name} is a fused model; it has no ONNX export")
    return load_predictor(folder)


def fused_values(
    predictor: Any, inputs: Mapping[str, Sequence[str | None]]
) -> dict[str, list[str | None]]:
    """A fused model's inputs as it reads them: an empty value missing (``None``), texts
    scrubbed of personal data."""
    values = {
        name: [v if isinstance(v, str) and v.strip() else None for v in column]
        for name, column in inputs.items()
    }
    scrub_text_inputs(predictor.inputs, values)
    return values


def explain_predictions(
    run_dir: str | Path,
    inputs: Sequence[str] | Mapping[str, Sequence[str | None]],
    model: str | None = None,
    method: str = "auto",
    onnx: bool = False,
    steps: int = 50,
) -> list[Any]:
    """Why a run's classifier predicts what it does for each of ``inputs`` (texts, scrubbed of
    personal data as :func:`predict` scrubs them, or image paths): a score per word or pixel
    (:mod:`shoptransfer.explain`). ``method``: ``integrated-gradients``, ``occlusion``, or
    ``auto`` (integrated gradients where the model has gradients, else occlusion).

    A fused model reads a mapping of input name -> values, as :func:`predict` does, and is
    explained by occlusion: each input hidden, each word of its texts deleted
    (:class:`~shoptransfer.explain.FusedExplanation`)."""
    reads = model_reads(choose_model(run_dir, model))
    if reads == "inputs" or isinstance(inputs, Mapping):
        predictor = _fused_predictor(run_dir, inputs, model, onnx, reads)
        with showing_progress(False):
            return explain_fused(predictor, fused_values(predictor, inputs), method)
    if reads == "texts":
        inputs = scrub_texts(inputs)[0]
    with showing_progress(False):
        return explain(load_classifier(run_dir, model, onnx), list(inputs), reads, method, steps)


def load_classifier(
    run_dir: str | Path,
    model: str | None = None,
    onnx: bool = False,
    onnx_precision: str = "auto",
) -> Any:
    """The model that :func:`predict` scores with: the PyTorch (or TF-IDF) predictor of a run's
    model, or (``onnx``) its ONNX export through onnxruntime (``onnx_precision``: ``auto``, the
    int8 model when exported, else fp32; or ``int8`` or ``fp32``)."""
    if onnx:
        return load_export(run_dir, model, onnx_precision)
    folder = choose_model(run_dir, model)
    if model_reads(folder) == "vectors":
        raise DataError(
            f"{folder / 'model.json'}: the model reads precomputed vectors, not texts or "
            "images; give it an array: load_model(...).predict_proba(vectors)"
        )
    return load_predictor(folder)


def labelled(predictor: Any, inputs: Sequence[str]) -> tuple[Any, Any, Any]:
    """What :func:`predict` returns, from a model :func:`load_classifier` loaded."""
    if isinstance(predictor, OnnxPredictor):
        kind, tasks = predictor.kind, predictor.tasks
    else:
        kind, tasks = predictor.outputs.kind, predictor.outputs.tasks
    if kind == "value":
        values = np.asarray(predictor.predict(list(inputs)), dtype=np.float64)
        return [float(v) for v in values], values, []
    probabilities = predictor.predict_proba(list(inputs))
    if kind == "tasks":
        per_task = {
            name: [classes[i] for i in probabilities[name].argmax(axis=1)]
            for name, classes in tasks
        }
        return per_task, probabilities, {name: list(classes) for name, classes in tasks}
    labels = [predictor.classes[i] for i in probabilities.argmax(axis=1)]
    return labels, probabilities, predictor.classes


def predict_ratings(
    run_dir: str | Path, users: Sequence[str], items: Sequence[str], model: str | None = None
) -> np.ndarray:
    """Ratings of the (user id, item id) pairs ``zip(users, items)`` from a rating run's model
    ``model`` (a folder name under ``models/``; default: the run's lowest RMSE). A user or item
    the model does not know gets the mean and what is known of the other."""
    folder = choose_model(run_dir, model)
    predictor = load_saved_model(folder)
    if not isinstance(predictor, RatingPredictor):
        raise DataError(f"{folder}: a {predictor.kind} model, not a rating model")
    return predictor.predict(list(users), list(items))


def load_export(
    run_dir: str | Path, model: str | None = None, precision: str = "auto"
) -> OnnxPredictor:
    """The ONNX export of a run's model (default: the best one, as :func:`choose_model` picks
    it), scored by onnxruntime: ``precision`` ``auto``, its int8 model when exported, else
    fp32; or ``int8`` or ``fp32``."""
    return open_export(run_dir, model, precision)


# why a kind of saved model that is neither a neural classifier nor a recommender has no export
WHY_NOT_EXPORTED = {
    "rating-factors": (
        " (a rating is a sum of looked-up biases and a factor product; there is no network to "
        "export)"
    ),
}


def export_model(
    run_dir: str | Path, model: str | None = None, format: str = "onnx", quantize: str = "none"
) -> tuple[Path, dict[str, Any]]:
    """Export a run's neural model to ONNX (``quantize="int8"``: also a quantised copy, see
    :func:`~shoptransfer.export.exporter.write_int8`) into ``RUN/exports/<model folder>/``,
    checked on the run's target test set; return the folder and what its ``export.json``
    records.

    ``model``: a model folder name or a recipe label of the run (a label: its model at the
    largest budget and first seed); default the run's best model, as :func:`predict` picks it.
    """
    if format != "onnx":
        raise ConfigError(f"--format '{format}'; expected 'onnx'")
    run_dir = Path(run_dir)
    folder = model_folder(run_dir, model)
    _, metadata = read_model_metadata(folder)
    if "n_items" in metadata:  # a recommender
        return _export_recommender(run_dir, folder, model is None, quantize)
    if metadata["kind"] != "neural":
        results = load_results(run_dir)
        neural = [
            Path(r["model_dir"]).name
            for r in results.get("results", [])
            if r.get("model_dir") and _kind(run_dir / r["model_dir"]) == "neural"
        ]
        which = f"{folder.name}, the run's best model," if model is None else folder.name
        why = WHY_NOT_EXPORTED.get(metadata["kind"], "")
        raise ConfigError(
            f"{which} is a {metadata['kind']} model{why}; ONNX export supports the neural "
            f"classifiers (give --model; neural models in {run_dir}: {neural or 'none'})"
        )
    predictor = load_predictor(folder)
    assert isinstance(predictor, NeuralPredictor)  # its kind, checked above
    held_out, note, training = _held_out(run_dir, predictor)
    about = {"model": folder.name, "model_dir": str(folder.relative_to(run_dir))}
    destination = export_folder(run_dir, folder.name)
    card = export_onnx(predictor, destination, quantize, held_out, about, note, training)
    return destination, card


def _export_recommender(
    run_dir: Path, folder: Path, best: bool, quantize: str
) -> tuple[Path, dict[str, Any]]:
    """Export a recommendation run's sequential recommender, checked on the run's test cases."""
    domain, ranker = _domain_and_ranker(run_dir, folder)
    why = exportable(ranker)
    if why is not None:
        results = load_results(run_dir)
        saved = [r["model_dir"] for r in results.get("results", []) if r.get("model_dir")]
        fit = [Path(d).name for d in saved if _exportable_ranker(run_dir / d)]
        which = f"{folder.name}, the run's best model," if best else f"model {folder.name}"
        raise ConfigError(
            f"{which} cannot be exported to ONNX: {why}; export a sequential recommender "
            f"(sasrec, text-seq; give --model; those in {run_dir}: {fit or 'none'})"
        )
    assert isinstance(ranker, NeuralRanker)  # exportable checked it
    recorded = load_results(run_dir).get("data", {}).get("target", {}).get("data_hash")
    changed = recorded is not None and recorded != domain.data_hash()
    held_out = HeldOutCases(
        domain.test,
        f"the run's target test cases of '{domain.name}' ({len(domain.test)} histories, re-read "
        f"from {run_dir / 'config.yaml'})"
        + (" — its data hash differs from the run's: the files changed since" if changed else ""),
    )
    about = {"model": folder.name, "model_dir": str(folder.relative_to(run_dir))}
    destination = export_folder(run_dir, folder.name)
    card = export_ranker(ranker, domain.items, destination, quantize, held_out, about)
    return destination, card


def _exportable_ranker(folder: Path) -> bool:
    """Whether a saved model is a recommender that ONNX export handles (from its metadata)."""
    try:
        _, metadata = read_model_metadata(folder)
    except DataError:
        return False
    return metadata["kind"] == "neural-ranker" and not metadata.get("by_user")


def _target_domain(run_dir: Path) -> InteractionDomain:
    """A recommendation run's target domain, read again from its config."""
    config = load_config(run_dir / "config.yaml")
    try:
        return read_interaction_domain(config.target)
    except ShopTransferError as exc:
        raise DataError(f"{run_dir / 'config.yaml'}: the run's target data: {exc}") from exc


def _domain_and_ranker(run_dir: Path, folder: Path) -> tuple[InteractionDomain, Any]:
    """A recommendation run's target domain and the saved recommender in ``folder`` loaded
    for it (item-text embeddings through the run's cache)."""
    domain = _target_domain(run_dir)
    config = load_config(run_dir / "config.yaml")
    cache_root = Path(config.cache_dir) / "embeddings" if config.cache_dir else None
    return domain, load_ranker(folder, domain, EmbeddingCache(cache_root))


def _kind(folder: Path) -> str | None:
    try:
        return str(read_model_metadata(folder)[1]["kind"])
    except DataError:
        return None


def model_folder(run_dir: Path, model: str | None) -> Path:
    """The folder of a run's model given by folder name or recipe label (its largest budget,
    first seed; default: the best, as :func:`choose_model` picks it)."""
    if model is None:
        return choose_model(run_dir)
    results = load_results(run_dir)
    saved = [r for r in results.get("results", []) if r.get("model_dir")]
    names = [Path(r["model_dir"]).name for r in saved]
    if model in names:
        return run_dir / "models" / model
    labels = sorted({r.get("label", r["recipe"]) for r in saved})
    if model not in labels:
        raise ConfigError(
            f"--model '{model}': not a recipe label or model of {run_dir}; labels: "
            f"{labels or 'none'}, models: {names or 'none'}"
        )
    return run_dir / _chosen_record(run_dir, results, model, None)["model_dir"]


def _held_out(
    run_dir: Path, predictor: Predictor
) -> tuple[HeldOut | None, str | None, list[Any] | None]:
    """The run's target test set, read again as the run read it (from its ``config.yaml``),
    to check an export on, or ``None`` and why not; and the inputs of the run's target pool
    (training side, in a seeded random order) to calibrate an int8 copy on."""
    try:
        config = load_config(run_dir / "config.yaml")
        task = make_task(config)
        with showing_progress(False):
            data = task.prepare(EmbeddingCache(None))
    except ShopTransferError as exc:
        return None, f"the run's test data could not be read again: {exc}", None
    recorded = load_results(run_dir).get("data", {}).get("target_test", {}).get("data_hash")
    changed = recorded is not None and recorded != data.test.data_hash()
    describe = (
        f"the run's target test set '{data.test.name}' ({len(data.test)} examples, re-read from "
        f"{run_dir / 'config.yaml'})"
        + (" — its data hash differs from the run's: the files changed since" if changed else "")
    )

    def score(scored: Any) -> dict[str, Any]:
        metrics = task.evaluate(scored, data)["metrics"]
        return {key: value for key, value in metrics.items() if isinstance(value, float)}

    pool = list(data.pool.inputs) if data.pool is not None else []
    training = [pool[i] for i in np.random.default_rng(0).permutation(len(pool))]
    return HeldOut(data.test.inputs, describe, score), None, training


def _chosen_record(
    run_dir: Path, results: dict[str, Any], label: str | None, seed: int | None
) -> dict[str, Any]:
    """The saved result of entry ``label`` at ``seed`` (its largest budget), or the best."""
    _, saved = saved_cells(run_dir)
    if label is None and seed is None:
        best = choose_model(run_dir)
        return next(r for r in saved if run_dir / r["model_dir"] == best)
    matching = [
        r
        for r in saved
        if (label is None or r.get("label", r["recipe"]) == label)
        and (seed is None or r["seed"] == seed)
    ]
    if not matching:
        names = sorted({f"{r.get('label', r['recipe'])} seed {r['seed']}" for r in saved})
        raise DataError(
            f"{run_dir}: no saved model of recipe {label!r} seed {seed}; saved: {names or 'none'}"
        )
    budgets = {str(r["budget"]) for r in matching}
    largest = "all" if "all" in budgets else max(budgets, key=float)
    return min((r for r in matching if str(r["budget"]) == largest), key=lambda r: r["seed"])


def recommend(
    run_dir: str | Path,
    user: str,
    k: int = 10,
    recipe: str | None = None,
    seed: int | None = None,
    explain: int = 3,
    onnx: bool = False,
    index: IndexSettings | None = None,
) -> dict[str, Any]:
    """Top-``k`` items for ``user`` after their whole known history, with explanations.

    The model is the run's entry labeled ``recipe`` (at ``seed``, default the first, and its
    largest budget), else the run's best by validation NDCG. Each item comes with the history
    items that contributed most, by the model's own measure (``explanation`` says which).
    ``onnx``: rank with the model's ONNX export (``shoptransfer export``; its int8 model when it
    has one) through onnxruntime instead of PyTorch. ``index``: how the top items are found
    (:class:`~shoptransfer.recommenders.item_index.IndexSettings`; default ``auto``: exact
    below 100,000 items, an approximate nearest-neighbour index from there).
    """
    chosen = Recommender(run_dir, recipe, seed, onnx, index=index)
    return chosen.recommend(user=user, k=k, explain=explain)


class Recommender:
    """A recommendation run's model with its catalogue, loaded once to answer many requests
    (:func:`recommend` for one). ``recipe``, ``seed`` and ``onnx`` choose the model as there;
    ``onnx_precision`` the export's model (``auto``: int8 when exported, else fp32); ``index``
    how the top items are found (:func:`recommend`)."""

    def __init__(
        self,
        run_dir: str | Path,
        recipe: str | None = None,
        seed: int | None = None,
        onnx: bool = False,
        onnx_precision: str = "auto",
        index: IndexSettings | None = None,
    ) -> None:
        index = index or IndexSettings()
        index.check()
        run_dir = Path(run_dir)
        results = load_results(run_dir)
        if results.get("task") != "recommendation":
            raise DataError(
                f"{run_dir / RESULTS_FILE}: task {results.get('task')!r}; not a recommendation run"
            )
        self.record = _chosen_record(run_dir, results, recipe, seed)
        self.folder = run_dir / self.record["model_dir"]
        if not self.folder.exists():
            saved = sorted(p.name for p in (run_dir / "models").glob("*")) or ["none"]
            raise DataError(f"{self.folder}: no saved model; saved: {', '.join(saved)}")
        self.ranker: Any
        if onnx:
            exported = export_folder(run_dir, self.folder.name)
            if not (exported / "export.json").exists():
                raise DataError(
                    f"{exported}: no ONNX export of model {self.folder.name}; make one with "
                    f"`shoptransfer export {run_dir} --model {self.folder.name} --format onnx`"
                )
            self.ranker = OnnxRanker(exported, precision=onnx_precision)
            self.domain = _target_domain(run_dir)
            if self.ranker.items != self.domain.items:
                raise DataError(
                    f"{exported}: the export ranks {self.ranker.n_items} items, not the "
                    f"{self.domain.n_items} of '{self.domain.name}' in the same order; was the "
                    "data changed? export again"
                )
            self.backend = f"onnx-{self.ranker.precision}"
        else:
            self.domain, self.ranker = _domain_and_ranker(run_dir, self.folder)
            self.backend = "pytorch"
        self._users = {user: i for i, user in enumerate(self.domain.users)}
        self._items = {item: i + 1 for i, item in enumerate(self.domain.items)}  # 0 pads
        self.vectors: DotProductScorer | None = None
        self.index: ApproximateIndex | None = None
        # a catalogue that ``auto`` would index, ranked exactly since FAISS is not installed
        self.index_warning = (
            f"warning: {self.domain.n_items:,} items are ranked exactly (every item scored); "
            f"an approximate index is faster: {INSTALL_HINT}"
            if index.kind == "auto"
            and self.domain.n_items >= APPROXIMATE_FROM
            and not faiss_installed()
            else None
        )
        if index.approximate(self.domain.n_items):
            if not hasattr(self.ranker, "dot_product"):
                raise ConfigError(
                    f"--index approximate needs a model that scores items by a dot product "
                    f"(sasrec, bpr, the text-seq family) in PyTorch; model {self.folder.name} "
                    f"is {'an ONNX export' if onnx else type(self.ranker).kind}"
                )
            self.vectors = self.ranker.dot_product()
            self.index = ApproximateIndex(self.vectors.items, index.lists, index.probes)

    @property
    def index_description(self) -> str:
        """How the top items are found: exact, or the approximate index and its settings."""
        if self.index is None:
            return "exact (every item scored)"
        return (
            f"approximate (FAISS IVF-Flat: {self.index.lists} lists, {self.index.probes} "
            f"probed a query; built in {self.index.build_seconds:.1f} s)"
        )

    @staticmethod
    def choose(run_dir: str | Path, recipe: str | None = None, seed: int | None = None) -> Path:
        """The folder of the model a :class:`Recommender` with these arguments loads."""
        run_dir = Path(run_dir)
        return run_dir / _chosen_record(run_dir, load_results(run_dir), recipe, seed)["model_dir"]

    def knows_user(self, user: str) -> bool:
        return user in self._users

    def knows_item(self, item: str) -> bool:
        return item in self._items

    @property
    def scores_histories(self) -> bool:
        """Whether the model scores any history (not only the users it was trained on)."""
        return not getattr(self.ranker, "by_user", False)

    def recommend(
        self,
        user: str | None = None,
        history: Sequence[str] | None = None,
        k: int = 10,
        explain: int = 3,
    ) -> dict[str, Any]:
        """Top-``k`` items after ``user``'s whole known history, or after ``history`` (item
        ids, oldest first); the history's items are never recommended."""
        return self.recommend_many([RecommendationQuery(user, history, k, explain)])[0]

    def recommend_many(self, requests: Sequence[RecommendationQuery]) -> list[dict[str, Any]]:
        """:meth:`recommend` for each request, with the histories scored in one batch."""
        cases = [self._case(request) for request in requests]
        histories, users = [known for _, known in cases], np.array([i for i, _ in cases])
        if self.index is not None and self.vectors is not None:
            return [
                self._answer(request, known, ids, scores)
                for request, (_, known), (ids, scores) in zip(
                    requests, cases, self._approximate_top(requests, histories, users)
                )
            ]
        all_scores = torch.as_tensor(self.ranker.scores(histories, users))
        answers = []
        for row, (request, (_, known)) in enumerate(zip(requests, cases)):
            scores = all_scores[row].clone()
            scores[0] = -torch.inf
            scores[torch.from_numpy(known)] = -torch.inf
            k = max(0, min(request.k, self.domain.n_items - len(set(known.tolist()))))
            top = torch.topk(scores, k)
            answers.append(self._answer(request, known, top.indices.tolist(), top.values.tolist()))
        return answers

    def _approximate_top(
        self, requests: Sequence[RecommendationQuery], histories: list[np.ndarray], users: Any
    ) -> list[tuple[list[int], list[float]]]:
        """Each request's top items from the index: enough neighbours that ``k`` remain once
        the history's items are left out."""
        assert self.index is not None and self.vectors is not None
        queries = self.vectors.queries(histories, users)
        wanted = max(r.k + len(set(h.tolist())) for r, h in zip(requests, histories))
        found_scores, found_ids = self.index.search(queries.numpy(), wanted)
        tops = []
        for request, known, ids, scores in zip(requests, histories, found_ids, found_scores):
            seen = set(known.tolist()) | {0}
            kept = [(int(i), float(s)) for i, s in zip(ids, scores) if int(i) not in seen]
            kept = kept[: request.k]
            tops.append(([i for i, _ in kept], [s * self.vectors.scale for _, s in kept]))
        return tops

    def _case(self, request: RecommendationQuery) -> tuple[int, np.ndarray]:
        """The user index (0 for an ad-hoc history) and the history to score."""
        domain = self.domain
        if (request.user is None) == (request.history is None):
            raise ConfigError("give a user id or a history of item ids, not both")
        if request.user is not None:
            if request.user not in self._users:
                raise DataError(
                    f"user '{request.user}' is not in '{domain.name}' ({len(domain.users)} users)"
                )
            index = self._users[request.user]
            return index, _full_history(domain, index)
        if not self.scores_histories:
            raise ConfigError(
                f"model {self.folder.name} scores the users it was trained on; give a user"
            )
        history = list(request.history or [])
        for item in history:
            if item not in self._items:
                raise DataError(f"item '{item}' is not in '{domain.name}' ({domain.n_items} items)")
        return 0, np.array([self._items[item] for item in history], dtype=np.int64)

    def _answer(
        self, request: RecommendationQuery, known: np.ndarray, top: list[int], scores: list[float]
    ) -> dict[str, Any]:
        domain = self.domain
        items = []
        for item, score in zip(top, scores):
            weights = np.asarray(self.ranker.contributions(known, item))
            order: Any = (
                np.argsort(-weights, kind="stable")[: request.explain] if weights.any() else []
            )
            items.append(
                {
                    "item": domain.items[item - 1],
                    "text": domain.item_text[item - 1],
                    "score": float(score),
                    "because": [
                        {
                            "item": domain.items[known[i] - 1],
                            "text": domain.item_text[known[i] - 1],
                            "weight": round(float(weights[i]), 4),
                        }
                        for i in order
                    ],
                }
            )
        return {
            "user": request.user,
            "recipe": self.record.get("label", self.record["recipe"]),
            "seed": self.record["seed"],
            "explanation": self.ranker.explanation,
            "history": [domain.items[i - 1] for i in known],
            "items": items,
        }


@dataclasses.dataclass(frozen=True)
class RecommendationQuery:
    """One question for :meth:`Recommender.recommend_many`: a known ``user`` or an ad-hoc
    ``history`` of item ids, how many items (``k``) and history items per item (``explain``)."""

    user: str | None = None
    history: Sequence[str] | None = None
    k: int = 10
    explain: int = 3


def _full_history(domain: InteractionDomain, user: int) -> np.ndarray:
    """The user's known history: the test case's history and item, else training."""
    rows = np.flatnonzero(domain.test.users == user)
    if len(rows):
        row = int(rows[0])
        return np.append(domain.test.histories[row], domain.test.targets[row]).astype(np.int64)
    return np.asarray(domain.train[user], dtype=np.int64)


RETRIEVAL_METRICS_FILE = "metrics.json"


def train_retriever(
    pairs: str | Path,
    output: str | Path,
    *,
    image: str = "image",
    text: str = "title",
    label: str | None = None,
    root: str | Path | None = None,
    test: str | Path | None = None,
    test_fraction: float = 0.2,
    candidates: int = 1000,
    split_seed: int = 0,
    show_progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Train cross-modal projection heads on a table of (photo, title) pairs and measure them.

    ``test_fraction`` of the pairs (seeded by ``split_seed``) is held out, or all pairs train
    and ``test`` (a second table with the same columns: another product group) is the test
    set: Recall@1/5/10 and MRR of title → photo and photo → title search on it, each query
    among ``candidates`` test pairs; with a ``label`` column, zero-shot accuracy of the test
    photos against the classes' names too. The heads are saved to ``output`` (with
    ``metrics.json``: the metrics, the settings and the rows left out by reason). ``settings``
    are :class:`~shoptransfer.retrieval.CrossModalRetriever`'s (a ConfigError names an
    unknown one). Returns what ``metrics.json`` holds.
    """
    unknown = sorted(set(settings) - set(CrossModalRetriever.SETTINGS))
    if unknown:
        raise ConfigError(
            f"unknown retriever setting {unknown[0]!r}; expected one of "
            f"{list(CrossModalRetriever.SETTINGS)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction {test_fraction}: expected above 0 and below 1")
    if candidates < 2:
        raise ConfigError(f"candidates {candidates}: expected at least 2 pairs to rank")
    retriever = CrossModalRetriever(**settings)
    retriever.check()
    table = read_pairs(pairs, image=image, text=text, label=label, root=root)
    dropped = {str(pairs): table.dropped}
    if test is not None:
        train = table
        held_out = read_pairs(test, image=image, text=text, label=label, root=root)
        dropped[str(test)] = held_out.dropped
    else:
        order = np.random.default_rng(split_seed).permutation(len(table))
        held = int(round(test_fraction * len(table)))
        if held < 2 or len(table) - held < 2:
            raise DataError(
                f"{pairs}: {len(table)} usable pairs; a test_fraction of {test_fraction} "
                "leaves too few to train on or to test (at least 2 each)"
            )
        held_out, train = table.subset(order[:held]), table.subset(order[held:])
    cache = EmbeddingCache()
    with showing_progress(show_progress):
        retriever.fit(train.photos, train.titles, cache, show_progress)
        photos = retriever.image_features(held_out.photos, cache, show_progress)
        titles = retriever.text_features(held_out.titles, cache, show_progress)
    check_pairs(len(photos), len(titles))
    metrics: dict[str, Any] = dict(retriever.evaluate_features(photos, titles, candidates))
    if held_out.labels is not None:
        classes = sorted(set(table.labels or []) | set(held_out.labels))
        scores = retriever.zero_shot_scores(photos, classes, cache)
        predicted = [classes[i] for i in scores.argmax(axis=1)]
        metrics["zero_shot_accuracy"] = float(
            np.mean([p == t for p, t in zip(predicted, held_out.labels)])
        )
    retriever.save(output)
    record = {
        "pairs": str(pairs),
        "test": str(test) if test is not None else f"{test_fraction:g} of the pairs",
        "train_pairs": len(train),
        "test_pairs": len(held_out),
        "dropped": {where: counts for where, counts in dropped.items() if counts},
        "settings": retriever.settings(),
        "metrics": metrics,
    }
    atomic_write_json(Path(output) / RETRIEVAL_METRICS_FILE, record)
    return record


def search_pairs(
    model_dir: str | Path,
    pairs: str | Path,
    *,
    query_text: str | None = None,
    query_photo: str | Path | None = None,
    image: str = "image",
    text: str = "title",
    root: str | Path | None = None,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Search a table of (photo, title) pairs with saved retrieval heads: the ``k`` photos
    closest to ``query_text``, or the ``k`` titles closest to the photo ``query_photo``; each
    result is the pair's photo, title and cosine similarity, best first."""
    if (query_text is None) == (query_photo is None):
        raise ConfigError("give one query: a text to find photos for, or a photo to find titles")
    if query_text is not None and not query_text.strip():
        raise DataError("the query text is empty; expected some words to search photos with")
    if query_photo is not None and not Path(query_photo).is_file():
        raise DataError(f"{query_photo}: photo file not found")
    retriever = CrossModalRetriever.load(model_dir)
    table = read_pairs(pairs, image=image, text=text, root=root)
    cache = EmbeddingCache()
    if query_text is not None:
        query = retriever.embed_texts([query_text], cache)
        candidates = retriever.embed_images(table.photos, cache)
    else:
        query = retriever.embed_images([str(query_photo)], cache)
        candidates = retriever.embed_texts(table.titles, cache)
    top, scores = retriever.search(query, candidates, k)
    return [
        {"photo": table.photos[i], "title": table.titles[i], "similarity": float(score)}
        for i, score in zip(top[0], scores[0])
    ]
