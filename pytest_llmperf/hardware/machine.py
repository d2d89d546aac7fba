"""``detect``: the whole description of this machine, put together from the readers of the
package; it never raises (unknown values are None)."""

from __future__ import annotations

import importlib
import os
import platform
import socket
from typing import Any

from . import caches, cpuinfo, toolchain
from .caches import _sysconf_caches, parse_cache_sizes
from .common import _read_text
from .cpuinfo import _empty_cpu, parse_cpuinfo
from .darwin import _darwin_caches, _darwin_sysctl
from .memory import _memory_total
from .toolchain import compiler_version, parse_os_release
from .torchfacts import torch_info

# the paths (cpuinfo.CPUINFO_PATH, caches.CACHE_SYSFS_PATH, toolchain.OS_RELEASE_PATHS) are read
# from their modules at each call, so that a test can point them elsewhere

_DARWIN_SYSCTLS = [
    "machdep.cpu.brand_string",
    "hw.l1dcachesize",
    "hw.l1icachesize",
    "hw.l2cachesize",
    "hw.l3cachesize",
]


def _psutil() -> Any | None:
    """psutil when installed (it is optional; os and /proc stand in for it)."""
    try:
        return importlib.import_module("psutil")
    except Exception:
        return None


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _safe(func: Any, *args: Any, default: Any = None) -> Any:
    try:
        return func(*args)
    except Exception:
        return default


def _cpu(darwin: dict[str, str], machine: str) -> dict[str, Any]:
    """/proc/cpuinfo parsed, else sysctl's brand string (macOS), else what ``platform`` knows."""
    cpuinfo_text = _read_text(cpuinfo.CPUINFO_PATH)
    cpu: dict[str, Any]
    if cpuinfo_text:
        cpu = parse_cpuinfo(cpuinfo_text)
        cpu["source"] = cpuinfo.CPUINFO_PATH
    else:
        cpu = _empty_cpu()
        if darwin.get("machdep.cpu.brand_string"):
            cpu["cpu_model"] = darwin["machdep.cpu.brand_string"]
            cpu["source"] = "sysctl"
        else:
            cpu["cpu_model"] = _safe(platform.processor, default="") or machine or "unknown"
            cpu["source"] = "platform"
        cpu["isa"] = machine or None
        cpu["logical_cpus"] = os.cpu_count() or 0
    return cpu


def _cache_sizes(darwin: dict[str, str], system: str) -> dict[str, int | None]:
    if darwin:
        return _darwin_caches(darwin)
    sizes = parse_cache_sizes(caches.CACHE_SYSFS_PATH)
    if all(v is None for v in sizes.values()) and system == "Linux":
        sizes = _sysconf_caches()
    return sizes


def _os_info(system: str) -> dict[str, Any]:
    distro = None
    if system == "Darwin":
        mac = _safe(platform.mac_ver, default=("",))[0]
        distro = f"macOS {mac}" if mac else None
    else:
        for path in toolchain.OS_RELEASE_PATHS:
            text = _read_text(path)
            if text:
                fields = parse_os_release(text)
                distro = fields.get("PRETTY_NAME") or fields.get("NAME")
                break
    return {
        "system": system or None,
        "release": _safe(platform.release, default=None) or None,
        "version": _safe(platform.version, default=None) or None,
        "distro": distro,
    }


def detect(cc: str = "cc", include_torch: bool = True) -> dict[str, Any]:
    """Describe this machine; never raises (unknown values are None).

    Returned keys:

    * ``arch``: ``platform.machine()``
    * ``cpu``: :func:`parse_cpuinfo` result plus ``source``
      ("/proc/cpuinfo", "sysctl" or "platform")
    * ``cores``: ``physical``, ``logical`` (psutil) and ``usable``
      (CPU affinity of this process; informational, not fingerprinted)
    * ``memory``: ``total_bytes``
    * ``caches``: :func:`parse_cache_sizes` keys
    * ``os``: ``system``, ``release``, ``version``, ``distro``
      (os-release PRETTY_NAME, or "macOS 14.4" on macOS)
    * ``python``: ``version``, ``implementation``
    * ``compiler``: :func:`compiler_version` line or None
    * ``torch``: :func:`torch_info` (None when not requested, or when torch is not imported:
      detect never imports it)
    * ``volatile``: ``cpu_freq_mhz``, ``hostname``; never fingerprinted.
    """
    system = _safe(platform.system, default="") or ""
    machine = _safe(platform.machine, default="") or ""
    psutil = _psutil()
    darwin = _darwin_sysctl(_DARWIN_SYSCTLS) if system == "Darwin" else {}

    physical = logical = None
    if psutil is not None:
        physical = _safe(psutil.cpu_count, False)
        logical = _safe(psutil.cpu_count, True)
    if logical is None:
        logical = os.cpu_count()

    freq = None
    if psutil is not None:
        current = _safe(psutil.cpu_freq)
        if current is not None and getattr(current, "current", None):
            freq = float(current.current)
    hostname = _safe(socket.gethostname, default=None)

    return {
        "arch": machine or None,
        "cpu": _cpu(darwin, machine),
        "cores": {"physical": physical, "logical": logical, "usable": _usable_cpus()},
        "memory": {"total_bytes": _memory_total(psutil)},
        "caches": _cache_sizes(darwin, system),
        "os": _os_info(system),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "compiler": _safe(compiler_version, cc),
        "torch": _safe(torch_info) if include_torch else None,
        "volatile": {"cpu_freq_mhz": freq, "hostname": hostname},
    }
