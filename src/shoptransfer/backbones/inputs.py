"""What a model reads for a domain, and how an encoder is described and rebuilt.

The place (with :mod:`shoptransfer.data`) that knows the kinds of inputs: a feature domain's
vectors are read as they are; texts and images go through a backbone, frozen (features,
through the embedding cache) or trained (raw inputs with the encoder's preprocessing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.image import ImageEncoder
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.domain import Domain, FeatureDomain
from shoptransfer.data.multi import MultiInputs
from shoptransfer.data.pixels import ImageInputs


def holds_vectors(domain: Domain) -> bool:
    """Whether ``domain`` holds precomputed vectors (no backbone reads them)."""
    return isinstance(domain, FeatureDomain)


def frozen_encoder_for(domain: Domain, make_encoder: Callable[[], Any]) -> Any | None:
    """The frozen backbone that turns ``domain``'s inputs into features (``make_encoder()``),
    or ``None`` when the domain holds vectors already."""
    return None if holds_vectors(domain) else make_encoder()


def feature_size(domain: Domain, frozen: Any | None) -> int:
    """How many features a model over ``domain`` (through ``frozen``, if any) reads."""
    return domain.dimension if frozen is None else frozen.hidden_size  # type: ignore[attr-defined]


def is_backbone(encoder: Any) -> bool:
    """Whether ``encoder`` is a pretrained text or image backbone (not an MLP or nothing)."""
    return isinstance(encoder, TextEncoder | ImageEncoder)


def frozen_features(
    encoder: Any, inputs: Sequence[str], cache: EmbeddingCache | None
) -> np.ndarray:
    """Features of texts (or image paths) from a frozen encoder, through the cache if given."""
    return cache.encode(encoder, inputs) if cache is not None else encoder.encode(inputs)


def input_features(
    inputs: MultiInputs, encoders: dict[str, Any], cache: EmbeddingCache | None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frozen features of each input ``encoders`` names (name -> encoder), in that order, each
    computed once per distinct text or image through the cache and zero where the input is
    missing; and the mask of present inputs (examples x inputs, 1.0 where present)."""
    features, mask = [], np.zeros((len(inputs), len(encoders)), dtype=np.float32)
    for column, (name, encoder) in enumerate(encoders.items()):
        present = inputs.present(name)
        values = [v for v in inputs.values[name] if v is not None]
        encoded = frozen_features(encoder, values, cache) if values else None
        size = encoder.hidden_size if encoded is None else encoded.shape[1]
        matrix = np.zeros((len(inputs), size), dtype=np.float32)
        if encoded is not None:
            matrix[present] = encoded
        features.append(matrix)
        mask[:, column] = present
    return features, mask


def trained_features(encoder: Any, values: Sequence[str]) -> Any:
    """Features of texts (or image paths) from an encoder that trains (with gradients): the
    texts tokenised, the image files decoded without augmentation."""
    if isinstance(encoder, ImageEncoder):
        return encoder.embed_files(values)
    return encoder.embed({"texts": list(values)})


def input_kind_encoder(kind: str, text: Callable[[], Any], image: Callable[[], Any]) -> Any:
    """The encoder of an input of ``kind`` (``text`` or ``image``): ``text()`` or ``image()``."""
    return image() if kind == "image" else text()


def domain_inputs(
    domain: Domain, frozen: Any, cache: EmbeddingCache | None, encoder: Any = None
) -> list[str] | np.ndarray | ImageInputs:
    """What a model reads for ``domain``: its vectors, frozen features of its texts or images,
    or the raw inputs for ``encoder`` (texts, or image files with its preprocessing)."""
    if isinstance(domain, FeatureDomain):
        return domain.vectors
    if frozen is not None:
        return frozen_features(frozen, domain.inputs, cache)
    return raw_inputs(encoder, domain.inputs)


def raw_inputs(encoder: Any, inputs: Sequence[str]) -> list[str] | ImageInputs:
    """Texts as a list; image paths with the preprocessing of the image ``encoder``."""
    if isinstance(encoder, ImageEncoder):
        return encoder.inputs(inputs)
    return list(inputs)


def encoder_spec(encoder: Any) -> dict[str, Any]:
    """What rebuilds ``encoder`` (a text or image backbone) when a model is loaded."""
    precision = {"precision": encoder.precision} if encoder.precision != "fp32" else {}
    if isinstance(encoder, ImageEncoder):
        return {
            "name": encoder.backbone,
            "image_size": encoder.image_size,
            "pretrained": encoder.pretrained,
            **precision,
        }
    return {
        "name": encoder.backbone,
        "max_length": encoder.max_length,
        "pretrained": encoder.pretrained,
        "truncation": encoder.truncation,
        **precision,
        **({"adapted": encoder.adapted} if getattr(encoder, "adapted", None) else {}),
    }


def encoder_from_spec(spec: dict[str, Any], pretrained: bool = True) -> Any:
    """The encoder :func:`encoder_spec` describes (an adapted one without its adapted weights:
    the saved model holds them)."""
    from shoptransfer.backbones import make_encoder

    encoder = make_encoder(
        spec["name"],
        max_length=spec.get("max_length"),
        truncation=spec.get("truncation", "head"),
        image_size=spec.get("image_size"),
        pretrained=pretrained,
        precision=spec.get("precision", "fp32"),
    )
    if spec.get("adapted"):
        encoder.adapted = spec["adapted"]
    return encoder


def saved_model_reads(metadata: dict[str, Any]) -> str:
    """What a saved model (its ``model.json``) reads: 'texts', 'images', 'vectors', or 'inputs'
    (several named inputs per example: a fused model)."""
    if metadata.get("kind") == "fusion":
        return "inputs"
    spec = metadata.get("spec", {})
    backbone = spec.get("backbone") or spec.get("frozen_backbone")
    if backbone is not None:
        return "images" if "image_size" in backbone else "texts"
    return "vectors" if metadata.get("kind") == "neural" else "texts"
