"""The PyTorch feature's options: declared once, parsed once (at configure time) into the frozen
TorchOptions. The parser is pure and needs no torch: a bad value is a ConfigError naming the option,
with the text the torch options have always had."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import Option, Value
from ..config import ConfigError

GROUP = ("llmperf-torch", "pytest-llmperf torch: PyTorch transformer and decode benchmarks")

LM_PASSES = ("forward", "forward_backward", "train_step")
PASS_IDS = {"forward": "fwd", "forward_backward": "fwdbwd", "train_step": "train"}
PRECISIONS = ("fp32", "bf16", "fp16")
LM_SIZE_NAMES = ("tiny", "mini", "small", "medium", "large", "xl", "2.7B")
TABLE_SIZES = ("small", "medium", "large", "xl", "2.7B")  # --llmperf-lm-sizes=table
DEFAULT_LM_SIZES = ("tiny", "mini")
DEFAULT_CONTEXTS = (128, 256)
DEFAULT_BATCH_SIZE = 4
DEFAULT_PRECISIONS = ("fp32", "bf16")
COMPILE_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}
DECODE_VARIANTS = ("eager", "compile", "int8", "speculative", "tp")
DECODE_MODEL_NAMES = ("tiny", "stories15M", "stories42M", "stories110M", "llama2-7b")
DEFAULT_DECODE_MODEL = "stories15M"
DEFAULT_DECODE_TOKENS = 64
DEFAULT_PROMPT_TOKENS = 8
DEFAULT_SPECULATE_K = 5
DEFAULT_DRAFT = "int8"
DEVICE_SPEC = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

OPTIONS: tuple[Option, ...] = (
    Option("--llmperf-device", metavar="DEVICE", env="LLMPERF_DEVICE",
           help="device of the torch benchmarks: auto, cpu, cuda, cuda:N, mps (also env LLMPERF_DEVICE); "
                "default: auto (cuda, else mps, else cpu)"),
    Option("--llmperf-torch-threads", metavar="N",
           help="CPU threads torch computes with in the torch benchmarks (torch.set_num_threads); default: torch's "
                "own (the usable cores). 1 keeps a shared 2-core runner from stalling a step on a lost core"),
    Option("--llmperf-lm-sizes", metavar="NAMES",
           help="transformer LM sizes: tiny, mini, small, medium, large, xl, 2.7B, or 'table' (small to 2.7B); "
                "default: tiny,mini"),
    Option("--llmperf-lm-contexts", metavar="N,N,...",
           help="context lengths of the transformer suite; default: 128,256"),
    Option("--llmperf-lm-batch-size", metavar="N", help="batch size of the transformer suite; default: 4"),
    Option("--llmperf-lm-passes", metavar="NAMES",
           help="passes of the transformer suite: forward, forward_backward, train_step; default: all three"),
    Option("--llmperf-precisions", metavar="NAMES",
           help="precisions of the transformer suite: fp32, bf16 (autocast), fp16 (autocast); default: fp32,bf16"),
    Option("--llmperf-lm-compile", metavar="off|on|both",
           help="run the transformer suite eager (off), under torch.compile (on) or both; default: off"),
    Option("--llmperf-decode-model", metavar="NAME",
           help="decode model shape with seeded random weights: tiny, stories15M, stories42M, stories110M, "
                "llama2-7b; default: stories15M"),
    Option("--llmperf-decode-checkpoint", metavar="PATH", env="LLMPERF_DECODE_CHECKPOINT",
           help="real weights for the decode suite: a llama2.c checkpoint, converted on load (also env "
                "LLMPERF_DECODE_CHECKPOINT); default: random weights of --llmperf-decode-model"),
    Option("--llmperf-decode-tokens", metavar="N", help="tokens generated per round of the decode suite; default: 64"),
    Option("--llmperf-decode-dtype", metavar="DTYPE",
           help="weights' dtype of the decode suite: fp32, bf16, fp16; default: bf16 on CUDA, fp32 elsewhere"),
    Option("--llmperf-decode-variants", metavar="NAMES",
           help="variants of the decode suite: eager, compile, int8, speculative, tp; default: all"),
    Option("--llmperf-draft", metavar="int8|NAME|PATH",
           help="draft model of speculative decoding: 'int8' (an int8 copy of the target), a decode model name, "
                "or a llama2.c checkpoint; default: int8"),
    Option("--llmperf-speculate-k", metavar="N", help="tokens the draft proposes per verification; default: 5"),
)


@dataclass(frozen=True)
class LMGrid:
    """The transformer suite's grid: one test per size x pass x precision x context x compile."""

    sizes: tuple[str, ...]
    contexts: tuple[int, ...]
    batch_size: int
    passes: tuple[str, ...]
    precisions: tuple[str, ...]
    compile: tuple[bool, ...]  # (False,), (True,) or both

    def as_dict(self) -> dict[str, Any]:
        """The grid as the suites have always read it (lists, and the batch size)."""
        return {"sizes": list(self.sizes), "contexts": list(self.contexts), "batch_size": self.batch_size,
                "passes": list(self.passes), "precisions": list(self.precisions), "compile": list(self.compile)}


