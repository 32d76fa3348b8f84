"""The command line: a thin shell over :mod:`shoptransfer.api`.

A user mistake prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from shoptransfer.errors import ShopTransferError

app = typer.Typer(
    name="shoptransfer",
    help="Transfer learning for e-commerce, measured against training from scratch. "
    "A mistake in a file, key or flag prints one line and exits 2; an internal error prints one "
    "line and exits 1 (add --debug anywhere for its traceback).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEMO_DOMAINS = ("books", "dvd", "electronics", "kitchen")
CHINESE_DEMO_DOMAINS = ("hotel", "waimai")
# the Chinese demo's frozen-features backbone: the first of these that is registered and whose
# package is installed, else minilm-l6 (English: the run then warns that it does not read Chinese)
MULTILINGUAL_DEMO_BACKBONES = ("e5-small-multilingual", "use-multilingual")


def chinese_demo_backbone() -> str:
    """The backbone ``demo --chinese`` reads the reviews with (see MULTILINGUAL_DEMO_BACKBONES)."""
    from shoptransfer.backbones.registry import get_backbone_spec
    from shoptransfer.errors import ShopTransferError

    for name in MULTILINGUAL_DEMO_BACKBONES:
        spec = get_backbone_spec(name)
        if spec is None:
            continue
        try:
            # a packaged backbone has no weights to locate: building its engine imports the
            # package (and the demo builds it next anyway)
            spec.engine(name) if spec.engine is not None else spec.locate()
        except (ShopTransferError, ImportError, OSError):
            continue  # registered, but its package is not installed
        return name
    return "minilm-l6"


# click's error for a bad flag or argument (typer may carry its own copy of click)
_FLAG_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def _result_printer(task_name: str) -> Any:
    """A function printing one finished cell as a line on stderr, in the task's metrics."""
    from shoptransfer.api import task_class

    task = task_class(task_name)

    def show(record: dict[str, Any]) -> None:
        label = record.get("label") or record["recipe"]
        where = f"  {label:<20} {task.budget_header} {record['budget']!s:>4}"
        if record["status"] != "ok":
            typer.echo(f"{where}  skipped ({record['reason']})", err=True)
            return
        metrics = record["metrics"]
        shown = "  ".join(
            f"{c.header} {metrics[c.key] * c.scale:.{c.digits}f}"
            for c in task.columns
            if c.key in metrics
        )
        typer.echo(
            f"{where}  seed {record['seed']}  {shown}  train {record['train_seconds']:.1f} s",
            err=True,
        )

    return show


def _title(experiment: Any) -> str:
    source = getattr(experiment, "source", None)  # a rating task has none
    target = experiment.target
    sources = source if isinstance(source, list) else [source] if source is not None else []
    source_name = " + ".join(s.name or Path(s.path).name for s in sources) or "pre-training"
    return (
        f"{experiment.name}: {source_name} → {target.name or Path(target.path).name}, "
        f"seeds {experiment.seeds}"
    )


