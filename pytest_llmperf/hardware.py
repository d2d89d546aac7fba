"""Machine description and hardware fingerprinting for per-node baselines.

Everything here is plain Python (no pytest).  ``torch`` is never imported at
module import time: only :func:`torch_info` imports it, and only when it is
installed.  ``psutil`` is imported lazily and is optional at run time (the
code falls back to ``os``/``/proc`` when it is missing).

Two layers:

* :func:`detect` returns a rich, nested description of the machine.  Some of
  it is volatile (current clock frequency, host name) and lives under the
  ``"volatile"`` key.
* :func:`fingerprint_fields` extracts the *stable* subset that decides whether
  two measurements may be compared; :func:`fingerprint_hash` digests it and
  :func:`fingerprint_diff` explains a mismatch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

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

CPUINFO_PATH = "/proc/cpuinfo"
CACHE_SYSFS_PATH = "/sys/devices/system/cpu/cpu0/cache"
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")

_GIB = 1 << 30

# --------------------------------------------------------------------------
# /proc/cpuinfo
# --------------------------------------------------------------------------

#: x86 ``flags`` worth recording (they matter for LLM kernels).
X86_ISA_FLAGS = frozenset(
    {
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    }
)

#: Arm ``Features`` worth recording.
ARM_ISA_FEATURES = frozenset(
    {
        "neon",
        "asimd",
        "asimdhp",
        "asimddp",
        "asimdfhm",
        "fphp",
        "atomics",
        "sve",
        "sve2",
        "svebf16",
        "svei8mm",
        "bf16",
        "i8mm",
        "sme",
        "sme2",
    }
)

#: Arm ``CPU implementer`` codes.
ARM_IMPLEMENTERS: dict[int, str] = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x51: "Qualcomm",
    0x61: "Apple",
    0xC0: "Ampere",
}

#: (implementer, part) -> core name.
ARM_PARTS: dict[tuple[int, int], str] = {
    (0x41, 0xD03): "Cortex-A53",
    (0x41, 0xD04): "Cortex-A35",
    (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x46, 0x001): "A64FX",
    (0x48, 0xD01): "TaiShan-v110",
    (0x4E, 0x004): "Carmel",
    (0x61, 0x022): "Apple M1 Icestorm",
    (0x61, 0x023): "Apple M1 Firestorm",
    (0xC0, 0xAC3): "Ampere-1",
    (0xC0, 0xAC4): "Ampere-1a",
}

#: RISC-V ``mvendorid`` (JEDEC) codes.
RISCV_VENDORS: dict[int, str] = {
    0x489: "SiFive",
    0x5B7: "T-Head",
}


def _split_blocks(text: str) -> list[dict[str, str]]:
    """Split cpuinfo text into blank-line separated ``{key: value}`` blocks.

    Keys are case sensitive (x86 ``model`` differs from Raspberry Pi
    ``Model``); within a block the first occurrence of a key wins.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                blocks.append(current)
                current = {}
            continue
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in current:
            current[key] = " ".join(value.split())
    if current:
        blocks.append(current)
    return blocks


def _int(value: str | None, base: int = 10) -> int | None:
    """Parse an int (``base=0`` accepts ``0x`` prefixes); None when invalid."""
    if value is None:
        return None
    try:
        return int(value.strip(), base)
    except (ValueError, AttributeError):
        return None


def _first(blocks: Iterable[Mapping[str, str]], key: str) -> str | None:
    for block in blocks:
        value = block.get(key)
        if value:
            return value
    return None


def _unique(items: Iterable[str]) -> list[str]:
    """Distinct items in order of first appearance."""
    seen: dict[str, None] = {}
    for item in items:
        if item and item not in seen:
            seen[item] = None
    return list(seen)


def _riscv_extensions(isa: str) -> list[str]:
    """Extensions named by a RISC-V ISA string such as ``rv64imafdcv_zba``."""
    isa = isa.strip().lower()
    match = re.match(r"rv(?:32|64|128)([a-z]*)(.*)$", isa)
    if not match:
        return []
    singles, rest = match.group(1), match.group(2)
    exts: set[str] = set()
    # Multi-letter extensions start with z/s/x; they may follow the single
    # letters directly (``rv64gczicsr``) although Linux always uses '_'.
    multi_start = re.search(r"[zsx]", singles)
    if multi_start:
        rest = singles[multi_start.start():] + rest
        singles = singles[: multi_start.start()]
    for letter in singles:
        if letter == "g":
            exts.update("imafd")
        else:
            exts.add(letter)
    for part in re.split(r"_+", rest):
        if part:
            exts.add(part)
    return sorted(exts)


