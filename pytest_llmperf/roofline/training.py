"""One training step's roofline: the forward pass (inference.stage over the whole context), the
backward pass (twice the forward's FLOPs: the gradients of the inputs and of the weights; twice its
bytes), and AdamW's update, which is memory bound: per parameter it reads the parameter, its
gradient and both moments and writes the parameter and both moments (7 values of the parameters'
type)."""

from __future__ import annotations

from dataclasses import dataclass

from .devices import Device
from .inference import Part, Stage, check_layout, stage
from .models import ModelConfig
from .precision import Scheme

ADAMW_VALUES = 7  # read: parameter, gradient, two moments; write: parameter, two moments


@dataclass
class Training:
    forward: Stage
    backward: Stage
    optimizer: Stage

    @property
    def forward_backward_s(self) -> float:
        return self.forward.seconds + self.backward.seconds

    @property
    def step_s(self) -> float:
        return self.forward_backward_s + self.optimizer.seconds


def training_step(model: ModelConfig, sch: Scheme, device: Device, context: int, batch: int,
                  fe: float = 1.0, hbme: float = 1.0) -> Training:
    check_layout(model, 1, fe, hbme)
    fwd = stage(model, sch, device, context, context, batch, 1, fe, hbme, "forward")
    bwd = Stage("backward", [Part(p.name, 2 * p.flops, 2 * p.bytes, 2 * p.compute_s, 2 * p.memory_s)
                             for p in fwd.parts])
    nbytes = ADAMW_VALUES * model.params() * sch.weight_bytes
    opt = Stage("optimizer", [Part("adamw", 0.0, nbytes, 0.0, nbytes / (device.bandwidth * hbme))])
    return Training(fwd, bwd, opt)
