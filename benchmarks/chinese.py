"""Chinese reviews: in-domain, cross-domain, cross-category and cross-lingual (issue 16, part 3).

    nice -n 19 .venv/bin/python benchmarks/chinese.py                 # every setting; resumes
    nice -n 19 .venv/bin/python benchmarks/chinese.py --only in-domain/hotel --fine-tune-seeds 0
    .venv/bin/python benchmarks/chinese.py --markdown                 # rewrites the .md

Every setting is an experiment mapping run by the library's runner
(``shoptransfer.api.run_experiment``); the records of its ``results.json`` are kept in
``results/chinese.json`` and every number of ``results/chinese.md`` is computed from them.

Data (../shared/data), cleaned as benchmarks/multitask.py does (BOM stripped, empty and
duplicate reviews dropped); labels written as ``positive`` / ``negative`` so that English
and Chinese domains share one label set. Derived CSVs go to benchmarks/runs/chinese/.
- hotel: chinese_reviews/ChnSentiCorp_htl_all.csv; waimai: chinese_reviews/waimai_10k.csv.
  In-domain and as a target: 20 % held out as test (``test_fraction: 0.2``, ``split_seed: 0``);
  as a source: every review.
- five categories: chinese_shopping_5cats (books, tablets, fruit, shampoo, clothes); per
  category a seeded permutation (seed 0), the first 1,000 reviews the pool, the next 1,000
  the test set. Cross-category: target one category (pool + test), source the pools of the
  other four (4,000 reviews).
- English: Blitzer kitchen + electronics (4,000 labelled reviews, ``title. body``).

Recipes (declared before the runs; nothing chosen on test data; recipe defaults otherwise):
``scratch-tfidf`` (``tokenizer: auto``: jieba + character n-grams on Chinese),
``frozen-features`` with ``solver: lbfgs`` (a linear probe, L2 by cross-validation on the
labelled examples) on ``e5-small-multilingual-torch`` (frozen-e5), ``use-multilingual``
(frozen-use) and ``minilm-l6`` (frozen-minilm, the English backbone), ``coral-closed-form``
with ``solver: lbfgs`` on e5 (coral-e5), frozen-e5 with ``label_shift: em`` (frozen-e5-em,
added after the first runs: class shares of the target estimated on its unlabelled pool), and
``fine-tune`` of e5 (embeddings + bottom 6 of
12 layers frozen and cached, the top 6 trained, 2 target epochs at the default learning
rate 3e-5, batch 16, bf16, 128 tokens), all labels only. Precision ``auto`` (bf16 on this CPU),
128 tokens. Budgets are labelled target reviews per class; seeds 0, 1, 2.
Writes benchmarks/results/chinese.json and .md.
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
    load_json,
    open_results,
    pm,
    require_data,
    run_setting,
    save,
    timing_sentence,
    values,
)

SEEDS = [0, 1, 2]
E5 = "e5-small-multilingual-torch"
DATA = RUNS / "chinese"
CATEGORIES = {
    "书籍": "books",
    "平板": "tablets",
    "水果": "fruit",
    "洗发水": "shampoo",
    "衣服": "clothes",
}
CATEGORY_ROWS = 1000  # pool and test reviews per category
ENGLISH = ["kitchen", "electronics"]
LABELS = {"1": "positive", "0": "negative"}

RECIPES = {
    "scratch-tfidf": {"name": "scratch-tfidf"},
    "frozen-e5": {"name": "frozen-features", "label": "frozen-e5", "backbone": E5},
    "frozen-use": {
        "name": "frozen-features",
        "label": "frozen-use",
        "backbone": "use-multilingual",
    },
    "frozen-minilm": {"name": "frozen-features", "label": "frozen-minilm", "backbone": "minilm-l6"},
    "coral-e5": {"name": "coral-closed-form", "label": "coral-e5", "backbone": E5},
    "frozen-e5-em": {
        "name": "frozen-features",
        "label": "frozen-e5-em",
        "backbone": E5,
        "label_shift": "em",  # the target's class shares estimated on its unlabelled pool
    },
    "self-train-e5": {
        "name": "frozen-features",
        "label": "self-train-e5",
        "backbone": E5,
        "source_weighting": "balanced",
        "label_shift": "em",
        "self_training_rounds": 3,
        "pseudo_label_share": 0.5,
    },
    # picks among scratch-tfidf and the frozen-e5 recipes above: with target labels by 3-fold
    # cross-validation on them, at 0 labels by information maximisation on the unlabelled pool
    "auto-e5": {"name": "auto", "label": "auto-e5", "backbone": E5},
    "fine-tune-e5": {
        "name": "fine-tune",
        "label": "fine-tune-e5",
        "backbone": E5,
        "frozen_layers": 7,  # embeddings + 6 of 12 layers: run once per text and cached
        "target_epochs": 2,
    },
}
for _entry in RECIPES.values():
    if _entry["name"] in ("frozen-features", "coral-closed-form"):
        _entry["solver"] = "lbfgs"

TRANSFER = (
    "frozen-e5",
    "coral-e5",
    "frozen-e5-em",
    "self-train-e5",
    "auto-e5",
)  # transfer recipes on e5, table order
# the goals read these: auto-e5 may pick target-only scratch-tfidf, so it is shown beside them
TRANSFER_ONLY = tuple(label for label in TRANSFER if label != "auto-e5")
GOALS = {
    "in-domain": "ChnSentiCorp (hotel) in-domain accuracy with all labels ≥ 92.8 (RBT3)",
    "hotel->waimai 0": "hotel → waimai at 0 target labels ≥ 85",
    "16 labels": "at 16 labels per class the best transfer recipe beats target-only "
    "scratch-tfidf by ≥ 10 points (both cross-domain pairs)",
    "cross-lingual": "English → Chinese at 0 target labels ≥ 80",
}
ANCHORS = {"RBT3": 92.8, "ELECTRA-small": 94.3, "BERT-base": 95.0}


# -- data ---------------------------------------------------------------------------------------


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["review"] = frame["review"].str.replace("\ufeff", "", regex=False).str.strip()
    frame = frame[frame["review"] != ""].drop_duplicates("review")
    frame["label"] = frame["label"].str.strip().map(LABELS)
    return frame[frame["label"].notna()]


def write(frame: pd.DataFrame, name: str, columns: tuple[str, ...] = ("review", "label")) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{name}.csv"
    frame[list(columns)].to_csv(path, index=False)
    return path


def tables() -> dict[str, Path]:
    """Write the derived CSVs (deterministic) and return their paths."""
    paths = {}
    reviews = require_data("chinese_reviews")
    for name, file in (("hotel", "ChnSentiCorp_htl_all.csv"), ("waimai", "waimai_10k.csv")):
        frame = pd.read_csv(reviews / file, dtype=str, keep_default_na=False)
        paths[name] = write(clean(frame), name)
    shop = require_data("chinese_shopping_5cats") / "online_shopping_5_cats.csv"
    frame = clean(pd.read_csv(shop, dtype=str, keep_default_na=False))
    frame["category"] = frame["cat"].map(CATEGORIES)
    pools, tests = {}, {}
    for cat, rows in frame.groupby("category", sort=True):
        order = np.random.default_rng(0).permutation(len(rows))
        rows = rows.iloc[order].reset_index(drop=True)
        pools[cat] = rows.iloc[:CATEGORY_ROWS]
        tests[cat] = rows.iloc[CATEGORY_ROWS : 2 * CATEGORY_ROWS]
    for cat in pools:
        paths[f"{cat}_pool"] = write(pools[cat], f"{cat}_pool")
        paths[f"{cat}_test"] = write(tests[cat], f"{cat}_test")
        others = pd.concat([pools[other] for other in pools if other != cat])
        paths[f"not_{cat}"] = write(others, f"not_{cat}")
    paths["shop_pool"] = write(pd.concat(pools.values()), "shop_pool")
    paths["shop_test"] = write(pd.concat(tests.values()), "shop_test")
    from shoptransfer.data.readers import read_blitzer

    texts, labels = [], []
    for name in ENGLISH:
        domain = read_blitzer(require_data("blitzer_reviews") / name)
        texts += domain.texts
        labels += list(domain.labels)
    english = pd.DataFrame({"review": texts, "label": labels}).drop_duplicates("review")
    paths["english"] = write(english, "english")
    return paths


# -- settings -----------------------------------------------------------------------------------


def table(path: Path, split: bool = False) -> dict[str, Any]:
    return {"path": str(path), "text": "review", "label": "label", "name": path.stem}


def settings(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Setting name -> {"group", "config"} (an experiment mapping without seeds)."""
    out: dict[str, dict[str, Any]] = {}
    held_out = {"test_fraction": 0.2, "split_seed": 0}
    for name in ("hotel", "waimai"):
        out[f"in-domain/{name}"] = {
            "group": "in-domain",
            "config": {
                "name": f"zh-in-{name}",
                "target": table(paths[name]),
                **held_out,
                "budgets": [16, 64, "all"],
                "recipes": ["scratch-tfidf", "frozen-e5", "frozen-use", "frozen-minilm"],
            },
        }
        out[f"fine-tune/{name}"] = {
            "group": "fine-tune",
            "config": {
                "name": f"zh-ft-{name}",
                "target": table(paths[name]),
                **held_out,
                "budgets": ["all"],
                "recipes": ["fine-tune-e5"],
            },
        }
    for source, target in (("hotel", "waimai"), ("waimai", "hotel")):
        out[f"cross-domain/{source}->{target}"] = {
            "group": "cross-domain",
            "target_only": f"in-domain/{target}",
            "config": {
                "name": f"zh-{source}-{target}",
                "source": table(paths[source]),
                "target": table(paths[target]),
                **held_out,
                "budgets": [0, 16, 64],
                "recipes": list(TRANSFER),
            },
        }
    for cat in CATEGORIES.values():
        target = {"target": table(paths[f"{cat}_pool"]), "target_test": table(paths[f"{cat}_test"])}
        out[f"cross-category/{cat}"] = {
            "group": "cross-category",
            "config": {
                "name": f"zh-cat-{cat}",
                "source": table(paths[f"not_{cat}"]),
                **target,
                "budgets": [0, 16, 64],
                "recipes": list(TRANSFER),
            },
        }
        out[f"cross-category/{cat}/target-only"] = {
            "group": "cross-category-target-only",
            "config": {
                "name": f"zh-cat-{cat}-only",
                **target,
                "budgets": [16, 64],
                "recipes": ["scratch-tfidf", "frozen-e5"],
            },
        }
    out["cross-lingual/english->waimai"] = {
        "group": "cross-lingual",
        "config": {
            "name": "zh-en-waimai",
            "source": table(paths["english"]),
            "target": table(paths["waimai"]),
            **held_out,
            "budgets": [0],
            "recipes": ["frozen-use", *TRANSFER],
        },
    }
    out["cross-lingual/english->shop"] = {
        "group": "cross-lingual",
        "config": {
            "name": "zh-en-shop",
            "source": table(paths["english"]),
            "target": table(paths["shop_pool"]),
            "target_test": table(paths["shop_test"]),
            "budgets": [0],
            "recipes": ["frozen-use", *TRANSFER],
        },
    }
    return out


