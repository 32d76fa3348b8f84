"""The arithmetic a backbone computes in, chosen from what the machine computes natively.

``fp32``; ``bf16`` (mixed precision: matrix products and convolutions in bfloat16, weights and
the operations autocast keeps in float32 stay float32); or ``auto`` (the default): ``bf16``
where the CPU (or GPU) computes bfloat16 natively, ``fp32`` elsewhere. On CPUs with native
bfloat16 (AVX512-BF16, AMX) ``bf16`` is about 2x faster (EfficientNet-Lite0 at 224 px: 28 -> 64
photos/s on 2 cores of an AMD EPYC with AVX512-BF16); on CPUs without it (AVX2 only) it is
several times slower (EfficientNet-Lite2 at 260 px: 7.0 photos/s in fp32, 1.2 in bf16 on an
AVX2-only EPYC). Features differ from float32 ones by about 1e-3 in cosine.
``$SHOPTRANSFER_PRECISION`` (``fp32`` or ``bf16``) decides what ``auto`` means on a machine.

The threads PyTorch uses follow the cores this process may run on (its CPU affinity and the
cgroup's CPU quota), unless ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from pathlib import Path

import torch

from shoptransfer.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # as /proc/cpuinfo names them


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def native_bf16() -> bool:
    """Whether this machine computes bfloat16 natively (a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX)."""
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


def check_precision(precision: str) -> str:
    """``precision`` resolved for this machine (``auto`` -> ``bf16`` or ``fp32``)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}'; expected one of {list(PRECISIONS)}")
    if precision != "auto":
        return precision
    chosen = os.environ.get("SHOPTRANSFER_PRECISION", "").strip()
    if chosen:
        if chosen not in ("fp32", "bf16"):
            raise ConfigError(
                f"SHOPTRANSFER_PRECISION '{chosen}'; expected 'fp32' or 'bf16' (or unset)"
            )
        return chosen
    return "bf16" if native_bf16() else "fp32"


@functools.cache
def bf16_slowdown() -> float:
    """How many times longer a matrix product takes in bf16 than in fp32 here (measured)."""
    a = torch.randn(384, 384)

    def seconds(dtype: torch.dtype) -> float:
        x = a.to(dtype)
        x @ x  # warm up
        start = time.perf_counter()
        for _ in range(10):
            x @ x
        return time.perf_counter() - start

    return seconds(torch.bfloat16) / max(seconds(torch.float32), 1e-9)


def precision_warning(precision: str) -> str | None:
    """A warning when ``precision`` asks for bf16 on a machine without native bfloat16."""
    if precision != "bf16" or native_bf16():
        return None
    return (
        "precision bf16 on a CPU without native bfloat16 (no AVX512-BF16 or AMX): a matrix "
        f"product here takes {bf16_slowdown():.1f}x as long as in fp32; precision 'auto' "
        "(the default) would choose fp32"
    )


def computing_in(precision: str) -> contextlib.AbstractContextManager[object]:
    """A context in which a backbone's forward pass runs in ``precision`` (as
    :func:`check_precision` resolved it when the model was built)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def use_usable_cores() -> int:
    """Set PyTorch's threads to the usable cores (unless OMP_NUM_THREADS is set); return them."""
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(usable_cores())
    return torch.get_num_threads()
