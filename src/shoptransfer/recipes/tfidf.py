"""scratch-tfidf: TF-IDF features and a logistic regression trained on target labels only.

The classic baseline that any transfer recipe must beat. Objective: minimise the L2-regularised
logistic loss of sublinear TF-IDF word and bigram features of the target's labeled reviews; for a
regression, the squared error of ridge regression (L2 strength ``1 / c``) on the same features.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import save_file
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

from shoptransfer.errors import DataError
from shoptransfer.files import atomic_write_text
from shoptransfer.heads import Outputs
from shoptransfer.recipes.base import (
    FitData,
    Predictor,
    Recipe,
    option,
    read_json,
    read_weights,
    register_model,
    register_recipe,
    require_target_texts,
)


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    tf = counts.astype(np.float64)
    tf.data = 1.0 + np.log(tf.data)
    weighted = sp.csr_matrix(tf.multiply(idf[None, :]))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ weighted)


@register_model
class TfidfPredictor(Predictor):
    """A linear model over TF-IDF features: class scores, or one number (``regression``)."""

    kind = "tfidf-logistic"
    metadata_types: ClassVar[dict[str, Any]] = {
        "classes": list[str],
        "ngram_max": int,
        "regression": bool | None,
    }

    def __init__(
        self,
        classes: list[str],
        vocabulary: dict[str, int],
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        ngram_max: int,
        regression: bool = False,
    ) -> None:
        self.classes = classes
        self.vocabulary = vocabulary
        self.idf = idf
        self.coef = coef
        self.intercept = intercept
        self.ngram_max = ngram_max
        self.regression = regression
        self._counter = CountVectorizer(vocabulary=vocabulary, ngram_range=(1, ngram_max))

    @property
    def outputs(self) -> Outputs:
        return Outputs.value() if self.regression else Outputs.of_classes(self.classes)

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        features = _tfidf(self._counter.transform(list(texts)), self.idf)
        return np.asarray(features @ self.coef.T) + self.intercept

    def predict(self, texts: Sequence[str]) -> Any:
        """Class labels; a regression's numbers."""
        if self.regression:
            return self._scores(texts)[:, 0]
        return super().predict(texts)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.regression:
            raise DataError("a regression model predicts numbers; call predict")
        scores = self._scores(texts)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    @property
    def trainable_parameters(self) -> int:
        return int(self.coef.size + self.intercept.size)

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        save_file(
            {"idf": self.idf, "coef": self.coef, "intercept": self.intercept},
            str(folder / "model.safetensors"),
        )
        atomic_write_text(folder / "vocabulary.json", json.dumps(self.vocabulary))
        return {"ngram_max": self.ngram_max, **({"regression": True} if self.regression else {})}

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], **context: Any) -> TfidfPredictor:
        path = folder / "model.safetensors"
        weights = read_weights(path, ["idf", "coef", "intercept"], framework="np")
        idf, coef, intercept = weights["idf"], weights["coef"], weights["intercept"]
        if metadata["ngram_max"] < 1:
            raise DataError(f"{folder / 'model.json'}: ngram_max {metadata['ngram_max']} < 1")
        regression = bool(metadata.get("regression"))
        rows = 1 if regression else len(metadata["classes"])
        if coef.ndim != 2 or coef.shape[0] != rows or intercept.shape != (rows,):
            raise DataError(
                f"{path}: weights of shape {coef.shape} and {intercept.shape} do not fit "
                f"{rows} output(s); the file is damaged"
            )
        if idf.shape != (coef.shape[1],):
            raise DataError(f"{path}: {idf.shape} idf weights for {coef.shape[1]} features")
        vocabulary_path = folder / "vocabulary.json"
        vocabulary = read_json(vocabulary_path)
        if (
            not isinstance(vocabulary, dict)
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in vocabulary.values())
            or sorted(vocabulary.values()) != list(range(coef.shape[1]))
        ):
            raise DataError(
                f"{vocabulary_path}: expected a JSON object numbering the model's "
                f"{coef.shape[1]} n-grams 0, 1, ...; the file is damaged"
            )
        return cls(
            metadata["classes"], vocabulary, idf, coef, intercept, metadata["ngram_max"], regression
        )


@register_recipe
@dataclasses.dataclass
class ScratchTfidf(Recipe):
    name: ClassVar[str] = "scratch-tfidf"
    family: ClassVar[str] = "baseline"
    description: ClassVar[str] = (
        "TF-IDF + logistic regression (a regression: ridge) on target labels only"
    )
    uses_source: ClassVar[bool] = False
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")

    ngram_max: int = option(2, "longest word n-gram used as a feature", minimum=1)
    max_features: int = option(
        50000, "keep at most this many of the most frequent n-grams", minimum=1
    )
    c: float = option(
        1.0,
        "inverse L2 regularisation strength of the logistic regression (ridge: alpha = 1/c)",
        above=0,
    )

    def fit(self, data: FitData) -> Predictor:
        target = require_target_texts(self, data.target)
        outputs = data.predicts()
        counter = CountVectorizer(ngram_range=(1, self.ngram_max), max_features=self.max_features)
        try:
            counts = counter.fit_transform(target.texts)
        except ValueError:  # scikit-learn's "empty vocabulary"
            raise DataError(
                f"{target.where}: the {len(target)} target training texts hold no word of two "
                f"or more letters; {self.name} needs words to count"
            ) from None
        document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = np.log((1.0 + counts.shape[0]) / (1.0 + document_frequency)) + 1.0
        vocabulary = {term: int(i) for term, i in counter.vocabulary_.items()}
        if outputs.kind == "value":
            ridge = Ridge(alpha=1.0 / self.c).fit(_tfidf(counts, idf), outputs.labels(target))
            coef, intercept = ridge.coef_.reshape(1, -1), np.array([ridge.intercept_])
            return TfidfPredictor([], vocabulary, idf, coef, intercept, self.ngram_max, True)
        classes = list(outputs.classes)
        y = target.label_ids(classes)
        model = LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed)
        model.fit(_tfidf(counts, idf), y)
        coef = np.zeros((len(classes), counts.shape[1]))
        intercept = np.zeros(len(classes))
        if len(model.classes_) == 2:  # sklearn keeps one score for the second class
            coef[model.classes_[1]] = model.coef_[0]
            intercept[model.classes_[1]] = model.intercept_[0]
        else:
            coef[model.classes_] = model.coef_
            intercept[model.classes_] = model.intercept_
        intercept[np.setdiff1d(np.arange(len(classes)), model.classes_)] = -1e9  # never seen
        return TfidfPredictor(classes, vocabulary, idf, coef, intercept, self.ngram_max)
