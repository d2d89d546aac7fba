"""Unit tests of pytest_llmperf.stats (pure functions, deterministic data)."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from pytest_llmperf import stats

Z = NormalDist().inv_cdf


# -- median / quantile / summarize / relative_iqr -------------------------------------------------

def test_median_odd_and_even_unsorted():
    assert stats.median([5.0, 1.0, 3.0]) == 3.0
    assert stats.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert stats.median([7.0]) == 7.0


def test_median_of_empty_sample_raises():
    with pytest.raises(ValueError, match="empty"):
        stats.median([])


def test_quantile_interpolates_between_order_statistics():
    ordered = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert stats.quantile(ordered, 0.0) == 10.0
    assert stats.quantile(ordered, 1.0) == 50.0
    assert stats.quantile(ordered, 0.5) == 30.0
    # position (5 - 1) * 0.1 = 0.4: 40% of the way from 10 to 20
    assert stats.quantile(ordered, 0.1) == pytest.approx(14.0)
    assert stats.quantile(ordered, 0.875) == pytest.approx(45.0)


def test_quantile_of_empty_sample_raises():
    with pytest.raises(ValueError, match="empty"):
        stats.quantile([], 0.5)


def test_summarize_keys_in_stable_order_and_values():
    s = stats.summarize([4, 1, 3, 2])
    assert list(s) == ["n", "min", "q1", "median", "q3", "max", "mean", "stdev"]
    assert s["n"] == 4
    assert s["min"] == 1.0 and s["max"] == 4.0
    # positions 0.75 and 2.25 in the sorted sample [1, 2, 3, 4]
    assert s["q1"] == pytest.approx(1.75)
    assert s["q3"] == pytest.approx(3.25)
    assert s["median"] == pytest.approx(2.5)
    assert s["mean"] == pytest.approx(2.5)
    # sample stdev: sum of squares (2.25 + 0.25) * 2 = 5 over n - 1 = 3
    assert s["stdev"] == pytest.approx(math.sqrt(5.0 / 3.0))
    assert all(isinstance(s[k], float) for k in s if k != "n")


def test_summarize_single_value_has_zero_stdev():
    s = stats.summarize([2.5])
    assert s["n"] == 1
    assert s["min"] == s["median"] == s["max"] == s["mean"] == 2.5
    assert s["stdev"] == 0.0


def test_relative_iqr():
    # IQR 3.25 - 1.75 = 1.5 over the median 2.5
    assert stats.relative_iqr([1.0, 2.0, 3.0, 4.0]) == pytest.approx(0.6)
    assert stats.relative_iqr([5.0, 5.0, 5.0]) == 0.0
    assert stats.relative_iqr([-1.0, 0.0, 1.0]) == math.inf


# -- log_median_se ------------------------------------------------------------------------------

def test_log_median_se_needs_three_positive_samples():
    assert stats.log_median_se([]) == math.inf
    assert stats.log_median_se([1.0]) == math.inf
    assert stats.log_median_se([1.0, 2.0]) == math.inf
    assert stats.log_median_se([0.0, 1.0, 2.0]) == math.inf
    assert stats.log_median_se([-1.0, 1.0, 2.0]) == math.inf
    assert math.isfinite(stats.log_median_se([1.0, 2.0, 3.0]))


def test_log_median_se_of_constant_sample_is_zero():
    assert stats.log_median_se([3.0] * 10) == 0.0


def test_log_median_se_n3_by_hand():
    # n = 3: c = round(2 - sqrt(3)) = 0 -> 1; the interval is [y(1), y(3)], which covers the median
    # unless all three fall on one side: P = 1 - 2 * (1/2)^3 = 0.75.
    values = [1.0, math.e, math.e ** 2]
    expected = (2.0 - 0.0) / (2.0 * Z((1.0 + 0.75) / 2.0))
    assert stats.log_median_se(values) == pytest.approx(expected)
    assert stats.log_median_se(list(reversed(values))) == pytest.approx(expected)


def test_binomial_central_coverage_exact_small_n():
    # n = 3, c = 1: P(1 <= B <= 2) = 6/8
    assert stats._binomial_central_coverage(3, 1) == pytest.approx(0.75)
    # n = 4, c = 1: 1 - 2/16
    assert stats._binomial_central_coverage(4, 1) == pytest.approx(14 / 16)
    # the normal branch (n > 2000) agrees with the exact sum at the boundary
    n = 2001
    c = round((n + 1) / 2 - math.sqrt(n))
    exact = stats._binomial_central_coverage(2000, c)
    approx = stats._binomial_central_coverage(n, c)
    assert approx == pytest.approx(exact, abs=0.01)


@pytest.mark.parametrize("n", [1001, 4001])
def test_log_median_se_matches_asymptotic_value(n):
    # For a normal sample (the log of a lognormal one) with sd s, the sd of the sample median is
    # s * sqrt(pi / 2) / sqrt(n) asymptotically.
    rng = random.Random(7)
    s = 0.2
    values = [math.exp(rng.gauss(0.0, s)) for _ in range(n)]
    expected = s * math.sqrt(math.pi / 2.0) / math.sqrt(n)
    assert stats.log_median_se(values) == pytest.approx(expected, rel=0.25)


def test_log_median_se_is_scale_invariant():
    rng = random.Random(3)
    values = [math.exp(rng.gauss(0.0, 0.1)) for _ in range(40)]
    assert stats.log_median_se([v * 1000.0 for v in values]) == pytest.approx(stats.log_median_se(values))


# -- ratio_of_medians ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [5, 30, 101])
def test_ratio_ci_covers_true_ratio(n):
    true_ratio = 1.1
    rng = random.Random(1000 + n)
    covered = 0
    runs = 200
    for _ in range(runs):
        base = [math.exp(rng.gauss(0.0, 0.2)) for _ in range(n)]
        cur = [true_ratio * math.exp(rng.gauss(0.0, 0.2)) for _ in range(n)]
        est = stats.ratio_of_medians(base, cur, confidence=0.99)
        assert est.low <= est.ratio <= est.high
        covered += est.low <= true_ratio <= est.high
    assert covered >= 0.95 * runs


def test_ratio_ci_narrows_with_more_samples():
    rng = random.Random(5)

    def width(n):
        base = [math.exp(rng.gauss(0.0, 0.2)) for _ in range(n)]
        cur = [math.exp(rng.gauss(0.0, 0.2)) for _ in range(n)]
        est = stats.ratio_of_medians(base, cur)
        return est.high / est.low

    assert width(400) < width(20)


def test_ratio_of_constant_samples_is_exact():
    est = stats.ratio_of_medians([2.0] * 5, [4.0] * 5)
    assert est.ratio == 2.0
    assert est.low == est.high == 2.0
    assert est.se_log == 0.0
    assert est.p_increase == 0.0  # a convincing increase
    assert est.p_decrease == 1.0


def test_ratio_p_values_orient_with_the_change():
    rng = random.Random(11)
    base = [math.exp(rng.gauss(0.0, 0.05)) for _ in range(50)]
    slower = [1.2 * v for v in base]
    est = stats.ratio_of_medians(base, slower)
    assert est.ratio == pytest.approx(1.2)
    assert est.p_increase < 0.001 < 0.999 < est.p_decrease
    faster = [v / 1.2 for v in base]
    est = stats.ratio_of_medians(base, faster)
    assert est.p_decrease < 0.001 < 0.999 < est.p_increase


def test_ratio_with_too_few_samples_has_unbounded_interval():
    est = stats.ratio_of_medians([1.0, 1.1], [1.0, 1.2, 1.3])
    assert est.low == 0.0 and est.high == math.inf
    assert est.se_log == math.inf
    assert est.p_increase == est.p_decrease == 1.0


def test_ratio_needs_positive_medians():
    with pytest.raises(ValueError, match="positive"):
        stats.ratio_of_medians([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        stats.ratio_of_medians([1.0, 1.0, 1.0], [-1.0, -1.0, -1.0])


def test_noise_floor_widens_the_interval():
    rng = random.Random(2)
    base = [math.exp(rng.gauss(0.0, 0.05)) for _ in range(30)]
    cur = [1.03 * math.exp(rng.gauss(0.0, 0.05)) for _ in range(30)]
    plain = stats.ratio_of_medians(base, cur, noise_floor=0.0)
    floored = stats.ratio_of_medians(base, cur, noise_floor=0.05)
    assert floored.ratio == plain.ratio
    assert floored.low < plain.low and floored.high > plain.high
    # the floor is added in quadrature to the log standard error
    assert floored.se_log ** 2 == pytest.approx(plain.se_log ** 2 + math.log1p(0.05) ** 2)


def test_noise_floor_alone_gives_a_finite_interval_for_constant_data():
    est = stats.ratio_of_medians([1.0] * 5, [1.0] * 5, confidence=0.99, noise_floor=0.01)
    half = Z(0.995) * math.log1p(0.01)
    assert est.low == pytest.approx(math.exp(-half))
    assert est.high == pytest.approx(math.exp(half))


def test_higher_confidence_gives_a_wider_interval():
    rng = random.Random(4)
    base = [math.exp(rng.gauss(0.0, 0.1)) for _ in range(25)]
    cur = [math.exp(rng.gauss(0.0, 0.1)) for _ in range(25)]
    e95 = stats.ratio_of_medians(base, cur, confidence=0.95)
    e99 = stats.ratio_of_medians(base, cur, confidence=0.99)
    assert e99.low < e95.low and e99.high > e95.high


# -- speed_adjusted -----------------------------------------------------------------------------

def test_speed_adjusted_divides_each_round_by_its_own_probe():
    out = stats.speed_adjusted([2.0, 4.0, 6.0], [1.0, 2.0, 4.0])
    assert out == pytest.approx([2.0, 2.0, 1.5])
    assert isinstance(out, list)


def test_speed_adjusted_does_not_average_neighbouring_probes():
    # round i is paired with speeds[i] only: the old "mean of the probes around it" is gone
    out = stats.speed_adjusted([10.0, 10.0], [1.0, 4.0])
    assert out == pytest.approx([10.0, 2.5])


def test_speed_adjusted_cancels_a_machine_slowdown():
    speeds = [1.0, 1.0, 2.0, 2.0, 3.0]
    samples = [5.0 * p for p in speeds]
    assert stats.speed_adjusted(samples, speeds) == pytest.approx([5.0] * 5)


def test_speed_adjusted_rate_multiplies_by_the_probe():
    out = stats.speed_adjusted([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], rate=True)
    assert out == pytest.approx([2.0, 8.0, 18.0])
    assert stats.speed_adjusted([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], rate=False) == pytest.approx([2.0, 2.0, 2.0])
    # a rate measured on a machine whose speed changes mid-run: amount / (k * probe) -> amount / k
    speeds = [1.0, 1.0, 2.0, 2.0, 3.0]
    rates = [100.0 / (5.0 * p) for p in speeds]
    assert stats.speed_adjusted(rates, speeds, rate=True) == pytest.approx([20.0] * 5)


@pytest.mark.parametrize("n_probes", [0, 1, 2, 4, 5, 6])
def test_speed_adjusted_rejects_wrong_number_of_probes(n_probes):
    # exactly one probe time per sample: n + 1 (the old "bracketing" form) is rejected too
    with pytest.raises(ValueError, match=rf"3 samples need as many probe times, got {n_probes}"):
        stats.speed_adjusted([1.0, 2.0, 3.0], [1.0] * n_probes)


def test_speed_adjusted_rejects_empty_samples():
    with pytest.raises(ValueError, match="0 samples"):
        stats.speed_adjusted([], [1.0])
    with pytest.raises(ValueError, match="0 samples"):
        stats.speed_adjusted([], [])


# -- is_steady / steady_start -------------------------------------------------------------------

def test_is_steady():
    assert not stats.is_steady([1.0], 0.1)
    assert stats.is_steady([1.0, 1.02, 0.99], 0.1)
    assert not stats.is_steady([1.0, 1.2, 1.0], 0.1)  # 20% off the median
    # the first round is the slowest by more than half the spread: still falling
    assert not stats.is_steady([1.06, 1.0, 1.0], 0.1)
    assert stats.is_steady([1.04, 1.0, 1.0], 0.1)
    assert stats.is_steady([0.0, 0.0, 0.0], 0.1)


def test_steady_start_after_a_slow_first_round():
    rounds = [1763.0, 139.6, 139.5, 139.7, 139.6, 139.8, 139.5]
    assert stats.steady_start(rounds) == 1


def test_steady_start_of_an_already_steady_sequence_is_zero():
    assert stats.steady_start([10.0, 10.1, 9.9, 10.0]) == 0


def test_steady_start_after_two_slow_rounds():
    assert stats.steady_start([50.0, 20.0, 10.0, 10.1, 9.9, 10.0]) == 2


def test_steady_start_none_for_a_still_falling_sequence():
    rounds = [100.0 * 0.8 ** i for i in range(12)]
    assert stats.steady_start(rounds) is None
    # the same, falling 7% a round: each window is within the spread, yet still falling
    assert stats.steady_start([100.0 * 0.93 ** i for i in range(12)]) is None


def test_steady_start_none_when_too_short():
    assert stats.steady_start([1.0, 1.0]) is None
    assert stats.steady_start([1.0, 1.0], window=2) == 0


def test_batch_se_sees_slow_drift_that_order_statistics_miss():
    rng = random.Random(5)
    # 400 rounds in 8 stretches whose level drifts by +-3%: within a stretch the spread is tiny
    levels = [1.0, 1.03, 0.97, 1.02, 0.98, 1.03, 0.97, 1.0]
    drifting = [lv * (1 + rng.uniform(-0.002, 0.002)) for lv in levels for _ in range(50)]
    shuffled = drifting[:]
    rng.shuffle(shuffled)
    assert stats.batch_log_median_se(drifting) > 3 * stats.batch_log_median_se(shuffled)
    assert stats.run_log_median_se(drifting) == pytest.approx(stats.batch_log_median_se(drifting))
    assert stats.run_log_median_se(drifting) > stats.log_median_se(drifting)


def test_batch_se_needs_enough_values_for_three_batches():
    assert stats.batch_log_median_se([1.0] * 23) == 0.0
    assert stats.batch_log_median_se([1.0] * 8 + [2.0] * 8 + [3.0] * 8) > 0.0
    assert stats.batch_log_median_se([0.0] * 40) == 0.0


def test_run_se_is_never_below_the_order_statistic_se():
    rng = random.Random(9)
    values = [rng.lognormvariate(0, 0.1) for _ in range(200)]
    assert stats.run_log_median_se(values) >= stats.log_median_se(values)


# -- ratio_estimate ------------------------------------------------------------------------------

def test_ratio_of_medians_is_ratio_estimate_of_its_se():
    rng = random.Random(3)
    base = [rng.lognormvariate(0, 0.05) for _ in range(40)]
    cur = [1.05 * rng.lognormvariate(0, 0.05) for _ in range(40)]
    est = stats.ratio_of_medians(base, cur, noise_floor=0.01)
    assert stats.ratio_estimate(stats.median(cur) / stats.median(base), est.se_log) == est


def test_ratio_estimate_interval_and_p_values():
    est = stats.ratio_estimate(1.10, 0.02, confidence=0.95)
    assert est.low == pytest.approx(math.exp(math.log(1.1) - Z(0.975) * 0.02))
    assert est.high == pytest.approx(math.exp(math.log(1.1) + Z(0.975) * 0.02))
    assert est.p_increase == pytest.approx(1 - NormalDist().cdf(math.log(1.1) / 0.02))
    assert est.p_increase + est.p_decrease == pytest.approx(1.0)
    assert stats.ratio_estimate(1.1, math.inf) == stats.RatioEstimate(1.1, 0.0, math.inf, math.inf, 1.0, 1.0)
    exact = stats.ratio_estimate(0.9, 0.0)
    assert exact.low == exact.high == pytest.approx(0.9) and exact.p_decrease == 0.0 and exact.p_increase == 1.0


@pytest.mark.parametrize("ratio", [0.0, -1.0, math.nan])
def test_ratio_estimate_needs_a_positive_ratio(ratio):
    with pytest.raises(ValueError, match="positive ratio"):
        stats.ratio_estimate(ratio, 0.01)


# -- Student's t ---------------------------------------------------------------------------------

@pytest.mark.parametrize("df, p, value", [
    # from the tables (and t(1) = Cauchy: tan(pi (p - 1/2)))
    (1, 0.995, 63.65674), (1, 0.75, 1.0), (2, 0.975, 4.30265), (4, 0.995, 4.60409), (6, 0.995, 3.70743),
    (10, 0.995, 3.16927), (30, 0.975, 2.04227), (3, 0.975, 3.18245), (5, 0.99, 3.36493),
])
def test_t_quantile_matches_the_tables(df, p, value):
    assert stats.t_quantile(p, df) == pytest.approx(value, abs=2e-5)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-value, abs=2e-5)
    assert stats.t_cdf(value, df) == pytest.approx(p, abs=1e-6)


def test_t_tends_to_the_normal():
    assert stats.t_quantile(0.995, math.inf) == pytest.approx(Z(0.995))
    assert stats.t_quantile(0.995, 1e8) == pytest.approx(Z(0.995), rel=1e-6)
    assert stats.t_cdf(1.3, math.inf) == pytest.approx(NormalDist().cdf(1.3))
    assert stats.t_cdf(0.0, 3) == pytest.approx(0.5)
    assert stats.t_cdf(-2.0, 5) == pytest.approx(1 - stats.t_cdf(2.0, 5))


def test_t_bad_arguments():
    with pytest.raises(ValueError, match="degrees of freedom"):
        stats.t_cdf(1.0, 0)
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="0 < p < 1"):
            stats.t_quantile(p, 3)


@pytest.mark.parametrize(("t", "df"), [(0.5, 3), (2.0, 10), (4.0, 7.5), (1.0, 1)])
def test_t_two_sided_is_both_tails_of_t_cdf(t, df):
    assert stats.t_two_sided(t, df) == pytest.approx(2.0 * (1.0 - stats.t_cdf(t, df)), rel=1e-9)
    assert stats.t_two_sided(-t, df) == stats.t_two_sided(t, df)


def test_t_two_sided_keeps_a_tiny_tail_and_the_limits():
    assert 0 < stats.t_two_sided(40.0, 30) < 1e-20
    assert stats.t_two_sided(math.inf, 5) == 0.0
    assert stats.t_two_sided(1.959963984540054, math.inf) == pytest.approx(0.05, rel=1e-9)
    with pytest.raises(ValueError, match="positive degrees of freedom"):
        stats.t_two_sided(1.0, 0)
