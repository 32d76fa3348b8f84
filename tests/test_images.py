"""Images: preprocessing, the EfficientNet-Lite backbone, image domains and image recipes."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shoptransfer.backbones import EmbeddingCache, make_encoder
from shoptransfer.backbones.image import ImageEncoder
from shoptransfer.data.images import ImageDomain, image_files, read_image_folder, read_image_table
from shoptransfer.data.pixels import ImagePreprocessing, load_rgb
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes import FitData, load_predictor, make_recipe
from shoptransfer.training import Examples

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}


def product_photo(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (60, 80)):
    """A coloured 'product' on a white background, at a random place."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size[1], size[0], 3), 255, dtype=np.uint8)
    top, left = rng.integers(5, 25), rng.integers(5, 20)
    patch = np.clip(np.array(colour) + rng.normal(0, 20, (30, 30, 3)), 0, 255)
    pixels[top : top + 30, left : left + 30] = patch.astype(np.uint8)
    return Image.fromarray(pixels)


def write_catalogue(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    for c, (name, colour) in enumerate(COLOURS.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            product_photo(colour, seed * 1000 + c * 100 + i).save(folder / f"{i}.jpg")
    return root


# -- preprocessing ----------------------------------------------------------------------------


def test_preprocessing_pads_to_a_square_and_normalises() -> None:
    image = product_photo(COLOURS["red"], 0)
    pixels = ImagePreprocessing(32)(image)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.float32
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0
    # the 60x80 photo is padded left and right with its white border, not cropped
    assert np.allclose(pixels[:, :, 0], (255 - 127) / 128, atol=0.02)
    assert pixels[0].max() > 0.5 and pixels[1].min() < -0.4  # the red product is still there


def test_augmentation_repeats_with_its_seed_and_varies_between_seeds() -> None:
    image = product_photo(COLOURS["blue"], 1)
    prepare = ImagePreprocessing(48)
    first, again = prepare(image, augment=True, seed=3), prepare(image, augment=True, seed=3)
    assert np.array_equal(first, again)
    others = [prepare(image, augment=True, seed=s) for s in range(4, 9)]
    assert any(not np.allclose(first, other) for other in others)
    assert not np.allclose(prepare(image), first)


def test_grey_palette_and_transparent_images_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (20, 20), 100).save(tmp_path / "grey.png")
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "clear.png")
    Image.new("P", (20, 20)).save(tmp_path / "palette.gif")
    grey = np.asarray(load_rgb(tmp_path / "grey.png"))
    assert grey.shape == (20, 20, 3) and (grey == 100).all()
    assert (np.asarray(load_rgb(tmp_path / "clear.png")) == 255).all()  # on white
    assert load_rgb(tmp_path / "palette.gif").mode == "RGB"


# -- reading image domains ----------------------------------------------------------------------


def test_image_folder_skips_and_counts_what_it_cannot_use(tmp_path: Path) -> None:
    root = write_catalogue(tmp_path / "shop", per_class=3)
    Image.new("L", (40, 40), 90).save(root / "red" / "grey.png")
    Image.new("RGBA", (40, 40), (0, 0, 255, 128)).save(root / "blue" / "alpha.png")
    Image.new("RGB", (20, 24), (0, 200, 0)).save(root / "green" / "small.png")
    Image.new("RGB", (4, 4)).save(root / "green" / "tiny.png")
    whole = (root / "red" / "0.jpg").read_bytes()
    (root / "red" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "blue" / "notes.txt").write_text("not a photo")
    (root / "blue" / "fake.jpg").write_text("not a photo either")
    (root / "blue" / ".hidden.jpg").write_text("ignored")

    domain = read_image_folder(root)
    assert domain.holds == "images" and domain.name == "shop"
    assert len(domain) == 3 * 3 + 3  # the good photos, plus grey, alpha and small
    assert domain.class_counts() == {"blue": 4, "green": 4, "red": 4}
    assert domain.dropped == {
        "corrupt or truncated image": 1,
        "not an image": 2,
        "smaller than 8 px": 1,
    }
    assert domain.converted == {
        "grey-scale (made RGB)": 1,
        "transparent (on white, made RGB)": 1,
        "smaller than 32 px (upscaled)": 1,
    }
    # a subset keeps what the reader reported
    part = domain.subset([0, 1])
    assert isinstance(part, ImageDomain) and part.dropped == domain.dropped


