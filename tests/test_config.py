from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": [-1]}, "x.yaml: key 'seeds.0': Input should be greater than or equal to 0"),
        ({"seeds": [True]}, "x.yaml: key 'seeds.0': Input should be a valid integer"),
        ({"budgets": [True]}, "x.yaml: key 'budgets': budget True is not valid"),
        ({"budgets": [16, False]}, "x.yaml: key 'budgets': budget False is not valid"),
        ({"max_length": True}, "x.yaml: key 'max_length': Input should be a valid integer"),
        (
            {"recipes": [{"name": "scratch-tfidf", "c": "abc"}]},
            "x.yaml: key 'recipes.0': recipe 'scratch-tfidf': option 'c' is 'abc'; "
            "expected a number",
        ),
        (
            {"recipes": ["fine-tune", {"name": "scratch-tfidf", "ngram_max": 0}]},
            "x.yaml: key 'recipes.1': recipe 'scratch-tfidf': option 'ngram_max' is 0",
        ),
        ({"recipes": ["fine-tuning"]}, "x.yaml: key 'recipes.0': unknown recipe 'fine-tuning'"),
    ],
)
def test_bad_values_and_recipe_options_are_config_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({**MINIMAL, **change}, "x.yaml")


def test_recipe_options_are_stored_converted() -> None:
    config = parse_config(
        {**MINIMAL, "recipes": [{"name": "frozen-features", "learning_rate": "1e-3"}]}, "x.yaml"
    )
    assert config.recipes[0].options == {"learning_rate": 0.001}


def test_each_recipe_entry_gets_a_unique_label() -> None:
    config = parse_config(
        {
            **MINIMAL,
            "recipes": [
                "fine-tune",
                {"name": "scratch-tfidf", "c": 0.1, "ngram_max": 1},
                {"name": "scratch-tfidf", "c": 10.0, "ngram_max": 1},
                {"name": "frozen-features", "label": "ff-lbfgs", "solver": "lbfgs"},
                {"name": "frozen-features"},
                {"name": "frozen-features"},
            ],
        },
        "x.yaml",
    )
    assert [entry.label for entry in config.recipes] == [
        "fine-tune",
        "scratch-tfidf-c=0.1",
        "scratch-tfidf-c=10.0",
        "ff-lbfgs",
        "frozen-features",
        "frozen-features#2",
    ]
    assert config.recipes[3].options == {"solver": "lbfgs"}


@pytest.mark.parametrize(
    ("recipes", "message"),
    [
        (
            [{"name": "fine-tune", "label": "a"}, {"name": "scratch-tfidf", "label": "a"}],
            "x.yaml: key 'recipes': entries 1 and 2 have the same label 'a'",
        ),
        (
            ["fine-tune", {"name": "scratch-tfidf", "label": "fine-tune"}],
            "entries 1 and 2 have the same label 'fine-tune'",
        ),
        (
            [{"name": "fine-tune", "label": "my model"}],
            "x.yaml: key 'recipes': entry 1: label 'my model' may hold only",
        ),
    ],
)
def test_duplicate_or_odd_labels_are_config_errors(recipes: list, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({**MINIMAL, "recipes": recipes}, "x.yaml")
