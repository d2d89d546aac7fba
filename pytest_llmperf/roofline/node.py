"""The roofline of a suite's own benchmark: on the node itself (its memory bandwidth from the
bandwidth probe, native/bandwidth.py and node-info.json; its peak from the torch suites' matmul
probe when one was measured, else no compute bound: a decode of llama2.c's models on a CPU is
memory bound) or on a datasheet device the user names (``--llmperf-roofline-device``), with the
flops and memory efficiencies the user assumes (``--llmperf-roofline-fe``/``-hbme``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .devices import Device, device
from .inference import Stage, check_fits, stage
from .models import ModelConfig, RooflineError
from .precision import Scheme
from .training import training_step


def node_device(read_GBps: float, peak_flops: float | None = None, name: str = "this node") -> Device:
    peak = peak_flops if peak_flops and peak_flops > 0 else math.inf
    return Device(name, {"fp32": peak, "fp16": peak, "int8": peak, "int4": peak}, read_GBps * 1e9, math.inf)


@dataclass(frozen=True)
class Assumption:
    """What a prediction assumes: a named device (None: the node's probes) and the efficiencies."""

    device: str | None = None
    fe: float = 1.0
    hbme: float = 1.0


@dataclass(frozen=True)
class Prediction:
    value: float  # tok/s for a decode, ms for a step
    bound: str  # compute or memory
    assuming: str  # the device and efficiencies, for the summary


def target(assume: Assumption, read_GBps: float | None, peak_flops: float | None) -> tuple[Device, str]:
    """The device a prediction is made for, and how the summary names it; RooflineError when the
    node has neither a bandwidth nor a peak to bound anything with."""
    if assume.device is not None:
        dev, what = device(assume.device), f"{assume.device} (datasheet)"
    else:
        if not read_GBps and not peak_flops:
            raise RooflineError("this node has no measured bandwidth or peak to predict from")
        dev = node_device(read_GBps or math.inf, peak_flops)
        figures = ([f"{read_GBps:.1f} GB/s"] if read_GBps else []) + \
            ([f"{peak_flops / 1e12:.2f} TFLOP/s"] if peak_flops else [])
        what = "this node: " + ", ".join(figures)
    if assume.fe != 1.0 or assume.hbme != 1.0:
        what += f", fe {assume.fe:g}, hbme {assume.hbme:g}"
    return dev, what


def decode(model: ModelConfig, sch: Scheme, context: int, assume: Assumption = Assumption(),
           read_GBps: float | None = None, peak_flops: float | None = None) -> Prediction:
    """Tokens per second of one-sequence decode at ``context`` cached positions."""
    dev, what = target(assume, read_GBps, peak_flops)
    if assume.device is not None:
        check_fits(model, sch, dev, context)
    dec = stage(model, sch, dev, 1, context, 1, 1, assume.fe, assume.hbme, "decode")
    return Prediction(1.0 / dec.seconds, dec.bound, what)


def decode_tok_per_s(model: ModelConfig, sch: Scheme, read_GBps: float, context: int,
                     peak_flops: float | None = None) -> tuple[float, str]:
    """Predicted tokens per second of one-sequence decode on the node, ideal, and the bound."""
    p = decode(model, sch, context, Assumption(), read_GBps, peak_flops)
    return p.value, p.bound


STEP_KINDS = ("forward", "forward_backward", "train_step")


def step(model: ModelConfig, sch: Scheme, kind: str, context: int, batch: int, assume: Assumption = Assumption(),
         read_GBps: float | None = None, peak_flops: float | None = None) -> Prediction:
    """Milliseconds of one training-suite step (``forward``, ``forward_backward`` or
    ``train_step``) and the bound of the stages it runs, taken together."""
    if kind not in STEP_KINDS:
        raise RooflineError(f"unknown step {kind!r} (known: {', '.join(STEP_KINDS)})")
    dev, what = target(assume, read_GBps, peak_flops)
    t = training_step(model, sch, dev, context, batch, assume.fe, assume.hbme)
    stages = {"forward": [t.forward], "forward_backward": [t.forward, t.backward],
              "train_step": [t.forward, t.backward, t.optimizer]}[kind]
    whole = Stage(kind, [p for st in stages for p in st.parts])
    return Prediction(whole.seconds * 1e3, whole.bound, what)
