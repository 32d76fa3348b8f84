"""The experiment file: pydantic models that validate a YAML config and name what is wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shoptransfer.backbones.image import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from shoptransfer.errors import ConfigError
from shoptransfer.text_encodings import check_encoding

DEFAULT_RECIPES = ["scratch-tfidf", "scratch-transformer", "frozen-features", "fine-tune"]
# numpy and scikit-learn take seeds below 2**32
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Encoding = Annotated[str, AfterValidator(check_encoding)]  # the codec's name: GBK -> gbk
ENCODING_HELP = (
    "text encoding of the domain's text files (a CSV/TSV/JSONL table, interactions and item "
    "catalogue), such as gbk or gb18030 for Chinese files saved by older Windows tools "
    "(default utf-8; Parquet ignores it)"
)


HEAD_NAME = re.compile(r"[A-Za-z0-9._-]+")  # a head's or an input's name


class _Strict(BaseModel):
    # strict: no value changes type on the way in (true is not 1, "3" is not 3); no NaN or
    # infinity where a number is expected
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


SCRUB_PII_HELP = (
    "replace personal data in the texts (e-mail addresses, phone and card numbers, postal "
    "addresses, URLs, titled names) by [EMAIL], [PHONE], ... when they are read, so no model or "
    "cache sees it; the replacements are counted in results.json (false: keep the texts as "
    "they are)"
)


class InputConfig(_Strict):
    """One input of a multi-input domain: a text column or a column of image file paths."""

    text: str | None = Field(None, description="column holding this input's text")
    image: str | None = Field(None, description="column holding this input's image file paths")

    @model_validator(mode="after")
    def _one_column(self) -> InputConfig:
        if (self.image is None) == (self.text is None):
            raise ValueError("expected exactly one of text: <column> or image: <column>")
        return self

    def kind_and_column(self) -> tuple[str, str]:
        return ("image", self.image) if self.image is not None else ("text", str(self.text))


class DomainConfig(_Strict):
    """Where a domain's data is and which columns hold what."""

    path: str = Field(
        description="a CSV/TSV/JSONL/Parquet file, a Blitzer domain folder, a folder of images "
        "(one sub-folder per class), or a file of vectors (npy, npz, mat, Parquet, svmlight)"
    )
    format: (
        Literal[
            "csv", "tsv", "jsonl", "parquet", "blitzer", "images", "npy", "npz", "mat", "svmlight"
        ]
        | None
    ) = Field(
        None,
        description="file format; guessed from the extension (a folder: blitzer when it holds "
        "positive.parsed and negative.parsed, else images)",
    )
    text: str = Field("text", description="column holding the text")
    image: str | None = Field(
        None, description="column holding image file paths (a table of images)"
    )
    image_root: str | None = Field(
        None, description="folder that relative image paths start from (default: the table's)"
    )
    vectors: str | None = Field(
        None, description="array or column holding precomputed vectors (a feature domain)"
    )
    inputs: dict[str, InputConfig] | None = Field(
        None,
        description="several inputs per example, read from one table: {input name: {text: "
        "column} or {image: column}}, e.g. {photo: {image: image}, title: {text: "
        "productDisplayName}}; a row's missing input is kept and counted (the fusion recipe "
        "reads them)",
    )
    label: str | None = Field("label", description="column holding the label (null: unlabeled)")
    name: str | None = Field(None, description="domain name (default: the file or folder name)")
    encoding: Encoding = Field("utf-8", description=ENCODING_HELP)
    scrub_pii: bool = Field(True, description=SCRUB_PII_HELP)

    @field_validator("inputs")
    @classmethod
    def _inputs(
        cls, value: dict[str, InputConfig] | None, info: ValidationInfo
    ) -> dict[str, InputConfig] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("expected at least one input: {name: {text: column}}")
        for name in value:
            if not HEAD_NAME.fullmatch(name):
                raise ValueError(
                    f"input name '{name}' may hold only letters, digits and the characters . _ -"
                )
        given = [key for key in ("image", "vectors") if info.data.get(key) is not None]
        if given or info.data.get("format") not in (None, "csv", "tsv", "jsonl", "parquet"):
            raise ValueError(
                "inputs name a table's columns; expected no "
                f"{given[0] if given else 'format ' + repr(info.data.get('format'))} beside it"
            )
        return value


