"""Token generation with a static-cache :class:`~.llama.Llama`: prefill, a compilable one-token
decode step, plain and speculative generation, and the compile helper (no pytest in here).

Timing model of :func:`generate` (batch size 1):

* ``ttft_s``: from the start to the first new token, i.e. the prefill forward over the prompt
  and the choice of its next token (plus the draft's prefill in speculative mode);
* ``decode_s``: from the first new token to the last, i.e. the ``n - 1`` tokens after the first;
  the first calls of a freshly compiled decode step include its compilation, so callers that
  measure steady state warm the step up with a short generation first.

Each clock read is preceded by ``sync()`` (e.g. ``torch.cuda.synchronize``) so that queued
device work is inside the interval it belongs to. Plain decoding never copies a token to the
host inside the loop: tokens stay on the device until the end, so the host can queue steps
ahead of a GPU, as gpt-fast does. Speculative decoding must read the number of accepted tokens
each round, one host sync per round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .llama import Llama

__all__ = [
    "Generation",
    "compile_decode",
    "cpu_compile_options",
    "decode_one_token",
    "decode_with_race",
    "ensure_caches",
    "generate",
    "prefill",
    "sample",
]

DecodeFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


def sample(logits: torch.Tensor, temperature: float = 0.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Next tokens ``[B, 1]`` from logits ``[B, vocab]``: the argmax at ``temperature`` 0 (the
    first maximum), else a draw from ``softmax(logits / temperature)``.

    The draw divides the probabilities by independent Exp(1) variables and takes the argmax (the
    "exponential race"), which samples exactly that distribution without a host sync or a
    data-dependent shape, so it compiles into the decode step."""
    if temperature <= 0.0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    race = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    race.exponential_(1.0, generator=generator)
    return _race(logits, temperature, race)


def _race(logits: torch.Tensor, temperature: float, race: torch.Tensor) -> torch.Tensor:
    """The token the exponential race ``race`` (Exp(1) draws shaped like ``logits``) picks."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.argmax(probs / race, dim=-1, keepdim=True)


def prefill(model: Llama, prompt: torch.Tensor, input_pos: torch.Tensor,
            temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the prompt ``[1, T]`` at positions ``input_pos`` ``[T]`` through the model (filling the
    cache) and return the next token ``[1, 1]``."""
    logits = model(prompt, input_pos)
    return sample(logits[:, -1], temperature, generator)


