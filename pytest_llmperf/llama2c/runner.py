"""Run a llama2.c-style binary once, or round after round, and read what it printed. No pytest.

One run spawns ``<binary> <checkpoint> -z <tokenizer> -n steps -s seed -t temperature -p topp
[-i prompt]`` with ``OMP_NUM_THREADS`` set, in a process group of its own, waits for it, and returns
the ``achieved tok/s:`` figure exactly as printed, the wall time measured here, the child's peak
RSS and CPU time (``wait4``), its exit status, stdout and stderr. Our reference runner also writes
the positions it ran and a nanosecond timing to the file named by ``LLMPERF_REFRUN_STATS``; other
binaries ignore that variable and ``positions`` stays None.

The process group is SIGKILLed when the run ends: after the timeout (``--llmperf-run-timeout``),
when the wait is interrupted, and also after a normal exit, so that nothing the binary forked keeps
using the node's CPUs during later measurements (only a descendant that moves itself into another
process group or session escapes this).

The binary's clock counts whole milliseconds, so a tok/s figure carries up to one millisecond of
error over the timed part of the run; :func:`quantization` gives that relative error, which the
suite keeps well under the tolerance by its choice of steps.
"""

from __future__ import annotations

import math
import os
import re
import select
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: resource is Unix-only, measure is imported where it runs
    from resource import struct_rusage

    from ..measure import Measurement, MeasureSettings

    # what os.wait4 returns after the pid: the exit status and the child's resource usage
    _Reaped = tuple[int, struct_rusage]

LABEL = "achieved tok/s:"
# a number as C's printf writes one (%f, %e, %g, inf, nan): ASCII only, no "1_000"
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.ASCII | re.IGNORECASE)
# no runner decodes a trillion tokens per second: a larger figure is a broken clock or output
MAX_TOK_S = 1e12
STATS_ENV = "LLMPERF_REFRUN_STATS"
DEFAULT_TIMEOUT = 600.0


class RunError(RuntimeError):
    """A run that gives no usable figure: it hung, crashed, exited non-zero or printed no valid
    ``achieved tok/s:`` line. The message is a line naming the binary, then (for a crash, a non-zero
    exit or a missing line) the tail of the output; a line that is there but unusable gives one
    line naming it."""


@dataclass(frozen=True)
class RunSpec:
    """What to run: a checkpoint and tokenizer, and run.c's generation flags."""

    checkpoint: Path
    tokenizer: Path
    steps: int = 256
    seed: int = 42
    temperature: float = 1.0
    topp: float = 0.9
    prompt: str | None = None
    threads: int | None = None  # OMP_NUM_THREADS; None leaves the environment's
    timeout: float = DEFAULT_TIMEOUT

    def argv(self, binary: Path) -> list[str]:
        args = [str(binary), str(self.checkpoint), "-z", str(self.tokenizer), "-n", str(self.steps),
                "-s", str(self.seed), "-t", repr(float(self.temperature)), "-p", repr(float(self.topp))]
        if self.prompt:
            args += ["-i", self.prompt]
        return args


@dataclass
class RunResult:
    tok_per_s: float  # as the binary printed it
    wall_s: float  # spawn to exit, measured here
    cpu_s: float  # the child's user + system CPU time
    peak_rss: int  # bytes
    returncode: int
    stdout: str
    stderr: str
    positions: int | None = None  # positions run (prompt included), from the reference runner
    prompt_tokens: int | None = None
    elapsed_ns: int | None = None  # the timed part, monotonic ns (reference runner)
    argv: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int | None:
        """Positions run, as run.c counts them for tok/s (prompt tokens included), when known."""
        return self.positions


