"""Per-node history: one JSON line per test per run, appended, never rewritten but by retention.

Layout. A node's history directory holds one ``.jsonl`` file per test file, at the path its
baselines have (``baseline.relative_file_for``, suffix ``.jsonl``): ``suites/test_x.py::test_y``
on node ``sifive`` goes to ``baselines/sifive/history/suites/test_x.jsonl`` by default
(:func:`node_history_dir`: ``<baseline dir>/<node>/history``), or to ``<DIR>/<node>/suites/test_x.jsonl``
when a history directory DIR is given (``--llmperf-history-dir``: several nodes share DIR the
way they share the baseline dir). :class:`HistoryStore` takes the node's history directory itself.

Lines. One JSON object per line, keys sorted, compact separators, UTF-8, ``"\\n"``-terminated: a
``run`` line per test per run (time, run id, fingerprint digest, plugin version, commits, outcome,
reset, and per metric unit, direction, median, n, within-session standard error, speed-adjusted
median and probe kind, CPU share, this run's verdict, samples when asked) and ``accept`` lines
(the reference starts again). Floats carry 7 significant digits, and ``gate``/``exact`` are
written only when not their defaults; a typical test of three metrics (tok_per_s with a probe,
mbu, peak_rss) with the repository's and llama2.c's commits takes 882 bytes without samples
(tests/test_history.py and bench/history_cost.py measure it; the limit is 1 KB). Every line is
validated before it is written: nothing is written that :meth:`read` would refuse.

Appends. Under an exclusive lock on ``<history dir>/.llmperf.lock``, each file gets the lines of
one call in ONE ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``: concurrent sessions
(and the xdist controller, the only process of a session that appends) lose nothing, and a write
cut short by a power cut leaves at most one unterminated fragment at the end. Appends are atomic
per file, not across the files of one call.

A torn last line (no ``"\\n"`` at its end, does not parse, looks like the start of a record or is
NUL bytes, which is what a cut append leaves) was never a record: :meth:`read` skips it with a
warning naming file and line, and the next append cuts that fragment off (with the same warning)
before writing, so the file is whole again. An unterminated last line that does parse is a record
(a hand edit that lost the final newline): kept, and the next append writes the newline first.
Every other problem is a one-line :class:`HistoryError` naming file and line, and nothing is
rewritten: a corrupt line anywhere else, an unknown schema, a newer version ("upgrade
pytest-llmperf"), a bad field, a directory that cannot be read or written (:func:`check_writable`
tells before a run). An append without ``keep`` reads only the end of each file, so it does not
see a corrupt middle line; it adds lines after it and rewrites nothing, and the next read names it.

Order. :meth:`read` returns a test's entries in time order: a stable sort on the UTC time (one
second resolution, so the text sorts as the time does), which is file order for appends under the
lock, and also orders the lines of two branches that a union merge interleaved. In git, let
merges keep both sides' lines::

    # .gitattributes
    baselines/**/history/*.jsonl merge=union

Retention (``keep``): the newest ``keep`` runs of each test stay, counted by distinct run ids;
accept lines after the oldest kept run (or naming a kept run) stay, older ones go (every kept run
comes after them, so the reference they set is unchanged). Compaction rewrites a file through
``fileutil.atomic_write`` under the same lock, only when it drops something, and refuses (raising,
writing nothing) a file with any error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import jsonfile, stats
from .baseline import BaselineError, bound_samples, metric_from_json, relative_file_for, split_nodeid
from .compare import MAX_SAMPLE, sample_problem
from .errors import OneLine
from .errors import short_repr as _short
from .fileutil import atomic_write, exclusive_lock, nearest_existing

SCHEMA = "pytest-llmperf-history"
SCHEMA_VERSION = 1
SUFFIX = ".jsonl"
LOCK_NAME = ".llmperf.lock"
DIR_NAME = "history"  # under <baseline dir>/<node>/ by default
TEMP_PATTERN = ".*" + SUFFIX + ".*.tmp"  # what fileutil.atomic_write leaves behind when killed
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_BLOCK = 65536  # how far back an append reads at a time, looking for the last newline
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


def node_history_dir(baseline_dir: Path, node: str, history_dir: Path | None = None) -> Path:
    """The history directory of ``node``: ``<history_dir>/<node>`` when a history directory is
    given, else ``<baseline_dir>/<node>/history``."""
    if history_dir is not None:
        return Path(history_dir) / node
    return Path(baseline_dir) / node / DIR_NAME


def _round7(value: float) -> float:
    """Seven significant digits, as the baseline files: far below any tolerance, short lines."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.7g}")


