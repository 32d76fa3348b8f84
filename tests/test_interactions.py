"""Interaction domains: readers, bad input, k-core, leave-one-out, full-ranking metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shoptransfer.data.interactions import read_interactions, read_recbole_split
from shoptransfer.errors import DataError
from shoptransfer.evaluation.ranking import ranking_metrics, target_ranks

INTER = """user_id:token\titem_id:token\ttimestamp:float
u1\ta\t1
u1\tb\t2
u1\tc\t3
u1\td\t4
u2\tb\t5
u2\tc\t3
u2\ta\t1
u2\ta\t1
u3\td\t1
u3\ta\t2
u3\tb\t3
u4\tc\t1
"""
ITEMS = """item_id:token\ttitle:token_seq\tgenre:token_seq
a\tAlpha\tx
b\tBeta\ty
c\tGamma\t
e\tEpsilon\tz
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_atomic_files_are_sorted_deduplicated_and_split_leave_one_out(tmp_path: Path) -> None:
    inter = write(tmp_path, "shop.inter", INTER)
    items = write(tmp_path, "shop.item", ITEMS)
    domain = read_interactions(inter, items_path=items, item_text=["title", "genre"])
    assert domain.items == ["a", "b", "c", "d"]
    assert domain.item_text == ["Alpha. x", "Beta. y", "Gamma", ""]
    assert domain.report == {
        "duplicate rows (dropped)": 1,
        "users whose rows were not in time order (sorted)": 1,
        "users with fewer than 3 items (training only)": 1,
        "items without text": 1,
        "catalogue items without interactions (not ranked)": 1,
    }
    u1, u2 = domain.users.index("u1"), domain.users.index("u2")
    assert domain.train[u1].tolist() == [1, 2]  # a b | valid c | test d
    assert domain.train[u2].tolist() == [1]  # u2 in time order: a c b
    test = {int(u): (h.tolist(), int(t)) for u, h, t in zip(*vars(domain.test).values())}
    assert test[u1] == ([1, 2, 3], 4) and test[u2] == ([1, 3], 2)
    assert len(domain.valid) == len(domain.test) == 3  # u4 has one item: training only
    assert domain.n_interactions == 11


def test_csv_with_a_column_mapping_and_k_core(tmp_path: Path) -> None:
    rows = ["buyer,sku,when"] + [
        f"{u},{i},{t}"
        for t, (u, i) in enumerate(
            [("x", "p"), ("x", "q"), ("x", "r"), ("y", "p"), ("y", "q"), ("y", "r"), ("z", "s")]
        )
    ]
    path = write(tmp_path, "log.csv", "\n".join(rows) + "\n")
    domain = read_interactions(path, user="buyer", item="sku", time="when", k_core_threshold=2)
    assert domain.users == ["x", "y"] and domain.items == ["p", "q", "r"]
    assert domain.report["users removed by 2-core"] == 1
    assert domain.report["items removed by 2-core"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id:token\titem:token\n1\t2\n", "no column 'item_id'"),
        (
            "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n",
            "line 2: timestamp 'soon' is not a number or a date",
        ),
        # the file line of the bad time, blank lines and all (it was reported as line 2)
        (
            "user_id,item_id,timestamp\n1,a,0\n1,b,1\n\n1,c,2\n2,a,x\n2,b,4\n",
            "line 6: timestamp 'x' is not a number like the other rows",
        ),
        ("user_id,item_id,timestamp\n1,a,0\n1,b,\n", "line 3: timestamp '' is not a number"),
        ("user_id,item_id,item_id,timestamp\n1,a,b,0\n", "names column 'item_id' twice"),
        # a header and no rows is not a k-core problem (k_core is 0 here)
        ("user_id,item_id,timestamp\n", "no interactions \\(the file has a header and no rows"),
        ("", "the file is empty"),
    ],
)
def test_bad_interaction_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    name = "bad.inter" if "\t" in text else "bad.csv"
    with pytest.raises(DataError, match=message) as error:
        read_interactions(write(tmp_path, name, text))
    assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DataError, match="file not found"):
        read_interactions(tmp_path / "missing.inter")


def write_split(folder: Path, test_row: str = "0\t0 1\t2") -> Path:
    folder.mkdir()
    write(folder, "S.item2index", "A\t0\nB\t1\nC\t2\nD\t3\n")
    write(folder, "S.text", "item_id:token\ttext:token_seq\nA\tan a\nB\ta b\nC\tc\n")
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(folder, "S.train.inter", header + "0\t0\t1\n1\t3\t2\n")
    write(folder, "S.valid.inter", header + "0\t0\t1\n1\t3 2\t0\n")
    write(folder, "S.test.inter", header + test_row + "\n1\t3 2 0\t1\n")
    return folder


