"""The self-contained HTML report: one file, inline CSS and hand-written SVG, no script, no font,
no image, nothing fetched from the network. Pure core: stdlib and the core modules, no pytest.

What it shows, per node, then per test and metric, regressed first (report.STATUS_ORDER; a metric
the run did not record but the history holds comes after info):

- the verdict's status and its message (compare.verdict_message for a compared metric, then
  Verdict.reason, the why);
- the trend over the node's history: the nightly values of the series that compares with the newest
  run (cli.history_data: describe_metric's ``series``, plain medians, speed-adjusted medians or
  paired ratios), the reference band (the reference's center times exp(+-between_sd), its spread
  between nights, on the series' scale; none for a paired series, whose values are ratios), the
  change points (a dashed vertical line each, its dates, commits and size in a ``<title>``
  tooltip), and today's point, highlighted: the history's point of the run's run id when the run
  was appended, else the run's own value (history_lines.run_record of the run's test: the same
  median, adjusted median or paired ratio a history line would hold);
- the distribution: a strip and box plot of the run's samples, under the baseline's samples when a
  baseline file holds the test (baseline_samples);
- the parameter tables of parametrized tests (report.params_tables: model x flags x threads), and
  the roofline tables (report.roofline_groups: each prediction, its efficiency and its bound).

Size. A chart is a handful of elements whatever its length: the line is one ``<path>``, the nights'
dots another (drawn only up to DOTS_MAX nights; over that the line says it), coordinates to one
decimal; a strip plot draws at most STRIP_MAX samples, evenly spread. bench/html_cost.py measures
100 tests x 365 nights.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import report
from .baseline import BaselineError, BaselineFile, BaselineStore
from .compare import Verdict, fmt_pct, fmt_value, verdict_message
from .fileutil import atomic_write
from .history_lines import HistoryError, run_record
from .result import ResultError, TestResult

DEFAULT_TITLE = "pytest-llmperf report"
DOTS_MAX = 120  # nights up to which each night is a dot as well as a point of the line
STRIP_MAX = 200  # samples drawn per strip
HISTORY_ONLY = "history"  # the status of a metric the history holds and no run given
W, H = 640, 150  # the trend chart's viewBox
PAD_L, PAD_R, PAD_T, PAD_B = 64, 10, 10, 22
DW, DH = 640, 74  # the distribution's viewBox

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:24px 0 6px;border-bottom:2px solid #ccc}
h3{font-size:14px;margin:0;font-weight:600;word-break:break-all}
.meta{color:#555;font-size:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;margin:10px 0}
.card.regressed{border-color:#c62828;border-width:2px}.card.noisy,.card.missing{border-color:#ef6c00}
.st{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;color:#fff;background:#777;margin-left:6px}
.st.regressed{background:#c62828}.st.missing,.st.noisy,.st.oversubscribed,.st.not-compared{background:#ef6c00}
.st.improved{background:#2e7d32}.st.ok{background:#1565c0}.st.new{background:#6a1b9a}
.msg{margin:4px 0;font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
.why{color:#555;font-size:12px;margin:2px 0}
svg{display:block;max-width:100%;height:auto}svg text{font:11px sans-serif;fill:#444}
.ln{fill:none;stroke:#1565c0;stroke-width:1.5}.dt{stroke:#1565c0;stroke-width:4;stroke-linecap:round}
.band{fill:#1565c0;fill-opacity:.12}.ctr{stroke:#1565c0;stroke-dasharray:2 3}
.cp{stroke:#c62828;stroke-width:1.5;stroke-dasharray:4 3}.cpm{fill:#c62828}
.today{fill:#ff8f00;stroke:#222;stroke-width:1}.ax{stroke:#999}
.bx{fill:#eee;stroke:#555}.md{stroke:#222;stroke-width:2}.sb{stroke:#888;stroke-width:3;stroke-linecap:round}
.sc{stroke:#c62828;stroke-width:3;stroke-linecap:round;stroke-opacity:.7}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#f4f4f4}.warn{color:#ef6c00}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# ------------------------------------------------------------------------------------ input


def check_runs(runs: Sequence[tuple[str, Any]]) -> None:
    """ValueError, one line naming the file, for a run that is not a run JSON (``--llmperf-json``)
    or runs of different ``schema``/``schema_version`` given together."""
    if not runs:
        return
    first_path, first = runs[0]
    for path, run in runs:
        report.check_run(path, run, first_path, first)
        if not isinstance(run.get("tests", []), list):
            raise ValueError(f"{path}: \"tests\" is not a list")
        for i, v in enumerate(run["verdicts"]):
            report.verdict_from_json(v, f"{path}: verdicts[{i}]")
        for i, t in enumerate(run.get("tests", [])):
            if not isinstance(t, Mapping) or not isinstance(t.get("nodeid"), str) \
                    or not isinstance(t.get("metrics"), Mapping):
                raise ValueError(f"{path}: tests[{i}] is not a test result (nodeid, metrics)")


def baseline_samples(baseline_dir: Path, node: str, nodeids: Iterable[str]) -> dict[str, dict[str, list[float]]]:
    """The saved baseline's samples of ``nodeids`` on ``node``: {nodeid: {metric: samples}}, the
    tests the node's baseline files hold. BaselineError (one line naming the file) for a file that
    cannot be read, or one that names another node (copied from another machine's directory)."""
    store = BaselineStore(Path(baseline_dir), node)
    loaded: dict[Path, BaselineFile | None] = {}
    out: dict[str, dict[str, list[float]]] = {}
    for nodeid in nodeids:
        path, key = store.path_for(nodeid)
        if path not in loaded:
            bfile = BaselineFile.load(path) if path.is_file() else None
            if bfile is not None and bfile.data.get("node") not in (None, node):
                raise BaselineError(f"baseline file {path} is of node {bfile.data.get('node')!r}, not {node!r}")
            loaded[path] = bfile
        found = loaded[path]
        if found is not None:
            metrics = found.metrics(key)
            if metrics:
                out[nodeid] = {name: list(m.samples) for name, m in metrics.items()}
    return out


# ------------------------------------------------------------------------------------ numbers


def _ts(text: object) -> float | None:
    """Seconds since the epoch of an ISO time (``2026-12-01T23:14:34Z``, ``...+00:00``), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _quantile(ordered: Sequence[float], q: float) -> float:
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _spread(values: Sequence[float], limit: int) -> list[float]:
    n = len(values)
    return list(values) if n <= limit else [values[int(i * n / limit)] for i in range(limit)]


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


class _Scale:
    def __init__(self, lo: float, hi: float, out_lo: float, out_hi: float):
        if hi <= lo:
            pad = abs(lo) * 0.05 or 1.0
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.out_lo, self.out_hi = lo, hi, out_lo, out_hi
        self.k = (out_hi - out_lo) / (hi - lo)

    def __call__(self, v: float) -> float:
        return self.out_lo + (v - self.lo) * self.k


def _n(v: float) -> str:
    """A coordinate: one decimal, without a trailing ``.0``."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _dots(xs: Sequence[float], ys: Sequence[float]) -> str:
    return "".join(f"M{_n(x)} {_n(y)}h0" for x, y in zip(xs, ys))


# ------------------------------------------------------------------------------------ the charts


@dataclass
class _Item:
    """One metric of one test of one node, as the report shows it."""

    nodeid: str
    metric: str
    status: str
    verdict: Verdict | None = None
    result: Mapping[str, Any] | None = None  # the run's test JSON
    run: Mapping[str, Any] | None = None
    described: Mapping[str, Any] | None = None  # cli.describe_metric + points
    baseline: list[float] | None = None
    notes: list[str] = field(default_factory=list)


def _today(item: _Item, series: str) -> tuple[float, float] | None:
    """(time, value) of the run's own point on the series' scale, when the run was not appended."""
    if item.result is None or item.run is None:
        return None
    when = _ts(item.run.get("time")) or _ts(item.run.get("saved_at"))
    if when is None:
        return None
    verdicts = [item.verdict.to_dict()] if item.verdict is not None else []
    try:
        point = run_record({"nodeid": item.nodeid, "metrics": {item.metric: item.result["metrics"][item.metric]}},
                           verdicts, run_id="today", time="2000-01-01T00:00:00Z", fingerprint="-",
                           plugin_version="-", commits={}, outcome="passed", reset=False).metrics[item.metric]
    except (HistoryError, KeyError, TypeError, ValueError):
        return None
    if series == "paired":
        return (when, 1.0 + point.change) if point.change is not None else None
    if series == "adjusted" and point.adjusted is not None:
        return when, point.adjusted
    return when, point.median


def _commit(run_json: Mapping[str, Any]) -> str:
    info = (run_json.get("commits") or {}).get("repo") or {}
    commit = info.get("commit")
    return (commit[:8] + ("+" if info.get("dirty") else "")) if isinstance(commit, str) else "?"


def trend_svg(item: _Item) -> str:
    """The history chart of one metric (module docstring); "" when there is nothing to draw."""
    d = item.described or {}
    series = str(d.get("series") or "median")
    points = [p for p in d.get("points") or [] if _ts(p[0]) is not None]
    times = [_ts(p[0]) or 0.0 for p in points]
    values = [float(p[1]) for p in points]
    today_index = None
    run_id = item.run.get("run_id") if item.run is not None else None
    if run_id:
        today_index = next((i for i, p in enumerate(points) if p[2] == run_id), None)
    elif item.run is None and points:
        today_index = len(points) - 1  # no run given: the newest night stands for today
    today = _today(item, series) if today_index is None else (times[today_index], values[today_index])
    if not values and today is None:
        return ""
    band = None
    ref = d.get("reference")
    center = None
    if isinstance(ref, Mapping) and series != "paired":
        center = ref.get("center") if series == "adjusted" and ref.get("adjusted") else \
            (ref.get("raw_center") or ref.get("center"))
        sd = ref.get("between_sd")
        if isinstance(center, (int, float)) and center > 0:
            band = (center * math.exp(-sd), center * math.exp(sd)) if isinstance(sd, (int, float)) else None
        else:
            center = None
    all_t = times + ([today[0]] if today else [])
    all_v = values + ([today[1]] if today else []) + (list(band) if band else []) + ([center] if center else [])
    lo, hi = min(all_v), max(all_v)
    pad = (hi - lo) * 0.06
    y = _Scale(lo - pad, hi + pad, H - PAD_B, PAD_T)
    x = _Scale(min(all_t), max(all_t), PAD_L, W - PAD_R)
    # a speed-adjusted value is the metric over the probe's speed, a paired one a ratio: neither is in
    # the metric's unit, so the axis says which it is instead
    unit = str(d.get("unit") or "") if series == "median" else {"paired": "ratio"}.get(series, "adjusted")
    label = {"paired": "paired ratio", "adjusted": "speed-adjusted median", "median": "median"}.get(series, series)
    out = [f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{_e(item.metric)} trend">',
           f'<title>{_e(item.metric)}: {_e(label)} per night ({len(values)} nights)</title>',
           f'<line class="ax" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>',
           f'<line class="ax" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}"/>',
           f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end">{_e(fmt_value(hi))}</text>',
           f'<text x="{PAD_L - 4}" y="{H - PAD_B}" text-anchor="end">{_e(fmt_value(lo))}</text>',
           f'<text x="{PAD_L - 4}" y="{(H - PAD_B + PAD_T) / 2 + 4:.0f}" text-anchor="end">{_e(unit)}</text>']
    first_date = str(points[0][0])[:10] if points else ""
    last = str(points[-1][0])[:10] if points else ""
    if today and today_index is None:
        last = "today"
    out.append(f'<text x="{PAD_L}" y="{H - 6}">{_e(first_date)}</text>'
               f'<text x="{W - PAD_R}" y="{H - 6}" text-anchor="end">{_e(last)}</text>')
    if band:
        top, bottom = y(band[1]), y(band[0])
        sd_text = fmt_pct(math.exp(float(ref["between_sd"])) - 1) if isinstance(ref, Mapping) else ""
        out.append(f'<rect class="band" x="{PAD_L}" y="{top:.1f}" width="{W - PAD_R - PAD_L}" '
                   f'height="{max(bottom - top, 0.5):.1f}"><title>reference {_e(ref.get("label") if ref else "")}: '
                   f'{_e(fmt_value(center))} {_e(unit)}, spread between nights {_e(sd_text)}</title></rect>')
    if center:
        cy = y(center)
        out.append(f'<line class="ctr" x1="{PAD_L}" y1="{cy:.1f}" x2="{W - PAD_R}" y2="{cy:.1f}"/>')
    xs = [x(t) for t in times]
    ys = [y(v) for v in values]
    if values:
        # after M, further coordinate pairs are implicit L commands
        out.append('<path class="ln" d="M' + " ".join(f"{_n(a)} {_n(b)}" for a, b in zip(xs, ys)) + '"/>')
        if len(values) <= DOTS_MAX:
            out.append(f'<path class="dt" d="{_dots(xs, ys)}"/>')
    for cp in d.get("change_points") or []:
        after, before = cp.get("after_run") or {}, cp.get("before_run") or {}
        t = _ts(after.get("time"))
        if t is None:
            continue
        cx = x(t)
        tip = (f"change point {str(before.get('time'))[:10]}..{str(after.get('time'))[:10]} "
               f"{_commit(before)}..{_commit(after)} {fmt_pct(cp.get('change'))}"
               f"{' (newest night)' if cp.get('kind') == 'last' else ''}, p={float(cp.get('p_value') or 0):.2g}")
        out.append(f'<g class="cpg"><title>{_e(tip)}</title><line class="cp" x1="{cx:.1f}" y1="{PAD_T}" '
                   f'x2="{cx:.1f}" y2="{H - PAD_B}"/><path class="cpm" d="M{cx - 4:.1f} {PAD_T}h8l-4 6z"/></g>')
    if today:
        tx, ty = x(today[0]), y(today[1])
        name = "today" if item.run is not None else f"newest night {str(points[-1][0])[:10]}"
        out.append(f'<circle class="today" cx="{tx:.1f}" cy="{ty:.1f}" r="5"><title>{_e(name)}: '
                   f'{_e(fmt_value(today[1]))} {_e(unit)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _box(samples: Sequence[float], cy: float, sx: _Scale, dot_class: str) -> str:
    ordered = sorted(samples)
    q1, med, q3 = (_quantile(ordered, q) for q in (0.25, 0.5, 0.75))
    a, b = sx(q1), sx(q3)
    strip = _spread(ordered, STRIP_MAX)
    return (f'<line class="ax" x1="{sx(ordered[0]):.1f}" y1="{cy:.1f}" x2="{sx(ordered[-1]):.1f}" y2="{cy:.1f}"/>'
            f'<rect class="bx" x="{a:.1f}" y="{cy - 9:.1f}" width="{max(b - a, 1):.1f}" height="18"/>'
            f'<line class="md" x1="{sx(med):.1f}" y1="{cy - 10:.1f}" x2="{sx(med):.1f}" y2="{cy + 10:.1f}"/>'
            f'<path class="{dot_class}" d="{_dots([sx(v) for v in strip], [cy] * len(strip))}"/>')


def distribution_svg(item: _Item) -> str:
    """Baseline vs current samples as strips over boxes (quartiles, median, range); "" without samples."""
    current = _finite(((item.result or {}).get("metrics", {}).get(item.metric) or {}).get("samples") or [])
    base = _finite(item.baseline or [])
    if not current:
        return ""
    everything = current + base
    sx = _Scale(min(everything), max(everything), 80, DW - 12)
    rows = [("baseline", base, "sb"), ("current", current, "sc")] if base else [("current", current, "sc")]
    height = 12 + 30 * len(rows) + 14
    out = [f'<svg viewBox="0 0 {DW} {height}" width="{DW}" height="{height}" role="img" '
           f'aria-label="{_e(item.metric)} samples">']
    for i, (name, samples, cls) in enumerate(rows):
        cy = 22 + 30 * i
        out.append(f'<text x="4" y="{cy + 4}">{name} ({len(samples)})</text>')
        out.append(_box(samples, cy, sx, cls))
    unit = (item.verdict.unit if item.verdict else "") or ""
    out.append(f'<text x="80" y="{height - 3}">{_e(fmt_value(sx.lo))}</text>'
               f'<text x="{DW - 12}" y="{height - 3}" text-anchor="end">{_e(fmt_value(sx.hi))} {_e(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------ the page


def rank(status: str) -> int:
    return report.STATUS_ORDER.get(status, len(report.STATUS_ORDER))


def _items(node: str, runs: Sequence[Mapping[str, Any]], history: Mapping[str, Any] | None,
           baselines: Mapping[str, Mapping[str, Sequence[float]]] | None) -> list[_Item]:
    items: dict[tuple[str, str], _Item] = {}
    for run in runs:
        for t in run.get("tests", []):
            for name in t["metrics"]:
                item = items.setdefault((t["nodeid"], name), _Item(t["nodeid"], name, "info"))
                item.result, item.run = t, run
        for raw in run["verdicts"]:
            v = report.verdict_from_json(raw, "verdict")
            item = items.setdefault((v.test, v.metric), _Item(v.test, v.metric, v.status))
            item.verdict, item.status = v, v.status
            if item.run is None:
                item.run = run
    for test in (history or {}).get("tests", []):
        for d in test.get("metrics", []):
            key = (test["nodeid"], d["metric"])
            if key not in items:
                newest = d.get("newest") or {}
                status, when = newest.get("status"), str(newest.get("time"))[:10]
                if runs:  # the runs given did not record it: after everything they did
                    items[key] = _Item(key[0], key[1], HISTORY_ONLY)
                    if status:
                        items[key].notes.append(f"not in the runs given; the newest night's ({when}) verdict: "
                                                f"{status}")
                else:  # the history alone: its newest night's verdict orders it
                    items[key] = _Item(key[0], key[1], str(status or HISTORY_ONLY))
                    items[key].notes.append(f"the status of the newest night in the history ({when})")
            items[key].described = d
    for (nodeid, name), item in items.items():
        samples = ((baselines or {}).get(nodeid) or {}).get(name)
        if samples:
            item.baseline = list(samples)
    return sorted(items.values(), key=lambda it: rank(it.status))


def _history_text(d: Mapping[str, Any]) -> str:
    parts = [f"{d.get('nights', 0)} nights ({_e(d.get('series'))})"]
    trend = d.get("trend")
    if isinstance(trend, Mapping):
        parts.append(f"trend {_e(fmt_pct(trend.get('slope')))}/night over {_e(trend.get('nights'))} nights "
                     f"(p={float(trend.get('p_value') or 0):.2g})")
    cps = d.get("change_points") or []
    if cps:
        parts.append(f"{len(cps)} change point{'s' if len(cps) != 1 else ''}: " + "; ".join(
            f"{_e(str((c.get('after_run') or {}).get('time'))[:10])} {_e(fmt_pct(c.get('change')))}" for c in cps))
    ref = d.get("reference")
    if isinstance(ref, Mapping):
        sd = ref.get("between_sd")
        spread = f" ±{sd * 100:.1f}%" if isinstance(sd, (int, float)) else ""
        parts.append(f"reference {_e(ref.get('label'))} {_e(fmt_value(ref.get('raw_center') or ref.get('center')))}"
                     f"{spread}")
    return "; ".join(parts)


def _card(item: _Item, anchor: str) -> str:
    v = item.verdict
    arrow = ""
    if v is not None:
        arrow = " \u2191" if v.higher_is_better else " \u2193"
    elif item.described is not None:
        arrow = " \u2191" if item.described.get("direction") == "higher" else " \u2193"
    out = [f'<div class="card {_e(item.status)}" id="{anchor}"><h3>{_e(item.nodeid)} \u00b7 '
           f'{_e(item.metric)}{arrow}<span class="st {_e(item.status)}">{_e(item.status)}</span></h3>']
    if v is not None:
        if v.status in ("regressed", "improved", "ok", "noisy") and v.change is not None:
            out.append(f'<p class="msg">{_e(verdict_message(v))}</p>')
        elif v.current is not None:
            out.append(f'<p class="msg">{_e(v.metric)}: current {_e(fmt_value(v.current))} {_e(v.unit)}, '
                       f'reference {_e(v.reference)}</p>')
        if v.reason:
            out.append(f'<p class="why">{_e(v.reason)}</p>')
    for note in item.notes:
        out.append(f'<p class="why">{_e(note)}</p>')
    if item.described is not None:
        out.append(f'<p class="why">history: {_history_text(item.described)}</p>')
    out.append(trend_svg(item))
    out.append(distribution_svg(item))
    out.append("</div>")
    return "".join(out)


def _params_html(runs: Sequence[Mapping[str, Any]], where: str) -> str:
    results = []
    for i, t in enumerate(t for run in runs for t in run.get("tests", [])):
        data = dict(t)
        data.setdefault("schema", 1)
        data.setdefault("params", {})
        data.setdefault("verdicts", [])
        data.setdefault("fingerprint", "")
        try:
            results.append(TestResult.from_json(data))
        except ResultError as exc:
            raise ValueError(f"{where}: tests[{i}]: {exc}") from None
    def table(heading: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        return (f"<h4>{_e(heading)}</h4><table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
                + "</table>")

    out = [table(f"{t.function} by parameters (medians)", t.headers, t.rows) for t in report.params_tables(results)]
    out += [table(f"roofline of {heading}", report.ROOFLINE_HEADERS, rows)
            for heading, rows in report.roofline_groups(results).items()]
    return "".join(out)


def render(runs: Sequence[tuple[str, Mapping[str, Any]]],
           histories: Mapping[str, Mapping[str, Any]] | None = None,
           baselines: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None,
           title: str = DEFAULT_TITLE, preface: str = "") -> str:
    """The report of ``runs`` (``(label, run JSON)`` pairs, as ``--llmperf-json`` writes them) and
    ``histories`` ({node: cli.history_data(...)}), with ``baselines`` ({node: {nodeid: {metric:
    samples}}}, baseline_samples) drawn under the runs' samples. A node is shown when a run or a
    history names it: the runs' nodes in their order, then the histories'. ValueError, one line
    naming the file, for a run that is not a run JSON (check_runs). ``preface``, HTML the caller
    escaped (the fleet's nodes and matrix), goes under the title."""
    check_runs(runs)
    histories = histories or {}
    by_node: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for label, run in runs:
        by_node.setdefault(str(run["node"]), []).append((label, run))
    for node in histories:
        by_node.setdefault(node, [])
    body: list[str] = []
    toc: list[str] = []
    n = 0
    for node, node_runs in by_node.items():
        plain = [r for _, r in node_runs]
        items = _items(node, plain, histories.get(node), (baselines or {}).get(node))
        verdicts = [it.verdict for it in items if it.verdict is not None]
        summary = ", ".join(f"{c} {s}" for s, c in report.counts(verdicts).items()) or "no verdicts"
        sources = ", ".join(label for label, _ in node_runs)
        hist = histories.get(node)
        body.append(f'<h2 id="node-{_e(node)}">node {_e(node)}</h2><p class="meta">{_e(summary)}'
                    + (f"; runs: {_e(sources)}" if sources else "")
                    + (f"; history: {_e(hist.get('history_dir'))}" if hist else "") + "</p>")
        for warning in (hist or {}).get("warnings", []):
            body.append(f'<p class="warn">warning: {_e(warning)}</p>')
        for it in items:
            n += 1
            anchor = f"m{n}"
            if it.status not in report.FOLDED and it.status != HISTORY_ONLY:
                toc.append(f'<li><a href="#{anchor}">{_e(node)}: {_e(it.nodeid)} \u00b7 {_e(it.metric)}</a> '
                           f'<span class="st {_e(it.status)}">{_e(it.status)}</span></li>')
            body.append(_card(it, anchor))
        params = _params_html(plain, sources or node)
        if params:
            body.append(params)
    head = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width\"><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"meta\">{len(by_node)} node(s), {n} metric(s)</p>") + preface
    attention = (f"<h2>needs attention</h2><ul>{''.join(toc)}</ul>" if toc else "<p>nothing needs attention</p>")
    return head + attention + "".join(body) + "</body></html>\n"


def write(path: Path, runs: Sequence[tuple[str, Mapping[str, Any]]],
          histories: Mapping[str, Mapping[str, Any]] | None = None,
          baselines: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None,
          title: str = DEFAULT_TITLE, preface: str = "") -> int:
    """Render and write the report atomically (fileutil.atomic_write); returns its size in bytes.
    Nothing is written when rendering fails."""
    text = render(runs, histories, baselines, title, preface).encode("utf-8")
    atomic_write(Path(path), text)
    return len(text)


def render_session(run_json: Mapping[str, Any], history: Mapping[str, Any] | None = None,
                   baseline: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                   title: str | None = None) -> str:
    """The report of one session, for the glue at the end of a session: ``run_json`` the dict the
    JSON report holds (report.to_json), ``history`` cli.history_data(the node's history dir) or
    None, ``baseline`` baseline_samples(baseline dir, node, the run's nodeids) or None."""
    node = str(run_json.get("node"))
    return render([("this session", run_json)], {node: history} if history is not None else None,
                  {node: baseline} if baseline is not None else None,
                  title or f"{DEFAULT_TITLE}: node {node}")


__all__ = ["DEFAULT_TITLE", "baseline_samples", "check_runs", "distribution_svg", "render", "render_session",
           "trend_svg", "write"]
