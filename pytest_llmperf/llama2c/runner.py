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

Rounds (:class:`Rounds`, :func:`bench`). A stories260K run lasts about 90 ms here, and single runs
vary by 15-60% (CV) on this 2-core machine shared with other work: too short to measure. A round
therefore runs the binary k times back to back, with the other side of the comparison (the
machine-speed probe, or a paired reference build) interleaved run by run in ABBA order, and its
sample is the round's tok/s (all positions over all timed time). Measured with
``bench/llama2c_rounds.py --only-il`` (stories260K synthetic, 512 steps, our runner at -O3 standing in for run.c, one
thread, 24 blocks each cycling through k = 1, 2, 4, 8 so that every k sees the same background;
CV and robust CV = 1.4826 MAD / median, in %; "loaded" adds ``python3 -c "while True: pass"``, and
the other sessions on this machine ran throughout, load average 3-7 on 2 cores)::

                  paired ratio (ref/cur)     probe-adjusted tok/s     seconds per round
    k             idle        loaded         idle        loaded       (paired, loaded)
    1          15.5 / 7.9   17.0 / 8.6    13.2 / 13.2   9.2 / 5.2         0.50
    2          12.8 / 9.6    8.9 / 4.6    12.9 / 12.7  10.3 / 6.6         0.99
    4           5.5 / 2.7    5.3 / 2.9    10.3 / 5.4    7.9 / 5.6         2.12
    8           2.9 / 2.9    3.5 / 2.7     5.7 / 6.6    6.2 / 5.5         4.23

Whole rounds back to back (R..R C..C) instead of interleaved runs did worse at k = 4-8 (loaded,
paired: 18.6 / 14.0 at k = 4, 32.8 / 10.6 at k = 8; probe-adjusted 15.2 / 9.2 and 19.4 / 13.9):
the two sides then see different moments of the machine. Per unit of time (CV x sqrt(seconds per
round), the precision a fixed budget buys) k = 4 is the best paired figure idle and loaded (robust
2.9 and 4.2, against 4.2 and 6.1 at k = 1 and 4.3 and 5.5 at k = 8), and among the best probed
ones; hence the default round of 0.3 s (options.DEFAULT_ROUND_TIME): 4 runs of stories260K at
512 steps, one run of stories15M (1.5 s).

The int8 (runq) rows' probe (session.PROBE_KIND_Q8): the same rounds, runq.c played by our
runner's Q8_0 path at -Ofast on a Q8_0 stories260K, probed by our runner at -O3 on the float32
checkpoint (today's probe) or on the same Q8_0 one, interleaved block by block (24 blocks;
``bench/llama2c_rounds.py --compare-probes --quantized --flags=-Ofast --ks 1,4``): robust
CV of the probe-adjusted tok/s at k = 4 idle 10.6% (float32 probe) against 6.6% (Q8_0 probe),
loaded 2.8% against 1.4% (plain CV 11.0% against 2.2%); at k = 1 about alike (17.3 / 18.1 idle,
4.2 / 3.2 loaded).
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
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: resource is Unix-only, measure is imported where it runs
    from resource import struct_rusage

    from ..measure import Measurement, MeasureSettings, Round

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


# a round runs the binary at most this many times (a binary run shorter than round_time / 64 is
# a few milliseconds: its process start then costs more than its tokens, and the round is long enough)
MAX_RUNS_PER_ROUND = 64


def timed_part(result: RunResult) -> tuple[Fraction, Fraction]:
    """(positions, seconds) of a run's timed part, exactly: the nanosecond stats of the reference
    runner when it wrote them, else the printed tok/s over the positions after the first. A run
    whose positions are unknown (run.c prints none) counts 1: every run of a round runs the same
    spec (same steps and seed, so the same positions), and its share of the round is then its
    share of the runs."""
    if result.elapsed_ns and result.positions and result.positions > 1:
        return Fraction(result.positions - 1), Fraction(result.elapsed_ns, 10**9)
    tokens = Fraction(result.positions - 1) if result.positions and result.positions > 1 else Fraction(1)
    return tokens, tokens / Fraction(result.tok_per_s)


def round_tok_per_s(results: Sequence[RunResult]) -> float:
    """A round's tok/s: all its positions over all its timed time, that is the harmonic mean of
    the runs' tok/s weighted by their positions (the mean of rates over equal work; an arithmetic
    mean would weigh a fast run's figure more than its time). Exact in rationals, so that runs
    that printed the same figure give it back unchanged."""
    if not results:
        raise ValueError("a round has at least one run")
    parts = [timed_part(r) for r in results]
    return float(sum(t for t, _ in parts) / sum(s for _, s in parts))


