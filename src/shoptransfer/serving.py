"""An HTTP service for a run's model (``shoptransfer serve``), on FastAPI.

``POST /v1/classify`` (texts as JSON, or images as a multipart upload), ``POST /v1/recommend``
(a recommendation run: a known user, or an ad-hoc history of item ids), ``POST /v1/embed`` (the
backbone's features), ``GET /health``, ``GET /ready`` and ``GET /v1/model`` (a model card).

Requests that arrive within ``batch_wait_ms`` of each other are scored together: one queue
per endpoint and one worker task that runs the model in a thread (:class:`MicroBatcher`). A bad
request is a 4xx JSON answer ``{"field": ..., "error": ...}`` naming what was wrong.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from shoptransfer.api import (
    RecommendationQuery,
    Recommender,
    labelled,
    load_classifier,
    model_folder,
    model_reads,
)
from shoptransfer.data.multi import scrub_text_inputs
from shoptransfer.errors import ConfigError, ShopTransferError
from shoptransfer.explain import explain as explain_inputs
from shoptransfer.explain import explain_fused
from shoptransfer.export.runtime import EXPORT_FILE, export_folder, read_card
from shoptransfer.export.runtime import PRECISIONS as ONNX_PRECISIONS
from shoptransfer.pii import scrub_texts
from shoptransfer.progress import showing_progress
from shoptransfer.recipes.base import load_predictor, read_model_metadata
from shoptransfer.recommenders.item_index import IndexSettings
from shoptransfer.runs import load_results

SETTINGS_VARIABLE = "SHOPTRANSFER_SERVE_SETTINGS"  # how uvicorn's worker processes get them
WARM_UP_TEXT = "warm-up"


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """What to serve and the limits on a request (the flags of ``shoptransfer serve``)."""

    run_dir: str
    model: str | None = None  # a model folder or recipe label; default the run's best
    onnx: bool | None = None  # None: the ONNX export when the model has one
    onnx_precision: str = "auto"  # auto: the export's int8 model when it has one, else fp32
    max_items: int = 64  # texts or images in one request
    max_text_chars: int = 10_000
    max_image_bytes: int = 10 * 2**20
    max_image_pixels: int = 25_000_000
    max_k: int = 100
    max_batch: int = 64  # inputs scored together, across requests
    batch_wait_ms: float = 5.0
    index: str = "auto"  # a recommender's top items: auto, exact or approximate
    index_lists: int = 0  # the approximate index's cells (0: its default)
    index_probes: int = 0  # cells visited a query (0: its default)

    def index_settings(self) -> IndexSettings:
        return IndexSettings(self.index, self.index_lists, self.index_probes)

    def check(self) -> None:
        for name in ("max_items", "max_text_chars", "max_image_bytes", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} {getattr(self, name)}; expected >= 1"
                )
        if self.max_k < 1 or self.max_batch < 1:
            raise ConfigError("--max-k and --max-batch must be at least 1")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ConfigError(f"--batch-wait-ms {self.batch_wait_ms}; expected 0 to 1000")
        if self.onnx_precision not in ONNX_PRECISIONS:
            raise ConfigError(
                f"--onnx-precision '{self.onnx_precision}'; expected one of {list(ONNX_PRECISIONS)}"
            )
        self.index_settings().check()
        if self.onnx is False and self.onnx_precision != "auto":
            raise ConfigError("--onnx-precision chooses an ONNX model; it cannot go with --no-onnx")


class RequestError(Exception):
    """A bad request: the field it names, what was expected, and the HTTP status."""

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


# ---- request and response bodies -------------------------------------------------------


class TextsRequest(BaseModel):
    """Texts to classify or embed: ``text`` (one) or ``texts`` (many). Images go as a
    multipart upload instead, each file in the field ``images``."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    texts: list[str] | None = None


class TaskPrediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class Prediction(BaseModel):
    """A classifier's ``label`` and ``probabilities``; a regression's ``value``; a multi-task
    model's ``tasks``."""

    label: str | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None
    tasks: dict[str, TaskPrediction] | None = None


class ClassifyResponse(BaseModel):
    model: str
    backend: str
    predictions: list[Prediction]


