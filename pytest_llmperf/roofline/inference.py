"""Prefill and decode latency of a transformer on a device, part by part.

Every part takes max(FLOPs / (peak x fe), bytes / (bandwidth x hbme)): the roofline, with the
flops efficiency ``fe`` and the memory efficiency ``hbme`` in (0, 1]. Per layer:

- attention projections and the MLP: 2 FLOPs per parameter and token, their weights read once;
- attention scores (QK^T and the weighted sum of V): 4 x tokens x context x hidden FLOPs, the KV
  cache's bytes;
- two norms: their input read and their output written (memory bound);
- with tensor parallelism over ``tp`` devices, the matrices and the heads are split and two
  all-reduces of the layer's output cross the link (ring: 2(tp-1)/tp of the bytes, plus its latency).

Then the output projection (the logits, at the embeddings' type) and the input embedding lookup.
Prefill processes ``seq_len`` tokens at once; decode one token per step against a KV cache, timed
at the last of ``tokens`` steps (``seq_len + tokens`` cached positions, read and written back as
llm-analysis counts them: its published decode figures need both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .devices import Device
from .models import ModelConfig, RooflineError
from .precision import Scheme


@dataclass
class Part:
    name: str
    flops: float
    bytes: float
    compute_s: float
    memory_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


@dataclass
class Stage:
    """One forward pass (prefill, or one decode step) and its parts, summed over the layers."""

    name: str
    parts: list[Part] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.parts)

    @property
    def bound(self) -> str:
        compute = sum(p.seconds for p in self.parts if p.bound == "compute")
        return "compute" if compute >= self.seconds - compute else "memory"


def check_layout(model: ModelConfig, tp: int, fe: float, hbme: float) -> None:
    if tp < 1 or model.heads % tp or (model.kv_heads % tp and tp % model.kv_heads):
        raise RooflineError(f"tensor parallel size {tp} does not divide {model.name}'s {model.heads} heads "
                            f"({model.kv_heads} key/value heads)")
    for name, value in (("flops efficiency", fe), ("memory efficiency", hbme)):
        if not 0 < value <= 1:
            raise RooflineError(f"{name} {value!r} is outside (0, 1]")


class _Roof:
    def __init__(self, device: Device, fe: float, hbme: float) -> None:
        self.device, self.fe, self.hbme = device, fe, hbme

    def part(self, name: str, flops: float, nbytes: float, kind: str) -> Part:
        peak = self.device.peak_for(kind) * self.fe
        return Part(name, flops, nbytes, flops / peak if flops else 0.0, nbytes / (self.device.bandwidth * self.hbme))


def _allreduce(device: Device, nbytes: float, tp: int) -> float:
    if tp == 1:
        return 0.0
    if device.link_bandwidth <= 0:
        raise RooflineError(f"device {device.name}: no interconnect figure for tensor parallelism")
    return 2 * (tp - 1) / tp * nbytes / device.link_bandwidth + device.link_latency


def stage(model: ModelConfig, sch: Scheme, device: Device, tokens: int, context: int, batch: int = 1,
          tp: int = 1, fe: float = 1.0, hbme: float = 1.0, name: str = "prefill") -> Stage:
    """A forward pass of ``tokens`` new tokens per sequence attending to ``context`` positions."""
    check_layout(model, tp, fe, hbme)
    roof = _Roof(device, fe, hbme)
    b, s, h, L = batch, tokens, model.hidden, model.layers
    gemm, emb_kind = sch.gemm, {8: "int8", 16: "fp16", 32: "fp32"}[sch.emb_bits]
    act = b * s * h * sch.act_bytes  # one layer's hidden state
    attn_w = model.layer_attention_params()
    mlp_w = model.layer_mlp_params()
    kv_bytes = 2 * b * context * model.kv_dim * sch.act_bytes * (2 if name == "decode" else 1)
    parts = [
        roof.part("attention projections", L * 2 * b * s * attn_w / tp,
                  L * (attn_w * sch.weight_bytes / tp + 2 * act), gemm),
        roof.part("attention scores", L * 4 * b * s * context * h / tp, L * kv_bytes / tp, gemm),
        roof.part("mlp", L * 2 * b * s * mlp_w / tp, L * (mlp_w * sch.weight_bytes / tp + 2 * act), gemm),
        roof.part("norms", 0.0, L * 2 * 2 * act, gemm),
        roof.part("output projection", 2 * b * s * h * model.vocab / tp,
                  model.embedding_params() * sch.emb_bytes / tp + b * s * model.vocab * sch.act_bytes / tp, emb_kind),
        roof.part("input embedding", 0.0, b * s * h * sch.emb_bytes, emb_kind),
    ]
    comm = L * 2 * _allreduce(device, act, tp)
    if comm:
        parts.append(Part("tensor-parallel all-reduce", 0.0, L * 2 * act, comm, 0.0))
    return Stage(name, parts)


def memory_per_device(model: ModelConfig, sch: Scheme, context: int, batch: int = 1, tp: int = 1) -> dict[str, float]:
    """Bytes per device: the weights (the layers at the weights' type, both embeddings at theirs,
    split over ``tp``), the KV cache of ``context`` positions per sequence, one layer's activations."""
    layers = model.layers * (model.layer_attention_params() + model.layer_mlp_params()) * sch.weight_bytes
    norms = (2 * model.layers + 1) * model.hidden * 2
    emb = model.embeddings * model.embedding_params() * sch.emb_bytes
    kv = 2 * model.layers * batch * context * model.kv_dim * sch.act_bytes
    act = batch * context * max(model.hidden, model.ffn) * sch.act_bytes * 4
    return {"weights": (layers + emb) / tp + norms, "kv_cache": kv / tp, "activations": act / tp}


