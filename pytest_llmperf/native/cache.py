"""Where builds, generated models and the bandwidth probe's result are kept. No pytest."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class CacheError(RuntimeError):
    """The cache directory cannot be created or written; the message names it."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-llmperf``, else ``~/.cache/pytest-llmperf``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-llmperf"


def ensure_dir(path: Path, what: str = "cache directory") -> Path:
    """Create ``path`` if needed and check that a file can be created in it (as root,
    ``os.access`` always says yes, so it tries); :class:`CacheError` naming it otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CacheError(f"{what} {path} is not writable: {exc.strerror or exc}") from None
    return path
