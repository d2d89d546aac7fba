"""Tests of pytest_llmperf.llama2c.runner: one run of a binary, its failures, and bench().

The "binaries" are a small C program compiled once for the module, whose behaviour is chosen by
its first argument (where a llama2.c runner takes its checkpoint), and shell scripts.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pytest_llmperf import measure
from pytest_llmperf.llama2c import runner
from pytest_llmperf.llama2c.runner import (
    STATS_ENV,
    Bench,
    RunError,
    Runner,
    RunResult,
    RunSpec,
    bench,
    parse_tok_per_s,
    quantization,
    seconds_per_token,
)

FAKE_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ok";
    if (!strcmp(mode, "ok")) {
        printf("Once upon a time\n");
        fprintf(stderr, "achieved tok/s: 1234.500000\n");
        return 0;
    }
    if (!strcmp(mode, "alloc")) {  /* touch 64 MiB: the peak RSS must show it */
        size_t n = 64u << 20;
        volatile char *p = malloc(n);
        for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        fprintf(stderr, "achieved tok/s: 10.0\n");
        return 0;
    }
    if (!strcmp(mode, "spin")) {  /* 0.3 s of CPU */
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        volatile unsigned long x = 0;
        do {
            for (int i = 0; i < 100000; i++) x += i;
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) * 1e-9 < 0.3);
        fprintf(stderr, "achieved tok/s: 20.0\n");
        return 0;
    }
    if (!strcmp(mode, "sleep")) {  /* 0.3 s of wall time */
        struct timespec d = {0, 300000000};
        nanosleep(&d, NULL);
        fprintf(stderr, "achieved tok/s: 30.0\n");
        return 0;
    }
    if (!strcmp(mode, "abort")) {
        fprintf(stderr, "loading weights\nrun: assertion failed: weights corrupt\n");
        fflush(stderr);
        abort();
    }
    if (!strcmp(mode, "segv")) {
        fprintf(stderr, "about to crash\n");
        fflush(stderr);
        raise(SIGSEGV);
    }
    if (!strcmp(mode, "hang")) {
        for (;;) pause();
    }
    if (!strcmp(mode, "exit3")) {
        for (int i = 1; i <= 30; i++) fprintf(stderr, "stderr line %d\n", i);
        return 3;
    }
    if (!strcmp(mode, "inf")) {
        fprintf(stderr, "achieved tok/s: inf\n");
        return 0;
    }
    if (!strcmp(mode, "garbage")) {
        printf("\x01\x02 zzz\nmore noise\n");
        fprintf(stderr, "tok/s? who knows\n");
        return 0;
    }
    if (!strcmp(mode, "nothing")) return 0;
    if (!strcmp(mode, "args")) {
        for (int i = 0; i < argc; i++) printf("%s\n", argv[i]);
        fprintf(stderr, "achieved tok/s: 1.0\n");
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 99;
}
"""


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("fake-runner")
    src = directory / "fake.c"
    src.write_text(FAKE_C)
    binary = directory / "fakerun"
    subprocess.run([shutil.which("cc"), "-O1", "-o", str(binary), str(src)], check=True, capture_output=True,
                   timeout=120)
    return binary


def spec(mode: str, **kw) -> RunSpec:
    kw.setdefault("steps", 64)
    return RunSpec(checkpoint=Path(mode), tokenizer=Path("tok512.bin"), **kw)


