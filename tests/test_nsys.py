"""The nsys profiler without nsys or a GPU: the kernel summary parsed from CSV written by hand in
the format of ``nsys stats --report cuda_gpu_kern_sum`` (and the older ``gpukernsum``), the search
for nsys in made-up install trees, and the whole profiler run through base.run() against a fake
``nsys`` that runs the command, writes a report and copies those CSV files out as ``nsys stats``."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from pytest_llmperf import profilers
from pytest_llmperf.profilers import base, nsys
from pytest_llmperf.profilers.nsys import Kernel, Nsys, NsysParseError

DATA = Path(__file__).parent / "data" / "nsys"
A100 = DATA / "a100_cuda_gpu_kern_sum.csv"
HEADER = '"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"'
ELEMENTWISE = ("void at::native::elementwise_kernel<128, 2, void at::native::gpu_kernel_impl<at::native::BinaryFunctor"
               "<float, float, float, at::native::binary_internal::MulFunctor<float>>>(at::TensorIteratorBase &, "
               "const T1 &)::[lambda(int) (instance 1)]>(int, T3)")
A100_TOTAL_NS = 137_741_760
A100_LAUNCHES = 10_368


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ---------------------------------------------------------------------------- parsing

def test_a100_kernel_summary_with_thousands_separators_and_templated_names():
    kernels = nsys.parse_kernel_csv(A100.read_text())
    assert len(kernels) == 11
    assert kernels[0] == Kernel(name="ampere_sgemm_128x64_tn", time_pct=62.2, total_ns=85_650_112, instances=1536,
                                avg_ns=55_761.8, med_ns=55_102, min_ns=52_210, max_ns=69_870, stddev_ns=1_904.3)
    assert kernels[2].name == ELEMENTWISE  # commas inside the quoted name stay in the name
    assert kernels[2].instances == 3072 and kernels[2].total_ns == 4_395_776
    assert kernels[7].name == "void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_64x64_16x6_tn_align4>(T1::Params)"
    assert sum(k.total_ns for k in kernels) == A100_TOTAL_NS
    assert sum(k.instances for k in kernels) == A100_LAUNCHES
    assert sum(k.time_pct for k in kernels) == pytest.approx(100.1)  # nsys rounds each share


def test_stdout_lines_before_the_header_are_skipped():
    kernels = nsys.parse_kernel_csv((DATA / "stats_stdout_preamble.txt").read_text())
    assert [k.instances for k in kernels] == [96, 32, 256]
    assert kernels[0].name.startswith("void gemv2T_kernel_val<int, int, float, float, float, float, 128, 16, 4, 4,")
    assert kernels[0].name.endswith("float>>(T13, T6, T6)")
    assert kernels[2] == Kernel("void rmsnorm_kernel<float>(float *, const float *, const float *, int)", 11.3,
                                364_544, 256, 1424.0, 1408, 1344, 1632, 52.9)


def test_old_gpukernsum_columns_are_found_by_name():
    kernels = nsys.parse_kernel_csv((DATA / "gpukernsum_2021.csv").read_text())
    assert [k.name for k in kernels][:2] == ["volta_sgemm_128x64_tn", "volta_sgemm_128x32_nn"]
    first = kernels[0]
    assert (first.time_pct, first.total_ns, first.instances) == (48.6, 61_245_376, 1024)
    assert (first.avg_ns, first.min_ns, first.max_ns) == (59_809.9, 57_184, 66_272)
    assert first.med_ns is None and first.stddev_ns is None  # that report had neither
    assert kernels[2].name.endswith("at::detail::Array<char*, 3>)")


def test_a_report_without_kernel_data_has_no_kernels():
    assert nsys.parse_kernel_csv((DATA / "no_kernel_data.txt").read_text()) == []


def test_a_header_without_rows_has_no_kernels():
    assert nsys.parse_kernel_csv(HEADER + "\n") == []


def test_columns_in_another_order_another_time_unit_and_quotes_in_names():
    text = ('"Name","Instances","Total Time (us)","Time (%)","Max (us)","Min (us)","Avg (us)"\n'
            '"my_kernel<""fast"">(float *, int)","4","1,250.5","100.0","400","200","312.625"\n')
    (k,) = nsys.parse_kernel_csv(text)
    assert k.name == 'my_kernel<"fast">(float *, int)'
    assert k.total_ns == pytest.approx(1_250_500) and k.avg_ns == pytest.approx(312_625)
    assert (k.min_ns, k.max_ns, k.instances, k.time_pct) == (200_000, 400_000, 4, 100.0)
    assert k.med_ns is None and k.stddev_ns is None


def test_the_table_ends_at_the_first_blank_line():
    text = HEADER + '\n"100.0","10","1","10","10","10","10","0","k"\n\nProcessing [x.sqlite] with [y.py]...\n'
    assert [k.name for k in nsys.parse_kernel_csv(text)] == ["k"]


@pytest.mark.parametrize("text, match", [
    ("garbage\n", r"no kernel table .* starts with 'garbage'"),
    ("", r"no kernel table"),
    (HEADER + '\n"50.0","10","1","10","10","10","10","0"\n', r"8 fields, the header has 9\): '\"50.0\""),
    (HEADER + '\n"50.0","lots","1","10","10","10","10","0","k"\n', r"unparsable number 'lots' .*'\"50.0\",\"lots\""),
    (HEADER + '\n"50.0","10","1.5","10","10","10","10","0","k"\n', r"instance count '1.5'"),
    (HEADER + '\n"50.0","10","1","10","10","10","10","0",""\n', r"without a name"),
    ('"Time (%)","Total Time (ns)","Num Calls","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"\n'
     '"90.0","900","3","300","300","200","400","100","cudaLaunchKernel"\n', r"lacks the column\(s\) Instances"),
])
def test_anything_else_is_an_error_quoting_the_line(text, match):
    with pytest.raises(NsysParseError, match=match) as err:
        nsys.parse_kernel_csv(text)
    assert "nsys" in str(err.value) and "\n" not in str(err.value)


ROW = ["50.0", "10", "1", "10", "10", "10", "10", "0", "k"]


def row(**changed) -> str:
    """HEADER and one row of it, with the cells at the given positions (c0..c8) changed."""
    cells = list(ROW)
    for key, value in changed.items():
        cells[int(key[1:])] = value
    return HEADER + "\n" + ",".join(f'"{c}"' for c in cells) + "\n"


@pytest.mark.parametrize("cells", [
    {"c2": "nan"}, {"c2": "inf"}, {"c2": "-inf"}, {"c2": "-1"}, {"c2": "1e400"}, {"c2": "9" * 400},
    {"c1": "nan"}, {"c1": "inf"}, {"c1": "-10"}, {"c3": "1e400"}, {"c0": "NaN"}, {"c6": "-Infinity"},
    {"c7": "nan"}, {"c4": "."}, {"c5": ""},
])
def test_numbers_that_are_not_finite_counts_or_times_are_errors_naming_the_line(cells):
    """Issue 11, item 8: nan / inf instances escaped as ValueError / OverflowError, nan times
    were read as kernels."""
    with pytest.raises(NsysParseError) as err:
        nsys.parse_kernel_csv(row(**cells), "t_cuda_gpu_kern_sum.csv")
    message = str(err.value)
    assert message.startswith("t_cuda_gpu_kern_sum.csv, line 2: ") and "\n" not in message
    (value,) = cells.values()
    assert repr(value)[:40] in message  # quoted (a long one cut short)


# ---------------------------------------------------------------------------- tables and summaries

@pytest.mark.parametrize("name, short", [
    ("ampere_sgemm_128x64_tn", "ampere_sgemm_128x64_tn"),
    (ELEMENTWISE, "elementwise_kernel<...>"),
    ("void (anonymous namespace)::softmax_warp_forward<float, float, float, 10, false>(float*, float const*, int)",
     "softmax_warp_forward<...>"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm *, unsigned long, ncclWork *)",
     "ncclDevKernel_AllReduce_Sum_f32_RING_LL"),
    ("bool operator<(a, b", "bool operator<(a, b"),  # unbalanced: left as it is
    ("k" * 80, "k" * 57 + "..."),
])
def test_short_names(name, short):
    assert nsys.short_name(name) == short


def test_summary_line_names_the_heaviest_kernels():
    kernels = nsys.parse_kernel_csv(A100.read_text())
    assert nsys.summary_line(kernels) == ("11 kernels (10368 launches), 137.7 ms on GPU; top: 62.2% "
                                          "ampere_sgemm_128x64_tn, 22.3% ampere_sgemm_32x128_tn, "
                                          "3.2% elementwise_kernel<...>")
    assert nsys.summary_line([]) == "no CUDA kernels recorded"


def test_kernel_table_keeps_full_names_and_counts_the_rest():
    kernels = nsys.parse_kernel_csv(A100.read_text())
    lines = nsys.kernel_table(list(reversed(kernels)), top=3).splitlines()  # ranked by time, not by input order
    assert lines[0].split() == ["Time", "%", "Total", "ms", "Instances", "Avg", "us", "Name"]
    assert lines[1].split()[:4] == ["62.2", "85.650", "1536", "55.76"] and lines[1].endswith("ampere_sgemm_128x64_tn")
    assert lines[3].endswith(ELEMENTWISE)
    assert lines[4] == "... and 8 more kernels, 16.925 ms"
    assert lines[5] == "11 kernels, 10368 launches, 137.742 ms on GPU"
    assert nsys.kernel_table([]) == "no CUDA kernels recorded\n"


# ---------------------------------------------------------------------------- finding nsys

def test_an_explicit_path_is_used_only_when_executable(tmp_path):
    tool = executable(tmp_path / "tools" / "nsys")
    assert nsys.find_nsys(str(tool), path_env="") == str(tool)
    plain = tmp_path / "plain-nsys"
    plain.write_text("not executable")
    assert nsys.find_nsys(str(plain), path_env="") is None
    assert nsys.find_nsys(str(tmp_path / "missing" / "nsys"), path_env="") is None
    assert nsys.find_nsys(str(tmp_path / "tools"), path_env="") is None  # a directory
    # an explicit path is never replaced by what a search would find
    assert nsys.find_nsys(str(plain), path_env=str(tool.parent)) is None


def test_an_explicit_bare_name_is_looked_up_on_path(tmp_path):
    tool = executable(tmp_path / "bin" / "nsys-2024")
    assert nsys.find_nsys("nsys-2024", path_env=str(tool.parent)) == str(tool)
    assert nsys.find_nsys("nsys-2024", path_env=str(tmp_path)) is None


def test_path_comes_before_the_install_locations(tmp_path):
    on_path = executable(tmp_path / "bin" / "nsys")
    executable(tmp_path / "opt" / "2024.5.1" / "bin" / "nsys")
    roots = [str(tmp_path / "opt" / "*" / "bin")]
    assert nsys.find_nsys(path_env=str(on_path.parent), roots=roots) == str(on_path)
    assert nsys.find_nsys(path_env=str(tmp_path / "empty"), roots=roots) == str(tmp_path / "opt/2024.5.1/bin/nsys")


def test_versioned_installs_newest_first(tmp_path):
    opt = tmp_path / "opt" / "nvidia" / "nsight-systems"
    for version in ("2023.4", "2024.5", "2024.5.1", "2023.4.4"):
        executable(opt / version / "bin" / "nsys")
    (opt / "2024.6.0" / "bin").mkdir(parents=True)  # no nsys in it
    (opt / "2025.1.1" / "bin").mkdir(parents=True)
    (opt / "2025.1.1" / "bin" / "nsys").write_text("not executable")
    roots = [str(opt / "*" / "bin")]
    assert nsys.find_nsys(path_env="", roots=roots) == str(opt / "2024.5.1" / "bin" / "nsys")


def test_versions_sort_as_numbers_not_as_text(tmp_path):
    for version in ("2024.9.2", "2024.10.1"):
        executable(tmp_path / f"cuda-12.4/nsight-systems-{version}/bin/nsys")
    executable(tmp_path / "cuda-11.8/nsight-systems-2025.1.1/bin/nsys")
    roots = [str(tmp_path / "cuda*" / "nsight-systems-*" / "bin")]
    assert nsys.find_nsys(path_env="", roots=roots) == str(tmp_path / "cuda-12.4/nsight-systems-2024.10.1/bin/nsys")


def test_cuda_home_comes_first_and_unset_variables_are_skipped(tmp_path, monkeypatch):
    cuda = executable(tmp_path / "cuda-home" / "bin" / "nsys")
    executable(tmp_path / "opt" / "2024.5.1" / "bin" / "nsys")
    roots = ["$CUDA_HOME/bin", str(tmp_path / "opt" / "*" / "bin")]
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda-home"))
    assert nsys.find_nsys(path_env="", roots=roots) == str(cuda)
    assert nsys.searched_locations(roots).startswith(f"{tmp_path / 'cuda-home'}/bin, ")
    monkeypatch.delenv("CUDA_HOME")
    assert nsys.find_nsys(path_env="", roots=roots) == str(tmp_path / "opt/2024.5.1/bin/nsys")
    assert nsys.searched_locations(roots).startswith("$CUDA_HOME/bin, ")
    # an empty variable is unset, not the root directory
    executable(tmp_path / "bin" / "nsys")
    monkeypatch.setenv("CUDA_HOME", "")
    assert nsys.find_nsys(path_env="", roots=[str(tmp_path) + "/${CUDA_HOME}/bin"]) is None


def test_the_default_search_covers_cuda_and_nsight_installs():
    where = nsys.searched_locations(nsys.SEARCH_ROOTS)
    for root in ("/usr/local/cuda/bin", "/usr/local/cuda-*/bin", "/opt/nvidia/nsight-systems/*/bin",
                 "/opt/nvidia/nsight-systems-cli/*/bin"):
        assert root in where


def test_unavailable_when_nsys_is_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    roots = [str(tmp_path / "opt" / "*" / "bin"), "/nonexistent/cuda/bin"]
    reason = Nsys(roots=roots, gpu_probe=lambda: True).unavailable_reason()
    assert reason == (f"nsys not found on PATH or in {tmp_path}/opt/*/bin, /nonexistent/cuda/bin "
                      f"(install Nsight Systems or pass --llmperf-nsys PATH)")
    missing = tmp_path / "nowhere" / "nsys"
    assert Nsys(str(missing), gpu_probe=lambda: True).unavailable_reason() == (
        f"nsys not found at {str(missing)!r} (--llmperf-nsys): not an executable file")


def test_unavailable_without_a_gpu(tmp_path):
    tool = executable(tmp_path / "nsys")
    assert Nsys(str(tool), gpu_probe=lambda: False).unavailable_reason() == (
        "no NVIDIA GPU on this node (no /dev/nvidia* device, and nvidia-smi -L lists none)")
    assert Nsys(str(tool), gpu_probe=lambda: True).unavailable_reason() is None
    assert nsys.gpu_reason(lambda: True) is None


def test_gpu_probe_device_nodes_then_nvidia_smi(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidiactl").write_text("")  # the control node alone is no GPU
    devices = str(dev / "nvidia[0-9]*")
    assert not nsys.nvidia_gpu_visible(devices, smi=str(tmp_path / "no-nvidia-smi"))
    listing = executable(tmp_path / "smi-a100", "#!/bin/sh\n[ \"$1\" = -L ] || exit 9\n"
                         "echo 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d3c0a1e-0000-0000-0000-000000000000)'\n")
    assert nsys.nvidia_gpu_visible(devices, smi=str(listing))
    empty = executable(tmp_path / "smi-none", "#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    assert not nsys.nvidia_gpu_visible(devices, smi=str(empty))
    (dev / "nvidia0").write_text("")
    assert nsys.nvidia_gpu_visible(devices, smi=str(empty))


def test_this_machine_gives_a_reason_or_none_consistently():
    reason = Nsys().unavailable_reason()
    if nsys.find_nsys() is None:
        assert isinstance(reason, str) and reason.startswith("nsys not found on PATH or in ")
        assert "--llmperf-nsys" in reason
    elif nsys.gpu_reason() is not None:
        assert reason == nsys.gpu_reason()
    else:
        assert reason is None


def test_create_passes_the_explicit_path(tmp_path):
    tool = executable(tmp_path / "nsys")
    profiler = profilers.create("nsys", profilers.ProfilerOptions(nsys=str(tool)))
    assert isinstance(profiler, Nsys) and profiler.path == str(tool)
    assert profiler.name == "nsys" and profiler.runs_default == 3


# ---------------------------------------------------------------------------- a fake nsys, end to end

FAKE_NSYS = r'''
import json, os, shutil, subprocess, sys

with open(CONFIG_PATH) as f:
    CONFIG = json.load(f)
args = sys.argv[1:]
with open(CONFIG["log"], "a") as log:
    log.write(json.dumps(args) + "\n")

def options(items):
    # --name=value or --name value, as nsys takes them
    found, items = {}, list(items)
    while items:
        item = items.pop(0)
        if not item.startswith("--"):
            sys.exit("fake nsys: not an option: %r" % item)
        if "=" in item:
            name, value = item.split("=", 1)
        else:
            name, value = item, items.pop(0)
        found[name] = value
    return found

if args[0] == "profile":
    cut = args.index("--")
    opts = options(args[1:cut])
    code = subprocess.call(args[cut + 1:])
    if CONFIG["ext"]:
        with open(opts["--output"] + CONFIG["ext"], "w") as f:
            f.write("fake report\n")
    sys.stderr.write(CONFIG.get("profile_stderr", ""))
    sys.exit(code if CONFIG.get("profile_exit") is None else CONFIG["profile_exit"])

if args[0] == "stats":
    opts = options(args[1:-1])
    if not os.path.isfile(args[-1]):
        sys.exit("fake nsys: no report %s" % args[-1])
    report = opts["--report"]
    action = CONFIG["stats"].get(report, "reject1")
    out = "%s_%s.csv" % (opts["--output"], report)
    if action.startswith("csv:"):
        print("Processing [%s] with [%s.py]... " % (args[-1], report))
        shutil.copyfile(action[4:], out)
    elif action == "skip":
        with open(CONFIG["skipped"]) as f:
            sys.stdout.write(f.read())
    elif action == "garbage":
        with open(out, "w") as f:
            f.write("this is not a kernel table\n")
    elif action == "reject0":
        print("ERROR: Report '%s' could not be found." % report)
    else:
        sys.stderr.write("ERROR: Report '%s' could not be found.\n" % report)
        sys.exit(1)
    sys.exit(0)
sys.exit("fake nsys: unknown command %r" % args[0])
'''


def fake_nsys(tmp_path: Path, ext: str | None = ".nsys-rep", stats: dict | None = None, **extra) -> Path:
    config = {"log": str(tmp_path / "nsys-calls.log"), "ext": ext, "skipped": str(DATA / "no_kernel_data.txt"),
              "stats": {"cuda_gpu_kern_sum": f"csv:{A100}"} if stats is None else stats, **extra}
    (tmp_path / "fake-nsys.json").write_text(json.dumps(config))
    script = f"#!{sys.executable}\nCONFIG_PATH = {str(tmp_path / 'fake-nsys.json')!r}\n" + FAKE_NSYS
    return executable(tmp_path / "fake" / "nsys", script)


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "nsys-calls.log").read_text().splitlines()]


def child(tmp_path: Path, code: int = 0) -> list[str]:
    """A profiled command that leaves a mark, says something on stderr and exits with ``code``."""
    mark = tmp_path / "child-ran"
    return [sys.executable, "-c",
            f"import sys; open({str(mark)!r}, 'w').write(' '.join(sys.argv[1:])); "
            f"sys.stderr.write('decoding 64 tokens\\n'); sys.exit({code})", "--steps", "64"]


def profiler(tool: Path) -> Nsys:
    return Nsys(str(tool), gpu_probe=lambda: True)


def test_profile_and_stats_give_kernel_time_and_launches(tmp_path):
    tool = fake_nsys(tmp_path)
    out = tmp_path / "artifacts"
    argv = child(tmp_path)
    profile = base.run(profiler(tool), argv, out, tag="decode-1")

    assert (tmp_path / "child-ran").read_text() == "--steps 64"
    profile_call, stats_call = calls(tmp_path)
    assert profile_call == ["profile", "--trace=cuda,nvtx", "--sample=none", "--cpuctxsw=none",
                            "--force-overwrite=true", "--output", str(out / "decode-1"), "--", *argv]
    assert stats_call == ["stats", "--report", "cuda_gpu_kern_sum", "--format", "csv", "--force-export=true",
                          "--output", str(out / "decode-1"), str(out / "decode-1.nsys-rep")]

    assert profile.kind == "nsys"
    gpu, launches = profile.readings
    assert gpu == base.Reading("nsys.gpu_kernel_ms", pytest.approx(A100_TOTAL_NS / 1e6), "ms", higher_is_better=False)
    assert gpu.gate and not gpu.exact
    assert launches == base.Reading("nsys.kernel_launches", A100_LAUNCHES, "", False, gate=False)
    assert profile.files == [out / "decode-1.nsys-rep", out / "decode-1_cuda_gpu_kern_sum.csv",
                             out / "decode-1-kernels.txt"]
    assert all(f.is_file() for f in profile.files)
    table = (out / "decode-1-kernels.txt").read_text()
    assert ELEMENTWISE in table and "... and 1 more kernels, 0.098 ms" in table
    assert profile.summary.startswith("11 kernels (10368 launches), 137.7 ms on GPU; top: 62.2% ampere_sgemm_128x64_tn")
    assert profile.details["report"] == "cuda_gpu_kern_sum"
    kernels = profile.details["kernels"]
    assert len(kernels) == 10 and kernels[0]["name"] == "ampere_sgemm_128x64_tn" and kernels[0]["instances"] == 1536
    assert kernels[0]["med_ns"] == 55_102 and kernels[-1]["total_ns"] == 262_144
    json.dumps(profile.details)  # goes into the JSON report as it is

    again = base.run(profiler(tool), argv, out, tag="decode-1")  # the same tag again: files replaced
    assert again.readings == profile.readings and len(calls(tmp_path)) == 4


@pytest.mark.parametrize("rejection", ["reject1", "reject0"])
def test_older_nsys_qdrep_and_gpukernsum(tmp_path, rejection):
    tool = fake_nsys(tmp_path, ext=".qdrep",
                     stats={"cuda_gpu_kern_sum": rejection, "gpukernsum": f"csv:{DATA / 'gpukernsum_2021.csv'}"})
    out = tmp_path / "artifacts"
    profile = base.run(profiler(tool), child(tmp_path), out, tag="old")
    reports = [c[2] for c in calls(tmp_path)[1:]]
    assert reports == ["cuda_gpu_kern_sum", "gpukernsum"]
    assert calls(tmp_path)[2][-1] == str(out / "old.qdrep")
    assert profile.files == [out / "old.qdrep", out / "old_gpukernsum.csv", out / "old-kernels.txt"]
    assert profile.readings[0].value == pytest.approx(126.017472)
    assert profile.readings[1].value == 4096
    assert profile.details["report"] == "gpukernsum" and profile.details["kernels"][0]["med_ns"] is None
    assert "gpukernsum of old.qdrep" in (out / "old-kernels.txt").read_text()


def test_stats_failing_under_both_report_names_is_an_error(tmp_path):
    tool = fake_nsys(tmp_path, stats={})
    with pytest.raises(base.ProfilerError) as err:
        base.run(profiler(tool), child(tmp_path), tmp_path / "out", tag="t")
    first, *said = str(err.value).splitlines()
    assert first == (f"nsys: nsys stats failed on the report {tmp_path / 'out' / 't.nsys-rep'}: "
                     f"--report cuda_gpu_kern_sum exited with code 1, --report gpukernsum exited with code 1; it said:")
    assert said == ["[cuda_gpu_kern_sum] ERROR: Report 'cuda_gpu_kern_sum' could not be found.",
                    "[gpukernsum] ERROR: Report 'gpukernsum' could not be found."]


def test_no_kernels_no_readings(tmp_path):
    tool = fake_nsys(tmp_path, stats={"cuda_gpu_kern_sum": "skip"})
    out = tmp_path / "out"
    profile = base.run(profiler(tool), child(tmp_path), out, tag="cpu-only")
    assert profile.readings == [] and profile.summary == "no CUDA kernels recorded"
    assert profile.files == [out / "cpu-only.nsys-rep", out / "cpu-only-kernels.txt"]
    assert "no CUDA kernels recorded" in (out / "cpu-only-kernels.txt").read_text()
    assert profile.details == {"report": "cuda_gpu_kern_sum", "kernels": []}
    assert len(calls(tmp_path)) == 2  # skipped for want of kernels: no retry under the old name


def test_the_profiled_command_failing(tmp_path):
    tool = fake_nsys(tmp_path)
    with pytest.raises(base.ProfilerError) as err:
        base.run(profiler(tool), child(tmp_path, code=3), tmp_path / "out", tag="t")
    message = str(err.value)
    name = Path(sys.executable).name
    assert message.splitlines()[0] == f"nsys: {name} under nsys exited with code 3; stderr ends with:"
    assert "decoding 64 tokens" in message
    assert len(calls(tmp_path)) == 1  # no stats of a failed run


def test_nsys_failing_without_a_report(tmp_path):
    tool = fake_nsys(tmp_path, ext=None, profile_exit=1,
                     profile_stderr="Error: the CUDA driver could not be loaded\n")
    with pytest.raises(base.ProfilerError) as err:
        base.run(profiler(tool), child(tmp_path), tmp_path / "out", tag="t")
    assert str(err.value) == (f"nsys: nsys profile exited with code 1 and wrote no report {tmp_path / 'out' / 't'}"
                              f".nsys-rep; stderr ends with:\ndecoding 64 tokens\n"
                              f"Error: the CUDA driver could not be loaded")


def test_a_stale_report_does_not_pass_for_a_missing_one(tmp_path):
    tool = fake_nsys(tmp_path, ext=None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.nsys-rep").write_text("from an earlier run")
    (out / "t_cuda_gpu_kern_sum.csv").write_text(A100.read_text())
    with pytest.raises(base.ProfilerError, match=r"^nsys: nsys profile exited 0 but wrote no report .*t\.nsys-rep"):
        base.run(profiler(tool), child(tmp_path), out, tag="t")
    assert not (out / "t.nsys-rep").exists() and not (out / "t_cuda_gpu_kern_sum.csv").exists()


def test_an_unreadable_kernel_table_is_an_error_naming_nsys_stats(tmp_path):
    tool = fake_nsys(tmp_path, stats={"cuda_gpu_kern_sum": "garbage"})
    out = tmp_path / "out"
    with pytest.raises(base.ProfilerError) as err:
        base.run(profiler(tool), child(tmp_path), out, tag="t")
    assert str(err.value) == (f"nsys: cannot read {out / 't_cuda_gpu_kern_sum.csv'}: no kernel table (a header "
                              f"with Time (%) and Name) in the nsys stats output; it starts with "
                              f"'this is not a kernel table'")


def collect_table(tmp_path: Path, text: str) -> base.Profile:
    """Nsys.collect on a kernel table, nsys stats left out."""
    (tmp_path / "t.nsys-rep").write_text("report")
    (tmp_path / "t_cuda_gpu_kern_sum.csv").write_text(text)
    profiler = Nsys("/bin/true", gpu_probe=lambda: True)
    profiler._stats = lambda outdir, tag, report: (tmp_path / "t_cuda_gpu_kern_sum.csv", text, "cuda_gpu_kern_sum")
    return profiler.collect(tmp_path, "t", base.Completed(["nsys", "profile", "--", "prog"], 0, "", "", 0.1))


def test_a_kernel_time_of_zero_is_informational(tmp_path):
    """Issue 11, item 9: llmperf.record rejects a zero in a gated metric."""
    gpu, launches = collect_table(tmp_path, row(c1="0", c3="0", c4="0", c5="0", c6="0")).readings
    assert gpu.name == "nsys.gpu_kernel_ms" and gpu.value == 0 and not gpu.gate
    assert gpu.note == base.zero_note("nsys.gpu_kernel_ms")
    assert launches.value == 1 and not launches.gate


@pytest.mark.parametrize("cells, metric", [({"c2": "1" + "0" * 18}, "nsys.kernel_launches"),
                                           ({"c2": "1e300"}, "nsys.kernel_launches"),
                                           ({"c1": "1e300"}, "nsys.gpu_kernel_ms"),
                                           ({"c1": "1e308", "c8": "a"}, "nsys.gpu_kernel_ms")])
def test_counts_and_times_of_1e18_or_more_are_errors(tmp_path, cells, metric):
    """Issue 11, item 9: llmperf.record rejects a sample of 1e18 or more; nsys never counts that."""
    text = row(**cells) + ('"50.0","1e308","1","1","1","1","1","0","b"\n' if "c8" in cells else "")
    with pytest.raises(base.ProfilerError) as err:
        collect_table(tmp_path, text)
    message = str(err.value)
    assert message.startswith(f"nsys: {tmp_path / 't_cuda_gpu_kern_sum.csv'}: {metric} read ") and "\n" not in message


def test_run_refuses_before_running_anything(tmp_path):
    with pytest.raises(base.ProfilerUnavailable, match=r"^nsys: nsys not found at .*nowhere/nsys"):
        base.run(Nsys(str(tmp_path / "nowhere" / "nsys"), gpu_probe=lambda: True), child(tmp_path), tmp_path / "o")
    tool = fake_nsys(tmp_path)
    with pytest.raises(base.ProfilerUnavailable, match=r"^nsys: no NVIDIA GPU on this node"):
        base.run(Nsys(str(tool), gpu_probe=lambda: False), child(tmp_path), tmp_path / "o")
    assert not (tmp_path / "child-ran").exists() and not (tmp_path / "nsys-calls.log").exists()
