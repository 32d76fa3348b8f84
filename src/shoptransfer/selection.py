"""`shoptransfer select`: rank candidate backbones for a target before any training.

Each candidate backbone embeds (through the embedding cache) the labelled target examples of
the experiment, or, when the target has none, the labelled source; the transferability
estimators (:mod:`shoptransfer.evaluation.transferability`) score the frozen features, and the
backbones are ranked by their mean rank over the estimators. With sources, the domain gap
between each source and the target (proxy A-distance, MMD) is measured on each backbone's
features, and each backbone's sources are ordered by the gap (and, with target labels, by the
accuracy of a classifier trained on the source): :func:`rank`.

Whether transfer is likely to hurt is a heuristic, stated in :data:`HURT_RULES`: a
target-only TF-IDF k-nearest-neighbour baseline (texts) at least as accurate, leave-one-out, as
the best candidate's frozen features; or a proxy A-distance of at least :data:`LARGE_GAP`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from shoptransfer.backbones import EmbeddingCache, backbone_modality, make_encoder
from shoptransfer.backbones.features import default_backbone
from shoptransfer.data import read_domain
from shoptransfer.data.domain import Domain, shared_label_vocabulary
from shoptransfer.data.sampling import sample_fraction
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.compare import domain_gap
from shoptransfer.evaluation.transferability import (
    FEATURE_ESTIMATORS,
    knn_accuracy,
    leep,
    nce,
    score_features,
)
from shoptransfer.files import atomic_write_json, atomic_write_text
from shoptransfer.runs import check_folder, environment, run_folder
from shoptransfer.tasks.classification import draw_budget
from shoptransfer.tasks.held_out import hold_out_test

SELECTION_FILE = "selection.json"
# a proxy A-distance at or above this: a linear classifier tells the domains apart on at least
# 87.5 % of held-out examples
LARGE_GAP = 1.5
HURT_RULES = (
    "heuristic: transfer is flagged as likely to hurt when (pre-training) a target-only TF-IDF "
    "5-NN classifier is at least as accurate, leave-one-out on the labelled target examples, "
    "as 5-NN on the best candidate's frozen features; (source, with target labels) a logistic "
    "classifier trained on the source's frozen features is less accurate on the labelled target "
    "examples than 5-NN on those examples alone; (source, without target labels) the proxy "
    f"A-distance is at least {LARGE_GAP}"
)
SOURCE_SAMPLE = 2000  # source examples embedded to score on, at most
GAP_SAMPLE = 1000  # examples per domain the gap is measured on (domain_gap's own limit)
# estimators where a smaller value is better (the rest: larger is better)
SMALLER_IS_BETTER = {"proxy_a_distance", "mmd"}


def _sample(domain: Domain, limit: int, seed: int) -> Domain:
    if len(domain) <= limit:
        return domain
    return domain.subset(np.sort(np.random.default_rng(seed).permutation(len(domain))[:limit]))


def labelled_target(config: Any, target: Domain, budget: Any) -> Domain | None:
    """The labelled target examples the candidates are scored on: the budget's draw (seed: the
    experiment's first) from the target's pool, the test split held out as ``run`` holds it
    out; ``None`` when the target has no labels or the budget is 0."""
    if not target.labeled:
        return None
    pool, _ = hold_out_test(config, target, read_domain, sample_fraction)
    drawn = draw_budget(pool, budget, config.seeds[0])
    if drawn is not None and len(drawn.classes) < 2:
        raise DataError(
            f"{target.where}: the labelled target examples of budget {budget} hold one class "
            f"{drawn.classes}; expected at least two to score backbones on"
        )
    return drawn


def _check_candidates(candidates: list[str], holds: str) -> None:
    if holds not in ("texts", "images"):
        raise ConfigError(
            f"target holds {holds}; select ranks backbones, which read texts or images"
        )
    for name in candidates:
        reads = "images" if backbone_modality(name) == "image" else "texts"
        if reads != holds:
            raise ConfigError(
                f"candidates: backbone '{name}' reads {reads} but the target holds {holds}"
            )


def scratch_knn(domain: Domain) -> float | None:
    """Leave-one-out 5-NN accuracy of TF-IDF vectors of a text domain (None for images)."""
    if domain.holds != "texts":
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer(sublinear_tf=True, max_features=20000, dtype=np.float32)
    matrix = vectors.fit_transform(domain.inputs).toarray()
    return knn_accuracy(matrix, domain.labels)


def imagenet_probabilities(encoder: Any, paths: list[str], batch_size: int = 32) -> np.ndarray:
    """The image backbone's ImageNet class probabilities (1,000 columns) for ``paths``."""
    import torch

    from shoptransfer.data.pixels import pixel_batches

    starts = range(0, len(paths), batch_size)
    batches = [np.arange(s, min(s + batch_size, len(paths))) for s in starts]
    out = []
    for pixels in pixel_batches(encoder.inputs(paths), batches, augment=False):
        out.append(torch.softmax(encoder.imagenet_logits(pixels).float(), dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def source_classifier_accuracy(
    source_features: np.ndarray,
    source_labels: list[str],
    target_features: np.ndarray,
    target_labels: list[str],
) -> float:
    """Accuracy on labelled target examples of a logistic classifier trained on the source's
    frozen features alone: what the source's labels teach about the target."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(source_features)
    classifier = LogisticRegression(max_iter=2000).fit(
        scaler.transform(source_features), source_labels
    )
    return float(classifier.score(scaler.transform(target_features), target_labels))


def _parameters(encoder: Any) -> int | None:
    parameters = getattr(encoder, "parameters", None)
    return int(sum(p.numel() for p in parameters())) if callable(parameters) else None


def score_candidate(
    name: str,
    config: Any,
    scored: Domain,
    on: str,
    source: Domain | None,
    target: Domain,
    cache: EmbeddingCache,
    show_progress: bool,
) -> dict[str, Any]:
    """One backbone's scores on ``scored`` (labelled examples: the target's, or the source's
    when the target has none), its gap, its cost."""
    encoder = make_encoder(
        name, max_length=config.max_length, image_size=config.image_size, precision="auto"
    )
    misses, started = cache.misses, time.perf_counter()
    features = cache.encode(encoder, scored.inputs, show_progress=show_progress)
    seconds = time.perf_counter() - started
    scores = score_features(features, scored.labels)
    if hasattr(encoder, "imagenet_logits"):
        probabilities = imagenet_probabilities(encoder, list(scored.inputs))
        scores["nce"] = nce(probabilities, scored.labels)
        scores["leep"] = leep(probabilities, scored.labels)
    gap = None
    if source is not None:
        seed = config.seeds[0]
        source_part = _sample(source, GAP_SAMPLE, seed).inputs
        target_part = _sample(target, GAP_SAMPLE, seed).inputs
        started = time.perf_counter()
        source_features = cache.encode(encoder, source_part, show_progress=show_progress)
        target_features = cache.encode(encoder, target_part, show_progress=show_progress)
        seconds += time.perf_counter() - started
        gap = domain_gap(source_features, target_features, limit=GAP_SAMPLE, seed=seed)
        if on == "target" and source.labeled:
            gap["source_classifier_accuracy"] = source_classifier_accuracy(
                source_features, _sample(source, GAP_SAMPLE, seed).labels, features, scored.labels
            )
    return {
        "backbone": name,
        "scores": scores,
        "domain_gap": gap,
        "embedding_seconds": seconds,
        "examples_embedded": cache.misses - misses,
        "parameters": _parameters(encoder),
        "dimensions": int(features.shape[1]),
    }


def rank(candidates: list[dict[str, Any]], on: str) -> list[dict[str, Any]]:
    """The options in the order ``select`` recommends them (``position`` 1 is the pick).

    Backbones are ordered by the mean over their options of the mean rank over the estimators
    (``mean_rank``; 1 is best, ties share the better rank). The estimators score features
    against one set of labels — with target labels the same examples for every source — so they
    tell backbones apart, not sources: each backbone's sources are ordered by the votes that
    depend on the source (``source_rank``): the domain gap (proxy A-distance and MMD, smaller
    is better) and, ``on`` the target's labels, the accuracy on them of a classifier trained
    on the source. Measured on the Blitzer grids (benchmarks/results/selection.md), the
    estimators order sources at weighted τ near 0.1 and the A-distance at 0.80.
    """
    names = list(candidates[0]["scores"])
    for name in names:
        _rank_by(candidates, name, [c["scores"][name] for c in candidates], "ranks")
    for candidate in candidates:
        candidate["mean_rank"] = float(np.mean(list(candidate["ranks"].values())))
    backbone_rank = {
        backbone: float(np.mean([c["mean_rank"] for c in candidates if c["backbone"] == backbone]))
        for backbone in {c["backbone"] for c in candidates}
    }
    for backbone in backbone_rank:
        group = [c for c in candidates if c["backbone"] == backbone]
        for vote in SOURCE_VOTES[on]:
            if all(c.get("domain_gap") and vote in c["domain_gap"] for c in group):
                _rank_by(group, vote, [c["domain_gap"][vote] for c in group], "source_ranks")
        for candidate in group:
            votes = list(candidate.get("source_ranks", {}).values())
            candidate["source_rank"] = float(np.mean(votes)) if votes else 1.0
    ordered = sorted(
        candidates,
        key=lambda c: (
            backbone_rank[c["backbone"]],
            c["backbone"],
            c["source_rank"],
            c.get("source") or "",
        ),
    )
    for position, candidate in enumerate(ordered, start=1):
        candidate["position"] = position
    return ordered


# the votes that order one backbone's sources, by what the scores were computed on
SOURCE_VOTES = {
    "target": ("proxy_a_distance", "mmd", "source_classifier_accuracy"),
    "source": ("proxy_a_distance", "mmd"),
}


def _rank_by(candidates: list[dict[str, Any]], name: str, values: list[float], key: str) -> None:
    """Each candidate's rank (1 best; ties share the better rank) by ``values`` under ``key``."""
    sign = 1.0 if name in SMALLER_IS_BETTER else -1.0
    keyed = [sign * v for v in values]
    for candidate, value in zip(candidates, keyed):
        candidate.setdefault(key, {})[name] = 1 + sum(other < value for other in keyed)


def verdict(
    ranked: list[dict[str, Any]], scratch: float | None, on_target: bool
) -> tuple[bool | None, str]:
    """Whether transfer is likely to hurt, by :data:`HURT_RULES`, and the reasons in words
    (``None``: no rule could be applied)."""
    best = ranked[0]
    name = best["backbone"]
    gap = best["domain_gap"]
    source = best.get("source") or "the source"
    reasons, checked = [], False
    if on_target:
        transferred = best["scores"]["knn_accuracy"]
        if scratch is not None:
            checked = True
            if scratch >= transferred:
                reasons.append(
                    f"pre-trained features: target-only TF-IDF 5-NN accuracy {scratch:.3f} >= "
                    f"{transferred:.3f} on {name} features"
                )
        if gap is not None and "source_classifier_accuracy" in gap:
            checked = True
            from_source = gap["source_classifier_accuracy"]
            if from_source < transferred:
                reasons.append(
                    f"{source} as source: a classifier trained on it reaches {from_source:.3f} on "
                    f"the labelled target examples, below their own 5-NN {transferred:.3f} ({name})"
                )
    elif gap is not None:
        checked = True
        if gap["proxy_a_distance"] >= LARGE_GAP:
            reasons.append(
                f"{source} as source: proxy A-distance {gap['proxy_a_distance']:.2f} >= "
                f"{LARGE_GAP} on {name} features"
            )
    if reasons:
        return True, "transfer likely to hurt: " + "; ".join(reasons)
    if not checked:
        return None, "no rule applies (images without a source): no verdict on transfer"
    return False, "transfer not flagged: no rule fires"


def select(
    config: Any,
    budget: Any = None,
    cache: EmbeddingCache | None = None,
    show_progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Rank ``config.candidates`` (default: its backbone) for its target; write
    ``selection.json`` in a new run folder ``<output_dir>/<time>-<name>-select``; return the
    folder and what the file holds. ``budget``: the labelled target examples to score on
    (labels per class, a fraction or 'all'; default: the experiment's last budget)."""
    if config.task != "classification":
        raise ConfigError(
            f"task '{config.task}': select ranks backbones for classification experiments only"
        )
    check_folder(config.output_dir, "output_dir")
    if cache is None:
        root = Path(config.cache_dir) / "embeddings" if config.cache_dir else None
        cache = EmbeddingCache(root)
    budget = config.budgets[-1] if budget is None else budget
    target = read_domain(config.target)
    entries = ([config.source] if config.source is not None else []) + list(
        config.candidate_sources or []
    )
    sources = [read_domain(entry) for entry in entries]
    candidates = config.candidates or [config.backbone or default_backbone(target.holds)]
    _check_candidates(candidates, target.holds)
    labelled = labelled_target(config, target, budget)
    if labelled is not None:
        for source in sources:
            if source.labeled:
                shared_label_vocabulary(source, labelled)
    elif not sources or not all(source.labeled for source in sources):
        raise ConfigError(
            f"budget {budget}: select scores backbones on labelled target examples (a budget "
            "above 0) or, without them, on labelled sources; this experiment has neither"
        )
    on = "target" if labelled is not None else "source"
    results = []
    for source in sources or [None]:
        scored = (
            labelled if labelled is not None else _sample(source, SOURCE_SAMPLE, config.seeds[0])
        )
        for name in candidates:
            result = score_candidate(name, config, scored, on, source, target, cache, show_progress)
            results.append({"source": source.name if source is not None else None, **result})
    ranked = rank(results, on)
    scored = labelled if labelled is not None else None
    scratch = scratch_knn(scored) if scored is not None else None
    hurts, why = verdict(ranked, scratch, on == "target")
    report = {
        "name": config.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scored_on": on,
        "budget": budget if on == "target" else None,
        "examples": len(scored)
        if scored is not None
        else sum(min(len(source), SOURCE_SAMPLE) for source in sources),
        "classes": (scored or sources[0]).class_counts(),
        "estimators": [*FEATURE_ESTIMATORS, "nce", "leep"],
        "candidates": ranked,
        "pick": {"backbone": ranked[0]["backbone"], "source": ranked[0]["source"]},
        "scratch_knn_accuracy": scratch,
        "transfer_likely_to_hurt": hurts,
        "why": why,
        "rule": HURT_RULES,
        "config": config.model_dump(mode="json"),
        **environment(),
    }
    with run_folder(config.output_dir, f"{config.name}-select", lambda: 0) as folder:
        atomic_write_text(folder / "config.yaml", yaml.safe_dump(report["config"], sort_keys=False))
        atomic_write_json(folder / SELECTION_FILE, report)
    return folder, report


def format_selection(report: dict[str, Any]) -> str:
    """The ranked table of a selection, the cost of each option and the verdict."""
    scores = [n for n in report["estimators"] if n in report["candidates"][0]["scores"]]
    gap = report["candidates"][0]["domain_gap"] is not None
    with_source = any(c.get("source") for c in report["candidates"])
    header = ["rank", *(["source"] if with_source else []), "backbone", "mean rank"]
    header += [*(["source rank"] if with_source else []), *scores]
    if gap:
        header += ["A-dist", "MMD"]
    from_source = gap and "source_classifier_accuracy" in report["candidates"][0]["domain_gap"]
    if from_source:
        header.append("source clf")
    header += ["embed s", "embedded", "parameters"]
    rows = []
    for place, c in enumerate(report["candidates"], start=1):
        row = [str(place), *([c["source"] or "-"] if with_source else [])]
        row += [c["backbone"], f"{c['mean_rank']:.1f}"]
        row += [f"{c['source_rank']:.1f}"] if with_source else []
        row += [f"{c['scores'][n]:.3f}" for n in scores]
        if gap:
            row += [f"{c['domain_gap']['proxy_a_distance']:.2f}", f"{c['domain_gap']['mmd']:.3f}"]
        if from_source:
            row.append(f"{c['domain_gap']['source_classifier_accuracy']:.3f}")
        row += [
            f"{c['embedding_seconds']:.1f}",
            str(c["examples_embedded"]),
            f"{c['parameters'] / 1e6:.1f}M" if c["parameters"] else "-",
        ]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [header, *rows]]
    where = (
        f"{report['examples']} labelled target examples (budget {report['budget']})"
        if report["scored_on"] == "target"
        else f"{report['examples']} labelled source examples (no target labels)"
    )
    lines.insert(0, f"scored on {where}; higher is better, A-distance and MMD lower")
    if with_source:
        lines.insert(
            1,
            "mean rank (over the estimators) orders the backbones; source rank (over the gap"
            + (" and the source classifier" if report["scored_on"] == "target" else "")
            + ") orders each backbone's sources",
        )
    if from_source:
        lines.append(
            "source clf: accuracy on the labelled target examples of a logistic classifier "
            "trained on the source's frozen features"
        )
    lines.append(
        "embed s: seconds spent embedding in this call; embedded: examples not yet in the "
        "embedding cache (cached ones cost nothing)"
    )
    if report["scratch_knn_accuracy"] is not None:
        lines.append(f"target-only TF-IDF 5-NN accuracy: {report['scratch_knn_accuracy']:.3f}")
    pick = report["pick"]
    lines.append(
        f"pick: {pick['backbone']}" + (f", from {pick['source']}" if pick["source"] else "")
    )
    lines.append(report["why"])
    lines.append(f"({report['rule']})")
    return "\n".join(lines)