def script(tmp_path: Path, body: str, name: str = "fake.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# -- one run -----------------------------------------------------------------------------------

def test_successful_run(fake: Path) -> None:
    r = Runner().run(fake, spec("ok"))
    assert r.tok_per_s == 1234.5
    assert r.returncode == 0
    assert r.stdout == "Once upon a time\n"
    assert r.stderr == "achieved tok/s: 1234.500000\n"
    assert r.peak_rss > 0
    assert 0 < r.wall_s < 30
    assert r.cpu_s >= 0
    assert r.positions is None and r.prompt_tokens is None and r.elapsed_ns is None and r.tokens is None
    assert r.argv[0] == str(fake)


def test_argv_is_run_c_s(fake: Path) -> None:
    s = spec("args", steps=17, seed=3, temperature=0.0, topp=0.5, prompt="Once upon")
    assert s.argv(fake) == [str(fake), "args", "-z", "tok512.bin", "-n", "17", "-s", "3", "-t", "0.0", "-p", "0.5",
                            "-i", "Once upon"]
    r = Runner().run(fake, s)
    assert r.stdout.splitlines() == s.argv(fake)
    assert r.argv == s.argv(fake)
    assert "-i" not in spec("args").argv(fake)


def test_peak_rss_counts_the_childs_memory(fake: Path) -> None:
    r = Runner().run(fake, spec("alloc"))
    assert r.peak_rss >= 64 << 20
    assert r.peak_rss < 1 << 30


def test_wall_and_cpu_time_are_plausible(fake: Path) -> None:
    slept = Runner().run(fake, spec("sleep"))
    assert 0.29 <= slept.wall_s < 10
    assert slept.cpu_s < slept.wall_s
    spun = Runner().run(fake, spec("spin"))
    assert 0.29 <= spun.wall_s < 10
    assert 0.05 <= spun.cpu_s <= spun.wall_s + 0.05


def test_timeout_kills_the_binary(fake: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(RunError) as info:
        Runner().run(fake, spec("hang", timeout=0.5))
    elapsed = time.monotonic() - t0
    assert 0.45 <= elapsed < 10
    message = str(info.value)
    assert message.startswith("fakerun did not finish within the timeout of 0.5 s (--llmperf-run-timeout) "
                              "and was killed with its process group; command: ")
    assert "\n" not in message
    assert str(fake) in message and "-n 64" in message


@pytest.mark.parametrize("missing", [("pidfd_open",), ("pidfd_open", "waitid")], ids=["no-pidfd", "no-waitid"])
def test_timeout_without_pidfd(fake: Path, monkeypatch: pytest.MonkeyPatch, missing: tuple) -> None:
    # the thread-based waits used where os.pidfd_open is missing (macOS, old kernels), and
    # os.waitid too (macOS before Python 3.13)
    for name in missing:
        monkeypatch.delattr(os, name, raising=False)
    thread_errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    before = threading.active_count()
    with pytest.raises(RunError, match="did not finish within the timeout of 0.5 s"):
        Runner().run(fake, spec("hang", timeout=0.5))
    # the waiting thread and the caller both try to reap the killed child: neither may fail
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert thread_errors == []
    assert Runner().run(fake, spec("ok")).tok_per_s == 1234.5


def test_timeout_of_a_script_kills_the_script(tmp_path: Path) -> None:
    sh = script(tmp_path, "echo started >&2\nexec sleep 60\n", "sleeper")
    t0 = time.monotonic()
    with pytest.raises(RunError, match="sleeper did not finish within the timeout of 0.3 s"):
        Runner().run(sh, spec("x", timeout=0.3))
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize(("mode", "name", "tail"), [
    ("abort", "SIGABRT", "loading weights\nrun: assertion failed: weights corrupt"),
    ("segv", "SIGSEGV", "about to crash"),
])
def test_killed_by_a_signal(fake: Path, mode: str, name: str, tail: str) -> None:
    with pytest.raises(RunError) as info:
        Runner().run(fake, spec(mode))
    assert str(info.value) == f"fakerun was killed by {name}; stderr ends with:\n{tail}"


def test_script_killing_itself(tmp_path: Path) -> None:
    sh = script(tmp_path, "echo 'going down' >&2\nkill -TERM $$\nsleep 5\n", "selfkill")
    with pytest.raises(RunError, match="^selfkill was killed by SIGTERM; stderr ends with:\ngoing down$"):
        Runner().run(sh, spec("x"))


def test_nonzero_exit_names_the_code_and_the_tail_of_stderr(fake: Path) -> None:
    with pytest.raises(RunError) as info:
        Runner().run(fake, spec("exit3"))
    message = str(info.value)
    first, *rest = message.splitlines()
    assert first == "fakerun exited with code 3; stderr ends with:"
    assert rest == [f"stderr line {i}" for i in range(21, 31)]  # the last ten lines


def test_nonzero_exit_with_empty_stderr(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"^quiet exited with code 7; stderr ends with:\n\(empty\)$"):
        Runner().run(script(tmp_path, "exit 7\n", "quiet"), spec("x"))


def test_inf_rate_asks_for_more_steps(fake: Path) -> None:
    with pytest.raises(RunError, match=r"fakerun printed 'achieved tok/s: inf': .*1 ms clock; run more steps"):
        Runner().run(fake, spec("inf"))


def test_garbage_output(fake: Path) -> None:
    with pytest.raises(RunError) as info:
        Runner().run(fake, spec("garbage"))
    message = str(info.value)
    assert message.startswith("fakerun printed no 'achieved tok/s:' line")
    assert message.endswith("tok/s? who knows")


def test_no_output(fake: Path) -> None:
    with pytest.raises(RunError, match=r"^fakerun printed no 'achieved tok/s:' line .*\n\(no output\)$"):
        Runner().run(fake, spec("nothing"))


def test_missing_and_non_executable_binaries(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=f"^{tmp_path / 'absent'}: cannot start: No such file"):
        Runner().run(tmp_path / "absent", spec("x"))
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    with pytest.raises(RunError, match=f"^{plain}: cannot start: Permission denied"):
        Runner().run(plain, spec("x"))


def test_stats_file_of_the_reference_runner(tmp_path: Path) -> None:
    sh = script(tmp_path, (
        'echo "$' + STATS_ENV + '"\n'
        'printf "positions=65 prompt_tokens=3\\nelapsed_ns=12345678 junk bad=x neg=-4\\n" > "$' + STATS_ENV + '"\n'
        'echo "achieved tok/s: 5000.0" >&2\n'
    ))
    r = Runner().run(sh, spec("x"))
    assert (r.positions, r.prompt_tokens, r.elapsed_ns) == (65, 3, 12345678)
    assert r.tokens == 65
    stats_path = Path(r.stdout.strip())
    assert stats_path.name.startswith("llmperf-run-") and stats_path.suffix == ".stats"
    assert not stats_path.exists()  # removed after the run


def test_stats_file_is_removed_after_a_failure(tmp_path: Path) -> None:
    sh = script(tmp_path, 'echo "$' + STATS_ENV + '" >&2\nexit 2\n')
    with pytest.raises(RunError) as info:
        Runner().run(sh, spec("x"))
    stats_path = Path(str(info.value).splitlines()[-1])
    assert stats_path.name.startswith("llmperf-run-")
    assert not stats_path.exists()


@pytest.mark.parametrize("content", [
    b"positions=65 \xff\xfe prompt_tokens=3 elapsed_ns=12345678\n",  # not UTF-8
    "positions=65 prompt_tokens=3 elapsed_ns=12345678 sq=\u00b2 digits=\u0661\u0662\n".encode(),  # isdigit() but not int()
    b"positions=65 prompt_tokens=3 elapsed_ns=12345678 big=" + b"9" * 5000 + b"\n",  # beyond int()'s digit limit
    b"positions=65 prompt_tokens=3 elapsed_ns=12345678 =5 neg=-4 x=\n",
])
def test_stats_file_garbage_is_left_out(tmp_path: Path, content: bytes) -> None:
    # issue 11 (fuzzing): a stats file the reader cannot decode used to escape as UnicodeDecodeError
    # or ValueError from the run, not a RunError; unusable fields are now left out
    stats = tmp_path / "stats"
    stats.write_bytes(content)
    assert runner._read_stats(str(stats)) == {"positions": 65, "prompt_tokens": 3, "elapsed_ns": 12345678}
    sh = script(tmp_path, f'cat "{stats}" > "${STATS_ENV}"\necho "achieved tok/s: 5000.0" >&2\n')
    r = Runner().run(sh, spec("x"))
    assert (r.positions, r.prompt_tokens, r.elapsed_ns) == (65, 3, 12345678)


# -- the process group ---------------------------------------------------------------------------

FORK_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* forks a child that waits forever, writes its pid to $FORK_PID_FILE, then hangs ("hang") or
 * prints a rate and exits ("exit"), leaving the child behind */
int main(int argc, char **argv) {
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        for (;;) pause();
    }
    FILE *f = fopen(getenv("FORK_PID_FILE"), "w");
    if (f == NULL) return 3;
    fprintf(f, "%d\n", (int)child);
    fclose(f);
    if (argc > 1 && !strcmp(argv[1], "exit")) {
        fprintf(stderr, "achieved tok/s: 10.0\n");
        return 0;
    }
    for (;;) pause();
}
"""


@pytest.fixture(scope="module")
def forker(tmp_path_factory) -> Path:
    from conftest import compile_c

    return compile_c(tmp_path_factory.mktemp("forker"), "forker", FORK_C)


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


def _run_forker(forker: Path, tmp_path: Path, mode: str, timeout: float) -> tuple[int, object]:
    pid_file = tmp_path / "grandchild.pid"
    runner_ = Runner({**os.environ, "FORK_PID_FILE": str(pid_file)})
    try:
        outcome = runner_.run(forker, spec(mode, timeout=timeout))
    except RunError as exc:
        outcome = exc
    return int(pid_file.read_text()), outcome


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_timeout_kills_what_the_binary_forked(forker: Path, tmp_path: Path) -> None:
    # issue 11, item 7: only the direct child was killed; its child kept running (ppid 1) and took
    # the node's CPUs from every later measurement
    grandchild, outcome = _run_forker(forker, tmp_path, "hang", 0.5)
    try:
        assert isinstance(outcome, RunError)
        assert str(outcome).startswith("forker did not finish within the timeout of 0.5 s (--llmperf-run-timeout) "
                                       "and was killed with its process group; command: ")
        assert _wait_gone(grandchild), f"the forked child {grandchild} outlived the timeout"
    finally:
        if not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


@pytest.mark.parametrize("missing", [("pidfd_open",), ("pidfd_open", "waitid")], ids=["no-pidfd", "no-waitid"])
def test_timeout_kills_what_the_binary_forked_without_pidfd(forker: Path, tmp_path: Path, missing: tuple,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # the waits used where os.pidfd_open is missing (macOS, old kernels), and os.waitid too (macOS
    # before Python 3.13)
    for name in missing:
        monkeypatch.delattr(os, name, raising=False)
    grandchild, outcome = _run_forker(forker, tmp_path, "hang", 0.5)
    try:
        assert isinstance(outcome, RunError) and "did not finish within the timeout" in str(outcome)
        assert _wait_gone(grandchild)
    finally:
        if not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


@pytest.mark.parametrize("missing", [(), ("pidfd_open",), ("pidfd_open", "waitid")],
                         ids=["pidfd", "no-pidfd", "no-waitid"])
def test_a_normal_run_leaves_nothing_running(forker: Path, tmp_path: Path, missing: tuple,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the binary printed its rate and exited, leaving a child behind: killed with the group
    for name in missing:
        monkeypatch.delattr(os, name, raising=False)
    grandchild, outcome = _run_forker(forker, tmp_path, "exit", 30)
    try:
        assert isinstance(outcome, RunResult) and outcome.tok_per_s == 10.0
        assert _wait_gone(grandchild), f"the forked child {grandchild} outlived the run"
    finally:
        if not _gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_the_binary_runs_in_a_process_group_of_its_own(tmp_path: Path) -> None:
    import sys

    sh = script(tmp_path, f'exec "{sys.executable}" -c "import os, sys; print(os.getpgrp(), os.getpid()); '
                          f'sys.stderr.write(\'achieved tok/s: 1.0\\n\')"\n')
    pgid, pid = map(int, Runner().run(sh, spec("x")).stdout.split())
    assert pgid == pid != os.getpgrp()  # the binary leads a group of its own


def test_environment_and_omp_threads(tmp_path: Path) -> None:
    sh = script(tmp_path, 'echo "omp=$OMP_NUM_THREADS stats=${' + STATS_ENV + '} extra=$EXTRA"\n'
                          'echo "achieved tok/s: 1.5" >&2\n')
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "7", STATS_ENV: "/stale/path",
           "EXTRA": "kept"}
    fixed = Runner(env)
    assert STATS_ENV not in fixed.env  # a stats path from the caller's environment is not passed on
    out = fixed.run(sh, spec("x", threads=3)).stdout
    assert "omp=3 " in out and "extra=kept" in out and "/stale/path" not in out
    assert fixed.run(sh, spec("x")).stdout.startswith("omp=7 ")  # threads=None leaves the environment's
    assert fixed.env["OMP_NUM_THREADS"] == "7"  # one run's threads do not stick


def test_tok_s_from_stdout_when_stderr_has_none(tmp_path: Path) -> None:
    sh = script(tmp_path, 'echo "achieved tok/s: 42.5"\necho "noise" >&2\n')
    assert Runner().run(sh, spec("x")).tok_per_s == 42.5


# -- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("stderr", "expected"), [
    ("achieved tok/s: 123.456000\n", 123.456),
    ("achieved tok/s:123.5", 123.5),
    ("achieved tok/s:   77.25   \n", 77.25),
    ("achieved tok/s:\t8e3\t\n", 8000.0),
    ("achieved tok/s: 1.0\nsome text\nachieved tok/s: 2.0\nmore text\n", 2.0),  # the last line wins
    ("header\nachieved tok/s: 3.5\n", 3.5),
])
def test_parse_tok_per_s(stderr: str, expected: float) -> None:
    assert parse_tok_per_s(stderr) == expected


def test_parse_prefers_stderr_to_stdout() -> None:
    assert parse_tok_per_s("achieved tok/s: 10\n", "achieved tok/s: 20\n") == 10.0
    assert parse_tok_per_s("nothing here\n", "achieved tok/s: 20\n") == 20.0


def test_parse_needs_the_line_to_start_with_the_label() -> None:
    with pytest.raises(RunError, match="printed no 'achieved tok/s:' line"):
        parse_tok_per_s("we achieved tok/s: 10\n")


@pytest.mark.parametrize(("text", "message"), [
    ("achieved tok/s: fast\n", "mybin printed 'achieved tok/s: fast', which is not a number"),
    ("achieved tok/s: 12.5x\n", "mybin printed 'achieved tok/s: 12.5x', which is not a number"),
    ("achieved tok/s: 1_000\n", "mybin printed 'achieved tok/s: 1_000', which is not a number"),
    ("achieved tok/s: \u0661\u0662\n", "mybin printed 'achieved tok/s: \u0661\u0662', which is not a number"),
    ("achieved tok/s:\n", "mybin printed 'achieved tok/s:' with no number after it"),
    ("achieved tok/s: 12 tokens\n", "mybin printed 'achieved tok/s: 12 tokens': expected the number alone after "
                                    "'achieved tok/s:', not followed by other text"),
    ("achieved tok/s: inf\n", "mybin printed 'achieved tok/s: inf': the timed part took less than its 1 ms clock; "
                              "run more steps"),
    ("achieved tok/s: nan\n", "mybin printed 'achieved tok/s: nan', not a positive rate"),
    ("achieved tok/s: -nan\n", "mybin printed 'achieved tok/s: -nan', not a positive rate"),
    ("achieved tok/s: 0.000000\n", "mybin printed 'achieved tok/s: 0.000000', not a positive rate"),
    ("achieved tok/s: -5\n", "mybin printed 'achieved tok/s: -5', not a positive rate"),
    ("achieved tok/s: -inf\n", "mybin printed 'achieved tok/s: -inf', not a positive rate"),
])
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(RunError) as info:
        parse_tok_per_s(text, what="mybin")
    assert str(info.value) == message


# issue 11, item 18: a figure with trailing text was reported as "no tok/s line"; an absurd one was
# accepted and only failed later, deep in the core
@pytest.mark.parametrize(("text", "message"), [
    ("achieved tok/s: 12.5 (approx)\n", "mybin printed 'achieved tok/s: 12.5 (approx)': expected the number "
                                        "alone after 'achieved tok/s:', not followed by other text"),
    ("achieved tok/s: 1e308\n", "mybin printed 'achieved tok/s: 1e308', not a plausible rate (above 1e+12 tok/s)"),
    ("achieved tok/s: 1e18\n", "mybin printed 'achieved tok/s: 1e18', not a plausible rate (above 1e+12 tok/s)"),
    ("achieved tok/s: 1e400\n", "mybin printed 'achieved tok/s: 1e400', not a plausible rate (above 1e+12 tok/s)"),
    ("achieved tok/s: INF\n", "mybin printed 'achieved tok/s: INF': the timed part took less than its 1 ms clock; "
                              "run more steps"),
])
def test_parse_names_the_line_of_a_trailing_text_or_absurd_figure(text: str, message: str) -> None:
    with pytest.raises(RunError) as info:
        parse_tok_per_s(text, "noise before\n", what="mybin")
    assert str(info.value) == message  # one line, naming the line the binary printed


def test_parse_accepts_the_largest_plausible_figure() -> None:
    assert parse_tok_per_s("achieved tok/s: 1e12\n") == 1e12
    assert parse_tok_per_s("achieved tok/s: +3.5E2\r\n") == 350.0


def test_parse_escapes_control_characters_and_cuts_long_lines() -> None:
    with pytest.raises(RunError) as info:
        parse_tok_per_s("achieved tok/s: \x1b[31mfast\x00\n", what="b")
    assert str(info.value) == "b printed 'achieved tok/s: \\x1b[31mfast\\x00', which is not a number"
    with pytest.raises(RunError) as info:
        parse_tok_per_s("achieved tok/s: " + "9" * 500 + "x\n", what="b")
    message = str(info.value)
    assert "\n" not in message and len(message) < 150 and "..." in message


def test_parse_no_line_shows_the_tail_of_the_output() -> None:
    err = "\n".join(f"line {i}" for i in range(1, 16)) + "\n"
    with pytest.raises(RunError) as info:
        parse_tok_per_s(err, "stdout text", "bin")
    lines = str(info.value).splitlines()
    assert lines[1:] == [f"line {i}" for i in range(6, 16)]
    with pytest.raises(RunError) as info:
        parse_tok_per_s("", "only stdout\n", "bin")
    assert str(info.value).endswith("\nonly stdout")
    with pytest.raises(RunError) as info:
        parse_tok_per_s("", "", "bin")
    assert str(info.value).endswith("\n(no output)")


# -- quantization ------------------------------------------------------------------------------

def test_quantization() -> None:
    # 101 positions at 1000 tok/s: the timed part lasts 100 ms; 1 ms of it is 1%
    assert quantization(1000.0, 101) == pytest.approx(0.01)
    # stories260K at 4000 tok/s over 512 positions: about 0.78%
    assert quantization(4000.0, 512) == pytest.approx(0.001 / (511 / 4000.0))
    # twice the positions, half the error; twice the rate, twice the error
    assert quantization(1000.0, 201) == pytest.approx(quantization(1000.0, 101) / 2)
    assert quantization(2000.0, 101) == pytest.approx(quantization(1000.0, 101) * 2)
    assert math.isinf(quantization(1000.0, 1))
    assert math.isinf(quantization(1000.0, 0))
    assert math.isinf(quantization(0.0, 100))
    assert math.isinf(quantization(-1.0, 100))


# -- bench -------------------------------------------------------------------------------------

def fake_result(rate: float, wall: float = 0.01, cpu: float | None = None, tag: int = 0) -> RunResult:
    return RunResult(tok_per_s=rate, wall_s=wall, cpu_s=wall if cpu is None else cpu, peak_rss=1 << 20,
                     returncode=0, stdout=f"run {tag}", stderr="")


def test_bench_keeps_results_aligned_with_the_samples() -> None:
    rates = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1]
    made: list[RunResult] = []

    def run_once() -> RunResult:
        i = len(made)
        made.append(fake_result(rates[i % len(rates)], tag=i))
        return made[-1]

    settings = measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.5, probe=False)
    b = bench(run_once, settings)
    assert isinstance(b, Bench)
    m = b.measurement
    assert b.all_results == made
    assert m.rounds_total == len(made) >= 5
    assert len(b.results) == len(m.samples) >= 5
    assert b.tok_per_s == m.samples
    assert b.results == [made[i] for i in m.kept_rounds]
    assert m.cpu_share == pytest.approx(1.0)


def test_bench_leaves_out_warmup_and_descheduled_rounds() -> None:
    made: list[RunResult] = []

    def run_once() -> RunResult:
        i = len(made)
        # two slow warm-up rounds; round 4 lost most of its wall time to another process
        rate = 50.0 if i < 2 else 100.0 + (i % 3)
        made.append(fake_result(rate, cpu=0.001 if i == 4 else None, tag=i))
        return made[-1]

    settings = measure.MeasureSettings(warmup=2, min_rounds=5, max_time=0.2, probe=True)
    b = bench(run_once, settings)
    m = b.measurement
    kept_tags = [int(r.stdout.split()[1]) for r in b.results]
    assert 0 not in kept_tags and 1 not in kept_tags and 4 not in kept_tags
    assert kept_tags == m.kept_rounds
    assert b.tok_per_s == m.samples and len(m.samples) >= 5
    assert 50.0 not in b.tok_per_s
    assert m.warmup["discarded"] == 2 and m.warmup["descheduled_rounds"] == 1
    assert len(m.probes) == len(m.samples)


def test_bench_propagates_run_errors() -> None:
    count = [0]

    def run_once() -> RunResult:
        count[0] += 1
        if count[0] == 3:
            raise RunError("fakerun was killed by SIGKILL; stderr ends with:\n(empty)")
        return fake_result(10.0)

    with pytest.raises(RunError, match="SIGKILL"):
        bench(run_once, measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.2, probe=False))


def test_bench_of_a_real_binary(fake: Path) -> None:
    r = Runner()
    b = bench(lambda: r.run(fake, spec("ok")), measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.3))
    assert b.tok_per_s == [1234.5] * len(b.results) and len(b.results) >= 5
    assert all(x.peak_rss > 0 for x in b.results)


def test_describe_quotes_arguments_with_spaces() -> None:
    assert runner.describe(["run", "model.bin", "-i", "Once upon", ""]) == "run model.bin -i 'Once upon' ''"


def test_signal_names_match_the_platform() -> None:
    assert signal.Signals(signal.SIGABRT).name == "SIGABRT"  # what the message above relies on


def test_bench_pairs_each_round_with_the_reference_runs_seconds_per_token() -> None:
    # the reference probe runs within every round, next to its run (before it in even rounds, after
    # it in odd ones); with nanosecond stats its seconds per token come from them, else from its
    # printed tok/s
    probes: list[RunResult] = []
    order: list[str] = []

    def probe_once() -> RunResult:
        i = len(probes)
        order.append("P")
        r = fake_result(50.0 if i % 2 else 40.0, tag=i)
        if i == 0:
            r.positions, r.elapsed_ns = 11, 200_000_000  # 10 tokens in 0.2 s: 0.02 s per token
        probes.append(r)
        return r

    def run_once() -> RunResult:
        order.append("C")
        return fake_result(100.0)

    settings = measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.05, probe=True)
    b = bench(run_once, settings, probe_once=probe_once)
    m = b.measurement
    assert len(probes) == m.rounds_total
    assert order == [x for i in range(m.rounds_total) for x in (("P", "C") if i % 2 == 0 else ("C", "P"))]
    expected = [1 / 40.0 if i % 2 == 0 else 1 / 50.0 for i in range(len(probes))]
    expected[0] = 0.02
    assert m.probes == [pytest.approx(expected[i]) for i in m.kept_rounds]
    assert seconds_per_token(probes[0]) == pytest.approx(0.02)


# -- rounds of several runs --------------------------------------------------------------------

def timed(rate: float, positions: int | None = None, elapsed_ns: int | None = None, wall: float = 0.01) -> RunResult:
    r = fake_result(rate, wall=wall)
    r.positions, r.elapsed_ns = positions, elapsed_ns
    return r


def test_a_round_is_all_its_positions_over_all_its_time() -> None:
    # 99 timed positions in 1 s and 99 in 3 s: 198 / 4 s, not the mean of 99 and 33 tok/s
    runs = [timed(99.0, positions=100, elapsed_ns=1_000_000_000), timed(33.0, positions=100, elapsed_ns=3 * 10**9)]
    assert runner.round_tok_per_s(runs) == pytest.approx(198 / 4)
    assert runner.round_seconds_per_token(runs) == pytest.approx(4 / 198)


def test_a_round_of_printed_figures_is_their_harmonic_mean_weighted_by_positions() -> None:
    # run.c prints tok/s only: equal runs (positions unknown) weigh alike, the harmonic mean
    assert runner.round_tok_per_s([timed(100.0), timed(50.0)]) == pytest.approx(2 / (1 / 100 + 1 / 50))
    # known positions weigh by the positions timed: 300 tokens at 100 tok/s and 100 at 50 tok/s
    assert runner.round_tok_per_s([timed(100.0, positions=301), timed(50.0, positions=101)]) == pytest.approx(
        400 / (3.0 + 2.0))


def test_a_round_prefers_the_nanosecond_time_to_the_printed_figure() -> None:
    # the printed figure (from a millisecond clock) says 120; the nanosecond stats say 100 tok/s
    assert runner.round_tok_per_s([timed(120.0, positions=101, elapsed_ns=10**9)]) == pytest.approx(100.0)


def test_a_round_of_equal_figures_gives_the_figure_back_exactly() -> None:
    for rate in (1234.5, 0.1, 3.3, 97.123456):
        assert runner.round_tok_per_s([timed(rate)] * 7) == rate
        assert runner.round_tok_per_s([timed(rate, positions=257)] * 3) == rate


def test_a_round_has_a_run() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        runner.round_tok_per_s([])


def test_rounds_fix_the_runs_per_round_in_the_warmup() -> None:
    walls = iter([0.5, 0.1, 0.2, 0.1] + [0.1] * 100)  # a cold first run, then about 0.1 s each
    made: list[RunResult] = []

    def run_once() -> RunResult:
        made.append(fake_result(100.0, wall=next(walls)))
        return made[-1]

    rounds = runner.Rounds(run_once, round_time=0.35)
    got = rounds()
    # the first round runs until it has lasted 0.35 s: 0.5 s at once, and 0.35 s takes one such run
    assert len(rounds.rounds[0]) == 1 and got.value == 100.0
    assert got.wall == pytest.approx(0.5) and got.cpu == pytest.approx(0.5) and got.probe is None
    assert rounds.runs_per_round == 1
    rounds()
    rounds.calibrate()  # after a warm-up round: a run of 0.1 s, so 0.35 s is 4 runs
    assert rounds.runs_per_round == 4
    rounds()
    rounds.calibrate()  # never fewer (its runs took 0.2, 0.1, 0.1, 0.1 s)
    rounds()
    assert [len(r) for r in rounds.rounds] == [1, 1, 4, 4]
    assert sum(len(r) for r in rounds.rounds) == len(made)


def test_rounds_interleave_the_other_binary_abba() -> None:
    order: list[str] = []

    def make(name: str, rate: float):
        def run_once() -> RunResult:
            order.append(name)
            return fake_result(rate, wall=0.1)
        return run_once

    rounds = runner.Rounds(make("C", 90.0), round_time=0.4, other=make("R", 100.0), kind="reference")
    first = rounds()
    second = rounds()
    assert order == ["R", "C", "C", "R", "R", "C", "C", "R"] + ["C", "R", "R", "C", "C", "R", "R", "C"]
    assert first.value == 90.0 and first.reference == (100.0, pytest.approx(0.4), pytest.approx(0.4))
    assert second.reference is not None and second.probe is None
    assert [len(r) for r in rounds.other_rounds] == [4, 4]
    with pytest.raises(ValueError, match="kind must be"):
        runner.Rounds(make("C", 1.0), other=make("R", 1.0), kind="baseline")


def test_rounds_are_bounded_and_one_run_without_a_round_time() -> None:
    assert runner.Rounds(lambda: fake_result(1.0, wall=0.001), round_time=0.0).runs_per_round == 1
    rounds = runner.Rounds(lambda: fake_result(1.0, wall=0.0), round_time=1.0, max_runs=5)
    rounds()
    assert len(rounds.rounds[0]) == 5 and rounds.runs_per_round == 5


def test_bench_in_rounds_of_several_runs() -> None:
    made: list[RunResult] = []

    def run_once() -> RunResult:
        i = len(made)
        made.append(fake_result(100.0 if i % 2 else 50.0, wall=0.01, tag=i))
        return made[-1]

    settings = measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.05, probe=False)
    b = bench(run_once, settings, round_time=0.04)
    m = b.measurement
    assert b.runs_per_round == 4 and all(len(r) == 4 for r in b.rounds)
    assert b.all_results == made and len(made) == 4 * m.rounds_total
    # each round: two runs at 50 and two at 100 tok/s, as much work each: 4 / (2/50 + 2/100)
    assert m.samples == [pytest.approx(4 / (2 / 50 + 2 / 100))] * len(m.samples)
    assert b.tok_per_s == m.samples
    assert b.results == [r for i in m.kept_rounds for r in b.rounds[i]]


def test_bench_probe_rounds_have_the_round_structure_too() -> None:
    probes: list[RunResult] = []

    def probe_once() -> RunResult:
        probes.append(fake_result(40.0, wall=0.01))
        return probes[-1]

    settings = measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.05, probe=True)
    b = bench(lambda: fake_result(100.0, wall=0.02), settings, probe_once=probe_once, round_time=0.04)
    m = b.measurement
    assert b.probe_rounds is not None and len(b.probe_rounds) == len(b.rounds) == m.rounds_total
    # as many probe runs as the binary's in each round (two of 0.02 s make the 0.04 s)
    assert all(len(r) == 2 for r in b.rounds) and all(len(r) == 2 for r in b.probe_rounds)
    assert len(probes) == 2 * m.rounds_total
    assert m.probes == [pytest.approx(1 / 40.0)] * len(m.samples)


def test_bench_paired_with_a_reference_build() -> None:
    order: list[str] = []

    def make(name: str, rate: float):
        def run_once() -> RunResult:
            order.append(name)
            return fake_result(rate, wall=0.01)
        return run_once

    probe_calls: list[int] = []
    settings = measure.MeasureSettings(warmup=0, min_rounds=5, max_time=0.05, probe=True)
    b = bench(make("C", 90.0), settings, probe_once=lambda: probe_calls.append(1) or fake_result(1.0),
              round_time=0.02, reference_once=make("R", 100.0))
    m = b.measurement
    assert probe_calls == [] and m.probes is None and b.probe_rounds is None
    assert m.samples == [90.0] * len(m.samples) and m.paired == [100.0] * len(m.samples)
    assert b.reference_rounds is not None and len(b.reference_rounds) == len(b.rounds) == m.rounds_total
    # two runs a side per round, interleaved ABBA; the reference first in even rounds
    assert order[:8] == ["R", "C", "C", "R", "C", "R", "R", "C"]


def test_an_openmp_run_with_fewer_cpus_than_threads_is_unfit():
    from pytest_llmperf.llama2c.runner import FIT_SHARE, unfit_reason

    assert unfit_reason(2, 1.9) == "" and unfit_reason(4, 3.1) == ""
    assert unfit_reason(1, 0.4) == ""  # one thread: the probe or the paired build is paced alike
    assert unfit_reason(None, 0.4) == "" and unfit_reason(2, None) == ""
    why = unfit_reason(2, 1.08)
    assert why.startswith("oversubscribed: 2 OpenMP threads got 1.08 CPUs") and "not decided" in why
    assert unfit_reason(2, 2 * FIT_SHARE - 0.01) != "" and unfit_reason(2, 2 * FIT_SHARE) == ""
