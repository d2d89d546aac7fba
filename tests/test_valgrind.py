"""Instruction counts under callgrind (profilers/valgrind.py): the callgrind output parser on a
recorded file and a hand-written one, the profiler's command, environment, errors and fake-clock
shim without valgrind, and real runs under valgrind where it is installed (CI installs it)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from pytest_llmperf.profilers import base, create
from pytest_llmperf.profilers.base import Completed, ProfilerError, ProfilerUnavailable
from pytest_llmperf.profilers.valgrind import (
    DEFAULT_TOLERANCE,
    FAKECLOCK_NAME,
    NO_FAKE_CLOCK_NOTE,
    Instructions,
    ValgrindParseError,
    parse_callgrind_totals,
    top_functions,
)

DATA = Path(__file__).parent / "data" / "valgrind"
RECORDED = DATA / "work.callgrind.out"  # ./work (work.c) under valgrind 3.19, Debian 12, x86-64
ANNOTATED = DATA / "work.annotate.txt"  # callgrind_annotate --threshold=100 --auto=no of that file
HAND = DATA / "compressed.callgrind.out"

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None,
                                    reason="valgrind not installed (apt-get install valgrind)")


def annotate_self_costs(text: str) -> dict[str, int]:
    """Self Ir by function name from callgrind_annotate's function table, whose rows are
    ``N (pct)  file:function [object]``, one per file the function's code came from (inlined
    code is listed under its header's name) and per recursion level (``name'2``)."""
    table = text.split("file:function", 1)[1]
    costs: dict[str, int] = {}
    for line in table.splitlines():
        match = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[[^\]]*\])?$", line)
        if match:
            function = re.sub(r"'\d+$", "", match.group(2).split(":", 1)[1])
            costs[function] = costs.get(function, 0) + int(match.group(1).replace(",", ""))
    return costs


def by_bare_name(rows) -> dict[str, int]:
    """top_functions' rows summed by name, without the [object] / [file] told apart there."""
    costs: dict[str, int] = {}
    for function, ir, _ in rows:
        bare = re.sub(r" \[[^\]]*\]$", "", function)
        costs[bare] = costs.get(bare, 0) + ir
    return costs


# ---------------------------------------------------------------------------------------------
# the parser, on a recorded file

def test_recorded_total_is_the_totals_line():
    text = RECORDED.read_text()
    assert "summary: 155900" in text and "totals: 155900" in text
    assert parse_callgrind_totals(text) == 155900


def test_recorded_self_costs_agree_with_callgrind_annotate_and_add_up_to_the_total():
    text = RECORDED.read_text()
    rows = top_functions(text, top=None)
    assert sum(ir for _, ir, _ in rows) == parse_callgrind_totals(text) == 155900
    assert sum(share for _, _, share in rows) == pytest.approx(1.0)
    mine = by_bare_name(rows)
    theirs = annotate_self_costs(ANNOTATED.read_text())
    assert len(theirs) > 200 and mine == theirs
    # work.c: mix runs 4 instructions for each of its 2000 + 1000 calls
    assert (mine["mix"], mine["sum_mixed"], mine["twice"]) == (12000, 18026, 14)


def test_top_functions_are_sorted_and_cut():
    rows = top_functions(RECORDED.read_text())
    assert len(rows) == 10
    assert [ir for _, ir, _ in rows] == sorted((ir for _, ir, _ in rows), reverse=True)
    assert rows[0] == ("_dl_relocate_object", 23299, pytest.approx(23299 / 155900))
    assert ("sum_mixed", 18026, pytest.approx(18026 / 155900)) in rows
    assert [r[0] for r in top_functions(RECORDED.read_text(), top=3)] == [r[0] for r in rows[:3]]


def test_a_name_in_two_objects_is_told_apart_by_the_object():
    rows = {fn: ir for fn, ir, _ in top_functions(RECORDED.read_text(), top=None)}
    assert rows["strcmp [ld-linux-x86-64.so.2]"] == 4848  # ld.so's own copy
    assert rows["strcmp [libc.so.6]"] == 18
    assert "strcmp" not in rows


