"""The core glue's verdicts: one test's metrics compared with the node's baseline, into the
TestResult that its report carries. Imported by plugin.py when a test has recorded metrics."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest

from . import compare, stats
from .api import MARKER, RECORDER, Session
from .baseline import metric_to_json
from .config import tolerance_for
from .plugin_history import changepoint_check, history_verdict
from .result import TestResult, baseline_applies


def benchmark_metric(item: pytest.Item, taken: set[str]) -> compare.Metric | None:
    """The timing of pytest-benchmark's ``benchmark`` fixture, as a metric of this test."""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    stats = getattr(getattr(fixture, "stats", None), "stats", None)
    data = list(getattr(stats, "data", None) or [])
    if not data:
        return None
    name = "time" if "time" not in taken else "benchmark_time"
    return compare.Metric(name=name, unit="s", higher_is_better=False, samples=[float(x) for x in data],
                          normalize="off")


def benchmark_silence(item: pytest.Item, is_worker: bool) -> str:
    """Why the ``benchmark`` fixture, when the test asked for it, recorded no timings ("" when it
    did, or the test did not ask): pytest-benchmark disables itself under pytest-xdist (its
    fixture then runs the function once, untimed), or by --benchmark-disable."""
    if "benchmark" not in getattr(item, "fixturenames", ()):
        return ""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if fixture is None or benchmark_metric(item, set()) is not None:
        return ""
    if getattr(fixture, "disabled", False):
        if is_worker or os.environ.get("PYTEST_XDIST_WORKER"):
            return "disabled under pytest-xdist (it disables itself there): run the benchmarks without -n"
        return "disabled (--benchmark-disable)"
    return "recorded no timings (the test did not call benchmark())"


def _params(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    out = {}
    for key, value in callspec.params.items():
        out[key] = value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)
    return out


def _not_compared(test: str, base: compare.Metric, metric: compare.Metric, tol: float,
                  diff_lines: list[str]) -> compare.Verdict:
    """Not compared (the machine fingerprint differs), with the baseline's median and the raw
    change of the plain medians still shown: the reader sees what the gate did not judge."""
    v = compare.not_compared(test, metric, tol, diff_lines)
    if not base.samples or not metric.samples:
        return v
    base_median, cur_median = stats.median(base.samples), stats.median(metric.samples)
    raw = cur_median / base_median - 1.0 if base_median > 0 else None
    return replace(v, baseline=base_median, n_baseline=len(base.samples), raw_change=raw)


def evaluate(state: Session, item: pytest.Item, metrics: list[compare.Metric]) -> tuple[TestResult, list[str]]:
    """Compare the metrics of one test with its baseline; returns (result, failure lines)."""
    cfg = state.config
    marker = item.stash.get(MARKER, None)
    _info, fields, digest = state.machine()
    base_metrics, base_digest, base_fields, base_path = state.store.lookup(item.nodeid)
    differs = bool(base_metrics) and not baseline_applies(base_digest, digest, cfg.force_compare)
    diff_lines: list[str] = []
    if differs:
        from .hardware import fingerprint_diff

        diff_lines = fingerprint_diff(base_fields or {}, fields) or [f"fingerprint {base_digest} -> {digest}"]
    verdicts, failures, errors = [], [], []
    for metric in metrics:
        tol = tolerance_for(metric.name, cfg, marker)
        if cfg.smoke:
            verdicts.append(compare.smoke_verdict(item.nodeid, metric, tol))
            continue
        base = base_metrics.get(metric.name)
        what = compare.mismatch(base, metric) if base is not None else None
        if what is not None:
            line = (f"llmperf: metric {metric.name!r}: {what} in {base_path}; "
                    f"re-save the baseline with --llmperf-save-baseline")
            if not cfg.save_baseline and not cfg.report_only and metric.gate:
                errors.append(line)
            verdicts.append(compare.not_compared(item.nodeid, metric, tol, [what], why="metric changed"))
            continue
        # a paired metric is compared with its reference build's rounds of this session; else the
        # history reference when asked for and the test has accepted nights on this machine; else
        # the saved baseline
        hv = history_verdict(state, item.nodeid, metric, tol) if not metric.paired else None
        if hv is not None:
            v = hv
        elif differs and base is not None and not metric.paired:
            v = _not_compared(item.nodeid, base, metric, tol, diff_lines)
        else:
            v = compare.compare_metric(item.nodeid, base, metric, tol, cfg.confidence, cfg.noise_floor)
        v = compare.unfit_verdict(v, metric)
        v, step_line = changepoint_check(state, item.nodeid, metric, v)
        verdicts.append(v)
        if cfg.save_baseline or cfg.report_only:
            continue
        if step_line is not None:
            failures.append(step_line)
        elif v.status == compare.REGRESSED:
            failures.append("llmperf: " + compare.verdict_message(v))
        elif v.status == compare.NOT_COMPARED and cfg.strict and metric.gate:
            failures.append(f"llmperf: metric {metric.name!r} not compared (--llmperf-strict): {v.reason}; "
                            f"raw change of the medians {compare.fmt_pct(v.raw_change)} (baseline "
                            f"{compare.fmt_value(v.baseline)} -> current {compare.fmt_value(v.current)}"
                            f"{' ' + metric.unit if metric.unit else ''}); save a baseline on this machine "
                            f"(--llmperf-save-baseline) or compare anyway (--llmperf-force-compare)")
        elif v.status == compare.NEW and cfg.require_baseline:
            failures.append(f"llmperf: metric {metric.name!r} has no baseline on node {cfg.node} "
                            f"(--llmperf-require-baseline); save one with --llmperf-save-baseline")
    recorder = item.stash.get(RECORDER, None)
    result = TestResult(
        nodeid=item.nodeid,
        params=_params(item),
        metrics={m.name: metric_to_json(m) for m in metrics},
        verdicts=tuple(verdicts),
        fingerprint=digest,
        artifacts=tuple(recorder.artifacts) if recorder is not None else (),
        roofline=tuple(recorder.estimates) if recorder is not None else (),
    )
    return result, errors + failures
