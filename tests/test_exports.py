"""The dashboard exports (pytest_llmperf.exports) on constructed verdicts, each output checked by
a validator that restates the consuming tool's own rules:

- Bencher Metric Format v0 (bencher.dev/docs/reference/bencher-metric-format and the crate
  bencher_valid): an object of benchmark names (1 to 1024 bytes) to objects of measure names (1 to
  64 bytes) to ``{"value": number, "lower_value"?: number, "upper_value"?: number}``; strict JSON.
- github-action-benchmark v1, tools customBiggerIsBetter / customSmallerIsBetter (src/extract.ts
  ``extractCustomBenchmarkResult``, src/write/findAlerts.ts): a JSON array, not empty, of objects
  with a string ``name``, a number ``value``, a string ``unit``, optional string ``range`` and
  ``extra``; runs are matched by name and alerted on the ratio of the values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_llmperf import exports
from pytest_llmperf.compare import IMPROVED, INFO, NEW, NOISY, OK, REGRESSED, Metric, Verdict, compare_metric


def verdict(test="t.py::test_a", metric="tok_per_s", current=100.0, higher=True, status=OK, change=None,
            ci=None, unit="tok/s", **kw) -> Verdict:
    low, high = ci if ci is not None else (None, None)
    return Verdict(test=test, metric=metric, status=status, unit=unit, higher_is_better=higher, tolerance=0.05,
                   current=current, change=change, ci_low=low, ci_high=high,
                   confidence=0.99 if ci is not None else None, n_current=30, **kw)


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------ the tools' rules, restated

def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def bmf_problems(doc) -> list[str]:
    """What Bencher (BMF v0) would refuse in ``doc``, plus one rule of ours: a bound on the right
    side of the value."""
    problems = []
    if not isinstance(doc, dict):
        return ["the document is not an object"]
    for bench, measures in doc.items():
        if not isinstance(bench, str) or not 1 <= len(bench.encode("utf-8")) <= 1024:
            problems.append(f"benchmark name {bench!r:.40} is not 1 to 1024 bytes")
        if not isinstance(measures, dict) or not measures:
            problems.append(f"{bench!r:.40}: not an object of measures")
            continue
        for measure, metric in measures.items():
            where = f"{bench!r:.40} {measure!r}"
            if not 1 <= len(measure.encode("utf-8")) <= 64:
                problems.append(f"{where}: measure name is not 1 to 64 bytes")
            if not isinstance(metric, dict) or "value" not in metric:
                problems.append(f"{where}: no value")
                continue
            for key in ("value", "lower_value", "upper_value"):
                if key in metric and not _number(metric[key]):
                    problems.append(f"{where}: {key} {metric[key]!r} is not a number")
            if all(_number(metric.get(k)) for k in ("value", "lower_value")) and metric["lower_value"] > metric["value"]:
                problems.append(f"{where}: lower_value above the value")
            if all(_number(metric.get(k)) for k in ("value", "upper_value")) and metric["upper_value"] < metric["value"]:
                problems.append(f"{where}: upper_value below the value")
    return problems


def gab_problems(text: str) -> list[str]:
    """What github-action-benchmark's custom tools would refuse or misread in the file ``text``."""
    try:
        doc = _strict_json(text)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(doc, list):
        return ["not an array of entries in BenchmarkResult format"]
    if not doc:
        return ["no benchmark result was found"]
    problems, names = [], set()
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            problems.append(f"entry {i} is not an object")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"entry {i}: name {name!r} is not a string")
        elif name in names:
            problems.append(f"entry {i}: name {name!r} twice (runs are matched by name)")
        names.add(name)
        if not _number(entry.get("value")):
            problems.append(f"entry {i}: value {entry.get('value')!r} is not a number")
        elif entry["value"] <= 0:
            problems.append(f"entry {i}: value {entry['value']!r} makes the alert's ratio infinite")
        if not isinstance(entry.get("unit"), str):
            problems.append(f"entry {i}: unit {entry.get('unit')!r} is not a string")
        for key in ("range", "extra"):
            if key in entry and not isinstance(entry[key], str):
                problems.append(f"entry {i}: {key} {entry[key]!r} is not a string")
        unknown = set(entry) - {"name", "value", "unit", "range", "extra"}
        if unknown:
            problems.append(f"entry {i}: keys {sorted(unknown)} are dropped by the action")
    return problems


