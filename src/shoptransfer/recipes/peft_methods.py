"""Parameter-efficient fine-tuning through the ``peft`` library.

LoRA (Hu et al., ICLR 2022): freeze the backbone and learn a low-rank update ``W + (alpha/r) B A``
of chosen linear layers (for an image backbone: its 1x1 convolutions, which are linear maps
applied at every position). (IA)^3 (Liu et al., NeurIPS 2022): freeze the backbone and learn
vectors that rescale the keys, values and feed-forward activations — an adapter with a few
thousand parameters.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from shoptransfer.errors import ConfigError

PEFT_METHODS = ("none", "lora", "ia3")


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):  # pointwise: a linear layer applied at every position
        return module.kernel_size == (1, 1) and module.groups == 1 and module.stride == (1, 1)
    return isinstance(module, nn.Linear)


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct name endings of a model's linear layers and pointwise convolutions (what
    target modules can match)."""
    names = set()
    for name, module in model.named_modules():
        if _is_linear(module):
            parts = name.split(".")
            names.add(".".join(part for part in parts[-2:] if not part.isdigit()))
    return sorted(names)


def apply_peft(encoder: Any, spec: dict[str, Any]) -> None:
    """Wrap ``encoder.model`` with the peft method ``spec`` describes; only its weights train."""
    from peft import IA3Config, LoraConfig, get_peft_model

    method = spec["method"]
    targets = list(spec["target_modules"])
    if method == "lora":
        config: Any = LoraConfig(
            r=spec["rank"],
            lora_alpha=spec["alpha"],
            target_modules=targets,
            lora_dropout=0.1,
            bias="none",
        )
    elif method == "ia3":
        config = IA3Config(
            target_modules=targets, feedforward_modules=list(spec.get("feedforward_modules", []))
        )
    else:
        raise ConfigError(f"peft: unknown method '{method}'; expected one of {PEFT_METHODS}")
    available = linear_module_names(encoder.model)
    missing = [
        t
        for t in targets
        if not any(a == t or a.endswith("." + t) or a.split(".")[-1] == t for a in available)
    ]
    if missing:
        raise ConfigError(
            f"{method}: target modules {missing} are not in backbone '{encoder.backbone}'; "
            f"its linear layers are {available}"
        )
    try:
        encoder.model = get_peft_model(encoder.model, config)
    except ValueError as exc:
        raise ConfigError(f"{method} on backbone '{encoder.backbone}': {exc}") from None
