"""Property-based fuzzing of the readers in pytest_llmperf.torch_models that take a file.

* ``llama.load_llama2c``: a llama2.c checkpoint. Only :class:`llama.CheckpointError` (a
  ValueError with a one-line message) may escape, and a model that loads has the header's shape.
* ``profiling.load_profile_json``: a saved torch profile. Only :class:`profiling.ProfileFileError`
  may escape, and a profile that loads can be summarised (what the plugin does with it).
* ``device.parse_status_kb`` / ``parse_vmhwm``: ``/proc/self/status`` and ``/proc/meminfo`` text
  (the CPU peak-memory and free-memory readers). They never raise; a size is None or a
  non-negative int below 2**63.

Inputs are real files (a checkpoint written by llama2c.models, a profile saved by
ProfileResult.save, the recorded /proc files in tests/data) with mutations: header fields set to
0, -1, 2**31 - 1 and the like (with the body resized to match, so that the loader goes past the
size check), truncation, appended and overwritten bytes, NaN and infinity, numbers replaced by
``nan``, ``inf``, ``-1`` or 400-digit integers, and Unicode.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import tempfile
from pathlib import Path

import pytest
from fuzzing import fuzz, only_raises
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from pytest_llmperf.llama2c import models as l2c  # noqa: E402
from pytest_llmperf.torch_models import device as dev  # noqa: E402
from pytest_llmperf.torch_models import llama, profiling  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """One torch thread for this module (see conftest.one_torch_thread)."""


# -- llama2.c checkpoints ----------------------------------------------------------------------------

SHAPES = [
    l2c.ModelConfig(dim=8, hidden_dim=16, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=16, seq_len=4),
    l2c.ModelConfig(dim=16, hidden_dim=24, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=20, seq_len=8,
                    shared_classifier=False),
]
FIELD_VALUES = [-(2**31), -1, 0, 1, 2, 3, 4, 5, 7, 8, 16, 17, 64, 2**16, 2**16 + 1, 2**20, 2**22 + 1,
                2**31 - 1, 0x616B3432]
NOT_FINITE = [struct.pack("<f", v) for v in (math.nan, math.inf, -math.inf)] + [b"\xff\xff\xff\xff"]
MAX_RESIZED = 1 << 20  # a header may be made consistent with its file up to this size


def _checkpoint_bytes(shape: l2c.ModelConfig) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.bin"
        l2c.write_checkpoint(path, shape, seed=3)
        return path.read_bytes()


@functools.cache  # made at the first draw, not when the module is collected
def _bases() -> list[tuple[l2c.ModelConfig, bytes]]:
    return [(shape, _checkpoint_bytes(shape)) for shape in SHAPES]


def _implied_size(fields: tuple[int, ...]) -> int | None:
    """The file size a legacy header implies, when its fields make a model."""
    vocab = abs(fields[5])
    if min(fields[:5] + (vocab, fields[6])) <= 0:
        return None
    shape = l2c.ModelConfig(*fields[:5], vocab, fields[6], shared_classifier=fields[5] > 0)
    if shape.dim % shape.n_heads or shape.n_heads % shape.n_kv_heads:
        return None
    return shape.file_size()


@st.composite
def checkpoints(draw) -> bytes:
    _, data = draw(st.sampled_from(_bases()))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["field", "field_resized", "truncate", "append", "overwrite", "not_finite",
                                   "magic", "empty"]))
        if op in ("field", "field_resized") and len(data) >= 28:
            fields = list(struct.unpack_from("<7i", data, 0))
            i = draw(st.integers(0, 6))
            fields[i] = draw(st.one_of(st.sampled_from(FIELD_VALUES), st.just(fields[i] + 1), st.just(fields[i] - 1),
                                       st.just(-fields[i])))
            fields[i] = max(-(2**31), min(2**31 - 1, fields[i]))
            struct.pack_into("<7i", data, 0, *fields)
            size = _implied_size(tuple(fields)) if op == "field_resized" else None
            if size is not None and size <= MAX_RESIZED:
                data = data[:size] if size <= len(data) else data + bytes(size - len(data))
        elif op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "overwrite" and data:
            at = draw(st.integers(0, len(data) - 1))
            patch = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(patch)] = patch
        elif op == "not_finite" and len(data) >= 32:
            at = 28 + 4 * draw(st.integers(0, (len(data) - 32) // 4))
            data[at:at + 4] = draw(st.sampled_from(NOT_FINITE))
        elif op == "magic" and len(data) >= 8:
            data[0:8] = struct.pack("<Ii", 0x616B3432, draw(st.sampled_from([0, 1, 2, 3, -1])))
        elif op == "empty":
            data = bytearray()
    return bytes(data)


EXPECTED = [None, llama.config_from_llama2c("small", SHAPES[0]), llama.config_from_llama2c("x", SHAPES[1]),
            llama.get_decode_config("tiny")]


@fuzz(checkpoints(), st.sampled_from(EXPECTED), st.sampled_from(["model.bin", "mo del\u00e9.bin", "m\nodel.bin"]))
def test_load_llama2c_raises_only_checkpoint_error(data, expected, filename):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        model = only_raises(llama.CheckpointError, llama.load_llama2c, path, expected=expected)
    if model is None:
        return
    fields = struct.unpack_from("<7i", data, 0)
    cfg = model.config
    assert (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size,
            cfg.max_seq_len) == fields[:5] + (abs(fields[5]), fields[6])
    assert cfg.tied_classifier is (fields[5] > 0)
    assert expected is None or expected.same_shape(cfg)


@pytest.mark.parametrize("what", ["directory", "missing"])
def test_load_llama2c_of_a_path_that_is_no_file(tmp_path, what):
    path = tmp_path / "model.bin"
    if what == "directory":
        path.mkdir()
    with pytest.raises(llama.CheckpointError) as info:
        llama.load_llama2c(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# -- saved torch profiles ------------------------------------------------------------------------------

@functools.cache  # profiled at the first use, not when the module is collected
def _profile_text() -> str:
    a = torch.ones(16, 16)
    result = profiling.profile_steps(lambda: torch.mm(a, a), "cpu", steps=1, warmup=0)
    return json.dumps(result.to_json())


def _profile() -> dict:
    """A fresh copy of a profile saved by ProfileResult (a 16 x 16 matmul on the CPU)."""
    return json.loads(_profile_text())
ODD_JSON = [None, True, False, 0, -1, 1.5, 10**400, 1e308, math.nan, math.inf, -math.inf, "", "x", "nan", "12",
            [], {}, [1, 2], {"name": 1}, "\u212a\x00\ud800"]


def _odd_json():
    leaf = st.one_of(st.sampled_from(ODD_JSON), st.integers(), st.floats(), st.text(max_size=8))
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=6)


ODD_JSON_VALUES = _odd_json()


@st.composite
def profiles(draw) -> str | bytes:
    data = _profile()
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["top", "row", "row_key", "drop", "rows"]))
        if op == "top":
            data[draw(st.sampled_from(sorted(data)))] = draw(ODD_JSON_VALUES)
        elif op == "drop" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif op == "rows":
            data["rows"] = draw(st.lists(ODD_JSON_VALUES, max_size=3))
        elif isinstance(data.get("rows"), list) and data["rows"]:
            i = draw(st.integers(0, len(data["rows"]) - 1))
            if op == "row" or not isinstance(data["rows"][i], dict):
                data["rows"][i] = draw(ODD_JSON_VALUES)
            else:
                key = draw(st.sampled_from(sorted(data["rows"][i]) + ["extra"]))
                data["rows"][i][key] = draw(ODD_JSON_VALUES)
    try:
        text = json.dumps(data, indent=1)
    except ValueError:  # an int too long to write: write a long one by hand
        text = _profile_text().replace('"steps": 1', '"steps": ' + "9" * 5000)
    form = draw(st.sampled_from(["text", "cut", "bytes"]))
    if form == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if form == "bytes":
        raw = text.encode("utf-8", "surrogatepass")
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return text


@fuzz(profiles())
def test_load_profile_json_raises_only_profile_file_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "torch-profile.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        result = only_raises(profiling.ProfileFileError, profiling.load_profile_json, path)
    if result is None:
        return
    # what the plugin does with a profile
    assert isinstance(result.summary_line(3), str)
    assert isinstance(result.header(), str)
    for row in result.top(5):
        assert math.isfinite(row["percent"])
    json.dumps(result.to_json())


def test_load_profile_json_round_trips_and_refuses_a_missing_file(tmp_path):
    result = profiling.load_profile_json(_write(tmp_path / "p.json", _profile_text()))
    assert result.to_json() == _profile()
    with pytest.raises(profiling.ProfileFileError, match="no-such.json"):
        profiling.load_profile_json(tmp_path / "no-such.json")
    assert issubclass(profiling.ProfileFileError, ValueError)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- /proc/self/status and /proc/meminfo ---------------------------------------------------------------

STATUS = [p.read_text() for p in sorted((DATA / "proc_status").glob("*.txt"))]
MEMINFO = [p.read_text() for p in sorted((DATA / "meminfo").glob("*.txt"))]
ODD_NUMBERS = ["nan", "inf", "-1", "0", "9" * 400, "99999999999", "\u0663\u0662", "\uff13\uff12", "1_000", "",
               "0x10", "1e3"]
ODD_UNITS = ["kB", "KB", "kb", "mB", "GB", "B", "b", "\u212aB", "kB kB", "", " ", "\t"]
_LINE = re.compile(r"^(\w+):(\s*)(\S+)(.*)$", re.MULTILINE)


@st.composite
def proc_texts(draw) -> str:
    lines = draw(st.sampled_from(STATUS + MEMINFO)).split("\n")
    fields = [i for i, line in enumerate(lines) if line.startswith(("VmHWM:", "VmRSS:", "MemAvailable:", "MemTotal:"))]
    for _ in range(draw(st.integers(0, 6))):
        # half of the edits on the lines the readers look for
        i = draw(st.one_of(st.integers(0, len(lines) - 1), st.sampled_from(fields or [0])))
        i = min(i, len(lines) - 1)
        op = draw(st.sampled_from(["number", "unit", "colon", "truncate", "insert"]))
        m = _LINE.match(lines[i])
        if op == "number" and m:
            lines[i] = f"{m.group(1)}:{m.group(2)}{draw(st.sampled_from(ODD_NUMBERS))}{m.group(4)}"
        elif op == "unit" and m:
            lines[i] = f"{m.group(1)}:{m.group(2)}{m.group(3)} {draw(st.sampled_from(ODD_UNITS))}"
        elif op == "colon":
            lines[i] = lines[i].replace(":", "", 1)
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            lines.insert(i, draw(st.text(max_size=30)))
    return "\n".join(lines)


@fuzz(proc_texts(), st.sampled_from(["VmHWM", "VmRSS", "MemAvailable", "MemTotal", "Vm", "", "VmHWM:", "(.*)"]))
def test_parse_status_kb_never_raises(text, field):
    for value in (dev.parse_status_kb(text, field), dev.parse_vmhwm(text)):
        assert value is None or (type(value) is int and 0 <= value < 2**63), value


def test_parse_status_kb_reads_the_recorded_files():
    assert dev.parse_vmhwm(STATUS[0]) == 13572 * 1024
    available = next(line.split()[1] for line in MEMINFO[0].splitlines() if line.startswith("MemAvailable:"))
    assert dev.parse_status_kb(MEMINFO[0], "MemAvailable") == int(available) * 1024


# -- what the fuzzing found, kept as plain cases -------------------------------------------------------

def test_checkpoint_error_of_a_file_name_with_a_newline_is_one_line(tmp_path):
    path = tmp_path / "m\nodel.bin"
    path.write_bytes(b"")
    with pytest.raises(llama.CheckpointError) as info:
        llama.load_llama2c(path)
    message = str(info.value)
    # one line that still names the file: the newline shown escaped (errors.OneLine) or in a repr
    assert "\n" not in message and "m\\nodel.bin" in message and "empty file" in message


@pytest.mark.parametrize("change, what", [
    ({"rows": [1]}, "row 0 is 1, not an object"),  # was TypeError
    ({"self_cpu_total_us": None}, "self_cpu_total_us is None"),  # was TypeError
    ({"steps": "1e400"}, "steps is '1e400'"),
    ({"rows": [{"name": "a", "self_cpu_us": "5"}]}, "row 0 self_cpu_us"),  # loaded, then top() raised TypeError
    ({"rows": [{"name": "a", "calls": 10**400}]}, "row 0 calls is an integer of 1329 bits"),  # OverflowError
    ({"extra": [1]}, "extra is [1]"),  # was TypeError
])
def test_load_profile_json_refuses_what_fuzzing_found(tmp_path, change, what):
    path = _write(tmp_path / "p.json", json.dumps({**_profile(), **change}))
    with pytest.raises(profiling.ProfileFileError, match=re.escape(what)):
        profiling.load_profile_json(path)


def test_load_profile_json_refuses_an_infinite_count(tmp_path):
    path = _write(tmp_path / "p.json", _profile_text().replace('"steps": 1', '"steps": 1e400'))
    with pytest.raises(profiling.ProfileFileError, match="steps is inf"):  # was OverflowError
        profiling.load_profile_json(path)


def test_parse_status_kb_refuses_a_400_digit_size():
    assert dev.parse_vmhwm("VmHWM:\t" + "9" * 400 + " kB\n") is None  # was a 400-digit "size"
    assert dev.parse_vmhwm("VmHWM:\t\u0663\u0662 kB\n") is None  # Arabic-Indic digits
