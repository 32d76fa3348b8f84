"""The one training loop every neural recipe uses.

A recipe builds a :class:`Classifier` (a head over an encoder's features, or over precomputed
features), chooses which parameters train, and hands :class:`Examples` to :class:`Trainer`.
The trainer runs mini-batch AdamW with linear warm-up and decay on a weighted task loss
(cross-entropy; BPR; mean squared error for a regression head; the heads' combined losses for
a multi-task head, :mod:`shoptransfer.heads`), plus any auxiliary :class:`Objective` (feature
alignment, regularisation toward the pretrained weights, a second domain's head). Given
validation examples, it keeps the epoch with the best validation score (macro-F1, its mean over
the heads of a multi-task model, or minus the RMSE of a regression) and stops early when that
stops improving.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.precision import check_precision, computing_in
from shoptransfer.checkpoints import (
    load_checkpoint,
    next_checkpoint,
    random_states,
    restore_random_states,
    save_checkpoint,
)
from shoptransfer.data.examples import Examples
from shoptransfer.errors import ConfigError
from shoptransfer.evaluation.metrics import classification_metrics
from shoptransfer.metering import epoch_finished, record_step
from shoptransfer.parallel import is_main, processes, shard, sum_gradients
from shoptransfer.privacy import PrivacySettings, PrivateSteps, quiet_hooks
from shoptransfer.progress import duration, progress, report
from shoptransfer.schedules import warmup_then_linear_decay

MISSING = -1  # in a multi-task label matrix: this example has no label for this head


class Classifier(nn.Module):
    """``head(encoder(x))``: a linear head over an encoder's features.

    ``encoder`` is a module with ``embed(batch) -> features`` (a text encoder, or an MLP over
    precomputed vectors); without one, the head reads ``batch["features"]`` directly. ``head``
    replaces the linear head (a regression's value head; the heads of a multi-task model,
    whose forward returns a dict of logits per head).
    """

    def __init__(
        self,
        n_classes: int,
        input_size: int,
        encoder: nn.Module | None = None,
        precision: str = "fp32",
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head if head is not None else nn.Linear(input_size, n_classes)
        self.precision = check_precision(precision)

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The encoder's features, computed in ``precision`` (bf16: about 1.8x faster on CPUs
        with native bfloat16, such as AVX512-BF16 or AMX) and returned as float32."""
        if self.encoder is None:
            if "features" not in batch:
                raise ValueError("this classifier has no encoder; give it features")
            return batch["features"]
        with computing_in(self.precision):
            features = self.encoder.embed(batch)
        return features.float()

    def forward(self, batch: dict[str, Any]) -> Any:
        return self.head(self.features(batch))


class FeatureMLP(nn.Module):
    """A small trainable feature extractor over precomputed vectors (for alignment recipes)."""

    def __init__(self, input_size: int, hidden_size: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.net = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
        )

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net(batch["features"])


FEATURE_TRANSFORMS = ("none", "sqrt-l2")


def transform_features(features: torch.Tensor, name: str) -> torch.Tensor:
    """``sqrt-l2``: power normalisation ``sign(x) sqrt(|x|)`` then unit length per row (Hu,
    Gripon & Pateux 2021: it makes pooled activations closer to Gaussian, which suits a linear
    head trained on few examples); ``none`` leaves features as they are."""
    if name == "none":
        return features
    if name == "sqrt-l2":
        powered = torch.sign(features) * torch.sqrt(torch.abs(features))
        return nn.functional.normalize(powered, dim=-1)
    raise ValueError(f"feature transform '{name}'; expected one of {list(FEATURE_TRANSFORMS)}")


class FeatureTransform(nn.Module):
    """A fixed transform of precomputed vectors under a linear head (no parameters)."""

    def __init__(self, input_size: int, name: str) -> None:
        super().__init__()
        self.hidden_size = input_size
        self.name = name

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        return transform_features(batch["features"], self.name)


