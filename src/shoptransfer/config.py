"""The experiment file: pydantic models that validate a YAML config and name what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shoptransfer.errors import ConfigError

DEFAULT_RECIPES = ["scratch-tfidf", "scratch-transformer", "frozen-features", "fine-tune"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainConfig(_Strict):
    """Where a domain's data is and which columns hold what."""

    path: str = Field(
        description="a CSV/TSV/JSONL/Parquet file, a Blitzer domain folder, or a file of "
        "vectors (npy, npz, mat, Parquet, svmlight)"
    )
    format: (
        Literal["csv", "tsv", "jsonl", "parquet", "blitzer", "npy", "npz", "mat", "svmlight"] | None
    ) = Field(None, description="file format; guessed from the extension (a folder: blitzer)")
    text: str = Field("text", description="column holding the text")
    vectors: str | None = Field(
        None, description="array or column holding precomputed vectors (a feature domain)"
    )
    label: str | None = Field("label", description="column holding the label (null: unlabeled)")
    name: str | None = Field(None, description="domain name (default: the file or folder name)")


class RecipeConfig(_Strict):
    """A recipe name and the hyper-parameters that differ from its defaults."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ExperimentConfig(_Strict):
    """One source -> target experiment: recipes x target budgets x seeds."""

    name: str = Field("experiment", description="run name, used in the run folder's name")
    source: DomainConfig
    target: DomainConfig
    target_test: DomainConfig | None = Field(
        None, description="labeled target test set; default: hold out test_fraction of target"
    )
    test_fraction: float = Field(0.5, gt=0, lt=1, description="share of target held out as test")
    split_seed: int = Field(0, description="seed of the target test split (fixed across seeds)")
    backbone: str = Field("minilm-l6", description="backbone of the neural recipes")
    max_length: int = Field(128, gt=0, description="tokens kept per text")
    recipes: list[RecipeConfig] = Field(
        default_factory=lambda: [RecipeConfig(name=n) for n in DEFAULT_RECIPES]
    )
    budgets: list[int | float | Literal["all"]] = Field(
        [0, 16, 64],
        description="target labels: an integer per class, a fraction of the pool, or 'all'",
    )
    seeds: list[int] = Field([0], description="random seeds; each gives one result per cell")
    transductive: bool = Field(
        False,
        description="also give the target test inputs, without labels, to alignment "
        "recipes (the protocol of the Blitzer papers)",
    )
    output_dir: str = Field("runs", description="folder that receives the run folder")
    cache_dir: str | None = Field(None, description="embedding cache (default ~/.cache)")
    save_models: bool = Field(True, description="save every trained model in the run folder")
    track_quality: bool = Field(
        False,
        description="score a sample of the target test set after every epoch, for the "
        "time-to-target-quality report (compare turns it on)",
    )
    domain_gap: bool = Field(
        False, description="measure the source-target gap on frozen features (compare does)"
    )
    quality_sample: int = Field(500, gt=0, description="target test examples scored per epoch")

    @field_validator("recipes", mode="before")
    @classmethod
    def _recipe_shorthand(cls, value: Any) -> Any:
        """Accept ``- fine-tune`` and ``- {name: fine-tune, epochs: 2}`` as well."""
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and "options" not in item and "name" in item:
                out.append(
                    {
                        "name": item["name"],
                        "options": {k: v for k, v in item.items() if k != "name"},
                    }
                )
            else:
                out.append(item)
        return out

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: list[Any]) -> list[Any]:
        def valid(b: Any) -> bool:
            if b == "all":
                return True
            if isinstance(b, float) and not b.is_integer():
                return 0 < b < 1
            return int(b) >= 0

        if not value or not all(valid(b) for b in value):
            raise ValueError(
                "expected a non-empty list of budgets: labels per class (0 or more), a fraction "
                "between 0 and 1, or 'all'"
            )
        return [int(b) if isinstance(b, float) and b.is_integer() else b for b in value]

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("expected at least one seed")
        return value


def _describe(error: ValidationError, where: str, model: type[BaseModel]) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
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
    return f"{where}: key '{key}': {first['msg']}{more}"


def parse_config(data: Any, where: str, base_dir: Path | None = None) -> ExperimentConfig:
    """Validate a config mapping; relative data paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values at the top level")
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where, ExperimentConfig)) from None
    if base_dir is not None:
        for domain in (config.source, config.target, config.target_test):
            if domain is not None and not Path(domain.path).expanduser().is_absolute():
                domain.path = str((base_dir / domain.path).resolve())
    return config


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_config(data, str(path), path.parent)
