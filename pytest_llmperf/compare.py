"""Tolerance + statistics -> verdict. Pure, no I/O.

Against a saved baseline the estimate is the ratio of medians (of speed-adjusted samples when that
applies), with a standard error ``se`` of its logarithm (stats.ratio_of_medians: the two samples'
own uncertainty plus the session-to-session noise floor). Against paired rounds of a reference
build it is the median of the paired ratios, without the floor (compare_paired); against the
node's history, tonight's median over the multi-night reference with the measured spread between
nights (reference.compare_history; why that is sound, with the simulated figures, in reference's
docstring). One rule (decide) turns any of these estimates into the verdict, whichever reference
it used (Verdict.reference). The change ``c`` = ratio - 1 is oriented so that positive means
worse; ``t`` is the tolerance; [lo, hi] is the ``confidence`` interval (99% by default) and
``up``/``down`` are the one-sided 75% bounds (``c`` moved 0.674 se towards / away from worse).

* regressed   lo > 0 and up > t: the data is convincing that the metric got worse (the 99%
              interval excludes no change), and a change beyond the tolerance is plausible (the
              estimate is beyond the tolerance, or within 0.674 se of it).
* improved    hi < 0 and down < -t: the mirror image.
* noisy       the 99% interval covers no change and reaches beyond the tolerance: the data cannot
              tell a real change from noise, and the plugin says so instead of guessing.
* ok          everything else: within the tolerance, or a convincing change that is clearly
              inside it.
* oversubscribed  the measurement says it did not get the machine it needs (Metric.unfit: an
              OpenMP run whose threads had fewer CPUs than threads, because other work held the
              rest): whatever the estimate, not decided (its barriers then wait on the scheduler,
              and its speed says more of the neighbours than of the code); shown with its change.

A deterministic metric (``exact``, e.g. an instruction count under valgrind, the same on every
run) skips the statistics: regressed or improved when the change itself is beyond the tolerance.

A change beyond the tolerance that is not statistically convincing is noisy, never regressed;
a convincing change clearly inside the tolerance is ok. The 0.674 se margin makes a change of
exactly the tolerance fail about three times out of four instead of a coin toss, and a change a
couple of standard errors inside the tolerance pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from . import stats

OK = "ok"
REGRESSED = "regressed"
IMPROVED = "improved"
NEW = "new"
NOT_COMPARED = "not-compared"
NOISY = "noisy"
INFO = "info"  # a metric recorded with gate=False: compared and shown, never failing
# a test or metric of the node's baseline or history that was selected but did not record
MISSING = "missing"
# a measurement that did not get the CPUs it needs (Metric.unfit): shown, not decided
OVERSUBSCRIBED = "oversubscribed"
STATUSES = (OK, REGRESSED, IMPROVED, NEW, NOT_COMPARED, NOISY, INFO, MISSING, OVERSUBSCRIBED)
# a verdict that compared the code (the others did not decide, or did not compare)
DECIDED = (OK, REGRESSED, IMPROVED)
PLAUSIBLE_Z = 0.6745  # the one-sided 75% bound


# Samples are positive, finite and below this: a change is a ratio of medians (a zero or a negative
# one has none), and the statistics square and sum logs and values (1e18 keeps them far from
# overflow while holding any count a benchmark makes: instructions of a long run are ~1e13)
MAX_SAMPLE = 1e18


def sample_problem(value: float, gate: bool = True) -> str | None:
    """Why ``value`` cannot be a sample of a metric, or None when it can. Zero is allowed in an
    informational metric (``gate=False``: a count that is often zero, such as cpu-migrations),
    never in a gated one."""
    if not math.isfinite(value):
        return "is not a finite number"
    if value < 0:
        return "is negative (a change is a ratio of medians, so samples must be positive)"
    if value >= MAX_SAMPLE:
        return f"is out of range (must be below {MAX_SAMPLE:g})"
    if value == 0 and gate:
        return ("is zero in a gated metric (a change is a ratio of medians; "
                "record a count that can be zero with gate=False)")
    return None


@dataclass
class Metric:
    """Samples of one named metric of one test, as recorded in this run or read from a baseline."""

    name: str
    unit: str
    higher_is_better: bool
    samples: list[float]
    probes: list[float] | None = None  # machine-speed probe times paired with the rounds, if taken
    # what the warm-up did (measure.WarmupInfo, or the JSON object a baseline file holds):
    # {"discarded": n, "first": x, "steady": y, ...}
    warmup: Mapping[str, object] | None = None
    normalize: str = "auto"
    cpu_share: float | None = None  # median CPU time / wall time of the rounds, when measured
    probe_kind: str = "python"  # what the probes time: "python" (measure.speed_probe) or a reference binary
    gate: bool = True  # False: informational (derived figures such as MBU), never fails a test
    exact: bool = False  # deterministic (instruction counts): compared without statistics
    note: str = ""  # shown under the summary table, e.g. "model fits in the last-level cache"
    # a reference build's value in each kept round, interleaved with this build's rounds in this session
    # (same unit and direction, as many as samples); compared as paired ratios instead of a baseline
    paired: list[float] | None = None
    paired_ref: str = ""  # what the reference is: "git 1a2b3c4d", "dir /x/llama2.c", "binary /x/run"
    # why this session's measurement cannot decide (the run did not get the CPUs it needs): its
    # verdict is then OVERSUBSCRIBED with this reason (see :func:`unfit_verdict`)
    unfit: str = ""

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


def mismatch(base: Metric, metric: Metric) -> str | None:
    """Why ``metric`` cannot be compared with ``base``, the baseline's metric of the same name (its
    unit or its direction changed), or None when it can. The one place of that rule."""
    if base.unit != metric.unit:
        return f"unit {metric.unit!r} differs from the baseline's {base.unit!r}"
    if base.higher_is_better != metric.higher_is_better:
        return f"direction '{metric.direction}' differs from the baseline's '{base.direction}'"
    return None


@dataclass(frozen=True)
class Verdict:
    test: str
    metric: str
    status: str
    unit: str
    higher_is_better: bool
    tolerance: float
    current: float | None  # median of this run
    baseline: float | None = None  # median of the baseline
    change: float | None = None  # current/baseline - 1, speed-adjusted when `adjusted`
    ci_low: float | None = None  # confidence interval of `change`
    ci_high: float | None = None
    confidence: float | None = None
    p_value: float | None = None  # one-sided, for a change in the worse direction
    adjusted: bool = False  # compared speed-adjusted samples (machine-speed probe)
    raw_change: float | None = None  # change of the plain medians
    n_current: int = 0
    n_baseline: int = 0
    reason: str = ""
    details: dict[str, str] = field(default_factory=dict)  # {"note": the metric's note}, when it has one
    # what the verdict compared with: "saved" (the saved baseline), "history:N" (N accepted nights of the
    # node's history), "paired:<reference>" (a reference build's rounds interleaved in this session)
    reference: str = "saved"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def failed(self) -> bool:
        return self.status == REGRESSED


CPU_BOUND_SHARE = 0.8


def _use_adjusted(base: Metric, cur: Metric) -> bool:
    """Compare speed-adjusted samples of ``cur`` and of its saved baseline ``base``? (adjusts)"""
    return adjusts(cur, base.probe_kind if base.probes else None, base.cpu_share)


def adjusts(cur: Metric, ref_probe_kind: str | None, ref_cpu_share: float | None) -> bool:
    """Compare speed-adjusted samples of ``cur`` with a reference that has probes of the kind
    ``ref_probe_kind`` (None: no probes) and the CPU share ``ref_cpu_share``? The one place of that
    rule. ``on``/``off`` decide; ``auto`` adjusts when both sides have probes of the same kind and
    both ran on the CPU of the timing thread (CPU time at least 80% of wall time): only such work
    follows the CPU's speed. A workload that sleeps, waits for a GPU or computes on other threads
    does not, and dividing it by the probe would only add the probe's noise."""
    if cur.normalize == "off" or ref_probe_kind is None or not cur.probes or ref_probe_kind != cur.probe_kind:
        return False
    if cur.normalize == "on":
        return True
    return (ref_cpu_share or 0.0) >= CPU_BOUND_SHARE and (cur.cpu_share or 0.0) >= CPU_BOUND_SHARE


