"""Two probes that measure what this device really reaches: matmul FLOP/s and memory read
bandwidth. No pytest."""

from __future__ import annotations

import math

import torch

from pytest_llmperf import hardware

from .devsel import _as_device
from .dtypes import resolve_dtype
from .memory import available_memory
from .timing import _best_time, _seconds_per_call

__all__ = ["matmul_probe", "torch_read_bandwidth"]

_GIB = 1 << 30
_MIB = 1 << 20


def _filled(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A deterministic tensor of small values, made without touching any random generator."""
    count = math.prod(shape)
    values = torch.arange(count, device=device, dtype=torch.float32).remainder_(13).sub_(6).mul_(0.05)
    return values.reshape(shape).to(dtype)


def _cpu_matmul_size(dtype: torch.dtype) -> int:
    """The largest of 2048, 1536 and 1024 whose matmul should take at most ~50 ms here, judged
    from the fastest of three timed 1024 matmuls (512 when one takes over 200 ms)."""
    device = torch.device("cpu")
    a = _filled((1024, 1024), device, dtype)
    out = torch.empty_like(a)
    torch.mm(a, a, out=out)  # warm-up
    t = _seconds_per_call(lambda: torch.mm(a, a, out=out), device, 1)
    if t <= 0.2:  # the fastest of three, so that a hiccup does not change the size
        t = min(t, *(_seconds_per_call(lambda: torch.mm(a, a, out=out), device, 1) for _ in range(2)))
    if t > 0.2:
        return 512
    for n in (2048, 1536):
        if t * (n / 1024) ** 3 <= 0.05:
            return n
    return 1024


def matmul_probe(
    device: torch.device | str, dtype: torch.dtype | str, size: int | None = None, min_time: float = 0.2
) -> float:
    """Achieved FLOP/s of a square ``size`` x ``size`` matmul computed in ``dtype`` on ``device``.

    The operands are ``dtype`` tensors (no autocast); a float32 matmul on CUDA follows the
    current TF32 setting, like the workload's own matmuls. ``size`` defaults to 4096 on a GPU and
    on the CPU to 1024, 1536 or 2048, the largest whose call should take at most about 50 ms.
    After two warm-up calls, batches of calls are timed (CUDA events on CUDA) until ``min_time``
    seconds are spent; the best batch counts. One call is ``2 * size**3`` floating-point
    operations."""
    device = _as_device(device)
    dtype = resolve_dtype(dtype)
    if size is None:
        size = _cpu_matmul_size(dtype) if device.type == "cpu" else 4096
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    with torch.no_grad():
        a = _filled((size, size), device, dtype)
        b = _filled((size, size), device, dtype).t().contiguous()
        out = torch.empty((size, size), device=device, dtype=dtype)
        seconds = _best_time(lambda: torch.mm(a, b, out=out), device, min_time)
    return 2.0 * size**3 / seconds


def _default_read_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
        nbytes = max(_GIB, 8 * l2)
        free = available_memory(device)
        if free is not None:
            nbytes = min(nbytes, max(64 * _MIB, free // 2))
        return nbytes
    nbytes = _GIB
    try:
        caches = hardware.parse_cache_sizes()
        largest = max((v for v in caches.values() if v), default=0)
        nbytes = max(nbytes, 8 * largest)
    except Exception:
        pass
    free = available_memory(device)
    if free is not None:
        nbytes = min(nbytes, max(64 * _MIB, free // 4))
    return nbytes


def torch_read_bandwidth(device: torch.device | str, nbytes: int | None = None, passes: int = 5) -> dict:
    """Memory read bandwidth of ``device`` measured with ``torch.sum`` over a float32 buffer.

    The buffer is far larger than the last-level cache so that every pass streams from memory:
    by default on CUDA the larger of 1 GiB and 8x the L2 (``L2_cache_size``), bounded by half the
    free memory; elsewhere 1 GiB or 8x the largest CPU cache, bounded by a quarter of the
    available memory. After one warm-up pass, ``passes`` passes are timed (CUDA events on CUDA)
    and the fastest counts.

    Returns ``{"read_GBps", "bytes", "passes", "method", "median_GBps", "device"}`` (GB =
    10^9 bytes). On the CPU the plugin reports its compiled C probe instead (a reduction in torch
    runs on torch's intra-op threads and carries dispatch overhead); this function works there
    too, which tests use with a small ``nbytes``."""
    device = _as_device(device)
    if passes < 1:
        raise ValueError(f"passes must be at least 1, not {passes}")
    if nbytes is None:
        nbytes = _default_read_bytes(device)
    count = max(1, int(nbytes) // 4)
    nbytes = count * 4
    with torch.no_grad():
        buf = torch.empty(count, device=device, dtype=torch.float32)
        buf.fill_(1.0)
        buf.sum()  # warm-up: kernels loaded, pages resident
        times = sorted(_seconds_per_call(buf.sum, device, 1) for _ in range(passes))
    del buf
    best = times[0]
    median = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
    timer = "CUDA events" if device.type == "cuda" else "perf_counter and synchronize"
    return {
        "read_GBps": nbytes / best / 1e9,
        "bytes": nbytes,
        "passes": passes,
        "method": f"torch.sum over a float32 buffer, fastest of {passes} passes, timed with {timer}",
        "median_GBps": nbytes / median / 1e9,
        "device": str(device),
    }
