"""Datasheet peak FLOP/s and memory bandwidth of common NVIDIA GPUs, the denominators of
utilisation figures. No pytest."""

from __future__ import annotations

import re

import torch

from .devsel import _as_device, device_name
from .dtypes import dtype_name, resolve_dtype

__all__ = [
    "PEAK_BANDWIDTH_GBPS",
    "PEAK_FLOPS",
    "gpu_memory_model",
    "gpu_model",
    "peak_flops_for",
    "table_bandwidth",
    "table_peak_flops",
    "tf32_matmul_enabled",
]

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
