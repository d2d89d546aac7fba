"""End-to-end tests of the plugin through pytester: options, save/compare, verdicts, reports, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]

# A test file whose samples are set from the environment: deterministic verdicts.
RECORDING = textwrap.dedent(
    """
    import os, pytest

    def _samples(scale):
        # 30 samples with a small deterministic spread around 100 * scale
        return [100.0 * scale * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(30)]

    @pytest.mark.parametrize("model", ["260K", "15M"])
    def test_tok(llmperf, model):
        scale = float(os.environ.get("TOK_SCALE", "1.0"))
        llmperf.record("tok_per_s", _samples(scale), unit="tok/s", higher_is_better=True)

    def test_latency(llmperf):
        scale = float(os.environ.get("LAT_SCALE", "1.0"))
        llmperf.record("ms_per_step", _samples(scale), unit="ms", higher_is_better=False)
    """
)


def baseline_file(pytester: pytest.Pytester, name: str = "test_rec", node: str = "testnode") -> Path:
    return pytester.path / "baselines" / node / f"{name}.json"


def run(pytester: pytest.Pytester, *args: str, env: dict | None = None) -> pytest.RunResult:
    mp = pytest.MonkeyPatch()
    try:
        # an outer xdist run must not leak into the inner session (pytest-benchmark disables itself)
        mp.delenv("PYTEST_XDIST_WORKER", raising=False)
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        return pytester.runpytest(*FAST, *args)
    finally:
        mp.undo()


@pytest.fixture
def rec(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_rec=RECORDING)
    return pytester


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*pytest-llmperf*"])
    for option in [
        "--llmperf-node=NAME", "--llmperf-baseline-dir=DIR", "--llmperf-save-baseline", "--llmperf-tolerance=SPEC",
        "--llmperf-warmup=N|auto", "--llmperf-min-rounds=N", "--llmperf-max-time=SECONDS", "--llmperf-confidence=PCT",
        "--llmperf-noise-floor=PCT", "--llmperf-normalize=auto|on|off", "--llmperf-force-compare",
        "--llmperf-require-baseline", "--llmperf-report-only", "--llmperf-json=PATH", "--llmperf-markdown=PATH",
    ]:
        result.stdout.fnmatch_lines([f"*{option}*"])
    result.stdout.fnmatch_lines(["*llmperf_node*", "*llmperf_tolerance*"])


def test_header_shows_node(rec: pytest.Pytester) -> None:
    result = run(rec)
    result.stdout.fnmatch_lines(["llmperf: node testnode (--llmperf-node), baselines baselines*testnode (0 files)*"])


def test_node_from_env_and_ini(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nllmperf_node = from-ini\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["llmperf: node from-ini (ini llmperf_node)*"])
    monkeypatch.setenv("LLMPERF_NODE", "from-env")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["llmperf: node from-env (LLMPERF_NODE)*"])


def test_node_name_hook(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMPERF_NODE", raising=False)
    pytester.makeconftest("def pytest_llmperf_node_name(config, default):\n    return 'rack7-' + 'board3'\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["llmperf: node rack7-board3 (pytest_llmperf_node_name hook)*"])


def test_save_then_compare_unchanged(rec: pytest.Pytester) -> None:
    saved = run(rec, "--llmperf-save-baseline")
    saved.assert_outcomes(passed=3)
    path = baseline_file(rec)
    data = json.loads(path.read_text())
    assert data["schema"] == "pytest-llmperf-baseline" and data["schema_version"] == 1
    assert sorted(data["tests"]) == ["test_latency", "test_tok[15M]", "test_tok[260K]"]
    tok = data["tests"]["test_tok[260K]"]
    assert tok["params"] == {"model": "260K"}
    assert tok["metrics"]["tok_per_s"]["direction"] == "higher"
    assert tok["metrics"]["tok_per_s"]["unit"] == "tok/s"
    assert len(tok["metrics"]["tok_per_s"]["samples"]) == 30
    assert tok["metrics"]["tok_per_s"]["summary"]["n"] == 30
    assert tok["fingerprint"] in data["fingerprints"]
    assert tok["plugin_version"]
    saved.stdout.fnmatch_lines(["llmperf: saved baseline *testnode*test_rec.json"])

    compared = run(rec, env={"COLUMNS": "200"})  # the whole table on one line a row
    compared.assert_outcomes(passed=3)
    compared.stdout.fnmatch_lines([
        "*llmperf: node testnode*",
        "test*metric*baseline*current*change*tolerance*status*",
        "test_rec.py::test_tok?260K?*tok_per_s*100*tok/s*100*tok/s*+0.0%*5.0%*ok*",
        "llmperf: 3 ok",
    ])
    assert compared.ret == 0


def test_injected_regression_fails_the_run(rec: pytest.Pytester) -> None:
    run(rec, "--llmperf-save-baseline").assert_outcomes(passed=3)
    before = baseline_file(rec).read_bytes()
    result = run(rec, env={"TOK_SCALE": "0.85"})
    result.assert_outcomes(passed=1, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*llmperf: tok_per_s regressed: baseline 100* tok/s -> current 85* tok/s, change -15.0%*99% CI*tolerance 5.0%*",
        "*test_tok?260K?*regressed*",
        "llmperf: 2 regressed, 1 ok",
    ])
    assert "Traceback" not in result.stdout.str()
    assert baseline_file(rec).read_bytes() == before  # a compare run never writes


def test_improvement_passes_and_suggests_rebaseline(rec: pytest.Pytester) -> None:
    run(rec, "--llmperf-save-baseline")
    result = run(rec, env={"LAT_SCALE": "0.8"})
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_latency*ms_per_step*-20.0%*improved*", "*consider --llmperf-save-baseline*"])


def test_change_within_tolerance_is_ok_and_tolerance_option(rec: pytest.Pytester) -> None:
    run(rec, "--llmperf-save-baseline")
    # 8% slower latency: regressed at the default 5%, ok with a 10% tolerance for that metric
    assert run(rec, env={"LAT_SCALE": "1.08"}).ret == pytest.ExitCode.TESTS_FAILED
    result = run(rec, "--llmperf-tolerance=ms_per_step=10%", env={"LAT_SCALE": "1.08"})
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_latency*ms_per_step*+8.0%*10.0%*ok*"])


def test_marker_tolerance_overrides_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=textwrap.dedent(
        """
        import os, pytest
        @pytest.mark.llmperf(tolerances={"tok_per_s": "20%"})
        def test_tok(llmperf):
            s = float(os.environ.get("TOK_SCALE", "1"))
            llmperf.record("tok_per_s", [100 * s + i * 0.01 for i in range(20)], unit="tok/s", higher_is_better=True)
        """
    ))
    run(pytester, "--llmperf-save-baseline")
    result = run(pytester, "--llmperf-tolerance=1%", env={"TOK_SCALE": "0.9"})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*tok_per_s*-10.0%*20.0%*ok*"])


def test_report_only_never_fails(rec: pytest.Pytester) -> None:
    run(rec, "--llmperf-save-baseline")
    result = run(rec, "--llmperf-report-only", env={"TOK_SCALE": "0.5"})
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*regressed*"])
    assert result.ret == 0


def test_require_baseline_turns_new_into_failure(rec: pytest.Pytester) -> None:
    result = run(rec)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["llmperf: 3 new"])
    result = run(rec, "--llmperf-require-baseline")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*has no baseline on node testnode*"])


def test_save_merges_a_subset_and_keeps_other_tests(rec: pytest.Pytester) -> None:
    run(rec, "--llmperf-save-baseline")
    first = json.loads(baseline_file(rec).read_text())
    run(rec, "--llmperf-save-baseline", "-k", "latency", env={"LAT_SCALE": "2.0"})
    second = json.loads(baseline_file(rec).read_text())
    assert sorted(second["tests"]) == sorted(first["tests"])
    assert second["tests"]["test_tok[260K]"] == first["tests"]["test_tok[260K]"]
    assert second["tests"]["test_latency"]["metrics"]["ms_per_step"]["summary"]["median"] == pytest.approx(200, rel=0.01)
    assert not [p for p in baseline_file(rec).parent.iterdir() if p.name.endswith(".tmp")]


def test_failed_test_is_not_saved(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_f=textwrap.dedent(
        """
        def test_good(llmperf):
            llmperf.record("x", [1.0, 1.0, 1.0], unit="s", higher_is_better=False)
        def test_bad(llmperf):
            llmperf.record("x", [1.0, 1.0, 1.0], unit="s", higher_is_better=False)
            assert False, "broken after recording"
        """
    ))
    result = run(pytester, "--llmperf-save-baseline")
    result.assert_outcomes(passed=1, failed=1)
    data = json.loads(baseline_file(pytester, "test_f").read_text())
    assert list(data["tests"]) == ["test_good"]


def test_interrupted_run_saves_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_i=textwrap.dedent(
        """
        def test_a(llmperf):
            llmperf.record("x", [1.0, 1.0, 1.0], unit="s", higher_is_better=False)
        def test_b():
            raise KeyboardInterrupt
        """
    ))
    result = pytester.runpytest_subprocess(*FAST, "--llmperf-save-baseline")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not baseline_file(pytester, "test_i").exists()


def test_measure_detects_slower_callable(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sleep=textwrap.dedent(
        """
        import os, time
        def test_sleepy(llmperf):
            delay = float(os.environ.get("DELAY", "0.002"))
            assert llmperf.measure(time.sleep, delay) is None
        """
    ))
    run(pytester, "--llmperf-save-baseline").assert_outcomes(passed=1)
    data = json.loads(baseline_file(pytester, "test_sleep").read_text())
    metric = data["tests"]["test_sleepy"]["metrics"]["time"]
    assert metric["unit"] == "s" and metric["direction"] == "lower"
    assert len(metric["probes"]) == len(metric["samples"])
    assert 0.002 <= metric["summary"]["median"] < 0.004
    assert set(metric["warmup"]) >= {"discarded", "first", "steady"}
    result = run(pytester, env={"DELAY": "0.004"})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*time regressed*"])


def test_pytest_benchmark_fixture_is_gated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pb=textwrap.dedent(
        """
        import os, time
        def test_bm(benchmark):
            benchmark.pedantic(time.sleep, args=(float(os.environ.get("DELAY", "0.002")),), rounds=15)
        """
    ))
    run(pytester, "--llmperf-save-baseline").assert_outcomes(passed=1)
    data = json.loads(baseline_file(pytester, "test_pb").read_text())
    assert len(data["tests"]["test_bm"]["metrics"]["time"]["samples"]) == 15
    assert run(pytester).ret == 0
    result = run(pytester, env={"DELAY": "0.005"})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: time regressed*"])


def test_json_and_markdown_reports(rec: pytest.Pytester) -> None:
    run(rec, "--llmperf-save-baseline")
    result = run(rec, "--llmperf-json=out/r.json", "--llmperf-markdown=out/r.md", env={"TOK_SCALE": "0.8"})
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    payload = json.loads((rec.path / "out" / "r.json").read_text())
    assert payload["node"] == "testnode"
    assert payload["fingerprint"]["hash"] and payload["fingerprint"]["fields"]["arch"]
    assert payload["counts"] == {"regressed": 2, "ok": 1}
    statuses = {(v["test"], v["metric"]): v["status"] for v in payload["verdicts"]}
    assert statuses[("test_rec.py::test_tok[15M]", "tok_per_s")] == "regressed"
    assert {t["nodeid"] for t in payload["tests"]} == {
        "test_rec.py::test_tok[260K]", "test_rec.py::test_tok[15M]", "test_rec.py::test_latency"}
    md = (rec.path / "out" / "r.md").read_text()
    assert "### pytest-llmperf on node `testnode`" in md
    assert "**2 regressed, 1 ok**" in md
    assert "| `test_rec.py::test_tok[15M]` | tok_per_s" in md and "**regressed**" in md


def test_fingerprint_change_is_not_compared_unless_forced(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(textwrap.dedent(
        """
        import os
        def pytest_llmperf_fingerprint(config, info, fields):
            fields["board_rev"] = os.environ.get("BOARD_REV", "A")
        """
    ))
    pytester.makepyfile(test_rec=RECORDING)
    run(pytester, "--llmperf-save-baseline")
    result = run(pytester, env={"BOARD_REV": "B", "TOK_SCALE": "0.5"})
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*not-compared*", "*WARNING*not compared: machine fingerprint differs: board_rev*A*B*"])
    forced = run(pytester, "--llmperf-force-compare", env={"BOARD_REV": "B", "TOK_SCALE": "0.5"})
    forced.assert_outcomes(passed=1, failed=2)


def test_xdist_workers_save_everything(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x=textwrap.dedent(
        """
        import pytest
        @pytest.mark.parametrize("i", range(24))
        def test_many(llmperf, i):
            llmperf.record("v", [float(i + 1)] * 3, unit="u", higher_is_better=True)
        """
    ))
    result = pytester.runpytest_subprocess(*FAST, "-n", "3", "--llmperf-save-baseline")
    result.assert_outcomes(passed=24)
    data = json.loads(baseline_file(pytester, "test_x").read_text())
    assert sorted(data["tests"]) == sorted(f"test_many[{i}]" for i in range(24))
    assert data["tests"]["test_many[5]"]["metrics"]["v"]["samples"] == [6.0, 6.0, 6.0]
    compared = pytester.runpytest_subprocess(*FAST, "-n", "3")
    compared.assert_outcomes(passed=24)
    compared.stdout.fnmatch_lines(["llmperf: 24 ok"])


# --- bad input: one clear line, no traceback, nothing lost ------------------------------------

def _assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(list(patterns))
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize("content, message", [
    ('{"schema": "pytest-llmperf-baseline", "schema_version": 1, "tests": {', "*is truncated JSON*"),
    ("{not json at all}", "*is corrupt JSON*"),
    ('{"schema": "pytest-llmperf-baseline", "schema_version": 99, "tests": {}}', "*schema version 99*upgrade*"),
    ('{"schema": "pytest-llmperf-baseline", "schema_version": "x", "tests": {}}', "*unknown schema version 'x'*"),
    ('{"hello": 1}', "*is not a pytest-llmperf baseline file*"),
])
def test_bad_baseline_file_is_a_clear_error_and_is_kept(rec: pytest.Pytester, content: str, message: str) -> None:
    path = baseline_file(rec)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    for args in ([], ["--llmperf-save-baseline"]):
        result = run(rec, *args)
        _assert_usage_error(result, f"ERROR: llmperf: *{path.name}*")
        result.stderr.fnmatch_lines([message])
        assert path.read_text() == content


def test_baseline_dir_that_is_a_file(rec: pytest.Pytester) -> None:
    (rec.path / "notadir").write_text("x")
    result = run(rec, "--llmperf-baseline-dir=notadir", "--llmperf-save-baseline")
    _assert_usage_error(result, "ERROR: llmperf: baseline dir *notadir* is a file, not a directory")
    assert (rec.path / "notadir").read_text() == "x"


@pytest.mark.parametrize("args, message", [
    (["--llmperf-tolerance=five"], "ERROR: llmperf: --llmperf-tolerance: invalid value 'five'*"),
    (["--llmperf-tolerance=-3%"], "ERROR: llmperf: --llmperf-tolerance: invalid value '-3%'*"),
    (["--llmperf-tolerance=tok/s=3%"], "ERROR: llmperf: --llmperf-tolerance: invalid metric name 'tok/s'*"),
    (["--llmperf-warmup=sometimes"], "ERROR: llmperf: --llmperf-warmup: invalid value 'sometimes'*"),
    (["--llmperf-max-time=0"], "ERROR: llmperf: --llmperf-max-time: invalid value '0'*"),
    (["--llmperf-node=a/b"], "ERROR: llmperf: --llmperf-node: invalid node name 'a/b'*"),
    (["--llmperf-normalize=maybe"], "ERROR: llmperf: --llmperf-normalize: invalid value 'maybe'*"),
])
def test_invalid_options(rec: pytest.Pytester, args: list[str], message: str) -> None:
    _assert_usage_error(run(rec, *args), message)


def test_marker_with_unknown_keyword_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_k=textwrap.dedent(
        """
        import pytest
        @pytest.mark.llmperf(tolerence="5%")
        def test_typo(llmperf):
            pass
        """
    ))
    result = run(pytester)
    _assert_usage_error(result, "ERROR: llmperf: test_k.py::test_typo: unknown @pytest.mark.llmperf keyword(s) tolerence*")


def test_unit_change_fails_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_u=textwrap.dedent(
        """
        import os
        def test_u(llmperf):
            llmperf.record("step", [1.0, 1.1, 1.2], unit=os.environ.get("UNIT", "ms"), higher_is_better=False)
        """
    ))
    run(pytester, "--llmperf-save-baseline")
    result = run(pytester, env={"UNIT": "s"})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: metric 'step': unit 's' differs from the baseline's 'ms' in *test_u.json*"])
    assert "Traceback" not in result.stdout.str()


def test_loading_the_plugin_does_not_import_torch(tmp_path: Path) -> None:
    # a fake torch first on the path: if anything imported it, it would show in sys.modules
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '0.0-fake'\n")
    code = (
        "import sys, pytest_llmperf.plugin, pytest_llmperf.hardware as h;"
        "h.fingerprint_fields(h.detect(include_torch=False));"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "False"


def test_session_with_plugin_and_metrics_does_not_import_torch(pytester: pytest.Pytester, tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch must not be imported')\n")
    (fake / "version.py").write_text("__version__ = '0.0.1'\ncuda = '12.4'\n")
    pytester.makepyfile(test_t=textwrap.dedent(
        """
        import sys
        def test_t(llmperf):
            llmperf.record("x", [1.0, 2.0, 3.0], unit="u", higher_is_better=True)
            assert "torch" not in sys.modules
        """
    ))
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", str(tmp_path / "fake"))
    try:
        result = pytester.runpytest_subprocess(*FAST, "--llmperf-save-baseline")
    finally:
        mp.undo()
    result.assert_outcomes(passed=1)
    data = json.loads(baseline_file(pytester, "test_t").read_text())
    fields = next(iter(data["fingerprints"].values()))
    # read from torch's files, not imported: the version from an installed torch's metadata when
    # there is one (CI installs the CPU build), else from the fake version.py
    from importlib import metadata

    try:
        expected = ".".join(metadata.version("torch").split("+")[0].split(".")[:2])
    except metadata.PackageNotFoundError:
        expected = "0.0"
    assert fields["torch"] == expected and fields["cuda"] == "12.4"


def test_saving_measures_three_times_the_budget_without_early_stop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_b=textwrap.dedent(
        """
        import time
        def test_steady(llmperf):
            llmperf.measure(time.sleep, 0.01)
        """
    ))
    run(pytester, "--llmperf-save-baseline", "--llmperf-max-time=0.2", "--llmperf-json=save.json")
    saved = json.loads((pytester.path / "save.json").read_text())["tests"][0]["metrics"]["time"]["summary"]["n"]
    run(pytester, "--llmperf-max-time=0.2", "--llmperf-json=cmp.json")
    compared = json.loads((pytester.path / "cmp.json").read_text())["tests"][0]["metrics"]["time"]["summary"]["n"]
    # 10 ms rounds: the save spends ~0.6 s (about 50 rounds after warm-up), a compare at most 0.2 s.
    # Relative, not absolute: on a loaded machine a 10 ms sleep overshoots and every count shrinks
    assert saved >= 2 * compared
    assert compared <= 20
