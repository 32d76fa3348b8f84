"""Scoring an exported model with onnxruntime, the tokenizer and numpy (or Pillow) alone.

An export folder (``RUN/exports/<model>/``, written by :mod:`shoptransfer.export.exporter` or
:mod:`shoptransfer.export.rankers`) holds ``model.onnx`` (fp32), optionally ``model.int8.onnx``
(dynamic int8 quantisation), ``tokenizer.json`` (texts), ``preprocessing.json`` (images) or
``items.json`` and ``item_vectors.npy`` (a recommender's catalogue), and ``export.json``: what
the model reads and predicts, how texts are cut to length, the file sizes and the self-check.
:class:`OnnxPredictor` reads a classifier's folder and predicts like the PyTorch predictor;
:class:`OnnxRanker` reads a sequential recommender's and ranks the catalogue like the PyTorch
ranker. This module never imports torch (a test runs it in a fresh interpreter and checks
``sys.modules``).
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
ITEMS_FILE = "items.json"
ITEM_VECTORS_FILE = "item_vectors.npy"
RANKER_READS = "item-histories"  # what a recommender's export reads (export.json 'reads')
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


def checked_file(folder: Path, card: dict[str, Any], name: str) -> Path:
    """The path of a file ``export.json`` records, checked to have the recorded size (a
    DataError naming it when it is missing, damaged or replaced)."""
    path = folder / name
    size = path.stat().st_size if path.exists() else None
    recorded = card.get("files", {}).get(name, {}).get("bytes")
    if size != recorded:
        found = "missing" if size is None else f"{size} bytes"
        raise DataError(
            f"{path}: {found}, but {EXPORT_FILE} records {recorded} bytes "
            "(damaged or replaced); export again"
        )
    return path


def open_session(
    folder: Path, card: dict[str, Any], precision: str, threads: int
) -> tuple[Any, str]:
    """An onnxruntime session of the export's int8 or fp32 model (``auto``: int8 when
    exported), and the precision it has."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}'; expected one of {list(PRECISIONS)}")
    files = card.get("files", {})
    if precision == "auto":
        precision = "int8" if INT8_FILE in files else "fp32"
    name = INT8_FILE if precision == "int8" else FP32_FILE
    if name not in files:
        raise DataError(
            f"{folder}: no {precision} model in this export (files: {sorted(files)}); "
            + ("export with --quantize int8" if precision == "int8" else "export again")
        )
    path = checked_file(folder, card, name)
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise DataError(f"{path}: onnxruntime cannot load it ({str(exc)[:200]})") from None
    return session, precision


class OnnxPredictor:
    """An exported model: ``predict_proba`` and ``predict`` as the PyTorch predictor has them
    (class probabilities; a regression's numbers; a multi-task model's per task, as dicts).

    ``precision``: ``int8`` (the quantised model), ``fp32``, or ``auto`` (int8 when the export
    has it, else fp32). ``threads``: onnxruntime's intra-op threads (0: its default)."""

    def __init__(
        self, folder: str | Path, precision: str = "auto", threads: int = 0, batch_size: int = 32
    ) -> None:
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        if self.card.get("reads") == RANKER_READS:
            raise DataError(f"{self.folder}: a recommender's export; rank with OnnxRanker")
        self.session, self.precision = open_session(self.folder, self.card, precision, threads)
        self.batch_size = batch_size
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


