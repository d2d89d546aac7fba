"""Devices, dtypes, timing, memory and peak figures for the PyTorch benchmarks. No pytest.

What lives here:

* choosing a device (:func:`resolve_device`) and a dtype (:func:`resolve_dtype`,
  :func:`check_dtype`), with one-line errors that say what was asked for and why it cannot be had;
* timing a training or decoding step correctly per device (:func:`step_sampler`): CUDA work is
  asynchronous, so a host clock around it measures how fast kernels are *queued*, not how long
  they run; on CUDA the time comes from a pair of CUDA events and the end event is waited for;
* peak memory of a block (:class:`PeakMemory`), free memory (:func:`available_memory`), telling
  an out-of-memory error from others (:func:`is_oom`) and cleaning up after one (:func:`recover`);
* datasheet peak FLOP/s and memory bandwidth of common NVIDIA GPUs (:data:`PEAK_FLOPS`,
  :data:`PEAK_BANDWIDTH_GBPS`) and two probes that measure what this device really reaches
  (:func:`matmul_probe`, :func:`torch_read_bandwidth`), the denominators of utilisation figures.

Nothing here initialises CUDA on import, and :func:`gpu_count` never does on a CPU-only build.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import math
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch

__all__ = [
    "PEAK_BANDWIDTH_GBPS",
    "PEAK_FLOPS",
    "DeviceUnavailable",
    "DtypeUnsupported",
    "PeakMemory",
    "available_memory",
    "check_dtype",
    "clear_dtype_cache",
    "device_name",
    "dtype_name",
    "gpu_count",
    "gpu_memory_model",
    "gpu_model",
    "is_oom",
    "matmul_probe",
    "parse_status_kb",
    "parse_vmhwm",
    "peak_flops_for",
    "recover",
    "resolve_device",
    "resolve_dtype",
    "step_sampler",
    "synchronize",
    "table_bandwidth",
    "table_peak_flops",
    "tf32_matmul_enabled",
    "torch_read_bandwidth",
]

_GIB = 1 << 30
_MIB = 1 << 20


class DeviceUnavailable(RuntimeError):
    """The device that was asked for does not exist here (no GPU, a CPU-only torch, ...)."""


class DtypeUnsupported(RuntimeError):
    """The device cannot compute in the dtype that was asked for."""


# --------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def _cuda_build() -> bool:
    """Whether this torch was built with CUDA (or ROCm, which torch also calls "cuda")."""
    version = getattr(torch, "version", None)
    return bool(getattr(version, "cuda", None) or getattr(version, "hip", None))


def gpu_count() -> int:
    """Number of CUDA (or ROCm) GPUs torch can use; 0 on a CPU-only build.

    A CPU-only build is recognised from ``torch.version`` alone, so CUDA is never initialised
    there. On a CUDA build ``torch.cuda.device_count()`` is asked, which does not create a CUDA
    context either."""
    if not _cuda_build():
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:
        return 0


def _mps_available() -> bool:
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:
        return False


def _mps_built() -> bool:
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    try:
        return bool(mps is not None and mps.is_built())
    except Exception:
        return False


def _cuda_usable() -> bool:
    if not _cuda_build():
        return False
    try:
        return bool(torch.cuda.is_available()) and gpu_count() > 0
    except Exception:
        return False


def _default_cuda_index() -> int:
    try:
        return int(torch.cuda.current_device())
    except Exception:
        return 0


def _no_cuda_reason() -> str:
    """Why torch cannot give us any CUDA device (one clause, no trailing period)."""
    if not _cuda_build():
        kind = "a CPU-only build" if not _mps_built() else "built without CUDA"
        return f"torch {torch.__version__} is {kind}"
    reason = "torch sees no CUDA GPU"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "None"):
        reason += f" (CUDA_VISIBLE_DEVICES={visible!r})"
    return reason


def resolve_device(spec: str) -> torch.device:
    """The ``torch.device`` for a device option: "auto", "cpu", "cuda", "cuda:N" or "mps".

    "auto" picks the first of CUDA, MPS and CPU that is usable. "cuda" means the current CUDA
    device (normally index 0). A device that is named but absent raises
    :class:`DeviceUnavailable` with a one-line reason; text that names no device raises
    ``ValueError``."""
    text = str(spec).strip().lower()
    match = _DEVICE_RE.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ValueError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)")
    kind, index = match.group(1), match.group(2)

    if kind == "auto":
        if _cuda_usable():
            return torch.device("cuda", _default_cuda_index())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if _mps_available():
            return torch.device("mps")
        if not _mps_built():
            why = f"torch {torch.__version__} was built without MPS support"
        else:
            why = "MPS needs macOS 12.3 or later on an Apple silicon or AMD GPU Mac"
        raise DeviceUnavailable(f"device {text!r} is not available: {why}")

    # cuda / cuda:N
    if not _cuda_usable():
        raise DeviceUnavailable(f"device {text!r} is not available: {_no_cuda_reason()}")
    count = gpu_count()
    if index is None:
        return torch.device("cuda", _default_cuda_index())
    if int(index) >= count:
        plural = "GPU" if count == 1 else "GPUs"
        raise DeviceUnavailable(f"device {text!r} is not available: this node has {count} CUDA {plural}")
    return torch.device("cuda", int(index))


def _as_device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def synchronize(device: torch.device | str) -> None:
    """Wait until all work queued on ``device`` has finished (nothing to wait for on the CPU)."""
    device = _as_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def nvtx_range(device: torch.device | str, name: str):
    """An NVTX range named ``name`` around the block on a CUDA device (for nsys), nothing elsewhere."""
    cuda = _as_device(device).type == "cuda"
    if cuda:
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if cuda:
            torch.cuda.nvtx.range_pop()


# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
_SHORT_NAMES: dict[torch.dtype, str] = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """The torch dtype for fp32/float32, bf16/bfloat16 or fp16/float16 (any case; a leading
    "torch." is allowed, and a torch dtype among those three is returned as it is)."""
    if isinstance(name, torch.dtype):
        if name in _SHORT_NAMES:
            return name
        raise ValueError(f"unsupported dtype {name} (use fp32, bf16 or fp16)")
    key = str(name).strip().lower()
    if key.startswith("torch."):
        key = key[len("torch."):]
    try:
        return _DTYPES[key]
    except KeyError:
        known = ", ".join(_DTYPES)
        raise ValueError(f"unknown dtype {name!r} (use one of {known})") from None


def dtype_name(dtype: torch.dtype) -> str:
    """"fp32", "bf16" or "fp16"; any other dtype gives its torch name without "torch."."""
    return _SHORT_NAMES.get(dtype, str(dtype).replace("torch.", ""))


_DTYPE_CHECKS: dict[tuple[str, torch.dtype], str | None] = {}  # None: fine; str: the failure


def clear_dtype_cache() -> None:
    """Forget the results of :func:`check_dtype` (for tests, or after the device was reset)."""
    _DTYPE_CHECKS.clear()


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _try_dtype(device: torch.device, dtype: torch.dtype) -> str | None:
    """None when ``device`` computes in ``dtype``, else the reason (one line)."""
    if device.type == "cuda" and dtype == torch.bfloat16:
        try:
            with torch.cuda.device(device):
                supported = bool(torch.cuda.is_bf16_supported())
        except Exception as exc:
            return _first_line(exc)
        if not supported:
            return "torch.cuda.is_bf16_supported() is false for this GPU"
    try:
        # a plain matmul with tensors of that dtype
        a = torch.ones(8, 8, device=device, dtype=dtype)
        torch.matmul(a, a)
        # mixed precision: fp32 tensors, matmul in the target dtype under autocast
        if dtype != torch.float32:
            x = torch.ones(8, 8, device=device, dtype=torch.float32)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with torch.autocast(device.type, dtype=dtype):
                    y = torch.matmul(x, x)
            if y.dtype != dtype:
                said = [str(w.message) for w in caught if "autocast" in str(w.message).lower()]
                detail = _first_line(said[0]) if said else f"the result came out as {dtype_name(y.dtype)}"
                return f"autocast to {dtype_name(dtype)} does not work: {detail}"
        synchronize(device)
    except Exception as exc:
        return _first_line(exc)
    return None


def check_dtype(device: torch.device | str, dtype: torch.dtype) -> None:
    """Raise :class:`DtypeUnsupported` when ``device`` cannot compute in ``dtype``.

    On CUDA, bf16 needs ``torch.cuda.is_bf16_supported()``. Then, on every device, a tiny matmul
    is run in that dtype and (for bf16/fp16) another under ``torch.autocast``; an error, or an
    autocast that quietly stays in fp32, becomes :class:`DtypeUnsupported` with its first line.
    Results, good or bad, are cached per (device, dtype) for the life of the process."""
    device = _as_device(device)
    key = (str(device), dtype)
    if key not in _DTYPE_CHECKS:
        _DTYPE_CHECKS[key] = _try_dtype(device, dtype)
    reason = _DTYPE_CHECKS[key]
    if reason is not None:
        raise DtypeUnsupported(f"dtype {dtype_name(dtype)} is not supported on device {device}: {reason}")


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


def step_sampler(
    step: Callable[[], object], device: torch.device | str, steps_per_round: int = 1
) -> Callable[[], tuple[float, float, float | None]]:
    """A ``sample()`` for :func:`pytest_llmperf.measure.run_rounds` that times ``step``.

    Each call of ``sample()`` runs ``step()`` ``steps_per_round`` times and returns
    ``(seconds per step, wall seconds of the round, None)``. The device is synchronised before
    the round so that work queued earlier is not charged to it.

    On CUDA the seconds per step come from two ``torch.cuda.Event(enable_timing=True)`` recorded
    on the current stream before and after the steps; the end event is waited for before its time
    is read. On the CPU and MPS they come from ``time.perf_counter`` around the steps followed by
    :func:`synchronize`. CPU time is not reported (None): a step may use many threads or wait for
    a GPU, so its share of one thread's time says nothing about preemption."""
    if steps_per_round < 1:
        raise ValueError(f"steps_per_round must be at least 1, not {steps_per_round}")
    device = _as_device(device)
    n = int(steps_per_round)

    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)

        def cuda_sample() -> tuple[float, float, float | None]:
            with torch.cuda.device(device):
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                start.record()
                for _ in range(n):
                    step()
                end.record()
                end.synchronize()
                wall = time.perf_counter() - t0
                seconds = start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds
            return seconds / n, wall, None

        return cuda_sample

    def host_sample() -> tuple[float, float, float | None]:
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        synchronize(device)
        wall = time.perf_counter() - t0
        return wall / n, wall, None

    return host_sample


