"""The llama2.c feature as a pytest plugin (entry point ``llmperf-llama2c``; ``-p no:llmperf-llama2c``
switches it off): its options in their own ``--help`` group, parsed once at configure time, and
the ``llama2c`` fixture. Loading it imports pytest and the core API only."""

from __future__ import annotations

import pytest

from ..api import STATE, add_options, parse_options, session, without_core
from .fixtures import OPTIONS_KEY, llama2c, llama2c_session
from .options import GROUP, OPTIONS, REF_AUTO, REF_OFF, parse

__all__ = ["llama2c"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, *GROUP, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the core's: the session is there
def pytest_configure(config: pytest.Config) -> None:
    options = parse_options(config, OPTIONS, parse)
    config.stash[OPTIONS_KEY] = options
    if STATE not in config.stash:  # the core is switched off (-p no:llmperf): nothing to bench for
        without_core(config)
        return
    if options.src is not None:
        from .. import gitinfo

        # the checkout under test, for the history: its commit, or None when it is not a git checkout
        found = gitinfo.commit_of(options.src)
        session(config).sources["llama2c"] = {"path": str(options.src),
                                              **(found or {"commit": None, "dirty": False})}
    if options.src is not None or options.ref not in (REF_AUTO, REF_OFF):
        # a checkout without run.c, and a --llmperf-llama2c-ref that cannot be used, are usage errors
        # now, not in the first test
        llama2c_session(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    without_core(config, items)  # the core off (-p no:llmperf): the benchmark tests skip, saying why
