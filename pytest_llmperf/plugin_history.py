"""The core glue of the node's history (issue 13): its options, the history reference of a verdict,
the change-point and drift check of tonight's median, and the append at the end of a session.

Imported by plugin.py at configure time only when an option of the history is given or the node
has a history directory; the store, the reference model and the change-point detector when a test
records a metric. Nothing here runs on an xdist worker but the reading: the controller appends.

Defaults, and why. Appending is off unless asked (``--llmperf-history-append``, ini
``llmperf_history_append = true`` or ``LLMPERF_HISTORY_APPEND=1`` in the nightly job): a local
run on a developer's laptop must not become a night of the node's record. Reading is on whenever
the node has a history: the change-point check and the missing-test check use it, and
``--llmperf-baseline=history[:N]`` takes its reference from it (default N: 10 nights).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .api import Option, Session, Value, add_options, read_options
from .config import ConfigError, parse_positive_int
from .config import parse_flag as config_parse_flag

if TYPE_CHECKING:
    from .compare import Metric, Verdict
    from .history import Entry, HistoryStore, Point, Run
    from .holes import Expected

GROUP = ("llmperf", "pytest-llmperf: LLM performance regression testing")
DEFAULT_NIGHTS = 10
MAX_NIGHTS = 1000
MAX_HISTORY_SAMPLES = 1000
# fewer nights of history than this before tonight: no change-point check (find_steps needs 4 points
# before the newest for its last-night test; the drift test 5 in its window)
MIN_CHANGEPOINT_NIGHTS = 4
CHANGEPOINT_ALPHA = 0.01

OPTIONS: tuple[Option, ...] = (
    Option("--llmperf-baseline", metavar="saved|history[:N]", env="LLMPERF_BASELINE",
           help=f"the reference of the verdicts: the saved baseline (saved, the default), or the last N accepted "
                f"nights of this node's history with this machine's fingerprint (history, N default "
                f"{DEFAULT_NIGHTS}); a test without such nights falls back to the saved baseline"),
    Option("--llmperf-history-append", action="store_true", ini_type="bool", env="LLMPERF_HISTORY_APPEND",
           help="append this run to the node's history, one line per test (for the nightly job; also ini "
                "llmperf_history_append = true, env LLMPERF_HISTORY_APPEND=1); default: off"),
    Option("--llmperf-history-dir", metavar="DIR", env="LLMPERF_HISTORY_DIR",
           help="keep the history in DIR/<node>/ (also env LLMPERF_HISTORY_DIR); default: <baseline dir>/<node>/"
                "history"),
    Option("--llmperf-history-samples", metavar="N",
           help="keep up to N samples per metric in each history line (default 0: summaries only, under 1 KB "
                "per test)"),
    Option("--llmperf-history-keep", metavar="N",
           help="after appending, keep only the newest N runs of each test (retention); default: keep all"),
    Option("--llmperf-accept", action="store_true", ini=False,
           help="accept this run as the start of the history reference (after an intended change); "
                "implies --llmperf-history-append"),
)


@dataclass(frozen=True)
class HistoryOptions:
    reference: str  # "saved" or "history"
    nights: int  # N of history[:N]
    append: bool
    accept: bool
    directory: Path  # the node's history directory
    samples: int
    keep: int | None


def parse_reference(raw: object, where: str) -> tuple[str, int]:
    """``saved`` -> ("saved", N); ``history`` / ``history:7`` -> ("history", 7)."""
    text = str(raw).strip().lower() if raw not in (None, "") else "saved"
    kind, sep, count = text.partition(":")
    if kind == "saved" and not sep:
        return "saved", DEFAULT_NIGHTS
    if kind == "history":
        nights = parse_positive_int(count, f"{where} history:N", maximum=MAX_NIGHTS) if sep else DEFAULT_NIGHTS
        return "history", nights
    raise ConfigError(f"{where}: invalid value {str(raw)[:40]!r}, expected 'saved', 'history' or 'history:N'")


def parse_flag(value: Value) -> bool:
    """A flag that may come from the environment as text (config.parse_flag), named by its source."""
    return config_parse_flag(value.raw, value.where)


def history_directory(baseline_dir: Path, node: str, history_dir: Path | None) -> Path:
    """The node's history directory: ``<history_dir>/<node>`` when one is given, else
    ``<baseline dir>/<node>/history`` (history.node_history_dir's rule, kept here so that
    configuring a session does not import the store; a test checks that the two agree)."""
    return history_dir / node if history_dir is not None else baseline_dir / node / "history"


def parse(values: Mapping[str, Value], baseline_dir: Path, node: str) -> HistoryOptions:
    ref = values["llmperf_baseline"]
    kind, nights = parse_reference(ref.raw, ref.where)
    samples = values["llmperf_history_samples"]
    keep = values["llmperf_history_keep"]
    accept = parse_flag(values["llmperf_accept"])
    return HistoryOptions(
        reference=kind, nights=nights,
        append=parse_flag(values["llmperf_history_append"]) or accept, accept=accept,
        directory=history_directory(baseline_dir, node, values["llmperf_history_dir"].path()),
        samples=parse_positive_int(samples.raw, samples.where, minimum=0, maximum=MAX_HISTORY_SAMPLES)
        if samples.raw not in (None, "") else 0,
        keep=parse_positive_int(keep.raw, keep.where, maximum=10**6) if keep.raw not in (None, "") else None,
    )


def register(parser: pytest.Parser) -> None:
    add_options(parser, *GROUP, OPTIONS)


KEY = pytest.StashKey["NodeHistory"]()


@dataclass
class NodeHistory:
    """The history of this session's node: options, the store (read lazily, one read per test
    file), this run's id and time, and what the session found (change points to report)."""

    options: HistoryOptions
    started: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))
    _run: tuple[str, str] | None = None  # (run id, time text), made when first asked
    _store: HistoryStore | None = None
    _entries: dict[str, list[Entry]] | None = None
    notes: list[str] = field(default_factory=list)  # older change points, drifts below the gate
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # a history that cannot be read: said once, the history is left out
    appended: list[Path] = field(default_factory=list)  # the files this run was appended to
    commits: dict[str, dict[str, Any] | None] | None = None  # plugin_history.commits(), once asked

    def _started(self) -> tuple[str, str]:
        if self._run is None:
            from .history import new_run_id, utc_now_text

            self._run = (new_run_id(self.started), utc_now_text(self.started))
        return self._run

    @property
    def run_id(self) -> str:
        return self._started()[0]

    @property
    def time(self) -> str:
        """The UTC time this session started, as the history writes it."""
        return self._started()[1]

    @property
    def store(self) -> HistoryStore:
        if self._store is None:
            from .history import HistoryStore

            self._store = HistoryStore(self.options.directory)
        return self._store

    def entries(self, nodeid: str) -> list[Entry]:
        """The test's history (time order); empty when the node has none or it cannot be read (the
        error is kept and reported once at the end: a broken history never hides a verdict)."""
        if self._entries is None:
            self._entries = {}
            if self.options.directory.is_dir():
                from .history import HistoryError

                try:
                    self._entries = self.store.read_all()
                except HistoryError as exc:
                    self.error = str(exc)
                for line in self.store.warnings:
                    if line not in self.warnings:
                        self.warnings.append(line)
        return self._entries.get(nodeid, [])

    def expected(self, selected: set[str]) -> dict[str, dict[str, Expected]]:
        """The metrics each selected test's newest run in the history recorded: what this run
        should record too (the missing-test check; holes.py)."""
        from .history import Run
        from .holes import Expected

        out: dict[str, dict[str, Expected]] = {}
        for nodeid in sorted(selected):
            runs = [e for e in self.entries(nodeid) if isinstance(e, Run)]
            if runs:
                out[nodeid] = {name: Expected(p.unit, p.higher_is_better, p.gate, source="history", median=p.median)
                               for name, p in runs[-1].metrics.items()}
        return out


