"""The node's memory read bandwidth, measured once, and the memory-bandwidth utilisation of decode.

Decoding one token reads every weight of the checkpoint once (the classifier included, one row
of the embedding table), so ``MBU = bytes read per token x tok/s / memory bandwidth``. The
bandwidth comes from ``bwprobe.c``: all cores sum a buffer far larger than the last-level cache
(8 times its size, at least 1 GiB, at most a quarter of the memory), best of several passes.

It is measured once per node and fingerprint and kept in the cache (``<cache>/nodes/<node>.json``,
one entry per machine fingerprint); a run that saves baselines also writes it beside them
(``<baseline dir>/<node>/node-info.json``), and later runs read it from there first, so that the
nightly MBU uses the bandwidth the baseline used.

A node-info file is treated like a baseline file: one that is not valid JSON (a git merge conflict
holding two machines' entries, say) or not the expected shape is refused with one line naming it
(:class:`NodeInfoError`) and never overwritten; the read-merge-write of a new entry happens under
the node directory's lock (:func:`store_info`). No pytest.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from pathlib import Path
from typing import Any, TypedDict

from .. import jsonfile
from ..baseline import NODE_INFO, node_lock
from ..fileutil import atomic_write
from .build import FlagsRejected, build

PROBE_SOURCE = Path(__file__).with_name("bwprobe.c")
MIN_PROBE_BYTES = 1 << 30
LLC_FACTOR = 8
PASSES = 8


class BandwidthError(RuntimeError):
    """The probe could not run or printed no usable figure; a node-info file that is refused."""


class NodeInfoError(BandwidthError):
    """A node-info file that cannot be read, is not JSON or not the expected shape. The message is
    one line naming the file; :attr:`problem` is the part after the file's name."""

    def __init__(self, path: Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"node-info file {path} {problem}: fix it or restore it from git")


_COUNT_FIELDS = ("bytes", "threads", "passes", "llc_bytes")


class ProbeFields(TypedDict):
    """What bwprobe printed, checked (:func:`parse_probe_output`)."""

    read_GBps: float
    bytes: int
    threads: int
    passes: int


