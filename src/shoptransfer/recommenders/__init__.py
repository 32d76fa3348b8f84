"""Recommendation recipes, one model per module: next-item recommendation (task
'recommendation') and rating prediction (task 'rating', the ``rating_*`` modules).

Importing the package registers its recipes and saved-model kinds; code that needs every
recipe of every task takes them from :mod:`shoptransfer.catalogue`.
"""

from shoptransfer.recommenders import (  # noqa: F401  (importing registers the recipes)
    bpr,
    item_knn,
    popularity,
    rating_biases,
    rating_mf,
    sasrec,
    text_seq,
)
from shoptransfer.recommenders.base import ItemRanker, RecommendationRecipe

__all__ = ["ItemRanker", "RecommendationRecipe"]