def _seconds_per_call(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Time ``calls`` back-to-back calls of ``fn`` on ``device`` (events on CUDA)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0 / calls
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / calls


def _best_time(
    fn: Callable[[], object], device: torch.device, min_time: float, batch_time: float = 0.005,
    min_batches: int = 3, max_batches: int = 200,
) -> float:
    """Best seconds per call over batches of calls, each batch at least ``batch_time`` long,
    after two warm-up calls; batches go on until ``min_time`` is spent (and ``min_batches`` run)."""
    first = _seconds_per_call(fn, device, 1)
    second = _seconds_per_call(fn, device, 1)
    per_call = max(min(first, second), 1e-7)
    calls = max(1, math.ceil(batch_time / per_call))
    best = math.inf
    spent = 0.0
    batches = 0
    while batches < min_batches or (spent < min_time and batches < max_batches):
        t = _seconds_per_call(fn, device, calls)
        best = min(best, t)
        spent += t * calls
        batches += 1
    return best


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------

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
            import psutil

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
        import psutil

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

    def __exit__(self, *exc_info: object) -> bool:
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
        import psutil

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


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        from pytest_llmperf.hardware import parse_cpuinfo

        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            model = parse_cpuinfo(fh.read()).get("cpu_model")
        if model and model != "unknown":
            return str(model)
    except (OSError, ImportError):
        pass
    if sys.platform == "darwin":
        brand = _sysctl("machdep.cpu.brand_string")
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown CPU"


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2.0)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def device_name(device: torch.device | str) -> str:
    """A human name for ``device``: the GPU's name (``torch.cuda.get_device_name``), the Mac's
    chip for MPS, or the CPU model (``/proc/cpuinfo``, else ``platform``)."""
    device = _as_device(device)
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    if device.type == "mps":
        brand = _sysctl("machdep.cpu.brand_string") if sys.platform == "darwin" else None
        return f"{brand} GPU (MPS)" if brand else "Apple GPU (MPS)"
    return _cpu_model()


