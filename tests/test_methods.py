"""Each transfer method does what it claims, on tiny synthetic data or a tiny random BERT."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from shoptransfer.data import FeatureDomain, TextDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.heads import Outputs
from shoptransfer.objectives.coral import CoralLoss, coral_transform
from shoptransfer.objectives.dann import dann_lambda, reverse_gradient
from shoptransfer.objectives.mmd import MultiKernelMMD
from shoptransfer.recipes import FitData, load_predictor, make_recipe

from .conftest import NEGATIVE, POSITIVE


def shifted_pair(n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(n, 8))
    mixing = np.diag([3.0, 0.5, 2.0, 1.0, 1.0, 0.3, 1.5, 1.0])
    target = rng.normal(size=(n, 8)) @ mixing + 2.0
    return source.astype(np.float32), target.astype(np.float32)


@pytest.mark.parametrize("loss_fn", [CoralLoss(), MultiKernelMMD()], ids=["coral", "mmd"])
def test_alignment_losses_fall_as_a_map_aligns_the_domains(loss_fn: torch.nn.Module) -> None:
    source, target = (torch.from_numpy(x) for x in shifted_pair())
    torch.manual_seed(0)
    mapping = torch.nn.Linear(8, 8)
    with torch.no_grad():
        mapping.weight.copy_(torch.eye(8))
        mapping.bias.zero_()
    optimizer = torch.optim.Adam(mapping.parameters(), lr=0.02)
    first = loss_fn(mapping(source), target).item()
    for _ in range(300):
        optimizer.zero_grad()
        loss = loss_fn(mapping(source), target)
        loss.backward()
        optimizer.step()
    assert loss_fn(mapping(source), target).item() < 0.2 * first


def test_losses_are_near_zero_for_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(400, 4)).astype(np.float32))
    b = torch.from_numpy(rng.normal(size=(400, 4)).astype(np.float32))
    shifted = b * 3 + 1
    for loss_fn in (CoralLoss(), MultiKernelMMD()):
        assert float(loss_fn(a, b)) < 0.1 * float(loss_fn(a, shifted))


def test_gradient_reversal_is_the_negated_scaled_identity() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(5, 3)
    out = reverse_gradient(x, 0.7)
    torch.testing.assert_close(out, x)
    out.backward(upstream)
    torch.testing.assert_close(x.grad, -0.7 * upstream)


def test_dann_schedule_rises_from_zero_toward_one() -> None:
    values = [dann_lambda(p) for p in np.linspace(0, 1, 11)]
    assert values[0] == 0.0 and values[-1] > 0.99
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_closed_form_coral_gives_the_source_the_target_covariance() -> None:
    source, target = shifted_pair(2000)
    moved = coral_transform(source, target, eps=1e-6)
    np.testing.assert_allclose(np.cov(moved, rowvar=False), np.cov(target, rowvar=False), atol=0.05)
    np.testing.assert_allclose(moved.mean(axis=0), target.mean(axis=0), atol=1e-4)


def feature_domains(seed: int = 0) -> tuple[FeatureDomain, FeatureDomain]:
    """Two classes; the target is the source rotated and shifted."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=600)
    base = rng.normal(size=(600, 10)) + np.outer(labels * 2 - 1, np.r_[1.5, np.zeros(9)])
    rotation = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    angle = 0.35  # a moderate shift: rotate part of the way, then move
    mix = (1 - angle) * np.eye(10) + angle * rotation
    source = FeatureDomain("s", base[:300].astype(np.float32), [str(y) for y in labels[:300]])
    target = FeatureDomain(
        "t", (base[300:] @ mix + 1.0).astype(np.float32), [str(y) for y in labels[300:]]
    )
    return source, target


def test_dann_makes_domains_indistinguishable_and_keeps_the_task() -> None:
    source, target = feature_domains()
    options = {"epochs": 60, "patience": 60, "mlp_hidden": 32}
    plain = make_recipe("mlp", **options).fit(FitData(source, unlabeled=target.without_labels()))
    recipe = make_recipe("mlp-dann", objectives=[{"name": "dann", "weight": 1.0}], **options)
    dann = recipe.fit(FitData(source, unlabeled=target.without_labels()))
    domain_accuracy = [record["domain_accuracy"] for record in recipe.history_]
    assert max(domain_accuracy) > 0.8  # while the features still differ, it tells them apart
    assert np.mean(domain_accuracy[-10:]) < 0.7  # in the end it is close to chance (0.5)
    accuracy = {
        name: np.mean(np.array(p.predict(target.vectors)) == np.array(target.labels))
        for name, p in (("plain", plain), ("dann", dann))
    }
    assert accuracy["dann"] > 0.8 and accuracy["dann"] > accuracy["plain"]