@dataclass(frozen=True)
class DecodeSettings:
    """What the decode suite generates with."""

    model: str  # a decode model shape (DECODE_MODEL_NAMES)
    tokens: int  # per round, at least 2
    speculate_k: int
    dtype: str | None  # None: bf16 on CUDA, fp32 elsewhere
    checkpoint: Path | None  # real weights; None: seeded random weights of ``model``
    draft: str  # int8, a decode model name, or a llama2.c checkpoint
    draft_path: Path | None  # --llmperf-draft read as a path, for when it is no name


@dataclass(frozen=True)
class TorchOptions:
    device: str  # auto, cpu, cuda, cuda:N or mps, lower case
    threads: int | None  # torch.set_num_threads; None: torch's own
    lm: LMGrid
    variants: tuple[str, ...]  # the decode suite's
    decode: DecodeSettings


def parse_names(raw: Any, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    """Comma-separated names of ``known``, in any case, each as ``known`` spells it."""
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    lookup = {k.lower(): k for k in known}
    out = []
    for name in names:
        if name.lower() not in lookup:
            raise ConfigError(f"{option}: unknown value {name!r} (known: {', '.join(known)})")
        out.append(lookup[name.lower()])
    if not out:
        raise ConfigError(f"{option}: no value given")
    return tuple(out)


def parse_ints(raw: Any, option: str) -> tuple[int, ...]:
    """Comma-separated positive whole numbers."""
    try:
        values = [int(v) for v in str(raw).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{option}: expected positive whole numbers like 128,256; got {raw!r}")
    return tuple(values)


def parse_lm_grid(values: Mapping[str, Value]) -> LMGrid:
    raw = values["llmperf_lm_sizes"].raw
    sizes: tuple[str, ...]
    if raw and str(raw).strip().lower() == "table":
        sizes = TABLE_SIZES
    else:
        sizes = parse_names(raw, LM_SIZE_NAMES, "--llmperf-lm-sizes") if raw else DEFAULT_LM_SIZES
    raw = values["llmperf_lm_contexts"].raw
    contexts = parse_ints(raw, "--llmperf-lm-contexts") if raw else DEFAULT_CONTEXTS
    raw = values["llmperf_lm_batch_size"].raw
    batch = parse_ints(raw, "--llmperf-lm-batch-size")[0] if raw else DEFAULT_BATCH_SIZE
    raw = values["llmperf_lm_passes"].raw
    passes = parse_names(raw, LM_PASSES, "--llmperf-lm-passes") if raw else LM_PASSES
    raw = values["llmperf_precisions"].raw
    precisions = parse_names(raw, PRECISIONS, "--llmperf-precisions") if raw else DEFAULT_PRECISIONS
    compile_ = str(values["llmperf_lm_compile"].raw or "off").strip().lower()
    if compile_ not in COMPILE_CHOICES:
        raise ConfigError(f"--llmperf-lm-compile: invalid value {compile_!r} (use off, on or both)")
    return LMGrid(sizes=sizes, contexts=contexts, batch_size=batch, passes=passes, precisions=precisions,
                  compile=COMPILE_CHOICES[compile_])


def parse_decode(values: Mapping[str, Value]) -> DecodeSettings:
    raw = values["llmperf_decode_model"].raw
    model = parse_names(raw, DECODE_MODEL_NAMES, "--llmperf-decode-model")[0] if raw else DEFAULT_DECODE_MODEL
    raw = values["llmperf_decode_tokens"].raw
    tokens = parse_ints(raw, "--llmperf-decode-tokens")[0] if raw else DEFAULT_DECODE_TOKENS
    if tokens < 2:
        raise ConfigError(f"--llmperf-decode-tokens: need at least 2 tokens (a first token and one decoded), "
                          f"got {tokens}")
    raw = values["llmperf_speculate_k"].raw
    k = parse_ints(raw, "--llmperf-speculate-k")[0] if raw else DEFAULT_SPECULATE_K
    raw = values["llmperf_decode_dtype"].raw
    dtype = parse_names(raw, PRECISIONS, "--llmperf-decode-dtype")[0] if raw else None
    draft = values["llmperf_draft"]
    return DecodeSettings(model=model, tokens=tokens, speculate_k=k, dtype=dtype,
                          checkpoint=values["llmperf_decode_checkpoint"].path(),
                          draft=str(draft.raw or DEFAULT_DRAFT), draft_path=draft.path())


def parse_device(value: Value) -> str:
    """The device spec, lower case; an unknown one names the value as given."""
    if value.raw is not None and not DEVICE_SPEC.fullmatch(str(value.raw).strip().lower()):
        raise ConfigError(f"--llmperf-device: unknown device {value.raw!r} (use auto, cpu, cuda, cuda:N or mps)")
    return str(value.raw or "auto").strip().lower()


def parse(values: Mapping[str, Value]) -> TorchOptions:
    """All torch options, checked in the order they always were (the grid, threads, variants,
    decoding, device): the first bad one is the error."""
    lm = parse_lm_grid(values)
    raw = values["llmperf_torch_threads"].raw
    threads = parse_ints(raw, "--llmperf-torch-threads")[0] if raw else None
    raw = values["llmperf_decode_variants"].raw
    variants = parse_names(raw, DECODE_VARIANTS, "--llmperf-decode-variants") if raw else DECODE_VARIANTS
    decode = parse_decode(values)
    return TorchOptions(device=parse_device(values["llmperf_device"]), threads=threads, lm=lm, variants=variants,
                        decode=decode)


ROOFLINE_MODEL_NAMES = {"llama2-7b": "llama-2-7b"}  # the decode suite's names the roofline table spells apart


def check_roofline_fits(opts: TorchOptions, device_name: str | None) -> None:
    """With a datasheet device for the roofline (--llmperf-roofline-device), every step of the
    transformer suite's grid (lm_fit_problem) and the decode model at the decode suite's length
    (in the smallest dtype it may run in when --llmperf-decode-dtype is not given) must fit in its
    memory: a ConfigError saying by how much otherwise."""
    if device_name is None:
        return
    from ..roofline.devices import device
    from ..roofline.inference import check_fits
    from ..roofline.models import MODELS, RooflineError, from_llama2c
    from ..roofline.precision import scheme

    _check_lm_fits(opts.lm, device_name)
    d = opts.decode
    try:
        shape = from_llama2c(d.checkpoint) if d.checkpoint else MODELS.get(ROOFLINE_MODEL_NAMES.get(d.model, d.model))
    except RooflineError:
        return  # an unreadable checkpoint is the decode suite's error, where it loads it
    if shape is None:
        return  # the unit-test shapes, a few MB
    bits = 32 if d.dtype == "fp32" else 16
    what = f"--llmperf-decode-checkpoint={d.checkpoint}" if d.checkpoint else f"--llmperf-decode-model={d.model}"
    try:
        check_fits(shape, scheme(f"w{bits}a{bits}e{bits}"), device(device_name), DEFAULT_PROMPT_TOKENS + d.tokens)
    except RooflineError as exc:
        raise ConfigError(f"--llmperf-roofline-device={device_name} cannot hold {what}: {exc}") from None


def lm_fit_problem(size: str, kind: str, precision: str, context: int, batch_size: int,
                   device_name: str) -> str | None:
    """Why one transformer step cannot run on the datasheet device ``device_name`` (its estimated
    peak memory, lm_shapes.memory_estimate, against the device's), or None when it fits."""
    from ..roofline.devices import device
    from .lm_shapes import get_config, memory_estimate

    cfg = get_config(size)
    if context > cfg.context_length:
        cfg = get_config(size, context_length=context)
    need = memory_estimate(cfg, batch_size, context, kind, activation_bytes=4 if precision == "fp32" else 2).total
    dev = device(device_name)
    if need <= dev.memory:
        return None
    return (f"size {size}, {kind}, {precision}, context {context}, batch {batch_size} needs about {need / 1e9:.1f} GB: "
            f"{(need - dev.memory) / 1e9:.1f} GB more than {dev.name}'s {dev.memory / 1e9:.0f} GB")


def _check_lm_fits(grid: LMGrid, device_name: str) -> None:
    """The largest step of the grid that the device cannot hold, as a ConfigError."""
    problems = [p for size in grid.sizes for kind in grid.passes for precision in grid.precisions
                for context in grid.contexts
                if (p := lm_fit_problem(size, kind, precision, context, grid.batch_size, device_name))]
    if problems:
        more = f" ({len(problems)} steps of the grid do not fit; the first is shown)" if len(problems) > 1 else ""
        raise ConfigError(f"--llmperf-roofline-device={device_name} cannot hold the transformer suite's "
                          f"{problems[0]}{more}: choose smaller --llmperf-lm-sizes, contexts or batch")
