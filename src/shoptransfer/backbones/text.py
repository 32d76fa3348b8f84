"""Text backbones: a transformer encoder with mean pooling, and batched frozen encoding."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.backbones.cache import BottomStore
from shoptransfer.backbones.precision import check_precision, computing_in
from shoptransfer.backbones.registry import get_backbone_spec, resolve_backbone
from shoptransfer.errors import ConfigError
from shoptransfer.progress import progress


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@functools.lru_cache(maxsize=8)
def _load_tokenizer_and_config(location: str) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(location), AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ConfigError(
            f"backbone '{location}': not a registered name, a local model folder, or a hub id "
            f"in the local cache{offline}: {str(exc).splitlines()[0]}"
        ) from None


def load_tokenizer(backbone: str) -> Any:
    """The tokenizer of a text ``backbone`` (a name, folder or hub id); a ConfigError when it
    does not load."""
    return _load_tokenizer_and_config(resolve_backbone(backbone))[0]


def text_length_limit(backbone: str) -> int:
    """The most tokens a text backbone reads per text: its position embeddings (or its
    tokenizer's limit, where that is lower); no limit for a backbone its package computes."""
    spec = get_backbone_spec(backbone)
    if spec is not None and spec.engine is not None:
        return 10**6
    tokenizer, config = _load_tokenizer_and_config(resolve_backbone(backbone))
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
    known = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 10**6]
    return min(known) if known else 10**6


TRUNCATIONS = ("head", "head+tail")


