"""The roofline in the suites (issue 16): the options' parsing and their usage errors, the
predictions on the node or on a named datasheet device with the efficiencies, Recorder.estimate,
the result's roofline entries, and the summary's roofline table that names each benchmark's bound."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_isolated
from pytest_llmperf import measure
from pytest_llmperf.config import ConfigError, parse_efficiency, parse_roofline_device
from pytest_llmperf.recorder import Recorder, RecordError
from pytest_llmperf.report import markdown, roofline_groups
from pytest_llmperf.report_terminal import roofline_lines, visible_width
from pytest_llmperf.result import TestResult
from pytest_llmperf.roofline.devices import DEVICES, device
from pytest_llmperf.roofline.inference import stage
from pytest_llmperf.roofline.models import RooflineError, model
from pytest_llmperf.roofline.node import Assumption, decode, node_device, step, target
from pytest_llmperf.roofline.precision import scheme

# torch, when there, is imported here, before any pytester test snapshots sys.modules: a module
# first imported inside one is dropped at its teardown, and torch cannot be imported twice in a process
try:
    importlib.import_module("torch")
    importlib.import_module("pytest_llmperf.torch_models.lm")
except ImportError:
    pass

ENV_OPTIONS = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_CACHE_DIR", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")


# -- the options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("0.7", 0.7), ("70%", 0.7), (" 1 ", 1.0), ("100%", 1.0), (0.25, 0.25)])
def test_efficiency_is_a_fraction_or_a_percentage_in_0_1(text: object, value: float) -> None:
    assert parse_efficiency(text, "--llmperf-roofline-fe") == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "0%", "1.5", "150%", "-0.1", "nan", "inf", "fast", "", True])
def test_efficiency_outside_0_1_is_an_error_naming_the_option_and_value(text: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_efficiency(text, "--llmperf-roofline-hbme")
    message = str(info.value)
    assert message.startswith("--llmperf-roofline-hbme: invalid value ") and "\n" not in message
    assert "(0, 1]" in message or "expected an efficiency" in message


def test_roofline_device_node_or_a_datasheet_name_in_any_case() -> None:
    assert parse_roofline_device("node", "x") is None
    assert parse_roofline_device("NODE", "x") is None
    assert parse_roofline_device("A100-SXM-80GB", "x") == "a100-sxm-80gb"
    with pytest.raises(ConfigError) as info:
        parse_roofline_device("tpu-v5", "--llmperf-roofline-device")
    message = str(info.value)
    assert message.startswith("--llmperf-roofline-device: unknown device 'tpu-v5' (known: node, ")
    assert all(name in message for name in DEVICES)


# -- the predictions -----------------------------------------------------------------------------

def test_node_decode_is_bytes_over_the_probed_bandwidth_and_names_the_node() -> None:
    m, s = model("stories15M"), scheme("w32a32e32")
    p = decode(m, s, 64, Assumption(), read_GBps=20.0)
    direct = stage(m, s, node_device(20.0), 1, 64, name="decode")
    assert p.value == pytest.approx(1 / direct.seconds) and p.bound == "memory"
    assert p.assuming == "this node: 20.0 GB/s"
    # the bandwidth doubled, the memory-bound rate doubles
    assert decode(m, s, 64, Assumption(), read_GBps=40.0).value == pytest.approx(2 * p.value)


def test_a_named_device_uses_its_datasheet_and_the_efficiencies_scale_the_bound_part() -> None:
    m, s = model("llama-2-7b"), scheme("w16a16e16")
    ideal = decode(m, s, 512, Assumption("a100-sxm-80gb"), read_GBps=1.0)  # the node's figure is ignored
    direct = stage(m, s, device("a100-sxm-80gb"), 1, 512, name="decode")
    assert ideal.value == pytest.approx(1 / direct.seconds) and ideal.bound == "memory"
    assert ideal.assuming == "a100-sxm-80gb (datasheet)"
    # decode is memory bound: the memory efficiency slows it in proportion, the flops efficiency not at all
    half = decode(m, s, 512, Assumption("a100-sxm-80gb", 1.0, 0.5))
    assert half.value == pytest.approx(ideal.value / 2, rel=1e-6)
    assert half.assuming == "a100-sxm-80gb (datasheet), fe 1, hbme 0.5"
    assert decode(m, s, 512, Assumption("a100-sxm-80gb", 0.5, 1.0)).value == pytest.approx(ideal.value, rel=1e-6)


def test_a_model_the_named_device_cannot_hold_says_by_how_much() -> None:
    with pytest.raises(RooflineError, match=r"needs 27\.0 GB per device .*: 3\.0 GB more than l4's 24 GB"):
        decode(model("llama-2-7b"), scheme("w32a32e32"), 72, Assumption("l4"))


def test_no_bandwidth_and_no_peak_is_an_error_not_an_infinite_rate() -> None:
    with pytest.raises(RooflineError, match="no measured bandwidth or peak"):
        target(Assumption(), None, None)


def test_training_steps_add_up_and_their_bound_follows_the_larger_time() -> None:
    m, s = model("cs336-small"), scheme("w32a32e32")
    fwd, fb, train = (step(m, s, kind, 256, 4, Assumption(), 1e9, 19.5e12)
                      for kind in ("forward", "forward_backward", "train_step"))
    assert fwd.value < fb.value < train.value
    assert fb.value == pytest.approx(3 * fwd.value)  # the backward pass: twice the forward's work
    assert fwd.assuming == "this node: 1000000000.0 GB/s, 19.50 TFLOP/s"
    # a peak with an endless bandwidth is compute bound; a bandwidth without a peak memory bound
    assert step(m, s, "forward", 256, 4, Assumption(), None, 19.5e12).bound == "compute"
    assert step(m, s, "forward", 256, 4, Assumption(), 10.0, None).bound == "memory"
    assert step(m, s, "forward", 256, 4, Assumption(), None, 19.5e12).value == \
        pytest.approx(2 * m.params() * 256 * 4 / 19.5e12 * 1e3, rel=0.15)  # 2 FLOPs per parameter and token
    with pytest.raises(RooflineError, match="unknown step 'inference'"):
        step(m, s, "inference", 256, 4, Assumption(), 1.0, 1.0)


def test_the_optimizer_is_memory_bound_and_on_a_slow_memory_it_dominates_the_step() -> None:
    m, s = model("cs336-small"), scheme("w32a32e32")
    fb = step(m, s, "forward_backward", 256, 4, Assumption(), math.inf, 19.5e12)
    train = step(m, s, "train_step", 256, 4, Assumption(), 0.001, 19.5e12)  # 1 MB/s
    assert train.bound == "memory" and train.value > 1000 * fb.value


# -- Recorder.estimate, the result, the table ------------------------------------------------------

def _recorder() -> Recorder:
    return Recorder(measure.MeasureSettings(), lambda name: 0.05)


def test_estimate_needs_a_recorded_metric_a_positive_value_and_a_known_bound() -> None:
    rec = _recorder()
    with pytest.raises(RecordError, match="record the metric before its estimate"):
        rec.estimate("tok_per_s", 100.0, "memory")
    rec.record("tok_per_s", [50.0, 52.0, 51.0], unit="tok/s", higher_is_better=True)
    for value in (0.0, -1.0, float("nan")):
        with pytest.raises(RecordError):
            rec.estimate("tok_per_s", value, "memory")
    with pytest.raises(RecordError, match="bound must be 'compute' or 'memory', got 'latency'"):
        rec.estimate("tok_per_s", 100.0, "latency")
    rec.estimate("tok_per_s", 100.0, "memory", "this node: 1.0 GB/s")
    rec.estimate("tok_per_s", 200.0, "compute", "l4 (datasheet)")  # a second estimate replaces the first
    assert rec.estimates == [{"metric": "tok_per_s", "predicted": 200.0, "unit": "tok/s", "bound": "compute",
                              "device": "l4 (datasheet)"}]


def _result(nodeid: str, metric: str, median: float, direction: str, predicted: float, device_name: str,
            bound: str = "memory") -> TestResult:
    return TestResult(nodeid, {}, {metric: {"unit": "u", "direction": direction, "summary": {"median": median}}}, (),
                      "fp", roofline=({"metric": metric, "predicted": predicted, "unit": "u", "bound": bound,
                                       "device": device_name},))


def test_efficiency_is_how_close_the_measurement_came_whichever_the_direction() -> None:
    rate = _result("t::rate", "tok_per_s", 50.0, "higher", 200.0, "d")
    time = _result("t::time", "ms_per_step", 8.0, "lower", 2.0, "d")
    assert rate.efficiency(rate.roofline[0]) == pytest.approx(0.25)
    assert time.efficiency(time.roofline[0]) == pytest.approx(0.25)
    empty = TestResult("t::x", {}, {"m": {"direction": "higher", "summary": {}}}, (), "fp")
    assert empty.efficiency({"metric": "m", "predicted": 1.0}) is None


def test_the_roofline_entries_travel_through_the_result_json() -> None:
    r = _result("t::rate", "tok_per_s", 50.0, "higher", 200.0, "this node: 1.0 GB/s")
    data = r.to_json()
    assert data["roofline"] == [dict(r.roofline[0])]
    assert TestResult.from_json(json.loads(json.dumps(data))) == r
    assert "roofline" not in TestResult("t::y", {}, {}, (), "fp").to_json()  # absent when nothing was predicted


@pytest.mark.parametrize("entries", [
    [1], "x", [{"metric": "tok_per_s", "predicted": "x", "unit": "u", "bound": "memory", "device": ""}],
    [{"metric": "tok_per_s", "predicted": float("nan"), "unit": "u", "bound": "memory", "device": ""}],
    [{"metric": "tok_per_s", "predicted": 1.0, "unit": "u", "bound": "latency", "device": ""}],
    [{"predicted": 1.0, "unit": "u", "bound": "memory", "device": ""}],
])
def test_a_result_json_with_a_malformed_roofline_entry_is_refused_in_one_line(entries: object) -> None:
    from pytest_llmperf.result import ResultError

    data = _result("t::r", "tok_per_s", 1.0, "higher", 2.0, "d").to_json()
    data["roofline"] = entries
    with pytest.raises(ResultError, match=r"^result of 't::r': roofline(\[0\])? is not a") as info:
        TestResult.from_json(data)
    assert "\n" not in str(info.value)


def test_the_html_command_names_a_run_json_with_a_malformed_roofline(tmp_path: Path) -> None:
    run = {"node": "n1", "schema": "pytest-llmperf-run", "schema_version": 2, "time": "2026-12-01T00:00:00Z",
           "run_id": "r", "fingerprint": {"hash": "fp", "fields": {}}, "verdicts": [],
           "tests": [dict(_result("t::r", "tok_per_s", 1.0, "higher", 2.0, "d").to_json(), roofline=[1])]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    out = subprocess.run([sys.executable, "-m", "pytest_llmperf.commands", "report", str(path), "-o",
                          str(tmp_path / "r.html")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and not (tmp_path / "r.html").exists()
    assert out.stderr == (f"pytest-llmperf: error: {path}: tests[0]: result of 't::r': roofline[0] is not a "
                          "prediction (metric, predicted > 0, unit, bound compute or memory, device): 1\n")


RESULTS = [_result("suites/test_a.py::test_a[1]", "tok_per_s", 50.0, "higher", 200.0, "this node: 1.0 GB/s"),
           _result("suites/test_b.py::test_b[2]", "ms_per_step", 8.0, "lower", 6.0, "l4 (datasheet)", "compute"),
           _result("suites/test_a.py::test_a[3]", "tok_per_s", 100.0, "higher", 200.0, "this node: 1.0 GB/s"),
           _result("suites/test_a.py::test_a[4]", "tok_per_s", 100.0, "higher", 400.0, "l4 (datasheet)"),
           _result("suites/test_c.py::test_plain", "tok_per_s", 10.0, "higher", 20.0, "l4 (datasheet)")]
A_NODE = "suites/test_a.py::test_a: tok_per_s (u) on this node: 1.0 GB/s"


def test_the_roofline_tables_are_per_function_metric_and_assumption_and_name_the_bound() -> None:
    groups = roofline_groups(RESULTS)
    assert list(groups) == [A_NODE, "suites/test_b.py::test_b: ms_per_step (u) on l4 (datasheet)",
                            "suites/test_a.py::test_a: tok_per_s (u) on l4 (datasheet)",
                            "suites/test_c.py: tok_per_s (u) on l4 (datasheet)"]
    # a row per test, named by its parameters (a test without any by its name)
    assert groups[A_NODE] == [["[1]", "50", "200", "25.0%", "memory"], ["[3]", "100", "200", "50.0%", "memory"]]
    assert groups["suites/test_b.py::test_b: ms_per_step (u) on l4 (datasheet)"] == \
        [["[2]", "8", "6", "75.0%", "compute"]]
    assert groups["suites/test_c.py: tok_per_s (u) on l4 (datasheet)"] == [["test_plain", "10", "20", "50.0%", "memory"]]
    lines = roofline_lines(RESULTS, width=200)
    assert lines[:2] == ["", f"roofline of {A_NODE}:"]
    assert lines[2].split() == ["test", "measured", "predicted", "efficiency", "bound"]
    assert "roofline of suites/test_b.py::test_b: ms_per_step (u) on l4 (datasheet):" in lines
    # narrow: the headings wrapped, the tables within the width (short headers when needed)
    narrow = roofline_lines(RESULTS, width=40)
    assert all(visible_width(line) <= 40 for line in narrow)
    assert narrow[1:4] == ["roofline of suites/test_a.py::test_a:", "    tok_per_s (u) on this node: 1.0", "    GB/s:"]
    assert any(line.split() == ["test", "meas.", "pred.", "eff.", "bound"] for line in narrow)
    assert roofline_lines([TestResult("t::x", {}, {}, (), "fp")]) == []


def test_the_markdown_report_folds_the_roofline_tables_with_the_bounds_counted() -> None:
    text = markdown("n1", [], roofline=roofline_groups(RESULTS))
    lines = text.splitlines()
    start = lines.index("<details><summary>roofline: 1 compute bound, 4 memory bound</summary>")
    assert lines[start + 1:start + 8] == [
        "", f"{A_NODE}:", "", "| test | measured | predicted | efficiency | bound |", "|---|---|---|---|---|",
        "| `[1]` | 50 | 200 | 25.0% | memory |", "| `[3]` | 100 | 200 | 50.0% | memory |"]
    assert "| `[2]` | 8 | 6 | 75.0% | compute |" in lines
    assert lines[-1] == "</details>"
    assert "roofline" not in markdown("n1", [])  # nothing predicted, no section


def test_over_the_cap_the_roofline_tables_go_before_any_verdict_row() -> None:
    from pytest_llmperf.compare import Verdict

    many = [_result(f"s/t.py::t[{i}]", "tok_per_s", 1.0, "higher", 2.0, "d") for i in range(200)]
    verdicts = [Verdict(f"s/t.py::t[{i}]", "tok_per_s", "ok", "tok/s", True, 0.05, 1.0, 1.0, 0.0) for i in range(3)]
    full = markdown("n1", verdicts, roofline=roofline_groups(many), cap=None)
    assert len(full) > 5000 and full.count("| memory |") == 200
    capped = markdown("n1", verdicts, roofline=roofline_groups(many), cap=3000, where="`r.json` (--llmperf-json)")
    assert len(capped) <= 3000 and "| memory |" not in capped
    assert "Roofline tables left out (over the cap): 200 predictions, in `r.json` (--llmperf-json)" in capped
    assert all(f"`s/t.py::t[{i}]`" in capped for i in range(3))  # every verdict row kept
    # within the cap, the tables stay
    few = markdown("n1", verdicts, roofline=roofline_groups(many[:2]), cap=3000)
    assert few.count("| memory |") == 2 and "left out" not in few


# -- through pytest --------------------------------------------------------------------------------

ESTIMATED = """
def test_rate(llmperf):
    llmperf.record("tok_per_s", [50.0, 50.5, 49.5, 50.0, 50.2], unit="tok/s", higher_is_better=True)
    llmperf.estimate("tok_per_s", 200.0, "memory", "this node: 1.0 GB/s")
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=testnode", *args, clear=ENV_OPTIONS,
                        env={"COLUMNS": "200"})