def check_writable(directory: Path) -> None:
    """Raise HistoryError when history cannot be appended under ``directory`` (the node's history
    dir): a file in its place, a directory that denies writing, a history file or the lock that
    denies writing. Meant to run before the tests, so a nightly does not measure for an hour and
    then fail to record."""
    directory = Path(directory)
    probe = nearest_existing(directory)
    if probe.exists() and not probe.is_dir():
        raise HistoryError(f"history dir {directory}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise HistoryError(f"history dir {directory} is not writable ({probe} denies writing)")
    if probe == directory:
        for path in _files(directory):
            if not os.access(path, os.R_OK | os.W_OK):
                raise HistoryError(f"history file {path} is not writable")
        lock = directory / LOCK_NAME
        if lock.exists() and not os.access(lock, os.R_OK | os.W_OK):
            raise HistoryError(f"history lock {lock} is not writable")


def _walk_error(exc: OSError) -> None:
    raise HistoryError(f"cannot read history dir {exc.filename}: {exc.strerror or exc}")


def _files(directory: Path) -> list[Path]:
    """Every history file under ``directory``, sorted; an unreadable directory is an error (a
    silently empty listing would read as "no history")."""
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise HistoryError(f"history dir {directory} is a file, not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise HistoryError(f"cannot read history dir {directory}: permission denied")
    found: list[Path] = []
    for top, dirs, names in os.walk(directory, onerror=_walk_error):
        dirs.sort()
        found.extend(Path(top) / name for name in names if name.endswith(SUFFIX) and not name.startswith("."))
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# lines: to JSON and back


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


class _Bad(Exception):
    """A field problem, completed with the file and line by the caller."""


def _reject_constant(name: str) -> float:
    raise _Bad(f"holds {name}, which is not a number a history line can hold")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one decoder: json.loads(**kw) builds one a call


def _text(obj: Mapping[str, Any], key: str, optional: bool = False, limit: int = _MAX_TEXT,
          where: str = "") -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _Bad(f"{where}{key!r} is {_short(value)}, not a non-empty string")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """An optional number: finite, in [0, 1e18)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value < MAX_SAMPLE:
        raise _Bad(f"{where}{key!r} is {_short(value)}, not a finite number in [0, {MAX_SAMPLE:g})")
    return float(value)


def _flag(obj: Mapping[str, Any], key: str, default: bool, where: str = "") -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise _Bad(f"{where}{key!r} is {_short(value)}, not true or false")
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
        raise _Bad(f"metric {name!r} is {_short(data)}, not an object")
    unit = data.get("unit")
    if not isinstance(unit, str):
        raise _Bad(f"{where}'unit' is {_short(unit)}, not a string")
    direction = data.get("dir")
    if direction not in ("higher", "lower"):
        raise _Bad(f"{where}'dir' is {_short(direction)}, not 'higher' or 'lower'")
    median = _number(data, "median", where)
    if median is None:
        raise _Bad(f"{where}has no 'median'")
    n = data.get("n")
    if type(n) is not int or not 1 <= n < MAX_SAMPLE:
        raise _Bad(f"{where}'n' is {_short(n)}, not a positive integer")
    gate = _flag(data, "gate", True, where)
    samples = data.get("samples")
    if samples is not None:
        if not isinstance(samples, list) or not samples:
            raise _Bad(f"{where}'samples' is {_short(samples)}, not a list of numbers")
        for v in samples:
            problem = "is not a number" if isinstance(v, bool) or not isinstance(v, (int, float)) \
                else sample_problem(float(v), gate)
            if problem:
                raise _Bad(f"{where}sample {_short(v)} {problem}")
    change = data.get("change")
    if change is not None and (isinstance(change, bool) or not isinstance(change, (int, float))
                               or not math.isfinite(change) or abs(change) >= MAX_SAMPLE):
        raise _Bad(f"{where}'change' is {_short(change)}, not a finite relative change")
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
        raise _Bad(f"'commits' is {_short(value)}, not an object")
    for name, info in value.items():
        if not isinstance(info, dict):
            raise _Bad(f"commit of {name!r} is {_short(info)}, not an object")
        commit = info.get("commit")
        if commit is not None and (not isinstance(commit, str) or not commit or len(commit) > _MAX_TEXT):
            raise _Bad(f"commit of {name!r} is {_short(commit)}, not a string")
        if not isinstance(info.get("dirty", False), bool):
            raise _Bad(f"'dirty' of {name!r} is {_short(info.get('dirty'))}, not true or false")
    return value


def _time(obj: Mapping[str, Any]) -> str:
    value = obj.get("time")
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise _Bad(f"'time' is {_short(value)}, not a UTC time like 2026-12-01T23:14:34Z")
    try:
        datetime.fromisoformat(value[:-1])  # the C parser: strptime would cost a read of a year 1 s
    except ValueError:
        raise _Bad(f"'time' is {_short(value)}, not a valid date and time") from None
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


def _entry(data: Any, path: Path | None, line: int) -> Entry:
    """The entry of one parsed line (raises _Bad)."""
    if type(data) is dict and data.get("kind") == "run" and data.get("schema") == SCHEMA \
            and type(data.get("v")) is int and data["v"] == SCHEMA_VERSION:
        fast = _fast_run(data, path, line)
        if fast is not None:
            return fast
    if not isinstance(data, dict):
        raise _Bad(f"is {_short(data)}, not a JSON object")
    if data.get("schema") != SCHEMA:
        raise _Bad(f"is not a pytest-llmperf history line (no \"schema\": \"{SCHEMA}\")")
    version = data.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        if type(version) is int and version > SCHEMA_VERSION:
            raise _Bad(f"has history version {version}, newer than this plugin's {SCHEMA_VERSION}: "
                       "upgrade pytest-llmperf")
        raise _Bad(f"has unknown history version {_short(version)} (expected {SCHEMA_VERSION})")
    kind = data.get("kind")
    nodeid = _text(data, "nodeid", limit=10000)
    assert nodeid is not None
    if kind == "accept":
        run = _text(data, "run", optional=True)
        why = data.get("why", "")
        if not isinstance(why, str):
            raise _Bad(f"'why' is {_short(why)}, not a string")
        return Accept(time=_time(data), nodeid=nodeid, run_id=run, why=why, path=path, line=line)
    if kind != "run":
        raise _Bad(f"has unknown kind {_short(kind)} (expected 'run' or 'accept')")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise _Bad(f"'metrics' is {_short(metrics)}, not an object")
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
            data = _DECODER.decode(text)
        except (json.JSONDecodeError, ValueError, RecursionError):
            try:
                jsonfile.loads(text)
            except jsonfile.StrictJSONError as exc:
                raise _Bad(exc.problem) from None
            raise _Bad("is corrupt JSON") from None
        return _entry(data, path, line)
    except _Bad as exc:
        if path is not None:
            raise HistoryError(f"history file {path}, line {line}: {exc}; fix it or restore it from git") from None
        raise HistoryError(f"{where or 'history line'}: {exc}") from None


def _torn_fragment(fragment: bytes) -> bool:
    """An unterminated last line that an append cut short: the start of a record, or the NUL
    bytes a file system leaves where data never reached the disk (blank counts too)."""
    rest = fragment.lstrip(b"\x00 \t\r")
    return not rest or rest.startswith(b"{")


def _torn_warning(path: Path, line: int, action: str) -> str:
    return (f"history file {path}, line {line}: {action} a torn last line (no newline at its end: "
            "an append cut short, e.g. by a power cut)")


# ---------------------------------------------------------------------------------------------
# building records from a session's results


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


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a file is parsed: reading makes millions of small
    objects, none in a cycle, and each of them counts towards the next collection, which walks
    every object alive. Measured on a year of 100 tests: 0.83 s to build the entries with it on,
    0.44 s with it off. It is on again afterwards, if it was on before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


# ---------------------------------------------------------------------------------------------
# the store


class HistoryStore:
    """The history of one node, in its history directory (:func:`node_history_dir`)."""

    def __init__(self, directory: Path, lock_timeout: float = 120.0):
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self.warnings: list[str] = []  # torn last lines skipped or cut, each said once

    def path_for(self, nodeid: str) -> Path:
        rel = relative_file_for(split_nodeid(nodeid)[0])
        return self.directory / rel.with_suffix(SUFFIX)

    def files(self) -> list[Path]:
        return _files(self.directory)

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # reading

    def _load(self, path: Path) -> tuple[list[tuple[Entry, str]], bytes]:
        """The entries of one file in file order, each with its line's text, and the torn tail
        fragment (b"" when none)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return [], b""
        except IsADirectoryError:
            raise HistoryError(f"history file {path} is a directory") from None
        except OSError as exc:
            raise HistoryError(f"cannot read history file {path}: {exc.strerror or exc}") from None
        cut = raw.rfind(b"\n") + 1
        tail = raw[cut:]  # b"" when the file ends with a newline
        try:
            lines = raw[:cut].decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise HistoryError(f"history file {path}, line {line}: is not UTF-8 text (corrupt?); "
                               "fix it or restore it from git") from None
        lines.pop()  # the "" after the last newline
        torn = b""
        if tail:
            number = len(lines) + 1
            try:
                lines.append(tail.decode("utf-8"))
                parse_line(lines[-1], path, number)  # a record that lost its newline
            except (HistoryError, UnicodeDecodeError) as exc:
                if _torn_fragment(tail):
                    if len(lines) == number:
                        lines.pop()
                    torn = tail
                    self._warn(_torn_warning(path, number, "skipped"))
                elif isinstance(exc, UnicodeDecodeError):
                    raise HistoryError(f"history file {path}, line {number}: is not UTF-8 text (corrupt?); "
                                       "fix it or restore it from git") from None
                # else: not torn, the loop below names its problem
        out: list[tuple[Entry, str]] = []
        decode = _DECODER.decode
        with _no_gc():
            for number, text in enumerate(lines, 1):
                if not text or text.isspace():
                    continue  # a blank line holds no record
                try:
                    entry = _entry(decode(text), path, number)
                except (_Bad, ValueError, RecursionError):
                    entry = parse_line(text, path, number)  # raises, worded
                out.append((entry, text))
        return out, torn

    def read(self, nodeid: str) -> list[Entry]:
        """The entries of one test, in time order."""
        entries = [e for e, _ in self._load(self.path_for(nodeid))[0] if e.nodeid == nodeid]
        entries.sort(key=lambda e: e.time)
        return entries

    def read_all(self) -> dict[str, list[Entry]]:
        """Every test of the node with its entries in time order, by nodeid (sorted)."""
        found: dict[str, list[Entry]] = {}
        with _no_gc():  # across the files: each collection between two would walk all read so far
            for path in self.files():
                for entry, _ in self._load(path)[0]:
                    found.setdefault(entry.nodeid, []).append(entry)
        for entries in found.values():
            entries.sort(key=lambda e: e.time)
        return dict(sorted(found.items()))

    # writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.directory / LOCK_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise HistoryError(f"history dir {self.directory} is a file, not a directory") from None
        except OSError as exc:
            raise HistoryError(f"cannot create history dir {self.directory}: {exc.strerror or exc}") from None
        try:  # the lock file made here, so that a directory denying it is a HistoryError, not the block's
            os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
        except OSError as exc:
            raise HistoryError(f"cannot lock history dir {self.directory}: {exc.strerror or exc}") from None
        try:
            with exclusive_lock(lock, self.lock_timeout):
                yield
        except TimeoutError as exc:
            raise HistoryError(f"history lock: {exc}") from None

    def _lines(self, entries: Sequence[Entry]) -> dict[Path, list[str]]:
        """The lines to write, by file, each checked as read() would check it."""
        by_file: dict[Path, list[str]] = {}
        for entry in entries:
            line = to_line(entry)
            parsed = parse_line(line, where=f"history record of test {_short(entry.nodeid, 80)} (not written)")
            if parsed != entry:  # a value that does not survive the trip (a float with more digits is fine)
                raise HistoryError(f"history record of test {_short(entry.nodeid, 80)} (not written) does not "
                                   "read back as it was written")
            by_file.setdefault(self.path_for(entry.nodeid), []).append(line)
        return by_file

    def append(self, runs: Sequence[Entry], keep: int | None = None) -> list[Path]:
        """Append ``runs`` (Run and Accept entries) to their files; with ``keep``, then compact
        those files to the newest ``keep`` runs of each test. Returns the files written."""
        if keep is not None and (type(keep) is not int or keep < 1):
            raise HistoryError(f"history keep {_short(keep)}: must be a positive number of runs")
        by_file = self._lines(runs)
        if not by_file:
            return []
        with self._locked():
            if keep is not None:  # a file compaction would refuse is refused before anything is appended
                for path in by_file:
                    self._load(path)
            for path, lines in sorted(by_file.items()):
                self._append_file(path, "".join(line + "\n" for line in lines).encode("utf-8"))
            if keep is not None:
                self._compact_files(sorted(by_file), keep)
        return sorted(by_file)

    def _append_file(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create history dir {path.parent}: {exc.strerror or exc}") from None
        created = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        except IsADirectoryError:
            raise HistoryError(f"history file {path} is a directory") from None
        except OSError as exc:
            raise HistoryError(f"cannot append to history file {path}: {exc.strerror or exc}") from None
        start = -1
        try:
            size = os.fstat(fd).st_size
            cut, prefix = self._mend_tail(fd, size, path) if size else (size, b"")
            if cut != size:
                os.ftruncate(fd, cut)
            start = cut
            data = prefix + data
            if os.write(fd, data) != len(data):  # a short write: the disk is full
                raise OSError(28, "short write (no space left on device?)")
            os.fsync(fd)
        except OSError as exc:
            if start >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # leave no fragment behind
            raise HistoryError(f"cannot append to history file {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        if created and hasattr(os, "O_DIRECTORY"):
            with contextlib.suppress(OSError):  # the new file's name reaches the disk too
                dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    def _mend_tail(self, fd: int, size: int, path: Path) -> tuple[int, bytes]:
        """Where the next line goes and what to write before it: after the last newline, cutting
        a torn fragment off; after an unterminated record, with a newline first."""
        end = size
        tail = b""
        while end > 0:
            begin = max(0, end - _BLOCK)
            os.lseek(fd, begin, os.SEEK_SET)
            block = os.read(fd, end - begin)
            at = block.rfind(b"\n")
            if at >= 0:
                tail = block[at + 1:] + tail
                break
            tail = block + tail
            end = begin
        if not tail:
            return size, b""
        cut = size - len(tail)
        os.lseek(fd, 0, os.SEEK_SET)
        line = os.read(fd, cut).count(b"\n") + 1
        try:
            parse_line(tail.decode("utf-8"), path, line)
            return size, b"\n"
        except (HistoryError, UnicodeDecodeError) as exc:
            if not _torn_fragment(tail):
                raise HistoryError(f"history file {path}, line {line}: the last line is not a record and has no "
                                   "newline at its end; fix it or restore it from git") from exc
        self._warn(_torn_warning(path, line, "cut off"))
        return cut, b""

    def accept(self, nodeids: Sequence[str], run_id: str | None = None, why: str = "accepted by hand",
               time: str | None = None) -> list[Path]:
        """Append an accept line for each test: its reference starts again at run ``run_id``
        (when given), else at its next run."""
        when = time or utc_now_text()
        return self.append([Accept(time=when, nodeid=n, run_id=run_id, why=why) for n in nodeids])

    def compact(self, keep: int, nodeids: Sequence[str] | None = None) -> list[Path]:
        """Keep the newest ``keep`` runs of each test (of ``nodeids``' files, or of every file);
        returns the files rewritten."""
        if type(keep) is not int or keep < 1:
            raise HistoryError(f"history keep {_short(keep)}: must be a positive number of runs")
        with self._locked():
            paths = sorted({self.path_for(n) for n in nodeids}) if nodeids is not None else self.files()
            return self._compact_files(paths, keep)

    def _compact_files(self, paths: Sequence[Path], keep: int) -> list[Path]:
        loaded = [(path, *self._load(path)) for path in paths]  # every file checked before any is rewritten
        for tmp in self.directory.rglob(TEMP_PATTERN):  # left by a compaction that was killed
            with contextlib.suppress(OSError):
                tmp.unlink()
        written = []
        for path, entries, _torn in loaded:
            kept = retained(entries, keep)
            if len(kept) == len(entries):
                continue
            atomic_write(path, "".join(text + "\n" for text in kept))
            written.append(path)
        return written


def retained(entries: Sequence[tuple[Entry, str]], keep: int) -> list[str]:
    """The texts of ``entries`` (file order) that retention keeps: per test, the runs of its newest
    ``keep`` run ids (in time order), and the accept lines after the oldest of them or naming one."""
    order = sorted(range(len(entries)), key=lambda i: entries[i][0].time)
    rank = {i: r for r, i in enumerate(order)}
    runs_of: dict[str, list[tuple[str, int]]] = {}  # nodeid -> [(run id, rank of its first line)], time order
    for i in order:
        entry = entries[i][0]
        if isinstance(entry, Run):
            seen = runs_of.setdefault(entry.nodeid, [])
            if all(run_id != entry.run_id for run_id, _ in seen):
                seen.append((entry.run_id, rank[i]))
    kept_ids: dict[str, set[str]] = {}
    oldest: dict[str, int] = {}
    for nodeid, runs in runs_of.items():
        newest = runs[-keep:]
        kept_ids[nodeid] = {run_id for run_id, _ in newest}
        oldest[nodeid] = newest[0][1]
    out = []
    for i, (entry, text) in enumerate(entries):
        ids = kept_ids.get(entry.nodeid)
        if ids is None:
            out.append(text)  # accept lines of a test with no runs
        elif isinstance(entry, Run):
            if entry.run_id in ids:
                out.append(text)
        elif rank[i] > oldest[entry.nodeid] or entry.run_id in ids:
            out.append(text)
    return out
