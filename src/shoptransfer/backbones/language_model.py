"""Masked-language-model training of a text backbone on unlabeled text.

Domain-adaptive pre-training (DAPT; Gururangan et al., ACL 2020, "Don't Stop Pretraining"):
before a backbone learns the task, continue its masked-language-model (MLM) training on text of
the domains it will read, ``min E[-log p(x_masked | x_visible)]`` over 15 % of the tokens (of
which 80 % become ``[MASK]``, 10 % a random token, 10 % stay; Devlin et al., NAACL 2019). On the
task's own unlabeled texts it is task-adaptive pre-training (TAPT). UDALM (Karouzos et al.,
NAACL 2021) adds the same loss on target text beside the source's classification loss: the
``mlm`` objective (:mod:`shoptransfer.objectives.mlm`) reuses :func:`masked_lm_loss`.

Sentence encoders such as all-MiniLM-L6-v2 ship without a language-model head:
:class:`MaskedLanguageModelHead` is BERT's (dense, GELU, LayerNorm, then a decoder whose weights
are the input word embeddings, plus a bias per token), newly initialised.

:func:`adapt_language_model` trains the whole backbone this way and keeps the weights on disk,
keyed by the backbone's identity, the set of texts and the settings, so runs and pairs that
share them train once (a reuse is charged the training's full time, as a reused stage is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shoptransfer.backbones.precision import computing_in
from shoptransfer.backbones.text import TextEncoder
from shoptransfer.errors import ConfigError
from shoptransfer.files import atomic_write_bytes, atomic_write_json
from shoptransfer.metering import charge_reused
from shoptransfer.progress import duration, progress, report
from shoptransfer.schedules import warmup_then_linear_decay

MASK_RATE = 0.15
IGNORED = -100  # label of a token the loss skips


class MaskedLanguageModelHead(nn.Module):
    """BERT's MLM head over a backbone's token states: dense + GELU + LayerNorm, then scores
    against the input word embeddings (tied: passed to :meth:`forward`) plus a bias."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        states = self.norm(nn.functional.gelu(self.dense(hidden)))
        return nn.functional.linear(states, word_embeddings, self.bias)


def check_language_model(encoder: Any, where: str) -> None:
    """A one-line ConfigError unless ``encoder`` is a trainable text backbone with a mask
    token and input word embeddings (what MLM training needs)."""
    if not isinstance(encoder, TextEncoder):
        name = getattr(encoder, "backbone", type(encoder).__name__)
        raise ConfigError(
            f"{where}: masked-language-model training needs a trainable text backbone; "
            f"'{name}' is not one (frozen-only packaged and image backbones cannot be trained)"
        )
    if encoder.tokenizer.mask_token_id is None:
        raise ConfigError(
            f"{where}: backbone '{encoder.backbone}' has no mask token in its tokenizer; "
            "masked-language-model training needs one"
        )
    if not isinstance(getattr(encoder.model, "get_input_embeddings", lambda: None)(), nn.Embedding):
        raise ConfigError(
            f"{where}: backbone '{encoder.backbone}' has no input word embeddings to tie a "
            "language-model head to"
        )


