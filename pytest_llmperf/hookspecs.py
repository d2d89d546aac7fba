"""Hooks a user's conftest.py (or another plugin) can implement to extend pytest-llmperf."""

from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_llmperf_node_name(config: pytest.Config, default: str) -> str | None:
    """Return the node name to use instead of ``default`` (the automatic one), or None to keep it.

    Not called when the user gave ``--llmperf-node``, ``LLMPERF_NODE`` or ``llmperf_node``.
    The first non-None result wins.
    """


@pytest.hookspec
def pytest_llmperf_fingerprint(config: pytest.Config, info: dict[str, object], fields: dict[str, object]) -> None:
    """Change the machine fingerprint in place before it is hashed and stored.

    ``info`` is everything hardware detection found (read it, e.g. to add a field it has);
    ``fields`` is the stable subset that is compared: add keys (a firmware version, a board
    revision) or delete keys (``fields.pop("compiler", None)``) as your fleet needs.
    """


@pytest.hookspec(firstresult=True)
def pytest_llmperf_bandwidth(config: pytest.Config) -> dict[str, object] | None:
    """Return the node's memory read bandwidth entry instead of measuring it: a dict with at least
    ``read_GBps`` (a positive number, GB/s) and optionally ``method``, ``llc_bytes``; or None to
    let the plugin measure it (once per node, with the bandwidth probe, which needs a C
    compiler). For a board without a compiler, or a test. The first non-None result wins."""


@pytest.hookspec(firstresult=True)
def pytest_llmperf_reference_commit(config: pytest.Config, nodeid: str, source: str) -> str | None:
    """The commit of the source checkout ``source`` (``"llama2c"``: the ``--llmperf-llama2c-src``
    checkout) that tonight's build of test ``nodeid`` is paired against: the commit of the run that
    starts this node's history reference (the run that saved the baseline, or the run an accept
    names), else the newest accepted and decided run with this machine's fingerprint, or None when
    the history has none (plugin_history.reference_commit). The core answers it from the history;
    a feature asks it to build the reference of a paired run."""
