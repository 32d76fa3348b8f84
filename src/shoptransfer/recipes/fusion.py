"""fusion: late fusion of frozen text and image features (a photo and a title in one model).

Each input of a multi-input domain (:mod:`shoptransfer.data.multi`) goes through the frozen
backbone of its kind (``text_backbone``, ``image_backbone``), once per distinct text or photo
through the embedding cache. Two ways to combine them (``combine``):

- ``concat``: each input's features, layer-normalised, concatenated with the mask of present
  inputs into a linear or MLP head (``head``); minimise cross-entropy with AdamW, epochs chosen
  by early stopping on a source validation split (fixed epochs on target labels alone). A
  missing input reads a learned vector (``missing: learned``) or zeros. Modality dropout
  (Neverova et al., ModDrop, 2015): in training each present input of an example is hidden
  with probability ``modality_dropout`` (never all of them), so the head learns to predict
  from any one input.
- ``stacking`` (Wolpert 1992): a linear probe per input (L-BFGS logistic regression on the
  examples that have it, L2 strength by cross-validation), its logits calibrated by a
  temperature fitted on out-of-fold logits; a second logistic regression reads every input's
  calibrated log-probabilities (zero where missing) and the mask. Its training rows are the
  out-of-fold ones, plus copies with one input hidden (weight ``modality_dropout``), so it
  also learns what to do when an input is missing.

``train_top`` (concat with AdamW only) fine-tunes the backbones too: the top ``train_top``
layers of the text and of the image backbone train with the fusion head (at
``backbone_learning_rate``), their bottom layers stay frozen and are computed once per text or
photo (the frozen-bottom store the single-input fine-tune recipes use). The inputs' features
then come from the trained layers in every batch; the same head, modality dropout and missing
inputs apply.

``inputs`` picks the inputs a model reads (default: all), so photo-only, title-only and fused
models sit side by side in one ``compare``. Saved as kind ``fusion``: every trained weight in
safetensors (a fine-tuned backbone's frozen bottom is rebuilt from its pretrained weights), the
backbones and settings in ``model.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.image import MAX_IMAGE_SIZE
from shoptransfer.backbones.inputs import (
    encoder_from_spec,
    encoder_spec,
    input_features,
    input_kind_encoder,
    trained_features,
)
from shoptransfer.backbones.precision import PRECISIONS, check_precision
from shoptransfer.backbones.registry import frozen_only
from shoptransfer.backbones.text import TRUNCATIONS
from shoptransfer.data.multi import MultiInputs
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.objectives import ObjectiveConfig, make_objective
from shoptransfer.parallel import processes
from shoptransfer.recipes.base import (
    FitData,
    Predictor,
    Recipe,
    option,
    register_model,
    register_recipe,
)
from shoptransfer.recipes.frozen_features import fit_logistic_head
from shoptransfer.recipes.neural import split_source
from shoptransfer.runs import read_weights
from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings, predict_logits

COMBINES = ("concat", "stacking")
# the objectives that align the fused embedding with unlabeled target examples
ALIGNMENT_OBJECTIVES = ("coral", "dann", "mcc", "mmd")
HEADS = ("linear", "mlp")
MISSING_INPUTS = ("learned", "zero")
LOG_PROBABILITY_FLOOR = -30.0  # a class a probe never saw: its log-probability, not -1e4


class FusionEncoder(nn.Module):
    """Concatenation of each input's features (layer-normalised; a missing input reads a
    learned or zero vector) and the mask of present inputs; an MLP layer on top with ``head:
    mlp``. Reads ``batch["features"]``: the inputs' frozen features side by side, then the
    mask; or, given ``backbones`` (kind -> backbone whose top layers train) and ``inputs`` (name
    -> kind), ``batch["inputs"]`` (:class:`MultiInputs`) through those backbones."""

    def __init__(
        self,
        sizes: Sequence[int],
        head: str = "linear",
        hidden_size: int = 256,
        missing: str = "learned",
        modality_dropout: float = 0.0,
        backbones: Mapping[str, nn.Module] | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.modality_dropout = modality_dropout
        # one backbone per kind, shared by the inputs of that kind (none: frozen features)
        self.backbones = nn.ModuleDict(dict(backbones)) if backbones else None
        self.inputs = dict(inputs or {})
        self.missing = nn.ParameterList(
            nn.Parameter(torch.zeros(size), requires_grad=missing == "learned")
            for size in self.sizes
        )
        width = sum(self.sizes) + len(self.sizes)
        self.mlp = (
            nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(0.1))
            if head == "mlp"
            else None
        )
        self.hidden_size = hidden_size if head == "mlp" else width

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        if "inputs" in batch:
            parts, mask = self.encoded(batch["inputs"])
        else:
            parts, mask = split_packed(batch["features"], self.sizes)
        if self.training and self.modality_dropout > 0:
            hidden = torch.rand_like(mask) < self.modality_dropout
            kept = mask * (~hidden).float()
            # an example keeps at least one of its inputs
            mask = torch.where((kept.sum(1, keepdim=True) == 0), mask, kept)
        fused = []
        for column, (part, missing) in enumerate(zip(parts, self.missing)):
            present = mask[:, column : column + 1]
            normed = nn.functional.layer_norm(part, part.shape[-1:])
            fused.append(present * normed + (1 - present) * missing)
        joined = torch.cat([*fused, mask], dim=1)
        return self.mlp(joined) if self.mlp is not None else joined

    def encoded(self, inputs: MultiInputs) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each input's features through its backbone (zero where missing), and the mask."""
        assert self.backbones is not None
        parts = []
        mask = torch.zeros(len(inputs), len(self.inputs))
        for column, (name, kind) in enumerate(self.inputs.items()):
            present = inputs.present(name)
            rows = np.flatnonzero(present)
            part = torch.zeros(len(inputs), self.sizes[column])
            if len(rows):
                values = [v for v in inputs.values[name] if v is not None]
                features = trained_features(self.backbones[kind], values).float()
                part = part.index_copy(0, torch.from_numpy(rows), features)
            parts.append(part)
            mask[:, column] = torch.from_numpy(present.astype(np.float32))
        return parts, mask


