"""Does a text backbone read the language of a domain's texts?

Measured on a sample of the texts, two ways: the script they are written in against the
languages the backbone declares (``BackboneSpec.languages``; ``multilingual`` covers all), and
the share of their tokens the backbone's tokenizer does not know (an English WordPiece
vocabulary maps most Chinese text to ``[UNK]``). Either one, when it fails, gives a warning the
run prints once and keeps in ``results.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoptransfer.backbones.registry import get_backbone_spec
from shoptransfer.errors import ConfigError
from shoptransfer.scripts import (
    LANGUAGE_NAMES,
    MULTILINGUAL,
    SCRIPT_NAMES,
    sample,
    script_shares,
    uncovered_script,
)

UNKNOWN_LIMIT = 0.05  # a backbone that reads the language knows nearly every token
TOKENIZED_TEXTS = 300


def unknown_token_share(backbone: str, texts: Sequence[str]) -> float | None:
    """The share of the tokens of a sample of ``texts`` that ``backbone``'s tokenizer maps to its
    unknown token; ``None`` when it has no such token (byte-level vocabularies) or does not load
    through transformers."""
    from shoptransfer.backbones.text import load_tokenizer

    try:
        tokenizer = load_tokenizer(backbone)
    except (ConfigError, OSError, ValueError):
        return None
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:
        return None
    ids = tokenizer(sample(texts, TOKENIZED_TEXTS), add_special_tokens=False)["input_ids"]
    total = sum(len(row) for row in ids)
    return sum(row.count(unknown) for row in ids) / total if total else None


def language_warning(backbone: str, domain: Any, role: str) -> str | None:
    """One line when ``backbone`` does not cover the language of ``domain``'s texts (``role``:
    source or target, for the message); ``None`` when it does, or the domain holds no texts."""
    spec = get_backbone_spec(backbone)
    if getattr(domain, "holds", None) != "texts" or (spec and spec.modality != "text"):
        return None
    languages = spec.languages if spec is not None else ()
    if MULTILINGUAL in languages:
        return None
    texts = list(domain.inputs)
    shares = script_shares(texts)
    script = uncovered_script(shares, languages)
    unknown = unknown_token_share(backbone, texts)
    if script is None and (unknown is None or unknown < UNKNOWN_LIMIT):
        return None
    found = []
    if script is not None:
        found.append(f"{shares[script]:.0%} of its letters are {SCRIPT_NAMES[script]}")
    if unknown is not None and unknown >= UNKNOWN_LIMIT:
        found.append(f"{unknown:.0%} of its tokens are unknown to the backbone's tokenizer")
    trained = (
        f" was trained on {', '.join(LANGUAGE_NAMES.get(code, code) for code in languages)}"
        if languages
        else ""
    )
    return (
        f"backbone '{backbone}'{trained} and may not read the {role} '{domain.name}': "
        f"{' and '.join(found)} (a sample of its texts); its features carry little of their "
        "meaning. Choose a backbone for that language (shoptransfer backbones) and compare "
        "with scratch-tfidf"
    )
