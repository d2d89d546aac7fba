"""Issue 11 end to end: bad input that used to switch the gate off or end in a traceback now gets
one clear line, the right exit code, and loses nothing. (Unit-level tests of the same rules are in
test_config.py, test_recorder.py and test_baseline.py.)"""

from __future__ import annotations

import json
import textwrap

import pytest
from test_plugin import RECORDING, _assert_usage_error, baseline_file, run


@pytest.fixture
def rec(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_rec=RECORDING)
    return pytester


def no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text


# -- item 1: a tolerance without "%" ------------------------------------------------------------

@pytest.mark.parametrize("args, ini, message", [
    (["--llmperf-tolerance=5"], None, "ERROR: llmperf: --llmperf-tolerance: invalid value '5': write a percentage with '%', like '5%'"),
    (["--llmperf-tolerance=tok_per_s=3"], None, "ERROR: llmperf: --llmperf-tolerance tok_per_s: invalid value '3': *like '3%'"),
    ([], "llmperf_tolerance = 5", "ERROR: llmperf: ini llmperf_tolerance: invalid value '5': write a percentage with '%', like '5%'"),
    ([], "llmperf_tolerance = abc", "ERROR: llmperf: ini llmperf_tolerance: invalid value 'abc'*"),
    (["--llmperf-noise-floor=1"], None, "ERROR: llmperf: --llmperf-noise-floor: invalid value '1': write a percentage with '%', like '1%'"),
    ([], "llmperf_noise_floor = 1", "ERROR: llmperf: ini llmperf_noise_floor: invalid value '1'*"),
    (["--llmperf-confidence=0.99"], None, "ERROR: llmperf: --llmperf-confidence: invalid value '0.99': write a percentage*"),
    ([], "llmperf_require_baseline = maybe", "ERROR: llmperf: ini llmperf_require_baseline: *maybe*"),
    (["--llmperf-min-rounds=99999999999999999999"], None,
     "ERROR: llmperf: --llmperf-min-rounds: invalid value '99999999999999999999', must be <= 10,000"),
    ([], "llmperf_min_rounds = 20000", "ERROR: llmperf: ini llmperf_min_rounds: invalid value '20000', must be <= 10,000"),
    (["--llmperf-max-time=1e400"], None, "ERROR: llmperf: --llmperf-max-time: invalid value '1e400', must be a positive*"),
])
def test_ambiguous_or_unbounded_values_are_usage_errors(rec, args, ini, message):
    if ini:
        rec.makeini(f"[pytest]\n{ini}\n")
    result = run(rec, *args)
    _assert_usage_error(result, message)


def test_a_marker_tolerance_that_is_a_whole_number_is_refused(pytester):
    pytester.makepyfile(test_m=textwrap.dedent(
        """
        import pytest
        @pytest.mark.llmperf(tolerance=5)
        def test_m(llmperf):
            llmperf.record("tok", [1.0, 1.0, 1.0], higher_is_better=True)
        """
    ))
    _assert_usage_error(run(pytester), "ERROR: llmperf: test_m.py::test_m: llmperf(tolerance=...): invalid value 5: "
                                       "a number is a fraction and must be below 1; write '5%' or 0.05")


@pytest.mark.parametrize("value", ["10**400", "float(10**300) * 0 + 1e300"])
def test_huge_marker_numbers_are_usage_errors_not_internal_errors(pytester, value):
    pytester.makepyfile(test_h=textwrap.dedent(
        f"""
        import pytest
        @pytest.mark.llmperf(tolerance={value}, max_time={value})
        def test_h(llmperf):
            pass
        """
    ))
    result = run(pytester)
    _assert_usage_error(result, "ERROR: llmperf: test_h.py::test_h: llmperf(tolerance=...): invalid value *")


def test_a_halved_tok_s_fails_under_a_fractional_marker_tolerance(rec):
    """The case the hostile run found (tok/s halved, tolerance '5' read as 500%, exit 0) can no
    longer be written; its correct spelling gates."""
    run(rec, "--llmperf-save-baseline").assert_outcomes(passed=3)
    result = run(rec, "--llmperf-tolerance=5%", env={"TOK_SCALE": "0.5"})
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*tok_per_s regressed*change -50.0%*tolerance 5.0%*"])


# -- item 2: numbers a baseline file must not hold ------------------------------------------------

