"""Tests for pytest_llmperf.hardware (run with -p no:llmperf)."""

from __future__ import annotations

import copy
import importlib.machinery
import json
import os
import platform
import stat
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from pytest_llmperf import hardware, node
from pytest_llmperf.hardware import (
    auto_node_name,
    compiler_version,
    detect,
    fingerprint_diff,
    fingerprint_fields,
    fingerprint_hash,
    parse_cache_sizes,
    parse_cpuinfo,
    parse_os_release,
    parse_size,
    sanitize_node_name,
    torch_info,
    validate_node_name,
)
from pytest_llmperf.hardware import caches as hw_caches
from pytest_llmperf.hardware import cpuinfo as hw_cpuinfo
from pytest_llmperf.hardware import darwin as hw_darwin
from pytest_llmperf.hardware import toolchain as hw_toolchain

DATA = Path(__file__).parent / "data" / "cpuinfo"
REPO_ROOT = Path(__file__).resolve().parent.parent


def sample(name: str) -> str:
    return (DATA / name).read_text()


# --------------------------------------------------------------------------
# parse_cpuinfo: x86
# --------------------------------------------------------------------------


def test_x86_xeon():
    cpu = parse_cpuinfo(sample("x86_64_xeon_8375c_2cpu.txt"))
    assert cpu["kind"] == "x86"
    assert cpu["cpu_model"] == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert cpu["vendor"] == "GenuineIntel"
    assert cpu["isa"] == "x86_64"
    assert cpu["family"] == 6
    assert cpu["model_number"] == 106
    assert cpu["uarch"] == "family 6 model 106"
    assert cpu["logical_cpus"] == 2
    assert cpu["isa_extensions"] == [
        "avx",
        "avx2",
        "avx512_vnni",
        "avx512bw",
        "avx512f",
        "avx512vl",
        "f16c",
        "fma",
        "sse4_2",
    ]
    # Ice Lake has no AMX; uninteresting flags are not kept.
    assert "amx_tile" not in cpu["isa_extensions"]
    assert "sse2" not in cpu["isa_extensions"]


def test_x86_kvm_guest_with_amx():
    # recorded on the project's 2-core KVM VM: the hypervisor hides the marketing name
    cpu = parse_cpuinfo(sample("x86_64_kvm_xeon_amx_2cpu.txt"))
    assert cpu["cpu_model"] == "Intel(R) Xeon(R) Processor"
    assert cpu["uarch"] == "family 6 model 167"
    assert cpu["logical_cpus"] == 2
    assert {"amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16", "avx_vnni"} <= set(cpu["isa_extensions"])


def test_x86_amd_amx_and_common_flags():
    text = textwrap.dedent(
        """\
        processor\t: 0
        vendor_id\t: AuthenticAMD
        cpu family\t: 25
        model\t\t: 17
        model name\t: AMD EPYC   9354 32-Core Processor
        flags\t\t: fpu lm avx avx2 fma avx512f amx_tile

        processor\t: 1
        vendor_id\t: AuthenticAMD
        cpu family\t: 25
        model\t\t: 17
        model name\t: AMD EPYC   9354 32-Core Processor
        flags\t\t: fpu lm avx avx2 fma avx512f
        """
    )
    cpu = parse_cpuinfo(text)
    assert cpu["vendor"] == "AuthenticAMD"
    # runs of spaces are collapsed so the name is stable
    assert cpu["cpu_model"] == "AMD EPYC 9354 32-Core Processor"
    assert cpu["uarch"] == "family 25 model 17"
    # only flags present on every processor count
    assert cpu["isa_extensions"] == ["avx", "avx2", "avx512f", "fma"]
    assert cpu["logical_cpus"] == 2


def test_x86_32bit_without_lm():
    cpu = parse_cpuinfo("processor : 0\nvendor_id : GenuineIntel\nmodel name : Intel(R) Atom(TM)\nflags : fpu sse2\n")
    assert cpu["isa"] == "x86"
    assert cpu["isa_extensions"] == []


# --------------------------------------------------------------------------
# parse_cpuinfo: RISC-V
# --------------------------------------------------------------------------


