"""The command line and the run folder under bad input: flags, output folders, failed runs,
settings the backbone cannot read, file permissions, internal errors."""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoptransfer import runner
from shoptransfer.backbones import make_encoder
from shoptransfer.cli import app, main
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.files import atomic_write_text

from .conftest import write_experiment, write_reviews_csv


def shoptransfer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of the ``shoptransfer`` command with ``args``."""
    monkeypatch.setattr(sys, "argv", ["shoptransfer", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "runs", "--user", "u1", "--k", "-1"], "Invalid value for '--k'"),
        (["recommend", "runs", "--user", "u1", "--k", "0"], "Invalid value for '--k'"),
        (["recommend", "runs", "--user", "u1", "--k", "ten"], "Invalid value for '--k'"),
        (["recommend", "runs", "--user", "u1", "--seed", "-2"], "Invalid value for '--seed'"),
        (["predict", "runs", "--top-k", "0", "--text", "hi"], "Invalid value for '--top-k'"),
        (["demo", "--seed", "-1"], "Invalid value for '--seed'"),
        (["demo", "--seed", str(2**32)], "Invalid value for '--seed'"),
        (["run", "x.yaml", "--bogus"], "No such option: --bogus"),
        (["run"], "run needs an experiment YAML file, or --resume RUN_FOLDER"),
        (["runn", "x.yaml"], "No such command 'runn'"),
    ],
)
def test_bad_flags_print_one_line_naming_the_flag_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = shoptransfer(monkeypatch, capsys, *args)
    assert status == 2
    line = one_line(err)
    assert line.startswith("error: ") and message in line


def test_an_internal_error_is_one_line_and_its_traceback_needs_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> list[object]:
        raise RuntimeError("a bug\nspread over lines")

    monkeypatch.setattr("shoptransfer.catalogue.list_recipes", broken)
    status, _, err = shoptransfer(monkeypatch, capsys, "recipes")
    assert status == 1
    assert one_line(err) == (
        "internal error: RuntimeError: a bug spread over lines; "
        "rerun with --debug for the traceback"
    )
    monkeypatch.setattr(sys, "argv", ["shoptransfer", "recipes", "--debug"])
    with pytest.raises(RuntimeError, match="a bug"):
        main()

    # the machine's limits are errors, not bugs, and not the user's input either
    def disk_full() -> list[object]:
        raise OSError(28, "Disk full")

    monkeypatch.setattr("shoptransfer.catalogue.list_recipes", disk_full)
    status, _, err = shoptransfer(monkeypatch, capsys, "recipes")
    assert status == 1
    assert one_line(err) == (
        "error: OSError: [Errno 28] Disk full; rerun with --debug for the traceback"
    )
    # a user's mistake stays one line with --debug
    status, _, err = shoptransfer(monkeypatch, capsys, "--debug", "run", "missing.yaml")
    assert status == 2 and one_line(err) == "error: missing.yaml: config file not found"


def write_config(tmp_path: Path, backbone: str, **extra: object) -> Path:
    write_reviews_csv(tmp_path / "books.csv", prefix="book: ")
    write_reviews_csv(tmp_path / "kitchen.csv", prefix="pan: ")
    config = {
        "name": "toy",
        "source": {"path": "books.csv", "text": "review", "label": "sentiment"},
        "target": {"path": "kitchen.csv", "text": "review", "label": "sentiment"},
        "recipes": ["scratch-tfidf"],
        "budgets": [2, 4],
    }
    return write_experiment(tmp_path, backbone, config, **extra)


def test_an_output_dir_that_is_a_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("a file\n")
    config = write_config(tmp_path, "unused", output_dir=str(tmp_path / "taken" / "runs"))
    status, _, err = shoptransfer(monkeypatch, capsys, "run", str(config), "--quiet")
    assert status == 2
    assert one_line(err) == (
        f"error: output_dir '{tmp_path / 'taken' / 'runs'}': {tmp_path / 'taken'} is a file; "
        "expected a folder"
    )
    config = write_config(tmp_path, "unused", cache_dir=str(tmp_path / "taken"))
    status, _, err = shoptransfer(monkeypatch, capsys, "run", str(config), "--quiet")
    assert status == 2 and one_line(err).startswith("error: cache_dir ")


def failing_after(cells: int, error: Exception) -> object:
    """``run_cell`` that fails once ``cells`` cells have finished."""
    real = runner.run_cell
    calls = []

    def run_cell(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) > cells:
            raise error
        return real(*args, **kwargs)

    return run_cell


def test_a_run_that_fails_before_any_cell_leaves_no_folder_behind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, "unused", output_dir=str(tmp_path / "out" / "runs"))
    monkeypatch.setattr(runner, "run_cell", failing_after(0, RuntimeError("boom")))
    status, _, err = shoptransfer(monkeypatch, capsys, "run", str(config), "--quiet")
    assert status == 1 and one_line(err).startswith("internal error: RuntimeError: boom;")
    assert not (tmp_path / "out").exists()  # the run folder and the folders made for it
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "older-run").mkdir()
    config = write_config(tmp_path, "unused", output_dir=str(tmp_path / "runs"))
    monkeypatch.setattr(runner, "run_cell", failing_after(0, DataError("bad cell")))
    status, _, err = shoptransfer(monkeypatch, capsys, "run", str(config), "--quiet")
    assert status == 2 and one_line(err) == "error: bad cell"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["older-run"]


def test_a_run_that_fails_later_keeps_the_finished_cells_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, "unused")
    monkeypatch.setattr(runner, "run_cell", failing_after(1, DataError("bad cell")))
    status, _, err = shoptransfer(monkeypatch, capsys, "run", str(config), "--quiet")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert status == 2
    assert one_line(err) == (
        f"error: bad cell (the run folder {run_dir} keeps the 1 cell(s) that finished; "
        f"continue it with: shoptransfer run --resume {run_dir})"
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert [(r["budget"], r["status"]) for r in results["results"]] == [(2, "ok")]


def write_long_reviews(path: Path) -> Path:
    """Reviews of about 150 tokens each: longer than the tiny backbone's 64 positions."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        for n in range(8):
            writer.writerow([f"review {n}: " + "great pan, love it. " * 30, "pos"])
            writer.writerow([f"review {n}: " + "awful pan, broke. " * 30, "neg"])
    return path


