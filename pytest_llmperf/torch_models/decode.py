"""The ``torch_decode`` fixture's object: gpt-fast-style decoding (eager, compiled, int8, speculative,
tensor parallel), timed in rounds, with MBU against the node's memory bandwidth. Loading this module
imports pytest only; torch and the decoder when a test benches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..api import fail
from .bench import Bench
from .options import DECODE_VARIANTS, DEFAULT_PROMPT_TOKENS, DecodeSettings
from .session import need_torch, options

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .llama import Llama


class TorchDecode(Bench):
    """What the ``torch_decode`` fixture gives a test: gpt-fast-style decoding (see the README)."""

    def __init__(self, request: pytest.FixtureRequest):
        super().__init__(request)
        self.options: DecodeSettings = options(request.config).decode

    def dtype(self) -> torch.dtype:
        torch = need_torch()
        from .device import DtypeUnsupported, check_dtype, resolve_dtype

        device = self.device
        name = self.options.dtype or ("bf16" if device.type == "cuda" else "fp32")
        dtype = resolve_dtype(name)
        if dtype != torch.float32:
            try:
                check_dtype(device, dtype)
            except DtypeUnsupported as exc:
                pytest.skip(str(exc))
        return dtype

    def model(self, name: str | None = None, checkpoint: Path | None = None,
              dtype: torch.dtype | None = None) -> Llama:
        """The target model: the llama2.c checkpoint given (``--llmperf-decode-checkpoint``), else
        seeded random weights of the named shape (``--llmperf-decode-model``)."""
        need_torch()
        from .llama import CheckpointError, UnknownSize, build_llama, get_decode_config, load_llama2c

        device = self.device
        dtype = dtype if dtype is not None else self.dtype()
        checkpoint = checkpoint or (self.options.checkpoint if name is None else None)
        if checkpoint is not None:
            try:
                return load_llama2c(checkpoint, device=device, dtype=dtype)
            except CheckpointError as exc:
                fail(f"llmperf: --llmperf-decode-checkpoint: {exc}")
        try:
            cfg = get_decode_config(name or self.options.model)
        except UnknownSize as exc:
            fail(f"llmperf: {exc}")
        return build_llama(cfg, device=device, dtype=dtype, seed=0)

    def draft_for(self, target: Llama, dtype: torch.dtype) -> Llama:
        """The draft model of speculative decoding (``--llmperf-draft``)."""
        import copy

        from .quantize import quantize_int8_

        spec = self.options.draft
        if spec.lower() == "int8":
            return quantize_int8_(copy.deepcopy(target))
        from .llama import DECODE_SIZES

        if spec in DECODE_SIZES or spec.lower() in {k.lower() for k in DECODE_SIZES}:
            draft = self.model(name=spec, dtype=dtype)
        else:
            path = self.options.draft_path
            if path is None or not path.exists():
                fail(f"llmperf: --llmperf-draft: {spec!r} is neither 'int8', a decode model name "
                     f"({', '.join(DECODE_SIZES)}) nor an existing llama2.c checkpoint")
            draft = self.model(checkpoint=path, dtype=dtype)
        if draft.config.vocab_size != target.config.vocab_size:
            fail(f"llmperf: --llmperf-draft: the draft's vocabulary ({draft.config.vocab_size}) differs from "
                 f"the target's ({target.config.vocab_size})")
        return draft

    def prompt(self, vocab_size: int, length: int = DEFAULT_PROMPT_TOKENS) -> list[int]:
        """A fixed prompt: BOS (1) then seeded token ids (the same in every session)."""
        from .run_decode import fixed_prompt

        return fixed_prompt(vocab_size, length)

    def bench(self, variant: str, tokens: int | None = None) -> dict[str, Any]:
        """Decode ``tokens`` tokens per round with ``variant`` (eager, compile, int8, speculative,
        tp); records ``decode_tok_per_s`` (gated), ``ttft_ms``, ``ms_per_token``, ``peak_mem``,
        ``mbu`` and, per variant, ``compile_s`` or ``acceptance`` (informational)."""
        need_torch()
        if variant not in DECODE_VARIANTS:
            fail(f"llmperf: unknown decode variant {variant!r} (known: {', '.join(DECODE_VARIANTS)})")
        device = self.device
        if variant == "tp":
            from .tensor_parallel import tp_unavailable_reason

            reason = tp_unavailable_reason(device)
            if reason:
                pytest.skip(reason)
            return self._bench_tp(tokens or self.options.tokens)
        dtype = self.dtype()
        count = tokens or self.options.tokens
        name = self.options.checkpoint.name if self.options.checkpoint else self.options.model
        what = f"decode {variant}, {name}, {count} tokens"
        return self.guarded(device, what, lambda: self._bench(variant, count, dtype, device, what))

    def _bench(self, variant: str, tokens: int, dtype: torch.dtype, device: torch.device, what: str) -> dict[str, Any]:
        from . import generate as gen
        from .device import PeakMemory, synchronize
        from .llama import weight_bytes_per_token
        from .quantize import quantize_int8_

        model = self.model(dtype=dtype)
        k = self.options.speculate_k
        prompt = self.prompt(model.config.vocab_size)
        need = len(prompt) + tokens + k + 1
        if need > model.config.max_seq_len:
            fail(f"llmperf: {what}: prompt {len(prompt)} + {tokens} tokens (+{k + 1} for speculation) exceed "
                 f"the model's max_seq_len {model.config.max_seq_len}; lower --llmperf-decode-tokens")
        draft = None
        if variant == "int8":
            quantize_int8_(model)
        elif variant == "speculative":
            draft = self.draft_for(model, dtype)
            draft.setup_caches(1, need)
        model.setup_caches(1, need)
        decode_fn = gen.compile_decode(device) if variant == "compile" else None

        def sync() -> None:
            synchronize(device)

        def run() -> gen.Generation:
            return gen.generate(model, prompt, tokens, decode_fn=decode_fn, draft=draft, speculate_k=k, sync=sync)

        gens = []

        def sample() -> tuple[float, float, float | None]:
            t0 = time.perf_counter()
            g = run()
            gens.append(g)
            return g.decode_tok_per_s, time.perf_counter() - t0, None

        with PeakMemory(device) as pm:
            t0 = time.perf_counter()
            first = run()  # compiles the compiled variant; the cold run otherwise
            first_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            second = run()
            second_s = time.perf_counter() - t1
            m = self.rounds("decode_tok_per_s", "tok/s", True, sample, second_s, device)
        m.warmup["first"] = first.decode_tok_per_s
        m.warmup["discarded"] = m.warmup.get("discarded", 0) + 2
        m.warmup["ratio"] = (first.decode_tok_per_s / m.warmup["steady"]) if m.warmup.get("steady") else None
        kept = [gens[i] for i in m.kept_rounds] if m.kept_rounds else gens  # kept_rounds index run_rounds' calls
        rec = self.recorder
        rec.record("ttft_ms", [g.ttft_s * 1e3 for g in kept], unit="ms", higher_is_better=False, gate=False)
        rec.record("ms_per_token", [g.ms_per_token for g in kept], unit="ms", higher_is_better=False, gate=False)
        self.record_memory(pm)
        if variant == "compile":
            rec.record("compile_s", max(first_s - second_s, 0.0), unit="s", higher_is_better=False, gate=False,
                       note="compile_s: first generation minus second, kept out of decode_tok_per_s")
        if variant == "speculative":
            plain = self._plain_tokens(model, prompt, tokens, sync)
            if plain != second.tokens:
                at = next(i for i, (a, b) in enumerate(zip(plain, second.tokens)) if a != b) \
                    if any(a != b for a, b in zip(plain, second.tokens)) else min(len(plain), len(second.tokens))
                fail(f"llmperf: {what}: speculative decoding changed the output: greedy tokens differ from plain "
                     f"decoding at position {at}")
            rec.record("acceptance", [100 * g.acceptance_rate for g in kept if g.acceptance_rate is not None],
                       unit="%", higher_is_better=True, gate=False)
        else:
            per_token = weight_bytes_per_token(model)
            bw, source = self.session.bandwidth(device)
            if bw:
                rec.record("mbu", [100 * per_token * r / (bw * 1e9) for r in m.samples], unit="%",
                           higher_is_better=True, gate=False, note=self._mbu_note(per_token, source))
            peak, _ = self.session.peak_flops(device, dtype)
            context = len(prompt) + tokens // 2
            self.record_prediction(f"decode {variant}", "decode_tok_per_s", "pred_tok_per_s", list(m.samples),
                                   lambda assume: predicted_tok_per_s(model.config, variant, dtype, bw, peak, context,
                                                                      assume))
        self.profile(run, device, what)  # one generation, as the rounds run it
        self.process_profile_decode(variant, tokens, dtype, device)
        median = sorted(m.samples)[len(m.samples) // 2]
        return {"decode_tok_per_s": median, "tokens": list(second.tokens), "ttft_ms": second.ttft_s * 1e3,
                "weight_bytes_per_token": weight_bytes_per_token(model), "samples": list(m.samples)}

    def process_profile_decode(self, variant: str, tokens: int, dtype: torch.dtype, device: torch.device) -> None:
        """The process profilers around the same decoding in a process of its own (run_decode)."""
        import sys

        opts = self.options
        argv = [sys.executable, "-m", "pytest_llmperf.torch_models.run_decode", "--variant", variant,
                "--tokens", str(tokens), "--dtype", str(dtype).replace("torch.", ""), "--device", str(device),
                "--draft", str(opts.draft), "--k", str(opts.speculate_k),
                "--generations", str(self.session_profile_steps())]
        argv += ["--checkpoint", str(opts.checkpoint)] if opts.checkpoint else ["--model", opts.model]
        self.run_process_profilers(argv)

    def _plain_tokens(self, model: Llama, prompt: list[int], tokens: int, sync: Callable[[], None]) -> list[int]:
        from . import generate as gen

        return list(gen.generate(model, prompt, tokens, sync=sync).tokens)

    def _mbu_note(self, per_token: int, source: str) -> str:
        note = f"mbu: {per_token / 2**20:.1f} MiB of weights read per token; bandwidth {source}"
        llc = None
        try:
            from ..api import session as core_session

            info = core_session(self._request.config).machine()[0]
            llc = info.get("caches", {}).get("llc_bytes")
        except Exception:
            pass
        if self.device.type == "cpu" and llc and per_token <= llc:
            note += (f"; the weights fit in the last-level cache ({llc / 2**20:.0f} MiB): decode reads them "
                     f"from the cache, and MBU may exceed 100%")
        return note

    def _bench_tp(self, tokens: int) -> dict[str, Any]:
        from .tensor_parallel import run_tp_decode

        device = self.device
        name = self.options.model
        result = run_tp_decode(name, tokens=tokens, dtype_name=self.options.dtype or "bf16",
                               checkpoint=self.options.checkpoint, device_type=device.type)
        rates = result["decode_tok_per_s"]
        self.recorder.record("decode_tok_per_s", rates, unit="tok/s", higher_is_better=True)
        self.recorder.record("ttft_ms", result["ttft_ms"], unit="ms", higher_is_better=False, gate=False)
        return {"decode_tok_per_s": sorted(rates)[len(rates) // 2], "world_size": result["world_size"]}


def predicted_tok_per_s(cfg: Any, variant: str, dtype: Any, read_GBps: float | None, peak: float | None,
                        context: int, assume: Any = None) -> Any:
    """The roofline's decode rate of ``cfg`` (llama.LlamaConfig), a roofline.node.Prediction: one
    token at ``context`` cached positions, from the read bandwidth and the matmul peak (none:
    memory only) or the datasheet device ``assume`` names; int8 weights for the int8 variant."""
    from ..roofline.models import ModelConfig
    from ..roofline.node import Assumption, decode
    from ..roofline.precision import scheme

    bits = 32 if str(dtype).endswith("float32") else 16
    shape = ModelConfig(cfg.name, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.hidden_dim, cfg.vocab_size,
                        max_seq_len=cfg.max_seq_len, tied=cfg.tied_classifier)
    sch = scheme(f"w{8 if variant == 'int8' else bits}a{bits}e{bits}")
    return decode(shape, sch, context, assume or Assumption(), read_GBps, peak)
