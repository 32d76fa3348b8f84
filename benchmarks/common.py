"""Helpers the benchmark scripts share: where the research data is, running one setting of a
benchmark on the library's runner, and keeping its records in the benchmark's results file.

A benchmark's results file (``results/<name>.json``, schema :data:`SCHEMA`) holds, per
setting (a Blitzer pair, a fashion budget, ...), the records of ``results.json`` of every run
that filled it (the runner's schema, unchanged), the runs' folders and wall clocks, and the
comparison of :func:`shoptransfer.evaluation.compare.analyse` over the setting's records.
Every number a benchmark's markdown shows is computed from that file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "benchmarks" / "runs"  # run folders and derived data files (not in git)
SCHEMA = "shoptransfer-runner-1"


def require_data(folder: str) -> Path:
    path = SHARED_DATA / folder
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (the research data lives in ../shared/data)")
    return path


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(name: str, payload: dict[str, Any], markdown: str) -> None:
    from shoptransfer.files import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / f"{name}.json", payload)
    atomic_write_text(RESULTS / f"{name}.md", markdown)


# -- results files of the runner's records ------------------------------------------------------


def open_results(benchmark: str, out: str, fresh: bool) -> dict[str, Any]:
    """The results file ``results/<out>.json`` to add to (a new one with ``fresh``).

    A file written before the benchmarks ran on the library (no ``schema``) is not added to:
    the script stops and says so.
    """
    path = RESULTS / f"{out}.json"
    payload = {} if fresh else load_json(path)
    if payload and payload.get("schema") != SCHEMA:
        sys.exit(
            f"{path} was written by the benchmark's earlier runner (no '{SCHEMA}' schema); "
            "start a new file with --fresh (the old one stays in git) or name another with --out"
        )
    payload.setdefault("schema", SCHEMA)
    payload.setdefault("benchmark", benchmark)
    payload.setdefault("settings", {})
    payload.setdefault("invocations", [])
    return payload


def is_current(payload: dict[str, Any]) -> bool:
    """Whether ``payload`` holds the runner's records (else: a file of the earlier runner)."""
    return payload.get("schema") == SCHEMA


def recorded(
    payload: dict[str, Any], setting: str, label: str, seed: int, budget: Any = None
) -> bool:
    """Whether ``setting`` already holds an ok record of entry ``label`` at ``seed`` (and at
    ``budget``, when given)."""
    records = payload["settings"].get(setting, {}).get("records", [])
    return any(
        r["label"] == label
        and r["seed"] == seed
        and r["status"] == "ok"
        and (budget is None or str(r["budget"]) == str(budget))
        for r in records
    )


def forget(payload: dict[str, Any], setting: str, labels: set[str]) -> None:
    """Drop the records of ``labels`` from ``setting`` (to run them again)."""
    cell = payload["settings"].get(setting)
    if cell is not None:
        cell["records"] = [r for r in cell["records"] if r["label"] not in labels]


def run_setting(
    payload: dict[str, Any],
    setting: str,
    config: dict[str, Any],
    *,
    compare: bool = False,
    shared_cores: bool = False,
    show: Callable[[dict[str, Any]], str] | None = None,
    stages: Any = None,
) -> dict[str, Any]:
    """Run ``config`` (an experiment file's mapping) with ``api.compare`` or
    ``api.run_experiment``, and add its records to ``setting`` of ``payload``.

    Records of the same entry, budget and seed recorded before are replaced. Returns the run's
    entry in ``payload`` (run folder, wall clock, ...). ``stages``: a StageCache shared with
    the invocation's other runs (a source stage trained for one pair, reused by the next).
    """
    from shoptransfer.api import compare as compare_run
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    config = {"output_dir": str(RUNS), "save_models": False, **config}
    parsed = parse_config(config, f"{payload['benchmark']} {setting}")

    def progress(record: dict[str, Any]) -> None:
        what = show(record) if show is not None else record.get("status", "")
        where = f"{setting}: {record['label']}, budget {record['budget']}, seed {record['seed']}"
        print(f"{where}: {what}", flush=True)

    started = time.perf_counter()
    runner = compare_run if compare else run_experiment
    # progress on: each training epoch prints a line (epoch, validation score, ETA) on stderr,
    # so a long benchmark's log shows it is alive; bars are drawn only on a terminal
    run_dir = runner(parsed, show_progress=True, on_result=progress, stages=stages)
    return add_run(payload, setting, run_dir, time.perf_counter() - started, compare, shared_cores)