def gab_alerts(prev: list[dict], cur: list[dict], bigger_is_better: bool, threshold: float) -> list[str]:
    """The names github-action-benchmark alerts on (findAlerts): the ratio of two runs' values by
    name, prev/current when bigger is better, current/prev when smaller is, above the threshold."""
    before = {e["name"]: e["value"] for e in prev}
    out = []
    for e in cur:
        if e["name"] not in before:
            continue
        ratio = before[e["name"]] / e["value"] if bigger_is_better else e["value"] / before[e["name"]]
        if ratio > threshold:
            out.append(e["name"])
    return out


def test_the_validators_catch_what_the_tools_refuse():
    assert bmf_problems({"b": {"m": {"value": 1.0, "lower_value": 0.5, "upper_value": 2.0}}}) == []
    assert bmf_problems([]) == ["the document is not an object"]
    assert bmf_problems({"b": {"m": {"value": "1"}}}) == ["'b' 'm': value '1' is not a number"]
    assert bmf_problems({"b": {"m": {"lower_value": 1.0}}}) == ["'b' 'm': no value"]
    assert bmf_problems({"x" * 1025: {"m": {"value": 1.0}}})[0].endswith("is not 1 to 1024 bytes")
    assert bmf_problems({"b": {"m" * 65: {"value": 1.0}}})[0].endswith("measure name is not 1 to 64 bytes")
    assert bmf_problems({"b": {"m": {"value": 1.0, "lower_value": 2.0}}}) == ["'b' 'm': lower_value above the value"]
    assert gab_problems('[{"name": "a", "value": 1.5, "unit": "s", "range": "± 1", "extra": "x"}]') == []
    assert gab_problems("[]") == ["no benchmark result was found"]
    assert gab_problems('{"name": "a"}') == ["not an array of entries in BenchmarkResult format"]
    assert gab_problems('[{"name": "a", "value": "31", "unit": "s"}]') == ["entry 0: value '31' is not a number"]
    assert gab_problems('[{"name": "a", "value": NaN, "unit": "s"}]')[0].startswith("not JSON")
    assert gab_problems('[{"name": "a", "value": 1, "unit": "s"}, {"name": "a", "value": 2, "unit": "s"}]') == [
        "entry 1: name 'a' twice (runs are matched by name)"]
    assert gab_problems('[{"name": "a", "value": 1, "unit": "s", "range": 3}]') == ["entry 0: range 3 is not a string"]


# ------------------------------------------------------------------------------------ BMF

def test_bmf_value_and_the_interval_of_the_current_value():
    v = verdict(current=100.0, change=0.1, ci=(0.05, 0.15))
    doc = exports.bmf([v])
    metric = doc["t.py::test_a"]["tok_per_s"]
    assert metric["value"] == 100.0
    assert metric["lower_value"] == pytest.approx(100.0 * 1.05 / 1.1)
    assert metric["upper_value"] == pytest.approx(100.0 * 1.15 / 1.1)
    assert bmf_problems(doc) == []


def test_bmf_interval_of_a_real_comparison_keeps_the_relative_width_of_the_change():
    base = Metric("tok_per_s", "tok/s", True, [100.0 * (1 + (i % 7 - 3) / 100) for i in range(30)])
    cur = Metric("tok_per_s", "tok/s", True, [90.0 * (1 + (i % 5 - 2) / 100) for i in range(30)])
    v = compare_metric("t.py::test_a", base, cur, 0.05)
    assert v.status == REGRESSED and v.ci_low is not None and v.ci_high is not None and v.change is not None
    metric = exports.bmf([v])["t.py::test_a"]["tok_per_s"]
    assert metric["lower_value"] < metric["value"] < metric["upper_value"]
    assert metric["lower_value"] / metric["value"] == pytest.approx((1 + v.ci_low) / (1 + v.change))
    assert metric["upper_value"] / metric["value"] == pytest.approx((1 + v.ci_high) / (1 + v.change))
    assert bmf_problems(exports.bmf([v])) == []