# --------------------------------------------------------------------------
# datasheet peaks
# --------------------------------------------------------------------------

_T = 1e12


def _rates(fp32: float, tf32: float | None, bf16: float | None, fp16: float | None) -> dict[str, float | None]:
    """Dense rates in TFLOP/s, stored in FLOP/s."""
    return {k: (v * _T if v is not None else None) for k, v in
            (("fp32", fp32), ("tf32", tf32), ("bf16", bf16), ("fp16", fp16))}


#: Dense (no 2:4 sparsity) peak FLOP/s by GPU model and math: "fp32" is the plain CUDA-core rate,
#: "tf32"/"bf16"/"fp16" the tensor-core rates with fp32 accumulation (what PyTorch's matmuls
#: use). None: the GPU has no such hardware path. Figures are NVIDIA datasheet or whitepaper
#: boost-clock numbers, sparsity figures halved. A10G: NVIDIA publishes no figures for this AWS
#: part; the A10's are used, though its sustained tensor rate is known to be lower.
PEAK_FLOPS: dict[str, dict[str, float | None]] = {
    "A100": _rates(19.5, 156, 312, 312),  # SXM4 and PCIe, 40 and 80 GB: same compute
    "H100 SXM": _rates(67, 494.7, 989.4, 989.4),
    "H100 PCIe": _rates(51, 378, 756, 756),
    "H100 NVL": _rates(60, 417.5, 835.5, 835.5),  # per GPU
    "H200": _rates(67, 494.7, 989.4, 989.4),  # SXM
    "H200 NVL": _rates(60, 417.5, 835.5, 835.5),
    "GH200": _rates(67, 494.7, 989.4, 989.4),  # the Hopper GPU of the superchip
    "L4": _rates(30.3, 60, 121, 121),
    "L40S": _rates(91.6, 183, 362, 362),
    "L40": _rates(90.5, 90.5, 181, 181),
    "A10": _rates(31.2, 62.5, 125, 125),
    "A10G": _rates(31.2, 62.5, 125, 125),
    "V100 SXM2": _rates(15.7, None, None, 125),
    "V100 PCIe": _rates(14, None, None, 112),
    "V100S PCIe": _rates(16.4, None, None, 130),
    "T4": _rates(8.1, None, None, 65),
    "RTX 4090": _rates(82.6, 82.6, 165.2, 165.2),
    "RTX 3090 Ti": _rates(40, 40, 80, 80),
    "RTX 3090": _rates(35.6, 35.6, 71, 71),
}

