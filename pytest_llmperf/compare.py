"""Tolerance + statistics -> verdict. Pure, no I/O.

The decision for one metric, with ``t`` the tolerance and [lo, hi] the confidence interval of the
change (current/baseline - 1, oriented so that positive means worse):

* regressed   lo > 0 and hi > t: convincingly worse, and the data cannot show that the loss is
              within the tolerance.
* improved    hi < 0 and lo < -t: the mirror image.
* ok          the interval lies inside [-t, t], or it is convincingly on one side of zero but
              provably within the tolerance.
* noisy       the interval covers zero and reaches beyond the tolerance: the data cannot tell a
              real change from noise; the plugin says so instead of guessing.

The point estimate alone never decides: a change beyond the tolerance that is not statistically
convincing is noisy, not regressed; a convincing change that is provably within the tolerance is ok.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

from . import stats

OK = "ok"
REGRESSED = "regressed"
IMPROVED = "improved"
NEW = "new"
NOT_COMPARED = "not-compared"
NOISY = "noisy"
STATUSES = (OK, REGRESSED, IMPROVED, NEW, NOT_COMPARED, NOISY)


@dataclass
class Metric:
    """Samples of one named metric of one test, as recorded in this run or read from a baseline."""

    name: str
    unit: str
    higher_is_better: bool
    samples: list[float]
    probes: list[float] | None = None  # machine-speed probe times paired with the rounds, if taken
    warmup: dict | None = None  # {"discarded": n, "first": x, "steady": y}
    normalize: str = "auto"

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


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
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def failed(self) -> bool:
        return self.status == REGRESSED


def _use_adjusted(base: Metric, cur: Metric) -> bool:
    """Compare speed-adjusted samples? ``on``/``off`` decide; ``auto`` uses them when both runs have
    probes and dividing by the probe does not make the rounds clearly more scattered than they
    were (a workload that does not run on this CPU, a sleep or a GPU kernel, does not follow the
    CPU's speed: for it the division only adds noise, and auto leaves it out)."""
    if cur.normalize == "off" or not base.probes or not cur.probes:
        return False
    if cur.normalize == "on":
        return True
    raw = stats.relative_iqr(base.samples) + stats.relative_iqr(cur.samples)
    adj = stats.relative_iqr(stats.speed_adjusted(base.samples, base.probes)) + stats.relative_iqr(
        stats.speed_adjusted(cur.samples, cur.probes)
    )
    return adj <= raw * 1.25


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
    """The verdict for one metric; ``base`` is None when the baseline has no such metric."""
    current_median = stats.median(cur.samples) if cur.samples else None
    common = dict(
        test=test, metric=cur.name, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=current_median, n_current=len(cur.samples),
    )
    if base is None:
        return Verdict(status=NEW, reason="no baseline for this metric", **common)
    base_median = stats.median(base.samples)
    common.update(baseline=base_median, n_baseline=len(base.samples), confidence=confidence)
    if base_median <= 0 or current_median is None or current_median <= 0:
        return Verdict(status=NOISY, reason="medians must be positive to form a ratio", **common)
    raw_change = current_median / base_median - 1.0
    adjusted = _use_adjusted(base, cur)
    if adjusted:
        b, c = stats.speed_adjusted(base.samples, base.probes), stats.speed_adjusted(cur.samples, cur.probes)
    else:
        b, c = base.samples, cur.samples
    est = stats.ratio_of_medians(b, c, confidence=confidence, noise_floor=noise_floor)
    change, low, high = est.ratio - 1.0, est.low - 1.0, est.high - 1.0
    common.update(change=change, ci_low=low, ci_high=high, adjusted=adjusted, raw_change=raw_change)
    if min(len(b), len(c)) < stats.MIN_SAMPLES:
        return Verdict(
            status=NOISY, p_value=None,
            reason=f"too few samples to decide ({len(b)} baseline, {len(c)} current; need {stats.MIN_SAMPLES})",
            **common,
        )
    # orient: positive = worse
    if cur.higher_is_better:
        worse_lo, worse_hi, p_worse = -high, -low, est.p_decrease
    else:
        worse_lo, worse_hi, p_worse = low, high, est.p_increase
    common["p_value"] = p_worse
    if worse_lo > 0 and worse_hi > tolerance:
        status, reason = REGRESSED, "convincingly worse, not shown to be within the tolerance"
    elif worse_hi < 0 and worse_lo < -tolerance:
        status, reason = IMPROVED, "convincingly better beyond the tolerance: consider saving a new baseline"
    elif worse_hi <= tolerance and worse_lo >= -tolerance:
        status, reason = OK, "within the tolerance"
    elif worse_lo > 0 or worse_hi < 0:
        status, reason = OK, "convincing change, but within the tolerance"
    else:
        status, reason = NOISY, "the confidence interval covers no change and a change beyond the tolerance"
    return Verdict(status=status, reason=reason, **common)


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
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.4g}"
    return f"{value:.4g}" if magnitude < 1 else f"{value:,.4g}"


def not_compared(test: str, cur: Metric, tolerance: float, differences: Sequence[str]) -> Verdict:
    return Verdict(
        test=test, metric=cur.name, status=NOT_COMPARED, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=stats.median(cur.samples) if cur.samples else None,
        n_current=len(cur.samples), reason="machine fingerprint differs: " + "; ".join(differences),
    )
