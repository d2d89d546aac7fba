"""The core glue's end of a session: results collected from the reports (the controller's under
pytest-xdist), the holes found (holes.py: baseline tests and metrics that were selected and did not
record), the baseline saved, the JSON and Markdown reports written, the terminal summary.
Imported by plugin.py at configure time in the process that reports, to register the Collector."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from . import __version__
from .api import Session
from .compare import NOT_COMPARED, OVERSUBSCRIBED, Verdict, fmt_pct
from .errors import OneLine
from .holes import Expectations, Expected, Hole, Outcome
from .result import ResultError, TestResult

PROPERTY = "llmperf"  # the user_properties key of a TestResult's JSON
# the user_properties key of what the process that ran a test knows and the one that reports does
# not (under xdist): {"profilers": [the test's process profilers, marker's included],
# "benchmark": why pytest-benchmark's fixture recorded nothing}; only when there is something to say
FACTS = "llmperf-facts"


class Collector:
    """Receives test reports in the process that reports them (the controller under xdist): the
    results, and every test's outcome (holes.Outcome) for the missing tests and metrics."""

    def __init__(self, state: Session):
        self.state = state
        self.outcomes: dict[str, Outcome] = {}  # by nodeid, in the order the tests ran
        self.holes: list[Hole] = []  # found at the end of the session (finish)
        self.missing: list[Verdict] = []  # the holes as verdicts of status missing
        self.missing_errors: list[str] = []  # strict mode: one line per hole of a gated metric
        # where expectations come from besides the saved baseline (the history's): each is called at
        # the end with the selected nodeids and returns {nodeid: {metric: holes.Expected}}
        self.expectations: list[Callable[[set[str]], Expectations]] = []

    def expect(self, source: Callable[[set[str]], Expectations]) -> None:
        """Add a source of expected tests and metrics (called once, at the end of the session, with
        the nodeids of the selected tests); the saved baseline's comes first and wins a tie."""
        self.expectations.append(source)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note_outcome(report)
        if report.when == "teardown" and report.failed:
            # an error in teardown (a fixture that failed to clean up) makes the test not pass:
            # its metrics are shown, never saved into a baseline
            self.state.passed_call.discard(report.nodeid)
            return
        if report.when != "call":
            return
        for name, value in getattr(report, "user_properties", []):
            if name != PROPERTY:
                continue
            try:
                result = TestResult.from_json(value)
            except ResultError as exc:
                self.state.report_errors.append(f"{report.nodeid}: {exc}")
                continue
            self.state.results.append(result)
            if report.passed:
                self.state.passed_call.add(report.nodeid)
            outcome = self.outcomes[report.nodeid]
            outcome.recorded.update(result.metrics)
            for a in result.artifacts:
                why = (a.get("details") or {}).get("skipped")
                if why:
                    outcome.profilers_skipped.setdefault(str(a.get("kind")), str(why))

    def fails(self, hole: Hole) -> bool:
        """Strict mode fails the session on a hole of a gated metric (never in report-only mode)."""
        cfg = self.state.config
        return cfg.strict and hole.gated and not cfg.report_only and not cfg.save_baseline

    def _note_outcome(self, report: pytest.TestReport) -> None:
        outcome = self.outcomes.get(report.nodeid)
        if outcome is None:
            outcome = self.outcomes[report.nodeid] = Outcome(
                report.nodeid, profilers=set(self.state.config.profilers))
        xfail = getattr(report, "wasxfail", None)
        outcome.add(report.when or "", report.outcome, skip_reason=_skip_reason(report),
                    error=_error_line(report) if report.failed else "",
                    xfail=str(xfail) if xfail is not None and report.skipped else None)
        for name, value in getattr(report, "user_properties", []):
            if name == FACTS and isinstance(value, dict):
                outcome.profilers.update(str(p) for p in value.get("profilers") or ())
                outcome.benchmark = str(value.get("benchmark") or outcome.benchmark)


COLLECTOR = pytest.StashKey[Collector]()  # the session's Collector, in the process that reports


def _skip_reason(report: pytest.TestReport) -> str:
    """The reason of a skip (``pytest.skip("no GPU")`` -> ``no GPU``), or nothing."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ").strip()
    return ""


def _error_line(report: pytest.TestReport) -> str:
    """The first line of a failure's message (``RuntimeError: no device``), or nothing."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    text = str(message) if message else report.longreprtext
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if message else (lines[-1] if lines else "")
    return line[:200]


def verdicts(state: Session) -> list[Verdict]:
    return [v for r in state.results for v in r.verdicts]


