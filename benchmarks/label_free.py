"""Label-free model selection on Blitzer reviews: does a criterion that reads no target labels
pick the epoch and the alignment weight that do best on the target?

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/label_free.py --fresh
    .venv/bin/python benchmarks/label_free.py --markdown   # rewrites the .md from the JSON

Protocol (unsupervised adaptation, as benchmarks/blitzer.py): the source's 2,000 labelled
reviews train; the target's 2,000 reviews are read without labels by the recipe and are also
the test set. MiniLM-L6 frozen features (cached), ``mlp-dann`` and ``mlp-coral`` (and a
self-training MLP), seeds 0, 1, 2.

Each recipe runs at each alignment weight of :data:`WEIGHTS` for 30 source epochs with no early
stopping (``patience`` 30), so every criterion chooses among the same 30 checkpoints. Each
entry sets ``model_selection: im``; the recipe records every criterion's score at every epoch
(``fitted.model_selection.scores`` in the records), and the runner's per-epoch quality curve
(``track_quality``, all 2,000 target reviews) gives each epoch's target test macro-F1. Test
labels only score what a criterion chose; nothing is chosen on them.

- **epoch**: at the recipe's default weight, each criterion picks the epoch it scores highest
  (ties: the later, as the trainer does); regret = the best epoch's test macro-F1 minus the
  picked epoch's, in points.
- **weight + epoch**: per weight, the criterion's epoch; then the weight whose picked epoch it
  scores highest; regret against the best (weight, epoch) of the grid. This is the rule of the
  recipes' ``selection_grid`` (``selection_grid: {dann.weight: [...]}``), replayed here from the
  per-candidate records so that every candidate's test score is known.

- **self-training share** (cheap, on the MLP: ``mlp`` with ``self_training_rounds: 1``): the
  source stage (epochs by source validation, trained once and shared by the shares through the
  run's stage cache), then one round on the most confident share of the target; each entry is
  a ``selection_grid`` of one share, so its record keeps every criterion's score of the final
  model, and each criterion picks the share it scores highest.

``source-validation`` is the macro-F1 on the recipe's 20 % source split (the default rule, here
without early stopping); ``last epoch`` takes epoch 30 (no selection). Writes
benchmarks/results/label_free.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from common import (
    add_invocation,
    open_results,
    pm,
    recorded,
    require_data,
    run_setting,
    save,
    timing_sentence,
)

from shoptransfer.evaluation.label_free import CRITERIA, best_index

DOMAINS = {"B": "books", "D": "dvd", "E": "electronics", "K": "kitchen"}
PAIRS = ["B->K", "D->E", "K->B"]
SEEDS = [0, 1, 2]
EPOCHS = 30
# recipe -> (objective, alignment weights; the recipe's default first)
WEIGHTS = {"mlp-dann": ("dann", [0.1, 0.3, 1.0]), "mlp-coral": ("coral", [1.0, 0.3, 3.0])}
LAST = "last epoch"
ROWS = [*CRITERIA, LAST]
# self-training on the MLP: the pseudo-labelled share of the target, chosen after training
SELF_TRAINING = "mlp-self-training"
SHARES = [0.5, 0.25, 0.75, 1.0]  # the recipe's default first
DEFAULT_SHARE = "default share"


def domain(letter: str) -> dict[str, Any]:
    name = DOMAINS[letter]
    return {"path": str(require_data("blitzer_reviews") / name), "format": "blitzer", "name": name}


def label(recipe: str, weight: float) -> str:
    return f"{recipe}-w{weight:g}"


def entries() -> list[dict[str, Any]]:
    return [
        {
            "name": recipe,
            "label": label(recipe, weight),
            "objectives": [{"name": objective, "weight": weight}],
            "epochs": EPOCHS,
            "patience": EPOCHS,
            "model_selection": "im",
        }
        for recipe, (objective, weights) in WEIGHTS.items()
        for weight in weights
    ] + [
        {  # a grid of one share: the record keeps every criterion's score of the final model
            "name": "mlp",
            "label": share_label(share),
            "self_training_rounds": 1,
            "selection_grid": {"pseudo_label_share": [share]},
        }
        for share in SHARES
    ]


def share_label(share: float) -> str:
    return f"{SELF_TRAINING}-s{share:g}"


def config(pair: str, labels: list[str], seeds: list[int]) -> dict[str, Any]:
    source, target = pair.split("->")
    return {
        "name": f"label-free-{source}{target}",
        "source": domain(source),
        "target": domain(target),
        "target_test": domain(target),
        "transductive": False,  # the pool is the test set: its reviews are the unlabeled target
        "budgets": [0],
        "seeds": seeds,
        "track_quality": True,
        "quality_sample": 2000,
        "recipes": [e for e in entries() if e["label"] in labels],
    }


def show(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return record.get("reason", record["status"])
    return f"macro-F1 {100 * record['metrics']['macro_f1']:.1f}, {record['train_seconds']:.0f} s"


# -- what each criterion chose, from the records ------------------------------------------------


def candidate(record: dict[str, Any]) -> dict[str, Any]:
    """Per epoch: the criteria's scores and the target test macro-F1 (quality curve)."""
    scores = record["fitted"]["model_selection"]["scores"]
    test = [value for _, value in record["quality_curve"][:EPOCHS]]
    if len(test) != EPOCHS or any(len(v) != EPOCHS for v in scores.values()):
        raise SystemExit(f"{record['label']} seed {record['seed']}: expected {EPOCHS} epochs")
    chosen = record["fitted"]["model_selection"]["chosen_epoch"]
    # the model the runner scored is the checkpoint the recipe kept: its metric is that epoch's
    if abs(record["metrics"]["macro_f1"] - test[chosen - 1]) > 1e-9:
        raise SystemExit(
            f"{record['label']} seed {record['seed']}: final model is not epoch {chosen}"
        )
    return {"scores": scores, "test": test}


