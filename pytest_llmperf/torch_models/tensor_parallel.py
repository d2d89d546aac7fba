"""Tensor parallelism for :class:`~.llama.Llama` with torch.distributed (no pytest in here).

Megatron-style sharding over ``world_size`` ranks, every rank holding a slice of every block:

* column-parallel (output rows sliced): ``wq`` by query heads, ``wk``/``wv`` by kv heads,
  ``w1``/``w3`` by hidden units; each rank computes its own heads and hidden units;
* row-parallel (input columns sliced): ``wo`` and ``w2``; each rank's product is a partial sum,
  added up across ranks by an all-reduce of the layer's output;
* replicated: the embedding, the norms and the classifier (so every rank gets the full logits).

Int8 layers (quantize.py) shard too: column slices take their rows' scales, row slices keep all
scales (a per-output-channel scale applies to every column). Each rank's KV cache holds only its
kv heads. A decode step costs two all-reduces of ``dim`` values per layer.

:func:`run_tp_check` runs a sharded model in ``world_size`` CPU processes with the gloo backend
and returns rank 0's tokens and logits, to compare with the unsharded model.
:func:`run_tp_decode` benchmarks sharded greedy decoding, one process per GPU with NCCL (or on
CPU ranks with gloo, which is how it is tested without GPUs).

The all-reduce is a forward hook using the functional collective, so the compiled decode step
traces it (checked on CPU ranks: the compiled, frozen step gives the eager tokens). The CUDA
path (NCCL, CUDA graphs) could not be run where this was written: it has no GPU.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch
import torch.nn as nn

from .llama import Llama, build_llama, get_decode_config, load_llama2c, weight_bytes_per_token
from .quantize import Int8WeightOnlyLinear

__all__ = [
    "TPResult",
    "all_reduce_sum",
    "reference_run",
    "run_tp_check",
    "run_tp_decode",
    "shard_",
    "tp_unavailable_reason",
]


def tp_unavailable_reason(device) -> str | None:
    """None when tensor parallelism can run from ``device``'s node (torch.distributed with NCCL
    and more than one CUDA GPU), else why not, in one line."""
    if not torch.distributed.is_available():
        return "torch.distributed is not available in this torch build"
    dev = torch.device(device)
    if dev.type != "cuda":
        if torch.cuda.is_available():
            return (f"tensor parallelism runs on CUDA GPUs; the decode device is {dev.type} "
                    f"(this node has {torch.cuda.device_count()} GPU(s))")
        return f"tensor parallelism runs on CUDA GPUs; no CUDA GPU (device {dev.type})"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    count = torch.cuda.device_count()
    if count < 2:
        return f"tensor parallelism needs more than one GPU; this node has {count}"
    if not torch.distributed.is_nccl_available():
        return "torch.distributed has no NCCL backend in this torch build"
    return None


def all_reduce_sum(t: torch.Tensor, group=None) -> torch.Tensor:
    """Sum ``t`` over the ranks of ``group`` (the default group when None), out of place.

    Uses the functional collective (traceable by torch.compile) when it exists and falls back to
    the in-place ``torch.distributed.all_reduce`` otherwise."""
    import torch.distributed as dist

    if group is None:
        group = dist.group.WORLD
    try:
        import torch.distributed._functional_collectives as funcol
    except ImportError:  # pragma: no cover - old torch
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out
    out = funcol.all_reduce(t, "sum", group)
    wait = getattr(funcol, "wait_tensor", None)
    return wait(out) if wait is not None and not torch.compiler.is_compiling() else out


def _reduce_hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(output)


def _slice_linear(linear: nn.Module, dim: int, start: int, length: int) -> None:
    """Keep ``length`` rows (dim 0) or columns (dim 1) of a Linear's weight from ``start``."""
    with torch.no_grad():
        if isinstance(linear, Int8WeightOnlyLinear):
            linear.weight = linear.weight.narrow(dim, start, length).clone()
            if dim == 0:
                linear.scales = linear.scales.narrow(0, start, length).clone()
                linear.out_features = length
            else:
                linear.in_features = length
        elif isinstance(linear, nn.Linear):
            linear.weight = nn.Parameter(linear.weight.narrow(dim, start, length).clone(),
                                         requires_grad=linear.weight.requires_grad)
            if dim == 0:
                linear.out_features = length
            else:
                linear.in_features = length
        else:
            raise TypeError(f"cannot shard a {type(linear).__name__}")


