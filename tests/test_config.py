from __future__ import annotations

from pathlib import Path

import pytest

from shoptransfer.config import load_config, parse_config
from shoptransfer.errors import ConfigError

MINIMAL = {"source": {"path": "a.csv"}, "target": {"path": "b.csv"}}


def test_defaults_and_recipe_shorthand() -> None:
    config = parse_config(
        {**MINIMAL, "recipes": ["fine-tune", {"name": "frozen-features", "epochs": 5}]}, "x.yaml"
    )
    assert (
        config.budgets == [0, 16, 64] and config.backbone is None
    )  # chosen by what the source holds
    assert config.recipes[1].name == "frozen-features"
    assert config.recipes[1].options == {"epochs": 5}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "budget": [1]}, "unknown key 'budget'; allowed keys: backbone, budgets"),
        (
            {"source": {"path": "a", "column": "t"}, "target": {"path": "b"}},
            "unknown key 'source.column'; allowed keys: format, image, image_root, label, name, "
            "path, text",
        ),
        ({"source": {"path": "a"}}, "missing key 'target'"),
        ({**MINIMAL, "budgets": [-1]}, "key 'budgets'"),
        ({**MINIMAL, "test_fraction": 2}, "key 'test_fraction'"),
        ({**MINIMAL, "source": {"path": "a", "format": "xls"}}, "key 'source.format'"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_configs_name_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, "x.yaml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text("source: {path: data/a.csv}\ntarget: {path: /abs/b.csv}\n")
    config = load_config(tmp_path / "exp.yaml")
    assert config.source.path == str(tmp_path / "data" / "a.csv")
    assert config.target.path == "/abs/b.csv"


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("source: {path: a\ntarget: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        load_config(tmp_path / "bad.yaml")
