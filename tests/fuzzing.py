"""Property-based fuzzing for the parsers and loaders, bounded for CI.

``@fuzz(strategies...)`` turns a property into two tests: one with a fixed seed (the same
examples on every run, so a failure found once is found again) and one with a random seed (new
examples every run; Hypothesis prints the failing example and a ``@reproduce_failure`` blob).
``LLMPERF_FUZZ_EXAMPLES`` sets the number of examples per test (default 200).

The property of every parser and loader is the same: for any input, it returns or raises the
module's own error class, and nothing else escapes. ``only_raises(ErrorClass, fn, *args)`` checks
that and returns fn's result (or None when it raised the allowed error).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings

FIXED_SEED = 20261201
EXAMPLES = int(os.environ.get("LLMPERF_FUZZ_EXAMPLES", "200"))


def fuzz(*strategies: Any, max_examples: int | None = None, **named: Any) -> Callable:
    def decorate(fn: Callable) -> Callable:
        conf = settings(max_examples=max_examples or EXAMPLES, deadline=None, database=None, print_blob=True,
                        suppress_health_check=list(HealthCheck))
        fixed = seed(FIXED_SEED)(conf(given(*strategies, **named)(fn)))
        randomised = conf(given(*strategies, **named)(fn))

        @pytest.mark.parametrize("fuzz_seed", ["fixed-seed", "random-seed"])
        def test(fuzz_seed: str) -> None:
            (fixed if fuzz_seed == "fixed-seed" else randomised)()

        test.__name__ = fn.__name__
        test.__qualname__ = fn.__qualname__
        test.__module__ = fn.__module__
        test.__doc__ = fn.__doc__
        return test

    return decorate


def only_raises(error: type[BaseException] | tuple[type[BaseException], ...], fn: Callable, *args: Any,
                **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; the allowed ``error`` is swallowed (returns None), anything else
    propagates and fails the property. The allowed error's message must be one non-empty line."""
    try:
        return fn(*args, **kwargs)
    except error as exc:
        message = str(exc)
        assert message and "\n" not in message, f"{type(exc).__name__} message is not one line: {message!r}"
        return None
