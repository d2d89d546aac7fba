"""Property-based fuzzing of every parser and reader in pytest_llmperf.hardware.

hardware.py has no error class of its own: its readers are best-effort detection that never
fails (unknown values are None), and ``parse_size`` raises ValueError, which its one caller
(``parse_cache_sizes``) turns into "unknown". So the properties are: nothing escapes (ValueError
from ``parse_size`` and ``validate_node_name``, with a one-line message), and every result has
the documented types. Sizes, counts and memory are None or positive, and small enough to be
written as JSON, since ``detect()`` output goes into node-info files and the fingerprint.

Inputs are the real formats (the recorded files in tests/data) with mutations: truncated lines,
missing colons, numbers replaced by ``nan``, ``inf``, ``-1``, 400-digit integers or Unicode
digits, huge sizes like ``99999999999 KB``, Unicode look-alikes of the unit letters, stray control
characters and random lines.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import sys
import tempfile
import types
from pathlib import Path

import pytest
from fuzzing import fuzz, only_raises
from hypothesis import strategies as st

from pytest_llmperf import hardware
from pytest_llmperf.hardware import caches as hw_caches
from pytest_llmperf.hardware import cpuinfo as hw_cpuinfo
from pytest_llmperf.hardware import darwin as hw_darwin
from pytest_llmperf.hardware import toolchain as hw_toolchain
from pytest_llmperf.hardware import torchfacts as hw_torchfacts

DATA = Path(__file__).parent / "data"
CPUINFO = [p.read_text() for p in sorted((DATA / "cpuinfo").glob("*.txt"))]
MEMINFO = [p.read_text() for p in sorted((DATA / "meminfo").glob("*.txt"))]
OS_RELEASE = [p.read_text() for p in sorted((DATA / "os-release").glob("*.txt"))]
SYSFS_CACHE = [json.loads(p.read_text())["tree"] for p in sorted((DATA / "sysfs_cache").glob("*.json"))]

# what replaces a number: the brief's list and the ways int() and regular expressions differ
ODD_NUMBERS = [
    "nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0", "0", "00", "+7", "1.5", "1e309", "9" * 400,
    "1" + "0" * 4400, "99999999999", "99999999999 KB", "0x" + "f" * 40, "0x", "0b101", "1_000",
    "\u0663\u0662",  # Arabic-Indic 32: \d and int() accept it
    "\uff13\uff12",  # fullwidth 32
    "\u216b",  # Roman numeral twelve (numeric, not a decimal digit)
    "\u00b2",  # superscript two (a digit to isdigit(), not to int())
    "", " ", "-",
]
# stray text: Unicode look-alikes of unit letters (KELVIN SIGN matches [K] under IGNORECASE),
# separators that str.splitlines() breaks on, NUL, BOM, quotes, the formats' own separators
ODD_TEXT = [
    "K", "k", "KB", "KiB", " kB", "M", "G", "T", "B", "iB", "\u212a", "\u212aB", "\u017f", "\u0131",
    "\x00", "\ufeff", "\u00e9", "\U0001f600", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028",
    ":", "::", " : ", "=", "==", "#", '"', "'", "\\", ",", "0x", "processor", "flags", "MemTotal:",
]
_NUMBER = re.compile(r"\d+")


def _pick(draw, items):
    return draw(st.sampled_from(items))


_OPS = st.sampled_from(["truncate", "colon", "number", "insert", "delete", "duplicate", "splice", "cut"])
_NEW_LINE = st.one_of(st.text(max_size=40), st.sampled_from(ODD_TEXT + ODD_NUMBERS),
                      st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(ODD_TEXT), st.text(max_size=20)))


@st.composite
def mutated_text(draw, bases: list[str], max_ops: int = 6) -> str:
    """One of ``bases`` with up to ``max_ops`` random edits."""
    lines = _pick(draw, bases).split("\n")
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(_OPS)
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if not lines:
            lines = [""]
        line = lines[i]
        if op == "truncate":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif op == "colon":
            lines[i] = line.replace(":", "", 1) if ":" in line else line.replace("=", "", 1)
        elif op == "number":
            found = list(_NUMBER.finditer(line))
            if found:
                m = found[draw(st.integers(0, len(found) - 1))]
                lines[i] = line[: m.start()] + _pick(draw, ODD_NUMBERS) + line[m.end():]
        elif op == "insert":
            lines.insert(i, draw(_NEW_LINE))
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "splice":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + _pick(draw, ODD_TEXT) + line[at:]
        else:  # cut the whole text somewhere
            text = "\n".join(lines)
            lines = text[: draw(st.integers(0, len(text)))].split("\n")
    return "\n".join(lines)


@functools.cache  # strategies are costly to build: one per recorded value
def _odd_value(base: str) -> st.SearchStrategy[str]:
    """A sysfs-like one-value file: as recorded, mutated, or something else entirely."""
    return st.one_of(st.just(base), mutated_text([base], max_ops=2), st.sampled_from(ODD_NUMBERS),
                     st.builds(lambda n, u: f"{n}{u}", st.sampled_from(ODD_NUMBERS), st.sampled_from(ODD_TEXT)),
                     st.text(max_size=12))


def _json_ok(value) -> None:
    """What detect() returns is written as JSON (node-info, the fingerprint): it must serialise
    (a Python int beyond 4300 digits does not)."""
    json.dumps(value, allow_nan=True)


def _size_ok(value) -> None:
    assert value is None or (type(value) is int and 0 < value < 2**63), value


# -- /proc/cpuinfo ---------------------------------------------------------------------------------

CPU_KEYS = {"kind", "cpu_model", "vendor", "isa", "uarch", "logical_cpus", "isa_extensions"}


def _check_cpu(cpu: dict) -> None:
    assert set(cpu) >= CPU_KEYS
    assert cpu["kind"] in ("x86", "riscv", "arm", None)
    assert isinstance(cpu["cpu_model"], str) and cpu["cpu_model"].strip(), cpu["cpu_model"]
    for key in ("vendor", "isa", "uarch"):
        assert cpu[key] is None or isinstance(cpu[key], str), (key, cpu[key])
    assert type(cpu["logical_cpus"]) is int and 0 <= cpu["logical_cpus"] < 2**31
    exts = cpu["isa_extensions"]
    assert isinstance(exts, list) and all(isinstance(e, str) and e for e in exts)
    assert exts == sorted(set(exts))
    for key in ("family", "model_number"):
        if key in cpu:
            assert cpu[key] is None or type(cpu[key]) is int
    _json_ok(cpu)


@fuzz(mutated_text(CPUINFO))
def test_parse_cpuinfo_never_raises_and_keeps_its_types(text):
    _check_cpu(hardware.parse_cpuinfo(text))


@fuzz(mutated_text(CPUINFO))
def test_cpuinfo_parsing_does_not_need_its_safety_net(text):
    """parse_cpuinfo catches everything and answers "unknown"; a mutated line must not get there,
    since one odd line would then turn a known CPU into "unknown" (and change the fingerprint)."""
    _check_cpu(hw_cpuinfo._parse_cpuinfo(text))


@fuzz(st.text(max_size=300))
def test_parse_cpuinfo_of_any_text(text):
    _check_cpu(hardware.parse_cpuinfo(text))


# -- sizes and the sysfs cache tree ----------------------------------------------------------------

@fuzz(st.one_of(
    st.builds(lambda n, sp, u: f"{n}{sp}{u}", st.sampled_from(ODD_NUMBERS + ["32", "4096", "105"]),
              st.sampled_from(["", " ", "\t", "\n"]), st.sampled_from(ODD_TEXT + ["", "K", "M", "G", "T"])),
    st.text(max_size=20),
))
def test_parse_size_raises_only_value_error(text):
    size = only_raises(ValueError, hardware.parse_size, text)
    assert size is None or (type(size) is int and 0 <= size < 2**63), size


def _write_tree(root: Path, tree: dict) -> None:
    for name, entry in tree.items():
        path = root / name
        if isinstance(entry, (str, bytes)):  # an index* that is a file, not a directory
            path.write_bytes(entry.encode("utf-8", "surrogatepass") if isinstance(entry, str) else entry)
            continue
        path.mkdir()
        for fname, content in entry.items():
            target = path / fname
            if content is None:
                target.mkdir()  # a directory where a file belongs
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_bytes(content.encode("utf-8", "surrogatepass"))


@st.composite
def cache_trees(draw) -> dict:
    recorded = _pick(draw, SYSFS_CACHE)
    tree: dict = {}
    for name, files in recorded.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # an index missing
        entry = {}
        for fname, content in files.items():
            if fname not in ("level", "type", "size") and draw(st.integers(0, 9)):
                continue  # the files the reader ignores: one in ten written
            roll = draw(st.integers(0, 19))
            if roll == 0:
                continue  # the file missing
            if roll == 1:
                entry[fname] = None
            elif roll == 2:
                entry[fname] = draw(st.binary(max_size=12))  # not UTF-8
            else:
                entry[fname] = draw(_odd_value(content))
        tree[name] = entry
    for extra in range(draw(st.integers(0, 3))):  # made-up entries
        tree[f"index{len(recorded) + extra}"] = {
            "level": draw(_odd_value("4")), "type": draw(st.sampled_from(["Data", "Unified", "Instruction", "x", ""])),
            "size": draw(_odd_value("99999999999K"))}
    if draw(st.integers(0, 9)) == 0:
        tree["index_not_a_dir"] = draw(st.text(max_size=5))
    return tree


@fuzz(cache_trees())
def test_parse_cache_sizes_never_raises(tree):
    with tempfile.TemporaryDirectory() as tmp:
        _write_tree(Path(tmp), tree)
        caches = hardware.parse_cache_sizes(tmp)
    assert set(caches) == {"l1d_bytes", "l1i_bytes", "l2_bytes", "l3_bytes", "llc_bytes"}
    for value in caches.values():
        _size_ok(value)
    if any(caches[k] is not None for k in ("l1d_bytes", "l2_bytes", "l3_bytes")):
        assert caches["llc_bytes"] is not None
    _json_ok(caches)


@fuzz(st.lists(st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from(["raise", "value"])), min_size=4, max_size=4))
def test_sysconf_caches_never_raise(answers):
    names = ["SC_LEVEL1_DCACHE_SIZE", "SC_LEVEL1_ICACHE_SIZE", "SC_LEVEL2_CACHE_SIZE", "SC_LEVEL3_CACHE_SIZE"]
    table = dict(zip(names, answers))

    def sysconf(name):
        answer = table.get(name)
        if answer == "raise":
            raise OSError(22, "Invalid argument")
        if answer == "value":
            raise ValueError(f"unrecognized configuration name {name!r}")
        return answer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hw_caches.os, "sysconf", sysconf)
        mp.setattr(hw_caches.os, "sysconf_names", {n: i for i, n in enumerate(names)}, raising=False)
        caches = hw_caches._sysconf_caches()
    for value in caches.values():
        _size_ok(value)


# -- macOS sysctl ----------------------------------------------------------------------------------

SYSCTL = ("machdep.cpu.brand_string: Apple M2 Pro\nhw.l1dcachesize: 65536\nhw.l1icachesize: 131072\n"
          "hw.l2cachesize: 4194304\nhw.l3cachesize: 0\n")


@fuzz(mutated_text([SYSCTL]))
def test_sysctl_output_and_darwin_caches(text):
    values = hardware.parse_sysctl_output(text)
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in values.items())
    caches = hw_darwin._darwin_caches(values)
    for value in caches.values():
        _size_ok(value)


# -- os-release, meminfo ---------------------------------------------------------------------------

@fuzz(mutated_text(OS_RELEASE))
def test_parse_os_release(text):
    fields = hardware.parse_os_release(text)
    assert all(isinstance(k, str) and k and k == k.strip() and isinstance(v, str) for k, v in fields.items())


@fuzz(mutated_text(MEMINFO))
def test_parse_meminfo_total(text):
    _size_ok(hardware.parse_meminfo_total(text))


def test_parse_meminfo_total_reads_the_recorded_file():
    assert hardware.parse_meminfo_total(MEMINFO[0]) == 24683652 * 1024
    assert hardware.parse_meminfo_total("MemFree: 10 kB\n") is None


# -- nvidia-smi, torch's version.py ------------------------------------------------------------------

NVIDIA_SMI = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\nNVIDIA A10G, 23028\n"


@fuzz(mutated_text([NVIDIA_SMI]))
def test_parse_nvidia_smi(text):
    gpus = hardware.parse_nvidia_smi(text)
    for gpu in gpus:
        assert set(gpu) == {"name", "total_memory_bytes"}
        assert isinstance(gpu["name"], str) and gpu["name"]
        _size_ok(gpu["total_memory_bytes"])
    _json_ok(gpus)


VERSION_PY = """from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'xpu']
__version__ = '2.13.0+cu128'
debug = False
cuda: Optional[str] = '12.8'
git_version = '0123456789abcdef0123456789abcdef01234567'
hip: Optional[str] = None
xpu: Optional[str] = None
"""


@fuzz(st.one_of(mutated_text([VERSION_PY]), st.binary(max_size=64)))
def test_torch_static_info_reads_any_version_py(content):
    from importlib import metadata

    def no_metadata(name):
        raise metadata.PackageNotFoundError(name)

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        Path(tmp, "version.py").write_bytes(data)
        spec = types.SimpleNamespace(submodule_search_locations=[tmp])
        mp.setattr(hw_torchfacts.importlib.util, "find_spec", lambda name: spec)
        mp.setattr(metadata, "version", no_metadata)
        mp.setattr(hw_torchfacts.shutil, "which", lambda name: None)  # no nvidia-smi
        info = hardware.torch_static_info()
    assert set(info) == {"version", "cuda_version", "gpus"}
    for key in ("version", "cuda_version"):
        assert info[key] is None or isinstance(info[key], str)
    assert info["gpus"] == []


# -- the compiler's banner -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_compiler(tmp_path_factory):
    """A "compiler" whose --version prints the bytes of a file the property writes."""
    root = tmp_path_factory.mktemp("cc")
    out = root / "banner"
    cc = root / "fakecc"
    cc.write_text(f"#!/bin/sh\nexec cat '{out}'\n")
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    return str(cc), out


BANNER = "gcc (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n"
# a process per example: a quarter of the examples of the other properties
_BANNER_EXAMPLES = max(20, int(os.environ.get("LLMPERF_FUZZ_EXAMPLES", "200")) // 4)


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for the compiler")
@pytest.mark.parametrize("fuzz_seed", ["fixed-seed", "random-seed"])
def test_compiler_version_of_any_banner(fake_compiler, fuzz_seed):
    cc, out = fake_compiler

    @fuzz(st.one_of(mutated_text([BANNER]), st.binary(max_size=60)), max_examples=_BANNER_EXAMPLES)
    def banner_gives_one_line_or_none(banner):
        out.write_bytes(banner if isinstance(banner, bytes) else banner.encode("utf-8", "surrogatepass"))
        line = hardware.compiler_version(cc, timeout=30)
        assert line is None or (isinstance(line, str) and line and line == line.strip()
                                and len(line.splitlines()) == 1), line

    banner_gives_one_line_or_none(fuzz_seed)


# -- the fingerprint -----------------------------------------------------------------------------------

_ints = st.one_of(st.none(), st.integers(), st.integers(min_value=10**300, max_value=10**400))
_texts = st.one_of(st.none(), st.text(max_size=30))


@st.composite
def detect_like(draw) -> dict:
    """What detect() returns, with every value drawn from its documented type."""
    cpu = hardware.parse_cpuinfo(draw(mutated_text(CPUINFO)))
    gpus = st.lists(st.fixed_dictionaries({"name": _texts, "total_memory_bytes": _ints}), max_size=3)
    torch_facts = st.one_of(st.none(), st.fixed_dictionaries(
        {"version": _texts, "cuda_available": st.booleans(), "cuda_version": _texts, "gpus": gpus}))
    return {
        "arch": draw(_texts),
        "cpu": cpu,
        "cores": {"physical": draw(_ints), "logical": draw(_ints), "usable": draw(_ints)},
        "memory": {"total_bytes": draw(_ints)},
        "caches": {k: draw(_ints) for k in ("l1d_bytes", "l1i_bytes", "l2_bytes", "l3_bytes", "llc_bytes")},
        "os": {"system": draw(_texts), "release": draw(_texts), "version": draw(_texts), "distro": draw(_texts)},
        "python": {"version": draw(_texts), "implementation": draw(_texts)},
        "compiler": draw(_texts),
        "torch": draw(torch_facts),
        "torch_static": draw(torch_facts),
        "volatile": {"cpu_freq_mhz": draw(st.one_of(st.none(), st.floats())), "hostname": draw(_texts)},
    }


@fuzz(detect_like())
def test_fingerprint_of_any_detected_machine(info):
    fields = hardware.fingerprint_fields(info)
    digest = hardware.fingerprint_hash(fields)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert hardware.fingerprint_diff(fields, dict(fields)) == []
    json.dumps(fields)  # the plugin refuses fields that are not JSON


_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=8)


@fuzz(st.dictionaries(st.text(max_size=12), _json, max_size=6), st.dictionaries(st.text(max_size=12), _json, max_size=6))
def test_fingerprint_diff_of_any_baseline_fields(a, b):
    """The baseline's side comes from a JSON file: any JSON object."""
    lines = hardware.fingerprint_diff(a, b)
    assert all(isinstance(line, str) and " -> " in line for line in lines)
    assert len(lines) <= len(set(a) | set(b))


