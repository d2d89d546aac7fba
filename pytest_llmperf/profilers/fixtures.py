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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from . import ProfilerOptions
    from .options import ProfilingOptions

REASONS = pytest.StashKey[dict]()
OPTIONS_KEY: pytest.StashKey[ProfilingOptions] = pytest.StashKey()  # parsed once, by plugin.pytest_configure


def options(config: pytest.Config) -> ProfilerOptions:
    """The ProfilerOptions of this session (parsed at configure time)."""
    return config.stash[OPTIONS_KEY].tools


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

    def options(self) -> ProfilerOptions:
        return options(self._request.config)

    def perf_stat_inline(self) -> Any:
        """The perf-stat profiler that counts the timed rounds themselves (``--llmperf-profile-inline``),
        or None: for a feature's bench that runs the rounds (llama2c)."""
        return perf_stat_inline(self._request.config)

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
                    f"{full}: {len(readings)} profiled run(s), informational "
                    f"(--llmperf-profile-runs 3 or more gates it)")
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


def perf_stat_inline(config: pytest.Config) -> Any:
    """The perf-stat profiler when the timed rounds themselves are to be counted
    (``--llmperf-profile-inline``), else None."""
    if not config.stash[OPTIONS_KEY].inline:
        return None
    from . import create

    return create("perf-stat", options(config))


@pytest.fixture
def llmperf_profile(request: pytest.FixtureRequest) -> ProcessProfiling:
    """Run a command under the process profilers selected for this test (``--llmperf-profile`` or
    ``@pytest.mark.llmperf(profile=...)``): ``llmperf_profile.command(["./run", "model.bin"])``;
    their readings become metrics of the test and their files go under ``--llmperf-artifacts``."""
    return ProcessProfiling(request)

