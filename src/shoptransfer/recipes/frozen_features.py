"""frozen-features and coral-closed-form: a linear head on frozen features (feature-based).

frozen-features: minimise cross-entropy of ``W f(x) + b`` with ``f`` the frozen pretrained
encoder (or a feature domain's own vectors), over the source labels plus, when the budget is
above 0, the target labels, each domain weighted as configured. Two solvers:

- ``adamw``: mini-batches, epochs chosen by early stopping on a source validation split;
- ``lbfgs``: the linear-probe protocol (Kornblith, Shlens & Le, CVPR 2019): full-batch
  L2-regularised logistic regression on standardised features, the L2 strength chosen by
  stratified cross-validation, then refit on every labelled example. No example is held out,
  which matters most when labels are few.

For a regression the head predicts one number (mean squared error; ``lbfgs``: ridge regression,
its L2 strength chosen by efficient leave-one-out cross-validation); for a multi-task model it is
one head per task (``lbfgs``: a linear probe per task, on the examples labelled for it).

coral-closed-form (Sun, Feng & Saenko, AAAI 2016, "Return of Frustratingly Easy Domain
Adaptation"): the same head, trained on source features whitened and re-coloured with the
covariance of the unlabeled target features.

Both can correct for label shift (``label_shift: em``, classification): the target's class
shares are estimated on the unlabeled target and the head's biases shifted to them
(:mod:`shoptransfer.recipes.label_shift`); ``source_weighting: balanced`` gives each source
class the same total weight, so the head does not learn the source's class shares at all.
With ``self_training_rounds`` (``lbfgs``, classification) the head then teaches itself the
target: each round labels the unlabeled target with the current head, keeps the most confident
``pseudo_label_share`` of it (split between the classes by the estimated target shares with
``label_shift: em``, else by the training shares) and fits the head again on those pseudo-labels
plus any labelled target examples; the source teaches the first fit only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from shoptransfer.backbones.inputs import (
    domain_inputs,
    frozen_encoder_for,
)
from shoptransfer.errors import ConfigError, DataError
from shoptransfer.heads import Outputs
from shoptransfer.objectives.coral import coral_transform
from shoptransfer.privacy import HELP as PRIVACY_HELP
from shoptransfer.privacy import PrivacySettings, privacy_settings, require_opacus
from shoptransfer.recipes.base import BackboneRecipe, FitData, Predictor, option, register_recipe
from shoptransfer.recipes.label_shift import (
    bias_shift,
    em_class_shares,
    reweighted,
    weighted_class_shares,
)
from shoptransfer.recipes.neural import NeuralPredictor, split_source
from shoptransfer.training import (
    FEATURE_TRANSFORMS,
    MISSING,
    Classifier,
    Examples,
    FeatureTransform,
    Trainer,
    TrainingSettings,
    transform_features,
)

SOLVERS = ("adamw", "lbfgs")
LABEL_SHIFTS = ("none", "em")


@register_recipe
@dataclasses.dataclass
class FrozenFeatures(BackboneRecipe):
    name: ClassVar[str] = "frozen-features"
    family: ClassVar[str] = "feature-based"
    description: ClassVar[str] = (
        "frozen pretrained features, linear head on source (+ target) labels"
    )
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression", "multi-task")
    recolor: ClassVar[bool] = False

    epochs: int = option(
        100, "most epochs of head training (early stopping on source validation)", minimum=1
    )
    batch_size: int = option(32, "examples per step", minimum=1)
    learning_rate: float = option(1e-3, "AdamW learning rate of the head", above=0)
    weight_decay: float = option(1e-4, "AdamW weight decay of the head", minimum=0)
    patience: int = option(10, "epochs without validation improvement before stopping", minimum=1)
    validation_fraction: float = option(
        0.2, "share of the source held out for model selection", above=0, below=1
    )
    solver: str = option(
        "adamw",
        "head training: 'adamw' (early stopping on a validation split) or 'lbfgs'",
        choices=SOLVERS,
    )
    feature_transform: str = option(
        "none",
        "features before the head: 'none' or 'sqrt-l2' (power normalisation, unit length)",
        choices=FEATURE_TRANSFORMS,
    )
    target_weight: float | Literal["balanced"] = option(
        "balanced",
        "weight of each target example; 'balanced' gives source and target equal total weight",
        minimum=0,
    )

    label_shift: str = option(
        "none",
        "class shares on the target: 'none' keeps the training data's; 'em' estimates them on "
        "the unlabeled target (EM, Saerens et al. 2002) and shifts the head's biases to them",
        choices=LABEL_SHIFTS,
    )

    source_weighting: str = option(
        "none",
        "weight of the source examples: 'none' (each 1) or 'balanced' (each class of the source "
        "the same total weight)",
        choices=("none", "balanced"),
    )
    self_training_rounds: int = option(
        0,
        "rounds of self-training on pseudo-labelled unlabeled target inputs (0: none; lbfgs)",
        minimum=0,
        group="self-training",
    )
    pseudo_label_share: float = option(
        0.5,
        "share of the unlabeled target kept as pseudo-labels in each round",
        above=0,
        maximum=1,
        group="self-training",
    )

    privacy: dict[str, Any] | None = option(None, PRIVACY_HELP, group="privacy")

    def __post_init__(self) -> None:
        self.privacy_settings()  # a bad privacy mapping is an error when the recipe is made

    def privacy_settings(self) -> PrivacySettings | None:
        """The ``privacy`` option, checked (a ConfigError naming the key otherwise)."""
        return privacy_settings(self.privacy, f"recipe '{self.name}': privacy")

    def validate(self, source: Any) -> None:
        super().validate(source)
        if self.privacy_settings() is not None:
            if self.recolor:  # the source's own covariance whitens every example
                raise ConfigError(f"recipe '{self.name}': privacy is for frozen-features only")
            if self.solver != "adamw":
                raise ConfigError(
                    f"recipe '{self.name}': privacy trains by DP-SGD; it needs solver 'adamw'"
                )
            require_opacus()

    def fitted(self) -> dict[str, Any]:
        return dict(getattr(self, "_fitted", {}))

    def _target_weight(self, n_source: int, n_target: int) -> float:
        if self.target_weight == "balanced":
            return n_source / n_target
        return float(self.target_weight)

    def fit(self, data: FitData) -> Predictor:
        outputs = data.predicts()
        source, target, cache = data.source, data.target, data.cache
        reference = data.reference()
        self.validate(reference)
        self._fitted = {}
        self._check_target_reading(outputs, data)
        frozen = frozen_encoder_for(reference, self.make_encoder)
        if source is None:  # the target's labels only: fixed epochs, no split held out
            if not data.has_target_labels:
                raise DataError(f"recipe '{self.name}': no source and no target labels")
            train, validation, target = target, None, None
        elif self.solver == "lbfgs":  # cross-validation picks the setting: no split held out
            train, validation = source, None
        else:
            train, validation = split_source(source, self.validation_fraction, self.seed)
        train_x = domain_inputs(train, frozen, cache)
        assert isinstance(train_x, np.ndarray)
        if self.recolor:
            if data.unlabeled is None or source is None:
                raise DataError(
                    f"recipe '{self.name}' re-colours the source with unlabeled target data; "
                    "it needs both"
                )
            target_x = domain_inputs(data.unlabeled, frozen, cache)
            train_x = coral_transform(train_x, np.asarray(target_x))
        train_labels = outputs.labels(train)
        train_weights = np.ones(len(train), dtype=np.float32)
        if self.source_weighting == "balanced" and source is not None:
            counts = np.bincount(train_labels, minlength=len(outputs.classes))
            train_weights = (len(train) / (np.count_nonzero(counts) * counts[train_labels])).astype(
                np.float32
            )
        parts = [Examples(train_x, train_labels, train_weights)]
        if target is not None and len(target):
            weight = self._target_weight(len(train), len(target))
            parts.append(
                Examples(
                    domain_inputs(target, frozen, cache),
                    outputs.labels(target),
                    np.full(len(target), weight, dtype=np.float32),
                )
            )
        examples = Examples.concatenate(parts)
        torch.manual_seed(self.seed)
        size = train_x.shape[1]
        transform = None
        if self.feature_transform != "none":
            transform = FeatureTransform(size, self.feature_transform)
        model = outputs.build(size, transform, values=examples.labels)

        def as_predictor(m: Classifier) -> NeuralPredictor:
            return NeuralPredictor.from_training(outputs, m, self, frozen, cache)

        if self.solver == "lbfgs":
            x = torch.from_numpy(np.asarray(examples.inputs, dtype=np.float32))
            self._fitted["head"] = fit_linear_head(
                model,
                outputs,
                transform_features(x, self.feature_transform).numpy(),
                examples,
                self.seed,
            )
            if self.self_training_rounds:
                labelled = parts[1] if len(parts) > 1 else None
                unlabeled_x = np.asarray(domain_inputs(data.unlabeled, frozen, cache))
                examples = self._self_train(
                    model, outputs, as_predictor(model), unlabeled_x, labelled, examples, data
                )
            return self._shifted(as_predictor(model), model, examples, data)
        held_out = None
        if validation is not None:
            held_out = Examples(
                domain_inputs(validation, frozen, cache), outputs.labels(validation)
            )
        settings = TrainingSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_fraction=0.0,
            patience=self.patience,
            seed=self.seed,
            description=self.name,
            loss=outputs.loss,
            privacy=self.privacy_settings(),
        )
        trainer = Trainer(settings)
        trainer.fit(model, examples, held_out, as_predictor=as_predictor)
        if trainer.privacy_report is not None:
            self._fitted["privacy"] = trainer.privacy_report
        return self._shifted(as_predictor(model), model, examples, data)

    def _check_target_reading(self, outputs: Outputs, data: FitData) -> None:
        """ConfigError / DataError for the label-shift and self-training settings that cannot
        work on ``data``."""
        reads = []
        if self.label_shift != "none":
            reads.append("label_shift")
        if self.self_training_rounds:
            reads.append("self_training_rounds")
            if self.solver != "lbfgs":
                raise ConfigError(
                    f"recipe '{self.name}': self_training_rounds needs solver 'lbfgs'"
                )
        if not reads:
            return
        if outputs.kind != "classes":
            raise ConfigError(f"recipe '{self.name}': {' and '.join(reads)} are for classification")
        if data.unlabeled is None or len(data.unlabeled) == 0:
            raise DataError(
                f"recipe '{self.name}' reads unlabeled target data ({', '.join(reads)}); none "
                "was given"
            )

    def _self_train(
        self,
        model: Classifier,
        outputs: Outputs,
        predictor: NeuralPredictor,
        unlabeled_x: np.ndarray,
        labelled: Examples | None,
        examples: Examples,
        data: FitData,
    ) -> Examples:
        """Rounds of pseudo-labelling the unlabeled target (features ``unlabeled_x``) with
        ``predictor`` (it reads ``model``, refitted in place each round) and refitting the head
        on the most confident share plus the ``labelled`` target; returns the last round's
        examples."""
        from shoptransfer.recipes.transfer import confident_pseudo_labels

        assert data.unlabeled is not None
        classes = len(outputs.classes)
        rounds = []
        for round_ in range(1, self.self_training_rounds + 1):
            assert examples.labels is not None
            training = weighted_class_shares(examples.labels, examples.weights, classes)
            probabilities = predictor.predict_proba(data.unlabeled.inputs)
            prior = training
            if self.label_shift == "em":
                prior, _ = em_class_shares(probabilities, training)
                probabilities = reweighted(probabilities, prior, training)
            keep = confident_pseudo_labels(probabilities, prior, self.pseudo_label_share)
            pseudo_labels = probabilities.argmax(axis=1)[keep]
            parts = [
                Examples(unlabeled_x[keep], pseudo_labels, np.ones(len(keep), dtype=np.float32))
            ]
            if labelled is not None:
                weight = self._target_weight(len(keep), len(labelled))
                parts.append(
                    Examples(
                        labelled.inputs,
                        labelled.labels,
                        np.full(len(labelled), weight, dtype=np.float32),
                    )
                )
            examples = Examples.concatenate(parts)
            x = torch.from_numpy(np.asarray(examples.inputs, dtype=np.float32))
            fit_linear_head(
                model,
                outputs,
                transform_features(x, self.feature_transform).numpy(),
                examples,
                self.seed + round_,
            )
            counts = np.bincount(pseudo_labels, minlength=classes)
            rounds.append({"pseudo_labels": dict(zip(outputs.classes, counts.tolist()))})
        self._fitted["self_training"] = rounds
        return examples

    def _shifted(
        self, predictor: NeuralPredictor, model: Classifier, examples: Examples, data: FitData
    ) -> NeuralPredictor:
        """``predictor`` with its head's biases moved to the target's estimated class shares
        (``label_shift: em``); unchanged otherwise."""
        if self.label_shift == "none":
            return predictor
        assert examples.labels is not None
        classes = len(predictor.classes)
        training = weighted_class_shares(examples.labels, examples.weights, classes)
        probabilities = predictor.predict_proba(data.unlabeled.inputs)
        shares, steps = em_class_shares(probabilities, training)
        with torch.no_grad():
            model.head.bias.add_(torch.from_numpy(bias_shift(shares, training)).float())
        self._fitted["label_shift"] = {
            "training_shares": dict(zip(predictor.classes, np.round(training, 4).tolist())),
            "target_shares": dict(zip(predictor.classes, np.round(shares, 4).tolist())),
            "em_steps": steps,
        }
        return predictor


def fit_linear_head(
    model: Classifier, outputs: Outputs, x: np.ndarray, examples: Examples, seed: int
) -> dict[str, Any]:
    """Fit ``model``'s head in closed form or by L-BFGS on features ``x``: a logistic linear
    probe (:func:`fit_logistic_head`), ridge regression (:func:`fit_ridge_head`), or a probe per
    task on the examples labelled for it. Returns what was chosen (the L2 strengths)."""
    labels, weights = examples.labels, examples.weights
    assert labels is not None
    fits: list[tuple[Any, tuple[np.ndarray, np.ndarray, dict[str, Any]]]] = []
    if outputs.kind == "value":
        fits.append((model.head.linear, fit_ridge_head(x, labels, weights)))
        model.head.center.fill_(0.0)
        model.head.scale.fill_(1.0)
    elif outputs.kind == "tasks":
        for column, (name, classes) in enumerate(outputs.tasks):
            rows = labels[:, column] != MISSING
            if not rows.any():
                raise DataError(f"no training examples are labelled for the task '{name}'")
            task_weights = weights[rows] if weights is not None else None
            fitted = fit_logistic_head(
                x[rows], labels[rows, column], task_weights, len(classes), seed
            )
            fits.append((model.head.heads[column], fitted))
    else:
        fits.append((model.head, fit_logistic_head(x, labels, weights, len(outputs.classes), seed)))
    with torch.no_grad():
        for linear, (weight, bias, _) in fits:
            linear.weight.copy_(torch.from_numpy(weight))
            linear.bias.copy_(torch.from_numpy(bias))
    if outputs.kind == "tasks":
        return {name: report for (name, _), (_, (_, _, report)) in zip(outputs.tasks, fits)}
    return fits[0][1][2]


# L2 strengths tried by ridge regression's leave-one-out cross-validation (standardised features)
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def fit_ridge_head(
    x: np.ndarray, values: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Ridge regression ``(weight (1, d), bias (1,), report)`` over raw features ``x``.

    Features are standardised; the L2 strength is chosen from :data:`RIDGE_ALPHAS` by
    efficient leave-one-out cross-validation (scikit-learn's ``RidgeCV``), weighted by
    ``weights``; the standardisation is folded into the returned weights.
    """
    from sklearn.linear_model import RidgeCV

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit((x - mean) / scale, values, sample_weight=weights)
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(1, -1) / scale
    bias = np.array([float(model.intercept_) - float((coef @ mean)[0])])
    return coef.astype(np.float32), bias.astype(np.float32), {"alpha": float(model.alpha_)}


