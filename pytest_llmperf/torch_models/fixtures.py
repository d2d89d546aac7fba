"""pytest glue of the PyTorch benchmarks: options, and the ``torch_device``, ``torch_lm`` and
``torch_decode`` fixtures.

Loading this module imports pytest only. torch and the model modules are imported when a test asks
for one of the fixtures; without torch those tests skip with the reason. Exceptions become test
outcomes here: an unknown size or device option is a usage error; a device that was asked for by
name and is not there, a checkpoint that does not load and an out-of-memory fail the test with one
line; a dtype the device cannot compute in and a size that cannot fit skip it, before it starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

SESSION = pytest.StashKey[Any]()

LM_PASSES = ("forward", "forward_backward", "train_step")
PASS_IDS = {"forward": "fwd", "forward_backward": "fwdbwd", "train_step": "train"}
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_LM_SIZES = ("tiny", "mini")
DEFAULT_CONTEXTS = (128, 256)
DEFAULT_BATCH_SIZE = 4
DECODE_VARIANTS = ("eager", "compile", "int8", "speculative", "tp")
DEFAULT_DECODE_MODEL = "stories15M"
DEFAULT_DECODE_TOKENS = 64
DEFAULT_PROMPT_TOKENS = 8
DEFAULT_SPECULATE_K = 5
TORCH_MISSING = "torch is not installed: pip install 'pytest-llmperf[torch]'"
# what the CPU rounds are divided by (see _mm_probe); stored with the baseline, never mixed
PROBE_KIND = "torch-mm512"
PROBE_SIZE = 512


def add_options(add) -> None:
    """Options of the PyTorch benchmarks, added to the llmperf group by plugin.pytest_addoption."""
    add("--llmperf-device", "llmperf_device", metavar="DEVICE", dest="llmperf_device",
        help="device of the torch benchmarks: auto, cpu, cuda, cuda:N, mps (also env LLMPERF_DEVICE); "
             "default: auto (cuda, else mps, else cpu)")
    add("--llmperf-torch-threads", "llmperf_torch_threads", metavar="N", dest="llmperf_torch_threads",
        help="CPU threads torch computes with in the torch benchmarks (torch.set_num_threads); default: torch's "
             "own (the usable cores). 1 keeps a shared 2-core runner from stalling a step on a lost core")
    add("--llmperf-lm-sizes", "llmperf_lm_sizes", metavar="NAMES", dest="llmperf_lm_sizes",
        help="transformer LM sizes: tiny, mini, small, medium, large, xl, 2.7B, or 'table' (small to 2.7B); "
             "default: tiny,mini")
    add("--llmperf-lm-contexts", "llmperf_lm_contexts", metavar="N,N,...", dest="llmperf_lm_contexts",
        help="context lengths of the transformer suite; default: 128,256")
    add("--llmperf-lm-batch-size", "llmperf_lm_batch_size", metavar="N", dest="llmperf_lm_batch_size",
        help="batch size of the transformer suite; default: 4")
    add("--llmperf-lm-passes", "llmperf_lm_passes", metavar="NAMES", dest="llmperf_lm_passes",
        help="passes of the transformer suite: forward, forward_backward, train_step; default: all three")
    add("--llmperf-precisions", "llmperf_precisions", metavar="NAMES", dest="llmperf_precisions",
        help="precisions of the transformer suite: fp32, bf16 (autocast), fp16 (autocast); default: fp32,bf16")
    add("--llmperf-lm-compile", "llmperf_lm_compile", metavar="off|on|both", dest="llmperf_lm_compile",
        help="run the transformer suite eager (off), under torch.compile (on) or both; default: off")
    add("--llmperf-decode-model", "llmperf_decode_model", metavar="NAME", dest="llmperf_decode_model",
        help="decode model shape with seeded random weights: tiny, stories15M, stories42M, stories110M, "
             "llama2-7b; default: stories15M")
    add("--llmperf-decode-checkpoint", "llmperf_decode_checkpoint", metavar="PATH",
        dest="llmperf_decode_checkpoint",
        help="real weights for the decode suite: a llama2.c checkpoint, converted on load (also env "
             "LLMPERF_DECODE_CHECKPOINT); default: random weights of --llmperf-decode-model")
    add("--llmperf-decode-tokens", "llmperf_decode_tokens", metavar="N", dest="llmperf_decode_tokens",
        help="tokens generated per round of the decode suite; default: 64")
    add("--llmperf-decode-dtype", "llmperf_decode_dtype", metavar="DTYPE", dest="llmperf_decode_dtype",
        help="weights' dtype of the decode suite: fp32, bf16, fp16; default: bf16 on CUDA, fp32 elsewhere")
    add("--llmperf-decode-variants", "llmperf_decode_variants", metavar="NAMES", dest="llmperf_decode_variants",
        help="variants of the decode suite: eager, compile, int8, speculative, tp; default: all")
    add("--llmperf-draft", "llmperf_draft", metavar="int8|NAME|PATH", dest="llmperf_draft",
        help="draft model of speculative decoding: 'int8' (an int8 copy of the target), a decode model name, "
             "or a llama2.c checkpoint; default: int8")
    add("--llmperf-speculate-k", "llmperf_speculate_k", metavar="N", dest="llmperf_speculate_k",
        help="tokens the draft proposes per verification; default: 5")


from ..api import fail as _fail  # noqa: E402  (fail with one line, no chained traceback)


def _names(raw: Any, known: tuple[str, ...], option: str) -> list[str]:
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    lookup = {k.lower(): k for k in known}
    out = []
    for name in names:
        if name.lower() not in lookup:
            raise pytest.UsageError(f"{option}: unknown value {name!r} (known: {', '.join(known)})")
        out.append(lookup[name.lower()])
    if not out:
        raise pytest.UsageError(f"{option}: no value given")
    return out


def _ints(raw: Any, option: str) -> list[int]:
    try:
        values = [int(v) for v in str(raw).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise pytest.UsageError(f"{option}: expected positive whole numbers like 128,256; got {raw!r}")
    return values


def _value(config: pytest.Config, dest: str, env: str | None = None) -> Any:
    from ..api import option_value as value

    return value(config, dest, env)[0]


LM_SIZE_NAMES = ("tiny", "mini", "small", "medium", "large", "xl", "2.7B")
DECODE_MODEL_NAMES = ("tiny", "stories15M", "stories42M", "stories110M", "llama2-7b")


def lm_grid(config: pytest.Config) -> dict:
    """The transformer suite's parameters from the options (UsageError naming a bad value)."""
    raw_sizes = _value(config, "llmperf_lm_sizes")
    if raw_sizes and str(raw_sizes).strip().lower() == "table":
        sizes = ["small", "medium", "large", "xl", "2.7B"]
    else:
        sizes = _names(raw_sizes, LM_SIZE_NAMES, "--llmperf-lm-sizes") if raw_sizes else list(DEFAULT_LM_SIZES)
    raw = _value(config, "llmperf_lm_contexts")
    contexts = _ints(raw, "--llmperf-lm-contexts") if raw else list(DEFAULT_CONTEXTS)
    raw = _value(config, "llmperf_lm_batch_size")
    batch = _ints(raw, "--llmperf-lm-batch-size")[0] if raw else DEFAULT_BATCH_SIZE
    raw = _value(config, "llmperf_lm_passes")
    passes = _names(raw, LM_PASSES, "--llmperf-lm-passes") if raw else list(LM_PASSES)
    raw = _value(config, "llmperf_precisions")
    precisions = _names(raw, PRECISIONS, "--llmperf-precisions") if raw else ["fp32", "bf16"]
    raw = str(_value(config, "llmperf_lm_compile") or "off").strip().lower()
    choices = {"off": [False], "on": [True], "both": [False, True]}
    if raw not in choices:
        raise pytest.UsageError(f"--llmperf-lm-compile: invalid value {raw!r} (use off, on or both)")
    return {"sizes": sizes, "contexts": contexts, "batch_size": batch, "passes": passes,
            "precisions": precisions, "compile": choices[raw]}


