"""Run folders: where results, resolved configs and saved models go, and what a run records."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shoptransfer.errors import ConfigError, DataError

RESULTS_FILE = "results.json"


def check_folder(path: str | Path, key: str) -> None:
    """A ConfigError naming ``key`` when files cannot go into the folder ``path``: it, or the
    nearest part of it that exists, is a file or cannot be written (a missing folder is fine:
    it is created)."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise ConfigError(f"{key} '{path}': {existing} is a file; expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key} '{path}': {existing} cannot be written to; expected a folder")


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """Create ``output_dir/<time>-<name>/`` (with a numeric suffix if it already exists)."""
    check_folder(output_dir, "output_dir")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:100] or "run"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir) / f"{stamp}-{slug}"
    folder, n = base, 1
    while True:
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
        except OSError as exc:
            raise ConfigError(
                f"output_dir '{output_dir}': cannot create {folder} ({exc.strerror})"
            ) from None


@contextmanager
def run_folder(output_dir: str | Path, name: str, finished: Callable[[], int]) -> Iterator[Path]:
    """A new run folder (:func:`new_run_dir`) for the ``with`` block.

    When the block fails, a folder with no finished cell (``finished()`` is 0) is removed, with
    the folders above it that were made for it; a folder with finished cells is kept, and the
    error gets a note saying so.
    """
    made = [p for p in (Path(output_dir), *Path(output_dir).parents) if not p.exists()]
    folder = new_run_dir(output_dir, name)
    try:
        yield folder
    except BaseException as exc:
        count = finished()
        if count:
            exc.add_note(
                f"the run folder {folder} keeps the {count} cell(s) that finished; "
                f"continue it with: shoptransfer run --resume {folder}"
            )
        else:
            shutil.rmtree(folder, ignore_errors=True)
            for parent in made:  # the deepest first; stops at one that holds something
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise


@contextmanager
def resumed_folder(folder: Path, finished: Callable[[], int]) -> Iterator[Path]:
    """An existing run folder for the ``with`` block; it is kept whatever happens, and an error
    says how many cells it holds and how to continue it."""
    try:
        yield folder
    except BaseException as exc:
        exc.add_note(
            f"the run folder {folder} keeps the {finished()} cell(s) that finished; "
            f"continue it with: shoptransfer run --resume {folder}"
        )
        raise


def cell_name(label: str, budget: Any, seed: int) -> str:
    """A cell's folder name, under ``models/`` and ``checkpoints/``."""
    return f"{label}-k{budget}-seed{seed}"


def remove_orphans(run_dir: Path, finished: set[str]) -> list[str]:
    """Remove what an interrupted run left behind and return it (paths relative to
    ``run_dir``): the temporary files and staging folders of atomic writes cut short, the
    checkpoints of ``finished`` cells, and the models of cells not in ``finished`` (a model
    saved before its cell was recorded)."""
    orphans = [p for p in run_dir.rglob(".*.tmp") if not any(".tmp" in q.name for q in p.parents)]
    for kind, keep in (("checkpoints", False), ("models", True)):
        folder = run_dir / kind
        if folder.is_dir():
            orphans += [p for p in folder.iterdir() if (p.name in finished) != keep]
    removed = []
    for path in sorted(set(orphans)):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(str(path.relative_to(run_dir)))
    return removed


def environment() -> dict[str, Any]:
    """Package versions and machine facts recorded with every run."""
    versions = {}
    for package in ("shoptransfer", "torch", "transformers", "numpy", "scikit-learn", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    }


def resident_mb() -> float | None:
    """This process's resident memory now (MB), where /proc tells it."""
    return _rss_mb()


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory (MB) of this process while the ``with`` block runs.

    Samples ``/proc/self/status`` every 20 ms on Linux; elsewhere falls back to the process's
    lifetime peak from ``getrusage``.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb: float = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, _rss_mb() or 0.0)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if _rss_mb() is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.peak_mb = max(self.peak_mb, _rss_mb() or 0.0)
        else:
            scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """The ``results.json`` of a run folder."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        raise DataError(f"{run_dir}: no {RESULTS_FILE}; expected a shoptransfer run folder")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; the file is damaged") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(results, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(results).__name__}")
    return results


def read_json(path: Path) -> Any:
    """A saved JSON file's content; a DataError naming the file when it is missing or damaged."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; the saved model is incomplete")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; the file is damaged") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is damaged"
        ) from None


def read_weights(path: Path, names: Sequence[str] = (), framework: str = "pt") -> dict[str, Any]:
    """The tensors of a safetensors file (torch tensors, or numpy arrays with ``framework``
    ``"np"``), holding at least ``names``; a DataError naming the file when it is missing,
    truncated or not safetensors."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise DataError(f"{path}: file not found; the saved model is incomplete")
    try:
        with safe_open(str(path), framework=framework) as weights:
            tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise DataError(
            f"{path}: not a readable safetensors file ({detail}); the file is damaged"
        ) from None
    missing = [name for name in names if name not in tensors]
    if missing:
        raise DataError(f"{path}: no tensor {missing[0]!r}; the file is damaged")
    return tensors


class _SavedCell(BaseModel):
    """What choosing and loading a model read of a cell of ``results.json`` that saved one."""

    model_config = ConfigDict(extra="allow", strict=True)
    recipe: str
    label: str | None = None
    seed: int
    budget: int | float | str
    model_dir: str
    metrics: dict[str, Any]
    validation_metrics: dict[str, Any] | None = None


def saved_cells(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's results and its cells that saved a model, checked to hold what choosing and
    loading a model read (a DataError naming ``results.json`` and the key otherwise)."""
    results = load_results(run_dir)
    path = run_dir / RESULTS_FILE
    cells = results.get("results")
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        raise DataError(f"{path}: key 'results' is not a list of cells; the file is damaged")
    for number, cell in enumerate(cells):
        if "model_dir" not in cell:
            continue
        try:
            _SavedCell.model_validate(cell)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in ("results", number, *first["loc"]))
            raise DataError(f"{path}: key '{key}': {first['msg']}; the file is damaged") from None
    saved = [cell for cell in cells if "model_dir" in cell]
    if not saved:
        raise DataError(f"{path}: lists no saved models (was save_models off?)")
    return results, saved


def choose_model(run_dir: str | Path, model: str | None = None) -> Path:
    """The folder of ``model`` in a run, or of the run's best model by its primary metric
    (macro-F1 for classification, the lowest RMSE for regression; validation NDCG for
    recommendation, where the test split must not choose)."""
    run_dir = Path(run_dir)
    results, saved = saved_cells(run_dir)
    if model is None:
        metric = results.get("primary_metric", "macro_f1")
        higher = results.get("higher_is_better", True)
        if not isinstance(metric, str) or not isinstance(higher, bool):
            raise DataError(
                f"{run_dir / RESULTS_FILE}: key 'primary_metric' or 'higher_is_better' is "
                "damaged; expected a metric name and true or false"
            )

        def score(cell: dict[str, Any]) -> float:
            value = (cell.get("validation_metrics") or cell["metrics"]).get(metric)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(
                    f"{run_dir / RESULTS_FILE}: the cell of {cell['model_dir']} has no number "
                    f"for '{metric}'; the file is damaged"
                )
            return value if higher else -value

        return run_dir / max(saved, key=score)["model_dir"]
    names = [Path(r["model_dir"]).name for r in saved]
    if model not in names:
        raise ConfigError(f"{run_dir}: no model '{model}'; the run has {names}")
    return run_dir / "models" / model