def test_alignment_recipes_need_unlabeled_target_data() -> None:
    source, _ = feature_domains()
    with pytest.raises(DataError, match="unlabeled target data"):
        make_recipe("mlp-coral").fit(FitData(source))
    with pytest.raises(ConfigError, match="encoder: mlp"):
        make_recipe("coral").fit(FitData(source))


SOURCE = TextDomain(
    "book",
    [f"book {t} {r}" for r in range(2) for t in POSITIVE + NEGATIVE],
    [y for _ in range(2) for y in ["pos"] * 8 + ["neg"] * 8],
)
TARGET = TextDomain(
    "pan", [f"pan {t}" for t in POSITIVE[:4] + NEGATIVE[:4]], ["pos"] * 4 + ["neg"] * 4
)
TEST = [f"kettle {t}" for t in POSITIVE[4:] + NEGATIVE[4:]]


def encoder_distance(predictor, start: dict[str, torch.Tensor]) -> float:
    state = predictor.model.encoder.state_dict()
    return float(sum((state[k] - v).pow(2).sum() for k, v in start.items()))


def test_l2_sp_stays_closer_to_the_pretrained_weights(tiny_backbone: str) -> None:
    from shoptransfer.backbones import TextEncoder

    start = TextEncoder(tiny_backbone).state_dict()
    options = {
        "backbone": tiny_backbone,
        "epochs": 3,
        "patience": 3,
        "learning_rate": 5e-3,
        "weight_decay": 0.0,
    }
    plain = make_recipe("fine-tune", **options).fit(FitData(SOURCE))
    l2sp = make_recipe("l2-sp", objectives=[{"name": "l2-sp", "weight": 5.0}], **options).fit(
        FitData(SOURCE)
    )
    assert encoder_distance(l2sp, start) < 0.5 * encoder_distance(plain, start)


def test_frozen_layers_do_not_change(tiny_backbone: str) -> None:
    from shoptransfer.backbones import TextEncoder

    reference = TextEncoder(tiny_backbone)
    predictor = make_recipe(
        "freeze-bottom", backbone=tiny_backbone, frozen_layers=2, epochs=2, learning_rate=1e-2
    ).fit(FitData(SOURCE, TARGET))
    trained = predictor.model.encoder.layers()
    for before, after in zip(reference.layers()[:2], trained[:2]):
        for p, q in zip(before.parameters(), after.parameters()):
            torch.testing.assert_close(p, q)
    top_changed = any(
        not torch.equal(p, q)
        for p, q in zip(reference.layers()[2].parameters(), trained[2].parameters())
    )
    assert top_changed


def test_gradual_unfreezing_trains_the_top_layer_first(tiny_backbone: str) -> None:
    from shoptransfer.backbones import TextEncoder
    from shoptransfer.metering import QualityMonitor, monitoring

    pretrained = [list(layer.parameters()) for layer in TextEncoder(tiny_backbone).layers()]
    assert len(pretrained) == 3  # embeddings and two transformer layers
    # epoch e of three has unfrozen the top ceil((e + 1) / 3 * 3) = e + 1 layers
    recipe = make_recipe(
        "gradual-unfreezing", backbone=tiny_backbone, epochs=3, patience=3, learning_rate=1e-2
    )
    after_epoch: list[list[bool]] = []  # per epoch: which layers differ from the pretrained

    def changed_layers(predictor) -> float:  # called after every epoch
        layers = predictor.model.encoder.layers()
        after_epoch.append(
            [
                any(not torch.equal(p, q) for p, q in zip(before, layer.parameters()))
                for before, layer in zip(pretrained, layers)
            ]
        )
        return 0.0

    with monitoring(QualityMonitor(changed_layers)):
        recipe.fit(FitData(SOURCE))
    assert after_epoch == [
        [False, False, True],  # the top layer only; the bottom ones are still pretrained
        [False, True, True],
        [True, True, True],
    ]


