"""Scoring an exported model with onnxruntime, the tokenizer and numpy (or Pillow) alone.

An export folder (``RUN/exports/<model>/``, written by :mod:`shoptransfer.export.onnx`) holds
``model.onnx`` (fp32), optionally ``model.int8.onnx`` (dynamic int8 quantisation),
``tokenizer.json`` (texts) or ``preprocessing.json`` (images), and ``export.json``: what the
model reads and predicts, how texts are cut to length, the file sizes and the self-check.
:class:`OnnxPredictor` reads such a folder and predicts like the PyTorch predictor. This module
never imports torch (a test runs it in a fresh interpreter and checks ``sys.modules``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoptransfer.errors import ConfigError, DataError
from shoptransfer.runs import choose_model

EXPORT_FILE = "export.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
PREPROCESSING_FILE = "preprocessing.json"
EXPORTS_FOLDER = "exports"
INSTALL_HINT = "pip install 'shoptransfer[export]'"
PRECISIONS = ("auto", "fp32", "int8")


def require(module: str) -> Any:
    """Import ``module`` (onnx, onnxruntime, tokenizers), or a one-line ConfigError saying
    what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"ONNX export and inference need the package '{module}', which is not installed "
            f"({INSTALL_HINT})"
        ) from None


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file, as ``export.json`` records them."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def read_card(folder: str | Path) -> dict[str, Any]:
    """An export folder's ``export.json`` (a DataError naming the file when it is missing or
    not what an export writes)."""
    path = Path(folder) / EXPORT_FILE
    if not path.exists():
        raise DataError(f"{path}: not found; expected an ONNX export (shoptransfer export)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != "onnx" or "outputs" not in card:
        raise DataError(f"{path}: not an ONNX export record (no 'format: onnx' and 'outputs')")
    return card


class TextReader:
    """Texts to ``input_ids`` and ``attention_mask`` as the PyTorch model tokenised them: the
    tokenizer's pieces without special tokens, cut to ``max_length`` with the first ones kept
    (``head``) or the first quarter and the last three quarters (``head+tail``), between the
    model's start and end tokens, padded on the right."""

    def __init__(self, folder: Path, text: dict[str, Any]) -> None:
        tokenizers = require("tokenizers")
        path = folder / TOKENIZER_FILE
        if not path.exists():
            raise DataError(f"{path}: not found; a text model's export holds its tokenizer")
        try:
            self.tokenizer = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises plain Exceptions
            raise DataError(f"{path}: not a tokenizer file ({str(exc).splitlines()[0]})") from None
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = int(text["max_length"])
        self.truncation = text["truncation"]
        self.prefix = [int(i) for i in text["prefix"]]
        self.suffix = [int(i) for i in text["suffix"]]
        self.pad_id = int(text["pad_id"])
        self.text_prefix = str(text.get("text_prefix", ""))  # put before every text

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, cut to length, with the start and end tokens."""
        room = self.max_length - len(self.prefix) - len(self.suffix)
        head = room if self.truncation == "head" else room // 4
        texts = [self.text_prefix + text for text in texts]
        pieces = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        out = []
        for piece in pieces:
            p = piece.ids
            if len(p) > room:
                p = p[:head] + p[len(p) - (room - head) :] if head < room else p[:room]
            out.append(self.prefix + p + self.suffix)
        return out

    def batch(self, ids: Sequence[list[int]]) -> dict[str, np.ndarray]:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


class ImageReader:
    """Image files to the float pixel tensor the network reads, as ``preprocessing.json``
    describes: RGB (transparent pixels on white), padded to a square with the median colour of
    the four corner pixels, bicubic resize to ``size`` x ``size``, ``(pixel - mean) / std``,
    channels first."""

    def __init__(self, folder: Path) -> None:
        path = folder / PREPROCESSING_FILE
        if not path.exists():
            raise DataError(f"{path}: not found; an image model's export holds its preprocessing")
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
            self.size = int(settings["size"])
            self.mean = float(settings["mean"])
            self.std = float(settings["std"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            raise DataError(f"{path}: expected JSON with 'size', 'mean' and 'std'") from None

    def pixels(self, path: str) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                if image.mode in ("RGBA", "LA", "PA") or (
                    image.mode == "P" and "transparency" in image.info
                ):
                    rgba = image.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    rgb = Image.alpha_composite(white, rgba).convert("RGB")
                else:
                    rgb = image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        width, height = rgb.size
        if width != height:
            corners = np.asarray(rgb)[[0, 0, -1, -1], [0, -1, 0, -1]]
            fill = tuple(int(v) for v in np.median(corners, axis=0))
            side = max(width, height)
            square = Image.new("RGB", (side, side), fill)
            square.paste(rgb, ((side - width) // 2, (side - height) // 2))
            rgb = square
        resized = rgb.resize((self.size, self.size), Image.Resampling.BICUBIC)
        values = (np.asarray(resized, dtype=np.float32) - self.mean) / self.std
        return np.ascontiguousarray(values.transpose(2, 0, 1))


class OnnxPredictor:
    """An exported model: ``predict_proba`` and ``predict`` as the PyTorch predictor has them
    (class probabilities; a regression's numbers; a multi-task model's per task, as dicts).

    ``precision``: ``int8`` (the quantised model), ``fp32``, or ``auto`` (int8 when the export
    has it, else fp32). ``threads``: onnxruntime's intra-op threads (0: its default)."""

    def __init__(
        self, folder: str | Path, precision: str = "auto", threads: int = 0, batch_size: int = 32
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision '{precision}'; expected one of {list(PRECISIONS)}")
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        files = self.card.get("files", {})
        if precision == "auto":
            precision = "int8" if INT8_FILE in files else "fp32"
        name = INT8_FILE if precision == "int8" else FP32_FILE
        if name not in files:
            raise DataError(
                f"{self.folder}: no {precision} model in this export (files: {sorted(files)}); "
                + ("export with --quantize int8" if precision == "int8" else "export again")
            )
        path = self.folder / name
        size = path.stat().st_size if path.exists() else None
        if size != files[name]["bytes"]:
            found = "missing" if size is None else f"{size} bytes"
            raise DataError(
                f"{path}: {found}, but {EXPORT_FILE} records {files[name]['bytes']} bytes "
                "(damaged or replaced); export again"
            )
        self.precision = precision
        self.batch_size = batch_size
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DataError(f"{path}: onnxruntime cannot load it ({str(exc)[:200]})") from None
        outputs = self.card["outputs"]
        self.kind = outputs["kind"]
        self.classes: list[str] = list(outputs.get("classes", []))
        self.tasks: list[tuple[str, list[str]]] = [
            (task, list(classes)) for task, classes in outputs.get("tasks", {}).items()
        ]
        self.output_names = list(outputs["names"])
        self.reads = self.card["reads"]
        self.reader: Any = None
        if self.reads == "texts":
            self.reader = TextReader(self.folder, self.card["text"])
        elif self.reads == "images":
            self.reader = ImageReader(self.folder)

    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feed)

    def _outputs(self, inputs: Sequence[str] | np.ndarray) -> list[np.ndarray]:
        """Each ONNX output for every input, in input order."""
        n = len(inputs)
        parts: list[list[np.ndarray]] = []
        order = np.arange(n)
        if self.reads == "texts":
            texts = [str(t) for t in inputs]
            ids = self.reader.ids(texts)
            order = np.argsort([-len(row) for row in ids], kind="stable")  # similar lengths
            for start in range(0, n, self.batch_size):
                rows = order[start : start + self.batch_size]
                parts.append(self._run(self.reader.batch([ids[i] for i in rows])))
        elif self.reads == "images":
            for start in range(0, n, self.batch_size):
                chunk = [
                    self.reader.pixels(str(p)) for p in inputs[start : start + self.batch_size]
                ]
                parts.append(self._run({"pixels": np.stack(chunk)}))
        else:
            vectors = np.asarray(inputs, dtype=np.float32)
            for start in range(0, n, self.batch_size):
                parts.append(self._run({"features": vectors[start : start + self.batch_size]}))
        if not parts:
            widths = [len(self.classes)] if self.kind == "classes" else []
            if self.kind == "tasks":
                return [np.zeros((0, len(c)), dtype=np.float32) for _, c in self.tasks]
            return [np.zeros((0, *widths), dtype=np.float32)]
        results = []
        for k in range(len(self.output_names)):
            joined = np.concatenate([p[k] for p in parts])
            result = np.zeros_like(joined)
            result[order] = joined
            results.append(result)
        return results

    def _predictions(self, inputs: Sequence[str] | np.ndarray) -> Any:
        outputs = self._outputs(inputs)
        if self.kind == "value":
            return np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        if self.kind == "tasks":
            return {name: out for (name, _), out in zip(self.tasks, outputs)}
        return outputs[0]

    def predict_proba(self, inputs: Sequence[str] | np.ndarray) -> Any:
        """Class probabilities (a multi-task model: a dict of them per task)."""
        if self.kind == "value":
            raise DataError("a regression model predicts numbers; call predict")
        return self._predictions(inputs)

    def predict(self, inputs: Sequence[str] | np.ndarray) -> Any:
        """Class labels; a regression model's numbers; a multi-task model's labels per task."""
        predictions = self._predictions(inputs)
        if self.kind == "value":
            return predictions
        if self.kind == "tasks":
            return {
                name: [classes[i] for i in predictions[name].argmax(axis=1)]
                for name, classes in self.tasks
            }
        return [self.classes[i] for i in predictions.argmax(axis=1)]


def export_folder(run_dir: str | Path, model: str) -> Path:
    """Where the export of a run's model (its folder name) lives."""
    return Path(run_dir) / EXPORTS_FOLDER / model


def open_export(run_dir: str | Path, model: str | None = None) -> OnnxPredictor:
    """The ONNX export of a run's model (default: the best one, as
    :func:`~shoptransfer.runs.choose_model` picks it), scored by onnxruntime: its int8 model
    when exported, else fp32."""
    name = choose_model(run_dir, model).name
    folder = export_folder(run_dir, name)
    if not (folder / EXPORT_FILE).exists():
        raise DataError(
            f"{folder}: no ONNX export of model {name}; make one with "
            f"`shoptransfer export {run_dir} --model {name} --format onnx`"
        )
    return OnnxPredictor(folder)