# -- node names (SLURM environment, host name) -------------------------------------------------------

_env_value = st.one_of(st.text(max_size=300), st.sampled_from(ODD_TEXT + ODD_NUMBERS + [".", "..", " .. ", "a/b", "x" * 400]))


@fuzz(st.dictionaries(st.sampled_from(["SLURMD_NODENAME", "SLURM_JOB_PARTITION", "HOSTNAME", "OTHER"]), _env_value),
      _env_value)
def test_auto_node_name_is_always_a_valid_name(environ, hostname):
    name = hardware.auto_node_name(environ, hostname=hostname)
    assert hardware.validate_node_name(name) == name


@fuzz(_env_value)
def test_validate_node_name_raises_only_value_error(name):
    only_raises(ValueError, hardware.validate_node_name, name)
    assert hardware.validate_node_name(hardware.sanitize_node_name(name))


# -- detect() over fuzzed files ------------------------------------------------------------------------

@fuzz(mutated_text(CPUINFO), cache_trees(), mutated_text(OS_RELEASE),
      max_examples=max(20, int(os.environ.get("LLMPERF_FUZZ_EXAMPLES", "200")) // 4))
def test_detect_of_fuzzed_files_never_raises(cpuinfo, tree, os_release):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(tmp)
        (root / "cpuinfo").write_bytes(cpuinfo.encode("utf-8", "surrogatepass"))
        (root / "os-release").write_bytes(os_release.encode("utf-8", "surrogatepass"))
        (root / "cache").mkdir()
        _write_tree(root / "cache", tree)
        mp.setattr(hw_cpuinfo, "CPUINFO_PATH", str(root / "cpuinfo"))
        mp.setattr(hw_caches, "CACHE_SYSFS_PATH", str(root / "cache"))
        mp.setattr(hw_toolchain, "OS_RELEASE_PATHS", (str(root / "os-release"),))
        info = hardware.detect(cc="", include_torch=False)
    _check_cpu(info["cpu"])
    for value in info["caches"].values():
        _size_ok(value)
    assert info["os"]["distro"] is None or isinstance(info["os"]["distro"], str)
    _json_ok(info)
    hardware.fingerprint_hash(hardware.fingerprint_fields(info))


# -- what the fuzzing found, kept as plain cases -------------------------------------------------------

@pytest.mark.parametrize("text", [
    "32\u212a",  # KELVIN SIGN: matched [K] under IGNORECASE, then KeyError (its upper case is itself)
    "\u0663\u0662K",  # Arabic-Indic digits: accepted by \d
    "9" * 400,  # a 400-digit size, and one past 4300 digits that int() refuses
    "1" + "0" * 4400,
    "8388608T",  # 2**63 bytes
])
def test_parse_size_refuses_what_fuzzing_found(text):
    with pytest.raises(ValueError, match="invalid size"):
        hardware.parse_size(text)


def test_readers_give_unknown_for_what_fuzzing_found(tmp_path):
    _write_tree(tmp_path, {"index0": {"level": "2", "type": "Unified", "size": "99999999999 KB"},
                           "index1": {"level": "1", "type": "Data", "size": "48K"}})
    assert hardware.parse_cache_sizes(tmp_path)["l2_bytes"] is None  # 93 TiB: no cache is that big
    assert hardware.parse_cache_sizes(tmp_path)["llc_bytes"] == 48 * 1024
    assert hw_darwin._darwin_caches({"hw.l2cachesize": "-1"})["l2_bytes"] is None
    assert hardware.parse_os_release("=x\nID=debian\n") == {"ID": "debian"}
    assert hardware.parse_nvidia_smi("NVIDIA A10G, -1\nNVIDIA L4, [N/A]\n") == [
        {"name": "NVIDIA A10G", "total_memory_bytes": None}, {"name": "NVIDIA L4", "total_memory_bytes": None}]
    info = {"torch": {"version": "2.3", "gpus": [{"name": "x", "total_memory_bytes": 10**400}]}}
    assert hardware.fingerprint_fields(info)["gpu_memory_gib"] == [None]  # was OverflowError