NoReport = Annotated[
    bool,
    typer.Option(
        "--no-report", help="do not write report.html in the run folder (as report: false)"
    ),
]
Track = Annotated[
    bool,
    typer.Option(
        "--track",
        help="log every cell to MLflow, in a local SQLite store <output_dir>/mlflow.db unless "
        "--tracking-uri names another (as tracking: in the YAML; needs the [tracking] extra)",
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(help="an MLflow tracking URI to log every cell to (implies --track)"),
]


def _with_outputs(experiment: Any, no_report: bool, track: bool, tracking_uri: str | None) -> Any:
    """The experiment with the flags' report and tracking settings over its YAML's."""
    update: dict[str, Any] = {}
    if no_report:
        update["report"] = False
    if tracking_uri is not None:
        update["tracking"] = tracking_uri
    elif track and experiment.tracking is False:
        update["tracking"] = True
    return experiment.model_copy(update=update) if update else experiment


Resume = Annotated[
    Path | None,
    typer.Option(
        "--resume",
        help="an interrupted run folder to continue: finished cells are kept, the others "
        "continue from their last epoch (the config is the folder's config.yaml)",
    ),
]
Force = Annotated[
    bool,
    typer.Option("--force", help="with --resume: continue even if the config or data changed"),
]


Processes = Annotated[
    int,
    typer.Option(
        "--processes",
        min=1,
        help="train data-parallel in N processes on this machine (accelerate launch; needs "
        "the [distributed] extra); several machines: run `accelerate launch -m "
        "shoptransfer.cli run ...` on each",
    ),
]


def _launched(processes: int) -> bool:
    """With ``--processes`` above 1 (and not yet launched): run this command line again in
    that many processes through Accelerate, and exit with its status."""
    import os

    from shoptransfer.parallel import launch

    if processes <= 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return False
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            argv.append(arg)
    raise typer.Exit(launch(processes, argv))


def _resumed_config(config: Path | None, resume: Path | None) -> Any:
    """The experiment to run: the YAML file's, or the resumed folder's config.yaml."""
    from shoptransfer.api import run_config
    from shoptransfer.config import load_config
    from shoptransfer.errors import ConfigError

    if config is not None:
        return load_config(config)
    if resume is None:
        raise ConfigError("run needs an experiment YAML file, or --resume RUN_FOLDER")
    return run_config(resume)


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Argument(help="experiment YAML file (optional with --resume)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the table")] = False,
    no_report: NoReport = False,
    track: Track = False,
    tracking_uri: TrackingUri = None,
    resume: Resume = None,
    force: Force = False,
    processes: Processes = 1,
) -> None:
    """Run an experiment file (any task): recipes x target budgets x seeds, into
    runs/<time>-<name>/, with report.html; or continue an interrupted run with --resume."""
    _launched(processes)
    experiment = _resumed_config(config, resume)
    experiment = _with_outputs(experiment, no_report, track, tracking_uri)
    _run_and_report(experiment, quiet, _title(experiment), resume, force)


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders (several: side by side)")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="the HTML file [default: RUN/report.html for one run, ./report.html for several]",
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report (figures inline, no network) of run folders:
    quality against budget, cost, time to scratch quality, negative transfer, confusion
    matrices, domain gap, ranking at K and cold start."""
    from shoptransfer.api import write_report

    typer.echo(str(write_report(run_dirs, output)))


INDEX_HELP = (
    "how the top items are found: exact (every item scored), approximate (a FAISS "
    "nearest-neighbour index; needs the [ann] extra) or auto (exact below 100,000 items)"
)
INDEX_LISTS_HELP = "the approximate index's cells (0: 2 x sqrt(items))"
INDEX_PROBES_HELP = "cells the approximate index visits a query (0: max(32, cells / 64))"


@app.command()
def recommend(
    run_dir: Annotated[Path, typer.Argument(help="a recommendation run folder")],
    user: Annotated[str, typer.Option(help="user id as in the data")],
    k: Annotated[int, typer.Option(help="how many items", min=1)] = 10,
    recipe: Annotated[
        str | None,
        typer.Option(help="recipe entry (label) of the run (default: best validation NDCG)"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of that recipe's model", min=0)] = None,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx",
            help="rank with the model's ONNX export (`shoptransfer export`) through "
            "onnxruntime: its int8 model when exported, else fp32",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    index: Annotated[str, typer.Option(help=INDEX_HELP)] = "auto",
    index_lists: Annotated[int, typer.Option(help=INDEX_LISTS_HELP, min=0)] = 0,
    index_probes: Annotated[int, typer.Option(help=INDEX_PROBES_HELP, min=0)] = 0,
) -> None:
    """Recommend the next items for a user, each with the history items behind it."""
    from shoptransfer.api import Recommender
    from shoptransfer.recommenders.item_index import IndexSettings

    settings = IndexSettings(index, index_lists, index_probes)
    recommender = Recommender(run_dir, recipe, seed, onnx, index=settings)
    if recommender.index_warning:
        typer.echo(recommender.index_warning, err=True)
    answer = recommender.recommend(user=user, k=k)
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    exported = f", ONNX export, {recommender.backend.removeprefix('onnx-')}" if onnx else ""
    typer.echo(
        f"user {user}, model {answer['recipe']} (seed {answer['seed']}{exported}); "
        f"'because' weights: {answer['explanation']}"
    )
    for rank, item in enumerate(answer["items"], start=1):
        typer.echo(f"{rank:>3}. {item['item']}  {item['text'][:90]}")
        for reason in item["because"]:
            typer.echo(
                f"       because {reason['item']} ({reason['weight']:+.3f}) {reason['text'][:60]}"
            )


def _list_option(value: str | None, name: str, cast: Any, example: str) -> list[Any] | None:
    from shoptransfer.errors import ConfigError

    if value is None:
        return None
    try:
        return [cast(item.strip()) for item in value.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(
            f"--{name} '{value}': expected a comma-separated list, such as {example}"
        ) from None


def _budget(item: str) -> int | float | str:
    if item == "all":
        return item
    return float(item) if "." in item else int(item)


@app.command()
def compare(
    config: Annotated[
        Path | None, typer.Argument(help="experiment YAML (optional with flags)")
    ] = None,
    source: Annotated[str | None, typer.Option(help="source data: file or Blitzer folder")] = None,
    target: Annotated[str | None, typer.Option(help="target data: file or Blitzer folder")] = None,
    text: Annotated[str | None, typer.Option(help="text column of --source/--target")] = None,
    label: Annotated[str | None, typer.Option(help="label column of --source/--target")] = None,
    recipes: Annotated[str | None, typer.Option(help="comma-separated recipe names")] = None,
    budgets: Annotated[str | None, typer.Option(help="e.g. 0,16,64,0.1,all")] = None,
    seeds: Annotated[str | None, typer.Option(help="e.g. 0,1,2")] = None,
    name: Annotated[str | None, typer.Option(help="run name")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the table")] = False,
    no_report: NoReport = False,
    track: Track = False,
    tracking_uri: TrackingUri = None,
    resume: Resume = None,
    force: Force = False,
    processes: Processes = 1,
) -> None:
    """Compare recipes x budgets x seeds (any task): mean ± std, negative transfer against
    the best scratch baseline, cost, domain gap; or continue an interrupted comparison with
    --resume."""
    _launched(processes)
    from shoptransfer.api import compare as run_comparison
    from shoptransfer.api import run_config, task_class
    from shoptransfer.config import load_config, parse_config
    from shoptransfer.errors import ConfigError
    from shoptransfer.evaluation.compare import format_comparison
    from shoptransfer.parallel import is_main
    from shoptransfer.runs import load_results

    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config is not None:
        data = load_config(config).model_dump(mode="json", exclude_defaults=True)
        base_dir = config.parent
    elif resume is not None:  # the folder's config, with any flag over it
        data = run_config(resume).model_dump(mode="json", exclude_defaults=True)
    for key, value in (("source", source), ("target", target)):
        if value is not None:
            entry: dict[str, Any] = {"path": value}
            if text is not None:
                entry["text"] = text
            if label is not None:
                entry["label"] = label
            data[key] = entry
    overrides = {
        "recipes": _list_option(recipes, "recipes", str, "scratch-tfidf,fine-tune"),
        "budgets": _list_option(budgets, "budgets", _budget, "0,16,0.5,all"),
        "seeds": _list_option(seeds, "seeds", int, "0,1,2"),
        "name": name,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if "target" not in data:
        raise ConfigError("compare needs a config file or --target (and usually --source)")
    experiment = parse_config(data, str(config or "compare"), base_dir)
    experiment = _with_outputs(experiment, no_report, track, tracking_uri)
    run_dir = run_comparison(
        experiment,
        show_progress=not quiet,
        on_result=None if quiet else _result_printer(experiment.task),
        resume=resume,
        force=force,
    )
    if not is_main():  # across processes, the main one prints
        return
    results = load_results(run_dir)
    task = task_class(results["task"])
    primary_first = sorted(task.columns, key=lambda c: c.key != results["primary_metric"])
    typer.echo("")
    typer.echo(f"{experiment.name}: seeds {experiment.seeds}")
    typer.echo(
        format_comparison(
            results["comparison"], results.get("domain_gap"), primary_first, task.budget_header
        )
    )
    typer.echo(f"\nrun folder: {run_dir}")
    _print_outputs(experiment, run_dir)


def _print_outputs(experiment: Any, run_dir: Path) -> None:
    from shoptransfer.evaluation.html_report import REPORT_FILE

    if experiment.report:
        typer.echo(f"report: {run_dir / REPORT_FILE}")
    if experiment.tracking is not False:
        from shoptransfer.tracking import local_store

        uri = local_store(run_dir.parent) if experiment.tracking is True else experiment.tracking
        typer.echo(f"tracked in MLflow: {uri}")


@app.command()
def select(
    config: Annotated[Path, typer.Argument(help="experiment YAML (a classification task)")],
    budget: Annotated[
        str | None,
        typer.Option(
            help="labelled target examples to score on: labels per class, a fraction or 'all' "
            "(default: the experiment's last budget; 0: score on the source's labels)"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Rank the experiment's candidate backbones (`candidates:`, default its backbone) for its
    target before training: transferability estimators on frozen features, the domain gap,
    the cost of each, and whether transfer is likely to hurt; writes selection.json."""
    from shoptransfer.api import select_backbone
    from shoptransfer.config import load_config, parse_config
    from shoptransfer.errors import ConfigError
    from shoptransfer.selection import format_selection

    experiment = load_config(config)
    if budget is not None:  # checked as the experiment's budgets are
        chosen = _list_option(budget, "budget", _budget, "16, 0.5 or all") or []
        if len(chosen) != 1:
            raise ConfigError(f"--budget '{budget}': expected one budget, such as 16, 0.5 or all")
        data = experiment.model_dump(mode="json", exclude_defaults=True)
        experiment = parse_config({**data, "budgets": chosen}, f"--budget {budget}", config.parent)
    run_dir, report = select_backbone(experiment, show_progress=not quiet)
    typer.echo(f"{experiment.name}: which backbone to transfer from")
    typer.echo(format_selection(report))
    typer.echo(f"\nrun folder: {run_dir}")


