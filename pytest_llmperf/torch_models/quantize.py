"""Int8 weight-only quantization of a :class:`~.llama.Llama` (no pytest in here).

Every Linear of the transformer blocks and the classifier becomes an
:class:`Int8WeightOnlyLinear`: int8 weights with one scale per output channel (row),
``scale = max|w_row| / 127`` and ``q = clamp(round(w / scale), -127, 127)``, symmetric, no zero
point. The forward dequantizes on the fly, ``linear(x, q.to(x.dtype)) * scale``, so a decode
step reads a quarter of the float32 bytes (half of bfloat16's) for those layers; whether that is
faster depends on the backend fusing the conversion into the matrix-vector product (inductor
does; eager mode materialises the converted weight and is slower). The embedding table stays in
floating point: a token reads one row of it. A tied classifier gets its own int8 copy of the
table, so after quantization the model is no longer tied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Int8WeightOnlyLinear", "is_quantized", "quantize_int8_", "quantize_weight_int8"]

M = TypeVar("M", bound=nn.Module)


def quantize_weight_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scales)`` of a ``[out, in]`` weight: int8 ``q`` and float32 ``scales`` ``[out]`` with
    ``weight ~= q * scales[:, None]``. An all-zero row gets scale 1 (and zeros)."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1) / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scales


class Int8WeightOnlyLinear(nn.Module):
    """A bias-free Linear with an int8 ``weight`` buffer ``[out, in]`` and per-output-channel
    ``scales`` ``[out]`` (stored in the original weight's dtype)."""

    weight: torch.Tensor  # buffers, registered in __init__
    scales: torch.Tensor

    def __init__(self, in_features: int, out_features: int, device=None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8,
                                                   device=device))
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype, device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8WeightOnlyLinear:
        if linear.bias is not None:
            raise ValueError("Int8WeightOnlyLinear has no bias; the Llama Linears have none")
        w = linear.weight
        module = cls(w.size(1), w.size(0), device=w.device, dtype=w.dtype)
        q, scales = quantize_weight_int8(w)
        module.weight.copy_(q)
        module.scales.copy_(scales.to(w.dtype))
        return module

    def dequantized(self) -> torch.Tensor:
        """The float weight the int8 values and scales stand for (float32)."""
        return self.weight.float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype)) * self.scales.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize_int8_(model: M) -> M:
    """Replace, in place, every ``nn.Linear`` of ``model.layers`` and ``model.output`` by an
    :class:`Int8WeightOnlyLinear`; the embedding and the norms stay as they are. Returns the
    model. Quantizing an already quantized model changes nothing."""
    with torch.no_grad():
        for block in cast("Iterable[nn.Module]", model.layers):
            _replace_linears(block)
        if isinstance(model.output, nn.Linear):
            model.output = Int8WeightOnlyLinear.from_linear(model.output)
    return model


def _replace_linears(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8WeightOnlyLinear.from_linear(child))
        else:
            _replace_linears(child)


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` holds any :class:`Int8WeightOnlyLinear`."""
    return any(isinstance(m, Int8WeightOnlyLinear) for m in model.modules())
