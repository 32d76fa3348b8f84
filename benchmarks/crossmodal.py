"""Cross-modal transfer on Myntra product photos and titles: search across the two, zero-shot
classification of photos by class names, classification from the photo, the title and both
fused, and men -> women.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/crossmodal.py --fresh --shared-cores
    .venv/bin/python benchmarks/crossmodal.py --part retrieval --seeds 0   # some cells
    .venv/bin/python benchmarks/crossmodal.py --redo "all products" --seeds 0   # rerun cells
    .venv/bin/python benchmarks/crossmodal.py --part classification --modalities \
        "fused (concat)" "fused (stacking)" --budgets 5 20 100   # the fused rows, some budgets
    .venv/bin/python benchmarks/crossmodal.py --markdown   # rewrites the .md from the JSON

Data: ../shared/data/fashion_products (22,048 Myntra products, a photo of about 60x80 pixels
and a title, ``productDisplayName``, each; Aggarwal 2019). Frozen features in bfloat16 (as
benchmarks/fashion.py computes its pretrained networks): EfficientNet-Lite0 at 128 px for the
photos (fashion.py's fine-tuning network and size; its frozen-features Lite2 at 260 px costs
about 7x as much per photo, over an hour for the 22,048 photos on the shared cores), MiniLM-L6
(all-MiniLM-L6-v2, mean pooling, 64 tokens) for the titles; both through the embedding cache
(a rerun computes nothing). The library's ``CrossModalRetriever``
(src/shoptransfer/retrieval.py) trains two linear projection heads to a 256-d space with the
symmetric InfoNCE loss and a learned temperature (AdamW, learning rate 1e-3, batches of 256,
at most 40 epochs, early stopping on 10 % of the training pairs with patience 5); the
backbones never train. Seeds 0, 1, 2 vary the heads' training (initialisation, validation
pairs, batch order), not the test set.

Split: a fixed 20 % of the products (seeded permutation, seed 0) is held out; the heads train
on the other 80 %. Retrieval: each held-out title searches the photos of its block of 1,000
held-out products (disjoint blocks; the products that fill no whole block are left out and
counted), and each photo the titles; Recall@1/5/10 (the match's rank counts ties as half) and
MRR, the mean over the blocks. Chance: Recall@K = K / 1,000.

Label words masked: titles often hold the article type's own word ("Men Black Shirt"). Every
word that names one of the 20 largest article types (each word of the type's name, singular or
plural, and the spellings T-shirt / Tshirt / Tee) is deleted from every title, for training and
testing alike (:func:`mask_label_words`), so a model cannot read the label from the title.

Zero-shot: the held-out photos of the 20 largest article types are classified by the heads
alone (no labelled photo): each photo goes to the type whose text "a product photo of {type}"
(the type's name in lower case) is closest in the shared space; accuracy and macro-F1.

Men -> women: heads trained on the men's training products only, tested on the held-out women's
products (one block of 1,000), beside heads trained on the women's training products (the
in-domain reference); retrieval and zero-shot, titles whole and masked.

Development (training products only: 6,567 with both backbones' features cached, 1,313 of
them held out as 1 block of 1,000 + queries; seed 0), title -> photo Recall@1 / 5 / 10:
  heads                                     Lite2 260 px          Lite0 128 px
  linear, 256-d (the default)               19.5 / 48.0 / 64.7    16.9 / 45.5 / 60.3
  one hidden layer of 1,024, 256-d          20.0 / 48.2 / 64.4    17.7 / 47.1 / 61.9
  linear, 512-d                             18.6 / 50.4 / 65.1    18.1 / 47.0 / 61.7
  linear, learning rate 3e-4                17.7 / 48.4 / 63.7    17.3 / 45.0 / 59.5
The MLP and 512-d heads gain at most 1.6 points at 2-3x the training time; Lite2 gains about
4 points of Recall@10 at about 7x the feature cost. Early stopping ends at 8-17 epochs.

Threads: one (OMP_NUM_THREADS=1). With two threads on the two shared, oversubscribed cores the
heads trained about 10x slower (418 s against 42 s for one fit).

Classification (:func:`classification_part`): the 20 largest article types, a fixed 20 % test
split (the runner's ``test_fraction`` and ``split_seed`` 0, as benchmarks/fashion.py), 5 / 20 /
100 / all labels per class, seeds 0, 1, 2, titles with the label words masked, run by the
library's runner; an entry of :data:`MODALITIES` per row: a linear probe (``frozen-features``,
L-BFGS) on the photo features (``sqrt-l2``) and on the masked titles' features; the ``fusion``
recipe on a table of both (the same rows in the same order, so the same split and draws):
``solver: lbfgs`` (each input's features layer-normalised, concatenated with the mask of
present inputs, the same L-BFGS linear probe, trained on the examples plus copies with one input
hidden at weight 0.25), and ``combine: stacking``. Its backbones, image size, text length and
precision are the probes' (:data:`FUSED_BACKBONES`), so every feature comes from the cache.
Goal (:data:`CLASSIFICATION_GOAL`): fused (concat) macro-F1 >= the best single modality's + 3
points at 20 per class. Measured (3 seeds): 83.9 against photo only 79.4 (+4.5, met); at 5 per
class 74.3 against 69.7, at 100 89.6 against 85.7, with all labels 93.3 against 89.6. Stacking
is below concat up to 100 per class, far below at 5 (60.1 ± 10.1: its head learns from
out-of-fold predictions of probes trained on 4 examples per class), and slightly above it with
all labels (93.7).

Men -> women (:func:`shift_part`, ``--part shift``): benchmarks/fashion.py's shift protocol (the
10 article types both have; train on the men's products, test on all the women's, budget 0) with
the photo and the masked title; the ``fusion`` linear probe on the photo, the title and both
(one recipe: the rows differ only in ``inputs``). Measured (3 seeds), accuracy / macro-F1 %:
photo 91.9 / 90.6, title 54.8 / 43.9, both 93.4 / 91.9 (fashion.py's Lite2 260 px photo probe:
93.1 / 91.9).
Writes benchmarks/results/crossmodal.json and .md (``--out`` names other files).
"""

