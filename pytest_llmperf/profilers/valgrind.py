"""Instruction counts under ``valgrind --tool=callgrind``: a deterministic metric. No pytest.

Callgrind counts every instruction the program executes (the ``Ir`` event). Unlike a time, that
count does not depend on the machine's load, frequency or caches, so it can be compared exactly:
one run is enough, and a change beyond a small tolerance (:data:`DEFAULT_TOLERANCE`) is a change in
the work the program does. Three things would still make it move from run to run, and are removed:

* the clock: a program that prints what it measured formats different digits on every run, and
  glibc's float printing costs a different number of instructions for different digits (a few
  hundred in llama2.c's "achieved tok/s" line). :file:`fakeclock.c`, built once into the cache and
  preloaded, replaces the clock with a counter (see there); without a C compiler the run goes on
  without it and the reading says so.
* threads: valgrind runs one thread at a time, and an OpenMP runtime that spin-waits for its
  workers executes as many idle instructions as the scheduler happens to give it. The count is of
  the work done, on one thread: ``OMP_NUM_THREADS`` (and the usual BLAS thread variables) are
  forced to 1.
* valgrind's own messages go to a log file next to the output, so the program's stderr stays its own.

The count still depends, by a few instructions per byte, on the size of the environment and of the
command line (the dynamic linker and libc walk them); runs with the same command in the same CI
job agree exactly, and runs on another machine agree well within the tolerance.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from . import base
from .base import Completed, Profile, Profiler, ProfilerError, Reading

#: relative tolerance of the instruction count: beyond it, a change is a regression (or a gain)
DEFAULT_TOLERANCE = 0.001

FAKECLOCK_SOURCE = Path(__file__).with_name("fakeclock.c")
FAKECLOCK_FLAGS = "-O2 -shared -fPIC"
FAKECLOCK_NAME = "libllmperf_fakeclock.so"
FAKECLOCK_STEP = "1 ms per call"  # FAKECLOCK_STEP_NS in fakeclock.c
NO_FAKE_CLOCK_NOTE = "no fake clock: time-dependent output may change the count by a few hundred instructions"

# each of these runs the program's parallel regions on one thread
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

TOP_IN_FILE = 50  # functions listed in <tag>-top.txt
TOP_IN_DETAILS = 10  # in the JSON report
TOP_IN_SUMMARY = 3  # in the one-line summary

# the log lines of valgrind failing, rather than the program under it
_VALGRIND_FAILED = ("the 'impossible' happened", "Valgrind: FATAL", "Fatal error at startup",
                    "VALGRIND INTERNAL ERROR", "Valgrind's memory management: out of memory")
_PRELOAD_FAILED = "from LD_PRELOAD cannot be preloaded"


class ValgrindParseError(ValueError):
    """A callgrind output file is not what callgrind writes; the message names the file and line."""


# ---------------------------------------------------------------------------------------------
# the callgrind output format (https://valgrind.org/docs/manual/cl-format.html)

# the three name spaces of name compression: "(12) name" defines id 12, "(12)" refers to it
_NAME_SPACE = {"fn": "fn", "cfn": "fn", "jfn": "fn",
               "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl", "jfi": "fl",
               "ob": "ob", "cob": "ob"}
_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9_]*):\s*(.*)$")
_SPEC = re.compile(r"([a-z]+)=(.*)$")
_COMPRESSED = re.compile(r"\((\d+)\)(?:\s+(.*))?$")
_RECURSION = re.compile(r"'\d+$")  # callgrind's name'2 for the second level of a recursion
_POSITION = re.compile(r"(?:[+-]?\d+|[+-]?0x[0-9a-fA-F]+|\*)$")


def _events(line: str, where: str) -> list[str]:
    events = line.split(":", 1)[1].split()
    if not events:
        raise ValgrindParseError(f"{where}: empty 'events:' line")
    return events


def _ir_index(events: list[str], where: str) -> int:
    if "Ir" not in events:
        raise ValgrindParseError(f"{where}: no Ir event in 'events: {' '.join(events)}' "
                                 f"(callgrind counts Ir unless told otherwise)")
    return events.index("Ir")


_COST = re.compile(r"[0-9]{1,20}")  # callgrind's costs are unsigned 64-bit counts, in decimal
MAX_COST = 2 ** 64 - 1


def _cost(fields: list[str], index: int, where: str) -> int:
    """The ``index``-th cost of a line; a line may leave trailing costs out (they are zero). A
    cost is an unsigned 64-bit count in ASCII decimal digits (int() would also take a sign,
    underscores and other scripts' digits, and any number of them)."""
    if index >= len(fields):
        return 0
    text = fields[index]
    if text.startswith("-") and _COST.fullmatch(text[1:]):
        raise ValgrindParseError(f"{where}: negative cost {text}")
    if not _COST.fullmatch(text):
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise ValgrindParseError(f"{where}: cost {shown} is not an integer (an unsigned 64-bit count)")
    value = int(text)
    if value > MAX_COST:
        raise ValgrindParseError(f"{where}: cost {text} is out of range (more than 2^64 - 1)")
    return value


def parse_callgrind_totals(text: str, name: str = "callgrind output") -> int:
    """The total instruction count (Ir) of a callgrind output file: its ``totals:`` line (summed
    when the file holds several parts), else its ``summary:`` line. Ir is found by its place in
    the ``events:`` line. ``name`` (the file's path) is used in the messages of
    :class:`ValgrindParseError`, raised when there is no events line, no Ir, or no total."""
    events: list[str] | None = None
    totals: list[int] = []
    summary: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}, line {number}"
        if line.startswith("events:"):
            events = _events(line, where)
        elif line.startswith(("totals:", "summary:")):
            if events is None:
                raise ValgrindParseError(f"{where}: {line.split(':')[0]}: line before the events: line")
            value = _cost(line.split(":", 1)[1].split(), _ir_index(events, where), where)
            if line.startswith("totals:"):
                totals.append(value)
            elif summary is None:
                summary = value
    if events is None:
        raise ValgrindParseError(f"{name}: no 'events:' line: not a callgrind output file")
    if totals:
        return sum(totals)
    if summary is not None:
        return summary
    raise ValgrindParseError(f"{name}: no 'totals:' or 'summary:' line: the file is cut short "
                             f"or not a callgrind output file")


