"""ONNX export of a neural classifier, with int8 quantisation and a self-check.

The exported graph is the whole path from what the model reads to what it predicts: a text
backbone (``input_ids`` and ``attention_mask``, dynamic batch and sequence axes) or an image
backbone (``pixels``, dynamic batch) — trained, or frozen under a head — then the head and its
softmax (class probabilities; one number for a regression; a probability output per head of a
multi-task model). A LoRA or (IA)³ adapter is merged into the backbone's weights first, so the
graph has plain layers. The graph is computed in fp32 whatever precision the PyTorch model ran
in. Int8 (:func:`write_int8`): for a text or vector model, onnxruntime's dynamic quantisation
(int8 weights, activations quantised at run time per batch); for an image model, static
quantisation calibrated on the run's training photos (dynamic quantisation of EfficientNet's
convolutions lost 10 points of accuracy and ran 8x slower than fp32: README, Export).

Every export checks itself on held-out inputs (the run's target test set): label agreement with
the PyTorch model, the largest probability difference, and the metrics of both, recorded in
``export.json`` beside the model. The folder is built under a temporary name and renamed into
place, so an interrupted export never leaves a half-written one.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.image import ImageEncoder
from shoptransfer.backbones.inputs import is_backbone
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.errors import ConfigError
from shoptransfer.export.runtime import (
    EXPORT_FILE,
    FP32_FILE,
    INT8_FILE,
    PREPROCESSING_FILE,
    TOKENIZER_FILE,
    ImageReader,
    OnnxPredictor,
    file_record,
    require,
)
from shoptransfer.files import atomic_write_json, atomic_write_text
from shoptransfer.recipes.neural import NeuralPredictor

OPSET = 17
GOAL_AGREEMENT = 0.995  # label agreement an int8 model should keep with PyTorch
QUANTIZATIONS = ("none", "int8")
INT8_METHOD = (
    "onnxruntime dynamic quantisation: int8 weights with a scale per output channel, "
    "activations quantised to uint8 per batch at run time"
)
INT8_STATIC_METHOD = (
    "onnxruntime static quantisation (QDQ): int8 weights with a scale per output channel, "
    "uint8 activations with fixed ranges (min-max) calibrated on {count} training images"
)
CALIBRATION_IMAGES = 200  # training images an image model's int8 ranges are calibrated on


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """onnxruntime's quantisers log advice and shape notes through ``logging`` (the root logger
    included) at warning level; the export reports what matters itself."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def write_int8(fp32: Path, destination: Path, images: Sequence[np.ndarray] | None = None) -> str:
    """Write the int8 copy of the ONNX graph ``fp32`` to ``destination``; return how.

    ``images``: preprocessed pixel arrays ``[3, size, size]`` of training images, for an image
    model: its graph is quantised statically with activation ranges calibrated on them.
    Without them: dynamic quantisation (weights int8 per output channel, activations per batch
    at run time), the usual choice for transformers and small heads."""
    from onnxruntime.quantization import QuantType

    with _quiet_quantiser():
        if images is None:
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(
                str(fp32), str(destination), weight_type=QuantType.QInt8, per_channel=True
            )
            return INT8_METHOD
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Batches(CalibrationDataReader):
            def __init__(self) -> None:
                chunks = [images[i : i + 16] for i in range(0, len(images), 16)]
                self.feeds = iter([{"pixels": np.stack(chunk)} for chunk in chunks])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.feeds, None)

        prepared = destination.with_name(f".{destination.name}.prepared")
        try:
            quant_pre_process(str(fp32), str(prepared))
            quantize_static(
                str(prepared),
                str(destination),
                Batches(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            prepared.unlink(missing_ok=True)
        return INT8_STATIC_METHOD.format(count=len(images))


_EXAMPLE_TEXTS = ["an example review, long enough to be padded against", "short"]


@dataclass
class HeldOut:
    """Inputs to check an export on, with ``describe`` (where they come from) and ``score``
    (the task's metrics of a predictor on them; ``None``: no labels to score against)."""

    inputs: Sequence[str] | np.ndarray
    describe: str
    score: Callable[[Any], dict[str, Any]] | None = None


class Precomputed:
    """Predictions already made, behind the predictor interface a task's evaluation calls."""

    def __init__(self, predictions: Any, kind: str, classes: list[str], tasks: Any) -> None:
        self.predictions = predictions
        self.kind = kind
        self.classes = classes
        self.tasks = tasks

    def predict_proba(self, inputs: Any) -> Any:
        return self.predictions

    def predict(self, inputs: Any) -> Any:
        if self.kind == "value":
            return self.predictions
        if self.kind == "tasks":
            return {
                name: [classes[i] for i in self.predictions[name].argmax(axis=1)]
                for name, classes in self.tasks
            }
        return [self.classes[i] for i in self.predictions.argmax(axis=1)]


class _Graph(nn.Module):
    """What the ONNX file computes: backbone, then (for frozen features) the encoder over
    them, then the head, then probabilities."""

    def __init__(self, predictor: NeuralPredictor) -> None:
        super().__init__()
        model = predictor.model
        if predictor.frozen is not None:
            self.backbone: nn.Module | None = copy.deepcopy(predictor.frozen)
            self.over_features: Any = model.encoder
        elif is_backbone(model.encoder):
            self.backbone = copy.deepcopy(model.encoder)
            self.over_features = None
        else:  # a model over vectors: an MLP, a fixed transform, or the head alone
            self.backbone = None
            self.over_features = model.encoder
        if self.backbone is not None:
            _merge_adapter(self.backbone)
        self.head = model.head
        self.outputs = predictor.outputs

    def forward(self, *inputs: torch.Tensor) -> Any:
        features = inputs[0] if self.backbone is None else self.backbone(*inputs)
        features = features.float()
        if self.over_features is not None:
            features = self.over_features.embed({"features": features})
        out = self.head(features)
        kind = self.outputs.kind
        if kind == "value":
            return out
        if kind == "tasks":
            return tuple(torch.softmax(out[name], dim=-1) for name in self.outputs.task_names)
        return torch.softmax(out, dim=-1)


def _merge_adapter(backbone: nn.Module) -> None:
    """Fold a peft adapter (LoRA, (IA)³) into the backbone's weights."""
    from peft import PeftModel

    if isinstance(backbone.model, PeftModel):
        backbone.model = backbone.model.merge_and_unload()


def _adapter(predictor: NeuralPredictor) -> str | None:
    peft = predictor.spec.get("backbone", {}).get("peft")
    return peft["method"] if peft else None


def _reads(predictor: NeuralPredictor) -> tuple[str, Any]:
    """What the model reads ('texts', 'images', 'vectors') and the backbone that reads it."""
    backbone = predictor.frozen if predictor.frozen is not None else predictor.model.encoder
    if isinstance(backbone, TextEncoder):
        return "texts", backbone
    if isinstance(backbone, ImageEncoder):
        return "images", backbone
    return "vectors", None


def _output_names(predictor: NeuralPredictor) -> list[str]:
    outputs = predictor.outputs
    if outputs.kind == "value":
        return ["value"]
    if outputs.kind == "tasks":
        return [f"probabilities_{i}" for i in range(len(outputs.tasks))]
    return ["probabilities"]


def text_settings(encoder: TextEncoder) -> dict[str, Any]:
    """How the runtime rebuilds the encoder's token ids (checked against its tokenizer)."""
    tok = encoder.tokenizer
    if not getattr(tok, "is_fast", False):
        raise ConfigError(
            f"backbone '{encoder.backbone}' has no fast tokenizer (tokenizer.json); ONNX export "
            "needs one"
        )
    first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    prefix = [first] if first is not None else []
    suffix = [last] if last is not None else []
    sample = "Checking the template: 12 words, punctuation!"
    plain = tok(sample, add_special_tokens=False)["input_ids"]
    if tok(sample)["input_ids"] != prefix + plain + suffix:
        raise ConfigError(
            f"backbone '{encoder.backbone}': its tokenizer adds special tokens other than one "
            "start and one end token; ONNX export does not support it"
        )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return {
        "max_length": encoder.max_length,
        "truncation": encoder.truncation,
        "prefix": prefix,
        "suffix": suffix,
        "pad_id": int(pad),
        **({"text_prefix": encoder.text_prefix} if encoder.text_prefix else {}),
    }


def tokenizer_json(encoder: TextEncoder) -> str:
    """The backbone's fast tokenizer without the truncation or padding left on it."""
    tokenizers = require("tokenizers")
    backend = tokenizers.Tokenizer.from_str(encoder.tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend.to_str(pretty=False)


def _example_inputs(reads: str, backbone: Any, predictor: NeuralPredictor) -> dict[str, Any]:
    """Inputs to trace the graph with (two texts of different lengths, so that padding and
    the attention mask are part of the trace)."""
    if reads == "texts":
        return dict(backbone.tokenize(_EXAMPLE_TEXTS))
    if reads == "images":
        size = backbone.image_size
        return {"pixels": torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))}
    return {"features": torch.zeros(2, _vector_size(predictor.model))}


def _vector_size(model: Any) -> int:
    """How many numbers a model over vectors reads per example."""
    encoder = model.encoder
    if encoder is None:
        return int(model.head.in_features)
    first = getattr(encoder, "net", [encoder])[0]
    return int(getattr(first, "in_features", encoder.hidden_size))


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("shoptransfer", "torch", "transformers", "onnx", "onnxruntime", "tokenizers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def compare_predictions(reference: Any, candidate: Any, kind: str) -> dict[str, Any]:
    """How far ``candidate`` predictions are from ``reference`` ones: label agreement and the
    largest probability difference (per head, and overall as the lowest agreement); for numbers,
    the largest difference."""
    if kind == "value":
        diff = np.abs(np.asarray(candidate) - np.asarray(reference))
        return {"max_value_difference": float(diff.max()) if diff.size else 0.0}
    if kind == "tasks":
        heads = {
            name: compare_predictions(reference[name], candidate[name], "classes")
            for name in reference
        }
        return {
            "agreement": min(h["agreement"] for h in heads.values()),
            "max_probability_difference": max(
                h["max_probability_difference"] for h in heads.values()
            ),
            "heads": heads,
        }
    if len(reference) == 0:
        return {"agreement": 1.0, "max_probability_difference": 0.0}
    same = reference.argmax(axis=1) == candidate.argmax(axis=1)
    return {
        "agreement": float(same.mean()),
        "max_probability_difference": float(np.abs(candidate - reference).max()),
    }


def predictions_of(predictor: Any, inputs: Any, kind: str) -> Any:
    """What a predictor predicts for ``inputs``: probabilities, or numbers for a regression."""
    return predictor.predict(inputs) if kind == "value" else predictor.predict_proba(inputs)


def export_onnx(
    predictor: NeuralPredictor,
    destination: str | Path,
    quantize: str = "none",
    held_out: HeldOut | None = None,
    about: dict[str, Any] | None = None,
    note: str | None = None,
    calibration: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Export ``predictor`` into the folder ``destination`` (replacing an earlier export) and
    check it on ``held_out``; return what ``export.json`` records. ``about``: facts about the
    model to record (its folder, recipe); ``note``: why no held-out check was possible;
    ``calibration``: training image files an image model's int8 copy is calibrated on (the
    first :data:`CALIBRATION_IMAGES`; required for ``int8`` of an image model)."""
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize '{quantize}'; expected one of {list(QUANTIZATIONS)}")
    frozen = predictor.frozen
    if frozen is not None and not isinstance(frozen, nn.Module):
        raise ConfigError(
            f"backbone '{frozen.backbone}' is computed by its own package, not PyTorch: a "
            "model over its features cannot be exported to ONNX (predict and serve use it "
            "as it is)"
        )
    require("onnx")
    require("onnxruntime")
    return build_export(
        destination,
        lambda folder: _write(predictor, folder, quantize, about or {}, calibration),
        lambda folder, card: _check(predictor, folder, card, held_out, note),
    )


def build_export(
    destination: str | Path,
    write: Callable[[Path], dict[str, Any]],
    check: Callable[[Path, dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Write an export into a staging folder beside ``destination`` (``write`` returns what
    ``export.json`` records), check it there (``check`` returns the record's ``check``), then
    rename it into place: an interrupted export never leaves a half-written folder."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    staging.chmod(destination.parent.stat().st_mode & 0o777)  # mkdtemp's folder is private
    try:
        card = write(staging)
        atomic_write_json(staging / EXPORT_FILE, card)  # the runtime reads it for the check
        card["check"] = check(staging, card)
        atomic_write_json(staging / EXPORT_FILE, card)
        replace_folder(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def _write(
    predictor: NeuralPredictor,
    folder: Path,
    quantize: str,
    about: dict[str, Any],
    calibration: Sequence[str] | None,
) -> dict[str, Any]:
    reads, backbone = _reads(predictor)
    graph = _Graph(predictor).eval()  # eval: export restores the mode it finds
    example = _example_inputs(reads, backbone, predictor)
    names = _output_names(predictor)
    dynamic = {name: {0: "batch"} for name in names}
    for name in example:
        dynamic[name] = {0: "batch", 1: "sequence"} if reads == "texts" else {0: "batch"}
    fp32 = folder / FP32_FILE
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter's deprecation notice, and tracer notes on shapes that the
        # dynamic axes and the padded example batch cover
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(example.values()),
            str(fp32),
            input_names=list(example),
            output_names=names,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    files = {FP32_FILE: file_record(fp32)}
    outputs = predictor.outputs
    described: dict[str, Any] = {"kind": outputs.kind, "names": names}
    if outputs.kind == "classes":
        described["classes"] = list(predictor.classes)
    elif outputs.kind == "tasks":
        described["tasks"] = {name: list(classes) for name, classes in outputs.tasks}
    card: dict[str, Any] = {
        "format": "onnx",
        **about,
        "reads": reads,
        "inputs": {
            name: [dynamic[name].get(axis, size) for axis, size in enumerate(tensor.shape)]
            for name, tensor in example.items()
        },
        "outputs": described,
        "adapter_merged": _adapter(predictor),
        "pytorch_precision": predictor.model.precision,
        "onnx_precision": ["fp32", *(["int8"] if quantize == "int8" else [])],
        "opset": OPSET,
        "versions": versions(),
    }
    if reads == "texts":
        card["text"] = text_settings(backbone)
        atomic_write_text(folder / TOKENIZER_FILE, tokenizer_json(backbone))
        files[TOKENIZER_FILE] = file_record(folder / TOKENIZER_FILE)
    elif reads == "images":
        preprocessing = backbone.preprocessing
        settings = {
            "size": preprocessing.size,
            "mean": preprocessing.mean,
            "std": preprocessing.scale,
            "resize": (
                "convert to RGB (transparent pixels on white); pad to a square with the median "
                "colour of the four corner pixels, image centred; bicubic resize to size x size"
            ),
            "normalise": "(pixel - mean) / std, pixels 0-255, every channel",
            "layout": "float32 [batch, 3 (R, G, B), size, size]",
        }
        atomic_write_json(folder / PREPROCESSING_FILE, settings)
        files[PREPROCESSING_FILE] = file_record(folder / PREPROCESSING_FILE)
    if quantize == "int8":
        images = None
        if reads == "images":
            if not calibration:
                raise ConfigError(
                    "int8 of an image model is calibrated on training images, and none were "
                    "given (the run's training data could not be read); export without "
                    "--quantize"
                )
            reader = ImageReader(folder)
            images = [reader.pixels(str(path)) for path in calibration[:CALIBRATION_IMAGES]]
        card["quantization"] = write_int8(fp32, folder / INT8_FILE, images)
        files[INT8_FILE] = file_record(folder / INT8_FILE)
    card["files"] = files
    return card


def _check(
    predictor: NeuralPredictor,
    folder: Path,
    card: dict[str, Any],
    held_out: HeldOut | None,
    note: str | None,
) -> dict[str, Any]:
    if held_out is None or len(held_out.inputs) == 0:
        return {"skipped": note or "no held-out inputs were given"}
    kind = predictor.outputs.kind
    tasks = list(predictor.outputs.tasks)
    reference = predictions_of(predictor, held_out.inputs, kind)
    check: dict[str, Any] = {
        "data": held_out.describe,
        "examples": len(held_out.inputs),
        "goal_agreement": GOAL_AGREEMENT,
    }
    if held_out.score is not None:
        scored = Precomputed(reference, kind, list(predictor.classes), tasks)
        check["pytorch"] = {"metrics": held_out.score(scored)}
    for precision in card["onnx_precision"]:
        onnx = OnnxPredictor(folder, precision=precision)
        candidate = predictions_of(onnx, held_out.inputs, kind)
        result = compare_predictions(reference, candidate, kind)
        if "agreement" in result:
            result["meets_goal"] = result["agreement"] >= GOAL_AGREEMENT
        if held_out.score is not None:
            result["metrics"] = held_out.score(Precomputed(candidate, kind, onnx.classes, tasks))
        check[precision] = result
    return check


def replace_folder(staging: Path, destination: Path) -> None:
    """Put the finished ``staging`` folder in place of ``destination`` (renames only)."""
    old = None
    if destination.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=destination.parent))
        os.replace(destination, old / destination.name)
    os.replace(staging, destination)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary_lines(card: dict[str, Any]) -> list[str]:
    """The check in a few lines, for the CLI."""
    check = card.get("check", {})
    if "skipped" in check:
        return [f"warning: not checked on held-out data: {check['skipped']}"]
    lines = [f"checked on {check['data']}"]
    if "pytorch" in check:
        lines.append(
            f"  pytorch {card['pytorch_precision']}: {_metrics(check['pytorch']['metrics'])}"
        )
    for precision in card["onnx_precision"]:
        result = check[precision]
        size = card["files"][FP32_FILE if precision == "fp32" else INT8_FILE]["bytes"] / 2**20
        if "agreement" in result:
            shown = (
                f"agreement {100 * result['agreement']:.1f} %"
                + (
                    ""
                    if result["meets_goal"]
                    else f" (below the {100 * GOAL_AGREEMENT:.1f} % goal)"
                )
                + f", max |Δp| {result['max_probability_difference']:.2g}"
            )
        else:
            shown = f"max |Δ| {result['max_value_difference']:.2g}"
        metrics = f", {_metrics(result['metrics'])}" if "metrics" in result else ""
        lines.append(f"  onnx {precision} ({size:.1f} MiB): {shown}{metrics}")
    return lines


def _metrics(metrics: dict[str, Any]) -> str:
    shown = [
        f"{key.replace('_', '-')} {value:.4f}"
        for key, value in metrics.items()
        if key in ("accuracy", "macro_f1", "rmse", "mae") and isinstance(value, float)
    ]
    return ", ".join(shown)
