"""Bring-your-own-features check: Office-Caltech10 SURF features, unsupervised adaptation.

    .venv/bin/python benchmarks/office_caltech.py

Each pair trains on all labeled source images' 800-d SURF bag-of-words vectors, sees the target
vectors without labels, and is tested on every target image (the protocol of the papers whose
numbers the data README lists). Vectors are scaled to unit L1 norm and then z-scored with the
pooled source and target statistics (no labels involved). 3 seeds. Writes
benchmarks/results/office_caltech.json and .md, with the published accuracies beside ours.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import require_data, save

from shoptransfer.api import compare
from shoptransfer.config import parse_config
from shoptransfer.data import read_features

PAIRS = [
    ("Caltech10", "amazon"),
    ("amazon", "Caltech10"),
    ("amazon", "webcam"),
    ("amazon", "dslr"),
    ("webcam", "amazon"),
    ("dslr", "amazon"),
]
SHORT = {"Caltech10": "C", "amazon": "A", "webcam": "W", "dslr": "D"}
PUBLISHED = {  # accuracy %, from ../shared/data/README.md (Gong et al. 2012 and later papers)
    "1-NN": [23.7, 26.0, 29.8, 25.5, 23.0, 28.5],
    "SVM": [55.6, 45.8, 42.0, 39.7, 34.8, 26.6],
    "GFK": [41.0, 40.3, 39.0, 36.3, 29.8, 32.1],
    "TCA": [38.2, 37.8, 37.6, 33.1, 30.1, 32.2],
    "JDA": [44.8, 39.4, 38.0, 39.5, 32.8, 33.1],
}
RECIPES = ["frozen-features", "coral-closed-form", "mlp", "mlp-coral", "mlp-mmd", "mlp-dann"]


def prepare(folder: Path, tmp: Path, source: str, target: str) -> tuple[Path, Path]:
    """L1-normalise each vector, then z-score with the pooled statistics of both domains."""
    domains = {
        name: read_features(folder / f"{name}_SURF_L10.mat", vectors="fts", label="labels")
        for name in (source, target)
    }
    l1 = {
        n: d.vectors / np.maximum(d.vectors.sum(axis=1, keepdims=True), 1e-9)
        for n, d in domains.items()
    }
    pooled = np.vstack(list(l1.values()))
    mean, std = pooled.mean(axis=0), pooled.std(axis=0) + 1e-6
    paths = []
    for name, domain in domains.items():
        path = tmp / f"{name}.npz"
        np.savez(path, vectors=(l1[name] - mean) / std, label=np.array(domain.labels))
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    folder = require_data("office_caltech10_surf")
    payload: dict[str, Any] = {"pairs": {}, "published": PUBLISHED}
    with tempfile.TemporaryDirectory() as tmp:
        for source, target in PAIRS:
            source_path, target_path = prepare(folder, Path(tmp), source, target)
            pair = f"{SHORT[source]}->{SHORT[target]}"
            config = parse_config(
                {
                    "name": f"office-{pair.replace('->', '-')}",
                    "source": {"path": str(source_path), "vectors": "vectors"},
                    "target": {"path": str(target_path), "vectors": "vectors"},
                    "target_test": {"path": str(target_path), "vectors": "vectors"},
                    "transductive": True,
                    "recipes": RECIPES,
                    "budgets": [0],
                    "seeds": [0, 1, 2],
                    "output_dir": tmp,
                    "save_models": False,
                },
                "benchmark",
            )
            started = time.perf_counter()
            run_dir = compare(config, show_progress=False)
            from shoptransfer.runs import load_results

            results = load_results(run_dir)
            payload["pairs"][pair] = {
                "seconds": round(time.perf_counter() - started, 1),
                "domain_gap": results["domain_gap"],
                "recipes": {
                    row["recipe"]: {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]}
                    for row in results["comparison"]
                    if "accuracy" in row
                },
            }
            print(
                pair,
                {
                    r: round(v["accuracy"]["mean"] * 100, 1)
                    for r, v in payload["pairs"][pair]["recipes"].items()
                },
                flush=True,
            )
    save("office_caltech", payload, markdown(payload))


def markdown(payload: dict[str, Any]) -> str:
    pairs = list(payload["pairs"])
    lines = [
        "# Office-Caltech10 SURF features: unsupervised adaptation\n",
        "Command: `.venv/bin/python benchmarks/office_caltech.py`. Accuracy (%) on all "
        "target images; ours: mean ± std over 3 seeds. Published rows as listed in the "
        "data README (Gong et al., CVPR 2012, and the TCA/JDA papers).\n",
        "| method | " + " | ".join(pairs) + " | mean |",
        "|---|" + "---|" * (len(pairs) + 1),
    ]
    for name, values in payload["published"].items():
        lines.append(
            f"| {name} (published) | "
            + " | ".join(f"{v:.1f}" for v in values)
            + f" | {np.mean(values):.1f} |"
        )
    for recipe in RECIPES:
        cells = [payload["pairs"][p]["recipes"][recipe]["accuracy"] for p in pairs]
        lines.append(
            f"| shoptransfer {recipe} | "
            + " | ".join(f"{c['mean'] * 100:.1f} ± {c['std'] * 100:.1f}" for c in cells)
            + f" | {np.mean([c['mean'] for c in cells]) * 100:.1f} |"
        )
    lines.append("")
    lines.append(
        "Proxy A-distance of each pair (on the scaled vectors): "
        + ", ".join(
            f"{p} {payload['pairs'][p]['domain_gap']['proxy_a_distance']:.2f}" for p in pairs
        )
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
