"""The contract the bad-input suite (``test_bad_input.py``) holds every command to, and the
tally of the cases it generated.

A command given bad input either exits 2 with exactly one line on stderr that names the file,
line, key or flag at fault, or succeeds and reports every change it made; it never ends in a
traceback and never changes anything silently. :func:`run_cli` runs the command line in this
process (the way ``shoptransfer`` runs it: :func:`shoptransfer.cli.main`); :func:`judge`
says which part of the contract an outcome broke, if any.

Two environment variables steer the suite:

- ``SHOPTRANSFER_HYPOTHESIS=long``: many more generated cases (the benchmark machine); the
  default profile is small, fixed (derandomized) and keeps no example database, for CI.
- ``SHOPTRANSFER_BAD_INPUT_SURVEY=1``: record every broken case instead of failing at the first,
  and print per category how many cases ran, how many broke the contract and one example of each
  kind of breakage (how the findings of the issue were counted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

PROFILE = os.environ.get("SHOPTRANSFER_HYPOTHESIS", "ci")
SURVEY = os.environ.get("SHOPTRANSFER_BAD_INPUT_SURVEY", "") not in ("", "0")

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}
# CI: a fixed set of cases, reported as found (shrinking a failure would take minutes)
settings.register_profile(
    "shoptransfer-ci",
    max_examples=25,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    **_COMMON,
)
settings.register_profile("shoptransfer-long", max_examples=500, **_COMMON)
if PROFILE not in ("ci", "long"):
    raise ValueError(f"SHOPTRANSFER_HYPOTHESIS={PROFILE!r}; expected 'ci' or 'long'")


def cases(scale: float = 1.0) -> settings:
    """The settings of one generated category: the profile's number of cases times ``scale``."""
    profile = settings.get_profile(f"shoptransfer-{PROFILE}")
    return settings(profile, max_examples=max(1, round(profile.max_examples * scale)))


@dataclasses.dataclass
class Outcome:
    """What one command did: its exit status, what it printed, and the exception that escaped
    it (a traceback the user would have seen), if any."""

    args: list[str]
    code: int | None
    stdout: str
    stderr: str
    escaped: BaseException | None = None

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        escaped = ""
        if self.escaped is not None:
            escaped = "".join(traceback.format_exception(self.escaped))[-3000:]
        return (
            f"shoptransfer {' '.join(self.args)}\nexit {self.code}\nstderr: {self.stderr[-2000:]}"
            f"\nstdout: {self.stdout[-1000:]}\n{escaped}"
        )


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(*args: str | Path, cwd: Path) -> Outcome:
    """Run ``shoptransfer ARGS`` in this process, in ``cwd``, as the installed script does."""
    from shoptransfer.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    escaped: BaseException | None = None
    saved_argv = sys.argv
    sys.argv = ["shoptransfer", *argv]
    try:
        with (
            working_directory(cwd),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if not isinstance(exc.code, int | None):
                    print(exc.code, file=sys.stderr)
            except Exception as exc:  # what the user would see as a traceback
                escaped = exc
    finally:
        sys.argv = saved_argv
    return Outcome(argv, code, out.getvalue(), err.getvalue(), escaped)


def judge(
    outcome: Outcome,
    names: Sequence[str],
    success: Callable[[Outcome], str] | None = None,
    also: Sequence[str] = (),
) -> str:
    """'' when ``outcome`` keeps the contract, else the kind of breakage in a few words.

    An error must be one line on stderr starting ``error:`` and holding one of ``names`` (the
    file, line, key or flag at fault) and each of ``also`` (the line, where it is known).
    ``success`` checks a run that exited 0 and returns '' or what it changed silently; without
    it, success is itself the breakage (the input was one the command must refuse).
    """
    if outcome.escaped is not None:
        return f"traceback ({type(outcome.escaped).__name__})"
    if outcome.code == 2:
        lines = outcome.error_lines
        if len(lines) != 1 or not lines[0].startswith("error: "):
            return f"error printed as {len(lines)} line(s), not one 'error:' line"
        if not any(name in lines[0] for name in names):
            return "error does not name the file, line or key"
        if not all(part in lines[0] for part in also):
            return "error names the wrong line"
        return ""
    if outcome.code == 0:
        if success is None:
            return "exit 0 on input that must be refused"
        return success(outcome)
    return f"exit {outcome.code}"


@dataclasses.dataclass
class Category:
    """The cases of one category: how many ran, and each kind of breakage with one example."""

    cases: int = 0
    broken: int = 0
    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)


TALLY: dict[str, Category] = {}


def check(category: str, case: str, outcome: Outcome, breakage: str) -> None:
    """Count the case; fail on a breakage (in a survey: record it and carry on)."""
    tally = TALLY.setdefault(category, Category())
    tally.cases += 1
    if not breakage:
        return
    tally.broken += 1
    tally.kinds[breakage] += 1
    if breakage not in tally.examples:
        shown = outcome.error_lines[-1] if outcome.error_lines else f"exit {outcome.code}"
        if outcome.escaped is not None:
            shown = f"{type(outcome.escaped).__name__}: {outcome.escaped}"
        tally.examples[breakage] = f"{case[:300]} -> {shown[:300]}"
    if not SURVEY:
        raise AssertionError(f"{category}: {breakage}\ncase: {case}\n{outcome}")


def summary() -> list[str]:
    """The tally as lines: per category the cases, the broken ones and an example per kind."""
    if not TALLY:
        return []
    total = sum(c.cases for c in TALLY.values())
    broken = sum(c.broken for c in TALLY.values())
    lines = [f"bad-input suite ({PROFILE} profile): {total} generated cases, {broken} broken"]
    for name, category in sorted(TALLY.items()):
        lines.append(f"  {name}: {category.cases} cases, {category.broken} broken")
        for kind, count in category.kinds.most_common():
            lines.append(f"    {count} x {kind}: {category.examples[kind]}")
    return lines