def test_missing_folder_file_or_column_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        read_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no sub-folders"):
        read_image_folder(tmp_path / "empty")
    root = write_catalogue(tmp_path / "shop", per_class=1)
    table = tmp_path / "photos.csv"
    table.write_text("path,kind\nshop/red/0.jpg,red\nshop/blue/9.jpg,blue\n")
    with pytest.raises(DataError, match=r"photos.csv line 3: image file not found: .*9.jpg"):
        read_image_table(table, image="path", label="kind")
    with pytest.raises(DataError, match="no column 'image'"):
        read_image_table(table, label="kind")
    table.write_text("path,kind\nshop/red/0.jpg,red\n,blue\nshop/blue/0.jpg,\n")
    domain = read_image_table(table, image="path", label="kind")
    assert domain.paths == [str(root / "red" / "0.jpg")]
    assert domain.dropped == {"empty image path": 1, "missing label": 1}


def test_image_files_searches_folders_and_reports_skipped(tmp_path: Path) -> None:
    root = write_catalogue(tmp_path / "shop", per_class=2)
    (root / "red" / "readme.txt").write_text("hello")
    paths, skipped = image_files([root, root / "red" / "0.jpg"])
    assert len(paths) == 7 and skipped == {"not an image": 1}
    with pytest.raises(DataError, match="no such file or folder"):
        image_files([tmp_path / "missing.jpg"])


# -- the backbone -------------------------------------------------------------------------------


def test_batches_are_decoded_in_worker_processes_in_order(tmp_path: Path) -> None:
    root = write_catalogue(tmp_path / "shop", per_class=24)  # 72 images: workers are used
    domain = read_image_folder(root)
    encoder = ImageEncoder("efficientnet-lite0", image_size=32, pretrained=False)
    examples = Examples(encoder.inputs(domain.paths), np.arange(len(domain)))
    batches = list(examples.batches(16))
    assert [len(b["pixels"]) for b in batches] == [16, 16, 16, 16, 8]
    expected = encoder.preprocessing(load_rgb(domain.paths[17]))
    assert np.allclose(batches[1]["pixels"][1].numpy(), expected)
    assert batches[1]["labels"][1] == 17
    shuffled = list(examples.batches(16, torch.Generator().manual_seed(0)))  # augmented
    assert sorted(int(i) for b in shuffled for i in b["labels"]) == list(range(len(domain)))


def test_batch_norm_statistics_stay_pretrained_and_scratch_learns_them() -> None:
    pretrained = ImageEncoder("efficientnet-lite0", image_size=32)
    assert len(pretrained.layers()) == 18  # stem, 16 blocks, head convolution
    before = pretrained.model._bn1.running_mean.clone()
    pretrained.train()
    pretrained(torch.randn(4, 3, 32, 32) * 3)
    assert torch.equal(pretrained.model._bn1.running_mean, before)
    assert pretrained.model._bn1.weight.requires_grad  # the scale and shift still train

    scratch = ImageEncoder("efficientnet-lite0", image_size=32, pretrained=False)
    for layer in scratch.layers()[:5]:
        layer.requires_grad_(False)
    frozen, learning = scratch.model._bn0, scratch.model._bn1
    frozen_before, learning_before = frozen.running_mean.clone(), learning.running_mean.clone()
    scratch.train()
    scratch(torch.randn(4, 3, 32, 32) * 3)
    assert torch.equal(frozen.running_mean, frozen_before)
    assert not torch.equal(learning.running_mean, learning_before) and learning.momentum == 0.1


