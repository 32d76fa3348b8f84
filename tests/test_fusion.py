"""Multi-input domains (a photo and a title per product) and the fusion recipe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from shoptransfer.backbones import EmbeddingCache
from shoptransfer.config import parse_config
from shoptransfer.data.multi import MultiInputs, read_multi_input_table
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes import FitData, load_predictor, make_recipe
from shoptransfer.recipes.fusion import fit_temperature
from tests.test_images import COLOURS, product_photo

TITLES = {"red": "crimson cotton shirt", "green": "forest trail shoe", "blue": "navy steel watch"}
INPUTS = {"photo": ("image", "image"), "title": ("text", "title")}


DOMAIN_INPUTS = {"photo": {"image": "image"}, "title": {"text": "title"}}  # a config's inputs


def tiny_run(root: Path) -> dict[str, object]:
    """A config's settings for runs on the tiny products: small photos and texts, the run
    folder and the embedding cache under ``root``."""
    return {
        "image_size": 32,
        "max_length": 16,
        "output_dir": str(root / "runs"),
        "cache_dir": str(root / "cache"),
    }


def write_products(folder: Path, per_class: int = 8, seed: int = 0) -> Path:
    """A table of products: a photo (coloured by class) and a title (words of the class).

    Row 0 of each class has no photo cell, row 1 an empty title, and one more row per class
    names a photo file that is not there."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "products.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "title", "label"])
        for c, (name, colour) in enumerate(COLOURS.items()):
            for i in range(per_class):
                photo = folder / f"{name}-{seed}-{i}.jpg"
                product_photo(colour, seed * 1000 + c * 100 + i).save(photo)
                writer.writerow(
                    [
                        photo.name if i != 0 else "",
                        f"{TITLES[name]} size {i}" if i != 1 else "",
                        name,
                    ]
                )
            writer.writerow([f"gone-{name}.jpg", f"{TITLES[name]} spare", name])
    return folder / "products.csv"


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("products")
    return write_products(root / "train", seed=0), write_products(root / "test", 6, seed=1)


def fusion(tiny_backbone: str, **options: object):
    return make_recipe(
        "fusion", text_backbone=tiny_backbone, image_size=32, max_length=16, **options
    )


def test_missing_inputs_are_kept_and_counted_per_input(tmp_path: Path) -> None:
    table = write_products(tmp_path, per_class=3)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    with table.open("a", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["broken.jpg", "navy watch", "blue"])  # an undecodable photo
        writer.writerow(["", " ", "blue"])  # no input at all: dropped
        writer.writerow(["red-0-2.jpg", "crimson shirt", ""])  # no label: dropped
    domain = read_multi_input_table(table, INPUTS)
    assert len(domain) == 3 * 4 + 1
    assert domain.missing == {
        "photo": {"empty cell": 3, "file not found": 3, "not an image": 1},
        "title": {"empty cell": 3},
    }
    assert domain.dropped == {"no input": 1, "missing label": 1}
    assert domain.inputs.present("photo").sum() == len(domain) - 7
    assert domain.input_kinds == {"photo": "image", "title": "text"}
    # a subset, an unlabeled union and the leakage keys keep inputs in step
    part = domain.subset([0, 1])
    assert part.inputs.values["photo"][0] is None and part.inputs.values["title"][1] is None
    both = domain.unlabeled_with(part)
    assert len(both) == len(domain) + 2 and both.labels is None
    assert domain.example_keys()[0][0] is None and len(set(domain.example_keys())) == len(domain)


