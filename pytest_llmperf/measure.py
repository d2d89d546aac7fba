"""Timing a callable: warm-up policy, rounds, adaptive stop and the machine-speed probe. No pytest.

A *round* runs the callable ``iterations`` times back to back (1 unless one call is shorter than
``min_round_time``) and gives one sample, the time per call. Before every round, and once after
the last, a fixed piece of pure-Python work (the *speed probe*) is timed: how long it takes tells
how fast this CPU runs at that moment, which shared and virtual machines change from one second
to the next. The comparison may divide each round by the probes around it (see compare.py).

A round may also carry what was measured *within* it (a :class:`Round`): a probe timed between
its own runs (``probe_in_round``), or, in a *paired* measurement (``paired``, the model of
``asv continuous``), a reference build's value measured on the same work, interleaved with this
build's runs (the caller alternates which goes first: ABBA), so that the machine's speed at that
moment moves both sides alike and cancels out of their ratio. A paired measurement takes no
speed probe: the reference is its own probe.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from . import stats

PROBE_LOOPS = 600
# progress: a line per round at DEBUG, one per measurement at INFO (pytest --log-cli-level=INFO shows
# them live, under the test's name)
log = logging.getLogger("pytest_llmperf.measure")


def precision(samples: list[float], confidence: float = 0.99) -> float:
    """The half-width of the ``confidence`` interval of the median of ``samples``, as a relative
    amount (what the stop rule compares with the tolerance); inf with too few samples."""
    se = stats.run_log_median_se(samples) if len(samples) >= stats.MIN_SAMPLES else math.inf
    z = stats._NORMAL.inv_cdf((1.0 + confidence) / 2.0)
    return math.expm1(z * se) if math.isfinite(se) else math.inf


# the live line's listeners (the plugin adds one while a test runs with its progress shown): each
# gets every round's figures (dict: phase "warm-up"/"measured"/"done", round, median, precision,
# target, left, budget; "done" adds stopped); a listener must not raise
listeners: list[Callable[[dict[str, Any]], None]] = []


LISTEN_EVERY = 0.2  # seconds: the listeners get a round's figures at most this often (and the last)


class _Watch:
    """Whether a round's figures are wanted: every round at DEBUG, else at most every LISTEN_EVERY
    seconds while there are listeners (the figures cost a sort of the samples: thousands of
    rounds of a fast function would pay it every round)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last = -math.inf

    def __call__(self) -> bool:
        if log.isEnabledFor(logging.DEBUG):
            return True
        if not listeners:
            return False
        now = self.clock()
        if now - self.last < LISTEN_EVERY:
            return False
        self.last = now
        return True


def _progress(phase: str, n: int, samples: list[float], settings: MeasureSettings, elapsed: float,
              stopped: str = "") -> None:
    """A round's figures to the listeners and, at DEBUG, to the log (callers ask a _Watch first)."""
    if not samples:
        return
    figures: dict[str, Any] = {
        "phase": phase, "round": n, "median": stats.median(samples),
        "precision": precision(samples, settings.confidence), "target": settings.tolerance * settings.precision_factor,
        "left": max(0.0, settings.max_time - elapsed), "budget": settings.max_time}
    if stopped:
        figures["stopped"] = stopped
    for listener in list(listeners):
        listener(figures)
    if phase != "done":
        log.debug("llmperf: %s round %d: median %.6g, precision +-%.1f%% (target +-%.1f%%), %.1f s of %.1f s left",
                  phase, n, figures["median"], 100 * figures["precision"], 100 * figures["target"], figures["left"],
                  settings.max_time)


def speed_probe() -> int:
    """A fixed amount of ordinary interpreter work (about 50 microseconds on a current CPU).

    It must do the same work in every session, since baselines store its times. Its mix (a loop,
    integer arithmetic that allocates) was chosen by measurement: on our shared CI machine, whose
    speed alternates between phases about 35% apart, the time of pure-Python workloads divided by
    this probe stayed within about 2% across phases, while a probe on small integers only (no
    allocation) sped up 10-15% more than the workloads in the fast phase."""
    s = 0
    for i in range(PROBE_LOOPS):
        s += i * i
    return s


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
    precision_factor: float = 0.15  # stop when the CI half-width of the median < factor * tolerance
    adaptive: bool = True  # False: spend the whole time budget (what a baseline deserves)
    max_rounds: int = 1_000_000


