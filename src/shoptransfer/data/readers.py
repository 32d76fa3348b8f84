"""Readers that turn files into validated domains.

Every reader takes a column mapping instead of hard-coded names, decodes text as its declared
``encoding`` (UTF-8 by default; ``gb18030`` for a Chinese GBK file, say) and names the file and
line of anything it cannot use: bytes not valid in the encoding, a corrupt ``.gz``, an empty
file, a header naming a column twice, a row with more fields than the header, an unclosed quote,
a NUL byte, a text cell that is not text (a JSON object, list or number; a Parquet column of
numbers). Rows with empty text (or, in a labeled table, an empty label; in a table of numbers,
an empty number; in a table of several label columns, no label at all) are dropped and counted
in ``TextDomain.dropped``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoptransfer.data.domain import TextDomain
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.text_encodings import check_encoding

# a .gz file is unpacked in memory up to this size: a few megabytes of gzip can unpack to
# hundreds of gigabytes
MAX_UNPACKED_BYTES = 4 * 2**30

TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it ends in ``.gz``; a DataError when it is missing."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if path.suffix != ".gz":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unpacking:
            data = unpacking.read(MAX_UNPACKED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        problem = "it ends early (truncated)" if isinstance(exc, EOFError) else str(exc)
        raise DataError(
            f"{path}: not a readable gzip file ({problem}); expected a complete .gz file"
        ) from None
    if len(data) > MAX_UNPACKED_BYTES:
        raise DataError(
            f"{path}: unpacks to more than {MAX_UNPACKED_BYTES / 2**30:g} GiB; expected a "
            "smaller file (or a Parquet file, read in columns)"
        )
    return data


ENCODING_HINT = "set the domain's encoding (encoding: gb18030 for Chinese GBK files)"


def decode_text(path: Path, raw: bytes, encoding: str = "utf-8") -> str:
    """``raw`` decoded as ``encoding`` (UTF-8 by default), without a byte-order mark; a
    DataError naming the line and byte offset of the first bytes that are not valid in it."""
    try:
        codec = check_encoding(encoding)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if codec == "utf-8" and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(
            f"{path}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); "
            "save it as UTF-8 or set the domain's encoding: utf-16"
        )
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        hint = ENCODING_HINT if codec == "utf-8" else "check the domain's encoding"
        raise DataError(
            f"{path} line {line}: bytes {raw[exc.start : exc.end]!r} (at byte {exc.start}) are "
            f"not valid {'UTF-8' if codec == 'utf-8' else encoding}; {hint}"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(
            f"{path} line {line}: a NUL byte; expected a text file (is it binary or UTF-16?)"
        )
    return text.removeprefix("\ufeff")


def cell_text(value: Any) -> str:
    """A cell as a string; missing values (None, NaN) become the empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float, np.number)):
        return "a number"
    return type(value).__name__


def text_cell(path: Path, line: int, column: str, value: Any) -> str:
    """A cell that must hold text (a review, an image path) as a string: empty when missing;
    a DataError naming the line when it holds a number, a list or an object (a column mapping
    pointing at the wrong column, or a nested JSON field)."""
    if isinstance(value, str):
        return value
    shown = cell_text(value)
    if not shown:
        return ""
    raise DataError(
        f"{path} line {line}: column '{column}' holds {_kind(value)} ({shown[:40]!r}); "
        "expected text"
    )


def label_cell(path: Path, line: int, column: str, value: Any) -> str:
    """A label cell as a string (text, a whole number or true/false); empty when missing; a
    DataError naming the line when it holds a list or an object."""
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        raise DataError(
            f"{path} line {line}: column '{column}' holds {_kind(value)} "
            f"({cell_text(value)[:40]!r}); expected a label"
        )
    return cell_text(value)


