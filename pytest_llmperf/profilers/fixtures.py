"""pytest glue of the process profilers: options, the ``llmperf_profile`` fixture.

A test (or the ``llama2c`` fixture, after its timed rounds) hands a command line to
``llmperf_profile.command(argv)``; every process profiler selected for the test (by
``--llmperf-profile`` or ``@pytest.mark.llmperf(profile=...)``) runs it in runs of its own, apart
from the timed ones, so profiling overhead never enters a timed sample. Their readings become
metrics of the test (gated like any other), their files go under ``--llmperf-artifacts``.

A profiler that cannot run here (tool missing, perf_event_paranoid, no GPU) is skipped with its
reason in the summary: the test and its other metrics are unaffected. A profiler that runs and
fails (non-zero exit, unparsable output, unknown event) fails the test with a one-line error
naming the tool; the metrics recorded before it are still compared and reported.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REASONS = pytest.StashKey[dict]()

# the options (and environment variables) that name a tool's executable
TOOL_OPTIONS = (("llmperf_perf", "LLMPERF_PERF"), ("llmperf_valgrind", "LLMPERF_VALGRIND"),
                ("llmperf_nsys", "LLMPERF_NSYS"))


def add_options(add) -> None:
    """Options of the process profilers, added to the llmperf group by plugin.pytest_addoption."""
    from . import DEFAULT_PERF_FREQ, DEFAULT_PROFILE_RUNS

    add("--llmperf-profile-runs", "llmperf_profile_runs", metavar="N", dest="llmperf_profile_runs",
        help=f"runs of the repeated process profilers (perf-stat, nsys), each a sample of their metrics "
             f"(3 or more to gate on them); perf-record and instructions run once; default: {DEFAULT_PROFILE_RUNS}")
    add("--llmperf-perf-events", "llmperf_perf_events", metavar="EVENTS", dest="llmperf_perf_events",
        help="perf stat events, comma-separated (see 'perf list'); default: task-clock, context-switches, "
             "cpu-migrations, page-faults, cycles, instructions, branches, branch-misses, cache-references, "
             "cache-misses")
    add("--llmperf-perf-freq", "llmperf_perf_freq", metavar="HZ", dest="llmperf_perf_freq",
        help=f"perf record sampling frequency; default: {DEFAULT_PERF_FREQ}")
    add("--llmperf-profile-inline", None, action="store_true", default=False, dest="llmperf_profile_inline",
        help="perf-stat counts the timed llama2.c rounds themselves (its overhead then enters tok/s) "
             "instead of runs of its own")
    add("--llmperf-perf", None, metavar="PATH", dest="llmperf_perf",
        help="the perf executable (also env LLMPERF_PERF); default: perf on PATH")
    add("--llmperf-valgrind", None, metavar="PATH", dest="llmperf_valgrind",
        help="the valgrind executable (also env LLMPERF_VALGRIND); default: valgrind on PATH")
    add("--llmperf-nsys", None, metavar="PATH", dest="llmperf_nsys",
        help="the nsys executable (also env LLMPERF_NSYS); default: PATH, then the usual CUDA and Nsight "
             "Systems install locations")


def options(config: pytest.Config):
    """The ProfilerOptions of this session; UsageError naming a bad option."""
    from ..api import option_value as _value
    from ..config import ConfigError, parse_positive_int
    from . import DEFAULT_PERF_EVENTS, DEFAULT_PERF_FREQ, DEFAULT_PROFILE_RUNS, ProfilerOptions

    v = lambda dest, env=None: _value(config, dest, env)[0]  # noqa: E731
    try:
        runs = parse_positive_int(v("llmperf_profile_runs") or DEFAULT_PROFILE_RUNS, "--llmperf-profile-runs")
        freq = parse_positive_int(v("llmperf_perf_freq") or DEFAULT_PERF_FREQ, "--llmperf-perf-freq")
    except ConfigError as exc:
        raise pytest.UsageError(f"llmperf: {exc}") from None
    raw_events = v("llmperf_perf_events")
    events = DEFAULT_PERF_EVENTS
    if raw_events is not None:
        events = tuple(e.strip() for e in str(raw_events).split(",") if e.strip())
        if not events:
            raise pytest.UsageError(f"llmperf: --llmperf-perf-events: no event in {raw_events!r}")
    cache = v("llmperf_cache_dir", "LLMPERF_CACHE_DIR")
    if cache:
        cache_dir = Path(str(cache)).expanduser()
    else:
        from ..native.cache import default_cache_dir

        cache_dir = default_cache_dir()
    tool = lambda dest, env: os.path.expanduser(str(v(dest, env))) if v(dest, env) else None  # noqa: E731
    return ProfilerOptions(
        perf=tool("llmperf_perf", "LLMPERF_PERF") or "perf",
        valgrind=tool("llmperf_valgrind", "LLMPERF_VALGRIND") or "valgrind",
        nsys=tool("llmperf_nsys", "LLMPERF_NSYS"),
        perf_events=events, perf_freq=freq, runs=runs,
        cc=str(v("llmperf_cc", "LLMPERF_CC") or "cc"), cache_dir=cache_dir / "profilers",
    )


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


def check_options(config: pytest.Config) -> None:
    """Usage errors of the profiler options at configure time (exit code 4). A tool's executable
    given explicitly (--llmperf-perf, --llmperf-valgrind, --llmperf-nsys or their environment
    variables) must be one, whether or not a test selects its profiler: the option names the tool
    for any test that may, markers included, and a path that is wrong is a mistake either way,
    which a skip ("not found") would hide."""
    from ..api import option_value as _value

    for dest, env in TOOL_OPTIONS:
        value, where = _value(config, dest, env)
        if value is None:
            continue
        problem = tool_problem(str(value))
        if problem is not None:
            raise pytest.UsageError(f"llmperf: {where}: {problem}")
    if any(_value(config, d)[0] for d in ("llmperf_profile_runs", "llmperf_perf_freq", "llmperf_perf_events")):
        options(config)


def selected(item: pytest.Item) -> tuple[str, ...]:
    """The process profilers of one test: --llmperf-profile's and its marker's, in a fixed order."""
    from ..api import MARKER, STATE
    from . import PROCESS_PROFILERS

    names = set(item.config.stash[STATE].config.profilers)
    marker = item.stash.get(MARKER, None)
    if marker is not None and marker.profile:
        names |= marker.profile
    return tuple(n for n in PROCESS_PROFILERS if n in names)


class ProcessProfiling:
    """What the ``llmperf_profile`` fixture gives a test: ``command(argv)`` runs a command under each
    process profiler selected for the test and records what they read."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        self.names = selected(request.node)
        self._used_tags: set[str] = set()
        self._recorded: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.names)

    @property
    def directory(self) -> Path:
        """This test's artifacts directory: ``<artifacts>/<node>/<test>``."""
        from ..api import artifact_dir

        return artifact_dir(self._request.config, self._request.node.nodeid)

    def options(self):
        return options(self._request.config)

    def command(self, argv: Sequence[Any], env: Mapping[str, str] | None = None, cwd: Any = None,
                timeout: float = 600.0, label: str | None = None, only: Sequence[str] | None = None) -> dict:
        """Run ``argv`` under each selected process profiler (or those of ``only`` among them), in
        runs of its own; returns ``{profiler: [Profile per run]}``. Metrics are named as the
        profiler reads them (``perf.task-clock``, ``instructions``, ``nsys.gpu_kernel_ms``), or
        ``<label>.<name>`` with ``label`` (for a second command in the same test)."""
        from ..api import fail as _fail
        from . import create
        from .base import ProfilerError, ProfilerUnavailable, run

        names = [n for n in self.names if only is None or n in only]
        if not names:
            return {}
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("llmperf_profile.command: empty command line")
        opts = self.options()
        recorder = self._request.getfixturevalue("llmperf")
        reasons = self._request.config.stash.setdefault(REASONS, {})
        stem = label or Path(argv[0]).name or "cmd"
        base_tag, i = stem, 1
        while base_tag in self._used_tags:
            i += 1
            base_tag = f"{stem}{i}"
        self._used_tags.add(base_tag)
        results: dict = {}
        errors: list[str] = []
        for name in names:
            profiler = create(name, opts)
            if name not in reasons:
                reasons[name] = profiler.unavailable_reason()
            if reasons[name] is not None:
                recorder.add_artifact(name, [], f"skipped: {reasons[name]}", {"skipped": reasons[name]})
                continue
            runs = opts.runs if profiler.runs_default > 1 else 1
            profiles = []
            try:
                for r in range(1, runs + 1):
                    tag = f"{base_tag}-{name}-{r}" if runs > 1 else f"{base_tag}-{name}"
                    profiles.append(run(profiler, argv, self.directory, tag=tag, env=env, cwd=cwd, timeout=timeout))
            except ProfilerUnavailable as exc:  # it changed its mind while running: treat as a skip
                recorder.add_artifact(name, [], f"skipped: {exc}", {"skipped": str(exc)})
                continue
            except ProfilerError as exc:
                errors.append(f"llmperf: {exc}")
                continue
            results[name] = profiles
            self._record(recorder, name, profiles, label)
        if errors:
            _fail("\n".join(errors))
        return results

    def record_inline(self, profiler, tags: Sequence[str], results: Sequence[Any]) -> None:
        """Counters of timed rounds that ran under ``perf stat`` (``--llmperf-profile-inline``):
        one sample per kept round. ``results`` are the rounds' RunResults (argv, exit, output)."""
        from ..api import fail as _fail
        from .base import Completed, ProfilerError

        profiles = []
        try:
            for tag, r in zip(tags, results):
                done = Completed(list(r.argv), r.returncode, r.stdout, r.stderr, r.wall_s)
                profiles.append(profiler.collect(self.directory, tag, done))
        except ProfilerError as exc:
            _fail(f"llmperf: {exc}")
        if profiles:
            self._record(self._request.getfixturevalue("llmperf"), profiler.name, profiles, None,
                         how="counted in the timed rounds (--llmperf-profile-inline)")

    def _record(self, recorder, name: str, profiles: list, label: str | None, how: str = "") -> None:
        from ..stats import MIN_SAMPLES

        by_metric: dict[str, list] = {}
        for profile in profiles:
            for reading in profile.readings:
                by_metric.setdefault(reading.name, []).append(reading)
        for metric, readings in by_metric.items():
            full = f"{label}.{metric}" if label else metric
            if full in self._recorded or full in recorder.metrics:
                from ..recorder import RecordError

                raise RecordError(
                    f"llmperf_profile.command: metric {full!r} is already recorded in this test; "
                    f"give the second command a label (command(argv, label='other'))")
            first = readings[0]
            # one run's zero made its reading informational (base.checked): then so is the metric,
            # whose samples llmperf.record checks as a gated metric's otherwise
            gate = all(r.gate for r in readings)
            note = "; ".join(dict.fromkeys(r.note for r in readings if r.note))
            if gate and not first.exact and len(readings) < MIN_SAMPLES:
                gate = False
                note = (note + "; " if note else "") + (
                    f"{full}: {len(readings)} profiled run(s), informational (--llmperf-profile-runs 3 or more gates it)")
            recorder.record(full, [r.value for r in readings], unit=first.unit,
                            higher_is_better=first.higher_is_better, gate=gate, note=note, exact=first.exact)
            self._recorded.add(full)
        first = profiles[0]
        summary = first.summary + (f" (run 1 of {len(profiles)})" if len(profiles) > 1 else "")
        if how:
            summary += f"; {how}"
        details = dict(first.details)
        if first.unavailable:
            details["not_counted"] = dict(first.unavailable)
        files = [f for p in profiles for f in p.files]
        recorder.add_artifact(name, files, summary, details)


def perf_stat_inline(config: pytest.Config):
    """The perf-stat profiler when the timed rounds themselves are to be counted
    (``--llmperf-profile-inline``), else None."""
    from ..api import option_value as _value

    if not _value(config, "llmperf_profile_inline")[0]:
        return None
    from . import create

    return create("perf-stat", options(config))


@pytest.fixture
def llmperf_profile(request: pytest.FixtureRequest) -> ProcessProfiling:
    """Run a command under the process profilers selected for this test (``--llmperf-profile`` or
    ``@pytest.mark.llmperf(profile=...)``): ``llmperf_profile.command(["./run", "model.bin"])``;
    their readings become metrics of the test and their files go under ``--llmperf-artifacts``."""
    return ProcessProfiling(request)

