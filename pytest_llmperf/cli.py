"""The ``pytest-llmperf`` command line: a node's history, read and managed without a pytest session.

    pytest-llmperf history --node NODE [--baseline-dir DIR] [--history-dir DIR] [-k SUBSTRING]
                           [--metric NAME] [--last N] [--nights N] [--json]
    pytest-llmperf history accept --node NODE [TEST ...] [--run RUN_ID] [--why TEXT]
    pytest-llmperf history compact --node NODE --keep N
    pytest-llmperf markdown RUN.json [RUN.json ...] [-o OUT] [--cap N]
    pytest-llmperf report [--baseline-dir DIR] [--history-dir DIR] [--node NODE ...] [RUN.json ...] -o OUT.html

Thin (parse, call the core, print): the history store (history), the change-point detector
(changepoint) and the reference (reference) do the work; no pytest is imported. Exit status 2 for a
usage error (a bad option, a node with no history, a corrupt history file: one line on stderr), 0
otherwise, whatever the history shows: this lists, the test session gates.

Per test and metric the listing shows the runs of the newest run's fingerprint (the machine as it is
now: a step at a compiler upgrade is not a regression; ``--last N`` keeps the newest N of them):
their number, the newest value and date, the trend (changepoint.find_drift: relative change per
night over its window, and its p-value), the change points (changepoint.find_steps: dates and
commits on both sides, size), and the current reference (reference.select + reference.reference_for
over the newest ``--nights`` accepted runs, the way ``--llmperf-baseline=history:N`` compares the
next run: label, center, spread between nights). The series is what compares with the newest run
(reference.comparable_nights, the change-point check's rule): the paired ratios of the runs paired
with the newest run's reference build, else the speed-adjusted medians when every unpaired run has
one of the newest run's probe kind, else the plain medians; runs that were ``oversubscribed`` are
left out, and ``indices`` (JSON) says which runs of the window the series holds. A change point's
``index`` is the run's place in the window. The command does not probe the machine: the newest
run's fingerprint stands for it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tabulate import tabulate

from . import changepoint, reference, report
from .compare import PAIRED, Metric, fmt_value
from .config import DEFAULT_NOISE_FLOOR
from .errors import OneLine
from .history import Entry, HistoryError, HistoryStore, Point, Run, node_history_dir
from .node import validate_node_name

PROG = "pytest-llmperf"
DEFAULT_BASELINE_DIR = "baselines"
DEFAULT_NIGHTS = 10  # the reference's nights without --nights: --llmperf-baseline=history's (a test checks)
ALPHA = 0.01  # of the change points and the trend, as the gate uses them


class UsageError(OneLine, Exception):
    """A command line that cannot be carried out; exit status 2, the message on one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _common() -> _Parser:
    """The options every history command takes. Their defaults are SUPPRESS, so that one given
    before the subcommand (``history --node n accept``) is not overwritten by the subcommand's."""
    common = _Parser(add_help=False)
    common.add_argument("--node", default=argparse.SUPPRESS,
                        help="the node (machine) whose history to read, as --llmperf-node names it")
    common.add_argument("--baseline-dir", type=Path, default=argparse.SUPPRESS,
                        help=f"the baseline directory (default ./{DEFAULT_BASELINE_DIR}); the history is "
                             "in <dir>/<node>/history")
    common.add_argument("--history-dir", type=Path, default=argparse.SUPPRESS,
                        help="a history directory given to the plugin (--llmperf-history-dir): the history "
                             "is in <dir>/<node>")
    return common


