"""``perf stat`` and ``perf record`` as profilers: availability, the command lines, and reading their files. No pytest.

perf stat 6.1 does not pass its command's exit status on reliably (it exits 0 for a death by a
signal, always, and for about 1 in 8 runs of a command that fails at once); :class:`PerfStat` runs
the command under a small wrapper, :file:`exitstatus.c`, which writes it to a file. perf record
waits for its command and passes its status on (a signal by dying of it).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from .base import Completed, Profile, Profiler, ProfilerError, Reading, checked, child_failed, ended, killed_by, tail
from .perf_parse import (
    SEP,
    PerfEventError,
    PerfParseError,
    _quote,
    parse_report,
    parse_stat_csv,
    readings,
    stat_summary,
    symbols_table,
)


def unavailable_reason(perf: str = "perf", paranoid_path: str = "/proc/sys/kernel/perf_event_paranoid") -> str | None:
    """None when ``perf stat`` can run here, else why not, in one line (tool missing, or
    perf_event_paranoid forbids unprivileged counting)."""
    path = shutil.which(perf)
    if path is None:
        return f"perf not found on PATH ({perf!r}; on Debian: apt-get install linux-perf)"
    try:
        level = int(Path(paranoid_path).read_text().strip())
    except (OSError, ValueError):
        return None
    if level > 2 and os.geteuid() != 0:
        return (f"kernel.perf_event_paranoid is {level}: unprivileged processes may not use perf "
                f"(sysctl kernel.perf_event_paranoid=2 or lower)")
    return None


def _check_events(events: Iterable[object]) -> tuple[str, ...]:
    out = tuple(str(e).strip() for e in events if str(e).strip())
    if not out:
        raise ValueError("perf stat needs at least one event")
    return out


# -- the exit status of the command under perf stat ---------------------------------------------

EXITSTATUS_SOURCE = Path(__file__).with_name("exitstatus.c")
EXITSTATUS_NAME = "llmperf_exitstatus"
# static first: no dynamic linker in the counts (an empty program's page faults: 49 bare, 74 under
# the static wrapper, 103 under a dynamic one); where no static libc is installed, dynamic
EXITSTATUS_FLAGS = ("-O2 -static", "-O2")
#: what the wrapper adds to the counts of every run, measured on our 2-core CI VM (perf 6.1) with
#: 60 runs each of an empty C program: bare, then under the static wrapper (see PerfStat)
EXITSTATUS_COST = "about 25 page-faults, 0.7 ms of task-clock and 2-4 context-switches per run"

# without a C compiler, sh stands in for the wrapper: $0 is the status file, "$@" the command. It
# costs more (about 65 page-faults and 0.8 ms of task-clock per run) and reports a death by signal
# N as a shell does, as the code 128+N
SH_WRITE = '"$@"; s=$?; echo "shell $s" > "$0" || exit 126; exit "$s"'
SH_READ = ('"$@"; p=$?; read -r kind code 2>/dev/null < "$0"; '
           'if [ "$kind" = shell ] && [ "$code" != 0 ]; then exit "$code"; fi; exit "$p"')
SH_NOTE = "the counts include a shell's start-up, and a death by signal N reads as exit code 128+N"

_STATUS = re.compile(r"(exit|signal|spawn-error|shell) ([0-9]{1,4})\n?")


class PerfStat(Profiler):
    """``perf stat -x, -o FILE -e EVENT ... -- command``: counters as metrics.

    The command's exit status comes from a file, not from perf: perf stat 6.1 exits 0 when the
    command is killed by a signal, and also, about 1 run in 8 here, when the command exits at once
    with a failure (perf's SIGCHLD handler clears the child's pid, and perf then never waits for
    it). perf runs :file:`exitstatus.c` (built once into the cache, as the valgrind fake clock is),
    which runs the command, writes its status to ``<tag>.perf-stat.status`` and exits as it did;
    :meth:`collect` trusts that file over perf's exit code, and a missing one (the wrapper never
    ran, or was killed) is an error. The command line starts with the same program in its other
    mode, which runs perf and exits as the command did when it failed: a caller that reads only the
    exit status (the llama2.c runner of ``--llmperf-profile-inline``) sees the failure too.

    perf counts the whole process tree, the wrapper included: it adds a constant to every run,
    measured (60 runs of an empty C program each, ``perf stat -x, -e
    task-clock,page-faults,context-switches``): bare, task-clock 0.66 ms, page-faults 49 (47-51),
    context-switches 0; under the static wrapper 1.40 ms, 74 (72-77), 2-4 (2-6). That is
    :data:`EXITSTATUS_COST`. An empty static program costs 26 page-faults under perf stat: the
    wrapper is at that floor (a dynamic build would add 54). The cost is the same for every run of
    every program, so runs under the wrapper compare with each other as before; against a baseline
    saved before the wrapper, perf.page-faults reads about 25 more (llama2.c on stories260K, 64
    steps: 135 bare, 161 wrapped, +19%), and such a baseline is to be saved again. Hardware
    counters are not supported on that VM. Without a C compiler, ``sh`` stands in for the wrapper
    (see :data:`SH_NOTE`).
    """

    name = "perf-stat"
    runs_default = 3

    def __init__(self, perf: str = "perf", events: Iterable[object] | None = None, cc: str = "cc",
                 cache_dir: str | os.PathLike[str] | None = None):
        from . import DEFAULT_PERF_EVENTS

        self.perf = perf
        self.events = _check_events(events or DEFAULT_PERF_EVENTS)
        self.cc = cc
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._wrapper_tried = False
        self._wrapper: Path | None = None
        self._wrapper_problem = ""

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self.perf)

    def exit_status_wrapper(self) -> Path | None:
        """:file:`exitstatus.c` built into the cache (once per cache, whatever the number of
        profiler objects), or None when it cannot be built; :attr:`exit_status_problem` then
        says why, and ``sh`` stands in for it."""
        if self._wrapper_tried:
            return self._wrapper
        self._wrapper_tried = True
        from ..native.build import BuildError, CompilerNotFound, FlagsRejected, build
        from ..native.cache import CacheError, default_cache_dir

        cache = self.cache_dir if self.cache_dir is not None else default_cache_dir()
        problem = ""
        for flags in EXITSTATUS_FLAGS:
            try:
                self._wrapper = build(EXITSTATUS_SOURCE, flags, cache, cc=self.cc, name=EXITSTATUS_NAME).resolve()
                return self._wrapper
            except (CompilerNotFound, FlagsRejected, BuildError, CacheError, OSError, TimeoutError) as exc:
                first = str(exc).strip().splitlines()
                problem = problem or (first[0] if first else type(exc).__name__)
                if isinstance(exc, (CompilerNotFound, CacheError)):
                    break  # no other flags would help
        self._wrapper_problem = f"cannot build {EXITSTATUS_SOURCE.name}: {problem}"
        return None

    @property
    def exit_status_problem(self) -> str:
        return self._wrapper_problem

    @staticmethod
    def files(outdir: Path, tag: str) -> tuple[Path, Path]:
        """The counters (``-o`` file) and the command's exit status of the run ``tag``."""
        return outdir / f"{tag}.perf-stat.csv", outdir / f"{tag}.perf-stat.status"

    def wrap(self, argv: Sequence[str], outdir: Path, tag: str) -> tuple[list[str], dict[str, str]]:
        csv, status = self.files(Path(outdir).absolute(), tag)
        for stale in (csv, status):  # never read a previous run's output
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                pass  # perf's -o, or the wrapper, then says what is wrong with the directory
        perf = [shutil.which(self.perf) or self.perf, "stat", "-x", ",", "-o", str(csv)]
        for event in self.events:
            perf += ["-e", event]
        wrapper = self.exit_status_wrapper()
        if wrapper is not None:
            w = str(wrapper)
            cmd = [w, "read", str(status), "--", *perf, "--", w, "write", str(status), "--"]
        else:
            sh = shutil.which("sh") or "/bin/sh"
            cmd = [sh, "-c", SH_READ, str(status), *perf, "--", sh, "-c", SH_WRITE, str(status)]
        return cmd + list(argv), {"LC_ALL": "C"}

    @staticmethod
    def command_of(argv: Iterable[str]) -> tuple[list[str], bool]:
        """The profiled command in a command line of :meth:`wrap`, and True; in a plain ``perf
        stat ... -- command``, the command after the ``--``, and False."""
        argv = list(argv)
        for i in range(1, len(argv) - 2):
            if argv[i] == "write" and argv[i + 2] == "--" and Path(argv[i - 1]).name == EXITSTATUS_NAME:
                return argv[i + 3:], True
            if argv[i] == SH_WRITE:
                return argv[i + 2:], True
        return (argv[argv.index("--") + 1:] if "--" in argv else argv[-1:]), False

    def _check_status(self, status: Path, done: Completed, program: str) -> str:
        """Raises ProfilerError unless ``status`` says that the command succeeded; returns what it says."""
        from dataclasses import replace

        name = Path(program).name
        try:
            text = status.read_bytes().decode("ascii", "replace")
        except FileNotFoundError:
            shown = tail(done.stderr) or tail(done.stdout) or "(no output)"
            raise ProfilerError(f"perf-stat: the exit status of {name} under perf-stat is unknown: the exec wrapper "
                                f"wrote no {status} (it never ran, or was killed); perf stat {ended(done.returncode)}; "
                                f"stderr ends with:\n{shown}") from None
        except OSError as exc:
            raise ProfilerError(f"perf-stat: cannot read {status}: {exc.strerror or exc}") from None
        match = _STATUS.fullmatch(text)
        value = int(match.group(2)) if match else -1
        kind = match.group(1) if match else ""
        if match is None or (kind == "signal" and not 0 < value < 128) or (kind in ("exit", "shell") and value > 255):
            raise ProfilerError(f"perf-stat: {status} holds no exit status: {_quote(text)} (the exec wrapper was "
                                f"killed while writing it?)")
        if kind == "spawn-error":
            raise ProfilerError(f"perf-stat: cannot run {program} under perf-stat: {os.strerror(value)}")
        if kind == "signal":
            raise child_failed(self, replace(done, returncode=-value), program)
        if value != 0:
            hint = f"as sh reports it: a death by {killed_by(value - 128)} reads so too" if (
                kind == "shell" and value > 128) else ""
            raise child_failed(self, replace(done, returncode=value), program, hint)
        if done.returncode != 0:  # the command succeeded and perf did not
            raise ProfilerError(f"perf-stat: perf stat {ended(done.returncode)} after {name} under it exited with "
                                f"code 0; stderr ends with:\n{tail(done.stderr) or '(no output)'}")
        return text.strip()

    def collect(self, outdir: Path, tag: str, done: Completed) -> Profile:
        path, status = self.files(Path(outdir), tag)
        if "event syntax error" in done.stderr:
            try:
                parse_stat_csv(done.stderr[done.stderr.index("event syntax error"):])
            except PerfEventError as exc:
                raise ProfilerError(f"perf-stat: {exc} (events: {','.join(self.events)})") from None
        command, wrapped = self.command_of(done.argv)
        program = command[0] if command else "the command"
        exit_status = None
        if wrapped or status.exists():
            exit_status = self._check_status(status, done, program)
        elif done.returncode != 0:  # a command line not of wrap(): perf's exit code is all there is
            raise child_failed(self, done, program)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")  # perf's file, whatever its bytes
        except OSError as exc:
            raise ProfilerError(f"perf-stat: perf stat wrote no output file {path}: {exc.strerror or exc}") from None
        try:
            counters = parse_stat_csv(text, name=str(path))
        except PerfParseError as exc:
            raise ProfilerError(f"perf-stat: {exc}") from None
        if not counters:
            raise ProfilerError(f"perf-stat: perf stat wrote no counters to {path}")
        got, missing = readings(counters)
        got = checked("perf-stat", got, str(path))
        details: dict[str, object] = {
            "counters": [{"event": c.event, "value": c.value, "unit": c.unit, "status": c.status,
                          "running_pct": c.running_pct} for c in counters]}
        summary = stat_summary(counters)
        if exit_status is not None:
            by_sh = exit_status.startswith("shell")
            details["exit_status"] = exit_status
            details["exec_wrapper"] = ("sh" if by_sh else EXITSTATUS_NAME)
            details["exec_wrapper_cost"] = SH_NOTE if by_sh else EXITSTATUS_COST
            if by_sh:
                why = f" ({self._wrapper_problem})" if self._wrapper_problem else ""
                summary += f"; exit status by sh{why}: {SH_NOTE}"
        return Profile("perf-stat", got, [path], summary, missing, details)


