"""What the ``torch_lm`` and ``torch_decode`` fixtures share: the timed rounds (and the probe of CPU
rounds), peak memory, out-of-memory, the PyTorch profiler and the process profilers. Loading this
module imports pytest only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ..api import fail
from .session import PROBE_KIND, TorchSession, mm_probe, session, torch_threads

if TYPE_CHECKING:
    import torch

    from ..measure import Measurement
    from .memory import PeakMemory

T = TypeVar("T")


def first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (a CUDA OOM message runs on)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Bench:
    """Shared by the two fixtures: the rounds, the probe, memory, OOM and the profilers."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        self.session: TorchSession = session(request.config)
        self.recorder = request.getfixturevalue("llmperf")

    @property
    def device(self) -> torch.device:
        return self.session.device()

    def _normalize(self, device: torch.device) -> str:
        # GPU rounds are timed with events on the device, whose speed the host's load does not
        # change; CPU rounds are divided by the matmul probe unless the user turned that off
        if self.recorder.normalize == "off" or device.type != "cpu":
            return "off"
        return "on"

    def rounds(self, name: str, unit: str, higher: bool, sample: Callable[[], tuple[float, float, float | None]],
               per_round: float, device: torch.device) -> Measurement:
        """run_rounds over ``sample`` with this test's settings, the budget stretched so that a
        slow step still gets its minimum rounds and a warm-up; records ``name`` (gated)."""
        from dataclasses import replace

        from ..measure import run_rounds

        normalize = self._normalize(device)
        probe = mm_probe(device) if normalize == "on" else None
        settings = self.recorder.settings_for(name, probe=probe is not None)
        factor = 3 if not settings.adaptive else 1
        settings = replace(settings, max_time=max(settings.max_time, factor * (settings.min_rounds + 4) * per_round))
        m = run_rounds(sample, settings, decisive=self.recorder.decisive_for(name, unit, higher, normalize, PROBE_KIND),
                       probe_fn=probe)
        self.recorder.record_rounds(name, m, unit, higher, normalize=normalize, probe_kind=PROBE_KIND)
        return m

    def record_prediction(self, what: str, metric: str, pred_name: str, samples: list[float],
                          predict: Callable[[Any], Any]) -> None:
        """The roofline's prediction of ``metric`` (recorded already): ``predict`` gets the run's
        roofline.node.Assumption and returns a roofline.node.Prediction in the metric's unit.
        Records ``pred_name`` and ``efficiency`` (how close each of ``samples`` came, in %), both
        informational, and the summary's roofline row; a RooflineError (a model the named device
        cannot hold) is a warning, and the gated metric stands."""
        import warnings

        from ..api import roofline_assumption
        from ..roofline.models import RooflineError

        try:
            p = predict(roofline_assumption(self._request.config))
        except RooflineError as exc:
            warnings.warn(f"llmperf: {what}: no roofline prediction: {exc}", stacklevel=3)
            return
        rec = self.recorder
        measured = rec.metrics[metric]
        higher = measured.higher_is_better
        rec.record(pred_name, [p.value] * len(samples), unit=measured.unit, higher_is_better=higher, gate=False,
                   note=f"{pred_name}: the roofline ({p.assuming}): {p.bound} bound")
        rec.record("efficiency", [100 * (s / p.value if higher else p.value / s) for s in samples], unit="%",
                   higher_is_better=True, gate=False)
        rec.estimate(metric, p.value, p.bound, p.assuming)

    def record_memory(self, pm: PeakMemory) -> None:
        if pm.peak_bytes is None:  # nothing could be read on this device
            return
        note = "" if pm.kind.startswith("cuda") else f"peak_mem is the {pm.kind}, everything in the pytest process"
        self.recorder.record("peak_mem", pm.peak_bytes / 2**20, unit="MiB", higher_is_better=False, gate=False,
                             note=note)

    def profile(self, step: Callable[[], Any], device: torch.device, what: str) -> None:
        """The PyTorch profiler around ``--llmperf-profile-steps`` more steps, when asked for
        (``--llmperf-profile=torch``): its operator table saved beside the test's other artifacts."""
        from ..api import artifact_dir
        from ..api import session as core_session

        cfg = core_session(self._request.config).config
        if "torch" not in cfg.profilers:
            return
        from .profiling import profile_steps

        result = profile_steps(step, device, steps=cfg.profile_steps, warmup=0)
        paths = result.save(artifact_dir(self._request.config, self._request.node.nodeid))
        self.recorder.add_artifact("torch.profiler", paths, f"{what}: {result.summary_line(3)}")

    def process_profile(self, size: str, kind: str, autocast: torch.dtype | None, context: int, batch_size: int,
                        compile: bool, attention: str, device: torch.device) -> None:
        """The process profilers (nsys, perf stat, perf record) around the same steps in a process
        of their own (run_lm), when selected for this test; the timed rounds are already done.
        valgrind is not run on torch: its instruction counts are for compiled binaries."""
        import sys

        precision = "fp32" if autocast is None else str(autocast).replace("torch.", "")
        argv = [sys.executable, "-m", "pytest_llmperf.torch_models.run_lm", "--size", size, "--kind", kind,
                "--precision", precision, "--context", str(context), "--batch", str(batch_size),
                "--attention", attention, "--device", str(device), "--steps", str(self.session_profile_steps())]
        if compile:
            argv.append("--compile")
        self.run_process_profilers(argv)

    def run_process_profilers(self, argv: list[str]) -> None:
        """``argv`` (a run_lm or run_decode command) under the process profilers selected for this
        test, with this session's torch threads."""
        profiling = self._request.getfixturevalue("llmperf_profile")
        if not profiling:
            return
        if "instructions" in profiling.names:
            self.recorder.add_artifact("instructions", [], "skipped: not run on torch workloads",
                                       {"skipped": "instruction counts under valgrind are for compiled binaries "
                                                   "(a Python + torch process would take minutes)"})
        threads = torch_threads(self._request.config)
        if threads:
            argv = [*argv, "--threads", str(threads)]
        profiling.command(argv, only=[n for n in profiling.names if n != "instructions"])

    def session_profile_steps(self) -> int:
        from ..api import session as core_session

        return core_session(self._request.config).config.profile_steps

    def guarded(self, device: torch.device, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn()``; an out-of-memory fails this test only, with one line, after freeing what
        it held so that the next test finds the device usable."""
        from .device import is_oom, recover

        message = None
        try:
            return fn()
        except Exception as exc:
            if not is_oom(exc):
                raise
            message = f"llmperf: out of memory on {device} ({what}): {first_line(exc)}"
        recover(device)  # the traceback (and the model it held) is gone once the except block ends
        fail(message)
