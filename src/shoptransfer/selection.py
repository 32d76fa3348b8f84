"""`shoptransfer select`: rank candidate backbones for a target before any training.

Each candidate backbone embeds (through the embedding cache) the labelled target examples of
the experiment, or, when the target has none, the labelled source; the transferability
estimators (:mod:`shoptransfer.evaluation.transferability`) score the frozen features, and the
backbones are ranked by their mean rank over the estimators. With sources, the domain gap
between each source and the target (proxy A-distance, MMD) is measured on each backbone's
features, and each backbone's sources are ordered by the gap (and, with target labels, by the
accuracy of a classifier trained on the source): :func:`rank`.

Whether transfer is likely to hurt is a heuristic, stated in :data:`HURT_RULES`: with target
labels, cross-validated accuracy of a target-only TF-IDF classifier against a classifier on the
pick's frozen features trained on the source plus the other folds — the comparison ``compare``
makes after training (transfer against the scratch baseline), made on the labelled examples
alone; without target labels, a proxy A-distance of at least :data:`LARGE_GAP`.
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
from shoptransfer.data.sampling import sample_at_most, sample_fraction
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.compare import domain_gap
from shoptransfer.evaluation.transferability import (
    FEATURE_ESTIMATORS,
    leep,
    nce,
    rank_positions,
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
    "heuristic: with labelled target examples, stratified cross-validation on them compares a "
    "target-only TF-IDF logistic classifier (texts) with a logistic classifier on the "
    "candidate's frozen features — trained on the target folds alone (pre-training) and on the "
    "source plus the target folds (transfer from the source); transfer is flagged as likely to "
    "hurt when the TF-IDF classifier is more accurate than the transfer (or, without a source, "
    "the frozen features) by more than the noise: the standard error of the paired difference "
    "over the examples, as compare allows the seed noise. Without target labels it is flagged "
    "when the proxy "
    f"A-distance between source and target is at least {LARGE_GAP}"
)
SOURCE_SAMPLE = 2000  # source examples embedded to score on, at most
GAP_SAMPLE = 1000  # examples per domain the gap is measured on (domain_gap's own limit)
# estimators where a smaller value is better (the rest: larger is better)
SMALLER_IS_BETTER = {"proxy_a_distance", "mmd"}


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


CV_FOLDS = 5  # at most; never more than the rarest class has examples


def _folds(labels: Any) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Stratified folds (seed 0) of ``labels``; ``None`` when a class has one example."""
    from sklearn.model_selection import StratifiedKFold

    _, counts = np.unique(np.asarray(labels), return_counts=True)
    k = min(CV_FOLDS, int(counts.min()))
    if k < 2 or len(counts) < 2:
        return None
    return list(
        StratifiedKFold(k, shuffle=True, random_state=0).split(np.zeros(len(labels)), labels)
    )


def scratch_cv_correct(domain: Domain) -> np.ndarray | None:
    """Whether each labelled target text is classified right, in cross-validation, by a TF-IDF
    logistic classifier trained on the other folds (None for images, or when a class has one
    example)."""
    if domain.holds != "texts":
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    folds = _folds(domain.labels)
    if folds is None:
        return None
    texts, labels = np.asarray(domain.inputs, dtype=object), np.asarray(domain.labels)
    correct = np.zeros(len(labels), dtype=bool)
    for fit_rows, held_rows in folds:
        vectors = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), dtype=np.float32)
        x = vectors.fit_transform(texts[fit_rows])
        classifier = LogisticRegression(C=10.0, max_iter=2000).fit(x, labels[fit_rows])
        correct[held_rows] = (
            classifier.predict(vectors.transform(texts[held_rows])) == labels[held_rows]
        )
    return correct


