"""Unit tests of pytest_llmperf.config: parsers, marker keywords, tolerance precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.config import (
    Config,
    ConfigError,
    MarkerOptions,
    parse_confidence,
    parse_flag,
    parse_fraction,
    parse_normalize,
    parse_positive_int,
    parse_seconds,
    parse_time_scale,
    parse_tolerance_spec,
    parse_warmup,
    tolerance_for,
)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- parse_fraction -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("5%", 0.05), (" 5 % ", 0.05), ("0.5%", 0.005), ("0%", 0.0), (0.05, 0.05),
    (0, 0.0), ("150%", 1.5), (0.999, 0.999), ("999%", 9.99),
])
def test_parse_fraction_accepts(text, value):
    assert parse_fraction(text, "--opt") == pytest.approx(value)


@pytest.mark.parametrize("text, fragment", [
    ("abc", "invalid value 'abc': write a percentage with '%', like '5%'"),
    ("%", "invalid value '%'"),
    ("5%%", "invalid value '5%%'"),
    ("-5%", "invalid value '-5%', must be a non-negative"),
    (-0.1, "invalid value -0.1, must be a non-negative"),
    ("nan", "invalid value 'nan': write a percentage with '%'"),
    ("inf%", "invalid value 'inf%'"),
    ("1000%", "invalid value '1000%', must be below 1000%"),
    # the rule: a string needs "%", a number is a fraction below 1 (issue 11, item 1: "5" was 500%)
    ("5", "invalid value '5': write a percentage with '%', like '5%'"),
    ("0.05", "invalid value '0.05': write a percentage with '%', like '0.05%'"),
    (5, "invalid value 5: a number is a fraction and must be below 1; write '5%' or 0.05"),
    (1, "invalid value 1: a number is a fraction and must be below 1; write '1%' or 0.01"),
    (10**400, "far out of range"),
    (1e300, "a number is a fraction and must be below 1"),
    (True, "expected a percentage like '5%', got True"),
])
def test_parse_fraction_rejects(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_fraction(text, "--llmperf-tolerance")
    msg = one_line(exc)
    assert msg.startswith("--llmperf-tolerance: ")
    assert fragment in msg


# -- parse_tolerance_spec -----------------------------------------------------------------------

def test_tolerance_spec_overall_only():
    assert parse_tolerance_spec("5%") == (pytest.approx(0.05), {})


def test_tolerance_spec_metric_only():
    overall, per = parse_tolerance_spec("tok_per_s=3%")
    assert overall is None
    assert per == {"tok_per_s": pytest.approx(0.03)}


def test_tolerance_spec_mixed_with_spaces():
    overall, per = parse_tolerance_spec(" 5% , tok_per_s = 3% ,time=10%, mem.peak-rss=20%")
    assert overall == pytest.approx(0.05)
    assert per == {"tok_per_s": pytest.approx(0.03), "time": pytest.approx(0.10), "mem.peak-rss": pytest.approx(0.2)}


@pytest.mark.parametrize("text, fragment", [
    ("", "empty tolerance"),
    (" , ", "empty tolerance"),
    ("5%,", "empty item in '5%,'"),
    ("5%,,time=1%", "empty item"),
    ("5%,6%", "two overall tolerances in '5%,6%'"),
    ("bad name=3%", "invalid metric name 'bad name'"),
    ("=3%", "invalid metric name ''"),
    ("9x=3%", "invalid metric name '9x'"),
    ("time=abc", "--llmperf-tolerance time: invalid value 'abc'"),
    ("time=-1%", "--llmperf-tolerance time: invalid value '-1%'"),
])
def test_tolerance_spec_errors(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_tolerance_spec(text)
    msg = one_line(exc)
    assert msg.startswith("--llmperf-tolerance")
    assert fragment in msg


def test_tolerance_spec_names_the_option_given():
    with pytest.raises(ConfigError, match=r"^llmperf_tolerance \(ini\): two overall"):
        parse_tolerance_spec("1%,2%", "llmperf_tolerance (ini)")


# -- parse_warmup -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("auto", "auto"), (" AUTO ", "auto"), ("3", 3), (" 0 ", 0), (2, 2), (0, 0)])
def test_parse_warmup_accepts(text, value):
    assert parse_warmup(text) == value


@pytest.mark.parametrize("text, fragment", [
    ("-1", "invalid value '-1', the number of rounds must be >= 0"),
    (-2, "invalid value -2, the number of rounds must be >= 0"),
    ("sometimes", "invalid value 'sometimes', expected 'auto' or a number of rounds"),
    ("2.5", "invalid value '2.5'"),
    (True, "invalid value True"),
])
def test_parse_warmup_rejects(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_warmup(text)
    msg = one_line(exc)
    assert msg.startswith("--llmperf-warmup: ")
    assert fragment in msg


# -- parse_positive_int -------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("5", 5), (" 12 ", 12), (7, 7), (1, 1)])
def test_parse_positive_int_accepts(text, value):
    assert parse_positive_int(text, "--llmperf-min-rounds") == value


def test_parse_positive_int_minimum():
    assert parse_positive_int("3", "--x", minimum=3) == 3
    with pytest.raises(ConfigError, match=r"^--x: invalid value '2', must be >= 3$"):
        parse_positive_int("2", "--x", minimum=3)


@pytest.mark.parametrize("text, fragment", [
    ("0", "invalid value '0', must be >= 1"),
    (-3, "invalid value -3, must be >= 1"),
    ("many", "invalid value 'many', expected a whole number"),
    ("2.5", "invalid value '2.5', expected a whole number"),
    (True, "invalid value True, expected a whole number"),
])
def test_parse_positive_int_rejects(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_positive_int(text, "--llmperf-min-rounds")
    msg = one_line(exc)
    assert msg.startswith("--llmperf-min-rounds: ")
    assert fragment in msg


# -- parse_seconds ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1.5", 1.5), (" 2 ", 2.0), ("500ms", 0.5), ("250 ms", 0.25), ("3s", 3.0), (2, 2.0), (0.25, 0.25),
])
def test_parse_seconds_accepts(text, value):
    assert parse_seconds(text, "--llmperf-max-time") == pytest.approx(value)


@pytest.mark.parametrize("text, fragment", [
    ("0", "invalid value '0', must be a positive number of seconds"),
    (-1, "invalid value -1, must be a positive"),
    ("inf", "invalid value 'inf', must be a positive"),
    ("nan", "invalid value 'nan'"),
    ("soon", "invalid value 'soon', expected seconds like 1.5 or '500ms'"),
    ("ms", "invalid value 'ms', expected seconds"),
    ("5min", "invalid value '5min'"),
    (True, "invalid value True, expected seconds"),
])
def test_parse_seconds_rejects(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_seconds(text, "--llmperf-max-time")
    msg = one_line(exc)
    assert msg.startswith("--llmperf-max-time: ")
    assert fragment in msg


@pytest.mark.parametrize("text", [[1.0], ("1",)])
def test_parse_seconds_rejects_non_numbers_with_a_config_error(text):
    # a marker such as llmperf(max_time=[1]) must be a usage error, not an internal TypeError
    with pytest.raises(ConfigError) as exc:
        parse_seconds(text, "--llmperf-max-time")
    assert "--llmperf-max-time" in one_line(exc)


# -- parse_confidence / parse_normalize ---------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("99%", 0.99), ("95%", 0.95), (0.999, 0.999), ("50%", 0.5), ("99.99%", 0.9999),
])
def test_parse_confidence_accepts(text, value):
    assert parse_confidence(text) == pytest.approx(value)


@pytest.mark.parametrize("text, fragment", [
    ("100%", "invalid value '100%', must be between 50% and 99.99%"),
    ("40%", "invalid value '40%', must be between"),
    (1, "invalid value 1: a number is a fraction and must be below 1"),
    ("99", "invalid value '99': write a percentage with '%', like '99%'"),
    ("0.99", "invalid value '0.99': write a percentage with '%'"),
    ("sure", "invalid value 'sure'"),
])
def test_parse_confidence_rejects(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_confidence(text)
    msg = one_line(exc)
    assert msg.startswith("--llmperf-confidence: ")
    assert fragment in msg


@pytest.mark.parametrize("text, value", [
    ("auto", "auto"), ("ON", "on"), (" off ", "off"), (True, "on"), (False, "off"),
])
def test_parse_normalize_accepts(text, value):
    assert parse_normalize(text) == value


def test_parse_normalize_rejects_and_lists_choices():
    with pytest.raises(ConfigError) as exc:
        parse_normalize("sometimes")
    assert one_line(exc) == "--llmperf-normalize: invalid value 'sometimes', expected one of auto, on, off"


# -- MarkerOptions ------------------------------------------------------------------------------

WHERE = "suites/test_x.py::test_y"


def test_marker_defaults():
    m = MarkerOptions.from_marker((), {}, WHERE)
    assert m == MarkerOptions()
    assert m.tolerance is None and dict(m.tolerances) == {} and m.rounds is None
    assert m.warmup is None and m.max_time is None and m.normalize is None


def test_marker_all_keywords():
    m = MarkerOptions.from_marker((), {
        "tolerance": "5%", "tolerances": {"tok_per_s": "2%"}, "rounds": 7, "warmup": "3",
        "max_time": "500ms", "normalize": "OFF",
    }, WHERE)
    assert m.tolerance == pytest.approx(0.05)
    assert dict(m.tolerances) == {"tok_per_s": pytest.approx(0.02)}
    assert m.rounds == 7 and m.warmup == 3 and m.max_time == pytest.approx(0.5) and m.normalize == "off"


def test_marker_tolerance_number_and_spec():
    assert MarkerOptions.from_marker((), {"tolerance": 0.1}, WHERE).tolerance == pytest.approx(0.1)
    m = MarkerOptions.from_marker((), {"tolerance": "4%,time=8%"}, WHERE)
    assert m.tolerance == pytest.approx(0.04)
    assert dict(m.tolerances) == {"time": pytest.approx(0.08)}
    m = MarkerOptions.from_marker((), {"tolerance": "time=8%"}, WHERE)
    assert m.tolerance is None and dict(m.tolerances) == {"time": pytest.approx(0.08)}


def test_marker_tolerances_dict_overrides_spec_per_metric():
    m = MarkerOptions.from_marker((), {"tolerance": "4%,time=8%,mem=1%", "tolerances": {"time": 0.2}}, WHERE)
    assert dict(m.tolerances) == {"time": pytest.approx(0.2), "mem": pytest.approx(0.01)}


def test_marker_unknown_keyword_lists_known_ones():
    with pytest.raises(ConfigError) as exc:
        MarkerOptions.from_marker((), {"tolerence": "5%", "iterations": 3}, WHERE)
    msg = one_line(exc)
    assert msg.startswith(WHERE + ": ")
    assert "unknown @pytest.mark.llmperf keyword(s) iterations, tolerence" in msg
    assert "known: tolerance, tolerances, rounds, warmup, max_time, normalize" in msg


def test_marker_positional_arguments_rejected():
    with pytest.raises(ConfigError) as exc:
        MarkerOptions.from_marker(("5%",), {}, WHERE)
    msg = one_line(exc)
    assert msg.startswith(WHERE + ": ") and "keywords only" in msg and "'5%'" in msg


@pytest.mark.parametrize("kwargs, fragment", [
    ({"tolerance": "lots"}, "llmperf(tolerance=...): invalid value 'lots'"),
    ({"tolerance": 50}, "llmperf(tolerance=...): invalid value 50: a number is a fraction and must be below 1"),
    ({"tolerance": 5}, "llmperf(tolerance=...): invalid value 5: a number is a fraction"),
    ({"tolerance": "5"}, "llmperf(tolerance=...): invalid value '5': write a percentage with '%'"),
    ({"tolerance": 10**400}, "llmperf(tolerance=...): invalid value 1000000000000000000000000000000000000..."),
    ({"tolerances": {"time": 5}}, "llmperf(tolerances={'time': ...}): invalid value 5: a number is a fraction"),
    ({"max_time": 10**400}, "llmperf(max_time=...): invalid value 1000000000000000000000000000000000000..."),
    ({"max_time": 1e9}, "llmperf(max_time=...): invalid value 1000000000.0, must be at most 86400 seconds"),
    ({"rounds": 10**400}, "llmperf(rounds=...): invalid value 1000000000000000000000000000000000000..."),
    ({"rounds": 99999999999999999999}, "llmperf(rounds=...): invalid value 99999999999999999999, must be <= 10,000"),
    ({"warmup": 10**30}, "llmperf(warmup=...): invalid value 1000000000000000000000000000000, must be <= 10,000"),
    ({"tolerances": "time=5%"}, "llmperf(tolerances=...) must be a dict"),
    ({"tolerances": {"bad name": 0.1}}, "invalid metric name 'bad name'"),
    ({"tolerances": {"time": "x"}}, "llmperf(tolerances={'time': ...}): invalid value 'x'"),
    ({"rounds": 0}, "llmperf(rounds=...): invalid value 0, must be >= 1"),
    ({"warmup": "never"}, "llmperf(warmup=...): invalid value 'never'"),
    ({"max_time": "-1"}, "llmperf(max_time=...): invalid value '-1'"),
    ({"normalize": "maybe"}, "llmperf(normalize=...): invalid value 'maybe'"),
])
def test_marker_bad_values_name_the_test_keyword_and_value(kwargs, fragment):
    with pytest.raises(ConfigError) as exc:
        MarkerOptions.from_marker((), kwargs, WHERE)
    msg = one_line(exc)
    assert msg.startswith(WHERE + ": ")
    assert fragment in msg


def test_marker_bad_max_time_type_is_a_config_error():
    with pytest.raises(ConfigError) as exc:
        MarkerOptions.from_marker((), {"max_time": [1]}, WHERE)
    assert "llmperf(max_time=...)" in one_line(exc)


# -- tolerance_for ------------------------------------------------------------------------------

def make_config(**kw) -> Config:
    return Config(node="n", node_source="test", baseline_dir=Path("baselines"), **kw)


def test_tolerance_default_and_config_overall():
    assert tolerance_for("time", make_config(), None) == 0.05
    assert tolerance_for("time", make_config(tolerance=0.1), None) == 0.1


def test_tolerance_precedence():
    config = make_config(tolerance=0.10, metric_tolerances={"time": 0.20, "tok": 0.30})
    marker = MarkerOptions(tolerance=0.40, tolerances={"time": 0.50})
    # marker per-metric beats everything
    assert tolerance_for("time", config, marker) == 0.50
    # marker overall beats config per-metric and overall
    assert tolerance_for("tok", config, marker) == 0.40
    assert tolerance_for("mem", config, marker) == 0.40
    # marker without tolerances: config per-metric, then config overall
    empty = MarkerOptions()
    assert tolerance_for("tok", config, empty) == 0.30
    assert tolerance_for("mem", config, empty) == 0.10
    assert tolerance_for("tok", config, None) == 0.30
    # marker per-metric only: other metrics fall through to the config
    only_time = MarkerOptions(tolerances={"time": 0.50})
    assert tolerance_for("time", config, only_time) == 0.50
    assert tolerance_for("tok", config, only_time) == 0.30
    assert tolerance_for("mem", config, only_time) == 0.10


def test_tolerance_zero_in_marker_is_respected():
    config = make_config(tolerance=0.10)
    assert tolerance_for("time", config, MarkerOptions(tolerance=0.0)) == 0.0
    assert tolerance_for("time", config, MarkerOptions(tolerances={"time": 0.0})) == 0.0


def test_instructions_keep_their_tight_tolerance_unless_named():
    from pytest_llmperf.config import BUILTIN_METRIC_TOLERANCES

    assert BUILTIN_METRIC_TOLERANCES["instructions"] == 0.001
    loose = make_config(tolerance=0.2)
    marker = MarkerOptions(tolerance=0.3)
    # an overall tolerance (command line or marker) sized for timing noise does not loosen it
    assert tolerance_for("instructions", loose, marker) == 0.001
    assert tolerance_for("tok_per_s", loose, marker) == 0.3
    # naming it does
    assert tolerance_for("instructions", make_config(metric_tolerances={"instructions": 0.01}), marker) == 0.01
    assert tolerance_for("instructions", loose, MarkerOptions(tolerances={"instructions": 0.02})) == 0.02


def test_marker_profile_keyword():
    m = MarkerOptions.from_marker((), {"profile": "perf-stat, Instructions"}, "t.py::t")
    assert m.profile == frozenset({"perf-stat", "instructions"})
    assert MarkerOptions.from_marker((), {"profile": ["nsys"]}, "w").profile == frozenset({"nsys"})
    with pytest.raises(ConfigError) as exc:
        MarkerOptions.from_marker((), {"profile": "perf-stat,vtune"}, "t.py::t")
    assert one_line(exc) == ("t.py::t: llmperf(profile=...): unknown profiler 'vtune' "
                             "(known: torch, perf-stat, perf-record, nsys, instructions)")


# -- parse_time_scale, parse_flag (issue 13) ---------------------------------------------------

@pytest.mark.parametrize("text, value", [("0.2", 0.2), (" 3 ", 3.0), (1, 1.0), ("100", 100.0), (0.001, 0.001)])
def test_parse_time_scale_accepts(text, value):
    assert parse_time_scale(text) == pytest.approx(value)


@pytest.mark.parametrize("text, fragment", [
    ("0", "must be a positive factor"), ("-1", "must be a positive factor"), ("nan", "must be a positive factor"),
    ("inf", "must be a positive factor"), ("100.5", "must be at most 100"), ("2x", "expected a factor"),
    ("20%", "expected a factor"), (True, "expected a factor"), ([2], "expected a factor"), ("", "expected a factor"),
])
def test_parse_time_scale_rejects(text, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_time_scale(text, "ini llmperf_time_scale")
    msg = one_line(exc)
    assert msg.startswith("ini llmperf_time_scale: invalid value ") and fragment in msg


@pytest.mark.parametrize("text, value", [
    (True, True), (False, False), (None, False), ("1", True), ("yes", True), ("ON", True), ("true", True),
    ("0", False), ("", False), ("no", False), ("Off", False), ("false", False),
])
def test_parse_flag(text, value):
    assert parse_flag(text, "LLMPERF_STRICT") is value


def test_parse_flag_rejects_a_guess():
    with pytest.raises(ConfigError) as exc:
        parse_flag("2", "LLMPERF_STRICT")
    assert one_line(exc) == "LLMPERF_STRICT: invalid value '2', expected 1/true/yes/on or 0/false/no/off"


def test_config_defaults_of_strict_and_scale():
    cfg = Config(node="n", node_source="x", baseline_dir=Path("b"))
    assert cfg.strict is False and cfg.time_scale == 1.0 and cfg.max_time_source is None and cfg.sources == {}
