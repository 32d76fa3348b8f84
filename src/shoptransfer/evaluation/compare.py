"""The comparison users trust: transfer beside scratch, with noise, cost and the domain gap.

- **Negative transfer**: a transfer recipe whose mean macro-F1 is below the best scratch
  baseline's at the same target budget by more than the seed noise (the standard deviation of
  the difference of two means, ``sqrt(s_t^2/n_t + s_s^2/n_s)``; with one seed, any shortfall).
- **Time to target quality**: training seconds until a recipe's macro-F1 on a fixed sample of
  the target test set first reaches the best scratch baseline's final macro-F1 on that sample.
- **Domain gap** on frozen features: the proxy A-distance ``2 (1 - 2 err)`` of a linear domain
  classifier (Ben-David et al., NeurIPS 2007) and a Gaussian-kernel MMD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from shoptransfer.evaluation.report import Column, result_label, summarise


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """``2 (1 - 2 err)`` where ``err`` is a logistic domain classifier's held-out error."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([source, target])
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    order = np.random.default_rng(seed).permutation(len(y))
    half = len(y) // 2
    train, test = order[:half], order[half:]
    scaler = StandardScaler().fit(x[train])
    classifier = LogisticRegression(C=1.0, max_iter=2000)
    classifier.fit(scaler.transform(x[train]), y[train])
    error = 1.0 - classifier.score(scaler.transform(x[test]), y[test])
    return float(2.0 * (1.0 - 2.0 * error))


def gaussian_mmd(source: np.ndarray, target: np.ndarray) -> float:
    """Squared MMD with a Gaussian kernel whose bandwidth is the median pairwise distance."""
    import torch

    joint = torch.from_numpy(np.vstack([source, target]).astype(np.float32))
    distances = torch.cdist(joint, joint).pow(2)
    bandwidth = distances[distances > 0].median()
    kernel = torch.exp(-distances / bandwidth)
    n = len(source)
    value = kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()
    return float(value)


