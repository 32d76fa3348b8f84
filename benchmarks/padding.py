"""What a text batch computes at 128, 256 and 512 tokens: random batches against batches grouped
by length (``group_by_length``), on the four Blitzer domains. No training.

    .venv/bin/python benchmarks/padding.py

Each domain's 2,000 labelled reviews are tokenised as the Blitzer recipe reads them (MiniLM,
head+tail truncation) and passed once through ``Examples.batches`` in shuffled batches of 16
(seed 0), as the trainer draws them. A batch is padded to its longest text, so it computes
``16 x longest`` token positions in its linear layers and ``16 x longest²`` in attention; the
table gives both per pass, and the real tokens. Writes results/padding.{json,md}.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from common import require_data, save

DOMAINS = ["books", "dvd", "electronics", "kitchen"]
LENGTHS = [128, 256, 512]
BATCH = 16


def pass_cost(lengths: dict[str, int], texts: list[str], grouped: bool) -> tuple[int, int]:
    """Token positions and attention cells of one shuffled pass (seed 0)."""
    from shoptransfer.data.examples import Examples

    examples = Examples(texts, np.zeros(len(texts), dtype=np.int64))
    positions = attention = 0
    for batch in examples.batches(BATCH, torch.Generator().manual_seed(0), by_length=grouped):
        longest = max(lengths[text] for text in batch["texts"])
        positions += len(batch["texts"]) * longest
        attention += len(batch["texts"]) * longest**2
    return positions, attention


def measure() -> dict[str, Any]:
    from shoptransfer.backbones.text import TextEncoder
    from shoptransfer.data import read_blitzer

    folder = require_data("blitzer_reviews")
    out: dict[str, Any] = {}
    for length in LENGTHS:
        encoder = TextEncoder("minilm-l6", max_length=length, truncation="head+tail")
        for name in DOMAINS:
            texts = list(read_blitzer(folder / name, name=name).inputs)
            ids = encoder.tokenize(texts)["attention_mask"].sum(dim=1).tolist()
            lengths = dict(zip(texts, ids, strict=True))
            random, random_attention = pass_cost(lengths, texts, grouped=False)
            grouped, grouped_attention = pass_cost(lengths, texts, grouped=True)
            out.setdefault(str(length), {})[name] = {
                "reviews": len(texts),
                "real_tokens": int(sum(ids)),
                "random": {"positions": random, "attention": random_attention},
                "grouped": {"positions": grouped, "attention": grouped_attention},
            }
            print(f"{length} {name}: {random:,} -> {grouped:,} positions", file=sys.stderr)
    return out


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Padding: random batches against batches grouped by length\n",
        "Command: `.venv/bin/python benchmarks/padding.py` (protocol in its docstring). One "
        f"shuffled pass over each Blitzer domain's 2,000 reviews in batches of {BATCH}, MiniLM "
        "tokens with head+tail truncation; token positions computed (batch size × longest "
        "text), summed over the four domains.\n",
        "| max_length | real tokens | random batches | grouped by length | saved | attention "
        "(random / grouped) |",
        "|---|---|---|---|---|---|",
    ]
    for length, domains in payload["lengths"].items():
        real = sum(d["real_tokens"] for d in domains.values())
        random = sum(d["random"]["positions"] for d in domains.values())
        grouped = sum(d["grouped"]["positions"] for d in domains.values())
        attention = sum(d["random"]["attention"] for d in domains.values()) / sum(
            d["grouped"]["attention"] for d in domains.values()
        )
        lines.append(
            f"| {length} | {real:,} | {random:,} | {grouped:,} ({grouped / real:.2f}× real) | "
            f"{random / grouped:.2f}× | {attention:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    payload = {"benchmark": "padding", "batch_size": BATCH, "lengths": measure()}
    save("padding", payload, markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