def test_cached_bottom_layers_give_the_full_forward(catalogue) -> None:
    train, _ = catalogue
    full = ImageEncoder("efficientnet-lite0", image_size=32).eval()
    cached = ImageEncoder("efficientnet-lite0", image_size=32)
    for layer in cached.layers()[:12]:
        layer.requires_grad_(False)
    cached.cache_frozen_bottom(12)
    inputs = cached.inputs(train.paths[:10])
    assert not inputs.augment  # stored states come from unaugmented images
    batch = next(Examples(inputs).batches(10))
    cached.train()
    with torch.no_grad():
        assert torch.allclose(cached.eval().embed(batch), full(batch["pixels"]), atol=1e-2)
    cached.train()
    features = cached.embed(batch)  # from the store: only the top layers run
    features.sum().backward()
    assert cached.model._conv_stem.weight.grad is None
    assert cached.model._conv_head.weight.grad is not None
    with torch.no_grad():  # image files: decoded where their bottom is not stored yet
        cached.eval()
        from_files = cached.embed_files(train.paths[:12])
        assert torch.allclose(from_files[:10], cached.embed(batch), atol=1e-5)
        assert torch.allclose(from_files, full.embed_files(train.paths[:12]), atol=1e-2)


@pytest.mark.integration
def test_tflite_normalisation_gives_the_right_imagenet_classes() -> None:
    """(x - 127) / 128 is the preprocessing the weights expect: on the bundled product photos
    it puts the right ImageNet class in the top 5 more often than ImageNet mean/std does."""
    encoder = ImageEncoder("efficientnet-lite0")
    photos = resources.files("shoptransfer") / "demo_data" / "fashion" / "men"
    imagenet = {  # ImageNet-1k class indices
        "sunglasses": {836, 837},
        "watches": {409, 531, 826, 892},
        "sports-shoes": {770},
        "tshirts": {610},
    }
    mean = np.array([0.485, 0.456, 0.406])[:, None, None] * 255
    std = np.array([0.229, 0.224, 0.225])[:, None, None] * 255
    raw = ImagePreprocessing(224, mean=0.0, scale=1.0)
    hits = {"tflite": 0, "mean-std": 0}
    total = 0
    for folder, classes in imagenet.items():
        images = [load_rgb(Path(str(p))) for p in sorted((photos / folder).iterdir())[:10]]
        ours = torch.from_numpy(np.stack([encoder.preprocessing(im) for im in images]))
        other = torch.from_numpy(
            np.stack([((raw(im) - mean) / std).astype(np.float32) for im in images])
        )
        for name, pixels in (("tflite", ours), ("mean-std", other)):
            top = encoder.imagenet_logits(pixels).topk(5).indices
            hits[name] += sum(bool(set(row.tolist()) & classes) for row in top)
        total += len(images)
    assert hits["tflite"] / total >= 0.85
    assert hits["tflite"] > hits["mean-std"]


def test_text_backbone_on_images_is_a_config_error(tmp_path: Path) -> None:
    domain = read_image_folder(write_catalogue(tmp_path / "shop", per_class=2))
    recipe = make_recipe("fine-tune")
    with pytest.raises(ConfigError, match=r"reads texts but domain 'shop' holds images.*lite0"):
        recipe.validate(domain)
    with pytest.raises(ConfigError, match="reads texts"):
        make_recipe("scratch-tfidf").fit(FitData(domain, domain))


# -- recipes on images ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageDomain, ImageDomain]:
    root = tmp_path_factory.mktemp("images")
    train = read_image_folder(write_catalogue(root / "train", per_class=8, seed=0))
    test = read_image_folder(write_catalogue(root / "test", per_class=6, seed=1))
    return train, test


