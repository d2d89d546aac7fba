"""Process-level profilers: perf stat, perf record, nsys, and valgrind instruction counts.

Each lives in its own module behind the interface of :mod:`.base`; this package module holds
only names and settings, so that importing it costs nothing. :func:`create` imports the one
module a profiler needs when a test asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Profiler

# the names --llmperf-profile and @pytest.mark.llmperf(profile=...) accept for process profilers
PROCESS_PROFILERS = ("perf-stat", "perf-record", "nsys", "instructions")

# perf's default software events plus the hardware counters our users read on the boards;
# a VM without a PMU prints <not supported> for the hardware ones, which are recorded as such
DEFAULT_PERF_EVENTS: tuple[str, ...] = ("task-clock", "context-switches", "cpu-migrations", "page-faults",
                                        "cycles", "instructions", "branches", "branch-misses", "cache-references",
                                        "cache-misses")
DEFAULT_PERF_FREQ = 999  # perf record samples per second (perf's usual default is 4000; 999 avoids lockstep)
DEFAULT_PROFILE_RUNS = 3  # runs of the repeated profilers (perf-stat, nsys): each run is a sample


@dataclass(frozen=True)
class ProfilerOptions:
    """Settings of the process profilers, from the command line (see profilers.fixtures)."""

    perf: str = "perf"
    valgrind: str = "valgrind"
    nsys: str | None = None  # None: search PATH and the usual CUDA / Nsight locations
    perf_events: tuple[str, ...] = DEFAULT_PERF_EVENTS
    perf_freq: int = DEFAULT_PERF_FREQ
    runs: int = DEFAULT_PROFILE_RUNS
    cc: str = "cc"  # builds the valgrind fake-clock shim and perf stat's exit-status wrapper
    cache_dir: Path | None = None  # where they are built


def create(name: str, options: ProfilerOptions | None = None) -> Profiler:
    """The profiler called ``name`` (one of PROCESS_PROFILERS), importing only its module."""
    options = options or ProfilerOptions()
    if name == "perf-stat":
        from .perf_run import PerfStat

        return PerfStat(options.perf, options.perf_events, options.cc, options.cache_dir)
    if name == "perf-record":
        from .perf_run import PerfRecord

        return PerfRecord(options.perf, options.perf_freq)
    if name == "nsys":
        from .nsys import Nsys

        return Nsys(options.nsys)
    if name == "instructions":
        from .valgrind import Instructions

        return Instructions(options.valgrind, options.cc, options.cache_dir)
    raise ValueError(f"unknown profiler {name!r} (known: {', '.join(PROCESS_PROFILERS)})")
