"""The benchmark scripts are experiment definitions for the library's runner: their configs
validate, they express each protocol, and their markdown is computed from the records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoptransfer.config import parse_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DATA = BENCHMARKS.parents[1] / "shared" / "data"
sys.path.insert(0, str(BENCHMARKS))

import blitzer  # noqa: E402
import common  # noqa: E402

needs_data = pytest.mark.skipif(not DATA.exists(), reason="no ../shared/data (research data)")


@needs_data
def test_blitzer_pair_is_budget_zero_with_the_target_as_test_set() -> None:
    config = parse_config(blitzer.adaptation_config("B->K", list(blitzer.ADAPTATION), [0]), "t")
    assert config.budgets == [0] and not config.transductive
    assert config.target.path == config.target_test.path != config.source.path
    entries = {entry.label: entry for entry in config.recipes}
    assert entries["source-only"].name == entries["self-training"].name == "self-training"
    assert entries["source-only"].options["self_training_rounds"] == 0
    # the language-model step reads both domains' extra files: B->K and K->B share it
    files = entries["udalm-distil"].options["dapt_extra_texts"]
    assert [Path(f).parent.name for f in files] == ["books", "kitchen"]
    assert blitzer.recipe_entry("udalm", "K->B")["dapt_extra_texts"] == files
    assert "dapt_extra_texts" not in entries["distil"].options
    assert blitzer.method_pairs("udalm") == blitzer.ABLATION_PAIRS
    # longer inputs: the source-only model at 512 tokens, texts batched by length
    longest = entries["source-only-512"].options
    assert (longest["max_length"], longest["group_by_length"]) == (512, True)
    assert longest["self_training_rounds"] == 0
    # the 12-pair rerun: self-training at 256 tokens beside its source-only model
    assert blitzer.method_pairs("source-only-512") == blitzer.ABLATION_PAIRS
    assert blitzer.method_pairs("udalm-distil") == blitzer.ABLATION_PAIRS
    assert blitzer.method_pairs("self-training-256") == blitzer.PAIRS
    assert blitzer.method_pairs("source-only-256") == blitzer.PAIRS
    rerun = entries["self-training-256"].options
    assert (rerun["max_length"], rerun["group_by_length"]) == (256, True)
    assert "self_training_rounds" not in rerun and "dapt_epochs" not in rerun
    assert entries["udalm-distil"].options["max_length"] == 256
    baseline = parse_config(blitzer.baseline_config("B->K", [0]), "t")
    assert baseline.source is None and baseline.target.path == config.source.path
    assert baseline.target_test.path == config.target.path


@needs_data
def test_fashion_and_scientific_configs_validate(monkeypatch: Any, tmp_path: Path) -> None:
    import fashion
    import scientific

    monkeypatch.setattr(fashion, "RUNS", tmp_path)
    monkeypatch.setattr(scientific, "RUNS", tmp_path)
    for budget in fashion.BUDGETS:
        entries = [fashion.budget_entry(name, budget) for name in fashion.BUDGET_RECIPES]
        config = parse_config(fashion.budget_config(budget, [e for e in entries if e], [0]), "t")
        assert (config.test_fraction, config.split_seed) == (0.2, 0)
    shift = parse_config(fashion.shift_config(list(fashion.SHIFT_RECIPES), [0]), "t")
    assert shift.target.path == shift.target_test.path and shift.budgets == [0]
    recommendation = parse_config(scientific.experiment_config(list(scientific.MODELS), [0]), "t")
    assert [entry.label for entry in recommendation.recipes] == list(scientific.MODELS)
    assert Path(recommendation.target.path).name == "Scientific"


def _record(label: str, seed: int, accuracy: float) -> dict[str, Any]:
    return {
        "label": label,
        "recipe": label,
        "family": "baseline",
        "budget": 0,
        "seed": seed,
        "status": "ok",
        "metrics": {"accuracy": accuracy},
        "train_seconds": 10.0 + seed,
        "trainable_parameters": 1,
    }


def test_blitzer_markdown_is_computed_from_the_records() -> None:
    payload: dict[str, Any] = {"schema": common.SCHEMA, "settings": {}, "invocations": []}
    for pair, shift in (("B->K", 0.0), ("D->B", 0.1)):
        records = [
            _record(method, seed, 0.80 + shift + 0.01 * seed + 0.02 * n)
            for n, method in enumerate(blitzer.METHODS)
            for seed in (0, 1)
        ]
        runs = [{"wall_seconds": 123.0}]
        payload["settings"][pair] = {"records": records, "runs": runs}
    text = blitzer.markdown(payload)
    # self-training: 86.5 ± 0.7 on B->K (seeds 86, 87), 96.5 on D->B; average 91.5
    assert "86.5 ± 0.7" in text and "96.5 ± 0.7" in text
    assert "self-training 91.5, source-only 89.5, i.e. +2.0 from self-training" in text
    # the rerun's own pair (issue 19), set against the best published method on the same pairs
    rerun = "self-training-256 109.5, source-only-256 105.5, i.e. +4.0 from self-training"
    assert f"{rerun}; 18.2 points above BERT-GAST's 91.3 on the same pairs" in text
    # set against its source-only entry on the pairs both ran only
    records = payload["settings"]["D->B"]["records"]
    payload["settings"]["D->B"]["records"] = [r for r in records if r["label"] != blitzer.LAST]
    text = blitzer.markdown(payload)
    assert f"over B->K: {rerun.replace('109.5', '104.5').replace('105.5', '100.5')}" in text
    payload["settings"]["D->B"]["records"] = records
    assert "| seconds |" in text and " 246 |" in text
    assert "seeds together" not in text  # no run held an ensemble
    assert "over seeds [0, 1]," in text
    # each piece against the entry it extends, on the ablation pairs only (B->K here)
    dapt = next(line for line in text.splitlines() if line.startswith("| dapt-source-only |"))
    assert dapt.endswith("| source-only | — | +6.0 | — | — | +6.0 |")
    gains = {g["piece"]: g for g in blitzer.piece_gains(payload)}
    assert gains["self-training-256"]["gains"] == {"B->K": pytest.approx(4.0)}
    assert gains["udalm"]["seeds"] == [0, 1]
    # an ablation method that ran seed 0 only is named with its seeds in the header
    for cell in payload["settings"].values():
        cell["records"] = [r for r in cell["records"] if r["label"] != "udalm" or r["seed"] == 0]
    others = ", ".join(m for m in blitzer.METHODS if m != "udalm")
    expected = f"over the seeds each method ran ({others}: seeds [0, 1]; udalm: seeds [0]),"
    assert expected in blitzer.markdown(payload)
    assert blitzer._summarise(payload, [7])["method_seeds"]["udalm"] == [0]
    runs = payload["settings"]["B->K"]["runs"]
    runs[0]["data"] = {"target": {"name": "kitchen", "pii_scrubbed": {"name": 2, "url": 1}}}
    assert "kitchen name 2, url 1." in blitzer.markdown(payload)
    for record in payload["settings"]["B->K"]["records"]:
        if record["label"] in ("source-only", "source-only-512"):
            value = 0.9 if record["label"] == "source-only" else 0.8 + 0.02 * record["seed"]
            record["fitted"] = {"source_stage": {"validation_macro_f1": value}}
    assert "source-only 90.0 (2 cells), source-only-512 81.0 (2 cells)" in blitzer.markdown(payload)
    # a language-model piece is set against the source-only entry of its length, pair by pair
    for record in payload["settings"]["B->K"]["records"]:
        if record["label"] in ("udalm-distil", "source-only-256"):
            value = 0.85 if record["label"] == "udalm-distil" else 0.9
            record["fitted"] = {"source_stage": {"validation_macro_f1": value}}
    expected = "udalm-distil's source validation macro-F1 against source-only-256's on the pairs"
    assert f"{expected} both ran (B->K): 85.0 vs 90.0 (2 vs 2 cells" in blitzer.markdown(payload)
    together = {"label": "udalm-distil", "metrics": {"accuracy": 0.9123}, "seeds": [0, 1]}
    payload["settings"]["B->K"]["runs"][0]["seed_ensembles"] = [together]
    text = blitzer.markdown(payload)
    row = next(line for line in text.splitlines() if "udalm-distil (seeds together)" in line)
    assert row.endswith("| — | 91.2 |") and row.count("—") == 11 and "| — | 91.2 | — |" in row


def test_blitzer_tables_show_the_earlier_runners_rows(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setattr(blitzer, "RESULTS", tmp_path)
    payload: dict[str, Any] = {"schema": common.SCHEMA, "settings": {}, "invocations": []}
    records = [_record("self-training-256", seed, 0.90 + 0.01 * seed) for seed in (0, 1)]
    payload["settings"]["K->D"] = {"records": records, "runs": [{"wall_seconds": 1.0}]}
    assert "earlier table" not in blitzer.markdown(payload)  # no earlier file
    earlier = {
        "cells": {
            "K->D": {"self-training": {"seeds": [84.0, 85.0]}, "source-only": {"seeds": [83.0]}},
            "B->K": {"self-training": {"seeds": [91.0, 92.0]}},
        }
    }
    (tmp_path / f"{blitzer.EARLIER}.json").write_text(json.dumps(earlier))
    text = blitzer.markdown(payload)
    row = next(line for line in text.splitlines() if line.startswith("| self-training (earlier"))
    assert "| 91.5 ± 0.7 |" in row and "| 84.5 ± 0.7 |" in row and row.endswith("| 88.0 |")
    # set against the earlier self-training on the pairs both ran: 90.5 vs 84.5
    assert "on the 1 pair(s) it ran (K->D): 90.5 vs 84.5 (+6.0 points)" in text
    # a file of the runner under that name is the table itself, not an earlier one
    (tmp_path / f"{blitzer.EARLIER}.json").write_text(json.dumps(payload))
    assert "earlier table" not in blitzer.markdown(payload)


@needs_data
def test_rating_configs_validate() -> None:
    import rating

    for name, setting in rating.SETTINGS.items():
        config = parse_config(rating.config(setting["split"], setting["budgets"], [0]), name)
        assert config.task == "rating" and config.split == setting["split"]
        assert [r.name for r in config.recipes] == rating.RECIPES


def test_rating_markdown_is_computed_from_the_records() -> None:
    import rating

    def record(label: str, seed: int, rmse: float, cold: float | None) -> dict[str, Any]:
        metrics: dict[str, Any] = {"rmse": rmse, "mae": rmse - 0.2, "cold_test_ratings": 10}
        if cold is not None:
            metrics["cold_items_rmse"] = cold
        return {
            "recipe": label,
            "label": label,
            "family": "feature-based" if label == "rating-text-mf" else "baseline",
            "budget": 0.1,
            "seed": seed,
            "status": "ok",
            "metrics": metrics,
            "target_examples": 8000,
            "train_seconds": 1.0,
            "trainable_parameters": 1,
        }

    offsets = {"rating-biases": 0.0, "rating-mf": 0.02, "rating-text-mf": -0.01}
    records = [
        record(label, seed, 1.0 + offset + 0.01 * seed, 1.2 + offset)
        for label, offset in offsets.items()
        for seed in (0, 1)
    ]
    from shoptransfer.evaluation.compare import analyse

    cell = {"records": records, "runs": [], "comparison": analyse(records, "rmse", False)}
    text = rating.markdown({"settings": {"random": cell}, "invocations": []})
    # text MF 0.995 ± 0.007 (seeds 0.99, 1.00); plain MF 1.025; difference -0.03, no noise
    assert "0.9950 ± 0.0071" in text and "1.0250 ± 0.0071" in text
    assert "lowest RMSE rating-text-mf (0.9950)" in text
    assert "text MF − plain MF -0.0300 (± 0.0071)" in text
    assert "+0.0100 vs rating-biases" in text and "1.1900 ± 0.0000 (10)" in text


def test_chinese_configs_validate_and_keep_test_splits_apart(tmp_path: Path) -> None:
    import chinese

    names = ["hotel", "waimai", "english", "shop_pool", "shop_test"]
    for cat in chinese.CATEGORIES.values():
        names += [f"{cat}_pool", f"{cat}_test", f"not_{cat}"]
    paths = {name: tmp_path / f"{name}.csv" for name in names}
    specs = chinese.settings(paths)
    assert set(specs) == set(chinese.ORDER)
    for name, spec in specs.items():
        config = dict(spec["config"])
        config["recipes"] = [chinese.RECIPES[label] for label in config["recipes"]]
        parsed = parse_config({**config, "seeds": [0]}, name)
        if parsed.target_test is None:  # in-domain, cross-domain, English -> waimai
            assert (parsed.test_fraction, parsed.split_seed) == (0.2, 0)
        if parsed.source is not None:
            assert parsed.source.path != parsed.target.path
    # cross-domain target-only rows are read from the in-domain run of the same target and split
    assert specs["cross-domain/hotel->waimai"]["target_only"] == "in-domain/waimai"
    assert (
        specs["cross-domain/hotel->waimai"]["config"]["target"]
        == (specs["in-domain/waimai"]["config"]["target"])
    )


def test_chinese_markdown_is_computed_from_the_records() -> None:
    import chinese

    def record(label: str, budget: Any, seed: int, accuracy: float) -> dict[str, Any]:
        return {
            **_record(label, seed, accuracy),
            "budget": budget,
            "metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.01},
        }

    settings = {
        "in-domain/hotel": [record("frozen-e5", "all", s, 0.90 + 0.01 * s) for s in (0, 1)],
        "fine-tune/hotel": [record("fine-tune-e5", "all", 0, 0.93)],
        "in-domain/waimai": [record("scratch-tfidf", 16, s, 0.70) for s in (0, 1)],
        "cross-domain/hotel->waimai": [
            record("frozen-e5", b, s, 0.84 if b == 0 else 0.85) for b in (0, 16) for s in (0, 1)
        ],
    }
    payload = {
        "schema": common.SCHEMA,
        "invocations": [],
        "settings": {name: {"records": records} for name, records in settings.items()},
    }
    text = chinese.markdown(payload)
    assert "| hotel | frozen-e5 | all | 90.5 ± 0.7 | 89.5 ± 0.7 | 10 | 2 |" in text
    assert "**met (93.0)** (best recipe, mean)" in text
    assert "**missed (84.0)** (best transfer recipe)" in text
    assert "hotel->waimai +15.0 points" in text  # 85.0 with the source vs 70.0 scratch
    assert "cross-category/books" in text  # listed as left out


@needs_data
def test_label_free_config_validates_and_records_every_epoch() -> None:
    import label_free

    config = parse_config(
        label_free.config("B->K", [e["label"] for e in label_free.entries()], [0]), "t"
    )
    assert config.budgets == [0] and config.track_quality and config.quality_sample == 2000
    assert config.target.path == config.target_test.path != config.source.path
    weighted = [e for e in config.recipes if "objectives" in e.options]
    assert len(weighted) == sum(len(w) for _, w in label_free.WEIGHTS.values())
    for entry in weighted:  # every epoch seen: no early stopping, scores recorded
        assert entry.options["patience"] == entry.options["epochs"] == label_free.EPOCHS
        assert entry.options["model_selection"] != "source-validation"
    shares = [e for e in config.recipes if e.options.get("self_training_rounds")]
    grids = [e.options["selection_grid"]["pseudo_label_share"] for e in shares]
    assert grids == [[share] for share in label_free.SHARES]  # one share each: scores recorded


def _label_free_record(recipe: str, weight: float, test: list[float], im: list[float]) -> dict:
    import label_free

    epochs = label_free.EPOCHS
    falling = [1.0 - e / epochs for e in range(epochs)]  # every other criterion: epoch 1
    scores = {name: falling for name in label_free.CRITERIA}
    scores["im"] = im
    chosen = int(np.flatnonzero(np.array(im) == max(im))[-1]) + 1
    return {
        "recipe": recipe,
        "label": label_free.label(recipe, weight),
        "seed": 0,
        "budget": 0,
        "status": "ok",
        "metrics": {"macro_f1": test[chosen - 1]},
        "fitted": {"model_selection": {"chosen_epoch": chosen, "scores": scores}},
        "quality_curve": [[float(e), value] for e, value in enumerate(test)] + [[99.0, 0.0]],
    }


def test_label_free_regrets_are_computed_from_the_records() -> None:
    import label_free

    epochs = label_free.EPOCHS
    rising = [0.5 + 0.01 * e for e in range(epochs)]  # the test F1 grows with the epochs
    records = []
    for recipe, (_, weights) in label_free.WEIGHTS.items():
        for n, weight in enumerate(weights):
            test = [value + 0.05 * n for value in rising]  # the last weight is the best
            im = [value - 0.1 * n for value in rising]  # IM: right epoch, wrong weight
            records.append(_label_free_record(recipe, weight, test, im))
    payload = {"schema": common.SCHEMA, "settings": {"B->K": {"records": records, "runs": []}}}
    payload["invocations"] = []
    payload["summary"] = label_free.summarise(payload)
    case = payload["summary"]["mlp-dann"]["cases"][0]
    top = rising[-1]
    assert case["epoch_oracle"] == pytest.approx(top) and case["grid_oracle"] == pytest.approx(
        top + 0.1
    )
    im = case["rows"]["im"]
    assert im["epoch"] == epochs and im["epoch_regret"] == pytest.approx(0.0)
    assert im["weight"] == 0.1 and im["grid_regret"] == pytest.approx(0.1)  # default weight
    sv = case["rows"]["source-validation"]
    assert sv["epoch"] == 1 and sv["epoch_regret"] == pytest.approx(top - rising[0])
    for share in label_free.SHARES:  # self-training: IM's scores favour the smallest share
        test, im = 0.7 + share / 10, 1.0 - share
        payload["settings"]["B->K"]["records"].append(
            {
                "recipe": "mlp",
                "label": label_free.share_label(share),
                "seed": 0,
                "status": "ok",
                "metrics": {"macro_f1": test},
                "fitted": {
                    "selection_grid": {
                        "candidates": [{"scores": {n: im for n in label_free.CRITERIA}}]
                    }
                },
            }
        )
    payload["summary"] = label_free.summarise(payload)
    shares = payload["summary"]["mlp-self-training"]["cases"][0]
    assert shares["oracle"] == pytest.approx(0.8) and shares["rows"]["im"]["share"] == 0.25
    assert shares["rows"]["im"]["regret"] == pytest.approx(0.075)
    text = label_free.markdown(payload)
    assert "## Self-training on the MLP (1 cases" in text
    assert "| im | 79.0 | 0.0 | 1/1 (worse 0) | 79.0 | 10.0 | 1/1 (worse 0) | 30.0 |" in text


def test_explain_markdown_is_the_committed_results_computed_from_their_json() -> None:
    import json

    import explain

    results = BENCHMARKS / "results"
    payload = json.loads((results / "explain.json").read_text())
    assert explain.markdown(payload) == (results / "explain.md").read_text()
    ig = payload["methods"]["integrated-gradients"]
    assert len(ig["top_k_drop"]) == len(ig["random_k_drop"]) == len(explain.KS)
    # a ratio is the top-k drop over the random drop (of the unrounded curves), where the
    # random drop is positive
    for top, random, ratio in zip(ig["top_k_drop"], ig["random_k_drop"], ig["ratio"]):
        if random > 0:
            assert ratio == pytest.approx(top / random, rel=0.01)
        else:
            assert ratio is None


def test_crossmodal_masks_every_spelling_of_the_label_words_and_keeps_the_rest() -> None:
    import crossmodal

    words = crossmodal.label_words(["Tshirts", "Casual Shoes", "Watches", "Perfume and Body Mist"])
    assert {"tshirts", "t-shirt", "tee", "casual", "shoe", "shoes", "watch", "mist"} <= words
    assert "and" not in words
    cases = {
        "Puma Men's Toe Crusher Black T-shirt": "Puma Men's Toe Crusher Black",
        "Woodland Men Brown Casual Shoes": "Woodland Men Brown",
        "Casio Edifice Men Multi-Dial Watch EF-328D": "Casio Edifice Men Multi-Dial EF-328D",
        "Davidoff Men Cool Water Perfume and Body Mist": "Davidoff Men Cool Water and",
        "Spice Art Women Black Clutch": "Spice Art Women Black Clutch",
    }
    for title, masked in cases.items():
        assert crossmodal.mask_label_words(title, words) == masked


def test_crossmodal_markdown_is_computed_from_the_records() -> None:
    import crossmodal

    def record(setting: str, titles: str, seed: int, recall10: float) -> dict[str, Any]:
        found = {"recall@1": 0.1, "recall@5": 0.3, "recall@10": recall10, "mrr": 0.2}
        found.update(blocks=4, candidates=1000, left_out=410)
        return {
            "setting": setting, "titles": titles, "seed": seed, "status": "ok",
            "title_to_photo": found, "photo_to_title": found, "train_seconds": 12.0,
            "zero_shot": {"accuracy": 0.5, "macro_f1": 0.4, "photos": 3000, "classes": 20},
        }  # fmt: skip

    payload = {
        "retrieval": {
            "records": [record("all products", "whole", s, r) for s, r in ((0, 0.5), (1, 0.6))]
            + [record("men -> women", "masked", 0, 0.25)]
        },
        "settings": {},
    }
    payload["goal_check"] = crossmodal.check_goal(payload)
    assert payload["goal_check"]["title_to_photo_recall@10"] == pytest.approx(0.55)
    assert payload["goal_check"]["met"]
    text = crossmodal.markdown(payload)
    assert (
        "| all products | titles whole | title → photo | 10.0 ± 0.0 | 30.0 ± 0.0 | 55.0 ± 7.1 |"
        in text
    )
    assert "| men -> women | label words masked | photo → title | 10.0 | 30.0 | 25.0 |" in text
    assert "55.0 % — met" in text
    assert "Not run yet" in text


@needs_data
def test_crossmodal_classification_configs_validate_on_the_same_rows(
    monkeypatch: Any, tmp_path: Path
) -> None:
    import crossmodal

    monkeypatch.setattr(crossmodal, "RUNS", tmp_path)
    for modality in crossmodal.MODALITIES:
        config = parse_config(crossmodal.classification_config(modality, [0]), "t")
        assert config.budgets == crossmodal.BUDGETS
    fused = parse_config(crossmodal.classification_config("fused (concat)", [0], [5, 20]), "t")
    assert fused.budgets == [5, 20] and list(fused.target.inputs) == ["photo", "title"]
    photos, titles, both = (
        (tmp_path / "data" / "crossmodal" / name).read_text().splitlines()
        for name in (
            "photos-top20.csv",
            "titles-masked-top20.csv",
            "photos-titles-masked-top20.csv",
        )
    )
    ids = [row.split(",")[0] for row in photos]
    assert ids == [row.split(",")[0] for row in titles] == [row.split(",")[0] for row in both]
    shift = parse_config(crossmodal.shift_config(list(crossmodal.SHIFT_ENTRIES), [0]), "t")
    assert shift.budgets == [0] and shift.target.path == shift.target_test.path
    inputs = {entry.label: entry.options.get("inputs") for entry in shift.recipes}
    assert inputs == {"photo-only": ["photo"], "title-only": ["title"], "fused-concat": None}


def test_crossmodal_fused_entries_read_the_single_probes_cached_features() -> None:
    import crossmodal

    photo, title = crossmodal.MODALITIES["photo only"], crossmodal.MODALITIES["title only"]
    for modality in ("fused (concat)", "fused (stacking)"):
        entry = crossmodal.MODALITIES[modality]
        assert entry["image_backbone"] == photo["backbone"]
        assert entry["text_backbone"] == title["backbone"]
        assert entry["image_size"] == photo["image_size"]
        assert entry["max_length"] == title["max_length"]
        assert entry["precision"] == photo["precision"] == title["precision"]


def test_crossmodal_classification_goal_and_cells_not_run() -> None:
    import crossmodal

    def record(label: str, budget: int, seed: int, f1: float) -> dict[str, Any]:
        metrics = {"macro_f1": f1, "accuracy": f1}
        return {"label": label, "budget": budget, "seed": seed, "status": "ok", "metrics": metrics}

    probe = crossmodal.entry_label("photo only")
    fused = [record("fusion", 20, 0, 0.72), record("fusion", 20, 1, 0.76)]
    payload: dict[str, Any] = {
        "settings": {
            "photo only": {"records": [record(probe, 20, s, 0.70) for s in (0, 1)]},
            "title only": {"records": [record(probe, 20, 0, 0.50)]},
            "fused (concat)": {"records": fused},
        }
    }
    goal = crossmodal.check_classification_goal(payload)
    assert goal["best_single"] == "photo only"
    assert goal["gain"] == pytest.approx(0.04) and goal["met"]
    payload["settings"]["fused (concat)"]["records"][1]["metrics"]["macro_f1"] = 0.73
    payload["classification_goal_check"] = crossmodal.check_classification_goal(payload)
    assert not payload["classification_goal_check"]["met"]
    text = crossmodal.classification_markdown(payload)
    assert "| fused (concat) | not run | 72.5 ± 0.7 | not run | not run | 0 / 2 / 0 / 0 |" in text
    assert "| fused (stacking) | not run | not run | not run | not run | 0 |" in text
    assert "fused 72.5 against photo only 70.0 (+2.5 points) — NOT met" in text
    del payload["settings"]["fused (concat)"]
    assert crossmodal.check_classification_goal(payload) is None


def test_privacy_selection_picks_the_best_held_out_settings_and_the_cells_use_them() -> None:
    import privacy

    # every candidate of the grid; C only where DP clips
    assert len(privacy.candidates(8.0)) == 2 * len(privacy.candidates(None))
    assert all("max_grad_norm" not in c for c in privacy.candidates(None))
    small, large = {"batch_size": 64, "learning_rate": 0.01}, {"batch_size": 512}
    grid = [
        {"settings": small, "held_out_accuracy": 0.80},
        {"settings": large, "held_out_accuracy": 0.84},
        {"settings": {"batch_size": 256}, "held_out_accuracy": 0.84},  # a tie: the earlier wins
    ]
    assert privacy.best(grid) == large
    pick = {"batch_size": 512, "epochs": 60, "learning_rate": 0.2, "max_grad_norm": 0.1}
    payload = {"selection": {"E->D": {"8": {"grid": [], "chosen": pick}}}}
    options = privacy.cell_options(payload, "E->D", 8.0)
    assert options["batch_size"] == 512 and options["epochs"] == 60
    assert options["learning_rate"] == 0.2
    assert options["privacy"] == {"epsilon": 8.0, "max_grad_norm": 0.1}
    # without a selection (another pair, or fashion): the fixed settings
    assert privacy.cell_options(payload, "B->K", 8.0)["privacy"]["max_grad_norm"] == 1.0
    assert privacy.cell_options(payload, "B->K", None)["batch_size"] == 64
    assert "privacy" not in privacy.cell_options(payload, "E->D", None)


def test_privacy_markdown_is_the_committed_results_computed_from_their_json() -> None:
    import json

    import privacy

    results = BENCHMARKS / "results"
    payload = json.loads((results / "privacy.json").read_text())
    assert privacy.markdown(payload) == (results / "privacy.md").read_text()


def test_scientific_runs_only_the_budgets_a_label_still_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    import scientific

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(scientific, "run_setting", lambda p, s, config, **k: calls.append(config))
    monkeypatch.setattr(scientific, "_finish", lambda payload, out: None)
    monkeypatch.setattr(scientific, "source_domains", lambda name: [{"path": name}])

    def record(label: str, budget: float, seed: int) -> dict[str, Any]:
        return {"label": label, "budget": budget, "seed": seed, "status": "ok"}

    setting = scientific.BUDGET_SETTING
    recorded = [record("text-seq", 0.05, 1), record("sasrec", 0.05, 1), record("sasrec", 0.1, 1)]
    payload: dict[str, Any] = {"settings": {setting: {"records": recorded}}}
    args = argparse.Namespace(
        part="budgets", budgets=[0.05, 0.1], seeds=[1], only=["sasrec", "text-seq"], out="x"
    )
    args.shared_cores = False
    scientific.run_models(payload, args)
    assert [(c["budgets"], c["seeds"], [r["label"] for r in c["recipes"]]) for c in calls] == [
        ([0.1], [1], ["text-seq"])
    ]


def test_scientific_source_contribution_pairs_the_seeds_both_ran() -> None:
    import scientific

    def record(label: str, seed: int, ndcg: float) -> dict[str, Any]:
        return {
            "label": label,
            "budget": "all",
            "seed": seed,
            "status": "ok",
            "metrics": {"ndcg@10": ndcg},
            "validation_metrics": {},
        }

    records = [record("text-seq", 0, 0.090), record("text-seq", 1, 0.087)]
    records += [record("text-seq-scratch", s, v) for s, v in [(0, 0.089), (1, 0.090), (2, 0.088)]]
    text = "\n".join(scientific.source_contribution(records))
    assert "NDCG@10 -0.0005 (0.0885 vs 0.0890" in text and "2 / 3 seeds" in text
    assert "on the seeds both ran (0, 1), seed by seed: -0.0010 (+0.0010, -0.0030)" in text
    records.append(record("text-seq", 2, 0.091))
    assert "seeds both ran" not in "\n".join(scientific.source_contribution(records))


def test_padding_counts_what_a_pass_computes() -> None:
    import padding

    texts = [f"{i} " + "x" * (i % 50) for i in range(64)]
    lengths = {text: len(text) for text in texts}
    random, random_attention = padding.pass_cost(lengths, texts, grouped=False)
    grouped, grouped_attention = padding.pass_cost(lengths, texts, grouped=True)
    assert sum(lengths.values()) <= grouped < random
    assert grouped_attention < random_attention
    payload = {
        "lengths": {
            "128": {
                "books": {
                    "real_tokens": 100,
                    "random": {"positions": 300, "attention": 900},
                    "grouped": {"positions": 150, "attention": 300},
                }
            }
        }
    }
    assert "| 128 | 100 | 300 | 150 (1.50× real) | 2.00× | 3.00× |" in padding.markdown(payload)
