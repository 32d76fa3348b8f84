"""Serving an adapted model: speed, latency, memory and accuracy of PyTorch fp32, ONNX fp32 and
ONNX int8, in process and behind ``shoptransfer serve``.

    .venv/bin/python benchmarks/serving.py --part train       # the two models and their exports
    .venv/bin/python benchmarks/serving.py --part export      # export them again
    .venv/bin/python benchmarks/serving.py --part model       # in process: batch 1 and 32
    .venv/bin/python benchmarks/serving.py --part http        # a real server under load
    .venv/bin/python benchmarks/serving.py --part int8        # int8 methods on the text model
                                                  # (needs `pip install onnx_ir` as well)
    .venv/bin/python benchmarks/serving.py --markdown         # rewrites the .md from the JSON

The models (``--part train``; run folders under benchmarks/runs/, not in git):

- **text**: all-MiniLM-L6-v2 fine-tuned (recipe ``fine-tune``, no source; bottom 3 layers
  frozen, 3 target epochs, fp32) on the Blitzer kitchen reviews: the 2,000 labelled reviews
  split in half (split seed 0), all 1,000 of the pool as training labels, the other 1,000 as
  test set.
- **image**: EfficientNet-Lite0 (ImageNet, 224 px, fp32) frozen features under a logistic
  regression (recipe ``frozen-features``), on the 20 largest article types of the fashion
  photos (as benchmarks/fashion.py: 20 % test, split seed 0), 20 photos per class.

Each is exported with ``shoptransfer export --quantize int8``; the export's self-check (on the
run's test set) gives the accuracy and the label agreement of each backend.

``--part model`` times the predictors in this process: ``predict_proba`` on batches of 1 and
32 test inputs (the same inputs, in the same order, for every backend), after a warm-up; PyTorch
and onnxruntime on the threads they pick for this process (both: the usable cores). PyTorch in
bf16 (the model's weights, autocast) is timed beside fp32: the precision row.

``--part http`` starts ``shoptransfer serve`` in its own process for each backend (``--no-onnx``;
``--onnx-precision fp32``; ``--onnx-precision int8``), waits for ``/ready``, then a client in
this process keeps 1, 8 or 32 requests in flight (each request 1 or 32 inputs: texts as JSON,
photos as a multipart upload) for ``--seconds`` (and at least two requests per connection);
latency is per request, end to end; throughput is inputs answered per second. The server's
resident memory is read from /proc after loading and at the end (its peak, VmHWM). The client
shares the machine's cores with the server: the numbers are for both on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, ROOT, RUNS, load_json, require_data, save

NAME = "serving"
SEEDS = [0]
BACKENDS = ["pytorch-fp32", "onnx-fp32", "onnx-int8"]
BATCHES = [1, 32]
CONCURRENCY = [1, 8, 32]
GOAL = (
    "ONNX int8 >= 3x PyTorch fp32 throughput at <= 1 point accuracy loss; p99 latency at "
    "batch 1 under 50 ms for the text model on 2 cores"
)
KITCHEN_TEXT = {
    "name": "serving-kitchen",
    "target": {
        "path": str(require_data("blitzer_reviews") / "kitchen"),
        "format": "blitzer",
        "name": "kitchen",
    },
    "test_fraction": 0.5,
    "split_seed": 0,
    "budgets": ["all"],
    "seeds": SEEDS,
    "recipes": [
        {
            "name": "fine-tune",
            "frozen_layers": 3,
            "target_epochs": 3,
            "precision": "fp32",
        }
    ],
}


def fashion_config() -> dict[str, Any]:
    from fashion import SPLIT_SEED, TEST_FRACTION, photos, tables

    return {
        "name": "serving-fashion",
        "target": photos(tables()["articletype-top20"], "articleType"),
        "test_fraction": TEST_FRACTION,
        "split_seed": SPLIT_SEED,
        "budgets": [20],
        "seeds": SEEDS,
        "recipes": [
            {"name": "frozen-features", "backbone": "efficientnet-lite0", "precision": "fp32"}
        ],
    }


def machine() -> dict[str, Any]:
    from shoptransfer.backbones.precision import cpu_flags, native_bf16, usable_cores

    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    flags = cpu_flags()
    return {
        "cpu": model,
        "usable_cores": usable_cores(),
        "flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"}),
        "native_bf16": native_bf16(),
        "python": platform.python_version(),
    }


def load_payload() -> dict[str, Any]:
    payload = load_json(RESULTS / f"{NAME}.json")
    payload.setdefault("benchmark", NAME)
    payload.setdefault("goal", GOAL)
    payload.setdefault("models", {})
    return payload


def store(payload: dict[str, Any]) -> None:
    save(NAME, payload, markdown(payload))


# -- the models ------------------------------------------------------------------------------


def train(payload: dict[str, Any], which: list[str]) -> None:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config
    from shoptransfer.runs import load_results

    configs = {"text": KITCHEN_TEXT, "image": fashion_config()}
    for kind in which:
        config = {"output_dir": str(RUNS), **configs[kind]}
        started = time.perf_counter()
        run_dir = run_experiment(parse_config(config, f"serving {kind}"), show_progress=False)
        trained = time.perf_counter() - started
        record = load_results(run_dir)["results"][0]
        payload["models"][kind] = {
            "run_dir": str(Path(run_dir).relative_to(ROOT)),
            "config": configs[kind],
            "recipe": record["recipe"],
            "train_seconds": round(trained, 1),
        }
        export(payload, [kind])


def export(payload: dict[str, Any], which: list[str]) -> None:
    """Export each model with its int8 copy (again), recording the export's self-check."""
    from shoptransfer.api import export_model

    for kind in which:
        model = payload["models"][kind]
        started = time.perf_counter()
        folder, card = export_model(ROOT / model["run_dir"], quantize="int8")
        model.update(
            {
                "export_dir": str(folder.relative_to(ROOT)),
                "export_seconds": round(time.perf_counter() - started, 1),
                "quantization": card["quantization"],
                "check": card["check"],
                "sizes_mib": {
                    name: round(entry["bytes"] / 2**20, 1)
                    for name, entry in card["files"].items()
                    if name.endswith(".onnx")
                },
            }
        )
        print(f"{kind}: export {folder}", flush=True)
        print(json.dumps(card["check"], indent=1)[:2000], flush=True)
        store(payload)


