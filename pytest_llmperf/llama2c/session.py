"""One process's llama2.c setup: sources, compiler, models, cache, and what it built. No pytest.

The pytest fixtures (fixtures.py) turn the exceptions raised here into skips and failures:
:class:`ModelMissing` and :class:`~.build.FlagsRejected` skip; everything else fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..native.build import build
from ..native.cache import CacheError, default_cache_dir, ensure_dir

REFERENCE_SOURCE = Path(__file__).with_name("refrun.c")
PROGRAMS = ("run", "runq")
# steps per model in the suite: the timed part of a run must last long enough that the binary's
# millisecond clock adds well under 1% of error (stories260K: 512 positions, 0.1-0.3 s here), and
# short enough that the default suite finishes in a few minutes (stories15M: 128, about 1.5 s here)
DEFAULT_STEPS = {"stories260K": 512, "stories15M": 128, "stories42M": 128, "stories110M": 128}
DEFAULT_MODELS = ("stories260K", "stories15M")
# the reference probe run before every round: our runner at fixed flags, single-threaded, on the same
# model, for a fraction of a second (its nanosecond stats make short runs precise)
# the flag sets of our users' table and of llama2.c's Makefile, by test id
FLAG_SETS: dict[str, str] = {
    "O3": "-O3",
    "O3-omp": "-O3 -fopenmp",
    "O3-omp-Ofast": "-O3 -fopenmp -Ofast",
    "Ofast": "-Ofast",
    "Ofast-omp-native": "-Ofast -fopenmp -march=native",
}

PROBE_FLAGS = "-O3"
PROBE_STEPS = {"stories260K": 256, "stories15M": 24, "stories42M": 10, "stories110M": 4}
PROBE_KIND = "refrun-O3"


class ModelMissing(LookupError):
    """A model named by the suite is not in ``--llmperf-models`` DIR (the message names the file)."""


class SourceError(ValueError):
    """``--llmperf-llama2c-src`` is not a usable llama2.c checkout."""


@dataclass(frozen=True)
class ModelFiles:
    name: str
    checkpoint: Path
    tokenizer: Path
    config: object  # models.ModelConfig
    synthetic: bool
    quantized: bool = False
    group_size: int | None = None  # Q8_0 files

    @property
    def bytes_per_token(self) -> int:
        """Checkpoint bytes one decoded token reads (float32, or int8 + scales for Q8_0)."""
        if self.quantized:
            return self.config.q8_weight_bytes_per_token(self.group_size)  # type: ignore[attr-defined]
        return self.config.weight_bytes_per_token()  # type: ignore[attr-defined]


@dataclass
class Settings:
    src: Path | None = None  # a llama2.c checkout; None: our reference runner
    cc: str = "cc"
    models_dir: Path | None = None  # real checkpoints; None: synthetic ones
    cache_dir: Path = field(default_factory=default_cache_dir)
    run_timeout: float = 600.0


def check_source_dir(src: Path) -> dict[str, Path]:
    """The programs of a llama2.c checkout: run.c (required) and runq.c (when present)."""
    if not src.is_dir():
        raise SourceError(f"--llmperf-llama2c-src {src}: not a directory")
    found = {name: src / f"{name}.c" for name in PROGRAMS if (src / f"{name}.c").is_file()}
    if "run" not in found:
        raise SourceError(f"--llmperf-llama2c-src {src}: no run.c in it (expected a llama2.c checkout)")
    return found


class Llama2cSession:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.sources = check_source_dir(settings.src) if settings.src else {"run": REFERENCE_SOURCE}
        self._models: dict[tuple[str, bool], ModelFiles] = {}
        self._cache_ok = False

    @property
    def reference(self) -> bool:
        """True when the runner is our own reference runner (no llama2.c checkout given)."""
        return self.settings.src is None

    def cache_dir(self) -> Path:
        if not self._cache_ok:
            ensure_dir(self.settings.cache_dir, "cache directory (--llmperf-cache-dir)")
            self._cache_ok = True
        return self.settings.cache_dir

    def build(self, flags: str, program: str = "run") -> Path:
        source = self.sources.get(program)
        if source is None:
            raise ModelMissing(f"no {program}.c in {self.settings.src or 'the reference runner'}")
        return build(source, flags, self.cache_dir() / "llama2c", cc=self.settings.cc, name=program)

    def reference_binary(self) -> Path:
        """Our reference runner built with PROBE_FLAGS: the native machine-speed probe."""
        return build(REFERENCE_SOURCE, PROBE_FLAGS, self.cache_dir() / "llama2c", cc=self.settings.cc, name="run")

    def model(self, name: str, quantized: bool = False) -> ModelFiles:
        """The checkpoint and tokenizer of a published model: from ``models_dir`` when given (validated
        here, before any run), else synthetic files generated once into the cache."""
        key = (name, quantized)
        if key not in self._models:
            self._models[key] = self._resolve(name, quantized)
        return self._models[key]

    def _resolve(self, name: str, quantized: bool) -> ModelFiles:
        from . import models

        if name not in models.CONFIGS:
            raise ValueError(f"unknown model {name!r}: expected one of {', '.join(models.CONFIGS)}")
        if self.settings.models_dir is None:
            cache = self.cache_dir() / "llama2c"
            try:
                if quantized:
                    ckpt, tok = models.ensure_synthetic_q8_model(cache, name)
                else:
                    ckpt, tok = models.ensure_synthetic_model(cache, name)
            except OSError as exc:
                raise CacheError(f"cannot write synthetic models under {cache}: {exc.strerror or exc}") from None
            synthetic = True
        else:
            base = self.settings.models_dir
            ckpt = base / (f"{name}_q80.bin" if quantized else f"{name}.bin")
            # only what is not there at all is missing (a skip); a directory or another non-file
            # in its place is an invalid model file, which the readers below name (a failure)
            if not ckpt.exists():
                raise ModelMissing(f"{ckpt} not found (--llmperf-models {base})")
            wanted = models.TOKENIZER_FOR[name]
            candidates = [base / wanted] + ([base / "tokenizer.bin"] if wanted != "tokenizer.bin" else [])
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise ModelMissing(f"{base / wanted} not found: the tokenizer of {name} (--llmperf-models {base})")
            tok = found
            synthetic = False
        group_size = None
        if quantized:
            config, group_size = models.read_q8_header(ckpt)
        else:
            config = models.read_checkpoint_header(ckpt)
        models.read_tokenizer(tok, config.vocab_size)
        return ModelFiles(name=name, checkpoint=ckpt, tokenizer=tok, config=config, synthetic=synthetic,
                          quantized=quantized, group_size=group_size)


def thread_counts(cores: int | None = None) -> list[int]:
    """The default thread sweep: 1, 2, 4, ... up to the usable cores, and the cores themselves."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
    out, n = [], 1
    while n < cores:
        out.append(n)
        n *= 2
    out.append(cores)
    return out
