"""Cross-domain recommendation: MovieLens-100K (videos) -> Amazon Scientific (products).

    .venv/bin/python benchmarks/scientific.py --fresh         # a new table (then: resumes)
    .venv/bin/python benchmarks/scientific.py --redo sasrec   # reruns these models
    .venv/bin/python benchmarks/scientific.py --only sasrec text-seq   # just these models
    .venv/bin/python benchmarks/scientific.py --only text-seq-ids --seeds 0 \\
        --out rerun_scientific                                # some cells, into another file
    .venv/bin/python benchmarks/scientific.py --part budgets --budgets 0.05 0.1   # user budgets
    .venv/bin/python benchmarks/scientific.py --part sources  # MovieLens, Tools, both (10 %)
    .venv/bin/python benchmarks/scientific.py --absorb scientific_budgets   # add another file's
    .venv/bin/python benchmarks/scientific.py --speed         # the RecBole speed comparison
    .venv/bin/python benchmarks/scientific.py --markdown      # rewrites the .md from the JSON
    .venv/bin/python benchmarks/scientific.py --experiment NAME --model text-seq \\
        --set batch_size=256 ...                 # a development run: seed 0, validation only

The benchmark is an experiment definition run by the library's runner
(``shoptransfer.api.compare``: a ``task: recommendation`` config built in
:func:`experiment_config`; every model in MODELS is a recipe entry, labelled by its name).
The runner's stage cache lets the text models share the MovieLens pre-training within a run,
each charged its full time. The target is read as the pre-split RecBole files; the library
names the files after the folder, so the script reads them through a link named
``Scientific`` in benchmarks/runs/data/.

Development experiments see the valid split only (never test) and are logged in
results/scientific_experiments.json; the settings in MODELS were chosen from them. They, and the
speed comparison with RecBole, are script-side (they time or log what the runner does not
record: one epoch, the validation curve), in their own sections below.

Target: Amazon "Industrial and Scientific" as processed for UniSRec (Hou et al., KDD 2022),
its own train / valid / test files, all 4,385 items ranked for each of the 8,442 test users,
history items removed. Source (transfer recipes only): MovieLens-100K, leave-one-out by time,
item text = title, genres, year. Epochs are chosen by validation NDCG@10 (early stopping on the
valid file); test numbers are reported once per configuration, mean and std over seeds.
The best transfer recipe is the one with the best validation NDCG@10. The text models use
hidden size 128 (valid Recall@10 0.1498 against 0.1434 at 64, development run ids-hidden128);
the 3-seed test run at 64 is kept as "text-seq-ids-hidden64".

User budgets (``--part budgets``): each model trains on a seeded share of the target's users
(the same users for every model at a seed; ``InteractionDomain.with_training_users``), every
user's validation and test case is ranked; 100 % is the family table. Every cell also records
its cold-start cases (test items no training history of the budget holds) and their metrics.
Several sources (``--part sources``): the transfer models pre-trained on MovieLens-100K, on
Amazon Tools (../shared/data/recsys/amazon_tools), and on both mixed into one source domain,
at 5 % of the target's users; each run records the gap between the source's and the target's
item texts (proxy A-distance, MMD).

Speed against RecBole 1.2.1 (``--speed``): the script builds a separate virtual environment
(benchmarks/.peers/recbole, never a dependency of shoptransfer), trains RecBole's SASRec on the
same atomic files with the same hyper-parameters (../shared/peers/recbole_sasrec_scientific.yaml)
and times one training epoch and one full-ranking evaluation of the validation users, then
times ours the same way in the same run.
Writes benchmarks/results/scientific.json and .md (``--out`` names other files).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    RESULTS,
    ROOT,
    RUNS,
    add_invocation,
    add_run,
    forget,
    is_current,
    load_json,
    mean_std,
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
SASREC = {  # the hyper-parameters of ../shared/peers/recbole_sasrec_scientific.yaml
    "hidden": 64,
    "inner": 256,
    "layers": 2,
    "heads": 2,
    "dropout": 0.5,
    "batch_size": 2048,
    "learning_rate": 1e-3,
    "max_history": 50,
}
SPEED_EVALUATIONS = 5  # full-ranking passes timed per library (the fastest counts)
NEURAL = {"batch_size": 256, "epochs": 100, "patience": 5}  # development: sasrec-b256
PRETRAIN = {"source_prefixes": 20, "source_epochs": 10}  # latest 20 prefixes per MovieLens user
TEXT = {"hidden": 128}  # development: ids-hidden128
# label -> recipe entry ("name": the recipe)
MODELS: dict[str, dict[str, Any]] = {
    "popularity": {"name": "popularity"},
    "item-knn": {"name": "item-knn"},
    "bpr": {"name": "bpr", "epochs": 100, "patience": 5, "learning_rate": 0.01},
    "sasrec": {"name": "sasrec", **SASREC, **NEURAL},
    "text-seq-ids-hidden64": {"name": "text-seq-ids", **NEURAL, **PRETRAIN, "hidden": 64},
    "text-seq-ids": {"name": "text-seq-ids", **NEURAL, **PRETRAIN, **TEXT},
    "text-seq": {"name": "text-seq", **NEURAL, **PRETRAIN, **TEXT},
    "text-seq-adaptor": {"name": "text-seq-adaptor", **NEURAL, **PRETRAIN, **TEXT},
    "text-seq-scratch": {"name": "text-seq-scratch", **NEURAL, **TEXT},
    "text-seq-ids-scratch": {"name": "text-seq-ids", **NEURAL, **TEXT, "pretrain": False},
}
SETTING = "movielens-100k->scientific"
BUDGET_SETTING = "movielens-100k->scientific, user budgets"
SOURCES_SETTING = "sources->scientific, user budgets"
BUDGETS = [0.05, 0.1, 0.25, 0.5]  # shares of the target's users; 1.0 is SETTING
SOURCE_BUDGETS = [0.05]
PARTS = {"family": SETTING, "budgets": BUDGET_SETTING, "sources": SOURCES_SETTING}
# no source stage (what transfer must beat), and the id-only models (no item text)
SCRATCH = ["popularity", "item-knn", "bpr", "sasrec", "text-seq-scratch", "text-seq-ids-scratch"]
ID_BASED = ["popularity", "item-knn", "bpr", "sasrec"]
WITHOUT_SOURCE = {"text-seq": "text-seq-scratch", "text-seq-ids": "text-seq-ids-scratch"}
# pre-trainings of --part sources (MovieLens alone: the budgets table's cells, the same runs)
SOURCES = ["tools", "movielens-100k + tools"]
SOURCE_MODELS = ["text-seq"]
SOURCE_MARK = ",source="  # a sources-table label: MODEL,source=SOURCE (a + b: both mixed)
KS = [5, 10, 20, 50]
METRICS = ["recall@10", "ndcg@10", "recall@50", "ndcg@50", "hr@10", "mrr@10", "precision@10"]
PUBLISHED = {
    "UniSRec (BERT-base, pre-trained on 5 Amazon categories)": {
        "recall@10": 0.1188,
        "ndcg@10": 0.0641,
    },
    "VQ-Rec": {"recall@10": 0.1211, "ndcg@10": 0.0643, "recall@50": 0.2369, "ndcg@50": 0.0897},
}
GOAL = {"recall@10": 0.125, "ndcg@10": 0.067}


def target_folder(dataset: str = "Scientific", shared: str = "recsys/amazon_scientific") -> str:
    """The pre-split files, through a link whose name is the dataset's (the files' prefix)."""
    link = RUNS / "data" / dataset
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(require_data(shared).resolve())
    return str(link)


def source_domains(name: str) -> list[dict[str, Any]]:
    """The source entries of a pre-training: MovieLens-100K, Amazon Tools, or both mixed."""
    entries = {
        "movielens-100k": lambda: {
            "path": str(require_data("recsys/movielens_100k") / "ml-100k.inter"),
            "items": str(require_data("recsys/movielens_100k") / "ml-100k.item"),
            "item_text": ["movie_title", "class", "release_year"],
            "name": "movielens-100k",
        },
        "tools": lambda: {
            "path": target_folder("Tools", "recsys/amazon_tools"),
            "format": "recbole-split",
            "name": "tools",
        },
    }
    return [entries[part]() for part in name.split(" + ")]


def experiment_config(
    labels: list[str],
    seeds: list[int],
    budgets: list[Any] | None = None,
    source: str = "movielens-100k",
    suffix: str = "",
) -> dict[str, Any]:
    """The experiment of ``labels`` (each entry labelled with ``suffix`` appended)."""
    sources = source_domains(source)
    return {
        "task": "recommendation",
        "name": "scientific",
        "source": sources[0] if len(sources) == 1 else sources,
        "target": {"path": target_folder(), "format": "recbole-split", "name": "Scientific"},
        "budgets": budgets or ["all"],
        "ks": KS,
        "seeds": seeds,
        "recipes": [{"label": f"{label}{suffix}", **MODELS[label]} for label in labels],
    }


def domains() -> tuple[Any, Any]:
    """Source and target as the experiment reads them (for the script-side sections)."""
    from shoptransfer.config import parse_config
    from shoptransfer.data.interactions import read_interaction_domain

    config = parse_config(experiment_config(["popularity"], [0]), "scientific")
    return read_interaction_domain(config.source), read_interaction_domain(config.target)


def ranking_text(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return record.get("reason", record["status"])
    return (
        f"test ndcg@10 {record['metrics']['ndcg@10']:.4f}, valid ndcg@10 "
        f"{record['validation_metrics']['ndcg@10']:.4f}, {record['train_seconds']:.0f} s"
    )


def run_models(payload: dict[str, Any], args: argparse.Namespace) -> None:
    setting = PARTS[args.part]
    budgets = {"family": ["all"], "budgets": args.budgets, "sources": args.budgets}[args.part]
    if args.part == "sources" and args.budgets == BUDGETS:
        budgets = SOURCE_BUDGETS
    runs = (
        [(source, f"{SOURCE_MARK}{source.replace(' + ', '+')}") for source in SOURCES]
        if args.part == "sources"
        else [("movielens-100k", "")]
    )
    default = SOURCE_MODELS if args.part == "sources" else list(MODELS)
    for source, suffix in runs:
        # the budgets each (label, seed) still lacks; one run per set of missing budgets, so a
        # recorded cell is not trained again (one run shares the source's pre-training)
        groups: dict[tuple[Any, ...], tuple[set[str], set[int]]] = {}
        for label in args.only or default:
            lacking = False
            for s in args.seeds:
                left = tuple(
                    b for b in budgets if not recorded(payload, setting, label + suffix, s, b)
                )
                if left:
                    lacking = True
                    labels, seeds = groups.setdefault(left, (set(), set()))
                    labels.add(label)
                    seeds.add(s)
            if not lacking:
                print(f"{label}{suffix}: recorded before, skipped")
        for left, (labels, seeds) in groups.items():
            run_setting(
                payload,
                setting,
                experiment_config(
                    [label for label in args.only or default if label in labels],
                    sorted(seeds),
                    list(left),
                    source,
                    suffix,
                ),
                compare=True,
                shared_cores=args.shared_cores,
                show=ranking_text,
            )
            _finish(payload, args.out)


def recover(payload: dict[str, Any], run_dir: Path, shared_cores: bool) -> None:
    """Add the finished cells of a run folder of this script whose invocation stopped before
    recording them (killed, or another invocation saved the same file last)."""
    results = load_json(run_dir / "results.json")
    if not results or results.get("name") != "scientific":
        sys.exit(
            f"{run_dir}: not a run folder of this benchmark (no results.json named scientific)"
        )
    records = results["results"]
    config = results["config"]
    labels = [entry.get("label") or entry["name"] for entry in config["recipes"]]
    setting = (
        SOURCES_SETTING
        if any(SOURCE_MARK in label for label in labels)
        else SETTING
        if [str(b) for b in config["budgets"]] == ["all"]
        else BUDGET_SETTING
    )
    cell = payload["settings"].get(setting, {"runs": []})
    if any(run["run_dir"] == str(run_dir.relative_to(ROOT)) for run in cell["runs"]):
        print(f"{run_dir.name}: recorded before, skipped")
        return
    add_run(payload, setting, run_dir, None, compare=True, shared_cores=shared_cores)
    print(f"{run_dir.name}: {len(records)} cells added to '{setting}'")


def absorb(payload: dict[str, Any], other: dict[str, Any]) -> None:
    """Add the records and runs of another results file of this script (kept: a record of the
    same setting, entry, budget and seed already in ``payload``)."""
    from shoptransfer.evaluation.compare import analyse

    for setting, theirs in other["settings"].items():
        cell = payload["settings"].setdefault(setting, {"records": [], "runs": []})
        have = {(r["label"], str(r["budget"]), r["seed"]) for r in cell["records"]}
        index = {run["run_dir"]: n for n, run in enumerate(cell["runs"])}
        moved = {}
        for n, run in enumerate(theirs["runs"]):  # a run absorbed before is not added twice
            if run["run_dir"] not in index:
                index[run["run_dir"]] = len(cell["runs"])
                cell["runs"].append(run)
            moved[n] = index[run["run_dir"]]
        cell["records"] += [
            {**r, "run": moved[r["run"]]}
            for r in theirs["records"]
            if (r["label"], str(r["budget"]), r["seed"]) not in have
        ]
        cell["primary_metric"] = theirs["primary_metric"]
        cell["higher_is_better"] = theirs["higher_is_better"]
        cell["comparison"] = analyse(cell["records"], cell["primary_metric"], True)
    payload["invocations"] += [i for i in other["invocations"] if i not in payload["invocations"]]
    if "speed_vs_recbole" in other:
        payload["speed_vs_recbole"] = other["speed_vs_recbole"]


# -- results, from the results file ------------------------------------------------------------


def best_transfer(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The transfer model (run with every seed) with the best mean validation NDCG@10."""
    records = payload["settings"].get(SETTING, {}).get("records", [])
    seeds = payload.get("seeds", SEEDS)
    transfer = {
        label
        for label in MODELS
        if label not in SCRATCH
        and any(r["label"] == label and r.get("family") != "baseline" for r in records)
        and len(values(records, label, "ndcg@10")) == len(seeds)
    }
    if not transfer:
        return None
    best = max(transfer, key=lambda label: np.mean(values(records, label, "validation:ndcg@10")))
    return {
        "recipe": best,
        "recall@10": float(np.mean(values(records, best, "recall@10"))),
        "ndcg@10": float(np.mean(values(records, best, "ndcg@10"))),
        "options": MODELS[best],
        "chosen_by": "validation NDCG@10",
    }


