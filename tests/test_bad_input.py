"""Generated bad input everywhere: malformed tables (CSV, TSV, JSON Lines, Parquet), damaged
table files, Blitzer folders, experiment files, interaction files and damaged run folders.

Each case runs the command line in this process and holds it to the contract of
``tests/bad_input.py``: exit 2 with one line naming the file, line or key, or success with
every change reported; never a traceback, never a silent change. The data are tiny and the
recipes the cheapest (``scratch-tfidf``, ``popularity``), so a case takes milliseconds.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from .bad_input import Outcome, cases, check, judge, run_cli, working_directory


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as folder:
        yield Path(folder)


def only_run(folder: Path) -> Path:
    runs = sorted((folder / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def mentions_changes(outcome: Outcome) -> bool:
    said = (outcome.stdout + outcome.stderr).lower()
    return any(word in said for word in ("dropped", "converted", "warning"))


# -- tables of texts: rows, some of them malformed -------------------------------------------

BAD_BYTES = b"\xff\xfe"
NEWLINE = b"\n"
SEPARATORS = {"csv": ",", "tsv": "\t"}

# line and paragraph separators (Zl, Zp) have their own test below
texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"))
    | st.sampled_from(',";\t\n'),
    min_size=1,
    max_size=20,
).filter(lambda t: t.strip())

good_rows = st.tuples(st.just("good"), texts, st.sampled_from(["pos", "neg"]))
row_kinds: dict[str, Any] = {
    "empty text": st.tuples(
        st.just("empty text"), st.sampled_from(["", " ", "\t", " \n "]), st.just("pos")
    ),
    "missing label": st.tuples(st.just("missing label"), texts, st.just("")),
    "bad utf-8": st.tuples(st.just("bad utf-8"), texts, st.just("neg")),
    "null text": st.tuples(st.just("null text"), st.none(), st.just("pos")),
    "non-string text": st.tuples(
        st.just("non-string text"),
        st.one_of(
            st.integers(),
            st.floats(allow_nan=False),
            st.booleans(),
            st.lists(st.integers(), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
        st.just("pos"),
    ),
    "short row": st.tuples(st.just("short row"), texts, st.just("")),
    "long row": st.tuples(st.just("long row"), texts, st.just("pos")),
    "unclosed quote": st.tuples(st.just("unclosed quote"), texts, st.just("neg")),
}
KINDS_BY_FORMAT = {
    "csv": ["empty text", "missing label", "bad utf-8", "short row"],
    "tsv": ["empty text", "missing label", "bad utf-8", "short row"],
    "jsonl": ["empty text", "missing label", "bad utf-8", "null text"],
    "parquet": ["empty text", "missing label", "null text"],
}
# rows a reader keeps or drops and counts: a file holding only these must be read
READABLE = {"good", "empty text", "missing label", "short row", "null text"}
# malformed rows the readers refuse or count
BADREAD_KINDS = {
    "csv": ["long row", "unclosed quote"],
    "tsv": ["long row", "unclosed quote"],
    "jsonl": ["non-string text"],
}
# the well-formed rows every generated table starts with: three of each class
BASE = [("good", f"fine {n}", "pos") for n in range(3)] + [
    ("good", f"broken {n}", "neg") for n in range(3)
]


def table_bytes(fmt: str, rows: list[tuple[str, Any, str]]) -> bytes:
    """The rows as a file of ``fmt`` (columns text, label), each kind malformed its way."""
    if fmt == "parquet":
        frame = pd.DataFrame({"text": [r[1] for r in rows], "label": [r[2] for r in rows]})
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return buffer.getvalue()
    if fmt == "jsonl":
        lines = []
        for kind, text, label in rows:
            line = json.dumps({"text": text, "label": label}, ensure_ascii=False).encode()
            if kind == "bad utf-8":
                line = line.replace(b'"text": "', b'"text": "' + BAD_BYTES, 1)
            lines.append(line)
        return b"\n".join(lines) + b"\n"
    separator = SEPARATORS[fmt]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator="\n")
    writer.writerow(["text", "label"])
    parts = [out.getvalue().encode()]
    for kind, text, label in rows:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=separator, lineterminator="\n")
        if kind == "short row":
            writer.writerow([text])
        elif kind == "long row":
            writer.writerow([text, label, "extra"])
        else:
            writer.writerow([text, label])
        line = out.getvalue().encode()
        if kind == "bad utf-8":
            line = BAD_BYTES + line
        elif kind == "unclosed quote":
            line = b'"' + line.replace(b'"', b"")
        parts.append(line)
    return b"".join(parts)


def table_rows(fmt: str, kinds: list[str]) -> st.SearchStrategy[list[tuple[str, Any, str]]]:
    return st.lists(st.one_of(good_rows, *(row_kinds[k] for k in kinds)), max_size=8)


def write_experiment(folder: Path, **settings: Any) -> Path:
    config = {
        "recipes": ["scratch-tfidf"],
        "budgets": ["all"],
        "save_models": False,
        "output_dir": "runs",
        **settings,
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def write_clean_table(path: Path) -> Path:
    path.write_bytes(table_bytes("csv", BASE))
    return path


def expected_hash(rows: list[tuple[str, Any, str]]) -> str:
    from shoptransfer.data.domain import TextDomain

    kept = [(str(text).strip(), label) for kind, text, label in rows if kind == "good"]
    return TextDomain("x", [t for t, _ in kept], [label for _, label in kept]).data_hash()


def accounting(part: str, rows: list[tuple[str, Any, str]]) -> Any:
    """A check of a run that succeeded: every row written is kept or counted as dropped, every
    malformed row is counted (dropped or converted) and said, and the kept data are exactly the
    good rows (unless some were converted)."""

    def verdict(outcome: Outcome) -> str:
        results = json.loads((only_run(Path.cwd()) / "results.json").read_text())
        described = results["data"][part]
        dropped = sum(described["dropped_rows"].values())
        converted = sum(described.get("converted", {}).values())
        malformed = sum(1 for kind, _, _ in rows if kind != "good")
        if described["examples"] + dropped != len(rows):
            return "rows lost without being counted"
        if dropped + converted < malformed:
            return "malformed rows kept without being counted"
        if (dropped or converted) and not mentions_changes(outcome):
            return "changes counted in results.json but not printed"
        if not converted and described["data_hash"] != expected_hash(rows):
            return "kept texts or labels differ from the file's"
        return ""

    return verdict


def judge_in(
    folder: Path,
    outcome: Outcome,
    names: list[str],
    success: Any = None,
    also: tuple[str, ...] = (),
) -> str:
    """:func:`judge`, with ``folder`` (where the run went) as the working directory."""
    with working_directory(folder):
        return judge(outcome, names, success, also)


def table_case(fmt: str, where: str, extra: list[tuple[str, Any, str]], category: str = "") -> None:
    rows = BASE + extra
    with workspace() as folder:
        damaged = folder / f"{where}.{fmt}"
        content = table_bytes(fmt, rows)
        damaged.write_bytes(content)
        clean = write_clean_table(folder / f"{'target' if where == 'source' else 'source'}.csv")
        write_experiment(
            folder,
            source={"path": (damaged if where == "source" else clean).name},
            target={"path": (clean if where == "source" else damaged).name},
        )
        outcome = run_cli("run", "experiment.yaml", "--quiet", cwd=folder)
        line: tuple[str, ...] = ()
        if [kind for kind, _, _ in extra].count("bad utf-8") == 1 and fmt != "parquet":
            line = (f"line {content[: content.index(BAD_BYTES)].count(NEWLINE) + 1}",)
        breakage = judge_in(folder, outcome, [damaged.name], accounting(where, rows), line)
        if outcome.code == 2 and {kind for kind, _, _ in extra} <= READABLE:
            breakage = "a readable file refused"
        check(category or f"table rows ({fmt})", f"{where} rows {extra!r}", outcome, breakage)


@cases()
@given(where=st.sampled_from(["source", "target"]), extra=table_rows("csv", KINDS_BY_FORMAT["csv"]))
def test_csv_rows(where: str, extra: list[tuple[str, Any, str]]) -> None:
    table_case("csv", where, extra)


@cases()
@given(where=st.sampled_from(["source", "target"]), extra=table_rows("tsv", KINDS_BY_FORMAT["tsv"]))
def test_tsv_rows(where: str, extra: list[tuple[str, Any, str]]) -> None:
    table_case("tsv", where, extra)


@cases()
@given(
    where=st.sampled_from(["source", "target"]), extra=table_rows("jsonl", KINDS_BY_FORMAT["jsonl"])
)
def test_jsonl_rows(where: str, extra: list[tuple[str, Any, str]]) -> None:
    table_case("jsonl", where, extra)


@cases()
@given(
    where=st.sampled_from(["source", "target"]),
    extra=table_rows("parquet", KINDS_BY_FORMAT["parquet"]),
)
def test_parquet_rows(where: str, extra: list[tuple[str, Any, str]]) -> None:
    table_case("parquet", where, extra)


@cases()
@given(
    fmt_kinds=st.sampled_from(sorted(BADREAD_KINDS.items())).flatmap(
        lambda pair: st.tuples(st.just(pair[0]), table_rows(pair[0], pair[1]))
    ),
    where=st.sampled_from(["source", "target"]),
)
def test_rows_the_readers_must_refuse_or_count(
    fmt_kinds: tuple[str, list[tuple[str, Any, str]]], where: str
) -> None:
    fmt, extra = fmt_kinds
    table_case(fmt, where, extra, category=f"table rows ({fmt})")


@cases(0.4)
@given(
    text=st.tuples(texts, st.sampled_from(["\u2028", "\u2029"]), texts).map("".join),
    where=st.sampled_from(["source", "target"]),
)
def test_jsonl_texts_holding_line_separators(text: str, where: str) -> None:
    table_case("jsonl", where, [("good", text, "pos")], category="table rows (jsonl, U+2028)")


# -- damaged table files ----------------------------------------------------------------------


def damaged_file(fmt: str, damage: str, noise: bytes, cut: float) -> bytes:
    valid = table_bytes(fmt, BASE)
    if damage == "empty":
        return b""
    if damage == "header only":
        return b"text,label\n" if fmt == "csv" else b"text\tlabel\n" if fmt == "tsv" else b""
    if damage == "random bytes":
        return noise
    if damage == "truncated":
        return valid[: int(len(valid) * cut)]
    if damage == "duplicate columns":
        frame = pd.DataFrame([[r[1], r[1], r[2]] for r in BASE], columns=["text", "text", "label"])
        if fmt == "jsonl":
            return b"".join(b'{"text": "a", "text": "b", "label": "pos"}\n' for _ in BASE)
        if fmt == "parquet":
            return valid  # Parquet cannot hold two columns of one name
        out = io.StringIO()
        frame.to_csv(out, sep=SEPARATORS[fmt], index=False)
        return out.getvalue().encode()
    raise AssertionError(damage)


def file_case(
    fmt: str, damage: str, noise: bytes, cut: float, gz: bool, category: str = ""
) -> None:
    with workspace() as folder:
        name = f"target.{fmt}" + (".gz" if gz else "")
        content = damaged_file(fmt, damage, noise, cut)
        if gz:
            content = gzip.compress(content)
            if damage == "truncated":  # the compressed stream is what is cut
                content = gzip.compress(table_bytes(fmt, BASE))[: int(len(content) * cut)]
        (folder / name).write_bytes(content)
        write_clean_table(folder / "source.csv")
        write_experiment(folder, source={"path": "source.csv"}, target={"path": name})
        outcome = run_cli("run", "experiment.yaml", "--quiet", cwd=folder)
        success = None
        if damage == "truncated" and fmt in ("csv", "tsv", "jsonl") and not gz:
            # a text file cut short is still a table: the rows it holds must be read faithfully
            def success(outcome: Outcome) -> str:
                return ""

        breakage = judge_in(folder, outcome, [name], success)
        case = f"{name}: {damage} ({cut:.2f}, {noise!r})"
        check(category or f"table files ({fmt})", case, outcome, breakage)


file_damage = st.sampled_from(["empty", "header only", "random bytes", "truncated"])


@cases(0.6)
@given(
    fmt=st.sampled_from(["csv", "tsv", "jsonl", "parquet"]),
    damage=file_damage,
    noise=st.binary(max_size=40),
    cut=st.floats(0, 0.95),
)
def test_damaged_table_files(fmt: str, damage: str, noise: bytes, cut: float) -> None:
    file_case(fmt, damage, noise, cut, gz=False)


@cases(0.4)
@given(
    fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
    damage=st.sampled_from(["truncated", "random bytes"]),
    noise=st.binary(min_size=1, max_size=40),
    cut=st.floats(0.05, 0.95),
)
def test_damaged_gzip_tables(fmt: str, damage: str, noise: bytes, cut: float) -> None:
    file_case(fmt, damage, noise, cut, gz=True, category="gzip tables")


@cases(0.2)
@given(fmt=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_duplicate_column_names(fmt: str) -> None:
    file_case(fmt, "duplicate columns", b"", 1.0, False, "duplicate columns")


# -- Blitzer folders --------------------------------------------------------------------------

reviews = st.lists(st.tuples(texts, texts), min_size=1, max_size=5)
BLITZER_DAMAGE = [
    "none",
    "empty review",
    "unclosed review",
    "no closing reviews",
    "text outside",
    "truncated",
    "bad utf-8",
]


def blitzer_text(items: list[tuple[str, str]], damage: str, at: int) -> bytes:
    elements = [
        f"<review>\n{title.replace('<', ' ')}\n{body.replace('<', ' ')}\n</review>\n"
        for title, body in items
    ]
    at = at % len(elements)
    if damage == "empty review":
        elements.insert(at, "<review>\n\n</review>\n")
    elif damage == "unclosed review":
        elements[at] = elements[at].replace("</review>", "")
    elif damage == "text outside":
        elements.insert(at, "stray words\n")
    text = (
        "<reviews>\n"
        + "".join(elements)
        + ("" if damage == "no closing reviews" else "</reviews>\n")
    )
    raw = text.encode()
    if damage == "truncated":
        return raw[: len(raw) * at // (len(elements) + 1)]
    if damage == "bad utf-8":
        return raw.replace(b"<review>", b"<review>" + BAD_BYTES, 1)
    return raw


def blitzer_case(
    positive: list[tuple[str, str]],
    negative: list[tuple[str, str]],
    damage: str,
    at: int,
    gz: bool,
    category: str = "blitzer folders",
) -> None:
    with workspace() as folder:
        domain = folder / "kitchen"
        domain.mkdir()
        name = "positive.parsed" + (".gz" if gz else "")
        content = blitzer_text(positive, damage, at)
        if gz:
            content = gzip.compress(content)
        if damage == "truncated gzip":
            content = content[: len(content) * (at + 1) // 12]
        (domain / name).write_bytes(content)
        (domain / "negative.parsed").write_bytes(blitzer_text(negative, "none", 0))
        blitzer_labels = {"pos": "positive", "neg": "negative"}
        target_rows = [(kind, text, blitzer_labels[label]) for kind, text, label in BASE]
        (folder / "target.csv").write_bytes(table_bytes("csv", target_rows))
        target = {"path": "target.csv"}
        source = {"path": "kitchen", "format": "blitzer"}
        write_experiment(folder, source=source, target=target)
        written = len(positive) + len(negative) + (damage == "empty review")

        def success(outcome: Outcome) -> str:
            results = json.loads((only_run(Path.cwd()) / "results.json").read_text())
            described = results["data"]["source"]
            dropped = sum(described["dropped_rows"].values())
            if described["examples"] + dropped != written:
                return "reviews lost without being counted"
            if dropped and not mentions_changes(outcome):
                return "changes counted in results.json but not printed"
            return ""

        outcome = run_cli("run", "experiment.yaml", "--quiet", cwd=folder)
        breakage = judge_in(folder, outcome, [name], success)
        check(category, f"{name}: {damage} at {at}", outcome, breakage)


@cases()
@given(
    positive=reviews,
    negative=reviews,
    damage=st.sampled_from(BLITZER_DAMAGE),
    at=st.integers(0, 10),
    gz=st.booleans(),
)
def test_blitzer_folders(
    positive: list[tuple[str, str]],
    negative: list[tuple[str, str]],
    damage: str,
    at: int,
    gz: bool,
) -> None:
    blitzer_case(positive, negative, damage, at, gz)


@cases(0.4)
@given(positive=reviews, at=st.integers(0, 10))
def test_blitzer_truncated_gzip(positive: list[tuple[str, str]], at: int) -> None:
    blitzer_case(positive, positive, "truncated gzip", at, True, "blitzer gzip")


# -- experiment files -------------------------------------------------------------------------

INVALID_VALUES: dict[str, list[Any]] = {
    "name": [123, ["a"], {"a": 1}, None],
    "seeds": [[], [-1], ["a"], [0, 0], 1.5, "0", None, [True]],
    "budgets": [[], [-1], ["x"], [1.5], [0, 0], None, [True], {}],
    "recipes": [
        [],
        [""],
        ["no-such-recipe"],
        [{}],
        [{"name": "scratch-tfidf", "bogus": 1}],
        [{"name": "scratch-tfidf", "c": -1}],
        3,
        None,
        [["scratch-tfidf"]],
    ],
    "max_length": [0, -5, "long", 1.5, None],
    "test_fraction": [0, 1, -0.5, "half", 2],
    "save_models": ["yes", 1, None],
    "source": [[], "source.csv", {"path": "missing.csv"}, {"text": "text"}, {"path": 3}],
    "target": [None, {"path": "target.csv", "label": "nope"}, {"path": "target.csv", "x": 1}],
    "task": ["bogus", 3],
    "unknown_key": [1],
}
SETTLED_KEYS = ("seeds", "recipes", "duplicate key")
DUPLICATES = {
    "seeds": "[1]",
    "name": "other",
    "output_dir": "elsewhere",
}  # a key given twice


def experiment_case(key: str, value: Any, category: str = "experiment files") -> None:
    with workspace() as folder:
        write_clean_table(folder / "source.csv")
        write_clean_table(folder / "target.csv")
        path = write_experiment(
            folder, source={"path": "source.csv"}, target={"path": "target.csv"}
        )
        config = yaml.safe_load(path.read_text())
        names = [key]
        if key == "duplicate key":
            names = [value]
            config.setdefault(value, [0] if value == "seeds" else "first")  # given once, then
            path.write_text(yaml.safe_dump(config) + f"{value}: {DUPLICATES[value]}\n")
        elif key == "control character":  # YAML refuses them
            names = ["experiment.yaml"]
            raw = path.read_bytes()
            at = value % len(raw)
            path.write_bytes(raw[:at] + bytes([1 + value % 8]) + raw[at:])
        elif key == "syntax":
            names = ["experiment.yaml"]
            raw = path.read_bytes()
            path.write_bytes(raw[: value % len(raw)] + b": [\n" + BAD_BYTES[: value % 2])
        else:
            config[key] = value
            path.write_text(yaml.safe_dump(config))
            if key in ("source", "target") and isinstance(value, dict) and "path" in value:
                names = [key, str(value["path"]), str(value.get("label"))]
        outcome = run_cli("run", "experiment.yaml", "--quiet", cwd=folder)
        breakage = judge_in(folder, outcome, names, None if key != "syntax" else lambda o: "")
        check(category, f"{key}: {value!r}", outcome, breakage)


@cases()
@given(
    entry=st.sampled_from(
        [(k, v) for k, values in INVALID_VALUES.items() if k not in SETTLED_KEYS for v in values]
    )
    | st.tuples(st.just("syntax"), st.integers(0, 400))
)
def test_experiment_files(entry: tuple[str, Any]) -> None:
    experiment_case(*entry)


@cases(0.6)
@given(
    entry=st.sampled_from(
        [(k, v) for k, values in INVALID_VALUES.items() if k in SETTLED_KEYS for v in values]
        + [("duplicate key", k) for k in DUPLICATES]
        + [("control character", n) for n in (0, 17, 40, 95)]
    )
)
def test_duplicates_empty_lists_and_yaml_characters(entry: tuple[str, Any]) -> None:
    experiment_case(*entry, category="experiment files")


# -- interaction files ------------------------------------------------------------------------

INTERACTION_DAMAGE = ["none", "short user"]
# bad times named at their line; changes printed as well as counted
COUNTED_INTERACTION_DAMAGE = ["empty user", "duplicate row", "out of order", "bad time"]


def interaction_rows(users: int, per_user: int, damage: list[str]) -> list[list[str]]:
    rows = [
        [f"u{u}", f"i{(u + n) % 7}", str(100 * u + n)]
        for u in range(users)
        for n in range(per_user)
    ]
    for number, kind in enumerate(damage):
        at = (7 * number) % max(1, len(rows))
        if kind == "empty user":
            rows.insert(at, ["", "i1", "5"])
        elif kind == "duplicate row":
            rows.insert(at, list(rows[at]))
        elif kind == "out of order":
            timed = [row for row in rows[at:] + rows[:at] if row[2].lstrip("-").isdigit()]
            if timed:  # (an earlier 'bad time' may have spoiled rows[at]'s time)
                rows.append([timed[0][0], "i6", str(int(timed[0][2]) - 1000)])
        elif kind == "short user":
            rows.append([f"lonely{number}", "i2", "7"])
        elif kind == "bad time":
            rows[at] = [rows[at][0], rows[at][1], "not a time"]
    return rows


def interaction_bytes(fmt: str, rows: list[list[str]]) -> bytes:
    columns = ["user_id", "item_id", "timestamp"]
    if fmt == "parquet":
        buffer = io.BytesIO()
        pd.DataFrame(rows, columns=columns).to_parquet(buffer)
        return buffer.getvalue()
    if fmt == "inter":
        columns = ["user_id:token", "item_id:token", "timestamp:float"]
    out = io.StringIO()
    csv.writer(out, delimiter="," if fmt == "csv" else "\t", lineterminator="\n").writerows(
        [columns, *rows]
    )
    return out.getvalue().encode()


def interaction_case(
    fmt: str, users: int, per_user: int, damage: list[str], category: str = ""
) -> None:
    rows = interaction_rows(users, per_user, damage)
    with workspace() as folder:
        name = f"shop.{fmt}"
        (folder / name).write_bytes(interaction_bytes(fmt, rows))
        write_experiment(
            folder,
            task="recommendation",
            target={"path": name},
            recipes=["popularity"],
            ks=[5],
        )
        line: tuple[str, ...] = ()
        if "bad time" in damage and fmt != "parquet":
            first = next(n for n, row in enumerate(rows) if row[2] == "not a time")
            line = (f"line {first + 2}",)

        def success(outcome: Outcome) -> str:
            results = json.loads((only_run(Path.cwd()) / "results.json").read_text())
            described = results["data"]["target"]
            dropped = sum(v for k, v in described["report"].items() if "(dropped)" in k)
            if described["interactions"] + dropped != len(rows):
                return "interactions lost without being counted"
            if described["test_cases"] == 0:
                return "a run without test cases succeeded"
            changed = {"empty user", "duplicate row", "out of order"} & set(damage)
            if changed and not mentions_changes(outcome):
                return "changes counted in results.json but not printed"
            return ""

        outcome = run_cli("run", "experiment.yaml", "--quiet", cwd=folder)
        breakage = judge_in(folder, outcome, [name], success, line)
        check(
            category or f"interaction files ({fmt})",
            f"{name}: {users} users x {per_user}, {damage}",
            outcome,
            breakage,
        )


@cases(1.5)
@given(
    fmt=st.sampled_from(["csv", "tsv", "inter", "parquet"]),
    users=st.integers(0, 4),
    per_user=st.integers(1, 5),
    damage=st.lists(st.sampled_from(INTERACTION_DAMAGE), max_size=3),
)
def test_interaction_files(fmt: str, users: int, per_user: int, damage: list[str]) -> None:
    interaction_case(fmt, users, per_user, damage)


@cases()
@given(
    fmt=st.sampled_from(["csv", "tsv", "inter", "parquet"]),
    users=st.integers(1, 4),
    per_user=st.integers(1, 5),
    damage=st.lists(
        st.sampled_from(INTERACTION_DAMAGE + COUNTED_INTERACTION_DAMAGE), min_size=1, max_size=3
    ),
)
def test_interaction_files_changed_or_refused(
    fmt: str, users: int, per_user: int, damage: list[str]
) -> None:
    interaction_case(fmt, users, per_user, damage, "interaction files")


# -- damaged run folders ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@st.composite
def damage_of(draw: st.DrawFn, files: list[str]) -> tuple[str, str, Any]:
    """(file or folder in the run, what is done to it, with what)."""
    target = draw(st.sampled_from(files))
    operations = ["delete", "truncate", "garbage"]
    if target.endswith(".json"):
        operations += ["json value", "drop key", "retype"]
    operation = draw(st.sampled_from(operations if "." in Path(target).name else ["delete"]))
    argument: Any = None
    if operation == "truncate":
        argument = draw(st.floats(0, 0.99))
    elif operation == "garbage":
        argument = draw(st.binary(max_size=48))
    elif operation == "json value":
        argument = draw(json_values)
    elif operation in ("drop key", "retype"):
        argument = (draw(st.integers(0, 1000)), draw(st.integers(0, 1000)), draw(json_values))
    return target, operation, argument


def _keys(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every place in a JSON value, the top level's first."""
    places: list[tuple[Any, Any]] = []
    pending = [value]
    while pending:
        current = pending.pop(0)
        keys = list(current) if isinstance(current, dict) else range(len(current))
        for key in keys:
            places.append((current, key))
            if isinstance(current[key], dict | list) and current[key]:
                pending.append(current[key])
    return places


