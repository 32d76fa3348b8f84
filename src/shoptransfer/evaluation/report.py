"""Plain-text tables of run results: one row per recipe and budget, mean (± std) over seeds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _cell(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "—"
    mean = float(np.mean(values)) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)) * scale:.{digits}f}"


def budget_order(budget: int | float | str) -> tuple[int, float]:
    """Sort key: labels per class first (by count), then fractions, then 'all'."""
    if budget == "all":
        return (2, 0.0)
    if isinstance(budget, float):
        return (1, budget)
    return (0, float(budget))


def result_label(record: dict[str, Any]) -> str:
    """The recipe entry a result belongs to (runs before labels existed: the recipe name)."""
    return record.get("label") or record["recipe"]


@dataclass(frozen=True)
class Column:
    """A metric shown in tables: its key in a result's ``metrics``, header, display scale."""

    key: str
    header: str
    scale: float = 100.0
    digits: int = 1


CLASSIFICATION_COLUMNS = (Column("accuracy", "accuracy"), Column("macro_f1", "macro-F1"))


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group result records by (recipe entry label, budget): per metric the list of values
    over seeds, and seconds and parameters."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    order: list[tuple[str, Any]] = []
    for record in results:
        key = (result_label(record), record["budget"])
        if key not in groups:
            order.append(key)
        groups[key].append(record)
    rows = []
    for label, budget in sorted(order, key=lambda k: (budget_order(k[1]), order.index(k))):
        done = [r for r in groups[(label, budget)] if r.get("status") == "ok"]
        metrics: dict[str, list[float]] = defaultdict(list)
        for record in done:
            for key, value in record["metrics"].items():
                if isinstance(value, int | float):
                    metrics[key].append(float(value))
        rows.append(
            {
                "recipe": groups[(label, budget)][0]["recipe"],
                "label": label,
                "budget": budget,
                "seeds": len(done),
                "metrics": dict(metrics),
                "train_seconds": [r["train_seconds"] for r in done],
                "trainable_parameters": done[0]["trainable_parameters"] if done else None,
                "skipped": "; ".join(
                    sorted(
                        {
                            r.get("reason", "")
                            for r in groups[(label, budget)]
                            if r.get("status") == "skipped"
                        }
                    )
                ),
            }
        )
    return rows


def format_table(
    results: list[dict[str, Any]],
    columns: Sequence[Column] = CLASSIFICATION_COLUMNS,
    budget_header: str = "labels/class",
) -> str:
    """The results as an aligned text table: each column's metric, mean (± std) over seeds."""
    header = ["strategy", budget_header, *(c.header for c in columns), "train s"]
    header.append("trainable params")
    lines = [header]
    notes = []
    for row in summarise(results):
        if not row["seeds"]:
            lines.append([row["label"], str(row["budget"]), *["—"] * (len(header) - 2)])
            notes.append(f"{row['label']} at {row['budget']} {budget_header}: {row['skipped']}")
            continue
        lines.append(
            [
                row["label"],
                str(row["budget"]),
                *(
                    _cell(row["metrics"].get(c.key, []), scale=c.scale, digits=c.digits)
                    for c in columns
                ),
                _cell(row["train_seconds"], scale=1.0),
                f"{row['trainable_parameters']:,}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(line)]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    if notes:
        out.append("")
        out.extend(f"— {note}" for note in notes)
    return "\n".join(out)


def format_seed_ensembles(
    ensembles: list[dict[str, Any]],
    columns: Sequence[Column] = CLASSIFICATION_COLUMNS,
    budget_header: str = "labels/class",
) -> str:
    """One line per seed ensemble (``ensemble_seeds``): each column's metric of the averaged
    probabilities beside the seeds' mean; '' when there are none."""
    lines = []
    for ensemble in ensembles:
        numbers = ", ".join(
            f"{c.header} {ensemble['metrics'][c.key] * c.scale:.{c.digits}f} "
            f"(seeds' mean {ensemble['mean_of_seeds'][c.key] * c.scale:.{c.digits}f})"
            for c in columns
            if c.key in ensemble["metrics"]
        )
        seeds = len(ensemble["seeds"])
        lines.append(
            f"{ensemble['label']} at {ensemble['budget']} {budget_header}, {seeds} seeds "
            f"together: {numbers}"
        )
    return "\n".join(lines)


def format_picks(records: list[dict[str, Any]]) -> str:
    """One line per cell of a recipe that chose what to train (``auto``): what it picked,
    whether that transfers, each candidate's score and how they were scored; '' when no
    record holds a pick."""
    lines = []
    for record in records:
        fitted = record.get("fitted") or {}
        if record.get("status") != "ok" or "picked" not in fitted:
            continue
        scores = ", ".join(f"{name} {value:.3f}" for name, value in fitted["scores"].items())
        backbone = f" on {fitted['backbone']}" if "backbone" in fitted else ""
        transfers = "transfers" if fitted.get("transfers") else "does not transfer"
        lines.append(
            f"{record['label']}, budget {record['budget']}, seed {record['seed']}: picked "
            f"{fitted['picked']}{backbone} ({transfers}); {scores} — {fitted['scored_by']}"
        )
    return "\n".join(lines)