def expected(config: pytest.Config, selected: set[str]) -> dict[str, dict[str, Expected]]:
    hist = node_history(config)
    return hist.expected(selected) if hist is not None and hist.options.directory.is_dir() else {}


def configure(config: pytest.Config, state: Session) -> None:
    """Parse the options; check an append target before any test runs (one line, exit 4). Cheap:
    the store is imported only when appending, or when a test records a metric and the node has a
    history."""
    try:
        opts = parse(read_options(config, OPTIONS), state.config.baseline_dir, state.config.node)
    except ConfigError as exc:
        raise pytest.UsageError(f"llmperf: {exc}") from None
    config.stash[KEY] = NodeHistory(opts)
    if opts.append and not state.is_worker:
        from .history import HistoryError, check_writable

        try:
            check_writable(opts.directory)
        except HistoryError as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None
    config.pluginmanager.register(_Hooks(config), "llmperf-history")


def node_history(config: pytest.Config) -> NodeHistory | None:
    return config.stash.get(KEY, None)


# ------------------------------------------------------------------------------------------ verdicts


def _series(entries: Sequence[Entry], fingerprint: str, metric: Metric,
            verdict: Verdict) -> tuple[list[Run | None], list[float], str]:
    """The nights of ``metric`` since the last reset with this fingerprint that compare with
    tonight's (reference.comparable_nights), then tonight: (their runs, None for tonight; their
    values; what the values are: "paired", "adjusted" or "median")."""
    from . import compare, reference, stats

    runs = reference.since_reset(entries, fingerprint, metric.name)
    points: list[Point] = [r.metrics[metric.name] for r in runs]
    paired = verdict.reference if verdict.reference.startswith(compare.PAIRED) else None
    kind, chosen, values = reference.comparable_nights(points, paired, metric.probe_kind if metric.probes else None)
    if kind == "paired":
        tonight = 1.0 + (verdict.change or 0.0)
    else:
        tonight = stats.median(compare.adjusted_samples(metric) if kind == "adjusted" else metric.samples)
    return [runs[i] for i in chosen] + [None], values + [tonight], kind


