"""Devices' datasheet figures: dense peak FLOP/s per type (without sparsity; fp16 is the
tensor-core rate, bf16 the same), memory bandwidth and size, and the interconnect between devices
of a node (one direction: NVLink or Infinity Fabric, else PCIe 4.0 x16 at 32 GB/s)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import RooflineError

T = 1e12


@dataclass(frozen=True)
class Device:
    name: str
    peak: dict[str, float] = field(hash=False)  # FLOP/s (or OP/s) by type: fp32, fp16, int8, int4
    bandwidth: float  # memory, bytes/s
    memory: float  # bytes
    link_bandwidth: float = 0.0  # to another device of the node, one direction, bytes/s
    link_latency: float = 0.0  # seconds per collective step

    def peak_for(self, kind: str) -> float:
        if kind in self.peak:
            return self.peak[kind]
        # a type the device has no faster path for runs at the next wider one's rate
        for wider in {"int4": ("int8", "fp16"), "int8": ("fp16",), "fp16": ("fp32",)}.get(kind, ()):
            if wider in self.peak:
                return self.peak[wider]
        raise RooflineError(f"device {self.name}: no peak for {kind}")


GB = 1e9
# the time of one small all-reduce over NVLink: NCCL's order of magnitude, 8 us, the value that puts
# the seed's LLaMA-65B decode at tensor parallel 2 (33.85 ms on A100 SXM) within 1% (0 us: -3.7%)
NVLINK_LATENCY = 8e-6
DEVICES = {d.name: d for d in (
    Device("a100-sxm-40gb", {"fp32": 19.5 * T, "fp16": 312 * T, "int8": 624 * T, "int4": 1248 * T},
           1555 * GB, 40 * GB, 300 * GB, NVLINK_LATENCY),
    Device("a100-sxm-80gb", {"fp32": 19.5 * T, "fp16": 312 * T, "int8": 624 * T, "int4": 1248 * T},
           2039 * GB, 80 * GB, 300 * GB, NVLINK_LATENCY),
    Device("a100-pcie-40gb", {"fp32": 19.5 * T, "fp16": 312 * T, "int8": 624 * T, "int4": 1248 * T},
           1555 * GB, 40 * GB, 300 * GB),
    Device("a100-pcie-80gb", {"fp32": 19.5 * T, "fp16": 312 * T, "int8": 624 * T, "int4": 1248 * T},
           1935 * GB, 80 * GB, 300 * GB),
    Device("h100-sxm-80gb", {"fp32": 67 * T, "fp16": 989 * T, "int8": 1979 * T}, 3350 * GB, 80 * GB, 450 * GB,
           NVLINK_LATENCY),
    Device("h100-pcie-80gb", {"fp32": 51 * T, "fp16": 756 * T, "int8": 1513 * T}, 2000 * GB, 80 * GB, 300 * GB),
    Device("l4", {"fp32": 30.3 * T, "fp16": 121 * T, "int8": 242.5 * T, "int4": 485 * T}, 300 * GB, 24 * GB,
           32 * GB),
    Device("l40s", {"fp32": 91.6 * T, "fp16": 362 * T, "int8": 733 * T, "int4": 733 * T}, 864 * GB, 48 * GB, 32 * GB),
    Device("a10", {"fp32": 31.2 * T, "fp16": 125 * T, "int8": 250 * T, "int4": 500 * T}, 600 * GB, 24 * GB, 32 * GB),
    Device("v100-sxm-32gb", {"fp32": 15.7 * T, "fp16": 125 * T}, 900 * GB, 32 * GB, 150 * GB, NVLINK_LATENCY),
    Device("mi250", {"fp32": 95.7 * T, "fp16": 362 * T, "int8": 362 * T}, 3277 * GB, 128 * GB, 200 * GB),
    Device("mi300x", {"fp32": 163.4 * T, "fp16": 1307 * T, "int8": 2615 * T}, 5300 * GB, 192 * GB, 448 * GB),
    Device("h200-sxm-141gb", {"fp32": 67 * T, "fp16": 989 * T, "int8": 1979 * T}, 4800 * GB, 141 * GB, 450 * GB,
           NVLINK_LATENCY),
)}


def device(name: str) -> Device:
    try:
        return DEVICES[name]
    except KeyError:
        raise RooflineError(f"unknown device {name!r} (known: {', '.join(DEVICES)})") from None
