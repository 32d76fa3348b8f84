"""Pretrained encoders (the prior knowledge) and their frozen-embedding cache."""

from __future__ import annotations

from typing import Any

from shoptransfer.backbones.cache import EmbeddingCache, default_cache_dir
from shoptransfer.backbones.registry import (
    BackboneSpec,
    backbone_modality,
    frozen_only,
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
    """The encoder a backbone name stands for: a :class:`TextEncoder`, an ``ImageEncoder``, or
    a frozen ``PackagedTextEncoder`` (its package computes the embeddings).

    Text settings (``max_length``, ``truncation``) are ignored by image backbones and by
    packaged ones (they read whole texts), ``image_size`` by text backbones. ``precision`` is
    the arithmetic of frozen features (:meth:`encode`): ``fp32``, or ``bf16`` (mixed
    precision, part of the cache key).
    """
    spec = get_backbone_spec(backbone)
    if spec is not None and spec.engine is not None:
        from shoptransfer.backbones.packaged import PackagedTextEncoder

        if not pretrained:
            spec.locate()  # the ConfigError: nothing to train
        return PackagedTextEncoder(backbone, spec.engine)
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
    "frozen_only",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
    "resolve_backbone",
]
