"""Behaviour of pytest_llmperf.torch_models.device on this (CPU) machine, with a simulated CUDA
torch where the GPU paths decide only from what torch reports."""

from __future__ import annotations

import math
import os
import time

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.measure import MeasureSettings, run_rounds  # noqa: E402
from pytest_llmperf.torch_models import device as dev  # noqa: E402
from pytest_llmperf.torch_models import devsel, peaks, probes  # noqa: E402

MB = 1000 * 1000


@pytest.fixture
def fake_cuda(monkeypatch):
    """Make torch look like a CUDA build that sees ``count`` GPUs (set through the returned
    function); nothing here touches a real GPU."""

    def install(count: int) -> None:
        monkeypatch.setattr(torch.version, "cuda", "12.4", raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return install


@pytest.fixture
def fresh_dtype_cache():
    dev.clear_dtype_cache()
    yield
    dev.clear_dtype_cache()


# ---------------------------------------------------------------- devices


def test_auto_is_cpu_without_accelerators(monkeypatch):
    if torch.cuda.is_available() or devsel._mps_available():
        pytest.skip("this machine has an accelerator")
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:3"])
def test_cuda_on_this_machine_is_unavailable_and_says_why(spec):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(dev.DeviceUnavailable) as info:
        dev.resolve_device(spec)
    message = str(info.value)
    assert f"device '{spec}' is not available: " in message
    assert "\n" not in message
    if torch.version.cuda is None and torch.version.hip is None:
        assert f"torch {torch.__version__} is a CPU-only build" in message


@pytest.mark.parametrize("spec", ["foo", "cuda:x", "cpu:0", "gpu", "cuda:-1", ""])
def test_unknown_device_text(spec):
    with pytest.raises(ValueError, match=r"unknown device .* \(use auto, cpu, cuda, cuda:N or mps\)"):
        dev.resolve_device(spec)


def test_simulated_cuda_counts_gpus(fake_cuda):
    fake_cuda(1)
    assert dev.gpu_count() == 1
    assert dev.resolve_device("cuda:0") == torch.device("cuda", 0)
    assert dev.resolve_device("cuda").type == "cuda"
    assert dev.resolve_device("auto").type == "cuda"
    with pytest.raises(dev.DeviceUnavailable, match=r"^device 'cuda:3' is not available: this node has 1 CUDA GPU$"):
        dev.resolve_device("cuda:3")
    fake_cuda(2)
    with pytest.raises(dev.DeviceUnavailable, match=r"this node has 2 CUDA GPUs$"):
        dev.resolve_device("cuda:2")


def test_simulated_cuda_build_without_gpus(fake_cuda, monkeypatch):
    fake_cuda(0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert dev.gpu_count() == 0
    with pytest.raises(dev.DeviceUnavailable, match=r"^device 'cuda' is not available: torch sees no CUDA GPU$"):
        dev.resolve_device("cuda")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(dev.DeviceUnavailable, match=r"CUDA_VISIBLE_DEVICES=''"):
        dev.resolve_device("cuda:0")
    if not devsel._mps_available():
        assert dev.resolve_device("auto") == torch.device("cpu")


def test_gpu_count_on_a_cpu_build_does_not_ask_cuda(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None, raising=False)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)

    def forbidden():
        raise AssertionError("CUDA was queried")

    monkeypatch.setattr(torch.cuda, "device_count", forbidden)
    monkeypatch.setattr(torch.cuda, "is_available", forbidden)
    assert dev.gpu_count() == 0
    with pytest.raises(dev.DeviceUnavailable, match="CPU-only build|built without CUDA"):
        dev.resolve_device("cuda")


def test_mps_unavailable_here():
    if devsel._mps_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(dev.DeviceUnavailable, match=r"^device 'mps' is not available: "):
        dev.resolve_device("mps")


def test_device_name_and_memory_on_cpu():
    name = dev.device_name(torch.device("cpu"))
    assert isinstance(name, str) and name.strip()
    free = dev.available_memory("cpu")
    assert free is not None and free > 0
    assert dev.synchronize("cpu") is None


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    "name, dtype, short",
    [("fp32", torch.float32, "fp32"), ("FLOAT32", torch.float32, "fp32"), ("bf16", torch.bfloat16, "bf16"),
     ("BFloat16", torch.bfloat16, "bf16"), ("fp16", torch.float16, "fp16"), ("float16", torch.float16, "fp16"),
     ("torch.bfloat16", torch.bfloat16, "bf16")],
)
def test_resolve_dtype_names(name, dtype, short):
    assert dev.resolve_dtype(name) is dtype
    assert dev.dtype_name(dtype) == short


