"""Strict JSON for the files the plugin keeps (baselines, node-info): no NaN, no Infinity, no
number out of float range, no integer of more than 20 digits, and errors that say where. No pytest.

Python's json module reads ``NaN``, ``Infinity`` and ``1e400`` (as inf) and any integer; the
files we write never hold them, so a file that does was edited by hand or damaged, and is refused
before any of its numbers can reach the statistics (where NaN compares as "ok" with anything)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import OneLine

MAX_INT_DIGITS = 20  # above 1e18 a number cannot be a sample; int() refuses 4300 digits anyway
_PARTIAL_TOKEN = re.compile(r"[A-Za-z0-9.+\-]{0,40}")  # what is left when a file is cut inside a token

Location = tuple[str | int, ...]  # keys and list indices from the top of a document to one value


class StrictJSONError(OneLine, ValueError):
    """Text that is not strict JSON. ``problem`` reads after the file's name ("is truncated JSON
    (...)", "holds NaN at ..."); ``location`` is the path of keys and indices to a bad number (empty
    for a syntax error); ``kind`` is ``truncated``, ``corrupt`` or ``number``."""

    def __init__(self, problem: str, kind: str, location: Location = ()) -> None:
        super().__init__(problem)
        self.problem = str(self)
        self.kind = kind
        self.location = location


class _Bad:
    """Stands in for a number the file must not hold, until its place is known."""

    def __init__(self, text: str) -> None:
        self.text = text


def _float(text: str) -> float | _Bad:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"the number {text[:30]}, out of float range")


def _int(text: str) -> int | _Bad:
    digits = len(text.lstrip("-"))
    return _Bad(f"a {digits}-digit integer, out of range") if digits > MAX_INT_DIGITS else int(text)


def _find_bad(data: object) -> tuple[Location, _Bad] | None:
    """The first stand-in in document order, with its location."""
    stack: list[tuple[Location, object]] = [((), data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _Bad):
            return where, value
        if isinstance(value, dict):
            stack.extend(reversed([((*where, k), v) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([((*where, i), v) for i, v in enumerate(value)]))
    return None


def describe_location(location: Location) -> str:
    """``("tests", "t", "samples", 0)`` -> ``tests.'t'.samples[0]``-like text: keys quoted when they
    are not plain names."""
    out = ""
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) else repr(part)
            out += ("." if out else "") + name
    return out or "the top level"


def loads(text: str) -> Any:
    """Parse ``text``; :class:`StrictJSONError` for anything that is not strict JSON."""
    if not text.strip():
        raise StrictJSONError("is truncated JSON (the file is empty)", "truncated")
    try:
        data = json.loads(text, parse_constant=_Bad, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        # cut short: the parser ran off the end, or stopped on the last, unfinished token (a
        # file cut inside "true" or a number); anything else is corrupt (a merge conflict)
        rest = text[exc.pos:].strip()
        cut = exc.msg.startswith("Unterminated string") or _PARTIAL_TOKEN.fullmatch(rest) is not None
        kind = "truncated" if cut else "corrupt"
        raise StrictJSONError(f"is {kind} JSON ({exc.msg.removesuffix(' at')} at line {exc.lineno} "
                              f"column {exc.colno})", kind) from None
    except RecursionError:
        raise StrictJSONError("is corrupt JSON (nested too deeply)", "corrupt") from None
    bad = _find_bad(data)
    if bad is not None:
        where, value = bad
        raise StrictJSONError(f"holds {value.text} at {describe_location(where)}, which is not a number it can hold",
                              "number", where)
    return data
