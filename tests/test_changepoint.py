"""Unit tests of pytest_llmperf.changepoint on seeded and exact series (pure, deterministic)."""

from __future__ import annotations

import math
import random

import pytest

from pytest_llmperf import changepoint as cp
from pytest_llmperf.changepoint import ChangePoint, Drift, find_drift, find_steps


def nightly(n: int, seed: int, sd: float = 0.01, level=lambda i: 0.0, base: float = 100.0) -> list[float]:
    """n nightly values base * exp(level(i) + N(0, sd)), seeded."""
    rng = random.Random(seed)
    return [base * math.exp(level(i) + rng.gauss(0.0, sd)) for i in range(n)]


def step_at(k: int, ratio: float):
    return lambda i: math.log(ratio) if i >= k else 0.0


def ramp_from(k: int, per_night: float):
    return lambda i: (i - k + 1) * math.log1p(per_night) if i >= k else 0.0


# -- steps ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_5pct_step_at_night_20_of_30_is_found_there(seed):
    values = nightly(30, seed, level=step_at(20, 0.95))
    [found] = find_steps(values)
    assert found.kind == "step"
    assert found.index == 20
    assert found.change == pytest.approx(-0.05, abs=0.012)
    assert found.before == pytest.approx(100.0, rel=0.01)
    assert found.after == pytest.approx(95.0, rel=0.01)
    assert found.change == pytest.approx(found.after / found.before - 1.0)
    assert 0.0 <= found.p_value < 0.01


def test_step_before_and_after_are_the_segment_medians():
    values = [10.0, 11.0, 9.0, 10.0, 10.5, 20.0, 21.0, 19.0, 20.0, 20.5]
    [found] = find_steps(values)
    assert (found.index, found.kind) == (5, "step")
    assert found.before == 10.0
    assert found.after == 20.0
    assert found.change == pytest.approx(1.0)


def test_step_up_and_step_down_both_found_with_the_sign_of_the_change():
    down = find_steps(nightly(40, 7, level=step_at(25, 0.94)))
    up = find_steps(nightly(40, 7, level=step_at(25, 1.06)))
    assert [(c.index, c.kind) for c in down] == [(25, "step")]
    assert [(c.index, c.kind) for c in up] == [(25, "step")]
    assert down[0].change == pytest.approx(-0.06, abs=0.01)
    assert up[0].change == pytest.approx(0.06, abs=0.01)


def test_two_steps_in_one_series():
    level = lambda i: (math.log(0.95) if i >= 20 else 0.0) + (math.log(1.08) if i >= 40 else 0.0)  # noqa: E731
    found = find_steps(nightly(60, 11, level=level))
    assert [(c.index, c.kind) for c in found] == [(20, "step"), (40, "step")]
    assert found[0].change == pytest.approx(-0.05, abs=0.012)
    assert found[1].change == pytest.approx(0.08, abs=0.012)
    # the segment between the steps is the after of the first and the before of the second
    assert found[0].after == found[1].before


def test_steps_are_found_in_long_series_too():
    level = lambda i: math.log(0.97) if 100 <= i < 250 else 0.0  # noqa: E731
    found = find_steps(nightly(365, 5, level=level))  # 3 sd steps: placed within 2 nights
    assert [c.kind for c in found] == ["step", "step"]
    assert abs(found[0].index - 100) <= 2 and abs(found[1].index - 250) <= 2
    assert found[0].change < 0 < found[1].change


def test_min_change_hides_small_steps_but_not_large_ones():
    values = nightly(30, 3, sd=0.002, level=step_at(15, 0.98))
    [small] = find_steps(values)
    assert small.index == 15 and small.change == pytest.approx(-0.02, abs=0.003)
    assert find_steps(values, min_change=0.05) == []
    assert find_steps(values, min_change=0.015) == [small]


def test_a_smaller_alpha_needs_more_evidence():
    values = nightly(30, 9, sd=0.02, level=step_at(15, 0.97))  # a 1.5 sd step
    p = min((c.p_value for c in find_steps(values, alpha=0.5)), default=None)
    assert p is not None
    assert find_steps(values, alpha=p / 2) == []


# -- the newest night ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_5pct_step_at_the_newest_night_is_found_that_night(seed):
    values = nightly(30, seed, level=step_at(29, 0.95))
    found = find_steps(values)
    assert [(c.index, c.kind) for c in found] == [(29, "last")]
    assert found[0].after == values[29]
    assert found[0].change == pytest.approx(-0.05, abs=0.02)
    assert found[0].p_value < 0.01


