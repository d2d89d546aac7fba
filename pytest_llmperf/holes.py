"""No silent holes: the tests and metrics a run is expected to record (the node's saved baseline;
the glue may add the history's) against what the tests selected in this session recorded, and why
each one that did not record is missing, read from the tests' reports. Pure core: no pytest.

The rule. A test is *selected* when it got a report in this session: a test left out by ``-k``,
``-m``, a path or a deselecting plugin never runs and is not missing (leaving it out was the user's
choice). A selected test that recorded none of its expected metrics, or recorded some and not
others, has a hole per missing metric, with the first reason that applies:

1. skipped (in setup or in the test: the skip reason) or xfailed;
2. errored in setup (a fixture failed: the error's first line);
3. the metric is a profiler's (``perf.*``, ``instructions``, ``nsys.*``) and that profiler was not
   selected for the test (``--llmperf-profile`` or its marker's ``profile=``), or was selected and
   skipped itself (the tool is missing: its reason);
4. the metric is pytest-benchmark's timing and the ``benchmark`` fixture recorded nothing
   (pytest-benchmark disables itself under pytest-xdist);
5. the test failed before recording it;
6. otherwise: recorded nothing / not recorded (with a teardown error when there was one).

The glue fills an :class:`Outcome` per test from its reports (in the process that reports: the
controller under pytest-xdist), builds the expectations, and calls :func:`find`; the holes become
verdicts of status ``missing`` (:func:`verdicts`). In strict mode a hole of a gated metric fails
the session; a missing informational metric (``gate=False``) is shown and never fails: nothing
was gated on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .compare import MISSING, Verdict

# the process profilers' metric names (profilers/: perf_parse names counters "perf.<event>",
# perf record adds "perf.samples", nsys "nsys.*", valgrind "instructions"; a command run with a
# label prefixes "<label>."); kept here because the core never imports a feature
PERF_RECORD_METRICS = ("samples",)
# pytest-benchmark's timing, as plugin_verdicts.benchmark_metric names it
BENCHMARK_METRICS = ("time", "benchmark_time")


def profiler_of(metric: str) -> str | None:
    """The process profiler that records ``metric`` (``perf.task-clock`` -> ``perf-stat``,
    ``run.perf.samples`` -> ``perf-record``, ``nsys.gpu_kernel_ms`` -> ``nsys``, ``instructions``
    -> ``instructions``), or None for a metric the test records itself."""
    parts = metric.split(".")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "perf":
            return "perf-record" if parts[i + 1:] == list(PERF_RECORD_METRICS) else "perf-stat"
        if parts[i] == "nsys":
            return "nsys"
    return "instructions" if parts[-1] == "instructions" else None


@dataclass(frozen=True)
class Expected:
    """A metric a test is expected to record, and where that expectation comes from: ``saved``
    (the saved baseline) or ``history`` (the node's history), as Verdict.reference names them."""

    unit: str
    higher_is_better: bool
    gate: bool = True
    source: str = "saved"
    median: float | None = None  # the reference's median, shown in the baseline column


Expectations = Mapping[str, Mapping[str, Expected]]  # nodeid -> metric name -> Expected


def merge(*sources: Expectations) -> dict[str, dict[str, Expected]]:
    """The expectations of several sources (the saved baseline, the history) in one: a test or
    metric any of them names is expected; where two name the same metric, the first one's unit,
    direction and source stand."""
    out: dict[str, dict[str, Expected]] = {}
    for source in sources:
        for nodeid, metrics in source.items():
            into = out.setdefault(nodeid, {})
            for name, expected in metrics.items():
                into.setdefault(name, expected)
    return out


@dataclass
class Outcome:
    """What the reports of one test said; filled report by report while the session runs."""

    nodeid: str
    phases: dict[str, str] = field(default_factory=dict)  # "setup"/"call"/"teardown" -> passed/failed/skipped
    skip_reason: str = ""
    xfail: str | None = None  # the xfail reason when the test xfailed
    errors: dict[str, str] = field(default_factory=dict)  # phase -> the error's first line
    recorded: set[str] = field(default_factory=set)  # metric names its result carries
    profilers: set[str] = field(default_factory=set)  # process profilers selected for the test
    profilers_skipped: dict[str, str] = field(default_factory=dict)  # profiler -> why it did not run
    benchmark: str = ""  # why pytest-benchmark's fixture recorded nothing (the test asked for it)

    def add(self, when: str, outcome: str, skip_reason: str = "", error: str = "", xfail: str | None = None) -> None:
        """One report: its phase, outcome, and what it says when skipped, xfailed or failed."""
        self.phases[when] = outcome
        if xfail is not None:
            self.xfail = xfail
        if outcome == "skipped" and skip_reason and not self.skip_reason:
            self.skip_reason = skip_reason
        if outcome == "failed" and error:
            self.errors.setdefault(when, error)


def reason(outcome: Outcome, metric: str) -> str:
    """Why ``metric`` of this test did not record (the module docstring's rule)."""
    phases = outcome.phases
    if outcome.xfail is not None:
        return f"xfailed: {outcome.xfail}" if outcome.xfail else "xfailed"
    if "skipped" in (phases.get("setup"), phases.get("call")):
        return f"skipped: {outcome.skip_reason}" if outcome.skip_reason else "skipped"
    if phases.get("setup") == "failed":
        return _with_error("errored in setup", outcome.errors.get("setup"))
    profiler = profiler_of(metric)
    if profiler is not None:
        if profiler in outcome.profilers_skipped:
            return f"profiler {profiler} skipped: {outcome.profilers_skipped[profiler]}"
        if profiler not in outcome.profilers:
            return f"profiler {profiler} off (not in --llmperf-profile nor the test's marker profile=)"
    if outcome.benchmark and metric in BENCHMARK_METRICS:
        return f"pytest-benchmark {outcome.benchmark}"
    if phases.get("call") == "failed":
        return _with_error("failed before recording", outcome.errors.get("call"))
    if "call" not in phases:  # a setup that passed and no call report: the run stopped there
        return "did not run (the session stopped)"
    why = "recorded nothing" if not outcome.recorded else "not recorded in this run"
    if phases.get("teardown") == "failed":
        why = _with_error(why + "; errored in teardown", outcome.errors.get("teardown"))
    return why


def _with_error(what: str, error: str | None) -> str:
    return f"{what}: {error}" if error else what


@dataclass(frozen=True)
class Hole:
    """Expected metrics of one selected test that did not record, for one reason."""

    nodeid: str
    metrics: tuple[str, ...]  # sorted
    reason: str
    whole_test: bool  # the test recorded no metric at all
    gated: bool  # one of them is gated: strict mode fails the session on it
    sources: tuple[str, ...]  # where they were expected: "saved", "history"

    def message(self) -> str:
        """One line: which test, which metrics, from which reference, and why."""
        where = " and ".join("the saved baseline" if s == "saved" else f"the {s}" for s in self.sources)
        names = ", ".join(self.metrics)
        if self.whole_test:
            return f"{self.nodeid}: test of {where} recorded none of its metrics ({names}): {self.reason}"
        noun = "metric" if len(self.metrics) == 1 else "metrics"
        return f"{self.nodeid}: {noun} {names} of {where} not recorded: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {"test": self.nodeid, "metrics": list(self.metrics), "reason": self.reason,
                "whole_test": self.whole_test, "gated": self.gated, "sources": list(self.sources)}


