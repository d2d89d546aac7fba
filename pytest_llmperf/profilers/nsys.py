"""Nsight Systems (``nsys``): where it is installed, whether a GPU is there, and its kernel summary.

A run is profiled by ``nsys profile --trace=cuda,nvtx --sample=none --cpuctxsw=none`` (CUDA and NVTX
tracing only: no CPU sampling, no context-switch tracing), which writes ``<tag>.nsys-rep`` (older
nsys wrote ``<tag>.qdrep``) and exits with the profiled command's status. The report is
then summarised by ``nsys stats --report cuda_gpu_kern_sum --format csv --output <tag>``, which
exports it to SQLite next to it and writes ``<tag>_cuda_gpu_kern_sum.csv``: one row per kernel
name, slowest first, with the columns

    "Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"

Older nsys called the report ``gpukernsum`` and its columns ``"Time(%)"``, ``"Average"``,
``"Minimum"``, ``"Maximum"`` (no median; the standard deviation only in some versions), so
columns are found by name. Names are C++ signatures full of commas and quotes, hence CSV quoting;
numbers may carry thousands separators. Printed to stdout, the table follows lines that are not
CSV ("Generating SQLite file ...", "Processing [...] with [...]...", " ** CUDA GPU Kernel Summary
(cuda_gpu_kern_sum):", NOTICEs), which are skipped. A report without kernels gives no table, only
"SKIPPED: ... does not contain CUDA kernel data.". No pytest here; stdlib only.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import base

# Where nsys is looked for after PATH, in this order; a pattern's matches go newest version first.
# $VARS are expanded from the environment, and a pattern whose variable is unset is skipped.
SEARCH_ROOTS = (
    "$CUDA_HOME/bin",
    "$CUDA_PATH/bin",
    "/usr/local/cuda/bin",  # the CUDA toolkit links nsys here
    "/usr/local/cuda-*/bin",
    "/usr/local/cuda*/nsight-systems-*/bin",  # the copy the CUDA toolkit ships
    "/opt/nvidia/nsight-systems/*/bin",  # the standalone Nsight Systems installers
    "/opt/nvidia/nsight-systems-cli/*/bin",  # the CLI-only package
)

KERNEL_REPORT = "cuda_gpu_kern_sum"  # its name in current nsys
OLD_KERNEL_REPORT = "gpukernsum"  # the same report in older nsys
REPORT_SUFFIXES = (".nsys-rep", ".qdrep")  # .qdrep: older nsys
NO_KERNELS = "no CUDA kernels recorded"
GPU_DEVICES = "/dev/nvidia[0-9]*"


class NsysParseError(ValueError):
    """nsys stats printed something that is not a kernel summary; the one-line message names the
    file and line, and quotes the line."""


def _quote(line: str, width: int = 200) -> str:
    """A line for an error message: repr (one line, whatever it holds), cut at ``width``."""
    return repr(line) if len(line) <= width else repr(line[:width]) + "..."


@dataclass(frozen=True)
class Kernel:
    """One row of the kernel summary: every launch of one kernel name. Times in nanoseconds."""

    name: str
    time_pct: float  # share of all kernels' GPU time
    total_ns: float
    instances: int  # launches
    avg_ns: float
    med_ns: float | None  # None: the report has no median (older nsys)
    min_ns: float
    max_ns: float
    stddev_ns: float | None  # None: the report has no standard deviation


# ---------------------------------------------------------------------------- finding nsys

def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _version_key(path: str) -> tuple:
    """Sorts ``.../2024.5.1/bin`` after ``.../2023.4/bin`` and ``cuda-12.4`` after ``cuda-11.8``:
    the numbers in the path, compared as numbers (a longer version is the newer one). A number is
    compared by its digits without leading zeros, shorter first, never converted: a path may hold
    digits beyond int()'s limit, or of other scripts."""
    numbers = (n.lstrip("0") for n in re.findall(r"[0-9]+", path))
    return tuple((len(n), n) for n in numbers), path


