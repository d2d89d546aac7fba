"""What the ``llmperf`` fixture hands to a test: ``measure`` and ``record``. No pytest."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Final, TypedDict

from . import measure as _measure
from .compare import MAX_SAMPLE, NOISY, Metric, compare_metric, mismatch, sample_problem
from .errors import OneLine
from .errors import short_repr as _short


class _Unset(enum.Enum):
    """The type of the default of an argument that must be given (``higher_is_better``)."""

    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


class _ArtifactFiles(TypedDict):
    kind: str
    paths: list[str]
    summary: str


class Artifact(_ArtifactFiles, total=False):
    """A profiler's output for one test, as the JSON report lists it."""

    details: dict[str, object]  # counters with their status, top symbols, kernels...


class RecordError(OneLine, ValueError):
    """A misuse of ``llmperf.measure``/``llmperf.record``; the message names the metric."""


def _is_bool(value: Any) -> bool:
    """True or False, including numpy's bool; not "no", 0 or None (which would be guessed)."""
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _number(value: Any, what: str) -> float:
    """One sample as a float: an int, a float or any real number type (numpy, a 0-d tensor); not
    a bool, a string or bytes, which would be guessed."""
    if _is_bool(value) or isinstance(value, (str, bytes, bytearray)) or not hasattr(value, "__float__"):
        raise RecordError(f"{what}: samples must be a number or a list of numbers, got {_short(value)}")
    try:
        return float(value)
    except OverflowError:
        raise RecordError(f"{what}: sample {_short(value)} is out of range (must be below {MAX_SAMPLE:g})") from None
    except (TypeError, ValueError):
        raise RecordError(f"{what}: samples must be a number or a list of numbers, got {_short(value)}") from None


def _numbers(samples: Any, what: str) -> list[float]:
    if isinstance(samples, (str, bytes, bytearray)) or _is_bool(samples):
        raise RecordError(f"{what}: samples must be a number or a list of numbers, got {_short(samples)}")
    if hasattr(samples, "__float__") and not hasattr(samples, "__iter__"):
        return [_number(samples, what)]
    try:
        items = list(samples)
    except TypeError:
        if hasattr(samples, "__float__"):
            return [_number(samples, what)]
        raise RecordError(f"{what}: samples must be a number or a list of numbers, got {_short(samples)}") from None
    if not items:
        raise RecordError(f"{what}: no samples")
    return [_number(v, what) for v in items]


def _check_samples(values: list[float], gate: bool, what: str) -> None:
    for v in values:
        problem = sample_problem(v, gate)
        if problem:
            raise RecordError(f"{what}: sample {v!r} {problem}")


