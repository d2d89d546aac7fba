"""Cache sizes on Linux: cpu0's sysfs cache directory, else glibc's ``sysconf`` (a kernel without
sysfs cache info); and ``parse_size`` for the sizes sysfs and lscpu write."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .common import _SIZE_LIMIT, _int, _read_text

CACHE_SYSFS_PATH = "/sys/devices/system/cpu/cpu0/cache"

# ASCII only: under IGNORECASE a Unicode pattern's [K] also matches the KELVIN SIGN (U+212A),
# whose upper case is itself, and \d matches every script's digits
_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_MULT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# no cache is this big (the largest last-level caches are about 1 GiB): a size read as this or
# more is a broken file, reported as unknown
_CACHE_LIMIT = 1 << 40


def parse_size(text: str) -> int:
    """Parse a sysfs/lscpu size ("32K", "4096K", "105M", "1G", "512") to bytes.

    Suffixes are binary (K = 1024) and case insensitive; an optional
    trailing "B"/"iB" is accepted ("32KiB", "48 KB").  Digits and letters
    are ASCII.  Raises ValueError for anything else, and for sizes of 2**63
    bytes or more.
    """
    match = _SIZE_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"invalid size {_short(text)}: expected digits with an optional K, M or G suffix")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > 20:  # int() of thousands of digits is slow, and refused past 4300
        raise ValueError(f"invalid size {_short(text)}: too large")
    size = int(digits) * _SIZE_MULT[match.group(2).upper()]
    if size >= _SIZE_LIMIT:
        raise ValueError(f"invalid size {_short(text)}: too large (2**63 bytes or more)")
    return size


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` (one line), cut to ``limit`` characters and "..." for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _empty_caches() -> dict[str, int | None]:
    return {"l1d_bytes": None, "l1i_bytes": None, "l2_bytes": None, "l3_bytes": None, "llc_bytes": None}


def parse_cache_sizes(base: str | os.PathLike[str] = CACHE_SYSFS_PATH) -> dict[str, int | None]:
    """Cache sizes in bytes from a sysfs ``cpu0/cache`` directory.

    Reads ``index*/{level,type,size}`` below *base*.  Returns ``l1d_bytes``,
    ``l1i_bytes``, ``l2_bytes``, ``l3_bytes`` and ``llc_bytes``; missing
    values, and sizes of 0 or of 1 TiB and more, are None (never raises).
    ``llc_bytes`` is the size of the highest-level Data or Unified cache
    **per instance, as seen by cpu0** (a machine with two sockets of 105 MiB
    L3 reports 105 MiB, not 210).  L2/L3 are likewise per instance.
    """
    out = _empty_caches()
    try:
        entries = sorted(Path(base).glob("index*"))
    except OSError:
        return out
    llc_level = 0
    for entry in entries:
        level = _int(_read_text(entry / "level"))
        ctype = (_read_text(entry / "type") or "").strip().lower()
        size_text = _read_text(entry / "size")
        if level is None or size_text is None:
            continue
        try:
            size = parse_size(size_text)
        except ValueError:
            continue
        if not 0 < size < _CACHE_LIMIT:  # "0K": some hypervisors give sizes they do not know as 0
            continue
        if level == 1 and ctype == "data":
            key = "l1d_bytes"
        elif level == 1 and ctype == "instruction":
            key = "l1i_bytes"
        elif level in (2, 3) and ctype in ("data", "unified"):
            key = f"l{level}_bytes"
        else:
            key = None
        if key is not None:
            out[key] = max(out[key] or 0, size)
        if ctype in ("data", "unified") and level >= llc_level:
            if level > llc_level:
                out["llc_bytes"] = size
            else:
                out["llc_bytes"] = max(out["llc_bytes"] or 0, size)
            llc_level = level
    return out


def _sysconf_caches() -> dict[str, int | None]:
    """glibc ``sysconf`` cache sizes (Linux without sysfs cache info)."""
    out = _empty_caches()
    names = {
        "l1d_bytes": "SC_LEVEL1_DCACHE_SIZE",
        "l1i_bytes": "SC_LEVEL1_ICACHE_SIZE",
        "l2_bytes": "SC_LEVEL2_CACHE_SIZE",
        "l3_bytes": "SC_LEVEL3_CACHE_SIZE",
    }
    for key, name in names.items():
        if name in getattr(os, "sysconf_names", {}):
            try:
                value = os.sysconf(name)
            except (OSError, ValueError):
                continue
            if isinstance(value, int) and 0 < value < _CACHE_LIMIT:
                out[key] = value
    out["llc_bytes"] = out["l3_bytes"] or out["l2_bytes"]
    return out
