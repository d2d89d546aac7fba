"""PyTorch and GPU facts, never by importing torch (a second or more, and torch_models' business):
the runtime facts come from a torch that a test already imported, the static ones from torch's
installed files and ``nvidia-smi``."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import _SIZE_LIMIT, _int, _read_text


def torch_info() -> dict[str, Any] | None:
    """PyTorch and accelerator facts of the torch already imported, or None when it is not.

    Keys: ``version``, ``cuda_available``, ``cuda_version``
    (``torch.version.cuda``), ``hip_version``, ``mps_available``,
    ``device_count``, ``gpus`` (list of ``{"name", "total_memory_bytes"}``,
    CUDA/ROCm only).  Any failure is recorded as ``error`` instead of
    raised.  Note that querying devices initialises the CUDA driver.
    """
    torch = sys.modules.get("torch")
    if torch is None:  # not imported (or blocked with sys.modules["torch"] = None)
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
