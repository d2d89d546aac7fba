"""The llama2.c feature's options: declared once, parsed once (at configure time) into the frozen
Llama2cOptions. The parser is pure: a bad value is a ConfigError naming the option."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..api import Option, Value
from ..config import ConfigError, parse_seconds

GROUP = ("llmperf-llama2c", "pytest-llmperf llama2.c: build, run and bench llama2.c binaries")
KNOWN_MODELS = ("stories260K", "stories15M", "stories42M", "stories110M")
DEFAULT_MODELS = ("stories260K", "stories15M")
DEFAULT_RUN_TIMEOUT = 600.0
MAX_THREADS = 1024  # OpenMP threads of one run; a larger count is a typo

OPTIONS: tuple[Option, ...] = (
    Option("--llmperf-llama2c-src", metavar="DIR", env="LLMPERF_LLAMA2C_SRC",
           help="a llama2.c checkout whose run.c (and runq.c) to build (also env LLMPERF_LLAMA2C_SRC); "
                "default: the reference runner shipped with pytest-llmperf"),
    Option("--llmperf-models", metavar="DIR", env="LLMPERF_MODELS",
           help="directory of real checkpoints (stories15M.bin ...) with tok512.bin/tokenizer.bin (also env "
                "LLMPERF_MODELS); default: synthetic checkpoints of the published shapes, generated into the cache"),
    Option("--llmperf-run-timeout", metavar="SECONDS",
           help="kill a benchmarked binary that runs longer than this and fail its test; default: 600"),
    Option("--llmperf-llama2c-models", metavar="NAMES",
           help="models the llama2.c suite runs: comma-separated names (stories260K,stories15M,stories42M,"
                "stories110M) or 'all'; default: stories260K,stories15M"),
    Option("--llmperf-threads", metavar="N,N,...",
           help="OpenMP thread counts of the sweep; default: 1, 2, 4, ... up to the usable cores"),
)


@dataclass(frozen=True)
class Llama2cOptions:
    src: Path | None  # a llama2.c checkout; None: our reference runner
    models_dir: Path | None  # real checkpoints; None: synthetic ones
    run_timeout: float
    models: tuple[str, ...]
    threads: tuple[int, ...] | None  # None: 1, 2, 4, ... up to the usable cores (session.thread_counts)


def parse_models(raw: object) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_MODELS
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    if names == ["all"]:
        return KNOWN_MODELS
    aliases = {k.lower(): k for k in KNOWN_MODELS} | {k[len("stories"):].lower(): k for k in KNOWN_MODELS}
    out = []
    for name in names:
        if name.lower() not in aliases:
            raise ConfigError(f"--llmperf-llama2c-models: unknown model {name!r} "
                              f"(known: {', '.join(KNOWN_MODELS)}, all)")
        out.append(aliases[name.lower()])
    return tuple(out)


def parse_threads(raw: object) -> tuple[int, ...] | None:
    if not raw:
        return None
    try:
        values = sorted({int(v) for v in str(raw).split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] < 1 or values[-1] > MAX_THREADS:
        raise ConfigError(f"--llmperf-threads: expected positive integers up to {MAX_THREADS} like 1,2,4; "
                          f"got {raw!r}")
    return tuple(values)


def parse(values: Mapping[str, Value]) -> Llama2cOptions:
    timeout = values["llmperf_run_timeout"]
    try:
        run_timeout = parse_seconds(timeout.raw, "--llmperf-run-timeout") if timeout.raw else DEFAULT_RUN_TIMEOUT
    except ConfigError as exc:
        raise ConfigError(f"llmperf: {exc}") from None
    return Llama2cOptions(
        src=values["llmperf_llama2c_src"].path(),
        models_dir=values["llmperf_models"].path(),
        run_timeout=run_timeout,
        models=parse_models(values["llmperf_llama2c_models"].raw),
        threads=parse_threads(values["llmperf_threads"].raw),
    )