def test_newest_night_in_a_short_series():
    [found] = find_steps([100.0, 101.0, 99.0, 100.0, 80.0])
    assert (found.index, found.kind) == (4, "last")
    assert found.before == 100.0
    assert found.after == 80.0
    assert found.change == pytest.approx(-0.2)
    assert find_steps([100.0, 101.0, 99.0, 100.0, 100.5]) == []


def test_newest_night_is_measured_against_the_segment_after_the_last_step():
    values = nightly(40, 4, level=lambda i: math.log(0.9) if 20 <= i < 39 else 0.0)  # down at 20, back at 39
    found = find_steps(values)
    assert [(c.index, c.kind) for c in found] == [(20, "step"), (39, "last")]
    assert found[1].before == pytest.approx(90.0, rel=0.01)
    assert found[1].change == pytest.approx(1 / 0.9 - 1, abs=0.03)


def test_a_big_newest_night_is_last_not_a_step_two_nights_old():
    for seed in range(10):
        values = nightly(30, seed, level=step_at(29, 0.8))
        assert [(c.index, c.kind) for c in find_steps(values)] == [(29, "last")], seed


def test_a_step_two_nights_old_is_a_step_at_its_night():
    values = nightly(30, 1, level=step_at(28, 0.95))
    assert [(c.index, c.kind) for c in find_steps(values)] == [(28, "step")]


def test_one_busy_night_in_the_reference_does_not_hide_the_newest_step():
    values = nightly(30, 2, level=step_at(29, 0.95))
    values[10] *= 1.3  # one night 30% off
    assert (29, "last") in [(c.index, c.kind) for c in find_steps(values)]


# -- no change ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [4, 5, 6, 30, 365])
def test_constant_series_has_no_step_and_no_drift(n):
    assert find_steps([42.0] * n) == []
    assert find_drift([42.0] * n) is None
    assert find_steps([3] * n) == []


@pytest.mark.parametrize("n", [5, 8, 12, 30, 100, 365])
def test_pure_noise_gives_few_false_change_points(n):
    # 20 fixed seeds per length at sd 1% and 3%; alpha 0.01 for the steps, the newest night and the
    # drift, so about 1 in 30 series may be flagged. More than 2 of 20 at one length would be a
    # false-alarm rate above 10%.
    for sd in (0.01, 0.03):
        steps = [s for s in range(20) if find_steps(nightly(n, 1000 * n + s, sd=sd))]
        drifts = [s for s in range(20) if find_drift(nightly(n, 1000 * n + s, sd=sd)) is not None]
        assert len(steps) <= 2, (sd, steps)
        assert len(drifts) <= 2, (sd, drifts)


def test_pure_noise_rate_of_false_change_points_over_300_series():
    flagged = sum(bool(find_steps(nightly(30, 50_000 + s))) for s in range(300))
    assert flagged <= 9  # 3%: the three tests at 1% each, Bonferroni making the steps' conservative


@pytest.mark.parametrize("n", [5, 6, 8, 15])
def test_the_newest_night_test_keeps_its_level_on_short_references(n):
    # 1000 pure-noise series of n nights: the newest night flagged in about 1% (alpha); trimming the
    # reference by median/MAD instead flagged 3-5% at these sizes
    flagged = sum(any(c.kind == "last" for c in find_steps(nightly(n, 70_000 + 1000 * n + s))) for s in range(1000))
    assert flagged <= 20


@pytest.mark.parametrize("values", [[], [5.0], [5.0, 50.0], [5.0, 50.0, 500.0]])
def test_short_series_give_nothing(values):
    assert find_steps(values) == []
    assert find_drift(values) is None


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "3"])
def test_a_value_that_is_not_positive_is_an_error_naming_its_index(bad):
    values = [10.0, 11.0, bad, 10.0]
    with pytest.raises(ValueError, match=r"find_steps: values must be positive finite numbers; value .* at index 2"):
        find_steps(values)
    with pytest.raises(ValueError, match=r"find_drift: .* at index 2"):
        find_drift(values)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, math.nan])
def test_alpha_out_of_range_is_an_error(alpha):
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        find_steps([1.0, 2.0, 3.0, 4.0], alpha=alpha)
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        find_drift([1.0, 2.0, 3.0, 4.0], alpha=alpha)