def trainable_parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclass
class Step:
    """What an auxiliary objective sees at one training step."""

    model: Classifier
    source_batch: dict[str, Any]
    source_features: torch.Tensor
    target_batch: dict[str, Any] | None
    target_features: torch.Tensor | None
    progress: float  # from 0 at the first step to 1 at the last


class Objective(nn.Module):
    """An auxiliary loss term added to the classification loss; its parameters train too.

    ``last_metrics`` may hold numbers about the latest step (a domain classifier's accuracy,
    say); the trainer averages them per epoch into its history.
    """

    last_metrics: dict[str, float]
    # False: the loss reads the target batch's inputs only, so the trainer skips its features
    reads_target_features: bool = True

    def forward(self, step: Step) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


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
    # "cross-entropy"; "bpr": one uniformly drawn negative class per example; "mse": squared
    # error of a one-number head (regression); "multi-task": the multi-task head's own loss
    loss: str = "cross-entropy"
    # print a line per epoch (loss, validation score, time left) through progress.report
    log_epochs: bool = False
    # 0: a step's batch goes through the model at once; n: n examples at a time, their
    # gradients summed into the same step (memory of n examples, the batch's gradient)
    micro_batch_size: int = 0
    # shuffled texts in batches of similar length (less padding: pays at a high max_length)
    group_by_length: bool = False
    # DP-SGD (:mod:`shoptransfer.privacy`): Poisson-sampled batches, per-example clipping and
    # noise for a target (epsilon, delta); None: ordinary training
    privacy: PrivacySettings | None = None