def build_parser(extend: Callable[[Any, type[argparse.ArgumentParser]], None] | None = None) -> argparse.ArgumentParser:
    """The parser; ``extend(subcommands, parser class)`` adds the commands of a layer above the
    core (commands.py adds ``fleet``), so that one ``--help`` lists them all."""
    parser = _Parser(prog=PROG, description="Read and manage pytest-llmperf's per-node history and reports.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    common = _common()
    hist = commands.add_parser("history", parents=[common], help="list a node's metrics with their trend, "
                               "change points and reference",
                               description="List a node's tests and metrics: nights, newest value, trend, "
                                           "change points, current reference.")
    hist.add_argument("-k", dest="substring", default=None, help="only tests whose id contains SUBSTRING")
    hist.add_argument("--metric", default=None, help="only the metric NAME")
    hist.add_argument("--last", type=_positive, default=None, metavar="N",
                      help="only the newest N runs of each test (default: all)")
    hist.add_argument("--nights", type=_positive, default=DEFAULT_NIGHTS, metavar="N",
                      help=f"nights of the reference shown (default {DEFAULT_NIGHTS})")
    hist.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions = hist.add_subparsers(dest="action", metavar="ACTION")
    acc = actions.add_parser("accept", parents=[common], help="restart the reference of tests (all when none named)",
                             description="Append accept lines: the reference of each test starts again at run "
                                         "RUN_ID, or at its next run.")
    acc.add_argument("tests", nargs="*", metavar="TEST", help="test ids (default: every test of the node)")
    acc.add_argument("--run", default=None, metavar="RUN_ID", help="restart at this run (default: the next run)")
    acc.add_argument("--why", default="accepted by hand", help="the reason, kept in the line")
    comp = actions.add_parser("compact", parents=[common], help="keep only the newest N runs of each test",
                              description="Retention: keep the newest N runs of each test (and the accept lines "
                                          "after the oldest of them); files rewritten atomically.")
    comp.add_argument("--keep", type=_positive, required=True, metavar="N", help="runs to keep per test")
    md = commands.add_parser("markdown", help="merge several nodes' run JSONs into one Markdown report",
                             description="Merge run JSONs (written by --llmperf-json, one per node) into one "
                                         "Markdown report for a CI comment: one hidden marker, a section per "
                                         "node, capped as a whole. Exit status 0 whatever the runs hold.")
    md.add_argument("runs", nargs="+", type=Path, metavar="RUN.json", help="run JSONs, in the order to show them")
    md.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                    help="write the report to OUT (default: print it)")
    md.add_argument("--cap", type=_positive, default=report.DEFAULT_CAP, metavar="N",
                    help=f"at most N characters (default {report.DEFAULT_CAP:,}, under GitHub's "
                         f"{report.GITHUB_LIMIT:,} for a comment)")
    md.set_defaults(handler=cmd_markdown)
    rep = commands.add_parser("report", help="one self-contained HTML report of run JSONs and nodes' history",
                              description="Write one HTML file (inline CSS and SVG, nothing fetched): per node, "
                                          "test and metric, regressed first, the trend over the history with the "
                                          "reference band and change points, the samples against the baseline's, "
                                          "the parameter tables. Exit status 0 whatever the runs hold.")
    rep.add_argument("runs", nargs="*", type=Path, metavar="RUN.json", help="run JSONs (--llmperf-json)")
    rep.add_argument("--node", dest="report_nodes", action="append", default=[], metavar="NODE",
                     help="a node whose history to show (repeatable; a run's node is shown anyway)")
    rep.add_argument("--baseline-dir", type=Path, default=Path(DEFAULT_BASELINE_DIR), metavar="DIR",
                     help=f"the baseline directory (default ./{DEFAULT_BASELINE_DIR})")
    rep.add_argument("--history-dir", type=Path, default=None, metavar="DIR",
                     help="a history directory given to the plugin (--llmperf-history-dir): <dir>/<node>")
    rep.add_argument("--nights", type=_positive, default=DEFAULT_NIGHTS, metavar="N",
                     help=f"nights of the reference shown (default {DEFAULT_NIGHTS})")
    rep.add_argument("--title", default=None, help="the page's title")
    rep.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.html", help="where to write it")
    rep.set_defaults(handler=cmd_report)
    if extend is not None:
        extend(commands, _Parser)
    return parser


def _store(args: argparse.Namespace) -> HistoryStore:
    node = getattr(args, "node", None)
    if node is None:
        raise UsageError("--node is required: the node whose history to read")
    try:
        validate_node_name(node)
    except ValueError as exc:
        raise UsageError(f"--node: {exc}") from None
    baseline_dir = getattr(args, "baseline_dir", Path(DEFAULT_BASELINE_DIR))
    directory = node_history_dir(baseline_dir, node, getattr(args, "history_dir", None))
    if not directory.exists():
        raise UsageError(f"no history for node {node!r}: {directory} does not exist")
    if not directory.is_dir():
        raise UsageError(f"history dir {directory} is a file, not a directory")
    return HistoryStore(directory)


