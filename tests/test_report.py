from __future__ import annotations

from shoptransfer.evaluation.report import format_table, summarise


def record(recipe: str, budget: int, seed: int, accuracy: float) -> dict:
    return {
        "recipe": recipe,
        "budget": budget,
        "seed": seed,
        "status": "ok",
        "metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.01},
        "train_seconds": 2.0,
        "trainable_parameters": 770,
    }


def test_summary_averages_seeds_and_table_shows_mean_and_std() -> None:
    results = [
        record("fine-tune", 16, 0, 0.80),
        record("fine-tune", 16, 1, 0.90),
        {
            "recipe": "scratch-tfidf",
            "budget": 0,
            "seed": 0,
            "status": "skipped",
            "reason": "trains on target labels only",
        },
    ]
    rows = summarise(results)
    assert [(r["recipe"], r["budget"]) for r in rows] == [("scratch-tfidf", 0), ("fine-tune", 16)]
    assert rows[1]["metrics"]["accuracy"] == [0.80, 0.90]
    table = format_table(results)
    assert "85.0 ± 7.1" in table
    assert "scratch-tfidf at 0 labels/class: trains on target labels only" in table