def table_format(path: Path, fmt: str | None) -> str:
    """The table format of ``path``: ``fmt`` when given (checked), else from the extension."""
    if fmt is not None:
        if fmt not in set(TABLE_FORMATS.values()):
            raise DataError(
                f"{path}: unknown format '{fmt}'; expected one of "
                f"{sorted(set(TABLE_FORMATS.values()))}"
            )
        return fmt
    suffix = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    if suffix.lower() not in TABLE_FORMATS:
        raise DataError(
            f"{path}: cannot tell the format from the extension '{suffix}'; expected one of "
            f"{sorted(TABLE_FORMATS)} or an explicit format"
        )
    return TABLE_FORMATS[suffix.lower()]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a KeyError naming a key given twice (json keeps the
    last silently)."""
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise KeyError(key)
        row[key] = value
    return row


def _rows_jsonl(path: Path, text: str) -> tuple[list[dict[str, Any]], list[int]]:
    rows, lines = [], []
    # lines end at "\n" only: str.splitlines would also split at U+2028 and other separators
    # that JSON strings may hold as they are
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
        except KeyError as exc:
            raise DataError(
                f"{path} line {number}: the object names '{exc.args[0]}' twice; expected "
                "unique keys"
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path} line {number}: expected a JSON object, got {type(row).__name__}"
            )
        rows.append(row)
        lines.append(number)
    return rows, lines


def _rows_frame(frame: pd.DataFrame, first_line: int) -> tuple[list[dict[str, Any]], list[int]]:
    rows = frame.to_dict(orient="records")
    return rows, list(range(first_line, first_line + len(rows)))


def require_columns(path: Path, wanted: list[str], columns: list[str]) -> None:
    """A DataError naming the first of ``wanted`` missing from ``columns`` (and, when the
    header reads as one column holding a separator, the separator the file seems to use)."""
    for column in wanted:
        if column not in columns:
            hint = ""
            if len(columns) == 1:
                found = [name for sep, name in SEPARATORS.items() if sep in columns[0]]
                hint = f" (one column: is the file separated by {found[0]}?)" if found else ""
            raise DataError(f"{path}: no column '{column}'; the columns are {columns}{hint}")


SEPARATORS = {"\t": "tabs (a .tsv)", ";": "semicolons", ",": "commas (a .csv)", "|": "bars"}


def check_header(path: Path, columns: list[str]) -> None:
    """A DataError naming a column the header lists twice (which of them would be read is a
    guess)."""
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataError(
                f"{path}: the header names column '{column}' twice; expected unique column names"
            )
        seen.add(column)


def read_delimited(
    path: Path, text: str, separator: str, quotes: bool = True
) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the rows and each row's first file line of a CSV or TSV text.

    Blank lines are skipped; a row shorter than the header is padded with empty cells; a row
    longer than the header, an unclosed quote, a header naming a column twice or a file without
    a header is a DataError naming the file (and line). ``quotes=False`` reads quote characters
    as text (RecBole's atomic files).
    """
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long texts are data
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=separator,
        quoting=csv.QUOTE_MINIMAL if quotes else csv.QUOTE_NONE,
        strict=quotes,
    )
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    end = 0
    try:
        for record in reader:  # the header: the first line that is not blank
            end = reader.line_num
            if record and (len(record) > 1 or record[0].strip()):
                header = [column.strip() for column in record]
                check_header(path, header)
                break
        width = len(header or [])
        for record in reader:  # the rows (a loop kept lean: files run to millions of lines)
            start, end = end + 1, reader.line_num
            if len(record) == width:
                rows.append(record)
                lines.append(start)
            elif len(record) > width:
                raise DataError(
                    f"{path} line {start}: {len(record)} fields but the header has {width}; "
                    f"expected one field per column (quote a text holding {separator!r})"
                )
            elif record and (len(record) > 1 or record[0].strip()):  # not a blank line
                rows.append(record + [""] * (width - len(record)))
                lines.append(start)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            problem = f"line {end + 1}: a quote opened on this line is never closed"
        else:
            problem = f"line {reader.line_num}: {str(exc).replace(chr(9), 'tab')}"
        raise DataError(
            f"{path} {problem}; expected a field quoted as a whole, with its own quotes doubled"
        ) from None
    if header is None:
        raise DataError(f"{path}: the file is empty; expected a header line and rows")
    return header, rows, lines


def read_rows(
    path: Path, format: str | None = None, encoding: str = "utf-8"
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """The rows of a CSV, TSV, JSON Lines or Parquet table (text files decoded as
    ``encoding``), each row's line, and the columns."""
    fmt = table_format(path, format)
    if fmt == "parquet":
        if not path.exists():
            raise DataError(f"{path}: file not found")
        frame = read_parquet(path)
        rows, lines = _rows_frame(frame, 1)
        columns = [str(column) for column in frame.columns]
    else:
        decoded = decode_text(path, read_bytes(path), encoding)
        if fmt == "jsonl":
            rows, lines = _rows_jsonl(path, decoded)
            if not rows:
                raise DataError(f"{path}: the file is empty; expected one JSON object per line")
            columns = sorted({key for row in rows for key in row})
        else:
            columns, cells, lines = read_delimited(path, decoded, "\t" if fmt == "tsv" else ",")
            rows = [dict(zip(columns, row)) for row in cells]
    return rows, lines, columns


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as a frame; a DataError naming the file when it is missing, a folder or
    not Parquet, or its columns repeat a name."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a file")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: not a readable Parquet file ({detail})") from None
    check_header(path, [str(column) for column in frame.columns])
    return frame


