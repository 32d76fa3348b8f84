"""Rebuild the bundled demo sample from the full Blitzer data (a maintainer's script).

    python scripts/make_demo_data.py ../shared/data/blitzer_reviews

Keeps 300 reviews per class per domain, chosen with a fixed seed, in the original format,
gzip-compressed, under src/shoptransfer/demo_data/blitzer/.
"""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

PER_CLASS = 300
OUT = Path(__file__).resolve().parents[1] / "src" / "shoptransfer" / "demo_data" / "blitzer"


def main(root: Path) -> None:
    for domain in ("books", "dvd", "electronics", "kitchen"):
        for polarity in ("positive", "negative"):
            raw = (root / domain / f"{polarity}.parsed").read_bytes().decode("utf-8")
            raw = raw.replace("\r\n", "\n").strip()
            body = raw.removeprefix("<reviews>").removesuffix("</reviews>")
            elements = [e + "</review>" for e in body.split("</review>") if e.strip()]
            chosen = sorted(
                random.Random(f"{domain}-{polarity}").sample(range(len(elements)), PER_CLASS)
            )
            text = "<reviews>" + "".join(elements[i] for i in chosen) + "</reviews>\n"
            target = OUT / domain / f"{polarity}.parsed.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