class _WarmupFigures(TypedDict):
    discarded: int  # rounds left out at the start
    first: float  # the first round's sample
    steady: float  # the median of the kept samples
    ratio: float | None  # first / steady; None when steady is not positive


class WarmupInfo(_WarmupFigures, total=False):
    """What the warm-up did, as the baseline and the report keep it; the optional keys appear only
    when they have something to say."""

    descheduled_rounds: int  # rounds after the warm-up left out: another process took the core
    note: str  # why the warm-up ended otherwise than in a steady state


@dataclass
class Measurement:
    samples: list[float]
    probes: list[float] | None
    iterations: int
    warmup: WarmupInfo
    result: Any  # the callable's last return value, whatever it is
    stop_reason: str
    elapsed: float
    rounds_total: int = 0
    cpu_share: float | None = None  # median CPU time / wall time of the kept rounds (this thread)
    extra: dict[str, object] = field(default_factory=dict)
    kept_rounds: list[int] = field(default_factory=list)  # indices (warm-up included) of the samples
    # paired mode: the reference's value in each kept round (as many as samples, same unit)
    paired: list[float] | None = None


def _precise_enough(samples: list[float], settings: MeasureSettings) -> bool:
    if len(samples) < max(settings.min_rounds, stats.MIN_SAMPLES):
        return False
    z = stats._NORMAL.inv_cdf((1.0 + settings.confidence) / 2.0)
    half_width = z * stats.run_log_median_se(samples)
    return half_width <= math.log1p(settings.tolerance * settings.precision_factor)


def preempted_rounds(wall: list[float], cpu: list[float], share_floor: float = 0.9,
                     drop_below: float = 0.85) -> set[int]:
    """Indices of rounds during which this thread was descheduled (another process took the core).

    Only for a callable that runs on this thread: when the median share of CPU time in wall time
    is at least ``share_floor``; a round whose share is below ``drop_below`` times that median lost
    a good part of its wall time waiting for the CPU. A workload that sleeps, waits for a GPU or
    works on other threads keeps all its rounds (its share is low everywhere)."""
    shares = [c / w if w > 0 else 1.0 for w, c in zip(wall, cpu)]
    if not shares:
        return set()
    typical = stats.median(shares)
    if typical < share_floor:
        return set()
    return {i for i, share in enumerate(shares) if share < typical * drop_below}


# what one side of a round gives: (the sample, the wall time, the CPU time or None when unknown)
Figures = tuple[float, float, "float | None"]


@dataclass(frozen=True)
class Round:
    """One round with what was measured within it (see run_rounds): its own figures, and a probe
    time or a reference build's figures taken between its runs."""

    value: float
    wall: float
    cpu: float | None
    probe: float | None = None  # the speed probe's time within the round (probe_in_round)
    reference: Figures | None = None  # the reference build's (value, wall, cpu) in the round (paired)


# one round: its figures, or a Round; see run_rounds
Sample = Callable[[], "Figures | Round"]


def run(
    fn: Callable[..., Any],
    args: tuple[object, ...] = (),
    kwargs: Mapping[str, object] | None = None,
    settings: MeasureSettings = MeasureSettings(),
    decisive: Callable[[list[float], list[float] | None], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] | None = None,
) -> Measurement:
    """Time a callable: warm up, then take rounds until the stop rule holds (:func:`run_rounds`).

    A round calls ``fn`` ``iterations`` times back to back (calibrated during warm-up so that a
    round lasts at least ``min_round_time``); its sample is the wall time per call. ``cpu_clock``
    (this thread's CPU time; the default with the default ``clock``) finds rounds that were
    descheduled, which are left out of the samples (see :func:`preempted_rounds`).
    """
    kwargs = kwargs or {}
    if cpu_clock is None and clock is time.perf_counter:
        cpu_clock = time.thread_time
    iterations = 1
    result: list[Any] = [None]
    bare = not args and not kwargs

    def sample() -> tuple[float, float, float | None]:
        c0 = cpu_clock() if cpu_clock else 0.0
        r = None
        # the loop is as lean as a hand-written timer loop: a bare call when there are no arguments
        if bare:
            t0 = clock()
            for _ in range(iterations):
                r = fn()
            wall = clock() - t0
        else:
            t0 = clock()
            for _ in range(iterations):
                r = fn(*args, **kwargs)
            wall = clock() - t0
        result[0] = r
        per_call = wall / iterations
        return per_call, per_call, ((cpu_clock() - c0) / iterations) if cpu_clock else None

    def calibrate(last: float) -> None:
        nonlocal iterations
        if last < settings.min_round_time and iterations < 1_000_000:
            iterations = max(iterations, min(1_000_000, math.ceil(settings.min_round_time / max(last, 1e-9))))

    m = run_rounds(sample, settings, decisive=decisive, clock=clock, calibrate=calibrate)
    m.iterations = iterations
    m.result = result[0]
    return m


