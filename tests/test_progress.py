"""The live progress line (plugin_progress): its text, when it is shown, how it is drawn into a
pipe and on a terminal, and the option's bad values."""

from __future__ import annotations

import math

import pytest

from conftest import run_isolated
from pytest_llmperf import measure, plugin_progress

ENV = ("LLMPERF_PROGRESS", "LLMPERF_SMOKE", "LLMPERF_SKIP", "PYTEST_ADDOPTS")


def figures(phase: str = "measured", **kw: object) -> dict[str, object]:
    out: dict[str, object] = {"phase": phase, "round": 7, "median": 5283.4, "precision": 0.0123, "target": 0.0167,
                              "left": 21.6, "budget": 30.0}
    out.update(kw)
    return out


def test_the_line_names_the_round_median_precision_target_and_time_left():
    text = plugin_progress.line_text("suites/test_llama2c.py::test_run[stories15M--O3-1]", figures())
    assert text == ("llmperf: suites/test_llama2c.py::test_run[stories15M--O3-1]: round 7, median 5,283 "
                    "\u00b11.2% (target \u00b11.7%), 22 s left")
    warm = plugin_progress.line_text("t", figures("warm-up", round=2, precision=math.inf))
    assert warm == "llmperf: t: warm-up round 2, 5,283, 22 s left"
    done = plugin_progress.line_text("t", figures("done", round=11, stopped="precise and decisive"))
    assert done == "llmperf: t: 11 rounds, median 5,283 \u00b11.2%, stopped: precise and decisive"


@pytest.mark.parametrize("width", [40, 60, 79])
def test_a_long_test_id_is_cut_before_the_figures(width):
    test = "suites/test_transformer.py::test_transformer[mini-forward_backward-bf16-ctx256]"
    text = plugin_progress.line_text(test, figures(), width)
    assert len(text) <= width
    if width >= 70:  # the figures stay whole; the id keeps its start and its end
        assert text.endswith(": round 7, median 5,283 \u00b11.2% (target \u00b11.7%), 22 s left")
        assert text.startswith("suites/") and "ctx256]" in text


class Reporter:
    """A stand-in for pytest's terminal reporter that keeps what is written (the real one is used
    by the session tests below)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.newlines = 0

    def ensure_newline(self) -> None:
        self.newlines += 1

    def write(self, text: str, flush: bool = False) -> None:
        self.out.append(text)

    def write_line(self, text: str) -> None:
        self.out.append(text + "\n")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_into_a_pipe_a_line_every_ten_seconds_and_none_for_a_short_measurement():
    clock, tr = Clock(), Reporter()
    live = plugin_progress.LiveLine(tr, None, tty=False, clock=clock)
    live.begin("t_short")
    for i in range(50):
        clock.now = i * 0.1
        live(figures(round=i))
    live(figures("done"))
    live.end()
    assert tr.out == []  # 5 s: nothing
    clock.now = 5.0
    live.begin("t_long")
    for i in range(300):
        clock.now = 5 + i * 0.1  # 30 s
        live(figures(round=i))
    live(figures("done", round=11, stopped="time budget"))
    live.end()
    assert [line.split(": round ")[1].split(",")[0] for line in tr.out[:-1]] == ["100", "200"]
    assert tr.out[-1].startswith("llmperf: t_long: 11 rounds") and tr.out[-1].endswith("time budget\n")
    assert tr.newlines == 1


def test_on_a_terminal_one_line_is_redrawn_and_ended():
    clock, tr = Clock(), Reporter()
    live = plugin_progress.LiveLine(tr, None, tty=True, clock=clock)
    live.begin("t")
    for i in range(40):
        clock.now = i * 0.05  # 2 s, a redraw at most every 0.25 s
        live(figures(round=i))
    live(figures("done", round=11))
    live.end()
    assert all(chunk.startswith("\r") for chunk in tr.out[:-1]) and tr.out[-1] == "\n"
    assert 8 <= len(tr.out) - 2 <= 9  # 2 s / 0.25 s redraws (+ the first)
    assert "11 rounds" in tr.out[-2] and tr.newlines == 1
    live.begin("t2")  # a measurement that raised after drawing: its line is ended
    live(figures(round=1))
    live.end()
    assert tr.out[-1] == "\n"


SUITE = """
import itertools, time

def test_bench(llmperf):  # two clusters, alternating: the median's interval spans both, so no early stop
    sleeps = itertools.cycle([0.005, 0.04])
    llmperf.measure(lambda: time.sleep(next(sleeps)))

def test_plain():
    assert True
"""


def live_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "test_bench" in line and ("round " in line or " rounds, " in line)]


def test_a_session_with_s_shows_the_lines_and_one_without_does_not(pytester, monkeypatch):
    monkeypatch.setattr(plugin_progress, "PIPE_EVERY", 0.2)
    monkeypatch.setattr(measure, "LISTEN_EVERY", 0.05)
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    pytester.makepyfile(test_bench=SUITE)
    args = ["-p", "no:cacheprovider", "--llmperf-node=n1", "--llmperf-max-time=1.5", "--llmperf-warmup=1"]
    shown = pytester.runpytest(*args, "-s")
    shown.assert_outcomes(passed=2)
    lines = live_lines(shown)
    assert len(lines) >= 3, shown.stdout.str()  # a line every 0.2 s of 1.5 s, and the last
    assert all(len(line) <= 80 for line in lines)  # pytester's terminal: 80 columns
    assert all(": round " in line and "(target \u00b10.8%)" in line and " s left" in line for line in lines[:-1])
    assert ": stopped: " not in lines[-1] and "rounds, median" in lines[-1] and "stopped: time budget" in lines[-1]
    assert measure.listeners == []  # the listener is gone after the test
    quiet = pytester.runpytest(*args)
    quiet.assert_outcomes(passed=2)
    assert live_lines(quiet) == []
    forced = pytester.runpytest(*args, "--llmperf-progress=on")
    assert len(live_lines(forced)) >= 3
    off = pytester.runpytest(*args, "-s", "--llmperf-progress=off")
    assert live_lines(off) == []


def test_a_bad_progress_value_is_a_usage_error_naming_it(pytester):
    pytester.makepyfile(test_bench=SUITE)
    result = run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=n1", "--llmperf-progress=loud",
                          clear=ENV)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llmperf-progress: 'loud' is not one of auto, on, off" in result.stderr.str()
    result = run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=n1", clear=ENV,
                          env={"LLMPERF_PROGRESS": "sometimes"})
    assert "LLMPERF_PROGRESS: 'sometimes' is not one of auto, on, off" in result.stderr.str()


def test_listeners_get_the_figures_at_most_every_listen_every_seconds(monkeypatch):
    """Thousands of rounds of a fast function do not pay for the figures (a sort) every round."""
    got: list[dict[str, object]] = []
    monkeypatch.setattr(measure, "listeners", [got.append])
    settings = measure.MeasureSettings(max_time=0.6, min_rounds=5, warmup=1, adaptive=False)
    result = measure.run_rounds(lambda: (1.0, 0.0001, 0.0001), settings)
    rounds = len(result.samples)
    assert rounds > 1000
    assert 2 <= len(got) <= 0.6 / measure.LISTEN_EVERY + 3  # the first, one per 0.2 s, and "done"
    assert got[-1]["phase"] == "done" and got[-1]["round"] == rounds
