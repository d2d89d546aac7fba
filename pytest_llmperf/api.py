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
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .config import DEFAULT_ARTIFACTS_DIR, Config, ConfigError, MarkerOptions

__all__ = [
    "MARKER",
    "RECORDER",
    "STATE",
    "Session",
    "artifact_dir",
    "fail",
    "not_json",
    "option_value",
    "register_ini",
    "session",
]


class Session:
    """Per-process state of a pytest run with the plugin, kept in ``config.stash[STATE]``."""

    def __init__(self, config: Config, pytest_config: pytest.Config):
        self.config = config
        self.pytest_config = pytest_config
        self.is_worker = hasattr(pytest_config, "workerinput")
        self.payloads: list[dict] = []  # collected from reports (controller / single process)
        self.passed_call: set[str] = set()
        self.saved: list[Path] = []
        self.save_error: str | None = None
        self.baseline_files = 0
        self._store = None
        self._machine: tuple[dict, dict, str] | None = None
        self._machine_error: str | None = None
        self.report_errors: list[str] = []
        self.reports_written: list[Path] = []

    @property
    def store(self):
        if self._store is None:
            from .baseline import BaselineStore

            self._store = BaselineStore(self.config.baseline_dir, self.config.node)
        return self._store

    def machine(self) -> tuple[dict, dict, str]:
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
    return f"field {where} is a {type(value).__name__} ({repr(value)[:40]}), not a JSON value (str, number, bool, None, list, dict)"


STATE = pytest.StashKey[Session]()
MARKER = pytest.StashKey[MarkerOptions]()
RECORDER = pytest.StashKey[Any]()


def session(config: pytest.Config) -> Session:
    """The plugin's session of this pytest run."""
    return config.stash[STATE]


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


