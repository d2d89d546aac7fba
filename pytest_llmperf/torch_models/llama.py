"""A Llama-style decoder for decoding benchmarks, with a static KV cache (no pytest in here).

The network is the one llama2.c runs, so that its checkpoints load as they are:

* token embedding, then ``n_layers`` blocks of ``x + attention(rmsnorm(x))`` and
  ``x + ffn(rmsnorm(x))``, a final RMSNorm and a classifier (optionally the embedding table);
* RMSNorm: ``x / sqrt(mean(x^2) + eps) * weight`` (eps = ``norm_eps``, 1e-5 in llama2.c);
* rotary position embedding on adjacent pairs ``(2j, 2j + 1)`` of every head, rotated by
  ``pos * rope_base^(-2j / head_dim)``: llama2.c's pairing, so its wq/wk need no permutation
  (Hugging Face checkpoints pair ``j`` with ``j + head_dim/2`` instead and would);
* grouped-query attention: query head ``h`` reads key/value head ``h // (n_heads / n_kv_heads)``;
* a SwiGLU feed-forward ``w2(silu(w1 x) * w3 x)``; no Linear has a bias.

Decoding follows the static-cache design of gpt-fast: :meth:`Llama.setup_caches` allocates, once,
key and value buffers of shape ``[batch, n_kv_heads, max_seq_length, head_dim]`` per layer and a
``[max_seq_length, max_seq_length]`` causal mask. :meth:`Llama.forward` takes the tokens and their
positions, writes the new keys and values at those positions and attends over the whole buffer,
with positions after the query masked out. Every shape is fixed by the cache size, so a compiled
decode step (one token at a varying position) compiles once, and positions beyond the current
one may hold stale values: the mask hides them, which is also how speculative decoding rolls
back a rejected proposal (the next forward simply overwrites those positions).

Linear layers are named as in llama2.c and gpt-fast (``attention.wq/wk/wv/wo``,
``feed_forward.w1/w2/w3``, ``output``) so that quantize.py and tensor_parallel.py find them.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..llama2c import models as l2c

__all__ = [
    "DECODE_SIZES",
    "INIT_LOGIT_STD",
    "INIT_STD",
    "Attention",
    "CheckpointError",
    "FeedForward",
    "KVCache",
    "Llama",
    "LlamaConfig",
    "RMSNorm",
    "TransformerBlock",
    "UnknownSize",
    "build_llama",
    "config_from_llama2c",
    "get_decode_config",
    "load_llama2c",
    "rope_table",
    "weight_bytes_per_token",
]

INIT_STD = 0.02  # standard deviation of the random Linear and embedding weights of build_llama
INIT_LOGIT_STD = 4.0  # build_llama scales the final norm so that the logits have about this std

_SHAPE_FIELDS = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "hidden_dim",
                 "max_seq_len")


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a decoder. ``head_dim = dim // n_heads``; ``tied_classifier`` means the output
    layer shares the token embedding table (llama2.c's "shared classifier")."""

    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    hidden_dim: int
    max_seq_len: int
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    tied_classifier: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"LlamaConfig name must be a non-empty string, not {self.name!r}")
        for field in _SHAPE_FIELDS:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"LlamaConfig {self.name!r}: {field} must be a positive int, not {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"LlamaConfig {self.name!r}: dim {self.dim} is not a multiple of "
                             f"n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LlamaConfig {self.name!r}: n_heads {self.n_heads} is not a multiple "
                             f"of n_kv_heads {self.n_kv_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"LlamaConfig {self.name!r}: head_dim {self.dim // self.n_heads} "
                             f"(dim / n_heads) is odd; RoPE rotates pairs")
        for field in ("norm_eps", "rope_base"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or not math.isfinite(value):
                raise ValueError(f"LlamaConfig {self.name!r}: {field} must be a positive finite "
                                 f"number, not {value!r}")
        if not isinstance(self.tied_classifier, bool):
            raise ValueError(f"LlamaConfig {self.name!r}: tied_classifier must be a bool, "
                             f"not {self.tied_classifier!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def describe(self) -> str:
        """One line: the shape fields and whether the classifier is tied."""
        return (f"dim {self.dim}, n_layers {self.n_layers}, n_heads {self.n_heads}, "
                f"n_kv_heads {self.n_kv_heads}, vocab_size {self.vocab_size}, "
                f"hidden_dim {self.hidden_dim}, max_seq_len {self.max_seq_len}, "
                f"{'tied' if self.tied_classifier else 'separate'} classifier")

    def same_shape(self, other: LlamaConfig) -> bool:
        """Equal in everything but the name."""
        return all(getattr(self, f.name) == getattr(other, f.name)
                   for f in fields(self) if f.name != "name")

    def params(self) -> int:
        """Parameter count (the tied table counted once)."""
        d, kv, h = self.dim, self.kv_dim, self.hidden_dim
        layer = 2 * d + 2 * d * d + 2 * kv * d + 3 * h * d
        classifier = 0 if self.tied_classifier else self.vocab_size * d
        return self.vocab_size * d + self.n_layers * layer + d + classifier


def config_from_llama2c(name: str, shape: l2c.ModelConfig) -> LlamaConfig:
    """The decoder configuration of a llama2.c checkpoint shape (seq_len becomes max_seq_len)."""
    return LlamaConfig(name, dim=shape.dim, n_layers=shape.n_layers, n_heads=shape.n_heads,
                       n_kv_heads=shape.n_kv_heads, vocab_size=shape.vocab_size,
                       hidden_dim=shape.hidden_dim, max_seq_len=shape.seq_len,
                       tied_classifier=shape.shared_classifier)


def _sizes() -> dict[str, LlamaConfig]:
    sizes = {
        # the unit-test model: GQA (2 query heads per kv head) and llama2.c's odd-looking hidden 172
        "tiny": LlamaConfig("tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512,
                            hidden_dim=172, max_seq_len=256),
        # its draft: a quarter of the width, one layer, the same vocabulary
        "draft-tiny": LlamaConfig("draft-tiny", dim=32, n_layers=1, n_heads=2, n_kv_heads=1,
                                  vocab_size=512, hidden_dim=86, max_seq_len=256),
    }
    for name in ("stories15M", "stories42M", "stories110M"):
        sizes[name] = config_from_llama2c(name, l2c.CONFIGS[name])
    # A draft for stories15M: the stories260K body (dim 64, 5 layers, 8 heads, 4 kv heads, hidden
    # 172) with stories15M's 32000-token vocabulary, tied classifier and seq_len. It reads about
    # 9 MB of float32 weights per token (8.2 MB of it the classifier) against stories15M's 61 MB.
    s260k = l2c.CONFIGS["stories260K"]
    s15m = l2c.CONFIGS["stories15M"]
    sizes["draft-15M"] = LlamaConfig(
        "draft-15M", dim=s260k.dim, n_layers=s260k.n_layers, n_heads=s260k.n_heads,
        n_kv_heads=s260k.n_kv_heads, vocab_size=s15m.vocab_size, hidden_dim=s260k.hidden_dim,
        max_seq_len=s15m.seq_len, tied_classifier=True)
    sizes["llama2-7b"] = LlamaConfig("llama2-7b", dim=4096, n_layers=32, n_heads=32, n_kv_heads=32,
                                     vocab_size=32000, hidden_dim=11008, max_seq_len=4096)
    return sizes


DECODE_SIZES: dict[str, LlamaConfig] = _sizes()


class UnknownSize(ValueError):
    """A decode model name that is not in :data:`DECODE_SIZES`."""


def get_decode_config(name: str) -> LlamaConfig:
    """The configuration named ``name``; :class:`UnknownSize` lists the known names otherwise."""
    try:
        return DECODE_SIZES[name]
    except (KeyError, TypeError):
        raise UnknownSize(
            f"unknown decode model {name!r} (known: {', '.join(DECODE_SIZES)})") from None


# -- modules -----------------------------------------------------------------------------------------

def rope_table(n_positions: int, head_dim: int, base: float, device) -> torch.Tensor:
    """``[n_positions, head_dim // 2, 2]`` float32: cos and sin of ``pos * base^(-2j/head_dim)``.

    Computed in float64 on the CPU (exact to float32 rounding, and the same on every device),
    then moved to ``device``."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    inv_freq = base ** (-exponents)
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * inv_freq[None, :]
    table = torch.stack((angles.cos(), angles.sin()), dim=-1).to(torch.float32)
    return table.to(device)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of the last dimension of ``x`` ``[B, T, heads, head_dim]`` by the
    angles of ``rope`` ``[T, head_dim // 2, 2]`` (in float32, the result in ``x``'s dtype)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    rope = rope.view(1, pairs.size(1), 1, pairs.size(3), 2)
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = rope[..., 0], rope[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight``, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class KVCache(nn.Module):
    """Static key and value buffers ``[batch, kv_heads, max_seq_length, head_dim]`` (zeroed)."""

    k_cache: torch.Tensor  # buffers, registered in __init__
    v_cache: torch.Tensor

    def __init__(self, max_batch_size: int, n_kv_heads: int, max_seq_length: int, head_dim: int,
                 dtype: torch.dtype, device) -> None:
        super().__init__()
        shape = (max_batch_size, n_kv_heads, max_seq_length, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device),
                             persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device),
                             persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k``, ``v`` ``[B, kv_heads, T, head_dim]`` at positions ``input_pos`` ``[T]`` and
        return the (first B rows of the) whole buffers."""
        bsz = k.size(0)
        k_all = self.k_cache[:bsz]
        v_all = self.v_cache[:bsz]
        k_all[:, :, input_pos] = k.to(k_all.dtype)
        v_all[:, :, input_pos] = v.to(v_all.dtype)
        return k_all, v_all


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE. ``n_heads``/``n_kv_heads`` are the heads this module
    computes (tensor_parallel.shard_ lowers them to the local share)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads
        self.head_dim = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        hd = self.head_dim
        q = self.wq(x).view(bsz, seqlen, self.n_heads, hd)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, hd)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, hd)
        q = apply_rope(q, rope).transpose(1, 2)
        k = apply_rope(k, rope).transpose(1, 2)
        v = v.transpose(1, 2)
        if input_pos is not None:
            if self.kv_cache is None:
                raise RuntimeError("Attention.forward with input_pos needs setup_caches() first")
            k, v = self.kv_cache.update(input_pos, k, v)
        group = self.n_heads // self.n_kv_heads
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        y = y.transpose(1, 2).reshape(bsz, seqlen, self.n_heads * hd)
        return self.wo(y)


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None,
                input_pos: torch.Tensor | None) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask, input_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    """The decoder. Call :meth:`setup_caches` before :meth:`forward` with positions."""

    causal_mask: torch.Tensor  # buffers, registered by setup_caches
    rope_cache: torch.Tensor

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.tie_weights()
        self.max_batch_size = -1
        self.max_seq_length = -1
        self.tp_rank = 0  # tensor_parallel.shard_ sets both
        self.tp_world_size = 1

    @property
    def blocks(self) -> Iterable[TransformerBlock]:
        """The transformer blocks of :attr:`layers`, typed as what they are."""
        return cast("Iterable[TransformerBlock]", self.layers)

    def tie_weights(self) -> None:
        """Make the classifier share the embedding table when the configuration says so."""
        if self.config.tied_classifier:
            self.output.weight = self.tok_embeddings.weight

    @property
    def is_tied(self) -> bool:
        """Whether the classifier currently reads the embedding table (false after int8
        quantization, which gives the classifier its own int8 copy)."""
        return getattr(self.output, "weight", None) is self.tok_embeddings.weight

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        """Allocate zeroed KV caches for ``max_batch_size`` sequences of up to ``max_seq_length``
        positions (at most ``config.max_seq_len``), the causal mask and the RoPE table, in the
        embedding's dtype and on its device. Reallocates every time it is called."""
        cfg = self.config
        if max_batch_size <= 0:
            raise ValueError(f"max_batch_size must be positive, not {max_batch_size}")
        if not 0 < max_seq_length <= cfg.max_seq_len:
            raise ValueError(f"max_seq_length {max_seq_length} must be in 1..{cfg.max_seq_len} "
                             f"(max_seq_len of decode model {cfg.name!r})")
        ref = self.tok_embeddings.weight
        dtype, device = ref.dtype, ref.device
        for block in self.blocks:
            att = block.attention
            att.kv_cache = KVCache(max_batch_size, att.n_kv_heads, max_seq_length, att.head_dim,
                                   dtype, device)
        mask = torch.ones(max_seq_length, max_seq_length, dtype=torch.bool, device=device).tril()
        self.register_buffer("causal_mask", mask, persistent=False)
        self.register_buffer("rope_cache", rope_table(max_seq_length, cfg.head_dim, cfg.rope_base,
                                                      device), persistent=False)
        self.max_batch_size = max_batch_size
        self.max_seq_length = max_seq_length

    def clear_caches(self) -> None:
        """Free the caches (forward then needs ``input_pos=None`` or a new setup_caches)."""
        for block in self.blocks:
            block.attention.kv_cache = None
        for name in ("causal_mask", "rope_cache"):
            if name in self._buffers:
                del self._buffers[name]
        self.max_batch_size = -1
        self.max_seq_length = -1

    @property
    def has_caches(self) -> bool:
        return self.max_seq_length > 0

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` (float32) for tokens ``idx`` ``[B, T]``.

        With ``input_pos`` (``[T]``, int64): the tokens sit at those positions; their keys and
        values are written into the cache and attention covers the cache up to each position.
        Without it: a plain causal forward of positions ``0..T-1`` that neither needs nor touches
        the cache (the reference the cached path is tested against)."""
        x = self.tok_embeddings(idx)
        if input_pos is None:
            rope = rope_table(idx.size(1), self.config.head_dim, self.config.rope_base, idx.device)
            mask = None
        else:
            if self.max_seq_length < 0:
                raise RuntimeError("Llama.forward with input_pos needs setup_caches() first")
            rope = self.rope_cache[input_pos]
            mask = self.causal_mask[None, None, input_pos]
        for block in self.layers:
            x = block(x, rope, mask, input_pos)
        return self.output(self.norm(x)).float()


def _init_weights(model: Llama, seed: int) -> None:
    """Seeded normal(0, INIT_STD) matrices and embedding, unit norms, and a final norm of
    ``INIT_LOGIT_STD / (sqrt(dim) * INIT_STD)`` so that the logits are peaked (std about 4, like
    a trained model's) instead of nearly flat."""
    device = model.tok_embeddings.weight.device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    cfg = model.config
    with torch.no_grad():
        for name, param in model.named_parameters():  # a tied table is listed once
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, INIT_STD, generator=gen)
        model.norm.weight.fill_(INIT_LOGIT_STD / (math.sqrt(cfg.dim) * INIT_STD))


def build_llama(cfg: LlamaConfig, device="cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> Llama:
    """A :class:`Llama` of shape ``cfg`` with seeded random weights (see ``_init_weights``),
    created directly on ``device`` (``"meta"`` gives a weightless model for size arithmetic).

    The weights depend on the seed and, through its generator, on the device type."""
    with torch.device("meta"):
        model = Llama(cfg)
    model.to_empty(device=device)
    model.tie_weights()
    if torch.device(device).type != "meta":
        _init_weights(model, seed)
    return model.to(dtype).eval()


# -- llama2.c checkpoints ------------------------------------------------------------------------------

class CheckpointError(ValueError):
    """A llama2.c checkpoint that cannot be loaded; one line naming the file."""


def _shown(name: str) -> str:
    """A file name as a one-line message shows it: as it is, or as its repr when it holds a
    newline or another character that is not printable."""
    return name if name.isprintable() else repr(name)


def load_llama2c(path, device="cpu", dtype: torch.dtype = torch.float32,
                 expected: LlamaConfig | None = None) -> Llama:
    """Load a llama2.c legacy ("version 0") checkpoint into a :class:`Llama`.

    The header is validated against the file size by ``models.read_checkpoint_header`` (its
    :class:`~pytest_llmperf.llama2c.models.ModelFileError` becomes a :class:`CheckpointError`
    with the same message). With ``expected``, the checkpoint's shape must equal it (name aside)
    or a :class:`CheckpointError` names the file and both shapes. The float32 body is read with
    one ``readinto`` into a buffer that ``torch.frombuffer`` views without copying, then copied
    tensor by tensor into the model (no Python floats): a stories110M file (418 MiB) loads in
    about 2 s on the project's 2-core VM. The model's name is ``expected.name``, or
    the file's stem. A shared classifier is tied to the embedding table."""
    name = os.fspath(path)
    shown = _shown(name)
    try:
        shape = l2c.read_checkpoint_header(name)
    except l2c.ModelFileError as exc:
        raise CheckpointError(str(exc).replace(name, shown)) from None
    cfg = config_from_llama2c(expected.name if expected else Path(name).stem, shape)
    if expected is not None and not expected.same_shape(cfg):
        raise CheckpointError(
            f"checkpoint {shown} has {cfg.describe()}, but decode model {expected.name!r} "
            f"expects {expected.describe()}")
    n_floats = shape.n_floats()
    body = bytearray(4 * n_floats)
    try:
        with open(name, "rb") as fh:
            fh.seek(l2c.LEGACY_HEADER_BYTES)
            got = fh.readinto(body)
    except OSError as exc:
        raise CheckpointError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if got != len(body):
        raise CheckpointError(f"{shown}: read {got} bytes of weights, expected {len(body)}: "
                              f"the file changed while it was read")
    raw = torch.frombuffer(body, dtype=torch.uint8)
    if sys.byteorder == "big":  # the file is little-endian
        raw = raw.view(-1, 4).flip(1).contiguous().view(-1)
    flat = raw.view(torch.float32)
    d, kv, h, L = shape.dim, shape.kv_dim, shape.hidden_dim, shape.n_layers
    pos = 0

    def take(*dims: int) -> torch.Tensor:
        nonlocal pos
        n = math.prod(dims)
        out = flat[pos:pos + n].view(*dims)
        pos += n
        return out

    with torch.device("meta"):
        model = Llama(cfg)
    model.to_empty(device=device)
    model.tie_weights()
    tensors = {"tok_embeddings.weight": take(shape.vocab_size, d)}
    per_layer = (("attention_norm.weight", (d,)), ("attention.wq.weight", (d, d)),
                 ("attention.wk.weight", (kv, d)), ("attention.wv.weight", (kv, d)),
                 ("attention.wo.weight", (d, d)), ("ffn_norm.weight", (d,)),
                 ("feed_forward.w1.weight", (h, d)), ("feed_forward.w2.weight", (d, h)),
                 ("feed_forward.w3.weight", (h, d)))
    for key, dims in per_layer:
        stacked = take(L, *dims)
        for layer in range(L):
            tensors[f"layers.{layer}.{key}"] = stacked[layer]
    tensors["norm.weight"] = take(d)
    take(shape.seq_len * shape.head_size)  # the two RoPE tables: recomputed, not read
    if not shape.shared_classifier:
        tensors["output.weight"] = take(shape.vocab_size, d)
    params = dict(model.named_parameters())
    if set(params) != set(tensors):  # an internal inconsistency, not a file problem
        raise RuntimeError(f"load_llama2c: parameters {sorted(set(params) ^ set(tensors))} "
                           f"do not match the checkpoint layout")
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key].copy_(tensor)
    return model.to(dtype).eval()


# -- memory traffic --------------------------------------------------------------------------------------

def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decoded token reads from memory.

    Counted: every Linear's weight (for an int8 layer its int8 weight plus its per-channel
    scales), every RMSNorm weight, the classifier, and one row of the token embedding table for
    the lookup; but when the classifier is tied to the embedding table, the table is counted once
    (as the classifier: its rows are all read, the lookup row among them). Not counted: the KV
    cache, which grows with the position, activations, the RoPE table and the mask. Works on a
    ``meta`` model. A tensor shared by several modules is counted once."""
    seen: set[int] = set()
    total = 0

    def count(t: torch.Tensor | None) -> None:
        nonlocal total
        if t is None or id(t) in seen:
            return
        seen.add(id(t))
        total += t.numel() * t.element_size()

    embedding = None
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            embedding = module
            continue
        if isinstance(module, nn.Linear):
            count(module.weight)
            count(module.bias)
        elif isinstance(module, RMSNorm):
            count(module.weight)
        elif hasattr(module, "scales") and getattr(module, "weight", None) is not None:
            # a weight-only quantized Linear (quantize.Int8WeightOnlyLinear): two buffers
            count(cast(torch.Tensor, module.weight))
            count(cast(torch.Tensor, module.scales))
    if embedding is not None and id(embedding.weight) not in seen:
        table = embedding.weight
        total += table.size(1) * table.element_size()
    return total
