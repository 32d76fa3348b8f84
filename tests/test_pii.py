"""Personal data scrubbed from texts: planted e-mails, phones, cards, addresses, URLs and names
are replaced in English and Chinese; near-misses (order numbers, prices, dates, model numbers,
numbers failing the Luhn check) stay; a run's texts are scrubbed before any model sees them and
the replacements are counted in results.json; ``scrub_pii: false`` keeps the texts; predict
scrubs its inputs the same way."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoptransfer.api import predict, run_experiment
from shoptransfer.cli import app
from shoptransfer.config import parse_config
from shoptransfer.pii import luhn_valid, scrub, scrub_texts

from .conftest import NEGATIVE, POSITIVE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+shop@example.co.uk today", "write to [EMAIL] today"),
        ("see https://shop.example.com/p?id=7.", "see [URL]."),
        ("or www.example.org/returns, thanks", "or [URL], thanks"),
        ("call +86 138 0013 8000 now", "call [PHONE] now"),
        ("call 13800138000 now", "call [PHONE] now"),
        ("call (555) 123-4567 now", "call [PHONE] now"),
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("call 555-123-4567 now", "call [PHONE] now"),
        ("paid with 4111 1111 1111 1111 ok", "paid with [CARD] ok"),
        ("paid with 5500-0000-0000-0004 ok", "paid with [CARD] ok"),
        ("ship to 221B Baker Street, London today", "ship to [ADDRESS] today"),
        ("at 1600 Pennsylvania Avenue, Washington, DC 20500.", "at [ADDRESS]."),
        ("thanks Mr. Smith and Dr. Jane Doe", "thanks Mr. [NAME] and Dr. [NAME]"),
        ("hello, my name is Alice Brown.", "hello, my name is [NAME]."),
    ],
)
def test_planted_english_personal_data_is_replaced(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请寄到北京市朝阳区建国路88号，谢谢", "请寄到[ADDRESS]，谢谢"),
        ("地址：广东省深圳市南山区科技园路1号3栋501室", "地址：[ADDRESS]"),
        ("电话13800138000，急", "电话[PHONE]，急"),
        ("电话 138-0013-8000", "电话 [PHONE]"),
        ("座机010-12345678", "座机[PHONE]"),
        ("王先生收", "[NAME]先生收"),
        ("快递给李女士", "快递给[NAME]女士"),
        ("特别感谢梁思小姐的服务", "特别感谢[NAME]小姐的服务"),
        ("谢谢王先生", "谢谢[NAME]先生"),
        ("谢女士很热情", "[NAME]女士很热情"),
        ("你好，我叫张小明。", "你好，我叫[NAME]。"),
        ("邮箱 wang@example.cn", "邮箱 [EMAIL]"),
    ],
)
def test_planted_chinese_personal_data_is_replaced(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order #123-4567890 arrived late",
        "it cost $1,299.99, now ¥3999",
        "delivered 2024-03-05, ordered 03/05/2024",
        "model SM-G991B and KD-55X80K, firmware v2.5.3",
        "serial 4111 1111 1111 1112 is printed on the box",  # 16 digits failing Luhn
        "订单号 202403051234567 价格 ¥3999 日期 2024年3月5日",
        "I used it 3 times a day and 2 Large Plates broke",
        "Euuuwww... this is great",
        "the 1920s Bull Market way of life",
        "这个锅很好用，三天就到了",
        "my old Mr. Coffee maker and a Mr. Bento lunch jar",
    ],
)
def test_near_misses_stay(text: str) -> None:
    assert scrub(text) == text


def test_the_luhn_check_of_card_numbers() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_each_replacement_is_counted_by_kind() -> None:
    texts = [
        "mail a@b.com or c@d.org, call 13800138000",
        "nothing personal here",
        "card 4111 1111 1111 1111 via https://x.example",
    ]
    scrubbed, counts = scrub_texts(texts)
    assert counts == {"url": 1, "email": 2, "card": 1, "phone": 1}
    assert scrubbed[1] == texts[1]
    tally: Counter[str] = Counter()
    scrub(texts[0], tally)
    assert tally == {"email": 2, "phone": 1}


PLANTED = "mail me at buyer@example.com or call 13800138000"


def run_with_planted_data(tmp_path: Path, scrub_pii: bool | None) -> Path:
    path = tmp_path / "kitchen.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        for r in range(3):
            writer.writerows([f"{text} ({r}) {PLANTED}", "pos"] for text in POSITIVE)
            writer.writerows([f"{text} ({r})", "neg"] for text in NEGATIVE)
    target: dict[str, object] = {"path": str(path), "text": "review", "label": "sentiment"}
    if scrub_pii is not None:
        target["scrub_pii"] = scrub_pii
    config = parse_config(
        {
            "name": "pii",
            "target": target,
            "recipes": ["scratch-tfidf"],
            "budgets": ["all"],
            "seeds": [0],
            "output_dir": str(tmp_path / "runs"),
        },
        "test",
    )
    return run_experiment(config, show_progress=False)


def saved_vocabulary(run_dir: Path) -> set[str]:
    model = next((run_dir / "models").iterdir())
    return set(json.loads((model / "vocabulary.json").read_text()))


def test_a_run_trains_on_scrubbed_texts_and_counts_the_replacements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = run_with_planted_data(tmp_path, scrub_pii=None)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["target"]["pii_scrubbed"] == {"email": 24, "phone": 24}
    assert "48 personal data spans replaced by placeholders" in capsys.readouterr().err
    vocabulary = saved_vocabulary(run_dir)
    assert not {"buyer", "13800138000"} & vocabulary
    assert "email" in vocabulary  # the placeholder, as the TF-IDF tokeniser splits it
    # predict scrubs its inputs too: a planted e-mail scores as the placeholder does
    _, with_pii, _ = predict(run_dir, ["great, write to someone@example.org"])
    _, with_placeholder, _ = predict(run_dir, ["great, write to [EMAIL]"])
    assert with_pii.tolist() == with_placeholder.tolist()
    # and so does predict --input (the streaming path)
    lines = tmp_path / "in.txt"
    lines.write_text("great, write to someone@example.org\ngreat, write to [EMAIL]\n")
    result = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(lines), "--json"])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert first["text"] == "great, write to someone@example.org"  # shown as given
    assert {k: v for k, v in first.items() if k not in ("text", "row")} == {
        k: v for k, v in second.items() if k not in ("text", "row")
    }


def test_scrub_pii_false_keeps_the_texts(tmp_path: Path) -> None:
    run_dir = run_with_planted_data(tmp_path, scrub_pii=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"]["target"]["pii_scrubbed"] is None
    assert {"buyer", "13800138000"} <= saved_vocabulary(run_dir)