def test_resolve_dtype_unknown_lists_the_names():
    with pytest.raises(ValueError) as info:
        dev.resolve_dtype("int8")
    message = str(info.value)
    assert "'int8'" in message
    for known in ("fp32", "float32", "bf16", "bfloat16", "fp16", "float16"):
        assert known in message


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_check_dtype_on_cpu(dtype, fresh_dtype_cache):
    assert dev.check_dtype(torch.device("cpu"), dtype) is None
    assert dev.check_dtype("cpu", dtype) is None  # cached, and a string device is fine


def test_check_dtype_failure_becomes_dtype_unsupported(monkeypatch, fresh_dtype_cache):
    def broken(*args, **kwargs):
        raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'\nsecond line of detail")

    monkeypatch.setattr(torch, "matmul", broken)
    with pytest.raises(dev.DtypeUnsupported) as info:
        dev.check_dtype(torch.device("cpu"), torch.float16)
    message = str(info.value)
    assert "fp16" in message and "cpu" in message
    assert "not implemented for 'Half'" in message
    assert "second line" not in message
    monkeypatch.undo()
    # the verdict is cached per (device, dtype) until the cache is cleared
    with pytest.raises(dev.DtypeUnsupported):
        dev.check_dtype(torch.device("cpu"), torch.float16)
    dev.clear_dtype_cache()
    dev.check_dtype(torch.device("cpu"), torch.float16)


def test_check_dtype_autocast_that_stays_fp32_is_unsupported(monkeypatch, fresh_dtype_cache):
    import contextlib

    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())
    with pytest.raises(dev.DtypeUnsupported, match=r"dtype bf16 is not supported on device cpu: autocast"):
        dev.check_dtype("cpu", torch.bfloat16)


# ---------------------------------------------------------------- timing


def test_step_sampler_times_a_sleeping_step():
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.005)

    sample = dev.step_sampler(step, torch.device("cpu"), steps_per_round=3)
    started = time.perf_counter()
    per_step, wall, cpu = sample()
    outside = time.perf_counter() - started
    assert len(calls) == 3
    # sleeps last at least what they ask; how much longer is this machine's load, so the upper
    # bound is the time of the whole call, measured around it
    assert per_step >= 0.005 and 3 * 0.005 <= wall <= outside
    assert math.isclose(wall, per_step * 3)
    assert cpu is None


def test_step_sampler_plugs_into_run_rounds():
    calls = []
    sample = dev.step_sampler(lambda: calls.append(1), "cpu", steps_per_round=2)
    m = run_rounds(sample, MeasureSettings(warmup=1, min_rounds=3, max_time=0.05, probe=False))
    assert len(m.samples) >= 3
    assert len(calls) == 2 * m.rounds_total
    assert all(s >= 0 for s in m.samples)


def test_step_sampler_rejects_zero_steps():
    with pytest.raises(ValueError):
        dev.step_sampler(lambda: None, "cpu", steps_per_round=0)


# ---------------------------------------------------------------- memory

STATUS_TEXT = """Name:\tpython3
Umask:\t0022
State:\tR (running)
VmPeak:\t 2081364 kB
VmSize:\t 2016852 kB
VmLck:\t       0 kB
VmHWM:\t  574016 kB
VmRSS:\t  373848 kB
RssAnon:\t  301560 kB
VmSwap:\t       0 kB
Threads:\t2
"""


def test_parse_vmhwm():
    assert dev.parse_vmhwm(STATUS_TEXT) == 574016 * 1024
    assert dev.parse_status_kb(STATUS_TEXT, "VmRSS") == 373848 * 1024
    assert dev.parse_vmhwm("Name:\tx\nVmRSS:\t 10 kB\n") is None
    assert dev.parse_vmhwm("") is None


