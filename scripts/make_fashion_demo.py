"""Rebuild the bundled product-photo sample (src/shoptransfer/demo_data/fashion) from the full
Myntra data in ../shared/data/fashion_products: 30 photos of each of 5 article types for men and
for women (300 in all), drawn with a fixed seed.

    .venv/bin/python scripts/make_fashion_demo.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fashion_products"
OUT = ROOT / "src" / "shoptransfer" / "demo_data" / "fashion"
TYPES = ["Tshirts", "Watches", "Sports Shoes", "Sunglasses", "Wallets"]
PER_CLASS = 30


def main() -> None:
    if not DATA.exists():
        sys.exit(f"data not found: {DATA}")
    labels = pd.read_csv(DATA / "labels.csv")
    for gender in ("Men", "Women"):
        for kind in TYPES:
            rows = labels[(labels.gender == gender) & (labels.articleType == kind)]
            chosen = rows.sample(PER_CLASS, random_state=0).sort_values("id")
            folder = OUT / gender.lower() / kind.lower().replace(" ", "-")
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            for image in chosen.image:
                shutil.copyfile(DATA / image, folder / Path(image).name)
    print(f"wrote {2 * len(TYPES) * PER_CLASS} images to {OUT}")


if __name__ == "__main__":
    main()
