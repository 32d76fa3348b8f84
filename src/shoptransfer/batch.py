"""Batch prediction that streams: a text file or table of any size is read and scored a chunk
of rows at a time, so memory stays flat; the output is written atomically and an interrupted job
resumes where it stopped.

Every input row gets exactly one output row, in input order: an empty text gets an empty
prediction and is counted. Finished chunks are kept as part files in ``<output>.partial/``
beside a ``state.json`` recording the input (path, size, SHA-256), the model's fingerprint and
the chunks done; at the end the parts are joined into a temporary file renamed onto the output.

This module never imports torch: a model that scores without it (a TF-IDF model, an ONNX
export) is loaded here (:func:`light_predictor`); any other predictor is handed in by the caller.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from shoptransfer.errors import ConfigError, DataError
from shoptransfer.export.runtime import open_export
from shoptransfer.files import atomic_write_json
from shoptransfer.pii import scrub_texts
from shoptransfer.progress import progress_bar
from shoptransfer.runs import choose_model
from shoptransfer.text_encodings import check_encoding
from shoptransfer.tfidf_scoring import TfidfScorer, load_tfidf_scorer

INPUT_FORMATS = ("txt", "csv", "tsv", "jsonl", "parquet")  # all but parquet may end in .gz
OUTPUT_FORMATS = ("parquet", "csv", "jsonl")
STATE_FILE = "state.json"
_HASH_BLOCK = 1 << 20


def light_predictor(run_dir: Path, model: str | None, onnx: bool) -> tuple[str, Any | None]:
    """The chosen model's folder name, and its predictor when it scores without torch (an ONNX
    export with ``onnx``; a TF-IDF model), else ``None``: the caller loads it with torch."""
    name = choose_model(run_dir, model).name
    if onnx:
        return name, open_export(run_dir, name)
    return name, load_tfidf_scorer(run_dir / "models" / name)


def model_fingerprint(run_dir: Path, name: str, onnx: bool) -> str:
    """A SHA-256 over the model's files (or its export's): a resumed job must use the same."""
    folder = run_dir / ("exports" if onnx else "models") / name
    digest = hashlib.sha256(f"{name} onnx={onnx}".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(_file_hash(path).encode())
    return digest.hexdigest()


def input_format(path: Path) -> str:
    """The input's format from its name (``reviews.csv.gz`` is csv); a ConfigError otherwise."""
    suffixes = [s.lower().lstrip(".") for s in path.suffixes]
    if suffixes[-1:] == ["gz"]:
        suffixes = suffixes[:-1]
        if suffixes[-1:] == ["parquet"]:
            raise ConfigError(f"--input {path}: a Parquet file is compressed inside; drop the .gz")
    found = suffixes[-1] if suffixes else ""
    if found not in INPUT_FORMATS:
        raise ConfigError(
            f"--input {path}: unknown format '.{found}'; expected one of "
            f"{', '.join('.' + f for f in INPUT_FORMATS)} (all but .parquet may end in .gz)"
        )
    return found


def output_format(path: Path) -> str:
    found = path.suffix.lower().lstrip(".")
    if found not in OUTPUT_FORMATS:
        raise ConfigError(
            f"--output {path}: unknown format '.{found}'; expected one of "
            f"{', '.join('.' + f for f in OUTPUT_FORMATS)}"
        )
    return found


# reading -----------------------------------------------------------------------------------


def _open(path: Path) -> BinaryIO:
    if not path.is_file():
        raise DataError(_missing(path))
    handle: BinaryIO = open(path, "rb")  # noqa: SIM115  (closed by the reader)
    if path.suffix.lower() == ".gz":
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


def _missing(path: Path) -> str:
    return f"{path}: is a folder; expected a file" if path.is_dir() else f"{path}: file not found"


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


ENCODING_HINT = "give --encoding (--encoding gb18030 for Chinese GBK files)"
_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def input_codec(encoding: str) -> str:
    """``--encoding`` as Python's codec name; a ConfigError naming the flag when it is none."""
    try:
        return check_encoding(encoding)
    except ValueError as exc:
        raise ConfigError(f"--encoding: {exc}") from None


