"""Progress bars that stay quiet when output is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    items: Iterable[T], description: str, enabled: bool = True, total: int | None = None
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on stderr when it is a terminal."""
    show = enabled and sys.stderr.isatty()
    yield from tqdm(items, desc=description, disable=not show, leave=False, total=total)
