"""The process profilers through pytest (pytester, a pytest subprocess per run): selection by
option and marker, metrics and files, the summary, skips with reasons, and every failure path
(unknown event, failing program, unparsable output, missing tool) with the test's own metrics
still reported. perf and valgrind are the real tools (CI installs them); nsys is absent here
and faked where a test needs it to run."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import compile_c, run_isolated
from pytest_llmperf.profilers import perf

HAVE_PERF = shutil.which("perf") is not None and perf.unavailable_reason() is None
HAVE_VALGRIND = shutil.which("valgrind") is not None
needs_perf = pytest.mark.skipif(not HAVE_PERF, reason="perf not usable here (apt-get install linux-perf)")
needs_valgrind = pytest.mark.skipif(not HAVE_VALGRIND, reason="valgrind not installed (apt-get install valgrind)")
ENV_OPTIONS = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_ARTIFACTS", "LLMPERF_PERF", "LLMPERF_VALGRIND",
               "LLMPERF_NSYS", "LLMPERF_CACHE_DIR", "PYTEST_ADDOPTS")

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
int main(int argc, char **argv) {
    if (argc > 3) {  /* die of SIGSEGV, leaving no core file */
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        *(volatile int *)0 = 1;
    }
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int code = argc > 2 ? atoi(argv[2]) : 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    double s = 0;
    for (long i = 1; i <= n; i++) s += 1.0 / (double)i;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("sum %f in %f ms\n", s, (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    return code;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return compile_c(tmp_path_factory.mktemp("prog"), "work", PROGRAM)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("profiler-cache")


def run(pytester: pytest.Pytester, cache: Path, *args: str, env: dict | None = None) -> pytest.RunResult:
    return run_isolated(pytester, "-p", "no:cacheprovider", "--llmperf-node=pnode", f"--llmperf-cache-dir={cache}",
                        "--llmperf-json=report.json", *args, clear=ENV_OPTIONS, env=env)


def report(pytester: pytest.Pytester) -> dict:
    data = json.loads((pytester.path / "report.json").read_text())
    return {t["nodeid"].split("::")[-1]: t for t in data["tests"]}


def path_without(*tools: str) -> str:
    """$PATH without the directories that hold any of ``tools``: a machine where they are missing."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not any(os.path.exists(os.path.join(d, t)) for t in tools))


NO_NSYS_CONFTEST = "from pytest_llmperf.profilers import nsys\nnsys.SEARCH_ROOTS = ()\n"  # nor the CUDA installs


def write_test(pytester: pytest.Pytester, program: Path, body: str = "", n: int = 200000) -> None:
    pytester.makepyfile(test_prof=f"""
        import pytest
        PROGRAM = {str(program)!r}

        def test_work(llmperf, llmperf_profile):
            llmperf.record("own", [1.0, 1.1, 0.9], unit="s", higher_is_better=False)
            llmperf_profile.command([PROGRAM, "{n}"])
        {body}
    """)


@needs_perf
@needs_valgrind
def test_all_profilers_by_option(pytester, program, cache_dir):
    write_test(pytester, program)
    pytester.makeconftest(NO_NSYS_CONFTEST)  # and no nsys on PATH: skipped
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat,perf-record,instructions,nsys",
                 "--llmperf-artifacts=arts", env={"PATH": path_without("nsys")})
    result.assert_outcomes(passed=1)
    t = report(pytester)["test_work"]
    m = t["metrics"]
    assert len(m["perf.task-clock"]["samples"]) == 3 and m["perf.task-clock"]["unit"] == "ms"
    assert m["instructions"]["exact"] is True and len(m["instructions"]["samples"]) == 1
    assert isinstance(m["instructions"]["samples"][0], int) and m["instructions"]["samples"][0] > 200000
    assert m["own"]["samples"] == [1.0, 1.1, 0.9]  # the test's own metric is untouched
    tol = {v["metric"]: v["tolerance"] for v in t["verdicts"]}
    assert tol["instructions"] == 0.001 and tol["perf.task-clock"] == 0.05
    kinds = {a["kind"]: a for a in t["artifacts"]}
    assert set(kinds) == {"perf-stat", "perf-record", "instructions", "nsys"}
    assert "nsys not found" in kinds["nsys"]["details"]["skipped"] and kinds["nsys"]["paths"] == []
    folder = pytester.path / "arts" / "pnode" / "test_prof.py--test_work"
    for path in kinds["perf-record"]["paths"] + kinds["instructions"]["paths"] + kinds["perf-stat"]["paths"]:
        assert Path(path).is_file() and Path(path).parent == folder
    assert (folder / "work-perf-record.perf.data").is_file()
    statuses = {c["event"]: c["status"] for c in kinds["perf-stat"]["details"]["counters"]}
    assert statuses["task-clock"] == "counted"
    # hardware counters are either counted (a metric) or kept with their status, never zero
    for event, status in statuses.items():
        assert (status == "counted") == (perf.metric_name(event) in m), event
    result.stdout.fnmatch_lines([
        "llmperf: node pnode (--llmperf-node), *, gating, profiling perf-stat,perf-record,nsys,instructions",
        f"llmperf: profiler outputs in {pytester.path / 'arts'}:",
        "  test_prof.py::test_work [[]perf-stat[]] task-clock *",
        f"      {folder}/work-perf-stat-1.perf-stat.csv",
        "  test_prof.py::test_work [[]perf-record[]] * samples of *",
        "  test_prof.py::test_work [[]instructions[]] *instructions*",
        "llmperf: profiler nsys skipped in 1 test(s): nsys not found*",
    ])


