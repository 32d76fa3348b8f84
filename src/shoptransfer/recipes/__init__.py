"""Transfer strategies (recipes), their registry and the predictors they return."""

from shoptransfer.recipes import (  # noqa: F401  (importing registers the recipes)
    auto,
    frozen_features,
    fusion,
    presets,
    scratch_transformer,
    tfidf,
    transfer,
)
from shoptransfer.recipes.base import (
    FitData,
    Predictor,
    Recipe,
    list_recipes,
    load_predictor,
    make_recipe,
    register_recipe,
)

__all__ = [
    "FitData",
    "Predictor",
    "Recipe",
    "list_recipes",
    "load_predictor",
    "make_recipe",
    "register_recipe",
]
