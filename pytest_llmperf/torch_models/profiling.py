"""The PyTorch profiler around a few steps of a workload, and its results in a plain form. No pytest.

:func:`profile_steps` runs some warm-up steps, then profiles a chosen number of steps with
``torch.profiler`` (CPU activity, plus CUDA activity on a CUDA device) and turns
``key_averages()`` into a :class:`ProfileResult`: one dict per operator, the totals, and the
profiler's own table. The result can be saved as text and JSON and loaded back.

Times are microseconds, as the profiler reports them. "device" columns are the accelerator's
(CUDA) times; on the CPU they are 0. torch 2.x renamed the ``cuda_time`` attributes of profiler
events to ``device_time``; both spellings are read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pytest_llmperf.fileutil import atomic_write

from .devsel import _as_device
from .timing import synchronize

__all__ = ["ProfileFileError", "ProfileResult", "load_profile_json", "profile_steps"]

JSON_FORMAT = 1
TABLE_ROW_LIMIT = 30


def _attr(obj: Any, *names: str, default: Any = 0) -> Any:
    """The first of ``names`` that ``obj`` has (and that does not fail to compute)."""
    for name in names:
        try:
            value = getattr(obj, name)
        except Exception:
            continue
        if value is not None:
            return value
    return default


def _on_device(evt: Any) -> bool:
    """Whether a profiler row is work that ran on the accelerator (a kernel, a memcpy) rather
    than an operator on the host."""
    kind = getattr(evt, "device_type", None)
    name = getattr(kind, "name", None) or str(kind)
    return name.split(".")[-1].upper() not in ("CPU", "NONE")


@dataclass
class ProfileResult:
    """What :func:`profile_steps` found.

    ``rows`` has one dict per operator or kernel, with ``name``, ``calls``, ``self_cpu_us``,
    ``cpu_total_us``, ``self_device_us``, ``device_total_us`` (0 on the CPU), ``on_device``
    (True for rows of kernels and copies that ran on the accelerator; an operator's
    ``self_device_us`` already holds the time of the kernels it launched) and the memory
    columns ``self_cpu_memory_bytes`` / ``self_device_memory_bytes`` (0 unless memory was
    profiled). The totals follow the profiler's own table: self CPU time over all rows, self
    device time over the on-device rows."""

    rows: list[dict]
    self_cpu_total_us: float
    self_device_total_us: float
    device_type: str
    steps: int
    table: str
    device: str = ""
    warmup: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def uses_device_time(self) -> bool:
        """True when rankings are by accelerator time (a CUDA profile that recorded kernels)."""
        return self.device_type == "cuda" and self.self_device_total_us > 0

    @property
    def time_label(self) -> str:
        return "self CUDA time" if self.uses_device_time else "self CPU time"

    def top(self, n: int = 5) -> list[dict]:
        """The ``n`` operators that took the most time, each row with a ``percent`` of the total.

        On a GPU the ranking is by self device time among host operators (whose self device
        time is that of the kernels they launched, so kernel rows would count it twice);
        otherwise by self CPU time over all rows."""
        if self.uses_device_time:
            key, total = "self_device_us", self.self_device_total_us
            candidates = [r for r in self.rows if not r.get("on_device")]
        else:
            key, total = "self_cpu_us", self.self_cpu_total_us
            candidates = list(self.rows)
        ranked = sorted((r for r in candidates if r.get(key, 0) > 0), key=lambda r: r[key], reverse=True)
        out = []
        for row in ranked[: max(0, n)]:
            item = dict(row)
            item["percent"] = 100.0 * row[key] / total if total > 0 else 0.0
            out.append(item)
        return out

    def summary_line(self, n: int = 3) -> str:
        """E.g. "aten::addmm 41.2%, aten::bmm 20.3%, aten::_softmax 9.1% of self CPU time"."""
        top = self.top(n)
        if not top:
            return f"no operators recorded ({self.time_label})"
        parts = ", ".join(f"{row['name']} {row['percent']:.1f}%" for row in top)
        return f"{parts} of {self.time_label}"

    def header(self) -> str:
        where = self.device or self.device_type
        text = (f"torch profiler: device {where}, {self.steps} profiled step(s) after {self.warmup} warm-up; "
                f"self CPU total {self.self_cpu_total_us:.0f} us")
        if self.device_type == "cuda":
            text += f", self CUDA total {self.self_device_total_us:.0f} us"
        return text

    def to_json(self) -> dict:
        data = {"format": JSON_FORMAT}
        data.update(asdict(self))
        return data

    def save(self, directory: Path, stem: str = "torch-profile") -> list[Path]:
        """Write ``<stem>.txt`` (a header line, then the profiler's table) and ``<stem>.json``
        (rows, totals and table) into ``directory``, each atomically; returns both paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        txt = directory / f"{stem}.txt"
        js = directory / f"{stem}.json"
        atomic_write(txt, self.header() + "\n\n" + self.table.rstrip("\n") + "\n")
        atomic_write(js, json.dumps(self.to_json(), indent=1) + "\n")
        return [txt, js]


class ProfileFileError(ValueError):
    """A saved profile that cannot be read back; one line naming the file and what is wrong."""


# the numeric columns of a row, which top() and summary_line() compare and divide
_ROW_TIMES = ("self_cpu_us", "cpu_total_us", "self_device_us", "device_total_us")
_ROW_COUNTS = ("calls", "self_cpu_memory_bytes", "self_device_memory_bytes")


def _number(value: Any, what: str, integer: bool = False) -> float | int:
    """``value`` when it is a finite JSON number of at most 64 bits (an int for ``integer``, as a
    float otherwise), else ProfileFileError."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, int) and not isinstance(value, bool):
        ok = ok and -(1 << 63) <= value < 1 << 63  # math.isfinite() of a longer int overflows
    elif ok:
        ok = math.isfinite(value)
    if isinstance(value, bool) or not ok:
        raise ProfileFileError(f"{what} is {_brief(value)}, not {'a 64-bit integer' if integer else 'a finite number'}")
    return value if integer else float(value)


def _brief(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"  # repr() refuses past 4300 digits
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _load_row(row: Any, index: int) -> dict:
    if not isinstance(row, dict):
        raise ProfileFileError(f"row {index} is {_brief(row)}, not an object")
    if not isinstance(row.get("name"), str):
        raise ProfileFileError(f"row {index} has no operator name")
    out = dict(row)
    for key in _ROW_TIMES:
        if key in out:
            out[key] = _number(out[key], f"row {index} {key}")
    for key in _ROW_COUNTS:
        if key in out:
            out[key] = _number(out[key], f"row {index} {key}", integer=True)
    if "on_device" in out and not isinstance(out["on_device"], bool):
        raise ProfileFileError(f"row {index} on_device is {_brief(out['on_device'])}, not true or false")
    return out


def load_profile_json(path: Path) -> ProfileResult:
    """Read back a ``<stem>.json`` written by :meth:`ProfileResult.save`.

    Raises :class:`ProfileFileError` (a ValueError), one line naming the file, for a file that
    cannot be read, is not JSON, or is not a saved profile: rows that are not objects with an
    operator name, times that are not finite numbers, counts that are not integers, strings that
    are not strings. What loads can be ranked and summarised."""
    shown = repr(str(path)) if not str(path).isprintable() else str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileFileError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileFileError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise ProfileFileError(f"{shown}: not JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ProfileFileError(f"{shown} is not a saved torch profile")
    try:
        extra = data.get("extra") or {}
        if not isinstance(extra, dict):
            raise ProfileFileError(f"extra is {_brief(extra)}, not an object")
        texts = {}
        for key, default in (("device_type", "cpu"), ("table", ""), ("device", "")):
            texts[key] = data.get(key, default)
            if not isinstance(texts[key], str):
                raise ProfileFileError(f"{key} is {_brief(texts[key])}, not a string")
        counts = {key: int(_number(data.get(key, 0), key, integer=True)) for key in ("steps", "warmup")}
        if min(counts.values()) < 0:
            raise ProfileFileError(
                f"steps and warmup must not be negative, got {counts['steps']} and {counts['warmup']}")
        return ProfileResult(
            rows=[_load_row(row, i) for i, row in enumerate(data["rows"])],
            self_cpu_total_us=_number(data.get("self_cpu_total_us", 0.0), "self_cpu_total_us"),
            self_device_total_us=_number(data.get("self_device_total_us", 0.0), "self_device_total_us"),
            device_type=texts["device_type"],
            steps=counts["steps"],
            table=texts["table"],
            device=texts["device"],
            warmup=counts["warmup"],
            extra=dict(extra),
        )
    except ProfileFileError as exc:
        raise ProfileFileError(f"{shown}: {exc}") from None


def _row(evt: Any) -> dict:
    return {
        "name": str(evt.key),
        "calls": int(evt.count),
        "self_cpu_us": float(_attr(evt, "self_cpu_time_total")),
        "cpu_total_us": float(_attr(evt, "cpu_time_total")),
        "self_device_us": float(_attr(evt, "self_device_time_total", "self_cuda_time_total")),
        "device_total_us": float(_attr(evt, "device_time_total", "cuda_time_total")),
        "on_device": _on_device(evt),
        "self_cpu_memory_bytes": int(_attr(evt, "self_cpu_memory_usage")),
        "self_device_memory_bytes": int(_attr(evt, "self_device_memory_usage", "self_cuda_memory_usage")),
    }


def _table(averages: Any, on_gpu: bool) -> str:
    keys = ("self_device_time_total", "self_cuda_time_total") if on_gpu else ("self_cpu_time_total",)
    for key in keys:
        try:
            return str(averages.table(sort_by=key, row_limit=TABLE_ROW_LIMIT))
        except (AttributeError, KeyError, ValueError, TypeError):
            continue
    return str(averages.table(row_limit=TABLE_ROW_LIMIT))


def profile_steps(
    step: Callable[[], object],
    device: torch.device | str,
    steps: int = 3,
    warmup: int = 1,
    record_shapes: bool = False,
    profile_memory: bool = False,
) -> ProfileResult:
    """Run ``warmup`` steps, then profile ``steps`` steps with ``torch.profiler``.

    The profiler records CPU activity, and CUDA activity when ``device`` is a CUDA device; the
    device is synchronised after the warm-up and again before the profiler stops, so exactly the
    profiled steps' kernels are in it. With ``record_shapes`` the table groups operators by input
    shape (the rows stay one per operator); with ``profile_memory`` the rows' memory columns are
    filled."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    if warmup < 0:
        raise ValueError(f"warmup must not be negative, not {warmup}")
    device = _as_device(device)
    on_gpu = device.type == "cuda"
    for _ in range(warmup):
        step()
    synchronize(device)

    activities = [torch.profiler.ProfilerActivity.CPU]
    if on_gpu:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(
        activities=activities, record_shapes=record_shapes, profile_memory=profile_memory
    ) as prof:
        for _ in range(steps):
            step()
        synchronize(device)

    averages = prof.key_averages()
    rows = [_row(evt) for evt in averages]
    self_cpu_total = sum(r["self_cpu_us"] for r in rows)
    device_rows = [r for r in rows if r["on_device"]]
    self_device_total = sum(r["self_device_us"] for r in device_rows)
    shown = prof.key_averages(group_by_input_shape=True) if record_shapes else averages
    table = _table(shown, on_gpu)
    return ProfileResult(
        rows=rows,
        self_cpu_total_us=self_cpu_total,
        self_device_total_us=self_device_total,
        device_type=device.type,
        steps=steps,
        table=table,
        device=str(device),
        warmup=warmup,
    )
