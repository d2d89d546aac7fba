"""The node's memory read bandwidth, measured once, and the memory-bandwidth utilisation of decode.

Decoding one token reads every weight of the checkpoint once (the classifier included, one row
of the embedding table), so ``MBU = bytes read per token x tok/s / memory bandwidth``. The
bandwidth comes from ``bwprobe.c``: all cores sum a buffer far larger than the last-level cache
(8 times its size, at least 1 GiB, at most a quarter of the memory), best of several passes.

It is measured once per node and fingerprint and kept in the cache
(``<cache>/nodes/<node>-<fingerprint>.json``); a run that saves baselines also writes it beside
them (``<baseline dir>/<node>/node-info.json``), and later runs read it from there first, so that
the nightly MBU uses the bandwidth the baseline used. No pytest.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from pathlib import Path

from ..fileutil import atomic_write
from .build import FlagsRejected, build

PROBE_SOURCE = Path(__file__).with_name("bwprobe.c")
MIN_PROBE_BYTES = 1 << 30
LLC_FACTOR = 8
PASSES = 8


class BandwidthError(RuntimeError):
    pass


def probe_bytes(llc_bytes: int | None, memory_bytes: int | None) -> int:
    """Buffer size: ``LLC_FACTOR`` x the last-level cache, at least 1 GiB, at most 1/4 of memory."""
    size = max(MIN_PROBE_BYTES, LLC_FACTOR * (llc_bytes or 0))
    if memory_bytes:
        size = min(size, memory_bytes // 4)
    return max(size, 64 << 20)


def measure(cache_dir: Path, cc: str, llc_bytes: int | None, memory_bytes: int | None,
            timeout: float = 300.0) -> dict:
    """Build and run the probe; returns ``{"read_GBps", "bytes", "threads", "passes", "llc_bytes",
    "method", "measured_at"}``. OpenMP when the compiler has it, else one thread (said in method)."""
    try:
        binary, method = build(PROBE_SOURCE, "-O3 -fopenmp", cache_dir, cc=cc), "bwprobe -O3 -fopenmp"
    except FlagsRejected:
        binary, method = build(PROBE_SOURCE, "-O3", cache_dir, cc=cc), "bwprobe -O3 (no OpenMP: one thread)"
    size = probe_bytes(llc_bytes, memory_bytes)
    try:
        out = subprocess.run([str(binary), str(size), str(PASSES)], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BandwidthError(f"memory bandwidth probe {binary} failed: {exc}") from None
    fields = dict(part.partition("=")[::2] for part in out.stdout.split())
    if out.returncode != 0 or "read_GBps" not in fields:
        raise BandwidthError(f"memory bandwidth probe {binary} failed (exit code {out.returncode}): "
                             f"{(out.stderr or out.stdout).strip()[-300:]}")
    return {
        "read_GBps": float(fields["read_GBps"]),
        "bytes": int(fields["bytes"]),
        "threads": int(fields["threads"]),
        "passes": int(fields["passes"]),
        "llc_bytes": llc_bytes,
        "method": method,
        "measured_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def read_info(path: Path, fingerprint: str) -> dict | None:
    """The bandwidth stored in a node-info file for this fingerprint, or None (missing, unreadable,
    another machine)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    table = data.get("memory_bandwidth") if isinstance(data, dict) else None
    entry = table.get(fingerprint) if isinstance(table, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("read_GBps"), (int, float)) and entry["read_GBps"] > 0:
        return entry
    return None


def write_info(path: Path, fingerprint: str, entry: dict) -> None:
    """Merge ``entry`` into the node-info file at ``path`` under ``fingerprint`` (atomic write)."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data.get("memory_bandwidth"), dict):
        data["memory_bandwidth"] = {}
    data["memory_bandwidth"][fingerprint] = entry
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def mbu(bytes_per_token: int, tok_per_s: float, read_GBps: float) -> float:
    """Memory-bandwidth utilisation, as a fraction (above 1 when the weights come from a cache)."""
    return bytes_per_token * tok_per_s / (read_GBps * 1e9)
