"""Precision schemes named as llm-analysis names them: ``w<bits>a<bits>e<bits>`` for the weights,
the activations (and the KV cache) and the embeddings. A matrix product runs in the wider of its
weights' and activations' types: int4 only when both are 4-bit, int8 when both are at most 8-bit,
else 16-bit floating point (weights dequantized on the fly)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .models import RooflineError

KNOWN = ("w16a16e16", "w8a16e16", "w4a16e16", "w8a8e16", "w4a8e16", "w4a4e16")
_SCHEME = re.compile(r"w(4|8|16|32)a(4|8|16|32)e(8|16|32)")


@dataclass(frozen=True)
class Scheme:
    name: str
    weight_bits: int
    act_bits: int
    emb_bits: int

    @property
    def weight_bytes(self) -> float:
        return self.weight_bits / 8

    @property
    def act_bytes(self) -> float:
        return self.act_bits / 8

    @property
    def emb_bytes(self) -> float:
        return self.emb_bits / 8

    @property
    def gemm(self) -> str:
        """The type the layers' matrix products run in: int4, int8, fp16 or fp32."""
        wide = max(self.weight_bits, self.act_bits)
        return {4: "int4", 8: "int8", 16: "fp16", 32: "fp32"}[wide]


def scheme(name: str) -> Scheme:
    match = _SCHEME.fullmatch(name)
    if not match:
        raise RooflineError(f"unknown precision scheme {name!r} (known: {', '.join(KNOWN)}; "
                            "the form is w<bits>a<bits>e<bits>)")
    w, a, e = (int(g) for g in match.groups())
    return Scheme(name, w, a, e)