@needs_perf
def test_marker_selects_profilers_for_one_test(pytester, program, cache_dir):
    write_test(pytester, program, body="""
        @pytest.mark.llmperf(profile="perf-stat")
        def test_marked(llmperf, llmperf_profile):
            llmperf_profile.command([PROGRAM, "1000"])
    """)
    result = run(pytester, cache_dir, "--llmperf-profile-runs=4")
    result.assert_outcomes(passed=2)
    tests = report(pytester)
    assert "perf.task-clock" not in tests["test_work"]["metrics"] and "artifacts" not in tests["test_work"]
    assert len(tests["test_marked"]["metrics"]["perf.task-clock"]["samples"]) == 4
    # the default artifacts directory is under the rootdir
    assert (pytester.path / "llmperf-artifacts" / "pnode" / "test_prof.py--test_marked").is_dir()


@needs_perf
def test_unknown_event_fails_naming_it_and_keeps_the_tests_metrics(pytester, program, cache_dir):
    write_test(pytester, program)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat", "--llmperf-perf-events=task-clock,bogus-ev")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: perf-stat: perf does not know the event 'bogus-ev'*"])
    t = report(pytester)["test_work"]
    assert t["metrics"]["own"]["samples"] == [1.0, 1.1, 0.9]


@needs_perf
@needs_valgrind
def test_failing_program_fails_the_test_naming_it(pytester, program, cache_dir):
    pytester.makepyfile(test_fail=f"""
        def test_exit(llmperf, llmperf_profile):
            llmperf.record("own", 2.0, unit="s", higher_is_better=False)
            llmperf_profile.command([{str(program)!r}, "10", "5"])
    """)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat,instructions", "--llmperf-save-baseline")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: perf-stat: work under perf-stat exited with code 5*",
                                 "*llmperf: instructions: work under instructions exited with code 5*"])
    assert report(pytester)["test_exit"]["metrics"]["own"]["samples"] == [2.0]
    # a failed test is never saved into a baseline
    assert not list((pytester.path / "baselines").rglob("*.json"))


@needs_perf
def test_program_killed_by_a_signal_fails_the_test_naming_it(pytester, program, cache_dir):
    """perf stat 6.1 exits 0 when its command dies of a signal: the test used to pass, its counts
    recorded. The exit status comes from the wrapper run under perf."""
    pytester.makepyfile(test_crash=f"""
        def test_crash(llmperf, llmperf_profile):
            llmperf.record("own", 2.0, unit="s", higher_is_better=False)
            llmperf_profile.command([{str(program)!r}, "10", "0", "segv"])
    """)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat", "--llmperf-profile-runs=5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: perf-stat: work under perf-stat was killed by signal 11 (SIGSEGV); "
                                 "stderr ends with:*"])
    t = report(pytester)["test_crash"]
    assert t["metrics"]["own"]["samples"] == [2.0] and "perf.task-clock" not in t["metrics"]
    folder = pytester.path / "llmperf-artifacts" / "pnode" / "test_crash.py--test_crash"
    assert (folder / "work-perf-stat-1.perf-stat.status").read_text() == "signal 11\n"


