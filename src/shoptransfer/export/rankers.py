"""ONNX export of a sequential recommender (SASRec, text-seq and its presets), with int8
quantisation and a self-check.

The exported graph is the path from a history to the catalogue's scores: ``ids`` (left-padded
item indices, dynamic batch and length) through the self-attention encoder to ``scores`` over
every item (cosine over the temperature, or dot product, as the model scores; column 0 is the
padding). The item vectors are computed once at export time and stored in the graph: a
text-based model's come from its frozen text embeddings through the trained adaptor, so the
runtime needs neither the text backbone nor the item texts. ``item_vectors.npy`` keeps the same
table for explanations, ``items.json`` the catalogue's item ids.

Every export checks itself on the run's target test cases: how often the top-10 list (history
items removed, as ``recommend`` removes them) is the same set as PyTorch's, how often the first
item is the same, the largest score difference, and Recall@10 / NDCG@10 of PyTorch and of each
ONNX model, recorded in ``export.json``.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.data.interactions import NextItemCases
from shoptransfer.errors import ConfigError
from shoptransfer.evaluation.ranking import evaluate_ranking
from shoptransfer.export.exporter import (
    GOAL_AGREEMENT,
    INT8_METHOD,
    OPSET,
    QUANTIZATIONS,
    build_export,
    versions,
    write_int8,
)
from shoptransfer.export.runtime import (
    FP32_FILE,
    INT8_FILE,
    ITEM_VECTORS_FILE,
    ITEMS_FILE,
    RANKER_READS,
    OnnxRanker,
    file_record,
    require,
)
from shoptransfer.files import atomic_write_text
from shoptransfer.recommenders.base import ItemRanker
from shoptransfer.recommenders.layers import ItemScores, SequenceEncoder
from shoptransfer.recommenders.neural import NeuralRanker

TOP = 10  # the list length the check compares


@dataclass
class HeldOutCases:
    """Next-item cases to check an export on, and ``describe``: where they come from."""

    cases: NextItemCases
    describe: str


class FixedItemVectors(nn.Module):
    """The trained item vectors as a constant table (the export's input embeddings)."""

    vectors: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("vectors", table)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.vectors[ids]

    def table(self) -> torch.Tensor:
        return self.vectors


class RankingGraph(nn.Module):
    """What the ONNX file computes: the sequence encoder over a padded history, then the
    scores of every item against the precomputed item vectors."""

    def __init__(self, ranker: NeuralRanker) -> None:
        super().__init__()
        model = ranker.model.eval()
        trained: Any = model.head  # ItemScores (exportable checked the encoder)
        with torch.no_grad():
            table = trained.items.table().detach().float().clone()
        self.items = FixedItemVectors(table)
        encoder: Any = copy.deepcopy(model.encoder)
        self.encoder: SequenceEncoder = encoder.float()
        self.encoder.items = self.items
        self.head = ItemScores(self.items, ranker.n_items, float(trained.temperature))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.encode(ids))


def exportable(ranker: ItemRanker) -> str | None:
    """Why ``ranker`` cannot be exported, or ``None`` when it can."""
    if not isinstance(ranker, NeuralRanker):
        return f"a {ranker.kind} model has no network to export"
    if ranker.by_user:
        return (
            "it scores the users it was trained on (a learned vector per user), not a history, "
            "so there is no history encoder to export"
        )
    if not isinstance(ranker.model.encoder, SequenceEncoder):
        return "its encoder is not a sequence encoder"
    return None