# ------------------------------------------------------------------------------------------ listing


def _runs_of(entries: Sequence[Entry]) -> list[Run]:
    return [e for e in entries if isinstance(e, Run)]


def _run_json(run: Run, point: Point) -> dict[str, Any]:
    return {"time": run.time, "run": run.run_id, "median": point.median, "adjusted": point.adjusted,
            "status": point.status, "change": point.change, "reference": point.reference,
            "commits": {k: dict(v) for k, v in run.commits.items()}}


def _current(point: Point) -> Metric:
    """The newest run's metric, standing for tonight's (the command runs nothing): its samples
    (or its median), and probes when it had them (their values do not matter to the reference,
    only that tonight has probes of that kind: compare.adjusts)."""
    samples = list(point.samples) if point.samples else [point.median]
    return Metric(name=point.name, unit=point.unit, higher_is_better=point.higher_is_better, samples=samples,
                  probes=[1.0] * len(samples) if point.probe_kind is not None else None,
                  probe_kind=point.probe_kind or "python", cpu_share=point.cpu_share, gate=point.gate,
                  exact=point.exact)


def _reference_json(ref: reference.Reference | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"label": ref.label, "nights": ref.nights, "center": ref.center, "raw_center": ref.raw_center,
            "se_log": ref.se_log, "between_sd": ref.between_sd, "measured_sd": ref.measured_sd,
            "adjusted": ref.adjusted, "probe_kind": ref.probe_kind, "runs": list(ref.runs),
            "first_time": ref.first_time, "last_time": ref.last_time, "left_out": list(ref.left_out)}


def describe_metric(entries: Sequence[Entry], name: str, last: int | None, nights: int) -> dict[str, Any] | None:
    """What the listing says of one metric of one test, as JSON; None when no run recorded it."""
    runs = [r for r in _runs_of(entries) if name in r.metrics]
    if not runs:
        return None
    newest = runs[-1]
    window = [r for r in runs if r.fingerprint == newest.fingerprint]
    if last is not None:
        window = window[-last:]
    newest_point = newest.metrics[name]
    paired = newest_point.reference if (newest_point.reference or "").startswith(PAIRED) else None
    chosen: list[int]
    series, chosen, values = reference.comparable_nights([r.metrics[name] for r in window], paired,
                                                         newest_point.probe_kind)
    window = [window[i] for i in chosen]
    out: dict[str, Any] = {
        "metric": name, "unit": newest_point.unit, "direction": newest_point.direction,
        "fingerprint": newest.fingerprint, "nights": len(window), "series": series,
        "indices": chosen,
        "newest": _run_json(newest, newest_point), "trend": None, "change_points": [], "reference": None,
    }
    if all(v > 0 and math.isfinite(v) for v in values):  # a count that can be zero has no ratios
        drift = changepoint.find_drift(values, ALPHA)
        if drift is not None:
            out["trend"] = {"slope": drift.slope, "total": drift.total, "p_value": drift.p_value,
                            "nights": len(values) - drift.start, "from": window[drift.start].time}
        for step in changepoint.find_steps(values, ALPHA):
            before, after = window[step.index - 1], window[step.index]
            out["change_points"].append({
                "kind": step.kind, "index": chosen[step.index], "before": step.before, "after": step.after,
                "change": step.change, "p_value": step.p_value,
                "before_run": _run_json(before, before.metrics[name]),
                "after_run": _run_json(after, after.metrics[name]),
            })
    nights_chosen = reference.select(entries, newest.fingerprint, name, nights)
    if nights_chosen:
        out["reference"] = _reference_json(reference.reference_for(nights_chosen, _current(newest_point),
                                                                   DEFAULT_NOISE_FLOOR))
    return out


def listing(store: HistoryStore, substring: str | None, metric: str | None, last: int | None,
            nights: int) -> dict[str, Any]:
    tests = []
    for nodeid, entries in store.read_all().items():
        if substring is not None and substring not in nodeid:
            continue
        names = sorted({n for r in _runs_of(entries) for n in r.metrics})
        metrics = [d for n in names if metric is None or n == metric
                   if (d := describe_metric(entries, n, last, nights)) is not None]
        if metrics:
            tests.append({"nodeid": nodeid, "metrics": metrics})
    return {"history_dir": str(store.directory), "tests": tests, "warnings": list(store.warnings)}


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:+.{digits}f}%"


