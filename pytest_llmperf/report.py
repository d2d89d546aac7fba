"""Terminal table, JSON and Markdown reports of a run's verdicts. No pytest.

Both tables list the rows by status (STATUS_ORDER: regressed first, info last; the run's order
within a status), so that what needs a reader comes first.

The Markdown report (:func:`markdown`, :func:`markdown_many`) is made to be posted as a CI comment:

- its first line is a hidden marker, ``<!-- pytest-llmperf node=NODE -->`` (``nodes=A,B`` for a
  report merged from several nodes' runs): a bot that keeps one sticky comment per pull request
  finds its comment by the prefix ``<!-- pytest-llmperf`` (MARKER_PREFIX) and edits that comment
  instead of adding one every night;
- the rows that ask for attention (ATTENTION: regressed, missing, noisy, oversubscribed,
  not-compared) are in a visible table; the others (new, improved, ok, info) are folded into a
  ``<details>`` block under it. Measured on the torch suites: 1,440 verdicts, 83% of them info,
  made 221 KB of Markdown, more than three times what GitHub takes in a comment (65,536 characters);
- the text is capped (DEFAULT_CAP, 65,000 characters: under GitHub's limit, with room for a bot's
  own lines). Over the cap, rows are left out from the end of the folded part first (info, then
  ok, improved, new), then, only if that is not enough, attention rows (the least urgent first);
  a last line says how many were left out and where they are (``where``: the JSON report's path).

The terminal table (:func:`terminal_table`) fits the terminal's width: see its docstring.
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compare import Verdict, fmt_pct, fmt_value

if TYPE_CHECKING:
    from .result import TestResult

COLUMNS = ["test", "metric", "reference", "baseline", "current", "change", "raw change", "tolerance", "status"]
STATUS_ORDER = {"regressed": 0, "missing": 1, "noisy": 2, "oversubscribed": 3, "not-compared": 4, "new": 5,
                "improved": 6, "ok": 7, "info": 8}
# the statuses of the visible Markdown table; the others are folded (a status this module does not
# know is shown too: better read once too often than hidden)
FOLDED = frozenset({"new", "improved", "ok", "info"})
ATTENTION = tuple(s for s in STATUS_ORDER if s not in FOLDED)

MARKER_PREFIX = "<!-- pytest-llmperf"
GITHUB_LIMIT = 65_536  # characters of one issue or pull-request comment
DEFAULT_CAP = 65_000


def _rank(status: str) -> int:
    return STATUS_ORDER.get(status, len(STATUS_ORDER))


def by_status(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The verdicts in STATUS_ORDER (a status it does not know after info), in the run's order
    within a status."""
    return sorted(verdicts, key=lambda v: _rank(v.status))


def _change_cell(v: Verdict) -> str:
    if v.change is None:
        return "-"
    text = fmt_pct(v.change)
    if v.ci_low is not None and v.ci_high is not None:
        text += f" [{fmt_pct(v.ci_low)}, {fmt_pct(v.ci_high)}]"
    if v.adjusted:
        text += " *"
    return text


def _raw_cell(v: Verdict) -> str:
    """The change of the plain medians (Verdict.raw_change): what the numbers say before the
    speed adjustment or the pairing that the gated change went through."""
    return fmt_pct(v.raw_change) if v.raw_change is not None else "-"


def _reference_cell(v: Verdict) -> str:
    """What the verdict compared with: ``saved``, ``history:5``, ``paired:git 1a2b3c4d``; ``-`` when
    nothing (a new metric, a missing one)."""
    if v.status in ("new", "missing") and v.reference == "saved":
        return "-"
    return v.reference


def _value_cell(value: float | None, unit: str) -> str:
    return fmt_value(value) + (f" {unit}" if unit and value is not None else "")


def _tolerance_cell(v: Verdict) -> str:
    return f"{v.tolerance * 100:.1f}%" if v.status != "info" else "-"


def _arrow(v: Verdict) -> str:
    return "\u2191" if v.higher_is_better else "\u2193"


def rows(verdicts: Iterable[Verdict]) -> list[list[str]]:
    """One row of COLUMNS per verdict, in the order given."""
    return [[v.test, f"{v.metric} {_arrow(v)}", _reference_cell(v), _value_cell(v.baseline, v.unit),
             _value_cell(v.current, v.unit), _change_cell(v), _raw_cell(v), _tolerance_cell(v), v.status]
            for v in verdicts]


