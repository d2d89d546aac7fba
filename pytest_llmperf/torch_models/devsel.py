"""Choosing a torch device from a device option, and naming it. No pytest.

Nothing here initialises CUDA on import, and :func:`gpu_count` never does on a CPU-only build.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

import torch

from pytest_llmperf import hardware

__all__ = ["DeviceUnavailable", "device_name", "gpu_count", "resolve_device"]


class DeviceUnavailable(RuntimeError):
    """The device that was asked for does not exist here (no GPU, a CPU-only torch, ...)."""



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



def _cpu_model() -> str:
    """The CPU model as the core's cpuinfo parser reads it (the name the node fingerprint shows),
    else the Mac's brand string, else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            model = hardware.parse_cpuinfo(fh.read()).get("cpu_model")
        if model and model != "unknown":
            return str(model)
    except OSError:
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
