"""Property-based fuzzing of everything in pytest_llmperf/profilers that reads a tool's output or
a file: perf stat -x CSV, perf report --stdio, callgrind output files (totals and self costs), nsys
stats kernel tables, and the profilers' collect() that reads them from disk, the readings they
hand llmperf.record, and the options that name the tools.

The inputs are not random text: they start from recorded and hand-written outputs (tests/data and
the formats of the other tests) and are mutated the way broken tools, cut-short files and foreign
locales break them: a number replaced by nan, inf, -1, 1e400, 400 digits, '.', an empty field;
lines cut, dropped, doubled, swapped; separators added; unicode, NULs and line separators put in.
The property is always the same: the module's own error class, with a one-line message, or a
result whose numbers are what llmperf.record takes (finite, 0 or more, below 1e18, no zero in a
gated metric). LLMPERF_FUZZ_EXAMPLES sets the examples per test (tests/fuzzing.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from fuzzing import EXAMPLES, fuzz, only_raises
from hypothesis import strategies as st

from pytest_llmperf.profilers import base, nsys, perf, valgrind
from pytest_llmperf.profilers.base import Completed, Profile, ProfilerError, Reading
from pytest_llmperf.profilers.fixtures import ProcessProfiling
from pytest_llmperf.profilers.nsys import Nsys, NsysParseError
from pytest_llmperf.profilers.options import tool_problem
from pytest_llmperf.profilers.perf import PerfParseError, PerfRecord, PerfStat
from pytest_llmperf.profilers.valgrind import Instructions, ValgrindParseError

DATA = Path(__file__).parent / "data"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -- seeds: real outputs -------------------------------------------------------------------------

STAT_SEEDS = [_read(p) for p in sorted((DATA / "perf").glob("stat_*.csv"))] + [
    _read(DATA / "perf" / "event_error.txt"),
    "0.48,msec,task-clock,477509,100.00,0.514,CPUs utilized\n0,,branch-misses,477509,100.00,,\n",
    "2876543210,,instructions,812345678,66.70,1.89,insn per cycle\n1523456789,,cycles,812345678,66.62,,\n",
    "0.33,msec,task-clock,0.33,13.91%,330000,100.00,0.41,CPUs utilized\n",
    "<not counted>,,cpu_core/cycles/,0,0.00,,\n<not supported>,,cpu_atom/cycles/,0,100.00,,\n",
    "18446744073709551615,,cycles,100,100.00,,\n1,,instructions,100,100.00,,\n",
]
REPORT_SEEDS = [_read(p) for p in sorted((DATA / "perf").glob("report_*.txt"))] + [
    "# Samples: 12K of event 'cycles'\n# Event count (approx.): 9000000\n#\n"
    " 62.50%\x1f[.] matmul\x1frun\n 37.50%\x1f[k] do_syscall_64\x1f[kernel.kallsyms]\n",
    "# Samples: 0  of event 'cpu-clock'\n#\n",
]
CALLGRIND_SEEDS = [_read(DATA / "valgrind" / "compressed.callgrind.out"), _read(DATA / "valgrind" / "work.callgrind.out"),
                   "events: Dr Ir Dw\nfl=a.c\nfn=f\n1 7 40 1\n2 1 2\ntotals: 8 42 1\n",
                   "positions: instr line\nevents: Ir Dr\nfl=(1) a.c\nfn=(1) f\n0x401000 3 10 1\n+4 * 5\n-2 +1\n"
                   "cfn=(2) g\ncalls=1 0x402000 9\n+8 3 99\nfn=(2)\n0x402000 9 60\ntotals: 75 1\n",
                   "events: Ir\nfn=(1) walk\n1 10\ncfn=(2) walk'2\ncalls=1 1\n1 5\nfn=(2)\n1 5\ntotals: 20\n",
                   "events: Ir\npart: 1\ntotals: 10\npart: 2\ntotals: 32\n", "events: Ir\nsummary: 17\n"]
KERNEL_SEEDS = [_read(p) for p in sorted((DATA / "nsys").iterdir())] + [
    '"Name","Instances","Total Time (us)","Time (%)","Max (us)","Min (us)","Avg (us)"\n'
    '"my_kernel<""fast"">(float *, int)","4","1,250.5","100.0","400","200","312.625"\n',
    '"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"\n'
    '"100.0","0","1","0","0","0","0","0","k"\n\nProcessing [x.sqlite] with [y.py]...\n',
]

# what breaks numbers: not numbers, numbers out of any range, numbers in other notations or scripts
NASTY = ["nan", "-nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0", "0", "0.0", "1e400", "-1e400", "1e-400",
         "1e18", "1e308", "9" * 400, "1" * 19, str(2 ** 64 - 1), str(2 ** 64), "4" * 5000, ".", "..", "", " ", ",",
         "%", "nan%", "-5%", "1_000", "\u0661\u0662", "\uff11\uff12", "\u00b2", "0x1F", "+5", "1,234,567", "1.234.567",
         "12K", "1.5M", "(3)", "*", "<not counted>", "<not supported>", "'", '"', '""']
# what breaks lines and files
# and numbers of every length, most beyond what a count or a float can hold
NASTY_NUMBERS = st.sampled_from(NASTY) | st.integers(1, 420).map(lambda n: "9" * n) | \
    st.integers(17, 420).map(lambda n: "1" + "0" * n) | st.integers(17, 400).map(lambda n: f"1e{n}")
JUNK = ["\x00", "\ufeff", "\u2028", "\x85", "\x1c", "\r", "\t", "é", "\U0001f600", "\x1f", "'", '"', "#", "%", "=",
        ":", "(", ")", "\\", "\udcff"]
SEPARATORS = [",", ";", "\x1f", " ", "=", ":", '"', "\n"]
NUMBER = re.compile(r"[0-9][0-9.,]*%?|\bnan\b|\binf\b")


@st.composite
def mutated(draw, seeds: list[str], key: str | None = None, max_changes: int = 6) -> str:
    """One of ``seeds`` with a few of the changes a broken tool or a cut file makes. ``key``: a
    pattern of the lines that matter most (headers, totals), whose numbers are changed more often
    than their share of the lines would have it."""
    lines = draw(st.sampled_from(seeds)).split("\n")
    for _ in range(draw(st.integers(0, max_changes))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["number", "number", "number", "key", "key", "key", "key", "field", "cut", "drop",
                                   "double", "swap", "sep", "junk", "text", "cut-file"]))
        if op == "key":
            keyed = [j for j, ln in enumerate(lines) if key and re.search(key, ln)]
            i = draw(st.sampled_from(keyed)) if keyed else i
            op = "number"
        line = lines[i]
        if op == "number":
            spots = list(NUMBER.finditer(line))
            if spots:
                m = spots[draw(st.integers(0, len(spots) - 1))]
                lines[i] = line[:m.start()] + draw(NASTY_NUMBERS) + line[m.end():]
        elif op == "field":
            sep = draw(st.sampled_from(SEPARATORS[:4]))
            fields = line.split(sep)
            fields[draw(st.integers(0, len(fields) - 1))] = draw(NASTY_NUMBERS | st.text(max_size=8))
            lines[i] = sep.join(fields)
        elif op == "cut":
            lines[i] = line[:draw(st.integers(0, len(line)))]
        elif op == "drop":
            del lines[i]
        elif op == "double":
            lines.insert(i, line)
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op in ("sep", "junk"):
            where = draw(st.integers(0, len(line)))
            extra = draw(st.sampled_from(SEPARATORS if op == "sep" else JUNK))
            lines[i] = line[:where] + extra * draw(st.integers(1, 3)) + line[where:]
        elif op == "text":
            lines.insert(i, draw(st.text(max_size=40)))
        else:  # the file ends mid-way
            text = "\n".join(lines)
            lines = text[:draw(st.integers(0, len(text)))].split("\n")
    return "\n".join(lines)


def _stat_value():
    return NASTY_NUMBERS | st.integers(0, 10 ** 25).map(str) | st.floats().map(repr) | \
        st.decimals(allow_nan=True).map(str)


@st.composite
def stat_lines(draw) -> str:
    """perf stat -x lines built field by field: value, unit, event, [variance], run time, percent
    running, metric value, metric unit; any of them a nasty value."""
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        fields = [draw(_stat_value()), draw(st.sampled_from(["", "msec", "ns", "Joules"])),
                  draw(st.sampled_from(["cycles", "instructions", "task-clock", "page-faults", "cycles:u",
                                        "cpu/event=0x3c/", "context-switches"]) | st.text(max_size=12))]
        if draw(st.booleans()):
            fields.append(draw(_stat_value()) + "%")
        fields += [draw(_stat_value()), draw(_stat_value()), draw(_stat_value() | st.just("")),
                   draw(st.sampled_from(["", "CPUs utilized", "insn per cycle"]))]
        rows.append(",".join(fields[:draw(st.integers(0, len(fields)))] if draw(st.booleans()) else fields))
    return "\n".join(rows) + "\n"


@st.composite
def kernel_tables(draw) -> str:
    """nsys kernel tables built cell by cell, under the current or the old header."""
    header = draw(st.sampled_from([
        ["Time (%)", "Total Time (ns)", "Instances", "Avg (ns)", "Med (ns)", "Min (ns)", "Max (ns)", "StdDev (ns)",
         "Name"],
        ["Time(%)", "Total Time", "Instances", "Average", "Minimum", "Maximum", "Name"],
        ["Name", "Instances", "Total Time (us)", "Time (%)", "Max (s)", "Min (ms)", "Avg (usec)"]]))
    number = NASTY_NUMBERS | st.integers(0, 10 ** 20).map(str) | st.floats().map(repr)
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        cells = [draw(st.text(max_size=30)) if h == "Name" else draw(number) for h in header]
        rows.append(",".join('"' + c.replace('"', '""') + '"' for c in cells))
    return "\n".join([",".join(f'"{h}"' for h in header), *rows]) + "\n"


def _files(text: str):
    """The text as the bytes a tool wrote: UTF-8, or a few bytes of no encoding."""
    return text.encode("utf-8", "surrogateescape")


# -- what llmperf.record takes ---------------------------------------------------------------------

def assert_recordable(readings) -> None:
    for r in readings:
        assert isinstance(r, Reading) and type(r.value) is float, r
        assert math.isfinite(r.value) and 0 <= r.value < 1e18, r
        assert r.value > 0 or not r.gate, r  # a zero is never gated
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", r.name), r.name


def assert_one_json_document(details) -> None:
    json.dumps(details, allow_nan=False)  # the JSON report is strict JSON: no NaN, no Infinity


# -- perf stat --------------------------------------------------------------------------------------

STAT_KEY = r"^[0-9<]"  # counter lines
REPORT_KEY = r"^# Samples:|%"
CALLGRIND_KEY = r"^(totals|summary):"
KERNEL_KEY = r'^"[0-9]'


@fuzz(mutated(STAT_SEEDS, STAT_KEY) | stat_lines(), st.sampled_from([",", ";"]))
def test_fuzz_perf_stat_csv(text, separator):
    counters = only_raises(PerfParseError, perf.parse_stat_csv, text, separator, "run.perf-stat.csv")
    if counters is None:
        return
    for c in counters:
        if c.status == perf.COUNTED:
            assert math.isfinite(c.value) and c.value >= 0, c
        else:
            assert c.value is None
        for pct in (c.running_pct, c.variance_pct):
            assert pct is None or (math.isfinite(pct) and pct >= 0), c
        assert c.metric_value is None or math.isfinite(c.metric_value), c
    got, _missing = perf.readings(counters)
    perf.stat_summary(counters)
    recordable = only_raises(ProfilerError, base.checked, "perf-stat", got, "run.perf-stat.csv")
    if recordable is not None:
        assert_recordable(recordable)


EVENT_ERRORS = [_read(DATA / "perf" / "event_error.txt"), "", "event syntax error: 'x'\n",
                "Error:\nevent syntax error: '\u00e9v\x00'\n  \\___ parser error\n"]


@fuzz(mutated(STAT_SEEDS, STAT_KEY) | stat_lines(), st.binary(max_size=12), mutated(EVENT_ERRORS, "syntax"))
def test_fuzz_perf_stat_collect(text, garbage, stderr):
    with tempfile.TemporaryDirectory() as d:
        outdir = Path(d)
        (outdir / "t.perf-stat.csv").write_bytes(_files(text) + garbage)
        done = Completed(["perf", "stat", "--", "./prog"], 0, "", stderr, 0.1)
        profile = only_raises(ProfilerError, PerfStat().collect, outdir, "t", done)
    if profile is not None:
        assert_recordable(profile.readings)
        assert_one_json_document(profile.details)


STATUS_SEEDS = [b"exit 0\n", b"exit 4\n", b"signal 11\n", b"spawn-error 2\n", b"shell 0\n", b"shell 139\n", b"exit 0",
                b"", b"exit 255\n", b"signal 127\n"]
WRAPPER = "/cache/build/k/" + perf.EXITSTATUS_NAME


@st.composite
def status_files(draw) -> bytes:
    """What the exec wrapper writes, and what a killed or foreign one would leave."""
    seed = draw(st.sampled_from(STATUS_SEEDS))
    op = draw(st.sampled_from(["keep", "number", "cut", "junk", "bytes"]))
    if op == "number":
        return re.sub(rb"[0-9]+", draw(NASTY_NUMBERS).encode("utf-8", "surrogatepass"), seed, count=1)
    if op == "cut":
        return seed[:draw(st.integers(0, len(seed)))]
    if op == "junk":
        at = draw(st.integers(0, len(seed)))
        return seed[:at] + draw(st.sampled_from(JUNK)).encode("utf-8", "surrogatepass") + seed[at:]
    if op == "bytes":
        return draw(st.binary(max_size=24))
    return seed


@fuzz(status_files(), st.sampled_from([0, 0, 1, 4, 127, 255, -9, -11]))
def test_fuzz_perf_stat_status_file(status, returncode):
    """Whatever the status file holds and whatever perf's exit code: a ProfilerError whose first line
    names perf-stat, or counters only where the command and perf both succeeded."""
    with tempfile.TemporaryDirectory() as d:
        outdir = Path(d)
        (outdir / "t.perf-stat.csv").write_text(STAT_SEEDS[0])
        (outdir / "t.perf-stat.status").write_bytes(status)
        argv = [WRAPPER, "read", str(outdir / "t.perf-stat.status"), "--", "perf", "stat", "--", WRAPPER, "write",
                str(outdir / "t.perf-stat.status"), "--", "./prog"]
        try:
            profile = PerfStat().collect(outdir, "t", Completed(argv, returncode, "", "boom\n", 0.1))
        except ProfilerError as exc:
            first = str(exc).split("\n")[0]
            assert first.startswith("perf-stat: ") and first.isprintable(), str(exc)
            return
    assert returncode == 0 and re.fullmatch(rb"(exit|shell) 0+\n?", status), status
    assert_recordable(profile.readings)
    assert_one_json_document(profile.details)


# -- perf report ------------------------------------------------------------------------------------

@fuzz(mutated(REPORT_SEEDS, REPORT_KEY))
def test_fuzz_perf_report(text):
    parsed = only_raises(PerfParseError, perf.parse_report, text, "perf report on t.perf.data")
    if parsed is None:
        return
    samples, _event, rows = parsed
    assert samples is None or (type(samples) is int and 0 <= samples < 1e18)
    assert all(math.isfinite(s.share) and s.share >= 0 for s in rows)
    assert [s.share for s in rows] == sorted((s.share for s in rows), reverse=True)
    perf.symbols_table(rows)


class _ReportedPerfRecord(PerfRecord):
    """perf record's collect() with perf report's output given."""

    def __init__(self, stdout: str):
        super().__init__("perf")
        self.stdout = stdout

    def report(self, data):
        return self.stdout


@fuzz(mutated(REPORT_SEEDS, REPORT_KEY))
def test_fuzz_perf_record_collect(text):
    with tempfile.TemporaryDirectory() as d:
        outdir = Path(d)
        (outdir / "t.perf.data").write_bytes(b"PERFILE2")
        done = Completed(["perf", "record", "--", "./prog"], 0, "", "", 0.1)
        profile = only_raises(ProfilerError, _ReportedPerfRecord(text).collect, outdir, "t", done)
    if profile is not None:
        assert_recordable(profile.readings)
        assert_one_json_document(profile.details)


# -- callgrind --------------------------------------------------------------------------------------

@fuzz(mutated(CALLGRIND_SEEDS, CALLGRIND_KEY))
def test_fuzz_callgrind_totals(text):
    total = only_raises(ValgrindParseError, valgrind.parse_callgrind_totals, text, "t.callgrind.out")
    assert total is None or (type(total) is int and total >= 0)


@fuzz(mutated(CALLGRIND_SEEDS, CALLGRIND_KEY), st.sampled_from([None, 1, 10]))
def test_fuzz_callgrind_top_functions(text, top):
    rows = only_raises(ValgrindParseError, valgrind.top_functions, text, top, "t.callgrind.out")
    if rows is None:
        return
    assert top is None or len(rows) <= top
    for function, ir, share in rows:
        assert isinstance(function, str) and type(ir) is int and ir > 0 and 0 <= share <= 1
    valgrind.format_top(rows, sum(ir for _, ir, _ in rows))


@fuzz(mutated(CALLGRIND_SEEDS, CALLGRIND_KEY), st.binary(max_size=12))
def test_fuzz_instructions_collect(text, garbage):
    with tempfile.TemporaryDirectory() as d:
        outdir = Path(d)
        profiler = Instructions(cc="no-such-cc", cache_dir=outdir / "cache")
        profiler._shim_tried = True  # no fake clock to build: the run went without it
        profiler.wrap(["./prog"], outdir, "t")
        (outdir / "t.callgrind.out").write_bytes(_files(text) + garbage)
        profile = only_raises(ProfilerError, profiler.collect, outdir, "t", Completed(["vg"], 0, "", "", 0.1))
    if profile is not None:
        assert_recordable(profile.readings)
        assert_one_json_document(profile.details)


# -- nsys -------------------------------------------------------------------------------------------

@fuzz(mutated(KERNEL_SEEDS, KERNEL_KEY) | kernel_tables())
def test_fuzz_nsys_kernel_csv(text):
    kernels = only_raises(NsysParseError, nsys.parse_kernel_csv, text, "t_cuda_gpu_kern_sum.csv")
    if kernels is None:
        return
    for k in kernels:
        assert k.name and type(k.instances) is int and k.instances >= 0
        for value in (k.time_pct, k.total_ns, k.avg_ns, k.med_ns, k.min_ns, k.max_ns, k.stddev_ns):
            assert value is None or (math.isfinite(value) and value >= 0), k
    nsys.kernel_table(kernels)
    nsys.summary_line(kernels)


@fuzz(mutated(KERNEL_SEEDS, KERNEL_KEY) | kernel_tables(), st.binary(max_size=12))
def test_fuzz_nsys_collect(text, garbage):
    with tempfile.TemporaryDirectory() as d:
        outdir = Path(d)
        (outdir / "t.nsys-rep").write_bytes(b"report")
        csv_path = outdir / "t_cuda_gpu_kern_sum.csv"
        csv_path.write_bytes(_files(text) + garbage)
        profiler = Nsys("/bin/true", gpu_probe=lambda: True)
        profiler._stats = lambda outdir, tag, report: (
            csv_path, csv_path.read_text(encoding="utf-8", errors="replace"), "cuda_gpu_kern_sum")
        done = Completed(["nsys", "profile", "--", "./prog"], 0, "", "", 0.1)
        profile = only_raises(ProfilerError, profiler.collect, outdir, "t", done)
    if profile is not None:
        assert_recordable(profile.readings)
        assert_one_json_document(profile.details)


@fuzz(st.text(max_size=120) | mutated([ln for seed in KERNEL_SEEDS for ln in seed.splitlines() if ln]))
def test_fuzz_nsys_short_name(name):
    short = nsys.short_name(name)
    assert isinstance(short, str) and len(short) <= 60


@fuzz(st.lists(st.sampled_from(["cuda-", "12", ".", "4", "nsight-systems-", "2024", "/", "bin", "\u0661",
                                "9" * 5000, "x"]), max_size=8).map("".join))
def test_fuzz_nsys_version_key_of_install_paths(path):
    key = nsys._version_key(path)
    assert key == nsys._version_key(path)  # sortable: the same path, the same key
    sorted([path, "/opt/nvidia/nsight-systems/2024.5.1/bin"], key=nsys._version_key)


# -- the machine's settings the profilers read -------------------------------------------------------

@fuzz(st.binary(max_size=30) | st.sampled_from(NASTY).map(str.encode) | st.integers(-5, 5).map(lambda n: b"%d\n" % n))
def test_fuzz_perf_event_paranoid(content):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "perf_event_paranoid"
        path.write_bytes(content)
        reason = perf.unavailable_reason("sh", str(path))
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)


def _tool(directory: Path, output: bytes, code: int) -> Path:
    """A stand-in executable that prints ``output`` and exits with ``code``, whatever it is asked."""
    (directory / "said").write_bytes(output)
    tool = directory / "tool"
    tool.write_text(f"#!/bin/sh\ncat '{directory / 'said'}'\nexit {code}\n")
    tool.chmod(0o755)
    return tool


TOOL_SAYS = st.binary(max_size=40) | mutated(["valgrind-3.19.0\n", "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d3c)\n",
                                              "No devices were found\n"]).map(lambda t: _files(t))


@fuzz(TOOL_SAYS, st.sampled_from([0, 0, 1, 6, 127]), max_examples=max(10, EXAMPLES // 5))
def test_fuzz_valgrind_version_output(output, code):
    """What ``valgrind --version`` prints, in any bytes: a reason (one line) or None, no exception."""
    with tempfile.TemporaryDirectory() as d:
        profiler = Instructions(str(_tool(Path(d), output, code)))
        reason = profiler.unavailable_reason()
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)
    assert (reason is None) == (code == 0)


@fuzz(TOOL_SAYS, st.sampled_from([0, 0, 6]), max_examples=max(10, EXAMPLES // 5))
def test_fuzz_nvidia_smi_output(output, code):
    """What ``nvidia-smi -L`` prints, in any bytes: a GPU or not, no exception."""
    with tempfile.TemporaryDirectory() as d:
        seen = nsys.nvidia_gpu_visible(str(Path(d) / "no-device[0-9]"), smi=str(_tool(Path(d), output, code)))
    assert seen in (True, False)
    assert not seen or (code == 0 and b"GPU " in output)


# -- the options that name a tool -------------------------------------------------------------------

@fuzz(st.text(max_size=40) | st.sampled_from(["/bin/sh", "sh", "~", "~/nowhere/perf", "/", "/etc/passwd",
                                               "/nonexistent/perf", "perf\x00", "~\x00/x", "\udcff/perf", "./perf",
                                               "a" * 5000, "/" + "a" * 300]))
def test_fuzz_tool_problem(value):
    problem = tool_problem(value)
    assert problem is None or (isinstance(problem, str) and problem and "\n" not in problem)
    if problem is None:
        path = os.path.expanduser(value)
        assert os.sep in path or shutil.which(path)


# -- readings through the fixture to llmperf.record ---------------------------------------------------

class _StrictRecorder:
    """The llmperf fixture, as far as _record uses it, with the core's rules on samples."""

    def __init__(self):
        self.metrics = {}
        self.artifacts = []

    def record(self, name, samples, unit="", higher_is_better=None, gate=True, note="", exact=False):
        samples = list(samples)
        assert samples and isinstance(gate, bool) and isinstance(note, str)
        for v in samples:
            assert type(v) is float and math.isfinite(v) and 0 <= v < 1e18 and (v > 0 or not gate), (name, v, gate)
        self.metrics[name] = samples

    def add_artifact(self, *args):
        self.artifacts.append(args)


VALUES = st.floats() | st.integers(-10, 10 ** 30) | st.sampled_from([0, 0.0, -0.0, 1e18, 1e18 - 128, 5e-324])


@fuzz(st.lists(st.lists(st.tuples(st.sampled_from(["perf.cycles", "perf.page-faults", "instructions"]), VALUES,
                                  st.booleans(), st.booleans()), min_size=1, max_size=4), min_size=1, max_size=4))
def test_fuzz_readings_through_the_fixture(runs):
    """Readings of several profiled runs, as collect() leaves them (base.checked), recorded by the
    fixture: never a sample llmperf.record rejects, whatever one run read."""
    profiles = []
    for readings in runs:
        raw = {name: Reading(name, value, "", False, gate=gate, exact=exact) for name, value, gate, exact in readings}
        checked = only_raises(ProfilerError, base.checked, "p", list(raw.values()), "f")
        if checked is None:
            return  # the profiler's error: the fixture fails the test, recording nothing of that profiler
        assert_recordable(checked)
        profiles.append(Profile("p", checked, summary="s"))
    profiling = ProcessProfiling.__new__(ProcessProfiling)
    profiling._recorded = set()
    profiling._record(_StrictRecorder(), "p", profiles, None)