class StackingEncoder(nn.Module):
    """Each input's linear probe, its logits divided by its calibration temperature, as
    log-probabilities (zero where the input is missing), beside the mask: what the stacking
    head reads."""

    temperatures: torch.Tensor

    def __init__(self, sizes: Sequence[int], n_classes: int) -> None:
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.probes = nn.ModuleList(nn.Linear(size, n_classes) for size in self.sizes)
        self.register_buffer("temperatures", torch.ones(len(self.sizes)))
        self.hidden_size = len(self.sizes) * (n_classes + 1)

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        parts, mask = split_packed(batch["features"], self.sizes)
        stacked = [
            calibrated_log_probabilities(probe(part), temperature) * mask[:, i : i + 1]
            for i, (part, probe, temperature) in enumerate(
                zip(parts, self.probes, self.temperatures)
            )
        ]
        return torch.cat([*stacked, mask], dim=1)


def calibrated_log_probabilities(logits: torch.Tensor, temperature: Any) -> torch.Tensor:
    return torch.log_softmax(logits / temperature, dim=1).clamp(min=LOG_PROBABILITY_FLOOR)


def split_packed(features: torch.Tensor, sizes: Sequence[int]) -> tuple[list[torch.Tensor], Any]:
    """The inputs' feature blocks and the mask of a packed feature matrix."""
    parts = list(torch.split(features[:, : sum(sizes)], list(sizes), dim=1))
    return parts, features[:, sum(sizes) :]


def build_fusion_model(
    spec: Mapping[str, Any], n_classes: int, encoders: Mapping[str, Any] | None = None
) -> Classifier:
    """The network ``spec`` (a fused model's ``model.json`` spec) describes, untrained; with
    ``train_top`` in the spec, over ``encoders`` (input name -> backbone), all but their top
    ``train_top`` layers frozen."""
    encoder: nn.Module
    top = int(spec.get("train_top", 0))
    if spec["combine"] == "stacking":
        encoder = StackingEncoder(spec["sizes"], n_classes)
    else:
        backbones = None
        if top:
            assert encoders is not None
            backbones = {spec["inputs"][name]: e for name, e in encoders.items()}
            for backbone in backbones.values():
                backbone.requires_grad_(False)
                for layer in backbone.layers()[-top:]:
                    layer.requires_grad_(True)
        encoder = FusionEncoder(
            spec["sizes"],
            spec["head"],
            spec["hidden_size"],
            spec["missing"],
            spec["modality_dropout"],
            backbones,
            spec["inputs"],
        )
    precision = spec.get("precision", "fp32")
    return Classifier(n_classes, encoder.hidden_size, encoder, precision)  # type: ignore[arg-type]


