"""Machine description and hardware fingerprinting for per-node baselines.

Everything here is plain Python (no pytest), and nothing here imports ``torch``:
:func:`torch_info` reads the torch that a test already imported, and
:func:`torch_static_info` torch's installed files.  ``psutil`` is optional (the
code falls back to ``os``/``/proc`` when it is missing).

Two layers:

* :func:`detect` returns a rich, nested description of the machine.  Some of
  it is volatile (current clock frequency, host name) and lives under the
  ``"volatile"`` key.
* :func:`fingerprint_fields` extracts the *stable* subset that decides whether
  two measurements may be compared; :func:`fingerprint_hash` digests it and
  :func:`fingerprint_diff` explains a mismatch.

This module only re-exports; each concern has its own module: cpuinfo (/proc/cpuinfo), caches
(Linux sysfs and sysconf), darwin (macOS sysctl), toolchain (os-release, compiler), torchfacts
(PyTorch, nvidia-smi), memory, machine (detect) and fingerprint.  The paths ``detect`` reads are
looked up in their own modules (``cpuinfo.CPUINFO_PATH``, ``caches.CACHE_SYSFS_PATH``,
``toolchain.OS_RELEASE_PATHS``): point those elsewhere, not the copies here.
"""

from __future__ import annotations

from ..node import auto_node_name as auto_node_name
from ..node import sanitize_node_name as sanitize_node_name
from ..node import validate_node_name as validate_node_name
from .caches import CACHE_SYSFS_PATH as CACHE_SYSFS_PATH
from .caches import parse_cache_sizes as parse_cache_sizes
from .caches import parse_size as parse_size
from .cpuinfo import ARM_IMPLEMENTERS as ARM_IMPLEMENTERS
from .cpuinfo import ARM_ISA_FEATURES as ARM_ISA_FEATURES
from .cpuinfo import ARM_PARTS as ARM_PARTS
from .cpuinfo import CPUINFO_PATH as CPUINFO_PATH
from .cpuinfo import RISCV_VENDORS as RISCV_VENDORS
from .cpuinfo import X86_ISA_FLAGS as X86_ISA_FLAGS
from .cpuinfo import parse_cpuinfo as parse_cpuinfo
from .darwin import parse_sysctl_output as parse_sysctl_output
from .fingerprint import fingerprint_diff as fingerprint_diff
from .fingerprint import fingerprint_fields as fingerprint_fields
from .fingerprint import fingerprint_hash as fingerprint_hash
from .machine import detect as detect
from .memory import parse_meminfo_total as parse_meminfo_total
from .toolchain import OS_RELEASE_PATHS as OS_RELEASE_PATHS
from .toolchain import compiler_version as compiler_version
from .toolchain import parse_os_release as parse_os_release
from .torchfacts import parse_nvidia_smi as parse_nvidia_smi
from .torchfacts import torch_info as torch_info
from .torchfacts import torch_static_info as torch_static_info

__all__ = [
    "auto_node_name",
    "compiler_version",
    "detect",
    "fingerprint_diff",
    "fingerprint_fields",
    "fingerprint_hash",
    "parse_cache_sizes",
    "parse_cpuinfo",
    "parse_meminfo_total",
    "parse_os_release",
    "parse_size",
    "sanitize_node_name",
    "torch_info",
    "validate_node_name",
]