def _expand(pattern: str) -> str | None:
    """The pattern with its $VARIABLES filled in; None when one of them is unset or empty."""
    for match in re.finditer(r"\$(?:\{(\w+)\}|(\w+))", pattern):
        if not os.environ.get(match.group(1) or match.group(2)):
            return None
    return os.path.expandvars(pattern)


def find_nsys(explicit: str | None = None, path_env: str | None = None,
              roots: Sequence[str] | None = None) -> str | None:
    """The nsys executable to use, or None. An ``explicit`` path (--llmperf-nsys) is the answer
    when it is an executable file (a bare name is looked up on PATH) and never replaced by a
    search; otherwise PATH (``path_env`` instead of $PATH when given), then ``roots`` (directories
    or glob patterns, default :data:`SEARCH_ROOTS`), each pattern's matches newest version first."""
    if explicit:
        if os.sep not in explicit:
            found = shutil.which(explicit, path=path_env)
            return found if found and _executable(found) else None
        return explicit if _executable(explicit) else None
    found = shutil.which("nsys", path=path_env)
    if found:
        return found
    for pattern in SEARCH_ROOTS if roots is None else roots:
        expanded = _expand(pattern)
        if expanded is None:
            continue
        for directory in sorted(glob.glob(expanded), key=_version_key, reverse=True):
            candidate = os.path.join(directory, "nsys")
            if _executable(candidate):
                return candidate
    return None


def searched_locations(roots: Sequence[str] | None = None) -> str:
    """The search roots as a reader sees them: set variables filled in, unset ones left as $NAME."""
    return ", ".join(_expand(p) or p for p in (SEARCH_ROOTS if roots is None else roots))


def not_found_reason(explicit: str | None = None, roots: Sequence[str] | None = None) -> str:
    """Why find_nsys gave nothing, in one line."""
    if explicit:
        return f"nsys not found at {explicit!r} (--llmperf-nsys): not an executable file"
    return (f"nsys not found on PATH or in {searched_locations(roots)} "
            f"(install Nsight Systems or pass --llmperf-nsys PATH)")


# ---------------------------------------------------------------------------- finding a GPU

