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

import os
from pathlib import Path
from typing import Any

import pytest

from ..api import fail as _fail

SESSION = pytest.StashKey[Any]()
BANDWIDTH = pytest.StashKey[Any]()


def add_options(add) -> None:
    """Options of the llama2.c support, added to the llmperf group by plugin.pytest_addoption."""
    add("--llmperf-llama2c-src", "llmperf_llama2c_src", metavar="DIR", dest="llmperf_llama2c_src",
        help="a llama2.c checkout whose run.c (and runq.c) to build (also env LLMPERF_LLAMA2C_SRC); "
             "default: the reference runner shipped with pytest-llmperf")
    add("--llmperf-cc", "llmperf_cc", metavar="CC", dest="llmperf_cc",
        help="C compiler for llama2.c builds (also env LLMPERF_CC); default: cc")
    add("--llmperf-models", "llmperf_models", metavar="DIR", dest="llmperf_models",
        help="directory of real checkpoints (stories15M.bin ...) with tok512.bin/tokenizer.bin (also env "
             "LLMPERF_MODELS); default: synthetic checkpoints of the published shapes, generated into the cache")
    add("--llmperf-cache-dir", "llmperf_cache_dir", metavar="DIR", dest="llmperf_cache_dir",
        help="where builds, synthetic models and the node's bandwidth are kept (also env LLMPERF_CACHE_DIR); "
             "default: $XDG_CACHE_HOME/pytest-llmperf or ~/.cache/pytest-llmperf")
    add("--llmperf-run-timeout", "llmperf_run_timeout", metavar="SECONDS", dest="llmperf_run_timeout",
        help="kill a benchmarked binary that runs longer than this and fail its test; default: 600")
    add("--llmperf-llama2c-models", "llmperf_llama2c_models", metavar="NAMES", dest="llmperf_llama2c_models",
        help="models the llama2.c suite runs: comma-separated names (stories260K,stories15M,stories42M,"
             "stories110M) or 'all'; default: stories260K,stories15M")
    add("--llmperf-threads", "llmperf_threads", metavar="N,N,...", dest="llmperf_threads",
        help="OpenMP thread counts of the sweep; default: 1, 2, 4, ... up to the usable cores")


def _settings(config: pytest.Config):
    from ..api import option_value as _value
    from ..native.cache import default_cache_dir
    from .session import Settings

    def path(dest: str, env: str) -> Path | None:
        raw = _value(config, dest, env)[0]
        if not raw:
            return None
        p = Path(str(raw)).expanduser()
        return p if p.is_absolute() else (Path.cwd() / p)

    raw_timeout = _value(config, "llmperf_run_timeout")[0]
    timeout = 600.0
    if raw_timeout:
        from ..config import parse_seconds

        timeout = parse_seconds(raw_timeout, "--llmperf-run-timeout")
    return Settings(
        src=path("llmperf_llama2c_src", "LLMPERF_LLAMA2C_SRC"),
        cc=os.path.expanduser(str(_value(config, "llmperf_cc", "LLMPERF_CC")[0] or "cc")),
        models_dir=path("llmperf_models", "LLMPERF_MODELS"),
        cache_dir=path("llmperf_cache_dir", "LLMPERF_CACHE_DIR") or default_cache_dir(),
        run_timeout=timeout,
    )


def selected_models(config: pytest.Config) -> list[str]:
    """The models the suite runs (``--llmperf-llama2c-models``); UsageError naming a bad one."""
    from ..api import option_value as _value
    from .session import DEFAULT_MODELS

    raw = _value(config, "llmperf_llama2c_models")[0]
    if not raw:
        return list(DEFAULT_MODELS)
    known = ("stories260K", "stories15M", "stories42M", "stories110M")
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    if names == ["all"]:
        return list(known)
    aliases = {k.lower(): k for k in known} | {k[len("stories"):].lower(): k for k in known}
    out = []
    for name in names:
        if name.lower() not in aliases:
            raise pytest.UsageError(f"--llmperf-llama2c-models: unknown model {name!r} (known: {', '.join(known)}, all)")
        out.append(aliases[name.lower()])
    return out


MAX_THREADS = 1024  # OpenMP threads of one run; a larger count is a typo