def test_inputs(run_dir: Path, count: int) -> list[str]:
    """The first ``count`` inputs of a run's test set (texts, or photo paths)."""
    from shoptransfer.backbones.cache import EmbeddingCache
    from shoptransfer.config import load_config
    from shoptransfer.progress import showing_progress
    from shoptransfer.tasks import make_task

    task = make_task(load_config(run_dir / "config.yaml"))
    with showing_progress(False):
        data = task.prepare(EmbeddingCache(None))
    return [str(x) for x in list(data.test.inputs)[:count]]


def predictor_for(model: dict[str, Any], backend: str) -> Any:
    from shoptransfer.api import load_model
    from shoptransfer.export.runtime import OnnxPredictor

    if backend.startswith("onnx-"):
        return OnnxPredictor(ROOT / model["export_dir"], precision=backend.removeprefix("onnx-"))
    predictor = load_model(ROOT / model["run_dir"])
    precision = backend.removeprefix("pytorch-")
    for module in predictor.model.modules():
        if hasattr(module, "precision"):
            module.precision = precision  # the weights stay fp32; bf16 autocasts
    return predictor


def time_calls(predictor: Any, inputs: list[str], batch: int, calls: int) -> dict[str, Any]:
    batches = [[inputs[(i * batch + j) % len(inputs)] for j in range(batch)] for i in range(calls)]
    predictor.predict_proba(batches[0])  # warm-up
    seconds = []
    for chunk in batches:
        started = time.perf_counter()
        predictor.predict_proba(chunk)
        seconds.append(time.perf_counter() - started)
    return latency_summary(seconds, batch, sum(seconds))


