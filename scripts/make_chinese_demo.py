"""Rebuild the bundled Chinese demo sample from the full ChineseNlpCorpus files (a maintainer's
script).

    python scripts/make_chinese_demo.py ../shared/data/chinese_reviews

Keeps 250 reviews per class of the hotel reviews (ChnSentiCorp_htl_all.csv) and of the
food-delivery reviews (waimai_10k.csv), chosen with a fixed seed, as gzip-compressed CSV files
(columns ``review``, ``label``: positive / negative) under src/shoptransfer/demo_data/chinese/.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import sys
from pathlib import Path

PER_CLASS = 250
FILES = {"hotel": "ChnSentiCorp_htl_all.csv", "waimai": "waimai_10k.csv"}
OUT = Path(__file__).resolve().parents[1] / "src" / "shoptransfer" / "demo_data" / "chinese"


def main(root: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for domain, name in FILES.items():
        with (root / name).open(encoding="utf-8", newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["review"].strip()]
        chosen = []
        for label, polarity in (("1", "positive"), ("0", "negative")):
            texts = [" ".join(row["review"].split()) for row in rows if row["label"] == label]
            picked = random.Random(f"{domain}-{polarity}").sample(texts, PER_CLASS)
            chosen += [(text, polarity) for text in picked]
        random.Random(domain).shuffle(chosen)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["review", "label"])
        writer.writerows(chosen)
        target = OUT / f"{domain}.csv.gz"
        target.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8"), mtime=0))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