# inverse L2 strengths tried by cross-validation (features standardised first)
INVERSE_L2_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
GRID_PATIENCE = 2  # the search stops once this many weaker settings in a row score lower
# from this many labelled examples a third of them is a steady enough held-out fold: 3 folds
FEWER_FOLDS_FROM = 2000


def search_grid(score: Callable[[float], float]) -> dict[float, float]:
    """``score`` of each inverse L2 strength of :data:`INVERSE_L2_GRID`, strongest L2 first,
    until :data:`GRID_PATIENCE` settings in a row score below the best so far."""
    scores: dict[float, float] = {}
    for inverse_l2 in INVERSE_L2_GRID:
        scores[inverse_l2] = score(inverse_l2)
        best = max(scores.values())
        recent = list(scores.values())[-GRID_PATIENCE:]
        if len(scores) > GRID_PATIENCE and all(value < best for value in recent):
            break
    return scores


def fit_logistic_head(
    x: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None,
    n_classes: int,
    seed: int = 0,
    inverse_l2: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Multinomial logistic regression ``(weight, bias)`` over raw features ``x``.

    ``inverse_l2``: the inverse L2 strength to use, without cross-validation.

    Features are standardised; the inverse L2 strength ``C`` is chosen by stratified
    cross-validation along :data:`INVERSE_L2_GRID` (:func:`search_grid`: strong L2 first, the
    slow weak-L2 fits skipped once scores fall). Folds: 5, or 3 from :data:`FEWER_FOLDS_FROM`
    examples, never more than the rarest class has; with one example in some class the middle
    of the grid is used. The standardisation is folded into the returned weights, so they
    apply to raw features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    present = np.unique(labels)
    if len(present) < 2:
        raise DataError("a logistic-regression head needs labelled examples of two classes")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    standard = (x - mean) / scale
    most_folds = 3 if len(labels) >= FEWER_FOLDS_FROM else 5
    folds = min(most_folds, int(np.bincount(labels)[present].min()))
    scores: dict[float, float] = {}
    if inverse_l2 is not None:
        chosen = inverse_l2
    elif folds >= 2:
        weights = np.ones(len(labels)) if weights is None else weights
        split = list(
            StratifiedKFold(folds, shuffle=True, random_state=seed).split(standard, labels)
        )
        # from strong to weak regularisation, each fold's fit starting from its previous solution
        models = [LogisticRegression(max_iter=500, warm_start=True) for _ in split]

        def cross_validated(strength: float) -> float:
            correct = 0.0
            for model, (fit_rows, held_rows) in zip(models, split):
                model.set_params(C=strength)
                model.fit(standard[fit_rows], labels[fit_rows], weights[fit_rows])
                correct += float((model.predict(standard[held_rows]) == labels[held_rows]).mean())
            return correct / folds

        scores = search_grid(cross_validated)
        chosen = max(scores, key=lambda c: (round(scores[c], 6), -c))
    else:
        chosen = INVERSE_L2_GRID[len(INVERSE_L2_GRID) // 2]
    model = LogisticRegression(C=chosen, max_iter=500).fit(standard, labels, sample_weight=weights)
    weight = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)  # classes without examples: never chosen
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # sklearn keeps one score, for the second class
        coef = np.stack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight[present] = coef / scale
    bias[present] = intercept - (coef / scale) @ mean
    report = {"inverse_l2": chosen, "folds": folds if inverse_l2 is None else 0}
    if scores:
        report.update({f"cv_accuracy@{c}": round(v, 4) for c, v in scores.items()})
    return weight, bias, report


@register_recipe
@dataclasses.dataclass
class CoralClosedForm(FrozenFeatures):
    name: ClassVar[str] = "coral-closed-form"
    description: ClassVar[str] = "frozen features; source re-coloured with target covariance"
    recolor: ClassVar[bool] = True