# ---------------------------------------------------------------------------------------------
# the parser, on a hand-written file: name compression, calls= lines, fi/fe, jumps, two events

def test_hand_written_file_self_costs():
    text = HAND.read_text()
    assert parse_callgrind_totals(text) == 750
    rows = top_functions(text, top=None)
    assert [(fn, ir) for fn, ir, _ in rows] == [("helper [prog.c]", 500), ("leaf", 150), ("sqrt", 50),
                                                 ("main", 47), ("helper [other.c]", 3)]
    assert rows[0][2] == pytest.approx(500 / 750) and rows[-1][2] == pytest.approx(3 / 750)
    # the call costs (600, 50, 300) are in nobody's self cost
    assert sum(ir for _, ir, _ in rows) == 750


def test_ir_is_found_by_its_place_in_the_events_line():
    text = "events: Dr Ir Dw\nfl=a.c\nfn=f\n1 7 40 1\n2 1 2\ntotals: 8 42 1\n"
    assert parse_callgrind_totals(text) == 42
    assert top_functions(text) == [("f", 42, 1.0)]


def test_two_positions_and_missing_trailing_costs():
    text = ("positions: instr line\nevents: Ir Dr\n"
            "fl=(1) a.c\nfn=(1) f\n0x401000 3 10 1\n+4 * 5\n-2 +1\n"
            "cfn=(2) g\ncalls=1 0x402000 9\n+8 3 99\n"
            "fn=(2)\n0x402000 9 60\ntotals: 75 1\n")
    assert parse_callgrind_totals(text) == 75
    assert top_functions(text) == [("g", 60, 0.8), ("f", 15, 0.2)]


def test_recursion_levels_are_one_function():
    text = "events: Ir\nfn=(1) walk\n1 10\ncfn=(2) walk'2\ncalls=1 1\n1 5\nfn=(2)\n1 5\n"
    assert top_functions(text) == [("walk", 15, 1.0)]


def test_totals_of_several_parts_add_up_and_summary_is_the_fallback():
    assert parse_callgrind_totals("events: Ir\npart: 1\ntotals: 10\npart: 2\ntotals: 32\n") == 42
    assert parse_callgrind_totals("events: Ir\nsummary: 17\n") == 17


# ---------------------------------------------------------------------------------------------
# the parser's errors

def test_missing_totals_names_the_file():
    with pytest.raises(ValgrindParseError, match=r"^run\.callgrind\.out: no 'totals:' or 'summary:' line"):
        parse_callgrind_totals("events: Ir\nfn=main\n1 5\n", "run.callgrind.out")


def test_a_cut_short_recorded_file_has_no_total():
    head = RECORDED.read_text().split("totals:")[0].replace("summary: 155900\n", "")
    with pytest.raises(ValgrindParseError, match="no 'totals:' or 'summary:' line"):
        parse_callgrind_totals(head, "cut.out")


def test_garbage_is_not_a_callgrind_file():
    garbage = "Segmentation fault (core dumped)\n\x00\x01binary\n"
    with pytest.raises(ValgrindParseError, match=r"^x\.out: no 'events:' line"):
        parse_callgrind_totals(garbage, "x.out")
    with pytest.raises(ValgrindParseError, match=r"^x\.out, line 1: not a callgrind output line"):
        top_functions(garbage, name="x.out")
    assert issubclass(ValgrindParseError, ValueError)


@pytest.mark.parametrize("text, message", [
    ("events: Dr\ntotals: 5\n", r"f, line 2: no Ir event in 'events: Dr'"),
    ("events: Ir\ntotals: many\n", r"f, line 2: cost 'many' is not an integer"),
    ("totals: 5\nevents: Ir\n", r"f, line 1: totals: line before the events: line"),
])
def test_totals_errors_name_the_line(text, message):
    with pytest.raises(ValgrindParseError, match="^" + message):
        parse_callgrind_totals(text, "f")