def pick(scores: dict[str, list[float]], row: str) -> int:
    return EPOCHS - 1 if row == LAST else best_index(scores[row])


def outcomes(cell: dict[str, Any], recipe: str, seed: int) -> dict[str, Any] | None:
    """Per row: (test macro-F1 of the choice, regret) for the epoch and the weight + epoch."""
    objective, weights = WEIGHTS[recipe]
    found = {
        r["label"]: r
        for r in cell["records"]
        if r["seed"] == seed and r["status"] == "ok" and r["recipe"] == recipe
    }
    if any(label(recipe, w) not in found for w in weights):
        return None
    runs = [candidate(found[label(recipe, w)]) for w in weights]
    default = runs[0]
    epoch_oracle = max(default["test"])
    grid_oracle = max(max(run["test"]) for run in runs)
    out: dict[str, Any] = {"epoch_oracle": epoch_oracle, "grid_oracle": grid_oracle, "rows": {}}
    for row in ROWS:
        epoch = pick(default["scores"], row)
        picked = [pick(run["scores"], row) for run in runs]
        if row == LAST:
            choice = 0  # the default weight: nothing to choose with
        else:
            choice = best_index(
                [run["scores"][row][e] for run, e in zip(runs, picked, strict=True)]
            )
        chosen_test = runs[choice]["test"][picked[choice]]
        out["rows"][row] = {
            "epoch": epoch + 1,
            "epoch_test": default["test"][epoch],
            "epoch_regret": epoch_oracle - default["test"][epoch],
            "weight": weights[choice],
            "grid_epoch": picked[choice] + 1,
            "grid_test": chosen_test,
            "grid_regret": grid_oracle - chosen_test,
        }
    return out