def _tail(text: str, lines: int = 10) -> str:
    rows = [r for r in text.rstrip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


def _show(line: str, limit: int = 80) -> str:
    """A line of the binary's output as a message shows it: control characters escaped, long
    lines cut."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in line)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def _label_values(text: str) -> list[str]:
    """What follows ``achieved tok/s:`` on each line that starts with it (after spaces or tabs)."""
    out = []
    for line in text.splitlines():
        line = line.lstrip(" \t")
        if line.startswith(LABEL):
            out.append(line[len(LABEL):].strip())
    return out


def parse_tok_per_s(stderr: str, stdout: str = "", what: str = "binary") -> float:
    """The figure of the last ``achieved tok/s:`` line (stderr's, else stdout's).

    :class:`RunError` when there is no such line (the message then ends with the tail of the
    output), and a one-line RunError naming the line when what follows the label is not one number
    alone (``12.5 (approx)`` is refused rather than guessed at), is ``inf`` (a run too short for the
    millisecond clock), ``nan``, zero, negative, or above :data:`MAX_TOK_S`."""
    found = _label_values(stderr) or _label_values(stdout)
    if not found:
        shown = _tail(stderr) or _tail(stdout) or "(no output)"
        raise RunError(f"{what} printed no 'achieved tok/s:' line (too few steps, chat mode, or not a "
                       f"llama2.c runner?); output ends with:\n{shown}")
    text = found[-1]
    line = _show(f"{LABEL} {text}" if text else LABEL)
    if not text:
        raise RunError(f"{what} printed '{line}' with no number after it")
    if not _NUMBER.fullmatch(text):
        first = text.split(None, 1)[0]
        if _NUMBER.fullmatch(first):
            raise RunError(f"{what} printed '{line}': expected the number alone after 'achieved tok/s:', "
                           f"not followed by other text")
        raise RunError(f"{what} printed '{line}', which is not a number")
    value = float(text)
    if math.isinf(value) and value > 0 and text.lstrip("+").lower().startswith("inf"):
        raise RunError(f"{what} printed '{line}': the timed part took less than its 1 ms "
                       f"clock; run more steps")
    if math.isnan(value) or value <= 0:
        raise RunError(f"{what} printed '{line}', not a positive rate")
    if value > MAX_TOK_S:
        raise RunError(f"{what} printed '{line}', not a plausible rate (above {MAX_TOK_S:g} tok/s)")
    return value


def quantization(tok_per_s: float, positions: int) -> float:
    """Relative error bound of a tok/s figure from a millisecond clock: 1 ms over the timed part,
    which lasts (positions - 1) / tok_per_s seconds."""
    if positions < 2 or tok_per_s <= 0:
        return math.inf
    return 0.001 / ((positions - 1) / tok_per_s)


_STATS_MAX_BYTES = 1 << 16
_STAT_VALUE = re.compile(r"\d{1,18}", re.ASCII)


def _read_stats(path: str) -> dict[str, int]:
    """The ``key=value`` fields of the reference runner's stats file whose value is a non-negative
    integer (other fields, and a missing or unreadable file, are left out: the stats are extras)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_STATS_MAX_BYTES)
    except OSError:
        return {}
    out = {}
    for part in data.decode("ascii", "replace").split():
        key, _, value = part.partition("=")
        if key and _STAT_VALUE.fullmatch(value):
            out[key] = int(value)
    return out


def _wait(pid: int, timeout: float) -> tuple[bool, _Reaped | None]:
    """Wait up to ``timeout`` seconds for the child to exit: ``(exited, None)``, the child not
    reaped yet (so its process group id is still ours to kill), or where neither ``pidfd_open``
    nor ``waitid`` exists (macOS before Python 3.13) ``(True, (status, rusage))``, reaped by a
    waiting thread."""
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = None
        if fd is not None:
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
            return bool(ready), None
    done = threading.Event()
    reaped: list[_Reaped] = []

    def watch() -> None:
        try:
            if hasattr(os, "waitid"):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            else:
                reaped.append(os.wait4(pid, 0)[1:])
        except ChildProcessError:  # reaped by the caller after killing it at the deadline
            pass
        done.set()

    waiter = threading.Thread(target=watch, daemon=True)
    waiter.start()
    exited = done.wait(timeout)
    return exited, (reaped[0] if exited and reaped else None)


