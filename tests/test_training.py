from __future__ import annotations

import numpy as np
import pytest
import torch

from shoptransfer.training import (
    Classifier,
    Examples,
    Objective,
    Step,
    Trainer,
    TrainingSettings,
    predict_logits,
)


def blobs(n: int, seed: int) -> Examples:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    features = rng.normal(size=(n, 8)).astype(np.float32) + labels[:, None] * 2.0
    return Examples(features, labels)


def test_trainer_learns_separable_features() -> None:
    torch.manual_seed(0)
    model = Classifier(2, 8)
    settings = TrainingSettings(epochs=20, batch_size=16, learning_rate=1e-2, patience=5)
    history = Trainer(settings).fit(model, blobs(200, 0), blobs(100, 1))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["validation_macro_f1"] for h in history) > 0.9


def test_same_seed_same_weights() -> None:
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Classifier(2, 8)
        Trainer(TrainingSettings(epochs=3, learning_rate=1e-2, seed=7)).fit(model, blobs(64, 0))
        weights.append(model.head.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])


def test_example_weights_shift_the_decision() -> None:
    """Up-weighting one class's examples makes the model predict that class more often."""
    data = blobs(200, 0)
    data.labels = np.where(np.random.default_rng(0).random(200) < 0.5, 0, 1)  # pure noise labels
    predicted_ones = []
    for weight_of_ones in (1.0, 10.0):
        torch.manual_seed(0)
        model = Classifier(2, 8)
        data.weights = np.where(data.labels == 1, weight_of_ones, 1.0).astype(np.float32)
        Trainer(TrainingSettings(epochs=10, learning_rate=1e-2)).fit(model, data)
        logits = predict_logits(model, data)
        predicted_ones.append(int((logits.argmax(axis=1) == 1).sum()))
    assert predicted_ones[1] > predicted_ones[0]


def test_early_stopping_restores_the_best_epoch() -> None:
    torch.manual_seed(0)
    model = Classifier(2, 8)
    validation = blobs(100, 1)
    validation.labels = 1 - validation.labels  # validation rewards the untrained model most
    settings = TrainingSettings(epochs=30, learning_rate=5e-2, patience=2)
    history = Trainer(settings).fit(model, blobs(200, 0), validation)
    assert len(history) < 30
    best = max(h["validation_macro_f1"] for h in history)
    logits = predict_logits(model, validation)
    from shoptransfer.evaluation import classification_metrics

    score = classification_metrics(validation.labels, logits.argmax(axis=1), ["0", "1"])
    assert score["macro_f1"] == best


def test_micro_batches_take_the_same_step_as_the_whole_batch() -> None:
    """Gradients summed over parts of a batch, each weighted by its share, are the batch's:
    the weights after training match, with and without example weights."""
    data = blobs(48, 0)
    for weights in (None, np.random.default_rng(1).uniform(0.2, 3.0, 48).astype(np.float32)):
        data.weights = weights
        trained = []
        for micro in (0, 7):
            torch.manual_seed(0)
            model = Classifier(2, 8)
            settings = TrainingSettings(
                epochs=2, batch_size=16, learning_rate=1e-2, micro_batch_size=micro
            )
            history = Trainer(settings).fit(model, data)
            trained.append((model.head.weight.detach().clone(), history[-1]["train_loss"]))
        torch.testing.assert_close(trained[0][0], trained[1][0])
        assert abs(trained[0][1] - trained[1][1]) < 1e-5


def test_micro_batches_refuse_objectives_on_target_batches() -> None:
    settings = TrainingSettings(epochs=1, batch_size=16, micro_batch_size=4)
    with pytest.raises(ValueError, match="micro-batches"):
        Trainer(settings).fit(Classifier(2, 8), blobs(32, 0), target=blobs(32, 1))


def test_warmup_then_linear_decay_rises_then_falls_to_zero() -> None:
    from shoptransfer.schedules import warmup_then_linear_decay

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = warmup_then_linear_decay(optimizer, total_steps=10, warmup_fraction=0.2)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert optimizer.param_groups[0]["lr"] == 0.0


class LengthEncoder(torch.nn.Module):
    """Features from a text's length; remembers the texts of every batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.seen: list[list[str]] = []

    def embed(self, batch: dict) -> torch.Tensor:
        self.seen.append(list(batch["texts"]))
        lengths = torch.tensor([[len(t) / 100.0, 1.0] for t in batch["texts"]])
        return lengths * self.scale


def texts_of_many_lengths(n: int) -> Examples:
    rng = np.random.default_rng(0)
    texts = [f"{i:03d} " + "word " * int(rng.integers(1, 200)) for i in range(n)]
    return Examples(texts, np.array([len(t) > 500 for t in texts], dtype=np.int64))


def spread(batches: list[list[str]]) -> float:
    """Mean over batches of (longest - shortest) characters: the padding a batch costs."""
    return float(np.mean([max(map(len, b)) - min(map(len, b)) for b in batches]))


def test_texts_grouped_by_length_cover_every_example_once_with_less_padding() -> None:
    examples = texts_of_many_lengths(640)
    grouped = [
        b["texts"] for b in examples.batches(16, torch.Generator().manual_seed(3), by_length=True)
    ]
    shuffled = [b["texts"] for b in examples.batches(16, torch.Generator().manual_seed(3))]
    assert sorted(t for b in grouped for t in b) == sorted(examples.inputs)
    assert [len(b) for b in grouped] == [16] * 40
    assert spread(grouped) < spread(shuffled) / 4
    # the batches are shuffled, not served shortest first
    longest = [max(map(len, b)) for b in grouped]
    assert longest != sorted(longest)
    # the same generator, the same batches; and the default order is the plain permutation
    again = [
        b["texts"] for b in examples.batches(16, torch.Generator().manual_seed(3), by_length=True)
    ]
    assert again == grouped
    permutation = torch.randperm(640, generator=torch.Generator().manual_seed(3)).numpy()
    assert shuffled[0] == [examples.inputs[i] for i in permutation[:16]]


def test_trainer_groups_training_and_target_texts_by_length_when_asked() -> None:
    class Alignment(Objective):
        """Reads the target batch's features (so the encoder sees it); adds nothing."""

        last_metrics: dict[str, float] = {}

        def forward(self, step: Step) -> torch.Tensor:
            return step.target_features.sum() * 0.0

    spreads = {}
    for grouped in (False, True):
        torch.manual_seed(0)
        encoder = LengthEncoder()
        model = Classifier(2, 2, encoder=encoder)
        settings = TrainingSettings(
            epochs=1, batch_size=16, learning_rate=1e-2, group_by_length=grouped
        )
        train = texts_of_many_lengths(320)
        Trainer(settings).fit(model, train, target=train, objectives=[Alignment()])
        assert len(encoder.seen) == 2 * 20  # each step: a training batch and a target batch
        spreads[grouped] = spread(encoder.seen)
    assert spreads[True] < spreads[False] / 4


@pytest.mark.parametrize(("max_length", "largest"), [(None, 64), (128, 64), (256, 32), (512, 16)])
def test_prediction_batches_hold_fewer_texts_when_the_encoder_reads_more(
    max_length: int | None, largest: int
) -> None:
    encoder = LengthEncoder()
    encoder.max_length = max_length
    model = Classifier(2, 2, encoder=encoder)
    examples = texts_of_many_lengths(100)
    logits = predict_logits(model, examples)
    assert max(len(batch) for batch in encoder.seen) == largest
    # the same outputs, in input order, whatever the batches
    whole = model({"texts": examples.inputs}).detach().numpy()
    np.testing.assert_allclose(logits, whole, rtol=1e-5, atol=1e-6)