def adjusted_samples(metric: Metric) -> list[float]:
    """The samples divided by the machine-speed probe (times) or multiplied by it (rates)."""
    return stats.speed_adjusted(metric.samples, metric.probes or [], rate=metric.higher_is_better)


def fmt_pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "+inf%" if value > 0 else "-inf%"
    return f"{value * 100:+.1f}%"


def compare_metric(
    test: str,
    base: Metric | None,
    cur: Metric,
    tolerance: float,
    confidence: float = 0.99,
    noise_floor: float = 0.0,
) -> Verdict:
    """The verdict for one metric; ``base`` is None when the baseline has no such metric. A metric
    with paired rounds of a reference build (``cur.paired``) is compared with them instead, with or
    without a baseline (compare_paired). A metric recorded with ``gate=False`` gets the status
    ``info`` whatever the comparison found."""
    if cur.paired is not None:
        verdict = compare_paired(test, cur, tolerance, confidence)
    else:
        verdict = _compare(test, base, cur, tolerance, confidence, noise_floor)
    return finish(verdict, cur)


def finish(verdict: Verdict, cur: Metric) -> Verdict:
    """The metric's note in the details, and ``info`` instead of the status for ``gate=False``:
    the last step of every comparison of ``cur``."""
    if cur.note:
        verdict = replace(verdict, details={**verdict.details, "note": cur.note})
    if cur.gate:
        return verdict
    return replace(verdict, status=INFO, reason=f"informational ({verdict.status}: {verdict.reason})")


