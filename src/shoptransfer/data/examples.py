"""Examples a model trains on or scores: inputs of any kind, labels and weights, in batches.

The one place that knows what an input is: texts become ``texts`` in a batch, a float matrix
``features``, an integer matrix (left-padded item histories) ``ids``, image files ``pixels``
(decoded in worker processes, augmented when shuffled) with their ``paths``, and several named
inputs per example (:class:`~shoptransfer.data.multi.MultiInputs`) ``inputs``, as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shoptransfer.data.multi import MultiInputs
from shoptransfer.data.pixels import ImageInputs, pixel_batches


@dataclass
class Examples:
    """Inputs (texts, a feature matrix, an integer matrix such as left-padded item
    histories, :class:`ImageInputs`, or :class:`MultiInputs`), labels and optional
    per-example weights.

    Labels are class ids, numbers (a regression's floats), or a matrix of class ids with a
    column per head of a multi-task model (-1 where an example has none)."""

    inputs: list[str] | np.ndarray | ImageInputs | MultiInputs
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        by_length: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Mini-batches, shuffled when a generator is given.

        Shuffled item histories always come in batches of similar length; shuffled texts do
        when ``by_length`` is set (a batch is padded to its longest text, so mixing a long
        review into every batch multiplies the work at a high ``max_length``). Images are
        decoded in worker processes and, when shuffled (training), augmented.
        """
        n = len(self)
        order = (
            torch.randperm(n, generator=generator).numpy()
            if generator is not None
            else np.arange(n)
        )
        starts = list(range(0, n, batch_size))
        if generator is not None and (self._is_sequences() or (by_length and self._is_texts())):
            order, starts = self._bucketed(order, batch_size, generator)
        chunks = [order[start : start + batch_size] for start in starts]
        pixels: Iterator[torch.Tensor] | None = None
        if isinstance(self.inputs, ImageInputs):
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator)) if generator else 0
            augment = generator is not None and self.inputs.augment
            pixels = pixel_batches(self.inputs, chunks, augment=augment, seed=seed)
        for idx in chunks:
            batch: dict[str, Any] = {}
            if isinstance(self.inputs, MultiInputs):
                batch["inputs"] = self.inputs.take(idx)
            elif pixels is not None:
                batch["pixels"] = next(pixels)
                batch["paths"] = [self.inputs[i] for i in idx]
            elif isinstance(self.inputs, np.ndarray) and self.inputs.dtype.kind in "iu":
                batch["ids"] = torch.from_numpy(self.inputs[idx]).long()  # e.g. item histories
            elif isinstance(self.inputs, np.ndarray):
                batch["features"] = torch.from_numpy(self.inputs[idx]).float()
            else:
                batch["texts"] = [self.inputs[i] for i in idx]
            if self.labels is not None:
                labels = torch.from_numpy(self.labels[idx])
                batch["labels"] = labels.float() if labels.is_floating_point() else labels.long()
            if self.weights is not None:
                batch["weights"] = torch.from_numpy(self.weights[idx]).float()
            yield batch

    def _is_sequences(self) -> bool:
        return isinstance(self.inputs, np.ndarray) and self.inputs.dtype.kind in "iu"

    def _is_texts(self) -> bool:
        return isinstance(self.inputs, list)

    def _bucketed(
        self, order: np.ndarray, batch_size: int, generator: torch.Generator
    ) -> tuple[np.ndarray, list[int]]:
        """Shuffled batches of inputs of similar length (less padding to compute on): item
        histories by their items, texts by their characters.

        Each run of 16 shuffled batches is sorted by length and cut into batches; the batches
        are then shuffled.
        """
        if isinstance(self.inputs, np.ndarray):
            lengths = (self.inputs != 0).sum(axis=1)
        else:
            lengths = np.array([len(text) for text in self.inputs])
        chunk = batch_size * 16
        parts = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            parts.append(part[np.argsort(lengths[part], kind="stable")])
        order = np.concatenate(parts) if parts else order
        starts = np.arange(0, len(order), batch_size)
        starts = starts[torch.randperm(len(starts), generator=generator).numpy()]
        return order, [int(x) for x in starts]

    @staticmethod
    def concatenate(parts: Sequence[Examples]) -> Examples:
        first = parts[0].inputs
        inputs: list[str] | np.ndarray | ImageInputs | MultiInputs
        if isinstance(first, MultiInputs):
            inputs = first
            for part in parts[1:]:
                inputs = inputs.joined(part.inputs)  # type: ignore[arg-type]
        elif isinstance(first, ImageInputs):
            paths = [path for p in parts for path in p.inputs]
            inputs = ImageInputs(paths, first.preprocessing, first.augment)
        elif isinstance(first, np.ndarray):
            inputs = np.concatenate([p.inputs for p in parts])
        else:
            inputs = [t for p in parts for t in p.inputs]
        labels = (
            np.concatenate([p.labels for p in parts])
            if all(p.labels is not None for p in parts)
            else None
        )
        weights = None
        if any(p.weights is not None for p in parts):
            weights = np.concatenate(
                [
                    p.weights if p.weights is not None else np.ones(len(p), dtype=np.float32)
                    for p in parts
                ]
            )
        return Examples(inputs, labels, weights)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Examples:
        """The examples at ``indices`` (in that order), of the same kind."""
        idx = np.asarray(indices, dtype=np.int64)
        inputs: list[str] | np.ndarray | ImageInputs | MultiInputs
        if isinstance(self.inputs, MultiInputs):
            inputs = self.inputs.take(idx)
        elif isinstance(self.inputs, ImageInputs):
            inputs = ImageInputs(
                [self.inputs[i] for i in idx], self.inputs.preprocessing, self.inputs.augment
            )
        elif isinstance(self.inputs, np.ndarray):
            inputs = self.inputs[idx]
        else:
            inputs = [self.inputs[i] for i in idx]
        return Examples(
            inputs,
            self.labels[idx] if self.labels is not None else None,
            self.weights[idx] if self.weights is not None else None,
        )

    def in_order(self) -> tuple[Examples, np.ndarray]:
        """The examples with texts sorted by length (batches of similar length pad less), and
        the order used; other inputs keep their order."""
        if not isinstance(self.inputs, list):
            return self, np.arange(len(self))
        order = np.argsort([len(t) for t in self.inputs], kind="stable")
        return self.subset(order), order