def _self_costs(text: str, name: str) -> dict[tuple[str, str, str], int]:
    """Self Ir per function, keyed by (object, file, function); the file is the one named by the
    ``fl=`` line before the ``fn=`` line (``fi=``/``fe=`` name the files of inlined code, which
    stays the function's own cost), and the levels of a recursion (callgrind's ``name'2``) are
    one function. The cost line after a ``calls=`` line is the inclusive cost of that call and
    belongs to the callee, not to the caller's self cost."""
    names: dict[str, dict[str, str]] = {"fn": {}, "fl": {}, "ob": {}}
    positions = 1
    ir = None
    events_line = None
    ob = fl = ""
    key: tuple[str, str, str] | None = None
    after_calls = False
    costs: dict[tuple[str, str, str], int] = {}

    def uncompress(kind: str, value: str, where: str) -> str:
        match = _COMPRESSED.match(value.strip())
        if match is None:
            return value.strip()
        table = names[_NAME_SPACE[kind]]
        ident, given = match.group(1), match.group(2)
        if given is not None:
            table[ident] = given
            return given
        if ident not in table:
            raise ValgrindParseError(f"{where}: {kind}=({ident}) refers to a name never defined")
        return table[ident]

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{name}, line {number}"
        first = line[0]
        if first.isdigit() or first in "+-*":
            if ir is None:
                raise ValgrindParseError(f"{where}: cost line before the events: line")
            fields = line.split()
            if len(fields) < positions or not all(_POSITION.match(f) for f in fields[:positions]):
                raise ValgrindParseError(f"{where}: unparsable cost line {raw!r}")
            if after_calls:  # the inclusive cost of the call just named: not self cost
                after_calls = False
                _cost(fields[positions:], ir, where)
                continue
            if key is None:
                raise ValgrindParseError(f"{where}: cost line before any fn= line")
            costs[key] = costs.get(key, 0) + _cost(fields[positions:], ir, where)
            continue
        spec = _SPEC.match(line)
        if spec is not None and spec.group(1) in _NAME_SPACE:
            kind, value = spec.group(1), uncompress(spec.group(1), spec.group(2), where)
            if kind == "ob":
                ob = value
            elif kind == "fl":
                fl = value
            elif kind == "fn":
                key = (ob, fl, _RECURSION.sub("", value))
                costs.setdefault(key, 0)
            continue
        if spec is not None and spec.group(1) == "calls":
            after_calls = True
            continue
        if spec is not None and spec.group(1) in ("jump", "jcnd"):
            continue  # jump counts (--collect-jumps=yes): no cost line follows
        header = _HEADER.match(line)
        if header is not None:
            key_name = header.group(1)
            if key_name == "events":
                events_line = _events(line, where)
                ir = _ir_index(events_line, where)
            elif key_name == "positions":
                positions = len(header.group(2).split()) or 1
            continue
        raise ValgrindParseError(f"{where}: not a callgrind output line: {raw[:80]!r}")
    if events_line is None:
        raise ValgrindParseError(f"{name}: no 'events:' line: not a callgrind output file")
    return costs


