"""The predictor every neural recipe returns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.torch import save_file

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.inputs import (
    encoder_from_spec,
    encoder_spec,
    frozen_features,
    is_backbone,
    raw_inputs,
)
from shoptransfer.data.domain import Domain
from shoptransfer.data.sampling import train_validation_split
from shoptransfer.errors import DataError
from shoptransfer.heads import Outputs
from shoptransfer.recipes.base import Predictor, register_model
from shoptransfer.runs import read_weights
from shoptransfer.training import (
    Classifier,
    Examples,
    FeatureMLP,
    FeatureTransform,
    predict_logits,
)


def split_source(source: Domain, validation_fraction: float, seed: int) -> tuple[Any, Any]:
    """The source's (train, validation) split used for model selection (stratified by label
    where the source has labels, else at random)."""
    return train_validation_split(source, validation_fraction, seed)


@register_model
class NeuralPredictor(Predictor):
    """A trained :class:`Classifier` with what it needs to read raw inputs.

    ``spec`` says how to rebuild it: the text backbone (``backbone``, ``max_length``,
    ``pretrained``, ``peft``) when the model trains one; ``frozen_backbone`` when a frozen text
    encoder feeds it features; ``mlp`` when an MLP encoder sits under the head; ``saved``
    (``all`` or ``trained``: which weights the file holds); ``outputs`` when the model predicts
    a number or several tasks' classes (:class:`~shoptransfer.heads.Outputs`).
    """

    kind = "neural"
    metadata_types: ClassVar[dict[str, Any]] = {"classes": list[str], "spec": dict[str, Any]}

    def __init__(
        self,
        classes: list[str],
        model: Classifier,
        spec: dict[str, Any],
        frozen: Any | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.classes = classes
        self._outputs = Outputs.from_spec(spec.get("outputs"), classes)
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
        outputs: Outputs | list[str],
        model: Classifier,
        recipe: Any,
        frozen: Any | None,
        cache: EmbeddingCache | None,
    ) -> NeuralPredictor:
        """Wrap a freshly trained model; ``recipe`` supplies the settings to record;
        ``outputs``: what it predicts (or its classes)."""
        if not isinstance(outputs, Outputs):
            outputs = Outputs.of_classes(outputs)
        spec: dict[str, Any] = {}
        if outputs.spec() is not None:
            spec["outputs"] = outputs.spec()
        if is_backbone(model.encoder):
            spec["backbone"] = {
                **encoder_spec(model.encoder),
                "peft": recipe.peft_spec() if hasattr(recipe, "peft_spec") else None,
            }
        if frozen is not None:
            spec["frozen_backbone"] = encoder_spec(frozen)
        if isinstance(model.encoder, FeatureMLP):
            first = model.encoder.net[0]
            spec["mlp"] = {"input_size": first.in_features, "hidden_size": first.out_features}
        if isinstance(model.encoder, FeatureTransform):
            spec["feature_transform"] = model.encoder.name
        spec["precision"] = model.precision
        everything_trains = all(p.requires_grad for p in model.parameters())
        pretrained = spec.get("backbone", {}).get("pretrained", False)
        # an adapted backbone's weights are not the pretrained ones: all of them are saved
        adapted = spec.get("backbone", {}).get("adapted")
        spec["saved"] = "trained" if pretrained and not adapted and not everything_trains else "all"
        spec["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return cls(list(outputs.classes), model, spec, frozen, cache)

    @property
    def outputs(self) -> Outputs:
        return self._outputs

    def _predictions(self, inputs: Sequence[str] | np.ndarray) -> Any:
        """Probabilities, numbers or per-task probabilities of texts, image paths or vectors
        (what the model was trained on)."""
        data: Any
        if self.frozen is not None:
            data = frozen_features(self.frozen, list(inputs), self.cache)
        elif is_backbone(self.model.encoder):
            data = raw_inputs(self.model.encoder, list(inputs))
        else:
            data = np.asarray(inputs, dtype=np.float32)
        return self._outputs.predictions(predict_logits(self.model, Examples(data)))

    def predict_proba(self, inputs: Sequence[str] | np.ndarray) -> Any:
        """Class probabilities (a multi-task model: a dict of them per task)."""
        if self._outputs.kind == "value":
            raise DataError("a regression model predicts numbers; call predict")
        return self._predictions(inputs)

    def predict(self, inputs: Sequence[str] | np.ndarray) -> Any:
        """Class labels; a regression model's numbers; a multi-task model's labels per task."""
        predictions = self._predictions(inputs)
        if self._outputs.kind == "value":
            return predictions
        if self._outputs.kind == "tasks":
            return {
                name: [classes[i] for i in predictions[name].argmax(axis=1)]
                for name, classes in self._outputs.tasks
            }
        return [self.classes[i] for i in predictions.argmax(axis=1)]

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
    def load(cls, folder: Path, metadata: dict[str, Any], **context: Any) -> NeuralPredictor:
        from shoptransfer.recipes.peft_methods import apply_peft

        spec = metadata["spec"]
        classes = list(metadata["classes"])
        encoder: Any = None
        if "backbone" in spec:
            b = spec["backbone"]
            # When every weight was saved, build the network and load them all.
            encoder = encoder_from_spec(b, pretrained=b["pretrained"] and spec["saved"] != "all")
            encoder.pretrained = b["pretrained"]
            if b.get("peft"):
                apply_peft(encoder, b["peft"])
        elif "mlp" in spec:
            encoder = FeatureMLP(spec["mlp"]["input_size"], spec["mlp"]["hidden_size"])
        path = folder / "model.safetensors"
        state = read_weights(path)
        head_sizes = [  # the features the head reads: its first weight matrix's width
            int(t.shape[1]) for k, t in state.items() if k.startswith("head.") and t.dim() == 2
        ]
        if not head_sizes:
            raise DataError(f"{path}: no weights of the model's head; the file is damaged")
        head_size = head_sizes[0]
        if "feature_transform" in spec:
            encoder = FeatureTransform(head_size, spec["feature_transform"])
        frozen = None
        if "frozen_backbone" in spec:
            frozen = encoder_from_spec(spec["frozen_backbone"])
        size = encoder.hidden_size if encoder is not None else head_size
        outputs = Outputs.from_spec(spec.get("outputs"), classes)
        model = outputs.build(size, encoder, spec.get("precision", "fp32"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [name for name in missing if not name.endswith("position_ids")]
        if unexpected or (spec["saved"] == "all" and missing):
            raise DataError(
                f"{path}: the saved weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return cls(classes, model, spec, frozen)
