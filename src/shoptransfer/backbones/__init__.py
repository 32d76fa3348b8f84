"""Pretrained encoders (the prior knowledge) and their frozen-embedding cache."""

from shoptransfer.backbones.cache import EmbeddingCache, default_cache_dir
from shoptransfer.backbones.registry import (
    BackboneSpec,
    get_backbone_spec,
    list_backbones,
    register_backbone,
    resolve_backbone,
)
from shoptransfer.backbones.text import TextEncoder

__all__ = [
    "BackboneSpec",
    "EmbeddingCache",
    "TextEncoder",
    "default_cache_dir",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
    "resolve_backbone",
]
