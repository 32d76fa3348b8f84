"""One self-contained HTML file with the figures of one or more runs, side by side.

Everything a run's ``results.json`` holds is drawn with matplotlib and inlined as PNG (no
network, no scripts): the primary metric against the target budget (mean ± std over seeds,
scratch baselines dashed), cost against quality (train seconds, peak memory, FLOPs), time to
reach the best scratch baseline's quality, the negative-transfer verdicts, confusion matrices,
the domain gap, and for recommendation the metrics at every K and on cold-start items. Each
figure's caption states the numbers it shows. The page reflows to one column on a phone.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoptransfer.evaluation.compare import analyse, epsilon_text
from shoptransfer.evaluation.report import Column, budget_order, result_label

REPORT_FILE = "report.html"
PROJECTION_NOTE = (
    "No 2-D projection of source and target features: a run keeps the gap's numbers, not the "
    "features themselves."
)


@dataclass(frozen=True)
class ReportRun:
    """One run to show: its ``results.json`` content, the task's metric columns (the first
    the primary metric's, when it has one) and what its budgets count."""

    title: str
    results: dict[str, Any]
    columns: Sequence[Column] = ()
    budget_header: str = "budget"
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A rendered figure: PNG bytes and the caption stating its numbers."""

    name: str
    png: bytes
    caption: str


def _primary_column(run: ReportRun) -> Column:
    primary = run.results.get("primary_metric", "macro_f1")
    for column in run.columns:
        if column.key == primary:
            return column
    return Column(primary, primary, 1.0, 4)


def _number(value: float, column: Column) -> str:
    return f"{value * column.scale:.{column.digits}f}"


def _mean_std(entry: dict[str, Any], column: Column) -> str:
    value = entry[column.key]
    shown = _number(value["mean"], column)
    if entry["seeds"] > 1:
        shown += f" ± {_number(value['std'], column)}"
    return shown


def comparison_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's comparison (``compare`` writes it; for a plain ``run`` it is computed here
    by the same rule)."""
    rows = results.get("comparison")
    if isinstance(rows, list):
        return rows
    return analyse(
        results.get("results", []),
        results.get("primary_metric", "macro_f1"),
        results.get("higher_is_better", True),
    )