def shard_(model: Llama, rank: int, world_size: int) -> Llama:
    """Shard ``model`` in place for ``rank`` of ``world_size`` (see the module docstring) and
    return it. The row-parallel layers all-reduce their output over the default process group,
    which must be initialised before the first forward. Raises ValueError when n_heads,
    n_kv_heads or hidden_dim is not a multiple of ``world_size`` or the rank is out of range.
    Existing caches are reallocated for the local kv heads."""
    cfg = model.config
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
    for field in ("n_heads", "n_kv_heads", "hidden_dim"):
        value = getattr(cfg, field)
        if value % world_size:
            raise ValueError(f"cannot shard decode model {cfg.name!r} over {world_size} ranks: "
                             f"{field} {value} is not a multiple of {world_size}")
    if getattr(model, "tp_world_size", 1) != 1:
        raise ValueError("model is already sharded")
    if world_size == 1:
        return model
    hd = cfg.head_dim
    heads = cfg.n_heads // world_size
    kv_heads = cfg.n_kv_heads // world_size
    hidden = cfg.hidden_dim // world_size
    for block in model.blocks:
        att = block.attention
        _slice_linear(att.wq, 0, rank * heads * hd, heads * hd)
        _slice_linear(att.wk, 0, rank * kv_heads * hd, kv_heads * hd)
        _slice_linear(att.wv, 0, rank * kv_heads * hd, kv_heads * hd)
        _slice_linear(att.wo, 1, rank * heads * hd, heads * hd)
        att.n_heads = heads
        att.n_kv_heads = kv_heads
        att.wo.register_forward_hook(_reduce_hook)
        ffn = block.feed_forward
        _slice_linear(ffn.w1, 0, rank * hidden, hidden)
        _slice_linear(ffn.w3, 0, rank * hidden, hidden)
        _slice_linear(ffn.w2, 1, rank * hidden, hidden)
        ffn.w2.register_forward_hook(_reduce_hook)
    model.tp_rank = rank
    model.tp_world_size = world_size
    if model.has_caches:
        model.setup_caches(model.max_batch_size, model.max_seq_length)
    return model


# -- a CPU check with gloo -----------------------------------------------------------------------------

TPResult = dict  # {"tokens": list[int], "logits": Tensor [n_positions, vocab]}


def reference_run(model: Llama, prompt: list[int], steps: int) -> TPResult:
    """Prefill ``prompt`` and ``steps`` greedy decode steps; the new tokens (steps + 1) and the
    logits of the last prompt position and of every decode step (``[steps + 1, vocab]``)."""
    from .generate import decode_one_token

    T = len(prompt)
    model.setup_caches(1, T + steps + 1)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]), torch.arange(T))[:, -1]
        tok = logits.argmax(-1, keepdim=True)
        all_logits, tokens = [logits[0]], [int(tok)]
        for i in range(steps):
            tok, logits = decode_one_token(model, tok, torch.tensor([T + i]))
            all_logits.append(logits[0])
            tokens.append(int(tok))
    return {"tokens": tokens, "logits": torch.stack(all_logits)}


def _tp_worker(rank: int, world_size: int, init_file: str, out_path: str, size: str, seed: int,
               prompt: list[int], steps: int, quantize: bool) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        model = build_llama(get_decode_config(size), seed=seed)
        if quantize:
            from .quantize import quantize_int8_
            quantize_int8_(model)
        shard_(model, rank, world_size)
        result = reference_run(model, prompt, steps)
        if rank == 0:
            torch.save(result, out_path)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_tp_check(world_size: int = 2, size: str = "tiny", seed: int = 0,
                 prompt: list[int] | None = None, steps: int = 8, quantize: bool = False,
                 timeout_s: float = 120.0, start_method: str | None = None) -> TPResult:
    """Run :func:`reference_run` on a seeded ``size`` model sharded over ``world_size`` CPU
    processes (gloo, rendezvous through a file in a temporary directory) and return rank 0's
    result. A worker's exception is re-raised here; workers still running after ``timeout_s``
    are terminated and TimeoutError is raised.

    ``start_method`` defaults to "fork" where the platform has it and CUDA is not initialised in
    this process, else "spawn". On the project's 2-core VM a 2-rank check of "tiny" takes 0.3 s
    forked and 12 s spawned (each spawned worker imports torch afresh). The forked workers set
    one intra-op thread before any torch work, so the parent's OpenMP pool is never used in
    them."""
    start_method = start_method or _default_start_method()
    prompt = list(prompt) if prompt is not None else [1, 17, 42, 99, 3]
    return _run_ranks(_tp_worker, world_size, start_method, timeout_s, "tensor-parallel check",
                      (size, seed, prompt, steps, quantize))


def _default_start_method() -> str:
    import multiprocessing

    forkable = "fork" in multiprocessing.get_all_start_methods()
    return "fork" if forkable and not torch.cuda.is_initialized() else "spawn"


