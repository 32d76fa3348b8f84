"""Scoring with a saved TF-IDF model (``scratch-tfidf``) through numpy, SciPy and scikit-learn
alone: this module never imports torch, so ``predict`` with such a model does not load it.

:class:`~shoptransfer.recipes.tfidf.TfidfPredictor` (the recipe's saved model) is this scorer
plus saving; both read a model folder with :meth:`TfidfScorer.from_folder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from shoptransfer.errors import ConfigError, DataError
from shoptransfer.runs import read_json, read_weights
from shoptransfer.scripts import script_shares

# how texts become words: "words" (runs of two or more letters or digits: languages written
# with spaces), "jieba" (Chinese words found by jieba, plus character n-grams), "chars"
# (character n-grams only); "auto" picks one from the script of the training texts
TOKENIZERS = ("auto", "words", "jieba", "chars")
CHAR_PREFIX = "c:"  # character n-gram features, kept apart from words of the same letters
JIEBA_INSTALL = "pip install jieba (or shoptransfer[chinese])"


def jieba_installed() -> bool:
    try:
        import jieba  # noqa: F401
    except ImportError:
        return False
    return True


def _jieba_words() -> Callable[[str], list[str]]:
    try:
        import jieba
    except ImportError:
        raise ConfigError(
            f"tokenizer 'jieba' splits Chinese words with the package jieba; {JIEBA_INSTALL}"
        ) from None
    jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict..." on every first use
    return jieba.lcut


def choose_tokenizer(texts: Sequence[str]) -> str:
    """What ``auto`` picks for ``texts``: ``jieba`` when Chinese characters make up at least
    30 % of the letters of a sample (``chars`` when jieba is not installed, or for Japanese,
    whose kana jieba does not segment), else ``words``."""
    shares = script_shares(texts)
    han, kana = shares.get("han", 0.0), shares.get("kana", 0.0)
    if han + kana < 0.3:
        return "words"
    return "jieba" if kana < 0.05 and jieba_installed() else "chars"


def _ngrams(tokens: list[str], longest: int) -> list[str]:
    return [
        " ".join(tokens[i : i + n])
        for n in range(1, longest + 1)
        for i in range(len(tokens) - n + 1)
    ]


def _char_ngrams(text: str, longest: int) -> list[str]:
    grams = []
    for chunk in text.split():
        for n in range(1, longest + 1):
            grams += [CHAR_PREFIX + chunk[i : i + n] for i in range(len(chunk) - n + 1)]
    return grams


def text_analyzer(tokenizer: str, ngram_max: int, char_ngram_max: int) -> Callable[[str], list]:
    """The features of one text: word n-grams up to ``ngram_max`` words (``words``: scikit-
    learn's default tokens; ``jieba``: jieba's words), and for ``jieba`` and ``chars`` the
    character n-grams up to ``char_ngram_max`` characters of each whitespace-separated chunk
    (marked with ``CHAR_PREFIX``)."""
    if tokenizer == "words":
        return CountVectorizer(ngram_range=(1, ngram_max)).build_analyzer()
    if tokenizer == "chars":
        return lambda text: _char_ngrams(text.lower(), char_ngram_max)
    if tokenizer != "jieba":
        raise ValueError(f"tokenizer '{tokenizer}'; expected one of {TOKENIZERS[1:]}")
    cut = _jieba_words()

    def analyse(text: str) -> list[str]:
        lowered = text.lower()
        words = [w for w in cut(lowered) if any(c.isalnum() for c in w) and not w.isspace()]
        return _ngrams([w.strip() for w in words], ngram_max) + _char_ngrams(
            lowered, char_ngram_max
        )

    return analyse


def tfidf_features(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear TF-IDF weights of n-gram ``counts``, each row scaled to unit length."""
    tf = counts.astype(np.float64)
    tf.data = 1.0 + np.log(tf.data)
    weighted = sp.csr_matrix(tf.multiply(idf[None, :]))
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ weighted)


