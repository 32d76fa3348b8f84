"""Interaction domains for recommendation: users' time-ordered item histories and an item
catalogue with text.

Readers:

- :func:`read_interactions`: a RecBole atomic ``.inter`` file (tab-separated, typed header
  ``name:type``) or a CSV / TSV / Parquet table with a column mapping, plus an optional item
  table (atomic ``.item`` or a table) whose text columns describe each item. It drops exact
  duplicate rows, sorts each user's rows by time, applies k-core filtering and splits each
  history leave-one-out by time: the last item is the test case, the one before the validation
  case, the rest is for training.
- :func:`read_recbole_split`: the pre-split form (``NAME.train/valid/test.inter`` with
  ``item_id_list`` histories, ``NAME.text``, ``NAME.item2index``), kept exactly as given.

Items are numbered from 1 (0 pads a history). Everything a reader changes or leaves out is
counted in :attr:`InteractionDomain.report`; what it cannot use is a one-line error naming the
file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoptransfer.data.readers import (
    cell_text,
    check_header,
    decode_text,
    read_bytes,
    read_delimited,
    read_parquet,
    table_format,
)
from shoptransfer.errors import DataError


@dataclasses.dataclass
class NextItemCases:
    """Questions "which item comes next?": one per row, for the user ``users[i]``."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


@dataclasses.dataclass
class InteractionDomain:
    """Users' item histories (item indices from 1, oldest first) and the item catalogue.

    ``train[u]`` is the part of user ``u``'s history a model may train on; ``valid`` and
    ``test`` hold the held-out next items with the history before each.
    """

    name: str
    items: list[str]
    item_text: list[str]
    users: list[str]
    train: list[np.ndarray]
    valid: NextItemCases
    test: NextItemCases
    source: str = ""
    report: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.train)) + len(self.valid) + len(self.test)

    def data_hash(self) -> str:
        digest = hashlib.sha256()
        for sequence in self.train:
            digest.update(np.asarray(sequence, dtype=np.int64).tobytes() + b"|")
        for cases in (self.valid, self.test):
            digest.update(np.asarray(cases.targets, dtype=np.int64).tobytes())
        digest.update("\n".join(self.item_text).encode("utf-8"))
        return digest.hexdigest()

    def __len__(self) -> int:
        """Users with training interactions."""
        return sum(1 for sequence in self.train if len(sequence))

    def with_training_users(self, share: float, seed: int) -> InteractionDomain:
        """A copy whose training histories are those of a seeded ``share`` of the users with
        any (the others' are emptied); validation and test cases stay those of every user."""
        active = np.flatnonzero([len(sequence) > 0 for sequence in self.train])
        keep = np.random.default_rng(seed).permutation(active)[: max(1, round(share * len(active)))]
        kept = set(keep.tolist())
        train = [
            sequence if u in kept else np.zeros(0, dtype=np.int64)
            for u, sequence in enumerate(self.train)
        ]
        return dataclasses.replace(self, train=train, name=f"{self.name} ({share:g} of users)")

    def unseen_targets(self, cases: NextItemCases) -> np.ndarray:
        """Which of ``cases`` ask for an item that no training history holds (cold-start
        items: a model that learns one vector per item has learned nothing about them)."""
        trained = [sequence for sequence in self.train if len(sequence)]
        seen = np.zeros(self.n_items + 1, dtype=bool)
        if trained:
            seen[np.concatenate(trained).astype(np.int64)] = True
        return ~seen[np.asarray(cases.targets, dtype=np.int64)]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "users": len(self.users),
            "items": self.n_items,
            "interactions": self.n_interactions,
            "valid_cases": len(self.valid),
            "test_cases": len(self.test),
            "report": dict(self.report),
            "data_hash": self.data_hash(),
        }


# -- reading tables ---------------------------------------------------------------------------