#: Peak memory bandwidth in GB/s (10^9 bytes/s) from the datasheets, by memory configuration.
PEAK_BANDWIDTH_GBPS: dict[str, float] = {
    "A100 40GB": 1555,  # SXM4 and PCIe
    "A100 80GB SXM": 2039,
    "A100 80GB PCIe": 1935,
    "H100 SXM": 3350,
    "H100 PCIe": 2000,
    "H100 NVL": 3900,
    "H200": 4800,
    "H200 NVL": 4800,
    "GH200 96GB HBM3": 4000,
    "GH200 144GB HBM3e": 4900,
    "L4": 300,
    "L40S": 864,
    "L40": 864,
    "A10": 600,
    "A10G": 600,
    "V100": 900,
    "V100S": 1134,
    "T4": 320,
    "RTX 4090": 1008,
    "RTX 3090 Ti": 1008,
    "RTX 3090": 936,
}

# (pattern, key), first match wins: more specific names come before names they contain
# ("GH200" contains "H200", "A100" starts with "A10", "L40S" with "L4").
_COMPUTE_MODELS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), key) for p, key in (
        (r"GH200", "GH200"),
        (r"H200.*NVL", "H200 NVL"),
        (r"H200", "H200"),
        (r"H100.*NVL", "H100 NVL"),
        (r"H100.*PCI-?E", "H100 PCIe"),
        (r"H100", "H100 SXM"),  # "NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB"
        (r"A100", "A100"),
        (r"A10G", "A10G"),
        (r"\bA10\b", "A10"),
        (r"L40S", "L40S"),
        (r"\bL40\b", "L40"),
        (r"\bL4\b", "L4"),
        (r"V100S", "V100S PCIe"),
        (r"V100.*PCI-?E", "V100 PCIe"),
        (r"V100", "V100 SXM2"),
        (r"\bT4\b", "T4"),
        (r"RTX\s*4090", "RTX 4090"),
        (r"RTX\s*3090\s*TI", "RTX 3090 Ti"),
        (r"RTX\s*3090", "RTX 3090"),
    )
]