def test_the_summary_shows_each_estimate_and_the_json_keeps_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_est=ESTIMATED)
    report = pytester.path / "run.json"
    result = run(pytester, f"--llmperf-json={report}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["roofline of test_est.py: tok_per_s (tok/s) on this node: 1.0 GB/s:",
                                 "test*measured*predicted*efficiency*bound",
                                 "test_rate*50*200*25.0%*memory"])
    (test,) = json.loads(report.read_text())["tests"]
    assert test["roofline"] == [{"metric": "tok_per_s", "predicted": 200.0, "unit": "tok/s", "bound": "memory",
                                 "device": "this node: 1.0 GB/s"}]
    jsonschema = pytest.importorskip("jsonschema")
    from pytest_llmperf import exports

    jsonschema.Draft202012Validator(exports.schema("run")).validate(json.loads(report.read_text()))


def test_the_markdown_and_html_reports_carry_the_roofline_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_est=ESTIMATED)
    md, html = pytester.path / "summary.md", pytester.path / "report.html"
    result = run(pytester, f"--llmperf-markdown={md}", f"--llmperf-html={html}")
    result.assert_outcomes(passed=1)
    text = md.read_text()
    assert "<details><summary>roofline: 1 memory bound</summary>" in text
    assert "test_est.py: tok_per_s (tok/s) on this node: 1.0 GB/s:" in text.splitlines()
    assert "| `test_rate` | 50 | 200 | 25.0% | memory |" in text
    page = html.read_text()
    assert "<h4>roofline of test_est.py: tok_per_s (tok/s) on this node: 1.0 GB/s</h4>" in page
    assert "<tr><td>test_rate</td><td>50</td><td>200</td><td>25.0%</td><td>memory</td></tr>" in page