class ExplainedWord(BaseModel):
    input: str | None = None  # a fused model's: the input the word is from
    word: str
    start: int
    end: int
    score: float
    read: bool


class ExplainedRegion(BaseModel):
    top: int
    bottom: int
    left: int
    right: int
    size: int


class ExplanationBody(BaseModel):
    """Why the classifier predicts ``label``: each word's (or the photo region's, or a fused
    model's inputs') share of the predicted class's probability, or of a regression model's
    ``value`` (see ``shoptransfer predict --explain``)."""

    method: str
    label: str | None = None
    probability: float | None = None
    value: float | None = Field(None, description="a regression model's predicted number")
    baseline_probability: float | None = None
    words: list[ExplainedWord] | None = None
    region: ExplainedRegion | None = None
    inputs: dict[str, float | None] | None = Field(
        None,
        description="a fused model's: the probability lost when each input alone is hidden "
        "(null: the input was missing)",
    )


class ExplainResponse(BaseModel):
    model: str
    backend: str
    explanations: list[ExplanationBody]


class EmbedResponse(BaseModel):
    model: str
    dimensions: int
    embeddings: list[list[float]]


class RecommendRequest(BaseModel):
    """A known ``user`` id, or an ad-hoc ``history`` of item ids (oldest first)."""

    model_config = ConfigDict(extra="forbid")
    user: str | None = None
    history: list[str] | None = None
    k: int | None = Field(None, ge=1, description="how many items (default 10, or --max-k)")
    explain: int = Field(3, ge=0, le=20, description="history items shown per recommendation")


class Reason(BaseModel):
    item: str
    text: str
    weight: float


class RecommendedItem(BaseModel):
    item: str
    text: str
    score: float | None
    because: list[Reason]


class RecommendResponse(BaseModel):
    user: str | None
    recipe: str
    seed: int
    explanation: str
    history: list[str]
    items: list[RecommendedItem]


class ErrorResponse(BaseModel):
    field: str | None
    error: str


# ---- micro-batching ----------------------------------------------------------------------