class TfidfScorer:
    """A linear model over TF-IDF features: class scores, or one number (``regression``)."""

    kind: ClassVar[str] = "tfidf-logistic"
    metadata_types: ClassVar[dict[str, Any]] = {
        "classes": list[str],
        "ngram_max": int,
        "regression": bool | None,
        "tokenizer": str | None,
        "char_ngram_max": int | None,
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
        tokenizer: str = "words",
        char_ngram_max: int = 3,
    ) -> None:
        self.classes = classes
        self.vocabulary = vocabulary
        self.idf = idf
        self.coef = coef
        self.intercept = intercept
        self.ngram_max = ngram_max
        self.regression = regression
        self.tokenizer = tokenizer
        self.char_ngram_max = char_ngram_max
        self._counter = CountVectorizer(
            vocabulary=vocabulary, analyzer=text_analyzer(tokenizer, ngram_max, char_ngram_max)
        )

    def _scores(self, texts: Sequence[str]) -> np.ndarray:
        features = tfidf_features(self._counter.transform(list(texts)), self.idf)
        return np.asarray(features @ self.coef.T) + self.intercept

    def predict(self, texts: Sequence[str]) -> Any:
        """Class labels; a regression's numbers."""
        if self.regression:
            return self._scores(texts)[:, 0]
        return [self.classes[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.regression:
            raise DataError("a regression model predicts numbers; call predict")
        scores = self._scores(texts)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    @classmethod
    def from_folder(cls, folder: Path, metadata: dict[str, Any]) -> Any:
        """The model saved in ``folder`` whose ``model.json`` says ``metadata`` (its keys
        checked); a DataError naming the file that does not fit."""
        path = folder / "model.safetensors"
        weights = read_weights(path, ["idf", "coef", "intercept"], framework="np")
        idf, coef, intercept = weights["idf"], weights["coef"], weights["intercept"]
        if metadata["ngram_max"] < 1:
            raise DataError(f"{folder / 'model.json'}: ngram_max {metadata['ngram_max']} < 1")
        regression = bool(metadata.get("regression"))
        tokenizer = metadata.get("tokenizer") or "words"  # models saved before tokenizers: words
        char_ngram_max = metadata.get("char_ngram_max")
        char_ngram_max = 3 if char_ngram_max is None else char_ngram_max
        if tokenizer not in TOKENIZERS[1:] or char_ngram_max < 1:
            raise DataError(
                f"{folder / 'model.json'}: tokenizer {tokenizer!r} with char_ngram_max "
                f"{char_ngram_max}; expected one of {list(TOKENIZERS[1:])} and a length >= 1"
            )
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
            metadata["classes"],
            vocabulary,
            idf,
            coef,
            intercept,
            metadata["ngram_max"],
            regression,
            tokenizer,
            char_ngram_max,
        )


def load_tfidf_scorer(folder: Path) -> TfidfScorer | None:
    """The TF-IDF model saved in ``folder``, or ``None`` when the folder holds another kind
    (which needs torch to load). ``model.json`` is checked as loading any model checks it."""
    path = folder / "model.json"
    metadata = read_json(path) if path.is_file() else None
    if not isinstance(metadata, dict) or metadata.get("kind") != TfidfScorer.kind:
        return None
    classes, ngram_max = metadata.get("classes"), metadata.get("ngram_max")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{path}: key 'classes' is not a list of class names; the file is damaged")
    if not isinstance(ngram_max, int) or isinstance(ngram_max, bool):
        raise DataError(f"{path}: key 'ngram_max' is not an integer; the file is damaged")
    if not isinstance(metadata.get("regression", False), bool | None):
        raise DataError(f"{path}: key 'regression' is not true or false; the file is damaged")
    if not isinstance(metadata.get("tokenizer", "words"), str | None):
        raise DataError(f"{path}: key 'tokenizer' is not text; the file is damaged")
    char_ngram_max = metadata.get("char_ngram_max", 3)
    if char_ngram_max is not None and (
        not isinstance(char_ngram_max, int) or isinstance(char_ngram_max, bool)
    ):
        raise DataError(f"{path}: key 'char_ngram_max' is not an integer; the file is damaged")
    return TfidfScorer.from_folder(folder, metadata)