def _kill_group(pid: int) -> None:
    """SIGKILL the child's process group: the child and whatever it started (unless a descendant
    moved itself into a group of its own)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Runner:
    """Runs binaries with a fixed base environment (built once: a run costs little besides the
    child itself)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.env.pop(STATS_ENV, None)

    def run(self, binary: str | os.PathLike[str], spec: RunSpec, prefix: Sequence[str] | None = None) -> RunResult:
        """One run of ``binary``; ``prefix`` is a wrapper's command line put before it (``perf stat
        ... --``, for counters of the timed rounds themselves)."""
        binary = Path(binary)
        argv = spec.argv(binary)
        exe = str(binary)
        if prefix:
            exe, argv = str(prefix[0]), [*prefix, *argv]
        env = dict(self.env)
        if spec.threads is not None:
            env["OMP_NUM_THREADS"] = str(spec.threads)
        fd, stats_path = tempfile.mkstemp(prefix="llmperf-run-", suffix=".stats")
        os.close(fd)
        env[STATS_ENV] = stats_path
        try:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                actions = [(os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
                t0 = time.perf_counter()
                try:
                    # a process group of its own, so that a timeout (or a leftover) takes its children too
                    pid = os.posix_spawn(exe, argv, env, file_actions=actions, setpgroup=0)
                except OSError as exc:
                    raise RunError(f"{exe}: cannot start: {exc.strerror or exc}") from None
                exited = False
                reaped: _Reaped | None = None
                try:
                    exited, reaped = _wait(pid, spec.timeout)
                finally:
                    # the child has exited (a zombie, not reaped yet, so the group id is still ours) or
                    # is killed now: either way nothing it started outlives the run
                    _kill_group(pid)
                    if reaped is None:
                        try:
                            _, status, usage = os.wait4(pid, 0)
                        except ChildProcessError:  # reaped by _wait's thread (no waitid) after the kill
                            exited = False
                if reaped is not None:
                    status, usage = reaped
                if not exited:
                    raise RunError(f"{binary.name} did not finish within the timeout of {spec.timeout:g} s "
                                   f"(--llmperf-run-timeout) and was killed with its process group; "
                                   f"command: {describe(argv)}")
                wall = time.perf_counter() - t0
                out.seek(0)
                err.seek(0)
                stdout = out.read().decode("utf-8", "replace")
                stderr = err.read().decode("utf-8", "replace")
        finally:
            stats = _read_stats(stats_path)
            os.unlink(stats_path)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            raise RunError(f"{binary.name} was killed by {name}; stderr ends with:\n{_tail(stderr) or '(empty)'}")
        code = os.WEXITSTATUS(status)
        if code != 0:
            raise RunError(f"{binary.name} exited with code {code}; stderr ends with:\n{_tail(stderr) or '(empty)'}")
        rate = parse_tok_per_s(stderr, stdout, binary.name)
        rss = usage.ru_maxrss * (1 if os.uname().sysname == "Darwin" else 1024)
        return RunResult(
            tok_per_s=rate, wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss=rss, returncode=code, stdout=stdout, stderr=stderr,
            positions=stats.get("positions"), prompt_tokens=stats.get("prompt_tokens"),
            elapsed_ns=stats.get("elapsed_ns"), argv=argv,
        )


@dataclass
class Bench:
    """Round after round of one binary on one spec: the kept rounds' results and the measurement."""

    results: list[RunResult]  # the kept rounds (warm-up and descheduled rounds left out)
    measurement: Measurement  # of the printed tok/s
    all_results: list[RunResult]

    @property
    def tok_per_s(self) -> list[float]:
        return [r.tok_per_s for r in self.results]


def seconds_per_token(result: RunResult) -> float:
    """The timed part of a run per position after the first: nanosecond-precise from the reference
    runner's stats, else from the printed (millisecond-based) tok/s."""
    if result.elapsed_ns and result.positions and result.positions > 1:
        return result.elapsed_ns / 1e9 / (result.positions - 1)
    return 1.0 / result.tok_per_s


def bench(run_once: Callable[[], RunResult], settings: MeasureSettings,
          decisive: Callable[[list[float], list[float] | None], bool] | None = None,
          probe_once: Callable[[], RunResult] | None = None) -> Bench:
    """Repeat ``run_once`` under the rounds engine of :mod:`..measure`: warm-up, then rounds until
    the tok/s median is precise (and the verdict decisive) or the time budget is spent. A round's
    CPU share is the child's CPU time over wall time.

    ``probe_once`` (with ``settings.probe``) runs a fixed reference binary before each round and
    after the last: its seconds per token are the round's machine-speed probe, so a change of the
    machine's speed between sessions cancels out of the comparison of tok/s."""
    from .. import measure

    results: list[RunResult] = []

    def sample() -> tuple[float, float, float]:
        r = run_once()
        results.append(r)
        return r.tok_per_s, r.wall_s, r.cpu_s

    probe_fn = (lambda: seconds_per_token(probe_once())) if probe_once is not None else None
    m = measure.run_rounds(sample, settings, decisive=decisive, probe_fn=probe_fn)
    return Bench(results=[results[i] for i in m.kept_rounds], measurement=m, all_results=results)


def describe(argv: Sequence[str]) -> str:
    return " ".join(a if a and " " not in a else repr(a) for a in argv)
