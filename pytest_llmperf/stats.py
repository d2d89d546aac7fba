"""Summaries, the confidence interval of a ratio of medians, steady-state detection. Pure, no I/O.

The comparison works on the log of the ratio of two medians. The standard error of each log-median
comes from the order statistics that bracket the median (Bonett and Price's distribution-free
method): for a sorted sample y(1..n), take c = round((n + 1)/2 - sqrt(n)); the interval
[y(c), y(n - c + 1)] covers the population median with a probability P that the binomial
distribution gives exactly, so

    se(ln median) = (ln y(n-c+1) - ln y(c)) / (2 * z((1 + P) / 2)).

The two samples are independent, so the variances add. No resampling, no normal assumption about
the data itself, robust to the long right tail that timings have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypedDict

_NORMAL = NormalDist()
MIN_SAMPLES = 3


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of an empty sample")
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def quantile(ordered: Sequence[float], q: float) -> float:
    """Quantile of an already sorted sample, linear interpolation between order statistics."""
    if not ordered:
        raise ValueError("quantile of an empty sample")
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Summary(TypedDict):
    """What :func:`summarize` returns, in the order the JSON files keep."""

    n: int
    min: float
    q1: float
    median: float
    q3: float
    max: float
    mean: float
    stdev: float


def summarize(values: Sequence[float]) -> Summary:
    """A statistical summary with a stable key order (the order is kept in the JSON files)."""
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    mean = math.fsum(ordered) / n
    stdev = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / (n - 1)) if n > 1 else 0.0
    return {
        "n": n,
        "min": ordered[0],
        "q1": quantile(ordered, 0.25),
        "median": quantile(ordered, 0.5),
        "q3": quantile(ordered, 0.75),
        "max": ordered[-1],
        "mean": mean,
        "stdev": stdev,
    }


def relative_iqr(values: Sequence[float]) -> float:
    """Interquartile range divided by the median: a robust relative spread."""
    ordered = sorted(values)
    mid = quantile(ordered, 0.5)
    if mid == 0:
        return math.inf
    return (quantile(ordered, 0.75) - quantile(ordered, 0.25)) / abs(mid)


def _binomial_central_coverage(n: int, c: int) -> float:
    """P(c <= B <= n - c) for B ~ Binomial(n, 1/2): coverage of [y(c), y(n-c+1)] for the median."""
    if n > 2000:  # normal approximation with continuity correction, accurate far beyond our needs
        sd = math.sqrt(n) / 2.0
        half = (n / 2.0 - c + 0.5) / sd
        return max(0.0, 2.0 * _NORMAL.cdf(half) - 1.0)
    log_half_n = n * math.log(0.5)
    total = 0.0
    for k in range(c, n - c + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half_n)
    return min(total, 1.0)


def log_median_se(values: Sequence[float]) -> float:
    """Standard error of ln(median), distribution-free (see the module docstring).

    Needs positive values and at least MIN_SAMPLES of them; returns inf otherwise.
    """
    n = len(values)
    if n < MIN_SAMPLES:
        return math.inf
    ordered = sorted(values)
    if ordered[0] <= 0:
        return math.inf
    c = max(1, round((n + 1) / 2.0 - math.sqrt(n)))
    lower, upper = ordered[c - 1], ordered[n - c]
    coverage = _binomial_central_coverage(n, c)
    if coverage <= 0.0 or coverage >= 1.0:
        # n so small that the interval is the whole sample: fall back on the full range, coverage 1 - 2^(1-n)
        coverage = 1.0 - 2.0 ** (1 - n)
    z = _NORMAL.inv_cdf((1.0 + coverage) / 2.0)
    return (math.log(upper) - math.log(lower)) / (2.0 * z)


BATCHES = 8
MIN_BATCH = 8


def batch_log_median_se(values: Sequence[float], batches: int = BATCHES) -> float:
    """Standard error of ln(median) from the scatter of the medians of contiguous batches.

    ``values`` in the order they were measured. Rounds taken close together share the machine's
    momentary state, so they are not independent; the order-statistic method then understates the
    uncertainty. Splitting the run into ``batches`` consecutive stretches and taking the spread of
    their log-medians (divided by sqrt(batches)) sees those slow fluctuations (the batch-means
    method). Returns 0.0 when there are too few values for batches of MIN_BATCH."""
    k = min(batches, len(values) // MIN_BATCH)
    if k < 3 or min(values) <= 0:
        return 0.0
    size = len(values) / k
    logs = [math.log(median(values[int(i * size):int((i + 1) * size)])) for i in range(k)]
    mean = math.fsum(logs) / k
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in logs) / (k - 1))
    return sd / math.sqrt(k)


def run_log_median_se(values: Sequence[float]) -> float:
    """The larger of the order-statistic and the batch-means standard errors of ln(median)."""
    return max(log_median_se(values), batch_log_median_se(values))


@dataclass(frozen=True)
class RatioEstimate:
    """Ratio of medians current/baseline with a confidence interval (all as ratios, 1.0 = unchanged)."""

    ratio: float
    low: float
    high: float
    se_log: float
    p_increase: float  # one-sided p-value of "the ratio is not above 1" (small: convincing increase)
    p_decrease: float  # one-sided p-value of "the ratio is not below 1"


def ratio_of_medians(
    baseline: Sequence[float],
    current: Sequence[float],
    confidence: float = 0.99,
    noise_floor: float = 0.0,
) -> RatioEstimate:
    """Ratio of medians with a two-sided ``confidence`` interval.

    ``noise_floor`` is a relative standard deviation added in quadrature to account for the
    variation between sessions that samples from within one session cannot show.
    """
    m_base = median(baseline)
    m_cur = median(current)
    if m_base <= 0 or m_cur <= 0:
        raise ValueError("ratio of medians needs positive medians")
    se = math.sqrt(run_log_median_se(baseline) ** 2 + run_log_median_se(current) ** 2 + math.log1p(noise_floor) ** 2)
    return ratio_estimate(m_cur / m_base, se, confidence)


def ratio_estimate(ratio: float, se: float, confidence: float = 0.99) -> RatioEstimate:
    """The interval and the one-sided p-values of a positive ``ratio`` whose logarithm has the standard
    error ``se`` (normal on the log scale). Every comparison (a saved baseline, the history's
    reference, paired rounds) ends here with its own estimate and standard error."""
    if not ratio > 0:
        raise ValueError("a ratio estimate needs a positive ratio")
    log_ratio = math.log(ratio)
    if math.isinf(se):
        return RatioEstimate(ratio, 0.0, math.inf, se, 1.0, 1.0)
    z = _NORMAL.inv_cdf((1.0 + confidence) / 2.0)
    if se == 0.0:
        p_up = 0.0 if log_ratio > 0 else 1.0
        p_down = 0.0 if log_ratio < 0 else 1.0
    else:
        p_up = 1.0 - _NORMAL.cdf(log_ratio / se)
        p_down = _NORMAL.cdf(log_ratio / se)
    return RatioEstimate(ratio, _exp(log_ratio - z * se), _exp(log_ratio + z * se), se, p_up, p_down)


def _exp(x: float) -> float:
    """exp() that gives inf instead of OverflowError: samples spread over hundreds of orders of
    magnitude make an interval that is unbounded, not an error."""
    return math.inf if x > 709.0 else math.exp(x)


def speed_adjusted(samples: Sequence[float], speeds: Sequence[float], rate: bool = False) -> list[float]:
    """Divide each round by the machine-speed probe time paired with it (multiply, for a ``rate``
    such as tokens per second, which falls when the machine slows down), so that a change of the
    machine's speed during or between runs cancels out of the comparison."""
    if len(speeds) != len(samples) or not samples:
        raise ValueError(f"speed_adjusted: {len(samples)} samples need as many probe times, got {len(speeds)}")
    return [v * p if rate else v / p for v, p in zip(samples, speeds)]


