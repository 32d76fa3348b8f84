"""A new user's first recommendation run: the README's YAML with default recipe options.

    .venv/bin/python benchmarks/first_run.py --label after            # all README recipes
    .venv/bin/python benchmarks/first_run.py --label before --recipes sasrec

The shop is cut from Amazon Scientific (../shared/data/recsys/amazon_scientific, its full
histories: each test row's history plus its target) to the size of the shop in issue 18
(about 4,905 users and 2,420 items after the YAML's 5-core filter): the 2,700 most frequent
items, then 5,250 users drawn (seed 0) among those with at least 5 of them. The source is
MovieLens-100K. Both are written as the CSV files the README's YAML names, in
benchmarks/runs/first_run/data/, and run with seed 0 and no recipe options. The wall clock of
each cell (training and evaluation, from the runner's ``on_result``) is added to
results/first_run.json under ``--label``; the .md is rewritten from it.
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import time
from pathlib import Path
from typing import Any

from common import RESULTS, RUNS, load_json, require_data, save

README_RECIPES = [
    "popularity",
    "item-knn",
    "bpr",
    "sasrec",
    "text-seq-scratch",
    "text-seq",
    "text-seq-ids",
]
TOP_ITEMS = 2700
USERS = 5250


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_shop(folder: Path) -> None:
    """purchases.csv / products.csv (the target) and views.csv / videos.csv (the source)."""
    folder.mkdir(parents=True, exist_ok=True)
    scientific = require_data("recsys/amazon_scientific")
    histories = {}
    for line in (scientific / "Scientific.test.inter").read_text().splitlines()[1:]:
        user, history, target = line.split("\t")
        histories[user] = [*history.split(), target]
    counts = collections.Counter(item for items in histories.values() for item in items)
    kept = {item for item, _ in counts.most_common(TOP_ITEMS)}
    users = [u for u, items in histories.items() if sum(i in kept for i in items) >= 5]
    random.Random(0).shuffle(users)
    purchases = [
        [user, item, position]
        for user in sorted(users[:USERS], key=int)
        for position, item in enumerate(i for i in histories[user] if i in kept)
    ]
    write_csv(folder / "purchases.csv", ["customer", "sku", "ts"], purchases)
    index = [
        line.split("\t") for line in (scientific / "Scientific.item2index").read_text().splitlines()
    ]
    ids = {number: asin for asin, number in index}
    texts = dict(
        line.split("\t", 1)
        for line in (scientific / "Scientific.text").read_text().splitlines()[1:]
    )
    products = [[item, texts[ids[item]].strip()] for item in sorted(kept, key=int)]
    write_csv(folder / "products.csv", ["sku", "title"], products)
    movies = require_data("recsys/movielens_100k")
    views = [line.split("\t") for line in (movies / "ml-100k.inter").read_text().splitlines()[1:]]
    write_csv(folder / "views.csv", ["user", "video", "ts"], [[u, i, t] for u, i, _, t in views])
    videos = [
        line.split("\t")
        for line in (movies / "ml-100k.item").read_text(encoding="latin-1").splitlines()[1:]
    ]
    write_csv(
        folder / "videos.csv", ["video", "title", "genres"], [[v, t, g] for v, t, _, g in videos]
    )


def experiment(folder: Path, recipes: list[str]) -> dict[str, Any]:
    """The README's YAML (one seed), on the shop's files."""
    return {
        "task": "recommendation",
        "name": "videos-to-products",
        "source": {
            "path": str(folder / "views.csv"),
            "user": "user",
            "item": "video",
            "time": "ts",
            "items": str(folder / "videos.csv"),
            "item_id": "video",
            "item_text": ["title", "genres"],
        },
        "target": {
            "path": str(folder / "purchases.csv"),
            "user": "customer",
            "item": "sku",
            "time": "ts",
            "items": str(folder / "products.csv"),
            "item_id": "sku",
            "item_text": ["title"],
            "k_core": 5,
        },
        "recipes": recipes,
        "seeds": [0],
        "output_dir": str(RUNS / "first_run"),
    }


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# A first recommendation run: the README's YAML with default options",
        "",
        "Command: `.venv/bin/python benchmarks/first_run.py --label LABEL` (protocol in the "
        "script's docstring). Wall seconds per cell (training + evaluation), seed 0, at "
        "`nice -n 19` on 2 CPU cores shared with other jobs.",
        "",
    ]
    for label, entry in payload.get("labels", {}).items():
        data = entry.get("data", {})
        lines += [
            f"## {label}",
            "",
            f"{entry.get('note', '')} Target: {data.get('users', '?')} users, "
            f"{data.get('items', '?')} items.",
            "",
            "| recipe | wall s | valid NDCG@10 | test NDCG@10 |",
            "|---|---|---|---|",
        ]
        for cell in entry["cells"]:
            if cell.get("stopped"):
                lines.append(f"| {cell['label']} | > {cell['wall_seconds']:.0f} (stopped) | | |")
                continue
            lines.append(
                f"| {cell['label']} | {cell['wall_seconds']:.0f} | "
                f"{cell.get('valid_ndcg@10', float('nan')):.4f} | "
                f"{cell.get('ndcg@10', float('nan')):.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this measurement")
    parser.add_argument("--recipes", nargs="*", default=README_RECIPES)
    parser.add_argument("--note", default="", help="a sentence about this measurement")
    args = parser.parse_args()
    folder = RUNS / "first_run" / "data"
    make_shop(folder)
    path = RESULTS / "first_run.json"
    payload = load_json(path) or {"labels": {}}
    entry: dict[str, Any] = {"note": args.note, "cells": []}
    payload["labels"][args.label] = entry
    clock = [time.perf_counter()]

    def on_result(record: dict[str, Any]) -> None:
        now = time.perf_counter()
        cell = {"label": record["label"], "wall_seconds": round(now - clock[0], 1)}
        clock[0] = now
        if record.get("status") == "ok":
            cell["ndcg@10"] = record["metrics"]["ndcg@10"]
            cell["valid_ndcg@10"] = record["validation_metrics"]["ndcg@10"]
        entry["cells"].append(cell)
        print(cell, flush=True)
        save("first_run", payload, markdown(payload))

    config = parse_config(experiment(folder, args.recipes), "first_run")
    try:
        run_experiment(config, show_progress=True, on_result=on_result)
    except KeyboardInterrupt:  # the cell under way is recorded as stopped after its time
        cell = {
            "label": args.recipes[len(entry["cells"])],
            "wall_seconds": round(time.perf_counter() - clock[0], 1),
            "stopped": True,
        }
        entry["cells"].append(cell)
        save("first_run", payload, markdown(payload))
        raise


if __name__ == "__main__":
    main()
