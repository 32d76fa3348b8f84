"""Every task's recipes in one registry: the place that imports all the recipe packages.

A recipe registers itself when its module is imported. The recipe packages sit in layers
(``recommenders`` above ``recipes``) and a lower package never imports a higher one, so the
code that needs every recipe, whatever its task (the runners, the API, the CLI's listing),
takes ``make_recipe`` and ``list_recipes`` from here.
"""

from __future__ import annotations

import shoptransfer.recipes  # noqa: F401  (importing registers the classification recipes)
import shoptransfer.recommenders  # noqa: F401  (and the recommendation recipes)
from shoptransfer.recipes.base import list_recipes, make_recipe

__all__ = ["list_recipes", "make_recipe"]