def language_model_head(encoder: TextEncoder) -> MaskedLanguageModelHead:
    """A new MLM head sized for ``encoder``."""
    config = encoder.model.config
    vocab = encoder.model.get_input_embeddings().weight.shape[0]
    eps = float(getattr(config, "layer_norm_eps", 1e-12))
    return MaskedLanguageModelHead(encoder.hidden_size, vocab, eps)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    tokenizer: Any,
    generator: torch.Generator | None = None,
    rate: float = MASK_RATE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` for MLM: ``rate`` of the real (not special, not padding) tokens are
    chosen; of those 80 % become the mask token, 10 % a random token, 10 % stay. ``labels``
    holds the original id at chosen positions and :data:`IGNORED` elsewhere."""
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for token in set(tokenizer.all_special_ids):
        special |= input_ids == token
    candidates = attention_mask.bool() & ~special
    draw = torch.rand(input_ids.shape, generator=generator)
    chosen = candidates & (draw < rate)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORED))
    kind = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (kind < 0.8)] = tokenizer.mask_token_id
    replace = chosen & (kind >= 0.8) & (kind < 0.9)
    vocab = len(tokenizer)
    random_ids = torch.randint(vocab, input_ids.shape, generator=generator)
    inputs[replace] = random_ids[replace]
    return inputs, labels


def masked_lm_loss(
    encoder: TextEncoder,
    head: MaskedLanguageModelHead,
    texts: Sequence[str],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the masked tokens of ``texts`` (zero when none was chosen).

    Texts are cut as the encoder cuts them (``max_length``, ``truncation``, its prefix); the
    whole backbone runs (no stored frozen bottom: masked inputs differ every time)."""
    encoded = encoder.tokenize(list(texts))
    inputs, labels = mask_tokens(
        encoded["input_ids"], encoded["attention_mask"], encoder.tokenizer, generator
    )
    with computing_in(encoder.precision):
        hidden = encoder.model(
            input_ids=inputs, attention_mask=encoded["attention_mask"]
        ).last_hidden_state
        logits = head(hidden, encoder.model.get_input_embeddings().weight)
    chosen = labels != IGNORED
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits[chosen].float(), labels[chosen])


@torch.no_grad()
def evaluate_masked_lm(
    encoder: TextEncoder,
    head: MaskedLanguageModelHead,
    texts: Sequence[str],
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Mean MLM loss on ``texts`` with a fixed masking (``seed``), in evaluation mode."""
    modes = encoder.training, head.training
    encoder.eval()
    head.eval()
    generator = torch.Generator().manual_seed(seed)
    losses = [
        float(masked_lm_loss(encoder, head, texts[i : i + batch_size], generator))
        for i in range(0, len(texts), batch_size)
    ]
    encoder.train(modes[0])
    head.train(modes[1])
    return sum(losses) / max(1, len(losses))


@dataclasses.dataclass(frozen=True)
class LanguageModelSettings:
    """How long and how fast the backbone trains on the texts."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    seed: int = 0


@dataclasses.dataclass
class Adaptation:
    """What one MLM training did (or what the reused one had done), and its trained head."""

    key: str
    texts: int
    epochs: list[dict[str, float]]
    seconds: float
    reused: bool
    head: MaskedLanguageModelHead | None = dataclasses.field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "texts": self.texts,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
        }


def adaptation_key(
    encoder: TextEncoder, texts: Sequence[str], settings: LanguageModelSettings
) -> str:
    """The hash of what an adaptation depends on: the encoder, the set of texts, the settings."""
    digest = hashlib.sha256()
    for text in sorted(set(texts)):
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    what = {
        "encoder": encoder.identity(),
        "texts": digest.hexdigest(),
        "settings": dataclasses.asdict(settings),
        "mask_rate": MASK_RATE,
        "head": "bert-mlm-tied",
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()[:24]


# within an epoch, a line on stderr at most this often (an epoch on CPU can take many minutes)
REPORT_SECONDS = 60.0


def adapt_language_model(
    encoder: TextEncoder,
    texts: Sequence[str],
    settings: LanguageModelSettings,
    root: Path | None = None,
) -> Adaptation:
    """Continue ``encoder``'s MLM training on ``texts`` (all its weights train), in place.

    The texts are used as a set (sorted, duplicates once), so the same texts in another order
    give the same weights. With ``root``, the weights are kept in ``root/<key>/`` and a later
    call with the same encoder, texts and settings loads them (its cost charged in full).
    Afterwards ``encoder.adapted`` holds the key, which enters the encoder's identity (the
    embedding and frozen-bottom caches keep adapted states apart).
    """
    check_language_model(encoder, f"backbone '{encoder.backbone}'")
    key = adaptation_key(encoder, texts, settings)
    unique = sorted(set(texts))
    folder = root / key if root is not None else None
    if folder is not None and (folder / "adaptation.json").exists():
        from safetensors.torch import load_file

        record = json.loads((folder / "adaptation.json").read_text(encoding="utf-8"))
        encoder.model.load_state_dict(load_file(str(folder / "model.safetensors")))
        head = language_model_head(encoder)
        head.load_state_dict(load_file(str(folder / "head.safetensors")))
        encoder.adapted = key
        charge_reused(float(record["seconds"]), 0.0, [])
        seconds = float(record["seconds"])
        return Adaptation(key, len(unique), record["epochs"], seconds, True, head.eval())
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    head = language_model_head(encoder)
    generator = torch.Generator().manual_seed(settings.seed)
    was_cached, encoder.cached_layers = encoder.cached_layers, 0
    parameters = [*encoder.model.parameters(), *head.parameters()]
    trainable = [p for p in parameters if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps = max(1, math.ceil(len(unique) / settings.batch_size) * settings.epochs)
    scheduler = warmup_then_linear_decay(optimizer, steps, settings.warmup_fraction)
    encoder.train()
    head.train()
    epochs: list[dict[str, float]] = []
    last_report = started
    for epoch in progress(range(settings.epochs), f"language model on {len(unique)} texts"):
        order = torch.randperm(len(unique), generator=generator).tolist()
        losses = []
        for start in range(0, len(order), settings.batch_size):
            now = time.perf_counter()
            if start and now - last_report >= REPORT_SECONDS:  # a long epoch shows it is alive
                last_report = now
                done = epoch * len(order) + start
                left = (now - started) / done * (len(order) * settings.epochs - done)
                report(
                    f"language model: epoch {epoch + 1}/{settings.epochs}, {start:,} of "
                    f"{len(order):,} texts, MLM loss {sum(losses) / len(losses):.4f} so far, "
                    f"{duration(now - started)} so far, ETA {duration(left)}"
                )
            batch = [unique[i] for i in order[start : start + settings.batch_size]]
            optimizer.zero_grad()
            loss = masked_lm_loss(encoder, head, batch, generator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        epochs.append({"epoch": epoch + 1, "mlm_loss": sum(losses) / max(1, len(losses))})
        last_report = time.perf_counter()
        elapsed = last_report - started
        report(
            f"language model: epoch {epoch + 1}/{settings.epochs}, MLM loss "
            f"{epochs[-1]['mlm_loss']:.4f}, {len(unique)} texts, {duration(elapsed)} so far"
        )
    encoder.eval()
    encoder.cached_layers = was_cached
    encoder.adapted = key
    seconds = time.perf_counter() - started
    if folder is not None:
        from safetensors.torch import save

        state = {k: v.detach().contiguous().clone() for k, v in encoder.model.state_dict().items()}
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / "model.safetensors", save(state))
        head_state = {k: v.detach().contiguous().clone() for k, v in head.state_dict().items()}
        atomic_write_bytes(folder / "head.safetensors", save(head_state))
        atomic_write_json(
            folder / "adaptation.json",
            {
                "identity": encoder.identity(),
                "texts": len(unique),
                "epochs": epochs,
                "seconds": seconds,
                "settings": dataclasses.asdict(settings),
            },
        )
    return Adaptation(key, len(unique), epochs, seconds, False, head.eval())