def test_riscv_sifive_u74_unmatched():
    cpu = parse_cpuinfo(sample("riscv64_sifive_u74mc_unmatched.txt"))
    assert cpu["kind"] == "riscv"
    assert cpu["cpu_model"] == "sifive,u74-mc"
    assert cpu["uarch"] == "sifive,u74-mc"
    assert cpu["isa"] == "rv64imafdc"
    assert cpu["isa_extensions"] == ["a", "c", "d", "f", "i", "m"]
    assert cpu["mmu"] == "sv39"
    assert cpu["logical_cpus"] == 4
    # no mvendorid on this kernel: vendor from the uarch compatible string
    assert cpu["vendor"] == "sifive"
    assert cpu["mvendorid"] is None


def test_riscv_visionfive2_extensions_and_ids():
    cpu = parse_cpuinfo(sample("riscv64_jh7110_visionfive2.txt"))
    assert cpu["cpu_model"] == "sifive,u74-mc"
    assert cpu["vendor"] == "SiFive"
    assert cpu["isa"] == "rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb"
    assert cpu["isa_extensions"] == [
        "a", "c", "d", "f", "i", "m",
        "zba", "zbb", "zicntr", "zicsr", "zifencei", "zihpm",
    ]  # fmt: skip
    assert cpu["mvendorid"] == "0x489"
    assert cpu["marchid"] == "0x8000000000000007"
    assert cpu["mimpid"] == "0x4210427"
    assert cpu["logical_cpus"] == 4


def test_riscv_thead_c920_pioneer():
    cpu = parse_cpuinfo(sample("riscv64_thead_c920_pioneer.txt"))
    assert cpu["cpu_model"] == "thead,c920"
    assert cpu["uarch"] == "thead,c920"
    assert cpu["vendor"] == "T-Head"
    assert cpu["isa"] == "rv64imafdcv"
    assert "v" in cpu["isa_extensions"]
    assert cpu["logical_cpus"] == 8


def test_riscv_without_uarch_uses_vendor_ids():
    text = "processor : 0\nhart : 0\nisa : rv64gc_zba\nmvendorid : 0x5b7\nmarchid : 0x0\n"
    cpu = parse_cpuinfo(text)
    assert cpu["kind"] == "riscv"
    assert cpu["cpu_model"] == "T-Head marchid 0x0"
    assert cpu["uarch"] is None
    # "g" expands to imafd
    assert cpu["isa_extensions"] == ["a", "c", "d", "f", "i", "m", "zba"]


def test_riscv_model_name_used_when_no_uarch():
    cpu = parse_cpuinfo("processor : 0\nhart : 0\nmodel name : Spacemit(R) X60\nisa : rv64imafdcv\n")
    assert cpu["cpu_model"] == "Spacemit(R) X60"


# --------------------------------------------------------------------------
# parse_cpuinfo: Arm
# --------------------------------------------------------------------------


def test_arm_neoverse_n1_no_model_name():
    cpu = parse_cpuinfo(sample("aarch64_neoverse_n1_graviton2.txt"))
    assert cpu["kind"] == "arm"
    assert cpu["cpu_model"] == "Neoverse-N1"
    assert cpu["uarch"] == "Neoverse-N1"
    assert cpu["vendor"] == "ARM"
    assert cpu["implementer"] == "0x41"
    assert cpu["part"] == "0xd0c"
    assert cpu["isa"] == "armv8"
    assert cpu["logical_cpus"] == 4
    assert cpu["isa_extensions"] == ["asimd", "asimddp", "asimdhp", "atomics", "fphp"]


