"""pytest glue of the llama2.c support: the ``llama2c`` fixture and its session.

Loading this module imports pytest only; the builds, model files and runs are imported when a test
asks for the fixture. Exceptions become test outcomes here: a flag set the compiler rejects and a
model missing from ``--llmperf-models`` skip with the reason; a build that fails, an invalid model
file, an unusable cache and a run that hangs, crashes or prints no valid figure fail the test that
needs them, with a one-line reason (and the tail of the compiler's or the binary's stderr).

A node-info file beside the baselines that cannot be used (corrupt JSON such as a merge conflict,
or not the expected shape) is never overwritten. ``bench`` then records and saves its gated tok/s
and peak RSS as usual and leaves MBU out, with a warning naming the file (MBU is informational:
failing the test would also keep its tok/s out of a saved baseline); ``llama2c.bandwidth()``, which
a test calls to get the figure itself, fails the test with the same line.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..api import fail as _fail

if TYPE_CHECKING:
    from .options import Llama2cOptions
    from .session import Llama2cSession

OPTIONS_KEY: pytest.StashKey[Llama2cOptions] = pytest.StashKey()  # parsed once, by plugin.pytest_configure
SESSION: pytest.StashKey[Llama2cSession] = pytest.StashKey()


def options(config: pytest.Config) -> Llama2cOptions:
    """The llama2.c options of this run (parsed at configure time)."""
    from ..api import feature_options

    return feature_options(config, OPTIONS_KEY, "llmperf-llama2c")


def selected_models(config: pytest.Config) -> list[str]:
    """The models the suite runs (``--llmperf-llama2c-models``)."""
    return list(options(config).models)


def selected_threads(config: pytest.Config) -> list[int]:
    """The OpenMP thread counts of the sweep (``--llmperf-threads``, else 1, 2, 4, ... cores)."""
    from .session import thread_counts

    threads = options(config).threads
    return list(threads) if threads is not None else thread_counts()


def llama2c_session(config: pytest.Config) -> Llama2cSession:
    """The llama2.c session of this run (sources, builds, models), made once: for suites that
    parametrize on what the session found (runq.c present or not)."""
    if SESSION not in config.stash:
        from ..api import session
        from ..native import NativeOptions
        from .refs import RefError
        from .session import Llama2cSession, Settings, SourceError

        opts = options(config)
        native = session(config).native or NativeOptions()
        settings = Settings(src=opts.src, cc=native.cc, models_dir=opts.models_dir, cache_dir=native.cache_dir,
                            run_timeout=opts.run_timeout, ref=opts.ref, ref_path=opts.ref_path,
                            ref_where=opts.ref_where)
        try:
            config.stash[SESSION] = Llama2cSession(settings)
        except (SourceError, RefError) as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None
    return config.stash[SESSION]


_session = llama2c_session


class Llama2c:
    """What the ``llama2c`` fixture gives a test: build, model, run, bench (see the README)."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        self.session = llama2c_session(request.config)

    # -- building and files --------------------------------------------------------------------
    def build(self, flags: str, program: str = "run") -> Path:
        """The binary of ``program`` (run, or runq in a checkout that has it) built with ``flags``."""
        return self._built(lambda: self.session.build(flags, program))

    def build_reference(self) -> Path:
        """Our reference runner at fixed flags: the native machine-speed probe of ``bench``."""
        return self._built(self.session.reference_binary)

    def _built(self, make) -> Path:
        from ..native.build import BuildError, CompilerNotFound, FlagsRejected
        from ..native.cache import CacheError
        from .session import ModelMissing

        try:
            return make()
        except (FlagsRejected, ModelMissing) as exc:
            pytest.skip(str(exc))
        except (BuildError, CompilerNotFound, CacheError) as exc:
            _fail(f"llmperf: {exc}")
        raise AssertionError("unreachable")

    def model(self, name: str, quantized: bool = False):
        """The validated checkpoint and tokenizer of ``name`` (``stories15M``...)."""
        from ..native.cache import CacheError
        from .models import ModelFileError
        from .session import ModelMissing

        try:
            return self.session.model(name, quantized)
        except ModelMissing as exc:
            pytest.skip(str(exc))
        except (ModelFileError, CacheError) as exc:
            _fail(f"llmperf: {exc}")
        raise AssertionError("unreachable")

    # -- running -------------------------------------------------------------------------------
    def spec(self, model, steps: int | None = None, seed: int = 42, temperature: float = 1.0,
             topp: float = 0.9, prompt: str | None = None, threads: int | None = None):
        from .runner import RunSpec
        from .session import DEFAULT_STEPS

        if steps is None:
            steps = min(DEFAULT_STEPS.get(model.name, 256), model.config.seq_len)
        return RunSpec(checkpoint=model.checkpoint, tokenizer=model.tokenizer, steps=steps, seed=seed,
                       temperature=temperature, topp=topp, prompt=prompt, threads=threads,
                       timeout=self.session.settings.run_timeout)

    def run(self, binary: Path, model, **kw: Any):
        """One run; returns a RunResult (tok/s as printed, wall time, positions, peak RSS, output)."""
        from .runner import RunError, Runner

        try:
            return Runner().run(binary, self.spec(model, **kw))
        except RunError as exc:
            _fail(f"llmperf: {exc}")
        raise AssertionError("unreachable")

    def bench(self, binary: Path, model, mbu: bool = True, **kw: Any):
        """Run round after round and record ``tok_per_s`` (gated), ``mbu`` and ``peak_rss``
        (informational) in this test's ``llmperf`` recorder; returns the runner.Bench.

        A round runs the binary back to back until it lasts ``--llmperf-llama2c-round``. With a
        paired reference (``--llmperf-llama2c-ref``; :meth:`pairing`) the reference build runs as
        often, interleaved with the binary's runs, and ``tok_per_s`` is gated on the paired ratios
        (the verdict's reference ``paired:<what>``); otherwise our reference runner at fixed flags
        runs between them as the machine-speed probe (on the same Q8_0 checkpoint for a runq row).

        What paired mode costs: the reference's build, once per flag set and reference (cached:
        about a second for our runner at -O3 here), and rounds that take longer, since the reference
        runs the whole spec where the probe runs a shorter one; the budget is the same. Measured on
        the suite's -O3 t1 rows here (suites/test_llama2c.py, caches warm, other work on the
        machine): stories260K (8 s budget) 8.3-8.9 s a test in both modes (the budget ends it);
        stories15M (30 s budget; bench/gate_llama2c.py t2, 20 + 20 sessions per mode beside a CPU
        hog) 31-32 s a session probed and 33-35 s paired, with 7 paired rounds (two 2.4 s runs
        each) where the probe mode has 11 (one run and a 24-step probe each)."""
        from dataclasses import replace

        from ..native import bandwidth
        from .runner import RunError, Runner, bench, quantization, unfit_reason
        from .session import PROBE_KIND, PROBE_KIND_Q8, PROBE_STEPS

        recorder = self._request.getfixturevalue("llmperf")
        try:  # the profilers' fixture; without their plugin (-p no:llmperf-profilers), none
            profiling = self._request.getfixturevalue("llmperf_profile")
        except pytest.FixtureLookupError:
            profiling = None
        spec = self.spec(model, **kw)
        runner = Runner()
        inline = None
        tags: list[str] = []
        if profiling and "perf-stat" in profiling.names:
            inline = profiling.perf_stat_inline()
            if inline is not None and inline.unavailable_reason() is not None:
                inline = None  # command() below skips it with the reason
        if inline is not None:
            profiling.directory.mkdir(parents=True, exist_ok=True)
            # perf stat's own environment (LC_ALL=C: numbers parse_stat_csv can read), set once
            inline_runner = Runner({**os.environ, **inline.wrap([], profiling.directory, "-")[1]})

        def run_once():
            if inline is None:
                return runner.run(binary, spec)
            tags.append(f"{binary.name}-perf-stat-round{len(tags) + 1}")
            prefix, _env = inline.wrap([], profiling.directory, tags[-1])
            return inline_runner.run(binary, spec, prefix=prefix)

        pairing = self.pairing(binary)
        normalize = "off" if recorder.normalize == "off" else "on"
        probe_once = reference_once = None
        if pairing.binary is not None:
            reference = pairing.binary
            reference_once = lambda: runner.run(reference, spec)  # noqa: E731
        elif normalize == "on":
            # the Python speed probe does not follow a native binary's speed (on our CI machine it flips
            # between two speeds 1.5x apart while the binary's tok/s stays put); the probe of compiled
            # runs is our reference runner at fixed flags on the same model, in rounds of its own
            # runs next to every run of the round. An int8 (runq) row gets the int8 probe: the same
            # runner on the same Q8_0 checkpoint (see session.PROBE_KIND_Q8 for why)
            reference = self.build_reference()
            probe_spec = replace(spec, steps=min(PROBE_STEPS.get(model.name, 8), spec.steps), threads=1,
                                 prompt=None)
            probe_once = lambda: runner.run(reference, probe_spec)  # noqa: E731
        probe_kind = PROBE_KIND_Q8 if model.quantized else PROBE_KIND
        settings = recorder.settings_for("tok_per_s", probe=probe_once is not None)
        decisive = recorder.decisive_for("tok_per_s", "tok/s", True, normalize, probe_kind, paired_ref=pairing.label)
        try:
            result = bench(run_once, settings, decisive=decisive, probe_once=probe_once,
                           round_time=options(self._request.config).round_time, reference_once=reference_once)
        except RunError as exc:
            _fail(f"llmperf: {exc}")
        unfit = unfit_reason(spec.threads, result.measurement.cpu_share)
        recorder.record_rounds("tok_per_s", result.measurement, "tok/s", True, normalize=normalize,
                               probe_kind=probe_kind, paired_ref=pairing.label, note=pairing.note, unfit=unfit)

        positions = result.results[0].positions or spec.steps
        rate = sorted(result.tok_per_s)[len(result.tok_per_s) // 2]
        q = quantization(rate, positions)
        if q > recorder.settings_for("tok_per_s").tolerance / 2:
            import warnings

            warnings.warn(f"llmperf: {binary.name} on {model.name}: the binary's 1 ms clock alone makes each tok/s "
                          f"figure uncertain by up to {q:.1%}; run more steps", stacklevel=2)
        recorder.record("peak_rss", [r.peak_rss / 2**20 for r in result.results], unit="MiB",
                        higher_is_better=False, gate=False)
        bw = self._bandwidth_for_mbu() if mbu else None
        if bw is not None:
            per_token = model.bytes_per_token
            llc = bw.get("llc_bytes")
            note = ""
            if llc and per_token <= llc:
                note = (f"the weights ({per_token / 2**20:.1f} MiB read per token) fit in the last-level cache "
                        f"({llc / 2**20:.0f} MiB): decode reads them from the cache, and MBU may exceed 100%")
            elif llc and per_token <= bandwidth.LLC_FACTOR * llc:
                note = (f"the weights ({per_token / 2**20:.0f} MiB read per token) are only {per_token / llc:.1f}x "
                        f"the last-level cache ({llc / 2**20:.0f} MiB): part of them may come from the cache, "
                        f"so MBU reads high")
            recorder.record("mbu", [100 * bandwidth.mbu(per_token, r, bw["read_GBps"]) for r in result.tok_per_s],
                            unit="%", higher_is_better=True, gate=False, note=note)
            self._predict(recorder, model, bw["read_GBps"], spec.steps, len(result.tok_per_s))
        if inline is not None:
            # one counter sample per kept round: its last run's (every run of a round ran under perf stat)
            last = list(itertools.accumulate(len(r) for r in result.rounds))
            kept = [last[i] - 1 for i in result.measurement.kept_rounds]
            profiling.record_inline(inline, [tags[i] for i in kept], [result.all_results[i] for i in kept])
        if profiling:
            env = dict(os.environ)
            if spec.threads is not None:
                env["OMP_NUM_THREADS"] = str(spec.threads)
            profiling.command(spec.argv(binary), env=env, timeout=spec.timeout,
                              only=[n for n in profiling.names if not (inline is not None and n == "perf-stat")])
        return result

    def pairing(self, binary: Path):
        """The paired reference of a benchmark of ``binary`` (session.Pairing): under
        ``--llmperf-llama2c-ref auto`` the commit comes from the core's hook
        ``pytest_llmperf_reference_commit`` (the commit this test's reference was measured with).
        A reference that does not build fails the test, naming it."""
        from ..native.build import BuildError, CompilerNotFound, FlagsRejected
        from ..native.cache import CacheError

        config = self._request.config
        settings = self.session.settings
        commit = None
        if settings.ref == "auto" and settings.src is not None and binary in self.session.built_binaries():
            answer = config.hook.pytest_llmperf_reference_commit(config=config, nodeid=self._request.node.nodeid,
                                                                 source="llama2c")
            commit = answer if isinstance(answer, str) and answer else None
        try:
            return self.session.pairing(binary, commit)
        except (BuildError, CompilerNotFound, FlagsRejected, CacheError) as exc:
            _fail(f"llmperf: the paired reference ({settings.ref_where} {settings.ref}): {exc}")

    def bandwidth(self) -> dict[str, Any]:
        """The node's memory read bandwidth (measured once per node; see native/bandwidth.py);
        fails the test when it cannot be had."""
        from ..native.bandwidth import NodeInfoError

        try:
            return self._bandwidth()
        except NodeInfoError as exc:
            _fail(f"llmperf: {exc}")

    def _bandwidth(self) -> dict[str, Any]:
        """The session's bandwidth, failing the test with one line on any failure but an unusable
        node-info file (NodeInfoError, raised for the caller to decide)."""
        from ..api import session
        from ..baseline import BaselineError
        from ..native import bandwidth
        from ..native.build import BuildError, CompilerNotFound, FlagsRejected
        from ..native.cache import CacheError

        state = session(self._request.config)
        try:
            return state.bandwidth()
        except bandwidth.NodeInfoError:
            raise
        except (bandwidth.BandwidthError, BuildError, CompilerNotFound, FlagsRejected, CacheError, BaselineError,
                OSError) as exc:
            _fail(f"llmperf: memory bandwidth of node {state.config.node}: {exc}")

    def _predict(self, recorder: Any, model: Any, read_GBps: float, steps: int, n: int) -> None:
        """pred_tok_per_s (informational) and the summary's roofline row; a configuration the named
        device cannot hold is a warning, and the gated tok/s stands."""
        from ..api import roofline_assumption
        from ..roofline.models import RooflineError

        try:
            p = _predicted(model, read_GBps, steps, roofline_assumption(self._request.config))
        except RooflineError as exc:
            import warnings

            warnings.warn(f"llmperf: {model.name}: no roofline prediction: {exc}", stacklevel=3)
            return
        recorder.record("pred_tok_per_s", [p.value] * n, unit="tok/s", higher_is_better=True, gate=False,
                        note=f"the roofline ({p.assuming}; average context {max(1, steps // 2)}): {p.bound} bound; "
                             "on the node the CPU's compute peak is not probed here, so the bandwidth alone "
                             "bounds it; measured/predicted is near the MBU (it reads the KV cache too)")
        recorder.estimate("tok_per_s", p.value, p.bound, p.assuming)

    def _bandwidth_for_mbu(self) -> dict[str, Any] | None:
        """The bandwidth behind bench's MBU, or None with a warning when the node-info file beside
        the baselines is unusable: MBU is informational, and the test still passes or fails on its
        gated tok/s (recorded before this, and saved with the baseline). The file is never
        overwritten; the warning names it (``-W error::UserWarning`` makes it a failure, after
        the gate has been compared)."""
        from ..native.bandwidth import NodeInfoError

        try:
            return self._bandwidth()
        except NodeInfoError as exc:
            import warnings

            warnings.warn(f"llmperf: mbu not recorded: {exc}", stacklevel=3)
            return None


@pytest.fixture
def llama2c(request: pytest.FixtureRequest) -> Llama2c:
    """Build llama2.c (or the reference runner) with a flag set, get model files, run and bench:
    ``binary = llama2c.build("-O3 -fopenmp"); model = llama2c.model("stories15M");
    llama2c.bench(binary, model, threads=2)`` records tok_per_s (gated), mbu and peak_rss."""
    return Llama2c(request)


def _predicted(model: Any, read_GBps: float, steps: int, assume: Any = None) -> Any:
    """The roofline's tok/s of ``model`` (session.ModelFiles), a roofline.node.Prediction: decode
    at the run's average context, float32 weights (int8 for a Q8_0 checkpoint), from the node's
    bandwidth (or the datasheet device ``assume`` names)."""
    from ..roofline import models as roofline_models
    from ..roofline.node import Assumption, decode
    from ..roofline.precision import scheme

    cfg = model.config
    shape = roofline_models.ModelConfig(model.name, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
                                        cfg.hidden_dim, cfg.vocab_size, max_seq_len=cfg.seq_len,
                                        tied=cfg.shared_classifier)
    return decode(shape, scheme("w8a32e32" if model.quantized else "w32a32e32"), max(1, steps // 2),
                  assume or Assumption(), read_GBps)