def decode_one_token(model: Llama, token: torch.Tensor, input_pos: torch.Tensor,
                     temperature: float = 0.0, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step: ``token`` ``[1, 1]`` at position ``input_pos`` ``[1]`` gives the next token
    ``[1, 1]`` and the logits ``[1, vocab]`` (float32) it was chosen from.

    Free of host syncs and of Python branches on tensor values (``temperature`` is a Python
    float), so ``torch.compile(..., fullgraph=True)`` traces it as one graph; dynamo cannot
    trace a ``torch.Generator`` though, so the step returned by :func:`compile_decode` draws
    seeded sampling noise outside the graph (see :func:`decode_with_race`)."""
    logits = model(token, input_pos)[:, -1]
    return sample(logits, temperature, generator), logits


def decode_with_race(model: Llama, token: torch.Tensor, input_pos: torch.Tensor,
                     temperature: float, race: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`decode_one_token` at ``temperature`` > 0 with the Exp(1) noise ``race``
    ``[1, vocab]`` given: the same token as the eager step whose generator drew that noise."""
    logits = model(token, input_pos)[:, -1]
    return _race(logits, temperature, race), logits


# -- compilation -------------------------------------------------------------------------------------

# CPU choice, by measurement on the project's VM (2 vCPUs "Intel Xeon Processor", AVX2/FMA, no
# AVX-512; torch 2.13.0+cpu; fp32; batch 1; 16-token prompt, KV cache of 96 positions; ms per
# decode step in steady state, median of 5 x 50 steps; other sessions' processes were running on
# the same 2 cores, so treat differences under ~10% as noise):
#
#                               1 thread              2 threads (a quieter moment)
#   variant                     tiny   stories15M     tiny   stories15M
#   eager                       0.64   9.7            1.33   9.2
#   default, dynamic=False      0.59   10.5           0.63   5.9
#   max-autotune-no-cudagraphs  -      10.8           -      -
#   cpp_wrapper                 -      9.4            -      -
#   freezing                    0.33   9.1            0.59   5.3
#   freezing + cpp_wrapper      0.37   -              -      -
#
# Freezing (inductor constant-folds the weights and prepacks them for oneDNN's matmul) was the
# fastest or tied everywhere, so it is the CPU default. max-autotune-no-cudagraphs only adds
# compile time here (no GEMM template beats the prepacked GEMV for batch 1). Compile time of the
# first generation: 35-70 s with an empty inductor cache (the C++ builds dominate), 5-15 s with
# a warm on-disk cache (~/tmp/torchinductor_$USER). When another process keeps one core busy,
# two OpenMP threads make every variant 10-100x slower (each parallel region waits for the
# descheduled thread): benchmark with torch.set_num_threads(1) on a shared 2-core machine.
# Freezing's caveats: it needs inference mode or no_grad (generate uses inference_mode), the
# compiled step bakes in the weights, so compile after the model is final (quantized, sharded,
# loaded), and it keeps a prepacked copy of the weights.


def cpu_compile_options() -> dict:
    """The torch.compile keyword arguments :func:`compile_decode` uses on a CPU (see the
    measurements above)."""
    return {"fullgraph": True, "dynamic": False, "options": {"freezing": True}}


def compile_decode(device, mode: str | None = None) -> DecodeFn:
    """A compiled decode step, called like :func:`decode_one_token`, for models on ``device``.

    CUDA: ``torch.compile(mode="reduce-overhead", fullgraph=True)`` (CUDA graphs: one replay per
    token instead of hundreds of kernel launches). CPU: :func:`cpu_compile_options` (fullgraph,
    static shapes, inductor freezing) unless ``mode`` is given. Compilation happens at the first
    call for each model (and temperature), so the caller's first generation measures it.

    Sampling with a seeded generator: dynamo cannot trace a ``torch.Generator``, so the step
    draws the Exp(1) noise eagerly with the generator and runs the compiled
    :func:`decode_with_race`; its tokens equal the eager step's for the same seed.

    Dynamo keeps graphs per code object, shared by every wrapper, so this raises dynamo's
    recompile limit to at least 64: one process may compile the step for several models
    (target, draft, int8 copy, several test models) without silently falling back to eager."""
    import torch._dynamo.config as dynamo_config

    for attr in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, attr):
            setattr(dynamo_config, attr, max(getattr(dynamo_config, attr), 64))
            break
    dev = torch.device(device)
    kwargs: dict[str, Any]
    if dev.type == "cuda":
        kwargs = {"mode": mode or "reduce-overhead", "fullgraph": True}
    elif mode is not None:
        kwargs = {"mode": mode, "fullgraph": True}
    else:
        kwargs = cpu_compile_options()
    plain = torch.compile(decode_one_token, **kwargs)
    raced = torch.compile(decode_with_race, **kwargs)

    def compiled_decode_one_token(model, token, input_pos, temperature=0.0, generator=None):
        if temperature > 0 and generator is not None:
            race = torch.empty((token.size(0), model.config.vocab_size), dtype=torch.float32,
                               device=token.device)
            race.exponential_(1.0, generator=generator)
            return raced(model, token, input_pos, temperature, race)
        return plain(model, token, input_pos, temperature, None)

    return compiled_decode_one_token


# -- generation --------------------------------------------------------------------------------------