from __future__ import annotations

import argparse
import re
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
from common import recorded as common_recorded
from fashion import SHIFT_TYPES

SEEDS = [0, 1, 2]
TEST_FRACTION, SPLIT_SEED = 0.2, 0
CANDIDATES = 1000
TOP_TYPES = 20
FEATURES = {
    "image_backbone": "efficientnet-lite0",
    "image_size": 128,
    "precision": "bf16",
    "text_backbone": "minilm-l6",
    "max_length": 64,
}
HEADS = {
    "dim": 256,
    "epochs": 40,
    "batch_size": 256,
    "learning_rate": 1e-3,
    "validation_fraction": 0.1,
    "patience": 5,
}
TITLES = {"whole": "titles whole", "masked": "label words masked"}
# setting -> (training products, test products)
SETTINGS = {
    "all products": ("train", "test"),
    "men -> women": ("train men", "test women"),
    "women -> women": ("train women", "test women"),
}
GOAL = "title -> photo Recall@10 >= 0.5 among 1,000 candidates (held-out products, titles whole)"
SPELLINGS = {
    "tshirts": ["t-shirt", "t-shirts", "tshirt", "tee", "tees"],
    "flip": ["flip-flop", "flip-flops", "flipflops"],
}
KEPT_WORDS = {"and"}


# -- data --------------------------------------------------------------------------------------


def products() -> pd.DataFrame:
    folder = require_data("fashion_products")
    table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    table["photo"] = [str(folder / path) for path in table.image]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(table))
    test = np.zeros(len(table), dtype=bool)
    test[order[: int(round(TEST_FRACTION * len(table)))]] = True
    table["test"] = test
    return table


def top_types(table: pd.DataFrame) -> list[str]:
    return list(table.articleType.value_counts().index[:TOP_TYPES])


