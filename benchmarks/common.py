"""Helpers the benchmark scripts share: where the research data is, and writing results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def require_data(folder: str) -> Path:
    path = SHARED_DATA / folder
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (the research data lives in ../shared/data)")
    return path


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def save(name: str, payload: dict[str, Any], markdown: str) -> None:
    from shoptransfer.files import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / f"{name}.json", payload)
    atomic_write_text(RESULTS / f"{name}.md", markdown)
