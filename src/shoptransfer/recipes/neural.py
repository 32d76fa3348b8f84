"""The predictor every neural recipe returns, and helpers to feed domains to models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.domain import Domain, FeatureDomain
from shoptransfer.data.sampling import train_validation_split
from shoptransfer.errors import DataError
from shoptransfer.recipes.base import Predictor, register_predictor
from shoptransfer.training import Classifier, Examples, FeatureMLP, predict_logits


def split_source(source: Domain, validation_fraction: float, seed: int) -> tuple[Any, Any]:
    """The source's (train, validation) split used for model selection."""
    return train_validation_split(source, validation_fraction, seed)


def frozen_features(
    encoder: TextEncoder, texts: Sequence[str], cache: EmbeddingCache | None
) -> np.ndarray:
    return cache.encode(encoder, texts) if cache is not None else encoder.encode(texts)


def domain_inputs(
    domain: Domain, frozen: TextEncoder | None, cache: EmbeddingCache | None
) -> list[str] | np.ndarray:
    """What a model reads for ``domain``: its vectors, frozen features of its texts, or texts."""
    if isinstance(domain, FeatureDomain):
        return domain.vectors
    if frozen is not None:
        return frozen_features(frozen, domain.inputs, cache)
    return list(domain.inputs)


@register_predictor
class NeuralPredictor(Predictor):
    """A trained :class:`Classifier` with what it needs to read raw inputs.

    ``spec`` says how to rebuild it: the text backbone (``backbone``, ``max_length``,
    ``pretrained``, ``peft``) when the model trains one; ``frozen_backbone`` when a frozen text
    encoder feeds it features; ``mlp`` when an MLP encoder sits under the head; ``saved``
    (``all`` or ``trained``: which weights the file holds).
    """

    kind = "neural"

    def __init__(
        self,
        classes: list[str],
        model: Classifier,
        spec: dict[str, Any],
        frozen: TextEncoder | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.classes = classes
        self.model = model.eval()
        self.spec = spec
        self.frozen = frozen
        self.cache = cache
        self._trainable = spec.get("trainable_parameters") or sum(
            p.numel() for p in model.parameters() if p.requires_grad
        )

    @classmethod
    def from_training(
        cls,
        classes: list[str],
        model: Classifier,
        recipe: Any,
        frozen: TextEncoder | None,
        cache: EmbeddingCache | None,
    ) -> NeuralPredictor:
        """Wrap a freshly trained model; ``recipe`` supplies the settings to record."""
        spec: dict[str, Any] = {}
        if isinstance(model.encoder, TextEncoder):
            spec["backbone"] = {
                "name": model.encoder.backbone,
                "max_length": model.encoder.max_length,
                "pretrained": model.encoder.pretrained,
                "truncation": model.encoder.truncation,
                "peft": recipe.peft_spec() if hasattr(recipe, "peft_spec") else None,
            }
        if frozen is not None:
            spec["frozen_backbone"] = {
                "name": frozen.backbone,
                "max_length": frozen.max_length,
                "truncation": frozen.truncation,
            }
        if isinstance(model.encoder, FeatureMLP):
            first = model.encoder.net[0]
            spec["mlp"] = {"input_size": first.in_features, "hidden_size": first.out_features}
        spec["precision"] = model.precision
        everything_trains = all(p.requires_grad for p in model.parameters())
        pretrained = spec.get("backbone", {}).get("pretrained", False)
        spec["saved"] = "trained" if pretrained and not everything_trains else "all"
        spec["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return cls(classes, model, spec, frozen, cache)

    def predict_proba(self, inputs: Sequence[str] | np.ndarray) -> np.ndarray:
        if self.frozen is not None:
            data: list[str] | np.ndarray = frozen_features(self.frozen, list(inputs), self.cache)
        elif isinstance(self.model.encoder, TextEncoder):
            data = list(inputs)
        else:
            data = np.asarray(inputs, dtype=np.float32)
        logits = predict_logits(self.model, Examples(data))
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    @property
    def trainable_parameters(self) -> int:
        return int(self._trainable)

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        trained = {name for name, p in self.model.named_parameters() if p.requires_grad}
        state = {
            name: tensor.detach().contiguous().clone()
            for name, tensor in self.model.state_dict().items()
            if self.spec["saved"] == "all" or name in trained or name.startswith("head.")
        }
        save_file(state, str(folder / "model.safetensors"))
        return {"spec": self.spec}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any]) -> NeuralPredictor:
        from shoptransfer.recipes.peft_methods import apply_peft

        spec = metadata["spec"]
        classes = list(metadata["classes"])
        encoder: Any = None
        if "backbone" in spec:
            b = spec["backbone"]
            # When every weight was saved, build the network and load them all.
            encoder = TextEncoder(
                b["name"],
                b["max_length"],
                pretrained=b["pretrained"] and spec["saved"] != "all",
                truncation=b.get("truncation", "head"),
            )
            encoder.pretrained = b["pretrained"]
            if b.get("peft"):
                apply_peft(encoder, b["peft"])
        elif "mlp" in spec:
            encoder = FeatureMLP(spec["mlp"]["input_size"], spec["mlp"]["hidden_size"])
        frozen = None
        if "frozen_backbone" in spec:
            f = spec["frozen_backbone"]
            frozen = TextEncoder(f["name"], f["max_length"], truncation=f.get("truncation", "head"))
        state = load_file(str(folder / "model.safetensors"))
        size = encoder.hidden_size if encoder is not None else int(state["head.weight"].shape[1])
        model = Classifier(len(classes), size, encoder, spec.get("precision", "fp32"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [name for name in missing if not name.endswith("position_ids")]
        if unexpected or (spec["saved"] == "all" and missing):
            raise DataError(
                f"{folder}: the saved weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return cls(classes, model, spec, frozen)