IMAGE_OPTIONS = {"backbone": "efficientnet-lite0", "image_size": 32}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("frozen-features", {}),
        ("fine-tune", {"epochs": 3, "learning_rate": 1e-4, "batch_size": 8}),
        ("llrd", {"epochs": 1, "frozen_layers": 10, "precision": "bf16"}),
        ("llrd", {"epochs": 2, "learning_rate": 1e-4, "batch_size": 8}),
        ("freeze-bottom", {"epochs": 2, "learning_rate": 1e-4, "frozen_layers": 10}),
        ("coral", {"epochs": 2, "learning_rate": 1e-4, "batch_size": 8}),
        ("dann", {"epochs": 2, "learning_rate": 1e-4, "batch_size": 8}),
        ("mlp-mmd", {"epochs": 4}),
        ("lora", {"epochs": 1, "peft_target_modules": ["_project_conv", "_conv_head"]}),
        ("scratch-transformer", {"epochs": 2, "learning_rate": 1e-3}),
    ],
)
def test_recipes_train_on_images_and_reload(
    name: str, options: dict, catalogue: tuple[ImageDomain, ImageDomain], tmp_path: Path
) -> None:
    train, test = catalogue
    recipe = make_recipe(name, **IMAGE_OPTIONS, **options)
    recipe.validate(train)
    predictor = recipe.fit(
        FitData(
            train,
            train if name.startswith("scratch") else None,
            cache=EmbeddingCache(tmp_path / "cache"),
            unlabeled=test.without_labels(),
        )
    )
    probabilities = predictor.predict_proba(test.paths)
    assert probabilities.shape == (len(test), 3)
    if name == "lora":  # adapters on the pointwise convolutions, and the head, train
        assert predictor.trainable_parameters < 200_000
    accuracy = np.mean(np.array(predictor.predict(test.paths)) == np.array(test.labels))
    if name in ("frozen-features", "fine-tune"):
        assert accuracy >= 0.9  # colours are easy for ImageNet features
    reloaded = load_predictor(predictor.save(tmp_path / "model"))
    # a model trained with stored fp16 bottom states reloads to a full forward (bfloat16 keeps
    # 8 bits of mantissa: its probabilities agree to a few 1e-3)
    tolerance = 1e-2 if options.get("precision") == "bf16" else 1e-3
    assert reloaded.model.precision == options.get("precision", "fp32")
    assert np.abs(reloaded.predict_proba(test.paths) - probabilities).max() <= tolerance