def selected_threads(config: pytest.Config) -> list[int]:
    from ..api import option_value as _value
    from .session import thread_counts

    raw = _value(config, "llmperf_threads")[0]
    if not raw:
        return thread_counts()
    try:
        values = sorted({int(v) for v in str(raw).split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] < 1 or values[-1] > MAX_THREADS:
        raise pytest.UsageError(f"--llmperf-threads: expected positive integers up to {MAX_THREADS} like 1,2,4; "
                                f"got {raw!r}")
    return values


def check_options(config: pytest.Config) -> None:
    """Usage errors of the llama2.c options at configure time (one line, exit code 4) rather than
    in the first test or collection that needs them (a ``--llmperf-cc`` path that is not an
    executable file among them); imports nothing when none of them is set."""
    from ..api import option_value as _value

    if _value(config, "llmperf_llama2c_models")[0]:
        selected_models(config)
    if _value(config, "llmperf_threads")[0]:
        selected_threads(config)
    if _value(config, "llmperf_llama2c_src", "LLMPERF_LLAMA2C_SRC")[0] or _value(config, "llmperf_run_timeout")[0]:
        _session(config)
    cc, where = _value(config, "llmperf_cc", "LLMPERF_CC")
    if cc:
        # a compiler given by its path must be an executable file (a bare name not on PATH fails
        # the tests that build, and lets the others run)
        from ..fileutil import executable_problem, is_path

        path = os.path.expanduser(str(cc))
        problem = executable_problem(path) if is_path(path) else None
        if problem is not None:
            raise pytest.UsageError(f"llmperf: {where} {cc}: {problem}")


def _session(config: pytest.Config):
    if SESSION not in config.stash:
        from .session import Llama2cSession, SourceError

        try:
            config.stash[SESSION] = Llama2cSession(_settings(config))
        except SourceError as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None
        except ValueError as exc:  # a bad --llmperf-run-timeout
            raise pytest.UsageError(f"llmperf: {exc}") from None
    return config.stash[SESSION]


def llama2c_session(config: pytest.Config):
    """The llama2.c session of this run (sources, builds, models), made once: for suites that
    parametrize on what the session found (runq.c present or not)."""
    return _session(config)


class Llama2c:
    """What the ``llama2c`` fixture gives a test: build, model, run, bench (see the README)."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        self.session = _session(request.config)

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
        (informational) in this test's ``llmperf`` recorder; returns the runner.Bench."""
        from dataclasses import replace

        from ..native import bandwidth
        from .runner import RunError, Runner, bench, quantization
        from .session import PROBE_KIND, PROBE_STEPS

        recorder = self._request.getfixturevalue("llmperf")
        profiling = self._request.getfixturevalue("llmperf_profile")
        spec = self.spec(model, **kw)
        runner = Runner()
        inline, tags = None, []
        if "perf-stat" in profiling.names:
            from ..profilers.fixtures import perf_stat_inline

            inline = perf_stat_inline(self._request.config)
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

        # the Python speed probe does not follow a native binary's speed (on our CI machine it flips
        # between two speeds 1.5x apart while the binary's tok/s stays put); the probe of compiled
        # runs is our reference runner at fixed flags on the same model, run before every round
        normalize = "off" if recorder.normalize == "off" else "on"
        probe_once = None
        if normalize == "on":
            reference = self.build_reference()
            probe_spec = replace(spec, steps=min(PROBE_STEPS.get(model.name, 8), spec.steps), threads=1,
                                 prompt=None)
            probe_model = self.model(model.name) if model.quantized else model
            probe_spec = replace(probe_spec, checkpoint=probe_model.checkpoint, tokenizer=probe_model.tokenizer)
            probe_once = lambda: runner.run(reference, probe_spec)  # noqa: E731
        settings = recorder.settings_for("tok_per_s", probe=probe_once is not None)
        try:
            result = bench(run_once, settings,
                           decisive=recorder.decisive_for("tok_per_s", "tok/s", True, normalize, PROBE_KIND),
                           probe_once=probe_once)
        except RunError as exc:
            _fail(f"llmperf: {exc}")
        recorder.record_rounds("tok_per_s", result.measurement, "tok/s", True, normalize=normalize,
                               probe_kind=PROBE_KIND)
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
        if inline is not None:
            profiling.record_inline(inline, [tags[i] for i in result.measurement.kept_rounds],
                                    [result.all_results[i] for i in result.measurement.kept_rounds])
        if profiling:
            env = dict(os.environ)
            if spec.threads is not None:
                env["OMP_NUM_THREADS"] = str(spec.threads)
            profiling.command(spec.argv(binary), env=env, timeout=spec.timeout,
                              only=[n for n in profiling.names if not (inline is not None and n == "perf-stat")])
        return result

    def bandwidth(self) -> dict:
        """The node's memory read bandwidth (measured once per node; see bandwidth.py); fails the
        test when it cannot be had."""
        from ..native.bandwidth import NodeInfoError

        try:
            return self._bandwidth()
        except NodeInfoError as exc:
            _fail(f"llmperf: {exc}")
        raise AssertionError("unreachable")

    def _bandwidth(self) -> dict:
        config = self._request.config
        if BANDWIDTH not in config.stash:
            config.stash[BANDWIDTH] = _node_bandwidth(config, self.session)
        return config.stash[BANDWIDTH]

    def _bandwidth_for_mbu(self) -> dict | None:
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


def node_bandwidth(config: pytest.Config) -> dict:
    """The node's memory bandwidth entry (``read_GBps``...), measured once per node and
    fingerprint; raises on failure (for the torch decode suite's MBU, which is informational), a
    :class:`~.bandwidth.NodeInfoError` naming an unusable node-info file among them."""
    if BANDWIDTH not in config.stash:
        config.stash[BANDWIDTH] = _measure_node_bandwidth(config, _session(config))
    return config.stash[BANDWIDTH]


def _node_bandwidth(config: pytest.Config, session) -> dict:
    """:func:`_measure_node_bandwidth`, failing the test with one line on any failure but an
    unusable node-info file (NodeInfoError, raised for the caller to decide)."""
    from ..baseline import BaselineError
    from ..native import bandwidth
    from ..native.build import BuildError, CompilerNotFound, FlagsRejected
    from ..native.cache import CacheError

    try:
        return _measure_node_bandwidth(config, session)
    except bandwidth.NodeInfoError:
        raise
    except (bandwidth.BandwidthError, BuildError, CompilerNotFound, FlagsRejected, CacheError, BaselineError,
            OSError) as exc:
        from ..api import STATE

        _fail(f"llmperf: memory bandwidth of node {config.stash[STATE].config.node}: {exc}")


def _measure_node_bandwidth(config: pytest.Config, session) -> dict:
    """The bandwidth entry of this machine: from the node-info file beside the baselines, else from
    the cache, else measured (and cached); a run that saves baselines adds it to the node-info
    file, under the node lock. An unusable node-info file raises NodeInfoError and is left as it is;
    an unusable cache file is only a cache: replaced, with a warning."""
    from ..api import STATE
    from ..baseline import NODE_INFO
    from ..fileutil import exclusive_lock
    from ..native import bandwidth
    from ..native.cache import ensure_dir

    state = config.stash[STATE]
    cfg = state.config
    info, _fields, digest = state.machine()
    node_dir = cfg.baseline_dir / cfg.node
    entry = bandwidth.read_info(node_dir / NODE_INFO, digest)
    if entry is None:
        nodes = ensure_dir(session.cache_dir() / "nodes", "cache directory (--llmperf-cache-dir)")
        cached = nodes / f"{cfg.node}.json"
        with exclusive_lock(nodes / ".lock"):  # one probe at a time: two would share the bandwidth
            try:
                entry = bandwidth.read_info(cached, digest)
            except bandwidth.NodeInfoError as exc:
                import warnings

                warnings.warn(f"llmperf: the bandwidth cache {cached} {exc.problem}; it is only a cache: "
                              f"measuring the bandwidth again and rewriting it", stacklevel=2)
                cached.unlink()
                entry = None
            if entry is None:
                entry = bandwidth.measure(session.cache_dir() / "llama2c", session.settings.cc,
                                          info.get("caches", {}).get("llc_bytes"),
                                          info.get("memory", {}).get("total_bytes"))
                bandwidth.write_info(cached, digest, entry)
    if cfg.save_baseline:
        bandwidth.store_info(node_dir, digest, entry)
    return entry


@pytest.fixture
def llama2c(request: pytest.FixtureRequest) -> Llama2c:
    """Build llama2.c (or the reference runner) with a flag set, get model files, run and bench:
    ``binary = llama2c.build("-O3 -fopenmp"); model = llama2c.model("stories15M");
    llama2c.bench(binary, model, threads=2)`` records tok_per_s (gated), mbu and peak_rss."""
    return Llama2c(request)