@dataclass
class Generation:
    """What :func:`generate` produced and how long it took.

    ``tokens`` are the new tokens only (the first one comes from the prefill). ``per_token_s``
    (when asked for) holds the time of every token after the first; in speculative mode each
    token of a round is given the round's time divided by the tokens it produced. ``accepted``
    and ``proposed`` count draft tokens (0 without a draft); ``rounds`` counts verification
    forwards, each of which yields ``accepted-in-round + 1`` tokens, so
    ``len(tokens) - 1 == accepted + rounds`` in speculative mode."""

    tokens: list[int]
    prompt_len: int
    ttft_s: float
    decode_s: float
    per_token_s: list[float] | None = None
    accepted: int = 0
    proposed: int = 0
    rounds: int = 0

    @property
    def decode_tok_per_s(self) -> float:
        """Tokens after the first per second of ``decode_s`` (nan with fewer than 2 tokens)."""
        n = len(self.tokens) - 1
        if n <= 0 or self.decode_s <= 0:
            return math.nan
        return n / self.decode_s

    @property
    def ms_per_token(self) -> float:
        """Milliseconds per token after the first (nan with fewer than 2 tokens)."""
        n = len(self.tokens) - 1
        if n <= 0:
            return math.nan
        return 1000.0 * self.decode_s / n

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / proposed draft tokens; None when nothing was proposed."""
        return self.accepted / self.proposed if self.proposed else None


def _no_sync() -> None:
    pass


def ensure_caches(model: Llama, needed: int) -> None:
    """Give ``model`` batch-1 caches of at least ``needed`` positions, keeping existing ones that
    are big enough (so a compiled step keeps its graph across generations)."""
    if model.max_batch_size != 1 or model.max_seq_length < needed:
        model.setup_caches(1, needed)


def _prompt_tensor(prompt: Sequence[int] | torch.Tensor, device) -> torch.Tensor:
    if isinstance(prompt, torch.Tensor):
        t = prompt.detach()
        if t.dim() == 2:
            if t.size(0) != 1:
                raise ValueError(f"generate handles batch size 1; the prompt has shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 1:
            raise ValueError(f"a prompt tensor must be [T] or [1, T], not {tuple(t.shape)}")
        t = t.to(device=device, dtype=torch.long)
    else:
        t = torch.tensor([int(x) for x in prompt], dtype=torch.long, device=device)
    if t.numel() == 0:
        raise ValueError("the prompt needs at least one token")
    return t


def generate(model: Llama, prompt: Sequence[int] | torch.Tensor, max_new_tokens: int, *,
             decode_fn: DecodeFn | None = None, draft: Llama | None = None,
             draft_decode_fn: DecodeFn | None = None, speculate_k: int = 4,
             temperature: float = 0.0, seed: int = 0,
             sync: Callable[[], None] | None = None,
             clock: Callable[[], float] = time.perf_counter,
             per_token: bool = False) -> Generation:
    """Generate ``max_new_tokens`` tokens after ``prompt`` (batch size 1), timing it.

    ``decode_fn`` is the one-token step (default :func:`decode_one_token`; pass the result of
    :func:`compile_decode` for a compiled one). Caches: ``generate`` gives the model (and the
    draft) batch-1 caches itself when it has none or they are too small, sized exactly for this
    request; caches that are already big enough are reused, not reallocated, so a caller who
    wants one compiled graph for requests of several lengths calls ``setup_caches(1, n)`` once.
    The request needs ``len(prompt) + max_new_tokens (+ speculate_k with a draft)`` positions,
    at most the model's ``max_seq_len``, else ValueError.

    With ``draft``: speculative decoding. Each round the draft proposes ``k`` tokens (its own
    cache, ``draft_decode_fn`` or :func:`decode_one_token`), the target scores the current token
    and the proposals in one forward over ``k + 1`` positions, and the longest prefix of
    proposals that matches the target's choices is accepted, followed by the target's own token
    after it; rejected positions of both caches are simply overwritten later. At temperature 0
    this gives the target's greedy tokens (up to float rounding of near-ties between the
    one-position and the ``k + 1``-position forward). At temperature > 0 proposals are accepted
    with probability ``min(1, p/q)`` and a rejection is replaced by a draw from
    ``max(p - q, 0)`` (speculative sampling), which samples the target's distribution. ``k`` is
    lowered in the last round so that no token beyond ``max_new_tokens`` is computed.

    ``decode_fn`` is not used with a draft: the target then runs only prefill and
    ``k + 1``-position verification forwards, eagerly; the draft's steps use ``draft_decode_fn``.
    ``seed`` seeds the sampling generator (unused at temperature 0). ``sync`` is called before
    every clock read; ``per_token`` records each token's time (a sync per token)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
    if draft is not None:
        if draft is model:
            raise ValueError("the draft must be a separate model (a copy), since it needs its "
                             "own KV cache")
        if speculate_k < 1:
            raise ValueError(f"speculate_k must be at least 1, not {speculate_k}")
        if draft.config.vocab_size != model.config.vocab_size:
            raise ValueError(f"the draft's vocab_size {draft.config.vocab_size} differs from the "
                             f"target's {model.config.vocab_size}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, not {temperature}")
    device = model.tok_embeddings.weight.device
    prompt_t = _prompt_tensor(prompt, device)
    T = prompt_t.numel()
    extra = speculate_k if draft is not None else 0
    needed = T + max_new_tokens + extra
    limit = model.config.max_seq_len
    if draft is not None:
        limit = min(limit, draft.config.max_seq_len)
    if needed > limit:
        spec = f" + speculate_k {speculate_k}" if draft is not None else ""
        raise ValueError(
            f"prompt of {T} tokens + {max_new_tokens} new tokens{spec} = {needed} positions "
            f"exceeds max_seq_len {limit} of decode model {model.config.name!r}"
            + (f" / draft {draft.config.name!r}" if draft is not None else ""))
    ensure_caches(model, needed)
    if draft is not None:
        ensure_caches(draft, needed)
    decode_fn = decode_fn or decode_one_token
    draft_decode_fn = draft_decode_fn or decode_one_token
    sync = sync or _no_sync
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)

    with torch.inference_mode():
        if draft is None:
            return _plain(model, prompt_t, max_new_tokens, decode_fn, temperature, generator,
                          sync, clock, per_token)
        return _speculative(model, draft, prompt_t, max_new_tokens, draft_decode_fn,
                            speculate_k, temperature, generator, sync, clock, per_token)


