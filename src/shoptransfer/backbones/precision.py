"""The arithmetic a backbone computes in: ``fp32``, or ``bf16`` (mixed precision).

Under ``bf16`` matrix products and convolutions run in bfloat16 while weights, and the
operations autocast keeps in float32, stay float32. On CPUs with native bfloat16 (AVX512-BF16,
AMX) this is about 2x faster (EfficientNet-Lite0 at 224 px: 28 -> 64 photos/s on 2 cores);
on CPUs without it, slower. Features differ from float32 ones by about 1e-3 in cosine.
"""

from __future__ import annotations

import contextlib

import torch

from shoptransfer.errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}'; expected one of {list(PRECISIONS)}")
    return precision


def computing_in(precision: str) -> contextlib.AbstractContextManager[object]:
    """A context in which a backbone's forward pass runs in ``precision``."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