def test_bmf_without_an_interval_has_only_the_value():
    new = verdict(status=NEW)
    half = verdict(metric="ms", change=0.02)  # a change without an interval (not compared)
    assert exports.bmf([new, half]) == {"t.py::test_a": {"tok_per_s": {"value": 100.0}, "ms": {"value": 100.0}}}


def test_bmf_exact_count_has_both_bounds_at_the_value():
    v = verdict(metric="instr", current=12345.0, change=0.01, ci=(0.01, 0.01), higher=False)
    assert exports.bmf([v])["t.py::test_a"]["instr"] == {"value": 12345.0, "lower_value": 12345.0,
                                                         "upper_value": 12345.0}


def test_bmf_leaves_out_verdicts_without_a_finite_current_value_and_keeps_zero():
    doc = exports.bmf([verdict(current=None, status="missing"), verdict(test="t.py::inf", current=math.inf),
                       verdict(test="t.py::zero", metric="migrations", current=0.0, status=INFO)])
    assert doc == {"t.py::zero": {"migrations": {"value": 0.0}}}
    assert exports.bmf([]) == {}


def test_bmf_groups_metrics_under_their_test_and_keeps_the_last_of_a_repeated_verdict():
    doc = exports.bmf([verdict(metric="a", current=1.0), verdict(metric="b", current=2.0),
                       verdict(test="t.py::test_b", metric="a", current=3.0), verdict(metric="a", current=4.0)])
    assert doc == {"t.py::test_a": {"a": {"value": 4.0}, "b": {"value": 2.0}}, "t.py::test_b": {"a": {"value": 3.0}}}


def test_bmf_fits_long_names_uniquely_and_stably():
    stem = "suites/test_llama2c.py::test_tok_s[" + "é" * 600  # 1200 bytes, a two-byte character
    a, b = verdict(test=stem + "-a]"), verdict(test=stem + "-b]")
    long_metric = verdict(test="t.py::m", metric="m" * 80)
    doc = exports.bmf([a, b, long_metric])
    names = list(doc)
    assert len(names) == 3 and len(set(names)) == 3
    assert all(len(n.encode("utf-8")) <= exports.BENCHMARK_NAME_MAX for n in names)
    assert names[0].startswith("suites/test_llama2c.py::test_tok_s[éé") and "~" in names[0]
    (measure,) = doc["t.py::m"]
    assert list(exports.bmf([long_metric])["t.py::m"]) == [measure]
    assert len(measure.encode("utf-8")) == exports.MEASURE_NAME_MAX and measure.startswith("mmm")
    assert exports.bmf([a]) == {names[0]: doc[names[0]]}  # the same name on the next run
    assert bmf_problems(doc) == []


def test_bmf_matches_the_published_bmf_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    # the structure of https://bencher.dev/v0/bmf.json (draft-07), restated
    metric = {"type": "object", "required": ["value"],
              "properties": {k: {"type": "number"} for k in ("value", "lower_value", "upper_value")}}
    bmf_schema = {"type": "object", "patternProperties": {".+": {
        "type": "object", "patternProperties": {".+": metric}}}}
    doc = exports.bmf([verdict(change=0.1, ci=(0.0, 0.2)), verdict(metric="ms", higher=False, current=3.0)])
    jsonschema.Draft7Validator(bmf_schema).validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(bmf_schema).validate({"b": {"m": {"lower_value": 1.0}}})


# ------------------------------------------------------------------------ github-action-benchmark

def test_gab_splits_by_direction_and_names_test_and_metric():
    rate = verdict(metric="tok_per_s", current=56.0, change=-0.02, ci=(-0.05, 0.01), status=NOISY)
    time = verdict(metric="time", current=0.0123, unit="s", higher=False, change=0.01, ci=(-0.01, 0.03))
    rss = verdict(metric="rss", current=1000.0, unit="B", higher=False, status=NEW)
    bigger, smaller = exports.gab([rate, time, rss])
    assert [e["name"] for e in bigger] == ["t.py::test_a [tok_per_s]"]
    assert [e["name"] for e in smaller] == ["t.py::test_a [time]", "t.py::test_a [rss]"]
    assert bigger[0]["value"] == 56.0 and bigger[0]["unit"] == "tok/s"
    assert smaller[1] == {"name": "t.py::test_a [rss]", "unit": "B", "value": 1000.0,
                          "extra": "status: new\ntolerance: 5.0%\nrounds: 30"}
    for entries in (bigger, smaller):
        assert gab_problems(exports.json_text(entries)) == []