def apply_damage(run: Path, target: str, operation: str, argument: Any) -> bool:
    """Damage ``run/target``; False when the damage could not change anything."""
    path = run / target
    if operation == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return True
    raw = path.read_bytes()
    if operation == "truncate":
        path.write_bytes(raw[: int(len(raw) * argument)])
        return True
    if operation == "garbage":
        path.write_bytes(argument)
        return argument != raw
    if operation == "json value":
        path.write_text(json.dumps(argument))
        return True
    value = json.loads(raw)
    if operation == "drop path":  # the key at the end of a path of keys
        container = value
        for key in argument[:-1]:
            container = container[key]
        del container[argument[-1]]
        path.write_text(json.dumps(value))
        return True
    places = [(c, k) for c, k in _keys(value) if not (isinstance(c, list) and len(c) == 0)]
    if not places:
        return False
    choice, _, replacement = argument
    container, key = places[choice % len(places)]
    if operation == "drop key":
        if isinstance(container, list):
            return False
        del container[key]
    else:
        if json_type(replacement) == json_type(container[key]):
            return False  # a value of the right type cannot be told from the true one
        container[key] = replacement
    path.write_text(json.dumps(value))
    return True


@pytest.fixture(scope="session")
def classification_run(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: str) -> Path:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import load_config

    folder = tmp_path_factory.mktemp("classification-run")
    write_clean_table(folder / "source.csv")
    write_clean_table(folder / "target.csv")
    path = write_experiment(
        folder,
        source={"path": "source.csv"},
        target={"path": "target.csv"},
        recipes=["scratch-tfidf", {"name": "frozen-features", "epochs": 2}],
        backbone=tiny_backbone,
        max_length=16,
        save_models=True,
        output_dir=str(folder / "runs"),
        cache_dir=str(folder / "cache"),
    )
    return run_experiment(load_config(path), show_progress=False)


