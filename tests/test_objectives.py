"""The objective registry, composition of objectives, and the claims of MCC and BSS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shoptransfer.data import FeatureDomain
from shoptransfer.errors import ConfigError
from shoptransfer.heads import Outputs
from shoptransfer.objectives import list_objectives, make_objective
from shoptransfer.objectives.bss import SpectralShrinkage
from shoptransfer.objectives.mcc import ClassConfusionLoss
from shoptransfer.recipes import FitData, make_recipe

MLP_OPTIONS = {"epochs": 40, "patience": 40, "mlp_hidden": 32}


def rotated_domains(seed: int, classes: int = 4, shift: float = 0.5) -> tuple[FeatureDomain, ...]:
    """Gaussian classes; the target is the source partly rotated and moved."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 10)) * 1.5
    labels = rng.integers(0, classes, size=800)
    x = centres[labels] + rng.normal(size=(800, 10))
    rotation = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    mix = (1 - shift) * np.eye(10) + shift * rotation
    source = FeatureDomain("s", x[:400].astype(np.float32), [str(y) for y in labels[:400]])
    target = FeatureDomain(
        "t", (x[400:] @ mix + 0.5).astype(np.float32), [str(y) for y in labels[400:]]
    )
    return source, target


def test_registry_lists_every_objective_with_what_it_needs() -> None:
    objectives = {o.name: o for o in list_objectives()}
    assert {"coral", "mmd", "dann", "mcc", "l2-sp", "bss"} <= set(objectives)
    assert objectives["mcc"].needs_unlabeled_target and objectives["dann"].needs_unlabeled_target
    assert not objectives["bss"].needs_unlabeled_target
    assert "target" in objectives["l2-sp"].stages and objectives["coral"].stages == ("source",)
    for objective in objectives.values():
        assert objective.description and all(objective.options().values())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("cora", "unknown objective 'cora'"),
        ({"name": "dann", "wieght": 1}, r"unknown setting\(s\) \['wieght'\]"),
        ({"name": "dann", "weight": "abc"}, "weight 'abc'; expected float"),
        ({"name": "bss", "k": 1.5}, "k 1.5; expected int"),
        ({"name": "bss", "k": True}, "k True; expected int"),
        ({"name": "mmd", "weight": -1}, "weight must be 0 or more"),
        ({"weight": 1}, "expected an objective name"),
    ],
)
def test_bad_objective_entries_are_config_errors(entry: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_objective(entry)  # type: ignore[arg-type]


def test_a_recipe_rejects_bad_objectives_when_it_is_made() -> None:
    with pytest.raises(ConfigError, match="recipe 'mlp': objectives: unknown objective"):
        make_recipe("mlp", objectives=["nope"])
    with pytest.raises(ConfigError, match=r"\['dann'\] listed twice"):
        make_recipe("mlp", objectives=["dann", {"name": "dann", "weight": 0.5}])
    with pytest.raises(ConfigError, match="joint stages"):
        make_recipe("mlp", stages="joint", objectives=["mcc"]).validate(rotated_domains(0)[0])


def test_objectives_compose_dann_and_l2_sp_both_act() -> None:
    source, target = rotated_domains(0)
    unlabeled = target.without_labels()

    def encoder_drift(objectives: list[object]) -> tuple[float, list[dict[str, float]]]:
        recipe = make_recipe("mlp", objectives=objectives, **MLP_OPTIONS)
        torch.manual_seed(0)
        model = recipe._build(source, Outputs.of_classes(source.classes))[0]
        start = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        predictor = recipe.fit(FitData(source, unlabeled=unlabeled))
        state = predictor.model.encoder.state_dict()
        return float(sum((state[k] - v).pow(2).sum() for k, v in start.items())), recipe.history_

    dann_only, history = encoder_drift([{"name": "dann", "weight": 1.0}])
    both, both_history = encoder_drift(
        [{"name": "dann", "weight": 1.0}, {"name": "l2-sp", "weight": 1.0}]
    )
    assert "domain_accuracy" in history[0] and "domain_accuracy" in both_history[0]
    assert both < 0.5 * dann_only  # L2-SP holds the encoder near its starting weights


def test_mcc_lowers_class_confusion_on_the_target_and_helps_accuracy() -> None:
    accuracy: dict[str, list[float]] = {"plain": [], "mcc": []}
    for seed in (0, 1):
        source, target = rotated_domains(seed)
        confusion = {}
        for name, objectives in (("plain", []), ("mcc", [{"name": "mcc", "weight": 3.0}])):
            predictor = make_recipe("mlp", objectives=objectives, **MLP_OPTIONS).fit(
                FitData(source, unlabeled=target.without_labels())
            )
            probabilities = torch.from_numpy(predictor.predict_proba(target.vectors))
            confusion[name] = float(ClassConfusionLoss(1.0)(torch.log(probabilities)))
            predicted = np.array(predictor.predict(target.vectors))
            accuracy[name].append(float(np.mean(predicted == np.array(target.labels))))
        assert confusion["mcc"] < 0.9 * confusion["plain"]
    assert np.mean(accuracy["mcc"]) > np.mean(accuracy["plain"]) + 0.03


def test_class_confusion_is_zero_for_confident_distinct_predictions() -> None:
    confident = torch.eye(3).repeat(4, 1) * 50
    unsure = torch.zeros(12, 3)
    loss = ClassConfusionLoss(temperature=1.0)
    assert float(loss(confident)) < 1e-6
    assert float(loss(unsure)) == pytest.approx(2 / 3, abs=1e-5)


def test_spectral_shrinkage_is_the_squared_smallest_singular_values() -> None:
    features = torch.diag(torch.tensor([5.0, 3.0, 0.5])) @ torch.linalg.qr(torch.randn(3, 3))[0]
    assert float(SpectralShrinkage(k=1)(features)) == pytest.approx(0.25, rel=1e-4)
    assert float(SpectralShrinkage(k=2)(features)) == pytest.approx(9.25, rel=1e-4)


def test_bss_shrinks_the_smallest_singular_values_of_the_features() -> None:
    source, target = rotated_domains(0)
    smallest = {}
    for name, objectives in (("plain", []), ("bss", [{"name": "bss", "weight": 0.1, "k": 8}])):
        predictor = make_recipe("mlp", objectives=objectives, **MLP_OPTIONS).fit(FitData(source))
        with torch.no_grad():
            features = predictor.model.features({"features": torch.from_numpy(source.vectors)})
        values = torch.linalg.svdvals(features)
        smallest[name] = float(values[-8:].pow(2).sum() / values.pow(2).sum())
        accuracy = np.mean(np.array(predictor.predict(source.vectors)) == np.array(source.labels))
        assert accuracy > 0.9  # the task is kept
    assert smallest["bss"] < 0.5 * smallest["plain"]
