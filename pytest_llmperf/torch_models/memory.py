"""Peak and free memory of a torch device, and out-of-memory errors: telling them from others and
cleaning up after one. No pytest."""

from __future__ import annotations

import errno
import gc
import os
import re
import sys
from typing import Literal

import torch

from .devsel import _as_device
from .timing import synchronize

__all__ = ["PeakMemory", "available_memory", "is_oom", "parse_status_kb", "parse_vmhwm", "recover"]

_MIB = 1 << 20
_UNIT_BYTES = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


def parse_status_kb(text: str, field: str) -> int | None:
    """Bytes of a size field (e.g. "VmHWM", "VmRSS") of ``/proc/<pid>/status`` or
    ``/proc/meminfo`` text, or None: also for a malformed value or one of 2**63 bytes or more."""
    # ASCII digits, at most 20 of them: \d would take any script's digits, and int() of a
    # 400-digit value is no size
    match = re.search(rf"^{re.escape(field)}:[ \t]*([0-9]{{1,20}})[ \t]*([kKmMgG]?[bB])?[ \t]*$", text,
                      re.MULTILINE | re.ASCII)
    if match is None:
        return None
    unit = (match.group(2) or "kB").lower()
    size = int(match.group(1)) * _UNIT_BYTES.get(unit, 1024)
    return size if size < 1 << 63 else None


def parse_vmhwm(text: str) -> int | None:
    """The peak resident set size ("VmHWM") in bytes from ``/proc/self/status`` text, or None."""
    return parse_status_kb(text, "VmHWM")


def _read_proc_status() -> str | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _reset_rss_peak() -> bool:
    """Reset this process's resident-set high-water mark (Linux ``clear_refs`` 5); True when the
    kernel accepted it and VmHWM now reads as the current RSS."""
    try:
        fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"5")
    except OSError:
        return False
    finally:
        os.close(fd)
    status = _read_proc_status()
    if status is None:
        return False
    hwm, rss = parse_vmhwm(status), parse_status_kb(status, "VmRSS")
    # just after a reset the mark equals the resident size (give or take a few pages)
    return hwm is not None and rss is not None and hwm - rss < 16 * _MIB


def _lifetime_peak_rss() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil  # type: ignore[import-untyped]  # optional, no stubs installed

            info = psutil.Process().memory_info()
            return int(getattr(info, "peak_wset", info.rss))
        except Exception:
            return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes, else KiB


def _current_rss() -> int | None:
    status = _read_proc_status()
    if status is not None:
        return parse_status_kb(status, "VmRSS")
    try:
        import psutil  # type: ignore[import-untyped]  # optional, no stubs installed

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