class OnnxRanker:
    """An exported sequential recommender: scores of every catalogue item after histories of
    item indices (1 to ``n_items``; 0 pads), as the PyTorch ranker's ``scores`` gives them, and
    the top items after a history of item ids (:meth:`recommend`).

    The graph reads ``ids``: histories left-padded to the longest one in the batch (at most
    ``max_history``, the model's own cut), and answers ``scores`` (column 0, the padding, scores
    -1e4). ``items.json`` holds the catalogue's item ids in index order; ``item_vectors.npy``
    the item vectors that :meth:`contributions` compares. ``precision`` and ``threads`` as for
    :class:`OnnxPredictor`."""

    def __init__(
        self, folder: str | Path, precision: str = "auto", threads: int = 0, batch_size: int = 256
    ) -> None:
        self.folder = Path(folder)
        self.card = read_card(self.folder)
        if self.card.get("reads") != RANKER_READS:
            raise DataError(f"{self.folder}: a classifier's export; predict with OnnxPredictor")
        self.session, self.precision = open_session(self.folder, self.card, precision, threads)
        self.batch_size = batch_size
        ranking = self.card["ranking"]
        self.n_items = int(ranking["n_items"])
        self.max_history = int(ranking["max_history"])
        self.explanation = str(ranking["explanation"])
        path = checked_file(self.folder, self.card, ITEMS_FILE)
        try:
            self.items = [str(item) for item in json.loads(path.read_text(encoding="utf-8"))]
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise DataError(f"{path}: expected a JSON list of item ids ({exc})") from None
        path = checked_file(self.folder, self.card, ITEM_VECTORS_FILE)
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a numpy array of item vectors ({exc})") from None
        if len(self.items) != self.n_items or vectors.shape[0] != self.n_items + 1:
            raise DataError(
                f"{self.folder}: {len(self.items)} item ids and {vectors.shape[0]} vector rows "
                f"for {self.n_items} items (and a padding row); export again"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit_vectors = vectors / np.maximum(norms, 1e-12)
        self.index = {item: i + 1 for i, item in enumerate(self.items)}

    def padded(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Histories as a left-padded int64 matrix as wide as the longest (cut to
        ``max_history``, at least one column)."""
        tails = [np.asarray(h, dtype=np.int64)[-self.max_history :] for h in histories]
        width = max([1, *(len(t) for t in tails)])
        matrix = np.zeros((len(tails), width), dtype=np.int64)
        for row, tail in enumerate(tails):
            if len(tail):
                matrix[row, width - len(tail) :] = tail
        return matrix

    def scores(self, histories: Sequence[np.ndarray], users: Any = None) -> np.ndarray:
        """A ``(len(histories), n_items + 1)`` float32 array; higher means more likely next.
        ``users`` is accepted for the ranker interface and not read."""
        parts = [np.zeros((0, self.n_items + 1), dtype=np.float32)]
        order = np.argsort([-min(len(h), self.max_history) for h in histories], kind="stable")
        for start in range(0, len(histories), self.batch_size):
            rows = order[start : start + self.batch_size]
            ids = self.padded([histories[i] for i in rows])
            parts.append(self.session.run(["scores"], {"ids": ids})[0])
        joined = np.concatenate(parts)
        result = np.zeros_like(joined)
        result[order] = joined
        return result

    def contributions(self, history: np.ndarray, item: int) -> np.ndarray:
        """Cosine similarity of each history item's vector with ``item``'s (same order)."""
        return self.unit_vectors[np.asarray(history, dtype=np.int64)] @ self.unit_vectors[item]

    def recommend(self, history: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` best items after ``history`` (item ids, oldest first) with their scores;
        the history's items are never recommended."""
        unknown = [item for item in history if item not in self.index]
        if unknown:
            raise DataError(f"item '{unknown[0]}' is not in the exported catalogue")
        known = np.array([self.index[item] for item in history], dtype=np.int64)
        scores = self.scores([known])[0].astype(np.float64)
        scores[0] = -np.inf
        scores[known] = -np.inf
        best = np.argsort(-scores, kind="stable")[: max(0, min(k, int(np.isfinite(scores).sum())))]
        return [(self.items[i - 1], float(scores[i])) for i in best]


def export_folder(run_dir: str | Path, model: str) -> Path:
    """Where the export of a run's model (its folder name) lives."""
    return Path(run_dir) / EXPORTS_FOLDER / model


def open_export(
    run_dir: str | Path, model: str | None = None, precision: str = "auto"
) -> OnnxPredictor:
    """The ONNX export of a run's model (default: the best one, as
    :func:`~shoptransfer.runs.choose_model` picks it), scored by onnxruntime: ``precision``
    ``auto``: its int8 model when exported, else fp32; or ``int8`` or ``fp32``."""
    name = choose_model(run_dir, model).name
    folder = export_folder(run_dir, name)
    if not (folder / EXPORT_FILE).exists():
        raise DataError(
            f"{folder}: no ONNX export of model {name}; make one with "
            f"`shoptransfer export {run_dir} --model {name} --format onnx`"
        )
    return OnnxPredictor(folder, precision=precision)