@pytest.mark.parametrize("args, message", [
    (["--llmperf-roofline-fe=0"], "--llmperf-roofline-fe: invalid value '0', must be in (0, 1] (e.g. 0.7 or 70%)"),
    (["--llmperf-roofline-hbme=150%"], "--llmperf-roofline-hbme: invalid value '150%', must be in (0, 1]*"),
    (["--llmperf-roofline-device=tpu-v5"], "--llmperf-roofline-device: unknown device 'tpu-v5' (known: node, a100-*"),
])
def test_bad_roofline_options_are_a_one_line_usage_error(pytester: pytest.Pytester, args: list[str],
                                                          message: str) -> None:
    pytester.makepyfile(test_est=ESTIMATED)
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: {message}"])
    assert not (pytester.path / "baselines").exists()


def test_an_ini_efficiency_is_read_and_checked_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nllmperf_roofline_fe = 2\n")
    pytester.makepyfile(test_est=ESTIMATED)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: llmperf: ini llmperf_roofline_fe: invalid value '2', must be in (0, 1]*"])


def test_a_decode_model_the_named_device_cannot_hold_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    pytester.makepyfile(test_est=ESTIMATED)
    result = run(pytester, "--llmperf-roofline-device=l4", "--llmperf-decode-model=llama2-7b",
                 "--llmperf-decode-dtype=fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: llmperf: --llmperf-roofline-device=l4 cannot hold "
                                 "--llmperf-decode-model=llama2-7b: llama-2-7b w32a32e32 (batch 1, 72 positions) "
                                 "needs 27.0 GB per device at tensor parallel 1: 3.0 GB more than l4's 24 GB"])
    # in 16 bits it fits, and the run goes on
    fits = run(pytester, "--llmperf-roofline-device=l4", "--llmperf-decode-model=llama2-7b")
    fits.assert_outcomes(passed=1)