def _compare(
    test: str,
    base: Metric | None,
    cur: Metric,
    tolerance: float,
    confidence: float = 0.99,
    noise_floor: float = 0.0,
) -> Verdict:
    current_median = stats.median(cur.samples) if cur.samples else None
    new = Verdict(
        test=test, metric=cur.name, status=NEW, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=current_median, n_current=len(cur.samples), reason="no baseline for this metric",
    )
    if base is None:
        return new
    base_median = stats.median(base.samples)
    # what is known so far; each return below sets the status and the reason
    known = replace(new, baseline=base_median, n_baseline=len(base.samples), confidence=confidence)
    if base_median <= 0 or current_median is None or current_median <= 0:
        return replace(known, status=NOISY, reason="medians must be positive to form a ratio")
    raw_change = current_median / base_median - 1.0
    if cur.exact and base.exact:
        return decide_exact(raw_change, known)
    adjusted = _use_adjusted(base, cur)
    if adjusted:
        b, c = adjusted_samples(base), adjusted_samples(cur)
    else:
        b, c = base.samples, cur.samples
    est = stats.ratio_of_medians(b, c, confidence=confidence, noise_floor=noise_floor)
    known = replace(known, adjusted=adjusted, raw_change=raw_change)
    short = None
    if min(len(b), len(c)) < stats.MIN_SAMPLES:
        short = f"too few samples to decide ({len(b)} baseline, {len(c)} current; need {stats.MIN_SAMPLES})"
    return decide(known, est, short)


def decide(known: Verdict, est: stats.RatioEstimate, short: str | None = None) -> Verdict:
    """The decision rule (the module docstring) applied to an estimate of current/reference: the
    verdict ``known`` (what does not depend on the comparison) with the change, its interval, the
    p-value, the status and the reason. The one place of the rule, for a saved baseline, the
    history's reference and paired rounds alike; each brings its own estimate and standard error.
    ``short``: why there are too few values to decide (noisy, whatever the estimate says)."""
    change, low, high = est.ratio - 1.0, est.low - 1.0, est.high - 1.0
    known = replace(known, change=change, ci_low=low, ci_high=high)
    if short:
        return replace(known, status=NOISY, p_value=None, reason=short)
    # orient: positive = worse
    sign = -1.0 if known.higher_is_better else 1.0
    worse = sign * change
    worse_lo, worse_hi = sorted((sign * low, sign * high))
    tolerance = known.tolerance
    p_value = est.p_decrease if known.higher_is_better else est.p_increase
    margin = PLAUSIBLE_Z * est.se_log * (1.0 + abs(change))  # 0.674 se, as a relative change
    if worse_lo > 0 and worse + margin > tolerance:
        status, reason = REGRESSED, "convincingly worse, and beyond the tolerance or close to it"
    elif worse_hi < 0 and worse - margin < -tolerance:
        status, reason = IMPROVED, "convincingly better beyond the tolerance: consider saving a new baseline"
    elif worse_lo <= 0 <= worse_hi and (worse_hi > tolerance or worse_lo < -tolerance):
        status, reason = NOISY, "the confidence interval covers no change and a change beyond the tolerance"
    elif worse_lo > 0 or worse_hi < 0:
        status, reason = OK, "convincing change, but clearly within the tolerance"
    else:
        status, reason = OK, "within the tolerance"
    return replace(known, status=status, reason=reason, p_value=p_value)


PAIRED = "paired:"  # Verdict.reference of a paired comparison: "paired:" + Metric.paired_ref