def expected_from_baseline(state: Session, selected: set[str]) -> dict[str, dict[str, Expected]]:
    """The metrics each selected test of the node's saved baseline is expected to record."""
    from . import stats
    from .baseline import BaselineError

    out: dict[str, dict[str, Expected]] = {}
    try:
        tests = state.store.tests()
        for nodeid in tests:
            if nodeid in selected:
                metrics = state.store.lookup(nodeid)[0]
                out[nodeid] = {name: Expected(m.unit, m.higher_is_better, m.gate, "saved",
                                              stats.median(m.samples) if m.samples else None)
                               for name, m in metrics.items()}
    except BaselineError as exc:  # checked at configure time; changed under us since
        state.report_errors.append(str(exc))
        return {}
    return out


def find_holes(state: Session, collector: Collector) -> None:
    """The holes of this session (holes.py) into ``collector``: the saved baseline's expectations
    and those of ``collector.expectations`` (the history's); nothing when saving a baseline (no
    comparison)."""
    from . import holes
    from .config import tolerance_for

    cfg = state.config
    if cfg.save_baseline or not collector.outcomes:
        return
    selected = set(collector.outcomes)
    base = expected_from_baseline(state, selected) if state.baseline_files else {}
    expected = holes.merge(base, *(source(selected) for source in collector.expectations))
    if not expected:
        return
    collector.holes = holes.find(expected, collector.outcomes.values())
    collector.missing = holes.verdicts(collector.holes, expected, lambda name: tolerance_for(name, cfg, None))
    collector.missing_errors = [f"missing: {h.message()} (--llmperf-strict)" for h in collector.holes
                                if collector.fails(h)]


def finish(session: pytest.Session, state: Session, exitstatus: int, collector: Collector | None = None) -> None:
    cfg = state.config
    if collector is not None:
        find_holes(state, collector)
    if cfg.save_baseline and state.results:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            state.save_error = "run interrupted: no baseline saved"
        else:
            _save(state)
    from .plugin_history import finish as finish_history

    state.report_errors.extend(finish_history(state, exitstatus))
    if cfg.json_path or cfg.markdown_path or cfg.bmf_path or cfg.gab_path or cfg.html_path:
        _write_reports(state, collector)
    failed = state.save_error or state.report_errors or (collector is not None and collector.missing_errors)
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _meta(state: Session) -> dict[str, Any]:
    return {
        "saved_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "plugin_version": __version__,
        "git_commit": _repo_commit(state),
    }


def _repo_commit(state: Session) -> str | None:
    from .plugin_history import commits

    repo = commits(state).get("repo")
    return str(repo["commit"]) if repo else None


def _save(state: Session) -> None:
    from .baseline import BaselineError, metric_from_json

    records, refused = [], []
    for result in state.results:
        if result.nodeid not in state.passed_call or not result.metrics:
            continue
        try:
            metrics = [metric_from_json(name, m, f"test {result.nodeid}") for name, m in result.metrics.items()]
        except BaselineError as exc:  # a value record() let through (pytest-benchmark's timings)
            refused.append(f"not saved: {exc}")
            continue
        records.append({"nodeid": result.nodeid, "metrics": metrics, "params": result.params})
    if refused:
        state.save_error = "; ".join(refused)
    if not records:
        return
    try:
        _info, fields, digest = state.machine()
        state.saved = state.store.save(records, fields, digest, _meta(state))
    except pytest.fail.Exception as exc:
        state.save_error = f"{exc.msg}: no baseline saved"
    except BaselineError as exc:
        state.save_error = str(exc)
    except OSError as exc:
        where = exc.filename or state.store.node_dir
        state.save_error = f"cannot write baselines: {where}: {exc.strerror or exc}"


RUN_SCHEMA = "pytest-llmperf-run"
RUN_SCHEMA_VERSION = 2  # 2: schema, time, run_id, commits, host (issue 13); 1 had none of them


def run_meta(state: Session) -> dict[str, Any]:
    """What identifies this run in its JSON report: schema and version, the UTC time the session
    started, the run id the history records it under, the commits under test, the host."""
    import socket

    from .plugin_history import commits, node_history

    hist = node_history(state.pytest_config)
    return {
        "schema": RUN_SCHEMA, "schema_version": RUN_SCHEMA_VERSION,
        "time": hist.time if hist is not None else None,
        "run_id": hist.run_id if hist is not None else None,
        "commits": {k: v for k, v in commits(state).items() if v is not None},
        "host": socket.gethostname(),
        "plugin_version": __version__,
    }