def test_check_roofline_fits_leaves_an_unreadable_checkpoint_to_the_suite(tmp_path: Path) -> None:
    from pytest_llmperf.torch_models.options import DecodeSettings, LMGrid, TorchOptions, check_roofline_fits

    grid = LMGrid(("tiny",), (128,), 4, ("forward",), ("fp32",), (False,))

    def opts(**kw: object) -> TorchOptions:
        base: dict[str, object] = {"model": "stories15M", "tokens": 64, "speculate_k": 5, "dtype": None,
                                   "checkpoint": None, "draft": "int8", "draft_path": None}
        base.update(kw)
        return TorchOptions("cpu", None, grid, ("eager",), DecodeSettings(**base))  # type: ignore[arg-type]

    check_roofline_fits(opts(), None)
    check_roofline_fits(opts(), "l4")
    check_roofline_fits(opts(checkpoint=tmp_path / "missing.bin"), "l4")  # the decode suite reports it
    check_roofline_fits(opts(model="tiny"), "v100-sxm-32gb")  # not in the roofline's table: a few MB
    with pytest.raises(ConfigError, match=r"^--llmperf-roofline-device=v100-sxm-32gb cannot hold "
                                          r"--llmperf-decode-model=llama2-7b: .*more than v100-sxm-32gb's 32 GB"):
        check_roofline_fits(opts(model="llama2-7b", dtype="fp32", tokens=8000), "v100-sxm-32gb")