BASELINE_HEAD = ('{"schema": "pytest-llmperf-baseline", "schema_version": 1, "fingerprints": {}, '
                 '"tests": {"test_tok[260K]": {"metrics": {"tok_per_s": ')


@pytest.mark.parametrize("metric, message", [
    ('{"unit": "tok/s", "direction": "higher", "samples": [NaN, 1, 2]}', "*test_rec.json, test 'test_tok[[]260K[]]': metric 'tok_per_s' has NaN in samples[[]0[]], which is not a number*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [1, 2], "probes": [NaN, 1]}', "*metric 'tok_per_s' has NaN in probes[[]0[]]*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [Infinity, 1]}', "*metric 'tok_per_s' has Infinity in samples[[]0[]]*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [1, 2], "probes": [0, 0]}',
     "*test_rec.json, test 'test_tok[[]260K[]]': metric 'tok_per_s' has a probe time 0 that is zero*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [0, 0, 0]}',
     "*test 'test_tok[[]260K[]]': metric 'tok_per_s' has a sample 0 that is zero in a gated metric*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [-3, -2, -1]}', "*metric 'tok_per_s' has a sample -3 that is negative*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [' + "9" * 400 + ']}', "*metric 'tok_per_s' has a 400-digit integer, out of range in samples[[]0[]]*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [' + "9" * 4400 + ']}', "*metric 'tok_per_s' has a 4400-digit integer, out of range in samples[[]0[]]*"),
    ('{"unit": "tok/s", "direction": "higher", "samples": [1e308, 1e308]}', "*has a sample 1e+308 that is out of range*"),
])
def test_bad_numbers_in_a_baseline_stop_the_session_at_start(rec, metric, message):
    path = baseline_file(rec)
    path.parent.mkdir(parents=True)
    content = BASELINE_HEAD + metric + "}}}}\n"
    path.write_text(content)
    for args in ([], ["--llmperf-save-baseline"]):
        result = run(rec, *args)
        _assert_usage_error(result, "ERROR: llmperf: baseline file *" + message.lstrip("*"))
        assert path.read_text() == content


# -- item 3: reports that cannot be written -------------------------------------------------------

def test_report_paths_are_checked_before_the_tests_run(rec):
    (rec.path / "afile").write_text("x")
    (rec.path / "adir").mkdir()
    _assert_usage_error(run(rec, "--llmperf-json=afile/report.json"),
                        "ERROR: llmperf: --llmperf-json */afile/report.json: */afile is not a directory")
    _assert_usage_error(run(rec, "--llmperf-markdown=adir"), "ERROR: llmperf: --llmperf-markdown */adir: is a directory")
    _assert_usage_error(run(rec, "--llmperf-json=same.out", "--llmperf-markdown=same.out"),
                        "ERROR: llmperf: --llmperf-json and --llmperf-markdown are the same file *same.out")


def test_a_report_that_fails_late_is_an_error_and_does_not_stop_the_other(pytester):
    """The JSON report's directory turns into a file while the tests run: the run exits non-zero,
    names the option and path (not a temporary file), says no "wrote" for it, and the Markdown
    report is still written."""
    pytester.makepyfile(test_r=textwrap.dedent(
        """
        import shutil
        def test_r(llmperf):
            llmperf.record("tok", [1.0, 1.1, 1.2], higher_is_better=True)
            shutil.rmtree("out")
            open("out", "w").write("not a directory any more")
        """
    ))
    (pytester.path / "out").mkdir()
    result = run(pytester, "--llmperf-json=out/r.json", "--llmperf-markdown=r.md")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["llmperf: wrote */r.md", "llmperf: ERROR: --llmperf-json */out/r.json: cannot write the report: *"])
    assert "wrote " + str(pytester.path / "out" / "r.json") not in result.stdout.str()
    assert ".tmp" not in result.stdout.str()
    assert "tok" in (pytester.path / "r.md").read_text()
    no_traceback(result)


def test_remove_stale_report(tmp_path):
    from pytest_llmperf import report

    old = tmp_path / "llmperf.md"
    old.write_text("last night")
    assert report.remove_stale(old) and not old.exists()
    assert not report.remove_stale(old)


