"""Options, ini values, environment variables and marker keywords, parsed once into frozen objects.

Nothing here imports pytest: the plugin module turns :class:`ConfigError` into ``pytest.UsageError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import OneLine
from .errors import short_repr as _short

DEFAULT_TOLERANCE = 0.05
DEFAULT_CONFIDENCE = 0.99
DEFAULT_NOISE_FLOOR = 0.01
DEFAULT_MIN_ROUNDS = 5
DEFAULT_MAX_TIME = 1.0
# a baseline is taken once and compared against every night: it gets three times the budget
BASELINE_TIME_FACTOR = 3
MAX_TIME_SCALE = 100.0  # --llmperf-time-scale: 100x a budget (100 s for the default) is the most a typo gets
MAX_TIME_FLAG = "--llmperf-max-time"
DEFAULT_MAX_WARMUP_ROUNDS = 20
# --llmperf-min-rounds, marker rounds= and a number of warm-up rounds: the minimum overrides the time
# budget, so an unbounded one (a typo such as 99999999999999999999) would run for ever
MAX_ROUNDS = 10_000
DEFAULT_BASELINE_DIR = "baselines"
NORMALIZE_CHOICES = ("auto", "on", "off")

Warmup = str | int  # "auto" or a number of rounds to discard


class ConfigError(OneLine, ValueError):
    """A bad option, ini value or marker keyword; the message is one line and names the culprit."""


_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


MAX_PERCENT = 10.0  # 1000%: anything larger is a typo, not a tolerance


def parse_fraction(text: Any, what: str) -> float:
    """Parse a relative amount. The rule leaves no room for guessing: a string must end in ``%``
    (``"5%"`` -> 0.05; ``"5"`` and ``"0.05"`` are refused, since ``5`` could mean 5% or 500%); a
    number is a fraction and must be below 1 (``0.05`` -> 0.05; ``5`` is refused). Command-line and
    ini values are strings, so they always need the ``%``. ``what`` names the option in errors."""
    if isinstance(text, bool):
        raise ConfigError(f"{what}: expected a percentage like '5%', got {text!r}")
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:
            raise ConfigError(
                f"{what}: invalid value {_short(text)}, far out of range; write a percentage like '5%'") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{what}: invalid value {text!r}, must be a non-negative percentage like '5%'")
        if value >= 1:
            raise ConfigError(f"{what}: invalid value {text!r}: a number is a fraction and must be below 1; "
                              f"write '{_pct_text(value)}' or {value / 100:g}")
        return value
    source = str(text).strip()
    if not source.endswith("%"):
        hint = f"'{source}%'" if _is_number(source) else "'5%'"
        raise ConfigError(f"{what}: invalid value {source!r}: write a percentage with '%', like {hint}")
    try:
        value = float(source[:-1].strip()) / 100.0
    except ValueError:
        raise ConfigError(f"{what}: invalid value {source!r}, expected a percentage like '5%'") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what}: invalid value {source!r}, must be a non-negative percentage")
    if value >= MAX_PERCENT:
        raise ConfigError(f"{what}: invalid value {source!r}, must be below {MAX_PERCENT:.0%}")
    return value


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _pct_text(value: float) -> str:
    return f"{value:g}%"


def parse_tolerance_spec(text: str, what: str = "--llmperf-tolerance") -> tuple[float | None, dict[str, float]]:
    """Parse ``"5%"``, ``"tok_per_s=3%"`` or ``"5%,tok_per_s=3%,time=10%"``.

    Returns the overall tolerance (or None when the text names only metrics) and per-metric ones.
    """
    overall: float | None = None
    per_metric: dict[str, float] = {}
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ConfigError(f"{what}: empty tolerance")
    for part in parts:
        if not part:
            raise ConfigError(f"{what}: empty item in {text!r}")
        if "=" in part:
            name, _, value = part.partition("=")
            name = name.strip()
            if not _METRIC_NAME.match(name):
                raise ConfigError(f"{what}: invalid metric name {name!r} in {text!r}")
            per_metric[name] = parse_fraction(value, f"{what} {name}")
        else:
            if overall is not None:
                raise ConfigError(f"{what}: two overall tolerances in {text!r}")
            overall = parse_fraction(part, what)
    return overall, per_metric


def parse_warmup(text: Any, what: str = "--llmperf-warmup") -> Warmup:
    """``"auto"`` or a non-negative whole number of rounds to discard."""
    if isinstance(text, bool):
        raise ConfigError(f"{what}: invalid value {text!r}, expected 'auto' or a number of rounds")
    if isinstance(text, int):
        value = text
    else:
        source = str(text).strip().lower()
        if source == "auto":
            return "auto"
        try:
            value = int(source)
        except ValueError:
            raise ConfigError(f"{what}: invalid value {_short(text)}, expected 'auto' or a number of rounds") from None
    if value < 0:
        raise ConfigError(f"{what}: invalid value {_short(text)}, the number of rounds must be >= 0")
    if value > MAX_ROUNDS:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be <= {MAX_ROUNDS:,} rounds")
    return value


def parse_positive_int(text: Any, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        if isinstance(text, bool):
            raise ValueError
        value = text if isinstance(text, int) else int(str(text).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: invalid value {_short(text)}, expected a whole number") from None
    if value < minimum:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be <= {maximum:,}")
    return value


MAX_SECONDS = 86400.0  # a day: a time budget or timeout beyond it is a typo


def parse_seconds(text: Any, what: str, maximum: float = MAX_SECONDS) -> float:
    try:
        if isinstance(text, bool):
            raise ValueError
        source = str(text).strip() if isinstance(text, str) else ""
        if source.endswith("ms"):
            value = float(source[:-2]) / 1000.0
        elif source.endswith("s"):
            value = float(source[:-1])
        else:
            value = float(text)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what}: invalid value {_short(text)}, expected seconds like 1.5 or '500ms'") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be a positive number of seconds")
    if value > maximum:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be at most {maximum:g} seconds")
    return value


def parse_time_scale(text: Any, what: str = "--llmperf-time-scale") -> float:
    """A factor applied to every time budget: a positive number, at most MAX_TIME_SCALE (``0.2``
    for a quick look, ``3`` for a quiet night). A ``%`` or a unit is refused: it is a factor."""
    try:
        if isinstance(text, bool):
            raise ValueError
        value = float(text.strip() if isinstance(text, str) else text)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what}: invalid value {_short(text)}, expected a factor like 0.2 or 3") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be a positive factor like 0.2 or 3")
    if value > MAX_TIME_SCALE:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be at most {MAX_TIME_SCALE:g}")
    return value


def parse_efficiency(text: Any, what: str) -> float:
    """A roofline efficiency in (0, 1]: a fraction (``0.7``) or a percentage (``70%``); the
    predicted times are divided by it (``--llmperf-roofline-fe``, ``--llmperf-roofline-hbme``)."""
    try:
        if isinstance(text, bool):
            raise ValueError
        source = text.strip() if isinstance(text, str) else text
        value = float(source[:-1]) / 100 if isinstance(source, str) and source.endswith("%") else float(source)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what}: invalid value {_short(text)}, expected an efficiency like 0.7 or 70%") from None
    if not math.isfinite(value) or not 0 < value <= 1:
        raise ConfigError(f"{what}: invalid value {_short(text)}, must be in (0, 1] (e.g. 0.7 or 70%)")
    return value


def parse_roofline_device(text: Any, what: str) -> str | None:
    """``node`` (None: the node's own probes, the default) or a device of the roofline's datasheet
    table, whose figures the suites' predictions then use."""
    name = str(text).strip()
    if name.lower() in ("", "node"):
        return None
    from .roofline.devices import DEVICES

    lookup = {k.lower(): k for k in DEVICES}
    if name.lower() not in lookup:
        raise ConfigError(f"{what}: unknown device {name!r} (known: node, {', '.join(DEVICES)})")
    return lookup[name.lower()]


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def parse_flag(text: Any, what: str) -> bool:
    """An on/off switch from the command line (a bool), an ini bool or an environment variable
    (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``): ``LLMPERF_STRICT=0`` is off,
    not a non-empty string taken as on."""
    if isinstance(text, bool) or text is None:
        return bool(text)
    source = str(text).strip().lower()
    if source in _TRUE:
        return True
    if source in _FALSE:
        return False
    raise ConfigError(f"{what}: invalid value {_short(text)}, expected 1/true/yes/on or 0/false/no/off")


def parse_confidence(text: Any, what: str = "--llmperf-confidence") -> float:
    value = parse_fraction(text, what)
    if not 0.5 <= value < 1.0:
        raise ConfigError(f"{what}: invalid value {text!r}, must be between 50% and 99.99%")
    return value


# "torch" profiles in process (the PyTorch profiler); the others wrap a benchmarked process and
# are named in pytest_llmperf.profilers.PROCESS_PROFILERS (kept in step by a test)
PROFILERS = ("torch", "perf-stat", "perf-record", "nsys", "instructions")
DEFAULT_PROFILE_STEPS = 3
# deterministic metrics get their own tight default tolerance: an overall --llmperf-tolerance
# sized for timing noise does not loosen them; naming them (instructions=1%) does
BUILTIN_METRIC_TOLERANCES = {"instructions": 0.001}
DEFAULT_ARTIFACTS_DIR = "llmperf-artifacts"


def parse_profilers(text: Any, what: str = "--llmperf-profile") -> frozenset[str]:
    """``"torch"`` or ``"perf-stat,instructions"`` (or a list of names) -> the set of profiler
    names; ``none`` or empty -> none."""
    if text is None:
        return frozenset()
    items = text if isinstance(text, (list, tuple, set, frozenset)) else str(text).split(",")
    parts = [str(p).strip().lower() for p in items if str(p).strip()]
    if parts == ["none"]:
        return frozenset()
    unknown = [p for p in parts if p not in PROFILERS]
    if unknown:
        raise ConfigError(f"{what}: unknown profiler {unknown[0]!r} (known: {', '.join(PROFILERS)})")
    return frozenset(parts)


def parse_normalize(text: Any, what: str = "--llmperf-normalize") -> str:
    if isinstance(text, bool):
        return "on" if text else "off"
    value = str(text).strip().lower()
    if value not in NORMALIZE_CHOICES:
        raise ConfigError(f"{what}: invalid value {text!r}, expected one of {', '.join(NORMALIZE_CHOICES)}")
    return value


class Config(NamedTuple):
    """Everything the plugin needs from the command line, ini file and environment, validated.

    (Named tuples, not dataclasses: they are immutable too, and define in a fraction of the time,
    which counts because every pytest session with the plugin installed builds one.)"""

    node: str
    node_source: str
    baseline_dir: Path
    save_baseline: bool = False
    tolerance: float = DEFAULT_TOLERANCE
    metric_tolerances: Mapping[str, float] = {}
    warmup: Warmup = "auto"
    min_rounds: int = DEFAULT_MIN_ROUNDS
    max_time: float = DEFAULT_MAX_TIME
    confidence: float = DEFAULT_CONFIDENCE
    noise_floor: float = DEFAULT_NOISE_FLOOR
    normalize: str = "auto"
    force_compare: bool = False
    require_baseline: bool = False
    report_only: bool = False
    json_path: Path | None = None
    markdown_path: Path | None = None
    bmf_path: Path | None = None  # --llmperf-bmf: Bencher Metric Format
    gab_path: Path | None = None  # --llmperf-gab: github-action-benchmark's two custom files
    html_path: Path | None = None  # --llmperf-html: the self-contained HTML report
    artifacts_dir: Path | None = None  # profiler outputs, <dir>/<node>/<test>/...; None: the default
    profilers: frozenset[str] = frozenset()  # --llmperf-profile: which profilers wrap the benchmarks
    profile_steps: int = DEFAULT_PROFILE_STEPS
    # --llmperf-strict: require a baseline, fail a gated metric that is not compared and a baseline test
    # or metric that did not record (see holes.py)
    strict: bool = False
    time_scale: float = 1.0  # --llmperf-time-scale: every budget, the markers' included, times this
    skip: bool = False  # --llmperf-skip: the benchmark tests (marked llmperf) are skipped
    # --llmperf-smoke: every benchmark runs one round, without warm-up; nothing compared, saved or appended
    smoke: bool = False
    # --llmperf-roofline-device/-fe/-hbme: what the suites' roofline predictions assume; None: the node
    roofline_device: str | None = None
    roofline_fe: float = 1.0
    roofline_hbme: float = 1.0
    # where each option given came from (api.Value.source: "--llmperf-max-time", "LLMPERF_NODE",
    # "ini llmperf_max_time"), by dest; an option not given is absent
    sources: Mapping[str, str] = {}

    @property
    def max_time_source(self) -> str | None:
        """Where ``max_time`` came from: the flag, ``ini llmperf_max_time``, or None (the default)."""
        return self.sources.get("llmperf_max_time")


class MarkerOptions(NamedTuple):
    """Keywords of ``@pytest.mark.llmperf(...)``; any other keyword is an error at collection."""

    tolerance: float | None = None
    tolerances: Mapping[str, float] = {}
    rounds: int | None = None
    warmup: Warmup | None = None
    max_time: float | None = None
    normalize: str | None = None
    profile: frozenset[str] | None = None  # profilers for this test, added to --llmperf-profile's

    @classmethod
    def keywords(cls) -> list[str]:
        return list(cls._fields)

    @classmethod
    def from_marker(cls, args: tuple[object, ...], kwargs: Mapping[str, Any], where: str) -> MarkerOptions:
        if args:
            raise ConfigError(f"{where}: @pytest.mark.llmperf takes keywords only, got positional {args!r}")
        unknown = sorted(set(kwargs) - set(cls.keywords()))
        if unknown:
            raise ConfigError(
                f"{where}: unknown @pytest.mark.llmperf keyword(s) {', '.join(unknown)}; "
                f"known: {', '.join(cls.keywords())}"
            )
        values: dict[str, Any] = {}
        if kwargs.get("tolerance") is not None:
            what = f"{where}: llmperf(tolerance=...)"
            if isinstance(kwargs["tolerance"], str):
                overall, per_metric = parse_tolerance_spec(kwargs["tolerance"], what)
            else:
                overall, per_metric = parse_fraction(kwargs["tolerance"], what), {}
            values["tolerance"] = overall
            if per_metric:
                values["tolerances"] = dict(per_metric)
        if kwargs.get("tolerances") is not None:
            spec = kwargs["tolerances"]
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where}: llmperf(tolerances=...) must be a dict of metric -> percentage")
            merged = dict(values.get("tolerances", {}))
            for name, value in spec.items():
                if not isinstance(name, str) or not _METRIC_NAME.match(name):
                    raise ConfigError(f"{where}: llmperf(tolerances=...) has an invalid metric name {name!r}")
                merged[name] = parse_fraction(value, f"{where}: llmperf(tolerances={{{name!r}: ...}})")
            values["tolerances"] = merged
        if kwargs.get("rounds") is not None:
            values["rounds"] = parse_positive_int(kwargs["rounds"], f"{where}: llmperf(rounds=...)", maximum=MAX_ROUNDS)
        if kwargs.get("warmup") is not None:
            values["warmup"] = parse_warmup(kwargs["warmup"], f"{where}: llmperf(warmup=...)")
        if kwargs.get("max_time") is not None:
            values["max_time"] = parse_seconds(kwargs["max_time"], f"{where}: llmperf(max_time=...)")
        if kwargs.get("normalize") is not None:
            values["normalize"] = parse_normalize(kwargs["normalize"], f"{where}: llmperf(normalize=...)")
        if kwargs.get("profile") is not None:
            values["profile"] = parse_profilers(kwargs["profile"], f"{where}: llmperf(profile=...)")
        return cls(**values)