def test_arm_raspberry_pi4_board_lines():
    cpu = parse_cpuinfo(sample("aarch64_rpi4_cortex_a72.txt"))
    assert cpu["cpu_model"] == "Cortex-A72"
    assert cpu["isa"] == "armv8"
    assert cpu["isa_extensions"] == ["asimd"]
    # the trailing board block is not a processor
    assert cpu["logical_cpus"] == 4
    assert cpu["hardware"] == "BCM2835"
    assert cpu["board"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_arm_model_name_loses_to_mapped_parts_big_little():
    cpu = parse_cpuinfo(sample("aarch64_rk3399_model_name.txt"))
    # generic "ARMv8 Processor rev 4 (v8l)" is ignored in favour of the parts
    assert cpu["cpu_model"] == "Cortex-A53 + Cortex-A72"
    assert cpu["part"] == "0xd03 + 0xd08"
    assert cpu["logical_cpus"] == 6
    assert cpu["isa"] == "armv8"


def test_arm_unknown_part_fallbacks():
    unknown_impl = "processor : 0\nFeatures : fp asimd sve\nCPU implementer : 0x99\nCPU architecture: 8\nCPU part : 0x123\n"
    cpu = parse_cpuinfo(unknown_impl)
    assert cpu["cpu_model"] == "implementer 0x99 part 0x123"
    assert cpu["vendor"] == "implementer 0x99"
    assert cpu["isa_extensions"] == ["asimd", "sve"]

    apple = "processor : 0\nFeatures : fp asimd\nCPU implementer : 0x61\nCPU architecture: 8\nCPU part : 0x030\n"
    cpu = parse_cpuinfo(apple)
    assert cpu["vendor"] == "Apple"
    assert cpu["cpu_model"] == "Apple part 0x030"

    ampere = "processor : 0\nFeatures : fp\nCPU implementer : 0xc0\nCPU architecture: 8\nCPU part : 0xac3\n"
    assert parse_cpuinfo(ampere)["cpu_model"] == "Ampere-1"


@pytest.mark.parametrize(
    ("part", "name"),
    [("0xd40", "Neoverse-V1"), ("0xd4f", "Neoverse-V2"), ("0xd0b", "Cortex-A76"), ("0xd08", "Cortex-A72")],
)
def test_arm_part_table(part, name):
    text = f"processor : 0\nmodel name : ARMv8 Processor rev 1 (v8l)\nCPU implementer : 0x41\nCPU part : {part}\n"
    assert parse_cpuinfo(text)["cpu_model"] == name


def test_arm_model_name_kept_without_part_codes():
    text = textwrap.dedent(
        """\
        Processor\t: ARMv7 Processor rev 4 (v7l)
        processor\t: 0
        BogoMIPS\t: 38.40
        Features\t: half thumb fastmult vfp edsp neon vfpv3

        Hardware\t: BCM2709
        """
    )
    cpu = parse_cpuinfo(text)
    assert cpu["kind"] == "arm"
    assert cpu["cpu_model"] == "ARMv7 Processor rev 4 (v7l)"
    assert cpu["isa_extensions"] == ["neon"]
    assert cpu["logical_cpus"] == 1


# --------------------------------------------------------------------------
# parse_cpuinfo: odd input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "garbage without colons", ":::\n: :", "\x00\xff binary : junk"])
def test_cpuinfo_odd_input_never_raises(text):
    cpu = parse_cpuinfo(text)
    assert isinstance(cpu["cpu_model"], str) and cpu["cpu_model"]
    assert cpu["logical_cpus"] == 0
    assert cpu["isa_extensions"] == []


def test_cpuinfo_empty_is_unknown():
    cpu = parse_cpuinfo("")
    assert cpu["cpu_model"] == "unknown"
    assert cpu["vendor"] is None and cpu["isa"] is None and cpu["uarch"] is None
    assert parse_cpuinfo(None)["cpu_model"] == "unknown"  # type: ignore[arg-type]


def test_cpuinfo_ppc_best_effort():
    cpu = parse_cpuinfo("processor : 0\ncpu : POWER9 (raw), altivec supported\nclock : 2300.000000MHz\n")
    assert cpu["cpu_model"] == "POWER9 (raw), altivec supported"
    assert cpu["logical_cpus"] == 1


def test_cpuinfo_s390_vendor_id_is_not_x86():
    text = "vendor_id       : IBM/S390\n# processors    : 2\nfeatures\t: esan3 zarch stfle\n"
    cpu = parse_cpuinfo(text)
    assert cpu["kind"] is None
    assert cpu["vendor"] == "IBM/S390"
    assert cpu["isa"] is None
    assert cpu["logical_cpus"] == 2  # from "# processors": s390x has no "processor : N" entries


def test_cpuinfo_s390_counts_its_processor_lines():
    # the layout of an s390x kernel's /proc/cpuinfo (written for this test, not a recording)
    text = textwrap.dedent(
        """\
        vendor_id       : IBM/S390
        # processors    : 4
        bogomips per cpu: 3033.00
        features\t: esan3 zarch stfle msa ldisp eimm dfp edat etf3eh highgprs te vx sie
        processor 0: version = 00,  identification = 0B1234,  machine = 8561
        processor 1: version = 00,  identification = 0B1234,  machine = 8561
        processor 2: version = 00,  identification = 0B1234,  machine = 8561

        cpu number      : 0
        cpu MHz dynamic : 5200
        """
    )
    # here the total disagrees with the lines, to show that the lines are counted
    assert parse_cpuinfo(text)["logical_cpus"] == 3


# --------------------------------------------------------------------------
# sizes and caches
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32K", 32 * 1024),
        ("4096K", 4096 * 1024),
        ("105M", 105 * 1024 * 1024),
        ("1G", 1 << 30),
        ("512", 512),
        ("48K\n", 48 * 1024),
        ("32k", 32 * 1024),
        ("32KiB", 32 * 1024),
        ("64 KB", 64 * 1024),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "K", "12X", "1.5M", "-4K", "abc"])
