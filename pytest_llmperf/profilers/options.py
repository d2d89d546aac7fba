"""The process profilers' options: declared once, parsed once (at configure time) into the frozen
ProfilingOptions. The parser is pure: a bad value is a ConfigError naming the option."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..api import Option, Value
from ..config import ConfigError, parse_positive_int
from . import DEFAULT_PERF_EVENTS, DEFAULT_PERF_FREQ, DEFAULT_PROFILE_RUNS, ProfilerOptions

GROUP = ("llmperf-profilers", "pytest-llmperf profilers: perf, valgrind and nsys around benchmarked commands")

OPTIONS: tuple[Option, ...] = (
    Option("--llmperf-profile-runs", metavar="N",
           help=f"runs of the repeated process profilers (perf-stat, nsys), each a sample of their metrics "
                f"(3 or more to gate on them); perf-record and instructions run once; default: {DEFAULT_PROFILE_RUNS}"),
    Option("--llmperf-perf-events", metavar="EVENTS",
           help="perf stat events, comma-separated (see 'perf list'); default: task-clock, context-switches, "
                "cpu-migrations, page-faults, cycles, instructions, branches, branch-misses, cache-references, "
                "cache-misses"),
    Option("--llmperf-perf-freq", metavar="HZ", help=f"perf record sampling frequency; default: {DEFAULT_PERF_FREQ}"),
    Option("--llmperf-profile-inline", action="store_true", ini=False,
           help="perf-stat counts the timed llama2.c rounds themselves (its overhead then enters tok/s) "
                "instead of runs of its own"),
    Option("--llmperf-perf", metavar="PATH", env="LLMPERF_PERF", ini=False,
           help="the perf executable (also env LLMPERF_PERF); default: perf on PATH"),
    Option("--llmperf-valgrind", metavar="PATH", env="LLMPERF_VALGRIND", ini=False,
           help="the valgrind executable (also env LLMPERF_VALGRIND); default: valgrind on PATH"),
    Option("--llmperf-nsys", metavar="PATH", env="LLMPERF_NSYS", ini=False,
           help="the nsys executable (also env LLMPERF_NSYS); default: PATH, then the usual CUDA and Nsight "
                "Systems install locations"),
)


@dataclass(frozen=True)
class ProfilingOptions:
    tools: ProfilerOptions  # what each profiler is run with
    inline: bool  # --llmperf-profile-inline


def tool_problem(value: str) -> str | None:
    """Why ``value``, a tool's executable given by the user, cannot be run, or None: a path (with
    a ``/``; ``~`` expanded) must be an executable file, a bare name must be one on PATH."""
    from ..fileutil import executable_problem, is_path

    shown = value if value.isprintable() else repr(value)  # the message stays one line
    if "\x00" in value:
        return f"{shown} is not a path (it holds a NUL character)"
    path = os.path.expanduser(value)
    if not path.strip():
        return "the path is empty"
    if not is_path(path):
        return None if shutil.which(path) else f"{shown} is not on PATH (no executable file of that name there)"
    problem = executable_problem(path)
    return f"{shown} {problem}" if problem else None


def parse(values: Mapping[str, Value], cc: str = "cc", cache_dir: Path | None = None) -> ProfilingOptions:
    """A tool's executable given explicitly (--llmperf-perf, --llmperf-valgrind, --llmperf-nsys or
    their environment variables) must be one, whether or not a test selects its profiler: the
    option names the tool for any test that may, markers included, and a path that is wrong is a
    mistake either way, which a skip ("not found") would hide."""
    tools: dict[str, str | None] = {}
    for dest in ("llmperf_perf", "llmperf_valgrind", "llmperf_nsys"):
        value = values[dest]
        if value.raw is None:
            tools[dest] = None
            continue
        problem = tool_problem(str(value.raw))
        if problem is not None:
            raise ConfigError(f"llmperf: {value.where}: {problem}")
        tools[dest] = os.path.expanduser(str(value.raw))
    try:
        runs = parse_positive_int(values["llmperf_profile_runs"].raw or DEFAULT_PROFILE_RUNS, "--llmperf-profile-runs")
        freq = parse_positive_int(values["llmperf_perf_freq"].raw or DEFAULT_PERF_FREQ, "--llmperf-perf-freq")
    except ConfigError as exc:
        raise ConfigError(f"llmperf: {exc}") from None
    raw_events = values["llmperf_perf_events"].raw
    events = DEFAULT_PERF_EVENTS
    if raw_events is not None:
        events = tuple(e.strip() for e in str(raw_events).split(",") if e.strip())
        if not events:
            raise ConfigError(f"llmperf: --llmperf-perf-events: no event in {raw_events!r}")
    return ProfilingOptions(
        tools=ProfilerOptions(perf=tools["llmperf_perf"] or "perf", valgrind=tools["llmperf_valgrind"] or "valgrind",
                              nsys=tools["llmperf_nsys"], perf_events=events, perf_freq=freq, runs=runs, cc=cc,
                              cache_dir=cache_dir / "profilers" if cache_dir is not None else None),
        inline=bool(values["llmperf_profile_inline"].raw),
    )
