"""Domain-adaptive pre-training (masked-language-model training of the backbone), the UDALM
objective, and self-distillation on the unlabeled target."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shoptransfer.backbones import EmbeddingCache, TextEncoder
from shoptransfer.backbones.language_model import (
    IGNORED,
    LanguageModelSettings,
    adapt_language_model,
    adaptation_key,
    evaluate_masked_lm,
    language_model_head,
    mask_tokens,
)
from shoptransfer.data import FeatureDomain, TextDomain
from shoptransfer.data.readers import read_extra_texts
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.objectives.mlm import MaskedLanguageModelObjective
from shoptransfer.recipes import FitData, list_recipes, load_predictor, make_recipe
from shoptransfer.recipes.transfer import drop_words

from .conftest import NEGATIVE, POSITIVE

SOURCE = TextDomain(
    "book",
    [f"book {t}" for t in POSITIVE + NEGATIVE],
    ["pos"] * 8 + ["neg"] * 8,
)
KITCHEN = [
    "the kettle boils water fast and the lid closes well",
    "this pan heats evenly and cleans easily after cooking",
    "the blender crushes ice and the jar does not leak",
    "my toaster browns bread evenly on both sides",
    "the knife stays sharp and the handle feels solid",
    "this pot cooks rice well and the lid fits tight",
    "the kettle whistles loudly when the water boils",
    "the pan is nonstick and the handle stays cool",
]
HELD_OUT = [
    "the pot boils water fast and the handle stays cool",
    "this kettle heats evenly and the lid fits tight",
    "the toaster cleans easily and the knife feels solid",
    "my blender cooks well and the jar closes tight",
]
UNLABELED = TextDomain("kitchen", KITCHEN, None)


def test_masking_chooses_15_percent_of_real_tokens_80_10_10(tiny_backbone: str) -> None:
    tokenizer = TextEncoder(tiny_backbone).tokenizer
    ids = torch.randint(1000, 2000, (400, 100))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    mask = torch.ones_like(ids)
    mask[:, 80:] = 0  # padding
    inputs, labels = mask_tokens(ids, mask, tokenizer, torch.Generator().manual_seed(0))
    chosen = labels != IGNORED
    assert not chosen[:, 0].any() and not chosen[:, -1].any() and not chosen[:, 80:].any()
    share = chosen.sum().item() / (400 * 78)
    assert 0.14 < share < 0.16
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (inputs[chosen] == tokenizer.mask_token_id).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert 0.78 < masked < 0.82 and 0.08 < kept < 0.12  # the rest: random tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_head_is_tied_to_the_input_word_embeddings(tiny_backbone: str) -> None:
    encoder = TextEncoder(tiny_backbone)
    head = language_model_head(encoder)
    embeddings = encoder.model.get_input_embeddings().weight
    assert not any(p is embeddings for p in head.parameters())  # shared, not copied
    hidden = torch.randn(2, 3, encoder.hidden_size)
    head(hidden, embeddings).sum().backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_mlm_loss_falls_on_held_out_target_text_and_is_cached(
    tiny_backbone: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder = TextEncoder(tiny_backbone, max_length=24)
    torch.manual_seed(0)
    before = evaluate_masked_lm(encoder, language_model_head(encoder), HELD_OUT)
    settings = LanguageModelSettings(epochs=30, batch_size=4, learning_rate=3e-3)
    adaptation = adapt_language_model(encoder, KITCHEN, settings, tmp_path)
    assert adaptation.head is not None and not adaptation.reused
    after = evaluate_masked_lm(encoder, adaptation.head, HELD_OUT)
    assert after < before - 1.0  # measured: 10.3 -> 8.4
    # each epoch says it ran (a long step shows in a log that it is alive)
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if re.match(r"language model: epoch \d+/30, MLM loss ", line)]
    assert len(lines) == 30 and lines[-1].startswith("language model: epoch 30/30, MLM loss ")
    assert encoder.identity()["adapted"] == adaptation.key
    # the same texts in another order: the cached weights, its time charged again
    again = TextEncoder(tiny_backbone, max_length=24)
    reused = adapt_language_model(again, list(reversed(KITCHEN)), settings, tmp_path)
    assert reused.reused and reused.key == adaptation.key
    for name, tensor in encoder.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name])
    fresh = TextEncoder(tiny_backbone, max_length=24)
    other = LanguageModelSettings(epochs=2, batch_size=4, learning_rate=3e-3)
    assert adaptation_key(fresh, KITCHEN, other) != adaptation.key


def test_a_long_language_model_epoch_reports_how_far_it_is(
    tiny_backbone: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shoptransfer.backbones import language_model

    monkeypatch.setattr(language_model, "REPORT_SECONDS", 0.0)  # every batch after the first
    encoder = TextEncoder(tiny_backbone, max_length=24)
    settings = LanguageModelSettings(epochs=1, batch_size=4)
    adapt_language_model(encoder, KITCHEN, settings)
    lines = [line for line in capsys.readouterr().err.splitlines() if "language model" in line]
    texts = len(set(KITCHEN))
    within = [line for line in lines if f" of {texts:,} texts, MLM loss " in line]
    assert len(within) == -(-texts // 4) - 1  # one per batch but the first
    assert (
        within[0].startswith(f"language model: epoch 1/1, 4 of {texts:,} texts")
        and "ETA" in within[0]
    )
    assert lines[-1].startswith("language model: epoch 1/1, MLM loss ")


def test_dapt_recipe_records_its_texts_and_saves_the_adapted_backbone(
    tiny_backbone: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "unlabeled.txt"
    extra.write_text(
        "a brand new review of a spatula\n"
        "A brand new review of a spatula!\n"  # a duplicate once compared
        "\n"
        f"{KITCHEN[0].upper()}\n"  # the same text as one the fit reads
        "the whisk is light and easy to hold\n",
        encoding="utf-8",
    )
    options = {"backbone": tiny_backbone, "epochs": 1, "target_epochs": 0, "max_length": 16}
    recipe = make_recipe("dapt", dapt_extra_texts=[str(extra), str(extra)], **options)
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings")
    predictor = recipe.fit(FitData(SOURCE, unlabeled=UNLABELED, cache=cache))
    lm = recipe.fitted()["language_model"]
    assert lm["texts"] == {"target_unlabeled": 8, "source": 16, "extra_files": 2}
    first, second = lm["extra_files"]  # the same file twice: nothing new the second time
    assert (first["duplicates"], first["known"], first["empty"], first["new"]) == (1, 1, 1, 2)
    assert (second["kept"], second["new"]) == (2, 0) and not lm["reused"]
    seen = recipe.fitted()["texts_seen"]
    assert seen["source_stage"] == {"source_labelled": 16, "target_unlabeled": 0}
    assert (tmp_path / "cache" / "language-models" / lm["key"] / "model.safetensors").exists()
    warned = capsys.readouterr().err
    assert (
        warned.count("3 of 5 lines not read by the language-model step (1 empty, 1 repeated") == 2
    )
    # another seed reuses the language-model step; the adapted weights are saved in full
    again = make_recipe("dapt", seed=1, dapt_extra_texts=[str(extra)], **options)
    again.fit(FitData(SOURCE, unlabeled=UNLABELED, cache=cache))
    assert again.fitted()["language_model"]["reused"]
    assert "not read" not in capsys.readouterr().err  # warned once, when the step trained
    loaded = load_predictor(predictor.save(tmp_path / "model"))
    assert loaded.spec["saved"] == "all" and loaded.model.encoder.adapted == lm["key"]
    np.testing.assert_allclose(
        loaded.predict_proba(HELD_OUT), predictor.predict_proba(HELD_OUT), atol=1e-5
    )


def test_udalm_trains_with_the_mlm_loss_on_target_batches(
    tiny_backbone: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = make_recipe(
        "udalm", backbone=tiny_backbone, epochs=1, dapt_epochs=1, max_length=16, target_epochs=0
    )
    started: list[torch.Tensor] = []
    original = MaskedLanguageModelObjective.forward

    def first_bias(self: MaskedLanguageModelObjective, step: Any) -> torch.Tensor:
        if not started:
            started.append(self.head.bias.detach().clone())
        return original(self, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MaskedLanguageModelObjective, "forward", first_bias)
        recipe.fit(FitData(SOURCE, unlabeled=UNLABELED))
    # the objective's head starts where the language-model step left its head
    assert recipe.language_model_head_ is not None
    assert torch.equal(started[0], recipe.language_model_head_.bias)
    assert started[0].abs().sum() > 0  # trained (a new head's bias is zero)
    assert recipe.fitted()["language_model"]["texts"] == {"target_unlabeled": 8}
    epoch = recipe.history_[0]
    assert epoch["mlm_loss"] > 0 and epoch["auxiliary_loss"] == pytest.approx(epoch["mlm_loss"])
    assert recipe.fitted()["texts_seen"]["source_stage"]["target_unlabeled"] == 8
    # each step says how far it is: the language model's epoch, the source stage's
    logged = capsys.readouterr().err
    assert "language model: epoch 1/1, MLM loss" in logged
    assert "udalm on source: epoch 1/1, train loss" in logged and "validation macro f1" in logged


def test_language_model_pieces_need_a_trainable_text_backbone(tiny_backbone: str) -> None:
    vectors = FeatureDomain("v", np.zeros((4, 3)), ["a", "b", "a", "b"])
    with pytest.raises(ConfigError, match="dapt_epochs reads the tokens"):
        make_recipe("dapt", encoder="mlp").validate(SOURCE)
    with pytest.raises(ConfigError, match="objective 'mlm' reads the tokens"):
        make_recipe("mlp", objectives=["mlm"]).validate(vectors)
    with pytest.raises(ConfigError, match="frozen only"):
        make_recipe("dapt", backbone="use-multilingual").validate(SOURCE)
    with pytest.raises(ConfigError, match="reads images"):
        make_recipe("dapt", backbone="efficientnet-lite0").validate(SOURCE)
    with pytest.raises(ConfigError, match="dapt_texts"):
        make_recipe("dapt", dapt_texts="everything")
    missing = make_recipe("dapt", backbone=tiny_backbone, dapt_extra_texts=["/nowhere.txt"])
    with pytest.raises(DataError, match="/nowhere.txt: extra texts file not found"):
        missing.fit(FitData(SOURCE, unlabeled=UNLABELED))
    names = {r.name for r in list_recipes()}
    assert {"dapt", "udalm"} <= names
    assert "dapt_epochs" in make_recipe("fine-tune").options()


def test_extra_texts_drop_empty_repeated_and_known_lines(tmp_path: Path) -> None:
    path = tmp_path / "u.txt"
    path.write_text("Good pan.\ngood pan\n\nA known text\nnew one\n", encoding="utf-8")
    texts, counts = read_extra_texts(path, ["a known text!"])
    assert texts == ["Good pan.", "new one"]
    assert counts == {"lines": 5, "kept": 2, "empty": 1, "duplicates": 1, "known": 1}
    # a Blitzer review is read as "title. body"; a file of bodies matches its end
    path.write_text("It heats evenly, cleans well\nheats evenly\n", encoding="utf-8")
    texts, counts = read_extra_texts(path, ["Great pan. It heats evenly. Cleans well!"])
    assert texts == ["heats evenly"] and counts["known"] == 1
    path.write_bytes(b"fine\n\xff broken\n")
    with pytest.raises(DataError, match="line 2 is not valid utf-8"):
        read_extra_texts(path, [])


def _entropy(probabilities: np.ndarray) -> float:
    return float(-(probabilities * np.log(probabilities + 1e-12)).sum(axis=1).mean())


def test_self_distillation_sharpens_predictions_and_keeps_the_teacher_labels() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    points = rng.normal(size=(400, 6)) + np.outer(labels * 2 - 1, np.r_[1.5, np.zeros(5)])
    source = FeatureDomain("s", points[:200], [str(y) for y in labels[:200]])
    target = FeatureDomain("t", points[200:] + 0.5, None)
    options = {"epochs": 60, "patience": 60, "mlp_hidden": 16}
    plain = make_recipe("mlp", **options).fit(FitData(source, unlabeled=target))
    recipe = make_recipe("mlp", distillation_epochs=10, distillation_temperature=0.25, **options)
    distilled = recipe.fit(FitData(source, unlabeled=target))
    before, after = plain.predict_proba(target.vectors), distilled.predict_proba(target.vectors)
    assert _entropy(after) < _entropy(before) - 0.05  # measured: 0.56 -> 0.43, agreement 0.98
    assert (after.argmax(axis=1) == before.argmax(axis=1)).mean() > 0.9
    assert len([r for r in recipe.history_ if "distillation_epoch" in r]) == 10
    assert recipe.fitted()["texts_seen"]["self_distillation"] == {"target_unlabeled": 200}
    with pytest.raises(ConfigError, match="self-distillation is for classification only"):
        make_recipe("fine-tune", distillation_epochs=1).check_task("regression")
    with pytest.raises(DataError, match="distils on unlabeled target"):
        make_recipe("mlp", distillation_epochs=1).fit(FitData(source))


def test_drop_words_keeps_at_least_one_word() -> None:
    rng = np.random.default_rng(0)
    assert drop_words("one two three", 0.0, rng) == "one two three"
    assert len(drop_words("one two three", 0.99, rng).split()) == 1
    shortened = [drop_words(" ".join(["w"] * 100), 0.3, rng) for _ in range(20)]
    assert 60 < np.mean([len(s.split()) for s in shortened]) < 80


def test_a_backbone_without_a_mask_token_is_refused_before_any_work(
    tiny_backbone: str, tmp_path: Path
) -> None:
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "no-mask"
    shutil.copytree(tiny_backbone, folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    tokenizer.mask_token = None
    tokenizer.save_pretrained(folder)
    with pytest.raises(ConfigError, match="dapt_epochs masks tokens, but backbone .* no mask"):
        make_recipe("dapt", backbone=str(folder)).validate(SOURCE)
    make_recipe("fine-tune", backbone=str(folder), distillation_word_dropout=0.1).validate(SOURCE)