def _plain(model, prompt_t, n_new, decode_fn, temperature, generator, sync, clock, per_token
           ) -> Generation:
    device = prompt_t.device
    T = prompt_t.numel()
    out = torch.empty(n_new, dtype=torch.long, device=device)
    times: list[float] | None = [] if per_token else None
    sync()
    t0 = clock()
    cur = prefill(model, prompt_t.view(1, -1), torch.arange(T, device=device), temperature,
                  generator)
    out[0] = cur[0, 0]
    sync()
    t1 = clock()
    last = t1
    input_pos = torch.tensor([T], dtype=torch.long, device=device)
    for i in range(1, n_new):
        nxt, _ = decode_fn(model, cur, input_pos, temperature, generator)
        # a CUDA-graph step overwrites its outputs at the next replay: keep a copy
        cur = nxt.clone()
        out[i] = cur[0, 0]
        input_pos = input_pos + 1
        if times is not None:
            sync()
            now = clock()
            times.append(now - last)
            last = now
    sync()
    t2 = clock()
    return Generation(tokens=out.tolist(), prompt_len=T, ttft_s=t1 - t0, decode_s=t2 - t1,
                      per_token_s=times)


def _speculative(model, draft, prompt_t, n_new, draft_decode_fn, k_max, temperature, generator,
                 sync, clock, per_token) -> Generation:
    device = prompt_t.device
    T = prompt_t.numel()
    sampling = temperature > 0
    tokens: list[int] = []
    times: list[float] | None = [] if per_token else None
    accepted = proposed = rounds = 0
    positions = torch.arange(T, device=device)
    sync()
    t0 = clock()
    cur = prefill(model, prompt_t.view(1, -1), positions, temperature, generator)
    draft(prompt_t.view(1, -1), positions)
    tokens.append(int(cur))
    sync()
    t1 = clock()
    last = t1
    pos = T  # the position of ``cur``, whose keys are in neither cache yet
    while len(tokens) < n_new:
        k = min(k_max, n_new - len(tokens) - 1)
        proposals = []
        draft_probs = []
        d_tok = cur
        for j in range(k):
            d_tok, d_logits = draft_decode_fn(draft, d_tok, torch.tensor([pos + j], device=device),
                                              temperature, generator)
            d_tok = d_tok.clone()
            proposals.append(d_tok)
            if sampling:
                draft_probs.append(torch.softmax(d_logits.float() / temperature, dim=-1))
        seq = torch.cat([cur] + proposals, dim=1)  # [1, k + 1]
        logits = model(seq, torch.arange(pos, pos + k + 1, device=device))[0]  # [k + 1, V]
        if k:
            prop = seq[0, 1:]
            if sampling:
                n_acc, nxt = _accept_sampled(logits, prop, torch.cat(draft_probs), temperature,
                                             generator)
            else:
                target = logits.argmax(dim=-1)
                agree = (target[:k] == prop).long()
                n_acc = int(agree.cumprod(0).sum())
                nxt = target[n_acc]
        else:
            n_acc = 0
            nxt = sample(logits[-1:], temperature, generator)[0, 0]
        new = seq[0, 1:1 + n_acc].tolist() + [int(nxt)]
        if n_acc == k and k:
            # the draft never saw its last proposal: put its keys in the draft cache
            draft(seq[:, k:], torch.tensor([pos + k], device=device))
        accepted += n_acc
        proposed += k
        rounds += 1
        tokens.extend(new)
        pos += n_acc + 1
        cur = torch.tensor([[new[-1]]], dtype=torch.long, device=device)
        if times is not None:
            sync()
            now = clock()
            times.extend([(now - last) / len(new)] * len(new))
            last = now
    sync()
    t2 = clock()
    return Generation(tokens=tokens, prompt_len=T, ttft_s=t1 - t0, decode_s=t2 - t1,
                      per_token_s=times, accepted=accepted, proposed=proposed, rounds=rounds)


