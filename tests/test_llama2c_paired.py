"""Paired runs of llama2.c (``--llmperf-llama2c-ref``) and rounds of several runs
(``--llmperf-llama2c-round``), end to end through pytester, on real git checkouts in tmp_path and
real builds with the machine's cc.

The checkouts hold our reference runner as run.c, and a slowed one (every matrix-vector product
done twice, about 2x the time per token: a slowdown no noise on this machine hides). Runs are
short: stories260K (synthetic), 64 steps, rounds of 50 ms, a budget of a second or two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_isolated
from pytest_llmperf.llama2c import refs
from pytest_llmperf.llama2c.session import REFERENCE_SOURCE

USAGE = pytest.ExitCode.USAGE_ERROR
ENV_OPTIONS = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_LLAMA2C_SRC", "LLMPERF_CC", "LLMPERF_MODELS",
               "LLMPERF_CACHE_DIR", "LLMPERF_LLAMA2C_REF", "LLMPERF_LLAMA2C_ROUND", "PYTEST_XDIST_WORKER",
               "PYTEST_ADDOPTS")
FAST = ["-p", "no:cacheprovider", "--llmperf-node=pairnode", "--llmperf-max-time=1.5", "--llmperf-json=report.json"]

BENCH = """
def test_run(llama2c):
    binary = llama2c.build("-O3")
    llama2c.bench(binary, llama2c.model("stories260K"), steps=64, threads=1, mbu=False)
"""

BENCH_RUNQ = BENCH + """

def test_runq(llama2c):
    binary = llama2c.build("-O3", program="runq")
    llama2c.bench(binary, llama2c.model("stories260K"), steps=64, threads=1, mbu=False)
"""

SLOW_WRAPPER = """
float llmperf_test_scratch[1 << 16]; /* external linkage: the second product cannot be dropped */
static void mat_vec(float *out, const float *in, const float *mat, int cols, int rows) {
    mat_vec_base(out, in, mat, cols, rows);
    mat_vec_base(llmperf_test_scratch, in, mat, cols, rows);
}
"""


def slowed(text: str) -> str:
    """refrun.c with every matrix-vector product done twice."""
    found = re.search(r"^static void mat_vec\(", text, re.MULTILINE)
    assert found, "refrun.c has no mat_vec() to slow down"
    text = text[:found.start()] + "static void mat_vec_base(" + text[found.end():]
    end = text.index("\n}\n", found.start()) + 3
    return text[:end] + SLOW_WRAPPER + text[end:]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


FAST_C = REFERENCE_SOURCE.read_text()
SLOW_C = slowed(FAST_C)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paired-cache")


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str, str]:
    """A llama2.c checkout: commit 1 has the fast run.c, commit 2 (HEAD) the slowed one."""
    repo = tmp_path / "llama2.c"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    fast = commit(repo, "fast", {"run.c": FAST_C})
    slow = commit(repo, "slowed", {"run.c": SLOW_C})
    return repo, fast, slow


def run(pytester: pytest.Pytester, cache: Path, *args: str, env: dict | None = None) -> pytest.RunResult:
    """A pytest run with short budgets and rounds of 50 ms (unless the args or env set the round)."""
    given = any(a.startswith("--llmperf-llama2c-round") for a in args) or "LLMPERF_LLAMA2C_ROUND" in (env or {})
    rounds = [] if given else ["--llmperf-llama2c-round=0.05"]
    return run_isolated(pytester, *FAST, *rounds, f"--llmperf-cache-dir={cache}", *args, clear=ENV_OPTIONS, env=env)


def printed(result: pytest.RunResult, tag: str) -> str:
    """What a test printed after ``tag`` (with -s, on the line of its progress dot)."""
    line = next(line for line in result.outlines if tag in line)
    return line[line.index(tag) + len(tag):]


def verdicts(pytester: pytest.Pytester) -> dict[str, dict]:
    data = json.loads((pytester.path / "report.json").read_text())
    return {v["test"].split("::")[-1]: v for v in data["verdicts"] if v["metric"] == "tok_per_s"}


def metrics(pytester: pytest.Pytester, test: str) -> dict:
    data = json.loads((pytester.path / "report.json").read_text())
    return next(t for t in data["tests"] if t["nodeid"].endswith("::" + test))["metrics"]["tok_per_s"]


# -- paired runs end to end -------------------------------------------------------------------

def test_a_revision_as_reference_catches_the_slowed_commit(pytester: pytest.Pytester, cache_dir: Path,
                                                            checkout: tuple[Path, str, str]) -> None:
    repo, fast, _slow = checkout
    # longer runs, rounds and budget than the other tests: the verdict must be decisive even on a
    # loaded machine (the suite under xdist next to a benchmark: 64-step runs read -35% +-30% there)
    pytester.makepyfile(test_l=BENCH.replace("steps=64", "steps=256"))
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-llama2c-ref=HEAD~1",
                 "--llmperf-llama2c-round=0.15", "--llmperf-max-time=6", "--llmperf-min-rounds=8")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*llmperf: tok_per_s regressed: *"])
    v = verdicts(pytester)["test_run"]
    assert v["reference"] == f"paired:git {fast[:12]}"
    assert v["status"] == "regressed" and v["change"] < -0.25
    m = metrics(pytester, "test_run")
    assert m["paired_ref"] == f"git {fast[:12]}" and len(m["paired"]) == len(m["samples"]) >= 5
    assert "probes" not in m or not m["probes"]
    # the reference's sources were read with git into the cache, and built from there
    assert (cache_dir / "llama2c" / "ref" / fast / "run.c").read_text() == FAST_C


PIN_CONFTEST = """
import os