def _touch_200mb() -> None:
    """200 MB made resident and given back to the kernel. An anonymous mapping rather than a
    tensor: whether freed tensor memory leaves the process is the allocator's choice (glibc unmaps
    a block this big, jemalloc or tcmalloc, often preloaded for torch, keep it), and these tests
    are about the peak-RSS bookkeeping, not the allocator."""
    import mmap

    page = mmap.PAGESIZE
    size = -(-200 * MB // page) * page  # whole pages
    with mmap.mmap(-1, size) as area:
        for offset in range(0, size, page):  # one byte per page is enough to make it resident
            area[offset] = 1
        assert area[size - page] == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_peak_memory_on_cpu_resets_between_blocks():
    with dev.PeakMemory(torch.device("cpu")) as big:
        _touch_200mb()
    with dev.PeakMemory(torch.device("cpu")) as small:
        pass
    assert big.peak_bytes is not None and small.peak_bytes is not None
    if big.kind != "process peak RSS":
        pytest.skip(f"clear_refs is not permitted here ({big.kind}); the fallback has its own test")
    # the big block saw its 200 MB; the small block, after the reset, did not inherit it
    assert big.delta_bytes >= 190 * MB
    assert big.peak_bytes - small.peak_bytes >= 190 * MB
    assert small.delta_bytes < 50 * MB


def test_peak_memory_falls_back_to_lifetime_peak(monkeypatch):
    real_open = os.open

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith("clear_refs"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with dev.PeakMemory("cpu") as first:
        _touch_200mb()
    with dev.PeakMemory("cpu") as second:
        pass
    assert "lifetime" in first.kind and first.kind.startswith("process peak RSS")
    assert first.peak_bytes >= first.start_bytes + 190 * MB
    # a lifetime peak never goes down: the second block inherits the first one's peak
    assert second.peak_bytes >= first.peak_bytes


# ---------------------------------------------------------------- out of memory


@pytest.mark.parametrize(
    "exc",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                     "you tried to allocate 1073741824 bytes."),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes."),
        RuntimeError("MPS backend out of memory (MPS allocated: 17 GB)"),
        MemoryError(),
    ],
)
def test_is_oom_recognises_allocator_failures(exc):
    assert dev.is_oom(exc)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x5 and 6x7)"),
        KeyError("out of memory"),
        ValueError("bad"),
    ],
)
def test_is_oom_rejects_other_errors(exc):
    assert not dev.is_oom(exc)


def test_is_oom_follows_the_cause():
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise RuntimeError("training step failed") from inner
    except RuntimeError as outer:
        assert dev.is_oom(outer)


def test_real_cpu_allocation_failure_is_oom_and_recoverable():
    with pytest.raises(RuntimeError) as info:
        torch.empty(1 << 60, dtype=torch.uint8)
    assert dev.is_oom(info.value)
    assert dev.recover(torch.device("cpu")) is None
    assert torch.ones(4).sum().item() == 4.0


# ---------------------------------------------------------------- peak tables

H100_SXM_NAMES = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB", "NVIDIA H100"]


@pytest.mark.parametrize("name", H100_SXM_NAMES)
def test_h100_sxm_name_variants(name):
    assert dev.gpu_model(name) == "H100 SXM"
    assert dev.table_peak_flops(name, torch.bfloat16) == pytest.approx(989.4e12)
    assert dev.table_peak_flops(name, "fp16") == pytest.approx(989.4e12)
    assert dev.table_peak_flops(name, torch.float32) == pytest.approx(67e12)
    assert dev.table_peak_flops(name, "tf32") == pytest.approx(494.7e12)
    assert dev.table_bandwidth(name) == 3350


@pytest.mark.parametrize(
    "name, model, bf16, bandwidth",
    [
        ("NVIDIA H100 PCIe", "H100 PCIe", 756e12, 2000),
        ("NVIDIA H100 NVL", "H100 NVL", 835.5e12, 3900),
        ("NVIDIA H200", "H200", 989.4e12, 4800),
        ("NVIDIA GH200 480GB", "GH200", 989.4e12, 4000),
        ("NVIDIA A100-SXM4-40GB", "A100", 312e12, 1555),
        ("NVIDIA A100-PCIE-40GB", "A100", 312e12, 1555),
        ("NVIDIA A100-SXM4-80GB", "A100", 312e12, 2039),
        ("NVIDIA A100 80GB PCIe", "A100", 312e12, 1935),
        ("NVIDIA A10", "A10", 125e12, 600),
        ("NVIDIA A10G", "A10G", 125e12, 600),
        ("NVIDIA L4", "L4", 121e12, 300),
        ("NVIDIA L40S", "L40S", 362e12, 864),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2e12, 1008),
        ("NVIDIA GeForce RTX 3090", "RTX 3090", 71e12, 936),
    ],
)
def test_table_lookups(name, model, bf16, bandwidth):
    assert dev.gpu_model(name) == model
    assert dev.table_peak_flops(name, torch.bfloat16) == pytest.approx(bf16)
    assert dev.table_bandwidth(name) == bandwidth