def latency_summary(seconds: list[float], batch: int, wall: float) -> dict[str, Any]:
    ms = np.asarray(seconds) * 1000
    return {
        "requests": len(seconds),
        "batch": batch,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "inputs_per_s": round(len(seconds) * batch / wall, 2),
        "wall_s": round(wall, 2),
    }


def part_model(payload: dict[str, Any], which: list[str], calls: dict[int, int]) -> None:
    import torch

    for kind in which:
        model = payload["models"][kind]
        inputs = test_inputs(ROOT / model["run_dir"], 256)
        rows: dict[str, Any] = {}
        for backend in ["pytorch-fp32", "pytorch-bf16", "onnx-fp32", "onnx-int8"]:
            predictor = predictor_for(model, backend)
            rows[backend] = {
                str(batch): time_calls(predictor, inputs, batch, calls[batch]) for batch in BATCHES
            }
            print(kind, backend, json.dumps(rows[backend]), flush=True)
            del predictor
        model["in_process"] = {
            "rows": rows,
            "torch_threads": torch.get_num_threads(),
            "measured": stamp(),
        }
        if kind == "text":
            model["bf16_accuracy"] = bf16_accuracy(model)
        store(payload)


def bf16_accuracy(model: dict[str, Any]) -> dict[str, Any]:
    """Metrics of PyTorch bf16 on the run's test set, and its agreement with fp32."""
    from shoptransfer.api import _held_out
    from shoptransfer.export.exporter import Precomputed, compare_predictions, predictions_of

    fp32 = predictor_for(model, "pytorch-fp32")
    held_out, note, _ = _held_out(ROOT / model["run_dir"], fp32)
    assert held_out is not None and held_out.score is not None, note
    bf16 = predictor_for(model, "pytorch-bf16")
    reference = predictions_of(fp32, held_out.inputs, "classes")
    candidate = predictions_of(bf16, held_out.inputs, "classes")
    result = compare_predictions(reference, candidate, "classes")
    result["metrics"] = held_out.score(Precomputed(candidate, "classes", fp32.classes, []))
    return result


def stamp() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_before": round(os.getloadavg()[0], 2),
    }


# -- int8 methods ---------------------------------------------------------------------------


def selection_texts(count: int) -> list[str]:
    """Reviews the int8 method is chosen on: distinct lines of the electronics reviews without
    labels (not the kitchen test set the table reports; agreement needs no labels)."""
    path = require_data("blitzer_reviews") / "electronics" / "unlabeled_fdumtl.txt"
    lines = list(dict.fromkeys(line.strip() for line in path.read_text().splitlines()))
    return [line for line in lines if line][:count]