def top_functions(text: str, top: int | None = 10, name: str = "callgrind output") -> list[tuple[str, int, float]]:
    """The functions of a callgrind output file by self instruction count, largest first:
    ``(function, self_ir, share)`` with ``share`` the fraction (0..1) of all instructions.
    ``top=None`` lists them all (the self costs then add up to the file's total). A function name
    found in two objects or files (a static function, ld.so's own ``memcpy``) gets the object's
    or the file's base name in brackets. Functions that executed nothing are left out."""
    costs = _self_costs(text, name)
    total = sum(costs.values())
    by_name: dict[str, list[tuple[str, str, str]]] = {}
    for key in costs:
        by_name.setdefault(key[2], []).append(key)
    merged: dict[str, int] = {}
    for fn, keys in by_name.items():
        for ob, fl, _ in keys:
            label = fn
            if len(keys) > 1:
                obs = {k[0] for k in keys}
                where = os.path.basename(ob) if len(obs) > 1 else os.path.basename(fl)
                label = f"{fn} [{where or '?'}]"
            merged[label] = merged.get(label, 0) + costs[(ob, fl, fn)]
    rows = sorted(((label, ir) for label, ir in merged.items() if ir > 0), key=lambda r: (-r[1], r[0]))
    if top is not None:
        rows = rows[:top]
    return [(label, ir, ir / total if total else 0.0) for label, ir in rows]