def _lines(path: Path, handle: BinaryIO, encoding: str, universal: bool) -> Iterator[str]:
    """The lines of ``handle`` decoded as ``encoding`` a block at a time (memory stays flat),
    each with its line break; the first loses a byte-order mark. A line ends at a line feed,
    and with ``universal`` also at a lone carriage return (as CSV reads them). Bytes not valid
    in the encoding are a DataError naming their line."""
    codec = input_codec(encoding)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    line_pattern = re.compile(r"[^\r\n]*(?:\r\n?|\n)" if universal else r"[^\n]*\n")
    number, pending = 1, ""
    while True:
        block = handle.read(_HASH_BLOCK)
        if number == 1 and not pending and codec == "utf-8" and block.startswith(_UTF16_MARKS):
            raise DataError(
                f"{path}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); give "
                "--encoding utf-16 or save it as UTF-8"
            )
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            before = exc.object[: exc.start].decode(codec, errors="replace")
            hint = ENCODING_HINT if codec == "utf-8" else "check --encoding"
            raise DataError(
                f"{path} line {number + len(line_pattern.findall(pending + before))}: bytes "
                f"{exc.object[exc.start : exc.end]!r} are not valid "
                f"{'UTF-8' if codec == 'utf-8' else encoding}; {hint}"
            ) from None
        if number == 1 and not pending:
            text = text.removeprefix("\ufeff")
        pending += text
        held = "\r" if block and pending.endswith("\r") else ""  # a line feed may follow
        lines = line_pattern.findall(pending, 0, len(pending) - len(held))
        pending = pending[sum(map(len, lines)) :]
        yield from lines
        number += len(lines)
        if not block:
            break
    if pending:
        yield pending


def _text_rows(path: Path, encoding: str) -> Iterator[tuple[Any, Any]]:
    """A .txt file: every line is a row (an empty line too)."""
    with _open(path) as handle:
        try:
            for line in _lines(path, handle, encoding, universal=False):
                yield line.rstrip("\r\n"), None
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: unreadable ({exc})") from None


def _delimited_rows(
    path: Path, delimiter: str, column: str, id_column: str | None, encoding: str
) -> Iterator[tuple[Any, Any]]:
    csv.field_size_limit(1 << 30)
    with _open(path) as raw:
        reader = csv.reader(_lines(path, raw, encoding, universal=True), delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return
            where = _columns(path, header, column, id_column)
            for row in reader:
                text = row[where[0]] if where[0] < len(row) else None
                key = row[where[1]] if where[1] is not None and where[1] < len(row) else None
                yield text, key
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num}: {exc}") from None
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: unreadable ({exc})") from None


def _columns(
    path: Path, names: list[str], column: str, id_column: str | None
) -> tuple[int, int | None]:
    for name, flag in ((column, "--column"), (id_column, "--id-column")):
        if name is not None and name not in names:
            raise DataError(f"{path}: no column '{name}' ({flag}); its columns: {names}")
    return names.index(column), names.index(id_column) if id_column is not None else None


def _jsonl_rows(
    path: Path, column: str, id_column: str | None, encoding: str
) -> Iterator[tuple[Any, Any]]:
    """A JSON-lines file: a record per line (a blank line is an empty row)."""
    with _open(path) as handle:
        try:
            lines = _lines(path, handle, encoding, universal=False)
            for number, line in enumerate(lines, start=1):
                text = line.strip()
                if not text:
                    yield None, None
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {number}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}: line {number}: expected a JSON object")
                for name, flag in ((column, "--column"), (id_column, "--id-column")):
                    if name is not None and name not in record:
                        raise DataError(
                            f"{path}: line {number} has no key '{name}' ({flag}); "
                            f"its keys: {sorted(record)[:10]}"
                        )
                yield record[column], record[id_column] if id_column is not None else None
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: unreadable ({exc})") from None


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(_missing(path))
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own exception types
        detail = " ".join(str(exc).split())[:120]
        raise DataError(f"{path}: not a readable Parquet file ({detail})") from None


def _parquet_rows(
    path: Path, column: str, id_column: str | None, batch_size: int
) -> Iterator[tuple[Any, Any]]:
    parquet = _parquet_file(path)
    names = list(parquet.schema_arrow.names)
    _columns(path, names, column, id_column)
    wanted = [column] + ([id_column] if id_column is not None else [])
    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
            texts = batch.column(0).to_pylist()
            keys = batch.column(1).to_pylist() if id_column is not None else [None] * len(texts)
            yield from zip(texts, keys)
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({' '.join(str(exc).split())[:120]})") from None