class PeakMemory:
    """Peak memory of the ``with`` block on ``device``.

    ``peak_bytes`` is an absolute level (what was already allocated before the block counts);
    ``start_bytes`` is the level at entry and ``delta_bytes`` the growth. ``kind`` says what
    was measured:

    * "cuda max allocated": ``torch.cuda.max_memory_allocated`` after
      ``reset_peak_memory_stats`` (tensors only, not the caching allocator's reserve);
    * "process peak RSS": the process's peak resident set (Linux VmHWM) after resetting it
      through ``/proc/self/clear_refs``; the reset is process-wide, so nested blocks or other
      threads share it;
    * "process peak RSS (lifetime; reset not permitted)": the same peak since the process
      started (``getrusage``), where the kernel refuses the reset; a block then reports at least
      every earlier peak;
    * "mps driver allocated at exit": Metal has no peak counter; best effort.

    ``peak_bytes`` is None when nothing could be read."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = _as_device(device)
        self.peak_bytes: int | None = None
        self.start_bytes: int | None = None
        self.kind = ""
        self._reset_ok = False

    @property
    def delta_bytes(self) -> int | None:
        if self.peak_bytes is None or self.start_bytes is None:
            return None
        return self.peak_bytes - self.start_bytes

    def __enter__(self) -> PeakMemory:
        device = self.device
        self.peak_bytes = None
        if device.type == "cuda":
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.start_bytes = int(torch.cuda.memory_allocated(device))
            self.kind = "cuda max allocated"
        elif device.type == "mps":
            try:
                self.start_bytes = int(torch.mps.current_allocated_memory())
            except Exception:
                self.start_bytes = None
            self.kind = "mps driver allocated at exit"
        else:
            self._reset_ok = _reset_rss_peak()
            self.start_bytes = _current_rss()
            if self._reset_ok:
                self.kind = "process peak RSS"
            else:
                self.kind = "process peak RSS (lifetime; reset not permitted)"
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        device = self.device
        try:
            if device.type == "cuda":
                synchronize(device)
                self.peak_bytes = int(torch.cuda.max_memory_allocated(device))
            elif device.type == "mps":
                synchronize(device)
                getter = getattr(torch.mps, "driver_allocated_memory", None) or torch.mps.current_allocated_memory
                self.peak_bytes = int(getter())
            else:
                peak = None
                if self._reset_ok:
                    status = _read_proc_status()
                    peak = parse_vmhwm(status) if status is not None else None
                self.peak_bytes = peak if peak is not None else _lifetime_peak_rss()
        except Exception:
            if exc_info[0] is None:
                raise
        return False


def available_memory(device: torch.device | str) -> int | None:
    """Bytes that ``device`` can still allocate: free GPU memory on CUDA
    (``torch.cuda.mem_get_info``), available system memory on the CPU, the recommended maximum
    minus what the driver holds on MPS; None when unknown."""
    device = _as_device(device)
    try:
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            return int(free)
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory()) - int(torch.mps.driver_allocated_memory())
    except Exception:
        return None
    try:
        import psutil  # type: ignore[import-untyped]  # optional, no stubs installed

        return int(psutil.virtual_memory().available)
    except Exception:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as fh:
            return parse_status_kb(fh.read(), "MemAvailable")
    except OSError:
        return None


_OOM_PATTERNS = (
    "out of memory",  # CUDA caching allocator, "CUDA error: out of memory", MPS backend
    "can't allocate memory",  # DefaultCPUAllocator
    "not enough memory",  # DefaultCPUAllocator
    "cannot allocate memory",  # strerror(ENOMEM)
    "cublas_status_alloc_failed",  # cuBLAS could not get its workspace
)


def _oom_class() -> tuple[type[BaseException], ...]:
    classes = []
    for owner in (torch, getattr(torch, "cuda", None)):
        cls = getattr(owner, "OutOfMemoryError", None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says memory ran out: a
    ``torch.OutOfMemoryError`` / ``torch.cuda.OutOfMemoryError``, a ``MemoryError``, an
    ``OSError`` with ENOMEM, or a RuntimeError whose message is one of the allocators' "out of
    memory" messages (CUDA, MPS, the CPU allocator)."""
    seen = 0
    current: BaseException | None = exc
    classes = _oom_class()
    while current is not None and seen < 8:
        if isinstance(current, MemoryError) or (classes and isinstance(current, classes)):
            return True
        if isinstance(current, OSError) and current.errno == errno.ENOMEM:
            return True
        if isinstance(current, RuntimeError):
            text = str(current).lower()
            if any(pattern in text for pattern in _OOM_PATTERNS):
                return True
        current = current.__cause__
        seen += 1
    return False


def _malloc_trim() -> None:
    """Hand freed heap pages back to the OS (glibc only), so that RSS reflects live memory."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


def recover(device: torch.device | str) -> None:
    """Make ``device`` usable again after an out-of-memory error: collect garbage (the failed
    step's frames hold tensors), and on CUDA release the cached blocks and reset the peak
    statistics. Never raises."""
    device = _as_device(device)
    gc.collect()
    try:
        if device.type == "cuda":
            try:
                torch.cuda.synchronize(device)
            except Exception:
                pass
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        elif device.type == "mps":
            torch.mps.empty_cache()
        else:
            _malloc_trim()
    except Exception:
        pass
