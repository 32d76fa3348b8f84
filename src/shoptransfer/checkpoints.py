"""Epoch checkpoints, so that an interrupted run can resume where it stopped.

The runner opens a :func:`checkpointing` scope around each cell (a recipe at one budget and
seed), with the cell's own folder. Inside it, every call of the trainer's ``fit`` asks
:func:`next_checkpoint` for its file (``fit-1.pt``, ``fit-2.pt``, ... in call order) and
writes its state there atomically after each epoch, and once more when it finishes. A stage
that a run may share between cells (a pre-training kept in the run's stage cache) trains
inside :func:`stage_checkpoints`, a sub-folder named by the stage's key, so the cell's own fits
keep their numbers whether the stage was trained here or reused. Outside a scope nothing is
written.

A checkpoint holds everything an epoch boundary needs to continue exactly as an
uninterrupted fit would: the model, optimiser, scheduler, the batch-order generator, the target
stream's position, the objectives' and a validation scorer's state, the history and the best
epoch so far, and the global random states (torch, numpy, python).
"""

from __future__ import annotations

import hashlib
import io
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoptransfer.files import atomic_write_bytes

CHECKPOINTS = "checkpoints"  # the folder of a run's checkpoints, one sub-folder per cell


@dataclass
class Scope:
    folder: Path
    fits: int = 0


_SCOPE: ContextVar[Scope | None] = ContextVar("shoptransfer_checkpoints", default=None)


@contextmanager
def checkpointing(folder: Path | None) -> Iterator[None]:
    """Fits in the block keep their checkpoints in ``folder`` (None: no checkpoints)."""
    token = _SCOPE.set(Scope(Path(folder)) if folder is not None else None)
    try:
        yield
    finally:
        _SCOPE.reset(token)


@contextmanager
def stage_checkpoints(key: Any) -> Iterator[None]:
    """Fits in the block (a shared stage's training) keep their checkpoints in a sub-folder of
    the active scope named by ``key``, numbered on their own."""
    scope = _SCOPE.get()
    if scope is None:
        yield
        return
    digest = hashlib.sha256(repr(key).encode("utf-8")).hexdigest()[:16]
    with checkpointing(scope.folder / f"stage-{digest}"):
        yield


def next_checkpoint() -> Path | None:
    """The checkpoint file of the next fit in the active scope, or None outside one."""
    scope = _SCOPE.get()
    if scope is None:
        return None
    scope.fits += 1
    return scope.folder / f"fit-{scope.fits}.pt"


def random_states() -> dict[str, Any]:
    """The global random states: torch (and CUDA where present), numpy and python."""
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill mid-write leaves the previous one)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path | None) -> dict[str, Any] | None:
    """The state saved at ``path``, or None when there is none."""
    if path is None or not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def remove_checkpoints(folder: Path) -> None:
    """Remove a finished cell's checkpoints (and the run's checkpoint folder once empty)."""
    shutil.rmtree(folder, ignore_errors=True)
    with suppress(OSError):  # other cells' checkpoints, or already gone
        folder.parent.rmdir()


@contextmanager
def keeping_random_states() -> Iterator[None]:
    """The global random states after the block are those before it: a shared stage trained
    in the block leaves what follows it as a reuse of that stage would (nothing drawn)."""
    states = random_states()
    try:
        yield
    finally:
        restore_random_states(states)
