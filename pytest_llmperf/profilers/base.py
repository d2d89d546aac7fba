"""The interface of process-level profilers, and the one function that runs a command under one.

A profiler wraps a command line (``perf stat ... -- ./run model.bin``), runs it once, and reads
what the tool wrote: metrics (:class:`Reading`), files to keep, a one-line summary, and details
for the JSON report. Each profiler says whether it can run here, and if not, why not, in one line
(tool missing, ``perf_event_paranoid`` forbids, no GPU). No pytest here: the fixture turns
:class:`ProfilerUnavailable` into a note and :class:`ProfilerError` into a failed test.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..compare import MAX_SAMPLE

DEFAULT_TIMEOUT = 600.0

#: readings must stay below this: llmperf.record rejects a sample of 1e18 or more (no count a
#: benchmark makes comes near it: the instructions of a long run are some 1e13), as it rejects a
#: non-finite or a negative one, and a zero in a gated metric (the core's limit, not a copy)
MAX_VALUE = MAX_SAMPLE


class ProfilerUnavailable(RuntimeError):
    """The profiler cannot run on this machine; the message is the reason, naming the tool."""


class ProfilerError(RuntimeError):
    """The profiler ran and failed: the tool or the profiled command exited non-zero, the output
    was unparsable, or an event is unknown. The message is one line naming the tool (and the
    event), then possibly the tail of its stderr."""


@dataclass(frozen=True)
class Reading:
    """One metric value read from one profiled run."""

    name: str  # metric name, e.g. "perf.task-clock", "instructions"
    value: float
    unit: str
    higher_is_better: bool
    gate: bool = True  # False: informational (scheduler-dependent counters and the like)
    exact: bool = False  # deterministic: compared exactly against the tolerance, no statistics
    note: str = ""


@dataclass
class Profile:
    """What one profiled run gave."""

    kind: str  # the profiler's name: perf-stat, perf-record, nsys, instructions
    readings: list[Reading] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # kept as artifacts
    summary: str = ""  # one line for the terminal summary
    unavailable: dict[str, str] = field(default_factory=dict)  # event -> "not supported" / "not counted"
    details: dict = field(default_factory=dict)  # for the JSON report (top symbols, kernels...)


@dataclass(frozen=True)
class Completed:
    """The profiled command's end: the wrapper's exit status and output."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float


class Profiler:
    """Base of the process-level profilers; subclasses set ``name`` and implement the three hooks."""

    name = "profiler"
    #: default number of profiled runs per test; deterministic or read-only profilers run once
    runs_default = 1

    def unavailable_reason(self) -> str | None:
        """None when the profiler can run here, else why not (one line, naming the tool)."""
        raise NotImplementedError

    def is_available(self) -> bool:
        return self.unavailable_reason() is None

    def wrap(self, argv: Sequence[str], outdir: Path, tag: str) -> tuple[list[str], dict[str, str]]:
        """The command line that runs ``argv`` under the tool, writing into ``outdir`` with file
        names starting with ``tag``, and environment variables to add."""
        raise NotImplementedError

    def collect(self, outdir: Path, tag: str, done: Completed) -> Profile:
        """Read the tool's output of the run ``tag``; raises :class:`ProfilerError`."""
        raise NotImplementedError


def zero_note(name: str) -> str:
    return (f"{name} read 0 in a profiled run: informational (gated metrics are compared as a ratio of "
            f"medians, and a zero has no ratio)")