def read_table(
    path: str | Path,
    text: str = "text",
    label: str | None = "label",
    name: str | None = None,
    format: str | None = None,
    value: str | None = None,
    label_columns: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> TextDomain:
    """Read a CSV, TSV, JSON Lines or Parquet table into a :class:`TextDomain`.

    ``text`` and ``label`` name the columns to use; ``label=None`` reads an unlabeled domain.
    ``value`` names a column of numbers (a star rating, say) kept as the annotation ``value``:
    a row with an empty cell is dropped and counted, a cell that is not a finite number is an
    error naming the line. Else ``label_columns`` may map head names to label columns (a
    multi-task domain), each kept as an annotation (``""`` where a row has no label for it); a
    row without any of them is dropped and counted.
    Text files are decoded as ``encoding`` (``gbk``, ``gb18030``...; UTF-8 by default).
    Line numbers in errors count the header as line 1 (CSV/TSV) and are file lines for JSON Lines;
    for Parquet they are row numbers starting at 1.
    """
    path = Path(path)
    rows, lines, columns = read_rows(path, format, encoding)
    extra = {"value": value} if value is not None else dict(label_columns or {})
    wanted = [text] + ([label] if label is not None else []) + list(extra.values())
    require_columns(path, wanted, columns)
    if text in wanted[1:]:
        raise DataError(
            f"{path}: column '{text}' is named as the text and as a label or value; expected "
            "different columns"
        )
    return _domain_from_rows(
        path, rows, lines, text, label, name or path.stem.split(".")[0], extra, value is not None
    )


def cell_number(path: Path, line: int, column: str, cell: Any) -> float | None:
    """A cell as a finite number; ``None`` when it is empty; a DataError naming the line when
    it holds anything else."""
    shown = cell_text(cell).strip()
    if not shown:
        return None
    try:
        number = float(shown)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise DataError(f"{path} line {line}: column '{column}' holds {shown!r}; expected a number")
    return number


def annotation_cells(
    path: Path, line: int, row: Mapping[str, Any], extra: Mapping[str, str], numbers: bool
) -> dict[str, Any] | None:
    """A row's annotations (annotation name -> its column's cell): numbers (``numbers``: an
    empty cell gives ``None`` for the row, text that is not a number is a DataError naming the
    line) or labels (``None`` when the row has none of them)."""
    if not extra:
        return {}
    if numbers:
        cells: dict[str, Any] = {
            key: cell_number(path, line, column, row.get(column)) for key, column in extra.items()
        }
        return None if any(cell is None for cell in cells.values()) else cells
    cells = {
        key: label_cell(path, line, column, row.get(column)).strip()
        for key, column in extra.items()
    }
    return cells if any(cells.values()) else None


def _domain_from_rows(
    path: Path,
    rows: list[dict[str, Any]],
    lines: list[int],
    text_column: str,
    label_column: str | None,
    name: str,
    extra: Mapping[str, str] | None = None,
    numbers: bool = False,
) -> TextDomain:
    """The rows' texts and labels; ``extra`` (annotation name -> column) adds a column of
    numbers (``numbers``) or several columns of labels as annotations."""
    texts: list[str] = []
    labels: list[str] = []
    extra = dict(extra or {})
    kept: dict[str, list[Any]] = {key: [] for key in extra}
    dropped = {"empty text": 0, "missing label": 0}
    for row, line in zip(rows, lines):
        if text_column not in row:
            raise DataError(f"{path} line {line}: no '{text_column}' field")
        value = text_cell(path, line, text_column, row.get(text_column)).strip()
        tag = (
            label_cell(path, line, label_column, row.get(label_column)).strip()
            if label_column is not None
            else ""
        )
        if not value:
            dropped["empty text"] += 1
            continue
        if label_column is not None and not tag:
            dropped["missing label"] += 1
            continue
        cells = annotation_cells(path, line, row, extra, numbers)
        if cells is None:
            reason = f"empty {next(iter(extra.values()))}" if numbers else "no labels"
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        texts.append(value)
        labels.append(tag)
        for key in extra:
            kept[key].append(cells[key])
    dropped = {reason: count for reason, count in dropped.items() if count}
    if not rows:
        raise DataError(f"{path}: no rows (the file has a header only); expected rows of data")
    if not texts:
        detail = f" ({sum(dropped.values())} rows dropped: {dropped})" if dropped else ""
        raise DataError(f"{path}: no usable rows{detail}; expected at least one row with text")
    domain = TextDomain(
        name=name,
        texts=texts,
        labels=labels if label_column is not None else None,
        source=str(path),
        dropped=dropped,
    )
    if not extra:
        return domain
    dtype = np.float64 if numbers else object
    return domain.with_annotations({key: np.array(kept[key], dtype=dtype) for key in extra})


BLITZER_FILES = {"positive": "positive.parsed", "negative": "negative.parsed"}


def parse_blitzer(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """Parse one Blitzer ``.parsed`` file (optionally ``.gz``, decoded as ``encoding``) into a
    list of review texts.

    The format is pseudo-XML: ``<reviews>``, then one ``<review>`` element per review holding a
    tab, the title, a newline, a tab and the body. Bodies may contain ``&``, ``<`` and blank
    lines, so it is parsed as text. Each review becomes ``"title. body"`` with whitespace
    normalised.
    """
    path = Path(path)
    content = decode_text(path, read_bytes(path), encoding).replace("\r\n", "\n")
    stripped = content.strip()
    if not stripped.startswith("<reviews>"):
        raise DataError(
            f"{path} line 1: expected the file to start with <reviews> (Blitzer format)"
        )
    if not stripped.endswith("</reviews>"):
        last = content.count("\n") + 1
        raise DataError(f"{path} line {last}: expected the file to end with </reviews>")
    body = stripped[len("<reviews>") : -len("</reviews>")]
    offset = content.index("<reviews>") + len("<reviews>")
    reviews: list[str] = []
    position = 0
    while position < len(body):
        start = body.find("<review>", position)
        gap = body[position : start if start >= 0 else len(body)]
        if gap.strip():
            first = position + len(gap) - len(gap.lstrip())
            line = content.count("\n", 0, offset + first) + 1
            raise DataError(f"{path} line {line}: text outside a <review> element")
        if start < 0:
            break
        end = body.find("</review>", start)
        nested = body.find("<review>", start + len("<review>"))
        if end < 0 or (0 <= nested < end):
            line = content.count("\n", 0, offset + start) + 1
            raise DataError(f"{path} line {line}: <review> is not closed by </review>")
        element = body[start + len("<review>") : end]
        title, _, text = element.strip("\n").partition("\n")
        parts = [" ".join(part.split()) for part in (title, text)]
        review = ". ".join(part for part in parts if part)
        reviews.append(review)
        position = end + len("</review>")
    return reviews


def _blitzer_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: no {stem} (or {stem}.gz); expected a Blitzer domain folder")


def read_blitzer(
    folder: str | Path, name: str | None = None, encoding: str = "utf-8"
) -> TextDomain:
    """Read a Blitzer domain folder holding ``positive.parsed`` and ``negative.parsed``
    (decoded as ``encoding``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected a Blitzer domain folder")
    texts: list[str] = []
    labels: list[str] = []
    dropped = 0
    for label, stem in BLITZER_FILES.items():
        for review in parse_blitzer(_blitzer_file(folder, stem), encoding):
            if review:
                texts.append(review)
                labels.append(label)
            else:
                dropped += 1
    if not texts:
        raise DataError(f"{folder}: no reviews found")
    return TextDomain(
        name=name or folder.name,
        texts=texts,
        labels=labels,
        source=str(folder),
        dropped={"empty text": dropped} if dropped else {},
    )


def comparable_text(text: str) -> str:
    """A text lower-cased with every character but a-z and 0-9 dropped: two reviews that differ
    only in case, spacing, punctuation or damaged characters compare equal."""
    return "".join(c for c in text.lower() if "a" <= c <= "z" or "0" <= c <= "9")


def read_extra_texts(
    path: str | Path, known: list[str], encoding: str = "utf-8"
) -> tuple[list[str], dict[str, int]]:
    """The texts of a plain text file (one a line) that are new: lines empty, repeated, or equal
    to one of ``known`` (labelled examples, texts already read) after :func:`comparable_text`
    are dropped, and counted: ``(texts, {"lines", "kept", "empty", "duplicates", "known"})``.

    A line also counts as known when it equals the end of a known text after one of its
    sentence breaks (". "): a Blitzer review is read as "title. body", and such files hold
    bodies."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: extra texts file not found; expected a text file, one a line")
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as exc:
        number = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {number} is not valid {encoding} text") from None
    seen = {comparable_text(text) for text in known}
    for text in known:
        pieces = text.split(". ")
        seen.update(comparable_text(". ".join(pieces[i:])) for i in range(1, len(pieces)))
    seen.discard("")
    own: set[str] = set()
    kept: list[str] = []
    counts = {"lines": len(lines), "kept": 0, "empty": 0, "duplicates": 0, "known": 0}
    for line in lines:
        text = line.strip()
        key = comparable_text(text)
        if not key:
            counts["empty"] += 1
        elif key in seen:
            counts["known"] += 1
        elif key in own:
            counts["duplicates"] += 1
        else:
            own.add(key)
            kept.append(text)
    counts["kept"] = len(kept)
    return kept, counts