def read_rows(
    path: Path, column: str, id_column: str | None, chunk_size: int, encoding: str = "utf-8"
) -> Iterator[tuple[Any, Any]]:
    """(text, id) for every row of the input, in order, read as a stream; a text file is
    decoded as ``encoding`` (a Parquet file holds its own)."""
    kind = input_format(path)
    input_codec(encoding)
    if kind == "txt":
        if id_column is not None:
            raise ConfigError(f"--id-column: {path} is a .txt file, which has no columns")
        return _text_rows(path, encoding)
    if kind in ("csv", "tsv"):
        return _delimited_rows(path, "," if kind == "csv" else "\t", column, id_column, encoding)
    if kind == "jsonl":
        return _jsonl_rows(path, column, id_column, encoding)
    return _parquet_rows(path, column, id_column, chunk_size)


def read_input_rows(
    path: Path, columns: list[str], id_column: str | None, chunk_size: int, encoding: str
) -> Iterator[tuple[Any, Any]]:
    """(the cells of ``columns`` as a tuple, id) for every row: one stream of the file per
    column, read in step (each reader yields every row once, in order)."""
    if input_format(path) == "txt":
        raise ConfigError(f"{path} is a .txt file; a fused model reads a table of its inputs")
    streams = [read_rows(path, column, None, chunk_size, encoding) for column in columns]
    keys = read_rows(path, columns[0], id_column, chunk_size, encoding)
    try:
        for (_, key), *cells in zip(keys, *streams):
            yield tuple(cell for cell, _ in cells), key
    except DataError as exc:  # a missing column: name the option that chose it
        raise DataError(str(exc).replace("(--column)", "(--input-column NAME=COLUMN)")) from None


@dataclass(frozen=True)
class InputColumns:
    """Where a fused model's inputs sit in an --input table: input name -> (kind, column);
    relative image paths start at ``base`` (the table's folder, as when training)."""

    inputs: dict[str, tuple[str, str]]
    base: Path

    def given(
        self, rows: list[tuple[Any, Any]]
    ) -> tuple[list[int], dict[str, list[str | None]], dict[str, dict[str, int]]]:
        """The rows with at least one input, their inputs (``None`` where missing: an empty
        cell, an image file not found or not decodable; texts scrubbed of personal data), and
        the missing inputs counted per input and reason."""
        from shoptransfer.data.images import inspect_images
        from shoptransfer.data.multi import scrub_text_inputs

        cells: list[dict[str, str | None]] = []
        missing: dict[str, dict[str, int]] = {name: {} for name in self.inputs}

        def lack(name: str, reason: str) -> None:
            missing[name][reason] = missing[name].get(reason, 0) + 1

        for values, _ in rows:
            row: dict[str, str | None] = {}
            for (name, (kind, _)), value in zip(self.inputs.items(), values):
                if _is_empty(value):
                    row[name] = None
                    lack(name, "empty cell")
                elif kind == "text":
                    row[name] = str(value)
                else:
                    file = Path(str(value).strip())
                    file = file if file.is_absolute() else self.base / file
                    row[name] = str(file) if file.is_file() else None
                    if row[name] is None:
                        lack(name, "file not found")
            cells.append(row)
        photos = sorted(
            {row[n] for row in cells for n, (kind, _) in self.inputs.items() if kind == "image"}
            - {None}
        )
        verdicts = dict(zip(photos, inspect_images([Path(p) for p in photos])))  # type: ignore[arg-type]
        for row in cells:
            for name, (kind, _) in self.inputs.items():
                if kind == "image" and row[name] is not None:
                    problem = verdicts[row[name]][0]
                    if problem is not None:
                        row[name] = None
                        lack(name, problem)
        scored = [i for i, row in enumerate(cells) if any(v is not None for v in row.values())]
        given = {name: [cells[i][name] for i in scored] for name in self.inputs}
        scrub_text_inputs({name: kind for name, (kind, _) in self.inputs.items()}, given)
        return scored, given, {n: c for n, c in missing.items() if c}


