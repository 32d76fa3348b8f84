"""Rating domains: (user, item, rating) rows with an item catalogue's text, for rating
prediction.

:func:`read_ratings` reads a RecBole atomic ``.inter`` file or a CSV / TSV / Parquet table
with a column mapping (and an optional item table whose text columns describe each item). A
row with an empty user, item or rating is dropped and counted; a repeated (user, item) pair
keeps its latest rating (counted); a rating that is not a number is an error naming its line.
Users and items are numbered from 0 in the order of their ids; every subset of a domain (the
test split, a budget's draw) keeps the same numbering and catalogue.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoptransfer.data.interactions import (
    catalogue_text,
    natural_order,
    read_frame,
    read_times,
    require_columns,
)
from shoptransfer.errors import DataError


@dataclasses.dataclass
class RatingDomain:
    """Ratings as parallel arrays (``user[k]`` rated ``item[k]`` with ``rating[k]`` at
    ``time[k]``); ``users``, ``items`` and ``item_text`` are the whole domain's."""

    name: str
    users: list[str]
    items: list[str]
    item_text: list[str]
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    time: np.ndarray
    source: str = ""
    report: dict[str, int] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rating)

    def subset(self, rows: np.ndarray, name: str | None = None) -> RatingDomain:
        """The ratings at ``rows`` (in that order), with the same users, items and catalogue."""
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(
            self,
            name=name or self.name,
            user=self.user[rows],
            item=self.item[rows],
            rating=self.rating[rows],
            time=self.time[rows],
            report={},
        )

    def split(
        self, fraction: float, seed: int, by: str = "random"
    ) -> tuple[RatingDomain, RatingDomain]:
        """``(rest, held_out)``: ``fraction`` of the ratings held out at random (``seed``), or
        the latest ``fraction`` by time (``by="time"``; ties keep the file order)."""
        n_held = max(1, round(fraction * len(self)))
        if by == "time":
            order = np.argsort(self.time, kind="stable")
        else:
            order = np.random.default_rng(seed).permutation(len(self))
        return (
            self.subset(np.sort(order[:-n_held]), f"{self.name} (pool)"),
            self.subset(np.sort(order[-n_held:]), f"{self.name} (test)"),
        )

    def sample(self, budget: int | float, seed: int) -> RatingDomain:
        """A seeded random draw: ``budget`` ratings (an integer) or that share of them."""
        n = round(budget * len(self)) if isinstance(budget, float) else int(budget)
        rows = np.random.default_rng(seed).permutation(len(self))[: max(1, min(n, len(self)))]
        return self.subset(np.sort(rows), f"{self.name} ({budget:g} of ratings)")

    def ratings_per_item(self) -> np.ndarray:
        """How many of these ratings each catalogue item has."""
        return np.bincount(self.item, minlength=len(self.items))

    def data_hash(self) -> str:
        digest = hashlib.sha256()
        for array in (self.user, self.item, self.rating):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\n".join(self.item_text).encode("utf-8"))
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "ratings": len(self),
            "users_rated": int(len(np.unique(self.user))),
            "items_rated": int(len(np.unique(self.item))),
            "rating_mean": round(float(self.rating.mean()), 4) if len(self) else None,
            "rating_range": [float(self.rating.min()), float(self.rating.max())]
            if len(self)
            else None,
            "report": dict(self.report),
            "data_hash": self.data_hash(),
        }


def read_ratings(
    path: str | Path,
    *,
    user: str = "user_id",
    item: str = "item_id",
    rating: str = "rating",
    time: str | None = "timestamp",
    items_path: str | Path | None = None,
    item_id: str | None = None,
    item_text: list[str] | tuple[str, ...] = ("title",),
    name: str | None = None,
    format: str | None = None,
    encoding: str = "utf-8",
) -> RatingDomain:
    """Read a ratings table (and an item catalogue) into a :class:`RatingDomain`.

    ``time=None`` takes the file order as time order; ``item_text`` names the catalogue columns
    joined (with ". ") into each item's text; ``item_id`` is the catalogue's id column
    (default: the same name as ``item``). Text files (ratings and catalogue) are decoded as
    ``encoding`` (``gbk``, ``gb18030``...; UTF-8 by default).
    """
    path = Path(path)
    frame, lines = read_frame(path, format, encoding)
    require_columns(path, frame, [user, item, rating] + ([time] if time else []))
    if not len(frame):
        raise DataError(f"{path}: no ratings (the file has a header and no rows)")
    report: dict[str, int] = {}
    values = frame[rating].str.strip()
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (values != "") & ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path} line {int(lines[row])}: rating '{values.iloc[row]}' in column '{rating}' "
            "is not a number"
        )
    table = pd.DataFrame(
        {
            "user": frame[user].str.strip(),
            "item": frame[item].str.strip(),
            "rating": numbers,
            "time": (
                read_times(path, time, frame[time], lines)
                if time
                else np.arange(len(frame), dtype=float)
            ),
            "order": np.arange(len(frame)),
        }
    )
    empty = (table["user"] == "") | (table["item"] == "") | table["rating"].isna()
    if empty.any():
        report["rows without user, item or rating (dropped)"] = int(empty.sum())
        table = table[~empty]
    if not len(table):
        raise DataError(f"{path}: no ratings (every row lacks a user, an item or a rating)")
    table = table.sort_values(["time", "order"], kind="stable")
    repeated = table.duplicated(["user", "item"], keep="last")
    if repeated.any():
        report["repeated (user, item) ratings (the latest kept)"] = int(repeated.sum())
        table = table[~repeated]
    table = table.sort_values("order", kind="stable")
    users = sorted(table["user"].unique(), key=natural_order)
    items = sorted(table["item"].unique(), key=natural_order)
    user_index = {u: i for i, u in enumerate(users)}
    item_index = {i: k for k, i in enumerate(items)}
    texts = catalogue_text(
        Path(items_path) if items_path else None,
        items,
        item_id or item,
        list(item_text),
        report,
        encoding,
    )
    return RatingDomain(
        name=name or path.stem.split(".")[0],
        users=users,
        items=items,
        item_text=texts,
        user=table["user"].map(user_index).to_numpy(dtype=np.int64),
        item=table["item"].map(item_index).to_numpy(dtype=np.int64),
        rating=table["rating"].to_numpy(dtype=np.float32),
        time=table["time"].to_numpy(dtype=np.float64),
        source=str(path),
        report=report,
    )


def read_rating_domain(config: Any) -> RatingDomain:
    """Read the rating domain a config entry (a ``RatingDomainConfig``) describes."""
    return read_ratings(
        Path(config.path).expanduser(),
        user=config.user,
        item=config.item,
        rating=config.rating,
        time=config.time,
        items_path=config.items,
        item_id=config.item_id,
        item_text=config.item_text,
        name=config.name,
        format=None if config.format == "atomic" else config.format,
        encoding=config.encoding,
    )
