"""The one-line rule of the plugin's errors, shared by the core and the features. No pytest."""

from __future__ import annotations


class OneLine(Exception):
    """Base, listed before the built-in one (``class E(OneLine, ValueError)``), of an error class
    whose message is one line: a newline that comes in with a file name, a test id or a tool's
    output is shown escaped (``\\n``), so the message stays one line that still tells the names
    apart. An Exception, so that its ``super().__init__`` is typed; the subclasses' MRO is the
    one they had when it was a plain mixin."""

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text, *args)


def short_repr(value: object, limit: int = 40) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters (a 400-digit number in a
    message helps nobody)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