_MEMORY_MODELS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), key) for p, key in (
        (r"GH200.*144\s*G", "GH200 144GB HBM3e"),
        (r"GH200", "GH200 96GB HBM3"),
        (r"H200.*NVL", "H200 NVL"),
        (r"H200", "H200"),
        (r"H100.*NVL", "H100 NVL"),
        (r"H100.*PCI-?E", "H100 PCIe"),
        (r"H100", "H100 SXM"),
        (r"A100.*80\s*GB.*PCI-?E|A100.*PCI-?E.*80\s*GB", "A100 80GB PCIe"),
        (r"A100.*80\s*GB", "A100 80GB SXM"),
        (r"A100", "A100 40GB"),
        (r"A10G", "A10G"),
        (r"\bA10\b", "A10"),
        (r"L40S", "L40S"),
        (r"\bL40\b", "L40"),
        (r"\bL4\b", "L4"),
        (r"V100S", "V100S"),
        (r"V100", "V100"),
        (r"\bT4\b", "T4"),
        (r"RTX\s*4090", "RTX 4090"),
        (r"RTX\s*3090\s*TI", "RTX 3090 Ti"),
        (r"RTX\s*3090", "RTX 3090"),
    )
]


def _match(models: list[tuple[re.Pattern[str], str]], gpu_name: str) -> str | None:
    for pattern, key in models:
        if pattern.search(gpu_name or ""):
            return key
    return None


def gpu_model(gpu_name: str) -> str | None:
    """The :data:`PEAK_FLOPS` key for a name as ``torch.cuda.get_device_name`` gives it."""
    return _match(_COMPUTE_MODELS, gpu_name)


def gpu_memory_model(gpu_name: str) -> str | None:
    """The :data:`PEAK_BANDWIDTH_GBPS` key for a GPU name."""
    return _match(_MEMORY_MODELS, gpu_name)


def _math_key(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str) and dtype.strip().lower() == "tf32":
        return "tf32"
    return dtype_name(resolve_dtype(dtype))


def table_peak_flops(gpu_name: str, dtype: torch.dtype | str) -> float | None:
    """Dense datasheet FLOP/s of the GPU called ``gpu_name`` for ``dtype`` (a torch dtype, one of
    the names :func:`resolve_dtype` knows, or "tf32"); None for an unknown GPU or a math the GPU
    has no hardware for (bf16 on a V100 or T4)."""
    model = gpu_model(gpu_name)
    if model is None:
        return None
    return PEAK_FLOPS[model].get(_math_key(dtype))


