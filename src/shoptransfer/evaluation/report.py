"""Plain-text tables of run results: one row per recipe and budget, mean (± std) over seeds."""

from __future__ import annotations

from collections import defaultdict
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


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group result records by (recipe entry label, budget): lists of accuracy, macro-F1,
    seconds, params."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    order: list[tuple[str, int]] = []
    for record in results:
        key = (result_label(record), record["budget"])
        if key not in groups:
            order.append(key)
        groups[key].append(record)
    rows = []
    for label, budget in sorted(order, key=lambda k: (budget_order(k[1]), order.index(k))):
        done = [r for r in groups[(label, budget)] if r.get("status") == "ok"]
        rows.append(
            {
                "recipe": groups[(label, budget)][0]["recipe"],
                "label": label,
                "budget": budget,
                "seeds": len(done),
                "accuracy": [r["metrics"]["accuracy"] for r in done],
                "macro_f1": [r["metrics"]["macro_f1"] for r in done],
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


def format_table(results: list[dict[str, Any]]) -> str:
    """The results as an aligned text table (accuracy and macro-F1 in %)."""
    header = ["strategy", "labels/class", "accuracy", "macro-F1", "train s", "trainable params"]
    lines = [header]
    notes = []
    for row in summarise(results):
        if not row["seeds"]:
            lines.append([row["label"], str(row["budget"]), "—", "—", "—", "—"])
            notes.append(f"{row['label']} at {row['budget']} labels/class: {row['skipped']}")
            continue
        lines.append(
            [
                row["label"],
                str(row["budget"]),
                _cell(row["accuracy"]),
                _cell(row["macro_f1"]),
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
