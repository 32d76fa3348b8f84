"""Leakage checks: test examples that are also in the data a model trains on.

A test example found in the training data (the source, or the target's labelled pool) measures
memory, not transfer. The check compares each domain's ``example_keys`` (texts after whitespace
and case normalisation, photos by the SHA-256 of their file bytes, vectors exactly); labels are
not compared, so a duplicate with another label counts too.

For recommendation a test case is a user's next item; it is a duplicate when that user's
training history already holds the item, or an item with the same text after whitespace and
case normalisation (the same product listed twice). The source is not compared: its users are
other people, and items it shares with the target are what transfer is meant to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from shoptransfer.data.domain import Domain
from shoptransfer.data.interactions import InteractionDomain


def duplicates_in_training(test: Domain, training: Mapping[str, Domain | None]) -> dict[str, Any]:
    """How many test examples (and what share) also appear in the training data, in all and
    per part of it (``training``: part name -> domain; ``None`` parts are left out)."""
    keys = test.example_keys()
    found = np.zeros(len(keys), dtype=bool)
    by_part: dict[str, int] = {}
    for name, domain in training.items():
        if domain is None:
            continue
        seen = set(domain.example_keys())
        hits = np.fromiter((key in seen for key in keys), dtype=bool, count=len(keys))
        by_part[name] = int(hits.sum())
        found |= hits
    return {
        "compared": test.same_when,
        "test_examples": len(keys),
        "duplicates": int(found.sum()),
        "share": round(float(found.mean()) if len(keys) else 0.0, 4),
        "by_part": by_part,
    }


def leakage_warning(where: str, leakage: Mapping[str, Any]) -> str | None:
    """One line saying how many test examples are in the training data (``None``: none are)."""
    if not leakage["duplicates"]:
        return None
    parts = ", ".join(f"{name} {count}" for name, count in leakage["by_part"].items() if count)
    return (
        f"{where}: {leakage['duplicates']} of {leakage['test_examples']} test examples "
        f"({leakage['share']:.1%}) also appear in the training data ({parts}; compared: "
        f"{leakage['compared']}); their scores measure memory, not transfer"
    )


def repeated_next_items(domain: InteractionDomain) -> dict[str, Any]:
    """How many test cases (and what share) ask for an item the user's training history
    already holds (by id, or by identical normalised item text)."""
    keys = [
        " ".join(text.casefold().split()) or f"id {item}"
        for item, text in zip(domain.items, domain.item_text)
    ]
    item_key = np.array(["", *keys], dtype=object)  # item indices start at 1
    cases = domain.test
    found = np.array(
        [
            item_key[target] in set(item_key[domain.train[user]])
            for user, target in zip(cases.users, cases.targets)
        ],
        dtype=bool,
    )
    return {
        "compared": "each test case's next item against the user's training history, by item "
        "id and by identical item text after whitespace and case normalisation",
        "test_examples": len(cases),
        "duplicates": int(found.sum()),
        "share": round(float(found.mean()) if len(cases) else 0.0, 4),
        "by_part": {"target_train": int(found.sum())},
    }