def table_bandwidth(gpu_name: str) -> float | None:
    """Datasheet memory bandwidth in GB/s of the GPU called ``gpu_name``; None when unknown."""
    key = gpu_memory_model(gpu_name)
    return float(PEAK_BANDWIDTH_GBPS[key]) if key is not None else None


def tf32_matmul_enabled() -> bool:
    """Whether float32 CUDA matmuls may use TF32 tensor cores under the current settings.

    The newer ``torch.backends.cuda.matmul.fp32_precision`` ("tf32"/"ieee") decides when set,
    then the global ``torch.backends.fp32_precision``, then the legacy
    ``torch.backends.cuda.matmul.allow_tf32`` (which ``torch.set_float32_matmul_precision``
    "high"/"medium" turns on). torch's default is no TF32 ("highest")."""
    for owner, attr in ((getattr(torch.backends.cuda, "matmul", None), "fp32_precision"),
                        (torch.backends, "fp32_precision")):
        try:
            value = getattr(owner, attr, None)
        except Exception:
            value = None
        if value == "tf32":
            return True
        if value == "ieee":
            return False
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:
        pass
    try:
        return torch.get_float32_matmul_precision() != "highest"
    except Exception:
        return False


def _tflops_text(flops: float) -> str:
    t = flops / _T
    return f"{t:.0f}" if t >= 100 else f"{t:.3g}"


def peak_flops_for(
    device: torch.device | str, dtype: torch.dtype | str, gpu_name: str | None = None
) -> tuple[float | None, str]:
    """The datasheet peak for matmuls in ``dtype`` on ``device`` and where it comes from.

    For float32 the figure follows the current matmul precision (:func:`tf32_matmul_enabled`):
    the TF32 tensor-core rate when TF32 is allowed, the plain fp32 rate otherwise (torch's
    default). Returns ``(flop_per_s or None, source)``, e.g.
    ``(989.4e12, "table: NVIDIA H100 80GB HBM3 bf16 dense 989 TFLOP/s")``. ``gpu_name``
    overrides the name read from the device."""
    device = _as_device(device)
    if device.type != "cuda":
        return None, f"no peak FLOP/s table for {device.type} devices"
    name = gpu_name if gpu_name is not None else device_name(device)
    model = gpu_model(name)
    if model is None:
        return None, f"no table entry for GPU {name!r}"
    key = _math_key(dtype)
    note = ""
    if key == "fp32":
        if tf32_matmul_enabled() and PEAK_FLOPS[model].get("tf32") is not None:
            key, note = "tf32", " (float32 matmuls may use TF32)"
        else:
            note = " (float32 matmul precision 'highest': no TF32)"
    value = PEAK_FLOPS[model].get(key)
    if value is None:
        return None, f"table: {name} has no {key} tensor-core rate"
    return value, f"table: {name} {key} dense {_tflops_text(value)} TFLOP/s{note}"


# --------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------


