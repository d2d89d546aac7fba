"""Transformer shapes for the roofline estimates: a named table, each entry a ModelConfig.

The LLaMA shapes are the LLaMA paper's table 2 (dimension, heads, layers; the SwiGLU hidden size
of the released checkpoints); Llama 2 70B has 8 key/value heads (grouped-query attention)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import OneLine


class RooflineError(OneLine, ValueError):
    """An estimate that cannot be made (unknown model, device or scheme; a bad layout); one line."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    gated_mlp: bool = True  # SwiGLU: three matrices (gate, up, down); GPT/OPT style: two
    max_seq_len: int = 2048
    tied: bool = False  # the output projection is the input embedding (llama2.c's models)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_attention_params(self) -> int:
        """Q and the output projection (hidden x hidden each), K and V (hidden x kv_dim each)."""
        return 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_dim

    def layer_mlp_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.ffn

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def embeddings(self) -> int:
        """How many vocab x hidden matrices the model stores: 1 when tied, else 2."""
        return 1 if self.tied else 2

    def params(self) -> int:
        """All parameters: the layers (norm weights included), the input embedding, the output
        projection (unless tied) and the final norm."""
        per_layer = self.layer_attention_params() + self.layer_mlp_params() + 2 * self.hidden
        return self.layers * per_layer + self.embeddings * self.embedding_params() + self.hidden


MODELS = {m.name: m for m in (
    ModelConfig("llama-7b", 4096, 32, 32, 32, 11008, 32000),
    ModelConfig("llama-13b", 5120, 40, 40, 40, 13824, 32000),
    ModelConfig("llama-33b", 6656, 60, 52, 52, 17920, 32000),
    ModelConfig("llama-65b", 8192, 80, 64, 64, 22016, 32000),
    ModelConfig("llama-2-7b", 4096, 32, 32, 32, 11008, 32000, max_seq_len=4096),
    ModelConfig("llama-2-13b", 5120, 40, 40, 40, 13824, 32000, max_seq_len=4096),
    ModelConfig("llama-2-70b", 8192, 80, 64, 8, 28672, 32000, max_seq_len=4096),
    # llama2.c's TinyStories models (their checkpoint headers)
    ModelConfig("stories260K", 64, 5, 8, 4, 172, 512, max_seq_len=512, tied=True),
    ModelConfig("stories15M", 288, 6, 6, 6, 768, 32000, max_seq_len=256, tied=True),
    ModelConfig("stories42M", 512, 8, 8, 8, 1376, 32000, max_seq_len=1024, tied=True),
    # the transformer suite's sizes (CS336: SwiGLU, tied embeddings, vocabulary 10000, context 1024)
    ModelConfig("cs336-small", 768, 12, 12, 12, 3072, 10000, max_seq_len=1024, tied=True),
    ModelConfig("cs336-medium", 1024, 24, 16, 16, 4096, 10000, max_seq_len=1024, tied=True),
    ModelConfig("cs336-large", 1280, 36, 20, 20, 5120, 10000, max_seq_len=1024, tied=True),
    ModelConfig("cs336-xl", 1600, 48, 25, 25, 6400, 10000, max_seq_len=1024, tied=True),
    ModelConfig("cs336-2.7B", 2560, 32, 32, 32, 10240, 10000, max_seq_len=1024, tied=True),
    # GPT/OPT style: a two-matrix MLP (4 x hidden), no gate
    ModelConfig("gpt2", 768, 12, 12, 12, 3072, 50257, gated_mlp=False, max_seq_len=1024, tied=True),
    ModelConfig("gpt2-xl", 1600, 48, 25, 25, 6400, 50257, gated_mlp=False, max_seq_len=1024, tied=True),
    ModelConfig("opt-6.7b", 4096, 32, 32, 32, 16384, 50272, gated_mlp=False, tied=True),
    ModelConfig("opt-13b", 5120, 40, 40, 40, 20480, 50272, gated_mlp=False, tied=True),
    ModelConfig("opt-30b", 7168, 48, 56, 56, 28672, 50272, gated_mlp=False, tied=True),
    ModelConfig("stories110M", 768, 12, 12, 12, 2048, 32000, max_seq_len=1024, tied=True),
)}


def model(name: str) -> ModelConfig:
    try:
        return MODELS[name]
    except KeyError:
        raise RooflineError(f"unknown model {name!r} (known: {', '.join(MODELS)})") from None


def from_llama2c(path: Path) -> ModelConfig:
    """A llama2.c checkpoint's shape from its header: the legacy 28-byte header (7 int32: dim,
    hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means an
    unshared classifier) or version 1/2's (magic 0x616b3432, version, the same 7, a shared flag)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(37)
    except OSError as exc:
        raise RooflineError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from None
    if len(head) >= 4 and struct.unpack("<I", head[:4])[0] == 0x616B3432:
        if len(head) < 37:
            raise RooflineError(f"{path}: a llama2.c version header cut short ({len(head)} bytes)")
        dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", head[8:36])
        tied = head[36] != 0
    else:
        if len(head) < 28:
            raise RooflineError(f"{path}: not a llama2.c checkpoint ({len(head)} bytes, the header needs 28)")
        dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", head[:28])
        tied, vocab = vocab > 0, abs(vocab)
    values = {"dim": dim, "hidden_dim": hidden, "n_layers": layers, "n_heads": heads, "n_kv_heads": kv,
              "vocab_size": vocab, "seq_len": seq}
    bad = [f"{k}={v}" for k, v in values.items() if v <= 0]
    if bad or dim % heads or heads % kv:
        raise RooflineError(f"{path}: not a llama2.c checkpoint header ({', '.join(bad) or 'heads do not divide'})")
    return ModelConfig(Path(path).stem, dim, layers, heads, kv, hidden, vocab, max_seq_len=seq, tied=tied)


def from_config(path: Path) -> ModelConfig:
    """A Hugging Face ``config.json``'s shape (LLaMA-family keys; ``n_embd``-style GPT-2 keys)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RooflineError(f"{path}: cannot read the model config: {exc}") from None
    if not isinstance(data, dict):
        raise RooflineError(f"{path}: a model config must be a JSON object")

    def get(*keys: str, default: int | None = None) -> int:
        for k in keys:
            if isinstance(data.get(k), int) and not isinstance(data.get(k), bool):
                return int(data[k])
        if default is not None:
            return default
        raise RooflineError(f"{path}: no {' or '.join(keys)} (an integer) in the model config")

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head")
    gated = "intermediate_size" in data and data.get("model_type") not in ("gpt2", "opt")
    ffn = get("intermediate_size", "ffn_dim", "n_inner", default=4 * hidden)
    return ModelConfig(str(data.get("_name_or_path") or Path(path).parent.name or "config"), hidden,
                       get("num_hidden_layers", "n_layer"), heads, get("num_key_value_heads", default=heads), ffn,
                       get("vocab_size"), gated_mlp=gated, max_seq_len=get("max_position_embeddings", "n_positions",
                                                                         default=2048),
                       tied=bool(data.get("tie_word_embeddings", not gated)))