def test_pre_split_files_are_kept_as_given(tmp_path: Path) -> None:
    domain = read_recbole_split(write_split(tmp_path / "S"))
    assert domain.items == ["A", "B", "C", "D"]
    assert domain.item_text[3] == "" and domain.report["items without text"] == 1
    assert [s.tolist() for s in domain.train] == [[1, 2], [4, 3]]
    assert domain.test.histories[0].tolist() == [1, 2] and domain.test.targets.tolist() == [3, 2]


def test_pre_split_item_outside_the_catalogue_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"S.test.inter line 2: item id 7 is not in the catalogue"):
        read_recbole_split(write_split(tmp_path / "S", "0\t0 7\t2"))


def test_ranks_exclude_history_and_split_ties() -> None:
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 3.0, 1.0]])  # column 0 pads

    def scorer(histories, users):
        return scores

    # target 3: item 1 is in the history (excluded), item 2 is above, item 4 ties: 1 + 0.5
    ranks = target_ranks(scorer, [np.array([1])], np.array([3]))
    assert ranks.tolist() == [1.5]
    same = target_ranks(lambda h, u: torch.ones(1, 6), [np.array([], dtype=int)], np.array([2]))
    assert same.tolist() == [2.0]  # 4 other items tie: expected rank 2


def test_ranking_metrics_by_hand() -> None:
    metrics = ranking_metrics(np.array([0.0, 3.0, 20.0]), ks=(5,))
    assert metrics["recall@5"] == pytest.approx(2 / 3) and metrics["hr@5"] == metrics["recall@5"]
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / np.log2(5)) / 3)
    assert metrics["mrr@5"] == pytest.approx((1 + 1 / 4) / 3)
    assert metrics["precision@5"] == pytest.approx(2 / 15)
    assert metrics["f1@5"] == pytest.approx(2 * (2 / (5 + 1)) / 3)


def test_evaluation_memory_does_not_grow_with_users() -> None:
    seen = []

    def scorer(histories, users):
        seen.append(len(histories))
        return torch.zeros(len(histories), 11)

    target_ranks(scorer, [np.array([1])] * 1000, np.full(1000, 2), batch_size=128)
    assert max(seen) == 128 and sum(seen) == 1000


def test_k_core_that_leaves_nothing_says_so_and_names_k(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user_id,item_id,timestamp\n1,a,0\n2,b,1\n")
    with pytest.raises(DataError, match="after 2-core filtering .* lower k_core"):
        read_interactions(path, k_core_threshold=2)


def test_catalogue_rows_repeating_an_item_id_are_counted_and_the_first_kept(
    tmp_path: Path,
) -> None:
    log = write(tmp_path, "log.csv", "user_id,item_id,timestamp\n1,a,0\n1,b,1\n1,c,2\n")
    items = write(tmp_path, "items.csv", "item_id,title\na,first\na,second\nb,bee\nc,sea\n")
    domain = read_interactions(log, items_path=items)
    assert domain.item_text == ["first", "bee", "sea"]
    assert domain.report["catalogue rows repeating an item id (first kept)"] == 1


def test_parquet_missing_cells_are_empty_not_the_word_none(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"user_id": ["1", "1", None, "1"], "item_id": [1, 2, 3, 3], "timestamp": [0.0, 1, 2, 3]}
    )
    frame.to_parquet(tmp_path / "log.parquet")
    domain = read_interactions(tmp_path / "log.parquet")
    assert domain.users == ["1"] and domain.items == ["1", "2", "3"]
    assert domain.report["rows without user or item (dropped)"] == 1
    frame["timestamp"] = [0.0, None, 2, 3]
    frame.to_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataError, match="log.parquet line 2: timestamp '' is not a number"):
        read_interactions(tmp_path / "log.parquet")


def test_pre_split_index_file_that_is_empty_or_ragged(tmp_path: Path) -> None:
    folder = write_split(tmp_path / "S")
    write(folder, "S.item2index", "")
    with pytest.raises(DataError, match="S.item2index: the file is empty"):
        read_recbole_split(folder)
    write(folder, "S.item2index", "A\t0\nB 1\n")
    with pytest.raises(DataError, match="S.item2index line 2: 1 fields"):
        read_recbole_split(folder)