def probe_bytes(llc_bytes: int | None, memory_bytes: int | None) -> int:
    """Buffer size: ``LLC_FACTOR`` x the last-level cache, at least 1 GiB, at most 1/4 of memory."""
    size = max(MIN_PROBE_BYTES, LLC_FACTOR * (llc_bytes or 0))
    if memory_bytes:
        size = min(size, memory_bytes // 4)
    return max(size, 64 << 20)


def measure(cache_dir: Path, cc: str, llc_bytes: int | None, memory_bytes: int | None,
            timeout: float = 300.0) -> dict[str, Any]:
    """Build and run the probe; returns ``{"read_GBps", "bytes", "threads", "passes", "llc_bytes",
    "method", "measured_at"}``. OpenMP when the compiler has it, else one thread (said in method)."""
    try:
        binary, method = build(PROBE_SOURCE, "-O3 -fopenmp", cache_dir, cc=cc), "bwprobe -O3 -fopenmp"
    except FlagsRejected:
        binary, method = build(PROBE_SOURCE, "-O3", cache_dir, cc=cc), "bwprobe -O3 (no OpenMP: one thread)"
    size = probe_bytes(llc_bytes, memory_bytes)
    try:
        out = subprocess.run([str(binary), str(size), str(PASSES)], capture_output=True, text=True, timeout=timeout,
                             errors="replace")
    except (OSError, subprocess.SubprocessError) as exc:
        raise BandwidthError(f"memory bandwidth probe {binary} failed: {exc}") from None
    if out.returncode != 0:
        raise BandwidthError(f"memory bandwidth probe {binary} failed (exit code {out.returncode}): "
                             f"{_one_line((out.stderr or out.stdout).strip()[-300:])}")
    fields = parse_probe_output(out.stdout, f"memory bandwidth probe {binary}")
    return {
        "read_GBps": fields["read_GBps"],
        "bytes": fields["bytes"],
        "threads": fields["threads"],
        "passes": fields["passes"],
        "llc_bytes": llc_bytes,
        "method": method,
        "measured_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_probe_output(stdout: str, what: str = "bwprobe") -> ProbeFields:
    """``read_GBps`` (positive, finite), ``bytes``, ``threads`` and ``passes`` (positive integers)
    from bwprobe's ``key=value`` line; :class:`BandwidthError` naming what is missing or wrong."""
    fields: dict[str, str] = {}
    for part in stdout.split():
        key, _, value = part.partition("=")
        fields[key] = value
    try:
        rate = float(fields["read_GBps"]) if len(fields.get("read_GBps", "")) <= 40 else math.nan
    except KeyError:
        raise BandwidthError(f"{what} printed no read_GBps: {_one_line(stdout) or '(no output)'}") from None
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise BandwidthError(f"{what} printed read_GBps={_one_line(fields['read_GBps'], 40)}, "
                             f"not a positive finite rate")
    counts: dict[str, int] = {}
    for key in ("bytes", "threads", "passes"):
        value = fields.get(key, "")
        if not (value.isascii() and value.isdigit() and len(value) <= 18 and int(value) > 0):
            raise BandwidthError(f"{what} printed {key}={_one_line(value, 40)}, not a positive integer")
        counts[key] = int(value)
    return ProbeFields(read_GBps=rate, bytes=counts["bytes"], threads=counts["threads"], passes=counts["passes"])


def _check_info(path: Path, data: object) -> dict[str, Any]:
    """``data`` (a parsed node-info file) when it has the expected shape, else NodeInfoError."""
    if not isinstance(data, dict):
        raise NodeInfoError(path, f"is not a JSON object (it holds a {type(data).__name__})")
    table = data.get("memory_bandwidth", {})
    if not isinstance(table, dict):
        raise NodeInfoError(path, '"memory_bandwidth" is not an object of entries by machine fingerprint')
    for fingerprint, entry in table.items():
        where = f"entry {_one_line(fingerprint, 40)!r} of \"memory_bandwidth\""
        if not isinstance(entry, dict):
            raise NodeInfoError(path, f"{where} is not an object")
        rate = entry.get("read_GBps")
        if (not isinstance(rate, (int, float)) or isinstance(rate, bool) or not math.isfinite(rate)
                or rate <= 0):
            raise NodeInfoError(path, f"{where} has no positive finite read_GBps "
                                      f"(it is {_one_line(json.dumps(rate), 40)})")
        for key in _COUNT_FIELDS:
            value = entry.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise NodeInfoError(path, f"{where} has {key} {_one_line(json.dumps(value), 40)}, "
                                          f"not a byte or thread count")
    return data


def load_info(path: Path) -> dict[str, Any]:
    """The whole node-info file at ``path``, checked; ``{}`` when there is none.
    :class:`NodeInfoError` (one line naming the file) when it cannot be read, is not JSON or not
    the expected shape."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise NodeInfoError(path, "is a directory") from None
    except OSError as exc:
        raise NodeInfoError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NodeInfoError(path, "is not UTF-8 text (corrupt?)") from None
    try:
        data = jsonfile.loads(text)
    except jsonfile.StrictJSONError as exc:
        raise NodeInfoError(path, exc.problem) from None
    return _check_info(path, data)


def read_info(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The bandwidth entry stored in a node-info file for this fingerprint; None when the file or
    the entry is missing (another machine). :class:`NodeInfoError` when the file is unusable."""
    entry = load_info(path).get("memory_bandwidth", {}).get(fingerprint)
    return dict(entry) if entry is not None else None


def write_info(path: Path, fingerprint: str, entry: dict[str, Any]) -> None:
    """Merge ``entry`` into the node-info file at ``path`` under ``fingerprint`` (atomic write; the
    caller holds the lock of the file's directory). An unusable file is refused
    (:class:`NodeInfoError`), never replaced."""
    path = Path(path)
    data = load_info(path)
    table = dict(data.get("memory_bandwidth", {}))
    table[fingerprint] = entry
    data = _check_info(path, {**data, "memory_bandwidth": table})
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def store_info(node_dir: Path, fingerprint: str, entry: dict[str, Any]) -> bool:
    """Add ``entry`` under ``fingerprint`` to the node-info file of ``node_dir`` unless it holds one
    already, read-merge-write under the node lock (:func:`~pytest_llmperf.baseline.node_lock`);
    True when written. :class:`NodeInfoError` for an unusable file, which is left as it is."""
    with node_lock(Path(node_dir)):
        path = Path(node_dir) / NODE_INFO
        if read_info(path, fingerprint) is not None:
            return False
        write_info(path, fingerprint, entry)
        return True


def mbu(bytes_per_token: int, tok_per_s: float, read_GBps: float) -> float:
    """Memory-bandwidth utilisation, as a fraction (above 1 when the weights come from a cache)."""
    return bytes_per_token * tok_per_s / (read_GBps * 1e9)


def node_entry(node_dir: Path, cache_dir: Path, node: str, fingerprint: str, cc: str,
               llc_bytes: int | None, memory_bytes: int | None, save: bool) -> dict[str, Any]:
    """The bandwidth entry of this machine: from the node-info file beside the baselines
    (``node_dir``), else from the cache, else measured (and cached); a run that saves baselines
    (``save``) adds it to the node-info file, under the node lock. An unusable node-info file
    raises NodeInfoError and is left as it is; an unusable cache file is only a cache: replaced,
    with a warning."""
    import warnings

    from ..fileutil import exclusive_lock
    from .cache import ensure_dir

    entry = read_info(node_dir / NODE_INFO, fingerprint)
    if entry is None:
        nodes = ensure_dir(cache_dir / "nodes", "cache directory (--llmperf-cache-dir)")
        cached = nodes / f"{node}.json"
        with exclusive_lock(nodes / ".lock"):  # one probe at a time: two would share the bandwidth
            try:
                entry = read_info(cached, fingerprint)
            except NodeInfoError as exc:
                warnings.warn(f"llmperf: the bandwidth cache {cached} {exc.problem}; it is only a cache: "
                              f"measuring the bandwidth again and rewriting it", stacklevel=2)
                cached.unlink()
                entry = None
            if entry is None:
                entry = measure(cache_dir / "llama2c", cc, llc_bytes, memory_bytes)
                write_info(cached, fingerprint, entry)
    if save:
        store_info(node_dir, fingerprint, entry)
    return entry