PairColumns = {
    "image": typer.Option("--image-column", help="column of the photo paths"),
    "text": typer.Option("--text-column", help="column of the titles (texts paired with photos)"),
    "root": typer.Option("--root", help="folder of relative photo paths (default: the table's)"),
}


@app.command("train-retrieval")
def train_retrieval(
    pairs: Annotated[Path, typer.Argument(help="a CSV/TSV/JSONL/Parquet table of photo, title")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the trained heads")],
    image_column: Annotated[str, PairColumns["image"]] = "image",
    text_column: Annotated[str, PairColumns["text"]] = "title",
    label_column: Annotated[
        str | None,
        typer.Option("--label-column", help="a class column: also scores zero-shot accuracy"),
    ] = None,
    root: Annotated[Path | None, PairColumns["root"]] = None,
    image_backbone: Annotated[str, typer.Option(help="frozen image backbone")] = (
        "efficientnet-lite0"
    ),
    text_backbone: Annotated[str, typer.Option(help="frozen text backbone")] = "minilm-l6",
    epochs: Annotated[int, typer.Option(help="most epochs of the heads", min=1)] = 40,
    test: Annotated[
        Path | None,
        typer.Option(
            "--test",
            help="a second table of pairs (another product group) to test on; the first "
            "then trains on all its pairs",
        ),
    ] = None,
    test_fraction: Annotated[
        float, typer.Option(help="share of the pairs held out for the metrics (without --test)")
    ] = 0.2,
    candidates: Annotated[
        int, typer.Option(help="pairs each held-out query is ranked among", min=2)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="seed of the heads' training")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Train projection heads that put photos and titles in one space (symmetric InfoNCE on
    frozen backbones), measure title -> photo and photo -> title search (Recall@1/5/10) on
    held-out pairs or another group's (--test), and save the heads for `search`."""
    from shoptransfer.api import train_retriever

    record = train_retriever(
        pairs,
        output,
        image=image_column,
        text=text_column,
        label=label_column,
        root=root,
        test=test,
        test_fraction=test_fraction,
        candidates=candidates,
        show_progress=not quiet,
        image_backbone=image_backbone,
        text_backbone=text_backbone,
        epochs=epochs,
        seed=seed,
    )
    for where, counts in record["dropped"].items():
        left = ", ".join(f"{count} {why}" for why, count in counts.items())
        typer.echo(f"warning: {where}: rows left out: {left}", err=True)
    metrics = record["metrics"]
    typer.echo(f"{record['train_pairs']} pairs trained on, {record['test_pairs']} tested on")
    for direction in ("title_to_photo", "photo_to_title"):
        found = metrics[direction]
        typer.echo(
            f"{direction.replace('_to_', ' -> ')} among {found['candidates']}: "
            + ", ".join(f"R@{k} {100 * found[f'recall@{k}']:.1f} %" for k in (1, 5, 10))
        )
    if "zero_shot_accuracy" in metrics:
        typer.echo(f"zero-shot accuracy: {100 * metrics['zero_shot_accuracy']:.1f} %")
    typer.echo(f"heads: {output}")


@app.command()
def search(
    model_dir: Annotated[Path, typer.Argument(help="heads saved by `train-retrieval`")],
    pairs: Annotated[Path, typer.Argument(help="the table of photos and titles to search")],
    text: Annotated[str | None, typer.Option("--text", "-t", help="find photos for a text")] = None,
    photo: Annotated[
        Path | None, typer.Option("--photo", help="find titles for a photo file")
    ] = None,
    image_column: Annotated[str, PairColumns["image"]] = "image",
    text_column: Annotated[str, PairColumns["text"]] = "title",
    root: Annotated[Path | None, PairColumns["root"]] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="results shown", min=1)] = 10,
) -> None:
    """Search a table of photos and titles across the two: the photos closest to a text, or
    the titles closest to a photo, with heads from `train-retrieval`."""
    from shoptransfer.api import search_pairs

    found = search_pairs(
        model_dir,
        pairs,
        query_text=text,
        query_photo=photo,
        image=image_column,
        text=text_column,
        root=root,
        k=top_k,
    )
    for rank, hit in enumerate(found, 1):
        typer.echo(f"{rank}. {hit['similarity']:.3f}  {hit['photo']}  {hit['title']}")