def test_bf16_frozen_features_are_close_cached_apart_and_reload(
    catalogue: tuple[ImageDomain, ImageDomain], tmp_path: Path
) -> None:
    train, test = catalogue
    cache = EmbeddingCache(tmp_path / "cache")
    single = make_encoder("efficientnet-lite0", image_size=32)
    half = make_encoder("efficientnet-lite0", image_size=32, precision="bf16")
    assert half.identity() == {**single.identity(), "precision": "bf16"}
    exact, mixed = cache.encode(single, test.paths), cache.encode(half, test.paths)
    assert cache.misses == 2 * len(test)  # a separate cache entry per precision
    cosine = (exact * mixed).sum(1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(mixed, axis=1)
    # bfloat16 keeps 8 bits of mantissa: at 32 px features differ by a few per cent at most
    assert cosine.mean() > 0.98 and cosine.min() > 0.9 and not np.array_equal(exact, mixed)
    recipe = make_recipe("frozen-features", **IMAGE_OPTIONS, precision="bf16", solver="lbfgs")
    predictor = recipe.fit(FitData(train, cache=cache))
    assert predictor.spec["frozen_backbone"]["precision"] == "bf16"
    reloaded = load_predictor(predictor.save(tmp_path / "model"))
    assert reloaded.frozen.precision == "bf16"
    assert np.allclose(reloaded.predict_proba(test.paths), predictor.predict_proba(test.paths))
    with pytest.raises(
        ConfigError, match=r"'precision' is 'fp16'; expected one of \['auto', 'fp32', 'bf16'\]"
    ):
        make_recipe("frozen-features", **IMAGE_OPTIONS, precision="fp16")


def test_pretrained_features_beat_scratch_on_few_images(catalogue) -> None:
    train, test = catalogue
    few = train.subset([0, 1, 8, 9, 16, 17])  # two photos per class
    scores = {}
    for name, options in (
        ("frozen-features", {"validation_fraction": 0.5}),
        ("scratch-transformer", {"epochs": 5, "learning_rate": 1e-3}),
    ):
        recipe = make_recipe(name, **IMAGE_OPTIONS, **options, seed=0)
        predictor = recipe.fit(FitData(few, few if name.startswith("scratch") else None))
        scores[name] = np.mean(np.array(predictor.predict(test.paths)) == np.array(test.labels))
    assert scores["frozen-features"] >= scores["scratch-transformer"] + 0.3


def test_image_experiment_from_yaml_and_cli_predict(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shoptransfer.cli import app

    write_catalogue(tmp_path / "men", per_class=6, seed=0)
    write_catalogue(tmp_path / "women", per_class=6, seed=1)
    (tmp_path / "run.yaml").write_text(
        "name: photos\nsource: {path: men}\ntarget: {path: women}\nimage_size: 32\n"
        "budgets: [0, 2]\nrecipes: [frozen-features]\n"
        f"output_dir: {tmp_path / 'runs'}\n"
        f"cache_dir: {tmp_path / 'cache'}\n"
    )
    runner = CliRunner()
    done = runner.invoke(app, ["run", str(tmp_path / "run.yaml")])
    assert done.exit_code == 0, done.output
    run_dir = next((tmp_path / "runs").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["backbone"] == "efficientnet-lite0"  # chosen for images
    assert {r["budget"] for r in results["results"]} == {0, 2}
    shown = runner.invoke(
        app, ["predict", str(run_dir), "--image", str(tmp_path / "women" / "red"), "-k", "2"]
    )
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.stdout.splitlines() if line.strip()]
    assert len(lines) == 6 and all(line.startswith("red ") for line in lines)
    wrong = runner.invoke(app, ["predict", str(run_dir), "--text", "a red shirt"])
    assert isinstance(wrong.exception, ConfigError)  # main() prints it and exits 2
    assert "reads images; give --image" in str(wrong.exception)


def test_make_encoder_dispatches_on_the_backbone() -> None:
    encoder = make_encoder("efficientnet-lite0", image_size=40, pretrained=False)
    assert isinstance(encoder, ImageEncoder) and encoder.image_size == 40
    assert encoder.parameter_uses() > 1  # convolutions reuse their weights at each position


def test_bundled_photos_read_cleanly() -> None:
    root = resources.files("shoptransfer") / "demo_data" / "fashion"
    for gender in ("men", "women"):
        domain = read_image_folder(Path(str(root / gender)))
        assert len(domain) == 150 and not domain.dropped
        assert set(domain.class_counts().values()) == {30}


def test_multi_task_and_regression_read_tables_of_photos(tmp_path: Path) -> None:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config
    from shoptransfer.runs import load_results

    rows = ["file,colour,shade,brightness"]
    for i, (name, colour) in enumerate(COLOURS.items()):
        for k in range(6):
            product_photo(colour, 50 * i + k).save(tmp_path / f"{name}{k}.jpg")
            shade = "warm" if name in ("red", "yellow") else "cool"
            rows.append(f"{name}{k}.jpg,{name},{shade},{sum(colour) / 765:.3f}")
    (tmp_path / "photos.csv").write_text("\n".join(rows) + "\n")
    common = {
        "backbone": "efficientnet-lite0",
        "image_size": 32,
        "recipes": [{"name": "frozen-features", "epochs": 30}],
        "budgets": ["all"],
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
    }
    table = {"path": "photos.csv", "image": "file"}
    multi = parse_config(
        {
            "task": "multi-task",
            "target": {**table, "labels": {"colour": "colour", "shade": "shade"}},
            **common,
        },
        "photos",
        tmp_path,
    )
    results = load_results(run_experiment(multi, show_progress=False))
    assert results["data"]["target"]["holds"] == "images"
    metrics = results["results"][0]["metrics"]
    assert {"colour/macro_f1", "shade/macro_f1", "macro_f1"} <= set(metrics)
    regression = parse_config(
        {"task": "regression", "target": {**table, "value": "brightness"}, **common},
        "photos",
        tmp_path,
    )
    results = load_results(run_experiment(regression, show_progress=False))
    assert {"rmse", "mae"} <= set(results["results"][0]["metrics"])


# -- bad image input ------------------------------------------------------------------------------


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG file that claims ``width`` x ``height`` pixels: a few bytes that would decode to
    gigabytes (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )
    return path


def test_images_over_the_pixel_bound_are_refused_before_decoding(tmp_path: Path) -> None:
    from shoptransfer.data.pixels import MAX_PIXELS

    root = write_catalogue(tmp_path / "shop", per_class=2)
    big = png_header(root / "red" / "big.png", 8000, 6000)  # 48 MP: under Pillow's own limit
    bomb = png_header(root / "blue" / "bomb.png", 30000, 30000)  # over it: Pillow raises
    assert MAX_PIXELS < 8000 * 6000
    domain = read_image_folder(root)
    assert len(domain) == 6
    assert domain.dropped == {f"larger than {MAX_PIXELS:,} pixels": 2}
    for path in (big, bomb):
        with pytest.raises(DataError, match="the image is too large") as info:
            load_rgb(path)
        assert str(info.value).startswith(str(path))
    paths, skipped = image_files([big])
    assert paths == [] and skipped == {f"larger than {MAX_PIXELS:,} pixels": 1}


def test_an_image_that_breaks_after_reading_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("not a photo")
    with pytest.raises(DataError, match="photo.jpg: not an image file"):
        load_rgb(path)
    whole = (write_catalogue(tmp_path / "shop", per_class=1) / "red" / "0.jpg").read_bytes()
    path.write_bytes(whole[:200])
    with pytest.raises(DataError, match="photo.jpg: cannot read the image"):
        load_rgb(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_image_without_read_permission_is_an_error_naming_it(tmp_path: Path) -> None:
    root = write_catalogue(tmp_path / "shop", per_class=2)
    (root / "red" / "0.jpg").chmod(0)
    with pytest.raises(DataError, match=r"0.jpg: cannot read the file \(permission denied\)"):
        read_image_folder(root)


def test_image_folders_and_tables_without_images_say_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "shop" / "red").mkdir(parents=True)
    (tmp_path / "shop" / "blue").mkdir()
    with pytest.raises(DataError, match="shop: no image files"):
        read_image_folder(tmp_path / "shop")
    write_catalogue(tmp_path / "shop", per_class=1)
    table = tmp_path / "photos.csv"
    table.write_text("path,kind\nshop/red,red\n")
    with pytest.raises(DataError, match=r"photos.csv line 2: .*shop/red is a folder"):
        read_image_table(table, image="path", label="kind")
    table = tmp_path / "photos.jsonl"
    table.write_text(json.dumps({"path": ["shop/red/0.jpg"], "kind": "red"}) + "\n")
    with pytest.raises(DataError, match="photos.jsonl line 1: column 'path' holds a list"):
        read_image_table(table, image="path", label="kind")


def test_a_single_class_target_without_source_names_the_target(tmp_path: Path) -> None:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import parse_config

    root = write_catalogue(tmp_path / "shop", per_class=4)
    for name in ("green", "blue"):
        for path in (root / name).iterdir():
            path.unlink()
        (root / name).rmdir()
    config = parse_config(
        {
            "name": "one",
            "target": {"path": str(root)},
            "recipes": ["frozen-features"],
            "budgets": [1],
            "output_dir": str(tmp_path / "runs"),
        },
        "x.yaml",
    )
    with pytest.raises(DataError, match=r"shop: the target 'shop' has a single class \['red'\]"):
        run_experiment(config, show_progress=False)


def test_a_photo_broken_after_reading_stops_training_with_one_line(tmp_path: Path) -> None:
    """Decoded in a worker process, its error came back with the worker's traceback."""
    from shoptransfer.data.pixels import ImageInputs, pixel_batches

    root = write_catalogue(tmp_path / "shop", per_class=24)  # 72 images: workers are used
    domain = read_image_folder(root)
    broken = Path(domain.paths[40])
    broken.write_bytes(broken.read_bytes()[:300])  # changed after it was read
    inputs = ImageInputs(domain.paths, ImagePreprocessing(size=32))
    with pytest.raises(DataError) as info:
        for _ in pixel_batches(inputs, [np.arange(i, i + 8) for i in range(0, 72, 8)], False):
            pass
    assert str(info.value).startswith(f"{broken}: cannot read the image")
    assert "\n" not in str(info.value)
