"""The live progress line of a running benchmark (glue): while a test measures, one line with the
test, the phase and round, the current median, its precision against the stop rule's target and
the time left of the budget; when the measurement ends, its last state stays as a record.

``--llmperf-progress auto|on|off`` (ini ``llmperf_progress``, env ``LLMPERF_PROGRESS``):

- ``auto`` (the default): shown when pytest does not capture output (``-s``, ``--capture=no``),
  so that a long benchmark on a board or in a SLURM job's log is not silent;
- ``on``: shown with capture too (written around it, as pytest's live logging does);
- ``off``: never.

On a terminal the line is rewritten in place (at most a few times a second); into a file or a
pipe (a CI or SLURM log) a line is written every PIPE_EVERY seconds of a measurement, so a short
one prints nothing and a long one a line now and then. Never on an xdist worker (no terminal).
The figures come from measure.listeners (the core calls them after each round); the same figures
go to the ``pytest_llmperf.measure`` logger at DEBUG (``--log-cli-level=DEBUG``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .api import option_value
from .config import ConfigError

MODES = ("auto", "on", "off")
PIPE_EVERY = 10.0  # seconds between two lines into a file or a pipe
TTY_EVERY = 0.25  # seconds between two redraws on a terminal
KEY = pytest.StashKey["LiveLine | None"]()


def mode(config: pytest.Config) -> str:
    """The option's value, checked (a ConfigError names it and the choices)."""
    value, source = option_value(config, "llmperf_progress", "LLMPERF_PROGRESS")
    if value is None:
        return "auto"
    text = str(value).strip().lower()
    if text not in MODES:
        raise ConfigError(f"{source}: {value!r} is not one of {', '.join(MODES)}")
    return text


def wanted(config: pytest.Config) -> bool:
    """Whether this session shows the live line (see the module docstring)."""
    chosen = mode(config)
    if chosen == "off" or hasattr(config, "workerinput"):
        return False
    return chosen == "on" or config.getoption("capture", "fd") == "no"


def line_text(test: str, figures: dict[str, Any], width: int | None = None) -> str:
    """The line for one round's figures (pure: the tests check it); with ``width``, the test id is
    cut in the middle so that the figures fit."""
    from .compare import fmt_value
    from .report_terminal import truncate_middle

    precision = figures["precision"]
    median = fmt_value(figures["median"])
    prec = f" \u00b1{100 * precision:.1f}%" if precision != float("inf") else ""
    if figures["phase"] == "done":
        tail = f": {figures['round']} rounds, median {median}{prec}, stopped: {figures.get('stopped', '?')}"
    elif figures["phase"] == "warm-up":
        tail = f": warm-up round {figures['round']}, {median}, {figures['left']:.0f} s left"
    else:
        tail = (f": round {figures['round']}, median {median}{prec} (target \u00b1{100 * figures['target']:.1f}%), "
                f"{figures['left']:.0f} s left")
    head = "llmperf: "
    if width is None or len(head) + len(test) + len(tail) <= width:
        return head + test + tail
    # too wide: the prefix goes first, then the test id is cut in the middle, then the line's end
    room = width - len(tail)
    test = truncate_middle(test, max(12, room))
    line = test + tail
    return line if len(line) <= width else line[: width - 1] + "\u2026"


class LiveLine:
    """One session's live line: ``begin(test)``/``end()`` around a test's call, ``__call__`` as a
    listener of measure."""

    def __init__(self, reporter: Any, capture: Any, tty: bool, clock: Callable[[], float] = time.monotonic):
        self.reporter = reporter
        self.capture = capture
        self.tty = tty
        self.clock = clock
        self.test: str | None = None
        self.drawn = 0  # columns of the line on screen (tty), 0 when none is open
        self.last = -float("inf")
        self.started = 0.0

    @contextlib.contextmanager
    def _out(self) -> Iterator[Any]:
        ctx = self.capture.global_and_fixture_disabled() if self.capture is not None else contextlib.nullcontext()
        with ctx:
            yield self.reporter

    def begin(self, test: str) -> None:
        self.test = test
        self.drawn = 0
        self.last = -float("inf")
        self.started = self.clock()

    def __call__(self, figures: dict[str, Any]) -> None:
        if self.test is None:
            return
        now = self.clock()
        done = figures.get("phase") == "done"
        if self.tty:
            if not done and now - self.last < TTY_EVERY:
                return
        elif not done and (now - self.started < PIPE_EVERY or now - self.last < PIPE_EVERY):
            return
        elif done and self.last == -float("inf"):
            return  # into a log: a measurement that printed no line does not need its end either
        self.last = now
        with self._out() as tr:
            width = max(20, int(getattr(getattr(tr, "_tw", None), "fullwidth", 80) or 80) - 1)
            text = line_text(self.test, figures, width)
            if self.drawn == 0:
                tr.ensure_newline()
            if self.tty:
                pad = " " * max(0, self.drawn - len(text))
                tr.write("\r" + text + pad, flush=True)
                self.drawn = len(text)
                if done:
                    tr.write("\n")
                    self.drawn = 0
            else:
                tr.write_line(text)
                self.drawn = 1  # a line was written in this test

    def end(self) -> None:
        if self.tty and self.drawn:
            with self._out() as tr:
                tr.write("\n")  # a measurement that raised: keep what it showed, end the line
        self.test = None
        self.drawn = 0


def configure(config: pytest.Config) -> None:
    """At configure time: check the option, and mark the session as showing the line (the terminal
    reporter is looked up at the first test: it registers after this plugin's configure)."""
    if wanted(config):
        config.stash[KEY] = None


def _live(config: pytest.Config) -> LiveLine | None:
    if KEY not in config.stash:
        return None
    live = config.stash[KEY]
    if live is None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:  # -p no:terminal
            del config.stash[KEY]
            return None
        capture = config.pluginmanager.get_plugin("capturemanager")
        live = config.stash[KEY] = LiveLine(reporter, capture, bool(getattr(reporter, "isatty", False)))
    return live


@contextlib.contextmanager
def around_test(config: pytest.Config, nodeid: str) -> Iterator[None]:
    """Listen to measure while the test's call runs (nothing when the session shows no line)."""
    live = _live(config)
    if live is None:
        yield
        return
    from . import measure

    live.begin(nodeid)
    measure.listeners.append(live)
    try:
        yield
    finally:
        measure.listeners.remove(live)
        live.end()
