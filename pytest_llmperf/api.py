"""The public core API for the feature plugins (llama2c, torch_models, profilers) and for
conftest.py code: the session of a pytest run, its stash keys, the one reader of option values
(which also says where a value came from), and the one way to fail a test with a single line.

It imports pytest and the pure core, never the glue (plugin.py) and never a feature, so that every
arrow runs one way: core <- api <- glue and features. Loading it stays cheap: the store, hardware
detection and reports are imported when first used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

import pytest

from .config import DEFAULT_ARTIFACTS_DIR, Config, ConfigError, MarkerOptions

if TYPE_CHECKING:
    from .baseline import BaselineStore
    from .native import NativeOptions
    from .recorder import Recorder
    from .result import TestResult
    from .roofline.node import Assumption

__all__ = ["CORE_FIXTURES", "CORE_OFF", "MARKER", "MARKER_HELP", "RECORDER", "STATE", "Option", "Session", "Value",
           "add_options", "artifact_dir", "fail", "feature_options", "not_json", "option_value", "parse_options",
           "read_options", "register_ini", "roofline_assumption", "session", "uses_plugin_fixtures", "without_core"]

IniType = Literal["string", "paths", "pathlist", "args", "linelist", "bool", "int", "float"]
T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """One option of the plugin or of a feature, declared once: its flag, its ini key (the dest,
    when ``ini``), its environment variable, its help text. :func:`add_options` registers a
    feature's options in its own ``--help`` group; :func:`read_options` reads them all, each
    value with where it came from."""

    flag: str  # --llmperf-cc
    help: str
    metavar: str | None = None
    env: str | None = None  # LLMPERF_CC: read after the command line, before the ini file
    ini: bool = True  # an ini key named like the dest (llmperf_cc)
    action: Literal["store_true", "append"] | None = None
    ini_type: IniType | None = None
    dest: str = ""  # default: the flag without dashes, - -> _

    @property
    def key(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Value:
    """An option's raw value and where it came from: ``source`` is the flag (``--llmperf-cc``),
    the environment variable, ``ini <key>``, or None (not given: the parser's default applies)."""

    raw: Any
    source: str | None
    option: Option
    base: Path = field(default_factory=Path.cwd)  # where a relative path given here is taken from

    @property
    def where(self) -> str:
        """What an error message names: the source, else the flag."""
        return self.source or self.option.flag

    def path(self) -> Path | None:
        """The value as a path, ``~`` expanded; a relative one is taken from the directory pytest
        was started in (command line, environment) or from the rootdir (ini file)."""
        if self.raw in (None, "", False):
            return None
        path = Path(os.path.expanduser(str(self.raw)))
        return path if path.is_absolute() else self.base / path


class Session:
    """Per-process state of a pytest run with the plugin, kept in ``config.stash[STATE]``."""

    def __init__(self, config: Config, pytest_config: pytest.Config):
        self.config = config
        self.pytest_config = pytest_config
        self.is_worker = hasattr(pytest_config, "workerinput")
        self.results: list[TestResult] = []  # collected from reports (controller / single process)
        self.passed_call: set[str] = set()
        self.saved: list[Path] = []
        self.save_error: str | None = None
        self.baseline_files = 0
        self._store: BaselineStore | None = None
        self._machine: tuple[dict[str, Any], dict[str, Any], str] | None = None
        self._machine_error: str | None = None
        self._bandwidth: dict[str, Any] | None = None
        self.report_errors: list[str] = []
        self.reports_written: list[Path] = []
        self.native: NativeOptions | None = None  # --llmperf-cc and --llmperf-cache-dir, set by the glue
        # source checkouts under test besides the repository itself, by name ("llama2c": {"path",
        # "commit", "dirty"}), set by the features at configure time; the history records them
        self.sources: dict[str, dict[str, Any]] = {}

    @property
    def store(self) -> BaselineStore:
        if self._store is None:
            from .baseline import BaselineStore

            self._store = BaselineStore(self.config.baseline_dir, self.config.node)
        return self._store

    def machine(self) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(hardware info, fingerprint fields, fingerprint digest), detected once per process."""
        if self._machine is None:
            from . import hardware

            # torch's runtime facts only when a test already imported it; the fingerprint uses the
            # import-free facts (torch_static), identical whether or not torch was imported
            info = hardware.detect(include_torch="torch" in sys.modules)
            info["torch_static"] = hardware.torch_static_info()
            fields = hardware.fingerprint_fields(info)
            self.pytest_config.hook.pytest_llmperf_fingerprint(config=self.pytest_config, info=info, fields=fields)
            problem = not_json(fields)
            if problem:
                self._machine_error = f"llmperf: pytest_llmperf_fingerprint hook: {problem}"
            else:
                self._machine = (info, fields, hardware.fingerprint_hash(fields))
        if self._machine is None:
            # a test that needs the fingerprint fails with this line (no traceback); the session's
            # save and reports catch it (pytest.fail.Exception) and say it once
            raise pytest.fail.Exception(self._machine_error or "llmperf: no fingerprint", pytrace=False)
        return self._machine

    def bandwidth(self) -> dict[str, Any]:
        """The node's memory read bandwidth entry (``read_GBps``, ``method``, ``llc_bytes``...): from
        the ``pytest_llmperf_bandwidth`` hook when one answers, else from the node-info file beside
        the baselines, the cache, or the probe (once per node and fingerprint; see
        native/bandwidth.py). Raises native.bandwidth.BandwidthError (NodeInfoError for an
        unusable node-info file), the build and cache errors, BaselineError or OSError; the
        features decide what each means for their test."""
        if self._bandwidth is None:
            from .native import bandwidth

            hooked = self.pytest_config.hook.pytest_llmperf_bandwidth(config=self.pytest_config)
            if hooked is not None:
                gbps = hooked.get("read_GBps") if isinstance(hooked, dict) else None
                if isinstance(gbps, bool) or not isinstance(gbps, (int, float)) or not 0 < gbps < 1e9:
                    raise bandwidth.BandwidthError(
                        f"pytest_llmperf_bandwidth hook: expected a dict with read_GBps a positive number of GB/s, "
                        f"got {str(hooked)[:80]}")
                self._bandwidth = {"method": "pytest_llmperf_bandwidth hook", **hooked}
            else:
                from .native import NativeOptions

                info, _fields, digest = self.machine()
                native = self.native or NativeOptions()
                cfg = self.config
                self._bandwidth = bandwidth.node_entry(
                    cfg.baseline_dir / cfg.node, native.cache_dir, cfg.node, digest, native.cc,
                    info.get("caches", {}).get("llc_bytes"), info.get("memory", {}).get("total_bytes"),
                    cfg.save_baseline and not self.is_worker)
        return self._bandwidth


def not_json(value: Any, where: str = "fields") -> str | None:
    """Why ``value`` cannot be stored as a fingerprint (a set, bytes, NaN, a non-string key), naming
    the field; None when it is plain JSON."""
    import math

    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None if abs(value) < 10**18 else f"field {where} holds an integer out of range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"field {where} is {value!r}, not a finite number"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = not_json(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"field {where} has a key {key!r} that is not a string"
            problem = not_json(item, key if where == "fields" else f"{where}.{key}")
            if problem:
                return problem
        return None
    return (f"field {where} is a {type(value).__name__} ({repr(value)[:40]}), not a JSON value "
            f"(str, number, bool, None, list, dict)")


STATE = pytest.StashKey[Session]()
MARKER = pytest.StashKey[MarkerOptions]()
RECORDER: pytest.StashKey[Recorder] = pytest.StashKey()


CORE_OFF = "pytest-llmperf is switched off (-p no:llmperf): its benchmark tests skip"
CORE_FIXTURES = frozenset({"llmperf"})  # the core's own fixtures (plugin.py)
MARKER_HELP = (
    "llmperf(tolerance=, tolerances=, rounds=, warmup=, max_time=, normalize=, profile=): per-test settings "
    "of pytest-llmperf; tolerance '5%' or 'tok_per_s=3%', tolerances {'metric': '3%'}, rounds = minimum "
    "measured rounds, warmup N or 'auto', max_time seconds, normalize auto/on/off, profile 'perf-stat,"
    "instructions' (profilers added to --llmperf-profile's)"
)
_CORE_OFF_DONE = pytest.StashKey[bool]()


def session(config: pytest.Config) -> Session:
    """The plugin's session of this pytest run. With the core switched off (``-p no:llmperf``, the
    features still loaded) a skip: in a fixture it skips the test, in a suite's
    ``pytest_generate_tests`` the module (one line saying why, not a KeyError)."""
    state = config.stash.get(STATE, None)
    if state is None:
        pytest.skip(CORE_OFF, allow_module_level=True)
    return state


def roofline_assumption(config: pytest.Config) -> Assumption:
    """What the suites' roofline predictions assume (roofline.node.Assumption): the device of
    ``--llmperf-roofline-device`` (None: the node's probes) and the efficiencies."""
    from .roofline.node import Assumption

    cfg = session(config).config
    return Assumption(cfg.roofline_device, cfg.roofline_fe, cfg.roofline_hbme)


def uses_plugin_fixtures(item: pytest.Item) -> bool:
    """Whether the test asks for a fixture of this package (``llmperf``, ``llama2c``, the torch and
    profiler fixtures, or one of a feature plugin's), directly or through another fixture; the
    core's fixtures count by name, so that they are found with the core switched off too."""
    if CORE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            module = getattr(getattr(fixturedef, "func", None), "__module__", "") or ""
            if module == "pytest_llmperf" or module.startswith("pytest_llmperf."):
                return True
    return False


def without_core(config: pytest.Config, items: list[pytest.Item] | None = None) -> None:
    """What a feature plugin does when the core is switched off (``-p no:llmperf``): at configure
    time (``items`` None) register the ``llmperf`` marker (the suites use it; ``--strict-markers``
    would refuse it unknown); at collection, mark every test that uses a fixture of the package
    ``llmperf`` and skip it, saying why (else each would be an error: fixture 'llmperf' not
    found). Once per session, whichever feature plugin calls first."""
    if STATE in config.stash:
        return
    if items is None:
        if MARKER_HELP not in config.getini("markers"):
            config.addinivalue_line("markers", MARKER_HELP)
        return
    if config.stash.get(_CORE_OFF_DONE, False):
        return
    config.stash[_CORE_OFF_DONE] = True
    for item in items:
        if item.get_closest_marker("llmperf") is not None or uses_plugin_fixtures(item):
            item.add_marker(pytest.mark.llmperf)
            item.add_marker(pytest.mark.skip(reason=CORE_OFF))


def fail(message: str) -> NoReturn:
    """Fail the test with ``message`` alone, no traceback; also in an ``except`` block, where
    ``pytest.fail`` would print the exception being handled ("During handling of ...")."""
    raise pytest.fail.Exception(message, pytrace=False) from None


_INI_KEYS: set[str] = set()  # the options that have an ini key (see register_ini)


def register_ini(key: str) -> None:
    """Note that option ``key`` (its dest) has an ini key of the same name."""
    _INI_KEYS.add(key)


def option_value(config: pytest.Config, dest: str, env: str | None = None) -> tuple[Any, str | None]:
    """Command line, then environment, then ini; returns (value, where it came from): the option
    (``--llmperf-tolerance``), the environment variable, or ``ini <key>``. An ini value pytest cannot
    read (``llmperf_require_baseline = maybe``) is a ConfigError naming the key."""
    value = config.getoption(dest, None)
    if value not in (None, [], False):
        return value, f"--{dest.replace('_', '-')}"
    if env and os.environ.get(env):
        return os.environ[env], env
    if dest not in _INI_KEYS:
        return None, None
    try:
        ini = config.getini(dest)
    except (ValueError, pytest.UsageError) as exc:  # pytest 9.2 raises UsageError for a bad type
        raise ConfigError(f"ini {dest}: {exc}") from None
    if ini not in (None, "", [], False):
        return ini, f"ini {dest}"
    return None, None


def artifact_dir(config: pytest.Config, nodeid: str) -> Path:
    """Where the profiler outputs of test ``nodeid`` go: ``<artifacts>/<node>/<test>`` (the test id
    made a safe file name: ``suites/test_x.py::test_y[a-b]`` -> ``test_x.py--test_y[a-b]``)."""
    import re

    cfg = config.stash[STATE].config
    path, _, rest = nodeid.partition("::")
    name = path.rsplit("/", 1)[-1] + ("--" + rest.replace("::", "--") if rest else "")
    name = re.sub(r"[^A-Za-z0-9._+=,\[\]-]", "_", name)[:200]
    return (cfg.artifacts_dir or config.rootpath / DEFAULT_ARTIFACTS_DIR) / cfg.node / name




def add_options(parser: pytest.Parser, group: str, title: str, options: Sequence[Option]) -> None:
    """Register ``options`` in their own ``--help`` group (``group``, headed ``title``), each with
    its ini key when it has one."""
    section = parser.getgroup(group, title)
    for opt in options:
        kw: dict[str, Any] = {"dest": opt.key, "help": opt.help.replace("%", "%%")}
        if opt.action == "store_true":
            kw.update(action="store_true", default=False)
        else:
            kw["metavar"] = opt.metavar
            if opt.action:
                kw["action"] = opt.action
        section.addoption(opt.flag, **kw)
        if opt.ini:
            parser.addini(opt.key, help=opt.help, type=opt.ini_type, default=None)
            register_ini(opt.key)


def read_options(config: pytest.Config, options: Sequence[Option]) -> dict[str, Value]:
    """Each option's raw value and where it came from, by dest (see :func:`option_value`); a
    relative path is later taken from the invocation directory, or from the rootdir for an ini
    value."""
    here = config.invocation_params.dir
    out = {}
    for opt in options:
        raw, source = option_value(config, opt.key, opt.env)
        if source is not None and source.startswith("--"):
            source = opt.flag  # the flag itself when its dest differs (--llmperf-save-baseline)
        base = config.rootpath if source is not None and source.startswith("ini ") else here
        out[opt.key] = Value(raw, source, opt, base)
    return out


def feature_options(config: pytest.Config, key: pytest.StashKey[T], plugin: str) -> T:
    """A feature's parsed options (stored under ``key`` by its plugin at configure time); a one-line
    usage error when its plugin is switched off (``-p no:<plugin>``) yet a test or suite needs it."""
    if key not in config.stash:
        raise pytest.UsageError(f"llmperf: the {plugin} feature is switched off (-p no:{plugin}), and a "
                                f"test or suite here needs it")
    return config.stash[key]


def parse_options(config: pytest.Config, options: Sequence[Option], parse: Callable[[Mapping[str, Value]], T]) -> T:
    """``parse`` (a feature's pure parser: values -> frozen options object, ConfigError on a bad
    value) applied to ``options``' values; a ConfigError becomes a one-line usage error."""
    try:
        return parse(read_options(config, options))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