def _side(run: Run | None, time: str) -> str:
    """``2026-11-30 (repo 1a2b3c4d, llama2c 9f8e7d6c)``: a night's date and its commits."""
    if run is None:
        return f"{time[:10]} (tonight)"
    commits = ", ".join(f"{name} {c.get('commit', '')[:8]}{'+dirty' if c.get('dirty') else ''}"
                        for name, c in sorted(run.commits.items()))
    return f"{run.time[:10]}" + (f" ({commits})" if commits else "")


def history_verdict(state: Session, nodeid: str, metric: Metric, tolerance: float) -> Verdict | None:
    """The verdict against the history reference (``--llmperf-baseline=history[:N]``), or None when
    the option is not given or the test has no accepted night with this fingerprint (the saved
    baseline then decides, and its verdict says so)."""
    hist = node_history(state.pytest_config)
    if hist is None or hist.options.reference != "history" or metric.paired:
        return None
    entries = hist.entries(nodeid)
    if not entries:
        return None
    from . import reference

    digest = state.machine()[2]
    points = reference.select(entries, digest, metric.name, hist.options.nights)
    ref = reference.reference_for(points, metric, state.config.noise_floor)
    if ref is None:
        return None
    return reference.compare_history(nodeid, ref, metric, tolerance, state.config.confidence,
                                     state.config.noise_floor)


