"""MovieLens-100K rating prediction with squared error (issue 13, item 5: the seed's example).

    .venv/bin/python benchmarks/rating.py --fresh --shared-cores   # run everything (~5 min)
    .venv/bin/python benchmarks/rating.py --markdown               # rewrite the .md from the JSON

Question: does the pretrained text backbone reading each movie's title, year and genres help
predict ratings where ratings are scarce, or for movies without a training rating (cold items)?

Data: ../shared/data/recsys/movielens_100k (GroupLens; Harper & Konstan 2015), RecBole atomic
files: 100,000 ratings (1-5) of 1,682 movies by 943 users; item text = "title. year. genres".
Protocol (task ``rating``, the library's runner through ``api.compare``):
- ``random``: 20 % of the ratings held out at random as the test set (split_seed 0, the same
  for every seed and budget); budgets draw 10 %, 25 % or all of the other 80 % (the pool) at
  random per seed. Seeds 0, 1, 2 (the draw, the initialisation, the batch order).
- ``time``: the latest 20 % of the ratings by timestamp as the test set, all of the pool
  (movies first rated late are cold items here).
Recipes at their defaults: ``rating-biases`` (mean + user and item biases, ALS, Surprise's
BaselineOnly defaults reg_u 15, reg_i 10, 10 rounds), ``rating-mf`` (biased MF, 32 factors,
L2 strength chosen on validation from 0.1 / 0.3 / 1.0), ``rating-text-mf`` (the same with
item biases and vectors mapped from frozen MiniLM-L6 embeddings of the item text). The MF
recipes early-stop on 10 % of the budget's ratings; the biases baseline trains on all of them.
Metrics: RMSE (decides), MAE, and RMSE on the test ratings of cold items (no rating in the
budget's draw). The defaults were set on a development split of the pool (20 % of it, never
the test set; seed 0) before this run.
Writes benchmarks/results/rating.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from common import (
    add_invocation,
    load_json,
    mean_std,
    open_results,
    pm,
    require_data,
    run_setting,
    save,
    timing_sentence,
    values,
)

from shoptransfer.evaluation.report import budget_order

NAME = "rating"
SEEDS = [0, 1, 2]
RECIPES = ["rating-biases", "rating-mf", "rating-text-mf"]
SETTINGS = {
    "random": {"split": "random", "budgets": [0.1, 0.25, "all"]},
    "time": {"split": "time", "budgets": ["all"]},
}
# Surprise's README, "Benchmarks" (github.com/NicolasHug/Surprise, README.md at commit
# 3136e0a): ML-100K, default parameters, mean of a 5-fold cross-validation (RMSE, MAE)
PUBLISHED = [
    ("Surprise SVD (biased MF, SGD, 100 factors, 20 epochs)", 0.934, 0.737),
    ("Surprise SVD++", 0.919, 0.721),
    ("Surprise BaselineOnly (mean + biases, ALS)", 0.944, 0.748),
    ("Surprise NormalPredictor (random from the training distribution)", 1.518, 1.219),
]


def config(split: str, budgets: list[Any], seeds: list[int]) -> dict[str, Any]:
    folder = require_data("recsys/movielens_100k")
    return {
        "task": "rating",
        "name": f"ml100k-{split}",
        "target": {
            "path": str(folder / "ml-100k.inter"),
            "items": str(folder / "ml-100k.item"),
            "item_text": ["movie_title", "release_year", "class"],
        },
        "recipes": RECIPES,
        "budgets": budgets,
        "seeds": seeds,
        "test_fraction": 0.2,
        "split": split,
        "split_seed": 0,
    }


def global_mean_rmse(split: str) -> dict[str, float]:
    """RMSE and MAE on the test set of predicting the pool's mean rating for every pair."""
    from shoptransfer.config import parse_config
    from shoptransfer.data.ratings import read_rating_domain

    parsed = parse_config(config(split, ["all"], [0]), NAME)
    target = read_rating_domain(parsed.target)
    pool, test = target.split(parsed.test_fraction, parsed.split_seed, parsed.split)
    error = test.rating - pool.rating.mean()
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def show(record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return record.get("reason", record.get("status", ""))
    m = record["metrics"]
    return f"RMSE {m['rmse']:.4f}  MAE {m['mae']:.4f}  train {record['train_seconds']:.1f} s"


def table(cell: dict[str, Any]) -> list[str]:
    records = cell["records"]
    verdicts = {(e["label"], str(e["budget"])): e for e in cell["comparison"]}
    lines = [
        "| recipe | budget | training ratings | RMSE | MAE | RMSE cold items (test ratings) "
        "| train s | vs best scratch (RMSE) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    budgets = sorted({r["budget"] for r in records}, key=budget_order)
    for budget in budgets:
        for label in RECIPES:
            where = {"budget": budget}
            rmse = values(records, label, "rmse", **where)
            if not rmse:
                continue
            cold = values(records, label, "cold_test_ratings", **where)
            cold_rmse = [
                r["metrics"]["cold_items_rmse"]
                for r in sorted(records, key=lambda r: r["seed"])
                if r["label"] == label
                and str(r["budget"]) == str(budget)
                and "cold_items_rmse" in r["metrics"]
            ]
            cold_text = f"{pm(cold_rmse, digits=4)} ({np.mean(cold):.0f})" if cold_rmse else "— (0)"
            entry = verdicts.get((label, str(budget)), {})
            if entry.get("family") == "baseline":
                verdict = "scratch baseline"
            else:
                worse = entry.get("negative_transfer")
                verdict = (
                    f"{entry['versus_scratch']:+.4f} vs {entry['best_scratch']}"
                    f"{' (negative transfer)' if worse else ''}"
                )
            examples = values(records, label, "target_examples", **where)
            lines.append(
                f"| {label} | {budget} | {np.mean(examples):,.0f} | {pm(rmse, digits=4)} "
                f"| {pm(values(records, label, 'mae', **where), digits=4)} | {cold_text} "
                f"| {pm(values(records, label, 'train_seconds', **where), digits=1)} "
                f"| {verdict} |"
            )
    return lines


def markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    seeds = sorted({r["seed"] for cell in settings.values() for r in cell["records"]})
    out = [
        "# MovieLens-100K rating prediction (task `rating`, squared error)",
        "",
        "Generated by `benchmarks/rating.py` from `rating.json`; the protocol is in the "
        "script's docstring. Mean ± sample std over seeds "
        f"{', '.join(str(s) for s in seeds)}"
        " (one fixed test split; seeds change the budget's draw, initialisation and batch "
        "order). Lower is better. *Cold items*: test ratings of movies without a rating in the "
        "budget's draw, with their count (mean over seeds). *vs best scratch*: the RMSE "
        "advantage over the best scratch baseline at that budget (positive: lower RMSE), "
        "negative transfer when worse by more than the standard error of the difference "
        "(the library's one rule).",
        "",
    ]
    for name, title in (
        ("random", "Random 80/20 split: budgets of the training ratings"),
        ("time", "Split by time: the latest 20 % of ratings as test"),
    ):
        cell = settings.get(name)
        if cell is None:
            continue
        reference = payload.get("global_mean", {}).get(name)
        out += [f"## {title}", ""] + table(cell) + [""]
        if reference:
            out += [
                f"Predicting the pool's mean rating for every test pair: RMSE "
                f"{reference['rmse']:.4f}, MAE {reference['mae']:.4f}.",
                "",
            ]
    out += [
        "## Published reference (not the same protocol)",
        "",
        "Surprise's documented ML-100K benchmark (README of github.com/NicolasHug/Surprise, "
        "commit 3136e0a; default parameters, mean of 5-fold cross-validation):",
        "",
        "| algorithm | RMSE | MAE |",
        "|---|---:|---:|",
        *[f"| {name} | {rmse:.3f} | {mae:.3f} |" for name, rmse, mae in PUBLISHED],
        "",
        "Protocol differences: Surprise averages five 80/20 folds that together test every "
        "rating; we test one fixed random 20 % and repeat training over seeds. Our `all` "
        "budget is the same 80 % of ratings for training, but the MF recipes hold 10 % of it "
        "out for early stopping (Surprise's SVD trains a fixed 20 epochs on all of it). "
        "Surprise's BaselineOnly has the same model and defaults as `rating-biases`, so that "
        "row is the closest like-for-like check.",
        "",
    ]
    out += findings(payload)
    sentence = timing_sentence(payload)
    if sentence:
        out += [
            "## Cost",
            "",
            sentence + " Train seconds include the frozen text "
            "embedding of the 1,682 item texts where it was not cached yet.",
            "",
        ]
    return "\n".join(out)


def difference(a: list[float], b: list[float]) -> str:
    """``mean(a) - mean(b)`` with the standard error of the difference (the library's noise)."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    error = float(np.sqrt(std_a**2 / len(a) + std_b**2 / len(b)))
    return f"{mean_a - mean_b:+.4f} (± {error:.4f})"


def findings(payload: dict[str, Any]) -> list[str]:
    """What the random-split table says, each number computed from the records."""
    cell = payload["settings"].get("random")
    if cell is None:
        return []
    records = cell["records"]
    lines = [
        "## What the numbers say",
        "",
        "Differences are text MF − plain MF (negative: the item text lowered the error), ± the "
        "standard error of the difference over seeds.",
        "",
    ]
    for budget in sorted({r["budget"] for r in records}, key=budget_order):
        rmse = {label: values(records, label, "rmse", budget=budget) for label in RECIPES}
        cold = {
            label: [
                r["metrics"]["cold_items_rmse"]
                for r in records
                if r["label"] == label
                and str(r["budget"]) == str(budget)
                and "cold_items_rmse" in r["metrics"]
            ]
            for label in RECIPES
        }
        means = {label: mean_std(v)[0] for label, v in rmse.items() if v}
        best = min(means, key=lambda label: means[label])
        text = (
            f"- budget {budget}: lowest RMSE {best} ({means[best]:.4f}); "
            f"text MF − plain MF {difference(rmse['rating-text-mf'], rmse['rating-mf'])}"
        )
        if all(cold.values()):
            cold_means = {label: float(np.mean(v)) for label, v in cold.items()}
            cold_best = min(cold_means, key=lambda label: cold_means[label])
            count = np.mean(values(records, "rating-mf", "cold_test_ratings", budget=budget))
            text += (
                f"; on the {count:.0f} cold-item test ratings lowest {cold_best} "
                f"({cold_means[cold_best]:.4f}), text MF − plain MF "
                f"{difference(cold['rating-text-mf'], cold['rating-mf'])}"
            )
        lines.append(text + ".")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md from the JSON")
    parser.add_argument("--fresh", action="store_true", help="start a new results file")
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    parser.add_argument(
        "--shared-cores", action="store_true", help="note that other jobs shared the cores"
    )
    args = parser.parse_args()
    from common import RESULTS

    if args.markdown:
        payload = load_json(RESULTS / f"{NAME}.json")
        save(NAME, payload, markdown(payload))
        return
    started = time.perf_counter()
    payload = open_results(NAME, NAME, args.fresh)
    for name in args.only:
        setting = SETTINGS[name]
        payload.setdefault("global_mean", {})[name] = global_mean_rmse(setting["split"])
        run_setting(
            payload,
            name,
            config(setting["split"], setting["budgets"], args.seeds),
            compare=True,
            shared_cores=args.shared_cores,
            show=show,
        )
        save(NAME, payload, markdown(payload))
    add_invocation(payload, sys.argv[1:], started, args.shared_cores)
    save(NAME, payload, markdown(payload))


if __name__ == "__main__":
    main()