def label_words(types: list[str]) -> set[str]:
    """The words that name the article ``types``: each word of a name, singular and plural, and
    the other spellings of :data:`SPELLINGS`."""
    words: set[str] = set()
    for name in types:
        for word in name.lower().split():
            if word in KEPT_WORDS:
                continue
            words.update([word, *SPELLINGS.get(word, [])])
            if re.search(r"(ch|sh|ss|x)es$", word):
                words.add(word[:-2])  # watches, sunglasses
            elif word.endswith("s"):
                words.add(word[:-1])  # shirts, shoes
            else:
                words.add(word + "s")  # casual, formal
    return words


def mask_label_words(title: str, words: set[str]) -> str:
    """``title`` without the words in ``words`` (case and surrounding punctuation ignored;
    "Men's" is read as "men")."""

    def bare(token: str) -> str:
        token = re.sub(r"'s$", "", token.lower().strip(".,;:!?()[]\"'"))
        return token

    return " ".join(token for token in title.split() if bare(token) not in words)


def rows(table: pd.DataFrame, which: str) -> pd.DataFrame:
    part, _, gender = which.partition(" ")
    keep = table.test if part == "test" else ~table.test
    if gender:
        keep = keep & (table.gender == gender.capitalize())
    return table[keep]


# -- one record: heads trained with one seed, scored on the held-out products -----------------


def retriever(seed: int) -> Any:
    from shoptransfer.retrieval import CrossModalRetriever

    return CrossModalRetriever(**FEATURES, **HEADS, seed=seed)


class Features:
    """The frozen features of every product's photo, title and masked title (cached)."""

    def __init__(self, table: pd.DataFrame) -> None:
        from shoptransfer.backbones import EmbeddingCache

        self.cache = EmbeddingCache()
        self.table = table
        self.words = label_words(top_types(table))
        started = time.perf_counter()
        model = retriever(0)
        self.photo = model.image_features(list(table.photo), self.cache, show_progress=True)
        self.title = {
            "whole": model.text_features(list(table.productDisplayName), self.cache),
            "masked": model.text_features(self.masked_titles(), self.cache),
        }
        self.seconds = time.perf_counter() - started

    def masked_titles(self) -> list[str]:
        return [mask_label_words(t, self.words) for t in self.table.productDisplayName]

    def of(self, part: pd.DataFrame, titles: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.table.index.get_indexer(part.index)
        return self.photo[idx], self.title[titles][idx]


def zero_shot(
    model: Any, photos: np.ndarray, labels: list[str], types: list[str], cache: Any
) -> dict:
    from shoptransfer.evaluation import classification_metrics

    scores = model.zero_shot_scores(photos, [name.lower() for name in types], cache)
    truth = np.array([types.index(label) for label in labels])
    metrics = classification_metrics(truth, scores.argmax(axis=1), types)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "photos": len(labels),
        "classes": len(types),
    }


def run_record(features: Features, setting: str, titles: str, seed: int) -> dict[str, Any]:
    train_rows, test_rows = (rows(features.table, which) for which in SETTINGS[setting])
    model = retriever(seed)
    started = time.perf_counter()
    model.fit_features(*features.of(train_rows, titles))
    seconds = time.perf_counter() - started
    found = model.evaluate_features(*features.of(test_rows, titles), CANDIDATES, SPLIT_SEED)
    types = top_types(features.table)
    typed = test_rows[test_rows.articleType.isin(types)]
    photos, _ = features.of(typed, titles)
    return {
        "setting": setting,
        "titles": titles,
        "seed": seed,
        "status": "ok",
        "train_pairs": len(train_rows),
        "test_pairs": len(test_rows),
        **found,
        "zero_shot": zero_shot(model, photos, list(typed.articleType), types, features.cache),
        "epochs": len(model.history),
        "best_validation": max(e.get("validation", 0.0) for e in model.history),
        "scale": model.history[-1]["scale"],
        "train_seconds": round(seconds, 1),
    }


def recorded(payload: dict[str, Any], setting: str, titles: str, seed: int) -> bool:
    return any(
        (r["setting"], r["titles"], r["seed"]) == (setting, titles, seed)
        for r in payload["retrieval"]["records"]
    )


