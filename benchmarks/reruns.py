"""Reruns on the library's runner beside the committed results: is each within seed noise?

    .venv/bin/python benchmarks/reruns.py     # writes results/reruns.{json,md} from the JSON

Committed: results/committed/{blitzer,fashion,scientific}.json, the results files as they were
committed when the benchmarks still ran their own loops (commit 772edf9, 3 seeds each).
Reruns: results/rerun_{blitzer,fashion,scientific}.json, written by the benchmark scripts with
``--out`` (one seed each; the commands are in each file's ``invocations``).

Rule: a rerun is within seed noise when |rerun - committed mean| <= 2 x committed std, the
sample standard deviation (n - 1) of the committed seeds; with one committed seed there is no
noise estimate, and the row says so. The committed value of the rerun's own seed is shown too:
the same seed on the same code path should give close numbers (bf16 and thread scheduling
leave small differences).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from common import RESULTS, load_json, mean_std, save, values

COMMITTED = RESULTS / "committed"


# How the committed (earlier runner's) files hold a cell's values, by seed.
def blitzer_committed(pair: str, method: str) -> Callable[[dict[str, Any], str], dict[int, float]]:
    def read(payload: dict[str, Any], metric: str) -> dict[int, float]:
        assert metric == "accuracy"  # the earlier runner kept accuracy % per seed, rounded
        return {s: v / 100 for s, v in enumerate(payload["cells"][pair][method]["seeds"])}

    return read


def fashion_committed(budget: str, name: str) -> Callable[[dict[str, Any], str], dict[int, float]]:
    def read(payload: dict[str, Any], metric: str) -> dict[int, float]:
        runs = payload["budgets"][budget][name]["runs"]
        return {int(seed): run[metric] for seed, run in runs.items()}

    return read


def scientific_committed(name: str) -> Callable[[dict[str, Any], str], dict[int, float]]:
    def read(payload: dict[str, Any], metric: str) -> dict[int, float]:
        runs = payload["models"][name]["runs"]
        if metric == "train_seconds":
            return {run["seed"]: run["train_seconds"] for run in runs}
        return {run["seed"]: run["test"][metric] for run in runs}

    return read


# (benchmark, setting in the rerun file, entry label, shown as, committed reader, metrics)
CELLS: list[tuple[str, str, str, str, Any, list[str]]] = [
    (
        "blitzer",
        "B->K",
        "self-training",
        "B->K self-training",
        blitzer_committed("B->K", "self-training"),
        ["accuracy"],
    ),
    (
        "blitzer",
        "B->K",
        "source-only",
        "B->K source-only",
        blitzer_committed("B->K", "source-only"),
        ["accuracy"],
    ),
    (
        "fashion",
        "budget 20",
        "frozen-features",
        "articleType 20/class frozen-features",
        fashion_committed("20", "frozen-features"),
        ["accuracy", "macro_f1"],
    ),
    (
        "fashion",
        "budget 20",
        "scratch",
        "articleType 20/class scratch",
        fashion_committed("20", "scratch"),
        ["accuracy", "macro_f1"],
    ),
    (
        "scientific",
        "movielens-100k->scientific",
        "text-seq-ids",
        "text-seq-ids (hidden 128)",
        scientific_committed("text-seq-ids"),
        ["recall@10", "ndcg@10"],
    ),
]
SCALE = {"accuracy": (100, 1, "%"), "macro_f1": (100, 1, "%")}  # others: as recorded, 4 digits
HEADERS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "recall@10": "Recall@10"}
HEADERS["ndcg@10"] = "NDCG@10"


def rows() -> list[dict[str, Any]]:
    """One row per (cell, metric, rerun seed) that the rerun files hold."""
    out = []
    for benchmark, setting, label, shown, committed_values, metrics in CELLS:
        rerun = load_json(RESULTS / f"rerun_{benchmark}.json")
        records = rerun.get("settings", {}).get(setting, {}).get("records", [])
        committed = load_json(COMMITTED / f"{benchmark}.json")
        for record in [r for r in records if r["label"] == label and r["status"] == "ok"]:
            seed = record["seed"]
            for metric in metrics:
                by_seed = committed_values(committed, metric)
                mean, std = mean_std(list(by_seed.values()))
                value = values([record], label, metric)[0]
                difference = value - mean
                single = len(by_seed) == 1
                out.append(
                    {
                        "benchmark": benchmark,
                        "cell": shown,
                        "metric": metric,
                        "seed": seed,
                        "rerun": value,
                        "committed_mean": mean,
                        "committed_std": std,
                        "committed_seeds": len(by_seed),
                        "committed_same_seed": by_seed.get(seed),
                        "difference": difference,
                        "within_noise": None if single else bool(abs(difference) <= 2 * std),
                        "rerun_train_seconds": record["train_seconds"],
                        "rerun_epoch_seconds": _epoch_seconds(record),
                        "committed_train_seconds": _committed_seconds(benchmark, committed, shown),
                    }
                )
    return out


def _epoch_seconds(record: dict[str, Any]) -> list[float]:
    """Training seconds of each epoch, from the quality curve (``compare`` records it)."""
    times = [0.0] + [point[0] for point in record.get("quality_curve") or []]
    # the runner scores the final model once more at the end: a point at the same time
    return [round(b - a, 1) for a, b in zip(times, times[1:]) if b - a > 0.05]


def _committed_seconds(benchmark: str, committed: dict[str, Any], shown: str) -> float | None:
    """Mean training seconds per seed of the committed cell, where it was recorded per cell."""
    for bench, _, _, name, committed_values, _ in CELLS:
        if bench == benchmark and name == shown and benchmark != "blitzer":
            return float(np.mean(list(committed_values(committed, "train_seconds").values())))
    return None  # the earlier Blitzer runner timed whole pairs, with stages shared across pairs


def walls() -> list[dict[str, Any]]:
    """Each rerun invocation: what it ran, its wall clock, the cores and whether shared."""
    out = []
    for benchmark in ("blitzer", "fashion", "scientific"):
        rerun = load_json(RESULTS / f"rerun_{benchmark}.json")
        for invocation in rerun.get("invocations", []):
            out.append({"benchmark": benchmark, **invocation})
    return out


def _number(value: float | None, metric: str, signed: bool = False) -> str:
    if value is None:
        return "—"
    scale, digits, _ = SCALE.get(metric, (1, 4, ""))
    return f"{value * scale:{'+' if signed else ''}.{digits}f}"


def markdown(table: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    lines = [
        "# Reruns on the library's runner beside the committed results\n",
        "Generated by `benchmarks/reruns.py` from results/committed/*.json (3 seeds, the "
        "benchmarks' earlier runners) and results/rerun_*.json (one seed, the scripts on "
        "`shoptransfer.api`). Within noise: |rerun − committed mean| ≤ 2 × committed std "
        "(sample std, n − 1). Accuracy and macro-F1 in %.\n",
        "| cell | metric | committed mean ± std (seeds) | committed, same seed | rerun (seed) "
        "| rerun − mean | 2 × std | within noise | rerun − same seed | train s committed / rerun |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        metric = row["metric"]
        verdict = {True: "yes", False: "**no**", None: "one committed seed: no noise estimate"}
        committed_seconds = row["committed_train_seconds"]
        same = row["committed_same_seed"]
        same = None if same is None else row["rerun"] - same
        seconds = (
            f"{committed_seconds:.0f} / {row['rerun_train_seconds']:.0f}"
            if committed_seconds is not None
            else f"— / {row['rerun_train_seconds']:.0f}"
        )
        lines.append(
            f"| {row['cell']} | {HEADERS.get(metric, metric)} | "
            f"{_number(row['committed_mean'], metric)} ± {_number(row['committed_std'], metric)} "
            f"({row['committed_seeds']}) | {_number(row['committed_same_seed'], metric)} | "
            f"{_number(row['rerun'], metric)} ({row['seed']}) | "
            f"{_number(row['difference'], metric, signed=True)} | "
            f"{_number(2 * row['committed_std'], metric)} | {verdict[row['within_noise']]} | "
            f"{_number(same, metric, signed=True)} | {seconds} |"
        )
    lines.append(
        "\nTrain seconds: mean over the committed seeds / the rerun's, each including computing "
        "features not yet cached and a reused stage in full. The earlier Blitzer runner timed "
        "whole pairs (and trained a source's fine-tuning once for all its pairs), so it has no "
        "per-cell time.\n"
    )
    first_rows = {row["cell"]: row for row in reversed(table)}  # one row per cell
    for cell, row in reversed(list(first_rows.items())):
        epochs = row["rerun_epoch_seconds"]
        if len(epochs) > 2:
            lines.append(
                f"- {cell}, rerun: its {len(epochs)} epochs took {min(epochs):.0f} to "
                f"{max(epochs):.0f} s of training each (median {np.median(epochs):.0f} s; from "
                "the quality curve `compare` records); every epoch does the same work, so the "
                "spread, and its total, come from the other jobs on the cores."
            )
    lines.append("")
    lines += ["| rerun | arguments | wall clock | cores |", "|---|---|---|---|"]
    for run in runs:
        shared = "shared with another developer's jobs" if run.get("cores_shared") else "alone"
        lines.append(
            f"| {run['benchmark']} | `{' '.join(run['arguments'])}` | "
            f"{run['wall_seconds'] / 60:.1f} min | {run['cores']}, {shared} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    table, runs = rows(), walls()
    save(
        "reruns",
        {"rows": table, "invocations": runs, "rule": __doc__.split("Rule: ")[1]},
        markdown(table, runs),
    )


if __name__ == "__main__":
    main()