def _finish(payload: dict[str, Any], out: str) -> None:
    payload.update(
        protocol=__doc__.split("Target: ")[1].split("\n\n")[0],
        published=PUBLISHED,
        goal=GOAL,
        best=best_transfer(payload) if is_current(payload) else payload.get("best"),
    )
    save(out, payload, markdown(payload))


def markdown(payload: dict[str, Any]) -> str:
    if not is_current(payload):
        sys.exit("this results file was written by the earlier runner; its .md is in git")
    seeds = payload.get("seeds", SEEDS)
    lines = [
        "# Cross-domain recommendation: MovieLens-100K → Amazon Scientific\n",
        "Command: `.venv/bin/python benchmarks/scientific.py` (protocol, and the run it makes "
        "on the library's runner, in the script's docstring). Test metrics, full ranking of "
        f"4,385 items, mean ± std (sample std, n − 1) over seeds {seeds} (fewer where marked). "
        "Train seconds include a reused pre-training in full. Data: Harper & Konstan 2015 "
        "(MovieLens); Ni, Li & McAuley 2019 (Amazon), processed as in Hou et al. 2022.\n",
        "| model | family | source stage | Recall@10 | NDCG@10 | Recall@50 | NDCG@50 | train s "
        "| eval s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, published in PUBLISHED.items():
        cells = [f"{published[m]:.4f}" if m in published else "—" for m in METRICS[:4]]
        lines.append(f"| {name} (published) | — | — | " + " | ".join(cells) + " | — | — |")
    records = payload["settings"].get(SETTING, {}).get("records", [])
    for label in MODELS:
        done = [r for r in records if r["label"] == label and r["status"] == "ok"]
        if not done:
            continue
        cells = [pm(values(records, label, m), digits=4) for m in METRICS[:4]]
        train = np.mean(values(records, label, "train_seconds"))
        evaluation = np.mean(values(records, label, "eval_seconds"))
        marked = (
            f" ({len(done)} seed{'s' if len(done) > 1 else ''})" if len(done) < len(seeds) else ""
        )
        lines.append(
            f"| **{label}**{marked} | {done[0]['family']} | "
            f"{'no' if label in SCRATCH else 'MovieLens'} | "
            + " | ".join(cells)
            + f" | {train:.0f} | {evaluation:.1f} |"
        )
    best = payload.get("best")
    if best:
        lines.append(
            f"\nBest transfer recipe by validation NDCG@10: `{best['recipe']}` — Recall@10 "
            f"{best['recall@10']:.4f}, NDCG@10 {best['ndcg@10']:.4f} (goal ≥ {GOAL['recall@10']} "
            f"and ≥ {GOAL['ndcg@10']})."
        )
    speed = payload.get("speed_vs_recbole")
    if speed:
        lines.append(
            "\nSpeed, SASRec with the same hyper-parameters, same run (the fastest of "
            f"{len(speed['ours']['epoch_seconds'])} training epochs and of "
            f"{len(speed['ours']['eval_seconds'])} evaluations each; script-side, not the "
            "runner): "
            f"training epoch RecBole {min(speed['recbole']['epoch_seconds']):.1f} s vs ours "
            f"{min(speed['ours']['epoch_seconds']):.1f} s ({speed['epoch_ratio']}×); "
            f"full-ranking evaluation of the validation users RecBole "
            f"{min(speed['recbole']['eval_seconds']):.1f} s vs ours "
            f"{min(speed['ours']['eval_seconds']):.1f} s ({speed['eval_ratio']}×)"
            + (
                f"; ours passes each step's {SASREC['batch_size']:,} examples through the model "
                f"{speed['ours']['micro_batch_size']} at a time (the same step, bounded memory)"
                if speed["ours"].get("micro_batch_size")
                else ""
            )
            + (
                f"; peak memory of the process RecBole {speed['recbole']['peak_rss_mb']:,.0f} MB "
                f"vs ours {speed['ours']['peak_rss_mb']:,.0f} MB."
                if "peak_rss_mb" in speed["ours"]
                else "."
            )
        )
    lines += source_contribution(records)
    lines += budget_tables(payload)
    lines += sources_table(payload)
    timing = timing_sentence(payload)
    if timing:
        lines.append(f"\n{timing}")
    recovered = [
        run["run_dir"]
        for cell in payload["settings"].values()
        for run in cell["runs"]
        if run.get("wall_seconds") is None
    ]
    if recovered:
        lines.append(
            f"\nCells of {len(recovered)} run folder(s) were added with `--recover` (their "
            "invocation stopped, or another saved the file last): their train seconds are in "
            "the JSON; their wall clock is not in the sentence above."
        )
    return "\n".join(lines) + "\n"


def by_seed(
    records: list[dict[str, Any]],
    label: str,
    budget: Any,
    key: str = "ndcg@10",
    part: str = "",
) -> dict[int, float]:
    """``key`` of ``label`` at ``budget`` by seed: test metrics, ``validation`` ones, or
    those of the ``cold_start`` cases."""
    out = {}
    for r in records:
        if r["label"] != label or r["status"] != "ok" or str(r["budget"]) != str(budget):
            continue
        metrics = {
            "": r["metrics"],
            "validation": r["validation_metrics"],
            "cold_start": r.get("cold_start", {}).get("metrics", {}),
        }[part]
        if key in metrics:
            out[r["seed"]] = float(metrics[key])
    return out


def cell_values(
    records: list[dict[str, Any]], label: str, budget: Any, key: str = "ndcg@10", part: str = ""
) -> list[float]:
    """:func:`by_seed`'s values, in seed order."""
    found = by_seed(records, label, budget, key, part)
    return [found[seed] for seed in sorted(found)]


def _budget_records(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Records of every budget (the family's at 100 % as budget "all") and the budgets run."""
    records = [
        r
        for setting in (BUDGET_SETTING, SETTING)
        for r in payload["settings"].get(setting, {}).get("records", [])
    ]
    budgets = sorted({r["budget"] for r in records if r["budget"] != "all"}) + ["all"]
    return records, budgets


def _share(budget: Any) -> str:
    return "100 %" if budget == "all" else f"{float(budget) * 100:g} %"


def _beyond(a: list[float], b: list[float]) -> bool:
    """Whether ``a`` lies above ``b`` beyond their spread (mean - std above mean + std)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return ma - sa > mb + sb


def source_contribution(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for with_source, without in WITHOUT_SOURCE.items():
        a = values(records, with_source, "ndcg@10")
        b = values(records, without, "ndcg@10")
        if not a or not b:
            continue
        (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
        line = (
            f"- `{with_source}` − `{without}` (the MovieLens source stage alone, 100 % of users): "
            f"NDCG@10 {ma - mb:+.4f} ({ma:.4f} vs {mb:.4f}; seed std {sa:.4f} / {sb:.4f}; "
            f"{len(a)} / {len(b)} seeds)"
        )
        first, second = by_seed(records, with_source, "all"), by_seed(records, without, "all")
        common = sorted(set(first) & set(second))
        if common and len(common) < max(len(first), len(second)):
            paired = [first[seed] - second[seed] for seed in common]
            line += (
                f"; on the seeds both ran ({', '.join(map(str, common))}), seed by seed: "
                f"{float(np.mean(paired)):+.4f} ({', '.join(f'{d:+.4f}' for d in paired)})"
            )
        lines.append(line)
    if lines:
        lines.insert(
            0,
            "\n**What the source stage adds at 100 % of the users** (same model and "
            "settings with and without pre-training on MovieLens):\n",
        )
    return lines


def budget_tables(payload: dict[str, Any]) -> list[str]:
    records, budgets = _budget_records(payload)
    if not payload["settings"].get(BUDGET_SETTING):
        return []
    labels = [label for label in MODELS if any(r["label"] == label for r in records)]
    head = " | ".join(_share(b) for b in budgets)
    lines = [
        "\n## Where transfer should pay: scarce target users\n",
        "Command: `.venv/bin/python benchmarks/scientific.py --part budgets` (100 %: the table "
        "above). Each budget trains on a seeded share of the target's users (the same users for "
        "every model at a seed); every user's validation and test case is ranked. Test NDCG@10, "
        "mean ± std over seeds.\n",
        f"| model | source stage | {head} |",
        "|---|---|" + "---|" * len(budgets),
    ]
    for label in labels:
        cells = [pm(cell_values(records, label, b), digits=4) for b in budgets]
        stage = "no" if label in SCRATCH else "MovieLens"
        lines.append(f"| {label} | {stage} | " + " | ".join(cells) + " |")
    lines += [
        "\nBest transfer recipe against the best model without a source stage at each budget, "
        "each picked by mean validation NDCG@10 over the seeds it ran, compared on the seeds "
        "both ran; "
        "\"beyond spread\": transfer's mean − std above scratch's mean + std.\n",
        "| users | best without source | NDCG@10 | best transfer | NDCG@10 | relative | "
        "beyond spread | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for budget in budgets:

        def best(group: list[str], budget: Any = budget) -> str | None:
            """By mean validation NDCG@10 on the seeds every run member of ``group`` has."""
            valid = {
                label: found
                for label in group
                if (found := by_seed(records, label, budget, part="validation"))
            }
            common = set.intersection(*(set(v) for v in valid.values())) if valid else set()
            score = {
                label: np.mean([v[s] for s in common] if common else list(v.values()))
                for label, v in valid.items()
            }
            return max(score, key=score.get) if score else None

        scratch = best([label for label in labels if label in SCRATCH])
        transfer = best([label for label in labels if label not in SCRATCH])
        if scratch is None or transfer is None:
            continue
        # compared on the seeds both have (the same users at a seed)
        mine, theirs = by_seed(records, transfer, budget), by_seed(records, scratch, budget)
        common = sorted(set(mine) & set(theirs))
        if not common:
            continue
        a, b = [mine[s] for s in common], [theirs[s] for s in common]
        relative = np.mean(a) / np.mean(b) - 1
        beyond = ("yes" if _beyond(a, b) else "no") if len(common) > 1 else "— (1 seed)"
        lines.append(
            f"| {_share(budget)} | {scratch} | {pm(b, digits=4)} | {transfer} | {pm(a, digits=4)}"
            f" | {relative * 100:+.1f} % | {beyond} | {len(common)} |"
        )
    lines += cold_start_table(records, labels, budgets)
    return lines


def cold_start_table(
    records: list[dict[str, Any]], labels: list[str], budgets: list[Any]
) -> list[str]:
    cases = {  # the budget's users differ per seed, and so do its cold-start cases
        b: sorted(
            {
                r["cold_start"]["cases"]
                for r in records
                if str(r["budget"]) == str(b) and "cold_start" in r
            }
        )
        for b in budgets
    }
    budgets = [b for b in budgets if cases[b] and cases[b][-1]]
    if not budgets:
        return []
    lines = [
        "\n## Cold-start items\n",
        "Test cases whose item occurs in no training history of the budget's users (an id model "
        "has learned nothing about it). Recall@10 on those cases, mean ± std over seeds; "
        "NDCG@10 in the JSON.\n",
        "| model | " + " | ".join(f"{_share(b)} ({_span(cases[b])} cases)" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for label in labels:
        cells = [
            pm(cell_values(records, label, b, "recall@10", "cold_start"), digits=4) for b in budgets
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ratios = []
    for b in budgets:

        def mean_of(label: str, b: Any = b) -> float:
            found = cell_values(records, label, b, "recall@10", "cold_start")
            return float(np.mean(found)) if found else float("nan")

        ids = [(mean_of(label), label) for label in labels if label in ID_BASED]
        texts = [(mean_of(label), label) for label in labels if label not in ID_BASED]
        ids, texts = [x for x in ids if x[0] == x[0]], [x for x in texts if x[0] == x[0]]
        if ids and texts:
            (best_id, id_label), (best_text, text_label) = max(ids), max(texts)
            ratio = "∞" if best_id == 0 else f"{best_text / best_id:.1f}×"
            ratios.append(
                f"{_share(b)}: {text_label} {best_text:.4f} vs {id_label} {best_id:.4f} ({ratio})"
            )
    if ratios:
        lines.append("\nBest text model against the best id model: " + "; ".join(ratios) + ".")
    return lines


def _span(counts: list[int]) -> str:
    """``counts`` as one number, or their range over the seeds."""
    return f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"


def sources_table(payload: dict[str, Any]) -> list[str]:
    cell = payload["settings"].get(SOURCES_SETTING)
    if not cell:
        return []
    records, _ = _budget_records(payload)
    records = records + cell["records"]
    budgets = sorted({r["budget"] for r in cell["records"]}, key=str)
    gaps = {}
    for run in cell["runs"]:
        for label in run["labels"]:
            gaps[label.split(SOURCE_MARK)[1]] = run.get("domain_gap")
    lines = [
        "\n## Several sources\n",
        "Command: `.venv/bin/python benchmarks/scientific.py --part sources`. Pre-training on "
        "MovieLens-100K, on Amazon Tools (`../shared/data/recsys/amazon_tools/`, 10,962 users, "
        "5,820 items), and on both mixed (one source domain, the histories of both, each "
        "history within its own catalogue, as UniSRec pre-trains on several categories). "
        "Test NDCG@10, mean ± std over seeds; the gap is between each source's item texts and "
        "Scientific's on the frozen text backbone (proxy A-distance: 0 = indistinguishable, "
        "2 = separable).\n",
        "| model | source | users | NDCG@10 | Recall@10 | seeds | without source (same seeds) "
        "| A-distance | MMD |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    # MovieLens alone: the budgets table's cells of the same models (the same runs)
    movielens = [(model, "movielens-100k", model) for model in SOURCE_MODELS]
    others = sorted({tuple(r["label"].split(SOURCE_MARK)) for r in cell["records"]})
    budget_runs = payload["settings"].get(BUDGET_SETTING, {}).get("runs", [])
    measured = [run["domain_gap"] for run in budget_runs if run.get("domain_gap")]
    gaps.setdefault("movielens-100k", measured[0] if measured else None)
    for model, source, label in movielens + [(m, s, f"{m}{SOURCE_MARK}{s}") for m, s in others]:
        for budget in budgets:
            scratch = WITHOUT_SOURCE.get(model)
            mine = by_seed(records, label, budget)
            theirs = by_seed(records, scratch, budget) if scratch else {}
            base = [theirs[seed] for seed in sorted(set(mine) & set(theirs))]
            gap = gaps.get(source) or {}
            lines.append(
                f"| {model} | {source} | {_share(budget)} | "
                f"{pm(cell_values(records, label, budget), digits=4)} | "
                f"{pm(cell_values(records, label, budget, 'recall@10'), digits=4)} | "
                f"{', '.join(str(seed) for seed in sorted(mine))} | {pm(base, digits=4)} | "
                f"{gap.get('proxy_a_distance', float('nan')):.2f} | "
                f"{gap.get('mmd', float('nan')):.4f} |"
            )
    return lines


# -- development experiments (script-side: validation curve, seed 0) ---------------------------


def development_experiment(args: argparse.Namespace, source: Any, target: Any) -> None:
    """Seed 0 of one model with changed options; validation metrics only, logged."""
    from shoptransfer.backbones.cache import EmbeddingCache
    from shoptransfer.catalogue import make_recipe
    from shoptransfer.evaluation.ranking import evaluate_ranking
    from shoptransfer.files import atomic_write_json
    from shoptransfer.recipes import FitData

    options = {k: v for k, v in MODELS[args.model].items() if k != "name"}
    for item in args.set:
        key, _, text = item.partition("=")
        options[key] = json.loads(text) if text not in ("", "true", "false") else text == "true"
    recipe = make_recipe(MODELS[args.model]["name"], seed=0, **options)
    started = time.perf_counter()
    ranker = recipe.fit(FitData(source, target, cache=EmbeddingCache()))
    seconds = time.perf_counter() - started
    valid = evaluate_ranking(ranker.scores, target.valid)
    history = getattr(recipe, "history_", [])
    entry = {
        "name": args.experiment,
        "model": args.model,
        "options": options,
        "valid": {key: round(valid[key], 4) for key in METRICS},
        "epochs": len(history),
        "curve": [round(r.get("validation_score", float("nan")), 4) for r in history],
        "train_seconds": round(seconds, 1),
    }
    log_path = RESULTS / "scientific_experiments.json"
    log = load_json(log_path) or {"experiments": []}
    log["experiments"].append(entry)
    atomic_write_json(log_path, log)
    print(json.dumps(entry))


# -- speed against RecBole (script-side: one epoch and one evaluation, timed) -------------------

PEER = ROOT / "benchmarks" / ".peers" / "recbole"
PEER_SCRIPT = r"""
import json, sys, time
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed

EVALUATIONS = int(sys.argv[4])

config = Config(model="SASRec", dataset="Scientific", config_file_list=[sys.argv[1]],
                config_dict={"data_path": sys.argv[2], "checkpoint_dir": sys.argv[3]})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train, valid, test = data_preparation(config, dataset)
model = SASRec(config, train.dataset).to(config["device"])
trainer = Trainer(config, model)
epochs, evals = [], []
for epoch in range(2):
    started = time.perf_counter()
    trainer._train_epoch(train, epoch, show_progress=False)
    epochs.append(time.perf_counter() - started)
for _ in range(EVALUATIONS):
    started = time.perf_counter()
    result = trainer.evaluate(valid, load_best_model=False, show_progress=False)
    evals.append(time.perf_counter() - started)
import resource
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"epoch_seconds": epochs, "eval_seconds": evals,
                              "valid": {k: float(v) for k, v in result.items()},
                              "peak_rss_mb": peak_mb}))
