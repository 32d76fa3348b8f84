"""Personal data scrubbed from texts before a model or the embedding cache sees them.

Rules, standard library only: e-mail addresses, URLs, payment card numbers (13–19 digits,
spaces or dashes between groups, Luhn-checked), phone numbers (international ``+CC``, Chinese
mobiles and landlines, North American), postal addresses (a street line in English; a
``路/街/道`` … ``号`` address in Chinese, with its province, city and district) and person names
after a title or a name cue (``Mr. Smith``, ``my name is …``, ``王先生``, ``我叫…``). Each is
replaced by a typed placeholder (``[EMAIL]``, ``[PHONE]``, ...). What looks like them but is not
stays: order numbers (``#123-4567890``), prices, dates, model numbers, 16-digit numbers that
fail the Luhn check.

No offline name recogniser is used: presidio and scrubadub find names through spaCy models,
which are not published on PyPI by their makers, so free-text names without a cue stay.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial

PLACEHOLDERS = {
    "url": "[URL]",
    "email": "[EMAIL]",
    "card": "[CARD]",
    "phone": "[PHONE]",
    "address": "[ADDRESS]",
    "name": "[NAME]",
}

_URL = re.compile(r"(?<![\w.])(?:https?://|www\.(?=\w))[^\s<>\"'，。、；！？（）]+", re.IGNORECASE)
_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", re.ASCII
)
# 13-19 digits, single spaces or dashes between them; not glued to other digits, a '#' or '+';
# a card number starts as the networks issue them (Amex, Diners, JCB 3, Visa 4, Mastercard 5 and
# 22-27, Discover and UnionPay 6), so order numbers starting with a year or 1 stay
_CARD = re.compile(r"(?<![\d#+\-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?=[+(\d])(?:"  # a quick refusal wherever no number can start
    # international: +CC then groups of digits, optionally an area code in brackets
    r"(?<![\w#])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,5}(?![\d-])"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567
    r"|(?<![\w#(-])(?:\(\d{3}\)\s?|[2-9]\d{2}[-. ])\d{3}[-. ]\d{4}(?![\d-])"
    # Chinese mobile: 13800138000, 138 0013 8000, 138-0013-8000
    r"|(?<![\d#+-])1[3-9]\d(?:\d{8}|[ -]\d{4}[ -]\d{4})(?![\d-])"
    # Chinese landline: 010-12345678, 0755-1234567
    r"|(?<![\d#+-])0\d{2,3}-\d{7,8}(?![\d-]))"
)
_STREET_WORDS = (
    r"(?:[Ss]treet|St|[Aa]venue|Ave|[Rr]oad|Rd|[Bb]oulevard|Blvd|[Ll]ane|Ln|[Dd]rive|Dr"
    r"|Court|Ct|Way|Place|Pl|Terrace|[Pp]arkway|Pkwy|[Hh]ighway|Hwy)"
)
# a Han character that can be part of a place name (not a word that leads into an address)
_PLACE_CHAR = r"(?:(?![到寄送在住址是为于的我你他她从和往给])[\u4e00-\u9fff])"
_STREET_ADDRESS = re.compile(
    # 221B Baker Street, Apt 4, Springfield, IL 62704
    r"(?=\d)(?<![\w#])\d{1,5}[A-Z]?\s+(?:[A-Z][a-z]+\.?\s+){1,3}" + _STREET_WORDS + r"\b\.?"
    r"(?:,?\s*(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
    r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)?(?:,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
)
_CHINESE_ADDRESS = re.compile(
    # 广东省深圳市南山区科技园路1号3栋501室
    r"(?=[\u4e00-\u9fff])(?:" + _PLACE_CHAR + r"{2,7}(?:省|自治区))?"
    r"(?:" + _PLACE_CHAR + r"{2,7}市)?"
    r"(?:" + _PLACE_CHAR + r"{1,7}(?:区|县))?" + _PLACE_CHAR + r"{1,8}(?:路|街|大道|巷|道)"
    r"[\d一二三四五六七八九十百零]+号(?:[\d一二三四五六七八九十A-Za-z-]+(?:号楼|楼|栋|单元|室|层))*"
)
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
    "邵万钱严覃武戴莫孔向汤"
)
# a surname; 谢 not in 感谢, 多谢, 谢谢 (thanks)
_SURNAME = "(?:(?<![感多谢])谢(?!谢)|[" + _SURNAMES.replace("谢", "") + "])"
# products and brands named like people (Mr. Coffee coffee makers, Dr Pepper): not names
_TITLED_BRANDS = "(?:Coffee|Bento|Clean|Pepper|Heater|Freeze|Potato|Scholl|Sketch|Bean|Incredible)"
_NAME = re.compile(
    r"(?=[MDPmMnN我" + _SURNAMES + r"])(?:"  # a quick refusal where no cue starts
    r"(?<![\w.])(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+(?!" + _TITLED_BRANDS + r"\b)"
    r"(?P<titled>[A-Z][a-z]+(?:[ -][A-Z][a-z]+)?)"
    r"|(?i:\bmy name is|\bname's)\s+(?P<cued>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?)"
    r"|(?P<courtesy>" + _SURNAME + r"[\u4e00-\u9fff]{0,2}?)(?:先生|女士|小姐)"
    r"|(?:我叫|我的名字是|我是)(?P<called>" + _SURNAME + r"[\u4e00-\u9fff]{1,2}))"
)
_NAME_GROUPS = ("titled", "cued", "courtesy", "called")
# what a text must hold for a pass to find anything (a quick skip of most texts)
_NEEDS = {
    "card": re.compile(r"\d"),
    "phone": re.compile(r"\d"),
    "street address": re.compile(r"\d"),
    "chinese address": re.compile("号"),
    "name": re.compile(r"M[rs]|Miss|Dr|Prof|name|先生|女士|小姐|我叫|我的名字是|我是"),
}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of payment card numbers: doubling every second digit from the right,
    the digit sum is a multiple of 10."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _url(match: re.Match[str]) -> str | None:
    text = match.group()
    trimmed = text.rstrip(".,;:!?)]}")  # sentence punctuation after a link is not part of it
    return PLACEHOLDERS["url"] + text[len(trimmed) :]


def _card(match: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", match.group())
    issued = digits[0] in "3456" or "22" <= digits[:2] <= "27"  # card networks' first digits
    return PLACEHOLDERS["card"] if issued and luhn_valid(digits) else None


def _phone(match: re.Match[str]) -> str | None:
    digits = sum(char.isdigit() for char in match.group())
    return PLACEHOLDERS["phone"] if 7 <= digits <= 15 else None


def _whole(kind: str) -> Callable[[re.Match[str]], str | None]:
    return lambda match: PLACEHOLDERS[kind]


def _name(match: re.Match[str]) -> str | None:
    group = next(g for g in _NAME_GROUPS if match.group(g) is not None)
    start, end = match.span(group)
    whole = match.group()
    offset = match.start()
    return whole[: start - offset] + PLACEHOLDERS["name"] + whole[end - offset :]


# (pass, what it finds, pattern, its replacement of a match: None keeps the match)
_PASSES: tuple[tuple[str, str, re.Pattern[str], Callable[[re.Match[str]], str | None]], ...] = (
    ("url", "url", _URL, _url),
    ("email", "email", _EMAIL, _whole("email")),
    ("card", "card", _CARD, _card),
    ("phone", "phone", _PHONE, _phone),
    ("street address", "address", _STREET_ADDRESS, _whole("address")),
    ("chinese address", "address", _CHINESE_ADDRESS, _whole("address")),
    ("name", "name", _NAME, _name),
)


def _replaced(
    replace: Callable[[re.Match[str]], str | None], found: list[int], match: re.Match[str]
) -> str:
    """What ``replace`` makes of ``match`` (the match itself when it keeps it), counted in
    ``found``."""
    new = replace(match)
    if new is None:
        return match.group()
    found[0] += 1
    return new


def scrub(text: str, counts: Counter[str] | None = None) -> str:
    """``text`` with its personal data replaced by typed placeholders; each replacement is
    added to ``counts`` (by kind: url, email, card, phone, address, name) when given."""
    for step, kind, pattern, replace in _PASSES:
        needs = _NEEDS.get(step)
        if needs is not None and needs.search(text) is None:
            continue
        found = [0]
        text = pattern.sub(partial(_replaced, replace, found), text)
        if found[0] and counts is not None:
            counts[kind] += found[0]
    return text


def scrub_texts(texts: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """Each text scrubbed (:func:`scrub`), and the replacements made, by kind."""
    counts: Counter[str] = Counter()
    scrubbed = [scrub(text, counts) for text in texts]
    return scrubbed, {kind: counts[kind] for kind in PLACEHOLDERS if counts[kind]}
