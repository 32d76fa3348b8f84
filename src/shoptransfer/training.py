"""The one training loop every neural recipe uses.

A recipe builds a :class:`Classifier` (a linear head over either precomputed features or a
:class:`TextEncoder`), chooses which parameters are trainable, and hands :class:`Examples` to
:class:`Trainer`. The trainer runs mini-batch AdamW with linear warm-up and decay, weights
examples when asked, and, given validation examples, keeps the epoch with the best validation
macro-F1 and stops early when it stops improving.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.text import TextEncoder
from shoptransfer.evaluation.metrics import classification_metrics
from shoptransfer.progress import progress


@dataclass
class Examples:
    """Inputs (texts or a feature matrix), integer labels and optional per-example weights."""

    inputs: list[str] | np.ndarray
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, Any]]:
        """Mini-batches, shuffled when a generator is given."""
        n = len(self)
        order = (
            torch.randperm(n, generator=generator).numpy()
            if generator is not None
            else np.arange(n)
        )
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch: dict[str, Any] = {}
            if isinstance(self.inputs, np.ndarray):
                batch["features"] = torch.from_numpy(self.inputs[idx]).float()
            else:
                batch["texts"] = [self.inputs[i] for i in idx]
            if self.labels is not None:
                batch["labels"] = torch.from_numpy(self.labels[idx]).long()
            if self.weights is not None:
                batch["weights"] = torch.from_numpy(self.weights[idx]).float()
            yield batch

    @staticmethod
    def concatenate(parts: list[Examples]) -> Examples:
        if isinstance(parts[0].inputs, np.ndarray):
            inputs: list[str] | np.ndarray = np.concatenate([p.inputs for p in parts])
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


class Classifier(nn.Module):
    """A linear head over precomputed features or over a text encoder's pooled output."""

    def __init__(self, n_classes: int, input_size: int, encoder: TextEncoder | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(input_size, n_classes)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        if "features" in batch:
            return self.head(batch["features"])
        if self.encoder is None:
            raise ValueError("this classifier has no encoder; give it features")
        return self.head(self.encoder(**self.encoder.tokenize(batch["texts"])))


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class TrainingSettings:
    """Hyper-parameters of one training stage."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 3e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    patience: int = 2
    seed: int = 0
    description: str = "training"


class Trainer:
    """Trains a classifier's trainable parameters with a weighted cross-entropy loss."""

    def __init__(self, settings: TrainingSettings) -> None:
        self.settings = settings

    def _optimizer(self, model: Classifier) -> torch.optim.Optimizer:
        s = self.settings
        head = [p for p in model.head.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": head, "lr": s.head_learning_rate or s.learning_rate}]
        if body:
            groups.append({"params": body, "lr": s.learning_rate})
        return torch.optim.AdamW(groups, weight_decay=s.weight_decay)

    def fit(
        self, model: Classifier, train: Examples, validation: Examples | None = None
    ) -> list[dict[str, float]]:
        """Train in place; return one record per epoch (loss, validation macro-F1, seconds)."""
        s = self.settings
        if train.labels is None:
            raise ValueError("training examples need labels")
        generator = torch.Generator().manual_seed(s.seed)
        optimizer = self._optimizer(model)
        steps_per_epoch = -(-len(train) // s.batch_size)
        total = max(1, steps_per_epoch * s.epochs)
        warmup = int(total * s.warmup_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (
                (step + 1) / (warmup + 1)
                if step < warmup
                else max(0.0, (total - step) / max(1, total - warmup))
            ),
        )
        history: list[dict[str, float]] = []
        best_score, best_state, stale = -1.0, None, 0
        started = time.perf_counter()
        for epoch in progress(range(s.epochs), s.description):
            model.train()
            losses = []
            for batch in train.batches(s.batch_size, generator):
                logits = model(batch)
                loss = nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
                if "weights" in batch:
                    loss = (loss * batch["weights"]).sum() / batch["weights"].sum()
                else:
                    loss = loss.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
            record = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "seconds": time.perf_counter() - started,
            }
            if validation is not None and validation.labels is not None:
                predicted = self.predict_logits(model, validation).argmax(axis=1)
                n_classes = model.head.out_features
                score = classification_metrics(
                    validation.labels, predicted, [str(i) for i in range(n_classes)]
                )["macro_f1"]
                record["validation_macro_f1"] = score
                if score > best_score:
                    best_score, stale = score, 0
                    best_state = copy.deepcopy(_trainable_state(model))
                else:
                    stale += 1
            history.append(record)
            if validation is not None and stale >= s.patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        model.eval()
        return history

    def predict_logits(self, model: Classifier, examples: Examples) -> np.ndarray:
        return predict_logits(model, examples, batch_size=max(64, self.settings.batch_size))


@torch.no_grad()
def predict_logits(model: Classifier, examples: Examples, batch_size: int = 64) -> np.ndarray:
    """Logits for every example, in input order, without gradients."""
    was_training = model.training
    model.eval()
    order = np.arange(len(examples))
    if not isinstance(examples.inputs, np.ndarray):  # batch texts of similar length together
        order = np.argsort([len(t) for t in examples.inputs], kind="stable")
        examples = Examples([examples.inputs[i] for i in order])
    outputs = [model(batch).float().numpy() for batch in examples.batches(batch_size)]
    model.train(was_training)
    logits = np.zeros((len(order), model.head.out_features), dtype=np.float32)
    if outputs:
        logits[order] = np.concatenate(outputs)
    return logits


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: t for name, t in model.state_dict().items() if name in trainable}
