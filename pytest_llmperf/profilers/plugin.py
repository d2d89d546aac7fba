"""The process profilers as a pytest plugin (entry point ``llmperf-profilers``;
``-p no:llmperf-profilers`` switches it off): their options in their own ``--help`` group, parsed
once at configure time, and the ``llmperf_profile`` fixture. Loading it imports pytest and the core
API only."""

from __future__ import annotations

import pytest

from ..api import STATE, add_options, read_options, without_core
from ..config import ConfigError
from ..native import NativeOptions
from .fixtures import OPTIONS_KEY, llmperf_profile
from .options import GROUP, OPTIONS, parse

__all__ = ["llmperf_profile"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, *GROUP, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the core's: the session (and its native options) is there
def pytest_configure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)  # None under -p no:llmperf (the core off)
    without_core(config)  # then: the llmperf marker registered
    native = (state.native if state is not None else None) or NativeOptions()
    try:
        config.stash[OPTIONS_KEY] = parse(read_options(config, OPTIONS), native.cc, native.cache_dir)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    without_core(config, items)  # the core off (-p no:llmperf): the benchmark tests skip, saying why
