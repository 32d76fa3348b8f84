"""Next-item recommendation recipes (task 'recommendation'), one model per module.

Importing the package registers its recipes and saved-model kinds; code that needs every
recipe of every task takes them from :mod:`shoptransfer.catalogue`.
"""

from shoptransfer.recommenders import (  # noqa: F401  (importing registers the recipes)
    bpr,
    item_knn,
    popularity,
    sasrec,
    text_seq,
)
from shoptransfer.recommenders.base import ItemRanker, RecommendationRecipe

__all__ = ["ItemRanker", "RecommendationRecipe"]
