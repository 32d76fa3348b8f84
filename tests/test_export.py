"""ONNX export: the exported graph predicts what PyTorch predicts, for every kind of neural
model; the runtime needs neither torch nor our training code; mistakes are one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shoptransfer.api import export_model, load_model, predict, run_experiment
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.config import load_config
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.export.exporter import export_onnx, text_settings, tokenizer_json
from shoptransfer.export.runtime import (
    EXPORT_FILE,
    FP32_FILE,
    INT8_FILE,
    TOKENIZER_FILE,
    ImageReader,
    OnnxPredictor,
    TextReader,
)

from .conftest import NEGATIVE, POSITIVE, write_experiment, write_reviews_csv

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = [
    "great pan, works perfectly",
    "terrible kettle, broke after a day and the handle fell off, do not buy it ever",
    "ok",
    "excellent " * 40,  # longer than max_length: cut the same way as PyTorch cuts it
]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> Path:
    """A classification run with a tiny random BERT: a model of each kind export handles,
    and a TF-IDF model it does not."""
    tmp_path = tmp_path_factory.mktemp("text-run")
    write_reviews_csv(tmp_path / "books.csv", n_repeat=2, prefix="book: ")
    write_reviews_csv(tmp_path / "kitchen.csv", n_repeat=3, prefix="pan: ")
    config = {
        "name": "reviews",
        "source": {"path": "books.csv", "text": "review", "label": "sentiment"},
        "target": {"path": "kitchen.csv", "text": "review", "label": "sentiment"},
        "recipes": [
            "scratch-tfidf",
            {"name": "frozen-features", "epochs": 2},
            {"name": "fine-tune", "epochs": 1, "target_epochs": 1, "truncation": "head+tail"},
            {"name": "lora", "epochs": 1, "learning_rate": 1e-2},
            {"name": "ia3", "epochs": 1, "learning_rate": 1e-2},
        ],
        "budgets": [8],
    }
    path = write_experiment(tmp_path, tiny_backbone, config)
    return run_experiment(load_config(path), show_progress=False)


@pytest.mark.parametrize("label", ["frozen-features", "fine-tune", "lora", "ia3"])
def test_onnx_predicts_what_pytorch_predicts(text_run: Path, label: str) -> None:
    folder, card = export_model(text_run, model=label, quantize="int8")
    assert folder == text_run / "exports" / f"{label}-k8-seed0"
    assert {p.name for p in folder.iterdir()} == {
        FP32_FILE,
        INT8_FILE,
        TOKENIZER_FILE,
        EXPORT_FILE,
    }
    assert json.loads((folder / EXPORT_FILE).read_text()) == card
    check = card["check"]
    assert check["examples"] == 24 and "target test set 'kitchen'" in check["data"]
    assert check["fp32"]["agreement"] == 1.0 and check["fp32"]["meets_goal"]
    assert check["fp32"]["max_probability_difference"] < 1e-4
    # int8 is recorded, whatever it scores on a random network
    assert 0.0 <= check["int8"]["agreement"] <= 1.0
    assert check["int8"]["max_probability_difference"] < 1.0
    for part in ("pytorch", "fp32", "int8"):
        assert {"accuracy", "macro_f1"} <= set(check[part]["metrics"])
    # the same as the run measured with PyTorch
    results = json.loads((text_run / "results.json").read_text())
    recorded = next(r for r in results["results"] if r["label"] == label)["metrics"]
    assert check["pytorch"]["metrics"]["macro_f1"] == pytest.approx(recorded["macro_f1"])
    assert check["fp32"]["metrics"] == pytest.approx(check["pytorch"]["metrics"])
    assert card["files"][INT8_FILE]["bytes"] < card["files"][FP32_FILE]["bytes"]
    assert card["opset"] == 17 and card["versions"]["onnxruntime"]
    # on new texts too, batched across different lengths
    pytorch = load_model(text_run, f"{label}-k8-seed0")
    onnx = OnnxPredictor(folder, precision="fp32", batch_size=3)
    assert np.abs(onnx.predict_proba(TEXTS) - pytorch.predict_proba(TEXTS)).max() < 1e-4
    assert onnx.predict(TEXTS) == pytorch.predict(TEXTS)
    assert OnnxPredictor(folder).precision == "int8"  # auto: the quantised model when there


def test_lora_is_merged_into_plain_weights(text_run: Path) -> None:
    import onnx

    folder, card = export_model(text_run, model="lora")
    assert card["adapter_merged"] == "lora" and card["onnx_precision"] == ["fp32"]
    graph = onnx.load(str(folder / FP32_FILE)).graph
    names = [i.name for i in graph.initializer] + [n.name for n in graph.node]
    assert names and not [name for name in names if "lora" in name.lower()]
    assert not (folder / INT8_FILE).exists()  # a re-export without int8 drops the old one
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left
    _, card = export_model(text_run, model="ia3")
    assert card["adapter_merged"] == "ia3"


def test_models_over_vectors_export_too(tmp_path: Path) -> None:
    from shoptransfer.data.domain import FeatureDomain
    from shoptransfer.export.exporter import HeldOut
    from shoptransfer.recipes import FitData, make_recipe

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 5)).astype(np.float32)
    labels = ["a" if v[0] + v[1] > 0 else "b" for v in vectors]
    domain = FeatureDomain("market", vectors[:40], labels[:40])
    for name in ("frozen-features", "mlp"):
        predictor = make_recipe(name, epochs=3).fit(FitData(domain))
        card = export_onnx(predictor, tmp_path / name, held_out=HeldOut(vectors[40:], "20 rows"))
        assert card["reads"] == "vectors" and card["inputs"] == {"features": ["batch", 5]}
        assert card["check"]["fp32"]["agreement"] == 1.0, name
        onnx = OnnxPredictor(tmp_path / name)
        assert np.abs(onnx.predict_proba(vectors) - predictor.predict_proba(vectors)).max() < 1e-5


@pytest.mark.parametrize("truncation", ["head", "head+tail"])
def test_runtime_tokenizes_as_the_encoder_does(
    tmp_path: Path, tiny_backbone: str, truncation: str
) -> None:
    encoder = TextEncoder(tiny_backbone, max_length=12, truncation=truncation, pretrained=False)
    (tmp_path / TOKENIZER_FILE).write_text(tokenizer_json(encoder))
    reader = TextReader(tmp_path, text_settings(encoder))
    texts = [*TEXTS, "Ünïcode, émojis 🙂 and   spaces", "x"]
    ids = reader.ids(texts)
    expected = encoder.tokenize(texts)
    assert reader.batch(ids)["input_ids"].tolist() == expected["input_ids"].tolist()
    assert reader.batch(ids)["attention_mask"].tolist() == expected["attention_mask"].tolist()


def test_runtime_does_not_import_torch(text_run: Path) -> None:
    folder, _ = export_model(text_run, model="fine-tune")
    script = (
        "import sys\n"
        "from shoptransfer.export.runtime import OnnxPredictor\n"
        f"model = OnnxPredictor({str(folder)!r})\n"
        "print(model.predict(['great pan', 'awful kettle, broke']))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    source = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {
        f"[{a!r}, {b!r}]" for a in ("pos", "neg") for b in ("pos", "neg")
    }


def test_cli_export_then_predict_with_onnx(text_run: Path) -> None:
    from shoptransfer.cli import app

    runner = CliRunner()
    best = runner.invoke(app, ["export", str(text_run)])  # the run's best is TF-IDF
    assert isinstance(best.exception, ConfigError)
    message = str(best.exception)
    assert "scratch-tfidf-k8-seed0, the run's best model, is a tfidf-logistic model" in message
    args = ["export", str(text_run), "--model", "fine-tune", "--format", "onnx"]
    done = runner.invoke(app, [*args, "--quantize", "int8"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(text_run / "exports" / "fine-tune-k8-seed0")
    assert "agreement 100.0 %" in done.stderr and "onnx int8" in done.stderr
    texts = [POSITIVE[0], NEGATIVE[0]]
    args = ["predict", str(text_run), "--model", "fine-tune-k8-seed0", "--json"]
    shown = runner.invoke(app, [*args, "--onnx", "--text", texts[0], "--text", texts[1]])
    assert shown.exit_code == 0, shown.output
    assert "(ONNX export)" in shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    labels, probabilities, classes = predict(text_run, texts, "fine-tune-k8-seed0", onnx=True)
    assert [line["label"] for line in lines] == labels and classes == ["neg", "pos"]
    int8 = OnnxPredictor(text_run / "exports" / "fine-tune-k8-seed0", precision="int8")
    assert np.allclose(probabilities, int8.predict_proba(texts))  # int8: the one exported


def test_export_mistakes_are_one_line_errors(text_run: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"--model 'nope': not a recipe label.*labels: \["):
        export_model(text_run, model="nope")
    with pytest.raises(
        ConfigError, match=r"a tfidf-logistic model; ONNX export supports the neural"
    ):
        export_model(text_run, model="scratch-tfidf")
    with pytest.raises(ConfigError, match="--quantize 'int4'"):
        export_model(text_run, model="fine-tune", quantize="int4")
    with pytest.raises(ConfigError, match="--format 'tflite'"):
        export_model(text_run, model="fine-tune", format="tflite")
    shutil.rmtree(text_run / "exports" / "frozen-features-k8-seed0", ignore_errors=True)
    with pytest.raises(DataError, match=r"no ONNX export of model frozen-features-k8-seed0"):
        predict(text_run, ["great"], model="frozen-features-k8-seed0", onnx=True)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"'onnxruntime'.*pip install 'shoptransfer\[export\]'"):
        export_model(text_run, model="fine-tune")


def test_damaged_export_is_named(text_run: Path) -> None:
    folder, _ = export_model(text_run, model="frozen-features")
    with (folder / FP32_FILE).open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(DataError, match=r"model.onnx: 1000 bytes, but export.json records"):
        OnnxPredictor(folder)
    (folder / EXPORT_FILE).write_text("{")
    with pytest.raises(DataError, match="export.json: not valid JSON"):
        OnnxPredictor(folder)


def test_cli_errors_exit_2_with_one_line(text_run: Path, tmp_path: Path) -> None:
    from .test_runs_and_cli import cli

    done = cli("export", str(text_run), "--model", "scratch-tfidf", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "a tfidf-logistic model" in done.stderr


# -- multi-task, regression -------------------------------------------------------------------


def test_multi_task_heads_export_as_one_output_each(tmp_path: Path, tiny_backbone: str) -> None:
    from .test_multitask import write_config

    recipes = [{"name": "frozen-features", "epochs": 3}]
    config = load_config(write_config(tmp_path, tiny_backbone, recipes=recipes, budgets=[8]))
    run_dir = run_experiment(config, show_progress=False)
    folder, card = export_model(run_dir, quantize="int8")
    assert card["outputs"]["names"] == ["probabilities_0", "probabilities_1"]
    assert card["outputs"]["tasks"] == {
        "sentiment": ["neg", "pos"],
        "category": ["garden", "kitchen"],
    }
    check = card["check"]
    assert check["fp32"]["agreement"] == 1.0 and set(check["fp32"]["heads"]) == {
        "sentiment",
        "category",
    }
    assert check["fp32"]["metrics"] == pytest.approx(check["pytorch"]["metrics"])
    assert {"sentiment/macro_f1", "category/macro_f1", "macro_f1"} <= set(check["fp32"]["metrics"])
    onnx, pytorch = OnnxPredictor(folder, "fp32"), load_model(run_dir)
    exported, expected = onnx.predict_proba(TEXTS), pytorch.predict_proba(TEXTS)
    assert set(exported) == {"sentiment", "category"}
    for head in expected:
        assert np.abs(exported[head] - expected[head]).max() < 1e-4
    assert onnx.predict(TEXTS) == pytorch.predict(TEXTS)
    labels, _, classes = predict(run_dir, TEXTS, onnx=True)
    assert set(labels) == {"sentiment", "category"} and classes["category"] == ["garden", "kitchen"]


def test_regression_exports_one_number(tmp_path: Path, tiny_backbone: str) -> None:
    from .test_regression import write_config

    recipes = [{"name": "fine-tune", "epochs": 1, "target_epochs": 1}]
    config = load_config(write_config(tmp_path, tiny_backbone, recipes=recipes, budgets=[12]))
    run_dir = run_experiment(config, show_progress=False)
    folder, card = export_model(run_dir)
    assert card["outputs"] == {"kind": "value", "names": ["value"]}
    check = card["check"]
    assert check["fp32"]["max_value_difference"] < 1e-3 and "agreement" not in check["fp32"]
    assert check["fp32"]["metrics"]["rmse"] == pytest.approx(check["pytorch"]["metrics"]["rmse"])
    onnx, pytorch = OnnxPredictor(folder), load_model(run_dir)
    assert np.allclose(onnx.predict(TEXTS), pytorch.predict(TEXTS), atol=1e-3)
    with pytest.raises(DataError, match="predicts numbers"):
        onnx.predict_proba(TEXTS)
    values, _, classes = predict(run_dir, TEXTS, onnx=True)
    assert classes == [] and len(values) == len(TEXTS)
    # without the run's data the export is written, and says why it was not checked
    (tmp_path / "kitchen.csv").rename(tmp_path / "moved.csv")
    folder, card = export_model(run_dir)
    assert card["check"] == {
        "skipped": f"the run's test data could not be read again: {tmp_path / 'kitchen.csv'}: "
        "file not found"
    }
    assert OnnxPredictor(folder).predict(TEXTS) == pytest.approx(values)


# -- images -----------------------------------------------------------------------------------


def test_runtime_preprocesses_images_as_the_encoder_does(tmp_path: Path) -> None:
    from PIL import Image

    from shoptransfer.data.pixels import ImagePreprocessing, load_rgb

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    photo.save(tmp_path / "wide.jpg")
    photo.convert("L").save(tmp_path / "grey.png")
    photo.convert("P").save(tmp_path / "palette.png")
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 255, (30, 50), dtype=np.uint8)))
    rgba.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "tall-transparent.png")
    (tmp_path / "preprocessing.json").write_text('{"size": 24, "mean": 127.0, "std": 128.0}')
    reader = ImageReader(tmp_path)
    for name in ("wide.jpg", "grey.png", "palette.png", "tall-transparent.png"):
        expected = ImagePreprocessing(24)(load_rgb(tmp_path / name))
        assert np.array_equal(reader.pixels(str(tmp_path / name)), expected), name
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        reader.pixels(str(tmp_path / "broken.jpg"))


def test_image_models_export_with_their_preprocessing(tmp_path: Path) -> None:
    from .test_images import write_catalogue

    write_catalogue(tmp_path / "men", per_class=6, seed=0)
    write_catalogue(tmp_path / "women", per_class=6, seed=1)
    lora = {"name": "lora", "epochs": 1, "peft_target_modules": ["_project_conv", "_conv_head"]}
    config = {
        "name": "photos",
        "source": {"path": "men"},
        "target": {"path": "women"},
        "image_size": 32,
        "recipes": ["frozen-features", {"name": "fine-tune", "epochs": 1}, lora],
        "budgets": [2],
    }
    path = write_experiment(tmp_path, "efficientnet-lite0", config)
    run_dir = run_experiment(load_config(path), show_progress=False)
    test = sorted(str(p) for p in (tmp_path / "women").rglob("*.jpg"))
    for label in ("frozen-features", "fine-tune", "lora"):
        folder, card = export_model(run_dir, model=label, quantize="int8")
        assert card["reads"] == "images" and card["inputs"] == {"pixels": ["batch", 3, 32, 32]}
        settings = json.loads((folder / "preprocessing.json").read_text())
        assert (settings["size"], settings["mean"], settings["std"]) == (32, 127.0, 128.0)
        assert card["check"]["fp32"]["agreement"] == 1.0, label
        assert card["check"]["fp32"]["max_probability_difference"] < 1e-4, label
        assert "int8" in card["check"]
        # convolutions: static int8, ranges calibrated on the target pool's photos (half of 18)
        assert card["quantization"].startswith("onnxruntime static quantisation (QDQ)")
        assert "calibrated on 9 training images" in card["quantization"]
        pytorch = load_model(run_dir, f"{label}-k2-seed0")
        onnx = OnnxPredictor(folder, "fp32", batch_size=5)
        assert np.abs(onnx.predict_proba(test) - pytorch.predict_proba(test)).max() < 1e-4
    assert card["adapter_merged"] == "lora"
    predictor = load_model(run_dir, "frozen-features-k2-seed0")
    with pytest.raises(ConfigError, match="calibrated on training images"):
        export_onnx(predictor, tmp_path / "uncalibrated", quantize="int8")
    assert not (tmp_path / "uncalibrated").exists()


def test_predict_input_streams_an_export_without_torch(text_run: Path, tmp_path: Path) -> None:
    """``predict --input --onnx`` scores a file with the export alone; a PyTorch model streams
    the same file to what ``api.predict`` gives it in one batch."""
    export_model(text_run, model="fine-tune")
    source = tmp_path / "in.txt"
    source.write_text(f"{POSITIVE[0]}\n\n{NEGATIVE[0]}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    script = (
        "import sys\n"
        "from shoptransfer.cli import main\n"
        f"sys.argv = ['shoptransfer', 'predict', {str(text_run)!r}, '--model', "
        f"'fine-tune-k8-seed0', '--onnx', '--input', {str(source)!r}, '-o', {str(out)!r}, "
        "'--chunk-size', '2']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    labels, _, _ = predict(text_run, [POSITIVE[0], NEGATIVE[0]], "fine-tune-k8-seed0", onnx=True)
    assert [row["label"] for row in rows] == [labels[0], None, labels[1]]
    from shoptransfer.cli import app

    out = tmp_path / "torch.csv"
    args = ["predict", str(text_run), "--model", "frozen-features-k8-seed0", "--input"]
    done = CliRunner().invoke(app, [*args, str(source), "-o", str(out), "--chunk-size", "1"])
    assert done.exit_code == 0, done.output
    labels, _, _ = predict(text_run, [POSITIVE[0], NEGATIVE[0]], "frozen-features-k8-seed0")
    written = out.read_text().splitlines()
    assert [line.split(",")[1] for line in written[1:]] == [labels[0], "", labels[1]]


# -- sequential recommenders ------------------------------------------------------------------


@pytest.fixture(scope="module")
def walks_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> Path:
    """A recommendation run with the two sequential recommenders export handles (SASRec cut to
    four history items, so that longer histories are cut) and three models it does not."""
    from .test_recommendation_run import write_config

    tmp_path = tmp_path_factory.mktemp("walks")
    small = {"hidden": 16, "epochs": 2, "batch_size": 32}
    recipes = [
        "popularity",
        "item-knn",
        {"name": "bpr", "epochs": 1, "hidden": 8},
        {"name": "sasrec", "max_history": 4, **small},
        {"name": "text-seq-ids", "backbone": tiny_backbone, "source_epochs": 1, **small},
    ]
    return run_experiment(
        load_config(write_config(tmp_path, tiny_backbone, recipes=recipes)), show_progress=False
    )


@pytest.mark.parametrize("label", ["sasrec", "text-seq-ids"])
def test_sequential_recommenders_rank_as_pytorch_ranks(walks_run: Path, label: str) -> None:
    from shoptransfer.backbones import EmbeddingCache
    from shoptransfer.data.interactions import read_interaction_domain
    from shoptransfer.evaluation.ranking import evaluate_ranking
    from shoptransfer.export.runtime import ITEM_VECTORS_FILE, ITEMS_FILE, OnnxRanker
    from shoptransfer.recommenders.base import load_ranker

    folder, card = export_model(walks_run, model=label, quantize="int8")
    assert folder == walks_run / "exports" / f"{label}-kall-seed0"
    assert {p.name for p in folder.iterdir()} == {
        FP32_FILE,
        INT8_FILE,
        ITEMS_FILE,
        ITEM_VECTORS_FILE,
        EXPORT_FILE,
    }
    assert json.loads((folder / EXPORT_FILE).read_text()) == card
    assert card["reads"] == "item-histories" and card["inputs"] == {"ids": ["batch", "sequence"]}
    check = card["check"]
    assert check["examples"] == 30 and "target test cases of 'shoplog'" in check["data"]
    fp32 = check["fp32"]
    assert fp32["top10_agreement"] == 1.0 and fp32["top1_agreement"] == 1.0 and fp32["meets_goal"]
    assert fp32["max_score_difference"] < 1e-4
    assert fp32["metrics"] == pytest.approx(check["pytorch"]["metrics"])
    assert 0.0 <= check["int8"]["top10_agreement"] <= 1.0 and "metrics" in check["int8"]
    # PyTorch's metrics are the reloaded model's own
    config = load_config(walks_run / "config.yaml")
    domain = read_interaction_domain(config.target)
    ranker = load_ranker(
        walks_run / "models" / f"{label}-kall-seed0",
        domain,
        EmbeddingCache(Path(config.cache_dir) / "embeddings"),
    )
    expected = evaluate_ranking(ranker.scores, domain.test, ks=(10,))
    assert check["pytorch"]["metrics"] == {
        "recall@10": expected["recall@10"],
        "ndcg@10": expected["ndcg@10"],
    }
    # any batch of histories: empty, short, longer than the model reads, of unequal lengths
    histories = [np.array([], dtype=np.int64), np.array([3]), np.arange(1, 11), np.array([5, 2])]
    onnx = OnnxRanker(folder, precision="fp32", batch_size=3)
    exported = onnx.scores(histories)
    reference = ranker.scores(histories, np.zeros(len(histories), dtype=np.int64)).numpy()
    assert np.abs(exported[:, 1:] - reference[:, 1:]).max() < 1e-4
    for history, row in zip(histories, exported):  # alone, as in a batch
        assert np.abs(onnx.scores([history])[0] - row).max() < 1e-4
    assert OnnxRanker(folder).precision == "int8"


def test_recommend_with_the_export(walks_run: Path) -> None:
    from shoptransfer.api import recommend
    from shoptransfer.cli import app

    exported = CliRunner().invoke(app, ["export", str(walks_run), "--model", "text-seq-ids"])
    assert exported.exit_code == 0, exported.output
    assert "onnx fp32 (0.1 MiB): same top-10 100.0 %, same top-1 100.0 %" in exported.stderr
    pytorch = recommend(walks_run, "shopu3", k=4, recipe="text-seq-ids")
    onnx = recommend(walks_run, "shopu3", k=4, recipe="text-seq-ids", onnx=True)
    assert [i["item"] for i in onnx["items"]] == [i["item"] for i in pytorch["items"]]
    for mine, theirs in zip(onnx["items"], pytorch["items"]):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-4)
        assert [r["item"] for r in mine["because"]] == [r["item"] for r in theirs["because"]]
    assert onnx["explanation"] == pytorch["explanation"]
    args = ["recommend", str(walks_run), "--user", "shopu3", "--k", "4", "--recipe"]
    shown = CliRunner().invoke(app, [*args, "text-seq-ids", "--onnx", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["items"] == onnx["items"]
    assert (
        "model text-seq-ids (seed 0, ONNX export, fp32)"
        in CliRunner().invoke(app, [*args, "text-seq-ids", "--onnx"]).stdout
    )
    shutil.rmtree(walks_run / "exports" / "sasrec-kall-seed0", ignore_errors=True)
    with pytest.raises(DataError, match=r"no ONNX export of model sasrec-kall-seed0; make one"):
        recommend(walks_run, "shopu3", recipe="sasrec", onnx=True)


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("popularity", "a popularity model has no network to export"),
        ("item-knn", "a item-knn model has no network to export"),
        ("bpr", "it scores the users it was trained on"),
    ],
)
def test_recommenders_without_a_history_encoder_say_why(
    walks_run: Path, label: str, why: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        export_model(walks_run, model=label)
    message = str(raised.value)
    assert "\n" not in message and f"model {label}-kall-seed0 cannot be exported" in message
    assert why in message and "['sasrec-kall-seed0', 'text-seq-ids-kall-seed0']" in message


def test_ranker_runtime_does_not_import_torch(walks_run: Path) -> None:
    from shoptransfer.api import Recommender

    folder, _ = export_model(walks_run, model="sasrec")
    script = (
        "import sys\n"
        "from shoptransfer.export.runtime import OnnxRanker\n"
        f"ranker = OnnxRanker({str(folder)!r}, precision='fp32')\n"
        "print([item for item, _ in ranker.recommend(['shop1', 'shop2', 'shop3'], k=3)])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    source = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = Recommender(walks_run, "sasrec").recommend(history=["shop1", "shop2", "shop3"], k=3)
    assert done.stdout.strip() == str([item["item"] for item in expected["items"]])
