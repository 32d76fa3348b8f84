"""Data-parallel scaling: one epoch of fine-tuning and of SASRec in 1 and 2 processes.

    nice -n 19 .venv/bin/python benchmarks/scaling.py                 # both models, 1 and 2
    nice -n 19 .venv/bin/python benchmarks/scaling.py --processes 1 2 4 --examples 2000

Each measurement is the trainer's first epoch (its ``seconds``, validation excluded), run by
the library's recipe in a fresh process tree: ``accelerate launch --multi_gpu --num_processes
N`` (CPU processes over gloo without a GPU; one per GPU with them), or a plain process for 1.
Fine-tuning: ``fine-tune`` of MiniLM-L6 (max_length 64, batches of 16) on the first
``--examples`` Blitzer book reviews (the source stage only). SASRec: the recipe's settings of
benchmarks/scientific.py, batches of 256, on Amazon Scientific's training histories.
Throughput is examples per second; scaling efficiency is the throughput with N processes
over N times the throughput with one. Results: benchmarks/results/scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, require_data, save

WORKER = "--worker"


def fine_tune_epoch(examples: int) -> dict[str, Any]:
    """One epoch of the fine-tune recipe's source stage on ``examples`` book reviews."""
    from shoptransfer.backbones.cache import EmbeddingCache
    from shoptransfer.catalogue import make_recipe
    from shoptransfer.config import parse_config
    from shoptransfer.data import read_domain
    from shoptransfer.data.domain import Domain
    from shoptransfer.recipes.base import FitData

    folder = require_data("blitzer_reviews")
    config = parse_config(
        {"source": {"path": str(folder / "books")}, "target": {"path": str(folder / "kitchen")}},
        "scaling",
    )
    books = read_domain(config.source)
    drawn = np.random.default_rng(0).permutation(len(books))[:examples]  # both labels
    source = books.subset(drawn)
    recipe = make_recipe("fine-tune", epochs=1, batch_size=16, backbone="minilm-l6")
    recipe.max_length = 64
    assert isinstance(source, Domain)
    recipe.fit(
        FitData(source=source, target=None, classes=source.classes, cache=EmbeddingCache(None))
    )
    return recipe.history_[0]


def sasrec_epoch() -> dict[str, Any]:
    """One epoch of SASRec (benchmarks/scientific.py's settings) on Amazon Scientific."""
    from scientific import SASREC, domains

    from shoptransfer.catalogue import make_recipe
    from shoptransfer.recipes.base import FitData

    _, target = domains()
    recipe = make_recipe("sasrec", **{**SASREC, "batch_size": 256, "epochs": 1})
    recipe.fit(FitData(source=None, target=target))
    return recipe.history_[0]


def worker(model: str, examples: int) -> None:
    from shoptransfer.parallel import is_main, processes

    record = fine_tune_epoch(examples) if model == "fine-tune" else sasrec_epoch()
    if is_main():
        print(json.dumps({"model": model, "processes": processes()[1], **record}), flush=True)


def measure(model: str, processes: int, examples: int) -> dict[str, Any]:
    """One epoch of ``model`` in ``processes`` processes (a fresh process tree)."""
    script = [str(Path(__file__).resolve()), WORKER, model, "--examples", str(examples)]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", str(processes), "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    command = [*launcher, *script] if processes > 1 else [sys.executable, *script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SHOPTRANSFER_PRECISION": "fp32"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{model} with {processes} process(es) failed:\n{done.stderr[-3000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    record = json.loads(line)
    seconds = record["seconds"]
    return {
        "model": model,
        "processes": processes,
        "examples": record["examples"],
        "epoch_seconds": round(seconds, 2),
        "examples_per_second": round(record["examples"] / seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Data-parallel scaling: one epoch in 1 and 2 processes",
        "",
        f"Command: `{payload['command']}`. Machine: {payload['machine']}. {payload['note']}"
        " Load average at the end (1, 5, 15 min): "
        + ", ".join(map(str, payload.get("load_average_1_5_15_min", [])))
        + ".",
        "",
        "| model | processes | examples | epoch (s) | examples/s | scaling efficiency |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in payload["rows"]:
        lines.append(
            f"| {row['model']} | {row['processes']} | {row['examples']} | "
            f"{row['epoch_seconds']} | {row['examples_per_second']} | "
            f"{row['scaling_efficiency']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(WORKER, choices=["fine-tune", "sasrec"])
    parser.add_argument("--models", nargs="+", default=["fine-tune", "sasrec"])
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--examples", type=int, default=800, help="fine-tuning examples")
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md from the JSON")
    args = parser.parse_args()
    if args.markdown:
        payload = json.loads((ROOT / "benchmarks" / "results" / "scaling.json").read_text())
        save("scaling", payload, markdown(payload))
        return
    if args.worker:
        worker(args.worker, args.examples)
        return
    rows = []
    for model in args.models:
        measured = [measure(model, n, args.examples) for n in args.processes]
        base = measured[0]["examples_per_second"] / args.processes[0]
        for row in measured:
            row["scaling_efficiency"] = row["examples_per_second"] / (row["processes"] * base)
            rows.append(row)
            print(row, flush=True)
    import torch

    payload = {
        "command": "nice -n 19 .venv/bin/python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        "note": "One thread per process (OMP_NUM_THREADS=1), fp32; the epoch's training "
        "seconds, validation excluded. Measured while other jobs shared the cores, so the "
        "efficiency is a lower bound of what an idle machine gives.",
        "torch": torch.__version__,
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    save("scaling", payload, markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
