"""--llmperf-smoke (one round, nothing compared, saved or appended), --llmperf-skip, and the
llmperf marker on every test that uses the plugin's fixtures (so that -m "not llmperf" works)."""

from __future__ import annotations

import json
import textwrap

import pytest

FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]

TESTS = textwrap.dedent(
    """
    import os, time, pytest

    CALLS = []

    def test_measured(llmperf):
        llmperf.measure(lambda: CALLS.append(1))
        with open("calls.txt", "a") as fh:
            fh.write(f"{len(CALLS)}\\n")

    def test_recorded(llmperf):
        scale = float(os.environ.get("TOK_SCALE", "1.0"))
        llmperf.record("tok_per_s", [100.0 * scale * (1 + i / 1000) for i in range(20)], unit="tok/s",
                       higher_is_better=True)

    @pytest.fixture
    def wrapped(llmperf):
        return llmperf

    def test_through_a_fixture(wrapped):
        wrapped.record("x", [1.0, 1.01, 0.99, 1.0, 1.0], unit="s", higher_is_better=False)

    def test_plain():
        pass
    """
)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    for key in ("LLMPERF_SMOKE", "LLMPERF_SKIP"):
        monkeypatch.delenv(key, raising=False)
    pytester.makepyfile(test_s=TESTS)
    return pytester


def test_not_llmperf_deselects_the_benchmarks(suite: pytest.Pytester) -> None:
    result = suite.runpytest(*FAST, "-m", "not llmperf", "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_plain PASSED*", "*1 passed, 3 deselected*"])
    result = suite.runpytest(*FAST, "-m", "llmperf")
    result.assert_outcomes(passed=3, deselected=1)


def test_skip_option(suite: pytest.Pytester) -> None:
    result = suite.runpytest(*FAST, "--llmperf-skip", "-rs")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*--llmperf-skip skips them*"])
    assert not (suite.path / "calls.txt").exists()


def test_skip_from_env(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMPERF_SKIP", "1")
    suite.runpytest(*FAST).assert_outcomes(passed=1, skipped=3)
    monkeypatch.setenv("LLMPERF_SKIP", "maybe")
    result = suite.runpytest(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*LLMPERF_SKIP*invalid value*"])


def test_smoke_runs_once_and_judges_nothing(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    assert suite.runpytest(*FAST, "--llmperf-save-baseline").ret == 0
    baseline = suite.path / "baselines" / "testnode" / "test_s.json"
    before = baseline.read_bytes()
    (suite.path / "calls.txt").unlink()
    monkeypatch.setenv("TOK_SCALE", "0.5")  # a 50% regression: a smoke run does not judge it
    result = suite.runpytest(*FAST, "--llmperf-smoke", "--llmperf-json=run.json", "--llmperf-history-append")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4)
    # measure(): one round (the callable's iterations of one round), no warm-up round before it
    calls = [int(x) for x in (suite.path / "calls.txt").read_text().split()]
    assert len(calls) == 1
    run = json.loads((suite.path / "run.json").read_text())
    statuses = {(v["test"].split("::")[-1], v["metric"]): v["status"] for v in run["verdicts"]}
    assert statuses == {("test_measured", "time"): "info", ("test_recorded", "tok_per_s"): "info",
                        ("test_through_a_fixture", "x"): "info"}
    tok = next(v for v in run["verdicts"] if v["metric"] == "tok_per_s")
    assert tok["current"] == pytest.approx(50.0, rel=0.02) and tok["change"] is None
    assert "smoke run" in tok["reason"]
    assert baseline.read_bytes() == before
    assert not (suite.path / "baselines" / "testnode" / "history").exists()


@pytest.mark.parametrize("other", ["--llmperf-save-baseline", "--llmperf-strict", "--llmperf-require-baseline"])
def test_smoke_refuses_what_it_cannot_do(suite: pytest.Pytester, other: str) -> None:
    result = suite.runpytest(*FAST, "--llmperf-smoke", other)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if "smoke" in line]
    assert len(lines) == 1 and other in lines[0] and "--llmperf-smoke" in lines[0], result.stderr.str()


def test_collection_line_and_progress_log(suite: pytest.Pytester) -> None:
    result = suite.runpytest(*FAST, "--log-cli-level=DEBUG", "-k", "measured or plain")
    assert result.ret == 0, result.stdout.str()
    # one benchmark test selected, 0.3 s of budget (--llmperf-max-time)
    result.stdout.fnmatch_lines(["llmperf: 1 benchmark tests, time budgets 0.3 s at most"])
    result.stdout.fnmatch_lines(["*llmperf: measured round *: median *, precision +-*% (target +-0.8%), "
                                 "* s of 0.3 s left*"])
    result.stdout.fnmatch_lines(["*llmperf: * rounds (* warm-up) in * s, median *, stopped: *"])
    smoke = suite.runpytest(*FAST, "--llmperf-smoke")
    smoke.stdout.fnmatch_lines(["llmperf: 3 benchmark tests, one round each (--llmperf-smoke)",
                                "llmperf: node testnode*smoke run*"][::-1])