def _empty_cpu() -> dict[str, Any]:
    return {
        "kind": None,
        "cpu_model": "unknown",
        "vendor": None,
        "isa": None,
        "uarch": None,
        "logical_cpus": 0,
        "isa_extensions": [],
    }


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Parse ``/proc/cpuinfo`` text (x86, RISC-V, Arm; others best effort).

    Always returns at least ``kind`` ("x86", "riscv", "arm" or None),
    ``cpu_model`` (str, "unknown" when nothing usable), ``vendor``, ``isa``,
    ``uarch`` (str or None), ``logical_cpus`` (number of ``processor``
    entries; on s390x of ``processor N`` lines, else ``# processors``) and
    ``isa_extensions`` (sorted list).  Architecture specific
    extras: x86 ``family``/``model_number``; RISC-V ``mmu``, ``mvendorid``,
    ``marchid``, ``mimpid``; Arm ``implementer``/``part`` (hex strings),
    ``hardware`` and ``board``.

    Per architecture:

    * x86: ``cpu_model`` is "model name"; ``uarch`` is
      "family F model M" (CPUID identifies the microarchitecture even when a
      VM hides the marketing name); ``isa`` is "x86_64" (or "x86" without
      the ``lm`` flag); ``isa_extensions`` are the :data:`X86_ISA_FLAGS`
      present on *every* processor.
    * RISC-V: ``cpu_model`` and ``uarch`` come from ``uarch`` (e.g.
      "sifive,u74-mc"); ``isa`` is the kernel's ISA string and
      ``isa_extensions`` all the extensions it names.
    * Arm: ``cpu_model`` is the core name mapped from implementer/part codes
      (preferred over a generic "model name"), "<Vendor> part 0x..." for a
      known implementer with an unknown part, else
      "implementer 0x.. part 0x..".  Heterogeneous (big.LITTLE) systems give
      the names joined by " + ".  ``isa`` is "armv<CPU architecture>" and
      ``isa_extensions`` the :data:`ARM_ISA_FEATURES` present on every core.

    Never raises: unexpected input yields the "unknown" result.
    """
    try:
        return _parse_cpuinfo(text if isinstance(text, str) else "")
    except Exception:  # defensive: cpuinfo formats vary wildly
        return _empty_cpu()


def _parse_cpuinfo(text: str) -> dict[str, Any]:
    result = _empty_cpu()
    blocks = _split_blocks(text)
    if not blocks:
        return result
    procs = [b for b in blocks if _int(b.get("processor")) is not None]
    result["logical_cpus"] = len(procs) or _numbered_processors(blocks)
    cores = procs or blocks
    model_name = _first(blocks, "model name")

    if any("flags" in b or "cpu family" in b for b in blocks):
        result["kind"] = "x86"
        _parse_x86(result, cores, model_name)
    elif any(b.get("isa", "").lower().startswith("rv") for b in blocks):
        result["kind"] = "riscv"
        _parse_riscv(result, cores, model_name)
    elif any("CPU implementer" in b or "Features" in b for b in blocks):
        result["kind"] = "arm"
        _parse_arm(result, blocks, cores, model_name)
    else:
        # ppc64le ("cpu : POWER9"), s390x, ...: best effort.
        name = model_name or _first(blocks, "cpu") or _first(blocks, "Processor")
        if name:
            result["cpu_model"] = name
        result["vendor"] = _first(blocks, "vendor_id") or _first(blocks, "vendor")
    return result


def _numbered_processors(blocks: list[dict[str, str]]) -> int:
    """CPUs of a cpuinfo without ``processor : N`` entries: s390x lists ``processor N: version =
    ...`` lines and a ``# processors : N`` total."""
    numbered = {key for block in blocks for key in block if re.fullmatch(r"processor \d+", key)}
    if numbered:
        return len(numbered)
    total = _int(_first(blocks, "# processors"))
    return total if total is not None and 0 < total <= 1 << 20 else 0


def _common_flags(cores: list[dict[str, str]], key: str, wanted: frozenset[str]) -> list[str]:
    sets = [set(b[key].split()) for b in cores if key in b]
    if not sets:
        return []
    common = set.intersection(*sets)
    return sorted(common & wanted)


def _parse_x86(result: dict[str, Any], cores: list[dict[str, str]], model_name: str | None) -> None:
    result["cpu_model"] = model_name or "unknown"
    result["vendor"] = _first(cores, "vendor_id")
    family = _int(_first(cores, "cpu family"))
    model = _int(_first(cores, "model"))
    result["family"] = family
    result["model_number"] = model
    if family is not None and model is not None:
        result["uarch"] = f"family {family} model {model}"
    flags = _first(cores, "flags") or ""
    result["isa"] = "x86_64" if "lm" in flags.split() else "x86"
    result["isa_extensions"] = _common_flags(cores, "flags", X86_ISA_FLAGS)


def _parse_riscv(result: dict[str, Any], cores: list[dict[str, str]], model_name: str | None) -> None:
    uarchs = _unique(b.get("uarch", "") for b in cores)
    isa = _first(cores, "isa")
    mvendorid = _int(_first(cores, "mvendorid"), 0)
    marchid = _first(cores, "marchid")
    result["uarch"] = " + ".join(uarchs) if uarchs else None
    result["isa"] = isa
    result["isa_extensions"] = _riscv_extensions(isa) if isa else []
    result["mmu"] = _first(cores, "mmu")
    result["mvendorid"] = _first(cores, "mvendorid")
    result["marchid"] = marchid
    result["mimpid"] = _first(cores, "mimpid")
    vendor = RISCV_VENDORS.get(mvendorid) if mvendorid is not None else None
    if vendor is None and uarchs and "," in uarchs[0]:
        vendor = uarchs[0].split(",", 1)[0]
    result["vendor"] = vendor
    if result["uarch"]:
        result["cpu_model"] = result["uarch"]
    elif model_name:
        result["cpu_model"] = model_name
    elif mvendorid is not None:
        who = vendor or f"mvendorid {mvendorid:#x}"
        result["cpu_model"] = f"{who} marchid {marchid or '?'}"


def _parse_arm(
    result: dict[str, Any],
    blocks: list[dict[str, str]],
    cores: list[dict[str, str]],
    model_name: str | None,
) -> None:
    names: list[str] = []
    implementers: list[int] = []
    parts: list[str] = []
    for b in cores:
        impl = _int(b.get("CPU implementer"), 0)
        part = _int(b.get("CPU part"), 0)
        if impl is None or part is None:
            continue
        implementers.append(impl)
        parts.append(f"{part:#05x}")
        known = ARM_PARTS.get((impl, part))
        if known:
            names.append(known)
        elif impl in ARM_IMPLEMENTERS:
            names.append(f"{ARM_IMPLEMENTERS[impl]} part {part:#05x}")
        else:
            names.append(f"implementer {impl:#04x} part {part:#05x}")
    names = _unique(names)
    # Old 32-bit kernels put "Processor : ARMv7 Processor rev 4 (v7l)" in a
    # header block; treat it like "model name".
    header_name = _first(blocks, "Processor")
    if header_name and _int(header_name) is not None:
        header_name = None
    if names:
        result["cpu_model"] = " + ".join(names)
    elif model_name or header_name:
        result["cpu_model"] = model_name or header_name
    if implementers:
        result["vendor"] = ARM_IMPLEMENTERS.get(implementers[0], f"implementer {implementers[0]:#04x}")
        result["implementer"] = f"{implementers[0]:#04x}"
        result["part"] = " + ".join(_unique(parts))
    arch = _first(cores, "CPU architecture")
    arch_num = _int(arch)
    if arch_num is not None:
        result["isa"] = f"armv{arch_num}"
    elif arch:
        # e.g. "AArch64" on some Android kernels.
        result["isa"] = "armv8" if arch.lower() == "aarch64" else arch.lower()
    result["uarch"] = result["cpu_model"] if names else None
    result["isa_extensions"] = _common_flags(cores, "Features", ARM_ISA_FEATURES)
    result["hardware"] = _first(blocks, "Hardware")
    result["board"] = _first(blocks, "Model")


# --------------------------------------------------------------------------
# caches
# --------------------------------------------------------------------------

# ASCII only: under IGNORECASE a Unicode pattern's [K] also matches the KELVIN SIGN (U+212A),
# whose upper case is itself, and \d matches every script's digits
_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_MULT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_LIMIT = 1 << 63  # what a size in a 64-bit field can be
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


def _read_text(path: Path | str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


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


def _darwin_sysctl(names: list[str], timeout: float = 2.0) -> dict[str, str]:
    """``sysctl`` values on macOS (one subprocess); {} on failure."""
    exe = shutil.which("sysctl") or "/usr/sbin/sysctl"
    try:
        proc = subprocess.run([exe, *names], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_sysctl_output(proc.stdout)


def parse_sysctl_output(text: str) -> dict[str, str]:
    """Parse ``sysctl name1 name2`` output ("name: value" lines)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def _darwin_caches(values: Mapping[str, str]) -> dict[str, int | None]:
    out = _empty_caches()
    for key, name in (
        ("l1d_bytes", "hw.l1dcachesize"),
        ("l1i_bytes", "hw.l1icachesize"),
        ("l2_bytes", "hw.l2cachesize"),
        ("l3_bytes", "hw.l3cachesize"),
    ):
        value = _int(values.get(name))
        if value is not None and 0 < value < _CACHE_LIMIT:
            out[key] = value
    out["llc_bytes"] = out["l3_bytes"] or out["l2_bytes"]
    return out


# --------------------------------------------------------------------------
# OS, compiler, torch
# --------------------------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5) ``KEY=value`` lines (quotes removed)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            value = re.sub(r"\\(.)", r"\1", value)
        out[key] = value
    return out


def compiler_version(cc: str = "cc", timeout: float = 5.0) -> str | None:
    """First line of ``<cc> --version``; None when missing, failing or slow."""
    if not cc:
        return None
    exe = shutil.which(cc)
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--version"],
            capture_output=True,
            text=True,
            errors="replace",  # a banner with a stray byte still names the compiler
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    for stream in (proc.stdout, proc.stderr):
        for line in (stream or "").splitlines():
            if line.strip():
                return line.strip()
    return None


def torch_info() -> dict[str, Any] | None:
    """PyTorch and accelerator facts, or None when torch is not installed.

    Keys: ``version``, ``cuda_available``, ``cuda_version``
    (``torch.version.cuda``), ``hip_version``, ``mps_available``,
    ``device_count``, ``gpus`` (list of ``{"name", "total_memory_bytes"}``,
    CUDA/ROCm only).  Any failure is recorded as ``error`` instead of
    raised.  Note that querying devices initialises the CUDA driver.
    """
    try:
        if importlib.util.find_spec("torch") is None:
            return None
    except (ImportError, ValueError):
        return None
    info: dict[str, Any] = {
        "version": None,
        "cuda_available": False,
        "cuda_version": None,
        "hip_version": None,
        "mps_available": False,
        "device_count": 0,
        "gpus": [],
    }
    try:
        import torch

        info["version"] = str(getattr(torch, "__version__", None))
        version = getattr(torch, "version", None)
        info["cuda_version"] = getattr(version, "cuda", None)
        info["hip_version"] = getattr(version, "hip", None)
        mps = getattr(getattr(torch, "backends", None), "mps", None)
        if mps is not None and hasattr(mps, "is_available"):
            info["mps_available"] = bool(mps.is_available())
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            count = int(torch.cuda.device_count())
            info["device_count"] = count
            for index in range(count):
                props = torch.cuda.get_device_properties(index)
                info["gpus"].append(
                    {
                        "name": str(getattr(props, "name", None) or torch.cuda.get_device_name(index)),
                        "total_memory_bytes": int(props.total_memory),
                    }
                )
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`` output."""
    gpus = []
    for line in text.splitlines():
        name, sep, memory = line.rpartition(",")
        if not sep or not name.strip():
            continue
        mib = _int(memory.strip())
        total = mib * 1024 * 1024 if mib is not None and 0 < mib < _SIZE_LIMIT >> 20 else None  # "[N/A]", -1
        gpus.append({"name": name.strip(), "total_memory_bytes": total})
    return gpus


def torch_static_info(timeout: float = 5.0) -> dict[str, Any] | None:
    """What the fingerprint needs to know of PyTorch and the GPUs, without importing torch.

    The version comes from the installed distribution's metadata, the CUDA version from the text
    of ``torch/version.py``, the GPUs from ``nvidia-smi`` when it is on PATH. None when torch is
    not installed. Importing torch costs a second or more; a llama2.c suite should not pay it.
    """
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    info: dict[str, Any] = {"version": None, "cuda_version": None, "gpus": []}
    try:
        from importlib import metadata

        info["version"] = metadata.version("torch")
    except Exception:
        pass
    for location in spec.submodule_search_locations or []:
        text = _read_text(Path(location) / "version.py")
        if text:
            match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
            if match:
                info["cuda_version"] = match.group(1)
            if info["version"] is None:
                match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
                info["version"] = match.group(1) if match else None
            break
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=timeout,
            )
            if out.returncode == 0:
                info["gpus"] = parse_nvidia_smi(out.stdout)
        except (OSError, subprocess.SubprocessError):
            pass
    return info


# --------------------------------------------------------------------------
# detect
# --------------------------------------------------------------------------


def _psutil() -> Any | None:
    try:
        import psutil
    except Exception:
        return None
    return psutil


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
    * ``torch``: :func:`torch_info` (None when absent or not requested)
    * ``volatile``: ``cpu_freq_mhz``, ``hostname``; never fingerprinted.
    """
    system = _safe(platform.system, default="") or ""
    machine = _safe(platform.machine, default="") or ""
    psutil = _psutil()
    darwin: dict[str, str] = {}
    if system == "Darwin":
        darwin = _darwin_sysctl(
            [
                "machdep.cpu.brand_string",
                "hw.l1dcachesize",
                "hw.l1icachesize",
                "hw.l2cachesize",
                "hw.l3cachesize",
            ]
        )

    # cpu
    cpuinfo_text = _read_text(CPUINFO_PATH)
    cpu: dict[str, Any]
    if cpuinfo_text:
        cpu = parse_cpuinfo(cpuinfo_text)
        cpu["source"] = CPUINFO_PATH
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

    # cores
    physical = logical = None
    if psutil is not None:
        physical = _safe(psutil.cpu_count, False)
        logical = _safe(psutil.cpu_count, True)
    if logical is None:
        logical = os.cpu_count()

    # caches
    if darwin:
        caches = _darwin_caches(darwin)
    else:
        caches = parse_cache_sizes(CACHE_SYSFS_PATH)
        if all(v is None for v in caches.values()) and system == "Linux":
            caches = _sysconf_caches()

    # os
    distro = None
    if system == "Darwin":
        mac = _safe(platform.mac_ver, default=("",))[0]
        distro = f"macOS {mac}" if mac else None
    else:
        for path in OS_RELEASE_PATHS:
            text = _read_text(path)
            if text:
                fields = parse_os_release(text)
                distro = fields.get("PRETTY_NAME") or fields.get("NAME")
                break
    os_info = {
        "system": system or None,
        "release": _safe(platform.release, default=None) or None,
        "version": _safe(platform.version, default=None) or None,
        "distro": distro,
    }

    # volatile
    freq = None
    if psutil is not None:
        current = _safe(psutil.cpu_freq)
        if current is not None and getattr(current, "current", None):
            freq = float(current.current)
    hostname = _safe(socket.gethostname, default=None)

    return {
        "arch": machine or None,
        "cpu": cpu,
        "cores": {"physical": physical, "logical": logical, "usable": _usable_cpus()},
        "memory": {"total_bytes": _memory_total(psutil)},
        "caches": caches,
        "os": os_info,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "compiler": _safe(compiler_version, cc),
        "torch": _safe(torch_info) if include_torch else None,
        "volatile": {"cpu_freq_mhz": freq, "hostname": hostname},
    }


# --------------------------------------------------------------------------
# fingerprint
# --------------------------------------------------------------------------


def _major_minor(version: Any) -> str | None:
    """"6.1.0-18-amd64" -> "6.1"; "2.3.1+cu121" -> "2.3"; None stays None."""
    if not version:
        return None
    match = re.match(r"\s*(\d+)(?:\.(\d+))?", str(version))
    if not match:
        return str(version)
    return match.group(1) if match.group(2) is None else f"{match.group(1)}.{match.group(2)}"


def _gib(value: Any) -> int | None:
    try:
        return int(round(int(value) / _GIB))
    except (TypeError, ValueError, OverflowError):  # OverflowError: beyond a float's range
        return None


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def fingerprint_fields(info: Mapping[str, Any]) -> dict[str, Any]:
    """The stable subset of :func:`detect` output used to compare machines.

    Keys: ``arch``, ``cpu_model``, ``isa``, ``uarch``, ``isa_extensions``,
    ``logical_cpus``, ``physical_cores``, ``memory_gib`` (rounded),
    ``llc_bytes``, ``os_system``, ``os_release`` (kernel major.minor only:
    patch level and build string are dropped so routine kernel updates do
    not invalidate baselines), ``os_distro``, ``python`` (major.minor),
    ``compiler``; and, only when torch info is present, ``torch``
    (major.minor), ``cuda``, ``gpus`` (names) and ``gpu_memory_gib``.
    Clock frequency, load, free memory, host name and time are never
    included (everything under ``volatile`` is ignored).
    """
    cpu = _get(info, "cpu") or {}
    logical = _get(info, "cores", "logical")
    if logical is None:
        logical = cpu.get("logical_cpus") or None
    python_version = _get(info, "python", "version")
    fields: dict[str, Any] = {
        "arch": _get(info, "arch"),
        "cpu_model": cpu.get("cpu_model"),
        "isa": cpu.get("isa"),
        "uarch": cpu.get("uarch"),
        "isa_extensions": sorted(cpu.get("isa_extensions") or []),
        "logical_cpus": logical,
        "physical_cores": _get(info, "cores", "physical"),
        "memory_gib": _gib(_get(info, "memory", "total_bytes")),
        "llc_bytes": _get(info, "caches", "llc_bytes"),
        "os_system": _get(info, "os", "system"),
        "os_release": _major_minor(_get(info, "os", "release")),
        "os_distro": _get(info, "os", "distro"),
        "python": _major_minor(python_version),
        "compiler": _get(info, "compiler"),
    }
    # the import-free facts when present, so that the fingerprint does not depend on whether a
    # test happened to import torch before the machine was described
    torch = _get(info, "torch_static") or _get(info, "torch")
    if isinstance(torch, Mapping):
        gpus = [g for g in (torch.get("gpus") or []) if isinstance(g, Mapping)]
        fields["torch"] = _major_minor(torch.get("version"))
        fields["cuda"] = torch.get("cuda_version")
        fields["gpus"] = [str(g.get("name")) for g in gpus]
        fields["gpu_memory_gib"] = [_gib(g.get("total_memory_bytes")) for g in gpus]
    return fields


def fingerprint_hash(fields: Mapping[str, Any]) -> str:
    """First 16 hex chars of sha256 over ``json.dumps(fields, sort_keys=True)``."""
    payload = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


_ABSENT = object()


def fingerprint_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Readable differences, e.g. ``["cpu_model: 'X' -> 'Y'"]``, sorted by key.

    A key missing on one side shows as ``<absent>``.
    """
    lines: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        left, right = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if left != right:
            lshow = "<absent>" if left is _ABSENT else repr(left)
            rshow = "<absent>" if right is _ABSENT else repr(right)
            lines.append(f"{key}: {lshow} -> {rshow}")
    return lines


# --------------------------------------------------------------------------
# node names live in node.py (the plugin needs them at start-up, cheaply); re-exported here
# --------------------------------------------------------------------------

from .node import auto_node_name, sanitize_node_name, validate_node_name  # noqa: E402

if __name__ == "__main__":  # pragma: no cover - manual inspection aid
    _info = detect()
    _fields = fingerprint_fields(_info)
    json.dump({"info": _info, "fingerprint": _fields, "hash": fingerprint_hash(_fields)}, sys.stdout, indent=2)
    sys.stdout.write("\n")