@app.command()
def demo(
    source: Annotated[
        str | None,
        typer.Option(
            help=f"source domain: {', '.join(DEMO_DOMAINS)} (--images: men, women; --chinese: "
            f"{', '.join(CHINESE_DEMO_DOMAINS)})"
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="target domain")] = None,
    images: Annotated[
        bool, typer.Option("--images", help="product photos, men → women, instead of reviews")
    ] = False,
    chinese: Annotated[
        bool,
        typer.Option(
            "--chinese",
            help="Chinese reviews, hotel → food delivery: scratch-tfidf with jieba words beside "
            "frozen features",
        ),
    ] = False,
    budgets: Annotated[
        str | None,
        typer.Option(
            help="target labels per class, comma-separated [reviews: 0,16,64; images: 0,5]"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed", min=0, max=2**32 - 1)] = 0,
    output_dir: Annotated[Path, typer.Option(help="folder that receives the run")] = Path("runs"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the table")] = False,
    no_report: NoReport = False,
    track: Track = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Transfer beside scratch on bundled data: books → kitchen reviews, (--images) men's →
    women's product photos, or (--chinese) hotel → food-delivery reviews in Chinese."""
    from shoptransfer.config import parse_config
    from shoptransfer.errors import ConfigError

    if images and chinese:
        raise ConfigError("--images and --chinese: expected at most one of them")
    if chinese:
        source, target = source or "hotel", target or "waimai"
        allowed = CHINESE_DEMO_DOMAINS
    elif images:
        source, target = source or "men", target or "women"
        allowed = ("men", "women")
    else:
        source, target = source or "books", target or "kitchen"
        allowed = DEMO_DOMAINS
    for domain in (source, target):
        if domain not in allowed:
            raise ConfigError(f"demo domain '{domain}'; expected one of {list(allowed)}")
    budgets = budgets or ("0,5" if images else "0,16,64")
    try:
        budget_list = [int(b) for b in budgets.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--budgets '{budgets}': expected integers separated by commas") from None
    folder = "fashion" if images else "chinese" if chinese else "blitzer"
    data = resources.files("shoptransfer") / "demo_data" / folder
    settings: dict[str, Any] = {
        "name": f"demo-{source}-to-{target}",
        "source": {"path": str(data / source), "format": "images" if images else "blitzer"},
        "target": {"path": str(data / target), "format": "images" if images else "blitzer"},
        "budgets": budget_list,
        "seeds": [seed],
        "output_dir": str(output_dir),
    }
    if chinese:
        for role, domain in (("source", source), ("target", target)):
            settings[role] = {"path": str(data / f"{domain}.csv.gz"), "text": "review"}
        settings["recipes"] = [
            "scratch-tfidf",  # tokenizer auto: jieba words and character n-grams
            {"name": "frozen-features", "backbone": chinese_demo_backbone()},
        ]
    if images:
        settings["image_size"] = 128
        settings["recipes"] = [  # the photos are about 60x80: scratch reads them at 64 px
            {"name": "scratch-transformer", "epochs": 15, "learning_rate": 1e-3, "image_size": 64},
            "frozen-features",
            {  # the top 3 blocks fine-tune; the frozen stem and blocks run once per photo
                "name": "fine-tune",
                "frozen_layers": 14,
                "layer_decay": 0.8,
                "learning_rate": 1e-3,
                "epochs": 4,
                "target_epochs": 4,
            },
        ]
    config = _with_outputs(parse_config(settings, "demo"), no_report, track, tracking_uri)
    sample = (
        "Myntra product photos"
        if images
        else "ChnSentiCorp / waimai_10k reviews"
        if chinese
        else "Amazon reviews"
    )
    title = (
        f"{source} → {target} ({sample}, bundled sample), target labels per class: "
        f"{' / '.join(map(str, budget_list))}, seed {seed}"
    )
    _run_and_report(config, quiet, title)


def _run_and_report(
    experiment: Any, quiet: bool, title: str, resume: Path | None = None, force: bool = False
) -> None:
    from shoptransfer.api import run_experiment, task_class
    from shoptransfer.evaluation.report import (
        format_picks,
        format_seed_ensembles,
        format_table,
    )
    from shoptransfer.parallel import is_main
    from shoptransfer.runs import load_results

    run_dir = run_experiment(
        experiment,
        show_progress=not quiet,
        on_result=None if quiet else _result_printer(experiment.task),
        resume=resume,
        force=force,
    )
    if not is_main():  # across processes, the main one prints
        return
    results = load_results(run_dir)
    task = task_class(results["task"])
    typer.echo("")
    typer.echo(title)
    typer.echo(format_table(results["results"], task.columns, task.budget_header))
    picks = format_picks(results["results"])
    if picks:
        typer.echo(f"\n{picks}")
    together = format_seed_ensembles(
        results.get("seed_ensembles", []), task.columns, task.budget_header
    )
    if together:
        typer.echo(f"\n{together}")
    typer.echo(f"\nrun folder: {run_dir}")
    _print_outputs(experiment, run_dir)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `run` or `demo`")],
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="a text to classify (repeatable)")
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input", "-i", help="a .txt file (one text per line) or a CSV/TSV/JSONL/Parquet table"
        ),
    ] = None,
    column: Annotated[str, typer.Option(help="text column of an --input table")] = "text",
    input_column: Annotated[
        list[str] | None,
        typer.Option(
            "--input-column",
            help="NAME=COLUMN: the --input table's column holding a fused model's input NAME "
            "(repeatable; default: the column named as the input; image paths start at the "
            "table's folder)",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="text encoding of the --input file, such as gbk or gb18030 for Chinese files "
            "saved by older Windows tools (default utf-8; Parquet ignores it)",
        ),
    ] = None,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            help="an image file, or a folder of them (repeatable); a fused model pairs the "
            "n-th --image with the n-th --text (photo and title of one product)",
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="classes shown per input", min=1)] = 1,
    model: Annotated[
        str | None,
        typer.Option(help="model folder name in the run (default: best by its primary metric)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx",
            help="score with the model's ONNX export (`shoptransfer export`) through "
            "onnxruntime: its int8 model when exported, else fp32",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="with --input: write the predictions to a .parquet, .csv or .jsonl file "
            "(atomically; one row per input row) instead of printing them",
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option("--id-column", help="a column of the --input table copied to each output row"),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="rows of --input read and scored at a time", min=1)
    ] = 1024,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="continue an interrupted --input/--output job where it stopped"
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="say why: the words (or the photo region) that added most to the predicted "
            "class's probability (with --input: an explanation column in each row; needs the "
            "[explain] extra for integrated gradients and photos)",
        ),
    ] = False,
    explain_method: Annotated[
        str,
        typer.Option(
            "--explain-method",
            help="auto (integrated gradients where the model has gradients, else occlusion), "
            "integrated-gradients, or occlusion (deleting each word; any text model)",
        ),
    ] = "auto",
    explain_html: Annotated[
        Path | None,
        typer.Option(
            "--explain-html",
            help="also write the explanations as a self-contained HTML page (words shaded by "
            "their scores, photos beside their attribution maps); implies --explain",
        ),
    ] = None,
) -> None:
    """Classify texts or images with a model saved in a run folder (a regression model:
    predict their numbers; a multi-task model: a label per task). An --input file of any size
    is read and scored a chunk at a time: every row gets one prediction (an empty text an empty
    one), in order."""
    from shoptransfer.errors import ConfigError, DataError

    explaining = explain or explain_html is not None or explain_method != "auto"
    if input is not None:
        if text or image:
            raise ConfigError("give --input alone, not with --text or --image")
        if explain_html is not None:
            raise ConfigError(
                "--explain-html writes a page for --text and --image inputs; with --input, "
                "--explain adds an explanation column to each row"
            )
        _predict_file(
            run_dir,
            model,
            onnx,
            input,
            output,
            column,
            id_column,
            chunk_size,
            resume,
            top_k,
            as_json,
            quiet,
            encoding or "utf-8",
            explain_method if explaining else None,
            input_column or [],
        )
        return
    if output is not None or resume or id_column is not None or encoding is not None:
        raise ConfigError("--output, --resume, --id-column and --encoding go with --input")
    if input_column:
        raise ConfigError("--input-column goes with --input (a fused model's table)")
    from shoptransfer.api import choose_model, model_reads

    chosen = choose_model(run_dir, model)
    reads = model_reads(chosen)
    if reads == "inputs":
        if onnx:
            raise ConfigError(f"model {chosen.name} is a fused model; it has no ONNX export")
        if explain_html is not None:
            raise ConfigError(
                f"model {chosen.name} is a fused model; its explanations are printed "
                "(--explain), not written as a page"
            )
        _print_fused_predictions(
            run_dir,
            chosen,
            text or [],
            image or [],
            top_k,
            as_json,
            explain_method if explaining else None,
        )
        return
    if image and (text or input):
        raise ConfigError("give texts (--text/--input) or images (--image), not both")
    if image and reads != "images":
        raise ConfigError(f"model {chosen.name} reads {reads}; --image needs an image model")
    if (text or input) and reads == "images":
        raise ConfigError(f"model {chosen.name} reads images; give --image")
    if image:
        from shoptransfer.data.images import image_files

        texts, skipped = image_files(image)
        if skipped:
            typer.echo(f"skipped {sum(skipped.values())} files: {skipped}", err=True)
        if not texts:
            raise DataError(f"no readable images in {', '.join(map(str, image))}")
    else:
        texts = list(text or [])
        if not texts:
            raise ConfigError("nothing to classify: give --text, --input or --image")
    key = "image" if image else "text"
    if explaining:
        explained = _print_explanations(
            run_dir, chosen.name, texts, as_json, key, onnx, explain_method
        )
        if explain_html is not None:
            from shoptransfer.explain import explanations_html
            from shoptransfer.files import atomic_write_text

            atomic_write_text(explain_html, explanations_html(explained, chosen.name))
            typer.echo(f"explanations -> {explain_html}", err=True)
        return
    _print_predictions(run_dir, chosen.name, texts, top_k, as_json, key=key, onnx=onnx)