def format_top(rows: list[tuple[str, int, float]], total: int) -> str:
    """The text of ``<tag>-top.txt``."""
    lines = [f"instructions executed (callgrind Ir), self cost by function; {total:,} in all",
             f"{'share':>8}  {'instructions':>15}  function"]
    for fn, ir, share in rows:
        lines.append(f"{share * 100:7.2f}%  {ir:>15,}  {fn}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the profiler

def _valgrind_path(path: Path) -> str:
    """A file name for valgrind's --*-file options, which expand %p, %q{VAR} and %%."""
    return str(path).replace("%", "%%")


class Instructions(Profiler):
    """Total instructions executed (callgrind's Ir), with the clock faked and one OpenMP thread."""

    name = "instructions"
    runs_default = 1  # deterministic: one run is the measurement

    def __init__(self, valgrind: str = "valgrind", cc: str = "cc", cache_dir: str | os.PathLike | None = None):
        self.valgrind = valgrind
        self.cc = cc
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.version = ""
        self._checked = False
        self._reason: str | None = None
        self._shim_tried = False
        self._shim: Path | None = None
        self._shim_problem = ""
        self._programs: dict[str, str] = {}

    # -- availability ---------------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        if not self._checked:
            self._reason = self._check()
            self._checked = True
        return self._reason

    def _check(self) -> str | None:
        path = shutil.which(self.valgrind)
        if path is None:
            return f"valgrind not found on PATH ({self.valgrind!r}; on Debian: apt-get install valgrind)"
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, errors="replace", timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"valgrind ({path}) does not run: {exc}"
        if out.returncode != 0:
            why = base.tail(out.stderr, 1) or base.tail(out.stdout, 1) or "(no output)"
            return f"valgrind ({path}) does not run: 'valgrind --version' exited with code {out.returncode}: {why}"
        self.version = next(iter(out.stdout.strip().splitlines()), "")  # "valgrind-3.19.0": one line
        return None

    # -- the fake clock ---------------------------------------------------------------------------

    def fake_clock(self) -> Path | None:
        """The fake-clock shim, built into the cache on first use (once per cache, whatever the
        number of profiler objects), or None when it cannot be built; :attr:`fake_clock_problem`
        then says why."""
        if self._shim_tried:
            return self._shim
        self._shim_tried = True
        from ..native.build import BuildError, CompilerNotFound, FlagsRejected, build
        from ..native.cache import CacheError, default_cache_dir

        cache = self.cache_dir if self.cache_dir is not None else default_cache_dir()
        try:
            shim = build(FAKECLOCK_SOURCE, FAKECLOCK_FLAGS, cache, cc=self.cc, name=FAKECLOCK_NAME).resolve()
        except (CompilerNotFound, FlagsRejected, BuildError, CacheError, OSError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()
            self._shim_problem = f"cannot build {FAKECLOCK_SOURCE.name}: {first[0] if first else type(exc).__name__}"
            return None
        if any(c in str(shim) for c in " :"):  # LD_PRELOAD separates its entries by spaces and colons
            self._shim_problem = f"the shim's path {shim} has a space or a colon, which LD_PRELOAD cannot hold"
            return None
        self._shim = shim
        return shim

    @property
    def fake_clock_problem(self) -> str:
        return self._shim_problem

    # -- running ----------------------------------------------------------------------------------

    @staticmethod
    def files(outdir: Path, tag: str) -> tuple[Path, Path, Path]:
        """The callgrind output, the valgrind log and the top-functions list of the run ``tag``."""
        outdir = Path(outdir).absolute()
        return (outdir / f"{tag}.callgrind.out", outdir / f"{tag}.valgrind.log", outdir / f"{tag}-top.txt")

    def wrap(self, argv: Sequence[str], outdir: Path, tag: str) -> tuple[list[str], dict[str, str]]:
        out_file, log_file, top_file = self.files(outdir, tag)
        for stale in (out_file, log_file, top_file):  # never read a previous run's output
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
        self._programs[tag] = str(argv[0]) if argv else "?"
        cmd = [self.valgrind, "--tool=callgrind", f"--callgrind-out-file={_valgrind_path(out_file)}",
               f"--log-file={_valgrind_path(log_file)}", *argv]
        env = dict(SINGLE_THREAD_ENV)
        shim = self.fake_clock()
        if shim is not None:
            # run() adds these to the environment it runs with, which is os.environ unless it was given one
            env["LD_PRELOAD"] = str(shim)  # base.run puts it before the command's own LD_PRELOAD
        return cmd, env

    def collect(self, outdir: Path, tag: str, done: Completed) -> Profile:
        out_file, log_file, top_file = self.files(outdir, tag)
        program = self._programs.get(tag) or (done.argv[4] if len(done.argv) > 4 else "the program")
        log = _read(log_file)
        if done.returncode != 0:
            launcher = [line for line in done.stderr.splitlines() if line.startswith("valgrind: ")]
            if launcher:
                raise ProfilerError(f"{self.name}: valgrind cannot run {program} "
                                    f"(exit code {done.returncode}): {launcher[0][len('valgrind: '):]}")
            if "Unrecognised instruction" in log or "unhandled instruction bytes" in log:
                # not the program's fault: valgrind cannot emulate an instruction it was built with
                # (AVX-512 from -march=native on a recent x86, say); no count can be had here
                raise base.ProfilerUnavailable(
                    f"{self.name}: {self.version or 'valgrind'} does not recognise an instruction of "
                    f"{Path(program).name} (a binary built for this CPU: -march=native with AVX-512?)")
            if any(marker in log for marker in _VALGRIND_FAILED):
                raise ProfilerError(f"{self.name}: valgrind itself failed while running {program} "
                                    f"(exit code {done.returncode}); {log_file} ends with:\n{base.tail(log, 8)}")
            raise base.child_failed(self, done, program)
        if not out_file.is_file():
            shown = base.tail(log) or base.tail(done.stderr) or "(no log)"
            raise ProfilerError(f"{self.name}: valgrind wrote no callgrind output file {out_file}; "
                                f"its log ends with:\n{shown}")
        text = _read(out_file)
        try:
            total = parse_callgrind_totals(text, str(out_file))
            everything = top_functions(text, top=None, name=str(out_file))
        except ValgrindParseError as exc:
            raise ProfilerError(f"{self.name}: cannot read valgrind's callgrind output: {exc}") from None

        shim, problem = self._shim, self._shim_problem
        if shim is not None and _PRELOAD_FAILED in done.stderr and str(shim) in done.stderr:
            shim, problem = None, "the dynamic linker did not preload it"
        if shim is None:
            note = f"{NO_FAKE_CLOCK_NOTE} ({problem})" if problem else NO_FAKE_CLOCK_NOTE
        else:
            note = f"callgrind Ir, OMP_NUM_THREADS=1, fake clock ({FAKECLOCK_STEP})"

        top_file.write_text(format_top(everything[:TOP_IN_FILE], total), encoding="utf-8", errors="replace")
        files = [out_file] + ([log_file] if log_file.is_file() else []) + [top_file]
        clock = "fake clock" if shim is not None else "real clock"
        head = ", ".join(f"{share * 100:.1f}% {fn}" for fn, _, share in everything[:TOP_IN_SUMMARY])
        summary = f"{total:,} instructions (callgrind, 1 thread, {clock})" + (f"; top: {head}" if head else "")
        details = {
            "top_functions": [{"function": fn, "self_ir": ir, "share": round(share, 6)}
                              for fn, ir, share in everything[:TOP_IN_DETAILS]],
            "valgrind": self.version,
            "fake_clock": str(shim) if shim is not None else None,
            "fake_clock_problem": problem if shim is None else "",
            "environment": dict(SINGLE_THREAD_ENV),
        }
        reading = Reading("instructions", total, "instr", higher_is_better=False, exact=True, note=note)
        readings = base.checked(self.name, [reading], str(out_file))
        return Profile(kind=self.name, readings=readings, files=files, summary=summary, details=details)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
