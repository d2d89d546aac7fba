"""The machine's memory total: psutil when installed, else ``/proc/meminfo``, else ``sysconf``."""

from __future__ import annotations

import os
import re
from typing import Any

from .common import _SIZE_LIMIT, _read_text

_MEMTOTAL_RE = re.compile(r"^MemTotal:[ \t]*([0-9]{1,20})[ \t]*kB[ \t]*$", re.MULTILINE | re.ASCII)


def parse_meminfo_total(text: str) -> int | None:
    """Bytes of ``MemTotal`` in ``/proc/meminfo`` text; None when it is missing, malformed, 0 or
    2**63 bytes or more."""
    match = _MEMTOTAL_RE.search(text) if isinstance(text, str) else None
    if match is None:
        return None
    total = int(match.group(1)) * 1024
    return total if 0 < total < _SIZE_LIMIT else None


def _memory_total(psutil: Any | None) -> int | None:
    if psutil is not None:
        try:
            return int(psutil.virtual_memory().total)
        except Exception:
            pass
    text = _read_text("/proc/meminfo")
    if text:
        total = parse_meminfo_total(text)
        if total is not None:
            return total
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return None
