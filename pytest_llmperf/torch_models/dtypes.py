"""Choosing a dtype from a dtype option and checking that the device computes in it. No pytest."""

from __future__ import annotations

import warnings

import torch

from .devsel import _as_device
from .timing import synchronize

__all__ = ["DtypeUnsupported", "check_dtype", "clear_dtype_cache", "dtype_name", "resolve_dtype"]


class DtypeUnsupported(RuntimeError):
    """The device cannot compute in the dtype that was asked for."""



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