def read_frame(
    path: Path, format: str | None, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, np.ndarray]:
    """A table as strings, and each row's file line (Parquet: its row number from 1); a text
    file is decoded as ``encoding``; RecBole atomic files (``.inter``, ``.item``) lose their
    type tags."""
    atomic = path.suffix in (".inter", ".item", ".user", ".text", ".item2index", ".user2index")
    fmt = "tsv" if atomic and format is None else table_format(path, format)
    if fmt == "parquet":
        frame = read_parquet(path).map(cell_text)
        lines = np.arange(1, len(frame) + 1)
    elif fmt in ("csv", "tsv"):
        decoded = decode_text(path, read_bytes(path), encoding)
        # tabs separate a TSV's fields and its quotes are text; a CSV's quotes quote
        header, rows, line_list = read_delimited(
            path, decoded, "\t" if fmt == "tsv" else ",", quotes=fmt == "csv"
        )
        frame = pd.DataFrame(rows, columns=header, dtype=str)
        lines = np.array(line_list, dtype=np.int64)
    else:
        raise DataError(f"{path}: interactions are read from CSV, TSV, Parquet or atomic files")
    columns = [str(c).split(":")[0] for c in frame.columns]
    check_header(path, columns)
    frame.columns = columns
    return frame, lines


def require_columns(path: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError(f"{path}: no column '{column}'; the columns are {list(frame.columns)}")


def read_times(path: Path, column: str, values: pd.Series, lines: np.ndarray) -> np.ndarray:
    """A time column as numbers: all numbers, or all dates (and times); else a DataError
    naming the file line of the first value that is neither (or is empty)."""
    text = values.str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64)
    if numbers.notna().any():  # a column of numbers with a few that are not
        bad = numbers.isna().to_numpy()
        expected = "a number like the other rows"
    else:
        with warnings.catch_warnings():  # pandas warns when it guesses the date format
            warnings.simplefilter("ignore")
            dates = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        if dates.notna().all():
            return dates.astype("int64").to_numpy(dtype=np.float64)
        bad = dates.isna().to_numpy()
        expected = "a number or a date"
    row = int(np.flatnonzero(bad)[0])
    raise DataError(
        f"{path} line {int(lines[row])}: {column} '{values.iloc[row]}' is not {expected} "
        f"({int(bad.sum())} such rows)"
    )


