"""What every reader of the hardware package shares: a file read that never raises, an int parse
that gives None, and the largest size a 64-bit field can hold."""

from __future__ import annotations

import os

_SIZE_LIMIT = 1 << 63  # what a size in a 64-bit field can be


def _int(value: str | None, base: int = 10) -> int | None:
    """Parse an int (``base=0`` accepts ``0x`` prefixes); None when invalid."""
    if value is None:
        return None
    try:
        return int(value.strip(), base)
    except (ValueError, AttributeError):
        return None


def _read_text(path: str | os.PathLike[str]) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None