def retrieval_part(payload: dict[str, Any], args: argparse.Namespace) -> None:
    cells = [
        (setting, titles, seed)
        for setting in SETTINGS
        for titles in TITLES
        for seed in args.seeds
        if not recorded(payload, setting, titles, seed)
    ]
    if not cells:
        return
    table = products()
    features = Features(table)
    payload["retrieval"]["features"] = {
        **FEATURES,
        "products": len(table),
        "seconds_this_invocation": round(features.seconds, 1),
        "masked_words": sorted(features.words),
        "titles_changed_by_masking": int(
            sum(a != b for a, b in zip(table.productDisplayName, features.masked_titles()))
        ),
    }
    for setting, titles, seed in cells:
        record = run_record(features, setting, titles, seed)
        payload["retrieval"]["records"].append(record)
        print(
            f"{setting}, {TITLES[titles]}, seed {seed}: title->photo R@10 "
            f"{record['title_to_photo']['recall@10']:.3f}, zero-shot "
            f"{record['zero_shot']['accuracy']:.3f}, {record['train_seconds']} s",
            flush=True,
        )
        finish(payload, args.out)


# -- classification: photo only, title only, fused (label words masked) ------------------------


BUDGETS: list[int | str] = [5, 20, 100, "all"]
PROBE = {"name": "frozen-features", "solver": "lbfgs"}
# the fusion recipe's backbones: the same settings as the single-modality probes (cache hits)
FUSED_BACKBONES = {
    "image_backbone": FEATURES["image_backbone"],
    "image_size": FEATURES["image_size"],
    "text_backbone": FEATURES["text_backbone"],
    "max_length": FEATURES["max_length"],
    "precision": FEATURES["precision"],
}
# modality -> the recipe entry of its classifier (its table: :func:`classification_tables`)
MODALITIES: dict[str, dict[str, Any]] = {
    "photo only": {
        **PROBE,
        "backbone": FEATURES["image_backbone"],
        "image_size": FEATURES["image_size"],
        "precision": FEATURES["precision"],
        "feature_transform": "sqrt-l2",
    },
    "title only": {
        **PROBE,
        "backbone": FEATURES["text_backbone"],
        "max_length": FEATURES["max_length"],
        "precision": FEATURES["precision"],
    },
    "fused (concat)": {"name": "fusion", "solver": "lbfgs", **FUSED_BACKBONES},
    "fused (stacking)": {"name": "fusion", "combine": "stacking", **FUSED_BACKBONES},
}
SINGLE = ["photo only", "title only"]
FUSED = "fused (concat)"
GOAL_BUDGET, GOAL_MARGIN = 20, 0.03
CLASSIFICATION_GOAL = (
    f"fused (concat) macro-F1 >= best single modality + {100 * GOAL_MARGIN:.0f} points at "
    f"{GOAL_BUDGET} labels per class, label words masked"
)


def entry_label(modality: str) -> str:
    """The label the runner gives the records of ``modality``'s recipe entry."""
    entry = MODALITIES[modality]
    return str(entry.get("label", entry["name"]))


def classification_tables() -> dict[str, Path]:
    """The 20 largest article types as a photo table, a table of masked titles and a table of
    both (the inputs of the fused models), the same rows in the same order (so the runner's
    split is the same), written once."""
    table = products()
    words = label_words(top_types(table))
    keep = table[table.articleType.isin(top_types(table))].copy()
    keep["title"] = [mask_label_words(t, words) or "-" for t in keep.productDisplayName]
    out = RUNS / "data" / "crossmodal"
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "photos-top20.csv": ["id", "image", "articleType"],
        "titles-masked-top20.csv": ["id", "title", "articleType"],
        "photos-titles-masked-top20.csv": ["id", "image", "title", "articleType"],
    }
    for name, columns in files.items():
        text = keep[columns].to_csv(index=False)
        if not (out / name).exists() or (out / name).read_text() != text:
            (out / name).write_text(text)
    paths = {"photo only": out / "photos-top20.csv", "title only": out / "titles-masked-top20.csv"}
    return {m: paths.get(m, out / "photos-titles-masked-top20.csv") for m in MODALITIES}