def checked(profiler: str, readings: Sequence[Reading], where: str) -> list[Reading]:
    """``readings`` as llmperf.record takes them. A reading that is not a finite number, is
    negative, or is 1e18 or more is no count the tool can have made (a broken tool, an overflowed
    counter): :class:`ProfilerError`, one line naming the profiler, ``where`` (the file read) and
    the metric. A zero in a gated reading cannot be compared (a change is a ratio of medians): it
    becomes informational (``gate=False``), with a note that says so."""
    out = []
    for r in readings:
        value = r.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfilerError(f"{profiler}: {where}: {r.name} read {value!r}, which is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProfilerError(f"{profiler}: {where}: {r.name} read {value!r}, which is not a finite number")
        if value < 0:
            raise ProfilerError(f"{profiler}: {where}: {r.name} read {value!r}: a count or a time is never negative")
        # an integer just below 1e18 rounds to 1e18 as the float record() gets: compare that float
        if value >= MAX_VALUE or (type(value) is int and float(value) >= MAX_VALUE):
            shown = f"{value:.3g}" if value < 1e300 else "a number beyond 1e300"
            raise ProfilerError(f"{profiler}: {where}: {r.name} read {shown}: out of range (1e18 or more is no "
                                f"count of a run: an overflowed or broken counter?)")
        if type(value) is not float:
            r = replace(r, value=float(value))
        if value == 0 and r.gate:
            r = replace(r, gate=False, note="; ".join(n for n in (r.note, zero_note(r.name)) if n))
        out.append(r)
    return out


def tail(text: str, lines: int = 6) -> str:
    rows = [r for r in (text or "").rstrip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


def describe(argv: Sequence[str]) -> str:
    return " ".join(a if a and " " not in a else repr(a) for a in argv)


def run(profiler: Profiler, argv: Sequence[str], outdir: str | os.PathLike, tag: str = "run",
        env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
        timeout: float = DEFAULT_TIMEOUT) -> Profile:
    """Run ``argv`` once under ``profiler``; its files go to ``outdir``. Raises
    :class:`ProfilerUnavailable` (before running anything) or :class:`ProfilerError`."""
    reason = profiler.unavailable_reason()
    if reason is not None:
        raise ProfilerUnavailable(f"{profiler.name}: {reason}")
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProfilerError(f"{profiler.name}: cannot create the artifacts directory {outdir}: "
                            f"{exc.strerror or exc}") from None
    wrapped, extra = profiler.wrap([str(a) for a in argv], outdir, tag)
    full_env = dict(os.environ if env is None else env)
    for key, value in extra.items():
        earlier = full_env.get(key, "").strip() if key == "LD_PRELOAD" else ""
        full_env[key] = f"{value}:{earlier}" if earlier else value  # a preload goes first, keeping the rest
    t0 = time.perf_counter()
    try:
        out = subprocess.run(wrapped, env=full_env, cwd=cwd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProfilerError(f"{profiler.name}: {describe(wrapped)} did not finish within {timeout:g} s "
                            f"and was killed") from None
    except OSError as exc:
        raise ProfilerError(f"{profiler.name}: cannot run {wrapped[0]}: {exc.strerror or exc}") from None
    done = Completed(wrapped, out.returncode, out.stdout.decode("utf-8", "replace"),
                     out.stderr.decode("utf-8", "replace"), time.perf_counter() - t0)
    return profiler.collect(outdir, tag, done)


def killed_by(number: int) -> str:
    """``signal 11 (SIGSEGV)``, or ``signal 99`` for a number that names no signal here."""
    import signal

    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def ended(code: int) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    return f"was killed by {killed_by(-code)}" if code < 0 else f"exited with code {code}"


def child_failed(profiler: Profiler, done: Completed, argv0: str, hint: str = "") -> ProfilerError:
    """The error for a profiled command that exited non-zero (the tool passes its status on, or
    ``done.returncode`` is the status the profiler read elsewhere); a negative code is a signal.
    ``hint``, in brackets after the status, says more of it."""
    code = done.returncode
    what = ended(code) + (f" ({hint})" if hint else "")
    shown = tail(done.stderr) or tail(done.stdout) or "(no output)"
    return ProfilerError(f"{profiler.name}: {Path(argv0).name} under {profiler.name} {what}; "
                         f"stderr ends with:\n{shown}")