def test_unparsable_perf_output_and_missing_perf(pytester, program, cache_dir, tmp_path):
    fake = tmp_path / "perf"
    fake.write_text("#!/bin/sh\n# a perf that writes nonsense to its -o file and runs the command after its --\n"
                    "while [ $# -gt 0 ]; do\n"
                    "  case \"$1\" in -o) echo 'Totally not CSV' > \"$2\";; --) shift; exec \"$@\";; esac; shift\n"
                    "done\n")
    fake.chmod(0o755)
    write_test(pytester, program)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat", env={"LLMPERF_PERF": str(fake)})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: perf-stat: *work-perf-stat-1.perf-stat.csv, line 1: unparsable perf stat line: "
                                 "'Totally not CSV'*"])
    # a perf that runs nothing: the command's exit status is unknown, whatever perf's own
    fake.write_text("#!/bin/sh\n# a perf that runs nothing\nexit 0\n")
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat", env={"LLMPERF_PERF": str(fake)})
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: perf-stat: the exit status of work under perf-stat is unknown: the exec "
                                 "wrapper wrote no *work-perf-stat-1.perf-stat.status (it never ran, or was killed); "
                                 "perf stat exited with code 0; stderr ends with:*"])
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat,perf-record", env={"PATH": path_without("perf")})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["llmperf: profiler perf-stat skipped in 1 test(s): perf not found on PATH*",
                                 "llmperf: profiler perf-record skipped in 1 test(s): perf not found on PATH*"])
    assert report(pytester)["test_work"]["metrics"]["own"]["samples"] == [1.0, 1.1, 0.9]


@needs_valgrind
def test_instruction_count_gates_exactly(pytester, program, cache_dir):
    write_test(pytester, program, n=100000)
    result = run(pytester, cache_dir, "--llmperf-profile=instructions", "--llmperf-save-baseline")
    result.assert_outcomes(passed=1)
    saved = json.loads(next((pytester.path / "baselines" / "pnode").rglob("test_prof*.json")).read_text())
    (entry,) = list(saved["tests"].values()) if isinstance(saved["tests"], dict) else saved["tests"]
    base_count = entry["metrics"]["instructions"]["samples"][0]
    # the same binary and input: the same count, ok under a 0.1% tolerance and a loose overall one
    result = run(pytester, cache_dir, "--llmperf-profile=instructions", "--llmperf-tolerance=50%")
    result.assert_outcomes(passed=1)
    (v,) = [v for v in report(pytester)["test_work"]["verdicts"] if v["metric"] == "instructions"]
    assert v["status"] == "ok" and v["change"] == 0.0 and v["current"] == base_count
    # 1% more work: regressed, however loose the overall tolerance
    write_test(pytester, program, n=101000)
    result = run(pytester, cache_dir, "--llmperf-profile=instructions", "--llmperf-tolerance=50%")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: instructions regressed: baseline * instr -> current * instr, "
                                 "change +*tolerance 0.1% (lower is better)*"])
    # naming the metric loosens it
    result = run(pytester, cache_dir, "--llmperf-profile=instructions", "--llmperf-tolerance=instructions=2%")
    result.assert_outcomes(passed=1)