def nvidia_gpu_visible(devices: str = GPU_DEVICES, smi: str = "nvidia-smi", timeout: float = 10.0) -> bool:
    """Whether an NVIDIA GPU is visible: a ``/dev/nvidiaN`` device node, or else (WSL2 and some
    containers have no such node) ``nvidia-smi -L`` listing a ``GPU N: ...`` line."""
    if glob.glob(devices):
        return True
    tool = shutil.which(smi)
    if tool is None:
        return False
    try:
        # GPU names in any bytes the driver has: decoded, never an exception
        out = subprocess.run([tool, "-L"], capture_output=True, text=True, errors="replace", timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and any(line.startswith("GPU ") for line in out.stdout.splitlines())


def gpu_reason(probe: Callable[[], bool] | None = None) -> str | None:
    """None when an NVIDIA GPU is visible (``probe``, default :func:`nvidia_gpu_visible`), else why
    nsys has nothing to profile here."""
    if (probe or nvidia_gpu_visible)():
        return None
    return "no NVIDIA GPU on this node (no /dev/nvidia* device, and nvidia-smi -L lists none)"


# ---------------------------------------------------------------------------- the kernel summary

def _key(field: str) -> str:
    return re.sub(r"\s+", "", field).lower()


# normalised header -> (Kernel field, unit); "" unit: the column holds a count or a percentage
_UNITS = {"ns": 1.0, "nsec": 1.0, "us": 1e3, "usec": 1e3, "µs": 1e3, "ms": 1e6, "msec": 1e6, "s": 1e9, "sec": 1e9}
_FIELDS = {
    "time(%)": "time_pct",
    "totaltime": "total_ns",
    "instances": "instances",
    "count": "instances",
    "avg": "avg_ns",
    "average": "avg_ns",
    "med": "med_ns",
    "median": "med_ns",
    "min": "min_ns",
    "minimum": "min_ns",
    "max": "max_ns",
    "maximum": "max_ns",
    "stddev": "stddev_ns",
    "name": "name",
}
# the columns a kernel table must have, as the current nsys names them
_REQUIRED = {"time_pct": "Time (%)", "total_ns": "Total Time (ns)", "instances": "Instances", "avg_ns": "Avg (ns)",
             "min_ns": "Min (ns)", "max_ns": "Max (ns)", "name": "Name"}
# the numeric fields of a row but the instance count, read in this order (the first bad one is named)
_TIMES = ("time_pct", "total_ns", "avg_ns", "med_ns", "min_ns", "max_ns", "stddev_ns")


def _column(header: str) -> tuple[str, float] | None:
    """(Kernel field, factor to nanoseconds) of a header cell such as "Avg (ns)" or "Average"."""
    key = _key(header)
    if key in _FIELDS:  # "Time (%)", "Instances", "Name", and the unitless "Average" of old nsys
        return _FIELDS[key], 1.0
    match = re.fullmatch(r"(.+)\(([^)]+)\)", key)
    if match and match.group(1) in _FIELDS and match.group(2) in _UNITS:
        return _FIELDS[match.group(1)], _UNITS[match.group(2)]
    return None


def _cells(line: str) -> list[str]:
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return []


def _is_header(cells: list[str]) -> bool:
    keys = {_key(c) for c in cells}
    return "time(%)" in keys and "name" in keys


def _skipped(text: str) -> bool:
    """Whether nsys skipped the report for want of data ("SKIPPED: x.sqlite does not contain CUDA
    kernel data.")."""
    return any(re.match(r"\s*SKIPPED:.*does not contain", line) or "does not contain CUDA kernel data" in line
               for line in text.splitlines())


# a number of the kernel table: plain decimal digits, or digits in groups of three (an exponent is
# let through); no sign, nan or inf, which no time, count or share of it can be
_PLAIN = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(text: str, line: str, where: str) -> float:
    """A number of the kernel table: finite, 0 or more (``1,234.5`` and ``12.5%`` are numbers)."""
    t = text.strip()
    t = t[:-1] if t.endswith("%") else t
    if re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?", t):
        t = t.replace(",", "")
    value = float(t) if _PLAIN.fullmatch(t) else math.nan
    if not math.isfinite(value):
        raise NsysParseError(f"{where}: unparsable number {_quote(text)} (a finite number, 0 or more) in the "
                             f"kernel table line {_quote(line)}")
    return value


def parse_kernel_csv(text: str, name: str = "nsys stats output") -> list[Kernel]:
    """The kernels of ``nsys stats --report cuda_gpu_kern_sum`` (or the older ``gpukernsum``)
    ``--format csv`` output, in its order. Lines before the header are skipped, and the table ends
    at the first blank line. A report that nsys SKIPPED for lack of kernel data gives []; any
    other output without a table, and any row that is not a kernel (a number that is not finite
    and 0 or more among them), raises NsysParseError naming ``name`` (the file) and the line."""
    lines = text.lstrip("\ufeff").splitlines()
    start = next((i for i, line in enumerate(lines) if _is_header(_cells(line))), None)
    if start is None:
        if _skipped(text):
            return []
        first = next((line for line in lines if line.strip()), "")
        raise NsysParseError(f"{name}: no kernel table (a header with Time (%) and Name) in the nsys stats "
                             f"output; it starts with {_quote(first)}")
    header = _cells(lines[start])
    columns: dict[str, tuple[int, float]] = {}
    for i, cell in enumerate(header):
        found = _column(cell)
        if found and found[0] not in columns:
            columns[found[0]] = (i, found[1])
    missing = [shown for f, shown in _REQUIRED.items() if f not in columns]
    if missing:
        raise NsysParseError(f"{name}, line {start + 1}: the nsys stats kernel table lacks the column(s) "
                             f"{', '.join(missing)}: header {_quote(lines[start])}")
    kernels = []
    for number, line in enumerate(lines[start + 1:], start + 2):
        if not line.strip():
            break
        where = f"{name}, line {number}"
        cells = _cells(line)
        if len(cells) != len(header):
            raise NsysParseError(f"{where}: unparsable nsys stats kernel table line ({len(cells)} fields, the "
                                 f"header has {len(header)}): {_quote(line)}")
        instances = _cell_value(cells, columns["instances"], line, where)
        if instances != int(instances):
            raise NsysParseError(f"{where}: unparsable instance count {_quote(cells[columns['instances'][0]])} "
                                 f"in the nsys stats kernel table line {_quote(line)}")
        kernel = cells[columns["name"][0]].strip()
        if not kernel:
            raise NsysParseError(f"{where}: a kernel without a name in the nsys stats kernel table line "
                                 f"{_quote(line)}")
        got = {f: _cell_value(cells, columns[f], line, where) for f in _TIMES if f in columns}
        kernels.append(Kernel(name=kernel, time_pct=got["time_pct"], total_ns=got["total_ns"],
                              instances=int(instances), avg_ns=got["avg_ns"], med_ns=got.get("med_ns"),
                              min_ns=got["min_ns"], max_ns=got["max_ns"], stddev_ns=got.get("stddev_ns")))
    return kernels


def _cell_value(cells: list[str], column: tuple[int, float], line: str, where: str) -> float:
    """The number in ``column`` (index, factor to nanoseconds) of a kernel table row, scaled."""
    index, factor = column
    scaled = _number(cells[index], line, where) * factor
    if not math.isfinite(scaled):  # a finite number of seconds, in nanoseconds, may not be
        raise NsysParseError(f"{where}: the number {_quote(cells[index])} is out of range in the "
                             f"kernel table line {_quote(line)}")
    return scaled


def short_name(name: str, width: int = 60) -> str:
    """A kernel name for one line: no ``void``, no namespaces, template arguments as ``<...>``,
    no parameter list, at most ``width`` characters (``at::native::elementwise_kernel<128, 2,
    ...>(int, T3)`` -> ``elementwise_kernel<...>``)."""
    text = name.strip()
    if text.startswith("void "):
        text = text[5:]
    out, angle, paren = [], 0, 0
    for ch in text:
        if ch == "<" and not paren:
            if angle == 0:
                out.append("<...>")
            angle += 1
        elif ch == ">" and angle and not paren:
            angle -= 1
        elif ch == "(" and not angle:
            paren += 1
        elif ch == ")" and paren and not angle:
            paren -= 1
        elif not angle and not paren:
            out.append(ch)
    short = "".join(out).strip()
    if angle or paren or not short:  # unbalanced (operator<, a truncated name): keep it as it was
        short = text
    short = short.rsplit("::", 1)[-1] or short
    return short if len(short) <= width else short[:width - 3] + "..."


def _ms(ns: float) -> float:
    return ns / 1e6


def kernel_table(kernels: Sequence[Kernel], top: int = 10) -> str:
    """A plain-text table of the ``top`` kernels by GPU time, with full names, for the artifacts."""
    if not kernels:
        return NO_KERNELS + "\n"
    ranked = sorted(kernels, key=lambda k: k.total_ns, reverse=True)
    rows = [("Time %", "Total ms", "Instances", "Avg us", "Name")]
    for k in ranked[:top]:
        rows.append((f"{k.time_pct:.1f}", f"{_ms(k.total_ns):.3f}", str(k.instances), f"{k.avg_ns / 1e3:.2f}", k.name))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].rjust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    rest = ranked[top:]
    if rest:
        lines.append(f"... and {len(rest)} more kernels, {_ms(sum(k.total_ns for k in rest)):.3f} ms")
    total = sum(k.total_ns for k in kernels)
    lines.append(f"{len(kernels)} kernels, {sum(k.instances for k in kernels)} launches, "
                 f"{_ms(total):.3f} ms on GPU")
    return "\n".join(lines) + "\n"