def pytest_configure(config):
    # one CPU for this session and what it starts: two OpenMP threads then share it
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
"""


def test_threads_on_fewer_cpus_are_oversubscribed_not_regressed(pytester: pytest.Pytester, cache_dir: Path,
                                                                checkout: tuple[Path, str, str]) -> None:
    repo, fast, _slow = checkout
    pytester.makeconftest(PIN_CONFTEST)
    pytester.makepyfile(test_l=BENCH.replace('"-O3"', '"-O3 -fopenmp"').replace("threads=1", "threads=2"))
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-llama2c-ref=HEAD~1")
    result.assert_outcomes(passed=1)  # the slowed commit, but measured on one CPU for two threads
    v = verdicts(pytester)["test_run"]
    assert v["reference"] == f"paired:git {fast[:12]}"
    assert v["status"] == "oversubscribed", v
    assert v["reason"].startswith("oversubscribed: 2 OpenMP threads got ") and v["change"] is not None
    assert metrics(pytester, "test_run")["cpu_share"] < 1.5
    result.stdout.fnmatch_lines(["*llmperf: WARNING *test_run tok_per_s oversubscribed: 2 OpenMP threads got*"])


def test_the_same_source_on_both_sides_is_not_a_regression(pytester: pytest.Pytester, cache_dir: Path,
                                                           checkout: tuple[Path, str, str]) -> None:
    repo, _fast, slow = checkout
    pytester.makepyfile(test_l=BENCH)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", f"--llmperf-llama2c-ref={slow[:10]}",
                 "--llmperf-tolerance=tok_per_s=25%")
    result.assert_outcomes(passed=1)
    v = verdicts(pytester)["test_run"]
    assert v["reference"] == f"paired:git {slow[:12]}"
    assert v["status"] in ("ok", "noisy") and abs(v["change"]) < 0.25


def test_a_directory_as_reference(pytester: pytest.Pytester, cache_dir: Path, tmp_path: Path) -> None:
    current, old = tmp_path / "current", tmp_path / "old"
    current.mkdir()
    old.mkdir()
    (current / "run.c").write_text(SLOW_C)
    (old / "run.c").write_text(FAST_C)
    pytester.makepyfile(test_l=BENCH)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={current}", f"--llmperf-llama2c-ref={old}",
                 "--llmperf-report-only")
    result.assert_outcomes(passed=1)
    v = verdicts(pytester)["test_run"]
    assert v["reference"] == f"paired:dir {old}" and v["status"] == "regressed"


def test_an_executable_as_reference_of_the_run_rows(pytester: pytest.Pytester, cache_dir: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the note on one line (notes wrap to the width)
    exe = tmp_path / "bin" / "fastrun"
    exe.parent.mkdir()
    subprocess.run(["cc", "-O3", "-o", str(exe), str(REFERENCE_SOURCE), "-lm"], check=True)
    current = tmp_path / "current"
    current.mkdir()
    (current / "run.c").write_text(SLOW_C)
    (current / "runq.c").write_text(FAST_C)
    pytester.makepyfile(test_l=BENCH_RUNQ)
    # an executable given relative to where pytest starts, through the environment variable
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={current}", "--llmperf-report-only",
                 env={"LLMPERF_LLAMA2C_REF": os.path.relpath(exe, pytester.path)})
    result.assert_outcomes(passed=2)
    vs = verdicts(pytester)
    assert vs["test_run"]["reference"] == f"paired:binary {exe}" and vs["test_run"]["status"] == "regressed"
    # the runq rows have no reference in an executable: the probe mode, with a note saying so
    assert vs["test_runq"]["reference"] == "saved" and vs["test_runq"]["status"] == "new"
    note = (f"runq rows not paired (the reference {exe} is an executable, which stands for run.c only): compared "
            f"with the machine-speed probe")
    assert vs["test_runq"]["details"]["note"] == note
    result.stdout.fnmatch_lines([f"llmperf: note: tok_per_s of test_l.py::test_runq: {note}"])


def test_a_revision_without_runq_leaves_the_runq_rows_to_the_probe(pytester: pytest.Pytester, cache_dir: Path,
                                                                   checkout: tuple[Path, str, str]) -> None:
    repo, fast, _slow = checkout
    commit(repo, "add runq.c", {"runq.c": FAST_C})
    pytester.makepyfile(test_l=BENCH_RUNQ)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", f"--llmperf-llama2c-ref={fast}",
                 "--llmperf-report-only")
    result.assert_outcomes(passed=2)
    vs = verdicts(pytester)
    assert vs["test_run"]["reference"] == f"paired:git {fast[:12]}"
    assert vs["test_runq"]["reference"] == "saved"
    note = f"runq rows not paired (no runq.c at commit {fast[:12]}): compared with the machine-speed probe"
    assert vs["test_runq"]["details"]["note"] == note
    assert metrics(pytester, "test_runq").get("probes")  # probe mode: the probe's rounds are there


HOOK = """
import pytest