def check_fits(model: ModelConfig, sch: Scheme, device: Device, context: int, batch: int = 1, tp: int = 1) -> float:
    """The bytes per device; RooflineError saying by how much when they exceed the device's memory."""
    need = sum(memory_per_device(model, sch, context, batch, tp).values())
    if need > device.memory:
        over = (need - device.memory) / 1e9
        raise RooflineError(f"{model.name} {sch.name} (batch {batch}, {context} positions) needs "
                            f"{need / 1e9:.1f} GB per device at tensor parallel {tp}: {over:.1f} GB "
                            f"more than {device.name}'s {device.memory / 1e9:.0f} GB")
    return need


def largest_batch(model: ModelConfig, sch: Scheme, device: Device, context: int, tp: int = 1) -> int:
    """The largest batch whose weights, KV cache and activations fit in the device's memory (0: none)."""
    one = memory_per_device(model, sch, context, 1, tp)
    fixed = one["weights"]
    per = one["kv_cache"] + one["activations"]
    return max(0, int((device.memory - fixed) // per)) if per > 0 else 0


@dataclass
class Inference:
    prefill: Stage
    decode: Stage
    tokens: int

    @property
    def total_s(self) -> float:
        return self.prefill.seconds + self.tokens * self.decode.seconds


def inference(model: ModelConfig, sch: Scheme, device: Device, seq_len: int = 512, tokens: int = 32,
              batch: int = 1, tp: int = 1, fe: float = 1.0, hbme: float = 1.0) -> Inference:
    if seq_len < 1 or tokens < 0 or batch < 1:
        raise RooflineError(f"seq_len {seq_len}, tokens {tokens} and batch {batch} must be positive")
    check_layout(model, tp, fe, hbme)
    check_fits(model, sch, device, seq_len + tokens, batch, tp)
    pre = stage(model, sch, device, seq_len, seq_len, batch, tp, fe, hbme, "prefill")
    dec = stage(model, sch, device, 1, seq_len + tokens, batch, tp, fe, hbme, "decode")
    return Inference(pre, dec, tokens)
