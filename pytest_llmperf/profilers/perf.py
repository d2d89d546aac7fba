"""``perf stat`` output and availability: the parsing half of the perf wrapper (issue 5). No pytest.

``perf stat -x SEP`` writes one line per event: ``value SEP unit SEP event [SEP variance%] SEP
run-time SEP percent-running SEP metric-value SEP metric-unit``. The value is ``<not supported>``
when the CPU or the kernel cannot count the event (hardware counters in most VMs) and ``<not
counted>`` when the event was never scheduled; both are kept as such, never as zero. When more
events are asked for than the PMU has counters, perf multiplexes them: percent-running is below
100 and perf has already scaled the value up to the full run, which is kept together with the
percentage, so a reader knows it is an estimate.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

COUNTED = "counted"
NOT_SUPPORTED = "not supported"
NOT_COUNTED = "not counted"

# events whose larger value is better; every other counter is a cost (lower is better)
HIGHER_IS_BETTER = frozenset({"ipc", "instructions-per-cycle"})


class PerfParseError(ValueError):
    """perf printed something that is not ``perf stat -x`` output; the message quotes the line."""


class PerfEventError(ValueError):
    """perf rejected an event name; the message names the event."""


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


def _number(text: str, separator: str) -> float:
    """A perf number; thousands separators (``1,234,567`` or ``1.234.567`` under another locale
    when the field separator is not that character) are removed."""
    t = text.strip()
    if separator != "," and re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", t):
        t = t.replace(",", "")
    elif separator != "." and re.fullmatch(r"\d{1,3}(\.\d{3}){2,}", t):
        t = t.replace(".", "")
    return float(t)


def parse_stat_csv(text: str, separator: str = ",") -> list[Counter]:
    """Counters of ``perf stat -x SEPARATOR`` output (the ``-o`` file, or stderr); comment and
    blank lines are skipped. Raises PerfEventError for perf's "event syntax error" and
    PerfParseError for any other line that is not a counter."""
    counters: list[Counter] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("event syntax error"):
            match = re.search(r"event syntax error: '([^']*)'", line)
            event = match.group(1) if match else line
            detail = lines[i + 1].strip(" \\_") if i + 1 < len(lines) else ""
            raise PerfEventError(f"perf does not know the event {event!r}: {detail}".rstrip(": "))
        fields = line.split(separator)
        if len(fields) < 3:
            raise PerfParseError(f"unparsable perf stat line: {line!r}")
        raw_value, unit, event = fields[0].strip(), fields[1].strip(), fields[2].strip()
        rest = [f.strip() for f in fields[3:]]
        variance = None
        if rest and rest[0].endswith("%"):
            variance = _pct(rest.pop(0), line)
        running = _pct(rest[1], line) if len(rest) > 1 and rest[1] else None
        metric_value = None
        if len(rest) > 2 and rest[2]:
            try:
                metric_value = float(rest[2])
            except ValueError:
                raise PerfParseError(f"unparsable perf stat line: {line!r}") from None
        metric_unit = rest[3] if len(rest) > 3 else ""
        if not event:
            raise PerfParseError(f"unparsable perf stat line (no event name): {line!r}")
        if raw_value in ("<not supported>", "<not counted>"):
            status = NOT_SUPPORTED if raw_value == "<not supported>" else NOT_COUNTED
            counters.append(Counter(event, None, unit, status, running, variance, metric_value, metric_unit))
            continue
        try:
            value = _number(raw_value, separator)
        except ValueError:
            raise PerfParseError(f"unparsable perf stat value {raw_value!r} in line {line!r}") from None
        counters.append(Counter(event, value, unit, COUNTED, running, variance, metric_value, metric_unit))
    return counters


def _pct(text: str, line: str) -> float:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        raise PerfParseError(f"unparsable percentage {text!r} in perf stat line {line!r}") from None


def ipc(counters: list[Counter]) -> float | None:
    """Instructions per cycle when both were counted, else None."""
    by_event = {c.event.split(":")[0]: c for c in counters}
    ins, cyc = by_event.get("instructions"), by_event.get("cycles")
    if ins and cyc and ins.value is not None and cyc.value:
        return ins.value / cyc.value
    return None


def unavailable_reason(perf: str = "perf", paranoid_path: str = "/proc/sys/kernel/perf_event_paranoid") -> str | None:
    """None when ``perf stat`` can run here, else why not, in one line (tool missing, or
    perf_event_paranoid forbids unprivileged counting)."""
    path = shutil.which(perf)
    if path is None:
        return f"perf not found on PATH ({perf!r}; on Debian: apt-get install linux-perf)"
    try:
        level = int(Path(paranoid_path).read_text().strip())
    except (OSError, ValueError):
        return None
    if level > 2 and os.geteuid() != 0:
        return (f"kernel.perf_event_paranoid is {level}: unprivileged processes may not use perf "
                f"(sysctl kernel.perf_event_paranoid=2 or lower)")
    return None
