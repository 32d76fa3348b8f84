"""Progress bars that stay quiet when output is not a terminal, or when a run asks for quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_SHOWN: ContextVar[bool] = ContextVar("shoptransfer_progress_shown", default=True)


@contextmanager
def showing_progress(shown: bool) -> Iterator[None]:
    """Within the block, :func:`progress` draws bars only if ``shown`` (a run's
    ``show_progress``): the flag reaches the encoders and trainers the run calls."""
    token = _SHOWN.set(shown)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def progress(
    items: Iterable[T], description: str, enabled: bool = True, total: int | None = None
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on stderr when it is a terminal (and neither
    ``enabled`` nor the enclosing :func:`showing_progress` turn it off)."""
    show = enabled and _SHOWN.get() and sys.stderr.isatty()
    yield from tqdm(items, desc=description, disable=not show, leave=False, total=total)


@contextmanager
def progress_bar(
    description: str, total: int | None, unit: str, enabled: bool = True
) -> Iterator[tqdm]:
    """A bar advanced by hand (``bar.update(n)``), with rate and, when ``total`` is known, ETA;
    drawn on stderr under the same conditions as :func:`progress`."""
    show = enabled and _SHOWN.get() and sys.stderr.isatty()
    bar = tqdm(desc=description, total=total, unit=unit, disable=not show, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def report(line: str) -> None:
    """Print ``line`` on stderr, above any progress bar, unless the enclosing
    :func:`showing_progress` turned progress off. Unlike a bar it is printed when stderr is a
    file too, so that a log shows a long run is alive."""
    if _SHOWN.get():
        tqdm.write(line, file=sys.stderr)


def duration(seconds: float) -> str:
    """``seconds`` as ``4.2 s``, ``42 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