def probe_cv_correct(
    target_features: np.ndarray,
    target_labels: Any,
    source_features: np.ndarray | None = None,
    source_labels: Any = None,
) -> np.ndarray | None:
    """Whether each labelled target example is classified right, in cross-validation (the folds
    of :func:`scratch_cv_correct`), by a logistic classifier on frozen features trained on the
    other folds — with the source's examples too when given (source and target folds weighted
    to equal totals, as ``frozen-features`` weighs them)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    folds = _folds(target_labels)
    if folds is None:
        return None
    labels = np.asarray(target_labels)
    correct = np.zeros(len(labels), dtype=bool)
    for fit_rows, held_rows in folds:
        x, y = target_features[fit_rows], labels[fit_rows]
        weights = np.ones(len(y))
        if source_features is not None:
            x = np.vstack([source_features, x])
            y = np.concatenate([np.asarray(source_labels), y])
            weights = np.concatenate(
                [
                    np.ones(len(source_features)),
                    np.full(len(fit_rows), len(source_features) / len(fit_rows)),
                ]
            )
        scaler = StandardScaler().fit(x)
        classifier = LogisticRegression(C=0.1, max_iter=2000)
        classifier.fit(scaler.transform(x), y, sample_weight=weights)
        predicted = classifier.predict(scaler.transform(target_features[held_rows]))
        correct[held_rows] = predicted == labels[held_rows]
    return correct


def against_scratch(
    correct: np.ndarray | None, scratch: np.ndarray | None, prefix: str
) -> dict[str, float]:
    """``{prefix}_accuracy`` of a cross-validated classifier, and with the TF-IDF classifier's
    results on the same examples ``{prefix}_noise``: the standard error of the paired
    difference in accuracy (the noise the negative-transfer rule allows for)."""
    if correct is None:
        return {}
    out = {f"{prefix}_accuracy": float(correct.mean())}
    if scratch is not None:
        difference = scratch.astype(float) - correct.astype(float)
        out[f"{prefix}_noise"] = float(difference.std(ddof=1) / np.sqrt(len(difference)))
    return out


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
    scratch: np.ndarray | None = None,
) -> dict[str, Any]:
    """One backbone's scores on ``scored`` (labelled examples: the target's, or the source's
    when the target has none), its gap, its cost; ``scratch``: the TF-IDF classifier's
    cross-validated results on the target examples, to compare with."""
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
        source_sample = sample_at_most(source, GAP_SAMPLE, seed)
        source_part = source_sample.inputs
        target_part = sample_at_most(target, GAP_SAMPLE, seed).inputs
        started = time.perf_counter()
        source_features = cache.encode(encoder, source_part, show_progress=show_progress)
        target_features = cache.encode(encoder, target_part, show_progress=show_progress)
        seconds += time.perf_counter() - started
        gap = domain_gap(source_features, target_features, limit=GAP_SAMPLE, seed=seed)
        if on == "target" and source.labeled:
            source_labels = source_sample.labels
            gap["source_classifier_accuracy"] = source_classifier_accuracy(
                source_features, source_labels, features, scored.labels
            )
            transfer = probe_cv_correct(features, scored.labels, source_features, source_labels)
            gap.update(against_scratch(transfer, scratch, "transfer_cv"))
    return {
        "backbone": name,
        "scores": scores,
        **(
            against_scratch(probe_cv_correct(features, scored.labels), scratch, "target_probe_cv")
            if on == "target"
            else {}
        ),
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
    positions = rank_positions(values, smaller_is_better=name in SMALLER_IS_BETTER)
    for candidate, position in zip(candidates, positions):
        candidate.setdefault(key, {})[name] = position


def verdict(
    ranked: list[dict[str, Any]], scratch: float | None, on_target: bool
) -> tuple[bool | None, str]:
    """Whether transfer from the pick (``ranked[0]``) is likely to hurt, by :data:`HURT_RULES`,
    and the reasons in words (``None``: no rule could be applied). ``scratch``: the
    cross-validated accuracy of the target-only TF-IDF classifier."""
    best = ranked[0]
    name = best["backbone"]
    gap = best["domain_gap"]
    source = best.get("source") or "the source"
    if on_target:
        found = gap if gap is not None and "transfer_cv_accuracy" in gap else None
        prefix, what = "transfer_cv", f"{source} + target labels on {name} features"
        if found is None:  # no source: the pre-training alone transfers
            found, prefix = best, "target_probe_cv"
            what = f"{name} features of the target labels"
        transfer = found.get(f"{prefix}_accuracy")
        if scratch is None or transfer is None:
            return None, "no rule applies (no TF-IDF baseline for images): no verdict on transfer"
        noise = found.get(f"{prefix}_noise", 0.0)
        ahead = scratch - transfer
        if ahead > noise:
            return True, (
                f"transfer likely to hurt: target-only TF-IDF reaches {scratch:.3f} in "
                f"cross-validation on the labelled target examples, {ahead:.3f} above the "
                f"{transfer:.3f} of {what} (noise {noise:.3f})"
            )
        return False, (
            f"transfer not flagged: {what} {transfer:.3f} against target-only TF-IDF "
            f"{scratch:.3f} in cross-validation (noise {noise:.3f})"
        )
    if gap is None:
        return None, "no rule applies (no target labels and no source): no verdict on transfer"
    if gap["proxy_a_distance"] >= LARGE_GAP:
        return True, (
            f"transfer likely to hurt: {source} as source: proxy A-distance "
            f"{gap['proxy_a_distance']:.2f} >= {LARGE_GAP} on {name} features"
        )
    return False, f"transfer not flagged: proxy A-distance {gap['proxy_a_distance']:.2f}"


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
    scratch = scratch_cv_correct(labelled) if labelled is not None else None
    results = []
    for source in sources or [None]:
        scored = (
            labelled
            if labelled is not None
            else sample_at_most(source, SOURCE_SAMPLE, config.seeds[0])
        )
        for name in candidates:
            result = score_candidate(
                name, config, scored, on, source, target, cache, show_progress, scratch
            )
            results.append({"source": source.name if source is not None else None, **result})
    ranked = rank(results, on)
    scored = labelled if labelled is not None else None
    scratch_accuracy = float(scratch.mean()) if scratch is not None else None
    hurts, why = verdict(ranked, scratch_accuracy, on == "target")
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
        "scratch_cv_accuracy": scratch_accuracy,
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
        header += ["source clf", "transfer cv"]
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
            transfer = c["domain_gap"].get("transfer_cv_accuracy")
            row.append("-" if transfer is None else f"{transfer:.3f}")
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
            "trained on the source's frozen features; transfer cv: cross-validated accuracy on "
            "them of one trained on the source plus the other folds"
        )
    lines.append(
        "embed s: seconds spent embedding in this call; embedded: examples not yet in the "
        "embedding cache (cached ones cost nothing)"
    )
    if report["scratch_cv_accuracy"] is not None:
        lines.append(
            "target-only TF-IDF accuracy in cross-validation on the labelled target examples: "
            f"{report['scratch_cv_accuracy']:.3f}"
        )
    pick = report["pick"]
    lines.append(
        f"pick: {pick['backbone']}" + (f", from {pick['source']}" if pick["source"] else "")
    )
    lines.append(report["why"])
    lines.append(f"({report['rule']})")
    return "\n".join(lines)