def summary_line(kernels: Sequence[Kernel], top: int = 3) -> str:
    """One line for the terminal: how many kernels, their GPU time, and the heaviest ``top``."""
    if not kernels:
        return NO_KERNELS
    ranked = sorted(kernels, key=lambda k: k.total_ns, reverse=True)
    heaviest = ", ".join(f"{k.time_pct:.1f}% {short_name(k.name)}" for k in ranked[:top])
    launches = sum(k.instances for k in kernels)
    return (f"{len(kernels)} kernels ({launches} launches), {_ms(sum(k.total_ns for k in kernels)):.1f} ms "
            f"on GPU; top: {heaviest}")


# ---------------------------------------------------------------------------- the profiler

class Nsys(base.Profiler):
    """GPU kernel time of one run under ``nsys profile``, read through ``nsys stats``."""

    name = "nsys"
    runs_default = 3  # repeated (--llmperf-profile-runs): each run a sample of the kernel time

    def __init__(self, explicit: str | None = None, roots: Sequence[str] | None = None,
                 gpu_probe: Callable[[], bool] | None = None, timeout: float = base.DEFAULT_TIMEOUT):
        self.explicit = explicit
        self.roots = roots
        self.gpu_probe = gpu_probe
        self.timeout = timeout  # of each nsys stats call
        self._path: str | None = None

    @property
    def path(self) -> str | None:
        if self._path is None:
            self._path = find_nsys(self.explicit, roots=self.roots)
        return self._path

    def unavailable_reason(self) -> str | None:
        if self.path is None:
            return not_found_reason(self.explicit, self.roots)
        return gpu_reason(self.gpu_probe)

    def wrap(self, argv: Sequence[str], outdir: Path, tag: str) -> tuple[list[str], dict[str, str]]:
        nsys = self.path
        if nsys is None:
            raise base.ProfilerUnavailable(f"nsys: {not_found_reason(self.explicit, self.roots)}")
        # an earlier run's files under this tag must not pass for this run's
        for stale in self._outputs(outdir, tag):
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:
                raise base.ProfilerError(f"nsys: cannot remove {stale} of an earlier run: "
                                         f"{exc.strerror or exc}") from None
        return [nsys, "profile", "--trace=cuda,nvtx", "--sample=none", "--cpuctxsw=none",
                "--force-overwrite=true", "--output", str(outdir / tag), "--", *argv], {}

    @staticmethod
    def _outputs(outdir: Path, tag: str) -> list[Path]:
        names = [tag + s for s in (*REPORT_SUFFIXES, ".qdstrm", ".sqlite")]
        names += [f"{tag}_{r}.csv" for r in (KERNEL_REPORT, OLD_KERNEL_REPORT)] + [f"{tag}-kernels.txt"]
        return [outdir / n for n in names]

    def collect(self, outdir: Path, tag: str, done: base.Completed) -> base.Profile:
        outdir = Path(outdir)
        report = next((outdir / (tag + s) for s in REPORT_SUFFIXES if (outdir / (tag + s)).is_file()), None)
        if done.returncode != 0:
            if report is None:
                raise base.ProfilerError(f"nsys: nsys profile {_exit(done.returncode)} and wrote no report "
                                         f"{outdir / tag}.nsys-rep; stderr ends with:\n"
                                         f"{base.tail(done.stderr) or base.tail(done.stdout) or '(no output)'}")
            raise base.child_failed(self, done, _child(done.argv))
        if report is None:
            leftover = outdir / (tag + ".qdstrm")
            what = (f"left only {leftover.name} (its conversion to a report failed)" if leftover.is_file()
                    else f"wrote no report {outdir / tag}.nsys-rep")
            raise base.ProfilerError(f"nsys: nsys profile exited 0 but {what}; stderr ends with:\n"
                                     f"{base.tail(done.stderr) or base.tail(done.stdout) or '(no output)'}")

        csv_path, text, used = self._stats(outdir, tag, report)
        where = str(csv_path) if csv_path is not None else f"the output of nsys stats on {report}"
        try:
            kernels = parse_kernel_csv(text, where)
        except NsysParseError as exc:  # it names the file (or nsys stats's output) and the line
            raise base.ProfilerError(f"nsys: cannot read {exc}") from None
        table = outdir / f"{tag}-kernels.txt"
        table.write_text(f"nsys stats --report {used} of {report.name}\n\n{kernel_table(kernels)}", encoding="utf-8",
                         errors="replace")
        files = [report] + ([csv_path] if csv_path is not None else []) + [table]
        ranked = sorted(kernels, key=lambda k: k.total_ns, reverse=True)
        details = {"report": used, "kernels": [asdict(k) for k in ranked[:10]]}
        if not kernels:
            return base.Profile(kind="nsys", files=files, summary=NO_KERNELS, details=details)
        readings = [
            base.Reading("nsys.gpu_kernel_ms", _ms(sum(k.total_ns for k in kernels)), "ms", higher_is_better=False),
            base.Reading("nsys.kernel_launches", sum(k.instances for k in kernels), "", False, gate=False),
        ]
        readings = base.checked("nsys", readings, where)
        return base.Profile(kind="nsys", readings=readings, files=files, summary=summary_line(kernels),
                            details=details)

    def _stats(self, outdir: Path, tag: str, report: Path) -> tuple[Path | None, str, str]:
        """Run nsys stats on ``report``: (the CSV it wrote, or None when it skipped a report
        without kernels; the text to parse; the report name that worked). Falls back to the old
        report name when nsys does not know the new one."""
        nsys = self.path
        if nsys is None:
            raise base.ProfilerUnavailable(f"nsys: {not_found_reason(self.explicit, self.roots)}")
        failures: list[tuple[str, int, str]] = []
        for name in (KERNEL_REPORT, OLD_KERNEL_REPORT):
            csv_path = outdir / f"{tag}_{name}.csv"
            csv_path.unlink(missing_ok=True)
            argv = [nsys, "stats", "--report", name, "--format", "csv", "--force-export=true",
                    "--output", str(outdir / tag), str(report)]
            try:
                out = subprocess.run(argv, capture_output=True, timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise base.ProfilerError(f"nsys: nsys stats on {report} did not finish within "
                                         f"{self.timeout:g} s and was killed") from None
            except OSError as exc:
                raise base.ProfilerError(f"nsys: cannot run {argv[0]} stats: {exc.strerror or exc}") from None
            stdout = out.stdout.decode("utf-8", "replace")
            stderr = out.stderr.decode("utf-8", "replace")
            if out.returncode == 0 and csv_path.is_file():
                return csv_path, csv_path.read_text(encoding="utf-8", errors="replace"), name
            said = stdout + "\n" + stderr
            if _skipped(said):
                return None, said, name
            failures.append((name, out.returncode, base.tail(stderr, 3) or base.tail(stdout, 3) or "(no output)"))
        how = ", ".join(f"--report {name} {_exit(code)}" + ("" if code else " without writing a CSV")
                        for name, code, _ in failures)
        said = "\n".join(f"[{name}] {line}" for name, _, text in failures for line in text.splitlines())
        raise base.ProfilerError(f"nsys: nsys stats failed on the report {report}: {how}; it said:\n{said}")


def _exit(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def _child(wrapped: Sequence[str]) -> str:
    """The profiled program in a wrapped command line (what follows ``--``)."""
    argv = list(wrapped)
    return argv[argv.index("--") + 1] if "--" in argv[:-1] else argv[0]
