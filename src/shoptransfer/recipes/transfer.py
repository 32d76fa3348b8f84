"""Transfer through a trainable encoder: the pieces every model-, feature- and network-based
recipe combines, and the named presets built from them.

Pieces (each a hyper-parameter of :class:`EncoderTransfer`):

- ``encoder``: ``backbone`` (the pretrained text encoder is trained) or ``mlp`` (a small MLP
  over frozen backbone features, or over a feature domain's vectors);
- what trains: ``frozen_layers`` (bottom layers kept frozen), ``gradual_unfreezing`` (Howard &
  Ruder, ACL 2018: top layer first), ``layer_decay`` (layer-wise learning-rate decay), ``peft``
  (LoRA or (IA)^3 adapters);
- ``objectives``: auxiliary losses from the objective registry, composed as a list: alignment
  on unlabeled target data (CORAL, MMD, DANN, MCC), L2-SP toward the pretrained weights, batch
  spectral shrinkage (:mod:`shoptransfer.objectives`); each applies in the stages it declares;
- ``self_training_rounds``: after the source stage, label the unlabeled target text with the
  model, keep the most confident share and train on it (each round);
- ``dapt_epochs``: before anything else, continue the backbone's masked-language-model training
  on unlabeled text (the target's, with ``dapt_texts: source+target`` the source's too, and the
  lines of ``dapt_extra_texts``): domain- / task-adaptive pre-training (Gururangan et al., ACL
  2020); with the ``mlm`` objective beside the source loss it is UDALM (Karouzos et al., NAACL
  2021). The adapted weights are cached on disk by backbone, texts and settings;
- ``distillation_epochs``: after the source stage (and self-training), the model's own
  predictions on the unlabeled target (a frozen copy, softened by ``distillation_temperature``)
  become soft labels it trains on, optionally from texts with words dropped
  (``distillation_word_dropout``: consistency under input noise);
- ``stages``: ``sequential`` (source, then the target labels) or ``joint`` (one shared trunk
  with a head per domain, trained on both at once);
- ``model_selection``: what picks the source stage's epoch: the source validation split
  (default) or a label-free criterion on the unlabeled target
  (:mod:`shoptransfer.evaluation.label_free`); ``selection_grid``: settings to choose among by
  the same criterion (an option, or an objective's setting such as ``dann.weight``).

The head is what the task predicts (:class:`~shoptransfer.heads.Outputs`): classes; one number
(regression, mean squared error); or one head per task over the shared encoder (multi-task). Joint
stages, self-training and objectives that read class scores are for classification only.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.cache import EmbeddingCache
from shoptransfer.backbones.inputs import (
    domain_inputs,
    feature_size,
    frozen_encoder_for,
    holds_vectors,
)
from shoptransfer.backbones.language_model import (
    LanguageModelSettings,
    MaskedLanguageModelHead,
    adapt_language_model,
    check_language_model,
)
from shoptransfer.backbones.registry import backbone_modality, frozen_only
from shoptransfer.backbones.text import load_tokenizer
from shoptransfer.checkpoints import keeping_random_states, stage_checkpoints
from shoptransfer.data.domain import Domain
from shoptransfer.data.readers import read_extra_texts
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.label_free import (
    CRITERIA,
    DEV_SAMPLE,
    SOURCE_VALIDATION,
    CandidateOutputs,
    best_index,
    score_candidate,
)
from shoptransfer.heads import Outputs
from shoptransfer.metering import measure, training_clock
from shoptransfer.objectives import ObjectiveConfig, list_objectives, make_objective
from shoptransfer.privacy import HELP as PRIVACY_HELP
from shoptransfer.privacy import PrivacySettings, combined, privacy_settings, require_opacus
from shoptransfer.progress import report
from shoptransfer.recipes.base import BackboneRecipe, FitData, Predictor, option, register_recipe
from shoptransfer.recipes.neural import NeuralPredictor, split_source
from shoptransfer.recipes.peft_methods import PEFT_METHODS, apply_peft
from shoptransfer.training import (
    Classifier,
    Examples,
    FeatureMLP,
    Objective,
    Step,
    Trainer,
    TrainingSettings,
    predict_features,
    predict_logits,
)


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
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression", "multi-task")

    # what is trained
    encoder: str = option(
        "backbone",
        "'backbone' (train the text encoder) or 'mlp' (an MLP over frozen features or vectors)",
        choices=("backbone", "mlp"),
        group="model",
    )
    mlp_hidden: int = option(256, "hidden size of the 'mlp' encoder", minimum=1, group="model")
    frozen_layers: int = option(
        0, "bottom layers (embeddings first) kept frozen", minimum=0, group="model"
    )
    gradual_unfreezing: bool = option(
        False, "unfreeze layers top-down over the epochs", group="model"
    )
    layer_decay: float = option(
        1.0, "learning rate x decay^depth-from-top (1: no decay)", above=0, maximum=1, group="model"
    )
    # parameter-efficient adapters
    peft: str = option(
        "none",
        f"parameter-efficient method: one of {list(PEFT_METHODS)}",
        choices=tuple(PEFT_METHODS),
        group="adapters",
    )
    peft_rank: int = option(8, "LoRA rank r", minimum=1, group="adapters")
    peft_alpha: float = option(16.0, "LoRA scaling alpha", above=0, group="adapters")
    peft_target_modules: list[str] = option(
        ("query", "value"),
        "linear layers the peft method adapts (names or name endings)",
        group="adapters",
    )
    # the source stage
    epochs: int = option(
        3, "most source epochs (early stopping on source validation)", minimum=1, group="source"
    )
    batch_size: int = option(
        16, "examples per step (and unlabeled target examples per step)", minimum=1, group="source"
    )
    micro_batch_size: int = option(
        0,
        "examples through the model at once, their gradients summed into one step of "
        "batch_size (0: the whole batch; gradient accumulation, also in each process of a "
        "--processes run); not with objectives on target batches",
        minimum=0,
        group="source",
    )
    group_by_length: bool = option(
        False,
        "shuffle texts in batches of similar length (each batch is padded to its longest "
        "text: with max_length 256-512 this cuts the work about in half; every stage)",
        group="source",
    )
    learning_rate: float = option(
        3e-5, "AdamW learning rate of the encoder", above=0, group="source"
    )
    head_learning_rate: float = option(
        1e-3, "AdamW learning rate of new heads", above=0, group="source"
    )
    weight_decay: float = option(0.01, "AdamW (decoupled) weight decay", minimum=0, group="source")
    patience: int = option(
        1, "source epochs without validation improvement before stopping", minimum=1, group="source"
    )
    validation_fraction: float = option(
        0.2, "share of the source held out for model selection", above=0, below=1, group="source"
    )
    stages: str = option(
        "sequential",
        "'sequential' (source, then target labels) or 'joint' "
        "(a head per domain, trained together)",
        choices=("sequential", "joint"),
        group="source",
    )
    # auxiliary losses
    objectives: list[Any] = option(
        (),
        "auxiliary losses, each a name or {name, weight, ...}: "
        + ", ".join(o.name for o in list_objectives()),
        group="objectives",
    )
    # self-training on the unlabeled target
    self_training_rounds: int = option(
        0,
        "rounds of self-training on pseudo-labeled unlabeled target text (0: none)",
        minimum=0,
        group="self-training",
    )
    pseudo_label_share: float = option(
        0.5,
        "share of the unlabeled target kept in the last self-training round (growing linearly "
        "from share/rounds), most confident first, per class in the source's class proportions",
        above=0,
        maximum=1,
        group="self-training",
    )
    # masked-language-model training of the backbone before the source stage
    dapt_epochs: int = option(
        0,
        "epochs of masked-language-model training of the backbone on unlabeled text before the "
        "source stage (0: none); cached by backbone, texts and settings",
        minimum=0,
        group="language-model",
    )
    dapt_texts: str = option(
        "source+target",
        "texts of the language-model step: 'target' (the unlabeled target, TAPT) or "
        "'source+target' (the source's texts too, DAPT)",
        choices=("target", "source+target"),
        group="language-model",
    )
    dapt_extra_texts: list[str] = option(
        (),
        "text files (one text a line) the language-model step also reads; empty and repeated "
        "lines and lines equal to a text the fit reads are dropped (counted per file)",
        group="language-model",
    )
    dapt_max_texts: int = option(
        0,
        "most texts of the language-model step, a seeded sample (0: all)",
        minimum=0,
        group="language-model",
    )
    dapt_learning_rate: float = option(
        5e-5, "AdamW learning rate of the language-model step", above=0, group="language-model"
    )
    # self-distillation on the unlabeled target
    distillation_epochs: int = option(
        0,
        "epochs on the unlabeled target with the model's own soft predictions as labels, after "
        "the source stage and self-training (0: none)",
        minimum=0,
        group="self-distillation",
    )
    distillation_temperature: float = option(
        0.5,
        "temperature of the teacher's soft labels (below 1 sharpens them; at 1 only dropout and "
        "word dropout make the student differ from its teacher)",
        above=0,
        group="self-distillation",
    )
    distillation_word_dropout: float = option(
        0.0,
        "share of words dropped at random from each text the student reads, anew each epoch "
        "(consistency under input noise; 0: none)",
        minimum=0,
        below=1,
        group="self-distillation",
    )
    # the target stage
    target_epochs: int = option(
        10, "epochs on the target labels (fixed: no target validation)", minimum=0, group="target"
    )
    target_learning_rate: float = option(
        3e-5, "AdamW learning rate of the target stage", above=0, group="target"
    )
    # choosing epochs and settings
    model_selection: str = option(
        SOURCE_VALIDATION,
        "what picks the source stage's epoch (and a selection_grid setting): "
        "'source-validation' (macro-F1 on the source split) or a label-free criterion on the "
        "unlabeled target: 'entropy', 'im', 'bnm', 'snd' or 'dev'",
        choices=tuple(CRITERIA),
        group="selection",
    )
    selection_grid: dict[str, list[Any]] | None = option(
        None,
        "settings to choose among by model_selection, {key: [values]}; a key is an option of "
        "this recipe (pseudo_label_share) or an objective's setting (dann.weight); every "
        "combination is trained, the best kept",
        group="selection",
    )
    privacy: dict[str, Any] | None = option(None, PRIVACY_HELP, group="privacy")
    history_: list[dict[str, Any]] = dataclasses.field(
        default_factory=list, init=False, repr=False, compare=False
    )
    # each private Trainer fit's spending (source stage, target stage)
    privacy_reports_: list[dict[str, Any]] = dataclasses.field(
        default_factory=list, init=False, repr=False, compare=False
    )
    fitted_: dict[str, Any] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    outputs_: Outputs = dataclasses.field(
        default_factory=Outputs, init=False, repr=False, compare=False
    )
    # the language-model step's trained MLM head: where the mlm objective's head starts
    language_model_head_: MaskedLanguageModelHead | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.peft_target_modules = list(self.peft_target_modules)
        self.dapt_extra_texts = list(self.dapt_extra_texts)
        self.objectives = [dict(o) if isinstance(o, dict) else o for o in self.objectives]
        self.objective_configs()  # a bad entry is an error when the recipe is made
        self.grid_settings()
        self.privacy_settings()

    def privacy_settings(self) -> PrivacySettings | None:
        """The ``privacy`` option, checked (a ConfigError naming the key otherwise)."""
        return privacy_settings(self.privacy, f"recipe '{self.name}': privacy")

    def fitted(self) -> dict[str, Any]:
        """The epoch and setting the last fit chose, with every candidate's scores (only when
        ``model_selection`` is label-free or a ``selection_grid`` is given)."""
        return dict(self.fitted_)

    def selects_label_free(self) -> bool:
        """Whether a criterion on the unlabeled target picks the epoch or setting."""
        return self.model_selection != SOURCE_VALIDATION

    def grid_settings(self) -> list[dict[str, Any]]:
        """Every combination of ``selection_grid`` (none: ``[]``), each one checked: a key is an
        option of the recipe or ``objective.setting`` of one of its objectives."""
        grid = self.selection_grid
        if not grid:
            return []
        where = f"recipe '{self.name}': selection_grid"
        if not isinstance(grid, dict):
            raise ConfigError(f"{where} is {grid!r}; expected a mapping of keys to lists of values")
        fixed = {"seed", "model_selection", "selection_grid"}
        allowed = sorted(set(self.options()) - fixed)
        objectives = {c.name for c in self.objective_configs()}
        for key, values in grid.items():
            name = str(key).split(".", 1)[0]
            if "." in str(key) and name not in objectives:
                raise ConfigError(
                    f"{where}: key '{key}' names objective '{name}', which this recipe does not "
                    f"use; its objectives: {sorted(objectives)}"
                )
            if "." not in str(key) and key not in allowed:
                raise ConfigError(
                    f"{where}: unknown key '{key}'; expected an option of the recipe "
                    f"({', '.join(allowed)}) or objective.setting (such as dann.weight)"
                )
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f"{where}: key '{key}' is {values!r}; expected a non-empty list of values"
                )
        if "objectives" in grid and any("." in str(key) for key in grid):
            raise ConfigError(f"{where}: list objectives or their settings, not both")
        keys = list(grid)
        settings = [
            dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())
        ]
        for setting in settings:
            try:
                self.with_setting(setting)
            except ConfigError as error:  # a bad value: named with the grid's key
                detail = str(error).removeprefix(f"recipe '{self.name}': ")
                raise ConfigError(f"{where}: {detail}") from None
        return settings

    def with_setting(self, setting: dict[str, Any]) -> EncoderTransfer:
        """This recipe with one ``selection_grid`` setting applied (and no grid of its own)."""
        options = type(self).checked_options({k: v for k, v in setting.items() if "." not in k})
        objectives = list(options.pop("objectives", self.objectives))
        for key, value in setting.items():
            if "." in key:
                name, field = key.split(".", 1)
                entries = [{"name": o} if isinstance(o, str) else dict(o) for o in objectives]
                objectives = [{**o, field: value} if o["name"] == name else o for o in entries]
        return dataclasses.replace(self, selection_grid=None, objectives=objectives, **options)

    def objective_configs(self) -> list[ObjectiveConfig]:
        """The configured objectives, checked (names, settings, types)."""
        if not isinstance(self.objectives, list | tuple):
            raise ConfigError(
                f"recipe '{self.name}': objectives must be a list; got {self.objectives!r}"
            )
        configs = [make_objective(o, f"recipe '{self.name}': objectives") for o in self.objectives]
        names = [c.name for c in configs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"recipe '{self.name}': objective(s) {repeated} listed twice")
        return configs

    def check_task(self, task: str) -> None:
        super().check_task(task)
        if task == "classification":
            return
        needs_classes = [
            what
            for what, used in (
                ("stages: joint", self.stages == "joint"),
                ("self-training", self.self_training_rounds > 0),
                ("self-distillation", self.distillation_epochs > 0),
                (f"model_selection '{self.model_selection}'", self.selects_label_free()),
                ("selection_grid", bool(self.selection_grid)),
                *(
                    (f"objective '{c.name}'", c.reads_class_scores)
                    for c in self.objective_configs()
                ),
            )
            if used
        ]
        if needs_classes:
            raise ConfigError(
                f"recipe '{self.name}': {needs_classes[0]} is for classification only; "
                f"this run's task is {task}"
            )

    def aligns(self) -> bool:
        """Whether an objective reads unlabeled target inputs."""
        return any(c.needs_unlabeled_target for c in self.objective_configs())

    def _check(self, source: Domain) -> None:
        self.check_options()  # types, choices and bounds (a value set after make_recipe too)
        self.check_backbone(source)
        if self.encoder == "backbone" and frozen_only(self.backbone):
            raise ConfigError(
                f"recipe '{self.name}' trains the text encoder, but backbone '{self.backbone}' "
                "is frozen only (its package computes the embeddings); use encoder: mlp (the "
                "mlp-* recipes), frozen-features, or backbone 'e5-small-multilingual-torch'"
            )
        if holds_vectors(source) and self.encoder != "mlp":
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
        if self.aligns() and self.stages == "joint":
            raise ConfigError(
                f"recipe '{self.name}': choose objectives on unlabeled target data or joint "
                "stages, not both"
            )
        if self.self_training_rounds and self.stages == "joint":
            raise ConfigError(f"recipe '{self.name}': self-training needs sequential stages")
        if self.distillation_epochs and self.stages == "joint":
            raise ConfigError(f"recipe '{self.name}': self-distillation needs sequential stages")
        language_model = [
            what
            for what, used in (
                ("dapt_epochs", self.dapt_epochs > 0),
                ("objective 'mlm'", any(c.name == "mlm" for c in self.objective_configs())),
                ("distillation_word_dropout", self.distillation_word_dropout > 0),
            )
            if used
        ]
        if language_model and (
            self.encoder != "backbone"
            or holds_vectors(source)
            or backbone_modality(self.backbone) != "text"
        ):
            raise ConfigError(
                f"recipe '{self.name}': {language_model[0]} reads the tokens of a trainable text "
                "backbone; it needs encoder: backbone and a text backbone"
            )
        self._check_privacy()
        masking = [what for what in language_model if what != "distillation_word_dropout"]
        if masking and load_tokenizer(self.backbone).mask_token_id is None:  # before any work
            raise ConfigError(
                f"recipe '{self.name}': {masking[0]} masks tokens, but backbone "
                f"'{self.backbone}' has no mask token in its tokenizer"
            )

    def _check_privacy(self) -> None:
        """A ConfigError for pieces DP-SGD cannot bound per example (their losses mix examples,
        or they train on what the accountant does not count), or for a missing Opacus."""
        if self.privacy_settings() is None:
            return
        refused = [
            what
            for what, used in (
                ("objectives", bool(self.objectives)),
                ("stages: joint", self.stages == "joint"),
                ("self-training", self.self_training_rounds > 0),
                ("self-distillation", self.distillation_epochs > 0),
                ("dapt_epochs", self.dapt_epochs > 0),
                ("gradual_unfreezing", self.gradual_unfreezing),
                ("selection_grid", bool(self.selection_grid)),
                ("micro_batch_size", self.micro_batch_size > 0),
            )
            if used
        ]
        if refused:
            raise ConfigError(f"recipe '{self.name}': privacy does not combine with {refused[0]}")
        require_opacus()

    def validate(self, source: Domain) -> None:
        self._check(source)
        if self.peft != "none" and self.encoder == "backbone":
            # the architecture is enough to check the target modules: no pretrained weights
            apply_peft(self.make_encoder(pretrained=False), self.peft_spec() or {})

    # -- building the model -------------------------------------------------------------------

    def _build(
        self,
        source: Domain,
        outputs: Outputs,
        values: np.ndarray | None = None,
        cache: EmbeddingCache | None = None,
        data: FitData | None = None,
    ) -> tuple[Classifier, Any]:
        """The model to train, and the frozen encoder that feeds it features (mlp only);
        ``values``: the numbers a regression head first trains on. Frozen bottom layers keep
        their outputs in ``cache``'s bottom store when given. With ``dapt_epochs``, the
        backbone first trains as a language model on ``data``'s texts."""
        torch.manual_seed(self.seed)
        if self.encoder == "mlp":
            frozen = frozen_encoder_for(source, self.make_encoder)
            size = feature_size(source, frozen)
            mlp = FeatureMLP(size, self.mlp_hidden)
            return outputs.build(mlp.hidden_size, mlp, self.precision, values), frozen
        encoder = self.make_encoder()
        if self.dapt_epochs and data is not None:
            self._adapt(encoder, data)
        if self.peft != "none":
            apply_peft(encoder, self.peft_spec())
        model = outputs.build(encoder.hidden_size, encoder, self.precision, values)
        layers = self._layers(model)
        for layer in layers[: self.frozen_layers]:
            layer.requires_grad_(False)
        if self.peft == "none" and not self.gradual_unfreezing:
            # frozen pretrained layers give the same states every epoch: compute them once
            encoder.cache_frozen_bottom(
                min(self.frozen_layers, len(layers) - 1),
                cache.bottom if cache is not None else None,
            )
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

    def _build_objectives(
        self, model: Classifier, n_classes: int
    ) -> list[tuple[ObjectiveConfig | None, Objective]]:
        """Each configured objective built for ``model`` (with its config), plus the target's
        own head when the stages are joint (it applies to the source stage only)."""
        built: list[tuple[ObjectiveConfig | None, Objective]] = [
            (config, config.build(model)) for config in self.objective_configs()
        ]
        if self.stages == "joint":
            built.append((None, TargetHead(model.head.in_features, n_classes)))
        return built

    def _settings(self, stage: str, **overrides: Any) -> TrainingSettings:
        """Training settings of a stage: the source stage's, or the target stage's."""
        values: dict[str, Any] = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "micro_batch_size": self.micro_batch_size,
            "group_by_length": self.group_by_length,
            "learning_rate": self.learning_rate,
            "head_learning_rate": self.head_learning_rate,
            "weight_decay": self.weight_decay,
            "patience": self.patience,
            "seed": self.seed,
            "description": f"{self.name} on {stage}",
            "log_epochs": True,  # a line per epoch on stderr (a run's --quiet hides it)
            "loss": self.outputs_.loss,
            "privacy": self.privacy_settings(),
        }
        if stage == "target":
            values.update(
                epochs=self.target_epochs,
                learning_rate=self.target_learning_rate,
                head_learning_rate=None,
            )
        return TrainingSettings(**{**values, **overrides})

    # -- training -----------------------------------------------------------------------------

    def fit(self, data: FitData) -> Predictor:
        self.fitted_, self.language_model_head_ = {}, None
        self.privacy_reports_ = []
        if self.selection_grid:
            return self._fit_grid(data)
        source, target, unlabeled, cache = data.source, data.target, data.unlabeled, data.cache
        self._check(data.reference())
        self._check_data(data)
        outputs = self.outputs_ = data.predicts()
        first = source if source is not None else target
        values = outputs.labels(first) if outputs.kind == "value" else None
        model, frozen = self._build(data.reference(), outputs, values, cache, data)
        inputs = lambda domain: domain_inputs(domain, frozen, cache, model.encoder)  # noqa: E731
        built = self._build_objectives(model, len(outputs.classes))
        for _, objective in built:  # UDALM: the MLM loss goes on with the step's trained head
            head = getattr(objective, "head", None)
            if isinstance(head, MaskedLanguageModelHead) and self.language_model_head_:
                head.load_state_dict(self.language_model_head_.state_dict())

        def in_stage(stage: str) -> list[Objective]:
            return [o for c, o in built if stage in (c.stages if c else ("source",))]

        def as_predictor(m: Classifier) -> NeuralPredictor:
            return NeuralPredictor.from_training(outputs, m, self, frozen, cache)

        source_objectives = in_stage("source")
        target_stream = None
        if self.aligns():
            target_stream = Examples(inputs(unlabeled))
        elif self.stages == "joint" and data.has_target_labels:
            target_stream = Examples(inputs(target), outputs.labels(target))
        elif self.stages == "joint":  # no target labels: no target head to train
            source_objectives = [o for o in source_objectives if not isinstance(o, TargetHead)]
        self.history_ = []
        if source is not None:
            self._source_stage_fit(
                model, data, outputs, inputs, target_stream, source_objectives, as_predictor
            )
            self._record_source_stage()
        if self.self_training_rounds:
            self._self_train(
                model, source, unlabeled, inputs, in_stage("self-training"), as_predictor
            )
        if self.distillation_epochs:
            self._distil(model, unlabeled, inputs, as_predictor)
        heads = [o for o in source_objectives if isinstance(o, TargetHead)]
        if heads:
            model.head = heads[0].head  # predict the target with the target's own head
        elif data.has_target_labels:
            trainer = Trainer(self._settings("target"))
            trainer.fit(
                model,
                Examples(inputs(target), outputs.labels(target)),
                objectives=in_stage("target"),
                as_predictor=as_predictor,
                parameter_groups=self._parameter_groups(
                    model, self.target_learning_rate, self.target_learning_rate
                ),
            )
            if trainer.privacy_report is not None:
                self.privacy_reports_.append({"stage": "target", **trainer.privacy_report})
        if self.privacy_reports_:
            self.fitted_["privacy"] = combined(self.privacy_reports_)
        self._record_epochs()
        self._record_texts(data, self.aligns())
        return as_predictor(model)

    def _adapt(self, encoder: Any, data: FitData) -> None:
        """Train ``encoder`` as a masked language model on the fit's unlabeled texts (see
        ``dapt_texts``, ``dapt_extra_texts``, ``dapt_max_texts``), through the disk cache beside
        the run's embedding cache; what it read is noted in ``fitted_["language_model"]``."""
        check_language_model(encoder, f"recipe '{self.name}': dapt_epochs")
        named = [("target_unlabeled", data.unlabeled)]
        if self.dapt_texts == "source+target":
            named += [("source", data.source), ("target_labelled", data.target)]
        known = [
            text
            for domain in (data.source, data.target, data.unlabeled)
            if domain is not None
            for text in domain.inputs
        ]
        pool: dict[str, str] = {}  # text -> where it came from (the first place)
        for where, domain in named:
            for text in domain.inputs if domain is not None else []:
                pool.setdefault(text, where)
        extra: list[dict[str, Any]] = []
        for path in self.dapt_extra_texts:
            lines, read = read_extra_texts(path, known)
            read["new"] = 0  # kept and not in an earlier file
            for text in lines:
                if text not in pool:
                    pool[text] = "extra_files"
                    read["new"] += 1
            extra.append({"path": str(path), **read})
        texts = sorted(pool)
        if not texts:
            raise DataError(f"recipe '{self.name}': dapt_epochs, but the fit has no unlabeled text")
        available = len(texts)
        if self.dapt_max_texts and len(texts) > self.dapt_max_texts:
            rows = np.random.default_rng(0).choice(len(texts), self.dapt_max_texts, replace=False)
            texts = [texts[i] for i in sorted(rows)]
        counts: dict[str, int] = {}
        for text in texts:
            counts[pool[text]] = counts.get(pool[text], 0) + 1
        settings = LanguageModelSettings(
            epochs=self.dapt_epochs,
            batch_size=self.batch_size,
            learning_rate=self.dapt_learning_rate,
            weight_decay=self.weight_decay,
        )
        root = data.cache.root.parent / "language-models" if data.cache is not None else None
        adaptation = adapt_language_model(encoder, texts, settings, root)
        self.language_model_head_ = adaptation.head
        if not adaptation.reused:  # once per language-model step, not per reuse
            for read in extra:
                dropped = read["lines"] - read["kept"]
                if dropped:
                    report(
                        f"warning: {read['path']}: {dropped} of {read['lines']} lines not "
                        f"read by the language-model step ({read['empty']} empty, "
                        f"{read['duplicates']} repeated, {read['known']} equal to a text "
                        "the fit reads); counted in results.json"
                    )
        self.fitted_["language_model"] = {
            **adaptation.record(),
            "texts": counts,  # by where they came from; adaptation.texts is their sum
            "texts_available": available,
            **({"extra_files": extra} if extra else {}),
        }

    def _distil(self, model: Classifier, unlabeled: Domain, inputs: Any, as_predictor: Any) -> None:
        """Self-distillation: the model's softened predictions on the unlabeled target (the
        teacher, fixed before the first epoch) are the soft labels it then trains on, one epoch
        at a time; with ``distillation_word_dropout`` the student reads texts with words
        dropped, anew each epoch. No target labels are read."""
        target_inputs = inputs(unlabeled)
        logits = predict_logits(model, Examples(target_inputs))
        soft = _softmax(logits / self.distillation_temperature).astype(np.float32)
        rng = np.random.default_rng(self.seed)
        for epoch in range(1, self.distillation_epochs + 1):
            student = target_inputs
            if self.distillation_word_dropout:
                student = [drop_words(t, self.distillation_word_dropout, rng) for t in student]
            settings = self._settings(
                "source",
                epochs=1,
                seed=self.seed + 1000 + epoch,
                description=f"{self.name}: self-distillation epoch {epoch}",
            )
            history = Trainer(settings).fit(
                model,
                Examples(student, soft),
                parameter_groups=self._parameter_groups(
                    model, self.learning_rate, self.head_learning_rate
                ),
                as_predictor=as_predictor,
            )
            self.history_.append(
                {"distillation_epoch": epoch, "train_loss": history[-1]["train_loss"]}
            )

    def _record_texts(self, data: FitData, source_reads_target: bool) -> None:
        """Which texts each step read (counts), in ``fitted_["texts_seen"]``: when a
        language-model step, the ``mlm`` objective or self-distillation is on."""
        uses_mlm = any(c.name == "mlm" for c in self.objective_configs())
        if not (self.dapt_epochs or self.distillation_epochs or uses_mlm):
            return
        size = lambda domain: len(domain) if domain is not None else 0  # noqa: E731
        seen: dict[str, Any] = {}
        if "language_model" in self.fitted_:
            seen["language_model"] = self.fitted_["language_model"]["texts"]
        if data.source is not None:
            seen["source_stage"] = {
                "source_labelled": size(data.source),
                "target_unlabeled": size(data.unlabeled) if source_reads_target else 0,
            }
        if self.self_training_rounds:
            seen["self_training"] = {"target_unlabeled": size(data.unlabeled)}
        if self.distillation_epochs:
            seen["self_distillation"] = {"target_unlabeled": size(data.unlabeled)}
        if data.has_target_labels and self.stages == "sequential":
            seen["target_stage"] = {"target_labelled": size(data.target)}
        self.fitted_["texts_seen"] = seen

    def _record_source_stage(self) -> None:
        """Note in ``fitted_`` the source stage's epochs, the one kept and its validation
        score: what a choice between settings reads when no target label may be read."""
        scored = [
            (key, record[key])
            for record in self.history_
            for key in sorted(record)
            if key.startswith("validation_")
        ]
        if not scored or len(scored) != len(self.history_):
            return
        values = [value for _, value in scored]
        kept = max(i for i, value in enumerate(values) if value == max(values))  # ties: later
        self.fitted_["source_stage"] = {
            "epochs": len(values),
            "kept_epoch": kept + 1,
            scored[kept][0]: values[kept],
        }

    def _record_epochs(self) -> None:
        """Note in ``fitted_`` the source epoch a label-free criterion chose, and every epoch's
        scores."""
        epochs = [r["selection_scores"] for r in self.history_ if "selection_scores" in r]
        if not epochs:
            return
        self.fitted_["model_selection"] = {
            "criterion": self.model_selection,
            "chosen_epoch": best_index([e[self.model_selection] for e in epochs]) + 1,
            "scores": {name: [e[name] for e in epochs] for name in epochs[0]},
        }

    def _scorer(self, data: FitData, inputs: Any, outputs: Outputs) -> CandidateScorer:
        """Scores of a model on the unlabeled target and the source split of the source stage
        (at most :data:`DEV_SAMPLE` source training examples, seeded, for DEV)."""
        train, validation = split_source(data.source, self.validation_fraction, self.seed)
        if len(train) > DEV_SAMPLE:
            rows = np.random.default_rng(self.seed).choice(len(train), DEV_SAMPLE, replace=False)
            train = train.subset(np.sort(rows))
        return CandidateScorer(
            self.model_selection,
            Examples(inputs(data.unlabeled)),
            Examples(inputs(train)),
            Examples(inputs(validation)),
            np.asarray(outputs.labels(validation)),
        )

    def _fit_grid(self, data: FitData) -> Predictor:
        """Fit every setting of ``selection_grid``; keep the one ``model_selection`` scores
        highest (on a tie the later), and record every candidate's scores."""
        self._check(data.reference())
        self._check_data(data)
        candidates: list[dict[str, Any]] = []
        best: tuple[float, EncoderTransfer, Predictor, dict[str, Any]] | None = None
        for setting in self.grid_settings():
            recipe = self.with_setting(setting)
            predictor = recipe.fit(data)
            assert isinstance(predictor, NeuralPredictor)

            def inputs(domain: Domain, p: NeuralPredictor = predictor) -> Any:
                return domain_inputs(domain, p.frozen, data.cache, p.model.encoder)

            scores = self._scorer(data, inputs, recipe.outputs_).score(predictor.model)
            candidates.append({"setting": setting, "scores": scores, **recipe.fitted()})
            if best is None or scores[self.model_selection] >= best[0]:
                best = (scores[self.model_selection], recipe, predictor, setting)
        assert best is not None
        _, recipe, predictor, setting = best
        self.history_, self.outputs_ = recipe.history_, recipe.outputs_
        self.fitted_ = {
            **recipe.fitted(),
            "selection_grid": {
                "criterion": self.model_selection,
                "chosen": setting,
                "candidates": candidates,
            },
        }
        return predictor

    def _check_data(self, data: FitData) -> None:
        """A clear error when the data lacks what the configured pieces read."""
        if self.aligns() and data.unlabeled is None:
            raise DataError(
                f"recipe '{self.name}' aligns features with unlabeled target data; none was given"
            )
        if self.distillation_epochs and (data.unlabeled is None or len(data.unlabeled) == 0):
            raise DataError(
                f"recipe '{self.name}' distils on unlabeled target data; none was given"
            )
        if self.self_training_rounds and (data.unlabeled is None or len(data.unlabeled) == 0):
            raise DataError(
                f"recipe '{self.name}' self-trains on unlabeled target data; none was given"
            )
        selecting = [
            what
            for what, used in (
                (f"model_selection '{self.model_selection}'", self.selects_label_free()),
                ("selection_grid", bool(self.selection_grid)),
            )
            if used
        ]
        if selecting and (data.unlabeled is None or len(data.unlabeled) == 0):
            raise DataError(
                f"recipe '{self.name}': {selecting[0]} scores models on unlabeled target data; "
                "none was given"
            )
        if selecting and data.source is None:
            raise DataError(
                f"recipe '{self.name}': {selecting[0]} scores models on the source validation "
                "split; it needs a source domain"
            )
        if data.source is None:
            needs = [
                what
                for what, used in (
                    ("objectives on unlabeled target data", self.aligns()),
                    ("self-training", self.self_training_rounds > 0),
                    ("joint stages", self.stages == "joint"),
                )
                if used
            ]
            if needs:
                raise DataError(f"recipe '{self.name}': {needs[0]} need a source domain")
            if not data.has_target_labels:
                raise DataError(f"recipe '{self.name}': no source and no target labels to train on")

    def _source_stage_key(self, data: FitData) -> tuple[Any, ...]:
        """What the source stage depends on: the settings it reads and its data."""
        # what only later stages read: the target stage and self-training after the source stage
        later = {"target_epochs", "target_learning_rate", "self_training_rounds"}
        later.update({"pseudo_label_share", "distillation_epochs", "distillation_temperature"})
        later.add("distillation_word_dropout")
        settings = tuple(
            (key, repr(getattr(self, key))) for key in self.options() if key not in later
        )
        unlabeled = data.unlabeled.data_hash() if self.aligns() else None
        return (
            "encoder-transfer source stage",
            self.name,
            settings,
            data.source.data_hash(),
            unlabeled,
            repr(self.outputs_),
            self.fitted_.get("language_model", {}).get("key"),  # the adapted weights
        )

    def _source_stage_fit(
        self,
        model: Classifier,
        data: FitData,
        outputs: Outputs,
        inputs: Any,
        target_stream: Examples | None,
        objectives: list[Objective],
        as_predictor: Any,
    ) -> None:
        """Train on the source labels (with the objectives' target stream), selecting the
        epoch on a source validation split. With sequential stages the trained state is kept
        in ``data.stages``, and a later fit with the same settings and data reuses it (its
        cost charged again, in full)."""
        source = data.source
        reuse = self.stages == "sequential" and data.stages is not None
        key = self._source_stage_key(data) if reuse else None
        if reuse:
            kept = data.stages.get(key)
            if kept is not None:
                state, history, spent = kept
                model.load_state_dict(state)
                self.history_ = list(history)
                if spent is not None:
                    self.privacy_reports_.append(spent)
                if self.gradual_unfreezing:
                    self._unfreezer(model, 1)(0)  # everything the source stage unfroze
                return
        train, validation = split_source(source, self.validation_fraction, self.seed)
        scorer = self._scorer(data, inputs, outputs) if self.selects_label_free() else None
        # a shared stage trains in its own checkpoint folder and leaves the random states as a
        # reuse would, so the fits after it do not depend on whether it was trained here
        with (
            stage_checkpoints(key) if reuse else nullcontext(),
            keeping_random_states() if reuse else nullcontext(),
            training_clock() as clock,
            measure() as meter,
        ):
            trainer = Trainer(self._settings("source"))
            self.history_ = trainer.fit(
                model,
                Examples(inputs(train), outputs.labels(train)),
                Examples(inputs(validation), outputs.labels(validation)),
                target=target_stream,
                objectives=objectives,
                parameter_groups=self._parameter_groups(
                    model, self.learning_rate, self.head_learning_rate
                ),
                on_epoch_start=self._unfreezer(model, self.epochs),
                as_predictor=as_predictor,
                validation_score=scorer,
            )
            if scorer is not None:  # every criterion's scores beside each epoch's record
                for record, scores in zip(self.history_, scorer.scores, strict=True):
                    record["selection_scores"] = scores
        spent = None
        if trainer.privacy_report is not None:
            spent = {"stage": "source", **trainer.privacy_report}
            self.privacy_reports_.append(spent)
        if reuse:
            state = {k: v.clone() for k, v in model.state_dict().items()}
            data.stages.put(
                key, (state, list(self.history_), spent), clock.seconds, meter.flops, clock.curve
            )

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
        for round_ in range(1, self.self_training_rounds + 1):
            probabilities = torch.softmax(
                torch.from_numpy(predict_logits(model, Examples(target_inputs))), dim=1
            ).numpy()
            keep = confident_pseudo_labels(
                probabilities, prior, self.pseudo_label_share * round_ / self.self_training_rounds
            )
            predicted = probabilities.argmax(axis=1)
            pseudo = Examples(target_inputs, predicted).subset(keep)
            settings = self._settings(
                "source",
                epochs=1,
                seed=self.seed + round_,
                description=f"{self.name}: self-training round {round_}",
            )
            history = Trainer(settings).fit(
                model,
                pseudo,
                objectives=objectives,
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


class CandidateScorer:
    """Scores a model by every criterion of :mod:`shoptransfer.evaluation.label_free` (those
    whose inputs it holds); called as the trainer's ``validation_score``, it keeps each call's
    scores in :attr:`scores` and returns ``criterion``'s."""

    def __init__(
        self,
        criterion: str,
        target: Examples,
        source: Examples,
        validation: Examples,
        validation_labels: np.ndarray,
    ) -> None:
        self.criterion = criterion
        self.target, self.source, self.validation = target, source, validation
        self.validation_labels = validation_labels
        self.scores: list[dict[str, float]] = []

    def score(self, model: Classifier) -> dict[str, float]:
        target_features, target_logits = predict_features(model, self.target)
        source_features, _ = predict_features(model, self.source)
        validation_features, validation_logits = predict_features(model, self.validation)
        outputs = CandidateOutputs(
            _softmax(target_logits),
            target_features,
            source_features,
            _softmax(validation_logits),
            validation_features,
            self.validation_labels,
        )
        return score_candidate(outputs)

    def __call__(self, model: Classifier) -> float:
        scores = self.score(model)
        self.scores.append(scores)
        return scores[self.criterion]

    def checkpoint_state(self) -> list[dict[str, float]]:
        """What a trainer's checkpoint keeps of the scorer: the scores so far."""
        return list(self.scores)

    def restore_checkpoint(self, scores: list[dict[str, float]]) -> None:
        self.scores = list(scores)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def drop_words(text: str, share: float, rng: np.random.Generator) -> str:
    """``text`` with each word dropped with probability ``share`` (at least one word stays)."""
    words = text.split()
    if len(words) < 2:
        return text
    kept = [w for w, drop in zip(words, rng.random(len(words)) < share, strict=True) if not drop]
    return " ".join(kept) if kept else words[int(rng.integers(len(words)))]


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


register_recipe(EncoderTransfer)
