"""Transfer strategies (recipes), their registry and the predictors they return."""

from shoptransfer.recipes import fine_tune, frozen_features, scratch_transformer, tfidf  # noqa: F401
from shoptransfer.recipes.base import (
    Predictor,
    Recipe,
    list_recipes,
    load_predictor,
    make_recipe,
    register_recipe,
)

__all__ = [
    "Predictor",
    "Recipe",
    "list_recipes",
    "load_predictor",
    "make_recipe",
    "register_recipe",
]
