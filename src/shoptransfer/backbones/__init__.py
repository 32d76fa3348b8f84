"""Pretrained encoders (the prior knowledge) and their frozen-embedding cache."""

from __future__ import annotations

from typing import Any

from shoptransfer.backbones.cache import EmbeddingCache, default_cache_dir
from shoptransfer.backbones.registry import (
    BackboneSpec,
    backbone_modality,
    get_backbone_spec,
    list_backbones,
    register_backbone,
    resolve_backbone,
)
from shoptransfer.backbones.text import TextEncoder


def make_encoder(
    backbone: str,
    *,
    max_length: int | None = None,
    truncation: str = "head",
    image_size: int | None = None,
    pretrained: bool = True,
    precision: str = "fp32",
) -> Any:
    """The encoder a backbone name stands for: a :class:`TextEncoder` or an ``ImageEncoder``.

    Text settings (``max_length``, ``truncation``) are ignored by image backbones and
    ``image_size`` by text backbones. ``precision`` is the arithmetic of frozen features
    (:meth:`encode`): ``fp32``, or ``bf16`` (mixed precision, part of the cache key).
    """
    if backbone_modality(backbone) == "image":
        from shoptransfer.backbones.image import ImageEncoder

        return ImageEncoder(
            backbone, image_size or None, pretrained=pretrained, precision=precision
        )
    return TextEncoder(
        backbone, max_length, pretrained=pretrained, truncation=truncation, precision=precision
    )


__all__ = [
    "BackboneSpec",
    "EmbeddingCache",
    "TextEncoder",
    "backbone_modality",
    "make_encoder",
    "default_cache_dir",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
    "resolve_backbone",
]
