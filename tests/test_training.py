from __future__ import annotations

import numpy as np
import torch

from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings, predict_logits


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