ORDER = [  # cheapest and most asked-for first
    "in-domain/hotel",
    "in-domain/waimai",
    "cross-domain/hotel->waimai",
    "cross-domain/waimai->hotel",
    "cross-lingual/english->waimai",
    "cross-lingual/english->shop",
    *[f"cross-category/{c}{s}" for c in CATEGORIES.values() for s in ("/target-only", "")],
    "fine-tune/hotel",
    "fine-tune/waimai",
]


def missing(payload: dict[str, Any], setting: str, labels: list[str], seeds: list[int]) -> bool:
    records = payload["settings"].get(setting, {}).get("records", [])
    done = {(r["label"], r["seed"]) for r in records if r["status"] == "ok"}
    return any((label, seed) not in done for label in labels for seed in seeds)


def run(payload: dict[str, Any], name: str, spec: dict[str, Any], seeds: list[int]) -> None:
    config = dict(spec["config"])
    labels = config["recipes"]
    to_run = [label for label in labels if missing(payload, name, [label], seeds)]
    seeds = [seed for seed in seeds if missing(payload, name, to_run, [seed])]
    if not seeds:
        print(f"{name}: recorded, skipped", flush=True)
        return
    config["recipes"] = [RECIPES[label] for label in to_run]  # only the entries not recorded
    config["seeds"] = seeds  # only the seeds not recorded yet

    def show(record: dict[str, Any]) -> str:
        if record.get("status") != "ok":
            return str(record.get("status"))
        m = record["metrics"]
        return f"accuracy {100 * m['accuracy']:.1f}, {record['train_seconds']:.0f} s"

    run_setting(payload, name, config, shared_cores=True, show=show)
    payload["settings"][name]["group"] = spec["group"]
    payload["settings"][name]["recipes"] = {label: RECIPES[label] for label in labels}


