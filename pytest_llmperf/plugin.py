"""pytest glue of the core: options, marker, the ``llmperf`` fixture, verdicts on test outcomes;
the end of a session (save, reports, summary) is in plugin_finish.py, the options in
plugin_options.py. The features (llama2c, torch_models, profilers) are plugins of their own,
registered by their entry points; this module imports none of them.

Loading this module must stay cheap: it imports only the option parsers. Statistics, the store,
hardware detection and reporting are imported when a test records a metric or at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .api import (
    MARKER,
    MARKER_HELP,
    RECORDER,
    STATE,
    Session,
    fail,
    option_value,
    parse_options,
    session,
    uses_plugin_fixtures,
)
from .config import BASELINE_TIME_FACTOR, Config, ConfigError, MarkerOptions, budget_for, tolerance_for
from .plugin_options import OPTIONS, add_options, build_config, native_options

if TYPE_CHECKING:
    from .compare import Metric
    from .measure import MeasureSettings
    from .recorder import Recorder

__all__ = ["BASELINE_TIME_FACTOR", "MARKER", "RECORDER", "STATE", "Session", "build_config", "fail", "option_value",
           "session"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    from .plugin_history import register

    add_options(parser)
    register(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        cfg = build_config(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"llmperf: {exc}") from None
    native = parse_options(config, OPTIONS, native_options)
    if not hasattr(config, "workerinput"):
        _check_report_paths(cfg)
    state = Session(cfg, config)
    state.native = native
    config.stash[STATE] = state
    if not state.is_worker:
        from .plugin_finish import COLLECTOR, Collector

        collector = config.stash[COLLECTOR] = Collector(state)
        config.pluginmanager.register(collector, "llmperf-collector")
    from .plugin_history import configure as configure_history
    from .plugin_progress import configure as configure_progress

    configure_history(config, state)
    try:
        configure_progress(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"llmperf: {exc}") from None
    if not state.is_worker:
        from .plugin_history import expected

        collector.expect(lambda selected: expected(config, selected))
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
    if cfg.smoke:
        mode = "smoke run (one round per benchmark, nothing compared or saved)"
    if cfg.strict and not cfg.save_baseline:
        mode += " (strict)"
    if cfg.time_scale != 1.0:
        mode += f", budgets x{cfg.time_scale:g}"
    from .config import PROFILERS

    profiling = f", profiling {','.join(p for p in PROFILERS if p in cfg.profilers)}" if cfg.profilers else ""
    return [
        f"llmperf: node {cfg.node} ({cfg.node_source}), baselines {where} ({state.baseline_files} files), "
        f"tolerance {cfg.tolerance:.1%}, warmup {cfg.warmup}, {mode}{profiling}"
    ]


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """How many benchmark tests were selected, and the sum of their time budgets: the longest the
    measurements can take (the stop rule ends most earlier; builds and profiler runs come on top)."""
    state = config.stash.get(STATE, None)
    if state is None or state.config.skip:
        return []
    cfg = state.config
    bench = [item for item in items if MARKER in item.stash]
    if not bench:
        return []
    if cfg.smoke:
        return [f"llmperf: {len(bench)} benchmark tests, one round each (--llmperf-smoke)"]
    factor = BASELINE_TIME_FACTOR if cfg.save_baseline else 1
    total = sum(budget_for(cfg, item.stash[MARKER]) * factor for item in bench)
    minutes = f" ({total / 60:.0f} min)" if total >= 120 else ""
    seconds = f"{total:.1f}" if total < 10 else f"{total:.0f}"
    return [f"llmperf: {len(bench)} benchmark tests, time budgets {seconds} s{minutes} at most"]


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
    skip = state is not None and state.config.skip
    for item in items:
        if item.get_closest_marker("llmperf") is None:
            if not uses_plugin_fixtures(item):
                continue
            item.add_marker(pytest.mark.llmperf)  # so that -m "not llmperf" leaves benchmarks out
        if skip:
            item.add_marker(pytest.mark.skip(reason="a benchmark test, and --llmperf-skip skips them"))
        try:
            item.stash[MARKER] = _marker_options(item)
        except ConfigError as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None


def report_targets(cfg: Config) -> list[tuple[str, Path]]:
    """(option, path) of every report file this session may write; github-action-benchmark's
    option names two."""
    targets = [(option, path) for option, path in (("--llmperf-json", cfg.json_path),
                                                    ("--llmperf-markdown", cfg.markdown_path),
                                                    ("--llmperf-bmf", cfg.bmf_path),
                                                    ("--llmperf-html", cfg.html_path)) if path is not None]
    if cfg.gab_path is not None:
        from .exports import gab_paths

        targets += [("--llmperf-gab", path) for path in gab_paths(cfg.gab_path)]
    return targets


def _check_report_paths(cfg: Config) -> None:
    """Before any test runs: each report can be written, and no two reports share a file."""
    targets = report_targets(cfg)
    if not targets:
        return
    from .report import report_path_problem

    seen: dict[Path, str] = {}
    for option, path in targets:
        problem = report_path_problem(path)
        if problem:
            raise pytest.UsageError(f"llmperf: {option} {path}: {problem}")
        if path in seen and seen[path] != option:
            raise pytest.UsageError(f"llmperf: {seen[path]} and {option} are the same file {path}")
        seen[path] = option


def _check_save_targets(state: Session, items: list[pytest.Item]) -> None:
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


def _settings_for(state: Session, item: pytest.Item) -> MeasureSettings:
    from .measure import MeasureSettings

    cfg = state.config
    marker = item.stash.get(MARKER, None)
    max_time = budget_for(cfg, marker)  # command line, marker, ini, default; times --llmperf-time-scale
    if cfg.smoke:  # one round, no warm-up: the benchmark runs, its figures are shown, nothing is judged
        return MeasureSettings(warmup=0, min_rounds=1, max_time=0.0, adaptive=False, tolerance=cfg.tolerance,
                               confidence=cfg.confidence)
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
def llmperf(request: pytest.FixtureRequest) -> Recorder:
    """Record metrics of this test: ``llmperf.measure(fn, *args)`` times a callable (metric
    ``time``, seconds, lower is better); ``llmperf.record(name, samples, unit=..., higher_is_better=...)``
    records samples measured by the test. Each metric is compared with the node's baseline."""
    from .recorder import Recorder
    from .result import baseline_applies

    state = request.config.stash[STATE]
    item = request.node
    marker = item.stash.get(MARKER, None)
    baseline: dict[str, Metric] = {}
    if not state.config.save_baseline:
        metrics, digest, _fields, _path = state.store.lookup(item.nodeid)
        if metrics and baseline_applies(digest, state.machine()[2], state.config.force_compare):
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    from .plugin_progress import around_test

    try:
        with around_test(item.config, item.nodeid):
            result = yield
    except (pytest.skip.Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        # the test failed after recording metrics (a profiler that failed after the timed rounds,
        # say): they are still compared and reported; the failure stands, and a failed test never
        # goes into a saved baseline
        state = item.config.stash.get(STATE, None)
        if state is not None:
            _note_facts(state, item)
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
    _note_facts(state, item)
    failures = _evaluate_item(state, item)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if call.when == "call":
        _plain_properties(item)
    return report


def _plain_properties(item: pytest.Item) -> None:
    """Once the call's report holds the result (it travels in that report's user_properties, also
    from an xdist worker), put plain per-metric values in its place for the reports made later: the
    teardown report is the one JUnit XML takes its properties from, and a JSON blob there would be
    written as its Python repr. Per metric ``llmperf.<metric>.median``, ``.unit``, ``.status`` and
    ``.change`` (relative, positive = higher; empty when not compared)."""
    from .plugin_finish import FACTS, PROPERTY

    plain: list[tuple[str, object]] = []
    kept: list[tuple[str, object]] = []
    for name, value in item.user_properties:
        if name == FACTS:
            continue
        if name != PROPERTY:
            kept.append((name, value))
            continue
        for v in value.get("verdicts", ()) if isinstance(value, dict) else ():
            key = f"llmperf.{v.get('metric')}"
            change = v.get("change")
            plain += [(f"{key}.median", "" if v.get("current") is None else repr(float(v["current"]))),
                      (f"{key}.unit", str(v.get("unit") or "")),
                      (f"{key}.status", str(v.get("status") or "")),
                      (f"{key}.change", "" if change is None else f"{float(change):.6g}")]
    item.user_properties[:] = kept + plain


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


def _note_facts(state: Session, item: pytest.Item) -> None:
    """What the process that reports cannot know of a test that ran here (under xdist it has no
    items): its marker's profilers, and why pytest-benchmark's ``benchmark`` fixture, when the test
    asked for it, recorded nothing. In the report's user_properties, only when there is one."""
    from .plugin_finish import FACTS
    from .plugin_verdicts import benchmark_silence

    facts: dict[str, Any] = {}
    marker = item.stash.get(MARKER, None)
    if marker is not None and marker.profile:
        facts["profilers"] = sorted(marker.profile | state.config.profilers)
    silence = benchmark_silence(item, state.is_worker)
    if silence:
        facts["benchmark"] = silence
    if facts:
        item.user_properties.append((FACTS, facts))


def _evaluate_item(state: Session, item: pytest.Item) -> list[str]:
    """Compare the metrics the test recorded, attach the result to its report; failure lines."""
    from .plugin_finish import PROPERTY
    from .plugin_verdicts import benchmark_metric, evaluate

    recorder = item.stash.get(RECORDER, None)
    metrics = list(recorder.metrics.values()) if recorder is not None else []
    bench = benchmark_metric(item, {m.name for m in metrics})
    if bench is not None:
        metrics.append(bench)
    if not metrics and not (recorder is not None and recorder.artifacts):
        return []
    result, failures = evaluate(state, item, metrics)
    item.user_properties.append((PROPERTY, result.to_json()))
    return failures


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None or state.is_worker:
        return
    from .plugin_finish import COLLECTOR, finish

    finish(session, state, exitstatus, session.config.stash.get(COLLECTOR, None))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or state.is_worker:
        return
    # loaded at configure time with the Collector; the report module only when there is news
    from .plugin_finish import COLLECTOR, terminal_summary

    terminal_summary(terminalreporter, state, config.stash.get(COLLECTOR, None))
