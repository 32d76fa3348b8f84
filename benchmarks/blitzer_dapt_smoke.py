"""A smoke measurement of issue 19's pieces on one Blitzer pair, one seed, short schedules.

    nice -n 19 .venv/bin/python benchmarks/blitzer_dapt_smoke.py [--pair B->K] [--only ...]

Not the 12-pair result (that is ``benchmarks/blitzer.py``): the source stage runs at most
``epochs`` (2) epochs and the language-model step one epoch on a seeded sample of
``dapt_max_texts`` (800) of the pair's unlabeled texts, so the numbers say whether the pieces
run end to end on real reviews and what they cost, not what they are worth. Same protocol as
blitzer.py otherwise: budget 0, the target's 2,000 reviews read without labels and scored once
at the end. Each method's accuracy, wall and CPU seconds and what its language-model step read
go to results/blitzer_dapt_smoke.json after each method (a rerun replaces the file).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from typing import Any

import numpy as np
from blitzer import DOMAINS, MAIN, MAIN_OPTIONS, unlabeled_files
from common import RESULTS, require_data

from shoptransfer.files import atomic_write_json

SHORT = {"epochs": 2, "patience": 1, "self_training_rounds": 0}
LANGUAGE_MODEL = {"dapt_epochs": 1, "dapt_max_texts": 800}
METHODS = {
    "source-only": {},
    "+dapt": LANGUAGE_MODEL,
    "+udalm": {**LANGUAGE_MODEL, "objectives": ["mlm"]},  # the same (cached) language-model step
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="B->K")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=list(METHODS))
    args = parser.parse_args()
    from shoptransfer.backbones import EmbeddingCache
    from shoptransfer.data.readers import read_blitzer
    from shoptransfer.recipes import FitData, make_recipe

    source_letter, target_letter = args.pair.split("->")
    folder = require_data("blitzer_reviews")
    source = read_blitzer(folder / DOMAINS[source_letter], name=DOMAINS[source_letter])
    target = read_blitzer(folder / DOMAINS[target_letter], name=DOMAINS[target_letter])
    payload: dict[str, Any] = {
        "pair": args.pair,
        "seed": args.seed,
        "recipe": MAIN,
        "options": {**MAIN_OPTIONS, **SHORT},
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as root:  # a fresh cache: every step's cost is measured
        cache = EmbeddingCache(f"{root}/embeddings")
        for label in args.only:
            options = {**MAIN_OPTIONS, **SHORT, **METHODS[label], "seed": args.seed}
            if options.get("dapt_epochs"):
                options["dapt_extra_texts"] = unlabeled_files(args.pair)
            recipe = make_recipe(MAIN, **options)
            wall, cpu = time.perf_counter(), time.process_time()
            predictor = recipe.fit(
                FitData(source, None, cache=cache, unlabeled=target.without_labels())
            )
            predicted = np.array(predictor.predict(target.inputs))
            accuracy = float(np.mean(predicted == np.array(target.labels)) * 100)
            fitted = recipe.fitted()
            payload["methods"][label] = {
                "options": {k: v for k, v in METHODS[label].items()},
                "accuracy": round(accuracy, 2),
                "wall_seconds": round(time.perf_counter() - wall, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
                "source_epochs": [
                    {k: round(v, 4) for k, v in r.items()} for r in recipe.history_ if "epoch" in r
                ],
                **({"texts_seen": fitted["texts_seen"]} if "texts_seen" in fitted else {}),
                **(
                    {"language_model": fitted["language_model"]}
                    if "language_model" in fitted
                    else {}
                ),
            }
            print(label, payload["methods"][label]["accuracy"], flush=True)
            atomic_write_json(RESULTS / "blitzer_dapt_smoke.json", payload)


if __name__ == "__main__":
    main()
