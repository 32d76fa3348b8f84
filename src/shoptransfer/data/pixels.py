"""Image files as network input: decoding, preprocessing, augmentation, batches of pixels.

Preprocessing is Pillow and numpy (no torchvision):

- evaluation: pad the photo to a square with its border colour (product photos sit on a plain
  background, and cropping would cut the product), resize to ``size`` x ``size``;
- training (``augment``): a random crop of 35-100 % of the padded square's area with aspect
  ratio 3/4-4/3, resized to ``size``, and a horizontal flip half of the time;
- normalisation ``(pixel - mean) / scale``; the defaults ``(pixel - 127) / 128`` are the ones
  the TensorFlow-Lite EfficientNet weights were trained with (tests/test_images.py checks that
  they give the right ImageNet classes on product photos, and that ImageNet mean/std does worse).

Decoding runs in ``DataLoader`` worker processes (:func:`pixel_batches`), so that the network
and the JPEG decoder use different cores. The image backbones, the image readers and the
trainer all read pixels from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoptransfer.errors import DataError

MIN_SIDE = 8  # smaller images carry no usable content: readers skip them
# larger images are refused before they are decoded (a product photo is a few megapixels; a
# "decompression bomb" is a small file that decodes to gigabytes); below Pillow's own limit
MAX_PIXELS = 40_000_000


def open_image(path: str | Path) -> Any:
    """``path`` opened with Pillow (not decoded yet); a DataError naming the file when it has
    more than :data:`MAX_PIXELS` pixels (Pillow's own warning for large images is not shown)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise DataError(
                f"{path}: the image is too large (over {MAX_PIXELS:,} pixels)"
            ) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise DataError(
            f"{path}: the image is too large ({width} x {height} pixels; at most {MAX_PIXELS:,})"
        )
    return image


def load_rgb(path: str | Path) -> Any:
    """The image at ``path`` as RGB (grey-scale, palette and alpha images are converted;
    transparent pixels become white). A file that cannot be opened or decoded is a DataError
    naming it."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as image:
            image.load()
            return _as_rgb(image)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the image ({exc})") from None


def _as_rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image becomes the network's input: ``(3, size, size)`` float32."""

    size: int = 224
    mean: float = 127.0
    scale: float = 128.0
    min_crop_area: float = 0.35

    def __call__(self, image: Any, augment: bool = False, seed: int = 0) -> np.ndarray:
        from PIL import Image

        square = _pad_to_square(image)
        if augment:
            rng = np.random.default_rng(seed)
            side = square.size[0]
            area = rng.uniform(self.min_crop_area, 1.0) * side * side
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            width = int(min(side, round(np.sqrt(area * ratio))))
            height = int(min(side, round(np.sqrt(area / ratio))))
            left = int(rng.integers(0, side - width + 1))
            top = int(rng.integers(0, side - height + 1))
            square = square.crop((left, top, left + width, top + height))
            if rng.random() < 0.5:
                square = square.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        resized = square.resize((self.size, self.size), Image.Resampling.BICUBIC)
        pixels = (np.asarray(resized, dtype=np.float32) - self.mean) / self.scale
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _pad_to_square(image: Any) -> Any:
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    corners = np.asarray(image)[[0, 0, -1, -1], [0, -1, 0, -1]]
    fill = tuple(int(v) for v in np.median(corners, axis=0))
    side = max(width, height)
    square = Image.new("RGB", (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


@dataclass
class ImageInputs:
    """Image files and how to turn them into pixels: what :class:`Examples` holds for images."""

    paths: list[str]
    preprocessing: ImagePreprocessing
    augment: bool = True  # in training (shuffled batches)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str:
        return self.paths[index]


class _PixelDataset(torch.utils.data.Dataset):
    def __init__(self, inputs: ImageInputs, augment: bool, seed: int) -> None:
        self.inputs = inputs
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_rgb(self.inputs.paths[index])
        pixels = self.inputs.preprocessing(image, self.augment, self.seed * 1_000_003 + index)
        return torch.from_numpy(pixels)


def loader_workers(n_images: int) -> int:
    """Decoding processes: none for a handful of images, else up to the cores there are."""
    if n_images < 64:
        return 0
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))


def pixel_batches(
    inputs: ImageInputs, batches: Sequence[np.ndarray], augment: bool, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Decoded, preprocessed pixels for each array of indices in ``batches``, in order.

    Augmentation draws from ``seed`` and the image's index, so a run repeats exactly.
    """
    dataset = _PixelDataset(inputs, augment, seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[[int(i) for i in batch] for batch in batches],
        num_workers=loader_workers(len(inputs)),
    )
    try:
        yield from loader
    except DataError as exc:  # a worker's error comes back with its traceback in the message
        last = str(exc).strip().splitlines()[-1]
        raise DataError(last.split("DataError: ", 1)[-1]) from None
