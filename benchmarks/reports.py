"""HTML reports of the committed benchmarks, from their results files (no training).

    python benchmarks/reports.py [blitzer blitzer_128 fashion scientific ...] [--out FOLDER]

writes ``FOLDER/<name>.html`` (default ``benchmarks/results/reports/``) with the library's
report (:mod:`shoptransfer.evaluation.html_report`), one column per setting (a Blitzer pair, a
fashion part, a Scientific run). Files in the runner's schema (``rerun_*.json`` and every file a
script writes now) are shown as they are; the three files written by the scripts' earlier
runners (``blitzer_128.json``, ``fashion.json``, ``scientific.json``) are read into the runner's
records first, keeping only what they hold (each report says what is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA = "shoptransfer-runner-1"


def _run(title: str, task: str, results: dict[str, Any], note: str = "") -> Any:
    from shoptransfer.api import task_class
    from shoptransfer.evaluation.html_report import ReportRun

    task_type = task_class(task)
    primary = results["primary_metric"]
    columns = tuple(sorted(task_type.columns, key=lambda c: c.key != primary))
    return ReportRun(title, {"task": task, **results}, columns, task_type.budget_header, note)


def runner_runs(payload: dict[str, Any]) -> list[Any]:
    """A results file in the runner's schema: one column per setting, its records as recorded."""
    runs = []
    for setting, entry in payload["settings"].items():
        primary = entry.get("primary_metric", "macro_f1")
        task = "recommendation" if "@" in primary else "classification"
        results = {
            "name": setting,
            "primary_metric": primary,
            "higher_is_better": entry.get("higher_is_better", True),
            "results": entry["records"],
            **({"comparison": entry["comparison"]} if "comparison" in entry else {}),
        }
        runs.append(_run(f"{payload.get('benchmark', '')} {setting}".strip(), task, results))
    return runs


def blitzer_runs(payload: dict[str, Any]) -> list[Any]:
    """The earlier Blitzer file: accuracy (%) per seed of each method and pair, and each
    method's mean seconds per pair."""
    note = (
        "From the earlier runner's file: accuracy per seed (target reviews read without labels; "
        "budget 0); train seconds are the method's mean (no per-seed time), no memory, FLOPs, "
        "macro-F1, confusion matrices or quality curves were recorded. scratch-tfidf is trained "
        "on the source labels (the no-transfer baseline)."
    )
    runs = []
    for pair, cell in payload["cells"].items():
        records = []
        for method, scores in cell.items():
            if not isinstance(scores, dict):
                continue  # the pair's total seconds
            for seed, value in enumerate(scores["seeds"]):
                records.append(
                    {
                        "recipe": method,
                        "label": method,
                        "family": "baseline" if method.startswith("scratch") else "transfer",
                        "budget": 0,
                        "seed": seed,
                        "status": "ok",
                        "metrics": {"accuracy": value / 100.0},
                        "train_seconds": scores.get("seconds", 0.0),
                        "trainable_parameters": 0,
                    }
                )
        results = {"name": pair, "primary_metric": "accuracy", "higher_is_better": True}
        runs.append(
            _run(f"Blitzer {pair}", "classification", {**results, "results": records}, note)
        )
    return runs


def _fashion_records(methods: dict[str, Any], budget: Any, baseline: Callable[[str], bool]) -> list:
    records = []
    for label, entry in methods.items():
        if not isinstance(entry, dict) or "runs" not in entry:
            continue
        for seed, cell in entry["runs"].items():
            records.append(
                {
                    "recipe": entry.get("recipe", label),
                    "label": label,
                    "family": "baseline" if baseline(label) else "transfer",
                    "budget": budget,
                    "seed": int(seed),
                    "status": "ok",
                    "metrics": {k: cell[k] for k in ("accuracy", "macro_f1") if k in cell},
                    "train_seconds": cell.get("train_seconds", 0.0),
                    "peak_rss_mb": cell.get("peak_mb", 0.0),
                    "trainable_parameters": cell.get("trainable_parameters", 0),
                }
            )
    return records


