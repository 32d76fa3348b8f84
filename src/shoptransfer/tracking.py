"""Experiment tracking in MLflow: every cell of a run as an MLflow run.

A run folder becomes one MLflow parent run (named after the folder; the config, results and
report as artifacts) with a nested run per cell: its parameters (recipe, label, family, budget,
seed, options), its test metrics, validation and cold-start metrics and its cost (train and
predict seconds, peak memory, FLOPs, trainable parameters). The experiment is the run's name.

The default store is a local SQLite file, ``<output_dir>/mlflow.db`` (artifacts beside it in
``mlartifacts/``), so nothing needs to be started; any MLflow tracking URI is accepted instead.
MLflow is an optional extra: ``pip install 'shoptransfer[tracking]'``.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from shoptransfer.errors import ConfigError
from shoptransfer.evaluation.report import result_label
from shoptransfer.runs import RESULTS_FILE, load_results

TRACKING_DB = "mlflow.db"
TRACKING_ARTIFACTS = "mlartifacts"
INSTALL_HINT = "pip install 'shoptransfer[tracking]'"
COSTS = (
    "train_seconds",
    "reused_stage_seconds",
    "predict_seconds",
    "peak_rss_mb",
    "train_flops_estimate",
    "trainable_parameters",
    "target_examples",
)


def check_tracking() -> None:
    """A ConfigError (exit 2) when tracking is asked for but MLflow is not installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"tracking: MLflow is not installed; expected it for --track / tracking: "
            f"({INSTALL_HINT})"
        ) from None


def local_store(output_dir: str | Path) -> str:
    """The default tracking URI: a SQLite file in the folder that receives the runs."""
    return "sqlite:///" + str((Path(output_dir) / TRACKING_DB).resolve())


def metric_name(key: str) -> str:
    """``key`` as an MLflow metric name (which allows no ``@``): ``recall@10`` is
    ``recall_at_10``."""
    return re.sub(r"[^\w./ :-]", "_", key.replace("@", "_at_"))


def cell_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a cell that are logged as MLflow metrics: test metrics by their own
    names, ``valid_`` and ``cold_start_`` ones prefixed, and the cost."""
    out: dict[str, float] = {}

    def add(prefix: str, metrics: Any) -> None:
        if not isinstance(metrics, dict):
            return
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[metric_name(prefix + key)] = float(value)

    add("", record.get("metrics"))
    add("valid_", record.get("validation_metrics"))
    cold = record.get("cold_start")
    if isinstance(cold, dict):
        add("cold_start_", cold.get("metrics"))
        if isinstance(cold.get("cases"), int):
            out["cold_start_cases"] = float(cold["cases"])
    add("", {key: record[key] for key in COSTS if key in record})
    return out


def _params(record: dict[str, Any]) -> dict[str, str]:
    params: dict[str, str] = {
        key: str(record[key]) for key in ("recipe", "family", "budget", "seed") if key in record
    }
    params["label"] = result_label(record)
    for key, value in (record.get("options") or {}).items():
        params[f"option.{key}"] = str(value)[:500]
    return params


def track_run(run_dir: str | Path, uri: str | None = None) -> str:
    """Log a finished run folder's cells to MLflow at ``uri`` (default: :func:`local_store`
    in the folder above the run); return the MLflow id of the run's parent run."""
    check_tracking()
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no database set-up chatter
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    if uri is None:
        uri = local_store(run_dir.parent)
    client = MlflowClient(uri)
    name = str(results.get("name") or run_dir.name)
    try:
        experiment = client.get_experiment_by_name(name)
    except mlflow.exceptions.MlflowException as exc:
        raise ConfigError(f"tracking URI '{uri}': {str(exc).splitlines()[0]}") from None
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        artifacts = None
        if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
            folder = Path(uri.removeprefix("sqlite:///")).parent / TRACKING_ARTIFACTS / name
            artifacts = folder.resolve().as_uri()
        experiment_id = client.create_experiment(name, artifact_location=artifacts)
    parent = client.create_run(
        experiment_id,
        run_name=run_dir.name,
        tags={"shoptransfer.run_dir": str(run_dir.resolve()), "task": str(results.get("task"))},
    )
    parent_id = parent.info.run_id
    keys = ("task", "name", "primary_metric", "higher_is_better")
    client.log_batch(parent_id, params=[Param(k, str(results[k])) for k in keys if k in results])
    for record in results.get("results", []):
        cell = client.create_run(
            experiment_id,
            run_name=f"{result_label(record)}-b{record.get('budget')}-seed{record.get('seed')}",
            tags={
                "mlflow.parentRunId": parent_id,
                "status": str(record.get("status")),
                **({"reason": str(record["reason"])} if record.get("reason") else {}),
                **({"model_dir": str(record["model_dir"])} if record.get("model_dir") else {}),
            },
        )
        cell_id = cell.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            cell_id,
            metrics=[Metric(k, v, now, 0) for k, v in cell_metrics(record).items()],
            params=[Param(k, v) for k, v in _params(record).items()],
        )
        client.set_terminated(cell_id)
    for file in ("config.yaml", RESULTS_FILE, "report.html"):
        if (run_dir / file).is_file():
            client.log_artifact(parent_id, str(run_dir / file))
    client.set_terminated(parent_id)
    return parent_id
