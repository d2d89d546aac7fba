"""The history's line format: the records (Point, Run, Accept), one JSON object per line and
back, strictly validated, and the record of one test of a run (run_record). Pure core; the store
that appends and reads the files is history.py, which re-exports every public name here.

A ``run`` line per test per run holds the time, run id, fingerprint digest, plugin version,
commits, outcome, reset, and per metric unit, direction, median, n, within-session standard error,
speed-adjusted median and probe kind, CPU share, this run's verdict, samples when asked; an
``accept`` line restarts the reference. Keys sorted, compact separators, floats of 7 significant
digits; ``gate`` and ``exact`` only when not their defaults.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import jsonfile, stats
from .baseline import BaselineError, bound_samples, metric_from_json
from .compare import MAX_SAMPLE, sample_problem
from .errors import OneLine
from .errors import short_repr as _short

SCHEMA = "pytest-llmperf-history"
SCHEMA_VERSION = 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_MAX_TEXT = 200  # run ids, fingerprints, versions, statuses, probe kinds: short by construction
KINDS = ("run", "accept")


class HistoryError(OneLine, Exception):
    """A history file or directory that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Point:
    """One metric of one test in one run."""

    name: str
    unit: str
    higher_is_better: bool
    median: float  # of the raw samples
    n: int
    se: float | None  # within-session standard error of ln(median); None when the run had too few samples
    adjusted: float | None  # median of the speed-adjusted samples, when the run had probes
    probe_kind: str | None
    cpu_share: float | None
    status: str | None  # this run's verdict of the metric, when it had one
    change: float | None
    reference: str | None
    gate: bool = True
    exact: bool = False
    samples: tuple[float, ...] | None = None

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


@dataclass(frozen=True)
class Run:
    """One test in one run (a ``run`` line)."""

    time: str  # ISO 8601 UTC, seconds, "Z"
    run_id: str
    nodeid: str
    fingerprint: str
    plugin_version: str
    commits: Mapping[str, Mapping[str, Any]]  # {"repo": {"commit": sha, "dirty": bool}, "llama2c": {...}}
    outcome: str  # "passed" or "failed"
    reset: bool  # the run saved the baseline: the reference starts again here
    metrics: Mapping[str, Point]
    path: Path | None = field(default=None, compare=False)  # where it was read from
    line: int = field(default=0, compare=False)  # 1-based


@dataclass(frozen=True)
class Accept:
    """An ``accept`` line: the reference starts again at run ``run_id``, or after this line."""

    time: str
    nodeid: str
    run_id: str | None
    why: str
    path: Path | None = field(default=None, compare=False)
    line: int = field(default=0, compare=False)


Entry = Run | Accept


# ---------------------------------------------------------------------------------------------
# small helpers


def utc_now_text(now: datetime | None = None) -> str:
    """The UTC time as the history writes it: ``2026-12-01T23:14:34Z``."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(TIME_FORMAT)


def new_run_id(now: datetime) -> str:
    """``20261201T231434Z-3f9a1c2b``: the UTC time (so ids sort as runs started) and 32 random
    bits (two sessions started in the same second still get different ids)."""
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def _round7(value: float) -> float:
    """Seven significant digits, as the baseline files: far below any tolerance, short lines."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.7g}")


def _point_json(p: Point) -> dict[str, Any]:
    """``gate`` and ``exact`` only when not their defaults (true, false), as in the baseline files:
    75 bytes of a 3-metric line that say nothing."""
    out: dict[str, Any] = {"unit": p.unit, "dir": p.direction, "median": p.median, "n": p.n}
    optional: dict[str, Any] = {"se": p.se, "adj": p.adjusted, "probe": p.probe_kind, "share": p.cpu_share,
                                "status": p.status, "change": p.change, "ref": p.reference}
    out.update({k: v for k, v in optional.items() if v is not None})
    if not p.gate:
        out["gate"] = False
    if p.exact:
        out["exact"] = True
    if p.samples is not None:
        out["samples"] = list(p.samples)
    return out