# ------------------------------------------------------------------------------------ terminal


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
RESET = "\x1b[0m"
# ANSI SGR codes of the status cell; a status not named here is plain
STATUS_COLORS = {"regressed": "1;31", "missing": "33", "noisy": "33", "oversubscribed": "33",
                 "not-compared": "33", "improved": "32"}
ELLIPSIS = "\u2026"
GAP = "  "  # between columns, as tabulate's "simple" format


def use_color(option: str | None, hasmarkup: bool, environ: Mapping[str, str]) -> bool:
    """Colour the status? pytest's rule: ``--color=yes``/``no`` decide; ``auto`` (the default)
    follows the terminal writer (``hasmarkup``: a terminal, PY_COLORS, NO_COLOR, FORCE_COLOR), and
    a non-empty NO_COLOR disables it unless PY_COLORS=1 asks for colour."""
    if option == "yes":
        return True
    if option == "no":
        return False
    return hasmarkup and (not environ.get("NO_COLOR") or environ.get("PY_COLORS") == "1")


def colored(text: str, status: str) -> str:
    code = STATUS_COLORS.get(status)
    return f"\x1b[{code}m{text}{RESET}" if code else text


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Cc", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def visible_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: escape codes take none, wide (CJK) characters two."""
    if text.isascii() and text.isprintable():  # most cells: one column a character
        return len(text)
    return _wide_width(text)


@functools.lru_cache(maxsize=4096)  # the metric cells (an arrow each) repeat in every row
def _wide_width(text: str) -> int:
    return sum(_char_width(ch) for ch in _ANSI.sub("", text))


def _cut(text: str, width: int, from_end: bool = False) -> str:
    """The longest start (or end) of ``text`` of at most ``width`` columns."""
    out: list[str] = []
    used = 0
    for ch in reversed(text) if from_end else text:
        used += _char_width(ch)
        if used > width:
            break
        out.append(ch)
    return "".join(reversed(out)) if from_end else "".join(out)


