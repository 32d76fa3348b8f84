"""scratch-tfidf: TF-IDF features and a logistic regression trained on target labels only.

The classic baseline that any transfer recipe must beat. Objective: minimise the L2-regularised
logistic loss of sublinear TF-IDF word and bigram features of the target's labeled reviews; for a
regression, the squared error of ridge regression (L2 strength ``1 / c``) on the same features.
Chinese texts (no spaces between words) are split into words by jieba, and character 1-3 grams
are added to the words (``tokenizer``; ``auto`` chooses from the script of the texts).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import save_file
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge

from shoptransfer.errors import ConfigError, DataError
from shoptransfer.files import atomic_write_text
from shoptransfer.heads import Outputs
from shoptransfer.recipes.base import (
    FitData,
    Predictor,
    Recipe,
    option,
    register_model,
    register_recipe,
    require_target_texts,
)
from shoptransfer.tfidf_scoring import (
    JIEBA_INSTALL,
    TOKENIZERS,
    TfidfScorer,
    choose_tokenizer,
    jieba_installed,
    text_analyzer,
    tfidf_features,
)


@register_model
class TfidfPredictor(TfidfScorer, Predictor):
    """A linear model over TF-IDF features (:class:`~shoptransfer.tfidf_scoring.TfidfScorer`),
    saved and loaded as a shoptransfer model."""

    kind = TfidfScorer.kind
    metadata_types: ClassVar[dict[str, Any]] = TfidfScorer.metadata_types

    @property
    def outputs(self) -> Outputs:
        return Outputs.value() if self.regression else Outputs.of_classes(self.classes)

    @property
    def trainable_parameters(self) -> int:
        return int(self.coef.size + self.intercept.size)

    def _save_weights(self, folder: Path) -> dict[str, Any]:
        save_file(
            {"idf": self.idf, "coef": self.coef, "intercept": self.intercept},
            str(folder / "model.safetensors"),
        )
        atomic_write_text(folder / "vocabulary.json", json.dumps(self.vocabulary))
        return {
            "ngram_max": self.ngram_max,
            "tokenizer": self.tokenizer,
            "char_ngram_max": self.char_ngram_max,
            **({"regression": True} if self.regression else {}),
        }

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any], **context: Any) -> TfidfPredictor:
        return cls.from_folder(folder, metadata)


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
    tokenizer: str = option(
        "auto",
        "how texts become words: 'words' (runs of letters between spaces and punctuation), "
        "'jieba' (Chinese words found by jieba, plus character n-grams), 'chars' (character "
        "n-grams only), 'auto' (jieba when Chinese characters are 30% or more of the "
        "letters of the training texts, chars when jieba is not installed, else words)",
        choices=TOKENIZERS,
    )
    char_ngram_max: int = option(
        3, "longest character n-gram used as a feature (tokenizer jieba or chars)", minimum=1
    )
    max_features: int = option(
        50000, "keep at most this many of the most frequent n-grams", minimum=1
    )
    c: float = option(
        1.0,
        "inverse L2 regularisation strength of the logistic regression (ridge: alpha = 1/c)",
        above=0,
    )

    def validate(self, source: Any) -> None:
        super().validate(source)
        if self.tokenizer == "jieba" and not jieba_installed():
            raise ConfigError(
                f"recipe '{self.name}': tokenizer 'jieba' needs the package jieba; {JIEBA_INSTALL}"
            )

    def fit(self, data: FitData) -> Predictor:
        target = require_target_texts(self, data.target)
        outputs = data.predicts()
        tokenizer = choose_tokenizer(target.texts) if self.tokenizer == "auto" else self.tokenizer
        counter = CountVectorizer(
            analyzer=text_analyzer(tokenizer, self.ngram_max, self.char_ngram_max),
            max_features=self.max_features,
        )
        settings = {"tokenizer": tokenizer, "char_ngram_max": self.char_ngram_max}
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
            ridge = Ridge(alpha=1.0 / self.c).fit(
                tfidf_features(counts, idf), outputs.labels(target)
            )
            coef, intercept = ridge.coef_.reshape(1, -1), np.array([ridge.intercept_])
            return TfidfPredictor(
                [], vocabulary, idf, coef, intercept, self.ngram_max, True, **settings
            )
        classes = list(outputs.classes)
        y = target.label_ids(classes)
        model = LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed)
        model.fit(tfidf_features(counts, idf), y)
        coef = np.zeros((len(classes), counts.shape[1]))
        intercept = np.zeros(len(classes))
        if len(model.classes_) == 2:  # sklearn keeps one score for the second class
            coef[model.classes_[1]] = model.coef_[0]
            intercept[model.classes_[1]] = model.intercept_[0]
        else:
            coef[model.classes_] = model.coef_
            intercept[model.classes_] = model.intercept_
        intercept[np.setdiff1d(np.arange(len(classes)), model.classes_)] = -1e9  # never seen
        return TfidfPredictor(classes, vocabulary, idf, coef, intercept, self.ngram_max, **settings)