def round_seconds_per_token(results: Sequence[RunResult]) -> float:
    """A probe round's seconds per position: the inverse of :func:`round_tok_per_s`."""
    parts = [timed_part(r) for r in results]
    return float(sum(s for _, s in parts) / sum(t for t, _ in parts))


class Rounds:
    """One binary round after round (the ``sample`` of :func:`measure.run_rounds`), with another
    binary's runs interleaved when ``other`` is given: the probe (``kind`` "probe") or a paired
    reference build (``kind`` "reference").

    A round runs the binary ``runs_per_round`` times back to back, and as many runs of ``other``
    between them, in ABBA order (O C C O O C ...), starting with ``other`` in even rounds and
    with the binary in odd ones: a change of the machine's speed during the round then weighs
    alike on both sides, and their ratio keeps little of it. The first round runs until the
    binary's runs have lasted ``round_time`` seconds (wall time, spawn to exit, summed), and sets
    the count to what ``round_time`` takes at the speed of the binary's fastest run so far;
    :meth:`calibrate`, called after each warm-up round, raises it as faster runs show up (a first,
    cold run reads the files from disk) and never lowers it, between 1 and
    :data:`MAX_RUNS_PER_ROUND`. After the warm-up every round does the same work, so a round's
    value does not depend on when it stopped. ``round_time`` 0: one run per round.

    A round gives a measure.Round: the binary's tok/s (:func:`round_tok_per_s`), wall and CPU
    time summed over its runs, and the probe's seconds per token (:func:`round_seconds_per_token`)
    or the reference's (tok/s, wall, CPU) over its runs."""

    def __init__(self, run_once: Callable[[], RunResult], round_time: float = 0.0,
                 other: Callable[[], RunResult] | None = None, kind: str = "probe",
                 max_runs: int = MAX_RUNS_PER_ROUND) -> None:
        if kind not in ("probe", "reference"):
            raise ValueError(f"kind must be 'probe' or 'reference', not {kind!r}")
        self.run_once = run_once
        self.other = other
        self.kind = kind
        self.round_time = round_time
        self.max_runs = max(1, max_runs)
        self.runs_per_round: int | None = 1 if round_time <= 0 else None
        self.rounds: list[list[RunResult]] = []
        self.other_rounds: list[list[RunResult]] = []

    def calibrate(self, _value: float | None = None) -> None:
        """Runs per round for ``round_time`` at the fastest run so far (never fewer than now)."""
        if self.round_time <= 0 or not self.rounds:
            return
        fastest = max(min(r.wall_s for runs in self.rounds for r in runs), 1e-6)
        wanted = min(self.max_runs, max(1, math.ceil(self.round_time / fastest)))
        self.runs_per_round = max(self.runs_per_round or 1, wanted)

    def run_round(self) -> tuple[list[RunResult], list[RunResult]]:
        """One round: (the binary's runs, the other's runs)."""
        runs: list[RunResult] = []
        others: list[RunResult] = []
        other_first = len(self.rounds) % 2 == 0
        j = 0

        def more() -> bool:
            if self.runs_per_round is not None:
                return j < self.runs_per_round
            return not runs or (sum(r.wall_s for r in runs) < self.round_time and len(runs) < self.max_runs)

        while more():
            if self.other is not None and (j % 2 == 0) == other_first:
                others.append(self.other())
                runs.append(self.run_once())
            else:
                runs.append(self.run_once())
                if self.other is not None:
                    others.append(self.other())
            j += 1
        self.rounds.append(runs)
        self.other_rounds.append(others)
        if len(self.rounds) == 1:
            self.calibrate()
        return runs, others

    def __call__(self) -> Round:
        from ..measure import Round

        runs, others = self.run_round()
        rate, wall, cpu = round_tok_per_s(runs), sum(r.wall_s for r in runs), sum(r.cpu_s for r in runs)
        if self.other is None:
            return Round(rate, wall, cpu)
        if self.kind == "probe":
            return Round(rate, wall, cpu, probe=round_seconds_per_token(others))
        return Round(rate, wall, cpu, reference=(round_tok_per_s(others), sum(r.wall_s for r in others),
                                                 sum(r.cpu_s for r in others)))


