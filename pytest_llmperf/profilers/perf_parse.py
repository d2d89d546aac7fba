"""Reading what ``perf stat`` and ``perf report`` print, and the metrics made of it. No pytest, no processes.

``perf stat -x SEP`` writes one line per event: ``value SEP unit SEP event [SEP variance%] SEP
run-time SEP percent-running SEP metric-value SEP metric-unit``. The value is ``<not supported>``
when the CPU or the kernel cannot count the event (hardware counters in most VMs) and ``<not
counted>`` when the event was never scheduled; both are kept as such, never as zero. When more
events are asked for than the PMU has counters, perf multiplexes them: percent-running is below
100 and perf has already scaled the value up to the full run, which is kept together with the
percentage, so a reader knows it is an estimate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .base import Reading

COUNTED = "counted"
NOT_SUPPORTED = "not supported"
NOT_COUNTED = "not counted"

# events whose larger value is better; every other counter is a cost (lower is better)
HIGHER_IS_BETTER = frozenset({"ipc", "instructions-per-cycle"})


class PerfParseError(ValueError):
    """perf printed something that is not ``perf stat -x`` (or ``perf report``) output; the one-line
    message names the file and line, and quotes the line."""


class PerfEventError(PerfParseError):
    """perf rejected an event name; the message names the event."""


def _quote(line: str, width: int = 200) -> str:
    """A line for an error message: repr (one line, whatever it holds), cut at ``width``."""
    return repr(line) if len(line) <= width else repr(line[:width]) + "..."


@dataclass(frozen=True)
class Counter:
    event: str
    value: float | None  # None unless status is COUNTED
    unit: str = ""
    status: str = COUNTED
    running_pct: float | None = None  # below 100: multiplexed, value scaled by perf
    variance_pct: float | None = None  # with perf stat -r N
    metric_value: float | None = None  # perf's derived figure, e.g. 0.32 "CPUs utilized"
    metric_unit: str = ""

    @property
    def multiplexed(self) -> bool:
        return self.running_pct is not None and self.running_pct < 100.0


# a count or a time as perf prints it: plain decimal digits (an exponent is let through); no sign,
# no nan or inf, no digits of other scripts or underscores (which float() would take)
_PLAIN = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(text: str, separator: str) -> float:
    """A perf count: a finite number, 0 or more; thousands separators (``1,234,567`` or
    ``1.234.567`` under another locale when the field separator is not that character) are
    removed. ValueError for anything else."""
    t = text.strip()
    if separator != "," and re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?", t):
        t = t.replace(",", "")
    elif separator != "." and re.fullmatch(r"[0-9]{1,3}(\.[0-9]{3}){2,}", t):
        t = t.replace(".", "")
    if not _PLAIN.fullmatch(t):
        raise ValueError(text)
    value = float(t)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_stat_csv(text: str, separator: str = ",", name: str = "perf stat output") -> list[Counter]:
    """Counters of ``perf stat -x SEPARATOR`` output (the ``-o`` file, or stderr); comment and
    blank lines are skipped. Raises PerfEventError for perf's "event syntax error" and
    PerfParseError for any other line that is not a counter, naming ``name`` (the file) and the
    line. A value is a count: a finite number, 0 or more; perf prints nothing else there but
    ``<not supported>`` and ``<not counted>``, so a ``nan``, an ``inf`` or a negative count is
    output perf did not write (a broken or foreign tool), an error rather than a guess."""
    counters: list[Counter] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{name}, line {i + 1}"
        if line.startswith("event syntax error"):
            match = re.search(r"event syntax error: '([^']*)'", line)
            event = match.group(1) if match else line
            detail = lines[i + 1].strip(" \\_") if i + 1 < len(lines) else ""
            raise PerfEventError(f"perf does not know the event {event!r}: {detail}".rstrip(": "))
        fields = line.split(separator)
        if len(fields) < 3:
            raise PerfParseError(f"{where}: unparsable perf stat line: {_quote(line)}")
        raw_value, unit, event = fields[0].strip(), fields[1].strip(), fields[2].strip()
        rest = [f.strip() for f in fields[3:]]
        variance = None
        if rest and rest[0].endswith("%"):
            variance = _pct(rest.pop(0), line, where)
        running = _pct(rest[1], line, where) if len(rest) > 1 and rest[1] else None
        metric_value = None
        if len(rest) > 2 and rest[2]:
            try:
                metric_value = float(rest[2])
            except ValueError:
                raise PerfParseError(f"{where}: unparsable perf stat line: {_quote(line)}") from None
            if not math.isfinite(metric_value):
                metric_value = None  # perf's derived figure of a zero denominator; it is never recorded
        metric_unit = rest[3] if len(rest) > 3 else ""
        if not event:
            raise PerfParseError(f"{where}: unparsable perf stat line (no event name): {_quote(line)}")
        if raw_value in ("<not supported>", "<not counted>"):
            status = NOT_SUPPORTED if raw_value == "<not supported>" else NOT_COUNTED
            counters.append(Counter(event, None, unit, status, running, variance, metric_value, metric_unit))
            continue
        try:
            value = _number(raw_value, separator)
        except ValueError:
            raise PerfParseError(f"{where}: unparsable perf stat value {_quote(raw_value)} of the event "
                                 f"{_quote(event)} (a count is a finite number, 0 or more)") from None
        counters.append(Counter(event, value, unit, COUNTED, running, variance, metric_value, metric_unit))
    return counters


def _pct(text: str, line: str, where: str) -> float:
    try:
        return _number(text[:-1] if text.endswith("%") else text, "")
    except ValueError:
        raise PerfParseError(f"{where}: unparsable percentage {_quote(text)} in the perf stat line "
                             f"{_quote(line)}") from None


def ipc(counters: list[Counter]) -> float | None:
    """Instructions per cycle when both were counted, else None."""
    by_event = {c.event.split(":")[0]: c for c in counters}
    ins, cyc = by_event.get("instructions"), by_event.get("cycles")
    if ins and cyc and ins.value is not None and cyc.value:
        return ins.value / cyc.value
    return None


# scheduler-dependent counts: they follow the machine's load, not the program, and are recorded
# as informational metrics (shown and compared, never failing a test)
INFORMATIONAL = frozenset({"context-switches", "cs", "cpu-migrations", "migrations"})
# times (CPU time and cycles) of a run of its own: they follow the machine's speed from one session
# to the next (1.5x on our CI VM), which the gated tok/s corrects with its speed probe and these
# cannot; gating them cried wolf on unchanged binaries, so they are informational too
TIME_EVENTS = frozenset({"task-clock", "cpu-clock", "cycles", "cpu-cycles", "ref-cycles", "bus-cycles",
                         "duration_time", "user_time", "system_time"})
TIME_NOTE = ("a time measured in separate runs, not speed-adjusted (the gated tok/s or ms_per_step is): "
             "informational")
_UNITS = {"msec": "ms"}


def metric_name(event: str) -> str:
    """``perf.<event>``, the event made a valid metric name (``cycles:u`` -> ``perf.cycles_u``)."""
    return "perf." + (re.sub(r"[^A-Za-z0-9_.\-]+", "_", event).strip("_") or "event")


def readings(counters: list[Counter]) -> tuple[list[Reading], dict[str, str]]:
    """Metrics of counted events (with direction), IPC when both halves were counted, and the
    events that were not (``{event: status}``), never as zeros."""
    out: list[Reading] = []
    missing: dict[str, str] = {}
    for c in counters:
        if c.status != COUNTED or c.value is None:
            missing[c.event] = c.status
            continue
        base = c.event.split(":")[0].split("/")[-1] or c.event
        notes = [f"{c.event} was multiplexed: counted {c.running_pct:g}% of the run, scaled up by perf"
                 if c.multiplexed else "", TIME_NOTE if base in TIME_EVENTS else ""]
        out.append(Reading(metric_name(c.event), c.value, _UNITS.get(c.unit, c.unit),
                           higher_is_better=base.lower() in HIGHER_IS_BETTER,
                           gate=base not in INFORMATIONAL and base not in TIME_EVENTS,
                           note="; ".join(n for n in notes if n)))
    value = ipc(counters)
    if value is not None:
        out.append(Reading("perf.ipc", value, "", higher_is_better=True))
    return out, missing


def stat_summary(counters: list[Counter], top: int = 4) -> str:
    parts: list[str] = []
    for c in counters:
        if c.status == COUNTED and c.value is not None and len(parts) < top:
            unit = _UNITS.get(c.unit, c.unit)
            shown = f"{c.value:,.1f}" if unit else f"{c.value:,.0f}"
            parts.append(f"{c.event} {shown}{' ' + unit if unit else ''}" + (" (multiplexed)" if c.multiplexed else ""))
    ratio = ipc(counters)
    if ratio is not None:
        parts.append(f"IPC {ratio:.2f}")
    missing = [c.event for c in counters if c.status != COUNTED]
    if missing:
        parts.append("not supported/counted: " + ", ".join(missing))
    return "; ".join(parts)


# -- perf report -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Symbol:
    share: float  # percent of the samples
    symbol: str
    dso: str


SEP = "\x1f"  # the field separator asked of perf report: it appears in no symbol name


MAX_SAMPLES = 10 ** 18  # a sample count this large is no perf report's (and no metric's: see base.MAX_VALUE)
_SAMPLES = re.compile(r"#\s*Samples:\s*(\S+?)([KMG]?)\s+of event '([^']*)'")
_SAMPLE_COUNT = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,30}(?:\.[0-9]{1,30})?")


def parse_report(text: str, name: str = "perf report output") -> tuple[int | None, str | None, list[Symbol]]:
    """``perf report --stdio -F overhead,sym,dso -t SEP`` -> (samples, event, symbols by share).
    Raises PerfParseError, naming ``name`` and the line, for a line that is neither a comment nor
    a row (a share is a finite percentage, 0 or more) and for a ``# Samples:`` header whose count
    is not one (``12K``, ``1,234`` and ``1.5M`` are)."""
    samples: int | None = None
    event: str | None = None
    rows: list[Symbol] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        if line.startswith("#"):
            m = _SAMPLES.match(line)
            if m:
                count = m.group(1)
                if not _SAMPLE_COUNT.fullmatch(count):
                    raise PerfParseError(f"{where}: unparsable sample count {_quote(count + m.group(2))} in the "
                                         f"perf report header {_quote(line)}")
                scale = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}[m.group(2)]
                value = round(float(count.replace(",", "")) * scale)
                if value >= MAX_SAMPLES:
                    raise PerfParseError(f"{where}: sample count {_quote(count + m.group(2))} in the perf "
                                         f"report header is out of range (10^18 or more): {_quote(line)}")
                samples, event = value, m.group(3)
            continue
        fields = [f.strip() for f in line.split(SEP)]
        if len(fields) < 3 or not fields[0].endswith("%"):
            raise PerfParseError(f"{where}: unparsable perf report line: {_quote(line)}")
        try:
            share = _number(fields[0][:-1], "")
        except ValueError:
            raise PerfParseError(f"{where}: unparsable perf report line: {_quote(line)}") from None
        symbol = re.sub(r"^\[[.kgu]\]\s*", "", fields[1])
        rows.append(Symbol(share, symbol, fields[2]))
    rows.sort(key=lambda s: -s.share)
    return samples, event, rows


def symbols_table(rows: list[Symbol], top: int = 25) -> str:
    lines = [f"{'share':>7}  {'symbol':<50} object"]
    for s in rows[:top]:
        lines.append(f"{s.share:6.2f}%  {s.symbol:<50} {s.dso}")
    return "\n".join(lines) + "\n"