def summarise(payload: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for recipe in WEIGHTS:
        cases = []
        for pair in PAIRS:
            cell = payload["settings"].get(pair)
            for seed in SEEDS:
                found = outcomes(cell, recipe, seed) if cell else None
                if found is not None:
                    cases.append({"pair": pair, "seed": seed, **found})
        summary[recipe] = {"cases": cases}
    cases = []
    for pair in PAIRS:
        cell = payload["settings"].get(pair)
        for seed in SEEDS:
            found = share_outcomes(cell, seed) if cell else None
            if found is not None:
                cases.append({"pair": pair, "seed": seed, **found})
    summary[SELF_TRAINING] = {"cases": cases}
    return summary


def share_outcomes(cell: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """Per row: the share each criterion picks from the final models' scores, its test
    macro-F1 and regret against the best share."""
    found = {r["label"]: r for r in cell["records"] if r["seed"] == seed and r["status"] == "ok"}
    if any(share_label(s) not in found for s in SHARES):
        return None
    records = [found[share_label(s)] for s in SHARES]
    scores = [r["fitted"]["selection_grid"]["candidates"][0]["scores"] for r in records]
    test = [r["metrics"]["macro_f1"] for r in records]
    oracle = max(test)
    rows = {}
    for row in [*CRITERIA, DEFAULT_SHARE]:
        choice = 0 if row == DEFAULT_SHARE else best_index([s[row] for s in scores])
        rows[row] = {"share": SHARES[choice], "test": test[choice], "regret": oracle - test[choice]}
    return {"oracle": oracle, "rows": rows}


# -- markdown, every number from the JSON -------------------------------------------------------


def markdown(payload: dict[str, Any]) -> str:
    summary = payload.get("summary", {})
    parts = [
        "# Label-free model selection: Blitzer reviews\n",
        "Command: `OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/label_free.py "
        "--fresh` (it resumes when run again; protocol in the script's docstring). Data: "
        "Blitzer, Dredze & Pereira, ACL 2007; MiniLM-L6 frozen features, an MLP trained on "
        f"the source with an alignment loss on the unlabeled target, {EPOCHS} epochs, no "
        f"early stopping; pairs {', '.join(PAIRS)}; seeds {', '.join(map(str, SEEDS))}.\n",
        "Each criterion picks a checkpoint (an epoch at the default weight) or a checkpoint and "
        "an alignment weight, reading no target labels; the target test macro-F1 (%, all 2,000 "
        "target reviews) of what it picked, and its regret: points below the best candidate "
        "(the oracle, chosen on test labels, for reference only). Mean ± std over the "
        "pair × seed cases; 'beats SV' counts the cases where the criterion's pick scores "
        "higher on the test than source validation's (ties apart).\n",
    ]
    machine = None
    for cell in payload["settings"].values():
        for run in cell["runs"]:
            machine = run.get("machine") or machine
    if machine:
        parts.append(f"Machine: {_machine_text(machine)}. {timing_sentence(payload)}\n")
    for recipe, (objective, weights) in WEIGHTS.items():
        cases = summary.get(recipe, {}).get("cases", [])
        if not cases:
            continue
        parts.append(
            f"## {recipe} ({len(cases)} cases; weights {objective}.weight "
            f"{', '.join(f'{w:g}' for w in weights)}, default {weights[0]:g})\n"
        )
        epoch_oracle = [100 * c["epoch_oracle"] for c in cases]
        grid_oracle = [100 * c["grid_oracle"] for c in cases]
        parts.append(
            f"Oracle (best on test): epoch {pm(epoch_oracle)}, weight + epoch {pm(grid_oracle)}.\n"
        )
        parts.append(
            "| criterion | epoch: test F1 | regret | beats SV | weight + epoch: test F1 | "
            "regret | beats SV | mean epoch picked |"
        )
        parts.append("|---|---|---|---|---|---|---|---|")
        for row in ROWS:
            r = [c["rows"][row] for c in cases]
            sv = [c["rows"]["source-validation"] for c in cases]
            wins_e = _wins([x["epoch_test"] for x in r], [x["epoch_test"] for x in sv])
            wins_g = _wins([x["grid_test"] for x in r], [x["grid_test"] for x in sv])
            parts.append(
                f"| {row} | {pm([100 * x['epoch_test'] for x in r])} | "
                f"{pm([100 * x['epoch_regret'] for x in r])} | "
                f"{'—' if row == 'source-validation' else wins_e} | "
                f"{pm([100 * x['grid_test'] for x in r])} | "
                f"{pm([100 * x['grid_regret'] for x in r])} | "
                f"{'—' if row == 'source-validation' else wins_g} | "
                f"{np.mean([x['epoch'] for x in r]):.1f} |"
            )
        parts.append("")
        parts.append("Per case, the weight each criterion chose (pair/seed: weight@epoch):\n")
        for row in ROWS[:-1]:
            picks = [(c["pair"], c["seed"], c["rows"][row]) for c in cases]
            chosen = ", ".join(
                f"{pair}/{seed}: {r['weight']:g}@{r['grid_epoch']}" for pair, seed, r in picks
            )
            parts.append(f"- {row}: {chosen}")
        parts.append("")
    parts.extend(_self_training_section(summary.get(SELF_TRAINING, {}).get("cases", [])))
    parts.append(_findings(summary))
    return "\n".join(parts)


def _self_training_section(cases: list[dict[str, Any]]) -> list[str]:
    if not cases:
        return []
    parts = [
        f"## Self-training on the MLP ({len(cases)} cases; pseudo_label_share "
        f"{', '.join(f'{s:g}' for s in SHARES)}, default {SHARES[0]:g})\n",
        "`mlp` with `self_training_rounds: 1`: the source stage (epochs by source validation, "
        "shared by the shares), then one round on the most confident share of the target, "
        "pseudo-labelled; each criterion picks the share from the final models' scores.\n",
        f"Oracle (best share on test): {pm([100 * c['oracle'] for c in cases])}.\n",
        "| criterion | test F1 | regret | beats SV | shares picked |",
        "|---|---|---|---|---|",
    ]
    for row in [*CRITERIA, DEFAULT_SHARE]:
        r = [c["rows"][row] for c in cases]
        sv = [c["rows"]["source-validation"]["test"] for c in cases]
        wins = "—" if row == "source-validation" else _wins([x["test"] for x in r], sv)
        picked = ", ".join(f"{x['share']:g}" for x in r)
        parts.append(
            f"| {row} | {pm([100 * x['test'] for x in r])} | "
            f"{pm([100 * x['regret'] for x in r])} | {wins} | {picked} |"
        )
    parts.append("")
    return parts


def _wins(picked: list[float], baseline: list[float]) -> str:
    better = sum(p > b + 1e-12 for p, b in zip(picked, baseline, strict=True))
    worse = sum(p < b - 1e-12 for p, b in zip(picked, baseline, strict=True))
    return f"{better}/{len(picked)} (worse {worse})"


def _machine_text(machine: dict[str, Any]) -> str:
    keys = ("processor", "cpu", "platform", "system")
    return ", ".join(str(machine[k]) for k in keys if machine.get(k)) or str(machine)


def _findings(summary: dict[str, Any]) -> str:
    """The lowest mean regret per recipe and task, computed from the cases."""
    lines = ["## What the numbers say\n"]
    for recipe in WEIGHTS:
        cases = summary.get(recipe, {}).get("cases", [])
        if not cases:
            continue
        for what in ("epoch", "grid"):
            regret = {
                row: float(np.mean([100 * c["rows"][row][f"{what}_regret"] for c in cases]))
                for row in ROWS
            }
            best = min(regret, key=lambda row: regret[row])
            lines.append(
                f"- {recipe}, {'epoch' if what == 'epoch' else 'weight + epoch'}: lowest mean "
                f"regret {best} ({regret[best]:.1f} points); "
                + ", ".join(f"{row} {regret[row]:.1f}" for row in ROWS if row != best)
                + "."
            )
    cases = summary.get(SELF_TRAINING, {}).get("cases", [])
    if cases:
        rows = [*CRITERIA, DEFAULT_SHARE]
        regret = {
            row: float(np.mean([100 * c["rows"][row]["regret"] for c in cases])) for row in rows
        }
        best = min(regret, key=lambda row: regret[row])
        lines.append(
            f"- {SELF_TRAINING}, share: lowest mean regret {best} ({regret[best]:.1f} points); "
            + ", ".join(f"{row} {regret[row]:.1f}" for row in rows if row != best)
            + "."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true", help="start a new results file")
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md from the JSON")
    parser.add_argument("--pairs", nargs="+", default=PAIRS)
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument(
        "--shared-cores", action="store_true", help="note that other jobs shared the cores"
    )
    args = parser.parse_args()
    payload = open_results("label_free", "label_free", args.fresh)
    if args.markdown:
        save("label_free", payload, markdown(payload))
        return
    started = time.perf_counter()
    labels = [e["label"] for e in entries()]
    for pair in args.pairs:
        missing = {
            lab: [s for s in args.seeds if not recorded(payload, pair, lab, s)] for lab in labels
        }
        todo = sorted({lab for lab, seeds in missing.items() if seeds})
        if not todo:
            print(f"{pair}: done before, skipped")
            continue
        seeds = sorted({s for lab in todo for s in missing[lab]})
        run_setting(
            payload, pair, config(pair, todo, seeds), shared_cores=args.shared_cores, show=show
        )
        payload["summary"] = summarise(payload)
        save("label_free", payload, markdown(payload))
    add_invocation(payload, sys.argv[1:], started, args.shared_cores)
    payload["summary"] = summarise(payload)
    save("label_free", payload, markdown(payload))


if __name__ == "__main__":
    main()