def test_gab_range_is_half_the_band_and_extra_tells_status_change_and_interval():
    v = verdict(current=100.0, change=0.1, ci=(0.05, 0.15), status=IMPROVED, adjusted=True, n_baseline=20)
    (entry,), _ = exports.gab([v])
    lower, upper = 100.0 * 1.05 / 1.1, 100.0 * 1.15 / 1.1
    assert entry["range"].startswith("± ")
    assert float(entry["range"][2:]) == pytest.approx((upper - lower) / 2, rel=1e-5)
    assert entry["extra"].splitlines() == [
        "status: improved",
        "change: +10.0% (99% interval +5.0% to +15.0%) vs saved, speed-adjusted",
        f"current: {lower:.6g} to {upper:.6g} tok/s",
        "tolerance: 5.0%",
        "rounds: 30 (reference 20)",
    ]


def test_gab_leaves_out_values_the_alert_cannot_divide_by():
    zero = verdict(metric="migrations", current=0.0, status=INFO, higher=False)
    gone = verdict(metric="gone", current=None, status="missing")
    assert exports.gab([zero, gone]) == ([], [])


def test_gab_names_are_unique_and_map_back_to_test_and_metric():
    tests = ["t.py::test_a", "t.py::test_a[x [y]]", "t.py::TestC::test_d[1-2]", "t.py::test_a [tok_per_s]"]
    vs = [verdict(test=t, metric=m, higher=(m != "ms")) for t in tests for m in ("tok_per_s", "ms", "x.y-z")]
    bigger, smaller = exports.gab(vs + [vs[0]])  # a repeated verdict: kept once
    entries = bigger + smaller
    assert len(entries) == len(vs) == len({e["name"] for e in entries})
    assert {tuple(e["name"].rsplit(" [", 1)) for e in entries} == {(v.test, v.metric + "]") for v in vs}


def test_gab_alerts_on_the_worse_direction_only():
    """The split matters: the action divides the previous value by this one for bigger-is-better
    and this one by the previous for smaller-is-better. Tonight's rate halved and time doubled
    (worse) must alert; the night after, back to normal (better), must not."""
    def night(rate, seconds):
        return exports.gab([verdict(metric="tok_per_s", current=rate), verdict(metric="time", current=seconds,
                                                                               unit="s", higher=False)])

    first, worse, better = night(100.0, 1.0), night(50.0, 2.0), night(100.0, 1.0)
    assert gab_alerts(first[0], worse[0], True, 1.5) == ["t.py::test_a [tok_per_s]"]
    assert gab_alerts(first[1], worse[1], False, 1.5) == ["t.py::test_a [time]"]
    assert gab_alerts(worse[0], better[0], True, 1.5) == []
    assert gab_alerts(worse[1], better[1], False, 1.5) == []


# ------------------------------------------------------------------------------------ files

def test_write_bmf_writes_parseable_strict_json(tmp_path):
    path = exports.write_bmf(tmp_path / "out" / "bmf.json", [verdict(change=0.1, ci=(0.0, 0.2))])
    assert path == tmp_path / "out" / "bmf.json"
    doc = _strict_json(path.read_text())
    assert bmf_problems(doc) == [] and doc == exports.bmf([verdict(change=0.1, ci=(0.0, 0.2))])
    assert _strict_json(exports.write_bmf(tmp_path / "empty.json", []).read_text()) == {}


@pytest.mark.parametrize(("given", "bigger", "smaller"), [
    ("gab.json", "gab-bigger.json", "gab-smaller.json"),
    ("gab", "gab-bigger.json", "gab-smaller.json"),
    ("bench.txt", "bench-bigger.txt", "bench-smaller.txt"),
    ("sub/", "sub/llmperf-bigger.json", "sub/llmperf-smaller.json"),
])
def test_gab_paths(tmp_path, given, bigger, smaller):
    assert exports.gab_paths(f"{tmp_path}/{given}") == (tmp_path / bigger, tmp_path / smaller)


