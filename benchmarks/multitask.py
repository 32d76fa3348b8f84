"""Multi-task beside single-task at scarce labels (issue 13, item 5).

    .venv/bin/python benchmarks/multitask.py              # every part; recorded runs kept
    .venv/bin/python benchmarks/multitask.py --fresh      # reruns everything
    .venv/bin/python benchmarks/multitask.py --markdown   # rewrites the .md from the JSON

Question: does one model with several heads beat one model per head on the target when
labels are scarce? Seeds 0, 1, 2.

Parts 1 and 2c are paired: budgets count examples per class of one column (``per_class_of``)
and each single-task model is a one-head multi-task run on the same pool, test set and seeds,
so both sides see exactly the same examples. Recipes: ``frozen-lbfgs`` (a linear probe per
head on frozen features; the heads share nothing trainable: the control) and ``fine-tune``
(the encoder's top layers train, shared by the heads; no source, so a fixed number of epochs
per budget).

Part 1, product photos (../shared/data/fashion_products): the 20 largest article types, a
pool of 150 and a test set of 50 photos per type (seeded permutation, seed 0); heads
articleType, baseColour (12 most common colours, others blank), gender, usage (4 most common,
others blank); budgets 20 and 100 photos per article type. Both recipes use
EfficientNet-Lite0 at 128 px (the fine-tune settings of benchmarks/fashion.py); frozen-lbfgs
is that network with nothing trained. (Lite2 at 260 px, fashion.py's frozen backbone, encoded
under 1 photo/s on the shared cores: too slow for this run.)

Part 2c, Chinese reviews, the pool and test files of part 2a: heads sentiment and category,
budgets 16 and 64 reviews per category; fine-tune minilm-l6 with its top 3 layers training.

Part 2a/2b below were recorded earlier with frozen features only (lbfgs and adamw).

Part 2a/2b, Chinese shopping reviews (../shared/data/chinese_shopping_5cats, SophonPlus
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


# ------------------------------------------- paired parts: the same examples on both sides
# Multi-task draws a budget per class of one column (per_class_of) and every single-task
# model is a one-head multi-task run with the same per_class_of, pool, test set and seeds: it
# sees exactly the examples the multi-task model sees, with one attribute's labels.

PHOTO_HEADS = {
    "articleType": "articleType",
    "baseColour": "baseColour",
    "gender": "gender",
    "usage": "usage",
}
PHOTO_BUDGETS = [20, 100]  # photos per articleType class (20 classes: 400 / 2,000 photos)
PHOTO_FROZEN = {  # the fine-tune network with nothing trained: the control
    "name": "frozen-features",
    "label": "frozen-lbfgs",
    "backbone": "efficientnet-lite0",
    "image_size": 128,
    "precision": "bf16",
    "solver": "lbfgs",
    "feature_transform": "sqrt-l2",
}
PHOTO_FINE_TUNE_EPOCHS = {20: 10, 100: 6}  # as benchmarks/fashion.py (no source: fixed epochs)
PHOTO_FINE_TUNE = {
    "name": "fine-tune",
    "backbone": "efficientnet-lite0",
    "image_size": 128,
    "precision": "bf16",
    "frozen_layers": 14,  # stem + 13 blocks: the top blocks train, shared by the heads
    "layer_decay": 0.8,
    "batch_size": 32,
    "target_learning_rate": 1e-3,
}
REVIEW_HEADS = {"sentiment": "label", "category": "category"}
REVIEW_BUDGETS = [16, 64]  # reviews per category class (5 categories: 80 / 320 reviews)
REVIEW_FROZEN = {"name": "frozen-features", "label": "frozen-lbfgs", "solver": "lbfgs"}
REVIEW_FINE_TUNE_EPOCHS = {16: 10, 64: 6}
REVIEW_FINE_TUNE = {
    "name": "fine-tune",
    "frozen_layers": 4,  # embeddings + 3 layers frozen: the top 3 train, shared by the heads
    "target_learning_rate": 1e-4,
    "precision": "bf16",
}


def photo_tables() -> dict[str, Path]:
    """Photos of the 20 largest article types: a pool of 150 and a test set of 50 per type
    (a seeded permutation of each type's rows). Colours outside the 12 most common and usages
    outside the 4 most common are left blank (a head may lack a label on a row)."""
    folder = require_data("fashion_products")
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    types = table.articleType.value_counts().index[:20]
    table = table[table.articleType.isin(types)].copy()
    for column, keep in (("baseColour", 12), ("usage", 4)):
        common = table[column].value_counts().index[:keep]
        table.loc[~table[column].isin(common), column] = ""
    pool, test = [], []
    for _, rows in table.groupby("articleType", sort=True):
        order = np.random.default_rng(0).permutation(len(rows))
        pool.append(rows.iloc[order[:150]])
        test.append(rows.iloc[order[150:200]])
    WORK.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frames in (("photo_pool", pool), ("photo_test", test)):
        paths[name] = WORK / f"{name}.csv"
        pd.concat(frames)[["image", *PHOTO_HEADS.values()]].to_csv(paths[name], index=False)
    return paths


def photo_sizes(paths: dict[str, Path]) -> dict[str, Any]:
    """Rows of each photo table, and each head's labelled rows and classes."""
    sizes = {}
    for name, path in paths.items():
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        sizes[name] = {
            "rows": len(frame),
            "heads": {
                head: {
                    "labelled": int((frame[column] != "").sum()),
                    "classes": int(frame.loc[frame[column] != "", column].nunique()),
                }
                for head, column in PHOTO_HEADS.items()
            },
        }
    return sizes


def paired_configs(
    name: str,
    entry: Any,
    heads: dict[str, str],
    per_class_of: str,
    budgets: list[int],
    recipes: Any,
) -> dict[str, dict[str, Any]]:
    """A multi-task run on ``heads`` and a one-head run per head, per budget (``recipes``:
    budget -> recipe entries; fine-tune's fixed epochs depend on the budget)."""
    runs: dict[str, dict[str, Any]] = {}
    for budget in budgets:
        sides = {"multi-task": heads, **{f"single-task/{h}": {h: c} for h, c in heads.items()}}
        for side, labels in sides.items():
            runs[f"{name}/{budget}/{side}"] = {
                "task": "multi-task",
                "name": f"{name}-{budget}-{side.replace('/', '-')}",
                "target": entry("pool", labels),
                "target_test": entry("test", labels),
                "per_class_of": per_class_of,
                "recipes": recipes(budget),
                "budgets": [budget],
            }
    return runs


def part1_configs(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    def entry(split: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "path": str(paths[f"photo_{split}"]),
            "image": "image",
            "image_root": str(require_data("fashion_products")),
            "labels": labels,
        }

    def recipes(budget: int) -> list[dict[str, Any]]:
        fine_tune = {**PHOTO_FINE_TUNE, "target_epochs": PHOTO_FINE_TUNE_EPOCHS[budget]}
        return [PHOTO_FROZEN, fine_tune]

    return paired_configs("photos", entry, PHOTO_HEADS, "articleType", PHOTO_BUDGETS, recipes)


def part2c_configs(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    def entry(split: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"path": str(paths[f"in_{split}"]), "text": "review", "labels": labels}

    def recipes(budget: int) -> list[dict[str, Any]]:
        fine_tune = {**REVIEW_FINE_TUNE, "target_epochs": REVIEW_FINE_TUNE_EPOCHS[budget]}
        return [REVIEW_FROZEN, fine_tune]

    return paired_configs("reviews", entry, REVIEW_HEADS, "category", REVIEW_BUDGETS, recipes)


def run_all(configs: dict[str, Any], done: dict[str, Any], keep: Any) -> dict[str, Any]:
    """Every run of ``configs``; runs already in ``done`` are kept, ``keep`` saves after each."""
    out = dict(done)
    for key, config in configs.items():
        if key in out:
            print(f"kept {key} (recorded)", flush=True)
            continue
        print(f"running {key}", flush=True)
        out[key] = run(config, f"multitask.py:{key}")
        print(f"  done in {out[key]['wall_seconds']} s", flush=True)
        keep(out)
    return out


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


def paired_table(
    runs: dict[str, Any], name: str, heads: list[str], budgets: list[int], unit: str
) -> tuple[list[str], list[str], list[tuple[float, float]]]:
    """The table of a paired part (per head: single-task | multi-task macro-F1), the answer
    lines and the (difference, noise) tally, from the recorded runs only."""
    header = " | ".join(f"{h} ST | {h} MT" for h in heads)
    lines = [
        f"| recipe | {unit} | {header} | mean ST | mean MT | train s ST (all heads) | train s MT |",
        "|---|---|" + "---|" * (2 * len(heads) + 4),
    ]
    answers, tally = [], []
    recipes = sorted({c["label"] for run in runs.values() for c in run["cells"]})
    for recipe in recipes:
        for budget in budgets:
            multi = runs.get(f"{name}/{budget}/multi-task")
            singles = [runs.get(f"{name}/{budget}/single-task/{h}") for h in heads]
            if multi is None or any(s is None for s in singles):
                continue
            mt, cells = multi["cells"], [s["cells"] for s in singles]
            row = []
            for head, st in zip(heads, cells):
                row.append(pm(summary(st, recipe, budget, "macro_f1")))
                row.append(pm(summary(mt, recipe, budget, f"{head}/macro_f1")))
            st_mean = np.mean([per_seed(st, recipe, budget, "macro_f1") for st in cells], axis=0)
            mt_mean = np.array(per_seed(mt, recipe, budget, "macro_f1"))
            st_seconds = sum(median_seconds(st, recipe, budget) for st in cells)
            lines.append(
                f"| {recipe} | {budget} | {' | '.join(row)} "
                f"| {pm((st_mean.mean(), st_mean.std()))} | {pm((mt_mean.mean(), mt_mean.std()))} "
                f"| {st_seconds:.1f} | {median_seconds(mt, recipe, budget):.1f} |"
            )
            diff = 100 * (mt_mean.mean() - st_mean.mean())
            noise = 100 * max(mt_mean.std(), st_mean.std())
            paired = 100 * (mt_mean - st_mean)  # per seed: the same examples on both sides
            tally.append((diff, noise))
            answers.append(
                f"- {name}, {recipe}, {budget} {unit}: multi-task − single-task mean macro-F1 "
                f"= {diff:+.1f} points ({verdict(diff, noise)}; per seed "
                f"{', '.join(f'{d:+.1f}' for d in paired)})"
            )
    return lines, answers, tally


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
        "the median over seeds (the first cell of a run also computes the frozen features); "
        "in parts 1 and 2c the single-task seconds are the sum over its one-head runs, which "
        "ran while other jobs loaded the cores unevenly: read them as rough.",
        "",
        "**Design.** Parts 1 and 2c pair the two sides exactly: a budget counts examples per "
        "class of one column (`per_class_of`), the multi-task model and every single-task "
        "model (a one-head run) see the same examples with the same seeds, and the test set is "
        "the same file; the single-task side trains one model per attribute. Two recipes: "
        "`frozen-lbfgs` (a linear probe per head on frozen features: the heads share nothing "
        "trainable, so this is the control) and `fine-tune` (the encoder's top layers train, "
        "shared by the heads: the real test of multi-task learning). Part 2a (recorded earlier, "
        "frozen features only) drew multi-task budgets at random and single-task per class.",
        "",
    ]
    tally: list[tuple[float, float]] = []  # (multi-task − single-task, larger seed std)
    shared: list[tuple[float, float]] = []  # the same, for the fine-tune rows only

    def record(said: list[str], counted: list[tuple[float, float]]) -> None:
        answers.extend(said)
        tally.extend(counted)
        shared.extend(t for a, t in zip(said, counted) if ", fine-tune," in a)

    answers: list[str] = []
    p1 = payload.get("part1")
    if p1:
        data = payload["part1_data"]
        table, said, counted = paired_table(
            p1, "photos", list(PHOTO_HEADS), PHOTO_BUDGETS, "photos/type"
        )
        heads = data["photo_test"]["heads"]
        lines += [
            "## Part 1: product photos, four attributes from one network",
            "",
            f"Myntra photos of the 20 largest article types: a pool of "
            f"{data['photo_pool']['rows']:,} (150 per type) and a test set of "
            f"{data['photo_test']['rows']:,} (50 per type). Heads (test rows labelled, "
            "classes): "
            + ", ".join(f"{h} ({v['labelled']:,}, {v['classes']})" for h, v in heads.items())
            + "; colours outside the 12 most common and usages outside the 4 most common are "
            "blank (that head has no label on the row). Budgets: photos per article type. "
            "Both recipes: EfficientNet-Lite0 at 128 px (frozen-lbfgs: the network with "
            "nothing trained; fine-tune: stem + 13 blocks frozen, layer decay 0.8, learning "
            "rate 1e-3, "
            + ", ".join(f"{e} epochs at {b}" for b, e in PHOTO_FINE_TUNE_EPOCHS.items())
            + " photos per type, as `benchmarks/fashion.py`). Macro-F1 (%):",
            "",
            *table,
            "",
        ]
        record(said, counted)
    else:
        lines += ["## Part 1: product photos: not run yet", ""]
    p2c = payload.get("part2c")
    if p2c:
        table, said, counted = paired_table(
            p2c, "reviews", list(REVIEW_HEADS), REVIEW_BUDGETS, "reviews/category"
        )
        lines += [
            "## Part 2c: Chinese reviews, sentiment + category, paired, with fine-tune",
            "",
            "The pool and test files of part 2a; budgets: reviews per category (16 / 64: 80 / "
            "320 reviews). fine-tune: minilm-l6, embeddings + 3 layers frozen, learning rate "
            "1e-4, "
            + ", ".join(f"{e} epochs at {b}" for b, e in REVIEW_FINE_TUNE_EPOCHS.items())
            + " reviews per category. Macro-F1 (%):",
            "",
            *table,
            "",
        ]
        record(said, counted)
    else:
        lines += [
            "## Part 2c: Chinese reviews with fine-tune: not run yet",
            "",
            "The paired runs of part 2c (`--part reviews`) did not fit in the session that ran "
            "part 1 (the photo runs took about 2 hours on cores shared with other work); the "
            "answer below rests on the photos for a trained, shared encoder.",
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
        f"{sum(abs(d) <= n for d, n in tally)}. With a trained encoder the heads share "
        f"(the fine-tune rows, {len(shared)} settings): ahead in "
        f"{sum(d > n for d, n in shared)}, behind in {sum(-d > n for d, n in shared)}, within "
        f"the seed std in {sum(abs(d) <= n for d, n in shared)}. Per setting:",
        "",
        *answers,
        "",
        "With frozen features (frozen-lbfgs, frozen-adamw) differences are sampling and "
        "stopping effects, since the heads share no trained parameters; only the fine-tune "
        "rows test a shared, trained encoder.",
        "",
        "Wall time per run (s): "
        + ", ".join(
            f"{key} {run['wall_seconds']}"
            for part in ("part1", "part2c", "part2")
            for key, run in payload.get(part, {}).items()
        )
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
    parser.add_argument(
        "--part", choices=["all", "photos", "reviews"], default="all", help="which runs to run"
    )
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

    def keeper(part: str) -> Any:
        def keep(runs: dict[str, Any]) -> None:
            payload[part] = runs
            save("multitask", payload, "(incomplete: rerun benchmarks/multitask.py)\n")

        return keep

    paths = reviews_tables()
    payload["part2_data"] = table_sizes(paths)
    if args.part in ("all", "photos"):
        photo_paths = photo_tables()
        payload["part1_data"] = photo_sizes(photo_paths)
        payload["part1"] = run_all(
            part1_configs(photo_paths), payload.get("part1", {}), keeper("part1")
        )
    if args.part in ("all", "reviews"):
        payload["part2c"] = run_all(
            part2c_configs(paths), payload.get("part2c", {}), keeper("part2c")
        )
        payload["part2"] = run_all(part2_configs(paths), payload.get("part2", {}), keeper("part2"))
    if "part3" not in payload:
        payload["part3"] = part3()
    save("multitask", payload, markdown(payload))


if __name__ == "__main__":
    main()
