"""Devices, dtypes, timing, memory and peak figures for the PyTorch benchmarks. No pytest.

The old single module, now one name space over the modules that hold each concern:

* :mod:`.devsel`: choosing a device (:func:`resolve_device`, :func:`gpu_count`) and naming it
  (:func:`device_name`);
* :mod:`.dtypes`: choosing a dtype (:func:`resolve_dtype`) and checking it (:func:`check_dtype`);
* :mod:`.timing`: waiting for a device (:func:`synchronize`) and timing a step correctly per
  device (:func:`step_sampler`, CUDA events on CUDA);
* :mod:`.memory`: peak and free memory (:class:`PeakMemory`, :func:`available_memory`), out of
  memory (:func:`is_oom`, :func:`recover`);
* :mod:`.peaks`: datasheet peak FLOP/s and bandwidth of common NVIDIA GPUs;
* :mod:`.probes`: what this device really reaches (:func:`matmul_probe`,
  :func:`torch_read_bandwidth`).

A test that replaces a name for the code that uses it patches the module that holds it.
Nothing here initialises CUDA on import.
"""

from __future__ import annotations

from .devsel import DeviceUnavailable, device_name, gpu_count, resolve_device
from .dtypes import DtypeUnsupported, check_dtype, clear_dtype_cache, dtype_name, resolve_dtype
from .memory import PeakMemory, available_memory, is_oom, parse_status_kb, parse_vmhwm, recover
from .peaks import (
    PEAK_BANDWIDTH_GBPS,
    PEAK_FLOPS,
    gpu_memory_model,
    gpu_model,
    peak_flops_for,
    table_bandwidth,
    table_peak_flops,
    tf32_matmul_enabled,
)
from .probes import matmul_probe, torch_read_bandwidth
from .timing import nvtx_range, step_sampler, synchronize

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
    "nvtx_range",
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