def decode_variants(config: pytest.Config) -> list[str]:
    raw = _value(config, "llmperf_decode_variants")
    return _names(raw, DECODE_VARIANTS, "--llmperf-decode-variants") if raw else list(DECODE_VARIANTS)


def _decode_settings(config: pytest.Config) -> dict:
    raw = _value(config, "llmperf_decode_model")
    model = _names(raw, DECODE_MODEL_NAMES, "--llmperf-decode-model")[0] if raw else DEFAULT_DECODE_MODEL
    raw = _value(config, "llmperf_decode_tokens")
    tokens = _ints(raw, "--llmperf-decode-tokens")[0] if raw else DEFAULT_DECODE_TOKENS
    if tokens < 2:
        raise pytest.UsageError(f"--llmperf-decode-tokens: need at least 2 tokens (a first token and one decoded), got {tokens}")
    raw = _value(config, "llmperf_speculate_k")
    k = _ints(raw, "--llmperf-speculate-k")[0] if raw else DEFAULT_SPECULATE_K
    raw = _value(config, "llmperf_decode_dtype")
    dtype = _names(raw, PRECISIONS, "--llmperf-decode-dtype")[0] if raw else None
    checkpoint = _value(config, "llmperf_decode_checkpoint", "LLMPERF_DECODE_CHECKPOINT")
    draft = str(_value(config, "llmperf_draft") or "int8")
    return {"model": model, "tokens": tokens, "speculate_k": k, "dtype": dtype,
            "checkpoint": _path(checkpoint) if checkpoint else None, "draft": draft}