def test_a_newline_in_a_test_id_stays_inside_its_markdown_row():
    from pytest_llmperf import report
    from pytest_llmperf.compare import Verdict

    v = Verdict(test="test_a.py::test_x[line1\nline2|x]", metric="tok", status="ok", unit="tok/s",
                higher_is_better=True, tolerance=0.05, current=1.0, baseline=1.0, change=0.0)
    rows = [line for line in report.markdown("n", [v]).splitlines() if line.startswith("| `test_a")]
    assert rows == ["| `test_a.py::test_x[line1 line2\\|x]` | tok \u2191 | saved | 1 tok/s | 1 tok/s | +0.0% | - | 5.0% | ok |"]


# -- item 4: fingerprints of the wrong type -------------------------------------------------------

@pytest.mark.parametrize("fingerprints, entry_fp, message", [
    ("[1, 2]", '"x"', "*\"tests\" and \"fingerprints\" must be objects*"),
    ('"abc"', '"x"', "*\"tests\" and \"fingerprints\" must be objects*"),
    ("7", '"x"', "*\"tests\" and \"fingerprints\" must be objects*"),
    ('{"x": [1]}', '"x"', "*fingerprint 'x' is [[]1[]], not an object*"),
    ("{}", '["x"]', "*test 'test_latency': \"fingerprint\" is [[]'x'[]], not a string*"),
])
def test_fingerprints_of_the_wrong_type_stop_the_session_at_start(rec, fingerprints, entry_fp, message):
    path = baseline_file(rec)
    path.parent.mkdir(parents=True)
    content = ('{"schema": "pytest-llmperf-baseline", "schema_version": 1, "fingerprints": ' + fingerprints +
               ', "tests": {"test_latency": {"fingerprint": ' + entry_fp + ', "metrics": {"ms_per_step": '
               '{"unit": "ms", "direction": "lower", "samples": [1, 2, 3]}}}}}\n')
    path.write_text(content)
    _assert_usage_error(run(rec), "ERROR: llmperf: baseline file *test_rec.json" + message)
    assert path.read_text() == content


# -- item 10: fingerprint fields that are not JSON ------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("{1, 2}", "field board is a set ({1, 2}), not a JSON value*"),
    ("b'rev-a'", "field board is a bytes*not a JSON value*"),
    ("float('nan')", "field board is nan, not a finite number"),
    ("{'rev': {3}}", "field board.rev is a set*"),
])
def test_fingerprint_hook_values_that_are_not_json_fail_naming_the_field(rec, value, message):
    rec.makeconftest(textwrap.dedent(
        f"""
        def pytest_llmperf_fingerprint(config, info, fields):
            fields["board"] = {value}
        """
    ))
    result = run(rec, "--llmperf-save-baseline", "--llmperf-json=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([f"*llmperf: pytest_llmperf_fingerprint hook: {message}"])
    no_traceback(result)
    assert not baseline_file(rec).exists()
    assert json.loads((rec.path / "r.json").read_text())["fingerprint"]["hash"] is None


# -- item 11: temporary files of killed saves ----------------------------------------------------

def test_a_save_removes_what_a_killed_save_left(rec):
    node = rec.path / "baselines" / "testnode"
    node.mkdir(parents=True)
    stale = node / ".test_rec.json.abcd1234.tmp"
    stale.write_text('{"schema": "pytest-llm')
    run(rec, "--llmperf-save-baseline").assert_outcomes(passed=3)
    assert not stale.exists()
    assert sorted(p.name for p in node.iterdir()) == [".llmperf.lock", "test_rec.json"]


# -- item 14: report-only and a changed unit ------------------------------------------------------

def test_report_only_never_fails_on_a_changed_unit_or_direction(pytester):
    pytester.makepyfile(test_u=textwrap.dedent(
        """
        import os
        def test_u(llmperf):
            llmperf.record("step", [1.0, 1.1, 1.2], unit=os.environ.get("UNIT", "ms"),
                           higher_is_better=os.environ.get("HIGHER") == "1")
        """
    ))
    run(pytester, "--llmperf-save-baseline").assert_outcomes(passed=1)
    for env in ({"UNIT": "s"}, {"HIGHER": "1"}):
        result = run(pytester, "--llmperf-report-only", env=env)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["llmperf: WARNING test_u.py::test_u step not compared: metric changed*"])
    run(pytester, env={"UNIT": "s"}).assert_outcomes(failed=1)  # without report-only it still fails