def _print_explanations(
    run_dir: Path, model: str, inputs: list[str], as_json: bool, key: str, onnx: bool, method: str
) -> list[Any]:
    """Each input's prediction and why: the words (or region) that drove it; returns the
    explanations."""
    from shoptransfer.api import explain_predictions
    from shoptransfer.explain import summary_line

    explanations = explain_predictions(run_dir, inputs, model=model, method=method, onnx=onnx)
    typer.echo(f"model: {model}" + (" (ONNX export)" if onnx else ""), err=True)
    for item, explanation in zip(inputs, explanations):
        if as_json:
            predicted = (
                {"label": explanation.label}
                if explanation.value is None
                else {"value": explanation.value}
            )
            record = {key: item, **predicted, "explanation": explanation.to_dict()}
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            typer.echo(f"{explanation.predicted}\t{_preview(item)}")
            typer.echo(summary_line(explanation))
    return explanations


def _predict_file(
    run_dir: Path,
    model: str | None,
    onnx: bool,
    input: Path,
    output: Path | None,
    column: str,
    id_column: str | None,
    chunk_size: int,
    resume: bool,
    top_k: int,
    as_json: bool,
    quiet: bool,
    encoding: str,
    explain: str | None = None,
    input_columns: list[str] | None = None,
) -> None:
    """Score an --input file a chunk at a time (``explain``: each row also says why, by that
    method; ``input_columns``: NAME=COLUMN of a fused model's inputs); a model that needs no
    torch never loads it (unless explaining)."""
    from shoptransfer.batch import Job, check_job, light_predictor, model_fingerprint, predict_file
    from shoptransfer.errors import ConfigError

    job = Job(
        input,
        output,
        column,
        id_column,
        chunk_size,
        top_k,
        as_json,
        resume,
        show_progress=not quiet,
        encoding=encoding,
        explain=explain,
    )
    job.inputs = _fused_input_columns(run_dir, model, onnx, input, input_columns or [])
    check_job(job)
    name, predictor = light_predictor(run_dir, model, onnx)
    if predictor is None:  # a model that needs torch
        from shoptransfer.api import load_model, model_reads

        reads = model_reads(run_dir / "models" / name)
        if reads not in ("texts", "inputs"):
            raise ConfigError(f"model {name} reads {reads}; --input needs a text or fused model")
        predictor = load_model(run_dir, name)
    elif getattr(predictor, "reads", "texts") != "texts":
        raise ConfigError(f"model {name} reads {predictor.reads}; --input needs a text model")
    summary = predict_file(job, predictor, model_fingerprint(run_dir, name, onnx))
    if summary["empty"]:
        rows = "row" if summary["empty"] == 1 else "rows"
        what = f"{rows} without any input" if job.inputs is not None else f"empty input {rows}"
        typer.echo(f"warning: {summary['empty']} {what} got an empty prediction", err=True)
    if summary["missing_inputs"]:
        typer.echo(
            f"warning: inputs missing, read as missing: {summary['missing_inputs']}", err=True
        )
    resumed = (
        f", {summary['resumed_rows']} of them done before --resume"
        if summary["resumed_rows"]
        else ""
    )
    where = f" -> {output}" if output else ""
    typer.echo(
        f"model {name}{' (ONNX export)' if onnx else ''}: {summary['rows']} rows{resumed}, "
        f"{summary['empty']} empty, {summary['seconds']:.1f} s, "
        f"{_rate(summary['rows_per_second'] or 0)} rows/s{where}",
        err=True,
    )


