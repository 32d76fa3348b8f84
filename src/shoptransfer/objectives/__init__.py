"""Auxiliary training objectives: alignment, regularisation, spectral penalties.

Importing the package registers every objective; see :mod:`shoptransfer.objectives.base`.
"""

from shoptransfer.objectives import bss, coral, dann, l2sp, mcc, mlm, mmd  # noqa: F401  (registers)
from shoptransfer.objectives.base import (
    STAGES,
    ObjectiveConfig,
    list_objectives,
    make_objective,
    register_objective,
)

__all__ = ["STAGES", "ObjectiveConfig", "list_objectives", "make_objective", "register_objective"]