def budget_for(config: Config, marker: MarkerOptions | None) -> float:
    """The time budget of one test's measurements, in seconds. The most specific setting wins,
    except that the command line beats the test's marker: a suite sets ``max_time`` per model, and
    a user who types ``--llmperf-max-time`` means it for every test (it is also how CI shortens or
    lengthens a whole run). So: ``--llmperf-max-time`` on the command line (or in ``addopts``),
    then the marker's ``max_time``, then ini ``llmperf_max_time``, then the default (1 s). The
    result is multiplied by ``--llmperf-time-scale``; a baseline save multiplies it by
    BASELINE_TIME_FACTOR on top (see plugin._settings_for)."""
    if config.max_time_source == MAX_TIME_FLAG or marker is None or marker.max_time is None:
        budget = config.max_time
    else:
        budget = marker.max_time
    return budget * config.time_scale


def tolerance_for(metric: str, config: Config, marker: MarkerOptions | None) -> float:
    """The tolerance in force for one metric of one test; the most specific setting wins:
    marker per-metric, marker overall, command line/ini per-metric, command line/ini overall.
    A deterministic metric with a built-in tolerance (``instructions``: 0.1%) keeps it unless
    it is named: marker per-metric, command line/ini per-metric, built-in."""
    if marker is not None and metric in marker.tolerances:
        return marker.tolerances[metric]
    if metric in BUILTIN_METRIC_TOLERANCES:
        return config.metric_tolerances.get(metric, BUILTIN_METRIC_TOLERANCES[metric])
    if marker is not None and marker.tolerance is not None:
        return marker.tolerance
    if metric in config.metric_tolerances:
        return config.metric_tolerances[metric]
    return config.tolerance