def frozen_bottom_names(model: Classifier, top: int) -> set[str]:
    """The state-dict names of the fine-tuned backbones' frozen layers (below the top ``top``):
    not saved, since they are the pretrained weights the loader rebuilds."""
    backbones = getattr(model.encoder, "backbones", None)
    if not top or backbones is None:
        return set()
    trained = {
        id(tensor)
        for backbone in backbones.values()
        for layer in backbone.layers()[-top:]
        for tensor in [*layer.parameters(), *layer.buffers()]
    }
    return {
        name
        for name, tensor in model.state_dict(keep_vars=True).items()
        if name.startswith("encoder.backbones.") and id(tensor) not in trained
    }


@register_model
class FusionPredictor(Predictor):
    """A fused classifier over several named inputs per example.

    ``predict_proba`` reads :class:`~shoptransfer.data.multi.MultiInputs` or a mapping of input
    name -> values (a text or an image path each, ``None`` where missing; a name left out is
    missing for every example)."""

    kind = "fusion"
    metadata_types: ClassVar[dict[str, Any]] = {"classes": list[str], "spec": dict[str, Any]}

    def __init__(
        self,
        classes: list[str],
        model: Classifier,
        spec: dict[str, Any],
        encoders: dict[str, Any],
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.classes = classes
        self.model = model.eval()
        self.spec = spec
        self.encoders = encoders
        self.cache = cache

    @property
    def inputs(self) -> dict[str, str]:
        """What the model reads: input name -> kind (``text`` or ``image``)."""
        return dict(self.spec["inputs"])

    def picked(self, inputs: MultiInputs | Mapping[str, Sequence[str | None]]) -> MultiInputs:
        """The inputs the model reads, from ``inputs``."""
        kinds = self.inputs
        if isinstance(inputs, MultiInputs):
            lacking = [name for name in kinds if inputs.kinds.get(name) != kinds[name]]
            if lacking:
                raise DataError(
                    f"the model reads inputs {kinds}; these hold {inputs.kinds} ({lacking[0]} "
                    "differs)"
                )
            picked = MultiInputs(kinds, {name: inputs.values[name] for name in kinds})
        else:
            picked = MultiInputs.of(kinds, inputs)
        return picked

    def predict_proba(self, inputs: Any) -> np.ndarray:
        picked = self.picked(inputs)
        if self.spec.get("train_top"):  # the backbones read the inputs themselves
            examples = Examples(picked)
        else:
            features, mask = input_features(picked, self.encoders, self.cache)
            examples = Examples(np.hstack([*features, mask]).astype(np.float32))
        logits = predict_logits(self.model, examples)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    @property
    def trainable_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        frozen = frozen_bottom_names(self.model, int(self.spec.get("train_top", 0)))
        state = {
            k: t.detach().contiguous().clone()
            for k, t in self.model.state_dict().items()
            if k not in frozen
        }
        save_file(state, str(folder / "model.safetensors"))
        return {"spec": self.spec}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], **context: Any) -> FusionPredictor:
        spec, classes = metadata["spec"], list(metadata["classes"])
        built: dict[str, Any] = {}  # one encoder per backbone setting, as in training
        for backbone in spec["encoders"].values():
            key = json.dumps(backbone, sort_keys=True)
            if key not in built:
                built[key] = encoder_from_spec(backbone)
        encoders = {
            name: built[json.dumps(backbone, sort_keys=True)]
            for name, backbone in spec["encoders"].items()
        }
        model = build_fusion_model(spec, len(classes), encoders)
        path = folder / "model.safetensors"
        missing, unexpected = model.load_state_dict(read_weights(path), strict=False)
        missing = [
            k for k in missing if k not in frozen_bottom_names(model, spec.get("train_top", 0))
        ]
        if missing or unexpected:
            raise DataError(
                f"{path}: the saved weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return cls(classes, model, spec, encoders)


@register_recipe
@dataclasses.dataclass
class Fusion(Recipe):
    name: ClassVar[str] = "fusion"
    family: ClassVar[str] = "feature-based"
    description: ClassVar[str] = (
        "several inputs per example (photo + title): frozen features of each, fused late "
        "(concatenation into a head, or stacking of calibrated probabilities)"
    )
    several_inputs: ClassVar[bool] = True

    inputs: list[str] | tuple[str, ...] = option(
        (), "the domain's inputs the model reads (default: all of them)", group="inputs"
    )
    text_backbone: str = option("minilm-l6", "frozen backbone of the text inputs", group="backbone")
    image_backbone: str = option(
        "efficientnet-lite0", "frozen backbone of the image inputs", group="backbone"
    )
    max_length: int = option(128, "tokens kept per text", minimum=1, group="backbone")
    truncation: str = option(
        "head", "which tokens a long text keeps", choices=TRUNCATIONS, group="backbone"
    )
    image_size: int = option(
        0,
        f"pixels per side of the image backbone (0: its native size; at most {MAX_IMAGE_SIZE})",
        minimum=0,
        maximum=MAX_IMAGE_SIZE,
        group="backbone",
    )
    precision: str = option(
        "auto", "arithmetic of the frozen features", choices=PRECISIONS, group="backbone"
    )
    combine: str = option(
        "concat",
        "'concat': the inputs' features side by side into a head; 'stacking': a logistic "
        "regression over each input's calibrated class probabilities",
        choices=COMBINES,
        group="fusion",
    )
    head: str = option(
        "linear", "concat: 'linear' or 'mlp' (one hidden layer)", choices=HEADS, group="fusion"
    )
    hidden_size: int = option(256, "concat with head mlp: hidden units", minimum=1, group="fusion")
    solver: str = option(
        "adamw",
        "concat: 'adamw' (mini-batches, modality dropout per batch, early stopping on a source "
        "validation split) or 'lbfgs' (linear head only: the L-BFGS linear probe with the L2 "
        "strength by cross-validation, on the examples plus copies with one input hidden)",
        choices=("adamw", "lbfgs"),
        group="fusion",
    )
    modality_dropout: float = option(
        0.25,
        "in training, the chance each present input of an example is hidden (never all of "
        "them); stacking: the weight of the copies with one input hidden",
        minimum=0,
        below=1,
        group="fusion",
    )
    missing: str = option(
        "learned",
        "concat: what a missing input reads: a 'learned' vector or 'zero'",
        choices=MISSING_INPUTS,
        group="fusion",
    )
    train_top: int = option(
        0,
        "concat with solver adamw: top layers of each backbone (text and image) that train "
        "with the head, their bottom layers frozen and computed once per input (0: frozen "
        "features)",
        minimum=0,
        group="fine-tuning",
    )
    backbone_learning_rate: float = option(
        3e-5,
        "train_top: AdamW learning rate of the backbones' top layers",
        above=0,
        group="fine-tuning",
    )
    epochs: int = option(
        100, "concat: most epochs (early stopping on source validation)", minimum=1
    )
    batch_size: int = option(32, "examples per step", minimum=1)
    learning_rate: float = option(1e-3, "AdamW learning rate", above=0)
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    patience: int = option(10, "epochs without validation improvement before stopping", minimum=1)
    validation_fraction: float = option(
        0.2, "concat: share of the source held out for model selection", above=0, below=1
    )
    target_weight: float | Literal["balanced"] = option(
        "balanced",
        "weight of each target example; 'balanced' gives source and target equal total weight",
        minimum=0,
    )

    objectives: list[Any] = option(
        (),
        "concat with solver adamw, head mlp or train_top: alignment losses on the fused "
        "embedding with unlabeled target examples, each a name or {name, weight, ...}: "
        + ", ".join(ALIGNMENT_OBJECTIVES),
        group="objectives",
    )

    def __post_init__(self) -> None:
        self.objectives = [dict(o) if isinstance(o, dict) else o for o in self.objectives]

    def fitted(self) -> dict[str, Any]:
        return dict(getattr(self, "_fitted", {}))

    def objective_configs(self) -> list[ObjectiveConfig]:
        """The configured alignment objectives, checked: a ConfigError in one line for a
        setting, a non-alignment objective, or stacking and the L-BFGS head."""
        if not isinstance(self.objectives, list | tuple):
            raise ConfigError(
                f"recipe '{self.name}': objectives must be a list; got {self.objectives!r}"
            )
        where = f"recipe '{self.name}': objectives"
        configs = [make_objective(o, where) for o in self.objectives]
        names = [c.name for c in configs]
        if len(set(names)) < len(names):
            raise ConfigError(f"{where}: an objective is listed twice ({names})")
        other = [c.name for c in configs if c.name not in ALIGNMENT_OBJECTIVES]
        if other:
            raise ConfigError(
                f"{where}: '{other[0]}' is not an alignment objective; fusion takes "
                f"{list(ALIGNMENT_OBJECTIVES)}"
            )
        if configs and (self.combine != "concat" or self.solver != "adamw"):
            raise ConfigError(
                f"{where} train the concat head by AdamW; expected combine 'concat' and solver "
                f"'adamw' (got '{self.combine}', '{self.solver}')"
            )
        if configs and self.head == "linear" and not self.train_top:
            raise ConfigError(
                f"{where} align the fused embedding, and with head 'linear' and train_top 0 "
                "nothing below the head trains; use head 'mlp' or train_top 1 or more"
            )
        return configs

    def validate(self, source: Any) -> None:
        super().validate(source)
        kinds = getattr(source, "input_kinds", None)
        if kinds is None:
            raise ConfigError(
                f"recipe '{self.name}' reads several inputs per example; domain "
                f"'{source.name}' holds {source.holds}: give the domain inputs: "
                "{name: {text: column}, ...}"
            )
        if self.solver == "lbfgs" and (self.combine != "concat" or self.head != "linear"):
            raise ConfigError(
                f"recipe '{self.name}': solver 'lbfgs' fits a linear head over the concatenated "
                f"features; expected combine 'concat' and head 'linear' (got '{self.combine}', "
                f"'{self.head}')"
            )
        unknown = [name for name in self.inputs if name not in kinds]
        if unknown or len(set(self.inputs)) < len(self.inputs):
            raise ConfigError(
                f"recipe '{self.name}': option 'inputs' is {self.inputs}; expected each of the "
                f"domain's inputs {list(kinds)} at most once"
            )
        if self.train_top:
            self._check_train_top(self.read_inputs(kinds))
        self.objective_configs()

    def _check_train_top(self, kinds: Mapping[str, str]) -> None:
        """A ConfigError for what cannot fine-tune: stacking, the L-BFGS head, a frozen-only
        backbone, or more top layers than a backbone has above its first layer."""
        where = f"recipe '{self.name}': train_top {self.train_top}"
        if self.combine != "concat" or self.solver != "adamw":
            raise ConfigError(
                f"{where} trains the backbones with the concat head by AdamW; expected combine "
                f"'concat' and solver 'adamw' (got '{self.combine}', '{self.solver}')"
            )
        from shoptransfer.backbones import make_encoder

        for kind in sorted(set(kinds.values())):
            backbone = self.image_backbone if kind == "image" else self.text_backbone
            if frozen_only(backbone):
                raise ConfigError(
                    f"{where}: backbone '{backbone}' is frozen only (its package computes the "
                    "features); use train_top 0 or a trainable backbone"
                )
            # the architecture is enough to count the layers: no pretrained weights
            layers = len(
                make_encoder(
                    backbone, image_size=self.image_size or None, pretrained=False
                ).layers()
            )
            if self.train_top >= layers:
                raise ConfigError(
                    f"{where}: backbone '{backbone}' has {layers} layers (the first, its "
                    f"embeddings or stem, stays frozen); expected train_top at most {layers - 1}"
                )

    def read_inputs(self, kinds: Mapping[str, str]) -> dict[str, str]:
        """The inputs this recipe reads: name -> kind."""
        return {name: kinds[name] for name in (self.inputs or list(kinds))}

    def make_encoders(self, kinds: Mapping[str, str]) -> dict[str, Any]:
        """A frozen encoder per input (one per backbone, shared by the inputs of its kind)."""
        from shoptransfer.backbones import make_encoder

        made: dict[str, Any] = {}

        def of(backbone: str) -> Any:
            if backbone not in made:
                made[backbone] = make_encoder(
                    backbone,
                    max_length=self.max_length,
                    truncation=self.truncation,
                    image_size=self.image_size or None,
                    precision=self.precision,
                )
            return made[backbone]

        return {
            name: input_kind_encoder(
                kind, lambda: of(self.text_backbone), lambda: of(self.image_backbone)
            )
            for name, kind in kinds.items()
        }

    def fit(self, data: FitData) -> Predictor:
        reference = data.reference()
        self.validate(reference)
        self._fitted: dict[str, Any] = {}
        kinds = self.read_inputs(reference.input_kinds)
        encoders = self.make_encoders(kinds)
        classes = data.label_vocabulary()
        source, target, cache = data.source, data.target, data.cache
        if source is None:
            if not data.has_target_labels:
                raise DataError(f"recipe '{self.name}': no source and no target labels")
            train, validation, target = target, None, None
        elif self.combine == "stacking" or self.solver == "lbfgs":
            train, validation = source, None
        else:
            train, validation = split_source(source, self.validation_fraction, self.seed)

        if self.train_top and processes()[1] > 1:  # a batch's inputs are not split by process
            raise ConfigError(
                f"recipe '{self.name}': train_top trains in one process; run it without "
                "--processes (or accelerate launch)"
            )
        tuned = list({id(e): e for e in encoders.values()}.values()) if self.train_top else []
        for encoder in tuned:  # the frozen bottom computed once per text or photo
            encoder.cache_frozen_bottom(
                len(encoder.layers()) - self.train_top, cache.bottom if cache is not None else None
            )

        def examples(domain: Any, weight: float = 1.0, labelled: bool = True) -> Examples:
            picked = MultiInputs(kinds, {n: domain.inputs.values[n] for n in kinds})
            labels = domain.label_ids(classes) if labelled else None
            weights = np.full(len(domain), weight, dtype=np.float32) if labelled else None
            if tuned:  # the backbones read the inputs in each batch
                return Examples(picked, labels, weights)
            features, mask = input_features(picked, encoders, cache)
            packed = np.hstack([*features, mask]).astype(np.float32)
            return Examples(packed, labels, weights)

        parts = [examples(train)]
        if target is not None and len(target):
            weight = (
                len(train) / len(target)
                if self.target_weight == "balanced"
                else float(self.target_weight)
            )
            parts.append(examples(target, weight))
        training = Examples.concatenate(parts)
        sizes = [int(e.hidden_size) for e in encoders.values()]
        spec = {
            "inputs": kinds,
            "encoders": {name: encoder_spec(e) for name, e in encoders.items()},
            "combine": self.combine,
            "head": self.head,
            "hidden_size": self.hidden_size,
            "missing": self.missing,
            "modality_dropout": self.modality_dropout,
            "sizes": sizes,
        }
        if tuned:
            spec.update(train_top=self.train_top, precision=check_precision(self.precision))
        torch.manual_seed(self.seed)
        model = build_fusion_model(spec, len(classes), encoders)

        def as_predictor(m: Classifier) -> FusionPredictor:
            return FusionPredictor(classes, m, spec, encoders, cache)

        if self.combine == "stacking":
            self._fit_stacking(model, training, list(kinds), len(classes))
            return as_predictor(model)
        if self.solver == "lbfgs":
            self._fit_probe(model, training, len(classes))
            return as_predictor(model)
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_fraction=0.0,
            patience=self.patience,
            seed=self.seed,
            description=self.name,
        )
        held_out = examples(validation) if validation is not None else None
        configs = self.objective_configs()
        built = [c.build(model) for c in configs]
        unlabeled = None
        if built:  # alignment: unlabeled target examples beside each training batch
            if data.unlabeled is None or not len(data.unlabeled):
                raise DataError(
                    f"recipe '{self.name}': objectives {[c.name for c in configs]} align with "
                    "unlabeled target examples; the target has none"
                )
            unlabeled = examples(data.unlabeled, labelled=False)
        groups = None
        if tuned:  # the backbones' top layers at their own learning rate
            in_backbones = {id(p) for e in tuned for p in e.parameters()}
            trained = [p for p in model.parameters() if p.requires_grad]
            head = [p for p in trained if id(p) not in in_backbones]
            tops = [p for p in trained if id(p) in in_backbones]
            groups = [
                {"params": head, "lr": self.learning_rate},
                {"params": tops, "lr": self.backbone_learning_rate},
            ]
        Trainer(settings).fit(
            model,
            training,
            held_out,
            target=unlabeled,
            objectives=built,
            parameter_groups=groups,
            as_predictor=as_predictor,
        )
        for encoder in tuned:  # predictions run the whole backbone, as a reloaded model does
            encoder.cached_layers = 0
        return as_predictor(model)

    def _fit_stacking(
        self, model: Classifier, training: Examples, names: list[str], n_classes: int
    ) -> None:
        """Fit each input's probe and temperature, then the stacking head, in place."""
        encoder: StackingEncoder = model.encoder  # type: ignore[assignment]
        sizes = encoder.sizes
        packed = torch.from_numpy(np.asarray(training.inputs))
        parts, mask_tensor = split_packed(packed, sizes)
        mask = mask_tensor.numpy()
        labels, weights = training.labels, training.weights
        assert labels is not None and weights is not None
        stacked, probes = [], []
        for column, part in enumerate(parts):
            rows = mask[:, column] > 0
            x = part.numpy()[rows]
            name = names[column]
            if len(np.unique(labels[rows])) < 2:
                raise DataError(
                    f"recipe '{self.name}': input '{name}' is present in examples of fewer "
                    "than two classes; its probe cannot be fitted"
                )
            weight, bias, report = fit_logistic_head(
                x, labels[rows], weights[rows], n_classes, self.seed
            )
            held_out = out_of_fold_logits(
                x, labels[rows], weights[rows], report, n_classes, self.seed
            )
            logits = held_out if held_out is not None else x @ weight.T + bias
            temperature = fit_temperature(logits, labels[rows])
            log_probabilities = np.zeros((len(labels), n_classes), dtype=np.float32)
            log_probabilities[rows] = calibrated_log_probabilities(
                torch.from_numpy(logits).float(), temperature
            ).numpy()
            stacked.append(log_probabilities)
            probes.append((weight, bias, temperature))
            self._fitted[name] = {
                **report,
                "temperature": round(temperature, 4),
                "out_of_fold": held_out is not None,
            }
        z = np.hstack([*stacked, mask]).astype(np.float32)
        hidden = self._hidden_copies(mask)
        copies = z[[row for row, _ in hidden]]
        for i, (_, column) in enumerate(hidden):
            copies[i, column * n_classes : (column + 1) * n_classes] = 0.0
            copies[i, len(sizes) * n_classes + column] = 0.0
        rows = [row for row, _ in hidden]
        head_weight, head_bias, head_report = fit_copies_too(
            np.vstack([z, copies]),
            labels,
            weights,
            rows,
            self.modality_dropout,
            n_classes,
            self.seed,
        )
        self._fitted["stacking_head"] = head_report
        head: nn.Linear = model.head  # type: ignore[assignment]
        with torch.no_grad():
            for probe, (weight, bias, _) in zip(encoder.probes, probes):
                linear: nn.Linear = probe  # type: ignore[assignment]
                linear.weight.copy_(torch.from_numpy(weight))
                linear.bias.copy_(torch.from_numpy(bias))
            encoder.temperatures.copy_(torch.tensor([t for _, _, t in probes]))
            head.weight.copy_(torch.from_numpy(head_weight))
            head.bias.copy_(torch.from_numpy(head_bias))

    def _hidden_copies(self, mask: np.ndarray) -> list[tuple[int, int]]:
        """Modality dropout for the closed-form fits: (example, input) for a copy of each
        example with one of its present inputs hidden, where it has another one (none when
        ``modality_dropout`` is 0; the copies are weighted by it)."""
        if self.modality_dropout == 0:
            return []
        several = mask.sum(axis=1) > 1
        return [
            (int(row), column)
            for column in range(mask.shape[1])
            for row in np.flatnonzero(several & (mask[:, column] > 0))
        ]

    def _fit_probe(self, model: Classifier, training: Examples, n_classes: int) -> None:
        """The linear head over the concatenated features by the L-BFGS linear probe
        (:func:`~shoptransfer.recipes.frozen_features.fit_logistic_head`), on the training
        examples and their copies with one input hidden. A missing input reads zeros: under a
        linear head a learned vector would only add the mask column's per-class shift."""
        packed = np.asarray(training.inputs, dtype=np.float32)
        labels, weights = training.labels, training.weights
        assert labels is not None and weights is not None
        encoder: FusionEncoder = model.encoder  # type: ignore[assignment]
        width = sum(encoder.sizes)
        hidden = self._hidden_copies(packed[:, width:])
        rows = [row for row, _ in hidden]
        copies = packed[rows]
        for i, (_, column) in enumerate(hidden):
            copies[i, width + column] = 0.0
        encoder.eval()
        with torch.no_grad():
            z = encoder.embed({"features": torch.from_numpy(np.vstack([packed, copies]))})
        weight, bias, report = fit_copies_too(
            z.numpy(), labels, weights, rows, self.modality_dropout, n_classes, self.seed
        )
        self._fitted["head"] = {**report, "hidden_copies": len(rows)}
        head: nn.Linear = model.head  # type: ignore[assignment]
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weight))
            head.bias.copy_(torch.from_numpy(bias))