def classification_config(
    modality: str, seeds: list[int], budgets: list[int | str] | None = None
) -> dict[str, Any]:
    path = classification_tables()[modality]
    root = str(require_data("fashion_products"))
    if modality == "photo only":
        target = {"path": str(path), "image": "image", "image_root": root}
    elif modality == "title only":
        target = {"path": str(path), "text": "title"}
    else:
        inputs = {"photo": {"image": "image"}, "title": {"text": "title"}}
        target = {"path": str(path), "inputs": inputs, "image_root": root}
    slug = re.sub(r"[^a-z]+", "-", modality).strip("-")
    return {
        "name": f"crossmodal-{slug}",
        "target": {**target, "label": "articleType", "name": "articleType"},
        "test_fraction": TEST_FRACTION,
        "split_seed": SPLIT_SEED,
        "budgets": list(budgets or BUDGETS),
        "seeds": seeds,
        "recipes": [MODALITIES[modality]],
    }


def classification_part(payload: dict[str, Any], args: argparse.Namespace) -> None:
    """Photo only, title only (label words masked) and the fused classifiers (the ``fusion``
    recipe on both: concatenation into the L-BFGS linear probe, and stacking of each input's
    calibrated probabilities) of the 20 largest article types at 5 / 20 / 100 / all labels per
    class (``--budgets`` runs some), through the library's runner (``run_setting``, as
    benchmarks/fashion.py), into ``payload["settings"]`` (a setting per modality, an entry of
    :data:`MODALITIES` each). Cells already recorded are not run again."""
    budgets = [b for b in BUDGETS if str(b) in {str(x) for x in args.budgets}]
    for modality in MODALITIES:
        if args.modalities and modality not in args.modalities:
            continue
        label = entry_label(modality)
        runs: dict[tuple, list[int]] = {}  # the budgets a seed lacks -> those seeds
        for seed in args.seeds:
            missing = [b for b in budgets if not common_recorded(payload, modality, label, seed, b)]
            if missing:
                runs.setdefault(tuple(missing), []).append(seed)
        for missing, seeds in runs.items():
            config = classification_config(modality, seeds, list(missing))
            run_setting(payload, modality, config, shared_cores=args.shared_cores)
            finish(payload, args.out)


# -- men -> women with fusion: train on the men's products of the 10 shared types ------------

SHIFT = "men -> women, 10 shared types"
# entry label -> the fusion recipe's inputs (one recipe for all three rows: the same head)
SHIFT_ENTRIES = {"photo-only": ["photo"], "title-only": ["title"], "fused-concat": []}


def shift_tables() -> dict[str, Path]:
    """The men's and the women's products of the 10 article types both have (benchmarks/
    fashion.py's shift part), photo and masked title, written once."""
    table = products()
    words = label_words(top_types(table))
    out = RUNS / "data" / "crossmodal"
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for gender in ("men", "women"):
        keep = table[table.articleType.isin(SHIFT_TYPES) & (table.gender == gender.capitalize())]
        keep = keep.assign(
            title=[mask_label_words(t, words) or "-" for t in keep.productDisplayName]
        )
        paths[gender] = out / f"{gender}-shared-types-photos-titles-masked.csv"
        text = keep[["id", "image", "title", "articleType"]].to_csv(index=False)
        if not paths[gender].exists() or paths[gender].read_text() != text:
            paths[gender].write_text(text)
    return paths


def shift_config(labels: list[str], seeds: list[int]) -> dict[str, Any]:
    """Train on the men's photos and titles, test on all the women's (budget 0, as
    benchmarks/fashion.py's shift part); the ``fusion`` linear probe on the photo, the title
    and both."""
    paths = shift_tables()
    root = str(require_data("fashion_products"))
    inputs = {"photo": {"image": "image"}, "title": {"text": "title"}}

    def domain(gender: str) -> dict[str, Any]:
        path = str(paths[gender])
        return {"path": path, "inputs": inputs, "image_root": root, "label": "articleType"}

    entry = MODALITIES[FUSED]
    return {
        "name": "crossmodal-men-to-women",
        "source": {**domain("men"), "name": "men"},
        "target": {**domain("women"), "name": "women"},
        "target_test": {**domain("women"), "name": "women"},
        "transductive": False,
        "budgets": [0],
        "seeds": seeds,
        "recipes": [
            {
                **entry,
                "label": label,
                **({"inputs": SHIFT_ENTRIES[label]} if SHIFT_ENTRIES[label] else {}),
            }
            for label in labels
        ],
    }


