"""Progress bars: shown on a terminal, silenced for a whole run by ``show_progress=False``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from shoptransfer.api import run_experiment
from shoptransfer.config import load_config
from shoptransfer.progress import progress

from .test_runs_and_cli import write_config


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that progress bars would draw on it."""

    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(range(3), "counting")) == [0, 1, 2]
    assert "counting" in terminal.getvalue()


@pytest.mark.parametrize("show", [True, False])
def test_a_quiet_run_draws_no_progress_bars(
    show: bool,
    tmp_path: Path,
    review_csvs: tuple[Path, Path],
    tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_path = write_config(
        tmp_path,
        *review_csvs,
        tiny_backbone,
        recipes=[{"name": "frozen-features", "epochs": 2}],
        budgets=[2],
        save_models=False,
    )
    config = load_config(config_path)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run_experiment(config, show_progress=show)
    drawn = terminal.getvalue()
    if show:  # the control: on this stream the run's bars do draw
        assert "frozen-features" in drawn
    else:
        assert drawn == ""


@pytest.mark.parametrize("show", [True, False])
def test_a_quiet_recommendation_run_draws_no_progress_bars(
    show: bool, tmp_path: Path, tiny_backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoptransfer.api import run_experiment

    from .test_recommendation_run import write_config as write_walks_config

    sasrec = {"name": "sasrec", "epochs": 2, "hidden": 16, "batch_size": 32}
    config = load_config(write_walks_config(tmp_path, tiny_backbone, recipes=[sasrec]))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run_experiment(config, show_progress=show)
    assert (terminal.getvalue() != "") is show
