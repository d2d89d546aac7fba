"""A run's verdicts as the input of two dashboards, and the JSON Schemas of the files the plugin
writes. Pure core: stdlib only, no pytest.

Bencher Metric Format (:func:`bmf`, :func:`write_bmf`)
    BMF version 0 (``https://bencher.dev/v0/bmf.json``, the version Bencher reads when none is
    declared), as bencher.dev/docs/reference/bencher-metric-format states it, with the name limits of
    Bencher's ``bencher_valid`` crate: ``{benchmark: {measure: {"value", "lower_value",
    "upper_value"}}}``, ``value`` a number, the two bounds optional numbers; a benchmark name is
    1 to 1024 bytes of UTF-8, a measure name 1 to 64. The benchmark is the test id
    (Verdict.test), the measure the metric's name (Verdict.metric), the value this run's median
    (Verdict.current). BMF carries neither unit nor direction: a Bencher threshold is set per measure
    (its upper boundary for a time, its lower one for a rate).

github-action-benchmark (:func:`gab`, :func:`write_gab`)
    The ``customBiggerIsBetter`` and ``customSmallerIsBetter`` tools of
    benchmark-action/github-action-benchmark v1 (custom tools since v1.10.0; the rules read from
    src/extract.ts, ``extractCustomBenchmarkResult``, and src/write/findAlerts.ts of the v1 line):
    the file is a non-empty JSON array of ``{"name", "value", "unit", "range"?, "extra"?}`` with
    ``name``, ``unit``, ``range`` and ``extra`` strings and ``value`` a number; runs are matched by
    ``name`` (so names must be unique and stable), and an alert compares the ratio of two runs'
    values (prev/current for bigger-is-better, current/prev for smaller-is-better). The name is
    ``"<test id> [<metric>]"``: a metric name holds no space or bracket (config's metric name rule),
    so the last `` [`` splits it and two (test, metric) pairs never share a name. Metrics that are
    higher-is-better go to the first list, the others to the second.

What is exported
    Every verdict with a current value, gated or not, decided or not (new, noisy, not-compared,
    oversubscribed and info included): a dashboard plots what was measured, and the verdict's
    status and change go with it (github-action-benchmark's ``extra``, shown in the chart's
    tooltip). A verdict of no current value (a missing metric) or a current value that is not a
    finite number is left out. When one (test, metric) has several verdicts (a test run twice in
    one session), the last one is kept. github-action-benchmark also leaves out a value that is not
    positive: its alert divides by the previous run's value or by this one's, so a zero (an
    informational count such as cpu-migrations) would read as an infinite change on the next run.

The interval of the current value
    ``lower_value``/``upper_value`` (BMF) and ``range`` (github-action-benchmark) come from the
    verdict's confidence interval of the change (Verdict.ci_low, ci_high; 99% by default): the
    current median scaled by the interval's ratio to the estimate, ``current * (1 + ci_low) / (1 +
    change)`` to ``current * (1 + ci_high) / (1 + change)``. The interval is a relative
    uncertainty of the estimated ratio current/reference; moving it onto the current value keeps
    its shape (asymmetric, as the interval of a log-ratio is) and stays right when the change was
    estimated from speed-adjusted samples or paired rounds (the estimate is then not
    current/baseline, but the relative width is what the comparison knew). It is the honest band
    of tonight's value *as the gate saw it*: it holds the reference's share of the uncertainty and
    the session-to-session noise floor too, so it is wider than the spread of tonight's rounds
    alone (by up to about 1.4x when both sides had as many rounds) - the band a rerun would fall
    in, not the precision of one median. A deterministic count has the change itself as its
    interval, so both bounds equal the value. No interval (a new metric, not compared, medians
    that could not form a ratio): the bounds are omitted. github-action-benchmark's ``range`` is
    ``"± h"`` with h half the width of that band (the ``±`` form is the one the action parses when
    it converts between time units); the exact bounds are in ``extra``.

Files
    :func:`write_bmf` writes one file, ``{}`` when nothing was measured. :func:`write_gab` writes
    ``<stem>-bigger.json`` and ``<stem>-smaller.json`` next to the path it is given
    (``out/gab.json`` -> ``out/gab-bigger.json``, ``out/gab-smaller.json``; a directory ->
    ``<dir>/llmperf-bigger.json``, ...), each only when it has entries: the action fails on an
    empty array, and a missing file is what a workflow can test for (``hashFiles``). A file of
    an earlier run at the path of a list that is empty tonight is removed, so that a CI step never
    publishes last night's values as tonight's. Both write through fileutil.atomic_write.

Schemas
    :func:`schema` returns one of the JSON Schemas (draft 2020-12) shipped in ``schemas/``: the
    run JSON of ``--llmperf-json`` (``run``), a baseline file (``baseline``) and one line of a
    history file (``history``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from .compare import INFO, Verdict, fmt_pct
from .fileutil import atomic_write

BMF_VERSION = 0
BENCHMARK_NAME_MAX = 1024  # bytes of UTF-8 (bencher_valid::BenchmarkName)
MEASURE_NAME_MAX = 64  # bytes of UTF-8 (a measure's name or slug)
GAB_DIR_STEM = "llmperf"  # the file stem write_gab uses in a directory
SCHEMA_NAMES = ("run", "baseline", "history")

BmfMetric = dict[str, float]
Bmf = dict[str, dict[str, BmfMetric]]
GabEntry = dict[str, Any]


def _finite(value: float | None) -> bool:
    return value is not None and not isinstance(value, bool) and math.isfinite(value)


def _exported(verdicts: Iterable[Verdict]) -> list[tuple[Verdict, float]]:
    """The verdicts with a finite current value, with that value: the last one of each (test,
    metric), in the order their (test, metric) first appeared."""
    kept: dict[tuple[str, str], tuple[Verdict, float]] = {}
    for v in verdicts:
        if v.current is not None and _finite(v.current):
            kept[(v.test, v.metric)] = (v, float(v.current))
    return list(kept.values())


def current_interval(v: Verdict) -> tuple[float, float] | None:
    """The interval of ``v.current`` (the module docstring, "The interval of the current value"),
    or None when the verdict has none."""
    current, change, low, high = v.current, v.change, v.ci_low, v.ci_high
    if current is None or change is None or low is None or high is None \
            or not all(_finite(x) for x in (current, change, low, high)) or 1.0 + change <= 0:
        return None
    lower = current * (1.0 + low) / (1.0 + change)
    upper = current * (1.0 + high) / (1.0 + change)
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return None
    # the estimate lies inside its interval; rounding of the three figures must not put it outside
    return min(lower, current), max(upper, current)


def _fit(name: str, limit: int) -> str:
    """``name`` when it is at most ``limit`` bytes of UTF-8, else its start (cut at a character)
    and ``~`` and 12 hex digits of its SHA-256: stable from run to run, and two long names that
    share their start still differ."""
    raw = name.encode("utf-8")
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[:limit - len(digest) - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def bmf(verdicts: Iterable[Verdict]) -> Bmf:
    """The verdicts in Bencher Metric Format v0: ``{test: {metric: {"value", "lower_value",
    "upper_value"}}}`` (the bounds only when the interval is known)."""
    out: Bmf = {}
    for v, current in _exported(verdicts):
        metric: BmfMetric = {"value": current}
        interval = current_interval(v)
        if interval is not None:
            metric["lower_value"], metric["upper_value"] = interval
        out.setdefault(_fit(v.test, BENCHMARK_NAME_MAX), {})[_fit(v.metric, MEASURE_NAME_MAX)] = metric
    return out


def gab_name(v: Verdict) -> str:
    """The github-action-benchmark name of a verdict: ``"<test id> [<metric>]"``."""
    return f"{v.test} [{v.metric}]"


def _extra(v: Verdict, interval: tuple[float, float] | None) -> str:
    """What the chart's tooltip shows besides the value: status, change and interval, tolerance,
    rounds."""
    lines = [f"status: {v.status}"]
    if _finite(v.change):
        change = f"change: {fmt_pct(v.change)}"
        if _finite(v.ci_low) and _finite(v.ci_high):
            level = f"{v.confidence * 100:g}% " if v.confidence is not None and math.isfinite(v.confidence) else ""
            change += f" ({level}interval {fmt_pct(v.ci_low)} to {fmt_pct(v.ci_high)})"
        change += f" vs {v.reference}" + (", speed-adjusted" if v.adjusted else "")
        lines.append(change)
    if interval is not None:
        unit = f" {v.unit}" if v.unit else ""
        lines.append(f"current: {interval[0]:.6g} to {interval[1]:.6g}{unit}")
    if v.status != INFO:
        lines.append(f"tolerance: {v.tolerance * 100:.1f}%")
    rounds = f"rounds: {v.n_current}"
    if v.n_baseline:
        rounds += f" (reference {v.n_baseline})"
    lines.append(rounds)
    return "\n".join(lines)


def gab(verdicts: Iterable[Verdict]) -> tuple[list[GabEntry], list[GabEntry]]:
    """The verdicts as github-action-benchmark custom JSON: (``customBiggerIsBetter`` entries,
    ``customSmallerIsBetter`` entries), split by Verdict.higher_is_better; values that are not
    positive are left out (the module docstring)."""
    bigger: list[GabEntry] = []
    smaller: list[GabEntry] = []
    for v, current in _exported(verdicts):
        if current <= 0:
            continue
        interval = current_interval(v)
        entry: GabEntry = {"name": gab_name(v), "unit": v.unit, "value": current}
        if interval is not None:
            entry["range"] = f"± {(interval[1] - interval[0]) / 2:.6g}"
        entry["extra"] = _extra(v, interval)
        (bigger if v.higher_is_better else smaller).append(entry)
    return bigger, smaller


def json_text(payload: object) -> str:
    """Strict JSON (no NaN, no Infinity: neither tool reads them), two-space indented."""
    return json.dumps(payload, indent=2, allow_nan=False) + "\n"


def write_bmf(path: Path | str, verdicts: Iterable[Verdict]) -> Path:
    """Write the BMF JSON of ``verdicts`` to ``path`` (``{}`` when there is nothing); returns it."""
    target = Path(path)
    atomic_write(target, json_text(bmf(verdicts)))
    return target


def gab_paths(path: Path | str) -> tuple[Path, Path]:
    """The (bigger-is-better, smaller-is-better) files of :func:`write_gab` for ``path``: a
    directory (an existing one, or a path ending in a separator) gets ``llmperf-bigger.json`` and
    ``llmperf-smaller.json`` in it; a file path ``<dir>/<stem><suffix>`` gets
    ``<dir>/<stem>-bigger<suffix>`` and ``<dir>/<stem>-smaller<suffix>`` (suffix ``.json`` when it
    has none)."""
    text = os.fspath(path)
    target = Path(text)
    if target.is_dir() or text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep)):
        return target / f"{GAB_DIR_STEM}-bigger.json", target / f"{GAB_DIR_STEM}-smaller.json"
    suffix = target.suffix or ".json"
    stem = target.stem if target.suffix else target.name
    return target.with_name(f"{stem}-bigger{suffix}"), target.with_name(f"{stem}-smaller{suffix}")


def write_gab(path: Path | str, verdicts: Iterable[Verdict]) -> list[Path]:
    """Write the two github-action-benchmark files of ``verdicts`` (:func:`gab_paths`), each only
    when it has entries, removing the file of an earlier run where tonight's list is empty.
    Returns the files written."""
    written = []
    for target, entries in zip(gab_paths(path), gab(verdicts)):
        if entries:
            atomic_write(target, json_text(entries))
            written.append(target)
        else:
            try:
                target.unlink()
            except FileNotFoundError:
                pass
    return written


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) ``name`` (one of SCHEMA_NAMES) shipped with the package, a
    fresh copy on every call."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"no schema {name!r}: expected one of {', '.join(SCHEMA_NAMES)}")
    text = (resources.files("pytest_llmperf") / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


__all__ = ["BENCHMARK_NAME_MAX", "BMF_VERSION", "GAB_DIR_STEM", "MEASURE_NAME_MAX", "SCHEMA_NAMES", "bmf",
           "current_interval", "gab", "gab_name", "gab_paths", "json_text", "schema", "write_bmf", "write_gab"]