def _fused_input_columns(
    run_dir: Path, model: str | None, onnx: bool, table: Path, given: list[str]
) -> Any:
    """Where a fused model's inputs sit in an --input table (``given``: NAME=COLUMN; other
    inputs in the column of their own name), or ``None`` for a model of one input."""
    from shoptransfer.batch import InputColumns
    from shoptransfer.errors import ConfigError, DataError
    from shoptransfer.runs import choose_model, read_json

    chosen = choose_model(run_dir, model)
    saved = chosen / "model.json"  # read without torch: a text model may score without it
    metadata = read_json(saved) if saved.is_file() else {}
    if not isinstance(metadata, dict) or metadata.get("kind") != "fusion":
        if given:
            raise ConfigError(f"--input-column: model {chosen.name} reads one input; use --column")
        return None
    if onnx:
        raise ConfigError(f"model {chosen.name} is a fused model; it has no ONNX export")
    kinds = (metadata.get("spec") or {}).get("inputs")
    if not isinstance(kinds, dict) or not kinds:
        raise DataError(f"{saved}: key 'spec.inputs' does not name the model's inputs")
    columns = {name: name for name in kinds}
    for pair in given:
        name, _, column = pair.partition("=")
        if not column or name not in kinds:
            raise ConfigError(
                f"--input-column '{pair}': expected NAME=COLUMN with NAME one of the model's "
                f"inputs {sorted(kinds)}"
            )
        columns[name] = column
    inputs = {name: (kinds[name], columns[name]) for name in kinds}
    return InputColumns(inputs, table.resolve().parent)


def _rate(per_second: float) -> str:
    """A rate with as many decimals as a slow one needs (explaining scores a row a second)."""
    return f"{per_second:.0f}" if per_second >= 10 else f"{per_second:.2g}"


