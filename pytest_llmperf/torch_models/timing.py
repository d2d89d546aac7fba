"""Timing work on a torch device correctly. No pytest.

CUDA work is asynchronous, so a host clock around it measures how fast kernels are *queued*, not
how long they run: on CUDA the time comes from a pair of CUDA events and the end event is waited
for; elsewhere from ``time.perf_counter`` around the work followed by :func:`synchronize`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch

from .devsel import _as_device

__all__ = ["nvtx_range", "step_sampler", "synchronize"]


def synchronize(device: torch.device | str) -> None:
    """Wait until all work queued on ``device`` has finished (nothing to wait for on the CPU)."""
    device = _as_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def nvtx_range(device: torch.device | str, name: str) -> Iterator[None]:
    """An NVTX range named ``name`` around the block on a CUDA device (for nsys), nothing elsewhere."""
    cuda = _as_device(device).type == "cuda"
    if cuda:
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if cuda:
            torch.cuda.nvtx.range_pop()


def step_sampler(
    step: Callable[[], object], device: torch.device | str, steps_per_round: int = 1
) -> Callable[[], tuple[float, float, float | None]]:
    """A ``sample()`` for :func:`pytest_llmperf.measure.run_rounds` that times ``step``.

    Each call of ``sample()`` runs ``step()`` ``steps_per_round`` times and returns
    ``(seconds per step, wall seconds of the round, None)``. The device is synchronised before
    the round so that work queued earlier is not charged to it.

    On CUDA the seconds per step come from two ``torch.cuda.Event(enable_timing=True)`` recorded
    on the current stream before and after the steps; the end event is waited for before its time
    is read. On the CPU and MPS they come from ``time.perf_counter`` around the steps followed by
    :func:`synchronize`. CPU time is not reported (None): a step may use many threads or wait for
    a GPU, so its share of one thread's time says nothing about preemption."""
    if steps_per_round < 1:
        raise ValueError(f"steps_per_round must be at least 1, not {steps_per_round}")
    device = _as_device(device)
    n = int(steps_per_round)

    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)

        def cuda_sample() -> tuple[float, float, float | None]:
            with torch.cuda.device(device):
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                start.record()
                for _ in range(n):
                    step()
                end.record()
                end.synchronize()
                wall = time.perf_counter() - t0
                seconds = start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds
            return seconds / n, wall, None

        return cuda_sample

    def host_sample() -> tuple[float, float, float | None]:
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        synchronize(device)
        wall = time.perf_counter() - t0
        return wall / n, wall, None

    return host_sample


def _seconds_per_call(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Time ``calls`` back-to-back calls of ``fn`` on ``device`` (events on CUDA)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0 / calls
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / calls


def _best_time(
    fn: Callable[[], object], device: torch.device, min_time: float, batch_time: float = 0.005,
    min_batches: int = 3, max_batches: int = 200,
) -> float:
    """Best seconds per call over batches of calls, each batch at least ``batch_time`` long,
    after two warm-up calls; batches go on until ``min_time`` is spent (and ``min_batches`` run)."""
    first = _seconds_per_call(fn, device, 1)
    second = _seconds_per_call(fn, device, 1)
    per_call = max(min(first, second), 1e-7)
    calls = max(1, math.ceil(batch_time / per_call))
    best = math.inf
    spent = 0.0
    batches = 0
    while batches < min_batches or (spent < min_time and batches < max_batches):
        t = _seconds_per_call(fn, device, calls)
        best = min(best, t)
        spent += t * calls
        batches += 1
    return best
