"""Time budgets through real pytest sessions (pytester): --llmperf-max-time on the command line
beats a marker's max_time, the marker beats the ini value and the default, --llmperf-time-scale
multiplies all of them (and the baseline save's 3x), bad scales are one-line usage errors. Each
inner test writes the settings its recorder hands to llmperf.measure and to a feature's rounds
(Recorder.settings_for, as llama2c's and torch's benches read them)."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import run_isolated
from pytest_llmperf.config import Config, MarkerOptions, budget_for

BASE = ["-p", "no:cacheprovider", "--llmperf-node=testnode"]
CLEAR = ("LLMPERF_NODE", "LLMPERF_TIME_SCALE", "LLMPERF_STRICT", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")

BUDGETS = textwrap.dedent(
    """
    import json, pytest

    def _note(request, llmperf):
        with open("budgets.jsonl", "a") as f:
            f.write(json.dumps({"test": request.node.name, "measure": llmperf.settings.max_time,
                                "feature": llmperf.settings_for("tok_per_s").max_time,
                                "adaptive": llmperf.settings.adaptive}) + "\\n")
        llmperf.record("x", [1.0, 1.0, 1.0], unit="s", higher_is_better=False)

    @pytest.mark.llmperf(max_time=2)
    def test_marked(request, llmperf):
        _note(request, llmperf)

    def test_plain(request, llmperf):
        _note(request, llmperf)
    """
)


def budgets(pytester: pytest.Pytester, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run the two tests; the budget each one got (and check the features get the same)."""
    log = pytester.path / "budgets.jsonl"
    if log.exists():
        log.unlink()
    result = run_isolated(pytester, *BASE, *args, clear=CLEAR, env=env, subprocess=False)
    result.assert_outcomes(passed=2)
    out = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        assert entry["feature"] == entry["measure"]
        out[entry["test"]] = entry["measure"]
    return out


@pytest.fixture
def two(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_b=BUDGETS)
    return pytester


def test_marker_beats_the_default(two):
    assert budgets(two) == {"test_marked": 2.0, "test_plain": 1.0}


def test_command_line_beats_the_marker(two):
    assert budgets(two, "--llmperf-max-time=0.3") == {"test_marked": 0.3, "test_plain": 0.3}


def test_addopts_counts_as_the_command_line(two):
    two.makeini("[pytest]\naddopts = --llmperf-max-time=0.4\n")
    assert budgets(two) == {"test_marked": 0.4, "test_plain": 0.4}
    assert budgets(two, env={"PYTEST_ADDOPTS": "--llmperf-max-time=0.6"}) == {"test_marked": 0.6, "test_plain": 0.6}


def test_marker_beats_the_ini_value(two):
    two.makeini("[pytest]\nllmperf_max_time = 0.7\n")
    assert budgets(two) == {"test_marked": 2.0, "test_plain": 0.7}
    # and the command line beats both
    assert budgets(two, "--llmperf-max-time=0.2") == {"test_marked": 0.2, "test_plain": 0.2}


def test_time_scale_scales_the_marker_budget_too(two):
    assert budgets(two, "--llmperf-time-scale=0.25") == {"test_marked": 0.5, "test_plain": 0.25}
    assert budgets(two, "--llmperf-time-scale=3", "--llmperf-max-time=0.1") == pytest.approx(
        {"test_marked": 0.3, "test_plain": 0.3})


def test_time_scale_from_env_and_ini(two):
    assert budgets(two, env={"LLMPERF_TIME_SCALE": "0.5"}) == {"test_marked": 1.0, "test_plain": 0.5}
    two.makeini("[pytest]\nllmperf_time_scale = 1.5\n")
    assert budgets(two) == {"test_marked": 3.0, "test_plain": 1.5}
    # the environment above the ini file, the command line above both
    assert budgets(two, env={"LLMPERF_TIME_SCALE": "0.5"}) == {"test_marked": 1.0, "test_plain": 0.5}
    assert budgets(two, "--llmperf-time-scale=2", env={"LLMPERF_TIME_SCALE": "0.5"}) == {
        "test_marked": 4.0, "test_plain": 2.0}