def shift_part(payload: dict[str, Any], args: argparse.Namespace) -> None:
    """Men -> women (:data:`SHIFT`) for the seeds not recorded yet."""
    seeds = [
        s
        for s in args.seeds
        if not all(common_recorded(payload, SHIFT, label, s, 0) for label in SHIFT_ENTRIES)
    ]
    if seeds:
        config = shift_config(list(SHIFT_ENTRIES), seeds)
        run_setting(payload, SHIFT, config, shared_cores=args.shared_cores)
        finish(payload, args.out)


def shift_markdown(payload: dict[str, Any]) -> str:
    records = payload.get("settings", {}).get(SHIFT, {}).get("records", [])
    if not records:
        return "Not run."
    lines = [
        f"Trained on the men's products of the {len(SHIFT_TYPES)} article types both have, "
        "tested on all the women's of those types (benchmarks/fashion.py's shift, here with "
        "Lite0 128 px photo features); the `fusion` linear probe (`solver: lbfgs`) on the photo, "
        "the masked title, and both.\n",
        "| model | accuracy % | macro-F1 % | seeds |",
        "|---|---|---|---|",
    ]
    for label in SHIFT_ENTRIES:
        accuracy = values(records, label, "accuracy")
        if accuracy:
            f1 = values(records, label, "macro_f1")
            shown = label.replace("-", " ").replace(" concat", " (concat)")
            lines.append(f"| {shown} | {pm(accuracy, 100)} | {pm(f1, 100)} | {len(f1)} |")
    return "\n".join(lines)


def classification_scores(
    payload: dict[str, Any], modality: str, key: str, budget: int | str
) -> list[float]:
    records = payload.get("settings", {}).get(modality, {}).get("records", [])
    return values(records, entry_label(modality), key, budget=budget)