def _date(run_json: Mapping[str, Any]) -> str:
    return str(run_json["time"])[:10]


def _short_commit(run_json: Mapping[str, Any]) -> str:
    info = run_json["commits"].get("repo") or {}
    commit = info.get("commit")
    return (commit[:8] + ("+" if info.get("dirty") else "")) if isinstance(commit, str) else "?"


def table(data: Mapping[str, Any]) -> str:
    rows = []
    for test in data["tests"]:
        for m in test["metrics"]:
            newest = m["newest"]
            trend = m["trend"]
            trend_text = "-" if trend is None else \
                f"{_pct(trend['slope'], 2)}/night over {trend['nights']} (p={trend['p_value']:.2g})"
            steps = "; ".join(
                f"{_date(c['before_run'])}..{_date(c['after_run'])} {_short_commit(c['before_run'])}.."
                f"{_short_commit(c['after_run'])} {_pct(c['change'])}" + (" (newest)" if c["kind"] == "last" else "")
                for c in m["change_points"]) or "-"
            ref = m["reference"]
            if ref is None:
                ref_text = "-"
            else:
                center = ref["raw_center"] or ref["center"]
                spread = "" if ref["between_sd"] is None else f" ±{ref['between_sd'] * 100:.1f}%"
                ref_text = f"{ref['label']} {fmt_value(center)}{spread}"
            value = newest["median"]
            rows.append([test["nodeid"], m["metric"], m["nights"], f"{fmt_value(value)} {m['unit']}",
                         _date(newest), trend_text, steps, ref_text])
    if not rows:
        return "no runs recorded" + (" that match" if data.get("filtered") else "")
    return str(tabulate(rows, headers=["test", "metric", "nights", "newest", "date", "trend", "change points",
                                       "reference"]))


# ------------------------------------------------------------------------------------------ commands


def cmd_history(args: argparse.Namespace) -> int:
    store = _store(args)
    data = listing(store, args.substring, args.metric, args.last, args.nights)
    data["filtered"] = args.substring is not None or args.metric is not None
    for warning in store.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if args.json:
        data.pop("filtered")
        print(json.dumps(data, indent=2))
    else:
        print(table(data))
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    store = _store(args)
    everything = store.read_all()
    for warning in store.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    tests = list(args.tests) or list(everything)
    if not tests:
        raise UsageError(f"no tests in the history of {store.directory}")
    for nodeid in tests:
        runs = _runs_of(everything.get(nodeid, []))
        if not runs:
            raise UsageError(f"test {nodeid!r} has no history in {store.directory}")
        if args.run is not None and all(r.run_id != args.run for r in runs):
            raise UsageError(f"test {nodeid!r} has no run {args.run!r} in {store.directory}")
    written = store.accept(tests, run_id=args.run, why=args.why)
    where = f"run {args.run}" if args.run else "its next run"
    print(f"accepted {len(tests)} test(s): the reference starts again at {where} "
          f"({', '.join(str(p) for p in written)})")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    store = _store(args)
    written = store.compact(args.keep)
    for warning in store.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if written:
        print(f"kept the newest {args.keep} run(s) of each test; rewrote {len(written)} file(s): "
              + ", ".join(str(p) for p in written))
    else:
        print(f"nothing to compact: no test has more than {args.keep} run(s)")
    return 0


def cmd_markdown(args: argparse.Namespace) -> int:
    """Read each run JSON (a file that cannot be read or parsed: a usage error naming it), merge
    them (report.markdown_many: its ValueError names the file), print or write the report."""
    runs: list[tuple[str, Any]] = [(str(path), _read_run(path)) for path in args.runs]
    where = ", ".join(f"`{path}`" for path, _data in runs)
    md = report.markdown_many(runs, cap=args.cap, where=where)
    if args.output is None:
        sys.stdout.write(md)
        return 0
    try:
        report.write_text(args.output, md)
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write the report: {exc.strerror or exc}") from None
    print(f"wrote {args.output} ({len(md):,} characters, {len(runs)} run(s))")
    return 0