def changepoint_check(state: Session, nodeid: str, metric: Metric, verdict: Verdict) -> tuple[Verdict, str | None]:
    """Tonight's median appended to the nights since the last reset: a step at the newest night (when
    tonight's own comparison is convincingly worse too: its interval excludes no change), or an
    accumulated drift, in the worse direction and beyond the tolerance fails the metric like a
    regression (the verdict becomes ``regressed`` with the dates and commits on both sides); an
    older step, or one within the tolerance, is a note of the summary. Returns the verdict and the
    failure line (None when it passes)."""
    from . import compare

    hist = node_history(state.pytest_config)
    if hist is None or not metric.gate or metric.exact or verdict.status in (compare.REGRESSED,
                                                                             compare.OVERSUBSCRIBED):
        return verdict, None
    entries = hist.entries(nodeid)
    if not entries:
        return verdict, None
    if verdict.reference.startswith(compare.PAIRED) and verdict.change is None:
        return verdict, None
    runs, values, kind = _series(entries, state.machine()[2], metric, verdict)
    if len(values) - 1 < MIN_CHANGEPOINT_NIGHTS:
        return verdict, None
    from . import changepoint

    sign = 1.0 if metric.higher_is_better else -1.0  # a worse change is negative after the sign
    tol = verdict.tolerance
    shown = {"paired": "paired ratios to the reference build", "adjusted": "speed-adjusted nightly medians",
             "median": "nightly medians"}[kind]
    what = f"{metric.name} ({shown}, {len(values)} nights)"
    for step in changepoint.find_steps(values, alpha=CHANGEPOINT_ALPHA):
        before, after = runs[step.index - 1], runs[step.index]
        text = (f"change point in {nodeid} {what}: {_side(before, hist.time)} -> {_side(after, hist.time)}: "
                f"{compare.fmt_pct(step.change)}")
        if step.index == len(values) - 1 and sign * step.change < -tol:
            if not _convincingly_worse(verdict, sign):
                # tonight's median is one value of a session whose own interval covers no change
                # (measured: a stories15M night of 5 rounds read -21% speed-adjusted, [-40%, +5%])
                hist.notes.append(f"{text} at the newest night, but tonight's own interval "
                                  f"[{compare.fmt_pct(verdict.ci_low)}, {compare.fmt_pct(verdict.ci_high)}] "
                                  f"covers no change: not failed")
                continue
            line = f"llmperf: {text}, worse beyond the tolerance {tol:.1%} at the newest night"
            return replace(verdict, status=compare.REGRESSED, reason=line.removeprefix("llmperf: ")), line
        hist.notes.append(text)
    drift = changepoint.find_drift(values, alpha=CHANGEPOINT_ALPHA)
    if drift is not None:
        start = runs[drift.start]
        text = (f"drift in {nodeid} {what}: {compare.fmt_pct(drift.slope)}/night since {_side(start, hist.time)}, "
                f"{compare.fmt_pct(drift.total)} in all (p={drift.p_value:.2g})")
        if sign * drift.total < -tol:
            line = f"llmperf: {text}: worse beyond the tolerance {tol:.1%}"
            return replace(verdict, status=compare.REGRESSED, reason=line.removeprefix("llmperf: ")), line
        hist.notes.append(text)
    return verdict, None


def _convincingly_worse(verdict: Verdict, sign: float) -> bool:
    """Does tonight's own comparison put its change on the worse side beyond doubt (its interval
    excludes no change)? True when it has no interval: nothing then says otherwise."""
    if verdict.ci_low is None or verdict.ci_high is None:
        return True
    return verdict.ci_high < 0 if sign > 0 else verdict.ci_low > 0


