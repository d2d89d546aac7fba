"""macOS: the CPU name and cache sizes from ``sysctl``, which stands in for /proc and sysfs."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from .caches import _CACHE_LIMIT, _empty_caches
from .common import _int


def _darwin_sysctl(names: list[str], timeout: float = 2.0) -> dict[str, str]:
    """``sysctl`` values on macOS (one subprocess); {} on failure."""
    exe = shutil.which("sysctl") or "/usr/sbin/sysctl"
    try:
        proc = subprocess.run([exe, *names], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_sysctl_output(proc.stdout)


def parse_sysctl_output(text: str) -> dict[str, str]:
    """Parse ``sysctl name1 name2`` output ("name: value" lines)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def _darwin_caches(values: Mapping[str, str]) -> dict[str, int | None]:
    out = _empty_caches()
    for key, name in (
        ("l1d_bytes", "hw.l1dcachesize"),
        ("l1i_bytes", "hw.l1icachesize"),
        ("l2_bytes", "hw.l2cachesize"),
        ("l3_bytes", "hw.l3cachesize"),
    ):
        value = _int(values.get(name))
        if value is not None and 0 < value < _CACHE_LIMIT:
            out[key] = value
    out["llc_bytes"] = out["l3_bytes"] or out["l2_bytes"]
    return out