class MicroBatcher:
    """Scores the inputs of concurrent requests together: requests that arrive within
    ``wait_s`` of the first (up to ``max_batch`` inputs) go to one call of ``score`` (in a
    thread); each request gets its own rows back. ``calls`` counts the calls of ``score``."""

    def __init__(
        self, score: Callable[[list[Any]], list[Any]], max_batch: int, wait_s: float
    ) -> None:
        self.score = score
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.calls = 0
        self.queue: asyncio.Queue[tuple[list[Any], asyncio.Future[list[Any]]]] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with suppress(asyncio.CancelledError):
                await self.worker

    async def submit(self, inputs: list[Any]) -> list[Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self.wait_s
            while size < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
                size += len(batch[-1][0])
            await self._score(batch)

    async def _score(self, batch: list[tuple[list[Any], asyncio.Future[list[Any]]]]) -> None:
        flat = [x for inputs, _ in batch for x in inputs]
        self.calls += 1
        try:
            rows = await asyncio.to_thread(self.score, flat)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for part in batch:  # one request's failure stays its own
                await self._score([part])
            return
        start = 0
        for inputs, future in batch:
            if not future.done():
                future.set_result(rows[start : start + len(inputs)])
            start += len(inputs)


# ---- the model behind the service -------------------------------------------------------


class Service:
    """A run's model loaded for serving: a classifier (PyTorch, or its ONNX export) or a
    recommender, its model card, and what each endpoint scores."""

    def __init__(self, settings: ServeSettings) -> None:
        settings.check()
        self.settings = settings
        self.run_dir = Path(settings.run_dir)
        results = load_results(self.run_dir)
        self.task = str(results.get("task", "classification"))
        self.recommender: Recommender | None = None
        self.classifier: Any = None
        self.reads: str | None = None
        # integrated gradients hook the backbone's layers while they run: no scoring meanwhile
        self.model_lock = threading.Lock()
        self.export: dict[str, Any] | None = None
        self._embedder: Any = None
        if self.task == "recommendation":
            label, seed = settings.model, None
            for cell in results.get("results", []):  # a model folder name: its label and seed
                if cell.get("model_dir") and Path(cell["model_dir"]).name == settings.model:
                    label, seed = cell.get("label", cell.get("recipe")), cell.get("seed")
            chosen = Recommender.choose(self.run_dir, label, seed)
            exported = export_folder(self.run_dir, chosen.name)
            has_export = (exported / EXPORT_FILE).exists()
            onnx = has_export if settings.onnx is None else settings.onnx
            self.recommender = Recommender(
                self.run_dir,
                label,
                seed,
                onnx,
                settings.onnx_precision,
                settings.index_settings(),
            )
            self.folder = self.recommender.folder
            self.backend = self.recommender.backend
            if has_export:
                self.export = read_card(exported)
            self.has_backbone = False
        else:
            self.folder = model_folder(self.run_dir, settings.model)
            self.reads = model_reads(self.folder)
            if self.reads == "vectors":
                raise ConfigError(
                    f"model {self.folder.name} reads precomputed vectors; serve a model that "
                    "reads texts, images or several inputs"
                )
            if self.reads == "inputs" and settings.onnx:
                raise ConfigError(
                    f"model {self.folder.name} is a fused model; it has no ONNX export to serve"
                )
            exported = export_folder(self.run_dir, self.folder.name)
            has_export = (exported / EXPORT_FILE).exists() and self.reads != "inputs"
            onnx = has_export if settings.onnx is None else settings.onnx
            if self.reads == "inputs":  # a fused model: its input name -> "text" or "image"
                self.classifier = load_predictor(self.folder)
                self.input_kinds: dict[str, str] = dict(self.classifier.inputs)
            else:
                self.classifier = load_classifier(
                    self.run_dir, self.folder.name, onnx, settings.onnx_precision
                )
            _, metadata = read_model_metadata(self.folder)
            # the ONNX model served, else PyTorch for a neural model, else the model's kind
            neural = metadata.get("kind") == "neural"
            self.backend = (
                f"onnx-{self.classifier.precision}"
                if onnx
                else ("pytorch" if neural else str(metadata.get("kind")))
            )
            if has_export:
                self.export = read_card(exported)
            spec = metadata.get("spec", {}) if metadata.get("kind") == "neural" else {}
            self.has_backbone = "frozen_backbone" in spec or "backbone" in spec
        self.card = model_card(self.run_dir, self.folder, results, self.backend, self.export)
        self.ready = False
        self.warm_up_seconds: float | None = None

    @property
    def model(self) -> str:
        return self.folder.name

    def describe(self) -> list[str]:
        """What is served, in a line; a line when the ONNX model served does not meet the
        export's agreement goal with PyTorch; for a recommender, how it finds its top items."""
        lines = [f"serving {self.task} model {self.model} of {self.run_dir} ({self.backend})"]
        check = (self.export or {}).get("check", {}).get(self.backend.removeprefix("onnx-"), {})
        if self.backend.startswith("onnx-") and check.get("meets_goal") is False:
            agrees = (
                f"its labels agree with PyTorch's on {100 * check['agreement']:.1f} %"
                if "agreement" in check
                else f"its top-10 lists are PyTorch's on {100 * check['top10_agreement']:.1f} %"
            )
            lines.append(
                f"warning: {agrees} of the run's test set (export.json), below the goal; "
                "--no-onnx serves PyTorch"
            )
        if self.recommender is not None:
            lines.append(f"top items: {self.recommender.index_description}")
            if self.recommender.index_warning:
                lines.append(self.recommender.index_warning)
        return lines

    def warm_up(self) -> None:
        """One prediction, so that the first request does not pay for lazy set-up."""
        start = time.perf_counter()
        if self.recommender is not None:
            first = self.recommender.domain.users[0]
            self.recommender.recommend(user=first, k=1)
        elif self.reads == "inputs":
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "warm-up.png"
                _blank_image().save(path)
                kinds = self.input_kinds.items()
                self.classify([{n: WARM_UP_TEXT if k == "text" else str(path) for n, k in kinds}])
        elif self.reads == "images":
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "warm-up.png"
                _blank_image().save(path)
                self.classify([str(path)])
        else:
            self.classify([WARM_UP_TEXT])
        self.warm_up_seconds = time.perf_counter() - start
        self.ready = True

    def classify(self, inputs: list[Any]) -> list[dict[str, Any]]:
        """One prediction per input (texts, scrubbed of personal data as training texts are,
        or image files; for a fused model, a mapping of input name -> text or image file, a
        name left out missing), as :class:`Prediction` holds."""
        if self.reads == "inputs":
            labels, probabilities, classes = self._classify_fused(inputs)
            return [
                {"label": label, "probabilities": _probabilities(classes, row)}
                for label, row in zip(labels, probabilities)
            ]
        if self.reads == "texts":
            inputs = scrub_texts(inputs)[0]
        with showing_progress(False), self.model_lock:
            labels, probabilities, classes = labelled(self.classifier, inputs)
        if isinstance(labels, dict):  # multi-task
            return [
                {
                    "tasks": {
                        task: {
                            "label": labels[task][n],
                            "probabilities": _probabilities(classes[task], probabilities[task][n]),
                        }
                        for task in labels
                    }
                }
                for n in range(len(inputs))
            ]
        if not classes:  # regression
            return [{"value": _finite(value)} for value in labels]
        return [
            {"label": label, "probabilities": _probabilities(classes, row)}
            for label, row in zip(labels, probabilities)
        ]

    def _classify_fused(self, examples: list[dict[str, str]]) -> tuple[list[str], Any, Any]:
        """A fused model's labels, probabilities and classes for examples given as mappings
        of input name -> value; texts scrubbed of personal data."""
        columns = self._fused_columns(examples)
        with showing_progress(False), self.model_lock:
            probabilities = self.classifier.predict_proba(columns)
        classes = self.classifier.classes
        return [classes[i] for i in probabilities.argmax(axis=1)], probabilities, classes

    def _fused_columns(self, examples: list[dict[str, str]]) -> dict[str, list[str | None]]:
        """Examples as mappings of input name -> value, as a fused model reads them: a column
        per input, ``None`` where missing, texts scrubbed of personal data."""
        columns = {name: [example.get(name) for example in examples] for name in self.input_kinds}
        scrub_text_inputs(self.input_kinds, columns)
        return columns

    def explain(self, inputs: list[Any], method: str) -> list[dict[str, Any]]:
        """Each input's explanation (texts scrubbed of personal data first), one at a time:
        explanations are not micro-batched. A fused model's examples are explained by
        occlusion (each input hidden, each word deleted)."""
        if self.reads == "inputs":
            columns = self._fused_columns(inputs)
            with showing_progress(False), self.model_lock:
                fused = explain_fused(self.classifier, columns, method)
            return [explanation.to_dict() for explanation in fused]
        if self.reads == "texts":
            inputs = scrub_texts(inputs)[0]
        with showing_progress(False), self.model_lock:
            found = explain_inputs(self.classifier, inputs, self.reads or "texts", method)
        return [explanation.to_dict() for explanation in found]

    def embed(self, inputs: list[str]) -> list[list[float]]:
        """The backbone's features of each input (the frozen backbone's when the model has
        one, else its trained backbone's); loads the PyTorch model when serving ONNX."""
        if self._embedder is None:
            predictor: Any = self.classifier
            if not hasattr(predictor, "model"):  # an ONNX export: the backbone is in PyTorch
                predictor = load_predictor(self.folder)
            self._embedder = predictor.frozen if predictor.frozen is not None else None
            if self._embedder is None:
                self._embedder = predictor.model.encoder
        with self.model_lock:
            vectors = self._embedder.encode(inputs, show_progress=False)
        return [[float(x) for x in row] for row in vectors]

    def recommend(self, requests: list[RecommendRequest]) -> list[dict[str, Any]]:
        """One answer per request (each with its own ``k`` and ``explain``), the histories
        scored in one batch."""
        assert self.recommender is not None
        queries = [RecommendationQuery(r.user, r.history, r.k or 10, r.explain) for r in requests]
        answers = self.recommender.recommend_many(queries)
        for answer in answers:
            for item in answer["items"]:
                item["score"] = _finite(item["score"])
        return answers


def _probabilities(classes: Sequence[str], row: Any) -> dict[str, float]:
    return {name: float(p) for name, p in zip(classes, row)}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _blank_image() -> Any:
    from PIL import Image

    return Image.new("RGB", (64, 64), (255, 255, 255))


def model_card(
    run_dir: Path,
    folder: Path,
    results: dict[str, Any],
    backend: str,
    export: dict[str, Any] | None,
) -> dict[str, Any]:
    """What ``GET /v1/model`` answers: the served model's task, recipe, seed and budget, its
    metrics, the run's data (names, sizes, hashes), the backend, and the export's check."""
    cell: dict[str, Any] = next(
        (
            r
            for r in results.get("results", [])
            if r.get("model_dir") and Path(r["model_dir"]).name == folder.name
        ),
        {},
    )
    data = {
        split: {key: about[key] for key in ("name", "examples", "data_hash") if key in about}
        for split, about in results.get("data", {}).items()
        if isinstance(about, dict) and "data_hash" in about
    }
    card: dict[str, Any] = {
        "run": run_dir.name,
        "task": results.get("task"),
        "model": folder.name,
        "recipe": cell.get("recipe"),
        "label": cell.get("label", cell.get("recipe")),
        "seed": cell.get("seed"),
        "budget": cell.get("budget"),
        "primary_metric": results.get("primary_metric"),
        "metrics": cell.get("metrics", {}),
        "validation_metrics": cell.get("validation_metrics"),
        "classes": results.get("classes"),
        "data": data,
        "backend": backend,
        "export": None,
    }
    if export is not None:
        card["export"] = {
            "onnx_precision": export.get("onnx_precision"),
            "check": export.get("check"),
        }
    return card


# ---- the application ---------------------------------------------------------------------

TEXTS_OR_IMAGES = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TextsRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["images"],
                }
            },
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 404, 409, 413, 422)
}


