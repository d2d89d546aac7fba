"""The PyTorch feature as a pytest plugin (entry point ``llmperf-torch``; ``-p no:llmperf-torch``
switches it off): its options in their own ``--help`` group, parsed once at configure time, and the
``torch_device``, ``torch_lm`` and ``torch_decode`` fixtures. Loading it imports pytest and the core
API only, never torch."""

from __future__ import annotations

import pytest

from ..api import STATE, add_options, parse_options, without_core
from ..config import ConfigError
from .fixtures import torch_decode, torch_device, torch_lm
from .options import GROUP, OPTIONS, check_roofline_fits, parse
from .session import OPTIONS_KEY

__all__ = ["torch_decode", "torch_device", "torch_lm"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, *GROUP, OPTIONS)


@pytest.hookimpl(trylast=True)  # after the core's: the session is there
def pytest_configure(config: pytest.Config) -> None:
    opts = config.stash[OPTIONS_KEY] = parse_options(config, OPTIONS, parse)
    state = config.stash.get(STATE, None)
    if state is not None:
        try:
            check_roofline_fits(opts, state.config.roofline_device)
        except ConfigError as exc:
            raise pytest.UsageError(f"llmperf: {exc}") from None
    without_core(config)  # the core off (-p no:llmperf): the llmperf marker registered


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    without_core(config, items)  # the core off (-p no:llmperf): the benchmark tests skip, saying why
