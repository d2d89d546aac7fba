"""The decoder-only transformer language model of the training benchmarks (CS336 style).

This module is plain PyTorch and knows nothing about pytest; the plugin imports it lazily when a
test asks for a torch workload. It provides:

* :class:`TransformerConfig` and the :data:`SIZES` table (``get_config`` looks sizes up by name);
* :func:`build_model`, a seeded, device-direct constructor of :class:`TransformerLM`;
* analytic cost models: :func:`param_count`, :func:`flops_per_step` and :func:`memory_estimate`;
* :func:`make_step`, which packages one benchmark step (forward, forward+backward or a full AdamW
  training step) as a callable :class:`Step` that never synchronises the device.

Architecture (pre-norm, decoder-only)::

    x = E[ids]                                   # token embedding, E is vocab x d_model
    for each layer:
        x = x + Attention(RMSNorm(x))            # causal multi-head attention with RoPE on q, k
        x = x + SwiGLU(RMSNorm(x))               # w2(silu(w1 x) * w3 x)
    logits = RMSNorm(x) @ E^T                    # output projection tied to the embedding

No projection has a bias. RMSNorm (eps 1e-5) is computed in float32 and cast back to the dtype of
its input. RoPE pairs *adjacent* features of each head: feature ``2i`` and ``2i + 1`` form the
2-D vector rotated by the angle ``pos * theta ** (-2i / head_dim)``.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .lm_shapes import (
    ATTENTIONS,
    KINDS,
    SIZES,
    MemoryEstimate,
    TransformerConfig,
    UnknownSize,
    _check_kind,
    flops_per_step,
    get_config,
    memory_estimate,
    param_count,
)

__all__ = [
    "ATTENTIONS",
    "KINDS",
    "SIZES",
    "MemoryEstimate",
    "Step",
    "TransformerConfig",
    "TransformerLM",
    "UnknownSize",
    "build_model",
    "flops_per_step",
    "get_config",
    "make_step",
    "memory_estimate",
    "param_count",
]


RMS_EPS = 1e-5


# -- modules ---------------------------------------------------------------------------------------

class Linear(nn.Module):
    """``y = x W^T`` without bias. The weight is left uninitialised (``build_model`` fills it),
    so constructing a model never touches the global random generator."""

    def __init__(self, d_in: int, d_out: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.weight = nn.Parameter(torch.empty(d_out, d_in, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}"


class Embedding(nn.Module):
    """Token embedding table (``vocab x d_model``); its weight is also the output projection."""

    def __init__(self, vocab_size: int, d_model: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model, dtype=dtype))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * g``, evaluated in float32 and returned in ``x``'s dtype."""

    def __init__(self, d_model: int, eps: float = RMS_EPS, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        inv_rms = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (xf * inv_rms * self.weight.float()).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE cosines and sines (float32 buffers, ``context_length x head_dim / 2``).

    Pairing convention: features ``2i`` and ``2i + 1`` of a head are rotated together by
    ``pos * theta ** (-2i / head_dim)`` (the interleaved convention of the original RoPE paper)."""

    cos: torch.Tensor  # buffers, registered in __init__
    sin: torch.Tensor

    def __init__(self, head_dim: int, context_length: int, theta: float) -> None:
        super().__init__()
        # Computed on the CPU in float64 so every device gets the same, accurate table.
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu") / head_dim
        inv_freq = theta ** -exponents
        positions = torch.arange(context_length, dtype=torch.float64, device="cpu")
        angles = torch.outer(positions, inv_freq)
        target = torch.empty(0).device          # the ambient device (build_model sets it)
        self.register_buffer("cos", angles.cos().to(target, torch.float32), persistent=False)
        self.register_buffer("sin", angles.sin().to(target, torch.float32), persistent=False)

    def tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``length`` rows of the cosine and sine tables."""
        return self.cos[:length], self.sin[:length]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent feature pairs of ``x`` (``[..., T, head_dim]``) by the RoPE angles.

    The arithmetic is done in float32 and the result has ``x``'s dtype. Only the (constant) tables
    are saved for backward, so RoPE adds no activation memory of its own."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with RoPE on queries and keys, no biases."""

    def __init__(self, cfg: TransformerConfig, attention: str = "sdpa",
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r} (known: {', '.join(ATTENTIONS)})")
        self.attention = attention
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        d = cfg.d_model
        self.q_proj = Linear(d, d, dtype)
        self.k_proj = Linear(d, d, dtype)
        self.v_proj = Linear(d, d, dtype)
        self.o_proj = Linear(d, d, dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        heads = (batch, length, self.num_heads, self.head_dim)
        q = apply_rope(self.q_proj(x).view(heads).transpose(1, 2), cos, sin)
        k = apply_rope(self.k_proj(x).view(heads).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(heads).transpose(1, 2)
        if self.attention == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = naive_causal_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, d_model))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, attention={self.attention!r}"


def naive_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference attention: ``softmax(q k^T / sqrt(d_head) + causal mask) v``.

    Materialises the ``[batch, heads, T, T]`` score matrix; the softmax runs in float32."""
    length = q.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    probs = torch.softmax(scores.float().masked_fill(future, float("-inf")), dim=-1)
    return torch.matmul(probs.to(v.dtype), v)


class SwiGLU(nn.Module):
    """Gated feed-forward block ``w2(silu(w1 x) * w3 x)``, no biases."""

    def __init__(self, d_model: int, d_ff: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, dtype)
        self.w2 = Linear(d_ff, d_model, dtype)
        self.w3 = Linear(d_model, d_ff, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """One pre-norm decoder layer: attention and SwiGLU sub-blocks, each with a residual."""

    def __init__(self, cfg: TransformerConfig, attention: str = "sdpa",
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.ln1 = RMSNorm(cfg.d_model, dtype=dtype)
        self.attn = CausalSelfAttention(cfg, attention, dtype)
        self.ln2 = RMSNorm(cfg.d_model, dtype=dtype)
        self.ffn = SwiGLU(cfg.d_model, cfg.d_ff, dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.ffn(self.ln2(x))


class TransformerLM(nn.Module):
    """Decoder-only language model; ``forward(ids[B, T]) -> logits[B, T, vocab]``.

    The output projection reuses ``token_embeddings.weight`` (one shared parameter)."""

    def __init__(self, cfg: TransformerConfig, attention: str = "sdpa",
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r} (known: {', '.join(ATTENTIONS)})")
        self.config = cfg
        self.attention = attention
        self.token_embeddings = Embedding(cfg.vocab_size, cfg.d_model, dtype)
        self.layers = nn.ModuleList(TransformerBlock(cfg, attention, dtype)
                                    for _ in range(cfg.num_layers))
        self.ln_final = RMSNorm(cfg.d_model, dtype=dtype)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.context_length, cfg.rope_theta)

    @property
    def output_weight(self) -> torch.Tensor:
        """The output projection matrix: the token embedding table itself."""
        return self.token_embeddings.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"expected token ids of shape [batch, seq_len], got {tuple(ids.shape)}")
        length = ids.shape[1]
        if length > self.config.context_length:
            raise ValueError(f"sequence length {length} exceeds the model's context_length "
                             f"{self.config.context_length}")
        cos, sin = self.rope.tables(length)
        x = self.token_embeddings(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return F.linear(self.ln_final(x), self.token_embeddings.weight)


# -- construction ----------------------------------------------------------------------------------

_TRUNCATION = 3.0                                   # standard deviations
_ERF_BOUND = math.erf(_TRUNCATION / math.sqrt(2.0))


def _trunc_normal(tensor: torch.Tensor, std: float, generator: torch.Generator) -> None:
    """Fill ``tensor`` from N(0, std^2) truncated at three standard deviations.

    Inverse-CDF sampling, in place: ``u`` uniform on ``[-erf(3/sqrt 2), erf(3/sqrt 2)]`` maps to
    ``std * sqrt(2) * erfinv(u)``, which is exactly the truncated normal. Unlike rejection
    sampling it needs no data-dependent loop (no device synchronisation) and no extra memory for
    float32 parameters; other dtypes are drawn in float32 and copied."""
    same_device = tensor.device.type == generator.device.type
    work = tensor if same_device and tensor.dtype in (torch.float32, torch.float64) else \
        torch.empty(tensor.shape, dtype=torch.float32, device=generator.device)
    work.uniform_(-_ERF_BOUND, _ERF_BOUND, generator=generator)
    work.erfinv_().mul_(std * math.sqrt(2.0)).clamp_(-_TRUNCATION * std, _TRUNCATION * std)
    if work is not tensor:
        tensor.copy_(work)


def build_model(cfg: TransformerConfig, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, seed: int = 0,
                attention: str = "sdpa") -> TransformerLM:
    """Construct a :class:`TransformerLM` directly on ``device`` with parameters of ``dtype``.

    Initialisation is seeded by ``seed`` through a private generator (the global RNG is left
    alone), so the same seed gives the same weights on a given device type. Linear weights are
    truncated normal with std ``sqrt(2 / (d_in + d_out))``; the tied embedding/output matrix uses
    std ``d_model ** -0.5`` (unit-scale initial logits); RMSNorm gains start at 1; all truncated at
    3 std. On ``device="meta"`` nothing is allocated or initialised (useful for counting)."""
    if attention not in ATTENTIONS:
        raise ValueError(f"unknown attention {attention!r} (known: {', '.join(ATTENTIONS)})")
    device = torch.device(device)
    with torch.device(device):
        model = TransformerLM(cfg, attention=attention, dtype=dtype)
    if device.type == "meta":
        return model
    try:
        generator = torch.Generator(device=device)
    except RuntimeError:
        generator = torch.Generator()
    generator.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Linear):
                _trunc_normal(module.weight, math.sqrt(2.0 / (module.d_in + module.d_out)), generator)
            elif isinstance(module, Embedding):
                _trunc_normal(module.weight, cfg.d_model ** -0.5, generator)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
    return model


# -- cost models -----------------------------------------------------------------------------------

class Step:
    """One benchmark step of a model, built by :func:`make_step`; call it to run the step.

    A call returns the loss tensor (``forward_backward``, ``train_step``) or the logits
    (``forward``) without synchronising the device, so timing code decides when to wait. Nothing
    from one call is kept for the next. Attributes: ``kind``, ``tokens`` (batch x context),
    ``batch_size``, ``context``, ``model``, ``optimizer`` (AdamW for ``train_step``, else None),
    ``device``, ``autocast_dtype``, ``ids`` and ``targets``."""

    def __init__(self, model: nn.Module, kind: str, ids: torch.Tensor, targets: torch.Tensor,
                 optimizer: torch.optim.Optimizer | None,
                 autocast_dtype: torch.dtype | None) -> None:
        self.model = model
        self.kind = kind
        self.ids = ids
        self.targets = targets
        self.optimizer = optimizer
        self.autocast_dtype = autocast_dtype
        self.device = ids.device
        self.batch_size, self.context = ids.shape
        self.tokens = self.batch_size * self.context
        self._flat_targets = targets.reshape(-1)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _loss(self) -> torch.Tensor:
        with self._autocast():
            # One expression, so the low-precision logits are released as soon as they are cast.
            return F.cross_entropy(self.model(self.ids).flatten(0, 1).float(), self._flat_targets)

    def __call__(self) -> torch.Tensor:
        with torch.enable_grad():
            if self.kind == "forward":
                with self._autocast():
                    return self.model(self.ids)
            self.model.zero_grad(set_to_none=True)
            loss = self._loss()
            loss.backward()
            if self.optimizer is not None:
                self.optimizer.step()
            return loss.detach()

    def __repr__(self) -> str:
        amp = f", autocast={self.autocast_dtype}" if self.autocast_dtype is not None else ""
        return (f"Step(kind={self.kind!r}, batch_size={self.batch_size}, context={self.context}, "
                f"device={self.device}{amp})")


def make_step(model: nn.Module, kind: str, batch_size: int, context: int,
              device: str | torch.device | None = None,
              autocast_dtype: torch.dtype | None = None, seed: int = 0,
              lr: float = 1e-4) -> Step:
    """Prepare a :class:`Step` of ``kind`` (one of :data:`KINDS`) for ``model``.

    The input ids and the targets are drawn once, from a CPU generator seeded with ``seed``
    (uniform over the vocabulary, shape ``[batch_size, context]``), and moved to ``device``
    (default: the device of the model's parameters). ``train_step`` creates
    ``torch.optim.AdamW(model.parameters(), lr=lr)`` here, once. With ``autocast_dtype`` the
    forward pass and the loss run under ``torch.autocast`` for the device type."""
    _check_kind(kind)
    if batch_size <= 0 or context <= 0:
        raise ValueError(f"batch_size and context must be positive, got {batch_size} and {context}")
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise ValueError("make_step needs a model with a .config (a TransformerLM)")
    if context > cfg.context_length:
        raise ValueError(f"context {context} exceeds context_length {cfg.context_length} of "
                         f"model {cfg.name!r}")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch_size, context), generator=generator)
    targets = torch.randint(0, cfg.vocab_size, (batch_size, context), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr) if kind == "train_step" else None
    return Step(model, kind, ids.to(device), targets.to(device), optimizer, autocast_dtype)
