"""Resuming interrupted runs: a real run is killed (SIGKILL, in a subprocess) at several points,
including in the middle of a save, then resumed; its numbers must equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _pytest.capture import CaptureFixture
from typer.testing import CliRunner

from shoptransfer.api import run_config, run_experiment
from shoptransfer.cli import app, main
from shoptransfer.config import load_config

from .conftest import write_experiment

# Runs an experiment and kills itself with SIGKILL at the N-th file rename (every atomic save
# ends with one): "during" before the rename (the new file is written but not in place),
# "after" just after it; N = 0 never kills, and every rename's target is printed at the end.
# Each run gets its own fresh embedding cache, so that every run makes the same renames.
DRIVER = """
import os, signal, sys
from shoptransfer.api import run_experiment
from shoptransfer.config import load_config

config, mode, at, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
real_replace, targets = os.replace, []

def replace(source, target):
    targets.append(str(target))
    if len(targets) == at and mode == "during":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(source, target)
    if len(targets) == at and mode == "after":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
config = load_config(config).model_copy(update={"cache_dir": cache})
run_dir = run_experiment(config, show_progress=False)
print(run_dir)
print("\\n".join(targets))
"""


FINE_TUNE = {"epochs": 2, "target_epochs": 2, "learning_rate": 3e-3, "head_learning_rate": 3e-2}


def _config(tmp_path: Path, review_csvs: tuple[Path, Path], backbone: str) -> Path:
    source, target = review_csvs
    config = {
        "name": "resume",
        "source": {"path": str(source), "text": "review", "label": "sentiment"},
        "target": {"path": str(target), "text": "review", "label": "sentiment"},
        "recipes": [
            # two fine-tunes that share their source stage through the run's stage cache
            # (learning rates high enough that every random draw shows in the predictions)
            {"name": "fine-tune", "label": "ft-a", **FINE_TUNE},
            {"name": "fine-tune", "label": "ft-b", **FINE_TUNE, "target_learning_rate": 3e-3},
            {"name": "frozen-features", "epochs": 3},
        ],
        "budgets": [2],
        "report": False,
    }
    return write_experiment(tmp_path, backbone, config)


def _drive(config: Path, mode: str, at: int) -> subprocess.CompletedProcess[str]:
    cache = config.parent / f"cache-{mode}-{at}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", DRIVER, str(config), mode, str(at), str(cache)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _numbers(run_dir: Path) -> list[tuple[str, str, dict]]:
    results = json.loads((run_dir / "results.json").read_text())
    return [(r["label"], r["status"], r.get("metrics")) for r in results["results"]]


def _leftovers(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if ".tmp" in p.name)


def test_a_run_killed_at_several_points_resumes_to_the_uninterrupted_numbers(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    config = _config(tmp_path, review_csvs, tiny_backbone)
    whole = _drive(config, "never", 0)
    assert whole.returncode == 0, whole.stderr
    reference_dir, *renames = whole.stdout.split("\n")[:-1]
    reference_dir = Path(reference_dir)

    def nth(part: str, n: int = 1) -> int:  # the n-th rename of a path holding ``part``
        return [i + 1 for i, target in enumerate(renames) if part in target][n - 1]

    reference = _numbers(reference_dir)
    assert [status for _, status, _ in reference] == ["ok"] * 3
    assert not (reference_dir / "checkpoints").exists()  # removed as each cell finishes
    points = [
        ("during", nth("checkpoints/ft-a-k2-seed0/stage-", 2)),  # the shared stage's 2nd epoch
        ("after", nth("checkpoints/ft-b-k2-seed0/fit-")),  # ft-b reused that stage
        ("during", nth("models/ft-b")),  # writing a model
        ("after", nth("checkpoints/frozen-features", 2)),  # the last cell
    ]
    for mode, at in points:
        killed = _drive(config, mode, at)
        assert killed.returncode == -9, killed.stderr
        runs = sorted((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        run_dir = runs[-1]
        assert (run_dir / "checkpoints").is_dir()  # an unfinished cell's epochs
        if mode == "during":
            assert _leftovers(run_dir)  # the file being written when it died
        resumed = run_experiment(run_config(run_dir), show_progress=False, resume=run_dir)
        assert resumed == run_dir
        assert _numbers(run_dir) == reference, (mode, at)
        assert not (run_dir / "checkpoints").exists() and not _leftovers(run_dir)
        log = json.loads((run_dir / "results.json").read_text())["resumed"]
        assert len(log) == 1 and (mode == "after" or log[0]["orphans_removed"])
        models = sorted(p.name for p in (run_dir / "models").iterdir())
        assert models == sorted(p.name for p in (reference_dir / "models").iterdir())


def _main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: CaptureFixture) -> tuple:
    """The command line's exit status and the lines it printed to stderr."""
    monkeypatch.setattr(sys, "argv", ["shoptransfer", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    return exit.value.code, capsys.readouterr().err.strip().splitlines()


def test_resume_refuses_a_changed_config_or_data_in_one_line(
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: CaptureFixture,
) -> None:
    config = _config(tmp_path, review_csvs, tiny_backbone)
    settings = yaml.safe_load(config.read_text())
    settings["recipes"] = ["scratch-tfidf"]
    config.write_text(yaml.safe_dump(settings))
    run_dir = run_experiment(load_config(config), show_progress=False)

    settings["budgets"] = [4]
    config.write_text(yaml.safe_dump(settings))
    status, err = _main(["run", str(config), "--resume", str(run_dir), "-q"], monkeypatch, capsys)
    assert status == 2 and len(err) == 1
    assert "config differs" in err[0] and "budgets" in err[0]

    source = review_csvs[0]
    source.write_text(source.read_text() + "one more great product,pos\n")
    status, err = _main(["run", "--resume", str(run_dir), "-q"], monkeypatch, capsys)
    assert status == 2 and len(err) == 1
    assert "data changed" in err[0] and "source" in err[0]

    status, err = _main(["run", "--resume", str(run_dir), "--force", "-q"], monkeypatch, capsys)
    assert status == 0, err
    status, err = _main(["run", "--resume", str(tmp_path), "-q"], monkeypatch, capsys)
    assert status == 2 and len(err) == 1 and "--resume" in err[0]


@pytest.mark.parametrize("command", ["run", "compare"])
def test_resuming_a_finished_run_keeps_every_cell(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str, command: str
) -> None:
    config = _config(tmp_path, review_csvs, tiny_backbone)
    settings = yaml.safe_load(config.read_text())
    settings["recipes"] = ["scratch-tfidf", {"name": "frozen-features", "epochs": 2}]
    config.write_text(yaml.safe_dump(settings))
    runner = CliRunner()
    first = runner.invoke(app, [command, str(config), "-q"])
    assert first.exit_code == 0, first.output
    run_dir = Path(first.output.split("run folder: ")[1].split()[0])
    before = _numbers(run_dir)
    again = runner.invoke(app, [command, "--resume", str(run_dir), "-q"])
    assert again.exit_code == 0, again.output
    assert _numbers(run_dir) == before
    assert len(list((tmp_path / "runs").iterdir())) == 1  # no new folder


def test_a_cell_gives_the_same_numbers_whatever_ran_before_it(
    tmp_path: Path, review_csvs: tuple[Path, Path], tiny_backbone: str
) -> None:
    """What a resumed run relies on: ft-b's numbers are the same whether it reuses the source
    stage ft-a trained before it or trains that stage itself, and twice the same."""
    config = load_config(_config(tmp_path, review_csvs, tiny_backbone))
    both = config.model_copy(update={"recipes": config.recipes[:2], "save_models": False})
    alone = config.model_copy(update={"recipes": config.recipes[1:2], "save_models": False})
    numbers = [_numbers(run_experiment(c, show_progress=False)) for c in (both, alone, alone)]
    assert numbers[0][1] == numbers[1][0] == numbers[2][0]
    assert numbers[0][0][0] == "ft-a" and numbers[1][0][0] == "ft-b"


class Interrupted(Exception):
    """Stands for a kill just after a checkpoint was written."""


def test_a_fit_with_target_batches_resumes_mid_pass_to_the_same_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DANN draws unlabeled target batches beside the source's; a fit stopped after its 3rd
    epoch continues the target pass where it was and ends with the uninterrupted model."""
    import numpy as np

    from shoptransfer import checkpoints
    from shoptransfer.catalogue import make_recipe
    from shoptransfer.recipes.base import FitData

    from .test_methods import feature_domains

    source, target = feature_domains()
    options = {"epochs": 5, "patience": 5, "mlp_hidden": 16, "batch_size": 24}

    def fit() -> np.ndarray:
        recipe = make_recipe("mlp-dann", objectives=[{"name": "dann"}], **options)
        model = recipe.fit(FitData(source, unlabeled=target.without_labels()))
        return np.asarray(model.predict_proba(target.vectors))

    with checkpoints.checkpointing(None):
        whole = fit()
    real_save, saves = checkpoints.save_checkpoint, []

    def save_then_stop(path: Path, state: dict) -> None:
        real_save(path, state)
        saves.append(state["epoch"])
        if len(saves) == 3:
            raise Interrupted

    monkeypatch.setattr("shoptransfer.training.save_checkpoint", save_then_stop)
    with checkpoints.checkpointing(tmp_path), pytest.raises(Interrupted):
        fit()
    state = checkpoints.load_checkpoint(tmp_path / "fit-1.pt")
    assert state is not None and state["epoch"] == 3 and state["target_stream"] is not None
    with checkpoints.checkpointing(tmp_path):
        resumed = fit()
    np.testing.assert_array_equal(resumed, whole)