def _print_predictions(
    run_dir: Path,
    model: str,
    inputs: list[str],
    top_k: int,
    as_json: bool,
    key: str,
    onnx: bool = False,
) -> None:
    from shoptransfer.api import predict as predict_inputs

    labels, probabilities, classes = predict_inputs(run_dir, inputs, model=model, onnx=onnx)
    typer.echo(f"model: {model}" + (" (ONNX export)" if onnx else ""), err=True)
    if isinstance(labels, dict):  # a multi-task model: a label per task
        for n, item in enumerate(inputs):
            if as_json:
                record = {
                    key: item,
                    "labels": {task: labels[task][n] for task in labels},
                    "probabilities": {
                        task: dict(zip(classes[task], map(float, probabilities[task][n])))
                        for task in labels
                    },
                }
                typer.echo(json.dumps(record))
            else:
                shown = "  ".join(
                    f"{task}: {labels[task][n]} {probabilities[task][n].max():.3f}"
                    for task in labels
                )
                typer.echo(f"{shown}\t{_preview(item)}")
        return
    if not classes:  # a regression model: a number per input
        for item, value in zip(inputs, labels):
            typer.echo(
                json.dumps({key: item, "value": value})
                if as_json
                else f"{value:.3f}\t{_preview(item)}"
            )
        return
    for item, label, row in zip(inputs, labels, probabilities):
        best = row.argsort()[::-1][:top_k]
        if as_json:
            record: dict[str, Any] = {
                key: item,
                "label": label,
                "probabilities": dict(zip(classes, map(float, row))),
            }
            if top_k > 1:
                record["top"] = [[classes[i], float(row[i])] for i in best]
            typer.echo(json.dumps(record))
        else:
            shown = ", ".join(f"{classes[i]} {row[i]:.3f}" for i in best)
            preview = _preview(item)
            typer.echo(
                f"{shown}\t{preview}" if top_k > 1 else f"{label}\t{row.max():.3f}\t{preview}"
            )


def _print_fused_predictions(
    run_dir: Path,
    chosen: Path,
    texts: list[str],
    images: list[Path],
    top_k: int,
    as_json: bool,
    explain: str | None = None,
) -> None:
    """Predictions of a fused model: the n-th --text and the n-th --image are one example's
    title and photo (the model's first text and first image input); either may be left out.
    ``explain``: the method; each prediction also says which input and words drove it."""
    from shoptransfer.api import predict as predict_inputs
    from shoptransfer.errors import ConfigError, DataError
    from shoptransfer.recipes.base import read_model_metadata

    kinds = read_model_metadata(chosen)[1]["spec"]["inputs"]
    names = {
        kind: next((n for n, k in kinds.items() if k == kind), None) for kind in kinds.values()
    }
    given = {"text": [str(t) for t in texts], "image": [str(p) for p in images]}
    for kind, values in given.items():
        if values and names.get(kind) is None:
            flag = "--text" if kind == "text" else "--image"
            raise ConfigError(
                f"model {chosen.name} reads {kinds}; it has no {kind} input for {flag}"
            )
    for path in images:
        if not path.is_file():
            raise DataError(
                f"{path}: image file not found (a fused model pairs one file per --image)"
            )
    counts = {len(v) for v in given.values() if v}
    if not counts:
        raise ConfigError("nothing to classify: give --text and/or --image")
    if len(counts) > 1:
        raise ConfigError(
            f"{len(texts)} --text and {len(images)} --image given; a fused model pairs the n-th "
            "of each: give as many of both, or only one kind"
        )
    inputs = {str(names[kind]): values for kind, values in given.items() if values}
    if explain is not None:
        from shoptransfer.api import explain_predictions

        explained = explain_predictions(run_dir, inputs, model=chosen.name, method=explain)
        typer.echo(f"model: {chosen.name}", err=True)
        for n, explanation in enumerate(explained):
            example = {name: values[n] for name, values in inputs.items()}
            if as_json:
                record = {**example, "explanation": explanation.to_dict()}
                typer.echo(json.dumps(record, ensure_ascii=False))
            else:
                preview = " | ".join(_preview(value) for value in example.values())
                typer.echo(f"{explanation.label}\t{explanation.probability:.3f}\t{preview}")
                typer.echo(explanation.line())
        return
    labels, probabilities, classes = predict_inputs(run_dir, inputs, model=chosen.name)
    typer.echo(f"model: {chosen.name}", err=True)
    size = counts.pop()
    for n in range(size):
        example = {name: values[n] for name, values in inputs.items()}
        row = probabilities[n]
        best = row.argsort()[::-1][:top_k]
        if as_json:
            record: dict[str, Any] = {
                **example,
                "label": labels[n],
                "probabilities": dict(zip(classes, map(float, row))),
            }
            if top_k > 1:
                record["top"] = [[classes[i], float(row[i])] for i in best]
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            shown = ", ".join(f"{classes[i]} {row[i]:.3f}" for i in best)
            preview = " | ".join(_preview(value) for value in example.values())
            typer.echo(
                f"{shown}\t{preview}" if top_k > 1 else f"{labels[n]}\t{row.max():.3f}\t{preview}"
            )