def k_core(frame: pd.DataFrame, k: int, user: str = "user", item: str = "item") -> pd.DataFrame:
    """Repeatedly drop users and items with fewer than ``k`` interactions."""
    if k <= 1:
        return frame
    while True:
        user_counts = frame[user].map(frame[user].value_counts())
        item_counts = frame[item].map(frame[item].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return frame
        frame = frame[keep]


def read_interactions(
    path: str | Path,
    *,
    user: str = "user_id",
    item: str = "item_id",
    time: str | None = "timestamp",
    items_path: str | Path | None = None,
    item_id: str | None = None,
    item_text: list[str] | tuple[str, ...] = ("title",),
    name: str | None = None,
    format: str | None = None,
    k_core_threshold: int = 0,
    max_history: int = 50,
    encoding: str = "utf-8",
) -> InteractionDomain:
    """Read interactions (and an item catalogue) into a leave-one-out split domain.

    ``time=None`` takes the file order as time order. ``item_text`` names the catalogue
    columns joined (with ". ") into each item's text; ``item_id`` is the catalogue's id column
    (default: the same name as ``item``). Histories given to validation and test cases keep
    the last ``max_history`` items. Text files (interactions and catalogue) are decoded as
    ``encoding`` (``gbk``, ``gb18030``...; UTF-8 by default).
    """
    path = Path(path)
    frame, lines = read_frame(path, format, encoding)
    require_columns(path, frame, [user, item] + ([time] if time else []))
    if not len(frame):
        raise DataError(f"{path}: no interactions (the file has a header and no rows)")
    report: dict[str, int] = {}
    table = pd.DataFrame(
        {
            "user": frame[user].str.strip(),
            "item": frame[item].str.strip(),
            "time": (
                read_times(path, time, frame[time], lines)
                if time
                else np.arange(len(frame), dtype=float)
            ),
            "order": np.arange(len(frame)),
        }
    )
    empty = (table["user"] == "") | (table["item"] == "")
    if empty.any():
        report["rows without user or item (dropped)"] = int(empty.sum())
        table = table[~empty]
    duplicate = table.duplicated(["user", "item", "time"])
    if duplicate.any():
        report["duplicate rows (dropped)"] = int(duplicate.sum())
        table = table[~duplicate]
    before_users, before_items = table["user"].nunique(), table["item"].nunique()
    if len(table) == 0:
        raise DataError(f"{path}: no interactions left: {report}")
    table = k_core(table, k_core_threshold)
    if len(table) == 0:
        raise DataError(
            f"{path}: no interactions left after {k_core_threshold}-core filtering (every user "
            f"or item has fewer than {k_core_threshold}); lower k_core"
        )
    if k_core_threshold > 1:
        report[f"users removed by {k_core_threshold}-core"] = before_users - table["user"].nunique()
        report[f"items removed by {k_core_threshold}-core"] = before_items - table["item"].nunique()
    # each user's rows in time order; ties keep the file order
    unsorted = table.groupby("user", sort=False)["time"].apply(
        lambda t: bool((np.diff(t.to_numpy()) < 0).any())
    )
    if unsorted.any():
        report["users whose rows were not in time order (sorted)"] = int(unsorted.sum())
    table = table.sort_values(["user", "time", "order"], kind="stable")
    items = sorted(table["item"].unique(), key=natural_order)
    index = {item_name: i + 1 for i, item_name in enumerate(items)}
    users = sorted(table["user"].unique(), key=natural_order)
    grouped = table.groupby("user", sort=False)["item"].apply(list).to_dict()
    sequences = [np.array([index[i] for i in grouped[u]], dtype=np.int64) for u in users]
    texts = catalogue_text(
        Path(items_path) if items_path else None,
        items,
        item_id or item,
        list(item_text),
        report,
        encoding,
    )
    train, valid, test = leave_one_out(sequences, max_history, report)
    return InteractionDomain(
        name=name or path.stem.split(".")[0],
        items=items,
        item_text=texts,
        users=users,
        train=train,
        valid=valid,
        test=test,
        source=str(path),
        report=report,
    )


def natural_order(value: str) -> tuple[int, Any]:
    """Numbers in numeric order, then other ids in text order."""
    return (0, int(value)) if value.isdigit() else (1, value)


def catalogue_text(
    path: Path | None,
    items: list[str],
    id_column: str,
    columns: list[str],
    report: dict[str, int],
    encoding: str = "utf-8",
) -> list[str]:
    """Each item's text: the catalogue's ``columns`` joined with ". " (a text file decoded as
    ``encoding``); the empty text for an item the catalogue lacks."""
    if path is None:
        report["items without text"] = len(items)
        return [""] * len(items)
    frame, _ = read_frame(path, None, encoding)
    require_columns(path, frame, [id_column, *columns])
    joined = frame[columns].apply(
        lambda row: ". ".join(str(v).strip() for v in row if str(v).strip()), axis=1
    )
    ids = frame[id_column].str.strip()
    repeated = ids.duplicated()
    if repeated.any():
        report["catalogue rows repeating an item id (first kept)"] = int(repeated.sum())
    text = dict(zip(ids[~repeated], joined[~repeated]))
    texts = [text.get(item_name, "") for item_name in items]
    missing = sum(1 for t in texts if not t)
    if missing:
        report["items without text"] = missing
    extra = len(set(text) - set(items))
    if extra:
        report["catalogue items without interactions (not ranked)"] = extra
    return texts


def leave_one_out(
    sequences: list[np.ndarray], max_history: int, report: dict[str, int]
) -> tuple[list[np.ndarray], NextItemCases, NextItemCases]:
    """Split each time-ordered history: last item to test, the one before to validation.

    A user with fewer than 3 items has no validation and test case; all of their items train.
    """
    train: list[np.ndarray] = []
    cases: dict[str, tuple[list[int], list[np.ndarray], list[int]]] = {
        "valid": ([], [], []),
        "test": ([], [], []),
    }
    short = 0
    for u, sequence in enumerate(sequences):
        if len(sequence) < 3:
            short += 1
            train.append(sequence)
            continue
        train.append(sequence[:-2])
        for name, end in (("valid", len(sequence) - 2), ("test", len(sequence) - 1)):
            users, histories, targets = cases[name]
            users.append(u)
            histories.append(sequence[max(0, end - max_history) : end])
            targets.append(int(sequence[end]))
    if short:
        report["users with fewer than 3 items (training only)"] = short
    valid, test = (
        NextItemCases(np.array(u, dtype=np.int64), h, np.array(t, dtype=np.int64))
        for u, h, t in cases.values()
    )
    return train, valid, test


# -- the pre-split RecBole form ---------------------------------------------------------------


def read_recbole_split(
    folder: str | Path, dataset: str | None = None, encoding: str = "utf-8"
) -> InteractionDomain:
    """Read ``DATASET.{train,valid,test}.inter``, ``.text`` and ``.item2index`` as given,
    decoded as ``encoding``.

    Item ids in the ``.inter`` files are 0-based positions in ``.item2index``; each user's
    training history is their longest training row plus its next item.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected a RecBole dataset folder")
    dataset = dataset or folder.name
    files = {part: folder / f"{dataset}.{part}" for part in ("item2index", "text")}
    files.update({part: folder / f"{dataset}.{part}.inter" for part in ("train", "valid", "test")})
    for path in files.values():
        if not path.exists():
            raise DataError(f"{path}: file not found; expected the pre-split {dataset} files")
    positions = _item_positions(files["item2index"], encoding)
    items = [""] * len(positions)
    for line, asin, position in positions:
        if not position.isdigit() or int(position) >= len(items):
            raise DataError(
                f"{files['item2index']} line {line}: index '{position}' is not in "
                f"[0, {len(items) - 1}]"
            )
        items[int(position)] = asin
    report: dict[str, int] = {}
    text_frame, _ = read_frame(files["text"], None, encoding)
    require_columns(files["text"], text_frame, ["item_id", "text"])
    text = dict(zip(text_frame["item_id"].str.strip(), text_frame["text"].str.strip()))
    texts = [text.get(asin, "") for asin in items]
    if any(not t for t in texts):
        report["items without text"] = sum(1 for t in texts if not t)
    parts = {
        part: _split_rows(files[part], len(items), encoding) for part in ("train", "valid", "test")
    }
    users = sorted(
        {u for rows in parts.values() for u, _, _ in rows},
        key=natural_order,
    )
    user_index = {u: i for i, u in enumerate(users)}
    longest: dict[str, np.ndarray] = {}
    for u, history, target in parts["train"]:
        sequence = np.append(history, target)
        if len(sequence) > len(longest.get(u, ())):
            longest[u] = sequence
    train = [longest.get(u, np.zeros(0, dtype=np.int64)) for u in users]
    cases = []
    for part in ("valid", "test"):
        rows = [(u, h, t) for u, h, t in parts[part] if len(h)]
        if len(rows) < len(parts[part]):
            report[f"{part} cases without history (dropped)"] = len(parts[part]) - len(rows)
        cases.append(
            NextItemCases(
                np.array([user_index[u] for u, _, _ in rows], dtype=np.int64),
                [h for _, h, _ in rows],
                np.array([t for _, _, t in rows], dtype=np.int64),
            )
        )
    return InteractionDomain(
        name=dataset,
        items=items,
        item_text=texts,
        users=users,
        train=train,
        valid=cases[0],
        test=cases[1],
        source=str(folder),
        report=report,
    )


def _item_positions(path: Path, encoding: str) -> list[tuple[int, str, str]]:
    """``(line, item id, position)`` for each line of a ``.item2index`` file (tab-separated,
    no header)."""
    positions = []
    for line, text in enumerate(decode_text(path, read_bytes(path), encoding).split("\n"), start=1):
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path} line {line}: {len(fields)} fields; expected an item id, a tab and its "
                "index"
            )
        positions.append((line, fields[0].strip(), fields[1].strip()))
    if not positions:
        raise DataError(f"{path}: the file is empty; expected a line per item")
    return positions


def _split_rows(path: Path, n_items: int, encoding: str) -> list[tuple[str, np.ndarray, int]]:
    frame, lines = read_frame(path, None, encoding)
    require_columns(path, frame, ["user_id", "item_id_list", "item_id"])
    rows = []
    for line, u, history, target in zip(
        lines, frame["user_id"], frame["item_id_list"], frame["item_id"]
    ):
        try:
            ids = [int(x) + 1 for x in history.split()] + [int(target) + 1]
        except ValueError:
            raise DataError(f"{path} line {line}: item ids must be integers") from None
        if min(ids) < 1 or max(ids) > n_items:
            raise DataError(
                f"{path} line {line}: item id {max(ids) - 1 if max(ids) > n_items else -1} "
                f"is not in the catalogue (0..{n_items - 1})"
            )
        rows.append((u.strip(), np.array(ids[:-1], dtype=np.int64), ids[-1]))
    return rows


def read_interaction_domain(config: Any) -> InteractionDomain:
    """Read the interaction domain a config entry (an ``InteractionDomainConfig``) describes;
    a list of entries is read as one domain, their histories mixed (:func:`merge_domains`)."""
    if isinstance(config, list):
        return merge_domains([read_interaction_domain(entry) for entry in config])
    path = Path(config.path).expanduser()
    fmt = config.format or ("recbole-split" if path.is_dir() else None)
    if fmt == "recbole-split":
        domain = read_recbole_split(path, encoding=config.encoding)
    else:
        domain = read_interactions(
            path,
            user=config.user,
            item=config.item,
            time=config.time,
            items_path=config.items,
            item_id=config.item_id,
            item_text=config.item_text,
            format=None if fmt == "atomic" else fmt,
            k_core_threshold=config.k_core,
            max_history=config.max_history,
            encoding=config.encoding,
        )
    if config.name:
        domain.name = config.name
    return domain


def merge_domains(domains: list[InteractionDomain]) -> InteractionDomain:
    """Several domains as one, to pre-train on all their histories at once (as UniSRec mixes
    its pre-training domains): catalogues and users side by side, each item and user id
    prefixed with its domain's name, item indices shifted past the domains before it; a
    training batch then mixes histories of every domain, each history staying in its own."""
    if len(domains) == 1:
        return domains[0]
    names = [domain.name for domain in domains]
    if len(set(names)) < len(names):
        raise DataError(
            f"the source domains {names} share a name; give each a different 'name:' so their "
            "items stay apart"
        )
    items: list[str] = []
    texts: list[str] = []
    users: list[str] = []
    train: list[np.ndarray] = []
    parts: dict[str, list[NextItemCases]] = {"valid": [], "test": []}
    report: dict[str, int] = {}
    for domain in domains:
        shift_items, shift_users = len(items), len(users)
        items += [f"{domain.name}:{item}" for item in domain.items]
        texts += domain.item_text
        users += [f"{domain.name}:{user}" for user in domain.users]
        train += [np.asarray(sequence, dtype=np.int64) + shift_items for sequence in domain.train]
        for part, cases in parts.items():
            given = getattr(domain, part)
            cases.append(
                NextItemCases(
                    users=np.asarray(given.users, dtype=np.int64) + shift_users,
                    histories=[
                        np.asarray(h, dtype=np.int64) + shift_items for h in given.histories
                    ],
                    targets=np.asarray(given.targets, dtype=np.int64) + shift_items,
                )
            )
        report.update({f"{domain.name}: {key}": value for key, value in domain.report.items()})

    def joined(cases: list[NextItemCases]) -> NextItemCases:
        return NextItemCases(
            users=np.concatenate([c.users for c in cases]),
            histories=[h for c in cases for h in c.histories],
            targets=np.concatenate([c.targets for c in cases]),
        )

    return InteractionDomain(
        name=" + ".join(names),
        items=items,
        item_text=texts,
        users=users,
        train=train,
        valid=joined(parts["valid"]),
        test=joined(parts["test"]),
        source="; ".join(domain.source for domain in domains),
        report=report,
    )
