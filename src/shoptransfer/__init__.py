"""shoptransfer: transfer learning for e-commerce, measured against training from scratch.

The names below are imported when first used, so that importing a light module of the
package (the ONNX runtime, say) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "compare": "shoptransfer.api",
    "export_model": "shoptransfer.api",
    "load_model": "shoptransfer.api",
    "predict": "shoptransfer.api",
    "read_domain": "shoptransfer.api",
    "recommend": "shoptransfer.api",
    "run_experiment": "shoptransfer.api",
    "select_backbone": "shoptransfer.api",
    "ExperimentConfig": "shoptransfer.config",
    "load_config": "shoptransfer.config",
    "parse_config": "shoptransfer.config",
    "TextDomain": "shoptransfer.data",
    "read_blitzer": "shoptransfer.data",
    "read_table": "shoptransfer.data",
    "ConfigError": "shoptransfer.errors",
    "DataError": "shoptransfer.errors",
    "ShopTransferError": "shoptransfer.errors",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'shoptransfer' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