@dataclass
class Bench:
    """Round after round of one binary on one spec: the rounds, their runs and the measurement."""

    results: list[RunResult]  # the runs of the kept rounds (warm-up and descheduled rounds left out)
    measurement: Measurement  # of the rounds' tok/s
    all_results: list[RunResult]  # every run, in order
    rounds: list[list[RunResult]] = field(default_factory=list)  # every round's runs, warm-up included
    reference_rounds: list[list[RunResult]] | None = None  # paired mode: the reference's runs in each round
    probe_rounds: list[list[RunResult]] | None = None  # probe mode: the probe's runs in each round

    @property
    def tok_per_s(self) -> list[float]:
        """The kept rounds' tok/s (the samples)."""
        return list(self.measurement.samples)

    @property
    def kept_rounds(self) -> list[list[RunResult]]:
        return [self.rounds[i] for i in self.measurement.kept_rounds]

    @property
    def runs_per_round(self) -> int:
        return max((len(r) for r in self.rounds), default=0)


def seconds_per_token(result: RunResult) -> float:
    """The timed part of a run per position after the first: nanosecond-precise from the reference
    runner's stats, else from the printed (millisecond-based) tok/s."""
    if result.elapsed_ns and result.positions and result.positions > 1:
        return result.elapsed_ns / 1e9 / (result.positions - 1)
    return 1.0 / result.tok_per_s


def bench(run_once: Callable[[], RunResult], settings: MeasureSettings,
          decisive: Callable[[list[float], list[float] | None], bool] | None = None,
          probe_once: Callable[[], RunResult] | None = None, round_time: float = 0.0,
          reference_once: Callable[[], RunResult] | None = None) -> Bench:
    """Repeat ``run_once`` under the rounds engine of :mod:`..measure`: warm-up, then rounds until
    the tok/s median is precise (and the verdict decisive) or the time budget is spent. A round
    runs the binary several times back to back until it lasts ``round_time`` (see :class:`Rounds`);
    its sample is the round's tok/s (:func:`round_tok_per_s`). A round's CPU share is the child's
    CPU time over wall time.

    ``probe_once`` (with ``settings.probe``) runs a fixed reference binary between the round's
    runs: its seconds per token are the round's machine-speed probe, so a change of the machine's
    speed between sessions cancels out of the comparison of tok/s.

    ``reference_once`` (paired mode) runs the reference build on the same spec between the round's
    runs, and the measurement's ``paired`` holds the reference's tok/s of the kept rounds; no probe
    then."""
    from .. import measure

    paired = reference_once is not None
    other = reference_once if paired else (probe_once if settings.probe else None)
    rounds = Rounds(run_once, round_time, other=other, kind="reference" if paired else "probe")
    m = measure.run_rounds(rounds, settings, decisive=decisive, calibrate=rounds.calibrate,
                           probe_in_round=other is not None and not paired, paired=paired)
    all_results = [r for runs in rounds.rounds for r in runs]
    kept = [r for i in m.kept_rounds for r in rounds.rounds[i]]
    return Bench(results=kept, measurement=m, all_results=all_results, rounds=rounds.rounds,
                 reference_rounds=rounds.other_rounds if paired else None,
                 probe_rounds=rounds.other_rounds if other is not None and not paired else None)


# an OpenMP run whose threads got less than this share of a CPU each (median over the kept rounds)
# waited on the scheduler: measured (stories260K at -O3 -fopenmp and -Ofast -fopenmp -march=native,
# 30 runs each, on this 2-core machine): 2 threads alone use 1.90-1.92 CPUs (lowest run 1.57); with
# ``python3 -c "while True: pass"`` beside them 1.06-1.11 (highest 1.26), and decode 6-11x slower
FIT_SHARE = 0.75


def unfit_reason(threads: int | None, cpu_share: float | None) -> str:
    """Why a run of ``threads`` OpenMP threads that used ``cpu_share`` CPUs (CPU time over wall
    time) cannot be gated, or "" when it can: each thread of a parallel region waits at the barrier
    for the slowest, so a run with fewer free CPUs than threads is paced by the scheduler and by
    the node's other work, not by the code (compare.Metric.unfit)."""
    if not threads or threads < 2 or cpu_share is None or cpu_share >= FIT_SHARE * threads:
        return ""
    return (f"oversubscribed: {threads} OpenMP threads got {cpu_share:.2f} CPUs (other work held the rest of "
            f"the node), so their speed says more of the neighbours than of the code: not decided")


def describe(argv: Sequence[str]) -> str:
    return " ".join(a if a and " " not in a else repr(a) for a in argv)