def create_app(service: Service | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``service`` (else one loaded from ``settings`` at
    start-up). The model is warmed up before the first request is answered."""
    state: dict[str, Any] = {"service": service}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state["service"] is None:
            assert settings is not None
            state["service"] = await asyncio.to_thread(Service, settings)
        loaded: Service = state["service"]
        wait_s = loaded.settings.batch_wait_ms / 1000
        batchers = {
            "classify": MicroBatcher(loaded.classify, loaded.settings.max_batch, wait_s),
            "embed": MicroBatcher(loaded.embed, loaded.settings.max_batch, wait_s),
            "recommend": MicroBatcher(loaded.recommend, loaded.settings.max_batch, wait_s),
        }
        for batcher in batchers.values():
            batcher.start()
        app.state.batchers = batchers
        await asyncio.to_thread(loaded.warm_up)
        yield
        for batcher in batchers.values():
            await batcher.stop()

    app = FastAPI(
        title="shoptransfer",
        summary="A run's adapted model over HTTP: classify, recommend, embed.",
        lifespan=lifespan,
    )

    def current() -> Service:
        loaded = state["service"]
        if loaded is None:
            raise RequestError(None, "the model is still loading; try again", 503)
        return loaded

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"field": exc.field, "error": exc.message}, status_code=exc.status)

    @app.exception_handler(ShopTransferError)
    async def input_error(request: Request, exc: ShopTransferError) -> JSONResponse:
        """A mistake in the inputs found while scoring them (one line, as the CLI prints)."""
        message = " ".join(str(exc).split())
        return JSONResponse({"field": None, "error": message}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _first_error(exc.errors(), skip="body")
        return JSONResponse({"field": field, "error": message}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"field": None, "error": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> JSONResponse:
        """The model is loaded and one warm-up prediction is done (else 503)."""
        loaded = state["service"]
        if loaded is None or not loaded.ready:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse(
            {
                "ready": True,
                "model": loaded.model,
                "backend": loaded.backend,
                "warm_up_seconds": round(loaded.warm_up_seconds or 0.0, 4),
            }
        )

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """The served model's card, from the run's results.json (and export.json)."""
        return current().card

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        response_model_exclude_none=True,
        openapi_extra=TEXTS_OR_IMAGES,
        responses=ERRORS,
    )
    async def classify(request: Request) -> dict[str, Any]:
        """Classify texts (JSON ``text`` or ``texts``) or images (multipart ``images``): a
        label and probabilities each; a regression's number; a multi-task model's per task."""
        loaded = current()
        if loaded.classifier is None:
            raise RequestError(
                None, f"{loaded.model} is a {loaded.task} model; use /v1/recommend", 409
            )
        async with _inputs(request, loaded) as inputs:
            rows = await request.app.state.batchers["classify"].submit(inputs)
        return {"model": loaded.model, "backend": loaded.backend, "predictions": rows}

    @app.post(
        "/v1/explain",
        response_model=ExplainResponse,
        response_model_exclude_none=True,
        openapi_extra=TEXTS_OR_IMAGES,
        responses=ERRORS,
    )
    async def explain(
        request: Request,
        method: Literal["auto", "integrated-gradients", "occlusion"] = "auto",
    ) -> dict[str, Any]:
        """Why the classifier predicts what it does for each text (or image): a score per word
        (or the region of the photo) for the predicted class's probability, by integrated
        gradients or occlusion (``auto``: integrated gradients where the model has gradients).
        A regression model's words score the predicted ``value`` (occlusion); a fused model's
        examples (``{"inputs": ...}``) are explained by occlusion: each input's share
        (``inputs``) and each title word's, named by its ``input``."""
        loaded = current()
        if loaded.classifier is None:
            raise RequestError(
                None, f"{loaded.model} is a {loaded.task} model; use /v1/recommend", 409
            )
        async with _inputs(request, loaded) as inputs:
            rows = await asyncio.to_thread(loaded.explain, inputs, method)
        return {"model": loaded.model, "backend": loaded.backend, "explanations": rows}

    @app.post(
        "/v1/embed", response_model=EmbedResponse, openapi_extra=TEXTS_OR_IMAGES, responses=ERRORS
    )
    async def embed(request: Request) -> dict[str, Any]:
        """The backbone's feature vector of each text (or image)."""
        loaded = current()
        if not loaded.has_backbone:
            raise RequestError(None, f"model {loaded.model} has no backbone to embed with", 409)
        async with _inputs(request, loaded) as inputs:
            rows = await request.app.state.batchers["embed"].submit(inputs)
        return {"model": loaded.model, "dimensions": len(rows[0]), "embeddings": rows}

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=ERRORS)
    async def recommend(body: RecommendRequest, request: Request) -> dict[str, Any]:
        """The top ``k`` items after a known user's history or an ad-hoc one; items already
        in the history are never recommended."""
        loaded = current()
        recommender = loaded.recommender
        if recommender is None:
            raise RequestError(None, f"{loaded.model} is not a recommendation model", 409)
        if (body.user is None) == (body.history is None):
            raise RequestError("user", "give a user id or a history of item ids, not both")
        if body.k is None:
            body.k = min(10, loaded.settings.max_k)
        if body.k > loaded.settings.max_k:
            raise RequestError("k", f"k {body.k}; at most {loaded.settings.max_k}")
        if body.user is not None and not recommender.knows_user(body.user):
            raise RequestError("user", f"unknown user '{body.user[:100]}'", 404)
        if body.history is not None:
            if not body.history:
                raise RequestError("history", "empty; give at least one item id")
            if len(body.history) > loaded.settings.max_items:
                raise RequestError(
                    "history", f"{len(body.history)} items; at most {loaded.settings.max_items}"
                )
            for i, item in enumerate(body.history):
                if not recommender.knows_item(item):
                    raise RequestError(f"history[{i}]", f"unknown item '{item[:100]}'", 404)
            if not recommender.scores_histories:
                raise RequestError(
                    "history", f"model {loaded.model} scores known users only; give a user", 409
                )
        (answer,) = await request.app.state.batchers["recommend"].submit([body])
        return answer

    return app