def entry_json(entry: Entry) -> dict[str, Any]:
    """The JSON object of one line."""
    if isinstance(entry, Accept):
        return {"schema": SCHEMA, "v": SCHEMA_VERSION, "kind": "accept", "time": entry.time, "nodeid": entry.nodeid,
                "run": entry.run_id, "why": entry.why}
    return {
        "schema": SCHEMA, "v": SCHEMA_VERSION, "kind": "run", "time": entry.time, "run": entry.run_id,
        "nodeid": entry.nodeid, "fp": entry.fingerprint, "plugin": entry.plugin_version,
        "commits": {k: dict(v) for k, v in entry.commits.items()}, "outcome": entry.outcome, "reset": entry.reset,
        "metrics": {name: _point_json(p) for name, p in entry.metrics.items()},
    }


def to_line(entry: Entry) -> str:
    """One line, without its newline: sorted keys, compact, UTF-8 characters as they are."""
    try:
        return json.dumps(entry_json(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:  # NaN, a set, an object json cannot write
        raise HistoryError(f"history record of test {_short(entry.nodeid, 80)} cannot be written: {exc}") from None


class BadLine(Exception):
    """A field problem, completed with the file and line by the caller."""


def _reject_constant(name: str) -> float:
    raise BadLine(f"holds {name}, which is not a number a history line can hold")


DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one decoder: json.loads(**kw) builds one a call


def _text(obj: Mapping[str, Any], key: str, optional: bool = False, limit: int = _MAX_TEXT,
          where: str = "") -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadLine(f"{where}{key!r} is {_short(value)}, not a non-empty string")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """An optional number: finite, in [0, 1e18)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value < MAX_SAMPLE:
        raise BadLine(f"{where}{key!r} is {_short(value)}, not a finite number in [0, {MAX_SAMPLE:g})")
    return float(value)


def _flag(obj: Mapping[str, Any], key: str, default: bool, where: str = "") -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise BadLine(f"{where}{key!r} is {_short(value)}, not true or false")
    return value


_NUMBER_TYPES = frozenset((int, float))  # not bool
# The fast paths build their frozen dataclasses without __init__, which sets each field through
# object.__setattr__: 2.9 us a Point against 0.6 us filling its __dict__ (a year of 100 tests is
# 110,000 points). Every field is filled, so the objects equal those __init__ makes.
_new = object.__new__


def _point(name: str, data: Any) -> Point:
    """The point of one metric's JSON. The common case (no samples, every field well-formed) is
    checked in one expression: reading a year of a hundred tests (110,000 points) took 1.6 s
    through the field helpers, 0.4 s this way. Anything else takes the helpers, which word the
    problem."""
    if type(data) is dict:
        get = data.get
        unit, direction, median, n = get("unit"), get("dir"), get("median"), get("n")
        se, adj, share, change = get("se"), get("adj"), get("share"), get("change")
        probe, status, ref = get("probe"), get("status"), get("ref")
        gate, exact = get("gate", True), get("exact", False)
        num = _NUMBER_TYPES
        if (median is not None and type(unit) is str and (direction == "higher" or direction == "lower")
                and type(median) in num and 0 <= median < MAX_SAMPLE and type(n) is int and 1 <= n < MAX_SAMPLE
                and (se is None or (type(se) in num and 0 <= se < MAX_SAMPLE))
                and (adj is None or (type(adj) in num and 0 <= adj < MAX_SAMPLE))
                and (share is None or (type(share) in num and 0 <= share < MAX_SAMPLE))
                and (change is None or (type(change) in num and -MAX_SAMPLE < change < MAX_SAMPLE))
                and (probe is None or (type(probe) is str and 0 < len(probe) <= _MAX_TEXT))
                and (status is None or (type(status) is str and 0 < len(status) <= _MAX_TEXT))
                and (ref is None or (type(ref) is str and 0 < len(ref) <= _MAX_TEXT))
                and type(gate) is bool and type(exact) is bool and get("samples") is None):
            point = _new(Point)
            point.__dict__.update(
                name=name, unit=unit, higher_is_better=direction == "higher", median=float(median), n=n,
                se=None if se is None else float(se), adjusted=None if adj is None else float(adj), probe_kind=probe,
                cpu_share=None if share is None else float(share), status=status,
                change=None if change is None else float(change), reference=ref, gate=gate, exact=exact,
                samples=None)
            return point
    return _point_checked(name, data)


def _point_checked(name: str, data: Any) -> Point:
    where = f"metric {name!r}: "
    if not isinstance(data, dict):
        raise BadLine(f"metric {name!r} is {_short(data)}, not an object")
    unit = data.get("unit")
    if not isinstance(unit, str):
        raise BadLine(f"{where}'unit' is {_short(unit)}, not a string")
    direction = data.get("dir")
    if direction not in ("higher", "lower"):
        raise BadLine(f"{where}'dir' is {_short(direction)}, not 'higher' or 'lower'")
    median = _number(data, "median", where)
    if median is None:
        raise BadLine(f"{where}has no 'median'")
    n = data.get("n")
    if type(n) is not int or not 1 <= n < MAX_SAMPLE:
        raise BadLine(f"{where}'n' is {_short(n)}, not a positive integer")
    gate = _flag(data, "gate", True, where)
    samples = data.get("samples")
    if samples is not None:
        if not isinstance(samples, list) or not samples:
            raise BadLine(f"{where}'samples' is {_short(samples)}, not a list of numbers")
        for v in samples:
            problem = "is not a number" if isinstance(v, bool) or not isinstance(v, (int, float)) \
                else sample_problem(float(v), gate)
            if problem:
                raise BadLine(f"{where}sample {_short(v)} {problem}")
    change = data.get("change")
    if change is not None and (isinstance(change, bool) or not isinstance(change, (int, float))
                               or not math.isfinite(change) or abs(change) >= MAX_SAMPLE):
        raise BadLine(f"{where}'change' is {_short(change)}, not a finite relative change")
    return Point(
        name=name, unit=unit, higher_is_better=direction == "higher", median=median, n=n,
        se=_number(data, "se", where), adjusted=_number(data, "adj", where),
        probe_kind=_text(data, "probe", optional=True, where=where), cpu_share=_number(data, "share", where),
        status=_text(data, "status", optional=True, where=where),
        change=float(change) if change is not None else None,
        reference=_text(data, "ref", optional=True, where=where), gate=gate, exact=_flag(data, "exact", False, where),
        samples=tuple(float(v) for v in samples) if samples is not None else None,
    )


def _commits(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise BadLine(f"'commits' is {_short(value)}, not an object")
    for name, info in value.items():
        if not isinstance(info, dict):
            raise BadLine(f"commit of {name!r} is {_short(info)}, not an object")
        commit = info.get("commit")
        if commit is not None and (not isinstance(commit, str) or not commit or len(commit) > _MAX_TEXT):
            raise BadLine(f"commit of {name!r} is {_short(commit)}, not a string")
        if not isinstance(info.get("dirty", False), bool):
            raise BadLine(f"'dirty' of {name!r} is {_short(info.get('dirty'))}, not true or false")
    return value


def _time(obj: Mapping[str, Any]) -> str:
    value = obj.get("time")
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise BadLine(f"'time' is {_short(value)}, not a UTC time like 2026-12-01T23:14:34Z")
    try:
        datetime.fromisoformat(value[:-1])  # the C parser: strptime would cost a read of a year 1 s
    except ValueError:
        raise BadLine(f"'time' is {_short(value)}, not a valid date and time") from None
    return value


def _fast_run(data: dict[str, Any], path: Path | None, line: int) -> Run | None:
    """The run of a well-formed run line, checked in one expression (the helpers' calls were
    half the time of reading a year), or None: _entry then checks it field by field."""
    get = data.get
    time, run_id, nodeid, fp, plugin, outcome = (get("time"), get("run"), get("nodeid"), get("fp"), get("plugin"),
                                                 get("outcome"))
    commits, reset, metrics = get("commits", {}), get("reset", False), get("metrics")
    limit = _MAX_TEXT
    if not (type(time) is str and _TIME_RE.fullmatch(time) and type(nodeid) is str and 0 < len(nodeid) <= 10000
            and type(run_id) is str and 0 < len(run_id) <= limit and type(fp) is str and 0 < len(fp) <= limit
            and type(plugin) is str and 0 < len(plugin) <= limit and type(outcome) is str
            and 0 < len(outcome) <= limit and type(reset) is bool and type(metrics) is dict
            and type(commits) is dict):
        return None
    for info in commits.values():
        if type(info) is not dict:
            return None
        commit = info.get("commit")
        if (commit is not None and (type(commit) is not str or not 0 < len(commit) <= limit)) \
                or type(info.get("dirty", False)) is not bool:
            return None
    try:
        datetime.fromisoformat(time[:-1])
    except ValueError:
        return None
    run = _new(Run)
    run.__dict__.update(time=time, run_id=run_id, nodeid=nodeid, fingerprint=fp, plugin_version=plugin,
                        commits=commits, outcome=outcome, reset=reset,
                        metrics={name: _point(name, m) for name, m in metrics.items()}, path=path, line=line)
    return run


def decode_entry(data: Any, path: Path | None, line: int) -> Entry:
    """The entry of one parsed line (raises BadLine)."""
    if type(data) is dict and data.get("kind") == "run" and data.get("schema") == SCHEMA \
            and type(data.get("v")) is int and data["v"] == SCHEMA_VERSION:
        fast = _fast_run(data, path, line)
        if fast is not None:
            return fast
    if not isinstance(data, dict):
        raise BadLine(f"is {_short(data)}, not a JSON object")
    if data.get("schema") != SCHEMA:
        raise BadLine(f"is not a pytest-llmperf history line (no \"schema\": \"{SCHEMA}\")")
    version = data.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        if type(version) is int and version > SCHEMA_VERSION:
            raise BadLine(f"has history version {version}, newer than this plugin's {SCHEMA_VERSION}: "
                       "upgrade pytest-llmperf")
        raise BadLine(f"has unknown history version {_short(version)} (expected {SCHEMA_VERSION})")
    kind = data.get("kind")
    nodeid = _text(data, "nodeid", limit=10000)
    assert nodeid is not None
    if kind == "accept":
        run = _text(data, "run", optional=True)
        why = data.get("why", "")
        if not isinstance(why, str):
            raise BadLine(f"'why' is {_short(why)}, not a string")
        return Accept(time=_time(data), nodeid=nodeid, run_id=run, why=why, path=path, line=line)
    if kind != "run":
        raise BadLine(f"has unknown kind {_short(kind)} (expected 'run' or 'accept')")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise BadLine(f"'metrics' is {_short(metrics)}, not an object")
    run_id, fp, plugin, outcome = (_text(data, k) for k in ("run", "fp", "plugin", "outcome"))
    assert run_id is not None and fp is not None and plugin is not None and outcome is not None
    return Run(time=_time(data), run_id=run_id, nodeid=nodeid, fingerprint=fp, plugin_version=plugin,
               commits=_commits(data.get("commits", {})), outcome=outcome, reset=_flag(data, "reset", False),
               metrics={name: _point(name, m) for name, m in metrics.items()}, path=path, line=line)


def parse_line(text: str, path: Path | None = None, line: int = 0, where: str | None = None) -> Entry:
    """The entry of one line; HistoryError naming file and line (or ``where``) for anything else.

    The fast path is the C JSON parser, refusing NaN and Infinity; a number out of float range
    (``1e400`` reads as inf) or an integer of thousands of digits is refused by the field checks
    (every number read is checked finite and below 1e18) or by the parser. jsonfile.loads then
    words a syntax error the way the baseline files do."""
    try:
        try:
            data = DECODER.decode(text)
        except (json.JSONDecodeError, ValueError, RecursionError):
            try:
                jsonfile.loads(text)
            except jsonfile.StrictJSONError as exc:
                raise BadLine(exc.problem) from None
            raise BadLine("is corrupt JSON") from None
        return decode_entry(data, path, line)
    except BadLine as exc:
        if path is not None:
            raise HistoryError(f"history file {path}, line {line}: {exc}; fix it or restore it from git") from None
        raise HistoryError(f"{where or 'history line'}: {exc}") from None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _point_from_result(name: str, data: Any, verdict: Mapping[str, Any] | None, keep_samples: int,
                       nodeid: str) -> Point:
    try:
        metric = metric_from_json(name, data, f"history record of test {_short(nodeid, 80)}")
    except BaselineError as exc:
        raise HistoryError(str(exc)) from None
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    median = _finite(summary.get("median"))
    if median is None:
        median = stats.median(metric.samples)
    n = summary.get("n")
    if type(n) is not int or n < 1:
        n = len(metric.samples)
    values = metric.samples
    adjusted = None
    if metric.probes:
        values = stats.speed_adjusted(metric.samples, metric.probes, rate=metric.higher_is_better)
        adjusted = _round7(stats.median(values))
    se = stats.run_log_median_se(values)
    keep: Callable[[float], float] = float if metric.exact else _round7  # a count stays exact
    samples = None
    if keep_samples > 0:
        samples = tuple(keep(v) for v in bound_samples(metric.samples, None, keep_samples)[0])
    status = change = ref = None
    if verdict is not None:
        status = verdict.get("status") if isinstance(verdict.get("status"), str) else None
        change = _finite(verdict.get("change"))
        ref = verdict.get("reference") if isinstance(verdict.get("reference"), str) else None
    return Point(
        name=name, unit=metric.unit, higher_is_better=metric.higher_is_better, median=keep(median), n=n,
        se=_round7(se) if math.isfinite(se) else None, adjusted=adjusted,
        probe_kind=metric.probe_kind if metric.probes else None,
        cpu_share=_round7(metric.cpu_share) if metric.cpu_share is not None else None,
        status=status or None, change=_round7(change) if change is not None else None, reference=ref or None,
        gate=metric.gate, exact=metric.exact, samples=samples,
    )


def run_record(result_json: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]] | None, *, run_id: str,
               time: str, fingerprint: str, plugin_version: str,
               commits: Mapping[str, Mapping[str, Any] | None], outcome: str, reset: bool,
               samples: int = 0) -> Run:
    """The history record of one test of this run.

    ``result_json`` is a TestResult's JSON (``nodeid`` and ``metrics`` in the baseline metric
    format); ``verdicts`` are this run's verdicts (``Verdict.to_dict()``), or None to take the
    result's own. Per metric: median and n from the summary, se = stats.run_log_median_se of the
    speed-adjusted samples when the run had probes (the samples the comparison uses), else of the
    raw ones (None when infinite: too few samples), adj = median of the speed-adjusted samples;
    samples only when ``samples`` > 0, at most that many, evenly spread. ``commits``: by source
    name, only ``commit`` and ``dirty`` are kept (a checkout's path says nothing a later reader
    can use); a source whose commit is unknown (None) is left out."""
    nodeid = result_json.get("nodeid")
    if not isinstance(nodeid, str) or not nodeid:
        raise HistoryError(f"history record: result has no nodeid ({_short(nodeid)})")
    metrics = result_json.get("metrics")
    if not isinstance(metrics, Mapping):
        raise HistoryError(f"history record of test {_short(nodeid, 80)}: result has no metrics object")
    if verdicts is None:
        found = result_json.get("verdicts")
        verdicts = found if isinstance(found, list) else []
    by_metric = {v.get("metric"): v for v in verdicts if isinstance(v, Mapping)}
    kept_commits = {name: {k: info[k] for k in ("commit", "dirty") if k in info}
                    for name, info in sorted(commits.items()) if info is not None and info.get("commit")}
    return Run(
        time=time, run_id=run_id, nodeid=nodeid, fingerprint=fingerprint, plugin_version=plugin_version,
        commits=kept_commits, outcome=outcome, reset=reset,
        metrics={name: _point_from_result(name, m, by_metric.get(name), samples, nodeid)
                 for name, m in sorted(metrics.items())},
    )
