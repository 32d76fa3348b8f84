"""Features of whole domains for measurements (the domain gap): frozen backbone features of
texts or images, or a feature domain's own vectors."""

from __future__ import annotations

import numpy as np

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.inputs import input_features
from shoptransfer.data.multi import MultiInputs


def default_backbone(holds: str) -> str:
    """The backbone used when a config names none, for what the data holds."""
    return "efficientnet-lite0" if holds == "images" else "minilm-l6"


def gap_features(
    source: object,
    target: object,
    backbone: str | None,
    *,
    max_length: int | None,
    image_size: int | None,
    cache: EmbeddingCache,
) -> tuple[np.ndarray, np.ndarray]:
    """Two feature matrices to measure the gap between ``source`` and ``target`` domains on.

    Vectors are standardised together (their scales are the user's); texts and images go
    through the frozen ``backbone``.
    """
    from shoptransfer.backbones import make_encoder

    source_inputs = source.inputs  # type: ignore[attr-defined]
    target_inputs = target.inputs  # type: ignore[attr-defined]
    if isinstance(source_inputs, MultiInputs):  # each input through its kind's default backbone
        return tuple(  # type: ignore[return-value]
            np.hstack(input_features(inputs, _default_encoders(inputs, image_size), cache)[0])
            for inputs in (source_inputs, target_inputs)
        )
    if isinstance(source_inputs, np.ndarray):
        scale = np.vstack([source_inputs, target_inputs]).std(axis=0) + 1e-6
        return source_inputs / scale, target_inputs / scale
    encoder = make_encoder(
        backbone or default_backbone(source.holds),  # type: ignore[attr-defined]
        max_length=max_length,
        image_size=image_size,
    )
    return cache.encode(encoder, source_inputs), cache.encode(encoder, target_inputs)


def _default_encoders(inputs: MultiInputs, image_size: int | None) -> dict[str, object]:
    from shoptransfer.backbones import make_encoder

    return {
        name: make_encoder(default_backbone(kind + "s"), image_size=image_size)
        for name, kind in inputs.kinds.items()
    }