# -- perf record -------------------------------------------------------------------------------

def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


class PerfRecord(Profiler):
    """``perf record -F FREQ -g -o perf.data -- command``; the data file is kept and the top
    symbols are read with ``perf report``. It records no gated metric: it is for reading."""

    name = "perf-record"
    runs_default = 1

    def __init__(self, perf: str = "perf", freq: int = 999):
        self.perf = perf
        self.freq = int(freq)

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self.perf)

    def wrap(self, argv: Sequence[str], outdir: Path, tag: str) -> tuple[list[str], dict[str, str]]:
        perf = shutil.which(self.perf) or self.perf
        return [perf, "record", "-F", str(self.freq), "-g", "-o", str(outdir / f"{tag}.perf.data"), "--", *argv], {}

    def report(self, data: Path) -> str:
        """What ``perf report`` says of ``data``: the top symbols by share, with the sample count."""
        import subprocess

        cmd = [shutil.which(self.perf) or self.perf, "report", "-i", str(data), "--stdio", "--no-children",
               "--sort", "sym,dso", "-F", "overhead,sym,dso", "-g", "none", "--percent-limit", "0", "-t", SEP]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C"})
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProfilerError(f"perf-record: perf report on {data} failed: {exc}") from None
        # symbol names are bytes of the binaries: any encoding, or none
        stdout, stderr = (b.decode("utf-8", "replace") for b in (out.stdout, out.stderr))
        if out.returncode != 0:
            raise ProfilerError(f"perf-record: perf report on {data} exited with code {out.returncode}; "
                                f"stderr ends with:\n{tail(stderr)}")
        return stdout

    def collect(self, outdir: Path, tag: str, done: Completed) -> Profile:
        data = outdir / f"{tag}.perf.data"
        if done.returncode != 0:
            raise child_failed(self, done, done.argv[done.argv.index("--") + 1])
        if not data.is_file():
            raise ProfilerError(f"perf-record: perf record wrote no {data}; stderr ends with:\n{tail(done.stderr)}")
        try:
            samples, event, rows = parse_report(self.report(data), f"perf report on {data}")
        except PerfParseError as exc:
            raise ProfilerError(f"perf-record: {exc}") from None
        report = outdir / f"{tag}.perf-report.txt"
        header = f"perf record -F {self.freq}: {samples or 0} samples of {event or '?'}\n"
        report.write_text(header + symbols_table(rows), encoding="utf-8", errors="replace")
        if not rows:
            summary = f"no samples ({event or 'no event'}): the run was shorter than the sampling period"
        else:
            top = ", ".join(f"{s.share:.1f}% {_short(s.symbol)} ({s.dso})" for s in rows[:3])
            summary = f"{samples} samples of {event}; top: {top}"
        got = [Reading("perf.samples", float(samples), "", higher_is_better=False, gate=False)] if samples else []
        got = checked("perf-record", got, str(data))
        details = {"samples": samples, "event": event,
                   "top_symbols": [{"share": s.share, "symbol": s.symbol, "dso": s.dso} for s in rows[:10]]}
        return Profile("perf-record", got, [data, report], summary, {}, details)