# -- pytest-llmperf roofline --device node ----------------------------------------------------------

def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.commands", "roofline", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def _node_info(path: Path, *entries: tuple[float, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = {f"fp{i}": {"read_GBps": rate, "bytes": 2**30, "method": "bwprobe", "measured_at": when}
             for i, (rate, when) in enumerate(entries)}
    path.write_text(json.dumps({"memory_bandwidth": table}))


def test_the_command_on_a_node_reads_its_newest_probed_bandwidth(tmp_path: Path) -> None:
    _node_info(tmp_path / "baselines" / "sifive" / "node-info.json", (2.0, "2026-11-01T00:00:00+00:00"),
               (4.0, "2026-12-01T00:00:00+00:00"))
    args = ("--model", "stories15M", "--device", "node", "--dtype", "w32a32e32", "--seq-len", "8", "--tokens", "64")
    out = _cli(*args, "--node", "sifive", "--baseline-dir", str(tmp_path / "baselines"), "--json",
               env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    expected = stage(model("stories15M"), scheme("w32a32e32"), node_device(4.0), 1, 72, name="decode")
    assert data["decode"]["seconds"] == pytest.approx(expected.seconds) and data["decode"]["bound"] == "memory"
    assert data["largest_batch"] is None  # the node's memory is not known
    table = _cli(*args, "--bandwidth", "4", "--peak", "0.5")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].startswith("stories15M (15.2M parameters) on this node (4.0 GB/s, 0.50 TFLOP/s)")
    assert "largest batch" not in table.stdout