def _filled(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A deterministic tensor of small values, made without touching any random generator."""
    count = math.prod(shape)
    values = torch.arange(count, device=device, dtype=torch.float32).remainder_(13).sub_(6).mul_(0.05)
    return values.reshape(shape).to(dtype)


def _cpu_matmul_size(dtype: torch.dtype) -> int:
    """The largest of 2048, 1536 and 1024 whose matmul should take at most ~50 ms here, judged
    from the fastest of three timed 1024 matmuls (512 when one takes over 200 ms)."""
    device = torch.device("cpu")
    a = _filled((1024, 1024), device, dtype)
    out = torch.empty_like(a)
    torch.mm(a, a, out=out)  # warm-up
    t = _seconds_per_call(lambda: torch.mm(a, a, out=out), device, 1)
    if t <= 0.2:  # the fastest of three, so that a hiccup does not change the size
        t = min(t, *(_seconds_per_call(lambda: torch.mm(a, a, out=out), device, 1) for _ in range(2)))
    if t > 0.2:
        return 512
    for n in (2048, 1536):
        if t * (n / 1024) ** 3 <= 0.05:
            return n
    return 1024


def matmul_probe(
    device: torch.device | str, dtype: torch.dtype | str, size: int | None = None, min_time: float = 0.2
) -> float:
    """Achieved FLOP/s of a square ``size`` x ``size`` matmul computed in ``dtype`` on ``device``.

    The operands are ``dtype`` tensors (no autocast); a float32 matmul on CUDA follows the
    current TF32 setting, like the workload's own matmuls. ``size`` defaults to 4096 on a GPU and
    on the CPU to 1024, 1536 or 2048, the largest whose call should take at most about 50 ms.
    After two warm-up calls, batches of calls are timed (CUDA events on CUDA) until ``min_time``
    seconds are spent; the best batch counts. One call is ``2 * size**3`` floating-point
    operations."""
    device = _as_device(device)
    dtype = resolve_dtype(dtype)
    if size is None:
        size = _cpu_matmul_size(dtype) if device.type == "cpu" else 4096
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    with torch.no_grad():
        a = _filled((size, size), device, dtype)
        b = _filled((size, size), device, dtype).t().contiguous()
        out = torch.empty((size, size), device=device, dtype=dtype)
        seconds = _best_time(lambda: torch.mm(a, b, out=out), device, min_time)
    del a, b, out
    return 2.0 * size**3 / seconds


def _default_read_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
        nbytes = max(_GIB, 8 * l2)
        free = available_memory(device)
        if free is not None:
            nbytes = min(nbytes, max(64 * _MIB, free // 2))
        return nbytes
    nbytes = _GIB
    try:
        from pytest_llmperf.hardware import parse_cache_sizes

        caches = parse_cache_sizes()
        largest = max((v for v in caches.values() if v), default=0)
        nbytes = max(nbytes, 8 * largest)
    except Exception:
        pass
    free = available_memory(device)
    if free is not None:
        nbytes = min(nbytes, max(64 * _MIB, free // 4))
    return nbytes


def torch_read_bandwidth(device: torch.device | str, nbytes: int | None = None, passes: int = 5) -> dict:
    """Memory read bandwidth of ``device`` measured with ``torch.sum`` over a float32 buffer.

    The buffer is far larger than the last-level cache so that every pass streams from memory:
    by default on CUDA the larger of 1 GiB and 8x the L2 (``L2_cache_size``), bounded by half the
    free memory; elsewhere 1 GiB or 8x the largest CPU cache, bounded by a quarter of the
    available memory. After one warm-up pass, ``passes`` passes are timed (CUDA events on CUDA)
    and the fastest counts.

    Returns ``{"read_GBps", "bytes", "passes", "method", "median_GBps", "device"}`` (GB =
    10^9 bytes). On the CPU the plugin reports its compiled C probe instead (a reduction in torch
    runs on torch's intra-op threads and carries dispatch overhead); this function works there
    too, which tests use with a small ``nbytes``."""
    device = _as_device(device)
    if passes < 1:
        raise ValueError(f"passes must be at least 1, not {passes}")
    if nbytes is None:
        nbytes = _default_read_bytes(device)
    count = max(1, int(nbytes) // 4)
    nbytes = count * 4
    with torch.no_grad():
        buf = torch.empty(count, device=device, dtype=torch.float32)
        buf.fill_(1.0)
        buf.sum()  # warm-up: kernels loaded, pages resident
        times = sorted(_seconds_per_call(buf.sum, device, 1) for _ in range(passes))
    del buf
    best = times[0]
    median = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
    timer = "CUDA events" if device.type == "cuda" else "perf_counter and synchronize"
    return {
        "read_GBps": nbytes / best / 1e9,
        "bytes": nbytes,
        "passes": passes,
        "method": f"torch.sum over a float32 buffer, fastest of {passes} passes, timed with {timer}",
        "median_GBps": nbytes / median / 1e9,
        "device": str(device),
    }
