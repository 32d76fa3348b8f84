"""Explanations: integrated-gradient attributions sum to f(input) − f(baseline) (completeness),
for texts and photos; occlusion scores are the probability lost by deleting each word; words
past the length limit are not read; the words that drive a trained model come first; `predict
--explain` prints them and writes a self-contained HTML page, and with an --input file adds them
to each output row; without Captum, one line."""

from __future__ import annotations

import builtins
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shoptransfer.backbones.text import TextEncoder
from shoptransfer.cli import app, main
from shoptransfer.errors import ConfigError
from shoptransfer.explain import explain, explanations_html, without_words, word_spans
from shoptransfer.recipes.neural import NeuralPredictor
from shoptransfer.training import Classifier

pytest.importorskip("captum")


def tiny_text_model(backbone: str, max_length: int = 64) -> NeuralPredictor:
    torch.manual_seed(3)
    encoder = TextEncoder(backbone, max_length=max_length)
    model = Classifier(2, encoder.hidden_size, encoder=encoder)
    with torch.no_grad():
        model.head.weight.mul_(20.0)  # scores far from 0.5, so attributions are not tiny
    return NeuralPredictor(["neg", "pos"], model, {"backbone": {"name": backbone}})


def test_integrated_gradients_sum_to_the_change_from_the_baseline(tiny_backbone: str) -> None:
    predictor = tiny_text_model(tiny_backbone)
    texts = ["the lid broke after a week, awful", "great pan, 好用极了 love it"]
    for explanation in explain(predictor, texts, "texts", "integrated-gradients", steps=300):
        change = explanation.probability - explanation.baseline_probability
        assert abs(change) > 0.01
        assert sum(explanation.scores) == pytest.approx(change, abs=0.02 * abs(change) + 1e-3)
        assert all(explanation.read)
        # the probability is the model's own
        assert explanation.probability == pytest.approx(
            predictor.predict_proba([explanation.input]).max(), abs=1e-5
        )


def test_occlusion_scores_are_the_probability_lost_without_each_word(tiny_backbone: str) -> None:
    predictor = tiny_text_model(tiny_backbone)
    text = "sturdy kettle but the handle gets hot"
    (explanation,) = explain(predictor, [text], "texts", "occlusion")
    spans = word_spans(text)
    assert explanation.words == text.split()
    target = predictor.classes.index(explanation.label)
    for i in (0, 3, 6):
        shorter = without_words(text, spans, [i])
        lost = explanation.probability - predictor.predict_proba([shorter])[0, target]
        assert explanation.scores[i] == pytest.approx(lost, abs=1e-6)


def test_words_past_the_length_limit_are_not_read(tiny_backbone: str) -> None:
    predictor = tiny_text_model(tiny_backbone, max_length=8)
    text = "one two three four five six seven eight nine ten eleven"
    for method in ("integrated-gradients", "occlusion"):
        (explanation,) = explain(predictor, [text], "texts", method, steps=20)
        assert explanation.read[:6] == [True] * 6  # [CLS] + 6 words + [SEP]
        assert not any(explanation.read[6:])
        assert explanation.scores[6:] == [0.0] * 5


def test_chinese_words_are_single_characters() -> None:
    text = "锅很好 good pan"
    assert [text[s:e] for s, e in word_spans(text)] == ["锅", "很", "好", "good", "pan"]
    assert without_words(text, word_spans(text), [1, 3]) == "锅好  pan"


def test_predict_explain_names_the_words_that_decided_and_writes_html(
    tfidf_run: Path, tmp_path: Path
) -> None:
    page = tmp_path / "why.html"
    text = "the kettle is terrible"
    result = CliRunner().invoke(
        app,
        ["predict", str(tfidf_run), "--text", text, "--json", "--explain-html", str(page)],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    explanation = record["explanation"]
    assert explanation["method"] == "occlusion"  # a TF-IDF model has no gradients
    assert record["label"] == "neg"
    words = sorted(explanation["words"], key=lambda w: -w["score"])
    assert words[0]["word"] == "terrible"
    body = page.read_text()
    assert body.startswith("<!DOCTYPE html>") and "terrible</span>" in body
    assert "http" not in body  # self-contained: nothing fetched


def one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> str:
    """The one error line ``shoptransfer args`` prints, checking that it exits 2."""
    monkeypatch.setattr(sys, "argv", ["shoptransfer", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    return line


def test_integrated_gradients_refused_where_the_model_has_no_gradients(
    tfidf_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(
        monkeypatch,
        capsys,
        *["predict", str(tfidf_run), "-t", "great", "--explain-method", "integrated-gradients"],
    )
    assert "use --explain-method occlusion" in line


def test_an_input_file_gets_an_explanation_in_each_row(
    tfidf_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shoptransfer.api import explain_predictions

    table = tmp_path / "in.csv"
    table.write_text('id,text\na1,the kettle is terrible\na2,""\na3,a great pan that works\n')
    options = ["--input", str(table), "--id-column", "id", "--explain", "--quiet"]
    written = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(tfidf_run), *options, "-o", str(written)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a1", "a2", "a3"]
    first = rows[0]["explanation"]
    assert first["method"] == "occlusion" and first["for"][0][0] == "terrible"
    assert rows[1]["explanation"] is None  # an empty row: no prediction, nothing to explain
    # the same words and scores as explaining the text alone
    alone = explain_predictions(tfidf_run, ["the kettle is terrible"], method="occlusion")[0]
    assert first == json.loads(json.dumps(alone.brief()))
    # in a CSV the explanation is a JSON text
    as_csv = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(tfidf_run), *options, "-o", str(as_csv)])
    assert result.exit_code == 0, result.output
    with open(as_csv, newline="") as handle:
        cells = [row["explanation"] for row in csv.DictReader(handle)]
    assert json.loads(cells[0]) == first and cells[1] == ""
    # printed: each prediction followed by its reasons
    result = CliRunner().invoke(app, ["predict", str(tfidf_run), *options])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("neg") and lines[1].startswith("  why (occlusion): terrible")
    line = one_line_error(
        monkeypatch,
        capsys,
        *["predict", str(tfidf_run), "--input", str(table), "--explain-html", "x.html"],
    )
    assert "--explain adds an explanation column" in line


def test_without_captum_integrated_gradients_is_one_line(
    tiny_backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_captum(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("captum"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_captum)
    with pytest.raises(ConfigError, match=r"pip install 'shoptransfer\[explain\]'"):
        explain(tiny_text_model(tiny_backbone), ["good"], "texts", "integrated-gradients")


def test_image_attributions_are_complete(tmp_path: Path) -> None:
    from PIL import Image

    from shoptransfer.backbones.image import ImageEncoder

    torch.manual_seed(0)
    encoder = ImageEncoder("efficientnet-lite0", image_size=64, pretrained=False)
    model = Classifier(2, encoder.hidden_size, encoder=encoder)
    with torch.no_grad():
        model.head.weight.mul_(50.0)
    predictor = NeuralPredictor(["a", "b"], model, {"backbone": {"name": "x", "image_size": 64}})
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    (explanation,) = explain(predictor, [str(path)], "images", "integrated-gradients", steps=200)
    assert explanation.pixels is not None and explanation.pixels.shape == (64, 64)
    change = explanation.probability - explanation.baseline_probability
    assert float(explanation.pixels.sum()) == pytest.approx(change, abs=0.05 * abs(change) + 2e-3)
    assert "data:image/png;base64," in explanations_html([explanation], "m")