def test_a_max_length_above_the_backbone_is_capped_with_a_warning(
    tmp_path: Path, tiny_backbone: str
) -> None:
    write_long_reviews(tmp_path / "long.csv")
    config = {
        "name": "long",
        "source": {"path": "long.csv", "text": "review", "label": "sentiment"},
        "target": {"path": "long.csv", "text": "review", "label": "sentiment"},
        "recipes": [
            {"name": "frozen-features", "epochs": 1},
            {"name": "fine-tune", "epochs": 1, "target_epochs": 1, "max_length": 100},
        ],
        "budgets": [2],
    }
    path = write_experiment(tmp_path, tiny_backbone, config, max_length=5000)
    result = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "more than backbone" in line]
    assert warnings == [  # (the other warning: the target is the source, so test = training)
        f"warning: max_length 5000 is more than backbone '{tiny_backbone}' reads; texts are "
        "cut at 64 tokens",
        f"warning: recipe 'fine-tune': max_length 100 is more than backbone '{tiny_backbone}' "
        "reads; texts are cut at 64 tokens",
    ]
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["capped_settings"] == [
        {"setting": "max_length", "given": 5000, "used": 64, "backbone": tiny_backbone},
        {
            "recipe": "fine-tune",
            "setting": "max_length",
            "given": 100,
            "used": 64,
            "backbone": tiny_backbone,
        },
    ]
    assert {r["options"]["max_length"] for r in results["results"]} == {64}
    assert results["config"]["max_length"] == 64
    assert make_encoder(tiny_backbone, max_length=65).max_length == 64


def test_an_image_size_beyond_the_bounds_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"image_size 4096: expected 32 to 1024 pixels per side"):
        make_encoder("efficientnet-lite0", image_size=4096, pretrained=False)


def test_written_files_respect_the_umask(tmp_path: Path) -> None:
    before = os.umask(0o002)
    try:
        atomic_write_text(tmp_path / "shared.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.json", "{}")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
