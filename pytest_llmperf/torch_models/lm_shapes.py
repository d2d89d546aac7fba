"""The transformer suite's model shapes and their arithmetic, without torch: the configuration,
the named sizes, the parameter count, the FLOPs of a step and the estimate of its peak memory.
transformer.py builds and runs the models and re-exports these; the torch plugin reads them at
configure time (the roofline's fit check), where torch must not be imported."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: The step kinds understood by :func:`make_step`, :func:`flops_per_step` and :func:`memory_estimate`.
KINDS: tuple[str, ...] = ("forward", "forward_backward", "train_step")

#: Attention implementations: PyTorch's fused ``scaled_dot_product_attention`` or an explicit
#: scores / mask / softmax reference.
ATTENTIONS: tuple[str, ...] = ("sdpa", "naive")

# Headroom added to every memory estimate for scalars and allocator rounding.
_SLACK_BYTES = 2**20


# -- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransformerConfig:
    """Shape of a :class:`TransformerLM`.

    ``context_length`` is the longest sequence the model accepts (the RoPE tables have that many
    rows); ``rope_theta`` is the RoPE base. Every integer must be positive, ``d_model`` must be a
    multiple of ``num_heads`` and the per-head size must be even (RoPE rotates pairs)."""

    name: str
    d_model: int
    d_ff: int
    num_layers: int
    num_heads: int
    vocab_size: int = 10000
    context_length: int = 1024
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for field in ("d_model", "d_ff", "num_layers", "num_heads", "vocab_size", "context_length"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TransformerConfig {self.name!r}: {field} must be a positive "
                                 f"integer, got {value!r}")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 0):
            raise ValueError(f"TransformerConfig {self.name!r}: rope_theta must be positive, "
                             f"got {self.rope_theta!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"TransformerConfig {self.name!r}: d_model ({self.d_model}) must be "
                             f"divisible by num_heads ({self.num_heads})")
        if self.head_dim % 2:
            raise ValueError(f"TransformerConfig {self.name!r}: head size d_model / num_heads = "
                             f"{self.head_dim} must be even for RoPE (d_model {self.d_model}, "
                             f"num_heads {self.num_heads})")

    @property
    def head_dim(self) -> int:
        """Features per attention head."""
        return self.d_model // self.num_heads


def _size(name: str, d_model: int, d_ff: int, num_layers: int, num_heads: int) -> TransformerConfig:
    return TransformerConfig(name=name, d_model=d_model, d_ff=d_ff, num_layers=num_layers,
                             num_heads=num_heads)


#: Named model sizes. ``tiny`` and ``mini`` are for tests and CPU runs; the others are the sizes
#: of the training benchmarks (vocabulary 10000, context up to 1024).
SIZES: dict[str, TransformerConfig] = {
    "tiny": _size("tiny", 64, 192, 2, 4),
    "mini": _size("mini", 256, 1024, 4, 4),
    "small": _size("small", 768, 3072, 12, 12),
    "medium": _size("medium", 1024, 4096, 24, 16),
    "large": _size("large", 1280, 5120, 36, 20),
    "xl": _size("xl", 1600, 6400, 48, 25),
    "2.7B": _size("2.7B", 2560, 10240, 32, 32),
}


class UnknownSize(ValueError):
    """A model size name that is not in :data:`SIZES`."""


def get_config(name: str, vocab_size: int | None = None,
               context_length: int | None = None) -> TransformerConfig:
    """The :data:`SIZES` entry called ``name`` (case-insensitive), optionally with another
    vocabulary size or context length. Raises :class:`UnknownSize` for an unknown name."""
    wanted = str(name).strip().lower()
    cfg = next((size for key, size in SIZES.items() if key.lower() == wanted), None)
    if cfg is None:
        raise UnknownSize(f"unknown model size {name!r} (known: {', '.join(SIZES)})")
    changes: dict[str, Any] = {}
    if vocab_size is not None:
        changes["vocab_size"] = vocab_size
    if context_length is not None:
        changes["context_length"] = context_length
    return dataclasses.replace(cfg, **changes) if changes else cfg


def param_count(cfg: TransformerConfig) -> int:
    """Number of trainable parameters, computed from the shape alone.

    One ``vocab x d_model`` matrix (embedding and output projection are tied), per layer two
    RMSNorm gains, the q/k/v/o projections (``4 d^2``) and the SwiGLU matrices (``3 d d_ff``),
    plus the final RMSNorm gain. RoPE tables are buffers and are not counted."""
    d = cfg.d_model
    per_layer = 2 * d + 4 * d * d + 3 * d * cfg.d_ff
    return cfg.vocab_size * d + cfg.num_layers * per_layer + d



def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown step kind {kind!r} (known: {', '.join(KINDS)})")


def _check_shape(cfg: TransformerConfig, batch_size: int, context: int) -> None:
    if batch_size <= 0 or context <= 0:
        raise ValueError(f"batch_size and context must be positive, got {batch_size} and {context}")
    if context > cfg.context_length:
        raise ValueError(f"context {context} exceeds context_length {cfg.context_length} of "
                         f"model {cfg.name!r}")


def flops_per_step(cfg: TransformerConfig, batch_size: int, context: int, kind: str) -> float:
    """Model FLOPs of one step (the usual MFU convention; a multiply-add counts as 2 FLOPs).

    ``forward = 2 * tokens * W + 4 * batch * num_layers * context^2 * d_model`` where
    ``tokens = batch * context`` and ``W`` is the number of matmul weights, the tied output
    projection included and the embedding lookup excluded: ``L (4 d^2 + 3 d d_ff) + vocab d``.
    The second term is the attention score (``q k^T``) and value (``p v``) products over the
    *full* ``context x context`` square: it is not halved for causality, so it counts the work a
    dense kernel does rather than the useful half. Norms, softmax, RoPE and activations are
    ignored. The backward pass is counted as twice the forward, so ``forward_backward = 3 *
    forward``; ``train_step`` equals ``forward_backward`` (optimizer FLOPs are ignored)."""
    _check_kind(kind)
    _check_shape(cfg, batch_size, context)
    d = cfg.d_model
    matmul_weights = cfg.num_layers * (4 * d * d + 3 * d * cfg.d_ff) + cfg.vocab_size * d
    forward = (2.0 * batch_size * context * matmul_weights
               + 4.0 * batch_size * cfg.num_layers * context * context * d)
    return forward if kind == "forward" else 3.0 * forward


def _format_bytes(n: int, unit: str) -> str:
    value = n / (2**30 if unit == "GiB" else 2**20)
    if value == 0:
        return f"0 {unit}"
    return f"{value:.2f} {unit}" if value < 1 else f"{value:.1f} {unit}"


@dataclass
class MemoryEstimate:
    """Estimated peak device memory of one step, in bytes, by component.

    ``total`` is the estimated peak: ``params + grads + optimizer + activations``, unless a
    training step's gradient or optimizer workspace is larger than its activations, in which
    case that workspace replaces the activations in the sum (see :func:`memory_estimate`)."""

    params: int
    grads: int
    optimizer: int
    activations: int
    total: int
    #: Part of ``activations``: the float32 accumulator of the output projection that some CPU
    #: matmul paths allocate for a low-precision ``forward`` (see :func:`memory_estimate`).
    #: Whether it is allocated depends on the CPU's instruction set; where it is not, the peak
    #: stays under ``total - accumulator``.
    accumulator: int = 0

    def describe(self) -> str:
        """One line, e.g. ``params 0.45 GiB, grads 0.45 GiB, optimizer 0.90 GiB, activations
        2.1 GiB: 3.9 GiB``; in MiB when the total is under 1 GiB."""
        unit = "GiB" if self.total >= 2**30 else "MiB"
        parts = ", ".join(f"{label} {_format_bytes(value, unit)}" for label, value in (
            ("params", self.params), ("grads", self.grads), ("optimizer", self.optimizer),
            ("activations", self.activations)))
        return f"{parts}: {_format_bytes(self.total, unit)}"


def memory_estimate(cfg: TransformerConfig, batch_size: int, context: int, kind: str,
                    param_bytes: int = 4, activation_bytes: int = 4,
                    attention: str = "sdpa") -> MemoryEstimate:
    """Estimate the peak memory of a :func:`make_step` step, meant to skip a benchmark that cannot
    fit before it starts; it errs on the high side.

    ``param_bytes`` is the size of one parameter element (4 for float32); ``activation_bytes``
    that of a matmul output (2 under bf16 autocast or for a bf16 model, else 4). When
    ``activation_bytes < param_bytes`` the step is taken to run under autocast. With ``N =
    param_count(cfg)``, ``tokens = batch * context``, ``a = activation_bytes``, ``d = d_model``,
    ``H = num_heads``, ``T = context``::

        params      = N * param_bytes
        grads       = N * param_bytes                  (forward_backward, train_step)
        optimizer   = 2 * N * param_bytes              (train_step: AdamW's two moments, which
                                                        torch keeps in the parameter dtype)
        activations = tokens * ((num_layers + 1) * layer + head)  +  cast  +  fixed

    ``layer`` is what autograd saves per token in one decoder layer (one more ``layer`` is added
    as room for the transients of the layer being computed)::

        2 * (8 d + 4)           each RMSNorm's float32 input and normalised value, 1/rms
        + 2 a d                 the norms' outputs, read by the projections
          (5 a d under autocast, which makes a separate low-precision copy for each of the five
           projections reading a norm: q, k, v, w1, w3)
        + 5 a d + 4 H           sdpa: q, k, v (after RoPE), attention output, its [B, T, d]
                                copy, and the float32 log-sum-exp
          (naive: 4 a d for q, k, v and the [B, T, d] output, plus the float32 softmax,
           H T 4, and its a-byte copy, H T a, when a < 4)
        + 4 a d_ff              SwiGLU: w1 x, silu(w1 x), w3 x and their product

    ``head`` is the final RMSNorm (``8 d + 4 + a d``) plus the logits: ``a * vocab`` for
    ``forward``, and ``12 * vocab`` for the training kinds (the float32 log-softmax saved for the
    loss plus the two float32 gradients alive at the start of the backward pass). A ``forward``
    with ``a < 4`` adds ``accumulator = 4 * vocab`` per token: a low-precision matmul may be
    computed into a float32 buffer the size of its whole output, converted at the end (oneDNN
    does so for bf16 on x86 CPUs with AVX-512 but without the AVX512_BF16 or AMX instructions;
    with them it accumulates in small blocks, and where oneDNN is not used for bf16, e.g. AVX2,
    there is no such buffer). Every matmul of a layer does it, inside the room of the extra
    ``layer``; the output projection is the largest and comes when all the layers' activations
    are held, so it is counted, on every device, to err on the high side. The training kinds'
    ``12 * vocab`` already covers it (the float32 loss tensors come after it is freed). ``cast`` is
    ``N * a`` under autocast (the low-precision copy of every weight, kept by the graph), else 0.
    ``fixed`` is the RoPE tables (``4 context_length head_dim``), the int64 ids and targets
    (``16 tokens``) and 1 MiB for scalars and allocator rounding. Runtime workspaces outside
    tensors (CUDA context, cuBLAS workspace) are not included: compare ``total`` with the memory
    a process can actually allocate.

    The ``forward`` kind runs with autograd enabled (as :class:`Step` does), so the graph keeps
    every layer's saved tensors until the output is dropped: its activations are the full
    per-layer terms, not one layer's worth. For the training kinds ``params + grads +
    activations`` is an upper bound, since backward frees activations as gradients appear.

    The training kinds can also peak after the activations are gone, on a workspace ``W``: at
    the end of backward the tied matrix holds two ``vocab x d`` gradients (output projection and
    embedding) before they are summed, ``W = 2 vocab d param_bytes``; in a ``train_step``,
    AdamW's multi-tensor (foreach) path, the default on GPUs, holds a temporary of ``N *
    param_bytes``, so ``W`` is the larger of the two. ``total = params + grads + optimizer +
    max(activations, W + fixed)`` (``W = 0`` for ``forward``)."""
    _check_kind(kind)
    _check_shape(cfg, batch_size, context)
    if attention not in ATTENTIONS:
        raise ValueError(f"unknown attention {attention!r} (known: {', '.join(ATTENTIONS)})")
    if param_bytes <= 0 or activation_bytes <= 0:
        raise ValueError(f"param_bytes and activation_bytes must be positive, got {param_bytes} "
                         f"and {activation_bytes}")
    n = param_count(cfg)
    d, a, heads = cfg.d_model, activation_bytes, cfg.num_heads
    autocast = a < param_bytes
    tokens = batch_size * context

    layer = 2 * (8 * d + 4) + (5 if autocast else 2) * a * d + 4 * a * cfg.d_ff
    if attention == "sdpa":
        layer += 5 * a * d + 4 * heads
    else:
        layer += 4 * a * d + heads * context * (4 + (a if a < 4 else 0))
    # The float32 accumulator a CPU matmul path may hold for a whole low-precision output,
    # counted for the output projection of a forward (see the docstring).
    accumulator = 4 * cfg.vocab_size if kind == "forward" and a < 4 else 0
    logits = a * cfg.vocab_size + accumulator if kind == "forward" else 12 * cfg.vocab_size
    head = 8 * d + 4 + a * d + logits
    cast = n * a if autocast else 0
    fixed = 4 * cfg.context_length * cfg.head_dim + 16 * tokens + _SLACK_BYTES
    activations = tokens * ((cfg.num_layers + 1) * layer + head) + cast + fixed

    params = n * param_bytes
    grads = n * param_bytes if kind != "forward" else 0
    optimizer = 2 * n * param_bytes if kind == "train_step" else 0
    # Workspace that outlives the activations: the tied matrix receives two vocab x d gradients
    # (output projection and embedding) before they are summed; AdamW's temporaries.
    workspace = 0
    if kind != "forward":
        workspace = 2 * cfg.vocab_size * d * param_bytes
    if kind == "train_step":
        workspace = max(workspace, n * param_bytes)
    transient = max(activations, workspace + fixed)
    return MemoryEstimate(params=params, grads=grads, optimizer=optimizer,
                          activations=activations, total=params + grads + optimizer + transient,
                          accumulator=tokens * accumulator)


# -- benchmark steps -------------------------------------------------------------------------------