@pytest.fixture(scope="session")
def recommendation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shoptransfer.api import run_experiment
    from shoptransfer.config import load_config

    folder = tmp_path_factory.mktemp("recommendation-run")
    (folder / "shop.csv").write_bytes(interaction_bytes("csv", interaction_rows(5, 5, [])))
    path = write_experiment(
        folder,
        task="recommendation",
        target={"path": "shop.csv"},
        recipes=[
            "popularity",
            "item-knn",
            {"name": "sasrec", "epochs": 1, "hidden": 8, "batch_size": 8},
        ],
        ks=[5],
        save_models=True,
        output_dir=str(folder / "runs"),
    )
    return run_experiment(load_config(path), show_progress=False)


CLASSIFICATION_FILES = [
    "results.json",
    "models/scratch-tfidf-kall-seed0",
    "models/scratch-tfidf-kall-seed0/model.json",
    "models/scratch-tfidf-kall-seed0/model.safetensors",
    "models/scratch-tfidf-kall-seed0/vocabulary.json",
    "models/frozen-features-kall-seed0",
    "models/frozen-features-kall-seed0/model.json",
    "models/frozen-features-kall-seed0/model.safetensors",
]
RECOMMENDATION_FILES = [
    "results.json",
    "config.yaml",
    "models/popularity-kall-seed0/model.json",
    "models/popularity-kall-seed0/ranker.safetensors",
    "models/item-knn-kall-seed0",
    "models/item-knn-kall-seed0/model.json",
    "models/item-knn-kall-seed0/similarity.npz",
    "models/sasrec-kall-seed0/model.json",
    "models/sasrec-kall-seed0/ranker.safetensors",
]


