"""auto: pick the recipe for this target from a list of candidates, train the pick, say why.

With labelled target examples (at least :data:`LEAST_PER_CLASS` of each class), every candidate
is scored by stratified cross-validation on them (``folds``): trained on the source plus the
other folds, scored on each fold in turn; the best is trained again on every label.
Candidates that train on the target only (``scratch-tfidf``) compete with the transfer
recipes, so picking one of them is the answer "do not transfer here". Without enough target
labels the candidates are scored on the unlabeled target by a label-free criterion
(``label_free_criterion``, :mod:`shoptransfer.evaluation.label_free`).

With several ``backbones`` it first picks the backbone, before training anything: each embeds
the labelled target examples (or, without enough of them, a sample of the labelled source) and
the transferability estimators score the frozen features
(:mod:`shoptransfer.evaluation.transferability`, as ``shoptransfer select`` does); the best
mean rank over the estimators wins, and every candidate recipe reads that backbone.

What was scored, how, the scores, each candidate's seconds and the pick are recorded under the
cell's ``fitted`` key in results.json. The default candidates are cheap (frozen features and
TF-IDF: seconds each on a CPU); list expensive ones (``fine-tune``) only where their cost is
acceptable, since each is trained once more than the pick.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar

import numpy as np

from shoptransfer.data.sampling import sample_at_most
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.evaluation.label_free import CRITERIA, CandidateOutputs
from shoptransfer.evaluation.transferability import rank_positions, score_features
from shoptransfer.recipes.base import (
    BackboneRecipe,
    FitData,
    Predictor,
    Recipe,
    make_recipe,
    option,
    register_recipe,
)

LEAST_PER_CLASS = 2  # labelled target examples per class needed to hold one out of each class
TEXT_CANDIDATES: tuple[Any, ...] = (
    "scratch-tfidf",
    {"name": "frozen-features", "solver": "lbfgs"},
    {"name": "coral-closed-form", "solver": "lbfgs"},
    {
        "name": "frozen-features",
        "label": "frozen-features-em",
        "solver": "lbfgs",
        "label_shift": "em",
    },
    {
        "name": "frozen-features",
        "label": "frozen-features-self-train",
        "solver": "lbfgs",
        "source_weighting": "balanced",
        "label_shift": "em",
        "self_training_rounds": 3,
    },
)
FEATURE_CANDIDATES: tuple[Any, ...] = TEXT_CANDIDATES[1:]
BACKBONE_SETTINGS = ("backbone", "max_length", "truncation", "image_size", "precision")


def candidate_label(entry: Any) -> str:
    """The name a candidate is reported under: its ``label``, else its recipe name."""
    if isinstance(entry, str):
        return entry
    return str(entry.get("label") or entry.get("name"))


@register_recipe
@dataclasses.dataclass
class Auto(BackboneRecipe):
    name: ClassVar[str] = "auto"
    family: ClassVar[str] = "adaptive"
    description: ClassVar[str] = (
        "scores candidate recipes by cross-validation on target labels (or without labels), "
        "trains the best"
    )

    candidates: list[Any] = option(
        (),
        "recipes to choose from: names or mappings {name, label, options...} (empty: frozen "
        "features, CORAL, label-shift EM, frozen-feature self-training and, for texts, scratch "
        "TF-IDF)",
    )
    folds: int = option(
        3,
        "stratified folds of the labelled target: each candidate is trained on the others and "
        "scored on each in turn (fewer where a class has fewer labels)",
        minimum=2,
    )
    backbones: list[str] = option(
        (),
        "backbones to choose from by the transferability estimators before any training "
        "(empty: the recipe's backbone)",
    )
    trial_examples: int = option(
        1000,
        "source and unlabeled target examples the candidates are scored with, at most each "
        "(a seeded sample; 0: all); the pick is then trained on everything",
        minimum=0,
    )
    label_free_criterion: str = option(
        "im",
        "score without target labels: 'im' (information maximisation), 'entropy', 'bnm' or 'snd'",
        choices=("im", "entropy", "bnm", "snd"),
    )

    def __post_init__(self) -> None:
        self.candidates = [dict(c) if isinstance(c, dict) else c for c in self.candidates]
        self.backbones = list(self.backbones)
        if self.candidates:  # a bad entry is an error when the recipe is made
            for entry in self._entries("texts"):
                self._build(entry)

    def _entries(self, holds: str) -> list[Any]:
        entries = list(self.candidates) or list(
            TEXT_CANDIDATES if holds == "texts" else FEATURE_CANDIDATES
        )
        labels = [candidate_label(entry) for entry in entries]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(
                f"recipe 'auto': candidate label(s) {repeated} repeat; give each a 'label'"
            )
        return entries

    def _build(self, entry: Any, backbone: str | None = None) -> Recipe:
        if isinstance(entry, str):
            name, options = entry, {}
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            options = {k: v for k, v in entry.items() if k not in ("name", "label")}
            name = entry["name"]
        else:
            raise ConfigError(
                f"recipe 'auto': candidate {entry!r} is not a recipe name or a mapping with a "
                "'name'"
            )
        if name == self.name:
            raise ConfigError("recipe 'auto': a candidate cannot be 'auto' itself")
        recipe = make_recipe(name, **options)
        for key in BACKBONE_SETTINGS:  # the run's backbone settings, unless the entry sets one
            if hasattr(recipe, key) and key not in options:
                setattr(recipe, key, getattr(self, key))
        if backbone is not None and hasattr(recipe, "backbone") and "backbone" not in options:
            recipe.backbone = backbone
        recipe.seed = self.seed
        return recipe

    def validate(self, source: Any) -> None:
        super().validate(source)
        for entry in self._entries(source.holds):
            self._build(entry).validate(source)

    def fitted(self) -> dict[str, Any]:
        return dict(getattr(self, "_fitted", {}))

    def fit(self, data: FitData) -> Predictor:
        reference = data.reference()
        entries = self._entries(reference.holds)
        folds = self._folds(data.target)
        backbone, backbone_report = self._pick_backbone(data, folds is not None)
        scores: dict[str, float] = {}
        seconds: dict[str, float] = {}
        skipped: dict[str, str] = {}
        trial = self._trial(data, target=data.target)
        if folds is not None:
            how = (
                f"accuracy on the {len(data.target)} labelled target examples in {len(folds)}-fold "
                f"cross-validation, each candidate trained on {self._size(trial.source)} source "
                "examples and the other folds"
            )
        elif data.unlabeled is not None and len(data.unlabeled):
            how = (
                f"label-free criterion '{self.label_free_criterion}' on "
                f"{self._size(trial.unlabeled)} unlabeled target inputs, each candidate trained on "
                f"{self._size(trial.source)} source examples (too few target labels to hold "
                f"{LEAST_PER_CLASS} of each class out)"
            )
        else:
            raise DataError(
                "recipe 'auto' scores candidates on labelled target folds or on unlabeled "
                f"target inputs; this fit has fewer than {LEAST_PER_CLASS} labels of some "
                "class and no unlabeled target"
            )
        for entry in entries:
            label = candidate_label(entry)
            recipe = self._build(entry, backbone)
            started = time.perf_counter()
            try:
                scores[label] = self._score(recipe, trial, folds)
            except (DataError, ConfigError) as error:  # cannot learn from this data: say why
                skipped[label] = str(error)
                continue
            seconds[label] = round(time.perf_counter() - started, 3)
        if not scores:
            raise DataError(f"recipe 'auto': no candidate could train here: {skipped}")
        # ties: the candidate listed first (the defaults are listed cheapest first)
        picked = max(scores, key=lambda label: scores[label])
        entry = next(e for e in entries if candidate_label(e) == picked)
        recipe = self._build(entry, backbone)
        predictor = recipe.fit(data)
        self._fitted = {
            **backbone_report,
            "picked": picked,
            "transfers": recipe.uses_source and data.source is not None,
            "scored_by": how,
            "scores": {label: round(value, 4) for label, value in scores.items()},
            "candidate_seconds": seconds,
            **({"skipped": skipped} if skipped else {}),
            **({"pick": recipe.fitted()} if recipe.fitted() else {}),
        }
        return predictor

    def _pick_backbone(self, data: FitData, labelled: bool) -> tuple[str | None, dict[str, Any]]:
        """The backbone of :attr:`backbones` whose frozen features score best (mean rank over
        the estimators) on the labelled target examples, or else on a sample of the labelled
        source; ``(None, {})`` with fewer than two backbones."""
        if len(self.backbones) < 2:
            return None, {}
        from shoptransfer.backbones import make_encoder
        from shoptransfer.backbones.inputs import frozen_features

        scored = data.target if labelled else self._trial(data, None).source
        if scored is None or not scored.labeled:
            raise DataError(
                "recipe 'auto' picks among backbones on labelled target or source examples; "
                "this fit has neither"
            )
        scores = {}
        for name in self.backbones:
            encoder = make_encoder(
                name,
                max_length=self.max_length,
                truncation=self.truncation,
                image_size=self.image_size or None,
                precision=self.precision,
            )
            features = frozen_features(encoder, list(scored.inputs), data.cache)
            scores[name] = score_features(np.asarray(features), scored.labels)
        names = list(scores)
        ranks = [
            rank_positions([scores[name][estimator] for name in names])
            for estimator in scores[names[0]]
        ]
        mean_ranks = {name: float(np.mean([r[i] for r in ranks])) for i, name in enumerate(names)}
        picked = min(self.backbones, key=lambda name: mean_ranks[name])  # ties: listed first
        on = "labelled target" if labelled else "labelled source"
        return picked, {
            "backbone": picked,
            "backbone_scored_on": f"{len(scored)} {on} examples",
            "backbone_mean_ranks": mean_ranks,
            "backbone_scores": {
                name: {k: round(float(v), 4) for k, v in values.items()}
                for name, values in scores.items()
            },
        }

    def _trial(self, data: FitData, target: Any) -> FitData:
        """``data`` for scoring the candidates: ``target`` as its labels, the source and the
        unlabeled target cut to a seeded sample of ``trial_examples`` each."""

        def sample(domain: Any) -> Any:
            if domain is None or not self.trial_examples:
                return domain
            return sample_at_most(domain, self.trial_examples, self.seed)

        return dataclasses.replace(
            data, source=sample(data.source), target=target, unlabeled=sample(data.unlabeled)
        )

    @staticmethod
    def _size(domain: Any) -> str:
        return "no" if domain is None else f"{len(domain):,}"

    def _score(self, recipe: Recipe, trial: FitData, folds: list[tuple[Any, Any]] | None) -> float:
        """``recipe``'s cross-validated accuracy on the labelled target of ``trial`` (``folds``),
        or without folds its label-free criterion on the unlabeled target."""
        if folds is None:
            probabilities = recipe.fit(trial).predict_proba(trial.unlabeled.inputs)
            return label_free_score(self.label_free_criterion, probabilities)
        correct = 0
        for fit_part, held_out in folds:
            predictor = recipe.fit(dataclasses.replace(trial, target=fit_part))
            predicted = np.asarray(predictor.predict(held_out.inputs))
            correct += int(np.sum(predicted == np.asarray(held_out.labels)))
        return correct / sum(len(held_out) for _, held_out in folds)

    def _folds(self, target: Any) -> list[tuple[Any, Any]] | None:
        """Stratified (fit part, held-out part) folds of the labelled target: :attr:`folds`,
        at most as many as the rarest class has labels; ``None`` when some class has fewer
        than :data:`LEAST_PER_CLASS`."""
        from sklearn.model_selection import StratifiedKFold

        if target is None or not target.labeled or len(target) == 0:
            return None
        labels = np.asarray(target.labels)
        classes, counts = np.unique(labels, return_counts=True)
        if len(classes) < 2 or counts.min() < LEAST_PER_CLASS:
            return None
        k = min(self.folds, int(counts.min()))
        split = StratifiedKFold(k, shuffle=True, random_state=self.seed)
        return [
            (target.subset(np.sort(fit_rows)), target.subset(np.sort(held_rows)))
            for fit_rows, held_rows in split.split(np.zeros(len(labels)), labels)
        ]


def label_free_score(criterion: str, probabilities: np.ndarray) -> float:
    """A label-free criterion of :mod:`shoptransfer.evaluation.label_free` on a candidate's
    probabilities for the unlabeled target (higher: better)."""
    return float(CRITERIA[criterion](CandidateOutputs(np.asarray(probabilities))))