def test_the_command_falls_back_to_the_machines_cache_of_the_node(tmp_path: Path) -> None:
    _node_info(tmp_path / "cache" / "pytest-llmperf" / "nodes" / "milkv.json", (3.0, "2026-12-01T00:00:00+00:00"))
    out = _cli("--model", "stories15M", "--device", "node", "--node", "milkv", "--baseline-dir", str(tmp_path),
               env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert "on node milkv (3.0 GB/s, no compute bound)" in out.stdout.splitlines()[0]


@pytest.mark.parametrize("args, message", [
    ((), "--device node needs --node NAME (whose node-info.json to read) or --bandwidth GBPS"),
    (("--node", "ghost"), "{base}/ghost/node-info.json: no bandwidth measured for node 'ghost', nor in "
                          "{cache}/pytest-llmperf/nodes/ghost.json (run the llama2.c or decode suite there first, "
                          "or give --bandwidth GBPS)"),
    (("--bandwidth", "0"), "--bandwidth 0: must be a positive number"),
    (("--bandwidth", "3", "--peak", "-1"), "--peak -1: must be a positive number"),
])
def test_the_command_on_a_node_without_figures_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...],
                                                                      message: str) -> None:
    cache = tmp_path / "cache"
    out = _cli("--model", "stories15M", "--device", "node", "--baseline-dir", str(tmp_path), *args,
               env={"XDG_CACHE_HOME": str(cache)})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "pytest-llmperf roofline: error: " + message.format(base=tmp_path, cache=cache) + "\n"


