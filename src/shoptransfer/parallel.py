"""Data-parallel training across processes and machines, on Hugging Face Accelerate.

A run started by ``accelerate launch`` (or ``shoptransfer run --processes N``, which calls it)
runs the same code in every process. Every process draws the same batches from the same seeded
generator; each computes the gradient of its own slice of every batch, and the slices' gradients
are summed across the processes before the optimiser steps, so every process holds the same
model after every step. Only the main process writes files (results, models, checkpoints).

Outside such a launch (no ``WORLD_SIZE`` above 1) this module imports nothing from Accelerate,
and training runs in one process as before.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from functools import cache
from typing import Any

import torch

from shoptransfer.errors import ConfigError


@cache
def _state() -> Any:
    """Accelerate's process state when launched across processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    try:
        from accelerate import PartialState
    except ImportError:
        raise ConfigError(
            "several processes need Accelerate: pip install 'shoptransfer[distributed]'"
        ) from None
    # without a GPU: CPU processes talking over gloo
    return PartialState(cpu=not torch.cuda.is_available())


def processes() -> tuple[int, int]:
    """(this process's index, the number of processes); (0, 1) in a plain run."""
    state = _state()
    return (0, 1) if state is None else (state.process_index, state.num_processes)


def is_main() -> bool:
    """Whether this process writes files (the only process of a plain run)."""
    return processes()[0] == 0


def shard(batch: dict[str, Any], rank: int, size: int) -> dict[str, Any]:
    """Process ``rank``'s contiguous slice of ``batch`` (the batch itself when ``size`` is 1)."""
    n = len(batch["labels"])
    if size == 1:
        return batch
    start, stop = rank * n // size, (rank + 1) * n // size
    return {
        key: value[start:stop]
        if isinstance(value, torch.Tensor | list) and len(value) == n
        else value
        for key, value in batch.items()
    }


def sum_gradients(parameters: list[torch.nn.Parameter], extra: list[torch.Tensor]) -> None:
    """Sum the parameters' gradients and the ``extra`` tensors (in place) across processes.

    A parameter that has no gradient in any process keeps none (the optimiser skips it, as
    it would in one process); one that has a gradient in some process gets the sum."""
    state = _state()
    if state is None:
        return
    from accelerate.utils import reduce

    has = torch.tensor([float(p.grad is not None) for p in parameters])
    has = reduce(has, "sum")
    used = [p for p, flag in zip(parameters, has.tolist(), strict=True) if flag > 0]
    for p in used:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    tensors = [p.grad for p in used] + extra
    if not tensors:
        return
    flat = reduce(torch.cat([t.reshape(-1).float() for t in tensors]), "sum")
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()


def share(value: Any) -> Any:
    """The main process's ``value``, in every process."""
    state = _state()
    if state is None:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(processes: int, argv: list[str]) -> int:
    """Run ``shoptransfer argv`` in ``processes`` processes on this machine through
    ``accelerate launch``; return its exit status."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--processes needs Accelerate: pip install 'shoptransfer[distributed]'"
        ) from None
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # on a machine without GPUs: CPU processes over gloo
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "shoptransfer.cli",
        *argv,
    ]
    return subprocess.run(command, check=False).returncode
