"""A fleet run's report: the nodes (job, state, wall time, outcome), the failures with their
reasons, and the nodes x tests matrix of headline metrics, regressed rows and failed or regressed
nodes first. In the terminal (fitted to a width: the node columns are split over as many tables
as needed, each repeating the test column), in Markdown, in JSON, and at the top of the HTML
report (html_report, which then shows each node's verdicts as a session's report does).
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..compare import fmt_pct, fmt_value
from ..report import md_cell
from ..report_terminal import truncate_middle, visible_width
from .gather import Cell, NodeResult, exit_status, tests_of
from .plan import Run

SCHEMA = "pytest-llmperf-fleet-report"
SCHEMA_VERSION = 1
MIN_TEST_WIDTH = 24


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 600 else f"{seconds / 60:.1f} min"


def _units(results: Sequence[NodeResult]) -> tuple[str, str] | None:
    """The one (metric, unit) of every cell, or None when the cells differ."""
    seen = {(c.metric, c.unit) for r in results for c in r.cells.values()}
    return next(iter(seen)) if len(seen) == 1 else None


def cell_text(cell: Cell | None, with_unit: bool) -> str:
    if cell is None:
        return "-"
    text = fmt_value(cell.value) if cell.value is not None else "-"
    if with_unit:
        text = f"{cell.metric} {text}" + (f" {cell.unit}" if cell.unit else "")
    if cell.change is not None:
        text += f" {fmt_pct(cell.change)}"
    return text + f" {cell.status}"


def headline(run: Run, results: Sequence[NodeResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "regressed", "failed")}
    word = "node" if len(results) == 1 else "nodes"
    return (f"pytest-llmperf fleet {run.mode} {run.run_id}: {len(results)} {word}: "
            f"{counts['ok']} ok, {counts['regressed']} regressed, {counts['failed']} failed")


def node_rows(results: Sequence[NodeResult]) -> list[list[str]]:
    return [[r.node, r.job.partition or "-", r.job.job_id or "-", r.job.state,
             "-" if r.job.exit_code is None else str(r.job.exit_code), _wall(r.wall), r.status,
             ", ".join(f"{n} {s}" for s, n in r.counts.items()) or "-"] for r in results]


NODE_HEADERS = ["node", "partition", "job", "state", "exit", "wall", "result", "verdicts"]


def _chunks(widths: Sequence[int], room: int) -> list[list[int]]:
    """Column indices in groups whose widths (plus the gaps) fit ``room``; at least one each."""
    groups: list[list[int]] = [[]]
    used = 0
    for i, w in enumerate(widths):
        if groups[-1] and used + 2 + w > room:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += 2 + w
    return groups


def matrix_tables(results: Sequence[NodeResult], width: int | None = None) -> list[str]:
    """The matrix as plain-text tables: a row per test, a column per node."""
    tests = tests_of(results)
    if not tests:
        return []
    one = _units(results)
    nodes = [r for r in results if r.cells]
    grid = [[cell_text(r.cells.get(t), one is None) for r in nodes] for t in tests]
    widths = [max([visible_width(r.node)] + [visible_width(row[i]) for row in grid]) for i, r in enumerate(nodes)]
    test_width = max(visible_width(t) for t in tests)
    if width is not None:
        test_width = min(test_width, max(MIN_TEST_WIDTH, width - 2 - max(widths)))
    names = [truncate_middle(t, test_width) for t in tests]
    room = (width - test_width) if width is not None else 10**9
    tables = []
    for group in _chunks(widths, room):
        rows = [[name] + [grid[k][i] for i in group] for k, name in enumerate(names)]
        tables.append(tabulate(rows, headers=["test"] + [nodes[i].node for i in group], tablefmt="simple",
                               disable_numparse=True))
    return tables


def terminal(run: Run, results: Sequence[NodeResult], width: int | None = None) -> str:
    lines = [headline(run, results), ""]
    lines.append(tabulate(node_rows(results), headers=NODE_HEADERS, tablefmt="simple", disable_numparse=True))
    bad = [r for r in results if r.status != "ok"]
    if bad:
        lines += ["", "needs attention:"]
        for r in bad:
            text = f"{r.node}: {r.status}: {r.reason}"
            lines += textwrap.wrap(text, width - 2, initial_indent="  ", subsequent_indent="    ") if width \
                else ["  " + text]
    tables = matrix_tables(results, width)
    if tables:
        one = _units(results)
        what = f"{one[0]} ({one[1]})" if one and one[1] else (one[0] if one else "each test's headline metric")
        lines += ["", f"headline metric: {what}; regressed rows first"]
        for t in tables:
            lines += ["", t]
    return "\n".join(lines) + "\n"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(md_cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return out + ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]


def markdown(run: Run, results: Sequence[NodeResult]) -> str:
    lines = [f"<!-- pytest-llmperf-fleet run={run.run_id} -->", "", f"## {headline(run, results)}", ""]
    lines += _md_table(NODE_HEADERS, node_rows(results))
    bad = [r for r in results if r.status != "ok"]
    if bad:
        lines += ["", "**Needs attention:**", ""]
        lines += [f"- `{r.node}`: **{r.status}**: {md_cell(r.reason)}" for r in bad]
    tests = tests_of(results)
    if tests:
        one = _units(results)
        nodes = [r for r in results if r.cells]
        what = f"{one[0]} ({one[1]})" if one and one[1] else "each test's headline metric"
        lines += ["", f"Headline metric: {what}; regressed rows first.", ""]
        lines += _md_table(["test"] + [f"`{r.node}`" for r in nodes],
                           [[f"`{t}`"] + [cell_text(r.cells.get(t), one is None) for r in nodes] for t in tests])
    return "\n".join(lines) + "\n"


def _cell_json(cell: Cell) -> dict[str, Any]:
    return {"metric": cell.metric, "unit": cell.unit, "value": cell.value, "status": cell.status,
            "change": cell.change}


def to_json(run: Run, results: Sequence[NodeResult]) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run_id": run.run_id, "mode": run.mode,
        "command": run.command, "exit_status": exit_status(results),
        "nodes": [{"node": r.node, "partition": r.job.partition, "job_id": r.job.job_id,
                   "attempts": r.job.attempts, "state": r.job.state, "exit_code": r.job.exit_code,
                   "wall_s": r.wall, "status": r.status, "reason": r.reason,
                   "run_json": str(r.run_path) if r.run_path else None, "counts": r.counts} for r in results],
        "tests": tests_of(results),
        "matrix": {t: {r.node: _cell_json(r.cells[t]) for r in results if t in r.cells} for t in tests_of(results)},
    }


def json_text(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def html_preface(run: Run, results: Sequence[NodeResult]) -> str:
    """The fleet's part at the top of the HTML report: the nodes table, the failures, the matrix."""
    e = html.escape

    def td(cell: str, status: bool) -> str:
        # a status cell ends with its status, which names its CSS class (the report's colours)
        return f'<td class="st {e(cell.rsplit(" ", 1)[-1])}">{e(cell)}</td>' if status else f"<td>{e(cell)}</td>"

    def table(headers: Sequence[str], rows: Sequence[Sequence[str]], status_cols: range | set[int]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(td(c, i in status_cols) for i, c in enumerate(row)) + "</tr>" for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    parts = [f"<h2>fleet</h2><p class=\"meta\">{e(headline(run, results))}</p>",
             table(NODE_HEADERS, node_rows(results), {NODE_HEADERS.index("result")})]
    bad = [r for r in results if r.status != "ok"]
    if bad:
        parts.append("<ul>" + "".join(f"<li><b>{e(r.node)}</b>: {e(r.status)}: {e(r.reason)}</li>" for r in bad)
                     + "</ul>")
    tests = tests_of(results)
    if tests:
        one = _units(results)
        nodes = [r for r in results if r.cells]
        parts.append(table(["test"] + [r.node for r in nodes],
                           [[t] + [cell_text(r.cells.get(t), one is None) for r in nodes] for t in tests],
                           range(1, len(nodes) + 1)))
    return "".join(parts)


def write_all(run: Run, results: Sequence[NodeResult], directory: Path, width: int | None,
              html_inputs: tuple[Any, Any] | None = None) -> dict[str, Path]:
    """Write report.txt, report.md, report.json and report.html into ``directory`` (each
    atomically); ``html_inputs`` the (histories, baselines) the HTML report draws, when read."""
    from .. import html_report
    from ..fileutil import atomic_write

    paths = {k: directory / f"report.{k}" for k in ("txt", "md", "json", "html")}
    atomic_write(paths["txt"], terminal(run, results, width))
    atomic_write(paths["md"], markdown(run, results))
    atomic_write(paths["json"], json_text(to_json(run, results)))
    runs = [(str(r.run_path), r.run) for r in results if r.run is not None and r.run_path is not None]
    histories, baselines = html_inputs or (None, None)
    html_report.write(paths["html"], runs, histories, baselines, f"pytest-llmperf fleet {run.run_id}",
                      preface=html_preface(run, results))
    return paths
