"""Unit tests of pytest_llmperf.compare: the decision rules on constructed samples."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from pytest_llmperf import compare, config, stats
from pytest_llmperf.compare import (
    IMPROVED,
    NEW,
    NOISY,
    NOT_COMPARED,
    OK,
    REGRESSED,
    Metric,
    Verdict,
    compare_metric,
    fmt_pct,
    fmt_value,
    mismatch,
    not_compared,
    verdict_message,
)


def tight(center: float, n: int = 51, spread: float = 0.01) -> list[float]:
    """n evenly spaced samples within +-spread of center: a precise median."""
    return [center * (1.0 + spread * (2.0 * i / (n - 1) - 1.0)) for i in range(n)]


def wide(center: float, n: int = 5) -> list[float]:
    """A few samples spread over a factor of three: nothing can be decided."""
    return [center * f for f in (0.5, 0.8, 1.0, 1.2, 1.5)][:n]


def time_metric(samples, probes=None, normalize="auto", name="time", cpu_share=1.0):
    return Metric(name, "s", False, list(samples), probes, normalize=normalize, cpu_share=cpu_share)


def tok_metric(samples):
    return Metric("tok_per_s", "tok/s", True, list(samples), normalize="off")


# -- statuses, lower is better ------------------------------------------------------------------

def test_ten_percent_slower_is_regressed():
    v = compare_metric("t::a", time_metric(tight(1.0)), time_metric(tight(1.1)), tolerance=0.05)
    assert v.status == REGRESSED and v.failed
    assert v.change == pytest.approx(0.10)
    assert 0 < v.ci_low <= v.change <= v.ci_high
    assert v.ci_high > 0.05
    assert v.p_value < 0.001
    assert v.baseline == pytest.approx(1.0) and v.current == pytest.approx(1.1)
    assert v.n_baseline == v.n_current == 51
    assert v.confidence == 0.99
    assert v.test == "t::a" and v.metric == "time" and v.unit == "s"
    assert v.adjusted is False
    assert v.reason == "convincingly worse, and beyond the tolerance or close to it"


def test_ten_percent_faster_is_improved():
    v = compare_metric("t::a", time_metric(tight(1.0)), time_metric(tight(0.9)), tolerance=0.05)
    assert v.status == IMPROVED and not v.failed
    assert v.change == pytest.approx(-0.10)
    assert v.ci_high < 0
    assert "baseline" in v.reason
    assert v.p_value > 0.999  # p of "worse": not at all


def test_one_percent_slower_is_ok():
    v = compare_metric("t::a", time_metric(tight(1.0)), time_metric(tight(1.01)), tolerance=0.05)
    assert v.status == OK and not v.failed
    assert v.ci_low >= -0.05 and v.ci_high <= 0.05
    assert v.ci_low > 0  # 51 tight samples: a convincing, tiny change
    assert v.reason == "convincing change, but clearly within the tolerance"


def test_convincing_change_inside_the_tolerance_is_ok():
    # 3% slower, measured so precisely that the change is certain, but provably < 5%
    v = compare_metric("t::a", time_metric(tight(1.0, n=201, spread=0.002)),
                       time_metric(tight(1.03, n=201, spread=0.002)), tolerance=0.05)
    assert v.ci_low > 0  # convincing
    assert v.ci_high < 0.05
    assert v.status == OK
    assert v.reason == "convincing change, but clearly within the tolerance"


def test_overlapping_wide_samples_are_noisy():
    v = compare_metric("t::a", time_metric(wide(1.0)), time_metric(wide(1.1)), tolerance=0.05)
    assert v.status == NOISY and not v.failed
    assert v.ci_low < 0 < v.ci_high
    assert v.ci_high > 0.05
    assert "covers" in v.reason


def test_change_beyond_tolerance_but_not_convincing_is_noisy_not_regressed():
    # point estimate +30%, but five scattered rounds cannot show it
    v = compare_metric("t::a", time_metric(wide(1.0)), time_metric(wide(1.3)), tolerance=0.05)
    assert v.change == pytest.approx(0.3)
    assert v.status == NOISY


def test_noise_floor_turns_a_regression_into_noisy():
    base, cur = time_metric(tight(1.0)), time_metric(tight(1.1))
    assert compare_metric("t", base, cur, 0.05, noise_floor=0.0).status == REGRESSED
    v = compare_metric("t", base, cur, 0.05, noise_floor=0.3)
    assert v.status == NOISY


def test_wider_tolerance_turns_a_regression_into_ok():
    base, cur = time_metric(tight(1.0)), time_metric(tight(1.1))
    assert compare_metric("t", base, cur, 0.20).status == OK


def test_no_baseline_is_new():
    v = compare_metric("t::a", None, time_metric([1.0, 2.0, 3.0]), tolerance=0.05)
    assert v.status == NEW
    assert v.current == 2.0 and v.baseline is None and v.change is None
    assert v.n_current == 3
    assert "no baseline" in v.reason


def test_too_few_samples_is_noisy_with_reason():
    v = compare_metric("t::a", time_metric(tight(1.0)), time_metric([1.5, 1.6]), tolerance=0.05)
    assert v.status == NOISY
    assert v.p_value is None
    assert "too few samples" in v.reason
    assert "51 baseline, 2 current" in v.reason
    assert f"need {stats.MIN_SAMPLES}" in v.reason
    assert v.change == pytest.approx(1.55 - 1.0)


def test_non_positive_median_is_noisy():
    v = compare_metric("t", time_metric([0.0, 0.0, 0.0]), time_metric([1.0, 1.0, 1.0]), 0.05)
    assert v.status == NOISY and "positive" in v.reason
    v = compare_metric("t", time_metric([1.0, 1.0, 1.0]), time_metric([]), 0.05)
    assert v.status == NOISY and v.current is None


# -- the decision rule, on constant samples whose uncertainty is only the noise floor -------------
# With constant samples the medians are exact, so se_log = log1p(noise_floor): the interval and the
# 0.674-se margin are known exactly.

def const(value: float, n: int = 21, higher: bool = False) -> Metric:
    if higher:
        return Metric("tok_per_s", "tok/s", True, [value] * n, normalize="off")
    return time_metric([value] * n)


def threshold(tolerance: float, noise_floor: float) -> float:
    """The change at which change + PLAUSIBLE_Z * se * (1 + change) == tolerance."""
    m = compare.PLAUSIBLE_Z * math.log1p(noise_floor)
    return (tolerance - m) / (1.0 + m)


def test_plausible_z_is_the_one_sided_75_percent_bound():
    assert pytest.approx(stats._NORMAL.inv_cdf(0.75), abs=1e-4) == compare.PLAUSIBLE_Z


def test_convincing_change_whose_ci_reaches_past_the_tolerance_but_clearly_inside_is_ok():
    # +4%, se 0.8%: the 99% CI is about [+1.9%, +6.2%]: convincing, and its upper end is beyond the
    # 5% tolerance (the old rule said regressed), but 4% + 0.674 se < 5%: clearly within -> ok
    v = compare_metric("t", const(1.0), const(1.04), 0.05, noise_floor=0.008)
    assert v.ci_low > 0 and v.ci_high > 0.05
    assert v.change + compare.PLAUSIBLE_Z * math.log1p(0.008) * 1.04 < 0.05
    assert v.status == OK and not v.failed
    assert v.reason == "convincing change, but clearly within the tolerance"


def test_convincing_change_just_inside_the_tolerance_but_within_the_margin_is_regressed():
    # +4.5%, se 0.8%: below the tolerance, but within 0.674 se of it: a change beyond it is plausible
    v = compare_metric("t", const(1.0), const(1.045), 0.05, noise_floor=0.008)
    assert v.ci_low > 0 and v.change < 0.05
    assert v.status == REGRESSED and v.failed
    assert v.reason == "convincingly worse, and beyond the tolerance or close to it"


def test_convincing_change_of_exactly_the_tolerance_is_regressed():
    v = compare_metric("t", const(1.0), const(1.05), 0.05, noise_floor=0.01)
    assert v.ci_low > 0
    assert v.status == REGRESSED


@pytest.mark.parametrize("higher", [False, True])
def test_regressed_boundary_is_change_plus_margin_scaled_by_one_plus_change(higher):
    # the margin is 0.674 se_log * (1 + |change|); 1e-4 either side of that boundary decides
    # (without the (1 + |change|) factor the boundary would move by about 2.4e-4)
    tol, nf = 0.05, 0.008
    c = threshold(tol, nf)
    for delta, status in ((1e-4, REGRESSED), (-1e-4, OK)):
        worse = c + delta
        if higher:  # a rate: worse means lower, change = -worse and |change| = worse
            v = compare_metric("t", const(100.0, higher=True), const(100.0 * (1.0 - worse), higher=True), tol,
                               noise_floor=nf)
            assert v.change == pytest.approx(-worse) and v.ci_high < 0  # convincingly lower
        else:
            v = compare_metric("t", const(1.0), const(1.0 + worse), tol, noise_floor=nf)
            assert v.change == pytest.approx(worse) and v.ci_low > 0  # convincingly higher
        assert v.status == status, (delta, v)


def test_improved_mirror_image():
    # -4%, se 0.8%: convincingly better, but clearly within the tolerance: ok
    v = compare_metric("t", const(1.0), const(0.96), 0.05, noise_floor=0.008)
    assert v.ci_high < 0 and v.ci_low < -0.05
    assert v.status == OK
    assert v.reason == "convincing change, but clearly within the tolerance"
    # -4.6%: within 0.674 se of -5% (the margin grows with |change|): improved
    v = compare_metric("t", const(1.0), const(0.954), 0.05, noise_floor=0.008)
    assert v.change > -0.05 and v.ci_high < 0
    assert v.status == IMPROVED and not v.failed
    assert "baseline" in v.reason


def test_higher_is_better_mirror_of_the_margin():
    # tok/s -4% at se 0.8%: ok; -4.5%: regressed; +4.5%: improved
    assert compare_metric("t", const(100.0, higher=True), const(96.0, higher=True), 0.05,
                          noise_floor=0.008).status == OK
    assert compare_metric("t", const(100.0, higher=True), const(95.5, higher=True), 0.05,
                          noise_floor=0.008).status == REGRESSED
    assert compare_metric("t", const(100.0, higher=True), const(104.5, higher=True), 0.05,
                          noise_floor=0.008).status == IMPROVED


def test_ci_covering_zero_and_beyond_the_tolerance_is_noisy():
    v = compare_metric("t", const(1.0), const(1.02), 0.05, noise_floor=0.03)
    assert v.ci_low < 0 < v.ci_high and v.ci_high > 0.05
    assert v.status == NOISY
    assert v.reason == "the confidence interval covers no change and a change beyond the tolerance"


def test_ci_covering_zero_and_beyond_minus_the_tolerance_only_is_noisy():
    # -3%, se 2%: the CI is about [-8%, +2%]: covers zero, reaches below -5% only
    v = compare_metric("t", const(1.0), const(0.97), 0.05, noise_floor=0.02)
    assert v.ci_low < -0.05 and 0 < v.ci_high < 0.05
    assert v.status == NOISY


def test_ci_covering_zero_inside_the_tolerance_is_ok():
    v = compare_metric("t", const(1.0), const(1.01), 0.05, noise_floor=0.01)
    assert -0.05 < v.ci_low < 0 < v.ci_high < 0.05
    assert v.status == OK
    assert v.reason == "within the tolerance"


def test_compare_metric_default_noise_floor_is_zero():
    # constant samples and no noise floor: se 0, so even +0.1% is a convincing (tiny) change
    v = compare_metric("t", const(1.0), const(1.001), 0.05)
    assert v.ci_low == pytest.approx(v.change) == pytest.approx(v.ci_high)
    assert v.status == OK and v.reason == "convincing change, but clearly within the tolerance"
    assert compare_metric("t", const(1.0), const(1.06), 0.05).status == REGRESSED
    # with the plugin's default floor (1%), +0.1% is not convincing
    assert config.DEFAULT_NOISE_FLOOR == 0.01
    v = compare_metric("t", const(1.0), const(1.001), 0.05, noise_floor=config.DEFAULT_NOISE_FLOOR)
    assert v.ci_low < 0 < v.ci_high and v.reason == "within the tolerance"


# -- higher is better ---------------------------------------------------------------------------

def test_tokens_per_second_dropping_is_regressed():
    v = compare_metric("t", tok_metric(tight(100.0)), tok_metric(tight(90.0)), tolerance=0.05)
    assert v.status == REGRESSED
    assert v.change == pytest.approx(-0.10)
    assert v.higher_is_better is True
    assert v.p_value < 0.001


def test_tokens_per_second_rising_is_improved():
    v = compare_metric("t", tok_metric(tight(100.0)), tok_metric(tight(110.0)), tolerance=0.05)
    assert v.status == IMPROVED
    assert v.change == pytest.approx(0.10)


def test_tokens_per_second_small_drop_is_ok():
    v = compare_metric("t", tok_metric(tight(100.0)), tok_metric(tight(99.0)), tolerance=0.05)
    assert v.status == OK


# -- normalize ----------------------------------------------------------------------------------

def tracking_run(k: float, speed: float, seed: int, n: int = 30):
    """A CPU-bound workload: every round takes k probe-times, the machine's speed drifting.

    One probe time per round (measure.run pairs each round with the probe around it)."""
    rng = random.Random(seed)
    probes = [speed * (1.0 + 0.5 * rng.random()) for _ in range(n)]
    samples = [k * p for p in probes]
    return samples, probes


def test_auto_uses_adjusted_samples_when_the_probe_tracks_the_work():
    b_s, b_p = tracking_run(100.0, 1.0, seed=1)
    c_s, c_p = tracking_run(100.0, 1.3, seed=2)  # a 30% slower machine, same code
    base, cur = time_metric(b_s, b_p), time_metric(c_s, c_p)
    assert compare._use_adjusted(base, cur) is True
    v = compare_metric("t", base, cur, tolerance=0.05)
    assert v.adjusted is True
    assert v.change == pytest.approx(0.0, abs=1e-9)
    assert v.raw_change > 0.1  # the plain medians moved with the machine
    assert v.status == OK
    assert "speed-adjusted; raw +" in verdict_message(v)


def test_auto_detects_a_real_regression_on_adjusted_samples():
    b_s, b_p = tracking_run(100.0, 1.0, seed=1)
    c_s, c_p = tracking_run(110.0, 1.0, seed=2)  # 10% more work per round
    v = compare_metric("t", time_metric(b_s, b_p), time_metric(c_s, c_p), tolerance=0.05)
    assert v.adjusted is True
    assert v.change == pytest.approx(0.10)
    assert v.status == REGRESSED


def sleep_run(seed: int, n: int = 30):
    """A workload that does not run on the CPU: flat rounds, whatever the probe says."""
    rng = random.Random(seed)
    probes = [1.0 + rng.random() for _ in range(n)]
    samples = [0.1 * (1.0 + 0.001 * rng.uniform(-1, 1)) for _ in range(n)]
    return samples, probes


def test_auto_keeps_raw_samples_when_the_work_does_not_follow_the_probe():
    b_s, b_p = sleep_run(1)
    c_s, c_p = sleep_run(2)
    base, cur = time_metric(b_s, b_p, cpu_share=0.02), time_metric(c_s, c_p, cpu_share=0.03)
    assert compare._use_adjusted(base, cur) is False
    v = compare_metric("t", base, cur, tolerance=0.05)
    assert v.adjusted is False
    assert v.status == OK


def test_off_never_adjusts():
    b_s, b_p = tracking_run(100.0, 1.0, seed=1)
    c_s, c_p = tracking_run(100.0, 1.3, seed=2)
    base, cur = time_metric(b_s, b_p), time_metric(c_s, c_p, normalize="off")
    assert compare._use_adjusted(base, cur) is False
    v = compare_metric("t", base, cur, tolerance=0.05)
    assert v.adjusted is False
    assert v.change == pytest.approx(v.raw_change)
    assert v.change > 0.1


def test_on_always_adjusts_when_probes_exist():
    b_s, b_p = sleep_run(1)
    c_s, c_p = sleep_run(2)
    assert compare._use_adjusted(time_metric(b_s, b_p), time_metric(c_s, c_p, normalize="on")) is True


def test_rates_are_multiplied_by_the_probe():
    # tok/s falls when the machine slows down: rate = k / probe time, the same code on a 30% slower machine
    b_s, b_p = tracking_run(1.0, 1.0, seed=1)
    c_s, c_p = tracking_run(1.0, 1.3, seed=2)
    base = Metric("tok_per_s", "tok/s", True, [1000.0 / s for s in b_s], b_p, cpu_share=0.99)
    cur = Metric("tok_per_s", "tok/s", True, [1000.0 / s for s in c_s], c_p, cpu_share=0.97)
    assert compare.adjusted_samples(cur) == pytest.approx([1000.0 * c_p[i] / c_s[i] for i in range(len(c_s))])
    assert compare.adjusted_samples(cur) == pytest.approx([1000.0] * len(c_s))
    v = compare_metric("t", base, cur, tolerance=0.05)
    assert v.raw_change < -0.1  # the plain rate dropped with the machine
    assert v.adjusted is True
    assert v.change == pytest.approx(0.0, abs=1e-9)
    assert v.status == OK


def test_adjusted_samples_of_a_time_divide_by_the_probe():
    m = time_metric([2.0, 4.0, 9.0], [1.0, 2.0, 3.0])
    assert compare.adjusted_samples(m) == pytest.approx([2.0, 2.0, 3.0])


def test_probes_that_do_not_pair_with_the_samples_are_an_error():
    # n + 1 probes (the old bracketing form) no longer pair with n samples
    m = time_metric([1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="3 samples need as many probe times, got 4"):
        compare.adjusted_samples(m)


def test_no_adjustment_without_probes_on_both_sides():
    b_s, b_p = tracking_run(100.0, 1.0, seed=1)
    c_s, c_p = tracking_run(100.0, 1.0, seed=2)
    assert compare._use_adjusted(time_metric(b_s, None), time_metric(c_s, c_p, normalize="on")) is False
    assert compare._use_adjusted(time_metric(b_s, b_p), time_metric(c_s, None, normalize="on")) is False
    assert compare._use_adjusted(time_metric(b_s, []), time_metric(c_s, c_p)) is False


# -- messages and formatting --------------------------------------------------------------------

def test_verdict_message_names_everything():
    v = compare_metric("t::a", time_metric(tight(2.0)), time_metric(tight(2.2)), tolerance=0.05)
    msg = verdict_message(v)
    assert "\n" not in msg
    assert msg.startswith("time regressed: ")
    assert "baseline 2 s -> current 2.2 s" in msg
    assert "change +10.0%" in msg
    assert "tolerance 5.0%" in msg
    assert "99% CI [" in msg
    assert f"[{fmt_pct(v.ci_low)}, {fmt_pct(v.ci_high)}]" in msg
    assert "p=" in msg
    assert "(lower is better)" in msg
    assert "speed-adjusted" not in msg


def test_verdict_message_higher_is_better_and_unit():
    v = compare_metric("t", tok_metric(tight(100.0)), tok_metric(tight(90.0)), tolerance=0.03, confidence=0.95)
    msg = verdict_message(v)
    assert msg.startswith("tok_per_s regressed: baseline 100 tok/s -> current 90 tok/s")
    assert "change -10.0%" in msg
    assert "95% CI" in msg
    assert "tolerance 3.0%" in msg
    assert "(higher is better)" in msg


@pytest.mark.parametrize("value, text", [
    (None, "-"), (math.nan, "-"), (math.inf, "+inf%"), (-math.inf, "-inf%"),
    (0.1, "+10.0%"), (-0.05, "-5.0%"), (0.0, "+0.0%"), (0.12345, "+12.3%"),
])
def test_fmt_pct(value, text):
    assert fmt_pct(value) == text


@pytest.mark.parametrize("value, text", [
    (None, "-"), (0, "0"), (0.0, "0.0"), (math.inf, "inf"),
    (1234.4, "1,234"), (1500.7, "1,501"), (-2500.0, "-2,500"), (12.3456, "12.35"), (0.5, "0.5"),
    (0.012344, "0.01234"), (999.94, "999.9"), (123456.0, "123,456"), (1e-5, "1e-05"), (-2.5, "-2.5"),
])
def test_fmt_value(value, text):
    assert fmt_value(value) == text


def test_not_compared_lists_the_differences():
    cur = time_metric([3.0, 1.0, 2.0])
    v = not_compared("t::a", cur, 0.05, ["cpu: A -> B", "kernel: 5 -> 6"])
    assert v.status == NOT_COMPARED and not v.failed
    assert v.current == 2.0 and v.n_current == 3
    assert v.reason == "machine fingerprint differs: cpu: A -> B; kernel: 5 -> 6"
    assert not_compared("t", time_metric([]), 0.05, ["x"]).current is None


def test_verdict_to_dict_and_failed():
    v = Verdict(test="t", metric="m", status=REGRESSED, unit="s", higher_is_better=False, tolerance=0.05, current=1.0)
    d = v.to_dict()
    assert d["status"] == "regressed" and d["metric"] == "m" and d["tolerance"] == 0.05
    assert v.failed
    for status in (OK, IMPROVED, NEW, NOT_COMPARED, NOISY):
        assert not Verdict(test="t", metric="m", status=status, unit="", higher_is_better=True,
                           tolerance=0.05, current=1.0).failed


def test_metric_direction():
    assert Metric("a", "", True, [1.0]).direction == "higher"
    assert Metric("a", "", False, [1.0]).direction == "lower"


def test_mismatch_names_the_unit_before_the_direction():
    base = Metric("step", "ms", False, [1.0, 2.0])
    assert mismatch(base, Metric("step", "ms", False, [3.0])) is None
    assert mismatch(base, Metric("step", "ms", False, [])) is None  # samples play no part
    assert mismatch(base, Metric("step", "s", False, [1.0])) == "unit 's' differs from the baseline's 'ms'"
    assert mismatch(base, Metric("step", "s", True, [1.0])) == "unit 's' differs from the baseline's 'ms'"
    assert (mismatch(base, Metric("step", "ms", True, [1.0]))
            == "direction 'higher' differs from the baseline's 'lower'")
    assert (mismatch(Metric("tok", "tok/s", True, [1.0]), Metric("tok", "tok/s", False, [1.0]))
            == "direction 'lower' differs from the baseline's 'higher'")


@pytest.mark.parametrize("base_share, cur_share, expected", [
    (1.0, 0.95, True), (0.81, 0.8, True), (0.79, 1.0, False), (1.0, 0.5, False), (None, 1.0, False), (1.0, None, False),
])
def test_auto_adjusts_only_work_that_runs_on_the_timing_thread(base_share, cur_share, expected):
    b_s, b_p = tracking_run(100.0, 1.0, seed=1)
    c_s, c_p = tracking_run(100.0, 1.3, seed=2)
    base, cur = time_metric(b_s, b_p, cpu_share=base_share), time_metric(c_s, c_p, cpu_share=cur_share)
    assert compare._use_adjusted(base, cur) is expected
    assert compare_metric("t", base, cur, tolerance=0.05).adjusted is expected


def test_probes_of_different_kinds_are_never_mixed():
    # a baseline probed with the Python probe cannot speed-adjust a run probed by a reference binary
    b_s, b_p = tracking_run(100.0, 1.0, seed=1)
    c_s, c_p = tracking_run(100.0, 1.3, seed=2)
    base, cur = time_metric(b_s, b_p), time_metric(c_s, c_p)
    cur.probe_kind = "refrun-O3"
    assert compare._use_adjusted(base, cur) is False
    v = compare_metric("t", base, cur, tolerance=0.05)
    assert v.adjusted is False and v.change == pytest.approx(v.raw_change)
    base.probe_kind = "refrun-O3"
    assert compare._use_adjusted(base, cur) is True


# -- deterministic (exact) metrics --------------------------------------------------------------

def count_metric(value, exact=True, n=1):
    return Metric("instructions", "instr", False, [float(value)] * n, exact=exact)


@pytest.mark.parametrize("current, status", [
    (1_000_000, OK), (1_000_999, OK), (1_001_001, REGRESSED), (998_999, IMPROVED), (999_001, OK),
])
def test_exact_metrics_compare_without_statistics(current, status):
    # one sample each (a deterministic count needs one run) and a 0.1% tolerance: the change alone decides
    v = compare_metric("t", count_metric(1_000_000), count_metric(current), 0.001, noise_floor=0.05)
    assert v.status == status
    assert v.change == pytest.approx(current / 1_000_000 - 1)
    assert v.ci_low == v.ci_high == v.change and v.p_value is None


def test_exact_metric_higher_is_better_direction():
    base = Metric("hits", "", True, [1000.0], exact=True)
    assert compare_metric("t", base, Metric("hits", "", True, [990.0], exact=True), 0.005).status == REGRESSED
    assert compare_metric("t", base, Metric("hits", "", True, [1010.0], exact=True), 0.005).status == IMPROVED


def test_exact_needs_both_sides_exact():
    # a baseline recorded before the metric was declared exact is compared with statistics
    v = compare_metric("t", count_metric(1_000_000, exact=False), count_metric(1_002_000), 0.001)
    assert v.status == NOISY and "too few samples" in v.reason


def test_exact_gate_false_is_info():
    cur = Metric("instructions", "instr", False, [2e6], exact=True, gate=False)
    v = compare_metric("t", count_metric(1e6), cur, 0.001)
    assert v.status == compare.INFO and "regressed" in v.reason


# -- the one decision rule ------------------------------------------------------------------------

def test_unpaired_verdicts_say_they_used_the_saved_baseline():
    assert compare_metric("t", time_metric(tight(1.0)), time_metric(tight(1.1)), 0.05).reference == "saved"
    assert compare_metric("t", count_metric(1e6), count_metric(1e6), 0.001).reference == "saved"
    assert compare_metric("t", None, time_metric(tight(1.0)), 0.05).reference == "saved"


def test_decide_is_the_rule_of_compare_metric():
    # decide() on the estimate that compare_metric forms gives the same verdict, field by field
    base, cur = time_metric(tight(1.0)), time_metric(tight(1.04))
    v = compare_metric("t", base, cur, 0.05, noise_floor=0.008)
    est = stats.ratio_of_medians(base.samples, cur.samples, noise_floor=0.008)
    known = Verdict(test="t", metric="time", status=NEW, unit="s", higher_is_better=False, tolerance=0.05,
                    current=v.current, baseline=v.baseline, confidence=0.99, raw_change=v.raw_change,
                    n_current=51, n_baseline=51)
    assert compare.decide(known, est) == v
    assert compare.decide(known, est, short="too few").status == NOISY
    assert compare.decide(known, est, short="too few").reason == "too few"
    assert compare.decide(known, est, short="too few").p_value is None


@pytest.mark.parametrize("log_change, se, tolerance, status", [
    (math.log(1.10), 0.01, 0.05, REGRESSED),   # far beyond, convincing
    (math.log(1.045), 0.008, 0.05, REGRESSED),  # inside, but within 0.674 se of the tolerance
    (math.log(1.04), 0.008, 0.05, OK),         # convincing, clearly inside
    (math.log(1.02), 0.03, 0.05, NOISY),       # the interval covers 0 and reaches beyond
    (math.log(0.90), 0.01, 0.05, IMPROVED),
    (0.0, 0.0, 0.05, OK),
])
def test_decide_on_an_estimate_alone(log_change, se, tolerance, status):
    known = Verdict(test="t", metric="time", status=NEW, unit="s", higher_is_better=False, tolerance=tolerance,
                    current=1.0, confidence=0.99)
    v = compare.decide(known, stats.ratio_estimate(math.exp(log_change), se))
    assert v.status == status
    assert v.change == pytest.approx(math.expm1(log_change))
    # a rate that changed by as much the other way gets the same status
    rate = replace(known, higher_is_better=True)
    assert compare.decide(rate, stats.ratio_estimate(2.0 - math.exp(log_change), se)).status == status


# -- paired rounds of a reference build -----------------------------------------------------------

def paired_run(slowdown: float, seed: int, n: int = 30, higher: bool = False, machine: float = 1.0,
               paired_ref: str = "git 1a2b3c4d") -> Metric:
    """n interleaved rounds: the machine's speed wanders by up to 30% from round to round (both
    builds of a round see it alike), each round has 1% of its own jitter."""
    rng = random.Random(seed)
    samples, paired = [], []
    for _ in range(n):
        speed = machine * (1.0 + 0.3 * rng.random())
        ref = 2.0 * speed * (1.0 + 0.01 * rng.uniform(-1, 1))
        this = 2.0 * (1.0 + slowdown) * speed * (1.0 + 0.01 * rng.uniform(-1, 1))
        if higher:  # tokens per second: the reciprocal of a time
            ref, this = 100.0 / ref, 100.0 / this
        samples.append(this)
        paired.append(ref)
    unit = "tok/s" if higher else "s"
    return Metric("tok_per_s" if higher else "time", unit, higher, samples, paired=paired, paired_ref=paired_ref)


@pytest.mark.parametrize("higher", [False, True])
def test_a_ten_percent_slower_build_is_regressed_against_its_paired_reference(higher):
    cur = paired_run(0.10, seed=1, higher=higher)
    v = compare_metric("t::a", None, cur, tolerance=0.05)
    assert v.status == REGRESSED and v.failed
    assert v.reference == "paired:git 1a2b3c4d"
    assert v.change == pytest.approx(1 / 1.1 - 1 if higher else 0.10, abs=0.01)
    assert v.ci_low > (-0.2 if higher else 0.0) and v.ci_high < (0.0 if higher else 0.2)
    assert v.baseline == pytest.approx(stats.median(cur.paired))
    assert v.current == pytest.approx(stats.median(cur.samples))
    assert v.n_baseline == v.n_current == 30
    assert v.adjusted is False
    assert v.raw_change == pytest.approx(stats.median(cur.samples) / stats.median(cur.paired) - 1)


def test_identical_builds_are_ok_however_the_machine_wanders():
    # rounds that wander by 30% give a ratio of medians that is all over the place; the paired ratios do not
    for seed in range(20):
        cur = paired_run(0.0, seed=seed)
        v = compare_metric("t", None, cur, tolerance=0.03)
        assert v.status == OK, (seed, v)
        assert v.ci_low > -0.03 and v.ci_high < 0.03
        unpaired = compare_metric("t", Metric("time", "s", False, list(cur.paired)),
                                  Metric("time", "s", False, list(cur.samples)), tolerance=0.03)
        assert unpaired.ci_high - unpaired.ci_low > 3 * (v.ci_high - v.ci_low)


def test_paired_comparison_has_no_noise_floor_and_ignores_the_baseline():
    cur = paired_run(0.04, seed=3)
    base = time_metric(tight(1.0))  # a baseline that says +100%: not used
    v = compare_metric("t", base, cur, tolerance=0.05, noise_floor=0.05)
    ratios = [s / p for s, p in zip(cur.samples, cur.paired)]
    se = stats.run_log_median_se(ratios)
    est = stats.ratio_estimate(stats.median(ratios), se)
    assert v.change == pytest.approx(stats.median(ratios) - 1)
    assert v.ci_low == pytest.approx(est.low - 1) and v.ci_high == pytest.approx(est.high - 1)
    assert v.baseline == pytest.approx(stats.median(cur.paired)) and v.reference.startswith("paired:")
    # the 5% floor would have made +4% at a 5% tolerance noisy; without it, it is decided
    assert v.status in (OK, REGRESSED)


def test_change_comes_from_the_ratios_not_from_the_medians():
    # the machine is twice as fast in the second half: each pair still says +10%
    samples = [1.1] * 5 + [0.55] * 6
    paired = [1.0] * 5 + [0.5] * 6
    cur = Metric("time", "s", False, samples, paired=paired, paired_ref="dir /x")
    v = compare_metric("t", None, cur, 0.05)
    assert v.change == pytest.approx(0.10)
    assert v.raw_change == pytest.approx(0.55 / 0.5 - 1)  # the medians' ratio, shown
    assert v.status == REGRESSED and v.reference == "paired:dir /x"


def test_too_few_pairs_are_noisy():
    cur = Metric("time", "s", False, [1.2, 1.2], paired=[1.0, 1.0], paired_ref="binary /x/run")
    v = compare_metric("t", None, cur, 0.05)
    assert v.status == NOISY and not v.failed
    assert v.reason == "too few paired rounds to decide (2; need 3)"
    assert v.reference == "paired:binary /x/run" and v.baseline == 1.0 and v.n_baseline == 2


def test_rounds_that_do_not_pair_are_noisy_with_the_reason():
    cur = Metric("time", "s", False, [1.0, 1.1, 1.2, 1.3], paired=[1.0, 1.0, 1.0], paired_ref="x")
    v = compare_metric("t", None, cur, 0.05)
    assert v.status == NOISY and v.reason == "the reference build's 3 rounds do not pair with the 4 samples"


def test_a_paired_value_that_is_not_positive_is_noisy():
    cur = Metric("misses", "", False, [0.0, 1.0, 2.0], paired=[1.0, 1.0, 1.0], gate=False)
    v = compare_metric("t", None, cur, 0.05)
    assert v.status == compare.INFO and "paired values must be positive" in v.reason


def test_paired_gate_false_is_info_and_the_note_is_kept():
    cur = paired_run(0.10, seed=1)
    cur.gate, cur.note = False, "derived"
    v = compare_metric("t", None, cur, 0.05)
    assert v.status == compare.INFO and v.reason.startswith("informational (regressed: ")
    assert v.details == {"note": "derived"} and v.reference == "paired:git 1a2b3c4d"


def test_a_paired_metric_without_baseline_is_never_new():
    for slowdown in (0.0, 0.10, -0.10):
        v = compare_metric("t", None, paired_run(slowdown, seed=2), 0.05)
        assert v.status != NEW
    assert compare_metric("t", None, paired_run(-0.10, seed=2), 0.05).status == IMPROVED


def test_empty_paired_rounds_are_noisy_not_new():
    v = compare_metric("t", None, Metric("time", "s", False, [], paired=[], paired_ref="x"), 0.05)
    assert v.status == NOISY and v.current is None and v.baseline is None


def test_exact_paired_metric_compares_the_ratio_with_the_tolerance():
    cur = Metric("instructions", "instr", False, [1_010_000.0] * 3, paired=[1_000_000.0] * 3, exact=True,
                 paired_ref="git abc")
    v = compare_metric("t", None, cur, 0.005)
    assert v.status == REGRESSED and v.change == pytest.approx(0.01) and v.p_value is None
    assert v.reference == "paired:git abc"
    assert compare_metric("t", None, cur, 0.02).status == OK


def test_an_unfit_measurement_is_oversubscribed_whatever_it_decided():
    from pytest_llmperf.compare import OVERSUBSCRIBED, compare_metric, unfit_verdict

    base = Metric("tok_per_s", "tok/s", True, [100.0, 101.0, 99.0, 100.5, 99.5] * 4)
    slow = Metric("tok_per_s", "tok/s", True, [50.0, 51.0, 49.0, 50.5, 49.5] * 4, unfit="oversubscribed: 2 threads")
    v = compare_metric("t", base, slow, 0.05)
    assert v.status == "regressed"
    u = unfit_verdict(v, slow)
    assert u.status == OVERSUBSCRIBED and u.reason == "oversubscribed: 2 threads"
    assert u.change == pytest.approx(v.change) and u.p_value is None
    # a fit measurement, or a verdict that decided nothing, is left alone
    fit = Metric("tok_per_s", "tok/s", True, list(slow.samples))
    assert unfit_verdict(v, fit) is v
    new = compare_metric("t", None, slow, 0.05)
    assert unfit_verdict(new, slow) is new
    noisy = replace(v, status="noisy")
    assert unfit_verdict(noisy, slow).status == OVERSUBSCRIBED