def test_parse_size_invalid(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def make_cache_tree(base: Path, entries: list[tuple[str, str, str]]) -> Path:
    for index, (level, ctype, size) in enumerate(entries):
        d = base / f"index{index}"
        d.mkdir(parents=True)
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(ctype + "\n")
        (d / "size").write_text(size + "\n")
    return base


def test_parse_cache_sizes_fake_sysfs(tmp_path):
    base = make_cache_tree(
        tmp_path / "cache",
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K"), ("3", "Unified", "107520K")],
    )
    (base / "uevent").write_text("")
    caches = parse_cache_sizes(base)
    assert caches == {
        "l1d_bytes": 48 * 1024,
        "l1i_bytes": 32 * 1024,
        "l2_bytes": 2 * 1024 * 1024,
        "l3_bytes": 105 * 1024 * 1024,
        "llc_bytes": 105 * 1024 * 1024,
    }


def test_parse_cache_sizes_llc_is_l2_without_l3(tmp_path):
    base = make_cache_tree(
        tmp_path / "cache", [("1", "Data", "32K"), ("1", "Instruction", "48K"), ("2", "Unified", "1M")]
    )
    caches = parse_cache_sizes(str(base))
    assert caches["l3_bytes"] is None
    assert caches["llc_bytes"] == caches["l2_bytes"] == 1 << 20


def test_parse_cache_sizes_missing_and_broken(tmp_path):
    empty = dict.fromkeys(["l1d_bytes", "l1i_bytes", "l2_bytes", "l3_bytes", "llc_bytes"])
    assert parse_cache_sizes(tmp_path / "does-not-exist") == empty
    base = make_cache_tree(tmp_path / "cache", [("1", "Data", "garbage"), ("2", "Unified", "512K")])
    (base / "index2").mkdir()  # entry without files
    caches = parse_cache_sizes(base)
    assert caches["l1d_bytes"] is None
    assert caches["l2_bytes"] == caches["llc_bytes"] == 512 * 1024


def test_parse_cache_sizes_zero_is_unknown(tmp_path):
    base = make_cache_tree(tmp_path / "cache", [("1", "Data", "32K"), ("2", "Unified", "0K"), ("3", "Unified", "0")])
    caches = parse_cache_sizes(base)
    assert caches["l2_bytes"] is None and caches["l3_bytes"] is None
    assert caches["llc_bytes"] == caches["l1d_bytes"] == 32 * 1024


def test_parse_os_release():
    text = 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\n# comment\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
    fields = parse_os_release(text)
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert fields["ID"] == "debian"
    assert fields["VERSION_ID"] == "12"


def test_parse_sysctl_output():
    out = hardware.parse_sysctl_output("machdep.cpu.brand_string: Apple M2 Pro\nhw.l2cachesize: 4194304\n")
    assert hw_darwin._darwin_caches(out)["llc_bytes"] == 4194304
    assert out["machdep.cpu.brand_string"] == "Apple M2 Pro"


# --------------------------------------------------------------------------
# compiler
# --------------------------------------------------------------------------


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_compiler_version_first_line(tmp_path):
    cc = write_script(tmp_path / "fakecc", 'echo ""\necho "fakecc (Acme) 13.2.0"\necho "Copyright"\n')
    assert compiler_version(cc) == "fakecc (Acme) 13.2.0"


def test_compiler_version_missing_or_slow(tmp_path):
    assert compiler_version("definitely-not-a-compiler-4711") is None
    assert compiler_version("") is None
    # The compiler would answer after 60 s: returning long before that means the timeout was
    # honoured, however slow or loaded this machine is (``exec``: the kill reaches the sleep).
    slow = write_script(tmp_path / "slowcc", "exec sleep 60\n")
    start = time.monotonic()
    assert compiler_version(slow, timeout=0.3) is None
    assert time.monotonic() - start < 30


# --------------------------------------------------------------------------
# torch_info with a fake torch module
# --------------------------------------------------------------------------


def fake_torch(cuda: bool = True, fail: bool = False) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    torch.__version__ = "2.3.1+cu121"
    torch.version = types.SimpleNamespace(cuda="12.1" if cuda else None, hip=None)
    torch.backends = types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: False))
    gpus = [("NVIDIA H100 80GB HBM3", 85_045_870_592), ("NVIDIA H100 80GB HBM3", 85_045_870_592)]

    def props(i):
        if fail:
            raise RuntimeError("CUDA driver initialization failed")
        return types.SimpleNamespace(name=gpus[i][0], total_memory=gpus[i][1])

    torch.cuda = types.SimpleNamespace(
        is_available=lambda: cuda,
        device_count=lambda: len(gpus),
        get_device_properties=props,
        get_device_name=lambda i: gpus[i][0],
    )
    return torch