def _first_error(errors: Sequence[Any], skip: str | None = None) -> tuple[str | None, str]:
    """The field (``texts[2]``) and message of a pydantic validation error's first entry."""
    if not errors:
        return "body", "invalid request"
    error = errors[0]
    if error.get("type") == "json_invalid":
        return "body", "not JSON"
    parts = [str(p) for p in error.get("loc", ()) if p != skip]
    field = ""
    for part in parts:
        field += f"[{part}]" if part.isdigit() else (f".{part}" if field else part)
    return field or "body", str(error.get("msg", "invalid"))


class _inputs:
    """The texts of a JSON request, or the images of a multipart one saved to a temporary
    folder (removed on exit), checked against the limits and what the model reads."""

    def __init__(self, request: Request, service: Service) -> None:
        self.request, self.service = request, service
        self.folder: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> list[str]:
        content_type = self.request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            return await self._images()
        return await self._texts()

    async def __aexit__(self, *exc: object) -> None:
        if self.folder is not None:
            self.folder.cleanup()

    async def _texts(self) -> list[Any]:
        settings = self.service.settings
        try:
            body = json.loads(await self.request.body())
        except (ValueError, UnicodeDecodeError):
            raise RequestError("body", 'not JSON; send {"texts": [...]} or upload images') from None
        if self.service.reads == "inputs":
            return await self._fused(body)
        try:
            parsed = TextsRequest.model_validate(body)
        except ValidationError as exc:
            raise RequestError(*_first_error(exc.errors())) from None
        if (parsed.text is None) == (parsed.texts is None):
            raise RequestError("texts", "give 'text' (one) or 'texts' (a list), not both")
        field = "text" if parsed.text is not None else "texts"
        texts = [parsed.text] if parsed.text is not None else list(parsed.texts or [])
        if self.service.reads == "images":
            raise RequestError(
                field, f"model {self.service.model} reads images; upload them as 'images'"
            )
        if not texts:
            raise RequestError("texts", "empty; give at least one text")
        if len(texts) > settings.max_items:
            raise RequestError("texts", f"{len(texts)} texts; at most {settings.max_items}", 413)
        for i, text in enumerate(texts):
            name = field if parsed.text is not None else f"texts[{i}]"
            if not text.strip():
                raise RequestError(name, "empty; expected some text")
            if len(text) > settings.max_text_chars:
                raise RequestError(
                    name, f"{len(text)} characters; at most {settings.max_text_chars}", 413
                )
            if "\x00" in text:
                raise RequestError(name, "holds a NUL character")
        return texts

    async def _images(self) -> list[str]:
        settings = self.service.settings
        try:
            form = await self.request.form(
                max_files=settings.max_items + 1, max_fields=settings.max_items + 1
            )
        except Exception as exc:  # the multipart parser's own error types
            raise RequestError("body", f"not a readable multipart form ({exc})", 400) from None
        unexpected = [key for key in form if key != "images"]
        if unexpected:
            raise RequestError(unexpected[0], "unexpected field; upload files as 'images'")
        uploads = form.getlist("images")
        if self.service.reads == "inputs":
            raise RequestError(
                "images",
                f'model {self.service.model} is a fused model; send JSON {{"inputs": ...}}',
            )
        if self.service.reads != "images":
            raise RequestError("images", f"model {self.service.model} reads texts; send JSON")
        if not uploads:
            raise RequestError("images", "no files; upload at least one image")
        if len(uploads) > settings.max_items:
            raise RequestError(
                "images", f"{len(uploads)} images; at most {settings.max_items}", 413
            )
        self.folder = tempfile.TemporaryDirectory(prefix="shoptransfer-serve-")
        paths = []
        for i, upload in enumerate(uploads):
            name = f"images[{i}]"
            if isinstance(upload, str):
                raise RequestError(name, "a text field, not a file")
            data = await upload.read(settings.max_image_bytes + 1)
            if len(data) > settings.max_image_bytes:
                raise RequestError(
                    name, f"over {settings.max_image_bytes} bytes; at most that", 413
                )
            suffix = await asyncio.to_thread(_checked_image, data, settings.max_image_pixels, name)
            path = Path(self.folder.name) / f"{i}{suffix}"
            path.write_bytes(data)
            paths.append(str(path))
        return paths

    async def _fused(self, body: Any) -> list[dict[str, str]]:
        """A fused model's examples from ``{"inputs": {name: value}}`` (one) or ``{"inputs":
        [{...}, ...]}`` (many): a text for a text input, a base64-encoded image file for an
        image input; a name left out (or null) is missing, but each example needs one."""
        settings, kinds = self.service.settings, self.service.input_kinds
        expected = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
        if not isinstance(body, dict) or set(body) != {"inputs"}:
            raise RequestError(
                "body", f'send {{"inputs": {{name: value}}}} for the inputs {expected}'
            )
        given = body["inputs"]
        one = isinstance(given, dict)
        examples = [given] if one else given
        if not isinstance(examples, list) or not examples:
            raise RequestError("inputs", "give a mapping of input name -> value, or a list of them")
        if len(examples) > settings.max_items:
            raise RequestError(
                "inputs", f"{len(examples)} examples; at most {settings.max_items}", 413
            )
        self.folder = tempfile.TemporaryDirectory(prefix="shoptransfer-serve-")
        parsed: list[dict[str, str]] = []
        for i, example in enumerate(examples):
            where = "inputs" if one else f"inputs[{i}]"
            if not isinstance(example, dict):
                raise RequestError(where, "not a mapping of input name -> value")
            unknown = sorted(set(example) - set(kinds))
            if unknown:
                raise RequestError(
                    f"{where}.{unknown[0]}", f"unknown input; the model reads {expected}"
                )
            values: dict[str, str] = {}
            for name, value in example.items():
                field = f"{where}.{name}"
                if value is None:
                    continue
                if not isinstance(value, str) or not value.strip():
                    raise RequestError(field, "expected a non-empty string (or null: missing)")
                if kinds[name] == "text":
                    if len(value) > settings.max_text_chars:
                        raise RequestError(
                            field,
                            f"{len(value)} characters; at most {settings.max_text_chars}",
                            413,
                        )
                    if "\x00" in value:
                        raise RequestError(field, "holds a NUL character")
                    values[name] = value
                    continue
                try:
                    data = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise RequestError(
                        field, "not base64; send the image file base64-encoded"
                    ) from None
                if len(data) > settings.max_image_bytes:
                    raise RequestError(
                        field, f"over {settings.max_image_bytes} bytes; at most that", 413
                    )
                suffix = await asyncio.to_thread(
                    _checked_image, data, settings.max_image_pixels, field
                )
                path = Path(self.folder.name) / f"{i}-{name}{suffix}"
                path.write_bytes(data)
                values[name] = str(path)
            if not values:
                raise RequestError(where, f"no input given; give at least one of {expected}")
            parsed.append(values)
        return parsed


