"""Project errors: raised for a user's mistake, caught by the CLI and printed as one line."""

from __future__ import annotations


class ShopTransferError(Exception):
    """Base class of every error caused by input the user gave us."""


class DataError(ShopTransferError):
    """A data file or table is missing, unreadable or does not hold what was expected."""


class ConfigError(ShopTransferError):
    """A configuration value or option is invalid."""
