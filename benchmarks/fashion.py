"""Product image recognition by transfer from ImageNet: Myntra product photos.

    .venv/bin/python benchmarks/fashion.py --fresh           # both parts (then: resumes)
    .venv/bin/python benchmarks/fashion.py --part budgets    # or: --part shift
    .venv/bin/python benchmarks/fashion.py --part budgets --budgets 20 \\
        --only frozen-features scratch --seeds 0 --out rerun_fashion   # some cells
    .venv/bin/python benchmarks/fashion.py --redo fine-tune  # reruns one recipe's cells
    .venv/bin/python benchmarks/fashion.py --markdown        # rewrites the .md from the JSON

Each budget of part 1, and part 2, is an experiment definition run by the library's runner
(``shoptransfer.api.compare`` for the budgets, whose verdicts set each recipe beside scratch;
``run_experiment`` for the shift, which has no scratch baseline). The library reads a whole
table, so the script first writes the rows each part uses (the 20 largest article types; the
men's and the women's photos of the 10 shared types) to tables in benchmarks/runs/data/ that
name the same photo files.

Data: ../shared/data/fashion_products (22,048 photos of about 60x80 pixels; half of the Kaggle
"Fashion Product Images (Small)" set, Aggarwal 2019). Backbones (ImageNet): EfficientNet-Lite2
for frozen features (one forward pass per photo), EfficientNet-Lite0 for fine-tune and scratch
(they train through the network for several epochs: Lite2 costs 2-3x as much). The pretrained
networks compute in bfloat16 (precision 'bf16': about 2x faster on these CPUs, which have
AVX512-BF16); scratch keeps float32 (at 64 px bf16 was no faster: 5/class, 3 seeds, 58 s and
19.0 % in bf16 against 54 s and 21.4 % in fp32).

Part 1, budgets: articleType over the 20 largest classes. A fixed test set of 20 % of each
class (seed 0: the runner's ``test_fraction`` and ``split_seed``); from the rest, 5 / 20 / 100
labelled photos per class or all of them, drawn per seed (0, 1, 2). Recipes:
- scratch: Lite0, random weights, 64 px (the photos' own scale; 4x cheaper than 128),
  batches of 16, fixed epochs per budget (30 / 15 / 6); not run on all labels (the goal
  does not need it, and a useful number of epochs on 14,000 photos takes hours on 2 cores);
- frozen-features: 260 px Lite2 features (the weights' own size), power-normalised and
  scaled to unit length (feature_transform 'sqrt-l2'), a logistic-regression head fitted by
  L-BFGS on every labelled photo, its L2 strength by cross-validation (5 folds; 3 from 2,000
  photos) (solver 'lbfgs', the linear-probe protocol);
- fine-tune: Lite0 at 128 px (224 px costs 3x the time); the stem and 13 lower blocks frozen
  (computed once per photo), the top 3 blocks, head convolution and a new head trained with
  layer-wise learning-rate decay 0.8; a fixed 10 / 10 / 6 / 1 epochs (the runner trains a
  run without a source on the target labels only, in the recipe's target stage, which has no
  validation split; the earlier runner early-stopped on 20 % of the budget's photos, with
  these epochs as the most).
Part 2, shift: men -> women over the 10 article types both have; train on the men's photos and
labels (the alignment recipes also read the women's photos without labels), test on all the
women's photos of those types (``target`` and ``target_test`` both the women's table, budget 0;
``transductive`` stays false: the pool is the test set). Source-only (frozen-features, mlp,
fine-tune) beside CORAL, MMD and DANN, on the frozen Lite2 features (coral-closed-form, mlp-*),
and DANN in the network (fine-tune's top layers + a domain classifier, one epoch over the men's
photos); 3 seeds.
Scores: accuracy and macro-F1 on the test photos; training seconds (wall clock, including
computing features not yet cached).
Development (pool photos outside the budget; the held-out photos are 10 % of the pool, never
the test set), lbfgs head on sqrt-l2 features, mean of 3 seeds (all labels: 1):
  features                  5/class   20/class   100/class   all    20 as share of all
  Lite0 224 px fp32            -        80.0       84.8      89.9       89.0 %
  Lite2 260 px bf16            -        81.4       85.6      89.1       91.3 %
  (Lite2 260 px fp32 at 20/class: 81.5; bf16 features differ by ~1e-3 in cosine)
Earlier: 224 px Lite0 features gave 81.7 % against 76.5 % at 128 px at 20 per class; the
lbfgs head beat an early-stopped AdamW head (75.8 / 73.9 against 74.1 / 71.0 %, seeds 0 / 1);
power normalisation gave 80.0 against 78.8 % at 20 per class; mirrored photos, class-prior
correction, self-training on the unlabelled pool, shrinkage LDA and 160+224 px features gave
no gain at 20 per class. Earlier runs (Lite0 features) are in the git history of
results/fashion.json.
Writes benchmarks/results/fashion.json and .md (``--out`` names other files).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import (
    RESULTS,
    RUNS,
    add_invocation,
    forget,
    is_current,
    load_json,
    open_results,
    pm,
    recorded,
    require_data,
    run_setting,
    save,
    timing_sentence,
    values,
)

SEEDS = [0, 1, 2]
BUDGETS: list[int | str] = [5, 20, 100, "all"]
TEST_FRACTION, SPLIT_SEED = 0.2, 0
FEATURES = {"backbone": "efficientnet-lite2", "image_size": 260, "precision": "bf16"}
FROZEN = {**FEATURES, "solver": "lbfgs", "feature_transform": "sqrt-l2"}
FINE_TUNE = {
    "backbone": "efficientnet-lite0",
    "image_size": 128,
    "frozen_layers": 14,  # stem + 13 blocks
    "layer_decay": 0.8,
    "learning_rate": 1e-3,
    "head_learning_rate": 1e-3,
    "batch_size": 32,
    "patience": 2,
    "precision": "bf16",
}
SCRATCH = {"backbone": "efficientnet-lite0", "image_size": 64, "learning_rate": 1e-3}
SCRATCH_EPOCHS = {5: 30, 20: 15, 100: 6}  # not run at all: hours on a CPU
FINE_TUNE_EPOCHS = {5: 10, 20: 10, 100: 6, "all": 1}
BUDGET_RECIPES = ["scratch", "frozen-features", "fine-tune"]
SHIFT_TYPES = [
    "Tshirts",
    "Shirts",
    "Casual Shoes",
    "Sports Shoes",
    "Watches",
    "Sunglasses",
    "Belts",
    "Flip Flops",
    "Wallets",
    "Jeans",
]
# entry label -> (recipe, options, the row's name in the table)
SHIFT_RECIPES: dict[str, tuple[str, dict[str, Any], str]] = {
    "frozen-features": ("frozen-features", FROZEN, "source-only (frozen-features)"),
    "coral-closed-form": ("coral-closed-form", FROZEN, "coral-closed-form"),
    "mlp": ("mlp", {**FEATURES, "epochs": 20, "patience": 3}, "source-only (mlp)"),
    "mlp-coral": ("mlp-coral", {**FEATURES, "epochs": 20, "patience": 3}, "mlp-coral"),
    "mlp-mmd": ("mlp-mmd", {**FEATURES, "epochs": 20, "patience": 3}, "mlp-mmd"),
    "mlp-dann": ("mlp-dann", {**FEATURES, "epochs": 20, "patience": 3}, "mlp-dann"),
    "fine-tune": ("fine-tune", {**FINE_TUNE, "epochs": 1}, "source-only (fine-tune)"),
    "dann": ("dann", {**FINE_TUNE, "epochs": 1}, "fine-tune + dann"),
}
SHIFT = "men->women"
GOAL = "at 20 photos per class, the best transfer recipe reaches >= 90 % of its own all-labels "
GOAL += "accuracy and beats scratch by >= 25 points"


# -- the experiment definitions --------------------------------------------------------------


def tables() -> dict[str, Path]:
    """The rows each part reads, as tables naming the same photo files (written once)."""
    folder = require_data("fashion_products")
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    largest = list(pd.read_csv(folder / "labels.csv").articleType.value_counts().index[:20])
    out = RUNS / "data" / "fashion"
    out.mkdir(parents=True, exist_ok=True)
    rows = {
        "articletype-top20": table.articleType.isin(largest),
        "men": table.articleType.isin(SHIFT_TYPES) & (table.gender == "Men"),
        "women": table.articleType.isin(SHIFT_TYPES) & (table.gender == "Women"),
    }
    paths = {}
    for name, keep in rows.items():
        paths[name] = out / f"{name}.csv"
        text = table.loc[keep, ["id", "image", "articleType"]].to_csv(index=False)
        if not paths[name].exists() or paths[name].read_text() != text:
            paths[name].write_text(text)
    return paths


def photos(path: Path, name: str) -> dict[str, Any]:
    return {
        "path": str(path),
        "image": "image",
        "label": "articleType",
        "image_root": str(require_data("fashion_products")),
        "name": name,
    }


def budget_entry(name: str, budget: int | str) -> dict[str, Any] | None:
    """The recipe entry of budget-part recipe ``name`` at ``budget`` (None: not run there)."""
    if name == "scratch":
        if budget not in SCRATCH_EPOCHS:
            return None
        epochs = SCRATCH_EPOCHS[budget]  # type: ignore[index]
        return {"name": "scratch-transformer", "label": "scratch", **SCRATCH, "epochs": epochs}
    if name == "frozen-features":
        return {"name": "frozen-features", **FROZEN}
    # no source: fine-tune trains in its target stage, a fixed number of epochs
    options = {k: v for k, v in FINE_TUNE.items() if k not in ("learning_rate", "patience")}
    options.pop("head_learning_rate")
    return {
        "name": "fine-tune",
        **options,
        "target_learning_rate": FINE_TUNE["learning_rate"],
        "target_epochs": FINE_TUNE_EPOCHS[budget],
    }


def budget_config(budget: int | str, entries: list[dict[str, Any]], seeds: list[int]) -> dict:
    return {
        "name": f"fashion-articletype-{budget}",
        "target": photos(tables()["articletype-top20"], "articleType"),
        "test_fraction": TEST_FRACTION,
        "split_seed": SPLIT_SEED,
        "budgets": [budget],
        "seeds": seeds,
        "recipes": entries,
    }


def shift_config(labels: list[str], seeds: list[int]) -> dict[str, Any]:
    paths = tables()
    return {
        "name": "fashion-men-to-women",
        "source": photos(paths["men"], "men"),
        "target": photos(paths["women"], "women"),
        "target_test": photos(paths["women"], "women"),
        "transductive": False,  # the pool is the test set: its photos are the unlabeled target
        "budgets": [0],
        "seeds": seeds,
        "recipes": [
            {"name": SHIFT_RECIPES[label][0], "label": label, **SHIFT_RECIPES[label][1]}
            for label in labels
        ],
    }


def scores_text(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return record.get("reason", record["status"])
    metrics = record["metrics"]
    return (
        f"accuracy {100 * metrics['accuracy']:.1f} %, macro-F1 {100 * metrics['macro_f1']:.1f} %, "
        f"{record['train_seconds']:.0f} s"
    )


def setting_of(budget: int | str) -> str:
    return f"budget {budget}"


def budgets_part(payload: dict[str, Any], args: argparse.Namespace) -> None:
    for budget in args.budgets:
        setting = setting_of(budget)
        entries = []
        seeds: set[int] = set()
        for name in args.only or BUDGET_RECIPES:
            entry = budget_entry(name, budget)
            missing = [s for s in args.seeds if not recorded(payload, setting, name, s)]
            if entry is not None and missing:
                entries.append(entry)
                seeds.update(missing)
        if entries:
            config = budget_config(budget, entries, sorted(seeds))
            run_setting(
                payload,
                setting,
                config,
                compare=True,
                shared_cores=args.shared_cores,
                show=scores_text,
            )
            finish(payload, args.out)


def shift_part(payload: dict[str, Any], args: argparse.Namespace) -> None:
    missing = {
        label: [s for s in args.seeds if not recorded(payload, SHIFT, label, s)]
        for label in SHIFT_RECIPES
    }
    labels = [label for label, seeds in missing.items() if seeds]
    if labels:
        seeds = sorted({s for label in labels for s in missing[label]})
        config = shift_config(labels, seeds)
        run_setting(payload, SHIFT, config, shared_cores=args.shared_cores, show=scores_text)
        finish(payload, args.out)


# -- results, from the results file ------------------------------------------------------------


def check_goal(payload: dict[str, Any]) -> dict[str, Any] | None:
    settings = payload["settings"]
    at_20, at_all = setting_of(20), setting_of("all")
    if at_20 not in settings or at_all not in settings:
        return None

    def accuracy(setting: str, label: str) -> float | None:
        scores = values(settings[setting]["records"], label, "accuracy")
        return float(np.mean(scores)) if scores else None

    transfer = {
        label: accuracy(at_20, label)
        for label in ("frozen-features", "fine-tune")
        if accuracy(at_20, label) is not None
    }
    scratch = accuracy(at_20, "scratch")
    if not transfer or scratch is None:
        return None
    best = max(transfer, key=lambda label: transfer[label] or 0.0)
    own_all = accuracy(at_all, best)
    if own_all is None:
        return None
    share = transfer[best] / own_all
    margin = transfer[best] - scratch
    return {
        "best_at_20": best,
        "accuracy_at_20": transfer[best],
        "own_all_labels_accuracy": own_all,
        "share_of_all_labels": share,
        "points_over_scratch": 100 * margin,
        "met": bool(share >= 0.9 and margin >= 0.25),
    }


def finish(payload: dict[str, Any], out: str) -> None:
    payload.update(
        protocol=__doc__.split("Data: ")[1].split("Writes")[0].strip(),
        goal=GOAL,
        goal_check=check_goal(payload),
    )
    save(out, payload, markdown(payload))


def verdict(comparison: list[dict[str, Any]], label: str) -> str:
    row = next((r for r in comparison if r["label"] == label), None)
    if row is None or row.get("family") == "baseline":
        return "scratch baseline" if row is not None else "—"
    if row.get("negative_transfer") is None:
        return "—"
    if row["negative_transfer"]:
        return f"negative transfer vs {row['best_scratch']}"
    return f"{100 * row['versus_scratch']:+.1f} vs {row['best_scratch']}"


def markdown(payload: dict[str, Any]) -> str:
    if not is_current(payload):
        sys.exit("this results file was written by the earlier runner; its .md is in git")
    settings = payload["settings"]
    lines = [
        "# Product image recognition: EfficientNet-Lite (ImageNet) → Myntra product photos\n",
        "Command: `.venv/bin/python benchmarks/fashion.py` (protocol, and the runs it makes on "
        "the library's runner, in the script's docstring). Mean ± std (sample std, n − 1) over "
        "seeds. Data: Aggarwal 2019 (Kaggle, Myntra photos).\n",
        "## 1. articleType, 20 largest classes, labelled photos per class\n",
        "| budget | recipe | accuracy % | macro-F1 % | train s | seeds | macro-F1 vs scratch |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget in BUDGETS:
        cell = settings.get(setting_of(budget))
        if cell is None:
            continue
        records = cell["records"]
        for label in BUDGET_RECIPES:
            accuracy = values(records, label, "accuracy")
            if not accuracy:
                continue
            lines.append(
                f"| {budget} | {label} | {pm(accuracy, 100)} | "
                f"{pm(values(records, label, 'macro_f1'), 100)} | "
                f"{np.mean(values(records, label, 'train_seconds')):.0f} | {len(accuracy)} | "
                f"{verdict(cell['comparison'], label)} |"
            )
    goal = payload.get("goal_check")
    if goal:
        lines.append(
            f"\nGoal ({GOAL}): best at 20 per class `{goal['best_at_20']}` "
            f"{100 * goal['accuracy_at_20']:.1f} % = {100 * goal['share_of_all_labels']:.1f} % "
            f"of its all-labels {100 * goal['own_all_labels_accuracy']:.1f} %, "
            f"{goal['points_over_scratch']:.1f} points over scratch — "
            f"{'met' if goal['met'] else 'not met'}."
        )
    records = settings.get(SHIFT, {}).get("records", [])
    if records:
        lines += [
            "\n## 2. Men → women, 10 shared article types (test: all women's photos)\n",
            "| recipe | accuracy % | macro-F1 % | train s | seeds |",
            "|---|---|---|---|---|",
        ]
    for label, (_, _, shown) in SHIFT_RECIPES.items():
        accuracy = values(records, label, "accuracy")
        if not accuracy:
            continue
        lines.append(
            f"| {shown} | {pm(accuracy, 100)} | {pm(values(records, label, 'macro_f1'), 100)} | "
            f"{np.mean(values(records, label, 'train_seconds')):.0f} | {len(accuracy)} |"
        )
    timing = timing_sentence(payload)
    if timing:
        lines.append(f"\n{timing} Training seconds include computing features not yet cached.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["budgets", "shift"], help="run one part only")
    parser.add_argument("--budgets", nargs="*", default=None, help="budgets (5 20 100 all)")
    parser.add_argument("--only", nargs="*", default=None, help="budget recipes to run")
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS, help="seeds (0 1 2)")
    parser.add_argument("--redo", nargs="*", default=[], help="recipes whose cells to rerun")
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md only")
    parser.add_argument("--fresh", action="store_true", help="start a new results file")
    parser.add_argument("--out", default="fashion", help="results file name (in results/)")
    parser.add_argument(
        "--shared-cores", action="store_true", help="record that other jobs share the cores"
    )
    args = parser.parse_args()
    args.budgets = [b if b == "all" else int(b) for b in args.budgets or BUDGETS]
    unknown = sorted(set(args.only or []) - set(BUDGET_RECIPES))
    unknown += [str(b) for b in args.budgets if b not in BUDGETS]
    if unknown:
        parser.error(f"unknown recipes or budgets {unknown}: {BUDGET_RECIPES}, {BUDGETS}")
    if args.markdown:
        from shoptransfer.files import atomic_write_text

        payload = load_json(RESULTS / f"{args.out}.json")
        atomic_write_text(RESULTS / f"{args.out}.md", markdown(payload))
        return
    payload = open_results("fashion", args.out, args.fresh)
    for setting in list(payload["settings"]):
        forget(payload, setting, set(args.redo))
    started = time.perf_counter()
    if args.part in (None, "budgets"):
        budgets_part(payload, args)
    if args.part in (None, "shift"):
        shift_part(payload, args)
    add_invocation(payload, sys.argv[1:], started, args.shared_cores)
    finish(payload, args.out)


if __name__ == "__main__":
    main()