def check_classification_goal(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Fused (concat) against the best single modality at :data:`GOAL_BUDGET` labels per
    class (mean macro-F1 over the seeds each has), or ``None`` before all three are run."""
    means = {}
    for modality in [*SINGLE, FUSED]:
        found = classification_scores(payload, modality, "macro_f1", GOAL_BUDGET)
        if not found:
            return None
        means[modality] = (float(np.mean(found)), len(found))
    best = max(SINGLE, key=lambda m: means[m][0])
    fused, seeds = means[FUSED]
    return {
        "budget": GOAL_BUDGET,
        "fused_macro_f1": fused,
        "fused_seeds": seeds,
        "best_single": best,
        "best_single_macro_f1": means[best][0],
        "gain": fused - means[best][0],
        "met": fused >= means[best][0] + GOAL_MARGIN,
    }


# -- results, from the results file ------------------------------------------------------------


def records_of(payload: dict[str, Any], setting: str, titles: str) -> list[dict[str, Any]]:
    found = [
        r
        for r in payload.get("retrieval", {}).get("records", [])
        if r["setting"] == setting and r["titles"] == titles and r["status"] == "ok"
    ]
    return sorted(found, key=lambda r: r["seed"])


def check_goal(payload: dict[str, Any]) -> dict[str, Any] | None:
    found = records_of(payload, "all products", "whole")
    if not found:
        return None
    recall = float(np.mean([r["title_to_photo"]["recall@10"] for r in found]))
    return {"title_to_photo_recall@10": recall, "seeds": len(found), "met": recall >= 0.5}


def finish(payload: dict[str, Any], out: str) -> None:
    payload.update(
        protocol=__doc__.split("Data: ")[1].split("Writes")[0].strip(),
        goal=GOAL,
        goal_check=check_goal(payload),
        classification_goal=CLASSIFICATION_GOAL,
        classification_goal_check=check_classification_goal(payload),
    )
    save(out, payload, markdown(payload))


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Cross-modal transfer: Myntra product photos and titles\n",
        "Command: `OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/crossmodal.py "
        "--shared-cores` (protocol in the script's docstring). Frozen EfficientNet-Lite0 "
        "(128 px, bf16) photo features and MiniLM-L6 title features; linear projection heads "
        "trained with symmetric InfoNCE (`shoptransfer.retrieval.CrossModalRetriever`). Mean ± "
        "std (sample std, n − 1) over seeds. Data: Aggarwal 2019 (Kaggle, Myntra).\n",
    ]
    features = payload.get("retrieval", {}).get("features")
    if features:
        lines.append(
            f"{features['products']:,} products; masking the label words changed "
            f"{features['titles_changed_by_masking']:,} titles.\n"
        )
    lines += [
        f"## 1. Retrieval among {CANDIDATES:,} held-out products (chance: Recall@K = K / 1,000)\n",
        "| trained on → tested on | titles | direction | R@1 % | R@5 % | R@10 % | MRR | "
        "blocks (left out) | seeds | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        for titles, shown in TITLES.items():
            found = records_of(payload, setting, titles)
            if not found:
                continue
            for direction in ("title_to_photo", "photo_to_title"):

                def metric(key: str, d: str = direction, f: list = found) -> list[float]:
                    return [r[d][key] for r in f]

                first = found[0][direction]
                lines.append(
                    f"| {setting} | {shown} | {direction.replace('_to_', ' → ')} | "
                    f"{pm(metric('recall@1'), 100)} | {pm(metric('recall@5'), 100)} | "
                    f"{pm(metric('recall@10'), 100)} | {pm(metric('mrr'), 1, 3)} | "
                    f"{first['blocks']} ({first['left_out']}) | {len(found)} | "
                    f"{np.mean([r['train_seconds'] for r in found]):.0f} |"
                )
    goal = payload.get("goal_check")
    if goal:
        lines.append(
            f"\nGoal ({GOAL}): {100 * goal['title_to_photo_recall@10']:.1f} % — "
            f"{'met' if goal['met'] else 'not met'}."
        )
    lines += [
        f"\n## 2. Zero-shot: held-out photos of the {TOP_TYPES} largest article types, no "
        'labelled photo ("a product photo of {type}")\n',
        "| trained on → tested on | titles the heads trained on | accuracy % | macro-F1 % | "
        "photos | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        for titles, shown in TITLES.items():
            found = records_of(payload, setting, titles)
            if found:
                accuracy = [r["zero_shot"]["accuracy"] for r in found]
                f1 = [r["zero_shot"]["macro_f1"] for r in found]
                lines.append(
                    f"| {setting} | {shown} | {pm(accuracy, 100)} | {pm(f1, 100)} | "
                    f"{found[0]['zero_shot']['photos']:,} | {len(found)} |"
                )
    lines += [
        "\n## 3. Classification: photo only, title only, fused (label words masked)\n",
        classification_markdown(payload),
        "\n## 4. Men → women classification (label words masked)\n",
        shift_markdown(payload),
    ]
    timing = timing_sentence(payload)
    if timing:
        lines.append(f"\n{timing}")
    cpu = payload.get("cpu")
    if cpu:
        lines.append(f"CPU: {cpu}.")
    return "\n".join(lines) + "\n"


def classification_markdown(payload: dict[str, Any]) -> str:
    """The classification tables from ``payload["settings"]`` (the runner's records): a row
    per modality, a column per labels-per-class budget; "not run" where a cell has no record."""
    settings = payload.get("settings", {})
    if not settings:
        return "Not run yet."
    lines = [
        f"The {TOP_TYPES} largest article types; a fixed 20 % test split (3,311 products); titles "
        "with the label words masked. Photo only, title only: a linear probe (`frozen-features`, "
        "L-BFGS, L2 strength by cross-validation) on the modality's frozen features. Fused "
        "(concat): the `fusion` recipe on both inputs, each input's features layer-normalised "
        "and concatenated with the mask of present inputs into the same L-BFGS linear probe "
        "(`solver: lbfgs`; trained on the examples plus copies with one input hidden, weight "
        "0.25). Fused (stacking): `fusion` with `combine: stacking`, a linear probe per input, "
        "temperature-calibrated on out-of-fold logits, and a logistic regression over their "
        "log-probabilities. Same backbones, image size and precision as the single-modality "
        "probes (the features come from the same cache entries).",
    ]
    for key, shown in (("macro_f1", "macro-F1 %"), ("accuracy", "accuracy %")):
        lines += [
            f"\n{shown}:\n",
            "| model | " + " | ".join(f"{b} per class" for b in BUDGETS) + " | seeds (by budget) |",
            "|---|" + "---|" * len(BUDGETS) + "---|",
        ]
        for modality in MODALITIES:
            cells, seeds = [], []
            for budget in BUDGETS:
                found = classification_scores(payload, modality, key, budget)
                cells.append(pm(found, 100) if found else "not run")
                seeds.append(len(found))
            # the seeds per budget, one number where every budget has the same
            shown_seeds = str(seeds[0]) if len(set(seeds)) == 1 else " / ".join(map(str, seeds))
            lines.append(f"| {modality} | " + " | ".join(cells) + f" | {shown_seeds} |")
    goal = payload.get("classification_goal_check")
    if goal:
        lines.append(
            f"\nGoal ({CLASSIFICATION_GOAL}): fused {100 * goal['fused_macro_f1']:.1f} against "
            f"{goal['best_single']} {100 * goal['best_single_macro_f1']:.1f} "
            f"({100 * goal['gain']:+.1f} points) — {'met' if goal['met'] else 'NOT met'}."
        )
    lines.append(
        "\nPublished anchor, other data (product categorisation, arXiv 1907.00420): title 82.7 → "
        "title + image + description 88.2 F1. There the title is the stronger input; here, with "
        "the label words masked, the photo is."
    )
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line]
    return names[0] if names else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=["retrieval", "classification", "shift"], help="one part only"
    )
    parser.add_argument("--seeds", nargs="*", type=int, default=SEEDS, help="seeds (0 1 2)")
    parser.add_argument(
        "--redo", nargs="*", default=[], help="settings whose records (at --seeds) to rerun"
    )
    parser.add_argument(
        "--budgets", nargs="*", default=BUDGETS, help="classification: labels per class to run"
    )
    parser.add_argument(
        "--modalities", nargs="*", default=[], help=f"classification: some of {list(MODALITIES)}"
    )
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md only")
    parser.add_argument("--fresh", action="store_true", help="start a new results file")
    parser.add_argument("--out", default="crossmodal", help="results file name (in results/)")
    parser.add_argument(
        "--shared-cores", action="store_true", help="record that other jobs share the cores"
    )
    args = parser.parse_args()
    if args.markdown:
        from shoptransfer.files import atomic_write_text

        payload = load_json(RESULTS / f"{args.out}.json")
        atomic_write_text(RESULTS / f"{args.out}.md", markdown(payload))
        return
    payload = open_results("crossmodal", args.out, args.fresh)
    payload.setdefault("retrieval", {"records": []})
    unknown = sorted(set(args.redo) - set(SETTINGS) - set(MODALITIES))
    unknown += sorted(set(args.modalities) - set(MODALITIES))
    unknown += sorted({str(b) for b in args.budgets} - {str(b) for b in BUDGETS})
    if unknown:
        parser.error(
            f"unknown settings, modalities or budgets {unknown}: {list(SETTINGS)}, "
            f"{list(MODALITIES)}, {BUDGETS}"
        )
    payload["retrieval"]["records"] = [
        r
        for r in payload["retrieval"]["records"]
        if not (r["setting"] in args.redo and r["seed"] in args.seeds)
    ]
    for modality in set(args.redo) & set(MODALITIES):
        cell = payload["settings"].get(modality, {"records": []})
        cell["records"] = [r for r in cell["records"] if r["seed"] not in args.seeds]
    payload["cpu"] = cpu_name()
    started = time.perf_counter()
    if args.part in (None, "retrieval"):
        retrieval_part(payload, args)
    if args.part in (None, "classification"):
        classification_part(payload, args)
    if args.part in (None, "shift"):
        shift_part(payload, args)
    add_invocation(payload, sys.argv[1:], started, args.shared_cores)
    finish(payload, args.out)


if __name__ == "__main__":
    main()