def _accept_sampled(logits: torch.Tensor, proposals: torch.Tensor, q: torch.Tensor,
                    temperature: float, generator) -> tuple[int, torch.Tensor]:
    """Speculative sampling: accept proposal ``i`` with probability ``min(1, p_i / q_i)`` in order;
    at the first rejection draw from ``normalize(max(p - q, 0))``; if all ``k`` are accepted
    draw the bonus token from the target's last distribution. Returns (accepted, next token)."""
    k = proposals.numel()
    p = torch.softmax(logits.float() / temperature, dim=-1)  # [k + 1, V]
    idx = torch.arange(k, device=logits.device)
    p_prop = p[idx, proposals]
    q_prop = q[idx, proposals]
    coins = torch.rand(k, device=logits.device, generator=generator)
    ok = (coins * q_prop <= p_prop).long()
    n_acc = int(ok.cumprod(0).sum())
    if n_acc == k:
        return k, sample(logits[k:].float(), temperature, generator)[0, 0]
    residual = (p[n_acc] - q[n_acc]).clamp_min(0)
    total = residual.sum()
    if float(total) <= 0:  # p == q up to rounding: any draw from p is right
        residual = p[n_acc]
    race = torch.empty_like(residual).exponential_(1.0, generator=generator)
    return n_acc, torch.argmax(residual / race)
