"""The terminal's tables: the verdict table, the warm-up table, the roofline table and the
parameter tables, each fitted to the terminal's width. No pytest.

The verdict table (:func:`terminal_table`) lists the rows by status (report.STATUS_ORDER:
regressed first, info last), status coloured when asked; see its docstring for how it fits.
The parameter tables (:func:`params_tables`, :func:`params_table_lines`) show a parametrized
test function as a grid, a column per parameter and one per metric's median; to fit, the metric
headers go on two lines, parameters with one value in every row move to a line under the table,
and the metric columns are split over several tables that repeat the parameter columns.
"""

from __future__ import annotations

import functools
import re
import textwrap
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .compare import Verdict, fmt_pct, fmt_value
from .report import (
    ROOFLINE_HEADERS,
    arrow,
    by_status,
    raw_cell,
    reference_cell,
    roofline_groups,
    tolerance_cell,
    value_cell,
)

if TYPE_CHECKING:
    from .report import ParamsTable
    from .result import TestResult

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
        file=file, name=name, test=test, metric=_one_line(f"{v.metric} {arrow(v)}"),
        cells={"reference": _one_line(reference_cell(v)), "baseline": value_cell(v.baseline, v.unit),
               "current": value_cell(v.current, v.unit), "raw": raw_cell(v), "tolerance": tolerance_cell(v)},
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
    """The warm-up table; with ``width``, fitted to it (fitted_table)."""
    return fitted_table(warmup_rows(warmups), WARMUP_HEADERS, WARMUP_SHORT, width)


def fitted_table(rows: list[list[str]], headers: Sequence[str], short: Sequence[str], width: int | None) -> str:
    """A table whose first column is a test id; with ``width``, fitted to it: ``short`` headers,
    then the test ids cut in the middle (their start names the file, their end the parameters),
    then the lines cut."""
    from tabulate import tabulate

    text = str(tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True))
    if width is None or max(visible_width(line) for line in text.splitlines()) <= width:
        return text
    # tabulate's column: its widest cell, and at least its header and 2
    others = [max(len(h) + 2, *(visible_width(r[i]) for r in rows)) for i, h in enumerate(short) if i]
    room = max(12, width - sum(others) - 2 * len(others))
    cut = [[truncate_middle(r[0], room), *r[1:]] for r in rows]
    text = str(tabulate(cut, headers=list(short), tablefmt="simple", disable_numparse=True))
    return "\n".join(_clip(line, width) for line in text.splitlines())


ROOFLINE_SHORT = ["test", "meas.", "pred.", "eff.", "bound"]


def roofline_lines(results: Sequence[TestResult], width: int | None = None) -> list[str]:
    """The summary's roofline section: a heading and a table per test function, metric and
    assumption (report.roofline_groups), fitted to ``width`` (fitted_table); nothing when no test
    predicted. The bound is the larger of the compute and the memory time, over the parts of the
    benchmark's step."""
    lines: list[str] = []
    for heading, rows in roofline_groups(results).items():
        table = fitted_table(rows, ROOFLINE_HEADERS, ROOFLINE_SHORT, width)
        title = f"roofline of {heading}:"
        wrapped = textwrap.wrap(title, max(40, width), subsequent_indent="    ", break_on_hyphens=False) \
            if width else [title]
        lines += ["", *wrapped, *table.splitlines()]
    return lines


def _grid(table: ParamsTable, params: Sequence[int], metrics: Sequence[int], two_lines: bool,
          cells: Sequence[Sequence[str]] | None = None) -> str:
    """The table of the parameter columns ``params`` and the metric columns ``metrics`` (indices);
    ``two_lines``: each metric's unit under its name."""
    from tabulate import tabulate

    data = table.rows if cells is None else cells
    n = len(table.params)
    headers = [table.params[i] for i in params]
    for j in metrics:
        name, unit = table.metrics[j]
        headers.append(f"{name}\n({unit})" if unit and two_lines else f"{name} ({unit})" if unit else name)
    rows = [[row[i] for i in params] + [row[n + j] for j in metrics] for row in data]
    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def _widest(text: str) -> int:
    return max((visible_width(line) for line in text.splitlines()), default=0)


def _narrowed(table: ParamsTable, params: Sequence[int], metrics: Sequence[int], width: int) -> str:
    """A one-metric table that is still too wide: the widest parameter's values cut in the middle
    (never below 8 columns), then the lines cut."""
    text = _grid(table, params, metrics, True)
    excess = _widest(text) - width
    if excess > 0 and params:
        col = max(params, key=lambda i: max(visible_width(r[i]) for r in table.rows))
        room = max(8, max(visible_width(r[col]) for r in table.rows) - excess)
        cells = [[truncate_middle(c, room) if i == col else c for i, c in enumerate(r)] for r in table.rows]
        text = _grid(table, params, metrics, True, cells)
    return "\n".join(_clip(line, width) for line in text.splitlines())


def params_table_text(table: ParamsTable, width: int | None = None) -> str:
    """A parameter table as text; with ``width``, fitted to it, each step only when the one before
    is not enough: (1) each metric's unit on a second header line; (2) the parameters that have the
    same value in every row leave the table for a line under it (``every row: batch=4, ...``);
    (3) the metric columns are split over as few tables as fit, each repeating the parameter
    columns (so every row still reads across); (4) a table of one metric that is still too wide
    has its widest parameter cut in the middle, then its lines cut. Nothing is dropped before (4)."""
    everything = list(range(len(table.metrics)))
    text = _grid(table, range(len(table.params)), everything, False)
    if width is None or _widest(text) <= width:
        return text
    params = list(range(len(table.params)))
    text = _grid(table, params, everything, True)
    if _widest(text) <= width:
        return text
    footer = ""
    if len(table.rows) > 1:
        same = [i for i in params if len({row[i] for row in table.rows}) == 1]
        if same and len(same) < len(params):
            params = [i for i in params if i not in same]
            footer = "every row: " + ", ".join(f"{table.params[i]}={table.rows[0][i]}" for i in same)
            footer = "\n".join(textwrap.wrap(footer, width, subsequent_indent="  ")) if width > 10 else footer
    parts: list[str] = []
    chunk: list[int] = []
    for j in everything:
        if chunk and _widest(_grid(table, params, chunk + [j], True)) > width:
            parts.append(_narrowed(table, params, chunk, width))  # fits unless one metric alone is too wide
            chunk = []
        chunk.append(j)
    parts.append(_narrowed(table, params, chunk, width))  # chunk is [] for a table of parameters only
    return "\n\n".join(parts) + (f"\n{footer}" if footer else "")