def torch_threads(config: pytest.Config) -> int | None:
    raw = _value(config, "llmperf_torch_threads")
    return _ints(raw, "--llmperf-torch-threads")[0] if raw else None


def _path(raw: Any) -> Path:
    p = Path(str(raw)).expanduser()
    return p if p.is_absolute() else Path.cwd() / p


def check_options(config: pytest.Config) -> None:
    """Usage errors of the torch options at configure time (one line, exit code 4); imports
    nothing heavy (torch is not needed to check names)."""
    lm_grid(config)
    torch_threads(config)
    decode_variants(config)
    _decode_settings(config)
    raw = _value(config, "llmperf_device", "LLMPERF_DEVICE")
    if raw is not None:
        import re

        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(raw).strip().lower()):
            raise pytest.UsageError(f"--llmperf-device: unknown device {raw!r} (use auto, cpu, cuda, cuda:N or mps)")


class TorchSession:
    """What the torch benchmarks of one pytest process share: the device (resolved once), and
    the node's matmul peak and memory bandwidth (measured once)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.device_spec = str(_value(config, "llmperf_device", "LLMPERF_DEVICE") or "auto").strip().lower()
        self._device = None
        self._device_error: str | None = None
        self._peaks: dict[str, tuple[float | None, str]] = {}
        self._bandwidth: dict | None = None

    def device(self):
        """The torch.device, or fail (a device asked for by name that is not there)."""
        if self._device is None and self._device_error is None:
            from .device import DeviceUnavailable, resolve_device

            try:
                self._device = resolve_device(self.device_spec)
            except (DeviceUnavailable, ValueError) as exc:
                self._device_error = f"llmperf: --llmperf-device: {exc}"
            threads = torch_threads(self.config)
            if threads:
                import torch

                torch.set_num_threads(threads)
        if self._device_error:
            _fail(self._device_error)
        return self._device

    def peak_flops(self, device, dtype) -> tuple[float | None, str]:
        """The FLOP/s that MFU is measured against: the datasheet figure of a known GPU, else what
        a large matmul achieves on this device in that dtype (measured once per session)."""
        from .device import dtype_name, matmul_probe, peak_flops_for

        key = f"{device}:{dtype_name(dtype)}"
        if key not in self._peaks:
            peak, source = (None, "")
            if device.type == "cuda":
                peak, source = peak_flops_for(device, dtype)
            if not peak:
                achieved = matmul_probe(device, dtype)
                peak, source = achieved, (f"MFU against a {dtype_name(dtype)} matmul probe on {device} "
                                          f"({achieved / 1e9:.1f} GFLOP/s), not a datasheet peak")
            self._peaks[key] = (peak, source)
        return self._peaks[key]


def session(config: pytest.Config) -> TorchSession:
    if SESSION not in config.stash:
        config.stash[SESSION] = TorchSession(config)
    return config.stash[SESSION]


def _need_torch():
    try:
        import torch
    except ImportError:
        pytest.skip(TORCH_MISSING)
    return torch


def _mm_probe(device):
    """The machine-speed probe of CPU rounds: the best of three pairs of 512 x 512 float32
    matmuls (about 10 ms here), timed before every round and after the last, on the threads torch
    computes with. The Python probe of the core does not follow native code on a shared machine;
    a matmul in MKL/oneDNN follows the CPU speed that the benchmark's kernels get. (A 256 x 256
    probe, 4x shorter, widened the verdict's interval to about +-25% here; see bench/torch_gate.py.)"""
    import torch

    n = PROBE_SIZE
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    b = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
    out = torch.empty(n, n)

    def probe() -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(2):
                torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
        return best

    probe()
    return probe


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _Bench:
    """Shared by the two fixtures: the rounds, the probe, memory, OOM and the profiler."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        self.session = session(request.config)
        self.recorder = request.getfixturevalue("llmperf")

    @property
    def device(self):
        return self.session.device()

    def _normalize(self, device) -> str:
        # GPU rounds are timed with events on the device, whose speed the host's load does not
        # change; CPU rounds are divided by the matmul probe unless the user turned that off
        if self.recorder.normalize == "off" or device.type != "cpu":
            return "off"
        return "on"

    def rounds(self, name: str, unit: str, higher: bool, sample, per_round: float, device):
        """run_rounds over ``sample`` with this test's settings, the budget stretched so that a
        slow step still gets its minimum rounds and a warm-up; records ``name`` (gated)."""
        from dataclasses import replace

        from ..measure import run_rounds

        normalize = self._normalize(device)
        probe = _mm_probe(device) if normalize == "on" else None
        settings = self.recorder.settings_for(name, probe=probe is not None)
        factor = 3 if not settings.adaptive else 1
        settings = replace(settings, max_time=max(settings.max_time, factor * (settings.min_rounds + 4) * per_round))
        m = run_rounds(sample, settings, decisive=self.recorder.decisive_for(name, unit, higher, normalize, PROBE_KIND),
                       probe_fn=probe)
        self.recorder.record_rounds(name, m, unit, higher, normalize=normalize, probe_kind=PROBE_KIND)
        return m

    def record_memory(self, pm) -> None:
        note = "" if pm.kind.startswith("cuda") else f"peak_mem is the {pm.kind}, everything in the pytest process"
        self.recorder.record("peak_mem", pm.peak_bytes / 2**20, unit="MiB", higher_is_better=False, gate=False,
                             note=note)

    def profile(self, step, device, what: str) -> None:
        """The PyTorch profiler around ``--llmperf-profile-steps`` more steps, when asked for
        (``--llmperf-profile=torch``): its operator table saved beside the test's other artifacts."""
        from ..api import STATE, artifact_dir

        cfg = self._request.config.stash[STATE].config
        if "torch" not in cfg.profilers:
            return
        from .profiling import profile_steps

        result = profile_steps(step, device, steps=cfg.profile_steps, warmup=0)
        paths = result.save(artifact_dir(self._request.config, self._request.node.nodeid))
        self.recorder.add_artifact("torch.profiler", paths, f"{what}: {result.summary_line(3)}")

    def process_profile(self, size, kind, autocast, context, batch_size, compile, attention, device) -> None:
        """The process profilers (nsys, perf stat, perf record) around the same steps in a process
        of their own (run_lm), when selected for this test; the timed rounds are already done.
        valgrind is not run on torch: its instruction counts are for compiled binaries."""
        import sys

        precision = {None: "fp32"}.get(autocast, str(autocast).replace("torch.", ""))
        argv = [sys.executable, "-m", "pytest_llmperf.torch_models.run_lm", "--size", size, "--kind", kind,
                "--precision", precision, "--context", str(context), "--batch", str(batch_size),
                "--attention", attention, "--device", str(device), "--steps", str(self.session_profile_steps())]
        if compile:
            argv.append("--compile")
        self.run_process_profilers(argv)

    def run_process_profilers(self, argv: list) -> None:
        """``argv`` (a run_lm or run_decode command) under the process profilers selected for this
        test, with this session's torch threads."""
        profiling = self._request.getfixturevalue("llmperf_profile")
        if not profiling:
            return
        if "instructions" in profiling.names:
            self.recorder.add_artifact("instructions", [], "skipped: not run on torch workloads",
                                       {"skipped": "instruction counts under valgrind are for compiled binaries "
                                                   "(a Python + torch process would take minutes)"})
        threads = torch_threads(self._request.config)
        if threads:
            argv = [*argv, "--threads", str(threads)]
        profiling.command(argv, only=[n for n in profiling.names if n != "instructions"])

    def session_profile_steps(self) -> int:
        from ..api import STATE

        return self._request.config.stash[STATE].config.profile_steps

    def guarded(self, device, what: str, fn):
        """Run ``fn()``; an out-of-memory fails this test only, with one line, after freeing what
        it held so that the next test finds the device usable."""
        from .device import is_oom, recover

        message = None
        try:
            return fn()
        except Exception as exc:
            if not is_oom(exc):
                raise
            message = f"llmperf: out of memory on {device} ({what}): {_first_line(exc)}"
        recover(device)  # the traceback (and the model it held) is gone once the except block ends
        _fail(message)