class Trainer:
    """Trains a classifier's trainable parameters with a weighted cross-entropy loss.

    ``target`` examples (labeled or not) are drawn alongside each source batch and passed to the
    ``objectives``; ``parameter_groups`` overrides the default optimiser groups (for layer-wise
    learning rates); ``on_epoch_start(epoch)`` may change what is trainable (gradual
    unfreezing); ``as_predictor(model)`` wraps the model so that an active quality monitor
    (:mod:`shoptransfer.metering`) can score it after each epoch without influencing it.
    """

    def __init__(self, settings: TrainingSettings) -> None:
        self.settings = settings
        self.examples_seen = 0
        # a private fit's spending (:meth:`PrivateSteps.report`): epsilon, delta, noise, steps
        self.privacy_report: dict[str, Any] | None = None

    def _default_groups(self, model: Classifier) -> list[dict[str, Any]]:
        s = self.settings
        head = list(model.head.parameters())
        head_ids = {id(p) for p in head}
        body = [p for p in model.parameters() if id(p) not in head_ids]
        groups = []
        if head:
            groups.append({"params": head, "lr": s.head_learning_rate or s.learning_rate})
        if body:
            groups.append({"params": body, "lr": s.learning_rate})
        return groups

    def fit(
        self,
        model: Classifier,
        train: Examples,
        validation: Examples | None = None,
        *,
        target: Examples | None = None,
        objectives: Sequence[Objective] = (),
        parameter_groups: list[dict[str, Any]] | None = None,
        on_epoch_start: Callable[[int], None] | None = None,
        as_predictor: Callable[[Classifier], Any] | None = None,
        validation_score: Callable[[Classifier], float] | None = None,
    ) -> list[dict[str, float]]:
        """Train in place; return one record per epoch (losses, validation score, seconds).

        The validation score is :func:`validation_metric` on ``validation`` (macro-F1; for a
        regression, minus the RMSE), or ``validation_score(model)`` when given (a ranking
        metric, say); the best epoch's weights are kept.

        Inside a :func:`~shoptransfer.checkpoints.checkpointing` scope the state is saved after
        every epoch, and a fit that finds its checkpoint continues from it (a finished fit
        returns at once), ending exactly where an uninterrupted fit would. A
        ``validation_score`` with ``checkpoint_state()`` and ``restore_checkpoint(state)`` has
        its own state saved with it.
        """
        s = self.settings
        if train.labels is None:
            raise ValueError("training examples need labels")
        if s.micro_batch_size and (objectives or target is not None):
            raise ValueError(
                "micro-batches do not combine with objectives on target batches (their "
                "statistics need the whole batch)"
            )
        _, size = processes()
        if s.privacy is not None:
            _check_private(s, objectives, target, size, on_epoch_start)
        if size > 1 and (objectives or target is not None):
            raise ConfigError(
                f"{s.description}: training across processes (--processes, accelerate launch) "
                "does not combine with objectives on target batches (their statistics need "
                "the whole batch); run this recipe in one process"
            )
        generator = torch.Generator().manual_seed(s.seed)
        groups = parameter_groups or self._default_groups(model)
        for objective in objectives:
            extra = [p for p in objective.parameters() if p.requires_grad]
            if extra:
                groups = [*groups, {"params": extra, "lr": s.head_learning_rate or s.learning_rate}]
        optimizer = torch.optim.AdamW(groups, weight_decay=s.weight_decay)
        steps_per_epoch = -(-len(train) // s.batch_size)
        total = max(1, steps_per_epoch * s.epochs)
        private = (
            PrivateSteps(s.privacy, model, optimizer, len(train), s.batch_size, total, s.seed)
            if s.privacy is not None
            else None
        )
        try:
            return self._fit(
                model,
                train,
                validation,
                target,
                objectives,
                on_epoch_start,
                as_predictor,
                validation_score,
                generator,
                optimizer,
                private,
                total,
            )
        finally:
            if private is not None:
                self.privacy_report = private.report()
                private.close()

    def _fit(
        self,
        model: Classifier,
        train: Examples,
        validation: Examples | None,
        target: Examples | None,
        objectives: Sequence[Objective],
        on_epoch_start: Callable[[int], None] | None,
        as_predictor: Callable[[Classifier], Any] | None,
        validation_score: Callable[[Classifier], float] | None,
        generator: torch.Generator,
        optimizer: torch.optim.Optimizer,
        private: PrivateSteps | None,
        total: int,
    ) -> list[dict[str, float]]:
        s = self.settings
        rank, size = processes()
        # across processes, each draws its examples' BPR negatives from its own generator, so
        # that the batch order, drawn from ``generator``, stays the same in every process
        negatives = generator if size == 1 else torch.Generator().manual_seed(s.seed + 1 + rank)
        scheduler = warmup_then_linear_decay(optimizer, total, s.warmup_fraction)
        history: list[dict[str, float]] = []
        best_score, best_state, stale, step = -math.inf, None, 0, 0
        checkpoint = next_checkpoint()
        saved = load_checkpoint(checkpoint)
        target_stream = (
            TargetStream(
                target,
                s.batch_size,
                generator,
                saved["target_stream"] if saved else None,
                by_length=s.group_by_length,
            )
            if target is not None
            else None
        )
        first_epoch = 0
        if saved is not None:
            for epoch in range(saved["epoch"]):  # what the finished epochs made trainable
                if on_epoch_start is not None:
                    on_epoch_start(epoch)
            model.load_state_dict(saved["model"])
            for objective, state in zip(objectives, saved["objectives"], strict=True):
                objective.load_state_dict(state)
            if hasattr(validation_score, "restore_checkpoint"):
                validation_score.restore_checkpoint(saved["validation_score"])
            restore_random_states(saved["random"])
            generator.set_state(saved["generator"])
            negatives.set_state(saved["negatives"])
            self.examples_seen = saved["examples_seen"]
            if private is not None:
                private.restore(saved["privacy"])
            history = saved["history"]
            if saved["finished"]:
                model.eval()
                return history
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            best_score, best_state, stale, step = (
                saved["best_score"],
                saved["best_state"],
                saved["stale"],
                saved["step"],
            )
            first_epoch = saved["epoch"]

        def save(epoch: int, finished: bool) -> None:
            if checkpoint is None or not is_main():  # one process writes; all read
                return
            state = {
                "epoch": epoch,
                "finished": finished,
                "model": model.state_dict(),
                "objectives": [objective.state_dict() for objective in objectives],
                "validation_score": validation_score.checkpoint_state()
                if hasattr(validation_score, "checkpoint_state")
                else None,
                "random": random_states(),
                "generator": generator.get_state(),
                "negatives": negatives.get_state(),
                "target_stream": target_stream.state() if target_stream is not None else None,
                "examples_seen": self.examples_seen,
                "privacy": private.state() if private is not None else None,
                "history": history,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_score": best_score,
                "best_state": best_state,
                "stale": stale,
                "step": step,
            }
            save_checkpoint(checkpoint, state)

        started = time.perf_counter()
        for epoch in progress(range(first_epoch, s.epochs), s.description):
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            parameter_counts = _parameter_counts(model)
            model.train()
            for objective in objectives:
                objective.train()
            losses: dict[str, list[float]] = {"loss": [], "auxiliary": []}
            observed: dict[str, list[float]] = {}
            for whole in _epoch_batches(train, s.batch_size, generator, private, s.group_by_length):
                if whole is None:  # a private step whose Poisson draw took no example
                    assert private is not None
                    private.empty_step()
                    scheduler.step()
                    step += 1
                    continue
                batch = shard(whole, rank, size)  # this process's slice of the batch
                target_batch = next(target_stream) if target_stream is not None else None
                units = (_units(model, batch) if len(batch["labels"]) else 0) + (
                    _units(model, target_batch) if target_batch is not None else 0
                )
                if private is not None:
                    private.zero_grad()
                else:
                    optimizer.zero_grad()
                loss, auxiliary = torch.zeros(()), torch.zeros(())
                scale = _weight(batch) / _weight(whole)  # the slice's share of the batch
                for part, share in micro_batches(batch, s.micro_batch_size) if scale else ():
                    part_loss, part_auxiliary = self._loss(
                        model, part, target_batch, objectives, step / total, negatives
                    )
                    with quiet_hooks() if private is not None else nullcontext():
                        (scale * share * (part_loss + part_auxiliary)).backward()
                    loss = loss + scale * share * part_loss.detach()
                    auxiliary = auxiliary + scale * share * part_auxiliary.detach()
                if size > 1:  # the whole batch's gradient and loss, in every process
                    sum_gradients(_trained(optimizer), [loss, auxiliary])
                if private is not None:
                    private.step()  # each example's gradient clipped, then the noise
                else:
                    optimizer.step()
                scheduler.step()
                step += 1
                self.examples_seen += len(whole["labels"])
                record_step(units, *parameter_counts)
                losses["loss"].append(loss.item())
                losses["auxiliary"].append(auxiliary.item())
                for objective in objectives:
                    for key, value in getattr(objective, "last_metrics", {}).items():
                        observed.setdefault(key, []).append(value)
            record = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses["loss"])) if losses["loss"] else math.nan,
                "auxiliary_loss": float(np.mean(losses["auxiliary"]))
                if losses["auxiliary"]
                else math.nan,
                "seconds": time.perf_counter() - started,
                "examples": len(train),  # trained on this epoch, over all processes
                **{key: float(np.mean(values)) for key, values in observed.items()},
            }
            if private is not None:
                record["epsilon"] = private.epsilon()
            epoch_finished(as_predictor, model)
            score = None
            if validation_score is not None:
                score = validation_score(model)
                record["validation_score"] = score
            elif validation is not None and validation.labels is not None:
                name, value, score = validation_metric(model, validation, s.loss)
                record[f"validation_{name}"] = value
            if score is not None:
                if score >= best_score:  # ties: prefer the later, longer-trained epoch
                    best_score, stale = score, 0
                    best_state = copy.deepcopy(_trainable_state(model))
                else:
                    stale += 1
            history.append(record)
            stopping = score is not None and stale >= s.patience
            if s.log_epochs:
                report(epoch_line(s, record, best_score, stale, time.perf_counter() - started))
                if stopping:
                    report(f"{s.description}: stopped early, no validation gain in {stale} epochs")
            if stopping:
                break
            save(epoch + 1, finished=False)
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        model.eval()
        save(len(history), finished=True)
        return history

    def _loss(
        self,
        model: Classifier,
        batch: dict[str, Any],
        target_batch: dict[str, Any] | None,
        objectives: Sequence[Objective],
        fraction: float,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        source_features = model.features(batch)
        logits = model.head(source_features)
        labels = batch["labels"]
        if self.settings.loss == "multi-task":  # each head's loss, combined by the head
            loss = model.head.loss(logits, labels, batch.get("weights"))
        else:
            if self.settings.loss == "bpr":  # Rendle et al., UAI 2009: -log sigmoid(pos - neg)
                negatives = torch.randint(0, logits.shape[1], labels.shape, generator=generator)
                rows = torch.arange(len(labels))
                margin = logits[rows, labels] - logits[rows, negatives]
                loss = -nn.functional.logsigmoid(margin)
            elif self.settings.loss == "mse":
                loss = (logits.reshape(len(labels)) - labels) ** 2
            else:
                loss = nn.functional.cross_entropy(logits, labels, reduction="none")
            if "weights" in batch and self.settings.privacy is not None:
                # each example's own weight: a batch-wide normaliser would tie the examples'
                # gradients together, and clipping bounds each one's alone
                loss = (loss * batch["weights"]).mean()
            elif "weights" in batch:
                loss = (loss * batch["weights"]).sum() / batch["weights"].sum()
            else:
                loss = loss.mean()
        auxiliary = torch.zeros(())
        if objectives:
            wanted = any(objective.reads_target_features for objective in objectives)
            target_features = (
                model.features(target_batch) if target_batch is not None and wanted else None
            )
            step = Step(model, batch, source_features, target_batch, target_features, fraction)
            auxiliary = sum((objective(step) for objective in objectives), auxiliary)
        return loss, auxiliary


def _check_private(
    settings: TrainingSettings,
    objectives: Sequence[Objective],
    target: Examples | None,
    processes: int,
    on_epoch_start: Callable[[int], None] | None,
) -> None:
    """A ConfigError for what DP-SGD cannot bound per example."""
    where = f"{settings.description}: privacy"
    refused = [
        what
        for what, used in (
            ("objectives or target batches (their losses mix examples)", objectives or target),
            ("micro-batches", settings.micro_batch_size),
            ("several processes", processes > 1),
            ("layers unfrozen during training", on_epoch_start is not None),
            ("the multi-task loss", settings.loss == "multi-task"),
        )
        if used
    ]
    if refused:
        raise ConfigError(f"{where} does not combine with {refused[0]}")


def _epoch_batches(
    train: Examples,
    batch_size: int,
    generator: torch.Generator,
    private: PrivateSteps | None,
    by_length: bool = False,
) -> Iterator[dict[str, Any] | None]:
    """One epoch's batches: shuffled ones (of texts of similar length with ``by_length``), or
    a private fit's Poisson samples (None: a draw that took no example)."""
    if private is None:
        yield from train.batches(batch_size, generator, by_length)
        return
    for batch, _ in private.batches(train, generator):
        yield batch


class TargetStream:
    """Shuffled target batches (:meth:`Examples.batches`), reshuffled after each pass, forever,
    whose position a checkpoint can keep: the generator's
    state when the current pass began and the batches taken from it since."""

    def __init__(
        self,
        examples: Examples,
        batch_size: int,
        generator: torch.Generator,
        state: tuple[torch.Tensor, int] | None = None,
        by_length: bool = False,
    ) -> None:
        self.examples, self.batch_size, self.generator = examples, batch_size, generator
        self.by_length = by_length
        self.began: torch.Tensor | None = None
        self.taken = 0
        self._pass: Iterator[dict[str, Any]] | None = None
        if state is not None:  # the pass replayed from where it began, without the generator
            self.began, taken = state
            replay = torch.Generator()
            replay.set_state(self.began)
            self._pass = examples.batches(batch_size, replay, by_length)
            for _ in range(taken):
                next(self._pass)
            self.taken = taken

    def __iter__(self) -> TargetStream:
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            if self._pass is None:
                self.began, self.taken = self.generator.get_state(), 0
                self._pass = self.examples.batches(self.batch_size, self.generator, self.by_length)
            try:
                batch = next(self._pass)
            except StopIteration:
                self._pass = None
                continue
            self.taken += 1
            return batch

    def state(self) -> tuple[torch.Tensor, int] | None:
        return (self.began, self.taken) if self._pass is not None else None


def _weight(batch: dict[str, Any]) -> float:
    """What a batch's mean loss is weighted by: its examples, or their weights."""
    weights = batch.get("weights")
    return float(weights.sum()) if weights is not None else float(len(batch["labels"]))


def _trained(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The parameters the optimiser may step (those that require gradients), in its order."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def micro_batches(batch: dict[str, Any], size: int) -> Iterator[tuple[dict[str, Any], float]]:
    """``batch`` in parts of at most ``size`` examples (0: whole), each with its share of the
    batch's mean loss: its examples' share, or its weights' share of a weighted batch."""
    n = len(batch["labels"])
    if not size or n <= size:
        yield batch, 1.0
        return
    weights = batch.get("weights")
    total = float(weights.sum()) if weights is not None else float(n)
    for start in range(0, n, size):
        part = {
            key: value[start : start + size]
            if isinstance(value, torch.Tensor | list) and len(value) == n
            else value
            for key, value in batch.items()
        }
        weight = float(part["weights"].sum()) if weights is not None else float(len(part["labels"]))
        yield part, weight / total


def epoch_line(
    settings: TrainingSettings,
    record: dict[str, float],
    best_score: float,
    stale: int,
    elapsed: float,
) -> str:
    """What an epoch logs: its number, train loss, validation score (and the best so far),
    time per epoch and the time left if every remaining epoch runs (early stopping may end
    sooner)."""
    epoch = int(record["epoch"])
    parts = [f"{settings.description}: epoch {epoch}/{settings.epochs}"]
    parts.append(f"train loss {record['train_loss']:.4f}")
    validation = {k: v for k, v in record.items() if k.startswith("validation_")}
    for key, value in validation.items():
        parts.append(f"{key.replace('_', ' ')} {value:.4f} (best {best_score:.4f})")
    per_epoch = elapsed / epoch
    parts.append(f"{duration(per_epoch)}/epoch")
    left = settings.epochs - epoch
    if left and stale < settings.patience:  # not on the epoch that stops training
        eta = f"ETA {duration(left * per_epoch)}"
        if validation:
            sooner = min(left, settings.patience - stale) * per_epoch
            eta += f" ({duration(sooner)} if validation stops improving)"
        parts.append(eta)
    return ", ".join(parts)


# prediction batches are sized for texts of this many tokens: a text encoder that reads more
# gets proportionally fewer texts per batch, so peak memory does not grow with max_length
PREDICTION_BATCH_LENGTH = 128


def prediction_batch_size(model: Classifier, batch_size: int) -> int:
    """``batch_size`` texts at up to 128 tokens; fewer for an encoder that reads more."""
    length = getattr(model.encoder, "max_length", None)
    if not isinstance(length, int) or length <= PREDICTION_BATCH_LENGTH:
        return batch_size
    return max(1, batch_size * PREDICTION_BATCH_LENGTH // length)


@torch.no_grad()
def predict_logits(model: Classifier, examples: Examples, batch_size: int = 64) -> Any:
    """The model's outputs for every example, in input order, without gradients: logits (a
    regression head: one number per example; a multi-task head: a dict of logits per head)."""
    was_training = model.training
    model.eval()
    examples, order = Examples(examples.inputs).in_order()  # texts of similar length together
    size = prediction_batch_size(model, batch_size)
    outputs = [model(batch) for batch in examples.batches(size)]
    model.train(was_training)
    if not outputs:  # nothing to predict: a dummy row gives the shapes
        empty = model.head(torch.zeros(1, model.head.in_features))
        return _in_order([empty], np.zeros(0, dtype=np.int64), rows=0)
    return _in_order(outputs, order)


@torch.no_grad()
def predict_features(
    model: Classifier, examples: Examples, batch_size: int = 64
) -> tuple[Any, Any]:
    """``(features, logits)`` of every example, in input order, without gradients: what the
    head reads (the encoder's output) and what it returns."""
    was_training = model.training
    model.eval()
    examples, order = Examples(examples.inputs).in_order()
    size = prediction_batch_size(model, batch_size)
    features = [model.features(batch) for batch in examples.batches(size)]
    model.train(was_training)
    if not features:
        raise ValueError("no examples to predict")
    logits = [model.head(f) for f in features]
    return _in_order(features, order), _in_order(logits, order)


def _in_order(parts: list[Any], order: np.ndarray, rows: int | None = None) -> Any:
    """Batches of outputs (tensors, or dicts of them) put back into input order."""
    if isinstance(parts[0], dict):
        return {key: _in_order([p[key] for p in parts], order, rows) for key in parts[0]}
    joined = np.concatenate([p.detach().float().numpy() for p in parts])[:rows]
    result = np.zeros_like(joined)
    result[order] = joined
    return result


def validation_metric(
    model: Classifier, examples: Examples, loss: str = "cross-entropy"
) -> tuple[str, float, float]:
    """``(name, value, score)`` of ``model`` on labeled ``examples``: the macro-F1 (for a
    multi-task model, its mean over the heads labelled in ``examples``), or for a regression
    (``loss="mse"``) the RMSE; ``score`` is what early stopping maximises (minus the RMSE)."""
    assert examples.labels is not None
    outputs = predict_logits(model, examples)
    if loss == "mse":
        rmse = float(np.sqrt(np.mean((outputs.reshape(-1) - examples.labels) ** 2)))
        return "rmse", rmse, -rmse
    if loss == "multi-task":
        scores = []
        for column, logits in enumerate(outputs.values()):
            labels = examples.labels[:, column]
            labelled = labels != MISSING
            if labelled.any():
                scores.append(_macro_f1(labels[labelled], logits[labelled]))
        value = float(np.mean(scores)) if scores else 0.0
        return "macro_f1", value, value
    value = _macro_f1(examples.labels, outputs)
    return "macro_f1", value, value


def macro_f1(model: Classifier, examples: Examples) -> float:
    """Macro-F1 of ``model`` on labeled ``examples``."""
    return validation_metric(model, examples)[1]


def _macro_f1(labels: np.ndarray, logits: np.ndarray) -> float:
    names = [str(i) for i in range(logits.shape[1])]
    return float(classification_metrics(labels, logits.argmax(axis=1), names)["macro_f1"])


def _parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(forward, trainable) parameter counts, leaving out embedding tables (they are lookups)."""
    forward = trainable = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            continue
        for p in module.parameters(recurse=False):
            forward += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    return forward, trainable


def _units(model: Classifier, batch: dict[str, Any]) -> int:
    """Tokens in a text batch (as the encoder will see them), image positions a convolution's
    weights are applied at in an image batch, or examples in a feature batch."""
    if "pixels" in batch and hasattr(model.encoder, "parameter_uses"):
        return round(len(batch["pixels"]) * model.encoder.parameter_uses())
    if "texts" in batch and model.encoder is not None and hasattr(model.encoder, "tokenize"):
        return int(model.encoder.tokenize(batch["texts"])["attention_mask"].sum())
    return len(next(iter(batch.values())))


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: t for name, t in model.state_dict().items() if name in trainable}
