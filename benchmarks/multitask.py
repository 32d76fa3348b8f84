"""Multi-task beside single-task at scarce labels (issue 13, item 5).

    .venv/bin/python benchmarks/multitask.py              # every part; recorded runs kept
    .venv/bin/python benchmarks/multitask.py --fresh      # reruns everything
    .venv/bin/python benchmarks/multitask.py --markdown   # rewrites the .md from the JSON

Question: does one model with several heads beat one model per head on the target when
labels are scarce? Both sides use the recipe frozen-features (a linear head on frozen
features), with the lbfgs solver (a linear probe per head, L2 by cross-validation) and the
adamw solver (the heads trained together, one summed loss); seeds 0, 1, 2. Fine-tune was not
run (the time budget did not allow it).

Part 1, product photos: not run yet. When this ran, the multi-task task read tables of texts
only; tables of photos (``image:``) landed right after (commit 4aa1395), the run did not.

Part 2, Chinese shopping reviews (../shared/data/chinese_shopping_5cats, SophonPlus
online_shopping_10_cats, 5 categories), backbone minilm-l6 (an English model: it reads Chinese
poorly; both sides share that handicap). Rows are chosen deterministically: a seeded
permutation (seed 0) of each category's rows, the first rows of each taken.
- 2a, in-domain: target = all 5 categories, a pool of 300 and a test set of 300 reviews per
  category (the same two files for both sides, so both see the same test set). Multi-task:
  heads sentiment (label) and category (cat), budgets 80 and 320 labelled reviews (16 and 64
  per category class on average), drawn at random. Single-task: one classification run per
  head on the same pool with the same number of labelled reviews, drawn per class (sentiment
  40 / 160 per class, category 16 / 64 per class).
- 2b, a category the multi-task model did not train on: source = 600 reviews of each of
  tablets, fruit, shampoo and clothes with both heads; target = books (pool 600, test 1,000)
  with sentiment only (target_tasks: [sentiment]); budgets 16 and 64 labelled book reviews;
  lbfgs only (adamw with the source stops early on a source split: one cell took minutes).
  Single-task: classification on the source's sentiment labels plus 8 / 32 book reviews per
  class (16 / 64 reviews), and target-only (no source) with the same book reviews per class.
Part 3, regression: a labelled smoke row only, on asap_sample (100 train + 100 test rated
restaurant reviews): not a benchmark.

Train seconds are wall clock on 2 CPU cores shared with another developer's benchmark runs;
the first cell of each run also computes the frozen features (cached on disk afterwards), so
the tables show the median over seeds.
Writes benchmarks/results/multitask.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import RESULTS, load_json, require_data, save

SEEDS = [0, 1, 2]
WORK = Path.home() / ".cache" / "shoptransfer-benchmarks" / "multitask"
CATEGORIES = {
    "书籍": "books",
    "平板": "tablets",
    "水果": "fruit",
    "洗发水": "shampoo",
    "衣服": "clothes",
}
HELD_OUT = "书籍"  # books: the category the multi-task model does not train on in part 2b
RECIPES = [
    {"name": "frozen-features", "label": "frozen-lbfgs", "solver": "lbfgs"},
    {"name": "frozen-features", "label": "frozen-adamw", "solver": "adamw"},
]
# part 2b: lbfgs only; adamw with the 2,400 source reviews took 383 s for one cell on the
# shared cores (early stopping on a source split), too slow for the time given
TRANSFER_RECIPES = RECIPES[:1]
IN_DOMAIN_BUDGETS = [80, 320]  # labelled reviews: 16 / 64 per category class on average
TRANSFER_BUDGETS = [16, 64]  # labelled book reviews
COMMON = {"seeds": SEEDS, "save_models": False, "backbone": "minilm-l6"}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def table_sizes(paths: dict[str, Path]) -> dict[str, Any]:
    """Rows of each part-2 table, in all and per category (English names)."""
    sizes = {}
    for name, path in paths.items():
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        counts = frame["category"].value_counts().sort_index()
        sizes[name] = {"rows": len(frame), "by_category": {k: int(v) for k, v in counts.items()}}
    return sizes


def reviews_tables() -> dict[str, Path]:
    """Write the deterministic subsets of part 2 as CSV files (not committed)."""
    folder = require_data("chinese_shopping_5cats")
    table = pd.read_csv(folder / "online_shopping_5_cats.csv", dtype=str, keep_default_na=False)
    table["review"] = table["review"].str.replace("\ufeff", "", regex=False).str.strip()
    table = table[table["review"] != ""].drop_duplicates("review")
    table["category"] = table["cat"].map(CATEGORIES)
    shuffled = {}
    for cat, rows in table.groupby("cat", sort=True):
        order = np.random.default_rng(0).permutation(len(rows))
        shuffled[cat] = rows.iloc[order].reset_index(drop=True)
    WORK.mkdir(parents=True, exist_ok=True)
    frames = {
        "in_pool": pd.concat([rows.iloc[:300] for rows in shuffled.values()]),
        "in_test": pd.concat([rows.iloc[300:600] for rows in shuffled.values()]),
        "source4": pd.concat(
            [rows.iloc[600:1200] for cat, rows in shuffled.items() if cat != HELD_OUT]
        ),
        "books_pool": shuffled[HELD_OUT].iloc[600:1200],
        "books_test": shuffled[HELD_OUT].iloc[1200:2200],
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = WORK / f"{name}.csv"
        frame[["review", "label", "category"]].to_csv(paths[name], index=False)
    return paths


def run(config: dict[str, Any], where: str) -> dict[str, Any]:
    from shoptransfer import api
    from shoptransfer.config import parse_config

    config = {**COMMON, **config, "output_dir": str(WORK / "runs")}
    started = time.perf_counter()
    run_dir = api.run_experiment(parse_config(config, where), show_progress=False)
    return collect(run_dir, config, time.perf_counter() - started)


def collect(run_dir: Path, config: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What a run folder's results.json says of each cell, with the config and wall time."""
    results = json.loads((run_dir / "results.json").read_text())
    cells = []
    for r in results["results"]:
        if r.get("status") != "ok":
            continue
        metrics = {k: v for k, v in r["metrics"].items() if isinstance(v, int | float) and "/" in k}
        metrics.update(
            {
                k: r["metrics"][k]
                for k in ("macro_f1", "accuracy", "rmse", "mae")
                if k in r["metrics"]
            }
        )
        cells.append(
            {
                "label": r["label"],
                "budget": r["budget"],
                "seed": r["seed"],
                "target_examples": r["target_examples"],
                "metrics": metrics,
                "train_seconds": r["train_seconds"],
                **({"task_weights": r["task_weights"]} if "task_weights" in r else {}),
            }
        )
    return {
        "config": config,
        "run_dir": run_dir.name,
        "wall_seconds": round(seconds, 1),
        "cells": cells,
    }