class TorchLM(_Bench):
    """What the ``torch_lm`` fixture gives a test: the transformer LM benchmarks (see the README)."""

    def config(self, size: str, context: int | None = None):
        from .transformer import UnknownSize, get_config

        try:
            cfg = get_config(size)
        except UnknownSize as exc:
            _fail(f"llmperf: {exc}")
        if context and context > cfg.context_length:
            cfg = get_config(size, context_length=context)
        return cfg

    def bench(self, size: str, kind: str, precision: str = "fp32", context: int = 128,
              batch_size: int = DEFAULT_BATCH_SIZE, compile: bool = False, attention: str = "sdpa") -> dict:
        """Time one step kind of size ``size``; records ``ms_per_step`` (gated), ``tok_per_s``,
        ``mfu``, ``first_step_ms``, ``peak_mem`` and, compiled, ``compile_s`` (informational)."""
        torch = _need_torch()
        from .device import DtypeUnsupported, available_memory, check_dtype, resolve_dtype
        from .transformer import memory_estimate

        if kind not in LM_PASSES:
            _fail(f"llmperf: unknown pass {kind!r} (known: {', '.join(LM_PASSES)})")
        device = self.device
        try:
            dtype = resolve_dtype(precision)
        except ValueError as exc:
            _fail(f"llmperf: {exc}")
        autocast = None if dtype == torch.float32 else dtype
        if autocast is not None:
            try:
                check_dtype(device, autocast)
            except DtypeUnsupported as exc:
                pytest.skip(str(exc))
        cfg = self.config(size, context)
        what = f"size {size}, {kind}, {precision}, context {context}, batch {batch_size}" + (", compiled" if compile else "")
        est = memory_estimate(cfg, batch_size, context, kind, activation_bytes=2 if autocast is not None else 4,
                              attention=attention)
        free = available_memory(device)
        if free is not None and est.total > 0.9 * free:
            pytest.skip(f"{what} needs about {_size(est.total)} ({est.describe()}); {device} has {_size(free)} free")
        return self.guarded(device, what, lambda: self._bench(cfg, kind, autocast, context, batch_size, compile,
                                                              attention, device, what))

    def _bench(self, cfg, kind, autocast, context, batch_size, compile, attention, device, what) -> dict:
        import torch

        from .device import PeakMemory, step_sampler, synchronize
        from .transformer import build_model, flops_per_step, make_step

        model = build_model(cfg, device=device, seed=0, attention=attention)
        runnable = torch.compile(model) if compile else model
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
        m.warmup.update(first=first * 1e3, discarded=m.warmup.get("discarded", 0) + 2,
                        ratio=first * 1e3 / m.warmup["steady"] if m.warmup.get("steady") else None)
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
        self.profile(step, device, what)
        self.process_profile(cfg.name, kind, autocast, context, batch_size, compile, attention, device)
        median = sorted(m.samples)[len(m.samples) // 2]
        return {"ms_per_step": median, "first_step_ms": first * 1e3, "peak_bytes": pm.peak_bytes,
                "flops": flops, "samples": list(m.samples)}


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def _scaled(sample: tuple, factor: float) -> tuple:
    value, wall, cpu = sample
    return value * factor, wall, cpu


class TorchDecode(_Bench):
    """What the ``torch_decode`` fixture gives a test: gpt-fast-style decoding (see the README)."""

    def __init__(self, request: pytest.FixtureRequest):
        super().__init__(request)
        try:
            self.options = _decode_settings(request.config)
        except pytest.UsageError as exc:  # checked at configure time already; here for direct use
            _fail(f"llmperf: {exc}")

    def dtype(self):
        torch = _need_torch()
        from .device import DtypeUnsupported, check_dtype, resolve_dtype

        device = self.device
        name = self.options["dtype"] or ("bf16" if device.type == "cuda" else "fp32")
        dtype = resolve_dtype(name)
        if dtype != torch.float32:
            try:
                check_dtype(device, dtype)
            except DtypeUnsupported as exc:
                pytest.skip(str(exc))
        return dtype

    def model(self, name: str | None = None, checkpoint: Path | None = None, dtype=None):
        """The target model: the llama2.c checkpoint given (``--llmperf-decode-checkpoint``), else
        seeded random weights of the named shape (``--llmperf-decode-model``)."""
        _need_torch()
        from .llama import CheckpointError, UnknownSize, build_llama, get_decode_config, load_llama2c

        device = self.device
        dtype = dtype if dtype is not None else self.dtype()
        checkpoint = checkpoint or (self.options["checkpoint"] if name is None else None)
        if checkpoint is not None:
            try:
                return load_llama2c(checkpoint, device=device, dtype=dtype)
            except CheckpointError as exc:
                _fail(f"llmperf: --llmperf-decode-checkpoint: {exc}")
        try:
            cfg = get_decode_config(name or self.options["model"])
        except UnknownSize as exc:
            _fail(f"llmperf: {exc}")
        return build_llama(cfg, device=device, dtype=dtype, seed=0)

    def draft_for(self, target, dtype):
        """The draft model of speculative decoding (``--llmperf-draft``)."""
        import copy

        from .quantize import quantize_int8_

        spec = self.options["draft"]
        if spec.lower() == "int8":
            return quantize_int8_(copy.deepcopy(target))
        from .llama import DECODE_SIZES

        if spec in DECODE_SIZES or spec.lower() in {k.lower() for k in DECODE_SIZES}:
            draft = self.model(name=spec, dtype=dtype)
        else:
            path = _path(spec)
            if not path.exists():
                _fail(f"llmperf: --llmperf-draft: {spec!r} is neither 'int8', a decode model name "
                      f"({', '.join(DECODE_SIZES)}) nor an existing llama2.c checkpoint")
            draft = self.model(checkpoint=path, dtype=dtype)
        if draft.config.vocab_size != target.config.vocab_size:
            _fail(f"llmperf: --llmperf-draft: the draft's vocabulary ({draft.config.vocab_size}) differs from "
                  f"the target's ({target.config.vocab_size})")
        return draft

    def prompt(self, vocab_size: int, length: int = DEFAULT_PROMPT_TOKENS) -> list[int]:
        """A fixed prompt: BOS (1) then seeded token ids (the same in every session)."""
        from .run_decode import fixed_prompt

        return fixed_prompt(vocab_size, length)

    def bench(self, variant: str, tokens: int | None = None) -> dict:
        """Decode ``tokens`` tokens per round with ``variant`` (eager, compile, int8, speculative,
        tp); records ``decode_tok_per_s`` (gated), ``ttft_ms``, ``ms_per_token``, ``peak_mem``,
        ``mbu`` and, per variant, ``compile_s`` or ``acceptance`` (informational)."""
        _need_torch()
        if variant not in DECODE_VARIANTS:
            _fail(f"llmperf: unknown decode variant {variant!r} (known: {', '.join(DECODE_VARIANTS)})")
        device = self.device
        if variant == "tp":
            from .tensor_parallel import tp_unavailable_reason

            reason = tp_unavailable_reason(device)
            if reason:
                pytest.skip(reason)
            return self._bench_tp(tokens or self.options["tokens"])
        dtype = self.dtype()
        tokens = tokens or self.options["tokens"]
        name = self.options["checkpoint"].name if self.options["checkpoint"] else self.options["model"]
        what = f"decode {variant}, {name}, {tokens} tokens"
        return self.guarded(device, what, lambda: self._bench(variant, tokens, dtype, device, what))

    def _bench(self, variant, tokens, dtype, device, what) -> dict:
        from . import generate as gen
        from .device import PeakMemory, synchronize
        from .llama import weight_bytes_per_token
        from .quantize import quantize_int8_

        model = self.model(dtype=dtype)
        k = self.options["speculate_k"]
        prompt = self.prompt(model.config.vocab_size)
        need = len(prompt) + tokens + k + 1
        if need > model.config.max_seq_len:
            _fail(f"llmperf: {what}: prompt {len(prompt)} + {tokens} tokens (+{k + 1} for speculation) exceed "
                  f"the model's max_seq_len {model.config.max_seq_len}; lower --llmperf-decode-tokens")
        draft = None
        if variant == "int8":
            quantize_int8_(model)
        elif variant == "speculative":
            draft = self.draft_for(model, dtype)
            draft.setup_caches(1, need)
        model.setup_caches(1, need)
        decode_fn = gen.compile_decode(device) if variant == "compile" else None
        sync = lambda: synchronize(device)  # noqa: E731
        run = lambda: gen.generate(model, prompt, tokens, decode_fn=decode_fn, draft=draft,  # noqa: E731
                                   speculate_k=k, sync=sync)
        gens = []

        def sample():
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
        m.warmup.update(first=first.decode_tok_per_s, discarded=m.warmup.get("discarded", 0) + 2,
                        ratio=(first.decode_tok_per_s / m.warmup["steady"]) if m.warmup.get("steady") else None)
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
                _fail(f"llmperf: {what}: speculative decoding changed the output: greedy tokens differ from plain "
                      f"decoding at position {at}")
            rec.record("acceptance", [100 * g.acceptance_rate for g in kept if g.acceptance_rate is not None],
                       unit="%", higher_is_better=True, gate=False)
        else:
            per_token = weight_bytes_per_token(model)
            bw, source = self.bandwidth(device)
            if bw:
                rec.record("mbu", [100 * per_token * r / (bw * 1e9) for r in m.samples], unit="%",
                           higher_is_better=True, gate=False, note=self._mbu_note(per_token, source))
        def profiled():  # one generation, as the rounds run it
            return gen.generate(model, prompt, tokens, decode_fn=decode_fn, draft=draft, speculate_k=k, sync=sync)

        self.profile(profiled, device, what)
        self.process_profile_decode(variant, tokens, dtype, device)
        median = sorted(m.samples)[len(m.samples) // 2]
        return {"decode_tok_per_s": median, "tokens": list(second.tokens), "ttft_ms": second.ttft_s * 1e3,
                "weight_bytes_per_token": weight_bytes_per_token(model), "samples": list(m.samples)}

    def process_profile_decode(self, variant, tokens, dtype, device) -> None:
        """The process profilers around the same decoding in a process of its own (run_decode)."""
        import sys

        opts = self.options
        argv = [sys.executable, "-m", "pytest_llmperf.torch_models.run_decode", "--variant", variant,
                "--tokens", str(tokens), "--dtype", str(dtype).replace("torch.", ""), "--device", str(device),
                "--draft", str(opts["draft"]), "--k", str(opts["speculate_k"]),
                "--generations", str(self.session_profile_steps())]
        argv += ["--checkpoint", str(opts["checkpoint"])] if opts["checkpoint"] else ["--model", opts["model"]]
        self.run_process_profilers(argv)

    def _plain_tokens(self, model, prompt, tokens, sync) -> list[int]:
        from . import generate as gen

        return list(gen.generate(model, prompt, tokens, sync=sync).tokens)

    def _mbu_note(self, per_token: int, source: str) -> str:
        note = f"mbu: {per_token / 2**20:.1f} MiB of weights read per token; bandwidth {source}"
        llc = None
        try:
            from ..api import STATE

            info = self._request.config.stash[STATE].machine()[0]
            llc = info.get("caches", {}).get("llc_bytes")
        except Exception:
            pass
        if self.device.type == "cpu" and llc and per_token <= llc:
            note += (f"; the weights fit in the last-level cache ({llc / 2**20:.0f} MiB): decode reads them "
                     f"from the cache, and MBU may exceed 100%")
        return note

    def bandwidth(self, device) -> tuple[float | None, str]:
        """The node's memory read bandwidth in GB/s and where it comes from: on CPU the compiled
        probe shared with the llama2.c suite (kept in the cache and in node-info.json); on a GPU a
        reduction over a buffer far larger than its L2, measured once per session."""
        sess = self.session
        if sess._bandwidth is None:
            if device.type == "cpu":
                from ..llama2c.fixtures import node_bandwidth

                try:
                    entry = node_bandwidth(self._request.config)
                    sess._bandwidth = {"read_GBps": entry["read_GBps"],
                                       "source": f"{entry['read_GBps']:.1f} GB/s ({entry.get('method', 'bwprobe')}, "
                                                 f"{entry.get('bytes', 0) / 2**30:.1f} GiB buffer)"}
                except Exception as exc:
                    sess._bandwidth = {"read_GBps": None, "source": f"unknown: {exc}"}
            else:
                from .device import device_name, table_bandwidth, torch_read_bandwidth

                entry = torch_read_bandwidth(device)
                table = table_bandwidth(device_name(device)) if device.type == "cuda" else None
                source = (f"{entry['read_GBps']:.0f} GB/s measured ({entry['bytes'] / 2**30:.1f} GiB buffer)"
                          + (f"; datasheet {table:.0f} GB/s" if table else ""))
                sess._bandwidth = {"read_GBps": entry["read_GBps"], "source": source}
        return sess._bandwidth["read_GBps"], sess._bandwidth["source"]

    def _bench_tp(self, tokens: int) -> dict:
        from .tensor_parallel import run_tp_decode

        device = self.device
        name = self.options["model"]
        result = run_tp_decode(name, tokens=tokens, dtype_name=self.options["dtype"] or "bf16",
                               checkpoint=self.options["checkpoint"], device_type=device.type)
        rates = result["decode_tok_per_s"]
        self.recorder.record("decode_tok_per_s", rates, unit="tok/s", higher_is_better=True)
        self.recorder.record("ttft_ms", result["ttft_ms"], unit="ms", higher_is_better=False, gate=False)
        return {"decode_tok_per_s": sorted(rates)[len(rates) // 2], "world_size": result["world_size"]}


@pytest.fixture
def torch_device(request: pytest.FixtureRequest):
    """The torch.device of the benchmarks (``--llmperf-device``, default auto); skips without torch."""
    _need_torch()
    return session(request.config).device()


@pytest.fixture
def torch_lm(request: pytest.FixtureRequest) -> TorchLM:
    """The transformer LM benchmarks: ``torch_lm.bench("mini", "forward_backward", "bf16", context=256)``
    records ms_per_step (gated), tok_per_s, mfu, first_step_ms and peak_mem."""
    _need_torch()
    return TorchLM(request)


@pytest.fixture
def torch_decode(request: pytest.FixtureRequest) -> TorchDecode:
    """gpt-fast-style decoding: ``torch_decode.bench("int8")`` records decode_tok_per_s (gated),
    ttft_ms, ms_per_token, peak_mem and mbu."""
    _need_torch()
    return TorchDecode(request)