def test_a100_fp32_versus_tf32_and_gpus_without_bf16():
    assert dev.table_peak_flops("NVIDIA A100-SXM4-80GB", torch.float32) == pytest.approx(19.5e12)
    assert dev.table_peak_flops("NVIDIA A100-SXM4-80GB", "tf32") == pytest.approx(156e12)
    assert dev.table_peak_flops("Tesla V100-SXM2-16GB", torch.bfloat16) is None
    assert dev.table_peak_flops("Tesla V100-SXM2-16GB", torch.float16) == pytest.approx(125e12)
    assert dev.table_peak_flops("Tesla T4", "tf32") is None
    assert dev.table_peak_flops("Tesla T4", "fp16") == pytest.approx(65e12)


def test_unknown_gpu_has_no_table_entry():
    assert dev.gpu_model("AMD Instinct MI300X") is None
    assert dev.table_peak_flops("AMD Instinct MI300X", torch.bfloat16) is None
    assert dev.table_bandwidth("AMD Instinct MI300X") is None
    value, source = dev.peak_flops_for(torch.device("cuda", 0), torch.bfloat16, gpu_name="Mystery GPU")
    assert value is None and "Mystery GPU" in source


def test_peak_flops_for_follows_the_tf32_setting(monkeypatch):
    h100 = "NVIDIA H100 80GB HBM3"
    cuda0 = torch.device("cuda", 0)
    value, source = dev.peak_flops_for(cuda0, torch.bfloat16, gpu_name=h100)
    assert value == pytest.approx(989.4e12)
    assert source == "table: NVIDIA H100 80GB HBM3 bf16 dense 989 TFLOP/s"

    monkeypatch.setattr(peaks, "tf32_matmul_enabled", lambda: False)
    value, source = dev.peak_flops_for(cuda0, torch.float32, gpu_name=h100)
    assert value == pytest.approx(67e12) and " fp32 dense 67 TFLOP/s" in source

    monkeypatch.setattr(peaks, "tf32_matmul_enabled", lambda: True)
    value, source = dev.peak_flops_for(cuda0, torch.float32, gpu_name=h100)
    assert value == pytest.approx(494.7e12) and " tf32 dense 495 TFLOP/s" in source
    # a GPU without TF32 keeps its fp32 rate
    value, _ = dev.peak_flops_for(cuda0, torch.float32, gpu_name="Tesla V100-SXM2-32GB")
    assert value == pytest.approx(15.7e12)

    assert dev.peak_flops_for(torch.device("cpu"), torch.float32)[0] is None


def test_tf32_setting_detection():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert dev.tf32_matmul_enabled() is False
        torch.set_float32_matmul_precision("high")
        assert dev.tf32_matmul_enabled() is True
    finally:
        torch.set_float32_matmul_precision(before)


# ---------------------------------------------------------------- probes


@pytest.mark.parametrize("dtype", ["fp32", torch.bfloat16])
def test_matmul_probe_on_cpu_is_plausible(dtype):
    # a rate is this machine's speed (a bf16 matmul on a CPU without bf16 instructions is slow):
    # here only that it is one; the formula is checked with a fixed time below
    flops = dev.matmul_probe(torch.device("cpu"), dtype, size=256, min_time=0.02)
    assert math.isfinite(flops) and flops > 0


def test_matmul_probe_counts_two_n_cubed_per_call(monkeypatch):
    timed = []

    def fixed_time(fn, device, min_time):
        fn()
        timed.append(min_time)
        return 0.004

    monkeypatch.setattr(probes, "_best_time", fixed_time)
    assert dev.matmul_probe("cpu", "fp32", size=96, min_time=0.5) == pytest.approx(2 * 96**3 / 0.004)
    assert timed == [0.5]


def test_torch_read_bandwidth_on_cpu():
    result = dev.torch_read_bandwidth("cpu", nbytes=16 * 1024 * 1024, passes=3)
    assert result["bytes"] == 16 * 1024 * 1024
    assert result["passes"] == 3
    assert result["read_GBps"] > 0 and math.isfinite(result["read_GBps"])
    assert isinstance(result["method"], str) and "sum" in result["method"]