def _run_ranks(worker, world_size: int, start_method: str, timeout_s: float, what: str,
               args: tuple):
    """Start ``worker(rank, world_size, init_file, out_path, *args)`` in ``world_size`` processes,
    wait for them (re-raising a worker's exception, terminating them after ``timeout_s``) and
    return what rank 0 saved to ``out_path`` with torch.save."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="llmperf-tp-") as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        out_path = os.path.join(tmp, "rank0.pt")
        ctx = mp.start_processes(worker, nprocs=world_size, join=False, start_method=start_method,
                                 args=(world_size, init_file, out_path) + tuple(args))
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what} did not finish in {timeout_s} s")
        finally:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
        return torch.load(out_path)


# -- a decode benchmark over several ranks ---------------------------------------------------------------

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def _bench_prompt(vocab_size: int, length: int) -> list[int]:
    """BOS then seeded token ids: the same prompt in every process and session."""
    import random

    rng = random.Random(1234)
    return [1] + [rng.randrange(3, vocab_size) for _ in range(length - 1)]


def _tp_decode_worker(rank: int, world_size: int, init_file: str, out_path: str, spec: dict
                      ) -> None:
    import torch.distributed as dist

    from .generate import compile_decode, generate

    cuda = spec["device_type"] == "cuda"
    if cuda:
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init_file}",
                            rank=rank, world_size=world_size)
    try:
        dtype = _DTYPES[spec["dtype_name"]]
        if spec["checkpoint"] is not None:
            model = load_llama2c(spec["checkpoint"], device=device, dtype=dtype)
        else:
            model = build_llama(get_decode_config(spec["name"]), device=device, dtype=dtype,
                                seed=0)
        shard_(model, rank, world_size)
        prompt = _bench_prompt(model.config.vocab_size, spec["prompt_len"])
        model.setup_caches(1, len(prompt) + spec["tokens"] + 1)
        decode_fn = compile_decode(device) if spec["compile"] else None
        sync = torch.cuda.synchronize if cuda else None
        gens, first_s = [], None
        for i in range(spec["warmup"] + spec["rounds"]):
            dist.barrier()
            started = time.perf_counter()
            g = generate(model, prompt, spec["tokens"], decode_fn=decode_fn, sync=sync)
            if i == 0:
                first_s = time.perf_counter() - started
            if i >= spec["warmup"]:
                gens.append(g)
        if rank == 0:
            torch.save({"decode_tok_per_s": [g.decode_tok_per_s for g in gens],
                        "ttft_ms": [1e3 * g.ttft_s for g in gens],
                        "tokens": gens[-1].tokens, "first_generation_s": first_s,
                        "world_size": world_size,
                        "weight_bytes_per_token_per_rank": weight_bytes_per_token(model)},
                       out_path)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_tp_decode(name: str = "tiny", tokens: int = 64, dtype_name: str | None = "bf16",
                  checkpoint=None, device_type: str = "cuda", world_size: int | None = None,
                  rounds: int = 5, warmup: int = 2, prompt_len: int = 8,
                  compile: bool | None = None, timeout_s: float = 1800.0,
                  start_method: str | None = None) -> dict:
    """Benchmark tensor-parallel greedy decoding: ``world_size`` processes (default: every CUDA
    GPU, NCCL; with ``device_type="cpu"`` 2 processes, gloo) each build the model (the llama2.c
    ``checkpoint``, else seeded random weights of decode model ``name``) in ``dtype_name``, shard
    it, and run ``warmup`` + ``rounds`` generations of ``tokens`` tokens after an 8-token seeded
    prompt, with the compiled decode step (default on CUDA) or eager (default on CPU).

    Returns rank 0's ``{"decode_tok_per_s": [per round], "ttft_ms": [per round], "tokens",
    "first_generation_s" (compilation included), "world_size",
    "weight_bytes_per_token_per_rank"}``. Raises RuntimeError with
    :func:`tp_unavailable_reason` when CUDA tensor parallelism cannot run."""
    if device_type == "cuda":
        reason = tp_unavailable_reason("cuda")
        if reason:
            raise RuntimeError(reason)
        world_size = world_size or torch.cuda.device_count()
        start_method = start_method or "spawn"  # CUDA cannot be used in a forked child
    elif device_type == "cpu":
        world_size = world_size or 2
        start_method = start_method or _default_start_method()
    else:
        raise ValueError(f"tensor-parallel decoding runs on cuda or cpu, not {device_type!r}")
    dtype_name = dtype_name or ("bf16" if device_type == "cuda" else "fp32")
    if dtype_name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype_name!r} (known: {', '.join(_DTYPES)})")
    if checkpoint is None:
        cfg = get_decode_config(name)
        for field in ("n_heads", "n_kv_heads", "hidden_dim"):
            if getattr(cfg, field) % world_size:
                raise ValueError(f"cannot shard decode model {cfg.name!r} over {world_size} ranks: "
                                 f"{field} {getattr(cfg, field)} is not a multiple of {world_size}")
    spec = {"name": name, "tokens": tokens, "dtype_name": dtype_name,
            "checkpoint": None if checkpoint is None else os.fspath(checkpoint),
            "device_type": device_type, "rounds": rounds, "warmup": warmup,
            "prompt_len": prompt_len,
            "compile": (device_type == "cuda") if compile is None else compile}
    return _run_ranks(_tp_decode_worker, world_size, start_method, timeout_s,
                      "tensor-parallel decoding", (spec,))
