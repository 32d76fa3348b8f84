"""Why a classifier decided: how much each word of a text, or each pixel of a photo, moved the
probability of the predicted class.

- ``integrated-gradients`` (Sundararajan, Taly & Yan, ICML 2017): the gradient of the predicted
  class's probability, averaged along the straight path from a baseline to the input and
  multiplied by (input − baseline); the attributions sum to ``f(input) − f(baseline)``
  (completeness). Texts: at the backbone's token embeddings, the baseline the same tokens
  replaced by padding (special tokens kept), token scores summed into words; photos: at the
  pixels, the baseline the all-zero (mean-colour) image. Through Captum; needs a model whose
  backbone has gradients (a text or image backbone this package runs in PyTorch).
- ``occlusion``: texts: the probability lost when one word is deleted (any classifier, the
  TF-IDF models and ONNX exports too: it only calls ``predict_proba``); photos: lost when a
  square patch is set to the mean colour (Captum's ``Occlusion``).

A word is a run of non-space characters, or one Han character (Chinese has no spaces). Words
past the backbone's length limit are not read by the model: their score is 0 and ``read`` says
so.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shoptransfer.backbones.image import ImageEncoder
from shoptransfer.backbones.inputs import is_backbone
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.data.pixels import load_rgb
from shoptransfer.errors import ConfigError, DataError

METHODS = ("auto", "integrated-gradients", "occlusion")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_HAN}]|[^\s{_HAN}]+")


@dataclass
class Explanation:
    """One input's explanation: its predicted class and probability, and a score per word (a
    text) or per pixel (a photo's ``pixels`` map, at the model's input size): what it added to
    that probability (negative: what it took away). A regression model's: its predicted
    ``value`` (``label`` empty, ``probability`` NaN) and what each word added to that number."""

    input: str
    label: str
    probability: float
    method: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    read: list[bool] = field(default_factory=list)
    pixels: np.ndarray | None = None
    image: np.ndarray | None = None  # the photo as the model saw it (H x W x 3, 0-255)
    baseline_probability: float | None = None  # integrated gradients: f(baseline)
    value: float | None = None  # a regression model's prediction

    @property
    def words(self) -> list[str]:
        return [self.input[start:end] for start, end in self.spans]

    def top(self, k: int, sign: int = 1) -> list[tuple[str, float]]:
        """The ``k`` words that added most to the probability (``sign=-1``: took most away)."""
        order = np.argsort(-sign * np.asarray(self.scores), kind="stable")
        words = self.words
        return [(words[i], self.scores[i]) for i in order[:k] if sign * self.scores[i] > 0]

    def brief(self, k: int = 5) -> dict[str, Any]:
        """The method and the ``k`` words that added most (``for``) and the 3 that took most
        away (``against``), each as [word, score]: what a batch output row holds."""
        return {
            "method": self.method,
            "for": [[word, round(score, 6)] for word, score in self.top(k)],
            "against": [[word, round(score, 6)] for word, score in self.top(3, sign=-1)],
        }

    @property
    def predicted(self) -> str:
        """The prediction as printed: the class and its probability, or the value."""
        if self.value is not None:
            return f"{self.value:.3f}"
        return f"{self.label}\t{self.probability:.3f}"

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"method": self.method}
        if self.value is not None:
            record["value"] = self.value
        else:
            record.update(label=self.label, probability=self.probability)
        if self.baseline_probability is not None:
            record["baseline_probability"] = self.baseline_probability
        if self.spans:
            record["words"] = [
                {"word": word, "start": start, "end": end, "score": score, "read": read}
                for word, (start, end), score, read in zip(
                    self.words, self.spans, self.scores, self.read
                )
            ]
        if self.pixels is not None:
            record["region"] = self.region()
        return record

    def region(self, share: float = 0.05) -> dict[str, int]:
        """The box around the ``share`` of pixels that added most (in the model's input)."""
        assert self.pixels is not None
        cut = np.quantile(self.pixels, 1 - share)
        rows, cols = np.nonzero(self.pixels >= cut)
        return {
            "top": int(rows.min()),
            "bottom": int(rows.max()),
            "left": int(cols.min()),
            "right": int(cols.max()),
            "size": int(self.pixels.shape[0]),
        }


@dataclass
class FusedExplanation:
    """Why a fused model (several inputs per example) decided, by occlusion: the predicted
    class and its probability; per input, the probability lost when that input alone is hidden
    (``None``: the input was missing); per text input, the probability lost when each of its
    words alone is deleted."""

    label: str
    probability: float
    inputs: dict[str, float | None]
    words: dict[str, list[tuple[str, int, int, float]]]  # name -> (word, start, end, score)
    method: str = "occlusion"

    def to_dict(self) -> dict[str, Any]:
        """As a text's explanation reads, its words each naming the input they are from."""
        return {
            "method": self.method,
            "label": self.label,
            "probability": self.probability,
            "inputs": self.inputs,
            "words": [
                {"input": name, "word": w, "start": a, "end": b, "score": v, "read": True}
                for name, scored in self.words.items()
                for w, a, b, v in scored
            ],
        }

    def brief(self, k: int = 5) -> dict[str, Any]:
        """The method, each input's share, and the ``k`` words of each text input that added
        most, each as [word, score]: what a batch output row holds."""
        added = {
            name: [[w, round(v, 6)] for w, _, _, v in sorted(scored, key=lambda x: -x[3]) if v > 0]
            for name, scored in self.words.items()
        }
        return {
            "method": self.method,
            "inputs": self.inputs,
            "for": {name: words[:k] for name, words in added.items()},
        }

    def line(self, k: int = 5) -> str:
        """One line: each input's share, then the words of each text input that added most."""
        return why_line(self.brief(k))


def explain_fused(
    predictor: Any, inputs: Mapping[str, Sequence[str | None]], method: str = "auto"
) -> list[FusedExplanation]:
    """Why a fused model predicts what it does for each example of ``inputs`` (input name ->
    values, ``None`` where missing), by occlusion: each present input hidden in turn (the model
    reads it as missing, as it learned to with modality dropout), and each word of a text input
    deleted in turn. One ``predict_proba`` call per example."""
    if method not in ("auto", "occlusion"):
        raise ConfigError(
            f"--explain-method '{method}': a fused model is explained by occlusion (hiding an "
            "input, deleting a word); use auto or occlusion"
        )
    kinds: dict[str, str] = predictor.inputs
    names = list(kinds)  # an input the mapping lacks is missing throughout
    size = max((len(v) for v in inputs.values()), default=0)
    out = []
    for i in range(size):
        example = {name: inputs[name][i] if name in inputs else None for name in names}
        variants = [example]
        present = [name for name in names if example[name] is not None]
        variants += [{**example, name: None} for name in present]
        spans = {name: word_spans(str(example[name])) for name in present if kinds[name] == "text"}
        for name, found in spans.items():
            text = str(example[name])
            variants += [
                {**example, name: without_words(text, found, [j])} for j in range(len(found))
            ]
        columns = {name: [variant[name] for variant in variants] for name in names}
        probabilities = np.asarray(predictor.predict_proba(columns))
        target = int(probabilities[0].argmax())
        full = float(probabilities[0, target])
        lost = full - probabilities[:, target]
        shares: dict[str, float | None] = {name: None for name in names}
        for n, name in enumerate(present, start=1):
            shares[name] = float(lost[n])
        at = 1 + len(present)
        words: dict[str, list[tuple[str, int, int, float]]] = {}
        for name, found in spans.items():
            text = str(example[name])
            words[name] = [
                (text[start:end], start, end, float(lost[at + j]))
                for j, (start, end) in enumerate(found)
            ]
            at += len(found)
        out.append(FusedExplanation(predictor.classes[target], full, shares, words))
    return out


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where the words of ``text`` are: runs of non-space characters, and single Han
    characters."""
    return [match.span() for match in _WORD.finditer(text)]


def without_words(text: str, spans: list[tuple[int, int]], drop: Any) -> str:
    """``text`` with the words at positions ``drop`` (indices into ``spans``) deleted."""
    dropped = set(int(i) for i in drop)
    pieces, last = [], 0
    for i, (start, end) in enumerate(spans):
        if i in dropped:
            pieces.append(text[last:start])
            last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _require_captum(method: str) -> Any:
    try:
        import captum.attr
    except ImportError:
        raise ConfigError(
            f"explanations by {method} need Captum: pip install 'shoptransfer[explain]'"
        ) from None
    return captum.attr


def check_explainable(kind: str, method: str) -> None:
    """Refuse an unknown method, or a model whose output (``kind``: ``classes``, ``value``,
    ``tasks``) it cannot explain: several tasks, or a number by integrated gradients."""
    if method not in METHODS:
        raise ConfigError(f"--explain-method '{method}'; expected one of {list(METHODS)}")
    if kind == "tasks":
        raise ConfigError(
            "--explain explains one prediction; this model predicts several tasks (explain "
            "each task's own model)"
        )
    if kind == "value" and method == "integrated-gradients":
        raise ConfigError(
            "integrated gradients explain a class's probability; a model that predicts "
            "numbers is explained by occlusion (--explain-method occlusion or auto)"
        )


def _network(predictor: Any) -> tuple[Any, Any]:
    """The differentiable backbone of a PyTorch classifier and the function from its pooled
    features to class logits; a ConfigError naming why when the model has none."""
    from shoptransfer.recipes.neural import NeuralPredictor

    if not isinstance(predictor, NeuralPredictor):
        raise ConfigError(
            "integrated gradients need a PyTorch model with a backbone; this one is "
            f"{getattr(predictor, 'kind', type(predictor).__name__)} (use --explain-method "
            "occlusion)"
        )
    model = predictor.model
    if predictor.frozen is not None:
        backbone = predictor.frozen

        def head(pooled: torch.Tensor) -> torch.Tensor:
            return model({"features": pooled})

    elif is_backbone(model.encoder):
        backbone = model.encoder
        head = model.head
    else:
        raise ConfigError("the model reads precomputed vectors; nothing to explain in them")
    if not isinstance(backbone, (TextEncoder, ImageEncoder)):
        raise ConfigError(
            f"backbone '{getattr(backbone, 'backbone', backbone)}' is computed by its package "
            "without gradients (use --explain-method occlusion)"
        )
    return backbone.eval(), head


def explain(
    predictor: Any,
    inputs: list[str],
    reads: str,
    method: str = "auto",
    steps: int = 50,
    kind: str | None = None,
) -> list[Explanation]:
    """An explanation of each input (texts, or image paths when ``reads`` is ``images``) by
    ``method``: ``auto`` is integrated gradients where the model has gradients, else
    occlusion. ``steps``: the integrated-gradients path's steps (more: closer to
    completeness). ``kind``: what the model predicts, where the caller knows it (else read
    from the predictor)."""
    if kind is None:
        outputs = getattr(predictor, "outputs", None)
        kind = outputs.kind if outputs is not None else getattr(predictor, "kind", "classes")
    check_explainable(kind, method)
    if kind == "value":
        if reads == "images":
            raise ConfigError("--explain: a photo's predicted number is not explained yet")
        return [_occlude_value(predictor, text) for text in inputs]
    if method == "auto":
        try:
            _network(predictor)
            method = "integrated-gradients"
        except ConfigError:
            method = "occlusion"
    if reads == "images":
        if not hasattr(predictor, "model"):
            raise ConfigError("explanations of photos need the PyTorch model; drop --onnx")
        backbone, head = _network(predictor)
        return [_explain_image(predictor, backbone, head, path, method, steps) for path in inputs]
    if method == "occlusion":
        return [_occlude_text(predictor, text) for text in inputs]
    backbone, head = _network(predictor)
    return [_integrated_text(predictor, backbone, head, text, steps) for text in inputs]


def _deletions(predictor: Any, text: str) -> tuple[list[tuple[int, int]], list[bool], list[str]]:
    """The words of ``text``, which of them the model reads, and the texts to score: ``text``
    itself, then ``text`` without each word it reads, in turn."""
    spans = word_spans(text)
    read = words_read(predictor, text, spans)
    variants = [text] + [without_words(text, spans, [i]) for i in range(len(spans)) if read[i]]
    return spans, read, variants


def _occlude_text(predictor: Any, text: str) -> Explanation:
    spans, read, variants = _deletions(predictor, text)
    probabilities = np.asarray(predictor.predict_proba(variants))
    target = int(probabilities[0].argmax())
    scores = np.zeros(len(spans))
    scores[np.asarray(read, dtype=bool)] = probabilities[0, target] - probabilities[1:, target]
    return Explanation(
        text,
        predictor.classes[target],
        float(probabilities[0, target]),
        "occlusion",
        spans,
        scores.tolist(),
        read,
    )


def _occlude_value(predictor: Any, text: str) -> Explanation:
    """A regression model's explanation: each word's score is how much the predicted value
    falls when that word alone is deleted (negative: it rises)."""
    spans, read, variants = _deletions(predictor, text)
    values = np.asarray(predictor.predict(variants), dtype=np.float64).reshape(-1)
    scores = np.zeros(len(spans))
    scores[np.asarray(read, dtype=bool)] = values[0] - values[1:]
    explanation = Explanation(text, "", float("nan"), "occlusion", spans, scores.tolist(), read)
    explanation.value = float(values[0])
    return explanation


def words_read(predictor: Any, text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Which words the model reads: all of them, except past a text backbone's length limit."""
    backbone = _text_backbone(predictor)
    if backbone is None:
        return [True] * len(spans)
    _, kept = _token_spans(backbone, text)
    return [any(s < end and start < e for s, e in kept) for start, end in spans]