def test_layer_decay_gives_lower_rates_to_lower_layers(tiny_backbone: str) -> None:
    recipe = make_recipe("llrd", backbone=tiny_backbone, layer_decay=0.5)
    model, _ = recipe._build(SOURCE, Outputs.of_classes(SOURCE.classes))
    groups = recipe._parameter_groups(model, 1e-3, 1e-2)
    rates = [g["lr"] for g in groups]
    assert rates[:4] == pytest.approx([1e-2, 1e-3, 5e-4, 2.5e-4])


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_peft_trains_only_adapters_and_head_and_round_trips(
    method: str, tiny_backbone: str, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from shoptransfer.backbones import TextEncoder

    options = {"backbone": tiny_backbone, "epochs": 1, "target_epochs": 2}
    if method == "ia3":
        options["peft_target_modules"] = ["key", "value", "intermediate.dense"]
    predictor = make_recipe(method, **options).fit(FitData(SOURCE, TARGET))
    marker = "lora_" if method == "lora" else "ia3_"
    trainable = [n for n, p in predictor.model.named_parameters() if p.requires_grad]
    assert trainable and all(marker in n or n.startswith("head.") for n in trainable)
    full = sum(p.numel() for p in TextEncoder(tiny_backbone).parameters())
    assert predictor.trainable_parameters < 0.1 * full
    saved = load_file(str(predictor.save(tmp_path / "m") / "model.safetensors"))
    assert set(saved) == set(trainable)
    loaded = load_predictor(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(TEST), predictor.predict_proba(TEST), atol=1e-5)


def test_lora_on_missing_modules_is_a_config_error(tiny_backbone: str) -> None:
    with pytest.raises(ConfigError, match=r"target modules \['q_proj'\] are not in backbone"):
        make_recipe("lora", backbone=tiny_backbone, peft_target_modules=["q_proj"]).fit(
            FitData(SOURCE)
        )


def test_multi_head_predicts_with_the_target_head(tiny_backbone: str, tmp_path: Path) -> None:
    recipe = make_recipe("multi-head", backbone=tiny_backbone, epochs=2, learning_rate=1e-3)
    predictor = recipe.fit(FitData(SOURCE, TARGET))
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(TEST), predictor.predict_proba(TEST), atol=1e-5)
    source_only = make_recipe(
        "multi-head", backbone=tiny_backbone, epochs=2, learning_rate=1e-3
    ).fit(FitData(SOURCE))
    assert not np.allclose(source_only.predict_proba(TEST), predictor.predict_proba(TEST))


@pytest.mark.parametrize("name", ["coral", "mmd", "dann"])
def test_backbone_alignment_recipes_run_and_round_trip(
    name: str, tiny_backbone: str, tmp_path: Path
) -> None:
    unlabeled = TextDomain("pan", TEST)
    predictor = make_recipe(name, backbone=tiny_backbone, epochs=1).fit(
        FitData(SOURCE, None, unlabeled=unlabeled)
    )
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(TEST), predictor.predict_proba(TEST), atol=1e-5)


@pytest.mark.parametrize(
    "name", ["frozen-features", "coral-closed-form", "mlp", "mlp-coral", "mlp-mmd", "mlp-dann"]
)
def test_feature_recipes_run_on_vectors_and_round_trip(name: str, tmp_path: Path) -> None:
    source, target = feature_domains()
    predictor = make_recipe(name, epochs=20).fit(
        FitData(source, None, unlabeled=target.without_labels())
    )
    probabilities = predictor.predict_proba(target.vectors)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(
        loaded.predict_proba(target.vectors), predictor.predict_proba(target.vectors), atol=1e-5
    )


def test_closed_form_coral_beats_the_plain_head_under_covariance_shift() -> None:
    source, target = feature_domains()
    accuracy = {}
    for name in ("frozen-features", "coral-closed-form"):
        predictor = make_recipe(name).fit(FitData(source, unlabeled=target.without_labels()))
        accuracy[name] = np.mean(np.array(predictor.predict(target.vectors)) == target.labels)
    assert accuracy["coral-closed-form"] > accuracy["frozen-features"] + 0.05


def test_confident_pseudo_labels_follow_the_prior_and_confidence() -> None:
    from shoptransfer.recipes.transfer import confident_pseudo_labels

    probabilities = np.array(
        [[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3], [0.45, 0.55], [0.2, 0.8], [0.1, 0.9]]
    )
    # 4 of 7 rows predicted class 0; a 50/50 prior and share 4/7 keep 2 of each class
    keep = confident_pseudo_labels(probabilities, np.array([0.5, 0.5]), 4 / 7)
    assert keep.tolist() == [0, 2, 5, 6]
    # a class with fewer predictions than its quota gives what it has
    keep = confident_pseudo_labels(probabilities, np.array([0.2, 0.8]), 1.0)
    assert keep.tolist() == [0, 4, 5, 6]