def test_nsys_through_a_fake_tool(pytester, program, cache_dir, tmp_path):
    """nsys is absent here: a stand-in that runs the program and writes a recorded kernel summary
    shows the path from option to metrics and files."""
    csv = Path(__file__).parent / "data" / "nsys"
    sample = sorted(p for p in csv.glob("*.csv") if "old" not in p.name and "skip" not in p.name)[0]
    fake = tmp_path / "nsys"
    fake.write_text(f"""#!{sys.executable}
import os, shutil, subprocess, sys
args = sys.argv[1:]
if args[0] == "profile":
    out = args[args.index("--output") + 1]
    child = args[args.index("--") + 1:]
    code = subprocess.call(child)
    open(out + ".nsys-rep", "w").write("report")
    sys.exit(code)
if args[0] == "stats":
    out = args[args.index("--output") + 1]
    report = args[args.index("--report") + 1]
    shutil.copy({str(sample)!r}, out + "_" + report + ".csv")
    sys.exit(0)
sys.exit(2)
""")
    fake.chmod(0o755)
    write_test(pytester, program)
    # no GPU here: the conftest stands in for one (and then takes it away)
    pytester.makeconftest("from pytest_llmperf.profilers import nsys\nnsys.nvidia_gpu_visible = lambda *a, **k: True\n")
    result = run(pytester, cache_dir, "--llmperf-profile=nsys", f"--llmperf-nsys={fake}", "--llmperf-profile-runs=3")
    result.assert_outcomes(passed=1)
    t = report(pytester)["test_work"]
    m = t["metrics"]
    assert len(m["nsys.gpu_kernel_ms"]["samples"]) == 3 and m["nsys.gpu_kernel_ms"]["unit"] == "ms"
    assert m["nsys.gpu_kernel_ms"].get("gate", True)  # three runs: gated like any metric
    (art,) = t["artifacts"]
    assert art["kind"] == "nsys" and art["details"]["kernels"][0]["name"]
    names = sorted(Path(p).name for p in art["paths"])
    assert "work-nsys-1.nsys-rep" in names and any(n.endswith(".txt") for n in names)
    result.stdout.fnmatch_lines(["  test_prof.py::test_work [[]nsys[]] * kernels*on GPU; top: *"])
    pytester.makeconftest("from pytest_llmperf.profilers import nsys\nnsys.nvidia_gpu_visible = lambda *a, **k: False\n")
    result = run(pytester, cache_dir, "--llmperf-profile=nsys", f"--llmperf-nsys={fake}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["llmperf: profiler nsys skipped in 1 test(s): no NVIDIA GPU on this node*"])


def test_usage_errors(pytester, cache_dir):
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    for args, message in [
        (["--llmperf-profile=perf-stat,vtune"], "*llmperf: --llmperf-profile: unknown profiler 'vtune'*"),
        (["--llmperf-profile-runs=0"], "*--llmperf-profile-runs: invalid value '0', must be >= 1*"),
        (["--llmperf-perf-freq=fast"], "*--llmperf-perf-freq: invalid value 'fast', expected a whole number*"),
        (["--llmperf-perf-events= , "], "*--llmperf-perf-events: no event in ' , '*"),
    ]:
        result = run(pytester, cache_dir, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([message])
    pytester.makepyfile(test_b="""
        import pytest
        @pytest.mark.llmperf(profile="gprof")
        def test_b():
            pass
    """)
    result = run(pytester, cache_dir)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_b.py::test_b: llmperf(profile=...): unknown profiler 'gprof'*"])


def test_an_explicit_tool_that_is_not_an_executable_is_a_usage_error(pytester, cache_dir, tmp_path):
    """Issue 11, item 18: --llmperf-perf=/nonexistent/perf was a skip, "perf not found on PATH".
    A tool's path given by the user must be an executable file, whether or not its profiler is
    selected (here none is)."""
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    plain = tmp_path / "plain-file"
    plain.write_text("#!/bin/sh\n")
    for args, env, message in [
        (["--llmperf-perf=/nonexistent/perf"], {}, "llmperf: --llmperf-perf: /nonexistent/perf does not exist"),
        ([f"--llmperf-valgrind={plain}"], {}, f"llmperf: --llmperf-valgrind: {plain} is not an executable file"),
        ([f"--llmperf-nsys={tmp_path}"], {}, f"llmperf: --llmperf-nsys: {tmp_path} is a directory, not an executable file"),
        (["--llmperf-nsys=nsys-2099.1"], {}, "llmperf: --llmperf-nsys: nsys-2099.1 is not on PATH (no executable "
                                             "file of that name there)"),
        (["--llmperf-perf="], {}, "llmperf: --llmperf-perf: the path is empty"),
        ([], {"LLMPERF_PERF": "/nonexistent/perf"}, "llmperf: LLMPERF_PERF: /nonexistent/perf does not exist"),
        ([], {"LLMPERF_VALGRIND": str(plain)}, f"llmperf: LLMPERF_VALGRIND: {plain} is not an executable file"),
        ([], {"LLMPERF_NSYS": "/nonexistent/nsys"}, "llmperf: LLMPERF_NSYS: /nonexistent/nsys does not exist"),
        # the option comes before the environment variable, as for every llmperf option
        (["--llmperf-perf=/nowhere/perf"], {"LLMPERF_PERF": "/bin/sh"}, "llmperf: --llmperf-perf: /nowhere/perf "
                                                                        "does not exist"),
    ]:
        result = run(pytester, cache_dir, *args, env=env)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, env)
        assert "ERROR: " + message in result.stderr.lines, (args, env, result.stderr.lines)
    # executables, by path and by name on PATH: the run goes on
    result = run(pytester, cache_dir, "--llmperf-perf=/bin/sh", "--llmperf-valgrind=sh", env={"LLMPERF_NSYS": "/bin/sh"})
    result.assert_outcomes(passed=1)


def test_help_lists_the_profiler_options(pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--llmperf-profile=NAMES*", "*perf-stat (counters as*",
                                 "*--llmperf-profile-runs=N*", "*--llmperf-perf-events=EVENTS*",
                                 "*--llmperf-profile-inline*", "*--llmperf-nsys=PATH*"])


def test_loading_the_plugin_imports_no_profiler_module(pytester):
    pytester.makepyfile(test_mods="""
        import sys
        def test_mods():
            loaded = [m for m in ("pytest_llmperf.profilers.perf", "pytest_llmperf.profilers.nsys",
                                  "pytest_llmperf.profilers.valgrind", "pytest_llmperf.profilers.base",
                                  "subprocess_never") if m in sys.modules]
            assert loaded == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


LLAMA_TEST = """
def test_llama(llama2c):
    binary = llama2c.build("-O3")
    llama2c.bench(binary, llama2c.model("stories260K"), threads=1, steps=64, mbu=False)
"""


@needs_perf
@needs_valgrind
def test_llama2c_bench_profiles_in_runs_of_its_own(pytester, cache_dir):
    pytester.makepyfile(test_llama=LLAMA_TEST)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat,instructions", "--llmperf-max-time=0.3")
    result.assert_outcomes(passed=1)
    t = report(pytester)["test_llama"]
    m = t["metrics"]
    assert len(m["perf.task-clock"]["samples"]) == 3  # --llmperf-profile-runs, not the timed rounds
    assert len(m["tok_per_s"]["samples"]) >= 5
    assert m["instructions"]["exact"]
    folder = pytester.path / "llmperf-artifacts" / "pnode" / "test_llama.py--test_llama"
    assert sorted(p.name for p in folder.glob("*.perf-stat.csv")) == [
        f"run-perf-stat-{i}.perf-stat.csv" for i in (1, 2, 3)]
    assert (folder / "run-instructions.callgrind.out").is_file()


@needs_perf
def test_llama2c_inline_counts_the_timed_rounds(pytester, cache_dir):
    pytester.makepyfile(test_llama=LLAMA_TEST)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat", "--llmperf-profile-inline",
                 "--llmperf-max-time=0.3")
    result.assert_outcomes(passed=1)
    m = report(pytester)["test_llama"]["metrics"]
    # one counter sample per kept timed round, none from separate runs
    assert len(m["perf.task-clock"]["samples"]) == len(m["tok_per_s"]["samples"])
    folder = pytester.path / "llmperf-artifacts" / "pnode" / "test_llama.py--test_llama"
    assert not list(folder.glob("run-perf-stat-[0-9]*.csv"))
    assert list(folder.glob("run-perf-stat-round*.perf-stat.csv"))
    result.stdout.fnmatch_lines(["*[[]perf-stat[]] task-clock*counted in the timed rounds (--llmperf-profile-inline)"])


@needs_perf
def test_two_commands_in_one_test_need_a_label(pytester, program, cache_dir):
    pytester.makepyfile(test_two=f"""
        PROGRAM = {str(program)!r}

        def test_labelled(llmperf_profile):
            llmperf_profile.command([PROGRAM, "1000"])
            llmperf_profile.command([PROGRAM, "2000"], label="big")

        def test_unlabelled(llmperf_profile):
            llmperf_profile.command([PROGRAM, "1000"])
            llmperf_profile.command([PROGRAM, "2000"])
    """)
    result = run(pytester, cache_dir, "--llmperf-profile=perf-stat")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["llmperf_profile.command: metric 'perf.task-clock' is already "
                                 "recorded in this test; give the second command a label*"])
    m = report(pytester)["test_labelled"]["metrics"]
    assert "perf.task-clock" in m and "big.perf.task-clock" in m
    folder = pytester.path / "llmperf-artifacts" / "pnode" / "test_two.py--test_labelled"
    assert (folder / "big-perf-stat-1.perf-stat.csv").is_file() and (folder / "work-perf-stat-1.perf-stat.csv").is_file()
