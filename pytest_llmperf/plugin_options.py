"""The core glue's options: declared once (flag, ini key, environment variable, help), registered
in the ``llmperf`` group of ``--help``, and parsed once at configure time into the frozen core
Config and the native tooling's options. The features declare and parse their own (in their
plugin modules, each in its own group).

Time budgets (how long one ``llmperf.measure``, or a feature's rounds, may run), in this order
of precedence (config.budget_for):

1. ``--llmperf-max-time`` given on the command line (``addopts`` and ``PYTEST_ADDOPTS`` count as
   the command line): it wins over every test's marker, so a suite that sets a budget per model
   (``@pytest.mark.llmperf(max_time=...)``) still follows the one the user typed;
2. the test's marker ``max_time``;
3. ini ``llmperf_max_time``;
4. the default, 1 s.

``--llmperf-time-scale FACTOR`` (ini ``llmperf_time_scale``, env ``LLMPERF_TIME_SCALE``; above 0,
at most 100) then multiplies the budget, whichever of the four it came from; saving a baseline
multiplies it by 3 on top. A feature that stretches a budget for a slow step (torch's minimum
rounds) starts from the scaled value (``Recorder.settings_for``). Config keeps where each value
came from (``Config.sources``).

``--llmperf-strict`` (ini bool ``llmperf_strict``, env ``LLMPERF_STRICT=1``) implies
``--llmperf-require-baseline``; see holes.py for what else it fails.

Relative paths: one given on the command line or in an environment variable is taken from the
directory pytest was started in; one from the ini file, and the defaults, from the rootdir.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from .api import Option, Value, option_value, read_options
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
    parse_confidence,
    parse_efficiency,
    parse_flag,
    parse_fraction,
    parse_normalize,
    parse_positive_int,
    parse_profilers,
    parse_roofline_device,
    parse_seconds,
    parse_time_scale,
    parse_tolerance_spec,
    parse_warmup,
)
from .native import NativeOptions

GROUP = ("llmperf", "pytest-llmperf: LLM performance regression testing")

OPTIONS: tuple[Option, ...] = (
    Option("--llmperf-node", metavar="NAME", env="LLMPERF_NODE",
           help="node whose baselines to use (also env LLMPERF_NODE); default: SLURM node or partition, else the "
                "host name"),
    Option("--llmperf-baseline-dir", metavar="DIR", env="LLMPERF_BASELINE_DIR",
           help=f"baseline directory (also env LLMPERF_BASELINE_DIR); default: {DEFAULT_BASELINE_DIR} under the "
                f"rootdir"),
    Option("--llmperf-save-baseline", action="store_true", ini=False, dest="llmperf_save",
           help="save this run's metrics as the node's baseline (merged into what is there); never fails on a "
                "regression"),
    Option("--llmperf-tolerance", metavar="SPEC", action="append",
           help=f"allowed worsening, overall and/or per metric: '5%', 'tok_per_s=3%', '5%,time=10%'; repeatable; "
                f"default: {DEFAULT_TOLERANCE:.0%}"),
    Option("--llmperf-warmup", metavar="N|auto",
           help="warm-up rounds to discard, or 'auto' (until steady, within a bound); default: auto"),
    Option("--llmperf-min-rounds", metavar="N",
           help=f"minimum measured rounds per llmperf.measure; default: {DEFAULT_MIN_ROUNDS}"),
    Option("--llmperf-max-time", metavar="SECONDS",
           help=f"time budget per llmperf.measure (warm-up included); on the command line it wins over a test's "
                f"marker max_time, in the ini file the marker wins; default: {DEFAULT_MAX_TIME:g}"),
    Option("--llmperf-confidence", metavar="PCT",
           help=f"confidence level of the verdict's interval; default: {DEFAULT_CONFIDENCE:.0%}"),
    Option("--llmperf-noise-floor", metavar="PCT",
           help=f"session-to-session noise (relative sd) assumed on top of the samples' own; default: "
                f"{DEFAULT_NOISE_FLOOR:.1%}"),
    Option("--llmperf-normalize", metavar="auto|on|off",
           help="divide timed rounds by a machine-speed probe before comparing; default: auto"),
    Option("--llmperf-force-compare", action="store_true", ini=False,
           help="compare even when the machine fingerprint differs from the baseline's"),
    Option("--llmperf-require-baseline", action="store_true", ini_type="bool",
           help="fail tests whose metrics have no baseline (for CI)"),
    Option("--llmperf-strict", action="store_true", ini_type="bool", env="LLMPERF_STRICT",
           help="for CI: implies --llmperf-require-baseline; a gated metric not compared (the machine "
                "fingerprint differs) fails its test, and a test or metric of the node's baseline that was "
                "selected but did not record (skipped, errored, profiler off, pytest-benchmark disabled) fails "
                "the session (also env LLMPERF_STRICT=1)"),
    Option("--llmperf-time-scale", metavar="FACTOR", env="LLMPERF_TIME_SCALE",
           help="multiply every time budget, the markers' included, by FACTOR (e.g. 0.2 or 3; above 0, at most "
                "100; also env LLMPERF_TIME_SCALE); default: 1"),
    Option("--llmperf-skip", action="store_true", ini_type="bool", env="LLMPERF_SKIP",
           help="skip the benchmark tests (every test that uses the plugin's fixtures is marked llmperf, so "
                "-m 'not llmperf' deselects them instead); also env LLMPERF_SKIP=1"),
    Option("--llmperf-smoke", action="store_true", ini=False, env="LLMPERF_SMOKE",
           help="a fast functional check: every benchmark runs one round without warm-up, and nothing is "
                "compared, gated, saved or appended to the history (also env LLMPERF_SMOKE=1)"),
    Option("--llmperf-progress", metavar="auto|on|off", env="LLMPERF_PROGRESS",
           help="a live line per running benchmark (test, round, median, precision against the stop rule's "
                "target, time left): auto shows it when output is not captured (-s), on also with capture, "
                "off never (also env LLMPERF_PROGRESS); default: auto"),
    Option("--llmperf-report-only", action="store_true", ini=False,
           help="report verdicts but never fail a test on them"),
    Option("--llmperf-json", metavar="PATH", ini=False, help="write the run's results and verdicts as JSON"),
    Option("--llmperf-markdown", metavar="PATH", ini=False,
           help="write a Markdown summary (for a CI job summary or a PR comment)"),
    Option("--llmperf-html", metavar="PATH", ini=False,
           help="write a self-contained HTML report: per test and metric the history's trend with the reference "
                "band and change points, tonight's point, baseline vs current samples, regressions first"),
    Option("--llmperf-bmf", metavar="PATH", ini=False,
           help="write the run's medians with their intervals in Bencher Metric Format (bencher run --adapter json)"),
    Option("--llmperf-gab", metavar="PATH", ini=False,
           help="write github-action-benchmark's custom input: PATH's stem + -bigger.json (customBiggerIsBetter) and "
                "+ -smaller.json (customSmallerIsBetter), each when it has entries; a directory: llmperf-*.json in it"),
    Option("--llmperf-profile", metavar="NAMES",
           help="profile the benchmarks with these profilers, in runs separate from the timed ones: torch "
                "(the PyTorch profiler's operator table), perf-stat (counters as metrics), perf-record (perf.data "
                "and top symbols), nsys (CUDA kernel summary), instructions (valgrind instruction count, "
                "deterministic); comma-separated; default: none"),
    Option("--llmperf-profile-steps", metavar="N",
           help="steps (or decoded tokens' generations) run under a profiler; default: 3"),
    Option("--llmperf-artifacts", metavar="DIR", env="LLMPERF_ARTIFACTS",
           help=f"where profiler outputs go, as DIR/<node>/<test>/... (also env LLMPERF_ARTIFACTS); "
                f"default: {DEFAULT_ARTIFACTS_DIR} under the rootdir"),
    Option("--llmperf-roofline-device", metavar="node|NAME",
           help="what the suites' roofline predictions (pred_tok_per_s, pred_ms_per_step, efficiency) assume: "
                "'node' (this node's bandwidth probe and matmul peak) or a datasheet device (a100-sxm-80gb, "
                "h100-sxm-80gb, l4, ...; `pytest-llmperf roofline --help`); default: node"),
    Option("--llmperf-roofline-fe", metavar="F",
           help="flops efficiency in (0, 1] the roofline predictions assume (0.7 or 70%); default: 1"),
    Option("--llmperf-roofline-hbme", metavar="F",
           help="memory efficiency in (0, 1] the roofline predictions assume (0.9 or 90%); default: 1"),
    # the native tooling's, shared by every feature that builds C or reads the bandwidth
    Option("--llmperf-cc", metavar="CC", env="LLMPERF_CC",
           help="C compiler for llama2.c builds, the bandwidth probe and the profilers' wrapper (also env "
                "LLMPERF_CC); default: cc"),
    Option("--llmperf-cache-dir", metavar="DIR", env="LLMPERF_CACHE_DIR",
           help="where builds, synthetic models and the node's bandwidth are kept (also env LLMPERF_CACHE_DIR); "
                "default: $XDG_CACHE_HOME/pytest-llmperf or ~/.cache/pytest-llmperf"),
)


def add_options(parser: pytest.Parser) -> None:
    from .api import add_options as add

    add(parser, *GROUP, OPTIONS)


def _rooted(config: pytest.Config, value: Value, default: str) -> Path:
    """A path option with a default under the rootdir."""
    return value.path() or config.rootpath / default


def build_config(config: pytest.Config) -> Config:
    """The core Config from the options (ConfigError naming the option or ini key of a bad value)."""
    from .node import auto_node_name, validate_node_name

    values = read_options(config, OPTIONS)
    node, source = values["llmperf_node"].raw, values["llmperf_node"].source
    if node is None:
        default = auto_node_name()
        hooked = config.hook.pytest_llmperf_node_name(config=config, default=default)
        node, source = (hooked, "pytest_llmperf_node_name hook") if hooked else (default, "automatic")
    try:
        node = validate_node_name(str(node))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None

    tolerance, per_metric = DEFAULT_TOLERANCE, {}
    specs = values["llmperf_tolerance"]
    for spec in ([specs.raw] if isinstance(specs.raw, str) else specs.raw or []):
        overall, metrics = parse_tolerance_spec(spec, specs.where)
        if overall is not None:
            tolerance = overall
        per_metric.update(metrics)

    def parsed(parse: Callable[..., Any], dest: str, default: Any, **kw: Any) -> Any:
        value = values[dest]
        return parse(default if value.raw is None else value.raw, value.where, **kw)

    def flag(dest: str) -> bool:
        return bool(values[dest].raw)

    strict = parse_flag(values["llmperf_strict"].raw, values["llmperf_strict"].where)
    skip = parse_flag(values["llmperf_skip"].raw, values["llmperf_skip"].where)
    smoke = parse_flag(values["llmperf_smoke"].raw, values["llmperf_smoke"].where)
    if smoke:
        for dest, on, what in (("llmperf_save", flag("llmperf_save"), "save a baseline"),
                               ("llmperf_strict", strict, "be strict"),
                               ("llmperf_require_baseline", flag("llmperf_require_baseline"), "require a baseline")):
            if on:
                raise ConfigError(f"{values['llmperf_smoke'].where}: a smoke run (one round, nothing compared) "
                                  f"cannot {what}: drop {values[dest].where} or the smoke option")
    return Config(
        node=node,
        node_source=source or "automatic",
        baseline_dir=_rooted(config, values["llmperf_baseline_dir"], DEFAULT_BASELINE_DIR),
        save_baseline=flag("llmperf_save"),
        tolerance=tolerance,
        metric_tolerances=per_metric,
        warmup=parsed(parse_warmup, "llmperf_warmup", "auto"),
        min_rounds=parsed(parse_positive_int, "llmperf_min_rounds", DEFAULT_MIN_ROUNDS, maximum=MAX_ROUNDS),
        max_time=parsed(parse_seconds, "llmperf_max_time", DEFAULT_MAX_TIME),
        confidence=parsed(parse_confidence, "llmperf_confidence", DEFAULT_CONFIDENCE),
        noise_floor=parsed(parse_fraction, "llmperf_noise_floor", DEFAULT_NOISE_FLOOR),
        normalize=parsed(parse_normalize, "llmperf_normalize", "auto"),
        force_compare=flag("llmperf_force_compare"),
        require_baseline=flag("llmperf_require_baseline") or strict,
        report_only=flag("llmperf_report_only") or smoke,
        json_path=values["llmperf_json"].path(),
        markdown_path=values["llmperf_markdown"].path(),
        bmf_path=values["llmperf_bmf"].path(),
        html_path=values["llmperf_html"].path(),
        gab_path=values["llmperf_gab"].path(),
        artifacts_dir=_rooted(config, values["llmperf_artifacts"], DEFAULT_ARTIFACTS_DIR),
        profilers=parsed(parse_profilers, "llmperf_profile", None),
        profile_steps=parsed(parse_positive_int, "llmperf_profile_steps", DEFAULT_PROFILE_STEPS),
        strict=strict,
        time_scale=parsed(parse_time_scale, "llmperf_time_scale", 1.0),
        skip=skip,
        smoke=smoke,
        roofline_device=parsed(parse_roofline_device, "llmperf_roofline_device", "node"),
        roofline_fe=parsed(parse_efficiency, "llmperf_roofline_fe", 1.0),
        roofline_hbme=parsed(parse_efficiency, "llmperf_roofline_hbme", 1.0),
        sources={dest: value.source for dest, value in values.items() if value.source is not None},
    )


def native_options(values: Mapping[str, Value]) -> NativeOptions:
    """The C compiler and the cache directory; a compiler given by its path must be an executable
    file (a bare name not on PATH fails the tests that build, and lets the others run)."""
    import os

    from .fileutil import executable_problem, is_path

    cc = values["llmperf_cc"]
    native = NativeOptions(cc=os.path.expanduser(str(cc.raw)) if cc.raw else "cc")
    if cc.raw:
        problem = executable_problem(native.cc) if is_path(native.cc) else None
        if problem is not None:
            raise ConfigError(f"llmperf: {cc.where} {cc.raw}: {problem}")
    cache = values["llmperf_cache_dir"].path()
    return NativeOptions(cc=native.cc, cache_dir=cache) if cache else native


__all__ = ["GROUP", "OPTIONS", "add_options", "build_config", "native_options", "option_value"]