def test_self_training_rounds_grow_the_pseudo_labeled_share(tiny_backbone: str) -> None:
    unlabeled = TextDomain("pan", TEST + [f"pan {t}" for t in POSITIVE + NEGATIVE], None)
    recipe = make_recipe(
        "self-training",
        backbone=tiny_backbone,
        epochs=1,
        frozen_layers=1,
        max_length=16,
        self_training_rounds=2,
    )
    predictor = recipe.fit(FitData(SOURCE, unlabeled=unlabeled))
    rounds = [r for r in recipe.history_ if "self_training_round" in r]
    counts = [r["pseudo_labeled"] for r in rounds]
    # at most 25 %, then 50 % of the 24 texts (less when a class is predicted too rarely)
    assert len(counts) == 2 and 0 < counts[0] <= 6 and counts[0] < counts[1] <= 12
    assert predictor.predict_proba(TEST).shape == (8, 2)
    with pytest.raises(DataError, match="unlabeled target"):
        make_recipe("self-training", backbone=tiny_backbone).fit(FitData(SOURCE))
    with pytest.raises(ConfigError, match="pseudo_label_share"):
        make_recipe("self-training", pseudo_label_share=0.0).validate(SOURCE)


def test_self_training_lifts_target_accuracy_over_the_source_only_model() -> None:
    source, target = feature_domains()
    options = {"epochs": 60, "patience": 60, "mlp_hidden": 32}
    plain = make_recipe("mlp", **options).fit(FitData(source, unlabeled=target.without_labels()))
    adapted = make_recipe("mlp", self_training_rounds=5, pseudo_label_share=0.8, **options).fit(
        FitData(source, unlabeled=target.without_labels())
    )
    accuracy = {
        name: np.mean(np.array(p.predict(target.vectors)) == np.array(target.labels))
        for name, p in (("plain", plain), ("adapted", adapted))
    }
    assert accuracy["adapted"] > accuracy["plain"] + 0.1  # measured: 0.58 -> 0.74


def test_bf16_precision_trains_and_round_trips_with_head_and_tail(
    tiny_backbone: str, tmp_path: Path
) -> None:
    options = {"backbone": tiny_backbone, "epochs": 1, "truncation": "head+tail", "max_length": 8}
    predictor = make_recipe("fine-tune", precision="bf16", **options).fit(FitData(SOURCE))
    assert predictor.model.precision == "bf16"
    probabilities = predictor.predict_proba(TEST)
    assert probabilities.dtype == np.float32 and np.allclose(probabilities.sum(axis=1), 1.0)
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    assert loaded.model.precision == "bf16" and loaded.model.encoder.truncation == "head+tail"
    np.testing.assert_allclose(loaded.predict_proba(TEST), probabilities, atol=1e-5)
    with pytest.raises(ConfigError, match="precision"):
        make_recipe("fine-tune", precision="fp8").validate(SOURCE)


def test_lbfgs_head_matches_scikit_learn_on_raw_features(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=240)
    centres = rng.normal(size=(3, 6)) * 2
    scales = np.array([1.0, 50.0, 0.01, 3.0, 1.0, 200.0])  # standardisation matters
    x = ((centres[labels] + rng.normal(size=(240, 6))) * scales + 7.0).astype(np.float32)
    domain = FeatureDomain("f", x, [f"c{y}" for y in labels])
    recipe = make_recipe("frozen-features", solver="lbfgs")
    predictor = recipe.fit(FitData(domain))
    chosen = recipe.fitted()["head"]["inverse_l2"]
    assert {k for k in recipe.fitted()["head"] if k.startswith("cv_accuracy@")}  # chosen by CV
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=chosen, max_iter=500))
    reference.fit(x, labels)
    np.testing.assert_allclose(predictor.predict_proba(x), reference.predict_proba(x), atol=2e-3)
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(x), predictor.predict_proba(x), atol=1e-5)