def add_run(
    payload: dict[str, Any],
    setting: str,
    run_dir: Path,
    wall: float | None,
    compare: bool = True,
    shared_cores: bool = False,
) -> dict[str, Any]:
    """Add the records of the run folder ``run_dir`` to ``setting`` of ``payload`` (also those
    of a run whose invocation stopped before adding them: its finished cells)."""
    from shoptransfer.evaluation.compare import analyse
    from shoptransfer.runs import load_results

    results = load_results(run_dir)
    cell = payload["settings"].setdefault(setting, {"records": [], "runs": []})
    new = results["results"]
    replaced = {(r["label"], str(r["budget"]), r["seed"]) for r in new}
    kept = [r for r in cell["records"] if (r["label"], str(r["budget"]), r["seed"]) not in replaced]
    run = {
        "run_dir": str(run_dir.relative_to(ROOT)),
        "command": "compare" if compare else "run_experiment",
        "created": results["created"],
        "wall_seconds": round(wall, 1) if wall is not None else None,
        "labels": sorted({r["label"] for r in new}),
        "seeds": sorted({r["seed"] for r in new}),
        "cores": os.cpu_count(),
        "cores_shared": shared_cores,
        "data": results["data"],
        **({"domain_gap": results["domain_gap"]} if "domain_gap" in results else {}),
        **({"seed_ensembles": results["seed_ensembles"]} if "seed_ensembles" in results else {}),
        "versions": results.get("versions"),
        "machine": results.get("machine"),
    }
    cell["runs"].append(run)
    cell["records"] = kept + [{**r, "run": len(cell["runs"]) - 1} for r in new]
    cell["primary_metric"] = results["primary_metric"]
    cell["higher_is_better"] = results["higher_is_better"]
    cell["comparison"] = analyse(
        cell["records"], results["primary_metric"], results["higher_is_better"]
    )
    return run


def add_invocation(
    payload: dict[str, Any], arguments: list[str], started: float, shared_cores: bool
) -> None:
    """Note one invocation of the script: its arguments, wall clock and cores."""
    payload["invocations"].append(
        {
            "arguments": arguments,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "cores": os.cpu_count(),
            "cores_shared": shared_cores,
        }
    )


def timing_sentence(payload: dict[str, Any]) -> str:
    """How the timings of a results file were measured, from its invocations."""
    runs = payload.get("invocations", [])
    if not runs:
        return ""
    total = sum(run["wall_seconds"] for run in runs) / 60
    cores = sorted({run["cores"] for run in runs})
    shared = [run for run in runs if run.get("cores_shared")]
    sharing = (
        "the cores were shared with another developer's jobs while measuring, so timings are "
        "upper bounds"
        if len(shared) == len(runs)
        else f"{len(shared)} of them on cores shared with other jobs"
        if shared
        else "no other jobs on the cores"
    )
    return (
        f"Wall clock {total:.1f} min over {len(runs)} invocation(s) on "
        f"{'/'.join(str(c) for c in cores)} CPU cores; {sharing}."
    )


# -- numbers from records --------------------------------------------------------------------


def values(records: list[dict[str, Any]], label: str, key: str, **where: Any) -> list[float]:
    """``key`` of the ok records of entry ``label`` (a metric, or ``train_seconds``), by seed.

    ``key`` is looked up in ``metrics``, then in the record itself; ``validation:KEY`` reads
    ``validation_metrics``.
    """
    out = []
    for r in sorted(records, key=lambda r: r["seed"]):
        if r["label"] != label or r["status"] != "ok":
            continue
        if any(str(r.get(k)) != str(v) for k, v in where.items()):
            continue
        if key.startswith("validation:"):
            out.append(float(r["validation_metrics"][key.split(":", 1)[1]]))
        else:
            out.append(float(r["metrics"][key] if key in r["metrics"] else r[key]))
    return out


def mean_std(seeds: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value), as the library's compare."""
    mean = float(np.mean(seeds))
    return mean, float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0


def pm(seeds: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` (std over seeds, n - 1), or the one value; a dash for none."""
    if not seeds:
        return "—"
    mean, std = mean_std(seeds)
    if len(seeds) == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