INTACT: dict[tuple[Path, tuple[str, ...]], Outcome] = {}


def run_folder_case(
    run: Path, command: list[str], damage: tuple[str, str, Any], category: str
) -> Outcome | None:
    """Damage a copy of ``run`` and run ``command`` on it; the intact copy's output is what a
    success must print."""
    with workspace() as folder:
        copy = folder / "run"
        shutil.copytree(run, copy)
        key = (run, tuple(command))
        if key not in INTACT:
            INTACT[key] = run_cli(*[copy if a == "RUN" else a for a in command], cwd=folder)
        intact = INTACT[key]
        assert intact.code == 0, intact
        if not apply_damage(copy, *damage):
            return None
        outcome = run_cli(*[copy if a == "RUN" else a for a in command], cwd=folder)
        target = Path(damage[0])

        def success(outcome: Outcome) -> str:
            same = outcome.stdout == intact.stdout
            return "" if same else "a damaged run folder gave other answers"

        breakage = judge(outcome, [target.name], success)
        check(
            category,
            f"{damage[1]} {target} ({damage[2]!r}): {' '.join(command)}",
            outcome,
            breakage,
        )
        if "predict" in command:
            api_case(copy, command[command.index("--model") + 1], target.name, category)
        return outcome


def api_case(run: Path, model: str, name: str, category: str) -> None:
    """``api.load_model`` on the damaged folder: a project error naming the file, or a model
    (that, where it reads texts, predicts a text)."""
    from shoptransfer.api import load_model, model_reads
    from shoptransfer.errors import ShopTransferError

    outcome = Outcome(["api.load_model", str(run), model], 0, "", "")
    try:
        predictor = load_model(run, model)
        if model_reads(run / "models" / model) == "texts":
            predictor.predict(["great value"])
    except ShopTransferError as exc:
        outcome.code, outcome.stderr = 2, f"error: {exc}\n"
    except Exception as exc:
        outcome.escaped = exc
    check(f"{category} (api.load_model)", f"{name}", outcome, judge(outcome, [name], lambda o: ""))