class TableDomainConfig(_Strict):
    """A table (CSV, TSV, JSON Lines, Parquet) of texts, or of image file paths."""

    path: str = Field(description="a CSV/TSV/JSONL/Parquet table")
    format: Literal["csv", "tsv", "jsonl", "parquet"] | None = Field(
        None, description="table format; guessed from the extension"
    )
    text: str = Field("text", description="column holding the text")
    image: str | None = Field(
        None, description="column holding image file paths (a table of photos, not texts)"
    )
    image_root: str | None = Field(
        None, description="folder that relative image paths start from (default: the table's)"
    )
    name: str | None = Field(None, description="domain name (default: the file name)")
    encoding: Encoding = Field("utf-8", description=ENCODING_HELP)
    scrub_pii: bool = Field(True, description=SCRUB_PII_HELP)


class ValueDomainConfig(TableDomainConfig):
    """A table of texts with a number each to predict (regression)."""

    value: str = Field(
        "value", description="column holding the number to predict (a star rating, a price)"
    )


class LabelsDomainConfig(TableDomainConfig):
    """A table of texts with a label column per head of a multi-task model."""

    labels: dict[str, str] = Field(
        description="the label column of each head: {head name: column}, e.g. "
        "{sentiment: label, category: cat}"
    )

    @field_validator("labels")
    @classmethod
    def _heads(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("expected at least one head: {head name: label column}")
        for head in value:
            if not HEAD_NAME.fullmatch(head):
                raise ValueError(
                    f"head name '{head}' may hold only letters, digits and the characters . _ -"
                )
        return value


class InteractionDomainConfig(_Strict):
    """Where a domain's interactions (and item catalogue) are and which columns hold what."""

    path: str = Field(
        description="an interactions file (RecBole atomic .inter, CSV, TSV, Parquet) or a "
        "folder of pre-split RecBole files (NAME.train/valid/test.inter, NAME.text)"
    )
    format: Literal["atomic", "csv", "tsv", "parquet", "recbole-split"] | None = Field(
        None, description="guessed from the extension (a folder: recbole-split)"
    )
    user: str = Field("user_id", description="column holding the user id")
    item: str = Field("item_id", description="column holding the item id")
    time: str | None = Field(
        "timestamp", description="column holding the time (null: file order is time order)"
    )
    items: str | None = Field(None, description="item catalogue file (atomic .item, CSV, ...)")
    item_id: str | None = Field(None, description="catalogue's item id column (default: item)")
    item_text: list[str] = Field(["title"], description="catalogue columns joined as item text")
    k_core: int = Field(0, ge=0, description="drop users and items with fewer interactions")
    max_history: int = Field(50, gt=0, description="most recent items kept per history")
    name: str | None = Field(None, description="domain name (default: the file or folder name)")
    encoding: Encoding = Field("utf-8", description=ENCODING_HELP)


class RatingDomainConfig(_Strict):
    """Where a domain's ratings (and item catalogue) are and which columns hold what."""

    path: str = Field(description="a ratings file (RecBole atomic .inter, CSV, TSV, Parquet)")
    format: Literal["atomic", "csv", "tsv", "parquet"] | None = Field(
        None, description="guessed from the extension (.inter: atomic)"
    )
    user: str = Field("user_id", description="column holding the user id")
    item: str = Field("item_id", description="column holding the item id")
    rating: str = Field("rating", description="column holding the rating (a number)")
    time: str | None = Field(
        "timestamp", description="column holding the time (null: file order is time order)"
    )
    items: str | None = Field(None, description="item catalogue file (atomic .item, CSV, ...)")
    item_id: str | None = Field(None, description="catalogue's item id column (default: item)")
    item_text: list[str] = Field(["title"], description="catalogue columns joined as item text")
    name: str | None = Field(None, description="domain name (default: the file name)")
    encoding: Encoding = Field("utf-8", description=ENCODING_HELP)


LABEL = re.compile(r"[A-Za-z0-9._=+,#-]+")


class RecipeConfig(_Strict):
    """A recipe name and the hyper-parameters that differ from its defaults."""

    name: str
    label: str | None = Field(
        None,
        description="names this entry in results and model folders (default: the recipe name; "
        "for a recipe listed twice, the name and the options that differ)",
    )
    options: dict[str, Any] = Field(default_factory=dict)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "+".join(_option_text(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(value))


def label_recipes(entries: list[RecipeConfig]) -> list[RecipeConfig]:
    """Give every entry without a ``label`` one, and check that all labels differ.

    A recipe listed once is labeled with its name; a recipe listed more than once adds the
    options that differ between its entries (``scratch-tfidf-c=0.1``), and ``#2``, ``#3``, ...
    where that still repeats a label given this way.
    """
    for number, entry in enumerate(entries, start=1):
        if entry.label is not None and not LABEL.fullmatch(entry.label):
            raise ValueError(
                f"entry {number}: label '{entry.label}' may hold only letters, digits and "
                "the characters . _ - = + , #"
            )
    given: set[str] = set()
    for entry in entries:
        if entry.label is None:
            twins = [e for e in entries if e.name == entry.name]
            differing = sorted(
                key
                for key in {key for e in twins for key in e.options}
                if len({_option_text(e.options.get(key, "")) for e in twins}) > 1
            )
            label = "-".join(
                [entry.name]
                + [
                    f"{key}={_option_text(entry.options[key])}"
                    for key in differing
                    if key in entry.options
                ]
            )
            label = label if len(label) <= 80 else entry.name
            entry.label, count = label, 1
            while entry.label in given:
                count += 1
                entry.label = f"{label}#{count}"
            given.add(entry.label)
    first: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        assert entry.label is not None
        if entry.label in first:
            raise ValueError(
                f"entries {first[entry.label]} and {number} have the same label "
                f"'{entry.label}'; give each entry its own 'label'"
            )
        first[entry.label] = number
    return entries


def _each_once(value: list[int], key: str, what: str, why: str = "") -> list[int]:
    """``value`` when no number repeats in it; else a ValueError naming the repeats."""
    repeated = sorted({number for number in value if value.count(number) > 1})
    if repeated:
        raise ValueError(
            f"{key} {value} give {what} {' and '.join(map(str, repeated))} more than once; "
            f"expected each once{why}"
        )
    return value


def _checked_budgets(
    value: Any, fractions_only: bool = False, unit: str = "labels per class"
) -> list[Any]:
    """Budgets: ``unit`` (an integer: labels per class, or target examples), a fraction of the
    pool, or 'all'."""
    if fractions_only:
        expected = "expected a share of the target's users between 0 and 1, or 'all'"
    else:
        expected = f"expected {unit} (an integer, 0 or more), a fraction between 0 and 1, or 'all'"

    def valid(b: Any) -> bool:
        if b == "all":
            return True
        if isinstance(b, bool) or not isinstance(b, int | float):
            return False
        if fractions_only:
            return 0 < b <= 1
        if isinstance(b, float) and not b.is_integer():
            return 0 < b < 1
        return b >= 0

    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of budgets: {expected}")
    for b in value:
        if not valid(b):
            raise ValueError(f"budget {b!r} is not valid; {expected}")
    if fractions_only:
        budgets = ["all" if b == "all" or b == 1 else float(b) for b in value]
    else:
        budgets = [int(b) if isinstance(b, float) and b.is_integer() else b for b in value]
    repeated = sorted({repr(b) for b in budgets if budgets.count(b) > 1})
    if repeated:
        raise ValueError(
            f"budgets {value} give the budget {' and '.join(repeated)} more than once; "
            "expected each once"
        )
    return budgets


class RunConfig(_Strict):
    """What every task's experiment file shares: recipes x budgets x seeds, and where the run
    goes. Each task's config adds its domains and settings."""

    name: str = Field(
        "experiment", max_length=100, description="run name, used in the run folder's name"
    )
    recipes: list[RecipeConfig] = Field(
        default_factory=lambda: [RecipeConfig(name=n) for n in DEFAULT_RECIPES],
        validate_default=True,
    )
    seeds: list[Seed] = Field([0], description="random seeds; each gives one result per cell")
    output_dir: str = Field("runs", description="folder that receives the run folder")
    cache_dir: str | None = Field(None, description="embedding cache (default ~/.cache)")
    save_models: bool = Field(True, description="save every trained model in the run folder")
    report: bool = Field(
        True, description="write report.html (figures of the results) in the run folder at the end"
    )
    tracking: bool | str = Field(
        False,
        description="log every cell to MLflow: true for a local SQLite store "
        "(<output_dir>/mlflow.db), or an MLflow tracking URI (needs the [tracking] extra)",
    )

    @field_validator("recipes", mode="before")
    @classmethod
    def _recipe_shorthand(cls, value: Any) -> Any:
        """Accept ``- fine-tune`` and ``- {name: fine-tune, label: ft, epochs: 2}`` as well."""
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and "options" not in item and "name" in item:
                entry = {key: item[key] for key in ("name", "label") if key in item}
                entry["options"] = {k: v for k, v in item.items() if k not in entry}
                out.append(entry)
            else:
                out.append(item)
        return out

    @field_validator("recipes")
    @classmethod
    def _labels(cls, value: list[RecipeConfig]) -> list[RecipeConfig]:
        if not value:
            raise ValueError("expected at least one recipe")
        return label_recipes(value)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("expected at least one seed")
        return _each_once(value, "seeds", "the seed", " (each seed gives the same numbers again)")


class HeldOutConfig(RunConfig):
    """What the tasks learned from a labelled target share: its test split (held out of the
    target, fixed across seeds), the backbone, and the per-epoch quality curve."""

    test_fraction: float = Field(0.5, gt=0, lt=1, description="share of target held out as test")
    split_seed: Seed = Field(0, description="seed of the target test split (fixed across seeds)")
    backbone: str | None = Field(
        None,
        description="backbone of the neural recipes (default: minilm-l6 for texts, "
        "efficientnet-lite0 for images)",
    )
    max_length: int = Field(128, gt=0, description="tokens kept per text")
    image_size: int | None = Field(
        None,
        description="pixels per side images are resized to (default: the backbone's: 224 for "
        "efficientnet-lite0, 260 for efficientnet-lite2)",
    )
    track_quality: bool = Field(
        False,
        description="score a sample of the target test set after every epoch, for the "
        "time-to-target-quality report (compare turns it on)",
    )
    quality_sample: int = Field(500, gt=0, description="target test examples scored per epoch")

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, value: int | None) -> int | None:
        if value is not None and not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"{value} pixels per side; expected {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (the "
                "image backbones read 224, efficientnet-lite0, or 260, efficientnet-lite2)"
            )
        return value