def count_rows(path: Path) -> int:
    """How many rows the input holds (a CSV's record with line breaks inside counts for
    several: the estimate only draws the progress bar)."""
    kind = input_format(path)
    if kind == "parquet":
        return int(_parquet_file(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with _open(path) as handle, contextlib.suppress(OSError, EOFError):  # the reader says
        while block := handle.read(_HASH_BLOCK):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(lines - (kind in ("csv", "tsv")), 0)


def _chunks(rows: Iterator[tuple[Any, Any]], size: int) -> Iterator[list[tuple[Any, Any]]]:
    chunk: list[tuple[Any, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# scoring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """The output columns of a model: ``row``, the id column, then its predictions."""

    kind: str  # "classes", "value" or "tasks"
    classes: list[str]
    tasks: list[tuple[str, list[str]]]
    top_k: int
    id_column: str | None
    explain: str | None = None  # the explanation method of an ``explanation`` column

    @classmethod
    def of(
        cls, predictor: Any, top_k: int, id_column: str | None, explain: str | None = None
    ) -> Columns:
        outputs = getattr(predictor, "outputs", None)
        if outputs is not None:  # a PyTorch predictor
            kind, tasks = outputs.kind, [(n, list(c)) for n, c in outputs.tasks]
        elif isinstance(predictor, TfidfScorer):
            kind, tasks = ("value" if predictor.regression else "classes"), []
        else:  # an ONNX export
            kind, tasks = predictor.kind, list(predictor.tasks)
        classes = list(predictor.classes) if kind == "classes" else []
        if explain is not None:
            from shoptransfer.explain import check_explainable

            check_explainable(kind, explain)
        top = min(top_k, len(classes)) if classes else 0
        return cls(kind, classes, tasks, top, id_column, explain)

    def names(self) -> list[tuple[str, str]]:
        """(name, type) of each column: ``int``, ``str`` or ``float``."""
        names = [("row", "int")]
        if self.id_column is not None:
            names.append((self.id_column, "str"))
        if self.kind == "value":
            return [*names, ("value", "float")]
        if self.kind == "tasks":
            for task, classes in self.tasks:
                names.append((task, "str"))
                names += [(f"p_{task}_{c}", "float") for c in classes]
            return names
        names.append(("label", "str"))
        names += [(f"p_{c}", "float") for c in self.classes]
        if self.top_k > 1:
            for i in range(1, self.top_k + 1):
                names += [(f"top{i}", "str"), (f"top{i}_p", "float")]
        if self.explain is not None:
            names.append(("explanation", "str"))  # JSON: Explanation.brief
        return names


def _is_empty(text: Any) -> bool:
    return text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip()


@dataclass
class ScoredChunk:
    """A chunk's output columns, what each row showed (a text, ``""`` when empty; a fused
    row's inputs), how many rows had something to score, and a fused model's missing inputs
    counted per input and reason."""

    out: dict[str, list[Any]]
    shown: list[Any]
    scored: int
    missing: dict[str, dict[str, int]]


def score_chunk(
    predictor: Any,
    columns: Columns,
    rows: list[tuple[Any, Any]],
    first_row: int,
    inputs: InputColumns | None = None,
) -> ScoredChunk:
    """The output columns for a chunk of (text, id) rows numbered from ``first_row`` (with
    ``inputs``, a fused model's rows: (cells, id))."""
    missing: dict[str, dict[str, int]] = {}
    if inputs is None:
        texts: list[Any] = ["" if _is_empty(text) else str(text) for text, _ in rows]
        scored = [i for i, text in enumerate(texts) if text]
        given: Any = scrub_texts([texts[i] for i in scored])[0]  # as training texts were read
    else:
        texts = [
            {n: None if _is_empty(v) else str(v) for n, v in zip(inputs.inputs, cells)}
            for cells, _ in rows
        ]
        scored, given, missing = inputs.given(rows)
    out: dict[str, list[Any]] = {"row": list(range(first_row, first_row + len(rows)))}
    if columns.id_column is not None:
        out[columns.id_column] = [None if key is None else str(key) for _, key in rows]

    def spread(values: Any) -> list[Any]:
        full: list[Any] = [None] * len(rows)
        for i, value in zip(scored, values):
            full[i] = value
        return full

    if columns.kind == "value":
        values = predictor.predict(given) if scored else []
        out["value"] = spread([float(v) for v in np.asarray(values, dtype=np.float64)])
        return ScoredChunk(out, texts, len(scored), missing)
    if columns.kind == "tasks":
        probabilities = predictor.predict_proba(given) if scored else {}
        for task, classes in columns.tasks:
            table = np.asarray(probabilities.get(task, np.zeros((0, len(classes)))))
            out[task] = spread([classes[i] for i in table.argmax(axis=1)] if len(table) else [])
            for j, c in enumerate(classes):
                out[f"p_{task}_{c}"] = spread(table[:, j].tolist())
        return ScoredChunk(out, texts, len(scored), missing)
    table = np.asarray(predictor.predict_proba(given)) if scored else np.zeros((0, 1))
    out["label"] = spread([columns.classes[i] for i in table.argmax(axis=1)] if scored else [])
    for j, c in enumerate(columns.classes):
        out[f"p_{c}"] = spread(table[:, j].tolist() if scored else [])
    if columns.top_k > 1:
        order = np.argsort(-table, axis=1, kind="stable")[:, : columns.top_k]
        for i in range(columns.top_k):
            out[f"top{i + 1}"] = spread([columns.classes[k] for k in order[:, i]])
            out[f"top{i + 1}_p"] = spread(np.take_along_axis(table, order[:, i : i + 1], 1)[:, 0])
    if columns.explain is not None:
        from shoptransfer.explain import explain, explain_fused

        if not scored:
            explained: list[Any] = []
        elif inputs is not None:
            explained = explain_fused(predictor, given, columns.explain)
        else:
            explained = explain(predictor, given, "texts", columns.explain, kind=columns.kind)
        briefs = [json.dumps(e.brief(), ensure_ascii=False) for e in explained]
        out["explanation"] = spread(briefs)
    return ScoredChunk(out, texts, len(scored), missing)


# writing -----------------------------------------------------------------------------------


def _arrow_schema(columns: Columns) -> Any:
    import pyarrow as pa

    types = {"int": pa.int64(), "str": pa.string(), "float": pa.float64()}
    return pa.schema([(name, types[kind]) for name, kind in columns.names()])


def _write_part(path: Path, fmt: str, columns: Columns, out: dict[str, list[Any]]) -> None:
    """One chunk's rows into ``path`` (written beside it, then renamed)."""
    staging = path.with_name(f".{path.name}.tmp")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(out, schema=_arrow_schema(columns)), staging)
    else:
        names = [name for name, _ in columns.names()]
        with open(staging, "w", encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                writer = csv.writer(handle)
                for values in zip(*(out[n] for n in names)):
                    writer.writerow(["" if v is None else v for v in values])
            else:
                for values in zip(*(out[n] for n in names)):
                    record = _record(dict(zip(names, values)))
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(staging, path)


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON output row: its explanation (a JSON text in CSV and Parquet) as an object."""
    if row.get("explanation") is not None:
        row["explanation"] = json.loads(row["explanation"])
    return row


def _join_parts(parts: list[Path], output: Path, fmt: str, columns: Columns) -> None:
    """The parts, in order, into one temporary file renamed onto ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    staging = Path(name)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            os.close(fd)
            with pq.ParquetWriter(staging, _arrow_schema(columns)) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part, schema=_arrow_schema(columns)))
        else:
            with os.fdopen(fd, "wb") as handle:
                if fmt == "csv":
                    header = io.StringIO()
                    csv.writer(header).writerow([n for n, _ in columns.names()])
                    handle.write(header.getvalue().encode("utf-8"))
                for part in parts:
                    with open(part, "rb") as source:
                        shutil.copyfileobj(source, handle, _HASH_BLOCK)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(staging, 0o666 & ~mask)
        os.replace(staging, output)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def partial_folder(output: Path) -> Path:
    """Where the finished chunks of a job writing ``output`` wait, with its state file."""
    return output.with_name(output.name + ".partial")


def one_line(text: str) -> str:
    """A text on one line: line breaks and tabs escaped, long texts cut."""
    flat = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return flat if len(flat) <= 70 else flat[:67] + "..."


def _print_chunk(chunk: ScoredChunk, columns: Columns, as_json: bool) -> None:
    """Print a chunk's predictions on stdout, one line per input row."""
    lines = []
    out = chunk.out
    for n, shown in enumerate(chunk.shown):
        if as_json:
            record = _record({name: out[name][n] for name, _ in columns.names()})
            key = "inputs" if isinstance(shown, dict) else "text"
            lines.append(json.dumps({key: shown, **record}, ensure_ascii=False))
            continue
        if isinstance(shown, dict):  # a fused row: its inputs side by side
            text = " | ".join(value for value in shown.values() if value is not None)
        else:
            text = shown
        if columns.kind == "value":
            value = out["value"][n]
            shown = "" if value is None else f"{value:.3f}"
        elif columns.kind == "tasks":
            shown = "  ".join(
                f"{task}: {out[task][n]} {max(out[f'p_{task}_{c}'][n] for c in classes):.3f}"
                if out[task][n] is not None
                else f"{task}: "
                for task, classes in columns.tasks
            )
        elif out["label"][n] is None:
            shown = "\t"
        elif columns.top_k > 1:
            shown = ", ".join(
                f"{out[f'top{i}'][n]} {out[f'top{i}_p'][n]:.3f}"
                for i in range(1, columns.top_k + 1)
            )
        else:
            label = out["label"][n]
            shown = f"{label}\t{out[f'p_{label}'][n]:.3f}"
        lines.append(f"{shown}\t{one_line(text)}")
        if columns.explain is not None and out["explanation"][n] is not None:
            from shoptransfer.explain import why_line

            lines.append(why_line(json.loads(out["explanation"][n])))
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    sys.stdout.flush()


@dataclass
class Job:
    """What a batch prediction reads, scores and writes."""

    input: Path
    output: Path | None  # None: print on stdout
    column: str = "text"
    id_column: str | None = None
    chunk_size: int = 1024
    top_k: int = 1
    as_json: bool = False
    resume: bool = False
    show_progress: bool = True
    encoding: str = "utf-8"  # of a text file (a Parquet file holds its own)
    explain: str | None = None  # an explanation method: each row also says why
    inputs: InputColumns | None = None  # a fused model's inputs (then ``column`` is unused)

    def rows(self, chunk_size: int | None = None) -> Iterator[tuple[Any, Any]]:
        """The input's rows, as a stream."""
        size = chunk_size or self.chunk_size
        if self.inputs is None:
            return read_rows(self.input, self.column, self.id_column, size, self.encoding)
        columns = [column for _, column in self.inputs.inputs.values()]
        return read_input_rows(self.input, columns, self.id_column, size, self.encoding)


def check_job(job: Job) -> None:
    """Refuse a job whose input or output cannot work (format, a missing file or column, a
    first row that cannot be read) before any model is loaded."""
    input_format(job.input)
    if job.output is not None:
        output_format(job.output)
        if job.output.resolve() == job.input.resolve():
            raise ConfigError(f"--output {job.output} is the input file; name another")
    if job.resume and job.output is None:
        raise ConfigError("--resume needs --output (printed predictions cannot resume)")
    if job.inputs is not None and job.explain not in (None, "auto", "occlusion"):
        raise ConfigError(
            f"--explain-method '{job.explain}': a fused model is explained by occlusion (hiding "
            "an input, deleting a word); use auto or occlusion"
        )
    rows = job.rows()
    next(iter(rows), None)
    close = getattr(rows, "close", None)
    if close is not None:
        close()


def predict_file(job: Job, predictor: Any, model_fingerprint: str) -> dict[str, Any]:
    """Score every row of ``job.input`` with ``predictor`` a chunk at a time; return the
    summary: rows, empty rows, rows resumed from an earlier run, seconds, rows per second."""
    started = time.perf_counter()
    columns = Columns.of(predictor, job.top_k, job.id_column, job.explain)
    check_job(job)
    fmt = output_format(job.output) if job.output is not None else None
    state = _start(job, columns, model_fingerprint) if job.output is not None else None
    chunk_size = state["chunk_size"] if state else job.chunk_size
    done_chunks = state["chunks"] if state else 0
    rows_done = state["rows"] if state else 0
    empty = state["empty"] if state else 0
    missing: dict[str, dict[str, int]] = state.get("missing_inputs", {}) if state else {}
    resumed = rows_done
    folder = partial_folder(job.output) if job.output is not None else None
    total = count_rows(job.input)
    with progress_bar("predict", total, "rows", enabled=job.show_progress) as bar:
        bar.update(rows_done)
        for index, rows in enumerate(_chunks(job.rows(chunk_size), chunk_size)):
            if index < done_chunks:
                continue
            chunk = score_chunk(predictor, columns, rows, rows_done + 1, job.inputs)
            empty += len(rows) - chunk.scored
            for name, reasons in chunk.missing.items():
                for reason, n in reasons.items():
                    counts = missing.setdefault(name, {})
                    counts[reason] = counts.get(reason, 0) + n
            rows_done += len(rows)
            if folder is None:
                _print_chunk(chunk, columns, job.as_json)
            else:
                assert state is not None and fmt is not None
                _write_part(folder / f"part-{index:06d}.{fmt}", fmt, columns, chunk.out)
                state.update(chunks=index + 1, rows=rows_done, empty=empty)
                if missing:
                    state["missing_inputs"] = missing
                atomic_write_json(folder / STATE_FILE, state)
            bar.update(len(rows))
    if folder is not None and job.output is not None and fmt is not None:
        parts = sorted(folder.glob(f"part-*.{fmt}"))[: state["chunks"] if state else 0]
        _join_parts(parts, job.output, fmt, columns)
        shutil.rmtree(folder)
    seconds = time.perf_counter() - started
    return {
        "rows": rows_done,
        "empty": empty,
        "missing_inputs": missing,
        "resumed_rows": resumed,
        "seconds": round(seconds, 3),
        "rows_per_second": round((rows_done - resumed) / seconds, 1) if seconds > 0 else None,
    }


def _start(job: Job, columns: Columns, model_fingerprint: str) -> dict[str, Any]:
    """The job's state: a fresh one, or (``--resume``) the unfinished job's, checked to read
    the same input with the same model and options."""
    assert job.output is not None
    folder = partial_folder(job.output)
    state_path = folder / STATE_FILE
    size = job.input.stat().st_size if job.input.is_file() else None
    settings = {
        "column": job.column,
        "id_column": job.id_column,
        "encoding": input_codec(job.encoding),
        "top_k": columns.top_k,
        "columns": [name for name, _ in columns.names()],
        "explain": job.explain,
        "inputs": {n: list(kc) for n, kc in job.inputs.inputs.items()} if job.inputs else None,
    }
    if state_path.is_file():
        if not job.resume:
            raise ConfigError(
                f"{folder} holds an unfinished job writing {job.output}; add --resume to "
                "continue it, or delete that folder to start again"
            )
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise DataError(f"{state_path}: damaged; delete {folder} to start again") from None
        recorded = state.get("input", {})
        if recorded.get("bytes") != size or recorded.get("sha256") != _input_hash(job.input):
            raise ConfigError(
                f"--resume: {job.input} changed since the unfinished job began "
                f"({recorded.get('bytes')} bytes then, {size} now, or other content); delete "
                f"{folder} to start again"
            )
        if state.get("model") != model_fingerprint:
            raise ConfigError(
                f"--resume: the model differs from the one the unfinished job used; give the "
                f"same run and --model, or delete {folder} to start again"
            )
        # a job begun before --encoding (--explain) existed read UTF-8 (explained nothing)
        recorded_settings = {
            "encoding": "utf-8",
            "explain": None,
            "inputs": None,
            **state.get("settings", {}),
        }
        if recorded_settings != settings:
            raise ConfigError(
                "--resume: --column, --input-column, --id-column, --encoding, --top-k or "
                f"--explain differ from the unfinished job's {recorded_settings}; give the "
                f"same, or delete {folder} to start again"
            )
        return dict(state)
    if folder.exists():  # a folder without a state file: nothing finished in it
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    state = {
        "input": {
            "path": str(job.input.resolve()),
            "bytes": size,
            "sha256": _input_hash(job.input),
        },
        "model": model_fingerprint,
        "settings": settings,
        "chunk_size": job.chunk_size,
        "chunks": 0,
        "rows": 0,
        "empty": 0,
    }
    atomic_write_json(state_path, state)
    return state


def _input_hash(path: Path) -> str:
    if not path.is_file():
        raise DataError(_missing(path))
    return _file_hash(path)
