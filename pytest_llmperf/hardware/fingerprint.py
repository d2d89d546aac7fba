"""The machine fingerprint: the stable subset of ``detect`` output that decides whether two
measurements may be compared, its digest, and a readable diff of two of them."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

_GIB = 1 << 30


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
        return round(int(value) / _GIB)
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
