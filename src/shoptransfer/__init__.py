"""shoptransfer: transfer learning for e-commerce, measured against training from scratch."""

from shoptransfer.api import compare, load_model, predict, read_domain, recommend, run_experiment
from shoptransfer.config import ExperimentConfig, load_config, parse_config
from shoptransfer.data import TextDomain, read_blitzer, read_table
from shoptransfer.errors import ConfigError, DataError, ShopTransferError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ExperimentConfig",
    "ShopTransferError",
    "TextDomain",
    "compare",
    "load_config",
    "load_model",
    "parse_config",
    "predict",
    "read_blitzer",
    "read_domain",
    "read_table",
    "recommend",
    "run_experiment",
]