class Recorder:
    """Collects the metrics of one test.

    ``settings`` are the measurement settings in force for this test (options and marker merged);
    ``tolerance_for`` gives the tolerance of a metric; ``baseline`` holds the baseline metrics of
    this test when they exist and may be compared (the adaptive stop then also waits until the
    verdict is decisive, within the time budget).
    """

    def __init__(
        self,
        settings: _measure.MeasureSettings,
        tolerance_for: Callable[[str], float],
        baseline: Mapping[str, Metric] | None = None,
        confidence: float = 0.99,
        noise_floor: float = 0.0,
        normalize: str = "auto",
    ):
        self.settings = settings
        self._tolerance_for = tolerance_for
        self._baseline = dict(baseline or {})
        self._confidence = confidence
        self._noise_floor = noise_floor
        self._normalize = normalize
        self.metrics: dict[str, Metric] = {}
        self.measurements: dict[str, _measure.Measurement] = {}
        self.artifacts: list[Artifact] = []  # profiler outputs
        self.estimates: list[dict[str, Any]] = []  # roofline predictions of recorded metrics (estimate)

    def add_artifact(self, kind: str, paths: Iterable[object], summary: str = "",
                     details: Mapping[str, object] | None = None) -> None:
        """Note files a profiler wrote for this test (listed in the summary and the JSON report);
        ``details`` (counters with their status, top symbols, kernels) go into the JSON report."""
        entry: Artifact = {"kind": str(kind), "paths": [str(p) for p in paths], "summary": str(summary)}
        if details:
            entry["details"] = dict(details)
        self.artifacts.append(entry)

    def estimate(self, metric: str, predicted: float, bound: str, device: str = "") -> None:
        """Note the roofline's prediction of ``metric`` (recorded already; ``predicted`` in its
        unit) and the bound it is under (``compute`` or ``memory``) on ``device``: the summary's
        roofline table shows it next to the measured median, with the efficiency."""
        what = f"llmperf.estimate({metric!r})"
        if metric not in self.metrics:
            raise RecordError(f"{what}: record the metric before its estimate")
        value = _number(predicted, what)
        if not value > 0:
            raise RecordError(f"{what}: the prediction must be positive, got {predicted!r}")
        if bound not in ("compute", "memory"):
            raise RecordError(f"{what}: bound must be 'compute' or 'memory', got {bound!r}")
        self.estimates = [e for e in self.estimates if e["metric"] != metric]
        self.estimates.append({"metric": metric, "predicted": value, "unit": self.metrics[metric].unit,
                               "bound": bound, "device": str(device)})

    # -- timing a callable -------------------------------------------------------------------
    def measure(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Time ``fn(*args, **kwargs)``: warm-up, then rounds until the stop rule; records the
        metric ``time`` (seconds per call, lower is better) and returns ``fn``'s last result."""
        return self.measure_as("time", fn, *args, **kwargs)

    def measure_as(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`measure`, under another metric name (for a second timed callable)."""
        if not callable(fn):
            raise RecordError(f"llmperf.measure: {fn!r} is not callable")
        self._check_name(name)
        if name in self.metrics:
            raise RecordError(
                f"llmperf.measure: metric {name!r} is already recorded in this test; "
                "use llmperf.measure_as('other_name', fn) for a second callable"
            )
        m = _measure.run(fn, args, kwargs, self.settings_for(name), decisive=self.decisive_for(name, "s", False))
        self.measurements[name] = m
        self.metrics[name] = Metric(
            name=name, unit="s", higher_is_better=False, samples=m.samples, probes=m.probes,
            warmup=m.warmup, normalize=self._normalize, cpu_share=m.cpu_share,
        )
        return m.result

    def decisive_for(self, name: str, unit: str, higher_is_better: bool, normalize: str | None = None,
                     probe_kind: str = "python",
                     paired_ref: str = "") -> Callable[[list[float], list[float] | None], bool] | None:
        """For the adaptive stop: a test of "is the verdict on these samples decisive (not noisy)?"
        against this test's baseline of ``name``, or None when there is no comparable baseline.

        With ``paired_ref`` (a paired measurement: measure.run_rounds with a reference) the test's
        second argument is the reference build's values, and the verdict is the paired comparison
        (compare.compare_metric on a metric with ``paired``), which needs no baseline. Should the
        comparison not answer as a paired one (its verdict's reference is not ``paired:...``), the
        test is never decisive: the rounds then run until the time budget."""
        base = self._baseline.get(name)
        tolerance = self._tolerance_for(name)
        if paired_ref:
            if base is not None and mismatch(base, Metric(name, unit, higher_is_better, [])) is not None:
                base = None

            def decisive_paired(samples: list[float], paired: list[float] | None) -> bool:
                if not paired or len(paired) != len(samples):
                    return False
                cur = Metric(name, unit, higher_is_better, samples, normalize="off", paired=list(paired),
                             paired_ref=paired_ref)
                verdict = compare_metric("", base, cur, tolerance, self._confidence, self._noise_floor)
                return verdict.reference.startswith("paired:") and verdict.status != NOISY

            return decisive_paired
        # compare.mismatch's rule, for a metric not recorded yet: its unit and direction, no samples
        if base is None or mismatch(base, Metric(name, unit, higher_is_better, [])) is not None:
            return None

        def decisive(samples: list[float], probes: list[float] | None) -> bool:
            cur = Metric(name, unit, higher_is_better, samples, probes, normalize=normalize or self._normalize,
                         cpu_share=base.cpu_share, probe_kind=probe_kind)
            verdict = compare_metric("", base, cur, tolerance, self._confidence, self._noise_floor)
            return verdict.status != NOISY

        return decisive

    @property
    def normalize(self) -> str:
        """``auto``, ``on`` or ``off``: this test's speed-adjustment setting (option or marker)."""
        return self._normalize

    def settings_for(self, name: str, probe: bool | None = None) -> _measure.MeasureSettings:
        """The measurement settings for metric ``name``: this test's, with its tolerance; ``probe``
        overrides whether the machine-speed probe is timed around the rounds."""
        if probe is None:
            probe = self._normalize != "off"
        return replace(self.settings, tolerance=self._tolerance_for(name), probe=probe)

    def record_rounds(self, name: str, m: _measure.Measurement, unit: str, higher_is_better: bool,
                      normalize: str | None = None, probe_kind: str = "python", paired_ref: str = "",
                      note: str = "", unfit: str = "") -> None:
        """Record the samples of :func:`measure.run_rounds` (with their machine-speed probes, CPU
        share and warm-up), e.g. the tok/s a child process printed round by round.

        A paired measurement (``m.paired``: a reference build's value in each kept round) is
        recorded with those values as ``Metric.paired`` and ``paired_ref`` (what the reference is:
        "git 1a2b3c4d5e6f", "dir /x/llama2.c", "binary /x/run"), which it needs; it has no probes.
        ``note`` is printed under the summary table (e.g. why a row is not paired). ``unfit``: why
        the measurement cannot decide (compare.Metric.unfit: its verdict is then oversubscribed)."""
        self._check_name(name)
        what = f"llmperf.record_rounds({name!r})"
        if name in self.metrics:
            raise RecordError(f"{what}: metric {name!r} is already recorded in this test")
        if not m.samples:
            raise RecordError(f"{what}: no samples")
        _check_samples([float(x) for x in m.samples], True, what)
        paired: list[float] | None = None
        if m.paired is not None:
            if len(m.paired) != len(m.samples):
                raise RecordError(f"{what}: {len(m.paired)} paired reference values for {len(m.samples)} samples")
            paired = [float(x) for x in m.paired]
            _check_samples(paired, True, f"{what} (paired reference)")
            if not paired_ref:
                raise RecordError(f"{what}: a paired measurement needs paired_ref (what the reference is)")
        elif paired_ref:
            raise RecordError(f"{what}: paired_ref {paired_ref!r} given, but the measurement is not paired")
        self.measurements[name] = m
        self.metrics[name] = Metric(
            name=name, unit=unit, higher_is_better=bool(higher_is_better), samples=list(m.samples),
            probes=list(m.probes) if m.probes else None, warmup=m.warmup,
            normalize=normalize or self._normalize, cpu_share=m.cpu_share, probe_kind=probe_kind,
            paired=paired, paired_ref=paired_ref if paired is not None else "", note=str(note),
            unfit=str(unfit),
        )

    def rate(self, name: str, amount: float, unit: str, of: str = "time") -> None:
        """Record a throughput derived from a timed metric: ``amount / seconds`` per round, higher
        is better, e.g. ``llmperf.rate("tok_per_s", steps, "tok/s")`` after ``llmperf.measure``.

        It keeps the rounds' machine-speed probes, so it is compared speed-adjusted like the time."""
        self._check_name(name)
        source = self.metrics.get(of)
        if source is None or of not in self.measurements:
            raise RecordError(f"llmperf.rate({name!r}): no timed metric {of!r}; call llmperf.measure first")
        if name in self.metrics:
            raise RecordError(f"llmperf.rate({name!r}): metric {name!r} is already recorded in this test")
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not 0 < amount < MAX_SAMPLE:
            raise RecordError(f"llmperf.rate({name!r}): amount must be a positive number below {MAX_SAMPLE:g}, "
                              f"got {_short(amount)}")
        samples = [amount / s for s in source.samples]
        _check_samples(samples, True, f"llmperf.rate({name!r})")
        self.metrics[name] = Metric(name=name, unit=unit, higher_is_better=True, samples=samples,
                                    probes=list(source.probes) if source.probes else None, normalize=source.normalize,
                                    cpu_share=source.cpu_share)

    # -- externally measured samples ---------------------------------------------------------
    def record(
        self,
        name: str,
        samples: float | Iterable[float],
        unit: str = "",
        higher_is_better: bool | _Unset = _UNSET,
        gate: bool = True,
        note: str = "",
        exact: bool = False,
    ) -> None:
        """Record samples of a metric measured by the test itself (tok/s, ms/step, bytes...).

        ``samples`` is one number or an iterable of numbers; calling again with the same name adds
        samples (unit and direction must agree). ``higher_is_better`` is required the first time
        a name is recorded, so that "worse" is never guessed. ``gate=False`` makes the metric
        informational: compared and shown with the status ``info``, never failing the test (for
        figures derived from a gated one, such as memory-bandwidth utilisation from tok/s).
        ``note`` is printed under the summary table. ``exact=True`` declares a deterministic
        metric (an instruction count): compared without statistics, against the tolerance alone.
        """
        self._check_name(name)
        what = f"llmperf.record({name!r})"
        values = _numbers(samples, what)
        if not _is_bool(gate):
            raise RecordError(f"{what}: gate must be True or False, got {gate!r}")
        if not isinstance(unit, str):
            raise RecordError(f"llmperf.record({name!r}): unit must be a string, got {unit!r}")
        existing = self.metrics.get(name)
        _check_samples(values, existing.gate if existing is not None else bool(gate), what)
        if existing is not None:
            if name in self.measurements:
                raise RecordError(f"llmperf.record({name!r}): the name is taken by llmperf.measure")
            if higher_is_better is not _UNSET and not _is_bool(higher_is_better):
                raise RecordError(f"{what}: higher_is_better must be True or False, got {higher_is_better!r}")
            if higher_is_better is not _UNSET and bool(higher_is_better) != existing.higher_is_better:
                raise RecordError(f"llmperf.record({name!r}): direction differs from the earlier record")
            if unit and unit != existing.unit:
                raise RecordError(f"llmperf.record({name!r}): unit {unit!r} differs from the earlier {existing.unit!r}")
            existing.samples.extend(values)
            return
        if higher_is_better is _UNSET:
            raise RecordError(f"llmperf.record({name!r}): say higher_is_better=True or False (e.g. True for tok/s)")
        if not _is_bool(higher_is_better):
            raise RecordError(f"{what}: higher_is_better must be True or False, got {higher_is_better!r}")
        if not _is_bool(exact):
            raise RecordError(f"{what}: exact must be True or False, got {exact!r}")
        self.metrics[name] = Metric(name=name, unit=unit, higher_is_better=bool(higher_is_better), samples=values,
                                    normalize="off", gate=bool(gate), note=str(note), exact=bool(exact))

    @staticmethod
    def _check_name(name: str) -> None:
        from .config import _METRIC_NAME

        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise RecordError(f"invalid metric name {name!r}: use letters, digits, '_', '.', '-'")
