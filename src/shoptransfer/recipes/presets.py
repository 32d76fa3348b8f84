"""The named recipes: :class:`EncoderTransfer` with other default pieces, one line each."""

from __future__ import annotations

import dataclasses
from typing import Any

from shoptransfer.recipes.base import register_recipe
from shoptransfer.recipes.transfer import EncoderTransfer

CLASSIFICATION = ("classification",)  # the presets whose pieces read class scores


def preset(
    name: str,
    family: str,
    description: str,
    tasks: tuple[str, ...] = EncoderTransfer.tasks,
    **defaults: Any,
) -> type[EncoderTransfer]:
    """Register a named recipe: :class:`EncoderTransfer` with other default pieces, for
    ``tasks``."""
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
        namespace={"name": name, "family": family, "description": description, "tasks": tasks},
    )
    cls.__module__ = __name__
    return register_recipe(cls)  # type: ignore[return-value]


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
    objectives=("l2-sp",),
    weight_decay=0.0,
)
preset(
    "bss",
    "model-based",
    "fine-tune with batch spectral shrinkage against negative transfer",
    objectives=("bss",),
)
preset(
    "dapt",
    "model-based",
    "fine-tune after masked-language-model training on unlabeled source + target text (DAPT)",
    dapt_epochs=1,
)
preset(
    "udalm",
    "model-based",
    "DAPT on target text, then fine-tune with its MLM loss beside the source loss (UDALM)",
    dapt_epochs=1,
    dapt_texts="target",
    objectives=("mlm",),
)
# Feature-based: align source and unlabeled target features while training.
preset(
    "coral",
    "feature-based",
    "fine-tune with a Deep CORAL loss on unlabeled target text",
    objectives=("coral",),
)
preset(
    "mmd",
    "feature-based",
    "fine-tune with a multi-kernel MMD loss (DAN) on unlabeled target",
    objectives=("mmd",),
)
preset(
    "dann",
    "feature-based",
    "domain-adversarial fine-tuning (gradient reversal, DANN)",
    objectives=({"name": "dann", "weight": 0.1},),
)
preset(
    "mcc",
    "feature-based",
    "fine-tune with minimum class confusion on unlabeled target (MCC)",
    CLASSIFICATION,
    objectives=("mcc",),
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
    objectives=("coral",),
    **MLP,
)
preset(
    "mlp-mmd",
    "feature-based",
    "an MLP over frozen features or vectors with an MMD loss",
    objectives=("mmd",),
    **MLP,
)
preset(
    "mlp-dann",
    "feature-based",
    "an MLP over frozen features or vectors, domain-adversarial",
    objectives=({"name": "dann", "weight": 0.1},),
    **MLP,
)
preset(
    "mlp-mcc",
    "feature-based",
    "an MLP over frozen features or vectors with minimum class confusion",
    CLASSIFICATION,
    objectives=("mcc",),
    **MLP,
)
preset(
    "self-training",
    "model-based",
    "fine-tune the top 4 layers on the source, then on confident target pseudo-labels",
    CLASSIFICATION,
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
    CLASSIFICATION,
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