def test_l2_grid_search_stops_once_weaker_settings_keep_scoring_lower() -> None:
    from shoptransfer.recipes.frozen_features import INVERSE_L2_GRID, search_grid

    peak = INVERSE_L2_GRID[2]
    tried: list[float] = []

    def score(inverse_l2: float) -> float:
        tried.append(inverse_l2)
        return 1.0 - abs(np.log(inverse_l2 / peak))

    scores = search_grid(score)
    assert tried == list(INVERSE_L2_GRID[:5]) == list(scores)  # peak, then two lower: stop
    assert max(scores, key=scores.__getitem__) == peak
    rising = search_grid(lambda inverse_l2: inverse_l2)  # better all along: the whole grid
    assert list(rising) == list(INVERSE_L2_GRID)
    flat = search_grid(lambda inverse_l2: 0.5)  # ties are not a fall: the whole grid
    assert list(flat) == list(INVERSE_L2_GRID)


def test_lbfgs_head_cross_validates_with_fewer_folds_on_many_examples() -> None:
    from shoptransfer.recipes.frozen_features import FEWER_FOLDS_FROM, fit_logistic_head

    rng = np.random.default_rng(0)
    for n, folds in ((FEWER_FOLDS_FROM - 2, 5), (FEWER_FOLDS_FROM, 3)):
        labels = np.arange(n) % 2
        x = rng.normal(size=(n, 4)) + labels[:, None]
        _, _, report = fit_logistic_head(x, labels, None, 2)
        assert report["folds"] == folds


def test_lbfgs_head_uses_every_label_and_handles_two_classes() -> None:
    source, target = feature_domains()
    few = source.subset(list(range(6)))  # too few for cross-validation in some class
    for domain in (source, few):
        predictor = make_recipe("frozen-features", solver="lbfgs").fit(FitData(domain))
        probabilities = predictor.predict_proba(target.vectors)
        assert probabilities.shape == (len(target), 2)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = np.mean(np.array(predictor.predict(few.vectors)) == np.array(few.labels))
    assert accuracy == 1.0  # all six training examples were used to fit
    with pytest.raises(ConfigError, match="option 'solver' is 'newton'"):
        make_recipe("frozen-features", solver="newton")


@pytest.mark.parametrize("solver", ["adamw", "lbfgs"])
def test_power_normalised_features_feed_the_head_in_training_and_after_loading(
    solver: str, tmp_path: Path
) -> None:
    from shoptransfer.training import transform_features

    source, target = feature_domains()
    source = FeatureDomain("s", np.abs(source.vectors), source.labels)  # pooled: non-negative
    recipe = make_recipe("frozen-features", solver=solver, feature_transform="sqrt-l2", epochs=5)
    predictor = recipe.fit(FitData(source))
    x = np.abs(target.vectors[:20])
    transformed = transform_features(torch.from_numpy(x), "sqrt-l2")
    np.testing.assert_allclose(transformed.norm(dim=1).numpy(), 1.0, atol=1e-5)
    head = predictor.model.head
    expected = torch.softmax(head(transformed), dim=1).detach().numpy()
    np.testing.assert_allclose(predictor.predict_proba(x), expected, atol=1e-5)
    loaded = load_predictor(predictor.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict_proba(x), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="option 'feature_transform' is 'log'"):
        make_recipe("frozen-features", feature_transform="log")


def test_auto_precision_follows_the_machine_and_bf16_without_it_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shoptransfer.backbones import precision

    monkeypatch.delenv("SHOPTRANSFER_PRECISION", raising=False)
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "native_bf16", lambda native=native: native)
        assert precision.check_precision("auto") == expected
        assert make_recipe("fine-tune").make_encoder(pretrained=False) is not None
    assert precision.precision_warning("fp32") is None
    warning = precision.precision_warning("bf16")  # native_bf16 is False here
    assert warning is not None and "without native bfloat16" in warning and "x as long" in warning
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.precision_warning("bf16") is None
    monkeypatch.setenv("SHOPTRANSFER_PRECISION", "bf16")
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert precision.check_precision("auto") == "bf16"  # the environment decides
    monkeypatch.setenv("SHOPTRANSFER_PRECISION", "fp16")
    with pytest.raises(ConfigError, match="SHOPTRANSFER_PRECISION"):
        precision.check_precision("auto")


def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from shoptransfer.backbones import precision

    precision.native_bf16.cache_clear()
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    try:
        monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
        assert precision.native_bf16() is False
        precision.native_bf16.cache_clear()
        monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
        assert precision.native_bf16() is True
    finally:
        precision.native_bf16.cache_clear()
    assert 1 <= precision.usable_cores() <= (os.cpu_count() or 1)