@pytest.mark.parametrize("min_change", [-0.01, math.nan, math.inf])
def test_min_change_must_be_a_relative_change(min_change):
    with pytest.raises(ValueError, match="min_change must be a relative change >= 0"):
        find_steps([1.0, 2.0, 3.0, 4.0], min_change=min_change)


# -- drift ----------------------------------------------------------------------------------------

def test_drift_on_an_exact_geometric_series():
    values = [100.0 * 0.99 ** i for i in range(15)]
    drift = find_drift(values)
    assert isinstance(drift, Drift)
    assert drift.start == 0
    assert drift.slope == pytest.approx(-0.01, abs=1e-12)
    assert drift.total == pytest.approx(0.99 ** 14 - 1, abs=1e-12)
    assert drift.p_value < 1e-5


def test_rising_exact_geometric_series_drifts_up():
    drift = find_drift([50.0 * 1.02 ** i for i in range(8)])
    assert drift is not None
    assert drift.slope == pytest.approx(0.02, abs=1e-12)
    assert drift.total == pytest.approx(1.02 ** 7 - 1, abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_minus_1pct_a_night_for_10_nights_after_20_flat_is_a_drift(seed):
    values = nightly(30, seed, level=ramp_from(20, -0.01))
    drift = find_drift(values)
    assert drift is not None
    assert 12 <= drift.start <= 22
    assert drift.slope < 0
    assert drift.total == pytest.approx(-0.095, abs=0.035)


def test_drift_after_a_step_starts_after_the_step():
    level = lambda i: math.log(1.1) * (i >= 10) + ((i - 29) * math.log(0.99) if i >= 30 else 0.0)  # noqa: E731
    values = nightly(45, 3, level=level)
    drift = find_drift(values)
    assert drift is not None
    assert 20 <= drift.start <= 31
    assert drift.total == pytest.approx(-0.14, abs=0.05)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_an_old_step_is_not_a_drift(seed):
    assert find_drift(nightly(30, seed, level=step_at(20, 0.95))) is None


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_step_at_the_newest_night_is_not_a_drift(seed):
    assert find_drift(nightly(30, seed, level=step_at(29, 0.9))) is None


def test_mann_kendall_counts_ties():
    # all pairs rising but many ties: the variance shrinks, S stays the count of rising pairs
    assert cp._mann_kendall([1.0, 1.0, 1.0, 1.0]) is None
    tied = cp._mann_kendall([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0])
    untied = cp._mann_kendall([1.0, 1.1, 2.0, 2.1, 3.0, 3.1, 4.0, 4.1])
    assert tied is not None and untied is not None
    assert 0 < untied < tied < 0.01  # 24 of 28 pairs rising (tied) against 28 of 28


# -- the seeded targets (issue 13, target 4; bench/changepoints.py prints the same figures) ----------

def test_targets_on_100_seeded_series_each():
    step = sum(any(c.index == 20 and c.kind == "step" for c in find_steps(nightly(30, s, level=step_at(20, 0.95))))
               for s in range(100))
    noise = sum(bool(find_steps(nightly(30, 10_000 + s))) for s in range(100))
    ramp_values = [nightly(30, 20_000 + s, level=ramp_from(20, -0.01)) for s in range(100)]
    ramp = sum(bool(find_steps(v)) or find_drift(v) is not None for v in ramp_values)
    last = sum(any(c.index == 29 and c.kind == "last" for c in find_steps(nightly(30, 30_000 + s,
                                                                                  level=step_at(29, 0.95))))
               for s in range(100))
    assert step >= 95
    assert noise <= 5
    assert ramp >= 95
    assert last >= 95


def test_results_are_a_function_of_the_values():
    values = nightly(120, 8, level=step_at(60, 0.96))
    assert find_steps(values) == find_steps(list(values))
    assert find_drift(values) == find_drift(tuple(values))
    assert all(isinstance(c, ChangePoint) for c in find_steps(values))


# -- Student's t ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("t", "df", "p"), [
    (2.0, 10, 0.07338803477074037),  # two-sided tail probabilities from a statistics table / scipy
    (3.169, 10, 0.010004633364384856),
    (9.925, 2, 0.009999688758109415),
    (1.0, 1, 0.5),
    (5.0, 28, 2.7733414997812672e-05),
    (0.5, 3, 0.651447964848151),
])
def test_student_t_two_sided_tail(t, df, p):
    assert cp._t_two_sided(t, df) == pytest.approx(p, rel=1e-9)
    assert cp._t_two_sided(0.0, df) == 1.0
    assert cp._t_two_sided(math.inf, df) == 0.0
