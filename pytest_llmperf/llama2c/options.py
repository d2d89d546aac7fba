"""The llama2.c feature's options: declared once, parsed once (at configure time) into the frozen
Llama2cOptions. The parser is pure: a bad value is a ConfigError naming the option."""

from __future__ import annotations

import os
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
# the minimum length of a round (seconds of back-to-back runs of the binary), chosen by the
# measurement in runner.py's docstring ("Rounds"): 4 runs of stories260K here; 0 runs the binary
# once per round
DEFAULT_ROUND_TIME = 0.3
MAX_ROUND_TIME = 60.0
REF_AUTO, REF_OFF = "auto", "off"

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
    Option("--llmperf-llama2c-ref", metavar="REF", env="LLMPERF_LLAMA2C_REF",
           help="the reference build of paired runs (rounds of it and of this build interleaved in the session, "
                "gated on their ratios): 'auto' (default: the commit of --llmperf-llama2c-src that the history's "
                "reference was measured with, when the checkout is at another commit or dirty), 'off' (never "
                "pair: the machine-speed probe), a git revision of the --llmperf-llama2c-src checkout, a "
                "directory with run.c (and runq.c), or an executable used as the run rows' reference as is "
                "(also env LLMPERF_LLAMA2C_REF)"),
    Option("--llmperf-llama2c-round", metavar="SECONDS", env="LLMPERF_LLAMA2C_ROUND",
           help="minimum length of a round: the binary runs back to back until a round lasts this long, and the "
                "round's tok/s is one sample (also env LLMPERF_LLAMA2C_ROUND); 0: one run per round; "
                "default: 0.3"),
)


@dataclass(frozen=True)
class Llama2cOptions:
    src: Path | None  # a llama2.c checkout; None: our reference runner
    models_dir: Path | None  # real checkpoints; None: synthetic ones
    run_timeout: float
    models: tuple[str, ...]
    threads: tuple[int, ...] | None  # None: 1, 2, 4, ... up to the usable cores (session.thread_counts)
    round_time: float = DEFAULT_ROUND_TIME  # minimum seconds of a round; 0: one run per round
    ref: str = REF_AUTO  # auto, off, or what the user named (a revision, a directory or an executable)
    ref_path: Path | None = None  # ``ref`` taken as a path (relative to where it was given)
    ref_where: str = "--llmperf-llama2c-ref"  # where ``ref`` came from, for error messages


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


def parse_round(raw: object, where: str = "--llmperf-llama2c-round") -> float:
    """The minimum round length in seconds: ``0`` (one run per round), or seconds like ``0.5`` or
    ``500ms`` up to MAX_ROUND_TIME."""
    if raw in (None, ""):
        return DEFAULT_ROUND_TIME
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) and str(raw).strip() in ("0", "0.0", "0s"):
        return 0.0
    return parse_seconds(raw, where, maximum=MAX_ROUND_TIME)


def parse_ref(value: Value) -> tuple[str, Path | None, str]:
    """(the reference as given, the same as a path, where it came from): ``auto`` when not given;
    ``auto`` and ``off`` in any case. Whether it is a revision, a directory or an executable is
    decided at configure time (refs.resolve), which looks at the file system and at git."""
    raw = "" if value.raw is None else str(value.raw).strip()
    if not raw or raw.lower() == REF_AUTO:
        return REF_AUTO, None, value.where
    if raw.lower() == REF_OFF:
        return REF_OFF, None, value.where
    path = Value(raw, value.source, value.option, value.base).path()
    return raw, Path(os.path.abspath(path)) if path is not None else None, value.where


def parse(values: Mapping[str, Value]) -> Llama2cOptions:
    timeout = values["llmperf_run_timeout"]
    try:
        run_timeout = parse_seconds(timeout.raw, "--llmperf-run-timeout") if timeout.raw else DEFAULT_RUN_TIMEOUT
    except ConfigError as exc:
        raise ConfigError(f"llmperf: {exc}") from None
    ref, ref_path, ref_where = parse_ref(values["llmperf_llama2c_ref"])
    round_value = values["llmperf_llama2c_round"]
    return Llama2cOptions(
        src=values["llmperf_llama2c_src"].path(),
        models_dir=values["llmperf_models"].path(),
        run_timeout=run_timeout,
        models=parse_models(values["llmperf_llama2c_models"].raw),
        threads=parse_threads(values["llmperf_threads"].raw),
        round_time=parse_round(round_value.raw, round_value.where),
        ref=ref, ref_path=ref_path, ref_where=ref_where,
    )