def compare_paired(test: str, cur: Metric, tolerance: float, confidence: float = 0.99) -> Verdict:
    """This build against a reference build whose rounds were interleaved with its own in this
    session (``cur.paired[i]`` is the reference's value next to ``cur.samples[i]``).

    The estimate is the median of the paired ratios r_i = samples_i / paired_i, with the standard
    error of its logarithm from the ratios themselves (stats.run_log_median_se: distribution-free,
    and batch means for slow fluctuations within the session), and NO session-to-session noise
    floor: the floor stands for what differs between two sessions (the machine's clock, its load,
    its temperature, the memory layout of the day), and both builds ran in the same session, side
    by side, so that part is common to both and cancels in each ratio; what is left shows in the
    ratios' own scatter. For the same reason no probe adjustment is made, and a fingerprint change
    since the saved baseline does not matter to this verdict (both builds saw tonight's machine):
    the glue may gate a paired metric whatever the fingerprint says. The baseline is not needed
    either, so a paired metric is never ``new``.

    The verdict: reference ``paired:<paired_ref>``, baseline = median of the reference's rounds,
    change from the ratios, raw_change = the ratio of the two medians - 1 (shown, not gated),
    adjusted False. Fewer than stats.MIN_SAMPLES pairs, rounds that do not pair, or a value that
    is not positive: noisy, with the reason. A deterministic metric compares the median ratio with
    the tolerance without statistics, as against a baseline."""
    paired = list(cur.paired or [])
    samples = list(cur.samples)
    known = Verdict(
        test=test, metric=cur.name, status=NOISY, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=stats.median(samples) if samples else None,
        baseline=stats.median(paired) if paired else None, n_current=len(samples), n_baseline=len(paired),
        confidence=confidence, reference=PAIRED + cur.paired_ref,
    )
    if len(paired) != len(samples):
        return replace(known, reason=(f"the reference build's {len(paired)} rounds do not pair with "
                                      f"the {len(samples)} samples"))
    if len(samples) < stats.MIN_SAMPLES:
        return replace(known, reason=f"too few paired rounds to decide ({len(samples)}; need {stats.MIN_SAMPLES})")
    if min(samples) <= 0 or min(paired) <= 0:
        return replace(known, reason="paired values must be positive to form ratios")
    ratios = [s / p for s, p in zip(samples, paired)]
    raw_change = stats.median(samples) / stats.median(paired) - 1.0
    ratio = stats.median(ratios)
    if cur.exact:
        return replace(decide_exact(ratio - 1.0, known), raw_change=raw_change)
    est = stats.ratio_estimate(ratio, stats.run_log_median_se(ratios), confidence)
    return decide(replace(known, raw_change=raw_change, adjusted=False), est)


def unfit_verdict(v: Verdict, cur: Metric) -> Verdict:
    """``v`` made OVERSUBSCRIBED with the metric's reason when the measurement says it did not get
    the CPUs it needs (``cur.unfit``) and ``v`` compared it (decided something, or found it noisy:
    the busy machine is the reason then, and such a night must not become a reference night); else
    ``v`` unchanged (new, not-compared). The change and its interval stay, for the reader."""
    if not cur.unfit or v.status not in (*DECIDED, NOISY):
        return v
    return replace(v, status=OVERSUBSCRIBED, reason=cur.unfit, p_value=None)


def decide_exact(change: float, known: Verdict) -> Verdict:
    """The decision rule of a deterministic metric (the same count on every run): no statistics and
    no noise floor, only the change against the tolerance. Its interval is the change itself.
    ``known`` holds the fields that do not depend on the comparison."""
    sign = 1.0 if known.higher_is_better else -1.0
    worse = -sign * change
    tolerance = known.tolerance
    if worse > tolerance:
        status, reason = REGRESSED, "deterministic count, worse beyond the tolerance"
    elif worse < -tolerance:
        status, reason = IMPROVED, "deterministic count, better beyond the tolerance: consider saving a new baseline"
    else:
        status, reason = OK, "deterministic count, within the tolerance"
    return replace(known, status=status, reason=reason, change=change, ci_low=change, ci_high=change,
                   p_value=None, raw_change=change)


def verdict_message(v: Verdict) -> str:
    """One line for a failing test or a warning."""
    unit = f" {v.unit}" if v.unit else ""
    adj = " (speed-adjusted; raw " + fmt_pct(v.raw_change) + ")" if v.adjusted else ""
    conf = f"{(v.confidence or 0) * 100:.0f}%"
    p = f", p={v.p_value:.2g}" if v.p_value is not None else ""
    return (
        f"{v.metric} {v.status}: baseline {fmt_value(v.baseline)}{unit} -> current {fmt_value(v.current)}{unit}, "
        f"change {fmt_pct(v.change)}{adj}, {conf} CI [{fmt_pct(v.ci_low)}, {fmt_pct(v.ci_high)}]{p}, "
        f"tolerance {v.tolerance * 100:.1f}% ({'higher' if v.higher_is_better else 'lower'} is better)"
    )


def fmt_value(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or math.isinf(value) or math.isnan(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def not_compared(test: str, cur: Metric, tolerance: float, differences: Sequence[str],
                 why: str = "machine fingerprint differs") -> Verdict:
    return Verdict(
        test=test, metric=cur.name, status=NOT_COMPARED, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=stats.median(cur.samples) if cur.samples else None,
        n_current=len(cur.samples), reason=f"{why}: " + "; ".join(differences),
    )


def smoke_verdict(test: str, cur: Metric, tolerance: float) -> Verdict:
    """A smoke run's metric (``--llmperf-smoke``: one round, a functional check): shown, never
    compared, status ``info``."""
    return Verdict(
        test=test, metric=cur.name, status=INFO, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=stats.median(cur.samples) if cur.samples else None,
        n_current=len(cur.samples), reason="smoke run (--llmperf-smoke): one round, not compared",
        reference="-",
    )
