"""The text encoding a user declares for their files (a domain's ``encoding``, ``predict
--encoding``), checked against Python's codecs. Standard library only."""

from __future__ import annotations

import codecs


def check_encoding(encoding: str) -> str:
    """``encoding`` as Python's codec name; a ValueError naming it when Python has no text
    codec of that name (``gbk``, ``gb18030``, ``big5``, ``latin-1``, ``utf-8``... are known)."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ValueError(
            f"unknown encoding '{encoding}'; expected a name such as utf-8, gbk, gb18030, "
            "big5, shift_jis or latin-1"
        ) from None
    if not getattr(info, "_is_text_encoding", True):
        raise ValueError(f"'{encoding}' is not a text encoding; expected one such as gb18030")
    return info.name
