"""The published JSON Schemas (pytest_llmperf/schemas/) against what the plugin really writes:
real pytester sessions write a run JSON, a baseline file and history lines, and each validates
against its schema; mutated documents do not. The schemas also agree with the code that writes
the files (field names, statuses, versions), so a change to a format without its schema fails
here."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import textwrap
from dataclasses import fields

import pytest

from pytest_llmperf import baseline, exports, history_lines, plugin_finish, result, stats
from pytest_llmperf.compare import STATUSES, Verdict
from pytest_llmperf.holes import Hole

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (pip install 'jsonschema>=4.18')")

NODE = "schemanode"
CLEAR = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_HISTORY_APPEND", "LLMPERF_HISTORY_DIR",
         "LLMPERF_BASELINE", "LLMPERF_STRICT", "LLMPERF_ARTIFACTS", "PYTEST_ADDOPTS")
# every shape of metric the plugin writes: a timed callable (probes, CPU share, warm-up), a rate
# derived from it, plain samples, a deterministic count, an informational metric that may be zero,
# a parametrized test (params), a profiler artifact, and a test that skips on the second night
TESTS = textwrap.dedent(
    """
    import os, pytest

    def test_timed(llmperf):
        llmperf.measure(lambda: sum(range(300)))
        llmperf.rate("tok_per_s", 64, unit="tok/s")
        llmperf.add_artifact("custom", ["trace.txt"], "a trace", {"top": [["f", 1.5]]})

    @pytest.mark.parametrize("threads", [1, 2])
    def test_recorded(llmperf, threads):
        llmperf.record("rss", [1000.0 * threads + i for i in range(6)], unit="B", higher_is_better=False)
        llmperf.record("instr", [12345] * 5, unit="instr", higher_is_better=False, exact=True)
        llmperf.record("migrations", [0, 0, 1, 0, 0], unit="", higher_is_better=False, gate=False, note="noisy")

    def test_sometimes(llmperf):
        if os.environ.get("SCHEMA_SKIP") == "1":
            pytest.skip("no accelerator tonight")
        llmperf.record("ms", [5.0, 5.1, 4.9, 5.0, 5.05], unit="ms", higher_is_better=False)
    """
)


def _validator(name):
    return jsonschema.Draft202012Validator(exports.schema(name))


def _errors(name, doc):
    return [f"{e.json_path}: {e.message[:160]}" for e in _validator(name).iter_errors(doc)]


_WRITTEN: dict[str, object] = {}  # the documents of the sessions below, written once per process


@pytest.fixture
def written(pytester, monkeypatch):
    """Three real sessions (pytester, in process) in a git work tree: save a baseline and append to
    the history, compare and append with one test skipped (a hole), save again without appending
    (accept lines). Returns the documents written: {"save": run JSON, "compare": run JSON,
    "baselines": [files], "history": [lines], "git": whether git made the work tree}. The sessions
    run for the first test that asks; the others read the same documents."""
    if not _WRITTEN:
        for key in CLEAR:
            monkeypatch.delenv(key, raising=False)
        _WRITTEN.update(_sessions(pytester, monkeypatch))
    return _WRITTEN


def _sessions(pytester, monkeypatch):
    root = pytester.path
    pytester.makepyfile(test_bench=TESTS)
    git = shutil.which("git") is not None
    if git:
        for args in (["init", "-q"], ["add", "test_bench.py"],
                     ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "t"]):
            subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    common = ["-p", "no:cacheprovider", f"--llmperf-node={NODE}", "--llmperf-max-time=0.1"]
    runs = [(["--llmperf-save-baseline", "--llmperf-history-append", "--llmperf-json=save.json"], None),
            (["--llmperf-history-append", "--llmperf-report-only", "--llmperf-json=compare.json"], "1"),
            (["--llmperf-save-baseline"], None)]
    for args, skip in runs:
        if skip:
            monkeypatch.setenv("SCHEMA_SKIP", skip)
        else:
            monkeypatch.delenv("SCHEMA_SKIP", raising=False)
        outcome = pytester.runpytest(*common, *args)
        assert outcome.ret == 0, outcome.stdout.str()
    node_dir = root / "baselines" / NODE
    return {
        "save": json.loads((root / "save.json").read_text()),
        "compare": json.loads((root / "compare.json").read_text()),
        "baselines": [json.loads(p.read_text()) for p in sorted(node_dir.glob("*.json"))],
        "history": [json.loads(line) for p in sorted((node_dir / "history").glob("*.jsonl"))
                    for line in p.read_text().splitlines()],
        "git": git,
    }


# ------------------------------------------------------------------ real output validates

@pytest.mark.parametrize("name", exports.SCHEMA_NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema(name):
    doc = exports.schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)


def test_the_run_json_of_a_save_and_of_a_compare_validates(written):
    save, compare = written["save"], written["compare"]
    assert save["mode"] == "save" and compare["mode"] == "compare"
    # what the sessions must have exercised, or the validation below proves little
    assert compare["missing"] and any(v["status"] == "missing" and v["current"] is None for v in compare["verdicts"])
    assert any(v["change"] is not None for v in compare["verdicts"])
    assert any(t.get("artifacts") for t in save["tests"]) and any(t["params"] for t in save["tests"])
    metrics = {name: m for t in save["tests"] for name, m in t["metrics"].items()}
    assert metrics["time"]["probes"] and metrics["time"]["warmup"] and "cpu_share" in metrics["time"]
    assert metrics["instr"]["exact"] is True and metrics["migrations"]["gate"] is False
    assert 0 in metrics["migrations"]["samples"]
    if written["git"]:
        assert len(compare["commits"]["repo"]["commit"]) == 40
    assert _errors("run", save) == []
    assert _errors("run", compare) == []


def test_the_baseline_file_validates(written):
    (doc,) = written["baselines"]
    assert set(doc["tests"]) == {"test_timed", "test_recorded[1]", "test_recorded[2]", "test_sometimes"}
    assert doc["tests"]["test_recorded[2]"]["params"] == {"threads": 2}
    if written["git"]:
        assert len(doc["tests"]["test_timed"]["git_commit"]) == 40
    assert _errors("baseline", doc) == []


def test_every_history_line_validates(written):
    lines = written["history"]
    kinds = [(line["kind"], line.get("reset")) for line in lines]
    assert ("run", True) in kinds and ("run", False) in kinds and ("accept", None) in kinds
    assert any(line["kind"] == "accept" and line["run"] is None for line in lines)
    if written["git"]:
        assert all(line["commits"]["repo"]["dirty"] is False for line in lines if line["kind"] == "run")
    for line in lines:
        assert _errors("history", line) == [], line


# ---------------------------------------------------------------- mutated documents do not

def _first_verdict_with_change(doc):
    return next(v for v in doc["verdicts"] if v["change"] is not None)


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda d: _first_verdict_with_change(d).update(status="bogus"), "'bogus' is not one of"),
    (lambda d: d.pop("counts"), "'counts' is a required property"),
    (lambda d: d.update(extra_key=1), "Additional properties are not allowed"),
    (lambda d: d["counts"].update(bogus=1), "'bogus' is not one of"),
    (lambda d: d["verdicts"][0].pop("reference"), "'reference' is a required property"),
    (lambda d: d["verdicts"][0].update(p_value=1.5), "1.5 is greater than the maximum of 1"),
    (lambda d: d["tests"][0]["metrics"]["time"].update(direction="up"), "'up' is not one of"),
    (lambda d: d["tests"][0]["metrics"]["time"]["samples"].append(-1.0), "-1.0 is less than the minimum of 0"),
    (lambda d: d["tests"][0].update(fingerprint="xyz"), "'xyz' does not match"),
    (lambda d: d.update(schema_version=1), "2 was expected"),
    (lambda d: d["missing"][0].pop("reason"), "'reason' is a required property"),
])
def test_a_mutated_run_json_fails(written, mutate, fragment):
    doc = copy.deepcopy(written["compare"])
    doc["tests"].sort(key=lambda t: "time" not in t["metrics"])  # the timed test first
    mutate(doc)
    errors = _errors("run", doc)
    assert any(fragment in e for e in errors), errors


def test_a_zero_sample_is_valid_only_in_an_informational_metric(written):
    doc = copy.deepcopy(written["baselines"][0])
    metrics = doc["tests"]["test_recorded[1]"]["metrics"]
    assert _errors("baseline", doc) == []  # migrations holds a zero and says gate: false
    del metrics["migrations"]["gate"]
    assert any("less than or equal to the minimum of 0" in e for e in _errors("baseline", doc))
    doc = copy.deepcopy(written["baselines"][0])
    doc["tests"]["test_recorded[1]"]["metrics"]["rss"]["samples"][0] = 0
    assert _errors("baseline", doc) != []


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda d: d.update(schema_version=2), "1 was expected"),
    (lambda d: d["tests"]["test_timed"].pop("metrics"), "'metrics' is a required property"),
    (lambda d: d["tests"]["test_timed"]["metrics"]["time"].pop("summary"), "'summary' is a required property"),
    (lambda d: d["tests"]["test_timed"]["metrics"]["time"]["summary"].update(n=0), "0 is less than the minimum"),
    (lambda d: d["tests"]["test_timed"]["metrics"]["time"].pop("probes"), "'probes' is a dependency of"),
    (lambda d: d["tests"]["test_timed"]["metrics"].update({"bad name": d["tests"]["test_timed"]["metrics"]["time"]}),
     "'bad name' does not match"),
    (lambda d: d["fingerprints"].update(zz={}), "'zz' does not match"),
])
def test_a_mutated_baseline_file_fails(written, mutate, fragment):
    doc = copy.deepcopy(written["baselines"][0])
    doc["tests"]["test_timed"]["metrics"]["time"]["probe_kind"] = "refrun"  # valid: it has probes
    assert _errors("baseline", doc) == []
    mutate(doc)
    errors = _errors("baseline", doc)
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(("kind", "mutate", "fragment"), [
    ("run", lambda d: d.update(kind="bogus"), "'bogus' is not one of"),
    ("run", lambda d: d.pop("fp"), "'fp' is a required property"),
    ("run", lambda d: d.update(time="2026-12-01 23:14:34"), "does not match"),
    ("run", lambda d: d.update(outcome="skipped"), "'skipped' is not one of"),
    ("run", lambda d: next(iter(d["metrics"].values())).update(dir="up"), "'up' is not one of"),
    ("run", lambda d: next(iter(d["metrics"].values())).update(status="bogus"), "'bogus' is not one of"),
    ("run", lambda d: next(iter(d["metrics"].values())).update(n=0), "0 is less than the minimum of 1"),
    ("run", lambda d: d.update(why="not in a run line"), "Additional properties are not allowed"),
    ("accept", lambda d: d.pop("why"), "'why' is a required property"),
    ("accept", lambda d: d.update(metrics={}), "Additional properties are not allowed"),
])
def test_a_mutated_history_line_fails(written, kind, mutate, fragment):
    doc = copy.deepcopy(next(line for line in written["history"] if line["kind"] == kind))
    mutate(doc)
    errors = _errors("history", doc)
    assert any(fragment in e for e in errors), errors


# ------------------------------------------------------------ the schemas agree with the code

def test_versions_and_names_match_the_writers():
    run, base, hist = (exports.schema(n) for n in exports.SCHEMA_NAMES)
    assert run["properties"]["schema"]["const"] == plugin_finish.RUN_SCHEMA
    assert run["properties"]["schema_version"]["const"] == plugin_finish.RUN_SCHEMA_VERSION
    assert run["$id"].endswith(f":{plugin_finish.RUN_SCHEMA_VERSION}")
    assert run["$defs"]["result"]["properties"]["schema"]["const"] == result.SCHEMA
    assert base["properties"]["schema"]["const"] == baseline.SCHEMA
    assert base["properties"]["schema_version"]["const"] == baseline.SCHEMA_VERSION
    assert base["$id"].endswith(f":{baseline.SCHEMA_VERSION}")
    for kind in history_lines.KINDS:
        assert hist["$defs"][kind]["properties"]["schema"]["const"] == history_lines.SCHEMA
        assert hist["$defs"][kind]["properties"]["v"]["const"] == history_lines.SCHEMA_VERSION
    assert hist["properties"]["kind"]["enum"] == list(history_lines.KINDS)
    assert hist["$id"].endswith(f":{history_lines.SCHEMA_VERSION}")


def test_statuses_are_the_compare_statuses():
    assert exports.schema("run")["$defs"]["status"]["enum"] == list(STATUSES)
    assert exports.schema("history")["$defs"]["status"]["enum"] == list(STATUSES)


def test_the_verdict_schema_has_every_verdict_field():
    verdict = exports.schema("run")["$defs"]["verdict"]
    names = [f.name for f in fields(Verdict)]
    assert list(verdict["properties"]) == names and verdict["required"] == names


def test_the_summary_and_hole_schemas_have_the_written_keys():
    run = exports.schema("run")
    assert run["$defs"]["summary"]["required"] == list(stats.summarize([1.0, 2.0]))
    hole = Hole("t.py::a", ("m",), "skipped", whole_test=True, gated=True, sources=("saved",))
    assert run["$defs"]["hole"]["required"] == list(hole.to_dict())


def test_the_metric_format_is_one_in_the_run_json_and_the_baseline_file():
    run, base = exports.schema("run"), exports.schema("baseline")
    for name in ("metric", "summary", "warmup", "sample", "positive", "fingerprint_hash"):
        assert run["$defs"][name] == base["$defs"][name], name


def test_schema_loader_names_what_it_has_and_returns_copies():
    with pytest.raises(ValueError, match="no schema 'runs': expected one of run, baseline, history"):
        exports.schema("runs")
    first = exports.schema("run")
    first["properties"].clear()
    assert exports.schema("run")["properties"]


def test_the_schemas_directory_holds_the_three_schemas():
    from importlib import resources

    shipped = sorted(p.name for p in (resources.files("pytest_llmperf") / "schemas").iterdir()
                     if p.name.endswith(".json"))
    assert shipped == sorted(f"{n}.schema.json" for n in exports.SCHEMA_NAMES)
