"""Strict mode and the holes (holes.py): real pytest sessions through pytester, a baseline saved
by a first run and a second run that changes one thing (the fingerprint, a skip, a fixture error,
a profiler left off, pytest-xdist, a dropped metric); and the pure rule of holes.py."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import run_isolated
from pytest_llmperf import holes

FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]
CLEAR = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_STRICT", "LLMPERF_TIME_SCALE", "PYTEST_ADDOPTS",
         "PYTEST_XDIST_WORKER")

# 30 samples with a small deterministic spread around 100 * scale: deterministic verdicts
SAMPLES = "[100.0 * s * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(30)]"

TESTS = textwrap.dedent(
    f"""
    import os, pytest

    def samples(s):
        return {SAMPLES}

    @pytest.fixture
    def device():
        if os.environ.get("BROKEN") == "1":
            raise RuntimeError("no device")
        return "cpu"

    def test_tok(llmperf):
        llmperf.record("tok_per_s", samples(float(os.environ.get("TOK_SCALE", "1"))), unit="tok/s",
                       higher_is_better=True)

    def test_two(llmperf):
        llmperf.record("tok_per_s", samples(1.0), unit="tok/s", higher_is_better=True)
        if os.environ.get("DROP") != "1":
            llmperf.record("ms_per_step", samples(1.0), unit="ms", higher_is_better=False)

    def test_skippy(llmperf):
        if os.environ.get("SKIP") == "1":
            pytest.skip("no accelerator here")
        llmperf.record("tok_per_s", samples(1.0), unit="tok/s", higher_is_better=True)

    @pytest.mark.skipif(os.environ.get("SKIP") == "1", reason="needs the big model")
    def test_skipif(llmperf):
        llmperf.record("tok_per_s", samples(1.0), unit="tok/s", higher_is_better=True)

    def test_fixture(llmperf, device):
        llmperf.record("tok_per_s", samples(1.0), unit="tok/s", higher_is_better=True)

    def test_early(llmperf):
        assert os.environ.get("FAIL") != "1", "model file truncated"
        llmperf.record("tok_per_s", samples(1.0), unit="tok/s", higher_is_better=True)
    """
)


def run(pytester: pytest.Pytester, *args: str, env: dict[str, str] | None = None) -> pytest.RunResult:
    return run_isolated(pytester, *FAST, *args, clear=CLEAR, env=env, subprocess=False)


def report(pytester: pytest.Pytester, name: str = "r.json") -> dict:
    return json.loads((pytester.path / name).read_text())


def statuses(payload: dict) -> dict[tuple[str, str], dict]:
    return {(v["test"].split("::")[-1], v["metric"]): v for v in payload["verdicts"]}


@pytest.fixture
def saved(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_s=TESTS)
    run(pytester, "--llmperf-save-baseline").assert_outcomes(passed=6)
    return pytester


# --- the fingerprint changed: not compared ----------------------------------------------------

FINGERPRINT_CONFTEST = textwrap.dedent(
    """
    import os
    def pytest_llmperf_fingerprint(config, info, fields):
        fields["compiler"] = os.environ.get("COMPILER", "gcc 12")
    """
)


def test_fingerprint_change_fails_under_strict_naming_the_field_and_the_raw_change(saved):
    saved.makeconftest(FINGERPRINT_CONFTEST)
    run(saved, "--llmperf-save-baseline").assert_outcomes(passed=6)  # again, with the hook's field
    env = {"COMPILER": "gcc 13", "TOK_SCALE": "0.5"}
    strict = run(saved, "--llmperf-strict", "-k", "test_tok", "--llmperf-json=r.json", env=env)
    strict.assert_outcomes(failed=1, deselected=5)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines([
        "*llmperf: metric 'tok_per_s' not compared (--llmperf-strict): machine fingerprint differs: "
        "compiler: 'gcc 12' -> 'gcc 13'; raw change of the medians -50.0% (baseline 100 -> current 50 tok/s)*",
    ])
    v = statuses(report(saved))[("test_tok", "tok_per_s")]
    assert v["status"] == "not-compared" and v["raw_change"] == pytest.approx(-0.5)
    assert v["baseline"] == pytest.approx(100.0, rel=1e-3) and v["change"] is None
    assert "compiler: 'gcc 12' -> 'gcc 13'" in v["reason"]

    # without strict mode: shown with a warning (the raw change too), and the session passes
    loose = run(saved, "-k", "test_tok", env=env)
    loose.assert_outcomes(passed=1, deselected=5)
    assert loose.ret == 0
    loose.stdout.fnmatch_lines([
        "*test_tok*tok_per_s*100 tok/s*50 tok/s*not-compared*",
        "llmperf: WARNING test_s.py::test_tok tok_per_s not compared: machine fingerprint differs: "
        "compiler: 'gcc 12' -> 'gcc 13' (raw change of the medians -50.0%)",
    ])


def test_strict_with_force_compare_compares(saved):
    saved.makeconftest(FINGERPRINT_CONFTEST)
    run(saved, "--llmperf-save-baseline").assert_outcomes(passed=6)
    result = run(saved, "--llmperf-strict", "--llmperf-force-compare", "-k", "test_tok", env={"COMPILER": "clang"})
    result.assert_outcomes(passed=1, deselected=5)
    result.stdout.fnmatch_lines(["llmperf: 1 ok"])


# --- baseline tests that did not record ---------------------------------------------------------

def test_skipped_tests_are_missing_and_fail_the_session_under_strict(saved):
    strict = run(saved, "--llmperf-strict", env={"SKIP": "1"})
    # the tests' own outcomes stand: the skips are skips
    strict.assert_outcomes(passed=4, skipped=2)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines([
        "llmperf: ERROR: missing: test_s.py::test_skippy: test of the saved baseline recorded none of its metrics "
        "(tok_per_s): skipped: no accelerator here (--llmperf-strict)",
    ])
    strict.stdout.fnmatch_lines([
        "llmperf: ERROR: missing: test_s.py::test_skipif: test of the saved baseline recorded none of its metrics "
        "(tok_per_s): skipped: needs the big model (--llmperf-strict)",
    ])


def test_without_strict_missing_tests_show_in_summary_json_and_markdown_and_pass(saved):
    result = run(saved, "--llmperf-json=r.json", "--llmperf-markdown=r.md", env={"SKIP": "1"})
    result.assert_outcomes(passed=4, skipped=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*test_skippy*tok_per_s*100 tok/s*-*missing*",
        "llmperf: 2 missing, 5 ok",
        "llmperf: WARNING missing: test_s.py::test_skippy: test of the saved baseline recorded none of its "
        "metrics (tok_per_s): skipped: no accelerator here",
    ])
    assert "ERROR" not in result.stdout.str()
    payload = report(saved)
    assert payload["counts"] == {"missing": 2, "ok": 5}
    v = statuses(payload)[("test_skipif", "tok_per_s")]
    assert v["status"] == "missing" and v["reason"] == "skipped: needs the big model"
    assert v["current"] is None and v["reference"] == "saved" and v["unit"] == "tok/s"
    assert v["baseline"] == pytest.approx(100.0, rel=1e-3)  # the saved median, for the reader
    assert {(m["test"], tuple(m["metrics"]), m["reason"], m["gated"]) for m in payload["missing"]} == {
        ("test_s.py::test_skippy", ("tok_per_s",), "skipped: no accelerator here", True),
        ("test_s.py::test_skipif", ("tok_per_s",), "skipped: needs the big model", True),
    }
    assert payload["strict"] is False
    md = (saved.path / "r.md").read_text()
    assert "**2 missing, 5 ok**" in md and "| `test_s.py::test_skippy` | tok_per_s" in md and "**missing**" in md
    assert "- test_s.py::test_skipif: test of the saved baseline recorded none of its metrics" in md


def test_fixture_error_and_failure_before_recording_say_why(saved):
    result = run(saved, "--llmperf-strict", "--llmperf-json=r.json", env={"BROKEN": "1", "FAIL": "1"})
    result.assert_outcomes(passed=4, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "llmperf: ERROR: missing: test_s.py::test_fixture: test of the saved baseline recorded none of its "
        "metrics (tok_per_s): errored in setup: RuntimeError: no device (--llmperf-strict)",
    ])
    reasons = {m["test"]: m["reason"] for m in report(saved)["missing"]}
    assert reasons["test_s.py::test_fixture"] == "errored in setup: RuntimeError: no device"
    assert reasons["test_s.py::test_early"].startswith("failed before recording: AssertionError: model file truncated")


def test_a_metric_dropped_from_a_test_that_recorded_others(saved):
    loose = run(saved, "--llmperf-json=r.json", env={"DROP": "1"})
    loose.assert_outcomes(passed=6)
    assert loose.ret == 0
    loose.stdout.fnmatch_lines([
        "llmperf: WARNING missing: test_s.py::test_two: metric ms_per_step of the saved baseline not recorded: "
        "not recorded in this run",
    ])
    found = statuses(report(saved))
    assert found[("test_two", "ms_per_step")]["status"] == "missing"
    assert found[("test_two", "tok_per_s")]["status"] == "ok"
    strict = run(saved, "--llmperf-strict", env={"DROP": "1"})
    strict.assert_outcomes(passed=6)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["llmperf: ERROR: missing: test_s.py::test_two: metric ms_per_step*(--llmperf-strict)"])


def test_deselected_tests_are_not_missing(saved):
    result = run(saved, "--llmperf-strict", "-k", "test_tok or test_two", "test_s.py")
    result.assert_outcomes(passed=2, deselected=4)
    assert result.ret == 0
    assert "missing:" not in result.stdout.str() and "llmperf: 3 ok" in result.stdout.str()
    by_id = run(saved, "--llmperf-strict", "test_s.py::test_fixture")
    by_id.assert_outcomes(passed=1)
    assert by_id.ret == 0


def test_report_only_never_fails_on_a_missing_test(saved):
    result = run(saved, "--llmperf-strict", "--llmperf-report-only", env={"SKIP": "1"})
    result.assert_outcomes(passed=4, skipped=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["llmperf: WARNING missing: test_s.py::test_skippy*"])


def test_an_informational_metric_missing_is_shown_but_never_fails(pytester):
    pytester.makepyfile(test_i=textwrap.dedent(
        """
        import os
        def test_i(llmperf):
            llmperf.record("tok_per_s", [100.0, 101.0, 99.0, 100.5, 99.5], unit="tok/s", higher_is_better=True)
            if os.environ.get("DROP") != "1":
                llmperf.record("mbu", [40.0, 41.0, 39.0], unit="%", higher_is_better=True, gate=False)
        """
    ))
    run(pytester, "--llmperf-save-baseline").assert_outcomes(passed=1)
    result = run(pytester, "--llmperf-strict", env={"DROP": "1"})
    assert result.ret == 0
    result.stdout.fnmatch_lines(["llmperf: WARNING missing: test_i.py::test_i: metric mbu of the saved baseline*"])


# --- strict implies require-baseline; how it is switched on ------------------------------------

def test_strict_implies_require_baseline(pytester):
    pytester.makepyfile(test_s=TESTS)
    result = run(pytester, "--llmperf-strict", "-k", "test_tok")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["*metric 'tok_per_s' has no baseline on node testnode (--llmperf-require-baseline)*"])
    result.stdout.fnmatch_lines(["llmperf: node testnode*gating (strict)*"])


@pytest.mark.parametrize("how, env", [
    ("env", {"LLMPERF_STRICT": "1"}),
    ("ini", {}),
])
def test_strict_from_env_and_ini(pytester, how, env):
    if how == "ini":
        pytester.makeini("[pytest]\nllmperf_strict = true\n")
    pytester.makepyfile(test_s=TESTS)
    result = run(pytester, "-k", "test_tok", env=env)
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["*has no baseline*(--llmperf-require-baseline)*"])


def test_strict_env_zero_is_off_and_a_bad_value_is_one_line(pytester):
    pytester.makepyfile(test_s=TESTS)
    off = run(pytester, "-k", "test_tok", env={"LLMPERF_STRICT": "0"})
    off.assert_outcomes(passed=1, deselected=5)
    bad = run(pytester, env={"LLMPERF_STRICT": "maybe"})
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: llmperf: LLMPERF_STRICT: invalid value 'maybe', expected 1/true/yes/on or 0/*"])
    assert "Traceback" not in bad.stderr.str() + bad.stdout.str()


# --- a profiler left off ------------------------------------------------------------------------

PROFILED = textwrap.dedent(
    """
    def test_prog(llmperf, llmperf_profile):
        llmperf.record("tok_per_s", [100.0, 101.0, 99.0, 100.5, 99.5], unit="tok/s", higher_is_better=True)
        llmperf_profile.command(["/bin/true"])
    """
)


def _baseline_with_instructions(pytester: pytest.Pytester, cache: Path) -> None:
    """A baseline of test_prog holding an ``instructions`` metric: saved by a real run under valgrind
    when it is installed, else written through BaselineStore.save (the profiler's metric as valgrind
    records it) with the fingerprint of a run without it."""
    if shutil.which("valgrind"):
        result = run_isolated(pytester, *FAST, f"--llmperf-cache-dir={cache}", "--llmperf-profile=instructions",
                              "--llmperf-save-baseline", clear=CLEAR)
        result.assert_outcomes(passed=1)
    else:
        from pytest_llmperf.baseline import BaselineStore
        from pytest_llmperf.compare import Metric

        run(pytester, "--llmperf-save-baseline").assert_outcomes(passed=1)
        store = BaselineStore(pytester.path / "baselines", "testnode")
        metrics, digest, fields, _path = store.lookup("test_p.py::test_prog")
        ins = Metric("instructions", "instr", False, [212345.0], normalize="off", exact=True)
        store.save([{"nodeid": "test_p.py::test_prog", "metrics": [*metrics.values(), ins]}], fields or {},
                   digest or "", {})
    data = json.loads((pytester.path / "baselines" / "testnode" / "test_p.json").read_text())
    assert set(data["tests"]["test_prog"]["metrics"]) == {"tok_per_s", "instructions"}


def test_a_profiler_left_off_is_named(pytester, tmp_path):
    pytester.makepyfile(test_p=PROFILED)
    _baseline_with_instructions(pytester, tmp_path / "cache")
    loose = run(pytester, "--llmperf-json=r.json")
    loose.assert_outcomes(passed=1)
    assert loose.ret == 0
    loose.stdout.fnmatch_lines([
        "llmperf: WARNING missing: test_p.py::test_prog: metric instructions of the saved baseline not recorded: "
        "profiler instructions off (not in --llmperf-profile nor the test's marker profile=)",
    ])
    found = statuses(report(pytester))
    assert found[("test_prog", "tok_per_s")]["status"] == "ok"
    assert found[("test_prog", "instructions")]["status"] == "missing"
    assert found[("test_prog", "instructions")]["unit"] == "instr"
    strict = run(pytester, "--llmperf-strict")
    strict.assert_outcomes(passed=1)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["llmperf: ERROR: missing: test_p.py::test_prog: metric instructions*profiler "
                                 "instructions off*(--llmperf-strict)"])


def test_a_profiler_selected_by_the_marker_is_not_off(pytester, tmp_path):
    """The marker's profilers travel from the process that ran the test: a profiler selected there
    and unable to run (valgrind not on PATH) is "skipped" with its reason, not "off"."""
    pytester.makepyfile(test_p="import pytest\n" + PROFILED.replace(
        "def test_prog", "@pytest.mark.llmperf(profile='instructions')\ndef test_prog"))
    _baseline_with_instructions(pytester, tmp_path / "cache")
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    no_valgrind = os.pathsep.join(d for d in dirs if d and not os.path.exists(os.path.join(d, "valgrind")))
    result = run(pytester, f"--llmperf-cache-dir={tmp_path / 'cache'}", "--llmperf-json=r.json",
                 env={"PATH": no_valgrind})
    result.assert_outcomes(passed=1)
    reason = statuses(report(pytester))[("test_prog", "instructions")]["reason"]
    assert reason.startswith("profiler instructions skipped: ") and "valgrind" in reason[len("profiler instructions"):]


# --- pytest-benchmark under pytest-xdist ---------------------------------------------------------

BENCH = textwrap.dedent(
    """
    import os, time, pytest

    def test_bm(benchmark):
        benchmark.pedantic(time.sleep, args=(0.001,), rounds=10)

    def test_rec(llmperf):
        if os.environ.get("SKIP") == "1":
            pytest.skip("off tonight")
        llmperf.record("v", [1.0, 1.01, 0.99, 1.0, 1.0], unit="s", higher_is_better=False)
    """
)


def test_pytest_benchmark_disabled_under_xdist_is_missing(pytester):
    pytest.importorskip("xdist")
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(test_b=BENCH)
    run_isolated(pytester, *FAST, "--llmperf-save-baseline", clear=CLEAR).assert_outcomes(passed=2)
    loose = run_isolated(pytester, *FAST, "-n", "2", "-p", "xdist", "--llmperf-json=r.json", clear=CLEAR,
                         env={"SKIP": "1"})
    loose.assert_outcomes(passed=1, skipped=1)
    assert loose.ret == 0
    loose.stdout.fnmatch_lines([
        "llmperf: WARNING missing: test_b.py::test_bm: test of the saved baseline recorded none of its metrics "
        "(time): pytest-benchmark disabled under pytest-xdist (it disables itself there): run the benchmarks "
        "without -n",
    ])
    # the skip reason crossed from the worker too
    assert {m["test"]: m["reason"] for m in report(pytester)["missing"]}["test_b.py::test_rec"] == "skipped: off tonight"
    strict = run_isolated(pytester, *FAST, "-n", "2", "-p", "xdist", "--llmperf-strict", clear=CLEAR)
    strict.assert_outcomes(passed=2)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["llmperf: ERROR: missing: test_b.py::test_bm:*pytest-benchmark disabled under "
                                 "pytest-xdist*(--llmperf-strict)"])


# --- the pure rule (holes.py) -------------------------------------------------------------------

@pytest.mark.parametrize("metric, profiler", [
    ("perf.task-clock", "perf-stat"), ("perf.instructions", "perf-stat"), ("perf.ipc", "perf-stat"),
    ("perf.samples", "perf-record"), ("run.perf.samples", "perf-record"), ("run.perf.cycles", "perf-stat"),
    ("nsys.gpu_kernel_ms", "nsys"), ("instructions", "instructions"), ("ref.instructions", "instructions"),
    ("tok_per_s", None), ("time", None), ("perf", None),
])
def test_profiler_of(metric, profiler):
    assert holes.profiler_of(metric) == profiler


def _outcome(*phases: tuple[str, str], **kw) -> holes.Outcome:
    o = holes.Outcome("t.py::t", **kw)
    for when, outcome in phases:
        o.add(when, outcome)
    return o


def test_reason_precedence():
    ran = (("setup", "passed"), ("call", "passed"), ("teardown", "passed"))
    skipped = holes.Outcome("t.py::t")
    skipped.add("setup", "skipped", skip_reason="no GPU")
    assert holes.reason(skipped, "perf.cycles") == "skipped: no GPU"  # a skip says more than "profiler off"
    errored = holes.Outcome("t.py::t")
    errored.add("setup", "failed", error="OSError: disk full")
    assert holes.reason(errored, "tok_per_s") == "errored in setup: OSError: disk full"
    assert holes.reason(_outcome(*ran, recorded={"x"}), "perf.cycles").startswith("profiler perf-stat off")
    skipped_tool = _outcome(*ran, recorded={"x"}, profilers={"nsys"}, profilers_skipped={"nsys": "no GPU"})
    assert holes.reason(skipped_tool, "nsys.gpu_kernel_ms") == "profiler nsys skipped: no GPU"
    assert holes.reason(_outcome(*ran, benchmark="disabled (--benchmark-disable)"), "time") == \
        "pytest-benchmark disabled (--benchmark-disable)"
    assert holes.reason(_outcome(*ran), "time") == "recorded nothing"
    assert holes.reason(_outcome(*ran, recorded={"x"}), "y") == "not recorded in this run"
    torn = holes.Outcome("t.py::t")
    for when, outcome, error in (("setup", "passed", ""), ("call", "passed", ""), ("teardown", "failed", "E: x")):
        torn.add(when, outcome, error=error)
    assert holes.reason(torn, "y") == "recorded nothing; errored in teardown: E: x"
    assert holes.reason(_outcome(("setup", "passed")), "y") == "did not run (the session stopped)"
    xfailed = holes.Outcome("t.py::t")
    xfailed.add("call", "skipped", xfail="known slow")
    assert holes.reason(xfailed, "y") == "xfailed: known slow"


def test_find_groups_by_reason_and_merge_keeps_the_first_source():
    saved = {"t.py::t": {"a": holes.Expected("s", False), "perf.cycles": holes.Expected("", False, gate=False)}}
    history = {"t.py::t": {"a": holes.Expected("ms", True, source="history"),
                           "b": holes.Expected("s", False, source="history")},
               "t.py::other": {"a": holes.Expected("s", False, source="history")}}
    expected = holes.merge(saved, history)
    assert expected["t.py::t"]["a"].source == "saved" and expected["t.py::t"]["b"].source == "history"
    ran = _outcome(("setup", "passed"), ("call", "passed"), recorded={"zzz"})
    found = holes.find(expected, [ran])  # t.py::other was not selected: not missing
    assert [(h.metrics, h.gated, h.sources, h.whole_test) for h in found] == [
        (("a", "b"), True, ("saved", "history"), False), (("perf.cycles",), False, ("saved",), False)]
    assert found[0].message() == ("t.py::t: metrics a, b of the saved baseline and the history not recorded: "
                                  "not recorded in this run")
    verdicts = holes.verdicts(found, expected, lambda name: 0.05)
    assert [(v.metric, v.status, v.unit, v.reference) for v in verdicts] == [
        ("a", "missing", "s", "saved"), ("b", "missing", "s", "history"), ("perf.cycles", "missing", "", "saved")]
    assert holes.find(expected, [holes.Outcome("t.py::t")]) == []  # no report: not selected


def test_other_sources_of_expectations_join_the_baseline(pytester):
    """The history's expectations come in through Collector.expect (plugin_history uses it): a
    test the history knows and the saved baseline does not is missing too, from "the history"."""
    pytester.makeconftest(textwrap.dedent(
        """
        import pytest
        from pytest_llmperf.holes import Expected
        from pytest_llmperf.plugin_finish import COLLECTOR

        @pytest.hookimpl(trylast=True)
        def pytest_configure(config):
            collector = config.stash.get(COLLECTOR, None)
            if collector is not None:
                collector.expect(lambda selected: {
                    n: {"tok_per_s": Expected("tok/s", True, source="history")} for n in selected})
        """
    ))
    pytester.makepyfile(test_h="def test_quiet(llmperf):\n    pass\n")
    result = run(pytester, "--llmperf-json=r.json")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["llmperf: 1 missing", "llmperf: WARNING missing: test_h.py::test_quiet: test of the "
                                 "history recorded none of its metrics (tok_per_s): recorded nothing"])
    v = statuses(report(pytester))[("test_quiet", "tok_per_s")]
    assert v["status"] == "missing" and v["reference"] == "history"
    strict = run(pytester, "--llmperf-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