class TextEncoder(nn.Module):
    """A transformer encoder that maps tokenised text to one mean-pooled vector per text.

    ``pretrained=False`` builds the same network with random weights (the scratch baseline).
    ``truncation`` says which tokens a long text keeps: the first ``max_length`` (``head``), or
    the first quarter and the last three quarters of them (``head+tail``: reviews often state
    their verdict at the end; Sun et al., CCL 2019).
    """

    def __init__(
        self,
        backbone: str = "minilm-l6",
        max_length: int | None = None,
        pretrained: bool = True,
        truncation: str = "head",
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        from transformers import AutoModel

        if truncation not in TRUNCATIONS:
            raise ConfigError(f"truncation '{truncation}'; expected one of {list(TRUNCATIONS)}")
        spec = get_backbone_spec(backbone)
        self.backbone = backbone
        self.location = resolve_backbone(backbone)
        # at most what the backbone reads (the runner reports a cap: capped_settings)
        self.max_length = min(
            int(max_length or (spec.default_max_length if spec else 128)),
            text_length_limit(backbone),
        )
        self.pretrained = pretrained
        self.truncation = truncation
        self.text_prefix = spec.text_prefix if spec else ""
        self.precision = check_precision(precision)
        self.cached_layers = 0
        # the key of a masked-language-model adaptation these weights went through (or None)
        self.adapted: str | None = None
        self.tokenizer, config = _load_tokenizer_and_config(self.location)
        if pretrained:
            self.model = AutoModel.from_pretrained(self.location)
        else:
            self.model = AutoModel.from_config(config)
        self.hidden_size = int(config.hidden_size)

    def identity(self) -> dict[str, Any]:
        """What determines this encoder's frozen output (used as the embedding cache key)."""
        return {
            "backbone": self.backbone,
            "location": self.location,
            "max_length": self.max_length,
            "pooling": "mean",
            "pretrained": self.pretrained,
            **({"truncation": self.truncation} if self.truncation != "head" else {}),
            **({"text_prefix": self.text_prefix} if self.text_prefix else {}),
            **({"precision": self.precision} if self.precision != "fp32" else {}),
            **({"adapted": self.adapted} if self.adapted else {}),
        }

    def layers(self) -> list[nn.Module]:
        """The encoder's layers from input to output: embeddings, then each transformer block."""
        blocks = getattr(getattr(self.model, "encoder", None), "layer", None)
        embeddings = getattr(self.model, "embeddings", None)
        if blocks is None or embeddings is None:
            raise ConfigError(
                f"backbone '{self.backbone}': cannot find its embeddings and encoder layers"
            )
        return [embeddings, *blocks]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.text_prefix:
            texts = [self.text_prefix + text for text in texts]
        if self.truncation == "head":
            batch = self.tokenizer(
                list(texts),
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
        else:
            tok = self.tokenizer
            first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
            last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
            prefix = [first] if first is not None else []
            suffix = [last] if last is not None else []
            room = self.max_length - len(prefix) - len(suffix)
            head = room // 4
            pieces = tok(list(texts), add_special_tokens=False)["input_ids"]
            ids = [
                prefix + (p if len(p) <= room else p[:head] + p[len(p) - (room - head) :]) + suffix
                for p in pieces
            ]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return _mean_pool(hidden, attention_mask)

    def embed(self, batch: dict[str, Any]) -> torch.Tensor:
        """Pooled features of ``batch["texts"]`` (the interface a Classifier's encoder has)."""
        encoded = self.tokenize(batch["texts"])
        if not self.cached_layers:
            return self(**encoded)
        hidden = self._stored_bottom(batch["texts"], encoded)
        mask = encoded["attention_mask"]
        extended = _attention_mask(self.model.config, hidden, mask)
        for block in self.layers()[self.cached_layers :]:
            hidden = _block_output(block(hidden, extended))
        return _mean_pool(hidden, mask)

    def cache_frozen_bottom(self, layers: int, store: BottomStore | None = None) -> None:
        """Compute the bottom ``layers`` (embeddings first) once per text and keep the result.

        For recipes that freeze pretrained bottom layers: training then runs only the layers
        above (no dropout below: the stored states are the frozen layers in evaluation mode).
        The states go to ``store`` (shared by the encoders handed the same one, such as a run's
        embedding cache's), or to a store of this encoder's own.
        """
        if layers and not self.pretrained:
            raise ValueError("only pretrained, frozen bottom layers can be cached")
        if not 0 <= layers < len(self.layers()):
            raise ValueError(f"cached layers must be in [0, {len(self.layers()) - 1}]")
        self.cached_layers = layers
        self.bottom_store = store if store is not None else BottomStore()

    def _stored_bottom(
        self, texts: Sequence[str], encoded: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        store = self.bottom_store
        identity = tuple(sorted(self.identity().items()))
        precision = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        keys = [(identity, self.cached_layers, precision, text) for text in texts]
        missing = sorted({i for i, key in enumerate(keys) if key not in store})
        if missing:
            ids = encoded["input_ids"][missing]
            mask = encoded["attention_mask"][missing]
            layers = self.layers()[: self.cached_layers]
            modes = [layer.training for layer in layers]
            with torch.no_grad():
                for layer in layers:
                    layer.eval()
                hidden = layers[0](input_ids=ids)
                extended = _attention_mask(self.model.config, hidden, mask)
                for block in layers[1:]:
                    hidden = _block_output(block(hidden, extended))
                for layer, mode in zip(layers, modes):
                    layer.train(mode)
            for row, i in enumerate(missing):
                store.put(keys[i], hidden[row, : int(mask[row].sum())])
        stored = store.take(keys)
        out = torch.zeros(len(texts), encoded["input_ids"].shape[1], self.hidden_size)
        for row, states in enumerate(stored):
            out[row, : states.shape[0]] = states.float()
        return out

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], batch_size: int = 64, show_progress: bool = True
    ) -> np.ndarray:
        """Embed ``texts`` without gradients, batching texts of similar length together.

        Rows come back in input order.
        """
        was_training = self.training
        self.eval()
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")[::-1]
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in progress(
            starts, description=f"encoding with {self.backbone}", enabled=show_progress
        ):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            with computing_in(self.precision):
                out[idx] = self(**batch).float().numpy()
        self.train(was_training)
        return out


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _attention_mask(config: Any, hidden: torch.Tensor, mask: torch.Tensor) -> Any:
    """The attention mask a transformer block expects, as the full model would build it."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)


def _block_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output