def test_a_corrupt_node_info_is_named(tmp_path: Path) -> None:
    (tmp_path / "n1").mkdir()
    (tmp_path / "n1" / "node-info.json").write_text('{"memory_bandwidth": {"fp": {"read_GBps": 1')
    out = _cli("--model", "stories15M", "--device", "node", "--node", "n1", "--baseline-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr == (f"pytest-llmperf roofline: error: node-info file {tmp_path}/n1/node-info.json is truncated "
                          "JSON (Expecting ',' delimiter at line 1 column 44): fix it or restore it from git\n")


# -- the transformer suite on a named device -------------------------------------------------------

def test_a_transformer_step_the_named_device_cannot_hold_says_by_how_much() -> None:
    from pytest_llmperf.torch_models.options import lm_fit_problem

    # our users ran 2.7B forward+backward at context 256 on an 80 GB A100: it fits
    assert lm_fit_problem("2.7B", "forward_backward", "fp32", 256, 4, "a100-sxm-80gb") is None
    assert lm_fit_problem("small", "train_step", "bf16", 128, 4, "l4") is None
    problem = lm_fit_problem("2.7B", "train_step", "fp32", 1024, 4, "a100-sxm-80gb")
    assert problem is not None
    assert problem.startswith("size 2.7B, train_step, fp32, context 1024, batch 4 needs about ")
    assert problem.endswith(" GB more than a100-sxm-80gb's 80 GB")


def test_a_transformer_grid_the_named_device_cannot_hold_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_est=ESTIMATED)
    result = run(pytester, "--llmperf-roofline-device=a100-sxm-80gb", "--llmperf-lm-sizes=small,2.7B",
                 "--llmperf-lm-contexts=1024", "--llmperf-precisions=fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: llmperf: --llmperf-roofline-device=a100-sxm-80gb cannot hold the transformer "
                                 "suite's size 2.7B, train_step, fp32, context 1024, batch 4 needs about * GB: * GB "
                                 "more than a100-sxm-80gb's 80 GB: choose smaller --llmperf-lm-sizes, contexts or batch"])
    assert run(pytester, "--llmperf-roofline-device=a100-sxm-80gb", "--llmperf-lm-sizes=small,2.7B").ret == 0


def test_the_transformer_prediction_on_a_device_too_small_is_refused() -> None:
    pytest.importorskip("torch")
    from pytest_llmperf.torch_models.lm import predicted_step_ms
    from pytest_llmperf.torch_models.lm_shapes import get_config

    cfg = get_config("2.7B")
    ok = predicted_step_ms(cfg, "forward", 4, 256, None, None, False, Assumption("a100-sxm-80gb"))
    assert ok.bound == "compute" and ok.assuming == "a100-sxm-80gb (datasheet)"
    assert ok.value == pytest.approx(step(model("cs336-2.7B"), scheme("w32a32e32"), "forward", 256, 4,
                                          Assumption("a100-sxm-80gb")).value)
    with pytest.raises(RooflineError, match=r"^size 2\.7B, train_step, fp32, context 256, batch 4 needs about .* "
                                            r"more than l4's 24 GB$"):
        predicted_step_ms(cfg, "train_step", 4, 256, None, None, False, Assumption("l4"))
