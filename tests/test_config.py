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
            "unknown key 'source.column'; allowed keys: encoding, format, image, image_root, "
            "inputs, label, name, path, scrub_pii, text",
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
                {"name": "frozen-features", "epochs": 3},
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
        "frozen-features-epochs=3",
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


REC_MINIMAL = {"task": "recommendation", "target": {"path": "inter.csv"}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "recipes": []}, "x.yaml: key 'recipes': expected at least one recipe"),
        ({**MINIMAL, "seeds": [0, 0]}, "key 'seeds': seeds [0, 0] give the seed 0 more than once"),
        ({**MINIMAL, "seeds": [2**32]}, "key 'seeds.0': Input should be less than or equal to"),
        ({**MINIMAL, "split_seed": 2**40}, "key 'split_seed': Input should be less than or equal"),
        ({**MINIMAL, "budgets": [2, 2.0]}, "key 'budgets': budgets [2, 2.0] give the budget 2"),
        ({**REC_MINIMAL, "budgets": ["all", 1]}, "budgets ['all', 1] give the budget 'all'"),
        ({**REC_MINIMAL, "ks": [0]}, "key 'ks.0': Input should be greater than 0"),
        ({**REC_MINIMAL, "ks": [10, 5, 10]}, "key 'ks': ks [10, 5, 10] give the cut-off 10"),
        ({**REC_MINIMAL, "ks": []}, "key 'ks': expected at least one cut-off"),
        ({**MINIMAL, "test_fraction": float("nan")}, "key 'test_fraction': Input should be"),
        (
            {**MINIMAL, "image_size": 100_000},
            "key 'image_size': 100000 pixels per side; expected 32 to 1024 (the image "
            "backbones read 224",
        ),
        ({**MINIMAL, "image_size": 8}, "key 'image_size': 8 pixels per side; expected 32 to 1024"),
        ({**MINIMAL, "name": "n" * 101}, "key 'name': String should have at most 100 characters"),
        (
            {**MINIMAL, "recipes": [{"name": "scratch-tfidf", "c": float("inf")}]},
            "key 'recipes.0': recipe 'scratch-tfidf': option 'c' is inf; expected a finite number",
        ),
        (
            {**MINIMAL, "recipes": [{"name": "fine-tune", "image_size": 100_000}]},
            "recipe 'fine-tune': option 'image_size' is 100000; expected an integer <= 1024",
        ),
        (
            {**MINIMAL, "recipes": ["frozen-features", {"name": "frozen-features"}]},
            "key 'recipes.1': the same recipe 'frozen-features' with the same options as "
            "'recipes.0'",
        ),
        (
            {
                "task": "multi-task",
                "target": {"path": "b.csv", "labels": {"s": "label"}},
                "task_weights": {"s": float("nan")},
            },
            "key 'task_weights.s': Input should be a finite number",
        ),
    ],
)
def test_values_that_would_surprise_are_config_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(data, "x.yaml")


ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # a few hundred bytes standing for 9**9 values once expanded
            "target: {path: b.csv}\na: &a [x, x, x, x, x, x, x, x, x]\n" + ALIAS_BOMB,
            "holds more than 100,000 values once its aliases are expanded",
        ),
        ("a: &a [1, *a]\n", "line 1: an alias refers to a value that holds it"),
        ("target: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 50 levels deep"),
        ("target: {path: b.csv}\nname: a\nname: b\n", "line 3: key 'name' is given twice"),
        ("target: {path: b.csv, path: c.csv}\n", "line 1: key 'path' is given twice"),
        ("? [a]\n: 1\n", "line 1: not valid YAML (expected a plain key"),
    ],
)
def test_yaml_that_would_hang_or_hide_a_value_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(
        "target: {path: b.csv}\n"
        "base: &base {name: fine-tune, epochs: 2}\n"
        "recipes: [{<<: *base, epochs: 3}]\n"
        "name: merged\n".replace("base: &base", "x-defaults: &base")
    )
    with pytest.raises(ConfigError, match="unknown key 'x-defaults'"):
        load_config(tmp_path / "exp.yaml")  # the anchor's own key is still a key of the file
    (tmp_path / "exp.yaml").write_text(
        "target: {path: b.csv}\nrecipes: [&ft {name: fine-tune, epochs: 2}, {<<: *ft, epochs: 3}]\n"
    )
    config = load_config(tmp_path / "exp.yaml")
    assert [entry.options for entry in config.recipes] == [{"epochs": 2}, {"epochs": 3}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "exp.yaml: a folder; expected an experiment YAML file"),
        (b"\x00\xff\xfe binary \x80", "not UTF-8 text"),
        ("name: café\n".encode("latin-1"), "not UTF-8 text"),
        (
            "name: shop\ntarget: {path: 评论.csv, encoding: gbk}\n".encode("gbk"),
            "exp.yaml line 2: bytes b'\\xc6' are not UTF-8 text; expected an experiment file saved "
            "as UTF-8 (a data file's encoding goes in its domain's encoding key)",
        ),
        (b"# " + b"x" * 1_000_001, "bytes; expected an experiment file under 1,000,000 bytes"),
    ],
)
def test_files_that_are_not_experiment_files(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "exp.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)