# -- markdown -------------------------------------------------------------------------------------


def cell(records: list[dict[str, Any]], label: str, budget: Any, key: str = "accuracy") -> str:
    seeds = values(records, label, key, budget=budget)
    if key == "train_seconds":  # the median: the first seed also computes uncached features
        return f"{float(np.median(seeds)):.0f}" if seeds else "—"
    return pm(seeds, 100.0, 1)


def mean(records: list[dict[str, Any]], label: str, budget: Any) -> float | None:
    seeds = values(records, label, "accuracy", budget=budget)
    return 100 * float(np.mean(seeds)) if seeds else None


def rows_table(rows: list[tuple[str, list[dict[str, Any]], str, Any]]) -> list[str]:
    out = [
        "| setting | recipe | labels/class | accuracy % | macro-F1 % | train s | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, records, label, budget in rows:
        seeds = values(records, label, "accuracy", budget=budget)
        if not seeds:
            continue
        out.append(
            f"| {setting} | {label} | {budget} | {cell(records, label, budget)} | "
            f"{cell(records, label, budget, 'macro_f1')} | "
            f"{cell(records, label, budget, 'train_seconds')} | {len(seeds)} |"
        )
    return out


def records_of(payload: dict[str, Any], setting: str) -> list[dict[str, Any]]:
    return payload["settings"].get(setting, {}).get("records", [])


def verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not run"
    return f"{'met' if value >= goal else 'missed'} ({value:.1f})"


def markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = ["# Chinese reviews: in-domain, cross-domain, cross-category, cross-lingual", ""]
    lines += [
        "Generated by `benchmarks/chinese.py` from `results/chinese.json` (issue 16, part 3).",
        "Command: `nice -n 19 .venv/bin/python benchmarks/chinese.py` (resumable; `--markdown`",
        "rewrites this file). Machine: 2 CPU cores shared with another benchmark; every run at",
        "nice 19, so train seconds are upper bounds and vary with the other job's load. "
        + timing_sentence(payload),
        "",
        "Accuracy and macro-F1 in %, mean ± std over seeds (0, 1, 2 unless the seeds column says",
        "fewer); train s is the median over seeds (the first seed of a run also computes the",
        "frozen features that were not cached yet).",
        "Recipes and their settings were fixed before the runs (see the script's docstring):",
        "frozen-* = `frozen-features` with `solver: lbfgs` on e5 = `e5-small-multilingual-torch`,",
        "use = `use-multilingual`, minilm = `minilm-l6` (English); coral-e5 = `coral-closed-form`",
        "(lbfgs) on e5; frozen-e5-em = frozen-e5 with `label_shift: em`; scratch-tfidf with",
        "`tokenizer: auto` (jieba + character n-grams).",
        "Nothing was chosen on test data.",
        "",
    ]
    hotel, waimai = records_of(payload, "in-domain/hotel"), records_of(payload, "in-domain/waimai")
    fine_hotel = records_of(payload, "fine-tune/hotel")
    fine_waimai = records_of(payload, "fine-tune/waimai")
    lines += [
        "## 1. In-domain (20 % held out as test, split seed 0)",
        "",
        "hotel = ChnSentiCorp_htl_all (7,766 reviews before cleaning; 2,444 negative), waimai =",
        "waimai_10k (11,987). Published anchors on ChnSentiCorp: RBT3 92.8, ELECTRA-small 94.3,",
        "BERT-base 95.0 (Chinese-BERT-wwm / Chinese-ELECTRA READMEs) — on a different, balanced",
        "version of the hotel set with its own test split: a pointer, not a like-for-like match.",
        "",
    ]
    rows = []
    for setting, records, fine in (("hotel", hotel, fine_hotel), ("waimai", waimai, fine_waimai)):
        for budget in (16, 64, "all"):
            for label in ("scratch-tfidf", "frozen-e5", "frozen-use", "frozen-minilm"):
                rows.append((setting, records, label, budget))
        rows.append((setting, fine, "fine-tune-e5", "all"))
    lines += rows_table(rows) + [""]
    lines += [
        "fine-tune-e5 ran at all labels only, with the seeds the seeds column counts: one seed of",
        "hotel took about 40 min at nice 19 on the shared cores, so the third seed (and seeds 1-2",
        "of waimai) did not fit before the deadline. The goal below reads the best mean above.",
        "",
    ]
    best_hotel = [
        v
        for v in (
            mean(hotel, label, "all")
            for label in ("scratch-tfidf", "frozen-e5", "frozen-use", "frozen-minilm")
        )
        if v is not None
    ]
    fine = mean(fine_hotel, "fine-tune-e5", "all")
    best = max(best_hotel + ([fine] if fine is not None else []), default=None)
    goal_rows = [f"- Goal: {GOALS['in-domain']}: **{verdict(best, 92.8)}** (best recipe, mean)."]

    lines += ["## 2. Cross-domain (target: 20 % test split as in part 1; source: every review)", ""]
    lines += [
        "Transfer recipes train on the whole source plus the target labels (budget 0: source",
        "only; coral-e5 and frozen-e5-em also read the unlabelled target pool). Target-only rows",
        "are the cells of part 1 on the same split, seeds and draws. The two sets lean opposite",
        "ways: hotel is 69 % positive, waimai 33 % positive (data README), a label shift that a",
        "model trained on the source carries to the target. frozen-e5-em is frozen-e5 with",
        "`label_shift: em`: the target's class shares are estimated by EM on the unlabelled pool",
        "(Saerens et al. 2002) and the head's biases shifted to them (added after the first",
        "runs, as the answer to the label shift; the estimated shares are in each record's",
        "`fitted`). self-train-e5 adds balanced source classes and 3 rounds of self-training on",
        "the frozen features (half the unlabelled pool per round); those settings come from a",
        "prototype on hotel -> waimai whose random 20 % split overlapped this test set (rounds",
        "1-4 all gave 87 ± 0.5 there), so its hotel -> waimai rows are not a clean test; every",
        "other setting had nothing tuned on it.",
        "",
    ]
    rows = []
    gains = []
    for pair, target in (("hotel->waimai", waimai), ("waimai->hotel", hotel)):
        records = records_of(payload, f"cross-domain/{pair}")
        for budget in (0, 16, 64):
            for label in TRANSFER:
                rows.append((pair, records, label, budget))
            if budget:
                rows.append((f"{pair} target-only", target, "scratch-tfidf", budget))
                rows.append((f"{pair} target-only", target, "frozen-e5", budget))
        transfer = [mean(records, label, 16) for label in TRANSFER_ONLY]
        transfer = [v for v in transfer if v is not None]
        scratch = mean(target, "scratch-tfidf", 16)
        if transfer and scratch is not None:
            gains.append((pair, max(transfer) - scratch))
    lines += rows_table(rows) + [""]
    h2w = [
        mean(records_of(payload, "cross-domain/hotel->waimai"), label, 0) for label in TRANSFER_ONLY
    ]
    h2w = [v for v in h2w if v is not None]
    goal_rows.append(
        f"- Goal: {GOALS['hotel->waimai 0']}: **{verdict(max(h2w) if h2w else None, 85)}** "
        "(best transfer recipe)."
    )
    gain_text = ", ".join(f"{pair} {gain:+.1f} points" for pair, gain in gains) or "not run"
    met = gains and all(gain >= 10 for _, gain in gains)
    goal_rows.append(
        f"- Goal: {GOALS['16 labels']}: **{'met' if met else 'missed'}** ({gain_text})."
        if gains
        else f"- Goal: {GOALS['16 labels']}: not run."
    )

    lines += ["## 3. Cross-category (chinese_shopping_5cats)", ""]
    lines += [
        "Per category a pool of 1,000 and a test set of 1,000 reviews (seeded permutation, seed",
        "0); source = the pools of the other four categories (4,000 reviews).",
        "",
    ]
    rows = []
    for cat in CATEGORIES.values():
        records = records_of(payload, f"cross-category/{cat}")
        only = records_of(payload, f"cross-category/{cat}/target-only")
        for budget in (0, 16, 64):
            for label in TRANSFER:
                rows.append((f"others → {cat}", records, label, budget))
            if budget:
                for label in ("scratch-tfidf", "frozen-e5"):
                    rows.append((f"{cat} target-only", only, label, budget))
    lines += rows_table(rows) + [""]
    lines += [
        "Mean over the five categories (of each category's mean over seeds):",
        "",
        "| recipe | 0 | 16 | 64 |",
        "|---|---|---|---|",
    ]
    sides = [
        *[(f"transfer {label}", "", label) for label in TRANSFER],
        ("target-only scratch-tfidf", "/target-only", "scratch-tfidf"),
        ("target-only frozen-e5", "/target-only", "frozen-e5"),
    ]
    for title, suffix, label in sides:
        row = []
        for budget in (0, 16, 64):
            means = [
                mean(records_of(payload, f"cross-category/{cat}{suffix}"), label, budget)
                for cat in CATEGORIES.values()
            ]
            known = [v for v in means if v is not None]
            row.append(f"{np.mean(known):.1f}" if len(known) == len(means) else "—")
        lines.append(f"| {title} | {' | '.join(row)} |")
    lines.append("")

    gains_cat = []
    for cat in CATEGORIES.values():
        transfer = [
            mean(records_of(payload, f"cross-category/{cat}"), x, 16) for x in TRANSFER_ONLY
        ]
        scratch = mean(
            records_of(payload, f"cross-category/{cat}/target-only"), "scratch-tfidf", 16
        )
        if None not in transfer and scratch is not None:
            gains_cat.append(max(transfer) - scratch)
    if gains_cat:
        goal_rows.append(
            f"- For reference, cross-category at 16 labels per class: the best transfer recipe "
            f"beats target-only scratch-tfidf by {min(gains_cat):+.1f} to {max(gains_cat):+.1f} "
            f"points (mean {np.mean(gains_cat):+.1f}) over the {len(gains_cat)} categories."
        )

    lines += ["## 4. Cross-lingual: English Blitzer (kitchen + electronics) → Chinese", ""]
    lines += [
        "Source: the 4,000 labelled Blitzer kitchen and electronics reviews (`title. body`);",
        "0 Chinese labels. waimai: its 20 % test split (as part 1); five categories: the 5 × 1,000",
        "test reviews of part 3 (coral-e5 reads the 5,000 pool reviews unlabelled).",
        "",
    ]
    rows = []
    lingual = []
    for name in ("waimai", "shop"):
        records = records_of(payload, f"cross-lingual/english->{name}")
        for label in ("frozen-use", *TRANSFER):
            rows.append((f"English → {name}", records, label, 0))
            value = mean(records, label, 0)
            if value is not None:
                lingual.append((name, label, value))
    lines += rows_table(rows) + [""]
    if lingual:
        by_target = {}
        for name, label, value in lingual:
            if value > by_target.get(name, (None, -1))[1]:
                by_target[name] = (label, value)
        text = ", ".join(f"{n}: {lab} {v:.1f}" for n, (lab, v) in by_target.items())
        ok = all(v >= 80 for _, v in by_target.values())
        goal_rows.append(
            f"- Goal: {GOALS['cross-lingual']}: **{'met' if ok else 'missed'}** "
            f"(best per target: {text})."
        )
    else:
        goal_rows.append(f"- Goal: {GOALS['cross-lingual']}: not run.")

    lines += auto_section(payload)
    lines += ["## Goals", "", *goal_rows, ""]
    left = [name for name in ORDER if name not in s]
    if left:
        lines += ["## Left out", "", "Not run before the deadline: " + ", ".join(left) + ".", ""]
    notes = payload.get("notes", [])
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


AUTO_TASKS = [  # (setting, the target-only setting whose scratch-tfidf cells it competes with)
    ("cross-domain/hotel->waimai", "in-domain/waimai"),
    ("cross-domain/waimai->hotel", "in-domain/hotel"),
    *[
        (f"cross-category/{cat}", f"cross-category/{cat}/target-only")
        for cat in CATEGORIES.values()
    ],
    ("cross-lingual/english->waimai", None),
    ("cross-lingual/english->shop", None),
]


def auto_section(payload: dict[str, Any]) -> list[str]:
    """auto-e5 against the candidates it chooses from, per task (setting x budget)."""
    rows, regrets, costs = [], [], []
    for setting, target_only in AUTO_TASKS:
        records = records_of(payload, setting)
        scratch = records_of(payload, target_only) if target_only else []
        for budget in (0, 16, 64):
            auto = mean(records, "auto-e5", budget)
            if auto is None:
                continue
            means = {label: mean(records, label, budget) for label in TRANSFER_ONLY}
            if budget:
                means["scratch-tfidf"] = mean(scratch, "scratch-tfidf", budget)
            means = {label: value for label, value in means.items() if value is not None}
            best = max(means, key=lambda label: means[label])
            seconds = {
                label: float(
                    np.median(
                        values(
                            scratch if label == "scratch-tfidf" else records,
                            label,
                            "train_seconds",
                            budget=budget,
                        )
                    )
                )
                for label in means
            }
            auto_seconds = float(
                np.median(values(records, "auto-e5", "train_seconds", budget=budget))
            )
            share = auto_seconds / sum(seconds.values())
            picks: dict[str, int] = {}
            for record in records:
                if record["label"] == "auto-e5" and str(record["budget"]) == str(budget):
                    picked = record.get("fitted", {}).get("picked", "?")
                    picks[picked] = picks.get(picked, 0) + 1
            regret = means[best] - auto
            regrets.append(regret)
            costs.append(share)
            pick_text = ", ".join(f"{label} ×{n}" for label, n in sorted(picks.items()))
            rows.append(
                f"| {setting} | {budget} | {auto:.1f} | {best} {means[best]:.1f} | "
                f"{regret:+.1f} | {pick_text} | {100 * share:.0f} % |"
            )
    if not rows:
        return []
    within = sum(regret <= 1.0 for regret in regrets)
    return [
        "## 5. auto-e5: the pick against the best of its candidates",
        "",
        "`auto` with its default candidates on e5 (scratch-tfidf, frozen-e5, coral-e5,",
        "frozen-e5-em, self-train-e5 — the rows above): with target labels it scores every",
        "candidate by 3-fold cross-validation on them, trained on at most 1,000 source reviews",
        "plus the other folds; at 0 labels it scores the candidates by information",
        "maximisation on at most 1,000 unlabelled target reviews. Then it trains",
        "the pick on everything. best = the candidate with the highest mean test accuracy in",
        "the tables above (known only after the fact); regret = best − auto. cost = auto's",
        "median train seconds over the sum of the candidates' (shared cores: a rough ratio).",
        "",
        "| setting | labels/class | auto % | best candidate % | regret | picks (seeds) | cost |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"auto is within 1 point of the best candidate on {within} of {len(regrets)} tasks "
        f"({100 * within / len(regrets):.0f} %); its cost is {100 * np.median(costs):.0f} % "
        "(median) of training every candidate once.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=ORDER, help="settings to run")
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS)
    parser.add_argument("--fine-tune-seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md only")
    parser.add_argument("--fresh", action="store_true", help="start a new results file")
    args = parser.parse_args()
    if args.markdown:
        payload = load_json(RESULTS / "chinese.json")
        save("chinese", payload, markdown(payload))
        return
    started = time.perf_counter()
    payload = open_results("chinese", "chinese", args.fresh)
    specs = settings(tables())
    unknown = [name for name in args.only if name not in specs]
    if unknown:
        sys.exit(f"unknown settings {unknown}; known: {list(specs)}")
    for name in [n for n in ORDER if n in args.only]:
        seeds = args.fine_tune_seeds if name.startswith("fine-tune") else args.seeds
        run(payload, name, specs[name], seeds)
        if name in payload["settings"]:  # another invocation may have saved meanwhile: merge
            on_disk = open_results("chinese", "chinese", False)
            on_disk["settings"][name] = payload["settings"][name]
            payload = on_disk
            save("chinese", payload, markdown(payload))
    payload = open_results("chinese", "chinese", False)
    add_invocation(payload, sys.argv[1:], started, shared_cores=True)
    save("chinese", payload, markdown(payload))


if __name__ == "__main__":
    main()