class ExperimentConfig(HeldOutConfig):
    """Classification: an optional source and a target; recipes x target budgets x seeds.

    Without a source, the backbone's pre-training is the only source: recipes train on the
    target's labels (budget 0 is then not possible for them)."""

    task: Literal["classification"] = Field("classification", description="what is learned")
    source: DomainConfig | None = Field(
        None, description="labeled source domain (optional: the backbone's pre-training)"
    )
    target: DomainConfig
    target_test: DomainConfig | None = Field(
        None, description="labeled target test set; default: hold out test_fraction of target"
    )
    budgets: list[int | float | Literal["all"]] = Field(
        [0, 16, 64],
        description="target labels: an integer per class, a fraction of the pool, or 'all'",
    )
    transductive: bool = Field(
        False,
        description="also give the target test inputs, without labels, to alignment "
        "recipes (the protocol of the Blitzer papers)",
    )
    domain_gap: bool = Field(
        False, description="measure the source-target gap on frozen features (compare does)"
    )
    ensemble_seeds: bool = Field(
        False,
        description="also score, per recipe and budget, the seeds' models together (their "
        "test probabilities averaged; costs no training, the seeds' models are the ensemble); "
        "each cell's test probabilities are kept in predictions/ of the run folder",
    )
    candidates: list[str] | None = Field(
        None,
        description="backbones `shoptransfer select` ranks for this target (default: backbone); "
        "run and compare ignore them",
    )

    candidate_sources: list[DomainConfig] | None = Field(
        None,
        description="more labelled sources `shoptransfer select` ranks beside source (each "
        "with every candidate backbone); run and compare ignore them",
    )

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("expected at least one backbone")
            repeated = sorted({name for name in value if value.count(name) > 1})
            if repeated:
                raise ValueError(f"backbone {repeated[0]!r} is listed twice")
        return value

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        return _checked_budgets(value)

    @model_validator(mode="after")
    def _ensemble_needs_seeds(self) -> ExperimentConfig:
        if self.ensemble_seeds and len(self.seeds) < 2:
            raise ValueError(
                f"ensemble_seeds needs at least two seeds (seeds: {self.seeds}); list more, "
                "such as [0, 1, 2]"
            )
        return self


