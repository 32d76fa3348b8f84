"""Counting the work a training run does, to estimate its floating-point operations.

The trainer reports, for every step, how many input units it processed (tokens for a text
encoder, examples for features) and the model's forward and trainable parameter counts. A
step costs about ``2 N_forward`` FLOPs per unit forward and ``4 N_trainable`` backward
(Kaplan et al. 2020's ``6 N`` per token when everything trains). ``measure()`` sums them.

A :class:`StageCache` keeps a run's trained stages for reuse and charges each reuse the
stage's full cost, so a recipe's seconds and FLOPs do not depend on what ran before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Meter:
    flops: float = 0.0
    units: int = 0
    reused_seconds: float = 0.0  # training time of a stage computed once and reused


_METER: ContextVar[Meter | None] = ContextVar("shoptransfer_meter", default=None)


def record_step(units: int, forward_parameters: int, trainable_parameters: int) -> None:
    meter = _METER.get()
    if meter is not None:
        meter.units += units
        meter.flops += units * (2.0 * forward_parameters + 4.0 * trainable_parameters)


@contextmanager
def measure() -> Iterator[Meter]:
    """Sum the estimated training FLOPs of everything trained inside the block."""
    outer = _METER.get()
    meter = Meter()
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)
        if outer is not None:  # nested measurements count toward the enclosing one too
            outer.flops += meter.flops
            outer.units += meter.units
            outer.reused_seconds += meter.reused_seconds


def charge_reused(seconds: float, flops: float, curve: list[tuple[float, float]]) -> None:
    """Count a reused stage's cost as if it had been trained again.

    ``curve`` holds the stage's own quality points (seconds from its start); an active monitor
    replays them, and its clock moves on by the stage's ``seconds``.
    """
    meter = _METER.get()
    if meter is not None:
        meter.reused_seconds += seconds
        meter.flops += flops
    monitor = _MONITOR.get()
    if monitor is not None:
        offset = monitor.elapsed()
        monitor.curve.extend((round(offset + at, 3), value) for at, value in curve)
        monitor.started -= seconds


@dataclass
class Stage:
    """A trained stage kept for reuse, with what training it cost."""

    value: Any
    seconds: float
    flops: float = 0.0
    curve: list[tuple[float, float]] = field(default_factory=list)  # quality points, from 0


class StageCache:
    """Trained stages (a pre-training on the source) that later fits of one run may reuse.

    The runner makes one per run and hands it to every fit, so nothing is kept in class or
    module state and a fit without a cache trains everything itself. ``get`` charges a reused
    stage's full cost (:func:`charge_reused`) to the fit that reuses it, as if trained again.
    The oldest stage goes when more than ``limit`` are kept.
    """

    def __init__(self, limit: int = 4) -> None:
        self.limit = limit
        self._stages: dict[Any, Stage] = {}

    def __len__(self) -> int:
        return len(self._stages)

    def get(self, key: Any) -> Any | None:
        """The value kept under ``key`` (its cost charged to the active meter), or None."""
        stage = self._stages.get(key)
        if stage is None:
            return None
        charge_reused(stage.seconds, stage.flops, stage.curve)
        return stage.value

    def put(
        self,
        key: Any,
        value: Any,
        seconds: float,
        flops: float = 0.0,
        curve: list[tuple[float, float]] | None = None,
    ) -> None:
        """Keep ``value``, which took ``seconds`` (and ``flops``) to train."""
        self._stages.pop(key, None)
        self._stages[key] = Stage(value, seconds, flops, list(curve or []))
        while len(self._stages) > self.limit:
            self._stages.pop(next(iter(self._stages)))


@dataclass
class Clock:
    seconds: float = 0.0
    curve: list[tuple[float, float]] = field(default_factory=list)  # quality points, from 0


@contextmanager
def training_clock() -> Iterator[Clock]:
    """Seconds spent in the block, less the time an active quality monitor spent scoring."""
    monitor = _MONITOR.get()
    scored = monitor.scoring_seconds if monitor is not None else 0.0
    points = len(monitor.curve) if monitor is not None else 0
    begin = monitor.elapsed() if monitor is not None else 0.0
    clock = Clock()
    started = time.perf_counter()
    try:
        yield clock
    finally:
        scoring = (monitor.scoring_seconds - scored) if monitor is not None else 0.0
        clock.seconds = time.perf_counter() - started - scoring
        if monitor is not None:
            clock.curve = [(at - begin, value) for at, value in monitor.curve[points:]]


class QualityMonitor:
    """Records (training seconds, target macro-F1) after every epoch of every training stage.

    ``score(predictor) -> macro-F1`` is supplied by the caller (the comparison evaluates a fixed
    sample of the target test set). Seconds exclude the time spent scoring.
    """

    def __init__(self, score: Any) -> None:
        self.score = score
        self.started = time.perf_counter()
        self.scoring_seconds = 0.0
        self.curve: list[tuple[float, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.scoring_seconds

    def observe(self, predictor: Any) -> None:
        at = self.elapsed()
        begin = time.perf_counter()
        value = float(self.score(predictor))
        self.scoring_seconds += time.perf_counter() - begin
        self.curve.append((round(at, 3), value))


_MONITOR: ContextVar[QualityMonitor | None] = ContextVar("shoptransfer_monitor", default=None)


def epoch_finished(make_predictor: Any, model: Any) -> None:
    """Called by the trainer after each epoch; scores the model if a monitor is active."""
    monitor = _MONITOR.get()
    if monitor is not None and make_predictor is not None:
        was_training = model.training
        monitor.observe(make_predictor(model))
        model.train(was_training)


@contextmanager
def monitoring(monitor: QualityMonitor) -> Iterator[QualityMonitor]:
    token = _MONITOR.set(monitor)
    try:
        yield monitor
    finally:
        _MONITOR.reset(token)