def test_torch_info_absent(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # torch_info reads only an imported torch
    assert torch_info() is None


def test_torch_info_with_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    info = torch_info()
    assert info["version"] == "2.3.1+cu121"
    assert info["cuda_available"] is True
    assert info["cuda_version"] == "12.1"
    assert info["mps_available"] is False
    assert info["device_count"] == 2
    assert info["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "total_memory_bytes": 85_045_870_592}] * 2
    assert "error" not in info


def test_torch_info_cpu_only(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda=False))
    info = torch_info()
    assert info["cuda_available"] is False
    assert info["cuda_version"] is None
    assert info["gpus"] == []


def test_torch_info_records_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(fail=True))
    info = torch_info()
    assert info["version"] == "2.3.1+cu121"
    assert "CUDA driver initialization failed" in info["error"]


# --------------------------------------------------------------------------
# fingerprint
# --------------------------------------------------------------------------


def base_info() -> dict:
    return {
        "arch": "x86_64",
        "cpu": parse_cpuinfo(sample("x86_64_xeon_8375c_2cpu.txt")),
        "cores": {"physical": 1, "logical": 2, "usable": 2},
        "memory": {"total_bytes": 16 * (1 << 30) - 300 * (1 << 20)},
        "caches": {"l1d_bytes": 49152, "l1i_bytes": 32768, "l2_bytes": 1 << 21, "l3_bytes": 56623104, "llc_bytes": 56623104},
        "os": {"system": "Linux", "release": "6.1.0-18-amd64", "version": "#1 SMP Debian 6.1.76-1", "distro": "Debian GNU/Linux 12 (bookworm)"},
        "python": {"version": "3.11.7", "implementation": "CPython"},
        "compiler": "cc (Debian 12.2.0-14) 12.2.0",
        "torch": {
            "version": "2.3.1+cu121",
            "cuda_available": True,
            "cuda_version": "12.1",
            "gpus": [{"name": "NVIDIA H100 80GB HBM3", "total_memory_bytes": 85_045_870_592}],
        },
        "volatile": {"cpu_freq_mhz": 2900.0, "hostname": "gpu01"},
    }  # fmt: skip


