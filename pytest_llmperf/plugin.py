"""pytest glue: options, marker, fixture, hooks, verdicts on test outcomes, summary and reports.

Loading this module must stay cheap: it imports only the option parsers. Statistics, the store,
hardware detection and reporting are imported when a test records a metric or at the end.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from . import __version__
from .api import MARKER, RECORDER, STATE, Session, artifact_dir, option_value, register_ini  # noqa: F401
from .config import (
    DEFAULT_ARTIFACTS_DIR,
    DEFAULT_BASELINE_DIR,
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_TIME,
    DEFAULT_MIN_ROUNDS,
    DEFAULT_NOISE_FLOOR,
    DEFAULT_PROFILE_STEPS,
    DEFAULT_TOLERANCE,
    MAX_ROUNDS,
    Config,
    ConfigError,
    MarkerOptions,
    parse_confidence,
    parse_fraction,
    parse_normalize,
    parse_positive_int,
    parse_profilers,
    parse_seconds,
    parse_tolerance_spec,
    parse_warmup,
    tolerance_for,
)
from .llama2c.fixtures import add_options as _llama2c_options
from .llama2c.fixtures import check_options as _llama2c_check_options
from .llama2c.fixtures import llama2c  # noqa: F401  (the fixture, registered with this plugin)
from .profilers.fixtures import add_options as _profiler_options
from .profilers.fixtures import check_options as _profiler_check_options
from .profilers.fixtures import llmperf_profile  # noqa: F401  (the fixture)
from .torch_models.fixtures import add_options as _torch_options
from .torch_models.fixtures import check_options as _torch_check_options
from .torch_models.fixtures import torch_decode, torch_device, torch_lm  # noqa: F401  (fixtures)

_State = Session  # the glue's name for it
_value = option_value  # kept for code that still imports it from here

PROPERTY = "llmperf"
BASELINE_TIME_FACTOR = 3




def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "pytest-llmperf: LLM performance regression testing")

    def add(flag: str, ini: str | None, help: str, ini_type: str | None = None, **kw: Any) -> None:
        group.addoption(flag, help=help.replace("%", "%%"), **kw)
        if ini:
            parser.addini(ini, help=help, type=ini_type, default=None)
            register_ini(ini)

    add("--llmperf-node", "llmperf_node", metavar="NAME", dest="llmperf_node",
        help="node whose baselines to use (also env LLMPERF_NODE); default: SLURM node or partition, else the host name")
    add("--llmperf-baseline-dir", "llmperf_baseline_dir", metavar="DIR", dest="llmperf_baseline_dir",
        help=f"baseline directory, relative to the rootdir (also env LLMPERF_BASELINE_DIR); default: {DEFAULT_BASELINE_DIR}")
    add("--llmperf-save-baseline", None, action="store_true", default=False, dest="llmperf_save",
        help="save this run's metrics as the node's baseline (merged into what is there); never fails on a regression")
    add("--llmperf-tolerance", "llmperf_tolerance", metavar="SPEC", action="append", dest="llmperf_tolerance",
        help=f"allowed worsening, overall and/or per metric: '5%', 'tok_per_s=3%', '5%,time=10%'; repeatable; "
             f"default: {DEFAULT_TOLERANCE:.0%}")
    add("--llmperf-warmup", "llmperf_warmup", metavar="N|auto", dest="llmperf_warmup",
        help="warm-up rounds to discard, or 'auto' (until steady, within a bound); default: auto")
    add("--llmperf-min-rounds", "llmperf_min_rounds", metavar="N", dest="llmperf_min_rounds",
        help=f"minimum measured rounds per llmperf.measure; default: {DEFAULT_MIN_ROUNDS}")
    add("--llmperf-max-time", "llmperf_max_time", metavar="SECONDS", dest="llmperf_max_time",
        help=f"time budget per llmperf.measure (warm-up included); default: {DEFAULT_MAX_TIME:g}")
    add("--llmperf-confidence", "llmperf_confidence", metavar="PCT", dest="llmperf_confidence",
        help=f"confidence level of the verdict's interval; default: {DEFAULT_CONFIDENCE:.0%}")
    add("--llmperf-noise-floor", "llmperf_noise_floor", metavar="PCT", dest="llmperf_noise_floor",
        help=f"session-to-session noise (relative sd) assumed on top of the samples' own; default: {DEFAULT_NOISE_FLOOR:.1%}")
    add("--llmperf-normalize", "llmperf_normalize", metavar="auto|on|off", dest="llmperf_normalize",
        help="divide timed rounds by a machine-speed probe before comparing; default: auto")
    add("--llmperf-force-compare", None, action="store_true", default=False, dest="llmperf_force_compare",
        help="compare even when the machine fingerprint differs from the baseline's")
    add("--llmperf-require-baseline", "llmperf_require_baseline", action="store_true", default=False,
        dest="llmperf_require_baseline", ini_type="bool", help="fail tests whose metrics have no baseline (for CI)")
    add("--llmperf-report-only", None, action="store_true", default=False, dest="llmperf_report_only",
        help="report verdicts but never fail a test on them")
    add("--llmperf-json", None, metavar="PATH", dest="llmperf_json", help="write the run's results and verdicts as JSON")
    add("--llmperf-markdown", None, metavar="PATH", dest="llmperf_markdown",
        help="write a Markdown summary (for a CI job summary or a PR comment)")
    add("--llmperf-profile", "llmperf_profile", metavar="NAMES", dest="llmperf_profile",
        help="profile the benchmarks with these profilers, in runs separate from the timed ones: torch "
             "(the PyTorch profiler's operator table), perf-stat (counters as metrics), perf-record (perf.data "
             "and top symbols), nsys (CUDA kernel summary), instructions (valgrind instruction count, "
             "deterministic); comma-separated; default: none")
    add("--llmperf-profile-steps", "llmperf_profile_steps", metavar="N", dest="llmperf_profile_steps",
        help="steps (or decoded tokens' generations) run under a profiler; default: 3")
    add("--llmperf-artifacts", "llmperf_artifacts", metavar="DIR", dest="llmperf_artifacts",
        help=f"where profiler outputs go, as DIR/<node>/<test>/... (also env LLMPERF_ARTIFACTS); "
             f"default: {DEFAULT_ARTIFACTS_DIR} under the rootdir")
    _llama2c_options(add)
    _torch_options(add)
    _profiler_options(add)


def build_config(config: pytest.Config) -> Config:
    from .node import auto_node_name, validate_node_name

    def get(dest: str, env: str | None = None) -> tuple[Any, str]:
        value, where = _value(config, dest, env)
        return value, where or f"--{dest.replace('_', '-')}"

    v = lambda dest, env=None: get(dest, env)[0]  # noqa: E731
    node, source = _value(config, "llmperf_node", "LLMPERF_NODE")
    if node is None:
        default = auto_node_name()
        hooked = config.hook.pytest_llmperf_node_name(config=config, default=default)
        node, source = (hooked, "pytest_llmperf_node_name hook") if hooked else (default, "automatic")
    try:
        node = validate_node_name(str(node))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None

    tolerance, per_metric = DEFAULT_TOLERANCE, {}
    specs, where = get("llmperf_tolerance")
    for spec in ([specs] if isinstance(specs, str) else specs or []):
        overall, metrics = parse_tolerance_spec(spec, where)
        if overall is not None:
            tolerance = overall
        per_metric.update(metrics)

    def parsed(parse: Any, dest: str, default: Any, *args: Any, **kw: Any) -> Any:
        raw, where = get(dest)
        return parse(default if raw is None else raw, where, *args, **kw)

    base_path = _rooted(config, v("llmperf_baseline_dir", "LLMPERF_BASELINE_DIR") or DEFAULT_BASELINE_DIR)

    def opt_path(dest: str) -> Path | None:
        raw = v(dest)
        return Path(raw).expanduser().absolute() if raw else None

    return Config(
        node=node,
        node_source=source or "automatic",
        baseline_dir=base_path,
        save_baseline=bool(v("llmperf_save")),
        tolerance=tolerance,
        metric_tolerances=per_metric,
        warmup=parsed(parse_warmup, "llmperf_warmup", "auto"),
        min_rounds=parsed(parse_positive_int, "llmperf_min_rounds", DEFAULT_MIN_ROUNDS, maximum=MAX_ROUNDS),
        max_time=parsed(parse_seconds, "llmperf_max_time", DEFAULT_MAX_TIME),
        confidence=parsed(parse_confidence, "llmperf_confidence", DEFAULT_CONFIDENCE),
        noise_floor=parsed(parse_fraction, "llmperf_noise_floor", DEFAULT_NOISE_FLOOR),
        normalize=parsed(parse_normalize, "llmperf_normalize", "auto"),
        force_compare=bool(v("llmperf_force_compare")),
        require_baseline=bool(v("llmperf_require_baseline")),
        report_only=bool(v("llmperf_report_only")),
        json_path=opt_path("llmperf_json"),
        markdown_path=opt_path("llmperf_markdown"),
        artifacts_dir=_rooted(config, v("llmperf_artifacts", "LLMPERF_ARTIFACTS") or DEFAULT_ARTIFACTS_DIR),
        profilers=parsed(parse_profilers, "llmperf_profile", None),
        profile_steps=parsed(parse_positive_int, "llmperf_profile_steps", DEFAULT_PROFILE_STEPS),
    )


def _rooted(config: pytest.Config, raw: Any) -> Path:
    """A path option: ``~`` expanded, relative paths taken from the rootdir."""
    path = Path(os.path.expanduser(str(raw)))
    return path if path.is_absolute() else config.rootpath / path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llmperf(tolerance=, tolerances=, rounds=, warmup=, max_time=, normalize=, profile=): per-test settings "
        "of pytest-llmperf; tolerance '5%' or 'tok_per_s=3%', tolerances {'metric': '3%'}, rounds = minimum "
        "measured rounds, warmup N or 'auto', max_time seconds, normalize auto/on/off, profile 'perf-stat,"
        "instructions' (profilers added to --llmperf-profile's)",
    )
    try:
        cfg = build_config(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"llmperf: {exc}") from None
    _llama2c_check_options(config)
    _torch_check_options(config)
    _profiler_check_options(config)
    if not hasattr(config, "workerinput") and (cfg.json_path or cfg.markdown_path):
        from .report import report_path_problem

        for option, path in (("--llmperf-json", cfg.json_path), ("--llmperf-markdown", cfg.markdown_path)):
            problem = report_path_problem(path) if path is not None else None
            if problem:
                raise pytest.UsageError(f"llmperf: {option} {path}: {problem}")
        if cfg.json_path is not None and cfg.json_path == cfg.markdown_path:
            raise pytest.UsageError(f"llmperf: --llmperf-json and --llmperf-markdown are the same file {cfg.json_path}")
    state = _State(cfg, config)
    config.stash[STATE] = state
    if not state.is_worker:
        config.pluginmanager.register(_Collector(state), "llmperf-collector")
    # import the store only when there is something to read or write: a session without
    # baselines (or without benchmarks) pays nothing for it
    node_dir = cfg.baseline_dir / cfg.node
    saving = cfg.save_baseline and not state.is_worker
    if saving or node_dir.exists() or (cfg.baseline_dir.exists() and not cfg.baseline_dir.is_dir()):
        from .baseline import BaselineError, check_writable

        try:
            if saving:
                check_writable(node_dir)
            state.baseline_files = state.store.validate()
        except BaselineError as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE, None)
    if state is None:
        return []
    cfg = state.config
    try:
        where = cfg.baseline_dir.relative_to(config.rootpath) / cfg.node
    except ValueError:
        where = cfg.baseline_dir / cfg.node
    mode = "saving baselines" if cfg.save_baseline else ("report only" if cfg.report_only else "gating")
    from .config import PROFILERS

    profiling = f", profiling {','.join(p for p in PROFILERS if p in cfg.profilers)}" if cfg.profilers else ""
    return [
        f"llmperf: node {cfg.node} ({cfg.node_source}), baselines {where} ({state.baseline_files} files), "
        f"tolerance {cfg.tolerance:.1%}, warmup {cfg.warmup}, {mode}{profiling}"
    ]


def _marker_options(item: pytest.Item) -> MarkerOptions:
    merged: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("llmperf"))):  # farthest first, closest overrides
        if mark.args:
            MarkerOptions.from_marker(mark.args, mark.kwargs, item.nodeid)
        merged.update(mark.kwargs)
    return MarkerOptions.from_marker((), merged, item.nodeid)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.config.save_baseline and items:
        _check_save_targets(state, items)
    for item in items:
        if item.get_closest_marker("llmperf") is None:
            continue
        try:
            item.stash[MARKER] = _marker_options(item)
        except ConfigError as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None


def _check_save_targets(state: _State, items: list[pytest.Item]) -> None:
    """Before any test runs: every baseline file this session may write, and its directory, can
    be written (a read-only ``baselines/<node>/suites/`` is named here, not after an hour of
    benchmarks)."""
    from .baseline import BaselineError, check_writable

    seen: set[Path] = set()
    try:
        for item in items:
            path, _key = state.store.path_for(item.nodeid)
            if path in seen:
                continue
            seen.add(path)
            check_writable(path.parent)
            if path.exists() and not path.is_file():
                raise BaselineError(f"baseline file {path} is not a file")
    except BaselineError as exc:
        raise pytest.UsageError(f"llmperf: {exc}") from None


def _settings_for(state: _State, item: pytest.Item):
    from .measure import MeasureSettings

    cfg = state.config
    marker = item.stash.get(MARKER, None)
    max_time = marker.max_time if marker and marker.max_time is not None else cfg.max_time
    return MeasureSettings(
        warmup=marker.warmup if marker and marker.warmup is not None else cfg.warmup,
        min_rounds=marker.rounds if marker and marker.rounds is not None else cfg.min_rounds,
        # a baseline is taken once and compared against every night: it gets three times the
        # budget, all of it (no early stop), so that its own error stays small
        max_time=max_time * BASELINE_TIME_FACTOR if cfg.save_baseline else max_time,
        adaptive=not cfg.save_baseline,
        tolerance=cfg.tolerance,
        confidence=cfg.confidence,
    )


@pytest.fixture
def llmperf(request: pytest.FixtureRequest):
    """Record metrics of this test: ``llmperf.measure(fn, *args)`` times a callable (metric
    ``time``, seconds, lower is better); ``llmperf.record(name, samples, unit=..., higher_is_better=...)``
    records samples measured by the test. Each metric is compared with the node's baseline."""
    from .recorder import Recorder

    state: _State = request.config.stash[STATE]
    item = request.node
    marker = item.stash.get(MARKER, None)
    baseline = {}
    if not state.config.save_baseline:
        metrics, digest, _fields, _path = state.store.lookup(item.nodeid)
        if metrics and (state.config.force_compare or digest == state.machine()[2]):
            baseline = metrics
    normalize = marker.normalize if marker and marker.normalize else state.config.normalize
    recorder = Recorder(
        _settings_for(state, item),
        lambda name: tolerance_for(name, state.config, marker),
        baseline=baseline,
        confidence=state.config.confidence,
        noise_floor=state.config.noise_floor,
        normalize=normalize,
    )
    item.stash[RECORDER] = recorder
    return recorder