def domain_gap(
    source: np.ndarray, target: np.ndarray, limit: int = 1000, seed: int = 0
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    source = source[rng.permutation(len(source))[:limit]]
    target = target[rng.permutation(len(target))[:limit]]
    return {
        "proxy_a_distance": proxy_a_distance(source, target, seed),
        "mmd": gaussian_mmd(source, target),
        "examples_per_domain": min(len(source), len(target)),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def _first_reaching(curve: list[list[float]], level: float) -> float | None:
    for seconds, score in curve:
        if score >= level - 1e-12:
            return float(seconds)
    return None


def negative_transfer(
    candidate: dict[str, float], baseline: dict[str, float], higher_is_better: bool = True
) -> tuple[bool, float]:
    """The one negative-transfer rule, for every task.

    ``candidate`` and ``baseline`` are ``{"mean", "std", "seeds"}`` of the primary metric.
    Returns ``(verdict, difference)``: the difference is the candidate's advantage (positive is
    better, whatever the metric's direction); the verdict is true when the candidate is worse
    by more than the standard error of the difference of the two means
    (``sqrt(s_c^2/n_c + s_b^2/n_b)``), or worse at all when that noise is 0 (one seed each).
    """
    sign = 1.0 if higher_is_better else -1.0
    difference = sign * (candidate["mean"] - baseline["mean"])
    noise = math.sqrt(
        candidate["std"] ** 2 / max(1, candidate["seeds"])
        + baseline["std"] ** 2 / max(1, baseline["seeds"])
    )
    return (bool(difference < -noise) if noise > 0 else bool(difference < 0)), difference


def analyse(
    results: list[dict[str, Any]], primary: str = "macro_f1", higher_is_better: bool = True
) -> list[dict[str, Any]]:
    """One row per recipe entry (label) x budget: mean/std of every metric, cost, and the
    transfer verdicts against the best scratch baseline by the ``primary`` metric."""
    ok = [r for r in results if r.get("status") == "ok"]
    out = []
    for row in summarise(results):
        entry: dict[str, Any] = {
            "recipe": row["recipe"],
            "label": row["label"],
            "budget": row["budget"],
            "seeds": row["seeds"],
        }
        if not row["seeds"]:
            entry["skipped"] = row["skipped"]
            out.append(entry)
            continue
        cells = [
            r
            for r in ok
            if result_label(r) == row["label"] and str(r["budget"]) == str(row["budget"])
        ]
        entry["family"] = cells[0]["family"]
        for metric, values in row["metrics"].items():
            mean, std = _mean_std(values)
            entry[metric] = {"mean": mean, "std": std}
        for cost in ("train_seconds", "peak_rss_mb", "train_flops_estimate"):
            entry[cost] = float(np.mean([c.get(cost, 0.0) for c in cells]))
        entry["trainable_parameters"] = cells[0]["trainable_parameters"]
        spent = [c.get("fitted", {}).get("privacy") for c in cells]
        if any(spent):  # the largest ε any seed's model spent
            entry["epsilon"] = max(s["epsilon"] for s in spent if s)
        out.append(entry)
    sign = 1.0 if higher_is_better else -1.0
    for entry in out:
        if primary not in entry or entry.get("family") == "baseline":
            continue
        baselines = [
            e
            for e in out
            if e.get("family") == "baseline"
            and primary in e
            and str(e["budget"]) == str(entry["budget"])
        ]
        if not baselines:
            entry["negative_transfer"] = None
            continue
        best = max(baselines, key=lambda e: sign * e[primary]["mean"])
        verdict, difference = negative_transfer(
            {**entry[primary], "seeds": entry["seeds"]},
            {**best[primary], "seeds": best["seeds"]},
            higher_is_better,
        )
        entry["best_scratch"] = best["label"]
        entry["versus_scratch"] = difference
        entry["negative_transfer"] = verdict
        entry["time_to_scratch_quality"] = _time_to_quality(ok, entry, best)
    return out


def _time_to_quality(
    ok: list[dict[str, Any]], entry: dict[str, Any], best: dict[str, Any]
) -> dict[str, Any] | None:
    def curves(label: str) -> list[list[list[float]]]:
        return [
            c["quality_curve"]
            for c in ok
            if result_label(c) == label
            and str(c["budget"]) == str(entry["budget"])
            and c.get("quality_curve")
        ]

    scratch = curves(best["label"])
    mine = curves(entry["label"])
    if not scratch or not mine:
        return None
    level = float(np.mean([curve[-1][1] for curve in scratch]))
    times = [_first_reaching(curve, level) for curve in mine]
    reached = [t for t in times if t is not None]
    return {
        "level": level,
        "scratch_seconds": float(np.mean([curve[-1][0] for curve in scratch])),
        "seconds": float(np.mean(reached)) if reached else None,
        "reached": f"{len(reached)}/{len(times)}",
    }


def _mean_pm(entry: dict[str, Any], column: Column) -> str:
    if column.key not in entry:
        return "—"
    m = entry[column.key]
    mean = f"{m['mean'] * column.scale:.{column.digits}f}"
    if entry["seeds"] > 1:
        return f"{mean} ± {m['std'] * column.scale:.{column.digits}f}"
    return mean


def epsilon_text(entry: dict[str, Any]) -> str:
    """The differential-privacy ε a row's models spent, or ∞ (trained without privacy)."""
    return f"{entry['epsilon']:.2f}" if "epsilon" in entry else "∞"


def format_comparison(
    rows: list[dict[str, Any]],
    gap: dict[str, float] | None = None,
    columns: Sequence[Column] = (
        Column("macro_f1", "macro-F1 %"),
        Column("accuracy", "accuracy %"),
    ),
    budget_header: str = "labels",
) -> str:
    """The comparison as an aligned text table, the domain gap under it."""
    header = [
        "recipe",
        budget_header,
        *(c.header for c in columns),
        "train s",
        "peak MB",
        "params",
        "GFLOPs",
        "to scratch",
        "verdict",
    ]
    private = any("epsilon" in e for e in rows)
    if private:  # differential privacy: the ε each model spent (∞: trained without it)
        header.insert(2 + len(columns), "ε")
    lines = [header]
    for e in rows:
        if "skipped" in e:
            dashes = ["—"] * (len(header) - 3)
            lines.append([result_label(e), str(e["budget"]), *dashes, f"skipped: {e['skipped']}"])
            continue
        ttq = e.get("time_to_scratch_quality")
        reach = "—"
        if ttq:
            reach = f"{ttq['seconds']:.1f} s" if ttq["seconds"] is not None else "never"
            reach += f" ({ttq['reached']})"
        verdict = "scratch baseline" if e["family"] == "baseline" else ""
        if e.get("negative_transfer"):
            verdict = f"NEGATIVE TRANSFER vs {e['best_scratch']}"
        elif e.get("negative_transfer") is False:
            scale, digits = columns[0].scale, columns[0].digits
            verdict = f"{e['versus_scratch'] * scale:+.{digits}f} vs {e['best_scratch']}"
        lines.append(
            [
                result_label(e),
                str(e["budget"]),
                *(_mean_pm(e, c) for c in columns),
                *([epsilon_text(e)] if private else []),
                f"{e['train_seconds']:.1f}",
                f"{e['peak_rss_mb']:.0f}",
                f"{e['trainable_parameters']:,}",
                f"{e['train_flops_estimate'] / 1e9:.1f}",
                reach,
                verdict,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for n, line in enumerate(lines):
        text.append(
            "  ".join(
                c.ljust(widths[i]) if i in (0, len(header) - 1) else c.rjust(widths[i])
                for i, c in enumerate(line)
            ).rstrip()
        )
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    if gap:
        text.append("")
        text.append(
            f"domain gap on {gap.get('measured_on', 'frozen features')}: proxy A-distance "
            f"{gap['proxy_a_distance']:.2f} (0 = indistinguishable, 2 = separable), "
            f"MMD {gap['mmd']:.4f}"
        )
    return "\n".join(text)
