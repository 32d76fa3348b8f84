"""Next-item recommendation recipes (registered with the text recipes, task 'recommendation')."""

from shoptransfer.recommenders import popularity, sequential  # noqa: F401  (registers recipes)
from shoptransfer.recommenders.base import ItemRanker, RecommendationRecipe

__all__ = ["ItemRanker", "RecommendationRecipe"]