class ExampleBudgetsConfig(HeldOutConfig):
    """A held-out target whose budgets count labelled target examples."""

    budgets: list[int | float | Literal["all"]] = Field(
        [0, 100, "all"],
        description="labelled target examples: an integer count, a fraction of the pool, or 'all'",
    )

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        return _checked_budgets(value, unit="target examples")


class RegressionConfig(ExampleBudgetsConfig):
    """Regression: a number per text (a star rating, a price); an optional source and a
    target whose numbers are split into a pool (budgets draw from it) and a test set."""

    task: Literal["regression"]
    source: ValueDomainConfig | None = Field(
        None, description="source texts with numbers (optional: the backbone's pre-training)"
    )
    target: ValueDomainConfig
    target_test: ValueDomainConfig | None = Field(
        None, description="target test set; default: hold out test_fraction of target"
    )


class MultiTaskConfig(ExampleBudgetsConfig):
    """Multi-task: one shared encoder, a classification head per label column. The source
    trains every head it has labels for; the target trains the heads of ``target_tasks``; the
    test scores every head the target's test set has labels for."""

    task: Literal["multi-task"]
    source: LabelsDomainConfig | None = Field(
        None, description="source texts with a label column per head (optional)"
    )
    target: LabelsDomainConfig
    target_test: LabelsDomainConfig | None = Field(
        None, description="target test set; default: hold out test_fraction of target"
    )
    recipes: list[RecipeConfig] = Field(
        default_factory=lambda: [
            RecipeConfig(name=n) for n in ["scratch-transformer", "frozen-features", "fine-tune"]
        ],
        validate_default=True,
    )
    target_tasks: list[str] | None = Field(
        None,
        description="the heads whose target labels train (default: every head the target "
        "names); the test scores all heads",
    )
    per_class_of: str | None = Field(
        None,
        description="a label column of the target (a head's or any other): integer budgets "
        "then count target examples per class of it, drawn as a classification run on that "
        "column draws them, so both sides see the same examples (default: drawn at random)",
    )
    task_weights: dict[str, float] | Literal["uncertainty"] = Field(
        default_factory=dict,
        description="loss weight per head (1 where not given), or 'uncertainty': weights "
        "learned from each task's loss (Kendall, Gal & Cipolla 2018)",
    )

    @field_validator("target_tasks")
    @classmethod
    def _target_tasks(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        target = info.data.get("target")
        if value is None or target is None:
            return value
        unknown = [head for head in value if head not in target.labels]
        if not value or unknown or len(set(value)) < len(value):
            raise ValueError(
                f"{value}: expected each of the target's heads at most once, at least one of "
                f"{list(target.labels)}"
            )
        return value

    @field_validator("task_weights")
    @classmethod
    def _task_weights(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return value
        heads = {
            head
            for key in ("source", "target")
            if info.data.get(key) is not None
            for head in info.data[key].labels
        }
        for head, weight in value.items():
            if head not in heads or weight < 0:
                raise ValueError(
                    f"{head}: {weight}; expected a head of {sorted(heads)} with a weight >= 0"
                )
        return value


class RecommendationConfig(RunConfig):
    """Next-item recommendation: pre-train on a source domain's histories (optional), train
    and evaluate on the target's (full ranking of every item). A budget is the share of the
    target's users whose histories training sees."""

    task: Literal["recommendation"]
    name: str = Field("recommendation", description="run name, used in the run folder's name")
    source: InteractionDomainConfig | list[InteractionDomainConfig] | None = Field(
        None,
        description="histories to pre-train on (the transfer recipes need it); a list of "
        "domains is pre-trained on together, their histories mixed",
    )
    target: InteractionDomainConfig
    recipes: list[RecipeConfig] = Field(
        default_factory=lambda: [
            RecipeConfig(name=n) for n in ["popularity", "item-knn", "sasrec", "text-seq"]
        ],
        validate_default=True,
    )
    budgets: list[float | Literal["all"]] = Field(
        ["all"], description="shares of the target's users whose training histories are used"
    )
    ks: list[PositiveInt] = Field([5, 10, 20, 50], description="cut-offs of the ranking metrics")
    domain_gap: bool = Field(
        False,
        description="measure the gap between the source's and the target's item texts on a "
        "frozen text backbone (compare does)",
    )
    eval_batch_size: int = Field(512, gt=0, description="users scored at once in evaluation")
    eval_item_batch_size: int = Field(
        65_536,
        gt=0,
        description="items scored at once in evaluation, for a model that scores by a dot "
        "product over a larger catalogue (bounds memory whatever the catalogue's size)",
    )

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        return _checked_budgets(value, fractions_only=True)

    @field_validator("ks")
    @classmethod
    def _ks(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("expected at least one cut-off, such as [10]")
        return _each_once(value, "ks", "the cut-off")


class RatingConfig(RunConfig):
    """Rating prediction: (user, item) -> rating, squared error; RMSE decides. The target's
    ratings are split into a pool (budgets draw from it) and a test set fixed across seeds;
    the transfer comes from the text backbone reading the item catalogue (no source domain)."""

    task: Literal["rating"]
    name: str = Field("rating", description="run name, used in the run folder's name")
    target: RatingDomainConfig
    recipes: list[RecipeConfig] = Field(
        default_factory=lambda: [
            RecipeConfig(name=n) for n in ["rating-biases", "rating-mf", "rating-text-mf"]
        ],
        validate_default=True,
    )
    budgets: list[int | float | Literal["all"]] = Field(
        [0.1, "all"],
        description="training ratings: an integer count, a fraction of the pool, or 'all'",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of ratings held out as test")
    split: Literal["random", "time"] = Field(
        "random",
        description="how the test ratings are held out: at random (split_seed), or the latest "
        "test_fraction by time (items first rated late are then new items)",
    )
    split_seed: int = Field(
        0, ge=0, description="seed of the random test split (fixed across seeds)"
    )

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        return _checked_budgets(value, unit="training ratings")


CONFIGS: dict[str, type[RunConfig]] = {
    "classification": ExperimentConfig,
    "regression": RegressionConfig,
    "multi-task": MultiTaskConfig,
    "recommendation": RecommendationConfig,
    "rating": RatingConfig,
}


def _describe(error: ValidationError, where: str, model: type[BaseModel]) -> str:
    first = error.errors()[0]
    # a union's branches add their type to the path ('dict[str,float]'): not a key of the file
    key = ".".join(str(p) for p in first["loc"] if "[" not in str(p)) or "(top level)"
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        owner: Any = model
        for part in first["loc"][:-1]:
            field = owner.model_fields.get(str(part)) if hasattr(owner, "model_fields") else None
            annotation = getattr(field, "annotation", None)
            candidates = [
                a
                for a in getattr(annotation, "__args__", (annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            owner = candidates[0] if candidates else owner
        allowed = sorted(owner.model_fields) if hasattr(owner, "model_fields") else []
        return f"{where}: unknown key '{key}'; allowed keys: {', '.join(allowed)}{more}"
    if first["type"] == "missing":
        return f"{where}: missing key '{key}'{more}"
    if first["type"] == "value_error":  # our own validators' words, without pydantic's prefix
        return f"{where}: key '{key}': {first['ctx']['error']}{more}"
    given = first.get("input")
    if isinstance(given, str) and len(given) > 60:
        given = given[:57] + "..."
    shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
    return f"{where}: key '{key}': {first['msg']}{shown}{more}"


def parse_config(data: Any, where: str, base_dir: Path | None = None) -> Any:
    """Validate a config mapping: the model of its ``task`` (:data:`CONFIGS`; classification
    when absent); relative data paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values at the top level")
    task = data.get("task", "classification")
    if task not in CONFIGS:
        raise ConfigError(f"{where}: key 'task': '{task}'; expected one of {sorted(CONFIGS)}")
    model: Any = CONFIGS[task]
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, model)) from None
    _check_recipe_options(config.recipes, where)
    if base_dir is not None:
        domains = [getattr(config, key, None) for key in ("source", "target", "target_test")]
        domains = [d for entry in domains for d in (entry if isinstance(entry, list) else [entry])]
        for domain in domains:
            if domain is None:
                continue
            for key in ("path", "items", "image_root"):
                value = getattr(domain, key, None)
                if value is not None and not Path(value).expanduser().is_absolute():
                    setattr(domain, key, str((base_dir / value).resolve()))
    return config


def _check_recipe_options(entries: list[RecipeConfig], where: str) -> None:
    """Each entry's recipe name and options checked against the recipe registry, before any
    work; options are kept as the recipe reads them (YAML's ``1e-3`` text becomes a number)."""
    from shoptransfer.catalogue import make_recipe  # the registry imports torch: only when needed

    seen: dict[str, int] = {}
    for number, entry in enumerate(entries):
        try:
            recipe = make_recipe(entry.name, **entry.options)
        except ConfigError as exc:
            raise ConfigError(f"{where}: key 'recipes.{number}': {exc}") from None
        entry.options = {key: getattr(recipe, key) for key in entry.options}
        same = repr((entry.name, sorted(entry.options.items())))
        if same in seen:
            raise ConfigError(
                f"{where}: key 'recipes.{number}': the same recipe '{entry.name}' with the same "
                f"options as 'recipes.{seen[same]}' (it would give the same numbers); list it once"
            )
        seen[same] = number


MAX_CONFIG_BYTES = 1_000_000
MAX_YAML_NODES = 100_000  # values after aliases are expanded; a large experiment has hundreds
MAX_YAML_DEPTH = 50


class _ExperimentLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "expected a plain key, not a list or a mapping", key_node.start_mark
                )
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


def _expanded_size(root: yaml.Node, where: str) -> None:
    """A ConfigError when the document, with every alias expanded, holds more than
    :data:`MAX_YAML_NODES` values, nests deeper than :data:`MAX_YAML_DEPTH`, or refers to
    itself: a few hundred bytes of aliases can otherwise stand for gigabytes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        line = node.start_mark.line + 1
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{where} line {line}: nested more than {MAX_YAML_DEPTH} levels deep")
        if id(node) in open_nodes:
            raise ConfigError(f"{where} line {line}: an alias refers to a value that holds it")
        total = 1
        if isinstance(node, yaml.CollectionNode):
            open_nodes.add(id(node))
            for child in node.value:  # a sequence's values, or a mapping's (key, value) pairs
                for part in child if isinstance(child, tuple) else (child,):
                    total += size(part, depth + 1)
                    if total > MAX_YAML_NODES:
                        raise ConfigError(
                            f"{where} line {line}: holds more than {MAX_YAML_NODES:,} values "
                            "once its aliases are expanded; expected an experiment file"
                        )
            open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)


def _read_yaml(path: Path) -> Any:
    """The YAML document of ``path``, within the limits above; a ConfigError names what is
    wrong (and the line, where YAML tells it)."""
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise ConfigError(f"{path}: {kind}; expected an experiment YAML file")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {size:,} bytes; expected an experiment file under "
                f"{MAX_CONFIG_BYTES:,} bytes"
            )
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path} line {line}: bytes {raw[exc.start : exc.end]!r} are not UTF-8 text; expected "
            "an experiment file saved as UTF-8 (a data file's encoding goes in its domain's "
            "encoding key)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        loader = _ExperimentLoader(text)  # its reader refuses control characters at once
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(exc)})") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root, str(path))
        return loader.construct_document(root)
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{path} line {exc.line}: key '{exc.key}' is given twice; expected each key once"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({_one_line(exc)})") from None
    except RecursionError:  # PyYAML's parser recurses once per level of nesting
        raise ConfigError(
            f"{path}: nested more than {MAX_YAML_DEPTH} levels deep; expected an experiment file"
        ) from None
    finally:
        loader.dispose()


def _one_line(error: yaml.YAMLError) -> str:
    """What a YAML error says is wrong, on one line."""
    return " ".join(str(getattr(error, "problem", None) or error).split())


def load_config(path: str | Path) -> Any:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    return parse_config(_read_yaml(path), str(path), path.parent)