def test_fingerprint_fields_content():
    fields = fingerprint_fields(base_info())
    assert fields == {
        "arch": "x86_64",
        "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
        "isa": "x86_64",
        "uarch": "family 6 model 106",
        "isa_extensions": ["avx", "avx2", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "f16c", "fma", "sse4_2"],
        "logical_cpus": 2,
        "physical_cores": 1,
        "memory_gib": 16,
        "llc_bytes": 56623104,
        "os_system": "Linux",
        "os_release": "6.1",
        "os_distro": "Debian GNU/Linux 12 (bookworm)",
        "python": "3.11",
        "compiler": "cc (Debian 12.2.0-14) 12.2.0",
        "torch": "2.3",
        "cuda": "12.1",
        "gpus": ["NVIDIA H100 80GB HBM3"],
        "gpu_memory_gib": [79],
    }
    json.dumps(fields)  # serialisable


def test_fingerprint_ignores_volatile_and_noise():
    info = base_info()
    ref = fingerprint_hash(fingerprint_fields(info))
    assert len(ref) == 16 and int(ref, 16) >= 0

    changed = copy.deepcopy(info)
    changed["volatile"] = {"cpu_freq_mhz": 1200.5, "hostname": "gpu02"}
    changed["memory"]["total_bytes"] += 200 * (1 << 20)  # same GiB after rounding
    changed["os"]["release"] = "6.1.0-21-amd64"  # kernel patch level
    changed["os"]["version"] = "#1 SMP Debian 6.1.90-1"
    changed["python"]["version"] = "3.11.9"
    changed["torch"]["version"] = "2.3.0"
    changed["cores"]["usable"] = 1
    assert fingerprint_hash(fingerprint_fields(changed)) == ref


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("cpu", "cpu_model"), "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"),
        (("cores", "logical"), 4),
        (("memory", "total_bytes"), 32 << 30),
        (("os", "release"), "6.5.0-1-amd64"),
        (("python", "version"), "3.12.1"),
        (("compiler",), "gcc (GCC) 14.1.0"),
        (("caches", "llc_bytes"), 1 << 25),
    ],
)
def test_fingerprint_changes_with_stable_fields(path, value):
    info = base_info()
    ref = fingerprint_hash(fingerprint_fields(info))
    target = info
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert fingerprint_hash(fingerprint_fields(info)) != ref


def test_fingerprint_torch_keys_only_when_present():
    info = base_info()
    info["torch"] = None
    fields = fingerprint_fields(info)
    assert not {"torch", "cuda", "gpus", "gpu_memory_gib"} & set(fields)


def test_fingerprint_hash_is_order_independent_and_stable():
    a = {"b": 1, "a": [1, 2]}
    b = {"a": [1, 2], "b": 1}
    assert fingerprint_hash(a) == fingerprint_hash(b)
    import hashlib

    assert fingerprint_hash(a) == hashlib.sha256(b'{"a": [1, 2], "b": 1}').hexdigest()[:16]


def test_fingerprint_diff():
    a = {"cpu_model": "X", "memory_gib": 16, "python": "3.11", "torch": "2.3"}
    b = {"cpu_model": "Y", "memory_gib": 16, "python": "3.12", "cuda": "12.1"}
    assert fingerprint_diff(a, b) == [
        "cpu_model: 'X' -> 'Y'",
        "cuda: <absent> -> '12.1'",
        "python: '3.11' -> '3.12'",
        "torch: '2.3' -> <absent>",
    ]
    assert fingerprint_diff(a, dict(a)) == []


# --------------------------------------------------------------------------
# node names
# --------------------------------------------------------------------------