REFERENCE = {commit!r}

@pytest.hookimpl
def pytest_llmperf_reference_commit(config, nodeid, source):
    assert source == "llama2c" and nodeid.endswith("::test_run")
    return REFERENCE
"""


def test_auto_pairs_with_the_commit_the_core_names(pytester: pytest.Pytester, cache_dir: Path,
                                                    checkout: tuple[Path, str, str]) -> None:
    repo, fast, slow = checkout
    pytester.makepyfile(test_l=BENCH)
    pytester.makeconftest(HOOK.format(commit=fast))
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-report-only")
    result.assert_outcomes(passed=1)
    v = verdicts(pytester)["test_run"]
    assert v["reference"] == f"paired:git {fast[:12]}" and v["status"] == "regressed"
    # the checkout at the very commit the core names, clean: nothing to pair, the probe mode
    pytester.makeconftest(HOOK.format(commit=slow))
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-report-only")
    result.assert_outcomes(passed=1)
    assert verdicts(pytester)["test_run"]["reference"] == "saved"
    assert metrics(pytester, "test_run").get("probes")
    # ... unless it is dirty: the commit's own run.c is then the reference
    (repo / "run.c").write_text(SLOW_C + "\n/* an edit */\n")
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-report-only")
    result.assert_outcomes(passed=1)
    assert verdicts(pytester)["test_run"]["reference"] == f"paired:git {slow[:12]}"


def test_off_never_pairs(pytester: pytest.Pytester, cache_dir: Path, checkout: tuple[Path, str, str]) -> None:
    repo, fast, _slow = checkout
    pytester.makepyfile(test_l=BENCH)
    pytester.makeconftest(HOOK.format(commit=fast))
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-llama2c-ref=off",
                 "--llmperf-report-only")
    result.assert_outcomes(passed=1)
    assert verdicts(pytester)["test_run"]["reference"] == "saved"
    m = metrics(pytester, "test_run")
    assert m.get("probes") and not m.get("paired")


def test_auto_without_a_known_commit_is_the_probe_mode(pytester: pytest.Pytester, cache_dir: Path,
                                                        checkout: tuple[Path, str, str]) -> None:
    repo, _fast, _slow = checkout
    pytester.makepyfile(test_l=BENCH)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}")
    result.assert_outcomes(passed=1)
    v = verdicts(pytester)["test_run"]
    assert v["reference"] == "saved" and v["status"] == "new"
    m = metrics(pytester, "test_run")
    assert m.get("probes") and len(m["probes"]) == len(m["samples"]) and not m.get("paired")


# -- the checkout under test, for the history ------------------------------------------------------

SOURCES = """
import json
from pytest_llmperf.api import session