def fashion_runs(payload: dict[str, Any]) -> list[Any]:
    """The earlier fashion file: per budget and method, each seed's accuracy, macro-F1, train
    seconds, peak memory and trainable parameters; and the men -> women shift."""
    missing = "No FLOPs, confusion matrices or quality curves were recorded by that runner."
    records = []
    for budget, methods in payload["budgets"].items():
        amount = budget if budget == "all" else int(budget)
        records += _fashion_records(methods, amount, lambda label: label == "scratch")
    results = {"name": "budgets", "primary_metric": "macro_f1", "higher_is_better": True}
    runs = [
        _run(
            "fashion: articleType, 20 classes, labels per class",
            "classification",
            {**results, "results": records, "classes": payload["budgets_data"]["classes"]},
            f"From the earlier runner's file. {missing}",
        )
    ]
    shift = _fashion_records(
        payload.get("men_to_women", {}), 0, lambda label: label.startswith("source-only")
    )
    if shift:
        results = {"name": "men -> women", "primary_metric": "macro_f1", "higher_is_better": True}
        runs.append(
            _run(
                "fashion: men's photos -> women's (no target labels)",
                "classification",
                {**results, "results": shift},
                "From the earlier runner's file. The verdicts compare each alignment recipe with "
                "the best source-only model (marked as the baseline: there is no scratch model "
                f"without target labels). {missing}",
            )
        )
    return runs


def scientific_runs(payload: dict[str, Any]) -> list[Any]:
    """The earlier Scientific file: per model, each seed's test and validation metrics, train
    seconds, peak memory and trainable parameters (every target user: budget all)."""
    records = []
    for label, model in payload["models"].items():
        for cell in model["runs"]:
            records.append(
                {
                    "recipe": label,
                    "label": label,
                    "family": model.get("family", "transfer"),
                    "budget": "all",
                    "seed": cell["seed"],
                    "status": "ok",
                    "metrics": cell["test"],
                    "validation_metrics": cell.get("valid", {}),
                    "train_seconds": cell.get("train_seconds", 0.0),
                    "peak_rss_mb": cell.get("train_peak_mb", 0.0),
                    "trainable_parameters": cell.get("trainable_parameters", 0),
                }
            )
    source = payload.get("domains", {}).get("source", {}).get("name", "source")
    results = {"name": "scientific", "primary_metric": "ndcg@10", "higher_is_better": True}
    note = (
        f"From the earlier runner's file (transfer recipes pre-train on {source}). No FLOPs, "
        "cold-start metrics, user-share budgets or quality curves were recorded by that runner."
    )
    return [
        _run(
            "Amazon Scientific: next-item recommendation",
            "recommendation",
            {**results, "results": records},
            note,
        )
    ]


EARLIER = {"blitzer_128": blitzer_runs, "fashion": fashion_runs, "scientific": scientific_runs}


def report_runs(name: str) -> list[Any]:
    """The columns of the report of ``results/<name>.json``."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        sys.exit(f"no results file {path}")
    payload = json.loads(path.read_text(encoding="utf-8"))
    if payload.get("schema") == SCHEMA:
        return runner_runs(payload)
    if name in EARLIER:
        return EARLIER[name](payload)
    sys.exit(f"{path}: neither the runner's schema nor one of the earlier files {sorted(EARLIER)}")


def main() -> None:
    from shoptransfer.evaluation.html_report import render_report
    from shoptransfer.files import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", default=["blitzer", *EARLIER], help="results files' names"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "reports", help="output folder")
    args = parser.parse_args()
    for name in args.names:
        runs = report_runs(name)
        path = args.out / f"{name}.html"
        atomic_write_text(path, render_report(runs, f"shoptransfer benchmark: {name}"))
        print(path)


if __name__ == "__main__":
    main()
