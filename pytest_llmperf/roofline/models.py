"""Transformer shapes for the roofline estimates: a named table, each entry a ModelConfig.

The LLaMA shapes are the LLaMA paper's table 2 (dimension, heads, layers; the SwiGLU hidden size
of the released checkpoints); Llama 2 70B has 8 key/value heads (grouped-query attention)."""

from __future__ import annotations

from dataclasses import dataclass

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
    ModelConfig("stories110M", 768, 12, 12, 12, 2048, 32000, max_seq_len=1024, tied=True),
)}


def model(name: str) -> ModelConfig:
    try:
        return MODELS[name]
    except KeyError:
        raise RooflineError(f"unknown model {name!r} (known: {', '.join(MODELS)})") from None
