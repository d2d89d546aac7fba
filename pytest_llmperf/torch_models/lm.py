"""The ``torch_lm`` fixture's object: the transformer LM benchmarks (one step kind of one size, timed
in rounds). Loading this module imports pytest only; torch and the model when a test benches."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from ..api import fail
from .bench import Bench
from .options import DEFAULT_BATCH_SIZE, LM_PASSES
from .session import need_torch

if TYPE_CHECKING:
    import torch

    from .transformer import TransformerConfig


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def _scaled(sample: tuple[float, float, float | None], factor: float) -> tuple[float, float, float | None]:
    value, wall, cpu = sample
    return value * factor, wall, cpu


class TorchLM(Bench):
    """What the ``torch_lm`` fixture gives a test: the transformer LM benchmarks (see the README)."""

    def config(self, size: str, context: int | None = None) -> TransformerConfig:
        from .transformer import UnknownSize, get_config

        try:
            cfg = get_config(size)
        except UnknownSize as exc:
            fail(f"llmperf: {exc}")
        if context and context > cfg.context_length:
            cfg = get_config(size, context_length=context)
        return cfg

    def bench(self, size: str, kind: str, precision: str = "fp32", context: int = 128,
              batch_size: int = DEFAULT_BATCH_SIZE, compile: bool = False, attention: str = "sdpa") -> dict[str, Any]:
        """Time one step kind of size ``size``; records ``ms_per_step`` (gated), ``tok_per_s``,
        ``mfu``, ``first_step_ms``, ``peak_mem`` and, compiled, ``compile_s`` (informational)."""
        torch = need_torch()
        from .device import DtypeUnsupported, available_memory, check_dtype, resolve_dtype
        from .transformer import memory_estimate

        if kind not in LM_PASSES:
            fail(f"llmperf: unknown pass {kind!r} (known: {', '.join(LM_PASSES)})")
        device = self.device
        try:
            dtype = resolve_dtype(precision)
        except ValueError as exc:
            fail(f"llmperf: {exc}")
        autocast = None if dtype == torch.float32 else dtype
        if autocast is not None:
            try:
                check_dtype(device, autocast)
            except DtypeUnsupported as exc:
                pytest.skip(str(exc))
        cfg = self.config(size, context)
        what = f"size {size}, {kind}, {precision}, context {context}, batch {batch_size}" + (
            ", compiled" if compile else "")
        est = memory_estimate(cfg, batch_size, context, kind, activation_bytes=2 if autocast is not None else 4,
                              attention=attention)
        free = available_memory(device)
        if free is not None and est.total > 0.9 * free:
            pytest.skip(f"{what} needs about {_size(est.total)} ({est.describe()}); {device} has {_size(free)} free")
        return self.guarded(device, what, lambda: self._bench(cfg, kind, autocast, context, batch_size, compile,
                                                              attention, device, what))

    def _bench(self, cfg: TransformerConfig, kind: str, autocast: torch.dtype | None, context: int, batch_size: int,
               compile: bool, attention: str, device: torch.device, what: str) -> dict[str, Any]:
        import torch

        from .device import PeakMemory, step_sampler, synchronize
        from .transformer import build_model, flops_per_step, make_step

        model = build_model(cfg, device=device, seed=0, attention=attention)
        # torch.compile of a module is a module (OptimizedModule); its stub says only "a callable"
        runnable = cast("torch.nn.Module", torch.compile(model)) if compile else model
        step = make_step(runnable, kind, batch_size, context, device=device, autocast_dtype=autocast)
        sampler = step_sampler(step, device)
        with PeakMemory(device) as pm:
            # the first (cold) step and a second one are timed apart: the warm-up effect, the
            # compile time, and the size of the time budget
            t0 = time.perf_counter()
            step()
            synchronize(device)
            first = time.perf_counter() - t0
            second = sampler()[0]
            m = self.rounds("ms_per_step", "ms", False, lambda: _scaled(sampler(), 1e3), second, device)
        m.warmup["first"] = first * 1e3
        m.warmup["discarded"] = m.warmup.get("discarded", 0) + 2
        m.warmup["ratio"] = first * 1e3 / m.warmup["steady"] if m.warmup.get("steady") else None
        rec = self.recorder
        tokens = batch_size * context
        rec.record("tok_per_s", [tokens / (ms / 1e3) for ms in m.samples], unit="tok/s", higher_is_better=True,
                   gate=False)
        rec.record("first_step_ms", first * 1e3, unit="ms", higher_is_better=False, gate=False)
        if compile:
            rec.record("compile_s", max(first - second, 0.0), unit="s", higher_is_better=False, gate=False,
                       note="compile_s: first step minus second step, kept out of ms_per_step")
        self.record_memory(pm)
        flops = flops_per_step(cfg, batch_size, context, kind)
        peak, source = self.session.peak_flops(device, autocast or torch.float32)
        if peak:
            rec.record("mfu", [100 * flops / (ms / 1e3) / peak for ms in m.samples], unit="%", higher_is_better=True,
                       gate=False, note=source)
        # the step's FLOPs at the matmul peak the MFU uses, its bytes at the node's bandwidth
        bw, _ = self.session.bandwidth(device)
        self.record_prediction(f"{cfg.name} {kind}", "ms_per_step", "pred_ms_per_step", list(m.samples),
                               lambda assume: predicted_step_ms(cfg, kind, batch_size, context, peak, bw,
                                                                autocast is not None, assume))
        self.profile(step, device, what)
        self.process_profile(cfg.name, kind, autocast, context, batch_size, compile, attention, device)
        median = sorted(m.samples)[len(m.samples) // 2]
        return {"ms_per_step": median, "first_step_ms": first * 1e3, "peak_bytes": pm.peak_bytes,
                "flops": flops, "samples": list(m.samples)}


def predicted_step_ms(cfg: Any, kind: str, batch_size: int, context: int, peak: float | None,
                      read_GBps: float | None = None, half: bool = False, assume: Any = None) -> Any:
    """The roofline's time of one ``kind`` step of ``cfg`` (transformer.TransformerConfig), a
    roofline.node.Prediction in ms: forward, forward+backward or a whole training step
    (roofline.training), its FLOPs at ``peak`` (the matmul peak the MFU uses) and its bytes at
    ``read_GBps``, or on the datasheet device ``assume`` names (RooflineError when the step does
    not fit in its memory, options.lm_fit_problem). fp32 throughout; ``half``
    (autocast to bf16 or fp16): the matmuls, their weights and activations counted at 16 bits (the
    weights are cast each step), the embeddings at 32."""
    from ..roofline.models import ModelConfig, RooflineError
    from ..roofline.node import Assumption, step
    from ..roofline.precision import scheme
    from .lm_shapes import SIZES
    from .options import lm_fit_problem

    assume = assume or Assumption()
    if assume.device is not None and cfg.name in SIZES:
        problem = lm_fit_problem(cfg.name, kind, "bf16" if half else "fp32", context, batch_size, assume.device)
        if problem:
            raise RooflineError(problem)
    shape = ModelConfig(cfg.name, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.num_heads, cfg.d_ff,
                        cfg.vocab_size, max_seq_len=cfg.context_length, tied=True)
    return step(shape, scheme("w16a16e32" if half else "w32a32e32"), kind, context, batch_size,
                assume, read_GBps, peak)