def _render(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _new_figure(width: float = 6.4, height: float = 3.8) -> Any:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def _is_baseline(entry: dict[str, Any]) -> bool:
    return entry.get("family") == "baseline"


def _budget_figure(run: ReportRun, rows: list[dict[str, Any]]) -> Figure | None:
    column = _primary_column(run)
    scored = [r for r in rows if column.key in r]
    if not scored:
        return None
    budgets = sorted({str(r["budget"]) for r in scored}, key=lambda b: budget_order(_budget(b)))
    labels = list(dict.fromkeys(result_label(r) for r in scored))
    figure = _new_figure()
    axes = figure.add_subplot()
    parts = []
    if len(budgets) == 1:  # one budget: a dot per recipe entry with its spread
        for n, label in enumerate(labels):
            entry = next(r for r in scored if result_label(r) == label)
            mean, std = entry[column.key]["mean"], entry[column.key]["std"]
            axes.errorbar(
                mean * column.scale,
                n,
                xerr=std * column.scale,
                fmt="s" if _is_baseline(entry) else "o",
                capsize=4,
                color=f"C{n % 10}",
            )
            parts.append(f"{label} {_mean_std(entry, column)}")
        axes.set_yticks(range(len(labels)), labels)
        axes.invert_yaxis()
        axes.set_xlabel(column.header)
        axes.set_title(f"{column.header} at {run.budget_header} {budgets[0]}")
        axes.grid(axis="x", alpha=0.3)
    else:
        for n, label in enumerate(labels):
            mine = [r for r in scored if result_label(r) == label]
            xs = [budgets.index(str(r["budget"])) for r in mine]
            means = np.array([r[column.key]["mean"] for r in mine]) * column.scale
            stds = np.array([r[column.key]["std"] for r in mine]) * column.scale
            baseline = _is_baseline(mine[0])
            axes.errorbar(
                xs,
                means,
                yerr=stds,
                label=f"{label} (baseline)" if baseline and "scratch" not in label else label,
                linestyle="--" if baseline else "-",
                marker="s" if baseline else "o",
                capsize=3,
                color=f"C{n % 10}",
            )
            points = ", ".join(f"{r['budget']}: {_mean_std(r, column)}" for r in mine)
            parts.append(f"{label} ({points})")
        axes.set_xticks(range(len(budgets)), budgets)
        axes.set_xlabel(run.budget_header)
        axes.set_ylabel(column.header)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    seeds = max(r["seeds"] for r in scored)
    spread = "mean ± std over seeds" if seeds > 1 else "one seed"
    caption = (
        f"{column.header} against {run.budget_header} ({spread}; scratch baselines dashed "
        f"or square): " + "; ".join(parts) + "."
    )
    return Figure("budget", _render(figure), caption)


def _budget(text: str) -> int | float | str:
    if text == "all":
        return text
    return float(text) if "." in text else int(text)


def _cost_figure(run: ReportRun, rows: list[dict[str, Any]]) -> Figure | None:
    column = _primary_column(run)
    scored = [r for r in rows if column.key in r and "train_seconds" in r]
    if not scored:
        return None
    costs = [
        ("train_seconds", "train seconds", 1.0, True),
        ("peak_rss_mb", "peak memory (MB)", 1.0, False),
        ("train_flops_estimate", "train GFLOPs (estimate)", 1e-9, True),
    ]
    costs = [c for c in costs if any(r.get(c[0]) for r in scored)]
    figure = _new_figure(max(6.4, 3.2 * len(costs)), 3.4)
    labels = list(dict.fromkeys(result_label(r) for r in scored))
    all_axes = figure.subplots(1, len(costs), sharey=True, squeeze=False)[0]
    for axes, (key, header, scale, log) in zip(all_axes, costs):
        for n, label in enumerate(labels):
            mine = [r for r in scored if result_label(r) == label]
            xs = [r.get(key, 0.0) * scale for r in mine]
            ys = [r[column.key]["mean"] * column.scale for r in mine]
            axes.scatter(
                xs,
                ys,
                label=label,
                marker="s" if _is_baseline(mine[0]) else "o",
                color=f"C{n % 10}",
            )
            for x, y, r in zip(xs, ys, mine):  # each point's budget beside it
                axes.annotate(
                    str(r["budget"]),
                    (x, y),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                )
        values = [r.get(key) or 0 for r in scored]
        if log and min(values) > 0 and max(values) / min(values) > 30:
            from matplotlib.ticker import NullFormatter

            axes.set_xscale("log")
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(header)
        axes.grid(alpha=0.3)
    all_axes[0].set_ylabel(column.header)
    all_axes[0].legend(fontsize="x-small")
    units = {
        "train_seconds": lambda v: f"{v:.1f} s",
        "peak_rss_mb": lambda v: f"{v:.0f} MB",
        "train_flops_estimate": lambda v: f"{v / 1e9:.1f} GFLOPs",
    }
    parts = [
        f"{result_label(r)} at {r['budget']}: {_number(r[column.key]['mean'], column)}, "
        + ", ".join(units[key](r.get(key, 0.0)) for key, *_ in costs)
        for r in scored
    ]
    caption = (
        f"Cost against quality (means over seeds; {column.header} against "
        f"{', '.join(c[1] for c in costs)}): " + "; ".join(parts) + "."
    )
    return Figure("cost", _render(figure), caption)


def _time_figure(run: ReportRun, rows: list[dict[str, Any]]) -> Figure | str:
    timed = [r for r in rows if r.get("time_to_scratch_quality")]
    if not timed:
        return (
            "Time to reach scratch quality: not recorded (it needs the quality curves that "
            "`shoptransfer compare` records, and a scratch baseline at the same budget)."
        )
    names = [f"{result_label(r)} @ {r['budget']}" for r in timed]
    figure = _new_figure(6.4, 0.5 * len(timed) + 1.4)
    axes = figure.add_subplot()
    parts = []
    for n, (name, entry) in enumerate(zip(names, timed)):
        ttq = entry["time_to_scratch_quality"]
        reached = ttq["seconds"]
        axes.barh(n, reached if reached is not None else 0.0, color="C0" if reached else "C3")
        axes.plot(ttq["scratch_seconds"], n, "k|", markersize=14)
        if reached is None:
            axes.text(0, n, " never", va="center", color="C3")
            parts.append(
                f"{name}: never reached {entry['best_scratch']}'s level {ttq['level']:.3f} "
                f"(scratch trained {ttq['scratch_seconds']:.1f} s)"
            )
        else:
            parts.append(
                f"{name}: {reached:.1f} s to {entry['best_scratch']}'s level {ttq['level']:.3f} "
                f"(seeds reaching it {ttq['reached']}; scratch trained "
                f"{ttq['scratch_seconds']:.1f} s)"
            )
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel("training seconds until the best scratch baseline's final quality")
    axes.grid(axis="x", alpha=0.3)
    caption = (
        "Time to reach scratch quality (bars; the tick marks the scratch baseline's own "
        "training time): " + "; ".join(parts) + "."
    )
    return Figure("time", _render(figure), caption)


def _verdict_figure(run: ReportRun, rows: list[dict[str, Any]]) -> Figure | str:
    column = _primary_column(run)
    judged = [r for r in rows if r.get("negative_transfer") is not None]
    if not judged:
        return (
            "Negative transfer: no verdicts (the run has no scratch baseline beside a transfer "
            "recipe at the same budget)."
        )
    names = [f"{result_label(r)} @ {r['budget']}" for r in judged]
    values = [r["versus_scratch"] * column.scale for r in judged]
    figure = _new_figure(6.4, 0.45 * len(judged) + 1.4)
    axes = figure.add_subplot()
    colors = ["C3" if r["negative_transfer"] else "C2" for r in judged]
    axes.barh(range(len(judged)), values, color=colors)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel(f"{column.header} minus the best baseline's (positive: better)")
    axes.grid(axis="x", alpha=0.3)
    parts = [
        f"{name}: {value:+.{column.digits}f} vs {r['best_scratch']}"
        + (" — NEGATIVE TRANSFER" if r["negative_transfer"] else "")
        for name, value, r in zip(names, values, judged)
    ]
    negative = sum(bool(r["negative_transfer"]) for r in judged)
    caption = (
        f"Transfer against the best scratch baseline at each budget ({negative} of "
        f"{len(judged)} negative: worse by more than the seed noise; red bars): "
        + "; ".join(parts)
        + "."
    )
    return Figure("verdicts", _render(figure), caption)


def _confusion_figure(run: ReportRun) -> Figure | None:
    cells = [
        r
        for r in run.results.get("results", [])
        if r.get("status") == "ok"
        and isinstance(r.get("metrics", {}).get("confusion_matrix"), list)
    ]
    if not cells:
        return None
    largest = max((str(r["budget"]) for r in cells), key=lambda b: budget_order(_budget(b)))
    at_budget = [r for r in cells if str(r["budget"]) == largest]
    matrices: dict[str, np.ndarray] = {}
    for record in at_budget:  # summed over seeds
        matrix = np.asarray(record["metrics"]["confusion_matrix"], dtype=np.int64)
        label = result_label(record)
        matrices[label] = matrices[label] + matrix if label in matrices else matrix
    shown = list(matrices.items())[:6]
    classes = [str(c) for c in run.results.get("classes") or []]
    per_row = min(3, len(shown))
    rows = -(-len(shown) // per_row)
    figure = _new_figure(3.2 * per_row, 3.2 * rows)
    grid = figure.subplots(rows, per_row, squeeze=False)
    parts = []
    for axes, (label, matrix) in zip(grid.flat, shown):
        axes.imshow(matrix, cmap="Blues")
        n = len(matrix)
        ticks = classes if len(classes) == n and n <= 12 else [str(i) for i in range(n)]
        axes.set_xticks(range(n), ticks, rotation=90, fontsize="x-small")
        axes.set_yticks(range(n), ticks, fontsize="x-small")
        if n <= 10:
            for i in range(n):
                for j in range(n):
                    dark = matrix[i, j] > matrix.max() / 2
                    axes.text(
                        j,
                        i,
                        str(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
        axes.set_title(label, fontsize="small")
        axes.set_xlabel("predicted", fontsize="small")
        axes.set_ylabel("true", fontsize="small")
        total = int(matrix.sum())
        accuracy = float(np.trace(matrix) / total) if total else 0.0
        off = matrix.copy()
        np.fill_diagonal(off, 0)
        worst = np.unravel_index(int(off.argmax()), off.shape)
        names = ticks if len(ticks) == n else [str(i) for i in range(n)]
        confused = (
            f", most confused: true {names[worst[0]]} predicted {names[worst[1]]} "
            f"({off[worst]} times)"
            if off.max() > 0
            else ""
        )
        parts.append(f"{label}: {total} test predictions, accuracy {accuracy:.3f}{confused}")
    for axes in list(grid.flat)[len(shown) :]:
        axes.set_visible(False)
    left_out = len(matrices) - len(shown)
    caption = (
        f"Confusion matrices at {run.budget_header} {largest}, summed over seeds (rows: true "
        "class, columns: predicted): "
        + "; ".join(parts)
        + (f"; {left_out} more recipe entries not drawn" if left_out else "")
        + "."
    )
    return Figure("confusion", _render(figure), caption)


_AT_K = re.compile(r"^(recall|ndcg)@(\d+)$")


def _ranking_figure(run: ReportRun, rows: list[dict[str, Any]]) -> Figure | None:
    scored = [r for r in rows if any(_AT_K.match(k) for k in r)]
    if not scored:
        return None
    largest = max((str(r["budget"]) for r in scored), key=lambda b: budget_order(_budget(b)))
    at_budget = [r for r in scored if str(r["budget"]) == largest]
    figure = _new_figure(7.0, 3.4)
    both = figure.subplots(1, 2, squeeze=False)[0]
    parts = []
    for axes, metric, header in zip(both, ("recall", "ndcg"), ("Recall@K", "NDCG@K")):
        for n, entry in enumerate(at_budget):
            ks = sorted(int(m.group(2)) for k in entry if (m := _AT_K.match(k)) and m[1] == metric)
            if not ks:
                continue
            means = [entry[f"{metric}@{k}"]["mean"] for k in ks]
            stds = [entry[f"{metric}@{k}"]["std"] for k in ks]
            axes.errorbar(
                ks,
                means,
                yerr=stds,
                marker="s" if _is_baseline(entry) else "o",
                linestyle="--" if _is_baseline(entry) else "-",
                label=result_label(entry),
                capsize=3,
                color=f"C{n % 10}",
            )
            values = ", ".join(f"@{k} {v:.4f}" for k, v in zip(ks, means))
            parts.append(f"{result_label(entry)} {header.removesuffix('@K')} {values}")
        from matplotlib.ticker import NullFormatter

        axes.set_xscale("log")
        ks = sorted({int(m[2]) for e in at_budget for k in e if (m := _AT_K.match(k))})
        axes.set_xticks(ks, [str(k) for k in ks])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("K")
        axes.set_title(header, fontsize="small")
        axes.grid(alpha=0.3)
    both[0].legend(fontsize="x-small")
    caption = (
        f"Recall@K and NDCG@K at {run.budget_header} {largest} (test split; mean over seeds; "
        "scratch baselines dashed): " + "; ".join(parts) + "."
    )
    return Figure("ranking", _render(figure), caption)


def _cold_start(run: ReportRun) -> tuple[Figure | None, list[list[str]]]:
    column = _primary_column(run)
    cells = [
        r
        for r in run.results.get("results", [])
        if r.get("status") == "ok" and isinstance(r.get("cold_start"), dict)
    ]
    if not cells:
        return None, []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in cells:
        groups[(result_label(record), str(record["budget"]))].append(record)
    names, overall, cold, table = [], [], [], []
    for (label, budget), records in groups.items():
        values = [r["cold_start"]["metrics"].get(column.key) for r in records]
        values = [v for v in values if isinstance(v, int | float)]
        whole = float(np.mean([r["metrics"][column.key] for r in records]))
        cases = int(np.mean([r["cold_start"]["cases"] for r in records]))
        mean_cold = float(np.mean(values)) if values else None
        names.append(f"{label} @ {budget}")
        overall.append(whole * column.scale)
        cold.append((mean_cold or 0.0) * column.scale)
        table.append(
            [
                label,
                budget,
                str(cases),
                _number(whole, column),
                _number(mean_cold, column) if mean_cold is not None else "— (no cold cases)",
            ]
        )
    figure = _new_figure(6.4, 0.5 * len(names) + 1.5)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    axes.barh(positions - 0.2, overall, height=0.4, label="all test cases", color="C0")
    axes.barh(positions + 0.2, cold, height=0.4, label="cold-start items", color="C1")
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel(column.header)
    axes.legend(fontsize="small")
    axes.grid(axis="x", alpha=0.3)
    parts = [f"{r[0]} @ {r[1]}: all {r[3]}, cold-start {r[4]} ({r[2]} cases)" for r in table]
    caption = (
        f"{column.header} on every test case and on the cold-start cases (items no training "
        "history holds), mean over seeds: " + "; ".join(parts) + "."
    )
    return Figure("cold-start", _render(figure), caption), table


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _summary_table(run: ReportRun, rows: list[dict[str, Any]]) -> str:
    column = _primary_column(run)
    lines = []
    for entry in rows:
        if "skipped" in entry:
            lines.append([result_label(entry), str(entry["budget"]), *["—"] * 4, "skipped", "—"])
            continue
        verdict = "scratch baseline" if _is_baseline(entry) else ""
        if entry.get("negative_transfer"):
            verdict = f"NEGATIVE TRANSFER vs {entry['best_scratch']}"
        elif entry.get("negative_transfer") is False:
            verdict = (
                f"{entry['versus_scratch'] * column.scale:+.{column.digits}f} vs "
                f"{entry['best_scratch']}"
            )
        lines.append(
            [
                result_label(entry),
                str(entry["budget"]),
                _mean_std(entry, column) if column.key in entry else "—",
                f"{entry.get('train_seconds', 0.0):.1f}",
                f"{entry.get('peak_rss_mb', 0.0):.0f}",
                f"{entry.get('train_flops_estimate', 0.0) / 1e9:.1f}",
                verdict,
                epsilon_text(entry),
            ]
        )
    header = [
        "recipe",
        run.budget_header,
        column.header,
        "train s",
        "peak MB",
        "GFLOPs",
        "verdict",
        "ε (privacy)",
    ]
    # a cost no cell recorded (an earlier runner's file) is left out rather than shown as 0
    costs = {3: "train_seconds", 4: "peak_rss_mb", 5: "train_flops_estimate"}
    keep = [
        n
        for n in range(len(header))
        if (n not in costs or any(entry.get(costs[n]) for entry in rows))
        and (n < 7 or any("epsilon" in entry for entry in rows))  # ε: only for private runs
    ]
    return _table([header[n] for n in keep], [[line[n] for n in keep] for line in lines])


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    caption = html.escape(figure.caption)
    alt = html.escape(figure.caption.split(":")[0])  # the caption below states the numbers
    return (
        f'<figure class="{figure.name}"><img src="data:image/png;base64,{data}" '
        f'alt="{alt}"><figcaption>{caption}</figcaption></figure>'
    )


def _gap_html(results: dict[str, Any]) -> str:
    gap = results.get("domain_gap")
    if not isinstance(gap, dict):
        return (
            '<p class="note">Domain gap: not in this run\'s results (`compare` measures it '
            "where the task has source data).</p>"
        )
    rows = [
        ["proxy A-distance", f"{gap.get('proxy_a_distance', float('nan')):.3f}"],
        ["MMD (Gaussian kernel)", f"{gap.get('mmd', float('nan')):.4f}"],
        ["examples per domain", str(gap.get("examples_per_domain", "—"))],
        ["measured on", str(gap.get("measured_on", "frozen features"))],
    ]
    return (
        _table(["domain gap", "value"], rows)
        + "<p>Proxy A-distance: 0 when a linear classifier cannot tell source from target, "
        f"2 when it separates them. {html.escape(PROJECTION_NOTE)}</p>"
    )


def run_section(run: ReportRun) -> tuple[str, list[Figure]]:
    """The HTML of one run's column and the figures in it."""
    rows = comparison_rows(run.results)
    figures: list[Figure] = []
    parts = [f"<h2>{html.escape(run.title)}</h2>"]
    if run.note:
        parts.append(f'<p class="note">{html.escape(run.note)}</p>')
    parts.append(_summary_table(run, rows))

    def add(item: Figure | str | None) -> None:
        if isinstance(item, Figure):
            figures.append(item)
            parts.append(_figure_html(item))
        elif isinstance(item, str):
            parts.append(f'<p class="note">{html.escape(item)}</p>')

    add(_budget_figure(run, rows))
    add(_ranking_figure(run, rows))
    cold, _ = _cold_start(run)
    add(cold)
    add(_cost_figure(run, rows))
    add(_time_figure(run, rows))
    add(_verdict_figure(run, rows))
    add(_confusion_figure(run))
    parts.append(_gap_html(run.results))
    return f'<section class="run">{"".join(parts)}</section>', figures


STYLE = """
:root { color-scheme: light; font-family: system-ui, sans-serif; line-height: 1.4; }
body { margin: 0 auto; padding: 1rem; max-width: 120rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; overflow-wrap: anywhere; }
.runs { display: grid; gap: 1.5rem;
        grid-template-columns: repeat(auto-fit, minmax(min(100%, 32rem), 1fr)); }
.run { min-width: 0; border-top: 3px solid #4477aa; padding-top: 0.5rem; }
figure { margin: 1rem 0; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #333; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.2rem 0.5rem; border-bottom: 1px solid #ddd; text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child, td:last-child { text-align: left; }
.note { font-size: 0.85rem; color: #555; }
"""


def render_report(runs: Sequence[ReportRun], title: str | None = None) -> str:
    """The HTML page showing ``runs`` side by side (one column each; stacked on a phone)."""
    title = title or ("shoptransfer report: " + ", ".join(r.title for r in runs))
    sections = [run_section(run)[0] for run in runs]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<div class="runs">{"".join(sections)}</div></body></html>\n'
    )
