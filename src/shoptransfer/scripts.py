"""The writing systems (scripts) texts are written in, measured on a sample of them.

Used to choose how TF-IDF splits texts into words (Chinese has no spaces between words) and to
tell when a backbone was not trained on the data's language. Standard library only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

# (first, last code point, script): the blocks the checks need; any other letter is "other"
_BLOCKS = (
    (0x0041, 0x024F, "latin"),
    (0x1E00, 0x1EFF, "latin"),
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0E00, 0x0E7F, "thai"),
    (0x1100, 0x11FF, "hangul"),
    (0x3040, 0x30FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0x20000, 0x2FA1F, "han"),
)

SCRIPT_NAMES = {
    "latin": "Latin letters",
    "han": "Chinese characters (Han)",
    "kana": "Japanese kana",
    "hangul": "Korean Hangul",
    "cyrillic": "Cyrillic letters",
    "arabic": "Arabic letters",
    "greek": "Greek letters",
    "hebrew": "Hebrew letters",
    "devanagari": "Devanagari letters",
    "thai": "Thai letters",
    "other": "letters of other scripts",
}

# the scripts a language is written in; a backbone declares its languages by these codes, or
# "multilingual" (trained on many languages: no script is reported as uncovered)
LANGUAGE_SCRIPTS = {
    "en": ("latin",),
    "de": ("latin",),
    "fr": ("latin",),
    "es": ("latin",),
    "it": ("latin",),
    "pt": ("latin",),
    "nl": ("latin",),
    "zh": ("han",),
    "ja": ("han", "kana"),
    "ko": ("hangul", "han"),
    "ru": ("cyrillic",),
    "ar": ("arabic",),
}
LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "ru": "Russian",
    "ar": "Arabic",
}
MULTILINGUAL = "multilingual"
SAMPLE_TEXTS = 1000


def script_of(char: str) -> str | None:
    """The script of one character; ``None`` for what is not a letter (digits, punctuation,
    spaces, emoji)."""
    if not char.isalpha():
        return None
    point = ord(char)
    for first, last, script in _BLOCKS:
        if first <= point <= last:
            return script
    return "other"


def sample(texts: Sequence[str], size: int = SAMPLE_TEXTS) -> list[str]:
    """At most ``size`` of ``texts``, evenly spaced (the same texts give the same sample)."""
    if len(texts) <= size:
        return list(texts)
    step = len(texts) / size
    return [texts[int(i * step)] for i in range(size)]


def script_shares(texts: Sequence[str], size: int = SAMPLE_TEXTS) -> dict[str, float]:
    """Each script's share of the letters in a sample of ``texts`` (largest first); empty when
    the sample holds no letter."""
    counts: Counter[str] = Counter()
    for text in sample(texts, size):
        counts.update(script for script in map(script_of, text) if script is not None)
    total = sum(counts.values())
    return {script: count / total for script, count in counts.most_common()} if total else {}


def uncovered_script(shares: dict[str, float], languages: Sequence[str]) -> str | None:
    """The main script of texts with these ``shares`` when ``languages`` (codes, or
    ``multilingual``) are not written in it; ``None`` when they are, when the main script holds
    less than half of the letters, or when a language is not one this module knows."""
    if not shares or not languages or MULTILINGUAL in languages:
        return None
    if any(language not in LANGUAGE_SCRIPTS for language in languages):
        return None
    main, share = next(iter(shares.items()))
    covered = {script for language in languages for script in LANGUAGE_SCRIPTS[language]}
    return main if share >= 0.5 and main not in covered else None
