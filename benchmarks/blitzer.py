"""All 12 Blitzer cross-domain sentiment pairs on the papers' protocol (unsupervised adaptation).

    .venv/bin/python benchmarks/blitzer.py                  # resumes: recorded pairs are kept
    .venv/bin/python benchmarks/blitzer.py --redo B->K ...  # reruns these pairs
    .venv/bin/python benchmarks/blitzer.py --markdown       # rewrites the .md from the JSON
    .venv/bin/python benchmarks/blitzer.py --experiment NAME --pairs B->K --seeds 0 \\
        --set key=value ...                                 # a logged development experiment

Protocol (Blitzer et al. 2007 and the papers in ../shared/data/README.md): train on the 2,000
labeled source reviews; the 2,000 target reviews are read without labels by the adapting
recipe and are also the test set. Accuracy in %, mean and std over seeds 0, 1, 2.

Selection rule (no target labels): each recipe's epochs are chosen by early stopping on a
20 % split of the source (macro-F1); every other hyper-parameter is the recipe's default, fixed
before the 12-pair run, except ``precision: bf16`` (mixed precision, for speed). Self-training
runs a fixed schedule: one round on the most confident 50 % of the target, split in the
source's class proportions. The recipe's defaults (bottom 3 of 7 layers frozen, learning rate
5e-5, 4 epochs) were chosen over the first attempts by source validation macro-F1.
Development experiments (``--experiment``) looked at target accuracy on the pairs they name;
they are logged in results/blitzer_experiments.json, apart from the main table.

Methods per pair: ``self-training`` (ours: MiniLM fine-tuned on the source with its embeddings and
bottom 2 blocks frozen and cached, 128 tokens head+tail, then self-trained on the unlabeled
target),
``source-only`` (the same model before self-training: no adaptation), ``frozen-features``
(a linear head on frozen MiniLM features) and ``scratch-tfidf`` (TF-IDF + logistic regression),
both trained on the source only.
Writes benchmarks/results/blitzer.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any

import numpy as np
from common import RESULTS, load_json, require_data, save

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.data import read_blitzer
from shoptransfer.recipes import FitData, make_recipe
from shoptransfer.recipes.base import Recipe
from shoptransfer.runs import environment

DOMAINS = {"B": "books", "D": "dvd", "E": "electronics", "K": "kitchen"}
# The papers' order.
PAIRS = ["D->B", "D->E", "D->K", "B->D", "B->E", "B->K", "E->D", "E->B", "E->K", "K->D", "K->B"]
PAIRS.append("K->E")
PUBLISHED = {  # accuracy %, same protocol, from ../shared/data/README.md
    "SCL": [77.8, 75.2, 75.5, 80.4, 76.5, 77.1, 74.5, 71.6, 81.7, 75.2, 71.3, 78.8],
    "DANN": [80.5, 77.6, 78.8, 83.2, 76.4, 77.2, 77.6, 73.5, 84.2, 75.1, 74.3, 82.2],
    "HATN": [86.6, 86.3, 87.4, 86.5, 85.7, 86.8, 84.3, 81.5, 87.9, 84.7, 84.1, 87.0],
    "BERT-DAAT": [90.8, 89.3, 90.5, 89.7, 89.5, 90.7, 90.1, 88.9, 93.1, 88.8, 87.9, 91.7],
    "BERT-GAST": [91.1, 90.7, 92.1, 90.4, 91.2, 91.5, 90.7, 89.4, 93.5, 89.7, 89.2, 92.6],
}
MAIN = "self-training"
MAIN_OPTIONS = {"precision": "bf16"}
BASELINES = ["scratch-tfidf", "frozen-features"]
SEEDS = [0, 1, 2]
RULE = (
    "Epochs by early stopping on a 20 % source validation split (macro-F1); all other "
    "hyper-parameters are recipe defaults fixed before the 12-pair run; self-training follows "
    "a fixed schedule. No target labels are read except to score the final predictions."
)


def accuracy(recipe: Recipe, source: Any, target: Any, cache: EmbeddingCache) -> float:
    if recipe.uses_source:
        predictor = recipe.fit(
            FitData(source, None, cache=cache, unlabeled=target.without_labels())
        )
    else:  # a scratch baseline: its "target labels" are the source's, the only labels there are
        predictor = recipe.fit(FitData(source, source, cache=cache))
    predicted = np.array(predictor.predict(target.inputs))
    return float(np.mean(predicted == np.array(target.labels)) * 100)


def summary(seeds: list[float], seconds: float) -> dict[str, Any]:
    return {
        "mean": round(float(np.mean(seeds)), 2),
        "std": round(float(np.std(seeds)), 2),
        "seeds": [round(s, 2) for s in seeds],
        "seconds": round(seconds, 1),
    }


def run_pair(
    pair: str, domains: dict[str, Any], recipes: dict[Any, Recipe], cache: EmbeddingCache
) -> dict[str, dict[str, Any]]:
    """Every method on one pair, 3 seeds each; ``recipes`` keeps trained source stages."""
    source, target = (domains[letter] for letter in pair.split("->"))
    cells: dict[str, dict[str, Any]] = {}
    for name in BASELINES:
        started, scores = time.perf_counter(), []
        for seed in SEEDS:
            scores.append(accuracy(make_recipe(name, seed=seed), source, target, cache))
        cells[name] = summary(scores, time.perf_counter() - started)
    started, adapted, plain = time.perf_counter(), [], []
    for seed in SEEDS:
        # one recipe object per (source, seed): its source stage is trained once and reused
        recipe = recipes.setdefault((pair[0], seed), make_recipe(MAIN, seed=seed, **MAIN_OPTIONS))
        rounds = recipe.self_training_rounds
        recipe.self_training_rounds = 0  # the same model before self-training
        plain.append(accuracy(recipe, source, target, cache))
        recipe.self_training_rounds = rounds
        adapted.append(accuracy(recipe, source, target, cache))
        print(f"  {pair} seed {seed}: source-only {plain[-1]:.1f}, {MAIN} {adapted[-1]:.1f}")
    seconds = time.perf_counter() - started
    cells[MAIN] = summary(adapted, seconds)
    cells["source-only"] = summary(plain, 0.0)
    return cells


def run_experiment(args: argparse.Namespace, domains: dict[str, Any]) -> None:
    """A development run of the main recipe with changed options, appended to the log."""
    options = dict(item.split("=", 1) for item in args.set)
    parsed = {key: _value(value) for key, value in options.items()}
    log_path = RESULTS / "blitzer_experiments.json"
    log = load_json(log_path) or {"experiments": []}
    cache = EmbeddingCache()
    entry: dict[str, Any] = {
        "name": args.experiment,
        "recipe": args.recipe,
        "options": parsed,
        "effective_options": {
            k: getattr(make_recipe(args.recipe, **parsed), k)
            for k in make_recipe(args.recipe).options()
            if k != "seed"
        },
        "seeds": args.seeds,
        "date": datetime.date.today().isoformat(),
        "looked_at_target_labels": "yes: development pairs " + ", ".join(args.pairs),
        "pairs": {},
    }
    recipes: dict[Any, Recipe] = {}
    for pair in args.pairs:
        source, target = (domains[letter] for letter in pair.split("->"))
        started, adapted, plain = time.perf_counter(), [], []
        for seed in args.seeds:
            recipe = recipes.setdefault(
                (pair[0], seed), make_recipe(args.recipe, seed=seed, **parsed)
            )
            rounds = getattr(recipe, "self_training_rounds", 0)
            if rounds:
                recipe.self_training_rounds = 0
                plain.append(accuracy(recipe, source, target, cache))
                recipe.self_training_rounds = rounds
            adapted.append(accuracy(recipe, source, target, cache))
        entry["pairs"][pair] = {
            "adapted": summary(adapted, time.perf_counter() - started),
            **({"source_only": summary(plain, 0.0)} if plain else {}),
            "history": getattr(recipe, "history_", []),
        }
        print(pair, entry["pairs"][pair], flush=True)
    log["experiments"].append(entry)
    from shoptransfer.files import atomic_write_json

    atomic_write_json(log_path, log)


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redo", nargs="*", default=[], help="pairs to run again")
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md only")
    parser.add_argument("--experiment", help="log a development experiment under this name")
    parser.add_argument("--recipe", default=MAIN, help="recipe of the experiment")
    parser.add_argument("--pairs", nargs="*", default=PAIRS, help="pairs of the experiment")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0], help="experiment seeds")
    parser.add_argument("--set", nargs="*", default=[], help="experiment options key=value")
    args = parser.parse_args()
    data = require_data("blitzer_reviews")
    domains = {letter: read_blitzer(data / name, name=name) for letter, name in DOMAINS.items()}
    if args.experiment:
        run_experiment(args, domains)
        return
    out = RESULTS / "blitzer.json"
    payload = load_json(out)
    if not args.markdown:
        payload.setdefault("cells", {})
        for pair in args.redo:
            payload["cells"].pop(pair, None)
        recipes: dict[Any, Recipe] = {}
        cache = EmbeddingCache()
        for pair in sorted(PAIRS, key=lambda p: (p[0], PAIRS.index(p))):  # by source: reuse
            if pair in payload["cells"]:
                print(f"{pair}: recorded before, skipped")
                continue
            started = time.perf_counter()
            cells = run_pair(pair, domains, recipes, cache)
            payload["cells"][pair] = {"seconds": round(time.perf_counter() - started, 1), **cells}
            _summarise(payload)
            save("blitzer", payload, markdown(payload))
            print(f"{pair}: {payload['cells'][pair]['seconds']} s", flush=True)
    _summarise(payload)
    save("blitzer", payload, markdown(payload))


def _summarise(payload: dict[str, Any]) -> None:
    cells = payload["cells"]
    recipe = make_recipe(MAIN, **MAIN_OPTIONS)
    payload.update(
        recipe=MAIN,
        recipe_options={k: getattr(recipe, k) for k in recipe.options() if k != "seed"},
        backbone=recipe.backbone,
        protocol=__doc__.split("Protocol ")[1].split("\n\n")[0],
        selection_rule=RULE,
        pairs={pair: cells[pair][MAIN] for pair in PAIRS if pair in cells},
        average=_average(cells, MAIN),
        methods={
            name: {
                "average": _average(cells, name),
                "pairs": {p: cells[p][name] for p in PAIRS if p in cells},
            }
            for name in [MAIN, "source-only", *BASELINES]
        },
        complete=all(pair in cells for pair in PAIRS),
        total_seconds=round(sum(cells[p]["seconds"] for p in cells), 1),
        published=PUBLISHED,
        notes=NOTES,
        environment=environment(),
    )


def _average(cells: dict[str, Any], name: str) -> float | None:
    means = [cells[p][name]["mean"] for p in PAIRS if p in cells]
    return round(float(np.mean(means)), 2) if means else None


NOTES = [
    "B->K is not a clean held-out pair: the development attempts (results/"
    "blitzer_experiments.json) printed its seed-0 target accuracy; the choice between them was "
    "made on source validation macro-F1.",
    "B->D's 1,750 s include other jobs sharing the 2 cores; D->B (919 s), E->D (830 s) and "
    "K->D (815 s) are clean first pairs of a source (3 source fine-tunings + 3 self-trainings "
    "+ baselines); a later pair of the same source costs 210-265 s (390 s for B->K, also shared).",
    "scratch-tfidf is deterministic (std 0). Our average over the 12 pairs: self-training 88.3, "
    "source-only 87.4, i.e. +0.9 from self-training; 2.7 points below BERT-GAST's 91.0.",
]


def markdown(payload: dict[str, Any]) -> str:
    cells = payload.get("cells", {})
    header = "| method | " + " | ".join(PAIRS) + " | average |"
    lines = [
        "# Blitzer reviews: 12 cross-domain pairs, unsupervised adaptation\n",
        "Command: `.venv/bin/python benchmarks/blitzer.py` (protocol and selection rule in the "
        "script's docstring). Accuracy % on all 2,000 target reviews; ours: mean ± std over "
        f"seeds {SEEDS}, backbone all-MiniLM-L6-v2 (22M parameters), 2 CPU cores. Published "
        "rows from ../shared/data/README.md (BERT-base, 110M, GPUs). Data: Blitzer, Dredze & "
        "Pereira, ACL 2007.\n",
        f"Selection rule: {RULE}\n",
        header,
        "|" + "---|" * (len(PAIRS) + 2),
    ]
    for name, values in PUBLISHED.items():
        row = " | ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {name} (published) | {row} | {np.mean(values):.1f} |")
    for name in [*BASELINES, "source-only", MAIN]:
        row = []
        for pair in PAIRS:
            cell = cells.get(pair, {}).get(name)
            row.append(f"{cell['mean']:.1f} ± {cell['std']:.1f}" if cell else "—")
        average = _average(cells, name) if cells else None
        mark = "" if payload.get("complete") else " (pairs so far)"
        avg = f"{average:.1f}{mark}" if average is not None else "—"
        lines.append(f"| **{name}** (ours) | " + " | ".join(row) + f" | {avg} |")
    lines.append("\nWall-clock seconds per pair (all methods, 3 seeds; a source's fine-tuning ")
    lines.append("stage is trained once per seed and counted in its first pair):\n")
    lines.append("| pair | " + " | ".join(PAIRS) + " | total |")
    lines.append("|" + "---|" * (len(PAIRS) + 2))
    secs = [f"{cells[p]['seconds']:.0f}" if p in cells else "—" for p in PAIRS]
    lines.append("| seconds | " + " | ".join(secs) + f" | {payload.get('total_seconds', 0):.0f} |")
    lines.append("\nNotes:\n")
    lines.extend(f"- {note}" for note in NOTES)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