@cases(1.5)
@given(
    damage=damage_of(CLASSIFICATION_FILES),
    model=st.sampled_from(["scratch-tfidf-kall-seed0", "frozen-features-kall-seed0"]),
)
def test_predict_on_damaged_run_folders(
    classification_run: Path, damage: tuple[str, str, Any], model: str
) -> None:
    command = ["predict", "RUN", "--model", model, "--text", "great value", "--json"]
    run_folder_case(classification_run, command, damage, "run folders (predict)")


@cases(1.5)
@given(
    damage=damage_of(RECOMMENDATION_FILES),
    recipe=st.sampled_from(["popularity", "item-knn", "sasrec"]),
)
def test_recommend_on_damaged_run_folders(
    recommendation_run: Path, damage: tuple[str, str, Any], recipe: str
) -> None:
    command = ["recommend", "RUN", "--user", "u1", "--k", "3", "--recipe", recipe, "--json"]
    run_folder_case(recommendation_run, command, damage, "run folders (recommend)")


TFIDF = "models/scratch-tfidf-kall-seed0"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ((f"{TFIDF}/model.safetensors", "truncate", 0.5), "not a readable safetensors file"),
        ((f"{TFIDF}/vocabulary.json", "delete", None), "vocabulary.json: file not found"),
        ((f"{TFIDF}/model.json", "truncate", 0.5), "model.json: not valid JSON"),
        ((f"{TFIDF}/model.json", "json value", {"kind": "tfidf-logistic"}), "key 'classes'"),
        ((f"{TFIDF}/model.json", "json value", {"kind": "forest"}), "unknown model kind"),
        ((TFIDF, "delete", None), "model folder not found"),
        (("results.json", "garbage", b"{not json"), "results.json: not valid JSON"),
        (("results.json", "json value", {"results": 3}), "key 'results' is not a list"),
        (
            (
                "models/frozen-features-kall-seed0/model.json",
                "drop path",
                ("spec", "frozen_backbone"),
            ),
            "model.json: the model reads precomputed vectors",
        ),
    ],
)
def test_predict_names_the_damaged_file(
    classification_run: Path, damage: tuple[str, str, Any], message: str
) -> None:
    model = damage[0].split("/")[1] if damage[0].startswith("models/") else TFIDF.split("/")[1]
    command = ["predict", "RUN", "--model", model, "--text", "great"]
    outcome = run_folder_case(classification_run, command, damage, "run folders (named)")
    assert outcome is not None and outcome.code == 2
    assert message in outcome.stderr


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (("models/popularity-kall-seed0/ranker.safetensors", "truncate", 0.3), "safetensors"),
        (("models/item-knn-kall-seed0/similarity.npz", "truncate", 0.5), "similarity.npz"),
        (("models/sasrec-kall-seed0/model.json", "json value", {"kind": 1}), "unknown model"),
        (("results.json", "json value", {}), "not a recommendation run"),
        (("models/item-knn-kall-seed0/similarity.npz", "garbage", b""), "similarity.npz"),
        (
            ("config.yaml", "garbage", b"task: recommendation\ntarget: {path: shop}\n"),
            "config.yaml: the run's target data",
        ),
    ],
)
def test_recommend_names_the_damaged_file(
    recommendation_run: Path, damage: tuple[str, str, Any], message: str
) -> None:
    recipe = damage[0].split("/")[1].split("-kall")[0] if "/" in damage[0] else "popularity"
    command = ["recommend", "RUN", "--user", "u1", "--recipe", recipe]
    outcome = run_folder_case(recommendation_run, command, damage, "run folders (named)")
    assert outcome is not None and outcome.code == 2
    assert message in outcome.stderr


def test_a_target_pool_of_one_class_is_an_error_not_a_traceback() -> None:
    """Found by the suite (a truncated target table): the test set takes the only 'neg' row,
    and scratch-tfidf met a pool of one class inside scikit-learn."""
    with workspace() as folder:
        write_clean_table(folder / "source.csv")
        (folder / "target.csv").write_text("text,label\nfine 1,pos\nfine 2,pos\nbroken,neg\n")
        write_experiment(folder, source={"path": "source.csv"}, target={"path": "target.csv"})
        outcome = run_cli("run", "experiment.yaml", "--quiet", cwd=folder)
        assert judge(outcome, ["target.csv"]) == "", outcome
        assert "holds only {'pos': 1}" in outcome.stderr
        assert not (folder / "runs").exists()