def _text_backbone(predictor: Any) -> TextEncoder | None:
    frozen = getattr(predictor, "frozen", None)
    if isinstance(frozen, TextEncoder):
        return frozen
    encoder = getattr(getattr(predictor, "model", None), "encoder", None)
    return encoder if isinstance(encoder, TextEncoder) else None


def _token_spans(backbone: TextEncoder, text: str) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """The backbone's tokens of ``text`` and, for each, the characters of ``text`` it covers
    (``(0, 0)`` for special tokens and the backbone's text prefix)."""
    encoded = backbone.tokenize([text])
    prefix = len(backbone.text_prefix)
    pieces = backbone.tokenizer(
        backbone.text_prefix + text, add_special_tokens=False, return_offsets_mapping=True
    )
    ids, offsets = list(pieces["input_ids"]), list(pieces["offset_mapping"])
    row = encoded["input_ids"][0].tolist()
    specials = _framing_ids(backbone.tokenizer)
    inner = [i for i, token in enumerate(row) if token not in specials]
    room = len(inner)
    if len(ids) > room:  # cut as TextEncoder.tokenize cuts (head, or head and tail)
        head = room if backbone.truncation == "head" else room // 4
        keep = list(range(head)) + list(range(len(ids) - (room - head), len(ids)))
    else:
        keep = list(range(len(ids)))
    if [ids[i] for i in keep] != [row[i] for i in inner]:
        raise DataError(f"cannot align the backbone's tokens with the text {text[:40]!r}")
    spans: list[Any] = [(0, 0)] * len(row)
    for position, piece in zip(inner, keep):
        start, end = offsets[piece]
        spans[position] = (max(start - prefix, 0), max(end - prefix, 0))
    return encoded, spans