def find(expected: Expectations, outcomes: Iterable[Outcome]) -> list[Hole]:
    """The holes of the selected tests (those with an outcome), in the order the tests ran; per
    test, one hole per distinct reason."""
    holes: list[Hole] = []
    for outcome in outcomes:
        metrics = expected.get(outcome.nodeid)
        if not metrics or not outcome.phases:
            continue
        missing = sorted(set(metrics) - outcome.recorded)
        by_reason: dict[str, list[str]] = {}
        for name in missing:
            by_reason.setdefault(reason(outcome, name), []).append(name)
        for why, names in by_reason.items():
            sources = tuple(dict.fromkeys(metrics[n].source for n in names))
            holes.append(Hole(outcome.nodeid, tuple(names), why, whole_test=not outcome.recorded,
                              gated=any(metrics[n].gate for n in names), sources=sources))
    return holes


def verdicts(holes: Iterable[Hole], expected: Expectations, tolerance: Callable[[str], float]) -> list[Verdict]:
    """One verdict of status ``missing`` per metric of each hole (no current value), for the
    summary table, the counts and the reports; ``tolerance(metric)`` is the one in force."""
    out = []
    for hole in holes:
        for name in hole.metrics:
            e = expected[hole.nodeid][name]
            out.append(Verdict(test=hole.nodeid, metric=name, status=MISSING, unit=e.unit,
                               higher_is_better=e.higher_is_better, tolerance=tolerance(name), current=None,
                               baseline=e.median, reason=hole.reason, reference=e.source))
    return out


__all__ = ["BENCHMARK_METRICS", "Expectations", "Expected", "Hole", "Outcome", "find", "merge", "profiler_of",
           "reason", "verdicts"]