# -- item 15: an error in teardown ---------------------------------------------------------------

def test_a_test_that_errors_in_teardown_is_not_saved(pytester):
    pytester.makepyfile(test_t=textwrap.dedent(
        """
        import pytest
        @pytest.fixture
        def leaky():
            yield
            raise RuntimeError("cleanup failed")
        def test_leaky(llmperf, leaky):
            llmperf.record("x", [1.0, 1.1, 1.2], unit="s", higher_is_better=False)
        def test_fine(llmperf):
            llmperf.record("x", [1.0, 1.1, 1.2], unit="s", higher_is_better=False)
        """
    ))
    result = run(pytester, "--llmperf-save-baseline")
    result.assert_outcomes(passed=2, errors=1)
    assert list(json.loads(baseline_file(pytester, "test_t").read_text())["tests"]) == ["test_fine"]


# -- item 16: a test file named node-info.py ------------------------------------------------------

def test_a_test_file_named_node_info_does_not_take_the_node_facts_file(pytester):
    pytester.makepyfile(**{"node-info": "def test_n(llmperf):\n"
                                        "    llmperf.record('x', [1.0, 1.1, 1.2], unit='s', higher_is_better=False)\n"})
    node = pytester.path / "baselines" / "testnode"
    node.mkdir(parents=True)
    (node / "node-info.json").write_text('{"memory_bandwidth": {}}\n')
    run(pytester, "node-info.py", "--llmperf-save-baseline").assert_outcomes(passed=1)
    assert (node / "node-info.json").read_text() == '{"memory_bandwidth": {}}\n'
    assert "test_n" in json.loads((node / "node-info.py.json").read_text())["tests"]
    # compared (the row is "node-info.py::test_n ...", or "  test_n ..." under "node-info.py" when the
    # summary groups the rows by file to fit the terminal)
    run(pytester, "node-info.py").stdout.fnmatch_lines(["*test_n*x*1.1 s*1.1 s*+0.0%*"])


# -- item 18: where a save would fail is named before the tests run -------------------------------

def test_a_baseline_subdirectory_that_cannot_be_written_is_named_at_start(pytester):
    sub = pytester.mkpydir("suites")
    (sub / "test_s.py").write_text("def test_s(llmperf):\n"
                                   "    llmperf.record('x', [1.0, 1.1, 1.2], unit='s', higher_is_better=False)\n")
    node = pytester.path / "baselines" / "testnode"
    node.mkdir(parents=True)
    (node / "suites").write_text("a file where the directory should be")
    result = run(pytester, "--llmperf-save-baseline")
    _assert_usage_error(result, "ERROR: llmperf: baseline dir */testnode/suites: */testnode/suites is a file, not a directory")
    result.stdout.no_fnmatch_line("*1 passed*")


# -- item 13: a misuse of llmperf.record fails its test with one line and where -------------------

def test_a_misuse_of_record_fails_the_test_with_its_line_and_place(pytester):
    pytester.makepyfile(test_d=textwrap.dedent(
        """
        def test_direction(llmperf):
            llmperf.record("tok", [1.0, 2.0], higher_is_better="no")
        def test_strings(llmperf):
            llmperf.record("tok", ["1.0", "2.0"], higher_is_better=True)
        def test_huge(llmperf):
            llmperf.record("tok", [1.7e308] * 3, higher_is_better=True)
        def test_huge_int(llmperf):
            llmperf.record("tok", [10**400], higher_is_better=True)
        def test_zero_rate(llmperf):
            llmperf.record("tok", [0.0, 5.0, 6.0], higher_is_better=True)
        """
    ))
    result = run(pytester)
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines([
        "llmperf.record('tok'): higher_is_better must be True or False, got 'no' (test_d.py:2)",
        "llmperf.record('tok'): samples must be a number or a list of numbers, got '1.0' (test_d.py:4)",
        "llmperf.record('tok'): sample 1.7e+308 is out of range (must be below 1e+18) (test_d.py:6)",
        "llmperf.record('tok'): sample 1000000000000000000000000000000000000... is out of range*(test_d.py:8)",
        "llmperf.record('tok'): sample 0.0 is zero in a gated metric*(test_d.py:10)",
    ])
    no_traceback(result)
