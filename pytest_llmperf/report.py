"""Terminal table, JSON and Markdown reports of a run's verdicts. No pytest."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compare import Verdict, fmt_pct, fmt_value

if TYPE_CHECKING:
    from .result import TestResult

COLUMNS = ["test", "metric", "reference", "baseline", "current", "change", "tolerance", "status"]
STATUS_ORDER = {"regressed": 0, "missing": 1, "noisy": 2, "oversubscribed": 3, "not-compared": 4, "new": 5,
                "improved": 6, "ok": 7, "info": 8}


def _change_cell(v: Verdict) -> str:
    if v.change is None:
        return "-"
    text = fmt_pct(v.change)
    if v.ci_low is not None and v.ci_high is not None:
        text += f" [{fmt_pct(v.ci_low)}, {fmt_pct(v.ci_high)}]"
    if v.adjusted:
        text += " *"
    return text


def _reference_cell(v: Verdict) -> str:
    """What the verdict compared with: ``saved``, ``history:5``, ``paired:git 1a2b3c4d``; ``-`` when
    nothing (a new metric, a missing one)."""
    if v.status in ("new", "missing") and v.reference == "saved":
        return "-"
    return v.reference


def rows(verdicts: Iterable[Verdict]) -> list[list[str]]:
    out = []
    for v in verdicts:
        unit = f" {v.unit}" if v.unit else ""
        arrow = "\u2191" if v.higher_is_better else "\u2193"
        out.append([
            v.test,
            f"{v.metric} {arrow}",
            _reference_cell(v),
            fmt_value(v.baseline) + (unit if v.baseline is not None else ""),
            fmt_value(v.current) + (unit if v.current is not None else ""),
            _change_cell(v),
            f"{v.tolerance * 100:.1f}%" if v.status != "info" else "-",
            v.status,
        ])
    return out


def terminal_table(verdicts: list[Verdict]) -> str:
    from tabulate import tabulate

    return str(tabulate(rows(verdicts), headers=COLUMNS, tablefmt="simple", disable_numparse=True))


def warmup_rows(warmups: list[tuple[str, str, Mapping[str, Any]]]) -> list[list[str]]:
    out = []
    for test, metric, w in warmups:
        ratio = w.get("ratio")
        out.append([
            test, metric, str(w.get("discarded", "-")), fmt_value(w.get("first")), fmt_value(w.get("steady")),
            f"{ratio:.2f}x" if isinstance(ratio, (int, float)) else "-",
        ])
    return out


def warmup_table(warmups: list[tuple[str, str, Mapping[str, Any]]]) -> str:
    from tabulate import tabulate

    return str(tabulate(
        warmup_rows(warmups), headers=["test", "metric", "discarded", "first round", "steady median", "first/steady"],
        tablefmt="simple", disable_numparse=True,
    ))


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


def _md_cell(text: str) -> str:
    """One table cell: a newline (a raw test id may hold one) or a pipe would end the row."""
    return " ".join(str(text).splitlines()).replace("|", "\\|") if text else text


def markdown(node: str, verdicts: list[Verdict], saved: list[str] | None = None,
             missing: Sequence[str] = ()) -> str:
    """The summary table; ``missing`` are the lines of the holes (holes.Hole.message), each with its
    reason, listed under it."""
    lines = [f"### pytest-llmperf on node `{node}`", ""]
    summary = ", ".join(f"{n} {status}" for status, n in counts(verdicts).items()) or "no metrics recorded"
    lines.append(f"**{summary}**")
    lines.append("")
    if verdicts:
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "---|" * len(COLUMNS))
        for row, v in zip(rows(verdicts), verdicts):
            cells = [_md_cell(c) for c in row]
            cells[0] = f"`{cells[0]}`"
            if v.status in ("regressed", "missing"):
                cells[-1] = f"**{v.status}**"
            lines.append("| " + " | ".join(cells) + " |")
        if any(v.adjusted for v in verdicts):
            lines.append("")
            lines.append("\\* speed-adjusted: rounds divided by a machine-speed probe timed around them.")
    for line in notes(verdicts):
        lines.append("")
        lines.append(f"Note: {line}")
    if missing:
        lines.append("")
        lines.append("Missing (selected, but did not record):")
        lines.append("")
        lines.extend(f"- {_md_cell(line)}" for line in missing)
    if saved:
        lines.append("")
        lines.append("Baselines saved: " + ", ".join(f"`{p}`" for p in saved))
    return "\n".join(lines) + "\n"


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