def test_auto_node_name_slurm():
    env = {"SLURMD_NODENAME": "gpu-a100-07", "SLURM_JOB_PARTITION": "gpu"}
    assert auto_node_name(env, hostname="login1.cluster.local") == "gpu-a100-07"
    assert auto_node_name({"SLURM_JOB_PARTITION": "gpu"}, hostname="x.y") == "gpu"
    assert auto_node_name({"SLURMD_NODENAME": "  "}, hostname="n1") == "n1"


def test_auto_node_name_hostname():
    assert auto_node_name({}, hostname="gpu01.cluster.local") == "gpu01"
    assert auto_node_name({}, hostname="my host!") == "my-host-"
    assert auto_node_name({}, hostname="") == "unknown-node"
    assert auto_node_name({}, hostname=".local") == "unknown-node"
    assert auto_node_name({"SLURMD_NODENAME": "a/b"}, hostname="h") == "a-b"


def test_auto_node_name_defaults_to_this_host(monkeypatch):
    monkeypatch.delenv("SLURMD_NODENAME", raising=False)
    monkeypatch.delenv("SLURM_JOB_PARTITION", raising=False)
    monkeypatch.setattr(node.socket, "gethostname", lambda: "node42.example.org")
    assert auto_node_name() == "node42"
    monkeypatch.setenv("SLURMD_NODENAME", "cn017")
    assert auto_node_name() == "cn017"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("gpu01", "gpu01"), ("a/b", "a-b"), ("a\\b c", "a-b-c"), (".", "unknown-node"), ("..", "unknown-node"), ("", "unknown-node"), (None, "unknown-node"), ("ünï", "-n-")],
)  # fmt: skip
def test_sanitize_node_name(raw, clean):
    assert sanitize_node_name(raw) == clean


@pytest.mark.parametrize("name", ["gpu01", "node_1.rack-2", "A100"])
def test_validate_node_name_ok(name):
    assert validate_node_name(name) == name


def test_validate_node_name_errors():
    with pytest.raises(ValueError) as exc:
        validate_node_name("a/b")
    assert str(exc.value) == "invalid node name 'a/b': use letters, digits, '.', '_' and '-'"
    for bad in ["a\\b", "has space", ".", "..", "", "x" * 300, "tab\there"]:
        with pytest.raises(ValueError, match="invalid node name"):
            validate_node_name(bad)


# --------------------------------------------------------------------------
# detect() on this machine
# --------------------------------------------------------------------------


def _sysfs_has_a_data_cache_size() -> bool:
    """Whether cpu0's sysfs cache directory names a data or unified cache with a non-zero size
    (an instruction cache alone, or sizes of "0K" as some hypervisors give, do not count)."""
    for entry in Path(hardware.CACHE_SYSFS_PATH).glob("index*"):
        try:
            kind = (entry / "type").read_text().strip().lower()
            size = (entry / "size").read_text().strip()
        except OSError:
            continue
        if kind in ("data", "unified") and size[:1].isdigit() and size.rstrip("KMGkmg") not in ("", "0"):
            return True
    return False