def _benchmark_metric(item: pytest.Item, taken: set[str]):
    """The timing of pytest-benchmark's ``benchmark`` fixture, as a metric of this test."""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    stats = getattr(getattr(fixture, "stats", None), "stats", None)
    data = list(getattr(stats, "data", None) or [])
    if not data:
        return None
    from .compare import Metric

    name = "time" if "time" not in taken else "benchmark_time"
    return Metric(name=name, unit="s", higher_is_better=False, samples=[float(x) for x in data], normalize="off")


def _params(item: pytest.Item) -> dict:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    out = {}
    for key, value in callspec.params.items():
        out[key] = value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)
    return out


def evaluate(state: _State, item: pytest.Item, metrics: list) -> tuple[dict, list[str]]:
    """Compare the metrics of one test with its baseline; returns (payload, failure lines)."""
    from . import compare
    from .baseline import metric_to_json

    cfg = state.config
    marker = item.stash.get(MARKER, None)
    _info, fields, digest = state.machine()
    base_metrics, base_digest, base_fields, base_path = state.store.lookup(item.nodeid)
    differs = bool(base_metrics) and base_digest != digest and not cfg.force_compare
    diff_lines: list[str] = []
    if differs:
        from .hardware import fingerprint_diff

        diff_lines = fingerprint_diff(base_fields or {}, fields) or [f"fingerprint {base_digest} -> {digest}"]
    verdicts, failures, errors = [], [], []
    for metric in metrics:
        tol = tolerance_for(metric.name, cfg, marker)
        base = base_metrics.get(metric.name)
        if base is not None and (base.unit != metric.unit or base.higher_is_better != metric.higher_is_better):
            what = (f"unit {metric.unit!r} differs from the baseline's {base.unit!r}" if base.unit != metric.unit
                    else f"direction '{metric.direction}' differs from the baseline's '{base.direction}'")
            line = f"llmperf: metric {metric.name!r}: {what} in {base_path}; re-save the baseline with --llmperf-save-baseline"
            if not cfg.save_baseline and not cfg.report_only and metric.gate:
                errors.append(line)
            verdicts.append(compare.not_compared(item.nodeid, metric, tol, [what], why="metric changed"))
            continue
        if differs and base is not None:
            v = compare.not_compared(item.nodeid, metric, tol, diff_lines)
        else:
            v = compare.compare_metric(item.nodeid, base, metric, tol, cfg.confidence, cfg.noise_floor)
        verdicts.append(v)
        if cfg.save_baseline or cfg.report_only:
            continue
        if v.status == compare.REGRESSED:
            failures.append("llmperf: " + compare.verdict_message(v))
        elif v.status == compare.NEW and cfg.require_baseline:
            failures.append(f"llmperf: metric {metric.name!r} has no baseline on node {cfg.node} "
                            f"(--llmperf-require-baseline); save one with --llmperf-save-baseline")
    payload = {
        "nodeid": item.nodeid,
        "params": _params(item),
        "metrics": {m.name: metric_to_json(m) for m in metrics},
        "verdicts": [v.to_dict() for v in verdicts],
        "fingerprint": digest,
    }
    recorder = item.stash.get(RECORDER, None)
    if recorder is not None and recorder.artifacts:
        payload["artifacts"] = list(recorder.artifacts)
    return payload, errors + failures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        result = yield
    except (pytest.skip.Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        # the test failed after recording metrics (a profiler that failed after the timed rounds,
        # say): they are still compared and reported; the failure stands, and a failed test never
        # goes into a saved baseline
        state = item.config.stash.get(STATE, None)
        if state is not None:
            _evaluate_item(state, item)
        recorder = sys.modules.get("pytest_llmperf.recorder")
        if recorder is not None and isinstance(exc, recorder.RecordError):
            # a misuse of llmperf.record/measure: its one line and where the test made it, no
            # traceback through the plugin
            raise pytest.fail.Exception(f"{exc}{_where_in_test(exc, item)}", pytrace=False) from None
        raise
    state = item.config.stash.get(STATE, None)
    if state is None:
        return result
    failures = _evaluate_item(state, item)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return result


def _where_in_test(exc: BaseException, item: pytest.Item) -> str:
    """`` (test_x.py:12)``: the last line of the test's own file in the traceback, or nothing."""
    where = ""
    tb = exc.__traceback__
    path = str(getattr(item, "path", ""))
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            where = f" ({Path(path).name}:{tb.tb_lineno})"
        tb = tb.tb_next
    return where


def _evaluate_item(state: _State, item: pytest.Item) -> list[str]:
    """Compare the metrics the test recorded, attach the payload to its report; failure lines."""
    recorder = item.stash.get(RECORDER, None)
    metrics = list(recorder.metrics.values()) if recorder is not None else []
    bench = _benchmark_metric(item, {m.name for m in metrics})
    if bench is not None:
        metrics.append(bench)
    if not metrics and not (recorder is not None and recorder.artifacts):
        return []
    payload, failures = evaluate(state, item, metrics)
    item.user_properties.append((PROPERTY, payload))
    return failures


class _Collector:
    """Receives test reports in the process that reports them (the controller under xdist)."""

    def __init__(self, state: _State):
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and report.failed:
            # an error in teardown (a fixture that failed to clean up) makes the test not pass:
            # its metrics are shown, never saved into a baseline
            self.state.passed_call.discard(report.nodeid)
            return
        if report.when != "call":
            return
        for name, value in getattr(report, "user_properties", []):
            if name == PROPERTY and isinstance(value, dict):
                self.state.payloads.append(value)
                if report.passed:
                    self.state.passed_call.add(report.nodeid)


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _verdicts(state: _State):
    from .compare import Verdict

    return [Verdict(**v) for p in state.payloads for v in p["verdicts"]]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None or state.is_worker:
        return
    cfg = state.config
    if cfg.save_baseline and state.payloads:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            state.save_error = "run interrupted: no baseline saved"
        else:
            _save(state)
    if cfg.json_path or cfg.markdown_path:
        _write_reports(state)
    if (state.save_error or state.report_errors) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _meta(state: _State) -> dict:
    return {
        "saved_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "plugin_version": __version__,
        "git_commit": _git_commit(state.pytest_config.rootpath),
    }


def _save(state: _State) -> None:
    from .baseline import BaselineError, metric_from_json

    records, refused = [], []
    for payload in state.payloads:
        if payload["nodeid"] not in state.passed_call or not payload["metrics"]:
            continue
        try:
            metrics = [metric_from_json(name, m, f"test {payload['nodeid']}") for name, m in payload["metrics"].items()]
        except BaselineError as exc:  # a value record() let through (pytest-benchmark's timings)
            refused.append(f"not saved: {exc}")
            continue
        records.append({"nodeid": payload["nodeid"], "metrics": metrics, "params": payload.get("params")})
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


def _write_reports(state: _State) -> None:
    """Each report on its own: a JSON report that cannot be written does not keep the Markdown
    one from being written. A report that cannot be written is an error (the session's exit
    status is then non-zero), and the previous run's file at that path is removed, so that a CI
    step publishing it cannot publish last night's results as tonight's."""
    from . import report

    cfg = state.config
    verdicts = _verdicts(state)

    def json_text() -> str:
        fields, digest = None, None
        if state.payloads:
            try:
                fields, digest = state.machine()[1:]
            except pytest.fail.Exception:
                pass
        meta = {"plugin_version": __version__, "mode": "save" if cfg.save_baseline else "compare",
                "saved_baselines": [str(p) for p in state.saved]}
        return report.json_text(report.to_json(cfg.node, fields, digest, state.payloads, verdicts, meta))

    def markdown_text() -> str:
        return report.markdown(cfg.node, verdicts, [str(p) for p in state.saved])

    for option, path, make in (("--llmperf-json", cfg.json_path, json_text),
                               ("--llmperf-markdown", cfg.markdown_path, markdown_text)):
        if path is None:
            continue
        try:
            report.write_text(path, make())
        except (OSError, ValueError, TypeError) as exc:
            # what changed since the check at start (a directory that became a file) says more
            # than the errno of the failed call ("File exists")
            why = report.report_path_problem(path) or (
                (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc))
            line = f"{option} {path}: cannot write the report: {why}"
            if report.remove_stale(path):
                line += " (the previous run's file there was removed)"
            state.report_errors.append(line)
        else:
            state.reports_written.append(path)


def _artifacts_summary(tr, state: _State) -> None:
    """Where the profilers' files are, per test, and which profilers were skipped and why (once)."""
    artifacts, skipped = [], {}
    for p in state.payloads:
        for a in p.get("artifacts", []):
            reason = (a.get("details") or {}).get("skipped")
            if reason:
                skipped.setdefault((a["kind"], reason), []).append(p["nodeid"])
            else:
                artifacts.append((p["nodeid"], a))
    if artifacts:
        tr.write_line("")
        tr.write_line(f"llmperf: profiler outputs in {state.config.artifacts_dir}:")
        for nodeid, a in artifacts:
            tr.write_line(f"  {nodeid} [{a['kind']}] {a.get('summary', '')}".rstrip())
            for path in a.get("paths", []):
                tr.write_line(f"      {path}")
    for (kind, reason), tests in skipped.items():
        tr.write_line(f"llmperf: profiler {kind} skipped in {len(tests)} test(s): {reason}", yellow=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or state.is_worker:
        return
    if not (state.payloads or state.saved or state.save_error or state.report_errors):
        return  # nothing recorded: import nothing, print nothing
    from . import report

    verdicts = _verdicts(state)
    tr = terminalreporter
    if verdicts:
        tr.write_sep("=", f"llmperf: node {state.config.node}")
        tr.write_line(report.terminal_table(verdicts))
        if any(v.adjusted for v in verdicts):
            tr.write_line("* speed-adjusted: rounds divided by the machine-speed probe timed around them")
        warmups = [(p["nodeid"], name, m["warmup"]) for p in state.payloads for name, m in p["metrics"].items()
                   if m.get("warmup")]
        if warmups:
            tr.write_line("")
            tr.write_line("warm-up (first round vs steady median):")
            tr.write_line(report.warmup_table(warmups))
        for function, headers, rows in report.params_tables(state.payloads):
            tr.write_line("")
            tr.write_line(f"{function} by parameters (medians):")
            tr.write_line(report.params_table_text(headers, rows))
        summary = ", ".join(f"{n} {s}" for s, n in report.counts(verdicts).items())
        tr.write_line("")
        tr.write_line(f"llmperf: {summary}")
        for line in report.notes(verdicts):
            tr.write_line(f"llmperf: note: {line}")
        for v in verdicts:
            if v.status == "not-compared":
                tr.write_line(f"llmperf: WARNING {v.test} {v.metric} not compared: {v.reason}", yellow=True)
            elif v.status == "improved" and not state.config.save_baseline:
                tr.write_line(f"llmperf: {v.test} {v.metric} improved: consider --llmperf-save-baseline", green=True)
    _artifacts_summary(tr, state)
    for path in state.saved:
        tr.write_line(f"llmperf: saved baseline {path}")
    if state.config.save_baseline and not state.saved and not state.save_error and state.payloads:
        tr.write_line("llmperf: no baseline saved: no test that recorded metrics passed")
    for path in state.reports_written:
        tr.write_line(f"llmperf: wrote {path}")
    if state.save_error:
        tr.write_line(f"llmperf: ERROR: {state.save_error}", red=True, bold=True)
    for line in state.report_errors:
        tr.write_line(f"llmperf: ERROR: {line}", red=True, bold=True)