def int8_variants(fp32: Path, out: Path) -> dict[str, Path]:
    """The fp32 graph quantised by each method this part compares."""
    import logging

    logging.disable(logging.WARNING)  # the quantisers' advice and progress notes
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    out.mkdir(parents=True, exist_ok=True)
    variants: dict[str, Path] = {}
    for name, per_channel in (("dynamic, per tensor", False), ("dynamic, per channel", True)):
        variants[name] = out / f"dynamic-{'channel' if per_channel else 'tensor'}.onnx"
        quantize_dynamic(
            str(fp32), str(variants[name]), weight_type=QuantType.QInt8, per_channel=per_channel
        )
    graph = onnx.load(str(fp32)).graph
    ffn_out = [n.name for n in graph.node if n.op_type == "MatMul" and "output/dense" in n.name]
    ffn_out = [n for n in ffn_out if "attention" not in n]
    name = "dynamic, per channel, FFN output projections fp32"
    variants[name] = out / "dynamic-channel-keep-ffn-out.onnx"
    quantize_dynamic(
        str(fp32),
        str(variants[name]),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=ffn_out,
    )

    ffn_in = [
        n.name for n in graph.node if n.op_type == "MatMul" and "intermediate/dense" in n.name
    ]
    for name, blockwise in (
        ("dynamic, per channel; FFN output projections blockwise", ffn_out),
        ("dynamic, per channel; FFN layers blockwise", ffn_out + ffn_in),
    ):
        # the FFN MatMuls as 8-bit weights in blocks of 32, activations quantised per block
        middle = out / "mixed-middle.onnx"
        quantize_dynamic(
            str(fp32),
            str(middle),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=blockwise,
        )
        config = DefaultWeightOnlyQuantConfig(
            block_size=32, is_symmetric=True, accuracy_level=4, bits=8
        )
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(middle)), nodes_to_include=blockwise, algo_config=config
        )
        quantizer.process()
        variants[name] = out / f"mixed-{len(blockwise)}.onnx"
        quantizer.model.save_model_to_file(str(variants[name]), False)
        middle.unlink()
    for block, level in ((32, 4), (128, 4), (32, 0)):
        name = f"int8 weights in blocks of {block}, " + (
            "int8 compute (activations per block)" if level == 4 else "fp32 compute"
        )
        config = DefaultWeightOnlyQuantConfig(
            block_size=block, is_symmetric=True, accuracy_level=level, bits=8
        )
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), algo_config=config)
        quantizer.process()
        variants[name] = out / f"nbits8-b{block}-a{level}.onnx"
        quantizer.model.save_model_to_file(str(variants[name]), False)
    return variants


