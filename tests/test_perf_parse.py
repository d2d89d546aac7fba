"""perf stat -x output: recorded on this VM (software events counted, hardware events not
supported) and written by hand in perf's format (multiplexing, <not counted>, thousands
separators). The perf wrapper itself comes with issue 5."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.profilers import perf, perf_run
from pytest_llmperf.profilers.perf import COUNTED, NOT_COUNTED, NOT_SUPPORTED, PerfEventError, PerfParseError

DATA = Path(__file__).parent / "data" / "perf"


def test_vm_output_software_counted_hardware_not_supported():
    counters = {c.event: c for c in perf.parse_stat_csv((DATA / "stat_vm.csv").read_text())}
    assert list(counters) == ["task-clock", "page-faults", "context-switches", "cycles", "instructions",
                              "cache-misses"]
    assert counters["task-clock"].value == 0.48 and counters["task-clock"].unit == "msec"
    assert counters["task-clock"].metric_value == 0.514 and counters["task-clock"].metric_unit == "CPUs utilized"
    assert counters["page-faults"].value == 49 and counters["page-faults"].status == COUNTED
    assert counters["context-switches"].value == 0 and counters["context-switches"].status == COUNTED
    for name in ("cycles", "instructions", "cache-misses"):
        assert counters[name].status == NOT_SUPPORTED and counters[name].value is None  # never zero
    assert perf.ipc(list(counters.values())) is None


def test_multiplexed_counts_keep_their_scaling_and_percentage():
    counters = {c.event: c for c in perf.parse_stat_csv((DATA / "stat_multiplexed.csv").read_text())}
    cycles, ins = counters["cycles"], counters["instructions"]
    assert cycles.value == 1523456789 and cycles.running_pct == 66.62 and cycles.multiplexed
    assert ins.metric_value == 1.89 and ins.metric_unit == "insn per cycle"
    assert perf.ipc(list(counters.values())) == pytest.approx(2876543210 / 1523456789)
    missed = counters["L1-dcache-load-misses"]
    assert missed.status == NOT_COUNTED and missed.value is None and missed.running_pct == 0.0


def test_repeated_runs_variance_column():
    (c,) = perf.parse_stat_csv((DATA / "stat_repeat.csv").read_text())
    assert c.event == "task-clock" and c.value == 0.33 and c.variance_pct == 13.91 and c.running_pct == 100.0
    assert not c.multiplexed


def test_thousands_separators_with_another_field_separator():
    counters = {c.event: c for c in perf.parse_stat_csv((DATA / "stat_semicolon.csv").read_text(), separator=";")}
    assert counters["instructions"].value == 1234567
    assert counters["task-clock"].value == 812.55


def test_unknown_event_names_the_event():
    with pytest.raises(PerfEventError, match=r"perf does not know the event 'nosuch-event': parser error"):
        perf.parse_stat_csv((DATA / "event_error.txt").read_text())


@pytest.mark.parametrize("line", ["garbage", "abc,,cycles,1,100.00,,", "1,,cycles,1,lots,,", "1,,,1,100.00,,"])
def test_unparsable_lines_are_errors_quoting_the_line(line):
    with pytest.raises(PerfParseError, match="unparsable"):
        perf.parse_stat_csv(line + "\n")


def test_unavailable_reasons(tmp_path, monkeypatch):
    assert "perf not found on PATH" in perf.unavailable_reason("no-such-perf-binary")
    paranoid = tmp_path / "paranoid"
    paranoid.write_text("3\n")
    monkeypatch.setattr(perf_run.shutil, "which", lambda name: "/usr/bin/perf")
    monkeypatch.setattr(perf_run.os, "geteuid", lambda: 1000)
    assert "perf_event_paranoid is 3" in perf.unavailable_reason(paranoid_path=str(paranoid))
    paranoid.write_text("2\n")
    assert perf.unavailable_reason(paranoid_path=str(paranoid)) is None


@pytest.mark.parametrize("value", ["nan", "-nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0.5", "1e400", "9" * 400,
                                   ".", "1_000", "\u0661\u0662"])
def test_a_value_that_is_not_a_count_is_an_error_naming_the_file_line_and_event(value):
    """Issue 11, item 9: nan and inf were read as counts (and ended in a RecordError traceback),
    a negative count was recorded. perf writes a count, <not supported> or <not counted> there:
    anything else is output perf did not write, an error rather than a guess."""
    text = f"# started on today\n\n12,,page-faults,477509,100.00,,\n{value},,cycles,477509,100.00,,\n"
    with pytest.raises(PerfParseError) as err:
        perf.parse_stat_csv(text, name="run.perf-stat.csv")
    message = str(err.value)
    assert message.startswith("run.perf-stat.csv, line 4: unparsable perf stat value ") and "\n" not in message
    assert repr(value)[:40] in message and "of the event 'cycles'" in message


@pytest.mark.parametrize("column, value", [(4, "nan"), (4, "inf"), (4, "-5"), (3, "nan%")])
def test_a_percentage_that_is_not_one_is_an_error(column, value):
    fields = ["1", "", "cycles", "477509", "100.00", "", ""]
    if column == 3:
        fields.insert(3, value)
    else:
        fields[column] = value
    with pytest.raises(PerfParseError, match=r"^perf stat output, line 1: unparsable percentage"):
        perf.parse_stat_csv(",".join(fields) + "\n")


def test_a_derived_figure_that_is_not_finite_is_dropped():
    (c,) = perf.parse_stat_csv("0,,instructions,477509,100.00,nan,insn per cycle\n")
    assert c.value == 0 and c.metric_value is None and c.metric_unit == "insn per cycle"


def test_the_unknown_event_error_is_a_parse_error():
    assert issubclass(PerfEventError, PerfParseError)  # one error class for perf's output