def part2_configs(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """The experiment of every run of part 2."""
    both = {"sentiment": "label", "category": "category"}

    def table(name: str, labels: dict[str, str] | None = None, label: str | None = None):
        entry: dict[str, Any] = {"path": str(paths[name]), "text": "review"}
        if labels is not None:
            entry["labels"] = labels
        if label is not None:
            entry["label"] = label
        return entry

    runs: dict[str, Any] = {}
    runs["in_domain/multi-task"] = {
        "task": "multi-task",
        "name": "mt-in-domain",
        "target": table("in_pool", labels=both),
        "target_test": table("in_test", labels=both),
        "recipes": RECIPES,
        "budgets": IN_DOMAIN_BUDGETS,
    }
    for head, column, classes in (("sentiment", "label", 2), ("category", "category", 5)):
        runs[f"in_domain/single-task/{head}"] = {
            "task": "classification",
            "name": f"st-in-domain-{head}",
            "target": table("in_pool", label=column),
            "target_test": table("in_test", label=column),
            "recipes": RECIPES,
            "budgets": [b // classes for b in IN_DOMAIN_BUDGETS],
        }
    runs["transfer/multi-task"] = {
        "task": "multi-task",
        "name": "mt-transfer",
        "source": table("source4", labels=both),
        "target": table("books_pool", labels={"sentiment": "label"}),
        "target_test": table("books_test", labels={"sentiment": "label"}),
        "target_tasks": ["sentiment"],
        "recipes": TRANSFER_RECIPES,
        "budgets": TRANSFER_BUDGETS,
    }
    runs["transfer/single-task"] = {
        "task": "classification",
        "name": "st-transfer",
        "source": table("source4", label="label"),
        "target": table("books_pool", label="label"),
        "target_test": table("books_test", label="label"),
        "recipes": TRANSFER_RECIPES,
        "budgets": [b // 2 for b in TRANSFER_BUDGETS],
    }
    runs["transfer/single-task-target-only"] = {
        **runs["transfer/single-task"],
        "name": "st-target-only",
    }
    runs["transfer/single-task-target-only"].pop("source")
    return runs


def part2(paths: dict[str, Path], done: dict[str, Any], keep: Any) -> dict[str, Any]:
    """Every run of part 2; runs already in ``done`` are kept, ``keep`` saves after each."""
    out = dict(done)
    for key, config in part2_configs(paths).items():
        if key in out:
            print(f"kept {key} (recorded)", flush=True)
            continue
        print(f"running {key}", flush=True)
        out[key] = run(config, f"multitask.py:{key}")
        print(f"  done in {out[key]['wall_seconds']} s", flush=True)
        keep(out)
    return out


def part3() -> dict[str, Any]:
    folder = require_data("asap_sample")
    config = {
        "task": "regression",
        "name": "asap-smoke",
        "target": {"path": str(folder / "train_sample.csv"), "text": "reviewbody", "value": "star"},
        "target_test": {
            "path": str(folder / "test_sample.csv"),
            "text": "reviewbody",
            "value": "star",
        },
        "recipes": ["scratch-tfidf", {"name": "frozen-features", "solver": "lbfgs"}],
        "budgets": ["all"],
    }
    print("running regression smoke", flush=True)
    smoke = run(config, "multitask.py:asap")
    train = pd.read_csv(folder / "train_sample.csv", encoding="utf-8-sig")
    test = pd.read_csv(folder / "test_sample.csv", encoding="utf-8-sig")
    error = test["star"].to_numpy(float) - float(train["star"].mean())
    smoke["rows"] = {"train": len(train), "test": len(test)}
    smoke["mean_baseline"] = {  # predict the training mean for every test review
        "rmse": float(np.sqrt((error**2).mean())),
        "mae": float(np.abs(error).mean()),
    }
    return {"asap_smoke": smoke}


# ---------------------------------------------------------------- markdown, from the JSON only


def summary(cells: list[dict], label: str, budget: Any, metric: str) -> tuple[float, float]:
    values = [c["metrics"][metric] for c in cells if c["label"] == label and c["budget"] == budget]
    return float(np.mean(values)), float(np.std(values))


def median_seconds(cells: list[dict], label: str, budget: Any) -> float:
    return statistics.median(
        c["train_seconds"] for c in cells if c["label"] == label and c["budget"] == budget
    )


def pm(mean_std: tuple[float, float], scale: float = 100.0) -> str:
    return f"{mean_std[0] * scale:.1f} ± {mean_std[1] * scale:.1f}"


def per_seed(cells: list[dict], label: str, budget: Any, metric: str) -> list[float]:
    chosen = sorted(
        (c for c in cells if c["label"] == label and c["budget"] == budget),
        key=lambda c: c["seed"],
    )
    return [c["metrics"][metric] for c in chosen]


def verdict(diff: float, noise: float) -> str:
    """Words for a difference in points against the larger seed std of the two sides."""
    if abs(diff) <= noise:
        return f"within the seed std of {noise:.1f}"
    side = "multi-task" if diff > 0 else "single-task"
    return f"{side} ahead by more than the seed std of {noise:.1f}"


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    p2 = payload["part2"]
    sizes = payload["part2_data"]
    seeds = sorted({c["seed"] for run in p2.values() for c in run["cells"]})

    def per_category(name: str) -> str:
        counts = sorted(set(sizes[name]["by_category"].values()))
        return " to ".join(f"{n:,}" for n in counts)

    lines = [
        "# Multi-task beside single-task at scarce labels",
        "",
        f"Run by `benchmarks/multitask.py` ({env['date']}); CPU: {env['cpu']}, "
        f"{env['cores']} cores **shared** with another developer's benchmark runs, so the "
        f"seconds are indicative only. Seeds {', '.join(map(str, seeds))}; mean ± std over "
        "seeds; train seconds are "
        "the median over seeds (the first cell of a run also computes the frozen features). "
        "Recipe `frozen-features` on both sides: `lbfgs` (a linear probe per head) and "
        "`adamw` (heads trained together on the summed loss). Fine-tune was not run.",
        "",
        "**Read this first.** With a frozen encoder the heads share nothing trainable: "
        "`frozen-features` with `lbfgs` fits each head's probe on its own, exactly as a "
        "single-task run would, and with `adamw` the summed loss has separate parameters per "
        "head, so at most the stopping epoch is shared (only with a source: without one the "
        "epochs are fixed). Differences below come from which examples were drawn "
        "(multi-task draws reviews at random, single-task per class) and from that shared "
        "stopping point, not from shared representations. A fair test "
        "of multi-task learning needs a trained encoder (fine-tune), not run here.",
        "",
        "## Part 1: product photos: not run yet",
        "",
        "When these runs were made, `task: multi-task` read only tables of texts. Tables of "
        "photos (`image:` naming the column of file paths, `image_root`, `image_size`) landed "
        "right after them (commit 4aa1395, tested on both tasks); the four photo heads "
        "(articleType, baseColour, gender, usage) beside one model per attribute are the next "
        "run, with fine-tune so that the heads share a trained encoder.",
        "",
    ]
    mt, sts, stc = (
        p2["in_domain/multi-task"]["cells"],
        p2["in_domain/single-task/sentiment"]["cells"],
        p2["in_domain/single-task/category"]["cells"],
    )
    lines += [
        "## Part 2a: Chinese reviews, sentiment + category, in-domain",
        "",
        f"Target: all {len(sizes['in_pool']['by_category'])} categories, a pool of "
        f"{sizes['in_pool']['rows']:,} and a test set of {sizes['in_test']['rows']:,} reviews "
        f"({per_category('in_pool')} per category in the pool, {per_category('in_test')} in "
        "the test set; the same files on both sides). A budget is the number of labelled "
        "reviews: multi-task "
        "draws them at random, each single-task run draws the same number per class "
        "(sentiment: budget / 2 per class, category: budget / 5). Backbone `minilm-l6` "
        "(English; it reads Chinese poorly). Macro-F1 (%):",
        "",
        "| recipe | reviews | sentiment ST | sentiment MT | category ST | category MT "
        "| mean ST | mean MT | train s ST (both runs) | train s MT |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    answers = []
    tally = []  # (multi-task − best single-task, larger seed std) per setting
    for recipe in [r["label"] for r in RECIPES]:
        for budget in IN_DOMAIN_BUDGETS:
            s_b, c_b = budget // 2, budget // 5
            st_mean = [
                (a + b) / 2
                for a, b in zip(
                    per_seed(sts, recipe, s_b, "macro_f1"), per_seed(stc, recipe, c_b, "macro_f1")
                )
            ]
            mt_mean = per_seed(mt, recipe, budget, "macro_f1")
            st_s = median_seconds(sts, recipe, s_b) + median_seconds(stc, recipe, c_b)
            lines.append(
                f"| {recipe} | {budget} | {pm(summary(sts, recipe, s_b, 'macro_f1'))} "
                f"| {pm(summary(mt, recipe, budget, 'sentiment/macro_f1'))} "
                f"| {pm(summary(stc, recipe, c_b, 'macro_f1'))} "
                f"| {pm(summary(mt, recipe, budget, 'category/macro_f1'))} "
                f"| {pm((np.mean(st_mean), np.std(st_mean)))} "
                f"| {pm((np.mean(mt_mean), np.std(mt_mean)))} "
                f"| {st_s:.1f} | {median_seconds(mt, recipe, budget):.1f} |"
            )
            diff = 100 * (np.mean(mt_mean) - np.mean(st_mean))
            noise = 100 * max(np.std(mt_mean), np.std(st_mean))
            tally.append((diff, noise))
            answers.append(
                f"- in-domain, {recipe}, {budget} reviews: multi-task − single-task mean "
                f"macro-F1 = {diff:+.1f} points ({verdict(diff, noise)})"
            )
    tr = p2["transfer/multi-task"]["cells"]
    ts = p2["transfer/single-task"]["cells"]
    to = p2["transfer/single-task-target-only"]["cells"]
    lines += [
        "",
        "## Part 2b: transfer to a category the multi-task model did not train on",
        "",
        f"Source: {', '.join(sizes['source4']['by_category'])}, "
        f"{per_category('source4')} reviews each, both heads; target: "
        f"{', '.join(sizes['books_pool']['by_category'])} (pool "
        f"{sizes['books_pool']['rows']:,}, test {sizes['books_test']['rows']:,}), sentiment "
        "only (`target_tasks: [sentiment]`); lbfgs only (adamw with the source, early "
        "stopping on a source split, was too slow on the shared cores). "
        "Single-task: classification on the source's sentiment plus the same number of "
        "labelled book reviews (budget / 2 per class), and target-only without a source. "
        "Sentiment macro-F1 (%) on the book test set:",
        "",
        "| recipe | book reviews | ST target-only | ST source + target | MT source + target "
        "| train s ST-target | train s ST | train s MT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe in [r["label"] for r in TRANSFER_RECIPES]:
        for budget in TRANSFER_BUDGETS:
            half = budget // 2
            lines.append(
                f"| {recipe} | {budget} | {pm(summary(to, recipe, half, 'macro_f1'))} "
                f"| {pm(summary(ts, recipe, half, 'macro_f1'))} "
                f"| {pm(summary(tr, recipe, budget, 'sentiment/macro_f1'))} "
                f"| {median_seconds(to, recipe, half):.1f} "
                f"| {median_seconds(ts, recipe, half):.1f} "
                f"| {median_seconds(tr, recipe, budget):.1f} |"
            )
            multi = summary(tr, recipe, budget, "sentiment/macro_f1")
            single = summary(ts, recipe, half, "macro_f1")
            diff = 100 * (multi[0] - single[0])
            noise = 100 * max(multi[1], single[1])
            answers.append(
                f"- books (unseen category), {recipe}, {budget} reviews: multi-task − "
                f"single-task (both with the source) sentiment macro-F1 = {diff:+.1f} points "
                f"({verdict(diff, noise)}; with lbfgs both fit the same sentiment probe on "
                "the same source: only the draw of book reviews differs)"
            )
            alone = summary(to, recipe, half, "macro_f1")
            best = max(single, alone)
            tally.append((100 * (multi[0] - best[0]), 100 * max(multi[1], best[1])))
            diff = 100 * (multi[0] - alone[0])
            noise = 100 * max(multi[1], alone[1])
            answers.append(
                f"- books (unseen category), {recipe}, {budget} reviews: multi-task with the "
                f"source − single-task on the book reviews alone = {diff:+.1f} points "
                f"({verdict(diff, noise)}; the other categories' reviews, weighted as much as "
                "the book reviews, hurt here)"
            )
    p3 = payload.get("part3", {}).get("asap_smoke")
    lines += [
        "",
        "## Part 3: regression (rating): smoke row only, not a benchmark",
        "",
        "The only rated reviews here are the official ASAP samples (Bu et al., NAACL "
        "2021). A real rating benchmark needs the full ASAP train / dev / test splits "
        "(tens of thousands of Dianping reviews; published results are on the full test "
        "split) or a rated Amazon set "
        "(e.g. the Multilingual Amazon Reviews Corpus, with its fixed splits), several seeds "
        "of the training draw, and a multi-task rating + aspect model beside single-task; "
        "none of that can be done on a few hundred rows.",
        "",
    ]
    if p3:
        lines += [
            f"| SMOKE ROW ({p3['rows']['train']} train, {p3['rows']['test']} test reviews) "
            "| RMSE (stars) | MAE | train s |",
            "|---|---|---|---|",
        ]
        for label in sorted({c["label"] for c in p3["cells"]}):
            rmse = summary(p3["cells"], label, "all", "rmse")
            mae = summary(p3["cells"], label, "all", "mae")
            lines.append(
                f"| {label} | {rmse[0]:.2f} | {mae[0]:.2f} "
                f"| {median_seconds(p3['cells'], label, 'all'):.1f} |"
            )
        if "mean_baseline" in p3:
            base = p3["mean_baseline"]
            lines.append(
                f"| the training mean for every review | {base['rmse']:.2f} | {base['mae']:.2f} "
                "| – |"
            )
        if "mean_baseline" in p3:
            change = (
                summary(p3["cells"], "frozen-features", "all", "rmse")[0]
                - p3["mean_baseline"]["rmse"]
            )
            lines += [
                "",
                f"`frozen-features` RMSE − the training mean's RMSE = {change:+.2f} stars"
                + (
                    ": minilm-l6 features carry next to no rating signal in Chinese."
                    if abs(change) < 0.05
                    else "."
                ),
            ]
        lines.append("")
    lines += [
        "## Answer: does multi-task beat single-task on the target at scarce labels?",
        "",
        f"In short: against the best single-task model of each setting (recipe × budget, "
        f"{len(tally)} in all), multi-task was ahead by more than the seed std in "
        f"{sum(d > n for d, n in tally)}, behind by more than it in "
        f"{sum(-d > n for d, n in tally)}, and within it in "
        f"{sum(abs(d) <= n for d, n in tally)}. Per setting:",
        "",
        *answers,
        "",
        "Photos: not measured (the gap above). With frozen features these differences are "
        "sampling and stopping effects, since the heads share no trained parameters; whether "
        "a shared, trained encoder helps is still open.",
        "",
        "Wall time per run (s): "
        + ", ".join(f"{key} {run['wall_seconds']}" for key, run in p2.items())
        + (f", asap smoke {p3['wall_seconds']}" if p3 else "")
        + ".",
        "",
        "Data: SophonPlus ChineseNlpCorpus `online_shopping_10_cats` (research use, sources "
        "unknown); ASAP samples (Bu et al., NAACL 2021, Apache 2.0).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md from the JSON")
    parser.add_argument("--fresh", action="store_true", help="rerun the runs already recorded")
    args = parser.parse_args()
    path = RESULTS / "multitask.json"
    payload = {} if args.fresh else load_json(path)
    if args.markdown:
        save("multitask", payload, markdown(payload))
        return
    payload["environment"] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "shared_cores": True,
    }

    def keep(part2_runs: dict[str, Any]) -> None:
        payload["part2"] = part2_runs
        save("multitask", payload, "(incomplete: rerun benchmarks/multitask.py)\n")

    paths = reviews_tables()
    payload["part2_data"] = table_sizes(paths)
    payload["part2"] = part2(paths, payload.get("part2", {}), keep)
    if "part3" not in payload:
        payload["part3"] = part3()
    save("multitask", payload, markdown(payload))


if __name__ == "__main__":
    main()