"""


def recbole_speed() -> dict[str, Any]:
    """One RecBole SASRec training epoch and validation pass, timed (twice; the second counts)."""
    python = PEER / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER)], check=True)
        pip = [str(PEER / "bin" / "pip"), "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, "recbole==1.2.1"], check=True)
        subprocess.run([*pip, "numpy<2", "pandas<3"], check=True)
    data_root = PEER / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    link = data_root / "Scientific"
    if not link.exists():
        link.symlink_to(require_data("recsys/amazon_scientific").resolve())
    script = PEER / "time_sasrec.py"
    script.write_text(PEER_SCRIPT)
    config = ROOT.parent / "shared" / "peers" / "recbole_sasrec_scientific.yaml"
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    done = subprocess.run(
        [
            str(python),
            str(script),
            str(config),
            str(data_root),
            str(PEER / "saved"),
            str(SPEED_EVALUATIONS),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=PEER,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"RecBole failed (exit {done.returncode}): {' | '.join(tail)}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def our_speed(target: Any) -> dict[str, Any]:
    """Our SASRec with the same hyper-parameters: one epoch and one validation pass, twice."""
    import torch

    from shoptransfer.catalogue import make_recipe
    from shoptransfer.evaluation.ranking import evaluate_ranking
    from shoptransfer.recommenders.base import next_item_examples
    from shoptransfer.recommenders.neural import NeuralRanker
    from shoptransfer.training import Examples, Trainer

    recipe = make_recipe("sasrec", **SASREC)
    model = recipe.build(target)
    histories, targets = next_item_examples(target.train, SASREC["max_history"])
    examples = Examples(histories, targets)
    epochs, evals = [], []
    for _ in range(2):
        started = time.perf_counter()
        Trainer(recipe._settings("speed", epochs=1)).fit(model, examples)
        epochs.append(time.perf_counter() - started)
    for _ in range(SPEED_EVALUATIONS):
        started = time.perf_counter()
        valid = evaluate_ranking(NeuralRanker(model).scores, target.valid, ks=(10, 50))
        evals.append(time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "epoch_seconds": epochs,
        "eval_seconds": evals,
        "valid": valid,
        "peak_rss_mb": peak_mb,
        "micro_batch_size": recipe.micro_batch_size,
        "threads": torch.get_num_threads(),
    }


def our_speed_apart() -> dict[str, Any]:
    """:func:`our_speed` in a process of its own, so that its peak memory is its own."""
    done = subprocess.run(
        [sys.executable, __file__, "--time-ours"], capture_output=True, text=True, cwd=ROOT
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"timing ours failed (exit {done.returncode}): {' | '.join(tail)}")
    return json.loads(lines[-1].removeprefix("RESULT "))


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redo", nargs="*", default=[], help="models to run again")
    parser.add_argument("--only", nargs="*", default=None, help="run only these models")
    parser.add_argument("--speed", action="store_true", help="run only the RecBole comparison")
    parser.add_argument("--time-ours", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md only")
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS, help="seeds per model")
    parser.add_argument("--fresh", action="store_true", help="start a new results file")
    parser.add_argument("--out", default="scientific", help="results file name (in results/)")
    parser.add_argument(
        "--shared-cores", action="store_true", help="record that other jobs share the cores"
    )
    parser.add_argument(
        "--part", choices=list(PARTS), default="family", help="which table's runs to make"
    )
    parser.add_argument(
        "--budgets", nargs="*", type=float, default=BUDGETS, help="user shares (--part budgets)"
    )
    parser.add_argument(
        "--absorb", nargs="*", default=[], help="add the records of these results files (names)"
    )
    parser.add_argument(
        "--recover",
        nargs="*",
        default=[],
        help="add the finished cells of these run folders (an invocation that stopped)",
    )
    parser.add_argument("--experiment", help="log a development run (validation only)")
    parser.add_argument("--model", default="text-seq", help="model of the experiment")
    parser.add_argument("--set", nargs="*", default=[], help="experiment options key=value")
    args = parser.parse_args()
    unknown = sorted(set(args.only or []) | set(args.redo) | {args.model})
    unknown = [label for label in unknown if label not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(MODELS)}")
    if args.time_ours:  # the child process of --speed
        print("RESULT " + json.dumps(our_speed(domains()[1])))
        return
    if args.markdown:
        from shoptransfer.files import atomic_write_text

        payload = load_json(RESULTS / f"{args.out}.json")
        atomic_write_text(RESULTS / f"{args.out}.md", markdown(payload))
        return
    if args.experiment:
        development_experiment(args, *domains())
        return
    payload = open_results("scientific", args.out, args.fresh)
    # the seeds of every invocation so far (one invocation per seed resumes the file)
    payload["seeds"] = sorted({*payload.get("seeds", []), *args.seeds})
    if args.absorb or args.recover:
        for name in args.absorb:
            absorb(payload, load_json(RESULTS / f"{name}.json"))
        for folder in args.recover:
            recover(payload, Path(folder).resolve(), args.shared_cores)
        _finish(payload, args.out)
        return
    started = time.perf_counter()
    if args.speed:
        ours, peer = our_speed_apart(), recbole_speed()
        payload["speed_vs_recbole"] = {
            "ours": ours,
            "recbole": peer,
            "epoch_ratio": round(min(peer["epoch_seconds"]) / min(ours["epoch_seconds"]), 2),
            "eval_ratio": round(min(peer["eval_seconds"]) / min(ours["eval_seconds"]), 2),
        }
    else:
        forget(payload, SETTING, set(args.redo))
        run_models(payload, args)
    add_invocation(payload, sys.argv[1:], started, args.shared_cores)
    _finish(payload, args.out)


if __name__ == "__main__":
    main()