def is_steady(window: Sequence[float], spread: float) -> bool:
    """True when the rounds in ``window`` are within ``spread`` of their median and the first of
    them is not the slowest by more than the spread (a still-falling sequence is not steady)."""
    if len(window) < 2:
        return False
    mid = median(window)
    if mid <= 0:
        return True
    if any(abs(v - mid) / mid > spread for v in window):
        return False
    return window[0] <= max(window[1:]) * (1.0 + spread / 2.0)


def steady_start(rounds: Sequence[float], window: int = 3, spread: float = 0.10) -> int | None:
    """Index of the first round from which ``window`` consecutive rounds are steady, or None."""
    for start in range(len(rounds) - window + 1):
        if is_steady(rounds[start:start + window], spread):
            return start
    return None


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom, I_{df/(df+t^2)}(df/2, 1/2):
    computed as the tail itself, so a p-value of 1e-12 keeps its digits."""
    if df <= 0:
        raise ValueError(f"t distribution needs positive degrees of freedom, got {df}")
    if math.isinf(t):
        return 0.0
    if math.isinf(df):
        return 2.0 * _NORMAL.cdf(-abs(t))
    return _regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t distribution needs positive degrees of freedom, got {df}")
    if math.isinf(df):
        return _NORMAL.cdf(x)
    tail = 0.5 * _regularized_beta(df / 2.0, 0.5, df / (df + x * x))
    return 1.0 - tail if x > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (0 < p < 1) of Student's t with ``df`` degrees of freedom: bisection on
    t_cdf between the normal quantile and a bound that the t quantile never exceeds."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    z = _NORMAL.inv_cdf(p)
    if math.isinf(df) or df > 1e7:
        return z
    lo, hi = z, z
    while t_cdf(hi, df) < p:
        hi = hi * 2.0 + 1.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2.0