def _framing_ids(tokenizer: Any) -> set[int]:
    """The ids that frame a text (start, end, padding); an unknown word's id is not one."""
    names = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id")
    return {getattr(tokenizer, n) for n in names if getattr(tokenizer, n, None) is not None}


def _integrated_text(
    predictor: Any, backbone: TextEncoder, head: Any, text: str, steps: int
) -> Explanation:
    attr = _require_captum("integrated gradients")
    encoded, token_spans = _token_spans(backbone, text)
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    specials = torch.tensor(sorted(_framing_ids(backbone.tokenizer)))
    pad = backbone.tokenizer.pad_token_id
    baseline = torch.where(torch.isin(ids, specials), ids, torch.full_like(ids, pad or 0))
    with torch.no_grad():
        logits = head(backbone(ids, mask))
    target = int(logits.argmax(dim=1)[0])

    def probability(token_ids: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        if token_mask.shape[0] != token_ids.shape[0]:
            token_mask = token_mask.expand(token_ids.shape[0], -1)
        pooled = backbone(token_ids, token_mask)
        return torch.softmax(head(pooled), dim=1)[:, target]

    integrated = attr.LayerIntegratedGradients(probability, backbone.layers()[0])
    attributions = integrated.attribute(
        ids,
        baselines=baseline,
        additional_forward_args=(mask,),
        n_steps=steps,
        internal_batch_size=min(steps, 16),
    )
    token_scores = attributions.sum(dim=-1)[0].detach().numpy()
    with torch.no_grad():
        probabilities = probability(torch.cat([ids, baseline]), mask)
    spans = word_spans(text)
    scores = np.zeros(len(spans))
    read = [False] * len(spans)
    for score, (start, end) in zip(token_scores, token_spans):
        if end <= start:
            continue
        for i, (s, e) in enumerate(spans):  # a token may span words (rare) or lie within one
            if s < end and start < e:
                scores[i] += float(score)
                read[i] = True
                break
    return Explanation(
        text,
        predictor.classes[target],
        float(probabilities[0]),
        "integrated-gradients",
        spans,
        scores.tolist(),
        read,
        baseline_probability=float(probabilities[1]),
    )


def _explain_image(
    predictor: Any, backbone: Any, head: Any, path: str, method: str, steps: int
) -> Explanation:
    attr = _require_captum(method)
    if not isinstance(backbone, ImageEncoder):
        raise ConfigError("the model reads texts; give --text")
    pixels = torch.from_numpy(backbone.preprocessing(load_rgb(path))).unsqueeze(0)
    with torch.no_grad():
        target = int(head(backbone(pixels)).argmax(dim=1)[0])

    def probability(batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(head(backbone(batch)), dim=1)[:, target]

    baseline = torch.zeros_like(pixels)
    if method == "occlusion":
        patch = max(pixels.shape[-1] // 14, 4)
        attributions = attr.Occlusion(probability).attribute(
            pixels,
            sliding_window_shapes=(3, patch, patch),
            strides=(3, patch // 2, patch // 2),
            baselines=0.0,
            perturbations_per_eval=16,
        )
    else:
        attributions = attr.IntegratedGradients(probability).attribute(
            pixels, baselines=baseline, n_steps=steps, internal_batch_size=min(steps, 8)
        )
    with torch.no_grad():
        probabilities = probability(torch.cat([pixels, baseline]))
    preprocessing = backbone.preprocessing
    seen = (pixels[0].numpy() * preprocessing.scale + preprocessing.mean).clip(0, 255)
    return Explanation(
        path,
        predictor.classes[target],
        float(probabilities[0]),
        method,
        pixels=attributions[0].sum(dim=0).detach().numpy(),
        image=seen.transpose(1, 2, 0).astype(np.uint8),
        baseline_probability=float(probabilities[1]) if method != "occlusion" else None,
    )


def summary_line(explanation: Explanation, k: int = 5) -> str:
    """One line saying what drove a prediction: the words that added most (and took most
    away), or the region of a photo."""
    if explanation.pixels is not None:
        box = explanation.region()
        return (
            f"  why ({explanation.method}): most of it from rows {box['top']}-{box['bottom']}, "
            f"columns {box['left']}-{box['right']} of the {box['size']}-pixel input"
        )
    return why_line(explanation.brief(k))


def why_line(brief: dict[str, Any]) -> str:
    """The printed line of a :meth:`Explanation.brief` (or a fused model's
    :meth:`FusedExplanation.brief`)."""
    if "inputs" in brief:
        shares = ", ".join(
            f"{name} {score:+.3f}" if score is not None else f"{name} missing"
            for name, score in brief["inputs"].items()
        )
        words = "; ".join(
            f"{name} words: " + ", ".join(f"{w} {v:+.3f}" for w, v in scored)
            for name, scored in brief["for"].items()
            if scored
        )
        return f"  why ({brief['method']}, input hidden): {shares}" + (
            f"; {words}" if words else ""
        )
    added = ", ".join(f"{word} {score:+.3f}" for word, score in brief["for"])
    taken = ", ".join(f"{word} {score:+.3f}" for word, score in brief["against"])
    return f"  why ({brief['method']}): {added or '-'}" + (f"; against: {taken}" if taken else "")


def _heat(score: float, largest: float) -> str:
    """A background colour: green for words that added to the predicted class, red for words
    that took from it, stronger with the score."""
    alpha = min(abs(score) / largest, 1.0) if largest > 0 else 0.0
    colour = "0,160,60" if score > 0 else "210,40,40"
    return f"rgba({colour},{alpha:.2f})"


def _image_html(explanation: Explanation) -> str:
    from PIL import Image

    assert explanation.pixels is not None and explanation.image is not None
    heat = np.clip(explanation.pixels, 0, None)
    heat = heat / heat.max() if heat.max() > 0 else heat
    base = explanation.image.astype(np.float32)
    red = np.zeros_like(base)
    red[..., 0] = 255
    blended = base * (1 - 0.6 * heat[..., None]) + red * 0.6 * heat[..., None]
    pictures = []
    for array in (explanation.image, blended.astype(np.uint8)):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        pictures.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return "".join(
        f'<img alt="{alt}" src="data:image/png;base64,{data}">'
        for alt, data in zip(("input", "attribution"), pictures)
    )


def explanations_html(explanations: list[Explanation], model: str) -> str:
    """A self-contained HTML page: each text with its words shaded by their scores (green
    added to the predicted class, red took from it; hover for the number), each photo beside
    its attribution map."""
    blocks = []
    for explanation in explanations:
        heading = (
            f"<h2>{html.escape(explanation.predicted.replace(chr(9), ' '))} "
            f"<small>({html.escape(explanation.method)})</small></h2>"
        )
        if explanation.pixels is not None:
            body = f"<p>{html.escape(explanation.input)}</p>{_image_html(explanation)}"
        else:
            largest = max((abs(s) for s in explanation.scores), default=0.0)
            pieces, last = [], 0
            text = explanation.input
            for (start, end), score, read in zip(
                explanation.spans, explanation.scores, explanation.read
            ):
                pieces.append(html.escape(text[last:start]))
                style = f"background:{_heat(score, largest)}" if read else "color:#999"
                pieces.append(
                    f'<span style="{style}" title="{score:+.4f}">'
                    f"{html.escape(text[start:end])}</span>"
                )
                last = end
            pieces.append(html.escape(text[last:]))
            body = f'<p class="text">{"".join(pieces)}</p>'
        blocks.append(f"<section>{heading}{body}</section>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "section{border-bottom:1px solid #ddd;padding:.5em 0}"
        ".text{line-height:1.8;white-space:pre-wrap}h2{font-size:1.1em}"
        "img{width:224px;margin-right:1em;image-rendering:pixelated}"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>Why {html.escape(model)} decided</title><style>{style}</style></head><body>"
        f"<h1>Why {html.escape(model)} decided</h1><p>Green: added to the predicted class's "
        "probability; red: took from it; grey: past the model's length limit, not read.</p>"
        f"{''.join(blocks)}</body></html>\n"
    )