def fit_copies_too(
    x: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    copied: list[int],
    copy_weight: float,
    n_classes: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The logistic head over features ``x``: the examples first, then copies of the examples
    at ``copied`` (weight ``copy_weight``). The L2 strength is cross-validated on the examples
    alone (a copy beside its original in another fold would leak), then the head is refitted
    with it on examples and copies."""
    n = len(labels)
    weight, bias, report = fit_logistic_head(x[:n], labels, weights, n_classes, seed)
    if not copied:
        return weight, bias, report
    weight, bias, _ = fit_logistic_head(
        x,
        np.concatenate([labels, labels[copied]]),
        np.concatenate([weights, weights[copied] * copy_weight]),
        n_classes,
        seed,
        inverse_l2=report["inverse_l2"],
    )
    return weight, bias, report


def out_of_fold_logits(
    x: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    report: Mapping[str, Any],
    n_classes: int,
    seed: int,
) -> np.ndarray | None:
    """Each example's logits from a probe fitted without its fold (the L2 strength the full
    probe chose); ``None`` when a class has fewer than two examples (no folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    present = np.unique(labels)
    folds = min(5, int(np.bincount(labels)[present].min()))
    if folds < 2:
        return None
    logits = np.full((len(labels), n_classes), LOG_PROBABILITY_FLOOR, dtype=np.float32)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    standard = (x - mean) / scale
    for fit_rows, held_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(
        standard, labels
    ):
        if len(np.unique(labels[fit_rows])) < 2:
            return None
        probe = LogisticRegression(C=report["inverse_l2"], max_iter=500)
        probe.fit(standard[fit_rows], labels[fit_rows], weights[fit_rows])
        scores = probe.decision_function(standard[held_rows])
        if scores.ndim == 1:  # two classes: sklearn keeps the second class's score
            scores = np.stack([-scores / 2, scores / 2], axis=1)
        logits[np.ix_(held_rows, probe.classes_)] = scores
    return logits


TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (on a log grid) that minimises the negative log-likelihood of
    ``labels`` under ``softmax(logits / T)`` (Guo et al. 2017, temperature scaling)."""
    scores = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    target = torch.from_numpy(labels).long()
    losses = [float(nn.functional.cross_entropy(scores / float(t), target)) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])
