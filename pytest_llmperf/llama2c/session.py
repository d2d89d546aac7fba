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
from .refs import Reference, auto, resolve

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
# the probe of int8 (runq) rows: the reference runner on the same Q8_0 checkpoint (its int8 path
# has runq.c's arithmetic); measured, see runner.py's docstring ("Rounds"): a float32 probe does not
# follow an int8 run's speed. Its own kind, so that a baseline probed in float32 is not adjusted by it
PROBE_KIND_Q8 = "refrun-q8-O3"


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
    ref: str = "auto"  # --llmperf-llama2c-ref: auto, off, or what the user named (see refs.py)
    ref_path: Path | None = None
    ref_where: str = "--llmperf-llama2c-ref"


@dataclass(frozen=True)
class Pairing:
    """How a benchmark of one binary is compared: with a reference binary in paired rounds
    (``binary`` and ``label`` set), or with the probe (``binary`` None; ``note`` says why when a
    reference was asked for but there is none for this row)."""

    binary: Path | None = None
    label: str = ""  # compare.Metric.paired_ref: "git 1a2b3c4d5e6f", "dir /x", "binary /x/run"
    note: str = ""


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
        self._built: dict[Path, tuple[str, str]] = {}  # binary -> (flags, program) it was built with
        self._auto: dict[str, tuple[Reference | None, str]] = {}  # commit -> (refs.Reference or None, note)
        # an explicit reference is checked now (configure time): a bad value is a usage error
        self.ref: Reference | None = resolve(settings.ref, settings.ref_path, settings.ref_where, settings.src,
                           settings.cache_dir) if settings.ref not in ("auto", "off") else None

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
        binary = build(source, flags, self.cache_dir() / "llama2c", cc=self.settings.cc, name=program)
        self._built[binary] = (flags, program)
        return binary

    def built_binaries(self) -> set[Path]:
        """The binaries :meth:`build` made in this session."""
        return set(self._built)

    def pairing(self, binary: Path, commit: str | None = None) -> Pairing:
        """The paired reference of a benchmark of ``binary`` (a build of :meth:`build`: the
        reference is built with its flags), or why there is none. ``commit``: in ``auto`` mode,
        what the core's history says the test's reference was measured with (None: not known).
        Builds the reference (raising what :meth:`build` raises)."""
        built = self._built.get(binary)
        if self.settings.ref == "off" or built is None:
            return Pairing()
        flags, program = built
        ref = self.ref
        if ref is None:  # auto
            if commit is None or self.settings.src is None:
                return Pairing()
            if commit not in self._auto:
                self._auto[commit] = auto(self.settings.src, commit, self.cache_dir())
            found, note = self._auto[commit]
            if found is None:
                return Pairing(note=note)
            ref = found
        source, exe, why = ref.program(program)
        if exe is not None:
            return Pairing(binary=exe, label=ref.label)
        if source is None:
            return Pairing(note=f"{program} rows not paired ({why}): compared with the machine-speed probe")
        ref_binary = build(source, flags, self.cache_dir() / "llama2c", cc=self.settings.cc, name=program)
        return Pairing(binary=ref_binary, label=ref.label)

    def reference_binary(self) -> Path:
        """Our reference runner built with PROBE_FLAGS: the native machine-speed probe (of float32
        and of Q8_0 checkpoints alike)."""
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
