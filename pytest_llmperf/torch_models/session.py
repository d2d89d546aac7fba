"""What the torch benchmarks of one pytest process share: the parsed options, the device (resolved
once), the node's matmul peak and memory bandwidth (measured once), and the machine-speed probe of
CPU rounds. Loading this module imports pytest only; torch when a test first needs it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..api import fail
from .options import TorchOptions

if TYPE_CHECKING:
    import torch

TORCH_MISSING = "torch is not installed: pip install 'pytest-llmperf[torch]'"
# what the CPU rounds are divided by (see mm_probe); stored with the baseline, never mixed
PROBE_KIND = "torch-mm512"
PROBE_SIZE = 512


class TorchSession:
    """The torch state of one pytest process, kept in ``config.stash[SESSION]``."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.device_spec = options(config).device
        self._device: torch.device | None = None
        self._device_error: str | None = None
        self._peaks: dict[str, tuple[float | None, str]] = {}
        self._bandwidth: dict[str, Any] | None = None  # read_GBps and source, set by TorchDecode.bandwidth

    def device(self) -> torch.device:
        """The torch.device, or fail (a device asked for by name that is not there)."""
        if self._device is None and self._device_error is None:
            from .device import DeviceUnavailable, resolve_device

            try:
                self._device = resolve_device(self.device_spec)
            except (DeviceUnavailable, ValueError) as exc:
                self._device_error = f"llmperf: --llmperf-device: {exc}"
            threads = torch_threads(self.config)
            if threads:
                import torch

                torch.set_num_threads(threads)
        if self._device_error:
            fail(self._device_error)
        assert self._device is not None
        return self._device

    def peak_flops(self, device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
        """The FLOP/s that MFU is measured against: the datasheet figure of a known GPU, else what
        a large matmul achieves on this device in that dtype (measured once per session)."""
        from .device import dtype_name, matmul_probe, peak_flops_for

        key = f"{device}:{dtype_name(dtype)}"
        if key not in self._peaks:
            peak: float | None = None
            source = ""
            if device.type == "cuda":
                peak, source = peak_flops_for(device, dtype)
            if not peak:
                achieved = matmul_probe(device, dtype)
                peak, source = achieved, (f"MFU against a {dtype_name(dtype)} matmul probe on {device} "
                                          f"({achieved / 1e9:.1f} GFLOP/s), not a datasheet peak")
            self._peaks[key] = (peak, source)
        return self._peaks[key]


    def bandwidth(self, device: torch.device) -> tuple[float | None, str]:
        """The node's memory read bandwidth in GB/s and where it comes from: on CPU the compiled
        probe shared with the llama2.c suite (kept in the cache and in node-info.json); on a GPU a
        reduction over a buffer far larger than its L2, measured once per session. Used by the
        decode suite's MBU and both suites' roofline predictions."""
        sess = self
        if sess._bandwidth is None:
            if device.type == "cpu":
                from ..api import session as core_session

                try:
                    entry = core_session(self.config).bandwidth()
                    sess._bandwidth = {"read_GBps": entry["read_GBps"],
                                       "source": f"{entry['read_GBps']:.1f} GB/s ({entry.get('method', 'bwprobe')}, "
                                                 f"{entry.get('bytes', 0) / 2**30:.1f} GiB buffer)"}
                except Exception as exc:
                    sess._bandwidth = {"read_GBps": None, "source": f"unknown: {exc}"}
            else:
                from .device import device_name, table_bandwidth, torch_read_bandwidth

                entry = torch_read_bandwidth(device)
                table = table_bandwidth(device_name(device)) if device.type == "cuda" else None
                source = (f"{entry['read_GBps']:.0f} GB/s measured ({entry['bytes'] / 2**30:.1f} GiB buffer)"
                          + (f"; datasheet {table:.0f} GB/s" if table else ""))
                sess._bandwidth = {"read_GBps": entry["read_GBps"], "source": source}
        return sess._bandwidth["read_GBps"], sess._bandwidth["source"]


OPTIONS_KEY: pytest.StashKey[TorchOptions] = pytest.StashKey()  # parsed once, by plugin.pytest_configure
SESSION: pytest.StashKey[TorchSession] = pytest.StashKey()


def options(config: pytest.Config) -> TorchOptions:
    """The torch options of this run (parsed at configure time)."""
    from ..api import feature_options

    return feature_options(config, OPTIONS_KEY, "llmperf-torch")


def torch_threads(config: pytest.Config) -> int | None:
    """The CPU threads torch computes with (``--llmperf-torch-threads``); None: torch's own."""
    return options(config).threads


def session(config: pytest.Config) -> TorchSession:
    """The torch session of this run, made when first asked for."""
    if SESSION not in config.stash:
        config.stash[SESSION] = TorchSession(config)
    return config.stash[SESSION]


def need_torch() -> Any:
    """The torch module, or skip the test with the reason (torch is an extra)."""
    try:
        import torch
    except ImportError:
        pytest.skip(TORCH_MISSING)
    return torch


def mm_probe(device: torch.device) -> Callable[[], float]:
    """The machine-speed probe of CPU rounds: the best of three pairs of 512 x 512 float32
    matmuls (about 10 ms here), timed before every round and after the last, on the threads torch
    computes with. The Python probe of the core does not follow native code on a shared machine;
    a matmul in MKL/oneDNN follows the CPU speed that the benchmark's kernels get. (A 256 x 256
    probe, 4x shorter, widened the verdict's interval to about +-25% here; see bench/torch_gate.py.)"""
    import torch

    n = PROBE_SIZE
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    b = torch.randn(n, n, generator=torch.Generator().manual_seed(1))
    out = torch.empty(n, n)

    def probe() -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(2):
                torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
        return best

    probe()
    return probe