def _write_reports(state: Session, collector: Collector | None = None) -> None:
    """Each report on its own: a JSON report that cannot be written does not keep the Markdown
    one from being written. A report that cannot be written is an error (the session's exit
    status is then non-zero), and the previous run's file at that path is removed, so that a CI
    step publishing it cannot publish last night's results as tonight's."""
    from . import report

    cfg = state.config
    found = verdicts(state) + (collector.missing if collector is not None else [])

    def run_json() -> dict[str, Any]:
        fields, digest = None, None
        if state.results:
            try:
                fields, digest = state.machine()[1:]
            except pytest.fail.Exception:
                pass
        meta = {**run_meta(state), "mode": "save" if cfg.save_baseline else "compare",
                "strict": cfg.strict, "saved_baselines": [str(p) for p in state.saved],
                "missing": [h.to_dict() for h in collector.holes] if collector is not None else []}
        return report.to_json(cfg.node, fields, digest, state.results, found, meta)

    def json_text() -> str:
        return report.json_text(run_json())

    def html_text() -> str:
        # after the history's append (finish): tonight is the newest point of each trend
        from . import html_report
        from .cli import history_data
        from .plugin_history import node_history

        hist = node_history(state.pytest_config)
        where = hist.options.directory if hist is not None else None
        history = history_data(where) if where is not None and where.is_dir() else None
        baseline = html_report.baseline_samples(cfg.baseline_dir, cfg.node, [r.nodeid for r in state.results]) \
            if state.baseline_files else None
        return html_report.render_session(run_json(), history, baseline)

    def markdown_text() -> str:
        missing = [h.message() for h in collector.holes] if collector is not None else []
        # the rows over the comment's cap are in the JSON report, when one is written
        where = f"`{cfg.json_path}` (--llmperf-json)" if cfg.json_path else \
            "the terminal summary, or the JSON report (--llmperf-json)"
        return report.markdown(cfg.node, found, [str(p) for p in state.saved], missing, where=where,
                               roofline=report.roofline_groups(state.results))

    def write_one(path: Path, make: Callable[[], str]) -> list[Path]:
        report.write_text(path, make())
        return [path]

    def write_bmf(path: Path) -> list[Path]:
        from . import exports

        return [exports.write_bmf(path, found)]

    def write_gab(path: Path) -> list[Path]:
        from . import exports

        return exports.write_gab(path, found)

    jobs: list[tuple[str, Path | None, Callable[[Path], list[Path]]]] = [
        ("--llmperf-json", cfg.json_path, lambda p: write_one(p, json_text)),
        ("--llmperf-markdown", cfg.markdown_path, lambda p: write_one(p, markdown_text)),
        ("--llmperf-bmf", cfg.bmf_path, write_bmf),
        ("--llmperf-html", cfg.html_path, lambda p: write_one(p, html_text)),
        ("--llmperf-gab", cfg.gab_path, write_gab),
    ]
    for option, path, write in jobs:
        if path is None:
            continue
        try:
            state.reports_written.extend(write(path))
        except (OSError, ValueError, TypeError, OneLine) as exc:
            # (OneLine: the HTML report's unreadable history or baseline file, named in its message)
            # what changed since the check at start (a directory that became a file) says more
            # than the errno of the failed call ("File exists")
            why = report.report_path_problem(path) or (
                (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc))
            line = f"{option} {path}: cannot write the report: {why}"
            if _remove_stale(option, path):
                line += " (the previous run's file there was removed)"
            state.report_errors.append(line)


def _remove_stale(option: str, path: Path) -> bool:
    """Remove what an earlier run left at the paths of a report that failed (github-action-benchmark's
    option names two files); True when something was removed."""
    from .report import remove_stale

    paths = [path]
    if option == "--llmperf-gab":
        from .exports import gab_paths

        paths = list(gab_paths(path))
    removed = [remove_stale(p) for p in paths]  # each of them, not up to the first
    return any(removed)


def _artifacts_summary(tr: Any, state: Session) -> None:
    """Where the profilers' files are, per test, and which profilers were skipped and why (once)."""
    artifacts: list[tuple[str, Mapping[str, Any]]] = []
    skipped: dict[tuple[str, str], list[str]] = {}
    for r in state.results:
        for a in r.artifacts:
            reason = (a.get("details") or {}).get("skipped")
            if reason:
                skipped.setdefault((a["kind"], reason), []).append(r.nodeid)
            else:
                artifacts.append((r.nodeid, a))
    if artifacts:
        tr.write_line("")
        tr.write_line(f"llmperf: profiler outputs in {state.config.artifacts_dir}:")
        for nodeid, a in artifacts:
            tr.write_line(f"  {nodeid} [{a['kind']}] {a.get('summary', '')}".rstrip())
            for path in a.get("paths", []):
                tr.write_line(f"      {path}")
    for (kind, reason), tests in skipped.items():
        tr.write_line(f"llmperf: profiler {kind} skipped in {len(tests)} test(s): {reason}", yellow=True)