def test_detect_this_machine():
    info = detect(include_torch=False)
    assert set(info) == {"arch", "cpu", "cores", "memory", "caches", "os", "python", "compiler", "torch", "volatile"}
    assert info["arch"] == platform.machine()
    cpu = info["cpu"]
    assert isinstance(cpu["cpu_model"], str) and cpu["cpu_model"]
    for key in ("vendor", "isa", "uarch"):
        assert cpu[key] is None or isinstance(cpu[key], str)
    assert isinstance(cpu["logical_cpus"], int)
    assert isinstance(cpu["isa_extensions"], list)
    assert isinstance(info["cores"]["logical"], int) and info["cores"]["logical"] >= 1
    assert info["cores"]["physical"] is None or 1 <= info["cores"]["physical"] <= info["cores"]["logical"]
    assert isinstance(info["memory"]["total_bytes"], int) and info["memory"]["total_bytes"] > 0
    assert set(info["caches"]) == {"l1d_bytes", "l1i_bytes", "l2_bytes", "l3_bytes", "llc_bytes"}
    assert info["os"]["system"] == platform.system()
    assert info["python"] == {"version": platform.python_version(), "implementation": platform.python_implementation()}
    assert info["compiler"] is None or isinstance(info["compiler"], str)
    assert info["torch"] is None
    assert set(info["volatile"]) == {"cpu_freq_mhz", "hostname"}
    json.dumps(info)
    if os.path.exists("/proc/cpuinfo"):
        assert cpu["source"] == "/proc/cpuinfo"
        assert cpu["logical_cpus"] >= 1
    if _sysfs_has_a_data_cache_size():
        assert isinstance(info["caches"]["llc_bytes"], int) and info["caches"]["llc_bytes"] > 0
    else:  # no sysfs cache sizes (some Arm and RISC-V kernels, some VMs): glibc's, or none
        assert info["caches"]["llc_bytes"] is None or info["caches"]["llc_bytes"] > 0

    fields = fingerprint_fields(info)
    assert fields["arch"] == info["arch"]
    assert fields["python"] == "{}.{}".format(*sys.version_info[:2])
    assert not {"cpu_freq_mhz", "hostname", "volatile"} & set(fields)
    # same machine, same fingerprint
    assert fingerprint_hash(fingerprint_fields(detect(include_torch=False))) == fingerprint_hash(fields)


def test_detect_without_a_compiler_starts_no_process(monkeypatch):
    # detect() runs once per session and must stay cheap; what would make it slow on any machine
    # is a program started (lscpu, a compiler, nvidia-smi), so that is what is checked, not a
    # time (which is this machine's speed and load). macOS asks sysctl, once.
    started = []
    real_popen = subprocess.Popen

    def recording_popen(args, *rest, **kwargs):
        started.append(args)
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    detect(cc="", include_torch=False)
    allowed = 1 if platform.system() == "Darwin" else 0
    assert len(started) <= allowed, started
    assert all("sysctl" in str(args[0]) for args in started), started


def test_detect_without_proc_and_sys(monkeypatch, tmp_path):
    monkeypatch.setattr(hw_cpuinfo, "CPUINFO_PATH", str(tmp_path / "no-cpuinfo"))
    monkeypatch.setattr(hw_caches, "CACHE_SYSFS_PATH", str(tmp_path / "no-cache"))
    monkeypatch.setattr(hw_toolchain, "OS_RELEASE_PATHS", (str(tmp_path / "no-os-release"),))
    info = detect(cc="definitely-not-a-compiler-4711", include_torch=False)
    assert info["cpu"]["source"] in ("platform", "sysctl")
    assert isinstance(info["cpu"]["cpu_model"], str) and info["cpu"]["cpu_model"]
    assert info["compiler"] is None
    if platform.system() == "Linux":
        assert info["os"]["distro"] is None
    for value in info["caches"].values():
        assert value is None or value > 0
    fingerprint_hash(fingerprint_fields(info))


def write_fake_torch_package(root: Path) -> None:
    pkg = root / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import types\n"
        "__version__ = '9.9.0'\n"
        "version = types.SimpleNamespace(cuda=None, hip=None)\n"
        "cuda = types.SimpleNamespace(is_available=lambda: False)\n"
    )


@pytest.mark.parametrize("imported", [False, True])
@pytest.mark.parametrize("include_torch", [False, True])
def test_detect_reads_torch_only_when_asked_and_never_imports_it(tmp_path, include_torch, imported):
    # A fake torch shadows any real one, so the check means the same everywhere. detect() reads
    # the torch a test already imported (the session asks with include_torch="torch" in
    # sys.modules) and never imports it itself.
    write_fake_torch_package(tmp_path)
    code = (
        "import sys; from pytest_llmperf import hardware; "
        + ("import torch; " if imported else "")
        + f"info = hardware.detect(include_torch={include_torch}); "
        "print('torch' in sys.modules); print(info['torch'] and info['torch']['version'])"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[0] == str(imported)
    assert lines[1] == ("9.9.0" if include_torch and imported else "None")


def test_module_import_does_not_import_torch(tmp_path):
    write_fake_torch_package(tmp_path)
    code = "import sys; import pytest_llmperf.hardware; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