def test_a_baseline_save_gets_three_times_the_scaled_budget(two):
    got = budgets(two, "--llmperf-save-baseline", "--llmperf-time-scale=0.5")
    assert got == {"test_marked": 3.0, "test_plain": 1.5}
    entries = [json.loads(line) for line in (two.path / "budgets.jsonl").read_text().splitlines()]
    assert not any(e["adaptive"] for e in entries)  # and no early stop
    assert budgets(two, "--llmperf-save-baseline", "--llmperf-max-time=0.1") == pytest.approx(
        {"test_marked": 0.3, "test_plain": 0.3})


def test_header_names_the_scale(two):
    mp = pytest.MonkeyPatch()
    try:
        for key in CLEAR:
            mp.delenv(key, raising=False)
        result = two.runpytest(*BASE, "--llmperf-time-scale=0.2")
    finally:
        mp.undo()
    result.stdout.fnmatch_lines(["llmperf: node testnode*gating, budgets x0.2"])


def test_the_scale_really_shortens_a_measurement(pytester):
    """Not only the settings: the rounds llmperf.measure takes follow the scaled budget (a marker
    of 20 s at scale 0.01 is 0.2 s: 10 ms rounds, so about 20 of them, never hundreds)."""
    pytester.makepyfile(test_m=textwrap.dedent(
        """
        import time, pytest
        @pytest.mark.llmperf(max_time=20, warmup=0)
        def test_sleepy(llmperf):
            llmperf.measure(time.sleep, 0.01)
        """
    ))
    mp = pytest.MonkeyPatch()
    try:
        for key in CLEAR:
            mp.delenv(key, raising=False)
        result = pytester.runpytest(*BASE, "--llmperf-save-baseline", "--llmperf-time-scale=0.01",
                                    "--llmperf-json=r.json")
    finally:
        mp.undo()
    result.assert_outcomes(passed=1)
    n = json.loads((pytester.path / "r.json").read_text())["tests"][0]["metrics"]["time"]["summary"]["n"]
    assert 5 <= n <= 70  # save: 3 x 0.2 s of 10 ms rounds at most; 20 s would be ~2000 (6000 saving)


@pytest.mark.parametrize("args, env, ini, message", [
    (["--llmperf-time-scale=0"], {}, "", "ERROR: llmperf: --llmperf-time-scale: invalid value '0', must be a positive*"),
    (["--llmperf-time-scale=-2"], {}, "", "ERROR: llmperf: --llmperf-time-scale: invalid value '-2', must be a positive*"),
    (["--llmperf-time-scale=101"], {}, "", "ERROR: llmperf: --llmperf-time-scale: invalid value '101', must be at most 100"),
    (["--llmperf-time-scale=fast"], {}, "", "ERROR: llmperf: --llmperf-time-scale: invalid value 'fast', expected a factor*"),
    (["--llmperf-time-scale=20%"], {}, "", "ERROR: llmperf: --llmperf-time-scale: invalid value '20%', expected a factor*"),
    (["--llmperf-time-scale=nan"], {}, "", "ERROR: llmperf: --llmperf-time-scale: invalid value 'nan', must be a positive*"),
    ([], {"LLMPERF_TIME_SCALE": "inf"}, "", "ERROR: llmperf: LLMPERF_TIME_SCALE: invalid value 'inf', must be a positive*"),
    ([], {}, "llmperf_time_scale = 1e3", "ERROR: llmperf: ini llmperf_time_scale: invalid value '1e3', must be at most*"),
])
def test_bad_time_scale_is_one_line(two, args, env, ini, message):
    if ini:
        two.makeini(f"[pytest]\n{ini}\n")
    mp = pytest.MonkeyPatch()
    try:
        for key in CLEAR:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        result = two.runpytest(*BASE, *args)
    finally:
        mp.undo()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_budget_for_rule():
    base = Config(node="n", node_source="x", baseline_dir=__import__("pathlib").Path("b"), max_time=0.5)
    marker = MarkerOptions(max_time=4.0)
    assert budget_for(base, None) == 0.5
    assert budget_for(base, MarkerOptions()) == 0.5
    assert budget_for(base, marker) == 4.0  # default or ini: the marker wins
    ini = base._replace(sources={"llmperf_max_time": "ini llmperf_max_time"})
    assert budget_for(ini, marker) == 4.0 and ini.max_time_source == "ini llmperf_max_time"
    cli = base._replace(sources={"llmperf_max_time": "--llmperf-max-time"}, time_scale=0.5)
    assert budget_for(cli, marker) == 0.25  # the command line wins, and is scaled
    assert budget_for(base._replace(time_scale=2.0), marker) == 8.0
