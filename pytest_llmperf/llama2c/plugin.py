"""The llama2.c feature as a pytest plugin (entry point ``llmperf-llama2c``; ``-p no:llmperf-llama2c``
switches it off): its options in their own ``--help`` group, parsed once at configure time, and
the ``llama2c`` fixture. Loading it imports pytest and the core API only."""

from __future__ import annotations

import pytest

from ..api import add_options, parse_options
from .fixtures import OPTIONS_KEY, llama2c, llama2c_session
from .options import GROUP, OPTIONS, parse

__all__ = ["llama2c"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, *GROUP, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the core's: the session is there
def pytest_configure(config: pytest.Config) -> None:
    options = parse_options(config, OPTIONS, parse)
    config.stash[OPTIONS_KEY] = options
    if options.src is not None:
        llama2c_session(config)  # a checkout without run.c is a usage error now, not in the first test
