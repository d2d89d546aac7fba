"""The node itself as a roofline device: its memory bandwidth from the bandwidth probe
(native/bandwidth.py, node-info.json), its peak from a matmul probe when one was measured (the torch
suites'), else no compute bound (a decode of llama2.c's models on a CPU is memory bound)."""

from __future__ import annotations

import math

from .devices import Device
from .inference import stage
from .models import ModelConfig
from .precision import Scheme


def node_device(read_GBps: float, peak_flops: float | None = None, name: str = "this node") -> Device:
    peak = peak_flops if peak_flops and peak_flops > 0 else math.inf
    return Device(name, {"fp32": peak, "fp16": peak, "int8": peak, "int4": peak}, read_GBps * 1e9, math.inf)


def decode_tok_per_s(model: ModelConfig, sch: Scheme, read_GBps: float, context: int,
                     peak_flops: float | None = None) -> tuple[float, str]:
    """Predicted tokens per second of one-sequence decode at ``context`` cached positions, and the
    bound (compute or memory)."""
    dec = stage(model, sch, node_device(read_GBps, peak_flops), 1, context, name="decode")
    return 1.0 / dec.seconds, dec.bound