def truncate_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` columns: its start and its end, ``…`` between them (the end of
    a test id holds its parameters, the start its name)."""
    if visible_width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    start = _cut(text, width // 2)
    return start + ELLIPSIS + _cut(text, width - 1 - visible_width(start), from_end=True)


def _clip(line: str, width: int) -> str:
    """The last resort of a very narrow terminal: the line cut at its end (colour dropped)."""
    if visible_width(line) <= width:
        return line
    plain = _ANSI.sub("", line)
    return _cut(plain, width - 1) + ELLIPSIS


def _one_line(text: str) -> str:
    """A test id may hold a newline (a parameter's repr): on the terminal it would break the row;
    other control characters (an escape) are shown escaped, so that they neither act nor hide."""
    joined = " ".join(str(text).splitlines())
    return "".join(ch if unicodedata.category(ch) != "Cc" else ascii(ch)[1:-1] for ch in joined)


@dataclass(frozen=True)
class _Cells:
    """What the terminal table shows of one verdict, before a layout is chosen."""

    file: str  # the test id up to its first "::" ("" when it has none)
    name: str  # the rest of it (the whole id when it has no "::")
    test: str
    metric: str
    cells: dict[str, str]  # reference, baseline, current, raw, tolerance: as the Markdown's
    change: str  # "-3.1%", "-" without a change
    ci: str  # " [-4.0%, -2.2%]", or ""
    star: str  # " *" when speed-adjusted, or ""
    status: str


def _cells(v: Verdict) -> _Cells:
    test = _one_line(v.test)
    file, sep, name = test.partition("::")
    if not sep:
        file, name = "", test
    ci = ""
    if v.change is not None and v.ci_low is not None and v.ci_high is not None:
        ci = f" [{fmt_pct(v.ci_low)}, {fmt_pct(v.ci_high)}]"
    return _Cells(
        file=file, name=name, test=test, metric=_one_line(f"{v.metric} {_arrow(v)}"),
        cells={"reference": _one_line(_reference_cell(v)), "baseline": _value_cell(v.baseline, v.unit),
               "current": _value_cell(v.current, v.unit), "raw": _raw_cell(v), "tolerance": _tolerance_cell(v)},
        change=fmt_pct(v.change) if v.change is not None else "-", ci=ci,
        star=" *" if v.adjusted and v.change is not None else "", status=_one_line(v.status))


# the columns after the test (or the metric), in order, with their header and short header
_TERMINAL_COLUMNS = (("metric", "metric", "metric"), ("reference", "reference", "ref"),
                     ("baseline", "baseline", "baseline"), ("current", "current", "current"),
                     ("change", "change", "change"), ("raw", "raw change", "raw"),
                     ("tolerance", "tolerance", "tol"), ("status", "status", "status"))
_DROPPABLE = ("reference", "baseline", "current", "change", "raw", "tolerance")  # when every cell is "-"
_FOLDABLE = ("reference", "tolerance")  # the same in every row: said once, under the table
# left out, in this order, when nothing else is left to try (the change says what the baseline would)
_LOSSY = ("tolerance", "reference", "raw", "baseline")
_LEFT_OUT_NAMES = {"ci": "the change's confidence interval", "tolerance": "tolerance", "reference": "reference",
                   "raw": "raw change", "baseline": "baseline"}


@dataclass(frozen=True)
class _Plan:
    """One way of drawing the table; the first that fits the width is used."""

    layout: str = "flat"  # flat: the test id in a column; file: the file's path on a line of its own and
    # the test's name (after "::") in the column; test: the file and the test each on a line of their own
    dropped: frozenset[str] = frozenset()  # columns left out because they hold nothing ("-", a repeated change)
    folded: frozenset[str] = frozenset()  # columns of one value, said once under the table
    lossy: tuple[str, ...] = ()  # columns (and "ci") left out to fit, said under the table
    short: bool = False  # short headers (ref, raw, tol)
    cut_metric: bool = False  # the last resort: the status beside the metric (a line cut at its end keeps
    # it), metric names cut to what the width leaves


def _uniform(data: Sequence[_Cells], key: str) -> str | None:
    """The one value of a column (its "-" cells aside), or None."""
    values = {d.cells[key] for d in data} - {"-"}
    return next(iter(values)) if len(values) == 1 else None


def _plans(data: Sequence[_Cells]) -> list[_Plan]:
    """The candidate plans, from the one that leaves out nothing to the one that leaves out most.

    The order: the full table; columns that hold nothing left out and short headers; the change's
    interval left out; columns of one value said once under the table; each of those with the test
    id whole (flat), then grouped by file (the test's name in the column). Then the same with the
    test's name on a line of its own too (test layout: a torch id such as
    ``test_step[small-forward_backward-bf16-ctx256]`` leaves no room for the values beside it at 80
    columns); then tolerance, reference, raw change and baseline left out in turn; then the status
    moved beside the metric and metric names cut. One line per row wins over the interval, the
    interval over the tolerance and the reference."""
    # the raw change says something only where it differs from the change (speed-adjusted,
    # paired, not compared): else the terminal leaves it out, whatever the width
    raw_says = any(d.cells["raw"] not in ("-", d.change) for d in data)
    base = _Plan(dropped=frozenset() if raw_says else frozenset({"raw"}))
    empty = frozenset(k for k in _DROPPABLE if k != "change" and all(d.cells[k] == "-" for d in data))
    if all(d.change == "-" for d in data):
        empty |= {"change"}
    p1 = replace(base, dropped=base.dropped | empty, short=True)
    p2 = replace(p1, lossy=("ci",)) if any(d.ci for d in data) else p1
    p3 = replace(p2, folded=frozenset(k for k in _FOLDABLE if k not in p2.dropped and _uniform(data, k) is not None))
    steps = list(dict.fromkeys([base, p1, p2, p3]))  # the same plan once
    plans = [replace(p, layout=layout) for p in steps for layout in ("flat", "file")]
    plans += [replace(p, layout="test") for p in steps]
    last = p3
    for key in _LOSSY:
        if key in last.dropped or key in last.folded:
            continue
        last = replace(last, lossy=(*last.lossy, key))
        plans += [replace(last, layout="file"), replace(last, layout="test")]
    plans.append(replace(last, layout="test", cut_metric=True))
    return plans


def _render(data: Sequence[_Cells], plan: _Plan, width: int | None, color: bool) -> list[str]:
    """The table's lines under ``plan`` (headings cut to ``width``), without the lines under it."""
    columns = [c for c in _TERMINAL_COLUMNS
               if c[0] not in plan.dropped and c[0] not in plan.folded and c[0] not in plan.lossy]
    if plan.cut_metric:
        columns = columns[:1] + columns[-1:] + columns[1:-1]
    first = ("test", "test") if plan.layout != "test" else None
    indent = {"flat": "", "file": "  ", "test": "    "}[plan.layout]

    def first_cell(d: _Cells) -> str:
        if plan.layout == "flat":
            return d.test
        if plan.layout == "file":
            return (indent if d.file else "") + d.name
        return indent + d.metric

    def cell(d: _Cells, key: str) -> str:
        if key == "metric":
            return d.metric
        if key == "change":
            return d.change + ("" if "ci" in plan.lossy else d.ci) + d.star
        if key == "status":
            return d.status
        return d.cells[key]

    keys = [c[0] for c in columns]
    if plan.layout == "test":
        keys = keys[1:]  # the metric is the first column
    headers = [first[1] if first else "metric"] + [
        (c[2] if plan.short else c[1]) for c in columns if c[0] in keys]
    table = [[first_cell(d)] + [cell(d, k) for k in keys] for d in data]
    if plan.cut_metric and width is not None and plan.layout == "test":
        rest = [max([visible_width(h)] + [visible_width(r[i]) for r in table]) for i, h in enumerate(headers)][1:]
        room = max(width - sum(rest) - len(GAP) * len(rest) - len(indent), 6)
        table = [[indent + truncate_middle(d.metric, room)] + r[1:] for d, r in zip(data, table)]
    widths = [max([visible_width(h)] + [visible_width(r[i]) for r in table]) for i, h in enumerate(headers)]

    status_at = len(headers) - 1 if not plan.cut_metric else 1

    def line(cells: Sequence[str], status: str | None = None) -> str:
        out = []
        for i, (text, w) in enumerate(zip(cells, widths)):
            shown = colored(text, status) if color and status is not None and i == status_at else text
            out.append(shown + " " * (w - visible_width(text)))
        return GAP.join(out).rstrip()

    lines = [line(headers), line(["-" * w for w in widths])]
    heading_width = width if width is not None else 10**9
    last_file: str | None = None
    last_test: tuple[str, str] | None = None
    for d, row in zip(data, table):
        if plan.layout != "flat":
            if d.file != last_file and d.file:
                lines.append(truncate_middle(d.file, heading_width))
            last_file = d.file
            if plan.layout == "test" and (d.file, d.name) != last_test:
                lines.append(truncate_middle("  " + d.name, heading_width))
            last_test = (d.file, d.name)
        lines.append(line(row, d.status))
    return lines


def _footer(data: Sequence[_Cells], plan: _Plan, width: int | None) -> list[str]:
    """What the plan took out of the table, said under it."""
    said = []
    for key in _FOLDABLE:
        if key in plan.folded:
            value = _uniform(data, key)
            some = any(d.cells[key] == "-" for d in data)
            said.append(f"{key} {value}" + (" where it applies" if some else ""))
    out = [f"every row: {', '.join(said)}"] if said else []
    if plan.lossy:
        names = ", ".join(_LEFT_OUT_NAMES[k] for k in plan.lossy)
        out.append(f"left out to fit {width} columns: {names}")
    if width is None:
        return out
    return [wrapped for text in out for wrapped in textwrap.wrap(text, width, break_on_hyphens=False)]


def terminal_table(verdicts: Sequence[Verdict], width: int | None = None, color: bool = False) -> str:
    """The verdicts as a table, in STATUS_ORDER, fitted to ``width`` columns (None: no limit).

    Wide enough, it is the full table, a row per verdict. Narrower, the first plan of
    :func:`_plans` whose lines all fit is drawn: the test ids grouped by file (the file's path on a
    line of its own, the rows with the test's name after ``::``), columns that hold nothing left
    out, short headers, the change's interval left out, columns of one value (``saved``, ``5.0%``)
    said once under the table, then the test's name on a line of its own above its metrics, then
    tolerance, reference, raw change and baseline left out (a line under the table names what was
    left out). Nothing is cut inside a number; names too long for a line are cut in the middle
    (``…``). Where even that does not fit (under about 60 columns), the status moves beside the
    metric and the lines are cut at their end. Measured: the torch suites' table was 119-164
    columns wide; at 80 it is drawn in the test layout with the interval left out.

    The raw change column is shown only when some row's raw change differs from its change. With
    ``color``, the status is coloured (ANSI: regressed bold red; missing, noisy, oversubscribed
    and not-compared yellow; improved green); widths are measured without the escape codes."""
    data = [_cells(v) for v in by_status(verdicts)]
    plans = _plans(data)
    if width is None:
        return "\n".join(_render(data, plans[0], None, color) + _footer(data, plans[0], None))
    width = max(width, 1)
    chosen = plans[-1]
    for plan in plans:
        lines = _render(data, plan, width, color)
        if all(visible_width(line) <= width for line in lines):
            chosen = plan
            break
    lines = _render(data, chosen, width, color) + _footer(data, chosen, width)
    return "\n".join(_clip(line, width) for line in lines)


def warmup_rows(warmups: list[tuple[str, str, Mapping[str, Any]]]) -> list[list[str]]:
    out = []
    for test, metric, w in warmups:
        ratio = w.get("ratio")
        out.append([
            test, metric, str(w.get("discarded", "-")), fmt_value(w.get("first")), fmt_value(w.get("steady")),
            f"{ratio:.2f}x" if isinstance(ratio, (int, float)) else "-",
        ])
    return out


WARMUP_HEADERS = ["test", "metric", "discarded", "first round", "steady median", "first/steady"]
WARMUP_SHORT = ["test", "metric", "disc.", "first", "steady", "ratio"]


def warmup_table(warmups: list[tuple[str, str, Mapping[str, Any]]], width: int | None = None) -> str:
    """The warm-up table; with ``width``, fitted to it: short headers, then the test ids cut in the
    middle (their start names the file, their end the parameters), then the lines cut."""
    from tabulate import tabulate

    rows = warmup_rows(warmups)
    text = str(tabulate(rows, headers=WARMUP_HEADERS, tablefmt="simple", disable_numparse=True))
    if width is None or max(visible_width(line) for line in text.splitlines()) <= width:
        return text
    # tabulate's column: its widest cell, and at least its header and 2
    others = [max(len(h) + 2, *(visible_width(r[i]) for r in rows)) for i, h in enumerate(WARMUP_SHORT) if i]
    room = max(12, width - sum(others) - 2 * len(others))
    cut = [[truncate_middle(r[0], room), *r[1:]] for r in rows]
    text = str(tabulate(cut, headers=WARMUP_SHORT, tablefmt="simple", disable_numparse=True))
    return "\n".join(_clip(line, width) for line in text.splitlines())


def params_tables(results: Sequence[TestResult]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Parametrized tests as their own tables, one per test function: a column per parameter, then
    the median of each metric (e.g. model | flags | threads | tok_per_s | mbu), in run order.
    Returns ``(test function, headers, rows)`` for the functions that have parameters."""
    groups: dict[str, list[TestResult]] = {}
    for result in results:
        if result.params:
            groups.setdefault(result.nodeid.split("[", 1)[0], []).append(result)
    tables = []
    for function, entries in groups.items():
        params: list[str] = []
        metrics: dict[str, str] = {}
        for entry in entries:
            params += [k for k in entry.params if k not in params]
            for name, m in entry.metrics.items():
                metrics.setdefault(name, m.get("unit", ""))
        headers = params + [f"{name} ({unit})" if unit else name for name, unit in metrics.items()]
        rows = []
        for entry in entries:
            row = [str(entry.params.get(k, "")) for k in params]
            for name in metrics:
                median = entry.median(name)
                row.append(fmt_value(median) if median is not None else "-")
            rows.append(row)
        tables.append((function, headers, rows))
    return tables


def params_table_text(headers: list[str], rows: list[list[str]]) -> str:
    from tabulate import tabulate

    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def notes(verdicts: Iterable[Verdict]) -> list[str]:
    """One line per distinct note, with the tests it concerns (named when there are few)."""
    by_note: dict[tuple[str, str], list[str]] = {}
    for v in verdicts:
        note = v.details.get("note") if v.details else None
        if note:
            by_note.setdefault((v.metric, note), []).append(v.test)
    lines = []
    for (metric, note), tests in by_note.items():
        where = tests[0] if len(tests) == 1 else f"{len(tests)} tests"
        lines.append(f"{metric} of {where}: {note}")
    return lines


def counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    result: dict[str, int] = {}
    for v in verdicts:
        result[v.status] = result.get(v.status, 0) + 1
    return dict(sorted(result.items(), key=lambda kv: STATUS_ORDER.get(kv[0], 99)))


def to_json(node: str, fingerprint: dict[str, Any] | None, digest: str | None, results: Sequence[TestResult],
            verdicts: list[Verdict], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": node,
        "fingerprint": {"hash": digest, "fields": fingerprint},
        **meta,
        "counts": counts(verdicts),
        "tests": [r.to_json() for r in results],
        "verdicts": [v.to_dict() for v in verdicts],
    }


# ------------------------------------------------------------------------------------ Markdown


def _md_cell(text: str) -> str:
    """One table cell: a newline (a raw test id may hold one) or a pipe would end the row."""
    return " ".join(str(text).splitlines()).replace("|", "\\|") if text else text


def _md_code(text: str) -> str:
    """``text`` as inline code, also when it holds a backtick."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _marker_name(node: str) -> str:
    """A node's name as it may stand inside an HTML comment (a run JSON's node is not validated)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", node).replace("--", "-")


def marker(nodes: Sequence[str]) -> str:
    """The hidden first line of a Markdown report: ``<!-- pytest-llmperf node=NODE -->``, or
    ``nodes=A,B`` for several."""
    names = ",".join(_marker_name(n) for n in nodes)
    return f"{MARKER_PREFIX} {'node' if len(nodes) == 1 else 'nodes'}={names} -->"


def _summary(verdicts: Iterable[Verdict]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts(verdicts).items()) or "no metrics recorded"


@dataclass
class _Section:
    """One node's part of a Markdown report; ``rows`` are the table rows of ``verdicts`` (sorted)."""

    heading: str
    verdicts: list[Verdict]
    saved: Sequence[str] = ()
    missing: Sequence[str] = ()
    rows: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.verdicts = by_status(self.verdicts)
        self.rows = []
        for cells, v in zip(rows(self.verdicts), self.verdicts):
            md = [_md_cell(c) for c in cells]
            md[0] = _md_code(md[0])
            if v.status in ("regressed", "missing"):
                md[-1] = f"**{v.status}**"
            self.rows.append("| " + " | ".join(md) + " |")


_TABLE_HEAD = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]


def _section_lines(section: _Section, kept: Sequence[bool]) -> list[str]:
    """The section's lines with only the rows ``kept`` (by index into section.rows)."""
    lines = [section.heading, "", f"**{_summary(section.verdicts)}**"]
    attention = [i for i, v in enumerate(section.verdicts) if v.status not in FOLDED and kept[i]]
    folded = [i for i, v in enumerate(section.verdicts) if v.status in FOLDED and kept[i]]
    if attention:
        lines += ["", *_TABLE_HEAD, *(section.rows[i] for i in attention)]
    if folded:
        shown = _summary(section.verdicts[i] for i in folded)
        more = "more " if attention else ""
        lines += ["", f"<details><summary>{len(folded)} {more}row{'s' if len(folded) != 1 else ''} "
                      f"({_html(shown)})</summary>", "", *_TABLE_HEAD, *(section.rows[i] for i in folded), "",
                  "</details>"]
    if any(v.adjusted for v in section.verdicts):
        lines += ["", "\\* speed-adjusted: rounds divided by a machine-speed probe timed around them."]
    for line in notes(section.verdicts):
        lines += ["", f"Note: {_md_cell(line)}"]
    if section.missing:
        lines += ["", "Missing (selected, but did not record):", ""]
        lines += [f"- {_md_cell(line)}" for line in section.missing]
    if section.saved:
        lines += ["", "Baselines saved: " + ", ".join(_md_code(str(p)) for p in section.saved)]
    return lines


def _left_out_line(rows_out: int, lines_out: int, cap: int, where: str | None) -> str:
    what = f"{rows_out} row{'s' if rows_out != 1 else ''}"
    if lines_out:
        what += f" and {lines_out} other line{'s' if lines_out != 1 else ''}"
    limit = (f"GitHub's {GITHUB_LIMIT:,}-character limit" if cap == DEFAULT_CAP
             else f"the cap of {cap:,} characters")
    return f"{what} left out (over {limit})" + (f": see {where}" if where else "")


def _capped(head: Sequence[str], sections: Sequence[_Section], cap: int | None, where: str | None) -> str:
    """The report within ``cap`` characters: rows left out in the order of the module docstring
    (folded before attention, the least urgent status first, the end of each status's rows first,
    the nodes taking turns), whole lines from the end if that is not enough, a hard cut last."""

    def text(kept: list[list[bool]], rows_out: int, lines_out: int = 0) -> list[str]:
        lines = list(head)
        for section, keep in zip(sections, kept):
            lines += ["", *_section_lines(section, keep)] if lines else _section_lines(section, keep)
        if rows_out or lines_out:
            assert cap is not None
            lines += ["", _left_out_line(rows_out, lines_out, cap, where)]
        return lines

    def joined(lines: Sequence[str]) -> str:
        return "\n".join(lines) + "\n"

    everything = [[True] * len(s.rows) for s in sections]
    full = joined(text(everything, 0))
    if cap is None or len(full) <= cap:
        return full
    # the order rows are left out in: folded first, then the rank (info first), then the place within
    # its node's rows of that status (the end first), then the node (the last first)
    order: list[tuple[bool, int, int, int, int, int]] = []
    for si, section in enumerate(sections):
        place: dict[str, int] = {}
        for ri, v in enumerate(section.verdicts):
            place[v.status] = place.get(v.status, 0) + 1
            order.append(((v.status not in FOLDED), -_rank(v.status), -place[v.status], -si, si, ri))
    order.sort()

    def kept_without(k: int) -> list[list[bool]]:
        kept = [[True] * len(s.rows) for s in sections]
        for *_, si, ri in order[:k]:
            kept[si][ri] = False
        return kept

    def size(k: int) -> int:
        return len(joined(text(kept_without(k), k)))

    lo, hi = 1, len(order)  # the fewest rows left out that fit: size falls as k grows
    if size(hi) <= cap:
        while lo < hi:
            mid = (lo + hi) // 2
            if size(mid) <= cap:
                hi = mid
            else:
                lo = mid + 1
        return joined(text(kept_without(lo), lo))
    # every row left out and still too long (notes, a missing list, a tiny cap): whole lines from
    # the end, then a hard cut
    lines = text(kept_without(len(order)), len(order))[:-2]
    rows_out = len(order)
    for cut in range(1, len(lines)):
        shorter = lines[: len(lines) - cut] + ["", _left_out_line(rows_out, cut, cap, where)]
        if len(joined(shorter)) <= cap:
            return joined(shorter)
    return joined(lines[:1] + ["", _left_out_line(rows_out, len(lines) - 1, cap, where)])[:cap]


def markdown(node: str, verdicts: Sequence[Verdict], saved: Sequence[str] | None = None,
             missing: Sequence[str] = (), *, cap: int | None = DEFAULT_CAP, where: str | None = None) -> str:
    """The summary table of a run, for a CI comment (the module docstring): the marker, the counts,
    the attention rows, the rest folded, then ``missing`` (the lines of the holes,
    holes.Hole.message, each with its reason) and the baselines ``saved``. At most ``cap``
    characters (None: no cap); ``where`` says where the rows left out are (the JSON report)."""
    section = _Section(f"### pytest-llmperf on node {_md_code(node)}", list(verdicts), list(saved or ()),
                       list(missing))
    return _capped([marker([node])], [section], cap, where)


# the Verdict fields a run JSON's verdict must have, and the types of the others
_VERDICT_FIELDS = {f.name for f in fields(Verdict)}
_REQUIRED = ("test", "metric", "status")
_NUMBERS = ("tolerance", "current", "baseline", "change", "ci_low", "ci_high", "confidence", "p_value",
            "raw_change")


def verdict_from_json(data: object, where: str) -> Verdict:
    """A verdict of a run JSON (Verdict.to_dict), checked enough to be shown (ValueError naming
    ``where``); the Markdown merge and the HTML report read run JSONs through it."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: not an object")
    for key in _REQUIRED:
        if not isinstance(data.get(key), str):
            raise ValueError(f"{where}: {key!r} is not a string")
    for key in _NUMBERS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: {key!r} is not a number")
    known = {k: v for k, v in data.items() if k in _VERDICT_FIELDS}
    known.setdefault("unit", "")
    known.setdefault("higher_is_better", True)
    known.setdefault("tolerance", 0.0)
    known.setdefault("current", None)
    for key in ("unit", "reason", "reference"):
        if not isinstance(known.get(key, ""), str):
            raise ValueError(f"{where}: {key!r} is not a string")
    if not isinstance(known.get("details") or {}, dict):
        raise ValueError(f"{where}: 'details' is not an object")
    known["details"] = dict(known.get("details") or {})
    return Verdict(**known)


def _hole_line(data: object, where: str) -> str:
    from .holes import Hole

    if not isinstance(data, dict) or not isinstance(data.get("test"), str) \
            or not isinstance(data.get("metrics"), list):
        raise ValueError(f"{where}: not a missing test (test, metrics, reason)")
    return Hole(nodeid=data["test"], metrics=tuple(str(m) for m in data["metrics"]),
                reason=str(data.get("reason", "")), whole_test=bool(data.get("whole_test")),
                gated=bool(data.get("gated")), sources=tuple(str(s) for s in data.get("sources") or ("saved",))
                ).message()


def check_run(path: str | Path, run: Any, first_path: str | Path, first: Mapping[str, Any]) -> str:
    """The node of a run JSON given with others (``first``, the first of them, read from
    ``first_path``); ValueError, one line naming the file: not a run JSON (``--llmperf-json``), a
    ``schema``/``schema_version`` that differs from the first's, no node name."""
    if not isinstance(run, Mapping) or not isinstance(run.get("verdicts"), list):
        raise ValueError(f"{path}: not a pytest-llmperf run JSON (no \"verdicts\" list; written by --llmperf-json)")
    for key in ("schema", "schema_version"):
        if run.get(key) != first.get(key):
            raise ValueError(f"{path}: {key} {run.get(key)!r} differs from {first.get(key)!r} of {first_path}: "
                             "give runs written by one plugin version")
    node = run.get("node")
    if not isinstance(node, str) or not node:
        raise ValueError(f"{path}: \"node\" is not a name")
    return node


def markdown_many(runs: Sequence[tuple[str | Path, Mapping[str, Any]]], *, cap: int | None = DEFAULT_CAP,
                  where: str | None = None) -> str:
    """Several nodes' run JSONs (``--llmperf-json``: ``(path, parsed JSON)`` pairs) as one Markdown
    report: one marker (``nodes=A,B``), a line per node with its counts, then a section per node
    as :func:`markdown` writes it, in the order given; one cap for the whole (the nodes take
    turns in giving up rows). ValueError, one line naming the file: a file that is not a run JSON,
    or runs of different ``schema``/``schema_version`` given together."""
    if not runs:
        raise ValueError("no run JSON given")
    first_path, first = runs[0]
    sections = []
    nodes = []
    for path, run in runs:
        node = check_run(path, run, first_path, first)
        verdicts = [verdict_from_json(v, f"{path}: verdicts[{i}]") for i, v in enumerate(run["verdicts"])]
        missing = run.get("missing") or []
        saved = run.get("saved_baselines") or []
        if not isinstance(missing, list) or not isinstance(saved, list):
            raise ValueError(f"{path}: \"missing\" and \"saved_baselines\" must be lists")
        lines = [_hole_line(h, f"{path}: missing[{i}]") for i, h in enumerate(missing)]
        nodes.append(node)
        sections.append(_Section(f"### pytest-llmperf on node {_md_code(node)}", verdicts, [str(p) for p in saved],
                                 lines))
    if len(set(nodes)) < len(nodes):  # the same node twice (two nights): the files tell them apart
        for section, (path, _run) in zip(sections, runs):
            section.heading += f" ({_md_code(str(path))})"
    head = [marker(list(dict.fromkeys(nodes))), "",
            f"## pytest-llmperf on {len(nodes)} node{'s' if len(nodes) != 1 else ''}", ""]
    head += [f"- {_md_code(n)}: {_summary(s.verdicts)}" for n, s in zip(nodes, sections)]
    return _capped(head, sections, cap, where)


def write_text(path: Path, text: str) -> None:
    from .fileutil import atomic_write

    atomic_write(Path(path), text)


def json_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(path, json_text(payload))


def report_path_problem(path: Path) -> str | None:
    """Why a report cannot be written at ``path`` (checked before the tests run), or None."""
    import os

    from .fileutil import nearest_existing

    path = Path(path)
    if path.is_dir():
        return "is a directory"
    probe = nearest_existing(path.parent)
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"directory {probe} is not writable"
    return None


def remove_stale(path: Path) -> bool:
    """Remove the file left at ``path`` by an earlier run; True when there was one and it is gone."""
    try:
        Path(path).unlink()
        return True
    except OSError:
        return False
