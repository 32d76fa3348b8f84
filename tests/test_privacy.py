"""Differential privacy (DP-SGD through Opacus) and the membership-inference audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from shoptransfer.cli import app
from shoptransfer.errors import ConfigError
from shoptransfer.evaluation.membership import membership_auc, membership_audit
from shoptransfer.privacy import PrivacySettings, privacy_settings, quiet_hooks
from shoptransfer.recipes import make_recipe
from shoptransfer.training import Classifier, Examples, Trainer, TrainingSettings

pytest.importorskip("opacus")


def separable(n: int = 200, seed: int = 0) -> Examples:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return Examples(x, (x[:, 0] > 0).astype(np.int64))


def private_fit(epochs: int, epsilon: float = 4.0, **settings: Any) -> tuple[Trainer, Classifier]:
    torch.manual_seed(0)
    model = Classifier(2, 6)
    trainer = Trainer(
        TrainingSettings(
            epochs=epochs,
            batch_size=20,
            learning_rate=0.05,
            seed=0,
            privacy=PrivacySettings(epsilon=epsilon, **settings),
        )
    )
    trainer.fit(model, separable())
    return trainer, model


def test_epsilon_is_reported_grows_with_the_steps_and_meets_the_target() -> None:
    trainer, _ = private_fit(epochs=3)
    report = trainer.privacy_report
    assert report is not None
    assert report["steps"] == report["planned_steps"] == 3 * 10
    assert report["delta"] == pytest.approx(1 / (10 * 200))  # the default: 1/(10 n)
    assert 0 < report["epsilon"] <= 4.0 + 1e-6
    assert report["epsilon"] > 3.5  # the noise was sized for the target, not far above it
    # within one fit, each epoch's record holds the ε spent so far: it grows
    history = trainer.fit(Classifier(2, 6), separable())
    spent = [record["epsilon"] for record in history]
    assert spent == sorted(spent) and spent[0] < spent[-1]
    # the same noise for more steps spends more (the accountant, not the target, decides)
    from shoptransfer.privacy import PrivateSteps

    model = Classifier(2, 6)
    steps = PrivateSteps(
        PrivacySettings(epsilon=4.0),
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        200,
        20,
        30,
        0,
    )
    try:
        epsilons = []
        for _ in range(3):
            for _ in range(10):
                steps._account()
            epsilons.append(steps.epsilon())
    finally:
        steps.close()
    assert epsilons[0] < epsilons[1] < epsilons[2]


def test_less_epsilon_means_more_noise() -> None:
    loose, _ = private_fit(epochs=2, epsilon=8.0)
    tight, _ = private_fit(epochs=2, epsilon=1.0)
    assert loose.privacy_report is not None and tight.privacy_report is not None
    assert tight.privacy_report["noise_multiplier"] > loose.privacy_report["noise_multiplier"]


def test_each_examples_gradient_is_clipped_to_the_bound_before_the_noise() -> None:
    """What the private step sums before adding noise is each example's own gradient scaled
    to norm at most C: Opacus's summed gradient equals the hand-clipped per-example sum."""
    from shoptransfer.privacy import PrivateSteps

    torch.manual_seed(0)
    model = Classifier(2, 6)
    with torch.no_grad():  # large weights: large per-example gradients
        model.head.weight.mul_(50)
    bound = 0.5
    steps = PrivateSteps(
        PrivacySettings(epsilon=8.0, max_grad_norm=bound),
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        200,
        20,
        10,
        0,
    )
    try:
        batch = next(separable().batches(20))
        batch["features"] = batch["features"] * 100
        steps.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
        with quiet_hooks():
            loss.backward()
        optimizer = steps.optimizer
        samples = [p.grad_sample.clone() for p in optimizer.params]
        norms = torch.stack([g.reshape(20, -1).norm(dim=1) for g in samples], dim=1).norm(dim=1)
        assert int((norms > bound).sum()) > 10  # the bound binds for most examples
        optimizer.pre_step()  # clips each example's gradient and adds the noise
        factors = torch.clamp(bound / (norms + 1e-6), max=1.0)
        for sample, p in zip(samples, optimizer.params, strict=True):
            clipped = (sample * factors.reshape(-1, *[1] * (sample.dim() - 1))).sum(dim=0)
            torch.testing.assert_close(p.summed_grad, clipped, rtol=1e-4, atol=1e-5)
        total = torch.cat([p.summed_grad.reshape(-1) for p in optimizer.params]).norm()
        assert float(total) <= 20 * bound + 1e-4
    finally:
        steps.close()
    assert not hasattr(model.head.weight, "grad_sample")  # hooks and gradients removed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"epsilon": 0}, "'epsilon' is 0; expected a number above 0.0"),
        ({"epsilon": "eight"}, "'epsilon' is 'eight'"),
        ({"delta": 1e-5}, "'epsilon' is missing"),
        ({"epsilon": 8, "delta": 2}, "'delta' is 2; expected a number between 0.0 and 1.0"),
        ({"epsilon": 8, "noise": 1}, "unknown key(s) ['noise']"),
        ({"epsilon": 8, "accountant": "gdp"}, "'accountant' is 'gdp'; expected one of"),
        (8, "option 'privacy' is 8; expected a mapping"),
    ],
)
def test_a_bad_privacy_setting_is_a_config_error(value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_recipe("frozen-features", privacy=value)
    assert expected in str(error.value)
    assert str(error.value).startswith("recipe 'frozen-features': ")
    assert "privacy" in str(error.value)
    assert "\n" not in str(error.value)


def test_privacy_settings_read_yaml_numbers() -> None:
    settings = privacy_settings({"epsilon": "3", "delta": "1e-6"}, "here")
    assert settings == PrivacySettings(epsilon=3.0, delta=1e-6)
    assert privacy_settings(None, "here") is None


def test_privacy_refuses_what_it_cannot_bound() -> None:
    from shoptransfer.data.domain import TextDomain

    reviews = TextDomain("reviews", ["good", "bad"], ["pos", "neg"])
    with pytest.raises(ConfigError, match="privacy does not combine with objectives"):
        make_recipe("dann", privacy={"epsilon": 8}).validate(reviews)
    with pytest.raises(ConfigError, match="privacy does not combine with self-training"):
        make_recipe("self-training", privacy={"epsilon": 8}).validate(reviews)
    with pytest.raises(ConfigError, match="needs solver 'adamw'"):
        make_recipe("frozen-features", solver="lbfgs", privacy={"epsilon": 8}).validate(
            separable_domain()
        )
    with pytest.raises(ConfigError, match="does not combine with objectives or target batches"):
        Trainer(TrainingSettings(privacy=PrivacySettings(8.0))).fit(
            Classifier(2, 6), separable(), target=separable()
        )


def separable_domain() -> Any:
    from shoptransfer.data.domain import FeatureDomain

    data = separable()
    assert data.labels is not None
    return FeatureDomain("vectors", np.asarray(data.inputs), [str(y) for y in data.labels])


def test_membership_auc_on_a_hand_computed_case() -> None:
    # members' losses 0.1, 0.4; held-out 0.2, 0.4, 0.9: pairs where the member is lower:
    # 0.1 beats all 3; 0.4 beats 0.9, ties 0.4 (half), loses to 0.2 -> (3 + 1.5) / 6
    assert membership_auc(np.array([0.1, 0.4]), np.array([0.2, 0.4, 0.9])) == pytest.approx(0.75)
    assert membership_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)
    assert membership_auc(np.array([5.0]), np.array([0.1])) == 0.0
    audit = membership_audit(
        np.array([[0.9, 0.1], [0.2, 0.8]]),
        np.array([0, 1]),
        np.array([[0.5, 0.5], [0.6, 0.4]]),
        np.array([0, 1]),
    )
    assert audit["auc"] == 1.0 and audit["advantage"] == 1.0
    assert audit["members"] == audit["held_out"] == 2