def part_int8(payload: dict[str, Any], calls: int) -> None:
    """Int8 methods on the text model: agreement with fp32 on the selection reviews (where the
    method is chosen) and on the kitchen test set (reported), size and batch-32 speed."""
    import onnxruntime as ort

    model = payload["models"]["text"]
    export = ROOT / model["export_dir"]
    variants = int8_variants(export / "model.onnx", RUNS / "int8-variants")
    selection = selection_texts(1000)
    test = test_inputs(ROOT / model["run_dir"], 10**9)
    fp32 = predictor_for(model, "onnx-fp32")
    references = {"selection": fp32.predict_proba(selection), "test": fp32.predict_proba(test)}
    rows: dict[str, Any] = {}
    for name, path in {"fp32": export / "model.onnx", **variants}.items():
        candidate = predictor_for(model, "onnx-fp32")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one thread: steadier beside other work
        candidate.session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        row: dict[str, Any] = {"mib": round(path.stat().st_size / 2**20, 1)}
        for part, texts in (("selection", selection), ("test", test)):
            probabilities = candidate.predict_proba(texts)
            reference = references[part]
            row[part] = {
                "agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                "max_probability_difference": float(np.abs(probabilities - reference).max()),
            }
        row["batch32"] = time_calls(candidate, test, 32, calls)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    model["int8_methods"] = {
        "rows": rows,
        "selection": "1,000 distinct electronics reviews without labels (unlabeled_fdumtl.txt)",
        "measured": stamp(),
    }
    store(payload)


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def start_server(run_dir: Path, backend: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    flags = {
        "pytorch-fp32": ["--no-onnx"],
        "onnx-fp32": ["--onnx-precision", "fp32"],
        "onnx-int8": ["--onnx-precision", "int8"],
    }[backend]
    command = [
        str(Path(sys.executable).parent / "shoptransfer"),
        "serve",
        str(run_dir),
        "--port",
        str(port),
        *flags,
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            answer = httpx.get(f"{url}/ready", timeout=5)
            if answer.status_code == 200:
                served = answer.json()["backend"]
                assert served == backend.replace("pytorch-fp32", "pytorch"), served
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("serve did not become ready in 300 s")


def request_body(kind: str, inputs: list[str], start: int, batch: int) -> dict[str, Any]:
    chosen = [inputs[(start + j) % len(inputs)] for j in range(batch)]
    if kind == "text":
        return {"json": {"texts": chosen}}
    return {
        "files": [("images", (Path(p).name, Path(p).read_bytes(), "image/jpeg")) for p in chosen]
    }


async def load(
    url: str, kind: str, inputs: list[str], batch: int, concurrency: int, seconds: float
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    failures = 0
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal failures
            done = 0
            while done < 2 or time.perf_counter() < deadline:
                body = request_body(kind, inputs, next(counter) * batch, batch)
                started = time.perf_counter()
                answer = await client.post("/v1/classify", **body)
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200 or len(answer.json()["predictions"]) != batch:
                    failures += 1
                done += 1

        await client.post("/v1/classify", **request_body(kind, inputs, 0, batch))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    summary = latency_summary(latencies, batch, wall)
    summary["concurrency"] = concurrency
    summary["failures"] = failures
    return summary


def part_http(payload: dict[str, Any], which: list[str], seconds: float) -> None:
    for kind in which:
        model = payload["models"][kind]
        run_dir = ROOT / model["run_dir"]
        inputs = test_inputs(run_dir, 256)
        rows: dict[str, Any] = {}
        for backend in BACKENDS:
            server, url = start_server(run_dir, backend)
            try:
                memory = {"after_start": rss_mib(server.pid)}
                cells = []
                for batch in BATCHES:
                    for concurrency in CONCURRENCY:
                        cell = asyncio.run(load(url, kind, inputs, batch, concurrency, seconds))
                        print(kind, backend, json.dumps(cell), flush=True)
                        cells.append(cell)
                memory["end"] = rss_mib(server.pid)
            finally:
                server.send_signal(signal.SIGINT)
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    server.kill()
            rows[backend] = {"cells": cells, "memory_mib": memory}
        model["http"] = {"rows": rows, "seconds_per_cell": seconds, "measured": stamp()}
        store(payload)


# -- the markdown ------------------------------------------------------------------------------


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Serving: PyTorch fp32 vs ONNX fp32 vs ONNX int8\n",
        "Command: `.venv/bin/python benchmarks/serving.py --part train|model|http` (protocol in "
        "the script's docstring). Goal: " + GOAL + ".\n",
    ]
    if "machine" in payload:
        m = payload["machine"]
        lines.append(
            f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, flags {', '.join(m['flags'])}"
            f" (native bf16: {m['native_bf16']}); Python {m['python']}.\n"
        )
    for kind, title in (
        ("text", "Text: fine-tuned MiniLM, Blitzer kitchen"),
        ("image", "Image: EfficientNet-Lite0 frozen features, fashion photos"),
    ):
        model = payload["models"].get(kind)
        if not model:
            continue
        lines += [f"## {title}\n", *model_lines(model), ""]
    return "\n".join(lines) + "\n"


def model_lines(model: dict[str, Any]) -> list[str]:
    check = model["check"]
    metric = "accuracy"
    lines = [
        f"Run `{model['run_dir']}`, export `{model['export_dir']}`; test set: {check['data']}.\n",
        "| backend | size (MiB) | agreement with PyTorch | largest Δp | accuracy | macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    pt = check["pytorch"]["metrics"]
    lines.append(
        f"| PyTorch fp32 | — | — | — | {100 * pt[metric]:.1f} | {100 * pt['macro_f1']:.1f} |"
    )
    if "bf16_accuracy" in model:
        b = model["bf16_accuracy"]
        lines.append(
            f"| PyTorch bf16 | — | {100 * b['agreement']:.1f} % | "
            f"{b['max_probability_difference']:.3f} | {100 * b['metrics'][metric]:.1f} | "
            f"{100 * b['metrics']['macro_f1']:.1f} |"
        )
    for precision, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
        c = check[precision]
        lines.append(
            f"| ONNX {precision} | {model['sizes_mib'].get(file, '—')} | "
            f"{100 * c['agreement']:.1f} % | {c['max_probability_difference']:.2g} | "
            f"{100 * c['metrics'][metric]:.1f} | {100 * c['metrics']['macro_f1']:.1f} |"
        )
    if "int8_methods" in model:
        methods = model["int8_methods"]
        lines += [
            "",
            "Int8 methods on this model (chosen on the agreement with fp32 over "
            f"{methods['selection']}; the kitchen test set is reported, not chosen on; "
            "batch 32 in process, one onnxruntime thread):\n",
            "| method | MiB | agreement (selection) | agreement (test) | largest Δp (test) |"
            " texts/s |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in methods["rows"].items():
            lines.append(
                f"| {name} | {row['mib']} | {100 * row['selection']['agreement']:.1f} % | "
                f"{100 * row['test']['agreement']:.1f} % | "
                f"{row['test']['max_probability_difference']:.2g} | "
                f"{row['batch32']['inputs_per_s']:.1f} |"
            )
    if "in_process" in model:
        rows = model["in_process"]["rows"]
        base = {b: rows["pytorch-fp32"][str(b)]["inputs_per_s"] for b in BATCHES}
        lines += [
            "",
            f"In process (`predict_proba`, torch threads {model['in_process']['torch_threads']};"
            f" load average before: {model['in_process']['measured']['load_before']}):\n",
            "| backend | batch | inputs/s (× PyTorch fp32) | p50 ms | p99 ms | calls |",
            "|---|---|---|---|---|---|",
        ]
        for backend, per_batch in rows.items():
            for batch in BATCHES:
                r = per_batch[str(batch)]
                lines.append(
                    f"| {backend} | {batch} | {r['inputs_per_s']:.1f} "
                    f"({r['inputs_per_s'] / base[batch]:.2f}×) | {r['p50_ms']:.1f} | "
                    f"{r['p99_ms']:.1f} | {r['requests']} |"
                )
    if "http" in model:
        http = model["http"]
        lines += [
            "",
            f"Behind `shoptransfer serve` (client in another process on the same cores; "
            f"{http['seconds_per_cell']} s per cell; load average before: "
            f"{http['measured']['load_before']}):\n",
            "| backend | batch | concurrency | inputs/s | p50 ms | p99 ms | requests | failures |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for backend, row in http["rows"].items():
            for c in row["cells"]:
                lines.append(
                    f"| {backend} | {c['batch']} | {c['concurrency']} | {c['inputs_per_s']:.1f} |"
                    f" {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {c['requests']} | {c['failures']} |"
                )
        lines += [
            "",
            "| backend | server RSS after start (MiB) | at the end | peak |",
            "|---|---|---|---|",
        ]
        for backend, row in http["rows"].items():
            m = row["memory_mib"]
            lines.append(
                f"| {backend} | {m['after_start']['VmRSS']} | {m['end']['VmRSS']} | "
                f"{m['end']['VmHWM']} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part", choices=["train", "export", "model", "http", "int8"], action="append"
    )
    parser.add_argument("--models", nargs="+", choices=["text", "image"], default=["text", "image"])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load-test cell")
    parser.add_argument("--calls", type=int, nargs=2, default=[200, 20], help="batch 1, 32")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    payload = load_payload()
    payload["machine"] = machine()
    if args.markdown:
        store(payload)
        return
    for part in args.part or []:
        if part == "train":
            train(payload, args.models)
        elif part == "export":
            export(payload, args.models)
        elif part == "int8":
            part_int8(payload, args.calls[1])
        elif part == "model":
            part_model(payload, args.models, dict(zip(BATCHES, args.calls)))
        else:
            part_http(payload, args.models, args.seconds)


if __name__ == "__main__":
    main()