def history_data(directory: Path, nights: int = DEFAULT_NIGHTS) -> dict[str, Any]:
    """The history of one node's directory as the HTML report draws it: :func:`listing`'s shape,
    each metric's describe_metric with ``points`` added, ``[time, value, run id, commit]`` per
    night of its series (the values the change points were found in: paired ratio, adjusted or
    plain median, as ``series`` says). HistoryError for a file that cannot be read."""
    store = HistoryStore(directory)
    tests = []
    for nodeid, entries in store.read_all().items():
        runs = _runs_of(entries)
        metrics = []
        for name in sorted({n for r in runs for n in r.metrics}):
            d = describe_metric(entries, name, None, nights)
            if d is None:
                continue
            window = [r for r in runs if name in r.metrics and r.fingerprint == d["fingerprint"]]
            points = []
            for i in d["indices"]:
                p = window[i].metrics[name]
                value = (1.0 + (p.change or 0.0)) if d["series"] == "paired" else \
                    (p.adjusted if d["series"] == "adjusted" and p.adjusted is not None else p.median)
                points.append([window[i].time, value, window[i].run_id,
                               _short_commit({"commits": window[i].commits})])
            d["points"] = points
            metrics.append(d)
        if metrics:
            tests.append({"nodeid": nodeid, "metrics": metrics})
    return {"history_dir": str(store.directory), "tests": tests, "warnings": list(store.warnings)}


def _read_run(path: Path) -> Any:
    """A run JSON's content; a usage error naming the file (unreadable, not JSON, a history file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{path}: cannot read the run JSON: {why}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        try:
            first = json.loads(text.split("\n", 1)[0])
        except (ValueError, RecursionError):
            first = None
        if isinstance(first, dict) and first.get("schema") == "pytest-llmperf-history":
            raise UsageError(f"{path}: a history file, not a run JSON (show a node's history with --node NODE)") \
                from None
        raise UsageError(f"{path}: not JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None


def cmd_report(args: argparse.Namespace) -> int:
    """Read the run JSONs and the nodes' history (and baseline samples), then write the HTML
    report (html_report.write); every input is read and checked before anything is written."""
    from . import html_report
    from .baseline import BaselineError

    problem = report.report_path_problem(args.output)
    if problem:
        raise UsageError(f"{args.output}: cannot write the report: {problem}")
    if not args.runs and not args.report_nodes:
        raise UsageError("nothing to report: give run JSONs, or --node NODE for a node's history")
    runs = [(str(path), _read_run(path)) for path in args.runs]
    html_report.check_runs(runs)
    nodes = list(dict.fromkeys([str(run["node"]) for _p, run in runs] + list(args.report_nodes)))
    histories: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    for node in nodes:
        try:
            validate_node_name(node)
        except ValueError as exc:
            raise UsageError(f"node {node!r}: {exc}") from None
        directory = node_history_dir(args.baseline_dir, node, args.history_dir)
        if directory.is_dir():
            histories[node] = history_data(directory, args.nights)
        elif directory.exists():
            raise UsageError(f"history dir {directory} is a file, not a directory")
        elif node in args.report_nodes:
            raise UsageError(f"no history for node {node!r}: {directory} does not exist")
        nodeids = [t["nodeid"] for _p, run in runs if run["node"] == node for t in run.get("tests", [])]
        if nodeids:
            try:
                baselines[node] = html_report.baseline_samples(args.baseline_dir, node, nodeids)
            except BaselineError as exc:
                raise UsageError(str(exc)) from None
    title = args.title or html_report.DEFAULT_TITLE
    try:
        size = html_report.write(args.output, runs, histories, baselines, title)
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write the report: {exc.strerror or exc}") from None
    print(f"wrote {args.output} ({size:,} bytes, {len(nodes)} node(s), {len(runs)} run(s))")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line of the core's commands."""
    action = getattr(args, "action", None)
    command = getattr(args, "handler", None) or {None: cmd_history, "accept": cmd_accept,
                                                 "compact": cmd_compact}[action]
    try:
        return command(args)
    except (UsageError, HistoryError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a core function refusing a value (a reference of no night)
        print(f"{PROG}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