def test_gab_paths_of_an_existing_directory(tmp_path):
    assert exports.gab_paths(tmp_path) == (tmp_path / "llmperf-bigger.json", tmp_path / "llmperf-smaller.json")


def test_write_gab_writes_both_lists_and_removes_a_stale_file(tmp_path):
    both = [verdict(metric="tok_per_s"), verdict(metric="time", unit="s", higher=False, current=0.5)]
    written = exports.write_gab(tmp_path / "gab.json", both)
    bigger, smaller = tmp_path / "gab-bigger.json", tmp_path / "gab-smaller.json"
    assert written == [bigger, smaller]
    for path in written:
        assert gab_problems(path.read_text()) == []
    assert [e["name"] for e in json.loads(smaller.read_text())] == ["t.py::test_a [time]"]
    # tonight nothing is smaller-is-better: last night's file must not be published as tonight's
    assert exports.write_gab(tmp_path / "gab.json", both[:1]) == [bigger]
    assert bigger.exists() and not smaller.exists()
    assert exports.write_gab(tmp_path / "gab.json", []) == []
    assert not bigger.exists()


def test_json_text_refuses_what_the_tools_cannot_read():
    with pytest.raises(ValueError):
        exports.json_text({"b": {"m": {"value": math.nan}}})
    assert exports.json_text([]) == "[]\n"


def test_current_interval_is_none_without_a_usable_estimate():
    assert exports.current_interval(verdict(change=0.1)) is None
    assert exports.current_interval(verdict(change=-1.0, ci=(-1.0, -1.0))) is None
    assert exports.current_interval(verdict(current=None, change=0.1, ci=(0.0, 0.2))) is None
    low, high = exports.current_interval(verdict(current=10.0, change=0.0, ci=(-0.1, 0.1)))
    assert (low, high) == (pytest.approx(9.0), pytest.approx(11.0))


def test_write_functions_take_str_paths(tmp_path):
    assert exports.write_bmf(str(tmp_path / "b.json"), []) == Path(tmp_path / "b.json")
    assert exports.write_gab(str(tmp_path / "g.json"), [verdict()]) == [tmp_path / "g-bigger.json"]


# -- the plugin's options, end to end ------------------------------------------------------------

_SESSION = """
import pytest

def test_tok(llmperf):
    llmperf.record("tok_per_s", [100.0 * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(20)],
                   unit="tok/s", higher_is_better=True)

def test_ms(llmperf):
    llmperf.record("ms_per_step", [10.0 * (1 + ((i * 5) % 7 - 3) / 1000.0) for i in range(20)],
                   unit="ms", higher_is_better=False)
"""
_ARGS = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]


def test_plugin_writes_bmf_and_gab(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_e=_SESSION)
    assert pytester.runpytest(*_ARGS, "--llmperf-save-baseline").ret == 0
    result = pytester.runpytest(*_ARGS, "--llmperf-bmf=out/run.bmf.json", "--llmperf-gab=out/gab.json")
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "out" / "run.bmf.json").read_text())
    tok = doc["test_e.py::test_tok"]["tok_per_s"]
    assert tok["lower_value"] < tok["value"] < tok["upper_value"]
    assert tok["value"] == pytest.approx(100.0, rel=0.01)
    bigger = json.loads((pytester.path / "out" / "gab-bigger.json").read_text())
    smaller = json.loads((pytester.path / "out" / "gab-smaller.json").read_text())
    assert [e["name"] for e in bigger] == ["test_e.py::test_tok [tok_per_s]"]
    assert [e["name"] for e in smaller] == ["test_e.py::test_ms [ms_per_step]"]
    assert smaller[0]["unit"] == "ms" and "ok" in smaller[0]["extra"]


def test_plugin_report_paths_checked_first(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_e=_SESSION)
    (pytester.path / "adir").mkdir()
    result = pytester.runpytest(*_ARGS, "--llmperf-bmf=adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: llmperf: --llmperf-bmf */adir: is a directory"])
    result = pytester.runpytest(*_ARGS, "--llmperf-gab=r.json", "--llmperf-json=r-bigger.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: llmperf: --llmperf-json and --llmperf-gab are the same file *r-bigger.json"])
    assert not (pytester.path / "baselines").exists()