def write_reviews(path: Path) -> Path:
    rows = ["review,sentiment"]
    for i in range(30):
        rows.append(f"great sturdy pan number {i},pos")
        rows.append(f"awful flimsy junk number {i},neg")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    "recipe",
    [
        {"name": "frozen-features", "epochs": 3, "privacy": {"epsilon": 8, "delta": 1e-4}},
        # fine-tune with the bottom layer frozen and its outputs cached: per-example
        # gradients of the top layer and the head only
        {
            "name": "fine-tune",
            "frozen_layers": 2,
            "epochs": 1,
            "target_epochs": 1,
            "privacy": {"epsilon": 8, "max_grad_norm": 0.5},
        },
        {"name": "lora", "epochs": 1, "target_epochs": 1, "privacy": {"epsilon": 3}},
    ],
    ids=["head-only", "fine-tune-frozen-bottom", "lora"],
)
def test_a_private_run_records_epsilon_in_results_and_the_table(
    tmp_path: Path, tiny_backbone: str, recipe: dict[str, Any]
) -> None:
    source = write_reviews(tmp_path / "source.csv")
    target = write_reviews(tmp_path / "target.csv")
    config = {
        "source": {"path": str(source), "text": "review", "label": "sentiment"},
        "target": {"path": str(target), "text": "review", "label": "sentiment"},
        "backbone": tiny_backbone,
        "max_length": 16,
        "recipes": [recipe],
        "budgets": [8],
        "seeds": [0],
        "report": False,
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    [results_file] = (tmp_path / "runs").rglob("results.json")
    [cell] = [c for c in json.loads(results_file.read_text())["results"] if c["status"] == "ok"]
    spent = cell["fitted"]["privacy"]
    target_epsilon = recipe["privacy"]["epsilon"]
    assert 0 < spent["epsilon"] <= target_epsilon + 1e-6
    if recipe["name"] != "frozen-features":  # a source stage, then a target stage
        assert [s["stage"] for s in spent["stages"]] == ["source", "target"]
        assert all(s["steps"] > 0 and s["sampling"] == "poisson" for s in spent["stages"])
    assert "ε" in result.output
    assert f"{spent['epsilon']:.2f}" in result.output


def test_a_missing_opacus_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now fails
    recipe = make_recipe("frozen-features", privacy={"epsilon": 8})
    with pytest.raises(ConfigError, match=r"needs Opacus: pip install 'shoptransfer\[privacy\]'"):
        recipe.validate(separable_domain())


def test_the_comparison_shows_the_largest_epsilon_of_a_rows_seeds() -> None:
    from shoptransfer.evaluation.compare import analyse, format_comparison

    def cell(label: str, seed: int, spent: float | None) -> dict[str, Any]:
        return {
            "recipe": label,
            "label": label,
            "family": "feature-based",
            "budget": 0,
            "seed": seed,
            "status": "ok",
            "metrics": {"accuracy": 0.8, "macro_f1": 0.8},
            "train_seconds": 1.0,
            "peak_rss_mb": 10.0,
            "train_flops_estimate": 1e9,
            "trainable_parameters": 10,
            **({"fitted": {"privacy": {"epsilon": spent}}} if spent is not None else {}),
        }

    cells = [cell("private", 0, 2.5), cell("private", 1, 2.75), cell("plain", 0, None)]
    rows = analyse(cells)
    by_label = {row["label"]: row for row in rows}
    assert by_label["private"]["epsilon"] == 2.75
    assert "epsilon" not in by_label["plain"]
    table = format_comparison(rows).splitlines()
    assert "ε" in table[0]
    assert "2.75" in next(line for line in table if line.startswith("private"))
    assert "∞" in next(line for line in table if line.startswith("plain"))
    assert "ε" not in format_comparison(analyse([cell("plain", 0, None)])).splitlines()[0]

    from shoptransfer.evaluation.html_report import ReportRun, render_report

    page = render_report([ReportRun("private run", {"results": cells})])
    assert "ε (privacy)" in page and "2.75" in page
    plain = render_report([ReportRun("plain run", {"results": [cell("plain", 0, None)]})])
    assert "ε (privacy)" not in plain


def test_the_prv_accountant_meets_the_target_too() -> None:
    trainer, _ = private_fit(epochs=2, epsilon=3.0, accountant="prv")
    report = trainer.privacy_report
    assert report is not None and report["accountant"] == "prv"
    assert 2.5 < report["epsilon"] <= 3.0 + 0.05  # PRV's estimate, within its tolerance