@pytest.mark.parametrize("cost", ["9" * 400, str(2 ** 64), "1_000", "\u0661\u0662", "+5", "1e3"])
def test_a_cost_that_is_not_a_64_bit_count_is_an_error_naming_the_line(cost):
    """Issue 11, item 8: a 400-digit cost was summed into an int that float() cannot take (an
    OverflowError in the profiler), and int() took underscores and other scripts' digits."""
    with pytest.raises(ValgrindParseError) as err:
        parse_callgrind_totals(f"events: Ir\ntotals: {cost}\n", "f")
    assert str(err.value).startswith("f, line 2: cost ") and "\n" not in str(err.value)
    with pytest.raises(ValgrindParseError, match="^f, line 3: cost "):
        top_functions(f"events: Ir\nfn=main\n1 {cost}\n", name="f")
    assert parse_callgrind_totals(f"events: Ir\ntotals: {2 ** 64 - 1}\n") == 2 ** 64 - 1


@pytest.mark.parametrize("text, message", [
    ("events: Ir\nfn=(3)\n1 5\n", r"f, line 2: fn=\(3\) refers to a name never defined"),
    ("events: Ir\n1 5\n", r"f, line 2: cost line before any fn= line"),
    ("fn=main\n1 5\n", r"f, line 2: cost line before the events: line"),
    ("events: Ir\nfn=main\n1 x5\n", r"f, line 3: cost 'x5' is not an integer"),
    ("events: Ir\nfn=main\n1q 5\n", r"f, line 3: unparsable cost line"),
    ("positions: line\n", r"f: no 'events:' line"),
])
def test_top_functions_errors_name_the_line(text, message):
    with pytest.raises(ValgrindParseError, match="^" + message):
        top_functions(text, name="f")


# ---------------------------------------------------------------------------------------------
# the profiler without valgrind: availability, command line, environment, collect()

def test_constants_and_registration(tmp_path):
    assert DEFAULT_TOLERANCE == 0.001
    profiler = Instructions()
    assert profiler.name == "instructions" and profiler.runs_default == 1
    from pytest_llmperf.profilers import ProfilerOptions

    made = create("instructions", ProfilerOptions(valgrind="vg", cc="gcc", cache_dir=tmp_path))
    assert isinstance(made, Instructions)
    assert (made.valgrind, made.cc, made.cache_dir) == ("vg", "gcc", tmp_path)


