"""``/proc/cpuinfo``: the CPU's model, vendor, ISA and extensions on x86, RISC-V and Arm (others
best effort), from text whose format differs by architecture and kernel."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .common import _int

CPUINFO_PATH = "/proc/cpuinfo"

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
