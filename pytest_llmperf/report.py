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

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
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


def rank(status: str) -> int:
    return STATUS_ORDER.get(status, len(STATUS_ORDER))


def by_status(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The verdicts in STATUS_ORDER (a status it does not know after info), in the run's order
    within a status."""
    return sorted(verdicts, key=lambda v: rank(v.status))


def change_cell(v: Verdict) -> str:
    if v.change is None:
        return "-"
    text = fmt_pct(v.change)
    if v.ci_low is not None and v.ci_high is not None:
        text += f" [{fmt_pct(v.ci_low)}, {fmt_pct(v.ci_high)}]"
    if v.adjusted:
        text += " *"
    return text


def raw_cell(v: Verdict) -> str:
    """The change of the plain medians (Verdict.raw_change): what the numbers say before the
    speed adjustment or the pairing that the gated change went through."""
    return fmt_pct(v.raw_change) if v.raw_change is not None else "-"


def reference_cell(v: Verdict) -> str:
    """What the verdict compared with: ``saved``, ``history:5``, ``paired:git 1a2b3c4d``; ``-`` when
    nothing (a new metric, a missing one)."""
    if v.status in ("new", "missing") and v.reference == "saved":
        return "-"
    return v.reference


def value_cell(value: float | None, unit: str) -> str:
    return fmt_value(value) + (f" {unit}" if unit and value is not None else "")


def tolerance_cell(v: Verdict) -> str:
    return f"{v.tolerance * 100:.1f}%" if v.status != "info" else "-"


def arrow(v: Verdict) -> str:
    return "\u2191" if v.higher_is_better else "\u2193"


def rows(verdicts: Iterable[Verdict]) -> list[list[str]]:
    """One row of COLUMNS per verdict, in the order given."""
    return [[v.test, f"{v.metric} {arrow(v)}", reference_cell(v), value_cell(v.baseline, v.unit),
             value_cell(v.current, v.unit), change_cell(v), raw_cell(v), tolerance_cell(v), v.status]
            for v in verdicts]


@dataclass(frozen=True)
class ParamsTable:
    """One parametrized test function as a grid: ``params`` (the parameters' names, in the order
    first seen) and ``metrics`` (``(name, unit)``) are the columns, ``rows`` the cells as text."""

    function: str
    params: list[str]
    metrics: list[tuple[str, str]]
    rows: list[list[str]]

    @property
    def headers(self) -> list[str]:
        return self.params + [f"{name} ({unit})" if unit else name for name, unit in self.metrics]


def params_tables(results: Sequence[TestResult]) -> list[ParamsTable]:
    """Parametrized tests as their own tables, one per test function: a column per parameter, then
    the median of each metric (e.g. model | flags | threads | tok_per_s | mbu), in run order; for
    the functions that have parameters."""
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
        rows = []
        for entry in entries:
            row = [str(entry.params.get(k, "")) for k in params]
            for name in metrics:
                median = entry.median(name)
                row.append(fmt_value(median) if median is not None else "-")
            rows.append(row)
        tables.append(ParamsTable(function, params, list(metrics.items()), rows))
    return tables


ROOFLINE_HEADERS = ["test", "measured", "predicted", "efficiency", "bound"]


def roofline_groups(results: Sequence[TestResult]) -> dict[str, list[list[str]]]:
    """The roofline predictions (TestResult.roofline), a table per test function, metric and
    assumption (the device and the efficiencies), keyed by its heading (``suites/test_x.py::test_x:
    tok_per_s (tok/s) on this node: 30.0 GB/s``): one row per test, named by its parameters (the id
    in brackets; the test's name when it has none), with the measured median, the prediction, the
    efficiency (how close the measurement came) and the bound."""
    out: dict[str, list[list[str]]] = {}
    for r in results:
        function, _, params = r.nodeid.partition("[")
        name = f"[{params}" if params else r.nodeid.rsplit("::", 1)[-1]
        for e in r.roofline:
            metric, unit = str(e.get("metric")), str(e.get("unit") or "")
            eff = r.efficiency(e)
            heading = (f"{function if params else r.nodeid.rsplit('::', 1)[0]}: "
                       f"{metric}{f' ({unit})' if unit else ''} on {e.get('device') or 'an unnamed device'}")
            out.setdefault(heading, []).append([
                name, fmt_value(r.median(metric)), fmt_value(e.get("predicted")),
                f"{100 * eff:.1f}%" if eff is not None else "-", str(e.get("bound", "-"))])
    return out


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


def md_cell(text: str) -> str:
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
    roofline: Mapping[str, list[list[str]]] = field(default_factory=dict)  # roofline_groups

    def __post_init__(self) -> None:
        self.verdicts = by_status(self.verdicts)
        self.rows = []
        for cells, v in zip(rows(self.verdicts), self.verdicts):
            md = [md_cell(c) for c in cells]
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
        lines += ["", f"Note: {md_cell(line)}"]
    lines += _roofline_md(section.roofline)
    if section.missing:
        lines += ["", "Missing (selected, but did not record):", ""]
        lines += [f"- {md_cell(line)}" for line in section.missing]
    if section.saved:
        lines += ["", "Baselines saved: " + ", ".join(_md_code(str(p)) for p in section.saved)]
    return lines


def _roofline_md(groups: Mapping[str, list[list[str]]]) -> list[str]:
    """The roofline tables (roofline_groups), folded: how many predictions under each bound. A
    heading without rows is a line of its own (markdown: the tables left out over the cap)."""
    if not groups:
        return []
    if not any(groups.values()):
        return ["", *(md_cell(heading) for heading in groups)]
    bounds: dict[str, int] = {}
    for rows_ in groups.values():
        for row in rows_:
            bounds[row[-1]] = bounds.get(row[-1], 0) + 1
    shown = ", ".join(f"{n} {bound} bound" for bound, n in sorted(bounds.items()))
    lines = ["", f"<details><summary>roofline: {_html(shown)}</summary>"]
    for heading, rows_ in groups.items():
        lines += ["", f"{md_cell(heading)}:", "", "| " + " | ".join(ROOFLINE_HEADERS) + " |",
                  "|" + "---|" * len(ROOFLINE_HEADERS)]
        lines += ["| " + " | ".join([_md_code(md_cell(row[0])), *(md_cell(c) for c in row[1:])]) + " |"
                  for row in rows_]
    return lines + ["", "</details>"]


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
            order.append(((v.status not in FOLDED), -rank(v.status), -place[v.status], -si, si, ri))
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
             missing: Sequence[str] = (), *, cap: int | None = DEFAULT_CAP, where: str | None = None,
             roofline: Mapping[str, list[list[str]]] | None = None) -> str:
    """The summary table of a run, for a CI comment (the module docstring): the marker, the counts,
    the attention rows, the rest folded, then ``missing`` (the lines of the holes,
    holes.Hole.message, each with its reason), the ``roofline`` tables (roofline_groups, folded)
    and the baselines ``saved``. At most ``cap`` characters (None: no cap); ``where`` says where
    the rows left out are (the JSON report). Over the cap, the roofline tables go first, before
    any verdict row: a line says where they are instead."""
    def section(groups: Mapping[str, list[list[str]]]) -> _Section:
        return _Section(f"### pytest-llmperf on node {_md_code(node)}", list(verdicts), list(saved or ()),
                        list(missing), roofline=groups)

    head, groups = [marker([node])], dict(roofline or {})
    if groups and cap is not None and len(_capped(head, [section(groups)], None, where)) > cap:
        n = sum(len(rows_) for rows_ in groups.values())
        groups = {f"Roofline tables left out (over the cap): {n} prediction{'s' if n != 1 else ''}"
                  + (f", in {where}" if where else ""): []}
    return _capped(head, [section(groups)], cap, where)


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