def test_missing_valgrind_is_a_reason_not_an_error(tmp_path):
    profiler = Instructions(valgrind="no-such-valgrind-here")
    reason = profiler.unavailable_reason()
    assert reason == ("valgrind not found on PATH ('no-such-valgrind-here'; "
                      "on Debian: apt-get install valgrind)")
    assert not profiler.is_available()
    with pytest.raises(ProfilerUnavailable, match=r"^instructions: valgrind not found on PATH"):
        base.run(profiler, ["/bin/true"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_valgrind_that_does_not_run_is_a_reason(tmp_path):
    broken = tmp_path / "valgrind"
    broken.write_text("#!/bin/sh\necho 'valgrind: broken install' >&2\nexit 3\n")
    broken.chmod(0o755)
    reason = Instructions(valgrind=str(broken)).unavailable_reason()
    assert reason is not None and "exited with code 3" in reason and "broken install" in reason


def test_wrap_runs_callgrind_with_a_separate_log_and_one_thread(tmp_path, monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    profiler = Instructions(valgrind="vg", cc="no-such-cc", cache_dir=tmp_path / "cache")
    out = tmp_path / "out%p"
    out.mkdir()
    (out / "t.callgrind.out").write_text("stale")  # a previous run's output is never read
    cmd, env = profiler.wrap(["./run", "model.bin", "-n", "8"], out, "t")
    assert cmd == ["vg", "--tool=callgrind", f"--callgrind-out-file={tmp_path}/out%%p/t.callgrind.out",
                   f"--log-file={tmp_path}/out%%p/t.valgrind.log", "./run", "model.bin", "-n", "8"]
    assert env["OMP_NUM_THREADS"] == "1"
    assert "LD_PRELOAD" not in env  # no compiler, no shim
    assert not (out / "t.callgrind.out").exists()


def test_wrap_preloads_the_shim(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/opt/libearlier.so")
    monkeypatch.setenv("OMP_NUM_THREADS", "16")  # forced to 1 all the same
    profiler = Instructions(cache_dir=tmp_path / "cache")
    _, env = profiler.wrap(["./run"], tmp_path, "t")
    shim = profiler.fake_clock()
    assert shim is not None and shim.name == FAKECLOCK_NAME and shim.is_absolute()
    assert env["LD_PRELOAD"] == str(shim)  # base.run puts it before the command's own preloads
    assert env["OMP_NUM_THREADS"] == "1"


def counting_cc(tmp_path: Path) -> Path:
    """A compiler that logs its command lines to cc.log, then runs cc."""
    log = tmp_path / "cc.log"
    script = tmp_path / "logging-cc"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> '{log}'\nexec cc \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_the_shim_is_built_once_per_cache(tmp_path):
    cc = counting_cc(tmp_path)
    cache = tmp_path / "cache"
    first = Instructions(cc=str(cc), cache_dir=cache)
    shim = first.fake_clock()
    assert shim is not None and shim.is_file() and first.fake_clock_problem == ""
    inode = shim.stat().st_ino
    first.wrap(["./a"], tmp_path, "a")
    first.wrap(["./b"], tmp_path, "b")
    second = Instructions(cc=str(cc), cache_dir=cache)  # another profiler object, the same cache
    assert second.fake_clock() == shim and shim.stat().st_ino == inode
    builds = [line for line in (tmp_path / "cc.log").read_text().splitlines() if "fakeclock.c" in line]
    assert len(builds) == 1 and "-shared" in builds[0] and "-fPIC" in builds[0]
    exported = subprocess.run(["nm", "-D", "--defined-only", str(shim)], capture_output=True, text=True)
    if exported.returncode == 0:  # nm comes with binutils, which cc needs anyway
        for symbol in ("clock_gettime", "gettimeofday", "time", "clock", "timespec_get"):
            assert re.search(rf"\bT {symbol}$", exported.stdout, re.MULTILINE), symbol


def test_without_a_compiler_the_run_goes_on_without_the_shim(tmp_path):
    profiler = Instructions(cc="no-such-cc", cache_dir=tmp_path / "cache")
    assert profiler.fake_clock() is None
    assert profiler.fake_clock_problem.startswith("cannot build fakeclock.c: compiler 'no-such-cc' not found")
    outdir = tmp_path / "out"
    outdir.mkdir()
    profiler.wrap(["./work"], outdir, "t")
    shutil.copy(RECORDED, outdir / "t.callgrind.out")
    profile = profiler.collect(outdir, "t", Completed(["vg"], 0, "", "", 1.0))
    (reading,) = profile.readings
    assert reading.note.startswith(NO_FAKE_CLOCK_NOTE) and "no-such-cc" in reading.note
    assert NO_FAKE_CLOCK_NOTE == ("no fake clock: time-dependent output may change the count "
                                  "by a few hundred instructions")
    assert "real clock" in profile.summary and profile.details["fake_clock"] is None


def test_collect_reads_the_count_and_writes_the_top_functions(tmp_path):
    profiler = Instructions(cache_dir=tmp_path / "cache")
    outdir = tmp_path / "out"
    outdir.mkdir()
    profiler.wrap(["./work"], outdir, "t")
    shutil.copy(RECORDED, outdir / "t.callgrind.out")
    (outdir / "t.valgrind.log").write_text("==1== Callgrind, a call-graph generating cache profiler\n")
    profile = profiler.collect(outdir, "t", Completed(["vg"], 0, "332833500\n", "", 1.0))
    (reading,) = profile.readings
    assert (reading.name, reading.value, reading.unit) == ("instructions", 155900, "instr")
    assert reading.exact and not reading.higher_is_better and reading.gate
    assert reading.note == "callgrind Ir, OMP_NUM_THREADS=1, fake clock (1 ms per call)"
    assert profile.kind == "instructions"
    assert profile.files == [outdir / "t.callgrind.out", outdir / "t.valgrind.log", outdir / "t-top.txt"]
    assert profile.summary == ("155,900 instructions (callgrind, 1 thread, fake clock); "
                               "top: 14.9% _dl_relocate_object, 13.9% do_lookup_x, 13.1% __GI___tunables_init")
    top = profile.details["top_functions"]
    assert len(top) == 10 and top[0] == {"function": "_dl_relocate_object", "self_ir": 23299,
                                         "share": round(23299 / 155900, 6)}
    listing = (outdir / "t-top.txt").read_text().splitlines()
    assert "155,900 in all" in listing[0]
    assert re.fullmatch(r"\s+14\.94%\s+23,299\s+_dl_relocate_object", listing[2])
    assert any(re.fullmatch(r"\s+7\.70%\s+12,000\s+mix", line) for line in listing)


def test_a_shim_the_dynamic_linker_refused_is_noted(tmp_path):
    profiler = Instructions(cache_dir=tmp_path / "cache")
    profiler.wrap(["./work"], tmp_path, "t")
    shim = profiler.fake_clock()
    shutil.copy(RECORDED, tmp_path / "t.callgrind.out")
    refused = (f"ERROR: ld.so: object '{shim}' from LD_PRELOAD cannot be preloaded "
               f"(wrong ELF class: ELFCLASS64): ignored.\n")
    profile = profiler.collect(tmp_path, "t", Completed(["vg"], 0, "", refused, 1.0))
    assert profile.readings[0].note == f"{NO_FAKE_CLOCK_NOTE} (the dynamic linker did not preload it)"
    assert profile.details["fake_clock"] is None and "real clock" in profile.summary


def test_a_child_that_fails_is_an_error_naming_the_program(tmp_path):
    profiler = Instructions(cc="no-such-cc")
    profiler.wrap(["/opt/bin/run", "model.bin"], tmp_path, "t")
    shutil.copy(RECORDED, tmp_path / "t.callgrind.out")  # callgrind writes it all the same
    done = Completed(["vg"], 3, "", "cannot open model.bin\n", 1.0)
    with pytest.raises(ProfilerError, match=r"^instructions: run under instructions exited with code 3; "
                                            r"stderr ends with:\ncannot open model\.bin$"):
        profiler.collect(tmp_path, "t", done)


def test_valgrind_failing_to_start_the_program_says_so(tmp_path):
    profiler = Instructions(cc="no-such-cc")
    profiler.wrap(["./missing"], tmp_path, "t")
    done = Completed(["vg"], 127, "", "valgrind: ./missing: No such file or directory\n", 0.1)
    with pytest.raises(ProfilerError, match=r"^instructions: valgrind cannot run \./missing \(exit code 127\): "
                                            r"\./missing: No such file or directory$"):
        profiler.collect(tmp_path, "t", done)


def test_valgrind_crashing_says_so_with_its_log(tmp_path):
    profiler = Instructions(cc="no-such-cc")
    profiler.wrap(["./run"], tmp_path, "t")
    (tmp_path / "t.valgrind.log").write_text("==7== \nvalgrind: the 'impossible' happened:\n"
                                             "   Killed by fatal signal\n")
    with pytest.raises(ProfilerError, match=r"^instructions: valgrind itself failed while running \./run "
                                            r"\(exit code 1\); .*t\.valgrind\.log ends with:\n(?s:.*)impossible"):
        profiler.collect(tmp_path, "t", Completed(["vg"], 1, "", "", 0.1))


def test_no_output_file_is_an_error_naming_valgrind_and_the_file(tmp_path):
    profiler = Instructions(cc="no-such-cc")
    profiler.wrap(["./run"], tmp_path, "t")
    (tmp_path / "t.valgrind.log").write_text("==7== some complaint\n")
    with pytest.raises(ProfilerError) as info:
        profiler.collect(tmp_path, "t", Completed(["vg"], 0, "", "", 0.1))
    message = str(info.value)
    assert message.startswith(f"instructions: valgrind wrote no callgrind output file {tmp_path}/t.callgrind.out")
    assert message.endswith("==7== some complaint")


def test_an_unparsable_output_file_is_an_error_naming_the_file(tmp_path):
    profiler = Instructions(cc="no-such-cc")
    profiler.wrap(["./run"], tmp_path, "t")
    (tmp_path / "t.callgrind.out").write_text("events: Ir\nfn=main\n1 5\n")  # cut short: no totals
    with pytest.raises(ProfilerError, match=r"^instructions: cannot read valgrind's callgrind output: "
                                            r".*t\.callgrind\.out: no 'totals:' or 'summary:' line"):
        profiler.collect(tmp_path, "t", Completed(["vg"], 0, "", "", 0.1))


@pytest.mark.parametrize("total", [0, 10 ** 18, 2 ** 64 - 1, "9" * 19 + " 0\ntotals: " + "9" * 19])
def test_a_count_of_zero_is_informational_and_one_of_1e18_or_more_an_error(tmp_path, total):
    """Issue 11, item 9: llmperf.record rejects a zero in a gated metric and a sample of 1e18 or
    more (a 64-bit count can be; two parts' totals add up beyond it)."""
    profiler = Instructions(cc="no-such-cc")
    profiler.wrap(["./run"], tmp_path, "t")
    (tmp_path / "t.callgrind.out").write_text(f"events: Ir\nfn=main\n1 0\ntotals: {total}\n")
    if total != 0:
        with pytest.raises(ProfilerError) as info:
            profiler.collect(tmp_path, "t", Completed(["vg"], 0, "", "", 0.1))
        assert str(info.value).startswith(f"instructions: {tmp_path}/t.callgrind.out: instructions read ")
        assert "out of range (1e18 or more" in str(info.value) and "\n" not in str(info.value)
        return
    (reading,) = profiler.collect(tmp_path, "t", Completed(["vg"], 0, "", "", 0.1)).readings
    assert reading.value == 0 and reading.exact and not reading.gate
    assert reading.note.endswith("; " + base.zero_note("instructions"))


# ---------------------------------------------------------------------------------------------
# real runs under valgrind

TIMED = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* a fixed loop of work timed like llama2.c times its tokens; the elapsed time goes to argv[1] */
int main(int argc, char **argv) {
    struct timespec t0, t1;
    volatile unsigned sink = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < 20000; i++) sink += i * 2654435761u ^ (i >> 7);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double elapsed = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    FILE *out = fopen(argv[1], "w");
    if (out == NULL) return 2;
    fprintf(out, "elapsed %.9f s, %f iterations/s\n", elapsed, 20000 / elapsed);
    fclose(out);
    if (argc > 2) {
        fprintf(stderr, "asked to fail\n");
        return 3;
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def timed(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("timed")
    (where / "timed.c").write_text(TIMED)
    subprocess.run(["cc", "-O1", "-o", str(where / "timed"), str(where / "timed.c")], check=True)
    return where / "timed"


@pytest.fixture(scope="module")
def shim_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shim-cache")


@needs_valgrind
def test_five_runs_with_the_fake_clock_count_the_same(timed, shim_cache, tmp_path):
    profiler = Instructions(cache_dir=shim_cache)
    counts, printed = [], []
    for i in range(5):
        profile = base.run(profiler, [timed, tmp_path / f"printed{i}"], tmp_path / "out", tag=f"r{i}")
        counts.append(profile.readings[0].value)
        printed.append((tmp_path / f"printed{i}").read_text())
    assert len(set(counts)) == 1, counts
    # one clock call between the two readings: exactly one 1 ms step, on every run
    assert set(printed) == {"elapsed 0.001000000 s, 20000000.000000 iterations/s\n"}
    assert profile.readings[0].note.endswith("fake clock (1 ms per call)")
    assert "fake clock" in profile.summary and profile.details["fake_clock"] == str(profiler.fake_clock())
    out = tmp_path / "out" / "r4.callgrind.out"
    assert profile.files[0] == out and f"cmd:  {timed}" in out.read_text()
    log = (tmp_path / "out" / "r4.valgrind.log").read_text()
    assert "Callgrind" in log and f"Collected : {int(counts[0])}" in log  # valgrind's own figure

    annotate = shutil.which("callgrind_annotate")  # a perl script of the valgrind package
    if annotate is not None:
        listing = subprocess.run([annotate, "--threshold=100", "--auto=no", str(out)],
                                 capture_output=True, text=True, check=True).stdout
        rows = top_functions(out.read_text(), top=None)
        assert by_bare_name(rows) == annotate_self_costs(listing)
        assert sum(ir for _, ir, _ in rows) == counts[0]


@needs_valgrind
def test_without_the_fake_clock_the_printed_time_changes(timed, tmp_path):
    profiler = Instructions(cc="no-such-cc", cache_dir=tmp_path / "cache")
    printed = []
    for i in range(2):
        profile = base.run(profiler, [timed, tmp_path / f"printed{i}"], tmp_path / "out", tag=f"r{i}")
        assert profile.readings[0].note.startswith(NO_FAKE_CLOCK_NOTE)
        printed.append((tmp_path / f"printed{i}").read_text())
    assert all(p.startswith("elapsed 0.") for p in printed)
    if time.get_clock_info("monotonic").resolution <= 1e-6:
        # a loop of some hundred thousand instructions under valgrind, timed to the nanosecond:
        # two runs never print the same figure (with a coarse clock they might)
        assert len(set(printed)) > 1, printed


@needs_valgrind
def test_a_failing_program_under_valgrind_with_an_earlier_preload(timed, shim_cache, tmp_path, monkeypatch):
    """The shim goes before LD_PRELOAD's earlier entries, which the dynamic linker still loads;
    the program's exit code comes back through valgrind and is an error naming the program."""
    (tmp_path / "marker.c").write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n"
        "__attribute__((constructor)) static void mark(void) {\n"
        "    FILE *f = fopen(getenv(\"LLMPERF_TEST_MARKER\"), \"w\");\n"
        "    if (f) { fputs(\"loaded\\n\", f); fclose(f); }\n}\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libmarker.so"), str(tmp_path / "marker.c")],
                   check=True)
    monkeypatch.setenv("LD_PRELOAD", str(tmp_path / "libmarker.so"))
    monkeypatch.setenv("LLMPERF_TEST_MARKER", str(tmp_path / "marker.txt"))
    profiler = Instructions(cache_dir=shim_cache)
    with pytest.raises(ProfilerError, match=r"^instructions: timed under instructions exited with code 3; "
                                            r"stderr ends with:\nasked to fail$"):
        base.run(profiler, [timed, tmp_path / "printed", "fail"], tmp_path / "out")
    assert (tmp_path / "marker.txt").read_text() == "loaded\n"
    assert (tmp_path / "printed").read_text().startswith("elapsed 0.001000000 s")  # the fake clock answered
    with pytest.raises(ProfilerError, match=r"^instructions: valgrind cannot run .*no-such-program"):
        base.run(profiler, [tmp_path / "no-such-program"], tmp_path / "out")


def test_an_instruction_valgrind_does_not_know_makes_the_profiler_unavailable(tmp_path):
    """Recorded: a -march=native build (AVX-512) of the reference runner under valgrind 3.19."""
    from pytest_llmperf.profilers.base import ProfilerUnavailable

    profiler = Instructions(cache_dir=tmp_path / "cache")
    profiler.version = "valgrind-3.19.0"
    (tmp_path / "t.valgrind.log").write_text(
        "==9242== Callgrind, a call-graph generating cache profiler\n"
        "vex amd64->IR: unhandled instruction bytes: 0x62 0xF1 0x7F 0x28 0x7F 0x85 0xB8 0xFD 0xFF 0xFF\n"
        "==9242== valgrind: Unrecognised instruction at address 0x10ab7f.\n"
        "==9242== Process terminating with default action of signal 4 (SIGILL)\n")
    done = Completed(["valgrind", "--tool=callgrind", "--callgrind-out-file=x", "--log-file=y", "/b/run"], -4, "", "", 0.1)
    with pytest.raises(ProfilerUnavailable, match=r"^instructions: valgrind-3.19.0 does not recognise an "
                                                   r"instruction of run \(a binary built for this CPU"):
        profiler.collect(tmp_path, "t", done)
