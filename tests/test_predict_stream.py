"""Batch prediction that streams (``predict --input ... --output ...``): chunks score as one
batch does, every input row gets one output row in order, an interrupted job resumes to the
same file, a changed input refuses to resume, every format reads and writes, a TF-IDF model
never imports torch, and bad input is one line, exit 2."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from shoptransfer.batch import Job, model_fingerprint, partial_folder, predict_file, read_rows
from shoptransfer.cli import app
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.tfidf_scoring import load_tfidf_scorer

TEXTS = [
    "great pan, love it",
    "",
    "broke after a week,\nawful lid",
    "   ",
    "superb kettle",
    "junk, returned it",
    "love the handle",
]


def model_of(run_dir: Path) -> tuple[Any, str]:
    name = next((run_dir / "models").iterdir()).name
    scorer = load_tfidf_scorer(run_dir / "models" / name)
    return scorer, model_fingerprint(run_dir, name, onnx=False)


def write_input(path: Path, texts: list[str] = TEXTS, encoding: str = "utf-8") -> Path:
    """``texts`` in the format ``path`` names (with an ``id`` column where it has columns),
    saved in ``encoding``."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts}).to_parquet(path)
        return path
    if name.endswith(".txt"):
        body = "".join(text.replace("\n", " ") + "\n" for text in texts)
    elif name.endswith(".jsonl"):
        body = "".join(
            json.dumps({"id": f"r{i}", "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(texts)
        )
    else:
        table = io.StringIO(newline="")
        writer = csv.writer(table, delimiter="\t" if name.endswith(".tsv") else ",")
        writer.writerow(["id", "text"])
        writer.writerows([f"r{i}", t] for i, t in enumerate(texts))
        body = table.getvalue()
    data = body.encode(encoding)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shoptransfer.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def run_job(run_dir: Path, job: Job, scorer: Any = None) -> dict[str, Any]:
    default, fingerprint = model_of(run_dir)
    return predict_file(job, scorer or default, fingerprint)


def test_chunks_score_as_one_batch_and_every_row_gets_one_output_row(
    tfidf_run: Path, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.csv")
    scorer, _ = model_of(tfidf_run)
    tables = []
    for size in (1, 3, 1000):
        out = tmp_path / f"out{size}.parquet"
        summary = run_job(tfidf_run, Job(source, out, chunk_size=size, show_progress=False))
        assert summary["rows"] == len(TEXTS) and summary["empty"] == 2
        tables.append(pd.read_parquet(out))
        assert not partial_folder(out).exists()
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])
    table = tables[0]
    assert table["row"].tolist() == list(range(1, len(TEXTS) + 1))
    empty = [i for i, text in enumerate(TEXTS) if not text.strip()]
    assert table["label"].isna().tolist() == [i in empty for i in range(len(TEXTS))]
    given = [t for t in TEXTS if t.strip()]
    whole = scorer.predict_proba(given)
    scored = table.dropna(subset=["label"])
    assert scored["label"].tolist() == scorer.predict(given)
    assert abs(scored[[f"p_{c}" for c in scorer.classes]].to_numpy() - whole).max() < 1e-12


def test_an_interrupted_job_resumes_to_the_file_an_uninterrupted_one_writes(
    tfidf_run: Path, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.jsonl", TEXTS * 3)
    whole = tmp_path / "whole.csv"
    run_job(tfidf_run, Job(source, whole, id_column="id", chunk_size=2, show_progress=False))
    scorer, _ = model_of(tfidf_run)
    calls = []
    score = scorer.predict_proba

    def failing(texts: list[str]) -> Any:
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return score(texts)

    scorer.predict_proba = failing
    out = tmp_path / "out.csv"
    job = Job(source, out, id_column="id", chunk_size=2, show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_job(tfidf_run, job, scorer)
    assert not out.exists()
    state = json.loads((partial_folder(out) / "state.json").read_text())
    assert state["chunks"] == 2 and state["rows"] == 4
    with pytest.raises(ConfigError, match="add --resume"):
        run_job(tfidf_run, job)
    job.resume = True
    summary = run_job(tfidf_run, job)
    assert summary["resumed_rows"] == 4 and summary["rows"] == 3 * len(TEXTS)
    assert out.read_bytes() == whole.read_bytes()
    assert not partial_folder(out).exists()


def test_a_changed_input_refuses_to_resume_with_one_line(tfidf_run: Path, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.txt", TEXTS * 2)
    scorer, _ = model_of(tfidf_run)
    scorer.predict_proba = lambda texts: (_ for _ in ()).throw(KeyboardInterrupt)
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_job(tfidf_run, Job(source, out, chunk_size=2, show_progress=False), scorer)
    write_input(source, TEXTS * 3)
    done = cli("predict", str(tfidf_run), "--input", str(source), "-o", str(out), "--resume")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "changed since the unfinished job began" in done.stderr


@pytest.mark.parametrize(
    "name",
    [
        "in.txt",
        "in.txt.gz",
        "in.csv",
        "in.csv.gz",
        "in.tsv",
        "in.jsonl",
        "in.jsonl.gz",
        "in.parquet",
    ],
)
def test_every_input_format_gives_the_same_predictions(
    tfidf_run: Path, tmp_path: Path, name: str
) -> None:
    texts = [t.replace("\n", " ") for t in TEXTS]  # a .txt line holds no line break
    source = write_input(tmp_path / name, texts)
    reference = write_input(tmp_path / "reference.jsonl", texts)
    for path, out in ((source, tmp_path / "out.jsonl"), (reference, tmp_path / "ref.jsonl")):
        run_job(tfidf_run, Job(path, out, chunk_size=3, show_progress=False))
    assert (tmp_path / "out.jsonl").read_text() == (tmp_path / "ref.jsonl").read_text()


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_every_output_format_holds_the_same_rows(
    tfidf_run: Path, tmp_path: Path, suffix: str
) -> None:
    source = write_input(tmp_path / "in.csv")
    out = tmp_path / f"out.{suffix}"
    run_job(tfidf_run, Job(source, out, id_column="id", top_k=2, show_progress=False))
    table = {
        "parquet": pd.read_parquet,
        "csv": lambda p: pd.read_csv(p, dtype={"id": str}),
        "jsonl": lambda p: pd.read_json(p, lines=True),
    }[suffix](out)
    assert list(table.columns) == [
        "row", "id", "label", "p_neg", "p_pos", "top1", "top1_p", "top2", "top2_p"
    ]  # fmt: skip
    assert table["id"].tolist() == [f"r{i}" for i in range(len(TEXTS))]
    assert table["label"].isna().sum() == 2
    assert (table["top1"].dropna() == table["label"].dropna()).all()


def test_printed_predictions_keep_one_line_per_row(tfidf_run: Path, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.csv")
    result = CliRunner().invoke(app, ["predict", str(tfidf_run), "--input", str(source), "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(TEXTS)
    assert lines[2].endswith("broke after a week,\\nawful lid")
    assert "7 rows, 2 empty" in result.stderr and "2 empty input rows" in result.stderr


def test_a_tfidf_model_predicts_without_importing_torch(tfidf_run: Path, tmp_path: Path) -> None:
    source = write_input(tmp_path / "in.csv")
    out = tmp_path / "out.parquet"
    program = (
        "import sys\n"
        "from shoptransfer.cli import main\n"
        f"sys.argv = ['shoptransfer', 'predict', {str(tfidf_run)!r}, '--input', "
        f"{str(source)!r}, '--output', {str(out)!r}, '--quiet']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(out)) == len(TEXTS)


def raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        (lambda p: write_input(p / "in.csv"), ["--column", "body"], "no column 'body'"),
        (lambda p: write_input(p / "in.jsonl"), ["--id-column", "sku"], "line 1 has no key 'sku'"),
        (lambda p: p / "missing.csv", [], "missing.csv: file not found"),
        (lambda p: raw(p / "in.parquet", b"PAR1 junk"), [], "not a readable Parquet"),
        (lambda p: raw(p / "in.txt", b"ok\ncaf\xe9\n"), [], "line 2: bytes"),
        (lambda p: raw(p / "in.csv.gz", b"not gzip"), [], "in.csv.gz"),
        (lambda p: write_input(p / "in.csv"), ["-o", "out.xlsx"], "unknown format '.xlsx'"),
        (lambda p: write_input(p / "in.doc"), [], "unknown format '.doc'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    tfidf_run: Path, tmp_path: Path, make: Any, flags: list[str], message: str
) -> None:
    source = make(tmp_path)
    done = cli("predict", str(tfidf_run), "--input", str(source), *flags, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


CHINESE = [
    "很好用，质量不错 great pan",
    "",
    "太差了，\n用了一天就坏了",
    "   ",
    "超赞的水壶 superb kettle",
    "junk, 退货了",
    "把手很舒服 love the handle",
]


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("in.csv", "gbk"),
        ("in.txt", "gbk"),
        ("in.tsv.gz", "gb18030"),
        ("in.jsonl", "gb18030"),
        ("in.csv", "utf-16"),
        ("in.txt", "utf-16"),
    ],
)
def test_an_input_in_a_declared_encoding_gives_the_predictions_of_its_texts(
    tfidf_run: Path, tmp_path: Path, name: str, encoding: str
) -> None:
    texts = [t.replace("\n", " ") for t in CHINESE] if ".txt" in name else CHINESE
    source = write_input(tmp_path / name, texts, encoding)
    reference = write_input(tmp_path / "reference.jsonl", texts)
    for path, out, declared in (
        (source, tmp_path / "out.jsonl", encoding),
        (reference, tmp_path / "ref.jsonl", "utf-8"),
    ):
        job = Job(path, out, chunk_size=2, show_progress=False, encoding=declared)
        assert run_job(tfidf_run, job)["rows"] == len(texts)
    assert (tmp_path / "out.jsonl").read_text() == (tmp_path / "ref.jsonl").read_text()


def test_the_encoding_of_an_unfinished_job_must_be_given_again(
    tfidf_run: Path, tmp_path: Path
) -> None:
    source = write_input(tmp_path / "in.csv", CHINESE * 2, "gb18030")
    scorer, _ = model_of(tfidf_run)
    scorer.predict_proba = lambda texts: (_ for _ in ()).throw(KeyboardInterrupt)
    out = tmp_path / "out.csv"
    job = Job(source, out, chunk_size=2, show_progress=False, encoding="GB18030")
    with pytest.raises(KeyboardInterrupt):
        run_job(tfidf_run, job, scorer)
    with pytest.raises(ConfigError, match="--encoding, --top-k or --explain differ"):
        run_job(tfidf_run, Job(source, out, resume=True, show_progress=False, encoding="gbk"))
    # nor may an unfinished job go on explaining rows it began without explanations
    explaining = Job(source, out, resume=True, show_progress=False, encoding="GB18030")
    explaining.explain = "occlusion"
    with pytest.raises(ConfigError, match="or --explain differ"):
        run_job(tfidf_run, explaining)
    job.resume = True
    assert run_job(tfidf_run, job)["resumed_rows"] == 0
    assert len(pd.read_csv(out)) == 2 * len(CHINESE)


def test_predict_encoding_flag(tfidf_run: Path, tmp_path: Path) -> None:
    """--encoding reads the file; undeclared, its bytes are one line naming file, line and the
    flag; a bad name or the flag without --input is one line; all exit 2."""
    source = write_input(tmp_path / "in.csv", CHINESE, "gbk")
    out = tmp_path / "out.csv"
    done = cli("predict", str(tfidf_run), "-i", str(source), "--encoding", "gbk", "-o", str(out))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out, keep_default_na=False)
    scorer, _ = model_of(tfidf_run)
    given = [t for t in CHINESE if t.strip()]
    assert table.loc[table["label"] != "", "label"].tolist() == scorer.predict(given)
    bad = f"{source} line 2: bytes b'\\xba' are not valid"
    for flags, message in (
        ([], f"{bad} UTF-8; give --encoding (--encoding gb18030 for Chinese GBK files)"),
        (["--encoding", "klingon"], "--encoding: unknown encoding 'klingon'; expected a name"),
        (["--encoding", "rot13"], "--encoding: 'rot13' is not a text encoding"),
        (["--encoding", "ascii"], f"{bad} ascii; check --encoding"),
    ):
        done = cli("predict", str(tfidf_run), "-i", str(source), *flags)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    done = cli("predict", str(tfidf_run), "--text", "good", "--encoding", "gbk")
    assert done.returncode == 2 and "--encoding go with --input" in done.stderr


@pytest.mark.parametrize("name", ["in.txt", "in.csv.gz", "in.jsonl"])
def test_bytes_not_valid_in_the_encoding_name_their_line_however_far_in(
    tmp_path: Path, name: str
) -> None:
    source = write_input(tmp_path / name, ["好"] * 20_000 + ["坏"], "gb18030")
    data = gzip.decompress(source.read_bytes()) if name.endswith(".gz") else source.read_bytes()
    bad = data.replace("坏".encode("gb18030"), b"\xff")
    source.write_bytes(gzip.compress(bad) if name.endswith(".gz") else bad)
    line = 20_001 + name.startswith("in.csv")  # a header line
    with pytest.raises(
        DataError, match=rf"{name} line {line}: bytes b'\\xff' are not valid gb18030"
    ):
        list(read_rows(source, "text", None, 100, "gb18030"))


def test_csv_lines_may_end_in_a_carriage_return_alone(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes('id,text\r1,"好\r\n用"\r2,差\r'.encode("gbk"))
    assert list(read_rows(source, "text", "id", 100, "gbk")) == [("好\r\n用", "1"), ("差", "2")]