class _Hooks:
    """The history's hook implementations, registered as a plugin at configure time."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_llmperf_reference_commit(self, config: pytest.Config, nodeid: str, source: str) -> str | None:
        return reference_commit(config, nodeid, source)


def reference_commit(config: pytest.Config, nodeid: str, source: str) -> str | None:
    """The ``source`` commit that tonight's build of ``nodeid`` is paired against: the commit of the
    run that starts the reference (the saved baseline's run, or the run an accept names) when it
    recorded one, with this fingerprint; else (no such run, or it has no commit of ``source``) the
    newest accepted night whose gated metrics were decided (neither ``noisy`` nor
    ``oversubscribed``).

    Why the start of the reference: every night is then paired against the same build, so the
    nightly paired ratios form one series that the change-point check can read (measured: pairing
    each night against the night before made the ratios a chain whose errors add up, and a slowed
    build that won one noisy night became the build later nights were paired against, which then
    never caught it again). A regression stays one until a baseline is saved or a run accepted."""
    from . import compare, reference
    from .api import session
    from .history import Run

    hist = node_history(config)
    if hist is None:
        return None
    entries = hist.entries(nodeid)
    runs = [e for e in entries if isinstance(e, Run)]
    if not runs:
        return None
    digest = session(config).machine()[2]
    _start, forced = reference.reset_start(entries)
    for run in runs:
        if forced is not None and run.run_id == forced and run.fingerprint == digest:
            commit = run.commits.get(source, {}).get("commit")
            if commit:
                return str(commit)
    gated = [name for name, p in runs[-1].metrics.items() if p.gate] or list(runs[-1].metrics)
    chosen = [run for run, _p in reference.select(entries, digest, gated[0], MAX_NIGHTS)]
    for run in reversed(chosen):
        decided = all(p.status not in (compare.NOISY, compare.OVERSUBSCRIBED)
                      for name, p in run.metrics.items() if name in gated)
        if decided:
            commit = run.commits.get(source, {}).get("commit")
            return str(commit) if commit else None
    return None


# ------------------------------------------------------------------------------------------ append


def finish(state: Session, exitstatus: int) -> list[str]:
    """Append this run to the node's history (when asked, and not interrupted); mark a saved
    baseline as a reset of the history reference. Returns error lines (each one line, naming the
    file); nothing is rewritten on an error."""
    hist = node_history(state.pytest_config)
    if hist is None:
        return []
    errors: list[str] = []
    if hist.error:
        errors.append(f"history not used: {hist.error}")
    if not state.results or state.config.smoke:  # a smoke run's one round is no night of the record
        return errors
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        if hist.options.append:
            errors.append("run interrupted: nothing appended to the history")
        return errors
    from .history import HistoryError

    try:
        if hist.options.append:
            hist.appended = hist.store.append(_records(state, hist), keep=hist.options.keep)
        elif state.saved and hist.options.directory.is_dir():
            # a saved baseline starts the history reference again, even on a run that does not append
            saved = [r.nodeid for r in state.results if r.nodeid in state.passed_call and r.metrics]
            hist.store.accept(saved, None, why="baseline saved")
    except HistoryError as exc:
        errors.append(str(exc))
    except OSError as exc:
        errors.append(f"cannot write the history in {hist.options.directory}: {exc.strerror or exc}")
    return errors


def commits(state: Session) -> dict[str, dict[str, Any] | None]:
    """The repository under test (the rootdir's work tree) and the features' source checkouts;
    git is asked once per session (the baseline, the run JSON and the history all record them)."""
    hist = node_history(state.pytest_config)
    if hist is not None and hist.commits is not None:
        return hist.commits
    from . import gitinfo

    repo = gitinfo.commit_of(state.pytest_config.rootpath)
    out: dict[str, dict[str, Any] | None] = {"repo": dict(repo) if repo else None}
    for name, info in state.sources.items():
        out[name] = info
    if hist is not None:
        hist.commits = out
    return out


def _records(state: Session, hist: NodeHistory) -> list[Run]:
    from . import __version__
    from .history import run_record

    found = commits(state)
    reset = hist.options.accept or bool(state.saved)
    out = []
    for result in state.results:
        if not result.metrics:
            continue
        outcome = "passed" if result.nodeid in state.passed_call else "failed"
        out.append(run_record(result.to_json(), None, run_id=hist.run_id, time=hist.time,
                              fingerprint=result.fingerprint,
                              plugin_version=__version__, commits=found, outcome=outcome,
                              reset=reset and outcome == "passed", samples=hist.options.samples))
    return out