def test_run_counts_missing_inputs_compares_fused_with_single_inputs_and_predicts(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from shoptransfer.cli import app

    train, test = products
    domain = {"inputs": DOMAIN_INPUTS}
    config = {
        "name": "fused",
        "target": {"path": str(train), **domain},
        "target_test": {"path": str(test), **domain},
        **tiny_run(tmp_path),
        "budgets": [4],
        "seeds": [0],
        "recipes": [
            {"name": "fusion", "label": "fused", "text_backbone": tiny_backbone, "epochs": 20},
            {
                "name": "fusion",
                "label": "stacked",
                "combine": "stacking",
                "text_backbone": tiny_backbone,
            },
            {"name": "fusion", "label": "photo", "inputs": ["photo"], "epochs": 20},
            {
                "name": "fusion",
                "label": "title",
                "inputs": ["title"],
                "text_backbone": tiny_backbone,
                "epochs": 20,
            },
        ],
    }
    path = tmp_path / "fused.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    done = runner.invoke(app, ["compare", str(path), "--quiet"])
    assert done.exit_code == 0, done.output
    run_dir = next((tmp_path / "runs").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["target"]["missing_inputs"] == {
        "photo": {"empty cell": 3, "file not found": 3},
        "title": {"empty cell": 3},
    }
    assert results["data"]["target"]["inputs"] == {"photo": "image", "title": "text"}
    warned = [w for w in results["warnings"] if "missing, kept as missing" in w]
    assert len(warned) == 2  # the target and its test file, once each
    target_line = f"{train}: 9 inputs missing, kept as missing (photo: empty cell 3, "
    assert done.stderr.count(target_line) == 1  # printed once
    cells = {r["label"]: r for r in results["results"]}
    assert set(cells) == {"fused", "stacked", "photo", "title"}
    assert all(cell["status"] == "ok" for cell in cells.values())
    assert cells["photo"]["metrics"]["accuracy"] >= 0.6  # colours from ImageNet features
    assert "comparison" in results
    # predict: a photo with its title, and a photo alone
    photo = str(test.parent / "blue-1-3.jpg")
    both = runner.invoke(
        app,
        [
            "predict",
            str(run_dir),
            "--model",
            "fused-k4-seed0",
            "--image",
            photo,
            "--text",
            "navy steel watch",
            "--json",
        ],
    )
    assert both.exit_code == 0, both.output
    record = json.loads(both.stdout.strip().splitlines()[-1])
    assert record["photo"] == photo and record["title"] == "navy steel watch"
    assert set(record["probabilities"]) == {"blue", "green", "red"}
    alone = runner.invoke(
        app, ["predict", str(run_dir), "--model", "fused-k4-seed0", "--image", photo]
    )
    assert alone.exit_code == 0, alone.output
    unpaired = runner.invoke(
        app,
        [
            "predict",
            str(run_dir),
            "--model",
            "fused-k4-seed0",
            "--image",
            photo,
            "--text",
            "a",
            "--text",
            "b",
        ],
    )
    assert isinstance(unpaired.exception, ConfigError)
    assert "pairs the n-th" in str(unpaired.exception)
    photo_only = runner.invoke(
        app, ["predict", str(run_dir), "--model", "photo-k4-seed0", "--text", "navy watch"]
    )
    assert isinstance(photo_only.exception, ConfigError)
    assert "no text input for --text" in str(photo_only.exception)
    # ONNX export reads one input: refused in one line (serving: tests/test_fusion_serve.py)
    exported = runner.invoke(app, ["export", str(run_dir), "--model", "fused-k4-seed0"])
    assert isinstance(exported.exception, ConfigError)
    assert "is a fusion model" in str(exported.exception)
    # why: each input hidden in turn, each title word deleted in turn (occlusion)
    why = runner.invoke(
        app,
        [
            *["predict", str(run_dir), "--model", "fused-k4-seed0", "--image", photo],
            *["--text", "navy steel watch", "--explain", "--json"],
        ],
    )
    assert why.exit_code == 0, why.output
    explanation = json.loads(why.stdout.strip().splitlines()[-1])["explanation"]
    assert set(explanation["inputs"]) == {"photo", "title"}
    words = [(w["input"], w["word"]) for w in explanation["words"]]
    assert words == [("title", "navy"), ("title", "steel"), ("title", "watch")]
    from shoptransfer.api import predict

    both_p = predict(run_dir, {"photo": [photo], "title": ["navy steel watch"]}, "fused-k4-seed0")
    title_p = predict(run_dir, {"title": ["navy steel watch"]}, "fused-k4-seed0")
    label = list(both_p[2]).index(explanation["label"])
    hidden = float(both_p[1][0][label] - title_p[1][0][label])  # the photo's share
    assert explanation["inputs"]["photo"] == pytest.approx(hidden, abs=1e-5)
    photo_only_args = ["predict", str(run_dir), "--model", "fused-k4-seed0", "--image", photo]
    alone_why = runner.invoke(app, [*photo_only_args, "--explain"])
    assert alone_why.exit_code == 0, alone_why.output
    assert "title missing" in alone_why.stdout
    page = runner.invoke(app, [*photo_only_args, "--explain-html", "x.html"])
    assert isinstance(page.exception, ConfigError) and "printed" in str(page.exception)
    # a table of products scored a chunk at a time; photo paths start at the table's folder
    out = tmp_path / "scored.jsonl"
    fused = ["predict", str(run_dir), "--model", "fused-k4-seed0", "--input", str(test)]
    scored = runner.invoke(
        app,
        [*fused, "--input-column", "photo=image", "-o", str(out), "--chunk-size", "5", "-q"],
    )
    assert scored.exit_code == 0, scored.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with test.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(rows) == len(table) and all(row["label"] is not None for row in rows)
    assert "'photo': {'empty cell': 3, 'file not found': 3}" in scored.stderr
    assert "'title': {'empty cell': 3}" in scored.stderr
    # a row scores as it does alone
    n = next(i for i, row in enumerate(table) if row["image"].startswith("blue") and row["title"])
    alone_inputs = {"photo": [str(test.parent / table[n]["image"])], "title": [table[n]["title"]]}
    _, probabilities, classes = predict(run_dir, alone_inputs, model="fused-k4-seed0")
    expected = float(probabilities[0][list(classes).index("blue")])
    assert rows[n]["p_blue"] == pytest.approx(expected, abs=1e-5)
    # each row explained too: the same shares as explaining the row alone
    explained = tmp_path / "explained.jsonl"
    done = runner.invoke(
        app,
        [*fused, "--input-column", "photo=image", "-o", str(explained), "--explain", "-q"],
    )
    assert done.exit_code == 0, done.output
    row_why = json.loads(explained.read_text().splitlines()[n])["explanation"]
    from shoptransfer.api import explain_predictions

    (alone_why,) = explain_predictions(run_dir, alone_inputs, model="fused-k4-seed0")
    assert row_why["inputs"] == pytest.approx(alone_why.inputs, abs=1e-5)
    # an input whose column the table lacks: named with the option that chooses it
    lacking = runner.invoke(app, fused)
    assert isinstance(lacking.exception, DataError)
    assert "no column 'photo' (--input-column NAME=COLUMN)" in str(lacking.exception)
    wrong = runner.invoke(app, [*fused, "--input-column", "colour=image"])
    assert isinstance(wrong.exception, ConfigError)
    assert "NAME one of the model's inputs ['photo', 'title']" in str(wrong.exception)


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 10},
        {"epochs": 10, "head": "mlp", "missing": "zero", "hidden_size": 16},
        {"combine": "stacking"},
        {"combine": "stacking", "modality_dropout": 0.0},
        {"solver": "lbfgs"},
    ],
)
def test_fused_model_reloads_to_identical_predictions_and_reads_one_input(
    options: dict, products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    train, test = (read_multi_input_table(p, INPUTS) for p in products)
    recipe = fusion(tiny_backbone, **options)
    recipe.validate(train)
    cache = EmbeddingCache(tmp_path / "cache")
    predictor = recipe.fit(FitData(None, train, cache=cache))
    probabilities = predictor.predict_proba(test.inputs)
    assert probabilities.shape == (len(test), 3)
    reloaded = load_predictor(predictor.save(tmp_path / "model"))
    assert type(reloaded).__name__ == "FusionPredictor"
    assert np.array_equal(reloaded.predict_proba(test.inputs), probabilities)
    # one input: the other is missing for every example
    photos = [p for p in test.inputs.values["photo"] if p is not None]
    only_photo = reloaded.predict_proba({"photo": photos})
    only_title = reloaded.predict_proba({"title": ["navy steel watch", "crimson cotton shirt"]})
    assert only_photo.shape == (len(photos), 3) and only_title.shape == (2, 3)
    assert np.allclose(only_photo.sum(axis=1), 1.0)
    with pytest.raises(DataError, match=r"unknown input\(s\) \['colour'\]"):
        reloaded.predict_proba({"colour": ["red"]})


@pytest.mark.parametrize(
    "options",
    [
        {"epochs": 60, "learning_rate": 3e-3},
        {"solver": "lbfgs"},
        {"combine": "stacking"},
    ],
)
def test_modality_dropout_lets_the_photo_alone_decide(
    options: dict, products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    """Trained on photo + title, the model classifies photos that come without a title, and
    better than the same model trained without modality dropout."""
    train, test = (read_multi_input_table(p, INPUTS) for p in products)
    cache = EmbeddingCache(tmp_path / "cache")
    rows = [i for i, p in enumerate(test.inputs.values["photo"]) if p is not None]
    photos = {"photo": [test.inputs.values["photo"][i] for i in rows]}
    accuracy = {}
    for dropout in (0.0, 0.5):
        recipe = fusion(tiny_backbone, **options, modality_dropout=dropout)
        predictor = recipe.fit(FitData(None, train, cache=cache))
        predicted = predictor.predict_proba(photos).argmax(axis=1)
        accuracy[dropout] = (predicted == test.subset(rows).label_ids(predictor.classes)).mean()
    assert accuracy[0.5] >= 0.9 and accuracy[0.5] >= accuracy[0.0], accuracy


def test_temperature_scaling_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(0)
    calibrated = rng.normal(size=(4000, 3))
    labels = np.array([rng.choice(3, p=np.exp(row) / np.exp(row).sum()) for row in calibrated])
    assert fit_temperature(calibrated * 3.0, labels) == pytest.approx(3.0, rel=0.15)
    assert fit_temperature(calibrated, labels) == pytest.approx(1.0, rel=0.15)


def test_bad_multi_input_configs_are_one_line_errors(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    from shoptransfer.api import run_experiment

    train, _ = products
    base = {"path": str(train), "inputs": {"photo": {"image": "image"}, "title": {"text": "title"}}}

    def config(target: dict, recipes: list) -> object:
        return parse_config(
            {
                "target": target,
                "recipes": recipes,
                "budgets": [2],
                "image_size": 32,
                "output_dir": str(tmp_path / "runs"),
                "cache_dir": str(tmp_path / "cache"),
            },
            "fused.yaml",
        )

    with pytest.raises(ConfigError, match="key 'target.inputs': expected at least one input"):
        config({"path": str(train), "inputs": {}}, ["fusion"])
    with pytest.raises(ConfigError, match="key 'target.inputs.title': expected exactly one of"):
        config({"path": str(train), "inputs": {"title": {"text": "a", "image": "b"}}}, ["fusion"])
    unknown_column = {**base, "inputs": {"title": {"text": "name"}}}
    with pytest.raises(DataError, match=r"products.csv: no column 'name'; the columns are"):
        run_experiment(config(unknown_column, ["fusion"]), show_progress=False)
    with pytest.raises(ConfigError, match="recipe 'frozen-features' reads one input per example"):
        run_experiment(config(base, ["frozen-features"]), show_progress=False)
    with pytest.raises(ConfigError, match="solver 'lbfgs' fits a linear head"):
        run_experiment(
            config(base, [{"name": "fusion", "solver": "lbfgs", "head": "mlp"}]),
            show_progress=False,
        )
    with pytest.raises(ConfigError, match=r"option 'inputs' is \['colour'\]; expected each of"):
        run_experiment(
            config(base, [{"name": "fusion", "inputs": ["colour"]}]), show_progress=False
        )
    texts = tmp_path / "texts.csv"
    texts.write_text("text,label\n" + "a red shirt,red\na blue watch,blue\n" * 6)
    with pytest.raises(ConfigError, match="recipe 'fusion' reads several inputs per example"):
        run_experiment(config({"path": str(texts)}, ["fusion"]), show_progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_multi_inputs_from_a_mapping_fill_missing_names() -> None:
    inputs = MultiInputs.of({"photo": "image", "title": "text"}, {"title": ["a", " "]})
    assert inputs.values == {"photo": [None, None], "title": ["a", None]}
    with pytest.raises(DataError, match="input 'title' has 1 values, the others 2"):
        MultiInputs.of({"photo": "image", "title": "text"}, {"photo": ["x", "y"], "title": ["a"]})


def test_fusion_transfers_from_a_source_with_the_domain_gap_measured(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    """men -> women in miniature: a multi-input source, its inputs checked against the
    target's; budget 0 trains on the source alone, budget 2 adds target labels."""
    from shoptransfer.api import compare

    train, test = products
    inputs = DOMAIN_INPUTS
    config = parse_config(
        {
            "source": {"path": str(train), "inputs": inputs},
            "target": {"path": str(test), "inputs": inputs},
            "recipes": [{"name": "fusion", "text_backbone": tiny_backbone, "epochs": 5}],
            "budgets": [0, 2],
            **tiny_run(tmp_path),
        },
        "fused.yaml",
    )
    results = json.loads((compare(config, show_progress=False) / "results.json").read_text())
    assert [r["status"] for r in results["results"]] == ["ok", "ok"]
    assert results["data"]["source"]["missing_inputs"]["title"] == {"empty cell": 3}
    assert np.isfinite(results["domain_gap"]["proxy_a_distance"])
    renamed = {"photo": config.target.inputs["photo"], "name": config.target.inputs["title"]}
    config.target = config.target.model_copy(update={"inputs": renamed})
    with pytest.raises(DataError, match="the target's inputs .* differ from the source's"):
        compare(config, show_progress=False)


def test_a_json_lines_table_reads_null_as_a_missing_input(tmp_path: Path) -> None:
    product_photo(COLOURS["red"], 0).save(tmp_path / "red.jpg")
    rows = [
        {"image": "red.jpg", "title": "crimson shirt", "label": "red"},
        {"image": None, "title": "navy watch", "label": "blue"},
        {"title": "forest shoe", "label": "green"},
    ]
    table = tmp_path / "products.jsonl"
    table.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    domain = read_multi_input_table(table, INPUTS)
    assert domain.inputs.values["photo"] == [str(tmp_path / "red.jpg"), None, None]
    assert domain.missing == {"photo": {"empty cell": 2}, "title": {}}


def test_fine_tuned_fusion_trains_the_top_layers_only_and_reloads_identically(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    import torch
    from safetensors import safe_open

    from shoptransfer.backbones.image import ImageEncoder
    from shoptransfer.backbones.text import TextEncoder

    train, test = (read_multi_input_table(p, INPUTS) for p in products)
    recipe = fusion(tiny_backbone, train_top=1, epochs=3, batch_size=8, backbone_learning_rate=1e-2)
    recipe.validate(train)
    cache = EmbeddingCache(tmp_path / "cache")
    predictor = recipe.fit(FitData(None, train, cache=cache))
    assert len(cache.bottom) > 0  # the frozen bottoms were computed once per input and kept
    backbones = predictor.model.encoder.backbones
    pretrained = {
        "text": TextEncoder(tiny_backbone, max_length=16),
        "image": ImageEncoder("efficientnet-lite0", image_size=32),
    }
    for kind, before in pretrained.items():
        after = backbones[kind].layers()
        for depth, (old, new) in enumerate(zip(before.layers(), after, strict=True)):
            same = all(
                torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters(), strict=True)
            )
            assert same == (depth < len(after) - 1), (kind, depth)  # only the top layer moved
    probabilities = predictor.predict_proba(test.inputs)
    assert probabilities.shape == (len(test), 3)
    assert predictor.trainable_parameters < sum(p.numel() for p in predictor.model.parameters())
    folder = predictor.save(tmp_path / "model")
    with safe_open(str(folder / "model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    assert not any("_conv_stem" in n or "embeddings" in n for n in names)  # bottoms rebuilt
    assert any("_conv_head" in n for n in names) and any("layer.1." in n for n in names)
    reloaded = load_predictor(folder)
    assert reloaded.trainable_parameters == predictor.trainable_parameters
    assert np.array_equal(reloaded.predict_proba(test.inputs), probabilities)
    # a missing input still predicts: the photo alone, the title alone
    photos = [p for p in test.inputs.values["photo"] if p is not None]
    only_photo = reloaded.predict_proba({"photo": photos})
    only_title = reloaded.predict_proba({"title": ["navy steel watch", "crimson cotton shirt"]})
    assert only_photo.shape == (len(photos), 3) and only_title.shape == (2, 3)
    assert np.allclose(only_photo.sum(axis=1), 1.0) and np.allclose(only_title.sum(axis=1), 1.0)


def test_fine_tuned_fusion_runs_through_compare_and_refuses_what_it_cannot_do(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    from shoptransfer.api import compare

    train, test = products
    inputs = DOMAIN_INPUTS

    def config(recipes: list) -> object:
        return parse_config(
            {
                "target": {"path": str(train), "inputs": inputs},
                "target_test": {"path": str(test), "inputs": inputs},
                "recipes": recipes,
                "budgets": [4],
                **tiny_run(tmp_path),
            },
            "fused.yaml",
        )

    tuned = {"name": "fusion", "text_backbone": tiny_backbone, "train_top": 2, "epochs": 2}
    results = json.loads(
        (compare(config([tuned]), show_progress=False) / "results.json").read_text()
    )
    assert [r["status"] for r in results["results"]] == ["ok"]
    for refused, message in [
        ({"combine": "stacking"}, "expected combine 'concat' and solver 'adamw'"),
        ({"solver": "lbfgs"}, "expected combine 'concat' and solver 'adamw'"),
        ({"train_top": 3}, "has 3 layers .*expected train_top at most 2"),
    ]:
        with pytest.raises(ConfigError, match=f"recipe 'fusion': train_top .*{message}"):
            compare(config([{**tuned, **refused}]), show_progress=False)


def test_fine_tuned_fusion_refuses_several_processes(
    products: tuple[Path, Path], tiny_backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shoptransfer.recipes.fusion as fusion_module

    train = read_multi_input_table(products[0], INPUTS)
    monkeypatch.setattr(fusion_module, "processes", lambda: (0, 2))
    with pytest.raises(ConfigError, match="train_top trains in one process"):
        fusion(tiny_backbone, train_top=1).fit(FitData(None, train))


def test_examples_of_several_inputs_batch_subset_and_join_in_step() -> None:
    from shoptransfer.training import Examples

    kinds = {"photo": "image", "title": "text"}
    first = MultiInputs(kinds, {"photo": ["a.jpg", None], "title": ["red shirt", "blue watch"]})
    second = MultiInputs(kinds, {"photo": [None], "title": ["green shoe"]})
    joined = Examples.concatenate(
        [Examples(first, np.array([0, 1])), Examples(second, np.array([2]))]
    )
    assert joined.inputs.values["title"] == ["red shirt", "blue watch", "green shoe"]
    part = joined.subset([2, 0])
    assert part.inputs.values["photo"] == [None, "a.jpg"] and part.labels.tolist() == [2, 0]
    batches = list(joined.batches(2))
    assert [b["inputs"].values["title"] for b in batches] == [
        ["red shirt", "blue watch"],
        ["green shoe"],
    ]
    assert [b["labels"].tolist() for b in batches] == [[0, 1], [2]]


def test_fusion_aligns_the_fused_embedding_with_unlabelled_target_examples(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    """CORAL and DANN on the fused embedding (the mlp head's hidden layer): each run is ok,
    and CORAL's loss changes the model (the same batches at weight 0 predict otherwise)."""
    from shoptransfer.api import compare, predict

    train, test = products
    inputs = DOMAIN_INPUTS
    fused = {
        "name": "fusion",
        "text_backbone": tiny_backbone,
        "epochs": 5,
        "head": "mlp",
        "hidden_size": 16,
    }
    config = parse_config(
        {
            "source": {"path": str(train), "inputs": inputs},
            "target": {"path": str(test), "inputs": inputs},
            "recipes": [
                {**fused, "label": "off", "objectives": [{"name": "coral", "weight": 0.0}]},
                {**fused, "label": "coral", "objectives": [{"name": "coral", "weight": 10.0}]},
                {**fused, "label": "dann", "objectives": ["dann"]},
            ],
            "budgets": [0],
            **tiny_run(tmp_path),
        },
        "fused.yaml",
    )
    run_dir = compare(config, show_progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["status"] for r in results["results"]] == ["ok", "ok", "ok"]
    examples = {"photo": [str(test.parent / "blue-1-3.jpg")], "title": ["navy steel watch"]}
    scores = {
        label: predict(run_dir, examples, model=f"{label}-k0-seed0")[1]
        for label in ("off", "coral", "dann")
    }
    # the same batches, source and target, with and without CORAL's loss
    assert not np.allclose(scores["off"], scores["coral"])
    assert np.allclose(scores["dann"].sum(), 1.0)


@pytest.mark.parametrize(
    "options, words",
    [
        (
            {"solver": "lbfgs", "head": "linear", "objectives": ["coral"]},
            "expected combine 'concat' and solver",
        ),
        ({"combine": "stacking", "objectives": ["mmd"]}, "expected combine 'concat' and solver"),
        ({"objectives": ["l2-sp"]}, "'l2-sp' is not an alignment objective"),
        ({"objectives": ["mlm"]}, "'mlm' is not an alignment objective"),
        ({"objectives": ["nope"]}, "nope"),
        ({"objectives": ["coral"], "head": "linear"}, "nothing below the head trains"),
    ],
)
def test_fusion_refuses_objectives_it_cannot_train_in_one_line(
    options: dict, words: str, products: tuple[Path, Path], tiny_backbone: str
) -> None:
    train = read_multi_input_table(products[0], INPUTS)
    with pytest.raises(ConfigError, match=words) as caught:
        fusion(tiny_backbone, **{"head": "mlp", **options}).validate(train)
    assert "\n" not in str(caught.value)


def test_fine_tuned_fusion_aligns_with_an_objective(
    products: tuple[Path, Path], tiny_backbone: str, tmp_path: Path
) -> None:
    """train_top with DANN: the backbones' top layers train under the alignment loss too."""
    train, test = (read_multi_input_table(p, INPUTS) for p in products)
    recipe = fusion(tiny_backbone, train_top=1, epochs=2, batch_size=8, objectives=["dann"])
    recipe.validate(train)
    unlabeled = test.without_labels()
    cache = EmbeddingCache(tmp_path / "cache")
    predictor = recipe.fit(FitData(train, None, unlabeled=unlabeled, cache=cache))
    probabilities = predictor.predict_proba(test.inputs)
    assert probabilities.shape == (len(test), 3) and np.allclose(probabilities.sum(axis=1), 1)
    with pytest.raises(DataError, match=r"objectives \['dann'\] align with unlabeled target"):
        recipe.fit(FitData(train, None, cache=cache))
