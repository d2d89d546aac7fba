"""Native tooling shared by the features, part of the pure core (no pytest): the cache directory
(cache.py), the content-addressed C build cache (build.py) and the node's memory-bandwidth probe
with its node-info file (bandwidth.py, bwprobe.c). llama2c builds its binaries with it, the
profilers their exit-status wrapper, and the torch decode suite's MBU reads the bandwidth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cache import default_cache_dir


@dataclass(frozen=True)
class NativeOptions:
    """The options of the native tooling that every feature shares: the C compiler
    (``--llmperf-cc``) and the cache directory (``--llmperf-cache-dir``)."""

    cc: str = "cc"
    cache_dir: Path = field(default_factory=default_cache_dir)
