"""Property-based fuzzing of the core's parsers and loaders (issue 11): options and marker
keywords, node names, baseline files, llmperf.record, and the comparison and reports fed with what
those let through. The property everywhere: only the module's own error class escapes, with a
one-line message, and whatever is accepted can be compared, reported and stored."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

from fuzzing import fuzz, only_raises
from hypothesis import strategies as st

from pytest_llmperf import compare, config, report, report_terminal
from pytest_llmperf.baseline import BaselineError, BaselineFile, metric_from_json, metric_to_json
from pytest_llmperf.compare import STATUSES, Metric, compare_metric
from pytest_llmperf.config import ConfigError, MarkerOptions
from pytest_llmperf.measure import MeasureSettings
from pytest_llmperf.node import sanitize_node_name, validate_node_name
from pytest_llmperf.recorder import Recorder, RecordError

# -- what users type ------------------------------------------------------------------------------

NUMBER_TEXT = st.sampled_from(["5", "0.05", "5%", " 5 % ", "-5%", "1e400%", "nan%", "inf", "1_000%", "٥%",
                               "0%", "999.9%", "1000%", "%", "", "10**400", "0x10%", "5%%", "1e-320%"])
ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), NUMBER_TEXT,
    st.binary(max_size=10), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@fuzz(ANY_SCALAR)
def test_parse_fraction_returns_a_bounded_fraction_or_a_config_error(value):
    result = only_raises(ConfigError, config.parse_fraction, value, "--opt")
    if result is not None:
        assert math.isfinite(result) and 0 <= result < config.MAX_PERCENT
        if not isinstance(value, str):
            assert result < 1  # a number is a fraction
        else:
            assert value.strip().endswith("%")


@fuzz(st.one_of(st.text(max_size=60), st.lists(NUMBER_TEXT, max_size=4).map(",".join),
                st.lists(st.tuples(st.sampled_from(["tok_per_s", "time", "a.b-c", "bad name", "", "é"]), NUMBER_TEXT),
                         max_size=4).map(lambda items: ",".join(f"{k}={v}" for k, v in items))))
def test_tolerance_specs(text):
    result = only_raises(ConfigError, config.parse_tolerance_spec, text, "--llmperf-tolerance")
    if result is not None:
        overall, per_metric = result
        for value in [overall, *per_metric.values()]:
            assert value is None or 0 <= value < config.MAX_PERCENT


@fuzz(ANY_SCALAR)
def test_whole_numbers_seconds_warmup_confidence_normalize_profilers(value):
    n = only_raises(ConfigError, config.parse_positive_int, value, "--opt", maximum=config.MAX_ROUNDS)
    assert n is None or 1 <= n <= config.MAX_ROUNDS
    t = only_raises(ConfigError, config.parse_seconds, value, "--opt")
    assert t is None or 0 < t <= config.MAX_SECONDS
    w = only_raises(ConfigError, config.parse_warmup, value, "--opt")
    assert w is None or w == "auto" or 0 <= w <= config.MAX_ROUNDS
    c = only_raises(ConfigError, config.parse_confidence, value)
    assert c is None or 0.5 <= c < 1
    only_raises(ConfigError, config.parse_normalize, value)
    p = only_raises(ConfigError, config.parse_profilers, value)
    assert p is None or p <= set(config.PROFILERS)


MARKER_KEYS = st.sampled_from(["tolerance", "tolerances", "rounds", "warmup", "max_time", "normalize", "profile",
                               "tolerence", "args"])


@fuzz(st.dictionaries(MARKER_KEYS, st.one_of(ANY_SCALAR, st.dictionaries(st.text(max_size=8), ANY_SCALAR, max_size=3)),
                      max_size=4),
      st.lists(st.integers(), max_size=1))
def test_marker_keywords(kwargs, args):
    options = only_raises(ConfigError, MarkerOptions.from_marker, tuple(args), kwargs, "t.py::t")
    if options is not None:
        assert options.tolerance is None or 0 <= options.tolerance < config.MAX_PERCENT
        assert options.rounds is None or 1 <= options.rounds <= config.MAX_ROUNDS
        assert options.max_time is None or 0 < options.max_time <= config.MAX_SECONDS


@fuzz(st.one_of(st.text(max_size=300), st.none()))
def test_node_names(name):
    safe = sanitize_node_name(name)
    assert validate_node_name(safe) == safe
    if isinstance(name, str):
        only_raises(ValueError, validate_node_name, name)


# -- baseline files -----------------------------------------------------------------------------

def _valid_text() -> str:
    return json.dumps({
        "schema": "pytest-llmperf-baseline", "schema_version": 1, "node": "n", "test_file": "t.py",
        "fingerprints": {"fp": {"cpu": "X", "cores": 2}},
        "tests": {"test_a[1]": {"fingerprint": "fp", "params": {"m": 1}, "metrics": {
            "tok_per_s": {"unit": "tok/s", "direction": "higher", "samples": [100.5, 101.0, 99.8, 100.1, 100.7],
                          "probes": [0.0001, 0.00011, 0.0001, 0.0001, 0.00012], "cpu_share": 0.97,
                          "warmup": {"discarded": 1, "first": 80.0, "steady": 100.0}},
            "instructions": {"unit": "instr", "direction": "lower", "exact": True, "samples": [1237969412]},
            "perf.cpu-migrations": {"unit": "", "direction": "lower", "gate": False, "samples": [0, 0, 1]},
        }}},
    }, indent=2, sort_keys=True) + "\n"


VALID = _valid_text()
REPLACEMENTS = ["NaN", "Infinity", "-Infinity", "1e400", "-1", "0", "9" * 400, "true", "null", '"x"', "[]", "{}",
                "1.0", '"higher"', '"lower"', "[1, 2]", "[NaN]", "-0.0", "1e-320", "1.7e308", '"\\ud800"', '"é"']


NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


@st.composite
def mutated_baseline(draw) -> str:
    text = VALID
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["cut", "replace_value", "replace_number", "replace_number", "delete_line",
                                     "insert", "duplicate"]))
        lines = text.splitlines(keepends=True)
        if not lines:
            break
        if kind == "cut":
            text = text[: draw(st.integers(min_value=0, max_value=len(text)))]
        elif kind == "replace_value":
            i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            head, sep, tail = lines[i].partition(": ")
            if sep:
                comma = "," if tail.rstrip().endswith(",") else ""
                lines[i] = head + sep + draw(st.sampled_from(REPLACEMENTS)) + comma + "\n"
            text = "".join(lines)
        elif kind == "replace_number":
            numbers = list(NUMBER.finditer(text))
            m = numbers[draw(st.integers(min_value=0, max_value=len(numbers) - 1))] if numbers else None
            if m:
                text = text[: m.start()] + draw(st.sampled_from(REPLACEMENTS)) + text[m.end():]
        elif kind == "delete_line":
            del lines[draw(st.integers(min_value=0, max_value=len(lines) - 1))]
            text = "".join(lines)
        elif kind == "insert":
            at = draw(st.integers(min_value=0, max_value=len(text)))
            junk = draw(st.sampled_from(["<<<<<<< HEAD\n", ",", "]", "}", "\x00", "\ufeff"] + REPLACEMENTS))
            text = text[:at] + junk + text[at:]
        else:
            i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines.insert(i, lines[i])
            text = "".join(lines)
    return text


def _load_text(text: str | bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        return only_raises(BaselineError, BaselineFile.load, path)


def _use(bfile: BaselineFile) -> None:
    """What a session does with a loaded file: look up each test, compare, store again."""
    for key in bfile.data["tests"]:
        metrics = bfile.metrics(key)
        bfile.fingerprint(key)
        for metric in metrics.values():
            verdict = compare_metric("t", metric, metric, 0.05, 0.99, 0.01)
            assert verdict.status in STATUSES
            assert metric_from_json(metric.name, metric_to_json(metric), "again").samples
    json.loads(bfile.dumps())


@fuzz(mutated_baseline())
def test_mutated_baseline_files_load_or_raise_a_baseline_error(text):
    bfile = _load_text(text)
    if bfile is not None:
        _use(bfile)


@fuzz(st.binary(max_size=200).map(lambda b: VALID.encode()[: len(VALID) // 2] + b))
def test_baseline_files_with_random_bytes(data):
    bfile = _load_text(data)
    if bfile is not None:
        _use(bfile)


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@fuzz(st.fixed_dictionaries({
    "unit": st.just("tok/s") | JSON_VALUES,
    "direction": st.sampled_from(["higher", "lower"]) | JSON_VALUES,
    "samples": st.lists(st.one_of(st.floats(min_value=1, max_value=1e3), st.floats(),
                                  st.integers(min_value=-5, max_value=10**400)), min_size=1, max_size=6) | JSON_VALUES,
}, optional={
    "probes": st.lists(st.floats(), max_size=6) | JSON_VALUES,
    "cpu_share": JSON_VALUES, "probe_kind": JSON_VALUES, "gate": st.booleans() | JSON_VALUES,
    "exact": st.booleans() | JSON_VALUES, "warmup": JSON_VALUES,
}))
def test_generated_metric_entries(metric):
    data = json.loads(VALID)
    data["tests"]["test_a[1]"]["metrics"]["tok_per_s"] = metric
    bfile = _load_text(json.dumps(data))
    if bfile is not None:
        _use(bfile)


# -- llmperf.record -------------------------------------------------------------------------------

SAMPLES = st.one_of(
    ANY_SCALAR,
    st.lists(st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400), st.booleans(),
                       st.text(max_size=4), st.none()), max_size=8),
    st.lists(st.floats(min_value=1e-300, max_value=1e17), min_size=1, max_size=40),
)


@fuzz(SAMPLES, st.one_of(st.booleans(), ANY_SCALAR), st.booleans(), st.booleans())
def test_record_accepts_only_comparable_samples(samples, higher, gate, exact):
    rec = Recorder(MeasureSettings(), lambda name: 0.05)
    done = only_raises(RecordError, rec.record, "m", samples, unit="u", higher_is_better=higher, gate=gate, exact=exact)
    if "m" in rec.metrics:
        assert done is None
        metric = rec.metrics["m"]
        for v in metric.samples:
            assert compare.sample_problem(v, metric.gate) is None
        stored = metric_from_json("m", metric_to_json(metric), "fuzz")  # the store takes what record() took
        assert compare_metric("t", stored, metric, 0.05, 0.99, 0.01).status in STATUSES


POSITIVE = st.floats(min_value=1e-300, max_value=1e17, allow_nan=False)


@fuzz(st.lists(POSITIVE, min_size=1, max_size=30), st.lists(POSITIVE, min_size=1, max_size=30), st.booleans(),
      st.floats(min_value=0, max_value=9.99), st.sampled_from([0.5, 0.9, 0.99, 0.9999]),
      st.floats(min_value=0, max_value=9.99))
def test_any_valid_samples_compare_and_report(base, cur, higher, tolerance, confidence, noise):
    b = Metric("m", "u", higher, base)
    c = Metric("m", "u", higher, cur)
    verdict = compare_metric("suites/t.py::t[a\nb|c]", b, c, tolerance, confidence, noise)
    assert verdict.status in STATUSES
    table = report.markdown("n", [verdict])
    assert sum(1 for line in table.splitlines() if line.startswith("| `")) == 1
    assert report_terminal.terminal_table([verdict])
    for width in (80, 40):  # whatever the numbers, the fitted table keeps within the width
        assert all(report_terminal.visible_width(line) <= width
                   for line in report_terminal.terminal_table([verdict], width=width, color=True).splitlines())
    assert compare.verdict_message(verdict)


@fuzz(st.text(max_size=40))
def test_error_messages_stay_one_line_whatever_a_name_holds(name):
    from pytest_llmperf.llama2c.models import ModelFileError

    for error in (ConfigError, BaselineError, RecordError, ModelFileError):
        text = str(error(f"{name}: no such file"))
        assert "\n" not in text and "\r" not in text
        assert text.startswith(name.replace("\r", "\\r").replace("\n", "\\n"))