def test_sources(request):
    print("SOURCES=" + json.dumps(session(request.config).sources))
"""


def sources(result: pytest.RunResult) -> dict:
    return json.loads(printed(result, "SOURCES="))


def test_the_session_records_the_checkout_and_its_commit(pytester: pytest.Pytester, cache_dir: Path,
                                                         checkout: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, _fast, slow = checkout
    pytester.makepyfile(test_s=SOURCES)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "-s")
    result.assert_outcomes(passed=1)
    assert sources(result) == {"llama2c": {"path": str(repo), "commit": slow, "dirty": False}}
    (repo / "run.c").write_text(FAST_C)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "-s")
    assert sources(result) == {"llama2c": {"path": str(repo), "commit": slow, "dirty": True}}
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "run.c").write_text(FAST_C)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={plain}", "-s")
    assert sources(result) == {"llama2c": {"path": str(plain), "commit": None, "dirty": False}}
    result = run(pytester, cache_dir, "-s")
    assert sources(result) == {}


# -- rounds ------------------------------------------------------------------------------------

def test_rounds_of_several_runs(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_r="""
        def test_rounds(llama2c):
            result = llama2c.bench(llama2c.build("-O3"), llama2c.model("stories260K"), steps=16, threads=1,
                                   mbu=False)
            print("ROUNDS", result.runs_per_round, len(result.results), len(result.tok_per_s))
    """)
    result = run(pytester, cache_dir, "--llmperf-llama2c-round=0.2", "-s")
    result.assert_outcomes(passed=1)
    per_round, runs, samples = (int(x) for x in printed(result, "ROUNDS").split()[:3])
    assert per_round >= 2 and samples >= 5 and runs == per_round * samples
    result = run(pytester, cache_dir, "--llmperf-llama2c-round=0", "-s")
    result.assert_outcomes(passed=1)
    per_round, runs, samples = (int(x) for x in printed(result, "ROUNDS").split()[:3])
    assert per_round == 1 and runs == samples >= 5


# -- bad values ----------------------------------------------------------------------------------

def usage_error(result: pytest.RunResult) -> str:
    assert result.ret == USAGE, result.stdout.str() + result.stderr.str()
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    return lines[0]


def test_bad_references_are_one_line_usage_errors(pytester: pytest.Pytester, cache_dir: Path,
                                                   checkout: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, _fast, _slow = checkout
    pytester.makepyfile(test_l=BENCH)
    # a revision without a checkout to take it from
    line = usage_error(run(pytester, cache_dir, "--llmperf-llama2c-ref=HEAD~1"))
    assert line == ("ERROR: llmperf: --llmperf-llama2c-ref HEAD~1: no such file or directory, and without "
                    "--llmperf-llama2c-src there is no git checkout to take it as a revision of")
    # a checkout that is no git repository
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "run.c").write_text(FAST_C)
    line = usage_error(run(pytester, cache_dir, f"--llmperf-llama2c-src={plain}", "--llmperf-llama2c-ref=HEAD~1"))
    assert line == (f"ERROR: llmperf: --llmperf-llama2c-ref HEAD~1: no such file or directory, and "
                    f"--llmperf-llama2c-src {plain} is not a git checkout to take it as a revision of")
    # an unknown revision (named by the environment variable)
    line = usage_error(run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}",
                           env={"LLMPERF_LLAMA2C_REF": "no-such-branch"}))
    assert line.startswith(f"ERROR: llmperf: LLMPERF_LLAMA2C_REF no-such-branch: not a file, a directory or a "
                           f"revision of {repo} (")
    assert "no commit 'no-such-branch'" in line
    # a revision that has no run.c
    empty = commit(repo, "remove run.c", {"README": "moved\n"})
    git(repo, "rm", "-q", "run.c")
    git(repo, "commit", "-q", "-m", "no run.c")
    git(repo, "checkout", "-q", empty)  # back to a commit with run.c, for --llmperf-llama2c-src
    line = usage_error(run(pytester, cache_dir, f"--llmperf-llama2c-src={repo}", "--llmperf-llama2c-ref=main"))
    assert line == f"ERROR: llmperf: --llmperf-llama2c-ref main: no run.c at commit {git(repo, 'rev-parse', 'main')[:12]} of {repo}"
    # a directory without run.c, given in the ini file (relative to the rootdir)
    (pytester.path / "old").mkdir()
    pytester.makeini("[pytest]\nllmperf_llama2c_ref = old\n")
    line = usage_error(run(pytester, cache_dir))
    assert line == (f"ERROR: llmperf: ini llmperf_llama2c_ref {pytester.path / 'old'}: no run.c in it (expected a "
                    f"llama2.c checkout, a git revision of --llmperf-llama2c-src, or an executable)")
    # a file that is not executable
    text = tmp_path / "run.txt"
    text.write_text("not a program\n")
    line = usage_error(run(pytester, cache_dir, f"--llmperf-llama2c-ref={text}"))
    assert line == (f"ERROR: llmperf: --llmperf-llama2c-ref {text}: not an executable file (chmod +x it, or name a "
                    f"directory or a revision)")


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--llmperf-llama2c-round=abc"], None,
     "ERROR: --llmperf-llama2c-round: invalid value 'abc', expected seconds like 1.5 or '500ms'"),
    (["--llmperf-llama2c-round=-1"], None,
     "ERROR: --llmperf-llama2c-round: invalid value '-1', must be a positive number of seconds"),
    (["--llmperf-llama2c-round=61"], None,
     "ERROR: --llmperf-llama2c-round: invalid value '61', must be at most 60 seconds"),
    ([], {"LLMPERF_LLAMA2C_ROUND": "soon"},
     "ERROR: LLMPERF_LLAMA2C_ROUND: invalid value 'soon', expected seconds like 1.5 or '500ms'"),
])
def test_bad_round_times_are_one_line_usage_errors(pytester: pytest.Pytester, cache_dir: Path, args: list[str],
                                                   env: dict | None, expected: str) -> None:
    pytester.makepyfile(test_l=BENCH)
    assert usage_error(run(pytester, cache_dir, *args, env=env)) == expected


# -- the pure parts ------------------------------------------------------------------------------

def test_a_reference_names_what_it_has(tmp_path: Path) -> None:
    both = tmp_path / "both"
    both.mkdir()
    (both / "run.c").write_text(FAST_C)
    (both / "runq.c").write_text(FAST_C)
    ref = refs.from_directory(both, "--llmperf-llama2c-ref")
    assert ref.label == f"dir {both}"
    assert ref.program("run") == (both / "run.c", None, "") and ref.program("runq") == (both / "runq.c", None, "")
    exe = tmp_path / "exe"
    shutil.copy("/bin/true", exe)
    ref = refs.from_binary(exe, "--llmperf-llama2c-ref")
    assert ref.program("run") == (None, exe, "")
    assert ref.program("runq") == (None, None, f"the reference {exe} is an executable, which stands for run.c only")
    assert refs.resolve("auto", None, "x", None, tmp_path) is None
    assert refs.resolve("off", None, "x", None, tmp_path) is None


def test_auto_needs_another_commit_or_a_dirty_tree(checkout: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, fast, slow = checkout
    ref, note = refs.auto(repo, fast, tmp_path / "cache")
    assert ref is not None and ref.label == f"git {fast[:12]}" and note == ""
    assert refs.auto(repo, slow, tmp_path / "cache") == (None, "")
    ref, note = refs.auto(repo, "0" * 40, tmp_path / "cache")
    assert ref is None and note.startswith(f"the reference commit {'0' * 12} cannot be built: ")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert refs.auto(plain, fast, tmp_path / "cache") == (None, f"{plain} is not a git checkout: no paired reference")


def test_a_subdirectory_checkout_reads_the_revision_at_its_path(tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    (repo / "vendor" / "llama2c").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, "fast", {"vendor/llama2c/run.c": FAST_C})
    commit(repo, "slow", {"vendor/llama2c/run.c": SLOW_C})
    ref = refs.from_revision(repo / "vendor" / "llama2c", "HEAD~1", tmp_path / "cache", "--llmperf-llama2c-ref")
    assert ref.label == f"git {first[:12]}"
    assert ref.sources["run"].read_text() == FAST_C
    assert ref.missing == {"runq": f"no vendor/llama2c/runq.c at commit {first[:12]}"}


def test_the_round_and_reference_options_parse_purely(tmp_path: Path) -> None:
    from pytest_llmperf.api import Value
    from pytest_llmperf.config import ConfigError
    from pytest_llmperf.llama2c import options

    assert options.parse_round(None) == options.DEFAULT_ROUND_TIME
    assert options.parse_round("") == options.DEFAULT_ROUND_TIME
    assert options.parse_round("0") == 0.0 and options.parse_round(0) == 0.0
    assert options.parse_round("500ms") == 0.5 and options.parse_round("2s") == 2.0
    with pytest.raises(ConfigError, match="^ini llmperf_llama2c_round: invalid value 'x'"):
        options.parse_round("x", "ini llmperf_llama2c_round")
    opt = next(o for o in options.OPTIONS if o.flag == "--llmperf-llama2c-ref")

    def ref(raw, source="--llmperf-llama2c-ref"):
        return options.parse_ref(Value(raw, source, opt, tmp_path))

    assert ref(None, None) == ("auto", None, "--llmperf-llama2c-ref")
    assert ref(" AUTO ") == ("auto", None, "--llmperf-llama2c-ref")
    assert ref("Off") == ("off", None, "--llmperf-llama2c-ref")
    # anything else is kept as given, with its path (relative to where it was given, normalized)
    assert ref("../old/llama2.c", "LLMPERF_LLAMA2C_REF") == (
        "../old/llama2.c", tmp_path.parent / "old" / "llama2.c", "LLMPERF_LLAMA2C_REF")
    assert ref("HEAD~1") == ("HEAD~1", tmp_path / "HEAD~1", "--llmperf-llama2c-ref")


def test_a_runq_row_is_probed_on_its_own_q8_checkpoint(pytester: pytest.Pytester, cache_dir: Path,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "llama2.c"
    src.mkdir()
    (src / "run.c").write_text(FAST_C)
    (src / "runq.c").write_text(FAST_C)  # our runner runs Q8_0 checkpoints with runq.c's arithmetic
    pytester.makepyfile(test_q="""
        def test_runq(llama2c):
            binary = llama2c.build("-O3", program="runq")
            llama2c.bench(binary, llama2c.model("stories260K", quantized=True), steps=64, threads=1, mbu=False)

        def test_run(llama2c):
            llama2c.bench(llama2c.build("-O3"), llama2c.model("stories260K"), steps=64, threads=1, mbu=False)
    """)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={src}", "--llmperf-llama2c-ref=off")
    result.assert_outcomes(passed=2)
    runq, plain = metrics(pytester, "test_runq"), metrics(pytester, "test_run")
    assert runq["probe_kind"] == "refrun-q8-O3" and len(runq["probes"]) == len(runq["samples"])
    assert plain["probe_kind"] == "refrun-O3"
