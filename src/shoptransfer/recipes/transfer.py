"""Transfer through a trainable encoder: the pieces every model-, feature- and network-based
recipe combines, and the named presets built from them.

Pieces (each a hyper-parameter of :class:`EncoderTransfer`):

- ``encoder``: ``backbone`` (the pretrained text encoder is trained) or ``mlp`` (a small MLP
  over frozen backbone features, or over a feature domain's vectors);
- what trains: ``frozen_layers`` (bottom layers kept frozen), ``gradual_unfreezing`` (Howard &
  Ruder, ACL 2018: top layer first), ``layer_decay`` (layer-wise learning-rate decay), ``peft``
  (LoRA or (IA)^3 adapters);
- ``align``: a loss on unlabeled target data: CORAL, MMD or DANN;
- ``regularize``: L2-SP toward the pretrained weights;
- ``self_training_rounds``: after the source stage, label the unlabeled target text with the
  model, keep the most confident share and train on it (each round);
- ``stages``: ``sequential`` (source, then the target labels) or ``joint`` (one shared trunk
  with a head per domain, trained on both at once).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.image import ImageInputs
from shoptransfer.backbones.precision import PRECISIONS
from shoptransfer.backbones.text import TRUNCATIONS
from shoptransfer.data.domain import Domain, FeatureDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.metering import charge_reused, measure, training_clock
from shoptransfer.recipes.base import BackboneRecipe, Predictor, option, register_recipe
from shoptransfer.recipes.coral import CoralObjective
from shoptransfer.recipes.dann import DomainAdversarialObjective
from shoptransfer.recipes.l2sp import L2SPObjective
from shoptransfer.recipes.mmd import MMDObjective
from shoptransfer.recipes.neural import NeuralPredictor, domain_inputs, split_source
from shoptransfer.recipes.peft_methods import PEFT_METHODS, apply_peft
from shoptransfer.training import (
    Classifier,
    Examples,
    FeatureMLP,
    Objective,
    Step,
    Trainer,
    TrainingSettings,
    predict_logits,
)

ALIGNMENTS = ("none", "coral", "mmd", "dann")


class TargetHead(Objective):
    """A second head trained on labeled target batches over the shared trunk (joint stages)."""

    def __init__(self, feature_size: int, n_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(feature_size, n_classes)

    def forward(self, step: Step) -> torch.Tensor:
        assert step.target_batch is not None and step.target_features is not None
        logits = self.head(step.target_features)
        return nn.functional.cross_entropy(logits, step.target_batch["labels"])


@dataclasses.dataclass
class EncoderTransfer(BackboneRecipe):
    """Train an encoder and head on the source (and target), composed from the pieces above."""

    name: ClassVar[str] = "transfer"
    family: ClassVar[str] = "model-based"
    description: ClassVar[str] = "compose your own: every piece of the encoder recipes"

    encoder: str = option(
        "backbone",
        "'backbone' (train the text encoder) or 'mlp' (an MLP over frozen features or vectors)",
    )
    mlp_hidden: int = option(256, "hidden size of the 'mlp' encoder")
    epochs: int = option(3, "most source epochs (early stopping on source validation)")
    batch_size: int = option(16, "examples per step (and unlabeled target examples per step)")
    learning_rate: float = option(3e-5, "AdamW learning rate of the encoder")
    head_learning_rate: float = option(1e-3, "AdamW learning rate of new heads")
    weight_decay: float = option(0.01, "AdamW (decoupled) weight decay")
    patience: int = option(1, "source epochs without validation improvement before stopping")
    validation_fraction: float = option(0.2, "share of the source held out for model selection")
    target_epochs: int = option(10, "epochs on the target labels (fixed: no target validation)")
    target_learning_rate: float = option(3e-5, "AdamW learning rate of the target stage")
    frozen_layers: int = option(0, "bottom layers (embeddings first) kept frozen")
    gradual_unfreezing: bool = option(False, "unfreeze layers top-down over the epochs")
    layer_decay: float = option(1.0, "learning rate x decay^depth-from-top (1: no decay)")
    peft: str = option("none", f"parameter-efficient method: one of {list(PEFT_METHODS)}")
    peft_rank: int = option(8, "LoRA rank r")
    peft_alpha: float = option(16.0, "LoRA scaling alpha")
    peft_target_modules: list[str] = option(
        ("query", "value"), "linear layers the peft method adapts (names or name endings)"
    )
    align: str = option("none", f"alignment loss on unlabeled target data: {list(ALIGNMENTS)}")
    align_weight: float = option(1.0, "weight of the alignment loss")
    regularize: str = option("none", "'none' or 'l2-sp' (pull toward the pretrained weights)")
    l2sp_alpha: float = option(0.01, "L2-SP weight of the distance to the pretrained weights")
    l2sp_beta: float = option(0.01, "L2-SP weight of the L2 norm of the new head")
    self_training_rounds: int = option(
        0, "rounds of self-training on pseudo-labeled unlabeled target text (0: none)"
    )
    pseudo_label_share: float = option(
        0.5,
        "share of the unlabeled target kept in the last self-training round (growing linearly "
        "from share/rounds), most confident first, per class in the source's class proportions",
    )
    stages: str = option(
        "sequential",
        "'sequential' (source, then target labels) or 'joint' "
        "(a head per domain, trained together)",
    )
    _source_stage: dict[Any, tuple[dict[str, torch.Tensor], Any, float, list[Any]]] = (
        dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)
    )
    history_: list[dict[str, float]] = dataclasses.field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.peft_target_modules = list(self.peft_target_modules)

    def _check(self, source: Domain) -> None:
        choices = {
            "encoder": ("backbone", "mlp"),
            "peft": PEFT_METHODS,
            "align": ALIGNMENTS,
            "regularize": ("none", "l2-sp"),
            "stages": ("sequential", "joint"),
            "truncation": TRUNCATIONS,
            "precision": PRECISIONS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"recipe '{self.name}': {key} '{getattr(self, key)}'; "
                    f"expected one of {list(allowed)}"
                )
        self.check_backbone(source)
        if isinstance(source, FeatureDomain) and self.encoder != "mlp":
            raise ConfigError(
                f"recipe '{self.name}' trains a text backbone; on feature vectors "
                "use encoder: mlp (for example the mlp-* recipes)"
            )
        if self.encoder == "mlp" and (
            self.peft != "none"
            or self.frozen_layers
            or self.gradual_unfreezing
            or self.layer_decay != 1.0
        ):
            raise ConfigError(
                f"recipe '{self.name}': peft, frozen_layers, gradual_unfreezing "
                "and layer_decay apply to encoder: backbone only"
            )
        if self.align != "none" and self.stages == "joint":
            raise ConfigError(f"recipe '{self.name}': choose align or joint stages, not both")
        if self.self_training_rounds < 0 or not 0 < self.pseudo_label_share <= 1:
            raise ConfigError(
                f"recipe '{self.name}': self_training_rounds must be >= 0 and "
                f"pseudo_label_share in (0, 1]; got {self.self_training_rounds} and "
                f"{self.pseudo_label_share}"
            )
        if self.self_training_rounds and self.stages == "joint":
            raise ConfigError(f"recipe '{self.name}': self-training needs sequential stages")

    def validate(self, source: Domain) -> None:
        self._check(source)
        if self.peft != "none" and self.encoder == "backbone":
            # the architecture is enough to check the target modules: no pretrained weights
            apply_peft(self.make_encoder(pretrained=False), self.peft_spec() or {})

    # -- building the model -------------------------------------------------------------------

    def _build(self, source: Domain, n_classes: int) -> tuple[Classifier, Any]:
        """The classifier to train, and the frozen encoder that feeds it features (mlp only)."""
        torch.manual_seed(self.seed)
        if self.encoder == "mlp":
            frozen = None if isinstance(source, FeatureDomain) else self.make_encoder()
            size = source.dimension if isinstance(source, FeatureDomain) else frozen.hidden_size
            mlp = FeatureMLP(size, self.mlp_hidden)
            return Classifier(n_classes, mlp.hidden_size, mlp, self.precision), frozen
        encoder = self.make_encoder()
        if self.peft != "none":
            apply_peft(encoder, self.peft_spec())
        model = Classifier(n_classes, encoder.hidden_size, encoder, self.precision)
        layers = self._layers(model)
        for layer in layers[: self.frozen_layers]:
            layer.requires_grad_(False)
        if self.peft == "none" and not self.gradual_unfreezing:
            # frozen pretrained layers give the same states every epoch: compute them once
            encoder.cache_frozen_bottom(min(self.frozen_layers, len(layers) - 1))
        return model, None

    def peft_spec(self) -> dict[str, Any] | None:
        if self.peft == "none":
            return None
        spec: dict[str, Any] = {
            "method": self.peft,
            "target_modules": self.peft_target_modules,
            "rank": self.peft_rank,
            "alpha": self.peft_alpha,
        }
        if self.peft == "ia3":
            spec["feedforward_modules"] = [
                m for m in self.peft_target_modules if "intermediate" in m or "output" in m
            ]
        return spec

    def _layers(self, model: Classifier) -> list[nn.Module]:
        assert model.encoder is not None and hasattr(model.encoder, "layers")
        return list(model.encoder.layers())

    def _parameter_groups(
        self, model: Classifier, learning_rate: float, head_learning_rate: float
    ) -> list[dict[str, Any]] | None:
        """Layer-wise decayed learning rates (top layer: ``learning_rate``)."""
        if self.encoder != "backbone" or self.layer_decay == 1.0:
            return None
        layers = self._layers(model)
        groups = [{"params": list(model.head.parameters()), "lr": head_learning_rate}]
        for depth, layer in enumerate(reversed(layers)):
            groups.append(
                {"params": list(layer.parameters()), "lr": learning_rate * self.layer_decay**depth}
            )
        seen = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in model.parameters() if id(p) not in seen]  # e.g. the pooler
        if rest:
            groups.append({"params": rest, "lr": learning_rate})
        return groups

    def _unfreezer(self, model: Classifier, epochs: int) -> Any:
        if not self.gradual_unfreezing or self.encoder != "backbone":
            return None
        layers = self._layers(model)[self.frozen_layers :]
        for layer in layers:
            layer.requires_grad_(False)

        def unfreeze(epoch: int) -> None:
            count = math.ceil((epoch + 1) / epochs * len(layers))
            for layer in layers[len(layers) - count :]:
                layer.requires_grad_(True)
            if self.peft != "none":  # only the adapter weights ever train
                for name, p in model.named_parameters():
                    if "lora_" not in name and "ia3_" not in name and not name.startswith("head"):
                        p.requires_grad_(False)

        return unfreeze

    def _objectives(self, model: Classifier, n_classes: int) -> list[Objective]:
        size = model.head.in_features
        objectives: list[Objective] = []
        if self.align == "coral":
            objectives.append(CoralObjective(self.align_weight))
        elif self.align == "mmd":
            objectives.append(MMDObjective(self.align_weight))
        elif self.align == "dann":
            objectives.append(DomainAdversarialObjective(size, weight=self.align_weight))
        if self.regularize == "l2-sp":
            objectives.append(L2SPObjective(model, self.l2sp_alpha, self.l2sp_beta))
        if self.stages == "joint":
            objectives.append(TargetHead(size, n_classes))
        return objectives

    # -- training -----------------------------------------------------------------------------

    def fit(
        self,
        source: Domain,
        target: Domain | None = None,
        cache: EmbeddingCache | None = None,
        unlabeled: Domain | None = None,
    ) -> Predictor:
        self._check(source)
        classes = source.classes
        model, frozen = self._build(source, len(classes))
        inputs = lambda domain: domain_inputs(domain, frozen, cache, model.encoder)  # noqa: E731
        has_target_labels = target is not None and len(target) > 0
        if self.align != "none" and unlabeled is None:
            raise DataError(
                f"recipe '{self.name}' aligns features with unlabeled target data; none was given"
            )
        if self.self_training_rounds and (unlabeled is None or len(unlabeled) == 0):
            raise DataError(
                f"recipe '{self.name}' self-trains on unlabeled target data; none was given"
            )
        objectives = self._objectives(model, len(classes))
        target_stream = None
        if self.align != "none":
            assert unlabeled is not None
            target_stream = Examples(inputs(unlabeled))
        elif self.stages == "joint" and has_target_labels:
            assert target is not None
            target_stream = Examples(inputs(target), target.label_ids(classes))
        elif self.stages == "joint":
            objectives = [o for o in objectives if not isinstance(o, TargetHead)]

        def as_predictor(m: Classifier) -> NeuralPredictor:
            return NeuralPredictor.from_training(classes, m, self, frozen, cache)

        key = (
            source.data_hash(),
            self.seed,
            unlabeled.data_hash() if unlabeled is not None and self.align != "none" else None,
        )
        reuse = self.stages == "sequential"
        if reuse and key in self._source_stage:
            state, clock, flops, history = self._source_stage[key]
            self.history_ = list(history)
            model.load_state_dict(state)
            charge_reused(clock.seconds, flops, clock.curve)  # the full cost, as if trained again
            if self.gradual_unfreezing:
                self._unfreezer(model, 1)(0)  # everything the source stage unfroze
        else:
            train, validation = split_source(source, self.validation_fraction, self.seed)
            settings = TrainingSettings(
                epochs=self.epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                head_learning_rate=self.head_learning_rate,
                weight_decay=self.weight_decay,
                patience=self.patience,
                seed=self.seed,
                description=f"{self.name} on source",
            )
            with training_clock() as clock, measure() as meter:
                self.history_ = Trainer(settings).fit(
                    model,
                    Examples(inputs(train), train.label_ids(classes)),
                    Examples(inputs(validation), validation.label_ids(classes)),
                    target=target_stream,
                    objectives=objectives,
                    parameter_groups=self._parameter_groups(
                        model, self.learning_rate, self.head_learning_rate
                    ),
                    on_epoch_start=self._unfreezer(model, self.epochs),
                    as_predictor=as_predictor,
                )
            if reuse:
                state = {k: v.clone() for k, v in model.state_dict().items()}
                self._source_stage[key] = (state, clock, meter.flops, list(self.history_))
        if self.self_training_rounds:
            assert unlabeled is not None
            self._self_train(model, source, unlabeled, inputs, objectives, as_predictor)
        heads = [o for o in objectives if isinstance(o, TargetHead)]
        if heads:
            model.head = heads[0].head  # predict the target with the target's own head
        elif has_target_labels:
            assert target is not None
            settings = TrainingSettings(
                epochs=self.target_epochs,
                batch_size=self.batch_size,
                learning_rate=self.target_learning_rate,
                weight_decay=self.weight_decay,
                seed=self.seed,
                description=f"{self.name} on target",
            )
            regularizers = [o for o in objectives if isinstance(o, L2SPObjective)]
            Trainer(settings).fit(
                model,
                Examples(inputs(target), target.label_ids(classes)),
                objectives=regularizers,
                as_predictor=as_predictor,
                parameter_groups=self._parameter_groups(
                    model, self.target_learning_rate, self.target_learning_rate
                ),
            )
        return as_predictor(model)

    def _self_train(
        self,
        model: Classifier,
        source: Domain,
        unlabeled: Domain,
        inputs: Any,
        objectives: list[Objective],
        as_predictor: Any,
    ) -> None:
        """Rounds of: pseudo-label the unlabeled target, keep the most confident, train on them.

        Round ``r`` of ``R`` keeps ``share * r / R`` of the unlabeled examples, split between the
        classes in the source's class proportions (the usual covariate-shift assumption: the
        label distribution does not change), and trains one epoch on them. No target labels are
        read; the rounds are a fixed schedule.
        """
        classes = source.classes
        counts = np.bincount(source.label_ids(classes), minlength=len(classes))
        prior = counts / counts.sum()
        target_inputs = inputs(unlabeled)
        regularizers = [o for o in objectives if isinstance(o, L2SPObjective)]
        for round_ in range(1, self.self_training_rounds + 1):
            probabilities = torch.softmax(
                torch.from_numpy(predict_logits(model, Examples(target_inputs))), dim=1
            ).numpy()
            keep = confident_pseudo_labels(
                probabilities, prior, self.pseudo_label_share * round_ / self.self_training_rounds
            )
            predicted = probabilities.argmax(axis=1)
            pseudo_inputs: list[str] | np.ndarray | ImageInputs
            if isinstance(target_inputs, np.ndarray):
                pseudo_inputs = target_inputs[keep]
            elif isinstance(target_inputs, ImageInputs):
                pseudo_inputs = ImageInputs(
                    [target_inputs[i] for i in keep],
                    target_inputs.preprocessing,
                    target_inputs.augment,
                )
            else:
                pseudo_inputs = [target_inputs[i] for i in keep]
            pseudo = Examples(pseudo_inputs, predicted[keep])
            settings = TrainingSettings(
                epochs=1,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                head_learning_rate=self.head_learning_rate,
                weight_decay=self.weight_decay,
                seed=self.seed + round_,
                description=f"{self.name}: self-training round {round_}",
            )
            history = Trainer(settings).fit(
                model,
                pseudo,
                objectives=regularizers,
                parameter_groups=self._parameter_groups(
                    model, self.learning_rate, self.head_learning_rate
                ),
                as_predictor=as_predictor,
            )
            self.history_.append(
                {
                    "self_training_round": round_,
                    "pseudo_labeled": len(keep),
                    "train_loss": history[-1]["train_loss"],
                }
            )


def confident_pseudo_labels(
    probabilities: np.ndarray, prior: np.ndarray, share: float
) -> np.ndarray:
    """Indices of the most confident predictions: ``share`` of all rows, split by ``prior``.

    Each class ``c`` contributes up to ``round(share * n * prior[c])`` of the rows predicted as
    ``c``, highest probability first; the result is sorted.
    """
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    chosen: list[np.ndarray] = []
    for c, weight in enumerate(prior):
        rows = np.flatnonzero(predicted == c)
        quota = int(round(share * len(probabilities) * weight))
        best = rows[np.argsort(-confidence[rows], kind="stable")][:quota]
        chosen.append(best)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def preset(name: str, family: str, description: str, **defaults: Any) -> type[EncoderTransfer]:
    """Register a named recipe: :class:`EncoderTransfer` with other default pieces."""
    fields = {f.name: f for f in dataclasses.fields(EncoderTransfer) if f.init}
    for key in defaults:
        if key not in fields:
            raise ValueError(f"preset '{name}': unknown piece '{key}'")
    new_fields = [
        (key, fields[key].type, dataclasses.field(default=value, metadata=fields[key].metadata))
        for key, value in defaults.items()
    ]
    class_name = "".join(part.title() for part in name.replace("-", " ").split())
    cls = dataclasses.make_dataclass(
        class_name,
        new_fields,
        bases=(EncoderTransfer,),
        namespace={"name": name, "family": family, "description": description},
    )
    cls.__module__ = __name__
    return register_recipe(cls)  # type: ignore[return-value]


register_recipe(EncoderTransfer)

# Model-based: pretrain on the source, then fine-tune on the target.
preset("fine-tune", "model-based", "fine-tune backbone + head on source labels, then on target")
preset(
    "llrd",
    "model-based",
    "fine-tune with layer-wise learning-rate decay (0.8 per layer)",
    layer_decay=0.8,
)
preset(
    "gradual-unfreezing",
    "model-based",
    "fine-tune, unfreezing layers top-down each epoch",
    gradual_unfreezing=True,
)
preset(
    "l2-sp",
    "model-based",
    "fine-tune with L2-SP: pull weights toward the pretrained ones",
    regularize="l2-sp",
    weight_decay=0.0,
)
# Feature-based: align source and unlabeled target features while training.
preset(
    "coral",
    "feature-based",
    "fine-tune with a Deep CORAL loss on unlabeled target text",
    align="coral",
)
preset(
    "mmd",
    "feature-based",
    "fine-tune with a multi-kernel MMD loss (DAN) on unlabeled target",
    align="mmd",
)
preset(
    "dann",
    "feature-based",
    "domain-adversarial fine-tuning (gradient reversal, DANN)",
    align="dann",
    align_weight=0.1,
)
MLP = {
    "encoder": "mlp",
    "epochs": 100,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 10,
    "target_epochs": 20,
    "target_learning_rate": 1e-3,
}
preset("mlp", "feature-based", "an MLP over frozen features or vectors, on source labels", **MLP)
preset(
    "mlp-coral",
    "feature-based",
    "an MLP over frozen features or vectors with a CORAL loss",
    align="coral",
    **MLP,
)
preset(
    "mlp-mmd",
    "feature-based",
    "an MLP over frozen features or vectors with an MMD loss",
    align="mmd",
    **MLP,
)
preset(
    "mlp-dann",
    "feature-based",
    "an MLP over frozen features or vectors, domain-adversarial",
    align="dann",
    align_weight=0.1,
    **MLP,
)
preset(
    "self-training",
    "model-based",
    "fine-tune the top 4 layers on the source, then on confident target pseudo-labels",
    frozen_layers=3,
    learning_rate=5e-5,
    epochs=4,
    patience=2,
    truncation="head+tail",
    self_training_rounds=1,
)
# Network-based: share and freeze layers, or train small adapters.
preset(
    "freeze-bottom",
    "network-based",
    "freeze the embeddings and bottom 3 layers, train the rest",
    frozen_layers=4,
)
preset(
    "multi-head",
    "network-based",
    "a shared trunk with one head per domain, trained jointly",
    stages="joint",
)
preset(
    "lora",
    "network-based",
    "LoRA adapters (peft) on query and value, plus the head",
    peft="lora",
    learning_rate=5e-4,
    target_learning_rate=5e-4,
)
preset(
    "ia3",
    "network-based",
    "(IA)^3 adapters (peft) rescaling keys, values and feed-forward",
    peft="ia3",
    peft_target_modules=("key", "value", "intermediate.dense"),
    learning_rate=3e-3,
    target_learning_rate=3e-3,
)