def _preview(item: str) -> str:
    from shoptransfer.batch import one_line

    return one_line(item)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `run` or `demo`")],
    model: Annotated[
        str | None,
        typer.Option(
            help="a recipe label or model folder name of the run (default: the best model, as "
            "`predict` picks it)"
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="export format: onnx")] = "onnx",
    quantize: Annotated[
        str,
        typer.Option(
            "--quantize",
            help="also write a quantised copy: int8 (dynamic for text, calibrated for images)",
        ),
    ] = "none",
) -> None:
    """Export a neural classifier or sequential recommender of a run to ONNX (and int8) in
    RUN/exports/<model>/, checked against PyTorch on the run's target test set (export.json)."""
    from shoptransfer.api import export_model
    from shoptransfer.export.exporter import summary_lines
    from shoptransfer.export.rankers import ranker_summary_lines
    from shoptransfer.export.runtime import RANKER_READS

    folder, card = export_model(run_dir, model, format=format, quantize=quantize)
    typer.echo(f"exported model {card['model']} to {folder}", err=True)
    lines = ranker_summary_lines(card) if card["reads"] == RANKER_READS else summary_lines(card)
    for line in lines:
        typer.echo(line, err=True)
    typer.echo(str(folder))


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `run` or `demo`")],
    model: Annotated[
        str | None,
        typer.Option(help="a recipe label or model folder name of the run (default: the best)"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="server processes, each with the model", min=1)] = 1,
    onnx: Annotated[
        bool | None,
        typer.Option(
            "--onnx/--no-onnx",
            help="serve the model's ONNX export (int8 when exported, else fp32) [default: on "
            "when `shoptransfer export` made one]",
            show_default=False,
        ),
    ] = None,
    onnx_precision: Annotated[
        str,
        typer.Option(
            help="the export's model to serve: auto (int8 when exported, else fp32), int8, fp32"
        ),
    ] = "auto",
    max_items: Annotated[int, typer.Option(help="texts or images per request", min=1)] = 64,
    max_text_chars: Annotated[int, typer.Option(help="characters per text", min=1)] = 10_000,
    max_image_bytes: Annotated[int, typer.Option(help="bytes per image", min=1)] = 10 * 2**20,
    max_image_pixels: Annotated[
        int, typer.Option(help="pixels per image (width x height)", min=1)
    ] = 25_000_000,
    max_k: Annotated[int, typer.Option(help="largest k of /v1/recommend", min=1)] = 100,
    max_batch: Annotated[
        int, typer.Option(help="inputs scored together across concurrent requests", min=1)
    ] = 64,
    batch_wait_ms: Annotated[
        float,
        typer.Option(help="how long a request waits for others to batch with", min=0, max=1000),
    ] = 5.0,
    index: Annotated[str, typer.Option(help=INDEX_HELP)] = "auto",
    index_lists: Annotated[int, typer.Option(help=INDEX_LISTS_HELP, min=0)] = 0,
    index_probes: Annotated[int, typer.Option(help=INDEX_PROBES_HELP, min=0)] = 0,
) -> None:
    """Serve a run's model over HTTP: POST /v1/classify, /v1/recommend, /v1/embed; GET
    /health, /ready, /v1/model; the OpenAPI schema at /docs and /openapi.json."""
    from shoptransfer.errors import ConfigError

    try:
        from shoptransfer.serving import ServeSettings
        from shoptransfer.serving import serve as serve_over_http
    except ImportError as exc:
        raise ConfigError(
            f"`shoptransfer serve` needs the 'serve' extra ({exc.name} is missing): "
            "pip install 'shoptransfer[serve]'"
        ) from None
    settings = ServeSettings(
        run_dir=str(run_dir),
        model=model,
        onnx=onnx,
        onnx_precision=onnx_precision,
        max_items=max_items,
        max_text_chars=max_text_chars,
        max_image_bytes=max_image_bytes,
        max_image_pixels=max_image_pixels,
        max_k=max_k,
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
        index=index,
        index_lists=index_lists,
        index_probes=index_probes,
    )
    serve_over_http(settings, host, port, workers)


@app.command()
def backbones() -> None:
    """List the registered backbones."""
    from shoptransfer.backbones import list_backbones

    specs = list_backbones()
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        languages = ",".join(spec.languages) or "-"  # what a text backbone was trained on
        typer.echo(f"{spec.name:<{width}}  {spec.modality:<6} {languages:<12} {spec.description}")
    typer.echo(
        "\nAlso accepted (text): a local folder holding a Hugging Face model, or a hub id in the "
        "local cache."
    )


@app.command()
def recipes(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show every option")] = False,
) -> None:
    """List the registered recipes with their family and description."""
    from shoptransfer.catalogue import list_recipes

    for cls in list_recipes():
        tasks = ",".join(cls.tasks)
        typer.echo(f"{cls.name:<20} {tasks:<40} {cls.family:<14} {cls.description}")
        if verbose:
            defaults = cls()
            helps = cls.options()
            groups = cls.option_groups()
            for group, keys in groups.items():
                indent = "    "
                if len(groups) > 1:
                    typer.echo(f"    [{group}]")
                    indent = "      "
                for key in keys:
                    typer.echo(f"{indent}{key} = {getattr(defaults, key)!r}: {helps[key]}")


@app.command()
def objectives(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show every setting")] = False,
) -> None:
    """List the objectives a recipe's `objectives:` list may name, with what each needs."""
    from shoptransfer.objectives import list_objectives

    for cls in list_objectives():
        needs = "unlabeled target" if cls.needs_unlabeled_target else "-"
        stages = ",".join(cls.stages)
        typer.echo(f"{cls.name:<8} needs {needs:<16} stages {stages:<28} {cls.description}")
        if verbose:
            defaults = cls()
            for key, help_text in cls.options().items():
                typer.echo(f"    {key} = {getattr(defaults, key)!r}: {help_text}")


def _one_line(exc: BaseException) -> str:
    """The exception's message and notes on one line."""
    text = " ".join([str(exc), *(f"({note})" for note in getattr(exc, "__notes__", []))])
    return " ".join(text.split())


def main() -> None:
    """Run the command line. A user's mistake prints one line and exits 2, as a bad flag does;
    any other error prints one line and exits 1, or its traceback with ``--debug`` (given
    anywhere on the command line)."""
    args = sys.argv[1:]
    debug = "--debug" in args
    args = [arg for arg in args if arg != "--debug"]
    try:
        status = app(args=args, prog_name="shoptransfer", standalone_mode=False)
    except _FLAG_ERROR as exc:  # a bad flag or argument, named by click's message
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help())
        else:
            typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        status = exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        status = 1
    except ShopTransferError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        status = 2
    except Exception as exc:
        if debug:
            raise
        # the machine's limits (a full disk, memory) are not bugs, but are no input mistake
        kind = "error" if isinstance(exc, OSError | MemoryError) else "internal error"
        typer.echo(
            f"{kind}: {type(exc).__name__}: {_one_line(exc)}; rerun with --debug for the traceback",
            err=True,
        )
        status = 1
    if status == 130:  # typer's status for Ctrl-C
        typer.echo("interrupted", err=True)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()


if __name__ == "__main__":  # `python -m shoptransfer.cli`, as `accelerate launch -m` runs it
    main()