def export_ranker(
    ranker: NeuralRanker,
    items: list[str],
    destination: str | Path,
    quantize: str = "none",
    held_out: HeldOutCases | None = None,
    about: dict[str, Any] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Export ``ranker`` (over the catalogue ``items``, in index order) into the folder
    ``destination`` (replacing an earlier export) and check it on ``held_out``; return what
    ``export.json`` records."""
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize '{quantize}'; expected one of {list(QUANTIZATIONS)}")
    why = exportable(ranker)
    if why is not None:
        raise ConfigError(f"this recommender cannot be exported to ONNX: {why}")
    require("onnx")
    require("onnxruntime")
    return build_export(
        destination,
        lambda folder: write_ranker(ranker, items, folder, quantize, about or {}),
        lambda folder, card: check_ranker(ranker, folder, card, held_out, note),
    )


def write_ranker(
    ranker: NeuralRanker, items: list[str], folder: Path, quantize: str, about: dict[str, Any]
) -> dict[str, Any]:
    """The ONNX files, the catalogue and the item vectors; what ``export.json`` records of
    them."""
    if len(items) != ranker.n_items:
        raise ConfigError(f"{len(items)} item ids for a model of {ranker.n_items} items")
    graph = RankingGraph(ranker).eval()
    encoder = graph.encoder
    # two histories of different lengths, so that the padding mask is part of the trace
    example = torch.zeros(2, min(3, encoder.max_history), dtype=torch.int64)
    example[0, :] = torch.arange(1, example.shape[1] + 1).clamp(max=ranker.n_items)
    example[1, -1] = 1
    fp32 = folder / FP32_FILE
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notices, as for classifiers
        torch.onnx.export(
            graph,
            (example,),
            str(fp32),
            input_names=["ids"],
            output_names=["scores"],
            dynamic_axes={"ids": {0: "batch", 1: "sequence"}, "scores": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    files = {FP32_FILE: file_record(fp32)}
    if quantize == "int8":
        write_int8(fp32, folder / INT8_FILE)
        files[INT8_FILE] = file_record(folder / INT8_FILE)
    atomic_write_text(folder / ITEMS_FILE, json.dumps(items, ensure_ascii=False))
    files[ITEMS_FILE] = file_record(folder / ITEMS_FILE)
    with (folder / ITEM_VECTORS_FILE).open("wb") as handle:
        np.save(handle, graph.items.table().numpy(), allow_pickle=False)
    files[ITEM_VECTORS_FILE] = file_record(folder / ITEM_VECTORS_FILE)
    return {
        "format": "onnx",
        **about,
        "reads": RANKER_READS,
        "inputs": {"ids": ["batch", "sequence"]},
        "outputs": {"kind": "item-scores", "names": ["scores"]},
        "ranking": {
            "n_items": ranker.n_items,
            "max_history": encoder.max_history,
            "scores": (
                f"cosine / {graph.head.temperature}" if graph.head.temperature > 0 else "dot"
            ),
            "explanation": ranker.explanation,
        },
        "pytorch_precision": ranker.model.precision,
        "onnx_precision": ["fp32", *(["int8"] if quantize == "int8" else [])],
        **({"quantization": INT8_METHOD} if quantize == "int8" else {}),
        "opset": OPSET,
        "versions": versions(),
        "files": files,
    }


def check_ranker(
    ranker: NeuralRanker,
    folder: Path,
    card: dict[str, Any],
    held_out: HeldOutCases | None,
    note: str | None,
) -> dict[str, Any]:
    """The export's agreement with PyTorch on ``held_out`` and the metrics of both."""
    if held_out is None or len(held_out.cases) == 0:
        return {"skipped": note or "no held-out cases were given"}
    cases = held_out.cases
    reference = pytorch_scores(ranker, cases)
    check: dict[str, Any] = {
        "data": held_out.describe,
        "examples": len(cases),
        "top": TOP,
        "goal_agreement": GOAL_AGREEMENT,
        "pytorch": {"metrics": ranking_metrics(reference, cases)},
    }
    for precision in card["onnx_precision"]:
        candidate = OnnxRanker(folder, precision=precision).scores(cases.histories)
        result = compare_rankings(reference, candidate, cases.histories)
        result["meets_goal"] = result["top10_agreement"] >= GOAL_AGREEMENT
        result["metrics"] = ranking_metrics(candidate, cases)
        check[precision] = result
    return check


def pytorch_scores(ranker: ItemRanker, cases: NextItemCases, batch_size: int = 512) -> np.ndarray:
    """The PyTorch ranker's scores of every case, as float32 (batched as the run scored)."""
    parts = [np.zeros((0, ranker.n_items + 1), dtype=np.float32)]
    for start in range(0, len(cases), batch_size):
        stop = start + batch_size
        scores = ranker.scores(list(cases.histories[start:stop]), cases.users[start:stop])
        parts.append(scores.float().numpy())
    return np.concatenate(parts)


def ranking_metrics(scores: np.ndarray, cases: NextItemCases) -> dict[str, float]:
    """Recall@10 and NDCG@10 of precomputed scores, ranked as the run ranks."""
    table = torch.from_numpy(scores)

    def scorer(histories: list[np.ndarray], rows: np.ndarray) -> torch.Tensor:
        return table[torch.from_numpy(np.asarray(rows, dtype=np.int64))]

    by_row = NextItemCases(np.arange(len(cases)), cases.histories, cases.targets)
    metrics = evaluate_ranking(scorer, by_row, ks=(TOP,))
    return {key: metrics[key] for key in (f"recall@{TOP}", f"ndcg@{TOP}")}


def top_lists(scores: np.ndarray, histories: list[np.ndarray], k: int = TOP) -> np.ndarray:
    """The ``k`` best items of each row, padding and history items removed, best first."""
    masked = scores.astype(np.float64).copy()
    masked[:, 0] = -np.inf
    for row, history in enumerate(histories):
        masked[row, np.asarray(history, dtype=np.int64)] = -np.inf
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def compare_rankings(
    reference: np.ndarray, candidate: np.ndarray, histories: list[np.ndarray]
) -> dict[str, Any]:
    """Share of cases whose top-10 set (and first item) is the same in both, and the largest
    score difference (padding column left out)."""
    ours, theirs = top_lists(reference, histories), top_lists(candidate, histories)
    same_sets = [set(a) == set(b) for a, b in zip(ours.tolist(), theirs.tolist())]
    return {
        "top10_agreement": float(np.mean(same_sets)),
        "top1_agreement": float(np.mean(ours[:, 0] == theirs[:, 0])),
        "max_score_difference": float(np.abs(candidate[:, 1:] - reference[:, 1:]).max()),
    }


def ranker_summary_lines(card: dict[str, Any]) -> list[str]:
    """The check in a few lines, for the CLI."""
    check = card.get("check", {})
    if "skipped" in check:
        return [f"warning: not checked on held-out data: {check['skipped']}"]
    lines = [f"checked on {check['data']}", f"  pytorch: {shown(check['pytorch']['metrics'])}"]
    for precision in card["onnx_precision"]:
        result = check[precision]
        size = card["files"][FP32_FILE if precision == "fp32" else INT8_FILE]["bytes"] / 2**20
        goal = "" if result["meets_goal"] else f" (below the {100 * GOAL_AGREEMENT:.1f} % goal)"
        lines.append(
            f"  onnx {precision} ({size:.1f} MiB): same top-{TOP} "
            f"{100 * result['top10_agreement']:.1f} %{goal}, same top-1 "
            f"{100 * result['top1_agreement']:.1f} %, max |Δscore| "
            f"{result['max_score_difference']:.2g}, {shown(result['metrics'])}"
        )
    return lines


def shown(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
