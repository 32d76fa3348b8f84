"""scratch-tfidf on the Chinese review sets, in-domain, with each tokenizer (the README's table
under "Chinese and other languages"; one seed, quick).

    .venv/bin/python scripts/measure_chinese_tokenizers.py ../shared/data/chinese_reviews

``words`` is how scratch-tfidf read every text before it had a tokenizer option; ``auto`` picks
``jieba`` (words and character n-grams) for these files when jieba is installed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from shoptransfer.config import parse_config
from shoptransfer.runner import run
from shoptransfer.runs import load_results

FILES = ("waimai_10k.csv", "ChnSentiCorp_htl_all.csv")
TOKENIZERS = ("words", "auto", "chars")


def main(root: Path) -> None:
    with tempfile.TemporaryDirectory() as runs:
        for name in FILES:
            config = parse_config(
                {
                    "name": f"tokenizers-{Path(name).stem}",
                    "target": {"path": str(root / name), "text": "review"},
                    "test_fraction": 0.3,
                    "budgets": [64, "all"],
                    "seeds": [0],
                    "save_models": False,
                    "output_dir": runs,
                    "recipes": [
                        {"name": "scratch-tfidf", "tokenizer": tokenizer, "label": tokenizer}
                        for tokenizer in TOKENIZERS
                    ],
                },
                "measure_chinese_tokenizers",
            )
            for record in load_results(run(config, show_progress=False))["results"]:
                metrics = record["metrics"]
                print(
                    f"{name:<26} {record['label']:<6} labels/class {record['budget']!s:<4} "
                    f"accuracy {100 * metrics['accuracy']:.1f}  "
                    f"macro-F1 {100 * metrics['macro_f1']:.1f}"
                )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
