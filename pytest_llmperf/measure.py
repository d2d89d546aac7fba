"""Timing a callable: warm-up policy, rounds, adaptive stop and the machine-speed probe. No pytest.

A *round* runs the callable ``iterations`` times back to back (1 unless one call is shorter than
``min_round_time``) and gives one sample, the time per call. Before every round, and once after
the last, a fixed piece of pure-Python work (the *speed probe*) is timed: how long it takes tells
how fast this CPU runs at that moment, which shared and virtual machines change from one second
to the next. The comparison may divide each round by the probes around it (see compare.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import stats

PROBE_LOOPS = 1500  # fixed work: the probe must do the same amount of work in every session


def speed_probe(loops: int = PROBE_LOOPS) -> int:
    """A fixed amount of integer work (a few tens of microseconds on a current CPU)."""
    x = 0
    for i in range(loops):
        x = (x * 31 + i) & 0xFFFF
    return x


@dataclass(frozen=True)
class MeasureSettings:
    warmup: str | int = "auto"
    min_rounds: int = 5
    max_time: float = 1.0  # seconds for warm-up and rounds together; min_rounds are always taken
    tolerance: float = 0.05  # the adaptive stop aims for a precision well inside it
    confidence: float = 0.99
    probe: bool = True
    max_warmup_rounds: int = 20
    warmup_window: int = 3
    warmup_spread: float = 0.10
    min_round_time: float = 0.001
    precision_factor: float = 0.25  # stop when the CI half-width of the median < factor * tolerance
    max_rounds: int = 1_000_000


@dataclass
class Measurement:
    samples: list[float]
    probes: list[float] | None
    iterations: int
    warmup: dict
    result: Any
    stop_reason: str
    elapsed: float
    rounds_total: int = 0
    extra: dict = field(default_factory=dict)


def _precise_enough(samples: list[float], settings: MeasureSettings) -> bool:
    if len(samples) < max(settings.min_rounds, stats.MIN_SAMPLES):
        return False
    z = stats._NORMAL.inv_cdf((1.0 + settings.confidence) / 2.0)
    half_width = z * stats.log_median_se(samples)
    return half_width <= math.log1p(settings.tolerance * settings.precision_factor)


def run(
    fn: Callable[..., Any],
    args: tuple = (),
    kwargs: dict | None = None,
    settings: MeasureSettings = MeasureSettings(),
    decisive: Callable[[list[float], list[float] | None], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Warm up, then take rounds until the stop rule holds; see the module docstring.

    Stop rule, checked at growing intervals once ``min_rounds`` are in: the median is precise
    enough for the tolerance (``precision_factor``) and, when ``decisive`` is given (the baseline
    is known), the comparison is decisive; or the time budget is spent.
    """
    kwargs = kwargs or {}
    probe = settings.probe
    start = clock()
    per_call: list[float] = []  # one entry per round, warm-up rounds included
    probes: list[float] = []
    iterations = 1
    result: Any = None

    def one_round() -> None:
        nonlocal result
        if probe:
            p0 = clock()
            speed_probe()
            probes.append(clock() - p0)
        t0 = clock()
        for _ in range(iterations):
            result = fn(*args, **kwargs)
        per_call.append((clock() - t0) / iterations)

    # warm-up: also calibrates the iterations per round
    warm_end = 0
    fixed = settings.warmup if isinstance(settings.warmup, int) else None
    warmup_note = ""
    while True:
        one_round()
        last = per_call[-1]
        if last < settings.min_round_time and iterations < 1_000_000:
            iterations = max(iterations, min(1_000_000, math.ceil(settings.min_round_time / max(last, 1e-9))))
        if fixed is not None:
            if len(per_call) > fixed:
                warm_end = fixed
                break
            continue
        found = stats.steady_start(per_call, settings.warmup_window, settings.warmup_spread)
        if found is not None:
            warm_end = found
            break
        budget_gone = clock() - start > settings.max_time / 2
        if len(per_call) >= settings.max_warmup_rounds or budget_gone:
            warm_end = 1 if len(per_call) > 1 else 0
            warmup_note = "no steady state within the warm-up bound; discarded the first round only"
            break

    stop_reason = ""
    next_check = max(settings.min_rounds, stats.MIN_SAMPLES)
    while True:
        n = len(per_call) - warm_end
        elapsed = clock() - start
        if n >= settings.min_rounds:
            if elapsed >= settings.max_time:
                stop_reason = "time budget"
                break
            if n >= settings.max_rounds:
                stop_reason = "max rounds"
                break
            if n >= next_check:
                next_check = n + max(1, n // 4)
                samples = per_call[warm_end:]
                if _precise_enough(samples, settings):
                    if decisive is None:
                        stop_reason = "precise"
                        break
                    cur_probes = probes[warm_end:] if probe else None
                    if decisive(samples, cur_probes):
                        stop_reason = "precise and decisive"
                        break
        one_round()
    if probe:
        p0 = clock()
        speed_probe()
        probes.append(clock() - p0)
    samples = per_call[warm_end:]
    kept_probes = probes[warm_end:] if probe else None
    steady = stats.median(samples)
    warmup = {
        "discarded": warm_end,
        "first": per_call[0],
        "steady": steady,
        "ratio": per_call[0] / steady if steady > 0 else None,
    }
    if warmup_note:
        warmup["note"] = warmup_note
    return Measurement(
        samples=samples,
        probes=kept_probes,
        iterations=iterations,
        warmup=warmup,
        result=result,
        stop_reason=stop_reason,
        elapsed=clock() - start,
        rounds_total=len(per_call),
    )