def _checked_image(data: bytes, max_pixels: int, field: str) -> str:
    """The file suffix of an uploaded image that Pillow decodes within ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise RequestError(
                        field, f"{width} x {height} pixels; at most {max_pixels:,}", 413
                    )
                image.load()
                return f".{(image.format or 'png').lower()}"
        except Image.DecompressionBombError:
            raise RequestError(field, f"too many pixels; at most {max_pixels:,}", 413) from None
        except UnidentifiedImageError:
            raise RequestError(field, "not an image file Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise RequestError(field, f"cannot decode the image ({str(exc)[:100]})") from None


def app_from_environment() -> FastAPI:
    """The application for one of uvicorn's worker processes (``--workers`` > 1): settings
    from :data:`SETTINGS_VARIABLE`."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_VARIABLE]))
    return create_app(settings=settings)


def serve(settings: ServeSettings, host: str, port: int, workers: int) -> None:
    """Load the model (mistakes are one-line errors here, before anything listens) and serve
    it with uvicorn until interrupted."""
    import uvicorn

    service = Service(settings)
    for line in service.describe():
        print(line, file=sys.stderr)
    if workers == 1:
        uvicorn.run(create_app(service), host=host, port=port, log_level="info")
        return
    os.environ[SETTINGS_VARIABLE] = json.dumps(dataclasses.asdict(settings))
    del service  # each worker loads its own
    uvicorn.run(
        "shoptransfer.serving:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
