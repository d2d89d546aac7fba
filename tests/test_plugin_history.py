"""The history glue: its option parsers, and (pytester, real sessions) the append at the end of a
session, the history reference, the change-point gate, the reference commit hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.api import Option, Value
from pytest_llmperf.config import ConfigError
from pytest_llmperf.plugin_history import DEFAULT_NIGHTS, OPTIONS, parse, parse_flag, parse_reference


@pytest.mark.parametrize(("raw", "expected"), [
    (None, ("saved", DEFAULT_NIGHTS)), ("saved", ("saved", DEFAULT_NIGHTS)), ("history", ("history", DEFAULT_NIGHTS)),
    ("history:5", ("history", 5)), (" HISTORY:3 ", ("history", 3)),
])
def test_parse_reference(raw, expected):
    assert parse_reference(raw, "--llmperf-baseline") == expected


@pytest.mark.parametrize(("raw", "fragment"), [
    ("history:0", "must be >= 1"), ("history:x", "expected a whole number"), ("saved:3", "expected 'saved'"),
    ("latest", "expected 'saved', 'history' or 'history:N'"), ("history:99999", "must be <= 1,000"),
])
def test_parse_reference_errors(raw, fragment):
    with pytest.raises(ConfigError, match=fragment) as exc:
        parse_reference(raw, "--llmperf-baseline")
    assert "--llmperf-baseline" in str(exc.value)


def _value(raw, source="LLMPERF_HISTORY_APPEND"):
    return Value(raw, source, Option("--llmperf-history-append", help=""))


@pytest.mark.parametrize(("raw", "expected"), [
    (True, True), (False, False), (None, False), ("1", True), ("yes", True), ("ON", True), ("0", False),
    ("false", False), ("", False),
])
def test_parse_flag(raw, expected):
    assert parse_flag(_value(raw)) is expected


def test_parse_flag_error_names_the_variable():
    with pytest.raises(ConfigError, match="LLMPERF_HISTORY_APPEND: invalid value 'maybe'"):
        parse_flag(_value("maybe"))


def _values(tmp_path: Path, **raw):
    return {o.key: Value(raw.get(o.key), o.flag if o.key in raw else None, o, tmp_path) for o in OPTIONS}


def test_parse_defaults_and_layout(tmp_path):
    opts = parse(_values(tmp_path), tmp_path / "baselines", "n1")
    assert (opts.reference, opts.append, opts.accept, opts.samples, opts.keep) == ("saved", False, False, 0, None)
    assert opts.directory == tmp_path / "baselines" / "n1" / "history"
    opts = parse(_values(tmp_path, llmperf_history_dir="hist", llmperf_accept=True, llmperf_history_keep="30",
                         llmperf_history_samples="50", llmperf_baseline="history:4"), tmp_path / "b", "n1")
    assert opts.directory == tmp_path / "hist" / "n1"
    assert (opts.reference, opts.nights, opts.append, opts.accept, opts.samples, opts.keep) == (
        "history", 4, True, True, 50, 30)


@pytest.mark.parametrize(("key", "raw", "fragment"), [
    ("llmperf_history_keep", "0", "--llmperf-history-keep: invalid value '0', must be >= 1"),
    ("llmperf_history_samples", "-1", "must be >= 0"),
    ("llmperf_history_samples", "5000", "must be <= 1,000"),
])
def test_parse_errors_name_the_option(tmp_path, key, raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse(_values(tmp_path, **{key: raw}), tmp_path, "n1")