def run_rounds(
    sample: Sample,
    settings: MeasureSettings = MeasureSettings(),
    decisive: Callable[[list[float], list[float] | None], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    calibrate: Callable[[float], None] | None = None,
    probe_fn: Callable[[], float] | None = None,
    probe_in_round: bool = False,
    paired: bool = False,
) -> Measurement:
    """Warm up, then take rounds until the stop rule holds; see the module docstring.

    ``sample()`` runs one round and returns ``(value, wall, cpu)``: the sample (a time per call,
    or a rate such as tok/s that a child process printed), the round's wall time and the CPU time
    it used (None when unknown). ``calibrate(value)`` is called after each warm-up round.
    ``probe_fn()``, when given, replaces the speed probe: it returns the time of a fixed piece of
    work (e.g. a reference binary's seconds per token, for rounds that run a native binary).

    Stop rule, checked at growing intervals once ``min_rounds`` are in: the median is precise
    enough for the tolerance (``precision_factor``) and, when ``decisive`` is given (the baseline
    is known), the comparison is decisive; or the time budget is spent. Rounds whose CPU share
    shows they were descheduled are left out (:func:`preempted_rounds`). Each kept round is paired
    with the machine speed around it: the smaller of the probe times before and after it (a probe
    that was itself interrupted reads long; the smaller is the truer).

    ``probe_in_round``: ``sample()`` returns a :class:`Round` whose ``probe`` was timed between the
    round's own runs; with ``settings.probe`` that is the round's speed, and no probe is taken
    around the rounds. ``paired``: ``sample()`` returns a :class:`Round` with the ``reference``
    build's figures, measured within the round; no probe is taken whatever ``settings.probe``
    says, a round is left out when either side of it was descheduled, ``Measurement.paired``
    holds the reference's values of the kept rounds, and ``decisive(samples, paired)`` gets them
    in place of the probe times.
    """
    probe = settings.probe and not paired
    watched = _Watch(clock)
    around = probe and not probe_in_round  # probes taken before each round and after the last
    start = clock()
    values: list[float] = []  # one entry per round, warm-up rounds included
    walls: list[float] = []
    cpu: list[float | None] = []
    shares: list[float] = []  # CPU share of the kept rounds, filled by kept()
    probes: list[float] = []  # probes[i] is taken just before round i
    kept_rounds: list[int] = []
    ref_values: list[float] = []  # paired mode: the reference's side of each round
    ref_walls: list[float] = []
    ref_cpu: list[float | None] = []
    paired_kept: list[float] = []  # the reference's values of the kept rounds, filled by kept()

    def take_probe() -> None:
        if probe_fn is not None:
            probes.append(probe_fn())
            return
        p0 = clock()
        speed_probe()
        probes.append(clock() - p0)

    def one_round() -> None:
        if around:
            take_probe()
        got = sample()
        if isinstance(got, Round):
            value, wall, used = got.value, got.wall, got.cpu
        else:
            value, wall, used = got
        values.append(value)
        walls.append(wall)
        cpu.append(used)
        if paired:
            if not isinstance(got, Round) or got.reference is None:
                raise ValueError("a paired measurement's sample() returns a Round with the reference's figures")
            ref_values.append(got.reference[0])
            ref_walls.append(got.reference[1])
            ref_cpu.append(got.reference[2])
        elif probe and probe_in_round:
            if not isinstance(got, Round) or got.probe is None:
                raise ValueError("sample() returns a Round with its probe time (probe_in_round)")
            probes.append(got.probe)

    def descheduled(first: int, wall_list: list[float], cpu_list: list[float | None]) -> tuple[set[int], bool]:
        used = [c for c in cpu_list[first:] if c is not None]
        known = len(used) == len(cpu_list[first:])
        return (preempted_rounds(wall_list[first:], used) if known else set()), known

    def kept(first: int) -> tuple[list[float], list[float] | None, int]:
        """Samples from round ``first`` on without descheduled rounds, with their speeds (probe
        mode) or the reference's values (paired mode)."""
        drop, known = descheduled(first, walls, cpu)
        if paired:
            drop |= descheduled(first, ref_walls, ref_cpu)[0]
        samples, speeds = [], []
        shares.clear()
        kept_rounds.clear()
        paired_kept.clear()
        for j, i in enumerate(range(first, len(values))):
            if j in drop:
                continue
            samples.append(values[i])
            kept_rounds.append(i)
            if known:
                used = cpu[i]
                shares.append(used / walls[i] if used is not None and walls[i] > 0 else 1.0)
            if around:
                after = probes[i + 1] if i + 1 < len(probes) else probes[i]
                speeds.append(min(probes[i], after))
            elif probe:
                speeds.append(probes[i])
            if paired:
                paired_kept.append(ref_values[i])
        if paired:
            return samples, list(paired_kept), len(drop)
        return samples, (speeds if probe else None), len(drop)

    # warm-up (it also calibrates the iterations per round of a callable)
    warm_end = 0
    fixed = settings.warmup if isinstance(settings.warmup, int) else None
    warmup_note = ""
    while True:
        one_round()
        if watched():
            _progress("warm-up", len(values), values, settings, clock() - start)
        if calibrate is not None:
            calibrate(values[-1])
        if fixed is not None:
            if len(values) > fixed:
                warm_end = fixed
                break
            continue
        found = stats.steady_start(values, settings.warmup_window, settings.warmup_spread)
        if found is not None:
            warm_end = found
            break
        budget_gone = clock() - start > settings.max_time / 2
        if len(values) >= settings.max_warmup_rounds or budget_gone:
            warm_end = 1
            warmup_note = "no steady state within the warm-up bound; discarded the first round only"
            break

    stop_reason = ""
    next_check = max(settings.min_rounds, stats.MIN_SAMPLES)
    while True:
        n = len(values) - warm_end
        elapsed = clock() - start
        if n >= settings.min_rounds and (elapsed >= settings.max_time or n >= next_check or n >= settings.max_rounds):
            samples, speeds, _ = kept(warm_end)
            if len(samples) >= settings.min_rounds:  # min_rounds counts kept rounds, not rounds run
                if elapsed >= settings.max_time:
                    stop_reason = "time budget"
                    break
                if n >= settings.max_rounds:
                    stop_reason = "max rounds"
                    break
                if n >= next_check and settings.adaptive:
                    next_check = n + max(1, n // 4)
                    if _precise_enough(samples, settings):
                        if decisive is None:
                            stop_reason = "precise"
                            break
                        if decisive(samples, speeds):
                            stop_reason = "precise and decisive"
                            break
        one_round()
        if watched():  # no copy of the values per round when nobody listens
            _progress("measured", len(values) - warm_end, values[warm_end:], settings, clock() - start)
    if around:
        take_probe()
    samples, speeds, dropped = kept(warm_end)
    if listeners:
        _progress("done", len(samples), samples, settings, clock() - start, stop_reason or "?")
    if log.isEnabledFor(logging.INFO):
        log.info("llmperf: %d rounds (%d warm-up) in %.1f s, median %.6g, precision +-%.1f%%, stopped: %s",
                 len(samples), warm_end, clock() - start, stats.median(samples),
                 100 * precision(samples, settings.confidence),
                 stop_reason)
    steady = stats.median(samples)
    warmup: WarmupInfo = {
        "discarded": warm_end,
        "first": values[0],
        "steady": steady,
        "ratio": values[0] / steady if steady > 0 else None,
    }
    if dropped:
        warmup["descheduled_rounds"] = dropped
    if warmup_note:
        warmup["note"] = warmup_note
    return Measurement(
        samples=samples,
        cpu_share=stats.median(shares) if shares else None,
        probes=None if paired else speeds,
        iterations=1,
        warmup=warmup,
        result=None,
        stop_reason=stop_reason,
        elapsed=clock() - start,
        rounds_total=len(values),
        kept_rounds=list(kept_rounds),
        paired=list(paired_kept) if paired else None,
    )