def _history_summary(tr: Any, state: Session) -> None:
    """Older change points and drifts within the tolerance (the gate's own fail the tests), torn
    lines skipped, and where this run was appended."""
    from .plugin_history import node_history

    hist = node_history(state.pytest_config)
    if hist is None:
        return
    for line in hist.notes:
        tr.write_line(f"llmperf: {line}")
    for line in hist.warnings:
        tr.write_line(f"llmperf: WARNING {line}", yellow=True)
    if hist.appended:
        tr.write_line(f"llmperf: appended run {hist.run_id} to the history in {hist.options.directory}")


def has_news(state: Session, collector: Collector | None) -> bool:
    """Whether the terminal summary has anything to say (else it prints nothing)."""
    return bool(state.results or state.saved or state.save_error or state.report_errors
                or (collector is not None and collector.missing))


def terminal_summary(tr: Any, state: Session, collector: Collector | None = None) -> None:
    if not has_news(state, collector):
        return  # nothing recorded: import nothing, print nothing
    from . import report, report_terminal

    missing = collector.missing if collector is not None else []
    found = verdicts(state) + missing
    if found:
        import os
        import shutil
        import textwrap

        tr.write_sep("=", f"llmperf: node {state.config.node}")
        # pytest's own width (COLUMNS, the terminal, else 80) and colour (--color, NO_COLOR)
        width = getattr(getattr(tr, "_tw", None), "fullwidth", None) or shutil.get_terminal_size().columns
        option = getattr(state.pytest_config.option, "color", "auto")
        color = report_terminal.use_color(option, bool(getattr(tr, "hasmarkup", False)), os.environ)
        tr.write_line(report_terminal.terminal_table(found, width=int(width), color=color))
        if any(v.adjusted for v in found):
            tr.write_line("* speed-adjusted: rounds divided by the machine-speed probe timed around them")
        warmups = [(r.nodeid, name, m["warmup"]) for r in state.results for name, m in r.metrics.items()
                   if m.get("warmup")]
        if warmups:
            tr.write_line("")
            tr.write_line("warm-up (first round vs steady median):")
            tr.write_line(report_terminal.warmup_table(warmups, width=int(width)))
        for line in report_terminal.roofline_lines(state.results, width=int(width)):
            tr.write_line(line)
        for table in report.params_tables(state.results):
            tr.write_line("")
            tr.write_line(report_terminal.truncate_middle(f"{table.function} by parameters (medians):", int(width)))
            tr.write_line(report_terminal.params_table_text(table, int(width)))
        summary = ", ".join(f"{n} {s}" for s, n in report.counts(found).items())
        tr.write_line("")
        tr.write_line(f"llmperf: {summary}")
        for line in report.notes(found):
            # wrapped to the width, not cut: a note is prose, every word of it counts
            for part in textwrap.wrap(f"llmperf: note: {line}", max(40, int(width)), subsequent_indent="    ",
                                      break_on_hyphens=False):
                tr.write_line(part)
        for v in found:
            if v.status == NOT_COMPARED:
                raw = f" (raw change of the medians {fmt_pct(v.raw_change)})" if v.raw_change is not None else ""
                tr.write_line(f"llmperf: WARNING {v.test} {v.metric} not compared: {v.reason}{raw}", yellow=True)
            elif v.status == OVERSUBSCRIBED:
                tr.write_line(f"llmperf: WARNING {v.test} {v.metric} {v.reason} (change {fmt_pct(v.change)})",
                              yellow=True)
            elif v.status == "improved" and not state.config.save_baseline:
                tr.write_line(f"llmperf: {v.test} {v.metric} improved: consider --llmperf-save-baseline", green=True)
    _artifacts_summary(tr, state)
    _history_summary(tr, state)
    for path in state.saved:
        tr.write_line(f"llmperf: saved baseline {path}")
    if state.config.save_baseline and not state.saved and not state.save_error and state.results:
        tr.write_line("llmperf: no baseline saved: no test that recorded metrics passed")
    for path in state.reports_written:
        tr.write_line(f"llmperf: wrote {path}")
    if state.save_error:
        tr.write_line(f"llmperf: ERROR: {state.save_error}", red=True, bold=True)
    for line in state.report_errors:
        tr.write_line(f"llmperf: ERROR: {line}", red=True, bold=True)
    for hole in collector.holes if collector is not None else []:
        if collector is not None and collector.fails(hole):
            tr.write_line(f"llmperf: ERROR: missing: {hole.message()} (--llmperf-strict)", red=True, bold=True)
        else:
            tr.write_line(f"llmperf: WARNING missing: {hole.message()}", yellow=True)
