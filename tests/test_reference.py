"""Unit tests of pytest_llmperf.reference: selection of the accepted nights, the random-effects model
of the nightly medians, and the verdicts against a multi-night reference (real history records)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from pytest_llmperf import compare, reference, stats
from pytest_llmperf.compare import IMPROVED, INFO, NOISY, OK, REGRESSED, Metric
from pytest_llmperf.history import Accept, Point, Run
from pytest_llmperf.reference import compare_history, reference_for, select

FLOOR = 0.01


def point(median: float = 1.0, se: float | None = 0.003, status: str | None = "ok", unit: str = "s",
          higher: bool = False, adjusted: float | None = None, probe: str | None = None,
          share: float | None = None, exact: bool = False) -> Point:
    return Point(name="time", unit=unit, higher_is_better=higher, median=median, n=30, se=se, adjusted=adjusted,
                 probe_kind=probe, cpu_share=share, status=status, change=None, reference=None, exact=exact)


def run(i: int, p: Point | None = None, fp: str = "fp1", outcome: str = "passed", reset: bool = False,
        metric: str = "time") -> Run:
    return Run(time=f"2026-12-{i + 1:02d}T23:00:00Z", run_id=f"r{i}", nodeid="t.py::a", fingerprint=fp,
               plugin_version="0.1.0", commits={"repo": {"commit": "a" * 40, "dirty": False}}, outcome=outcome,
               reset=reset, metrics={metric: p if p is not None else point()})


def accept(i: int, run_id: str | None) -> Accept:
    return Accept(time=f"2026-12-{i + 1:02d}T23:30:00Z", nodeid="t.py::a", run_id=run_id, why="intended")


def ids(chosen) -> list[str]:
    return [r.run_id for r, _ in chosen]


# -- select -------------------------------------------------------------------------------------

def test_select_oldest_first_and_the_newest_limit():
    entries = [run(i) for i in range(8)]
    assert ids(select(entries, "fp1", "time", 5)) == ["r3", "r4", "r5", "r6", "r7"]
    assert ids(select(entries, "fp1", "time", 20)) == [f"r{i}" for i in range(8)]
    chosen = select(entries, "fp1", "time", 1)
    assert ids(chosen) == ["r7"] and chosen[0][1] is entries[7].metrics["time"]


def test_select_needs_a_positive_limit():
    with pytest.raises(ValueError, match="at least 1 night"):
        select([run(0)], "fp1", "time", 0)


def test_select_leaves_out_other_fingerprints_missing_metrics_and_regressed_or_failed_runs():
    entries = [
        run(0), run(1, fp="fp2"), run(2, point(status=REGRESSED)), run(3, outcome="failed"),
        run(4, metric="other"), run(5, point(status=NOISY)), run(6, point(status=IMPROVED)),
        run(7, point(status=None)), run(8, point(status="new")),
    ]
    assert ids(select(entries, "fp1", "time", 10)) == ["r0", "r5", "r6", "r7", "r8"]
    assert ids(select(entries, "fp2", "time", 10)) == ["r1"]
    assert ids(select(entries, "fp1", "other", 10)) == ["r4"]


def test_a_reset_run_starts_the_reference_and_counts_itself_whatever_its_verdict():
    entries = [run(0), run(1), run(2, point(status=REGRESSED), outcome="failed", reset=True), run(3), run(4)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r2", "r3", "r4"]
    # the last reset wins
    entries.append(run(5, reset=True))
    assert ids(select(entries, "fp1", "time", 10)) == ["r5"]


def test_an_accept_restarts_at_the_run_it_names_which_counts_whatever_its_verdict():
    entries = [run(0), run(1), run(2, point(status=REGRESSED), outcome="failed"), accept(2, "r2"), run(3)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r2", "r3"]


def test_an_accept_without_a_run_restarts_after_itself():
    entries = [run(0), run(1), accept(1, None), run(2), run(3)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r2", "r3"]
    # a run the history no longer holds (retention) is the same
    entries = [run(0), run(1), accept(1, "gone"), run(2)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r2"]
    # nothing after it yet: no nights
    assert select([run(0), accept(0, None)], "fp1", "time", 10) == []


def test_an_accept_may_name_a_run_written_after_it():
    # --llmperf-accept in the same session: the accept line can come before the run's line
    entries = [run(0), run(1), accept(1, "r3"), run(2), run(3, point(status=REGRESSED), outcome="failed"), run(4)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r3", "r4"]


def test_the_later_of_a_reset_and_an_accept_decides():
    entries = [run(0), run(1), accept(1, "r1"), run(2), run(3, reset=True), run(4)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r3", "r4"]
    entries = [run(0), run(1, reset=True), run(2), run(3), accept(3, "r3"), run(4)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r3", "r4"]


def test_an_accepted_run_of_another_fingerprint_does_not_count():
    entries = [run(0), run(1, fp="fp2"), accept(1, "r1"), run(2)]
    assert ids(select(entries, "fp1", "time", 10)) == ["r2"]


# -- the random-effects model ---------------------------------------------------------------------

def test_no_spread_when_the_nights_agree_within_their_errors():
    y = [math.log(v) for v in (1.0, 1.002, 0.999, 1.001, 0.998)]
    assert reference.between_variance(y, [0.01] * 5) == 0.0
    assert reference.between_variance([0.0], [0.01]) == 0.0


def test_paule_mandel_with_equal_errors_is_the_sample_variance_less_the_error_variance():
    # with equal s the weights are equal, Q = SS / (s^2 + tau^2), and Q = k - 1 gives tau^2 = var(y) - s^2
    y = [0.0, 0.03, -0.02, 0.01, 0.05]
    expected = statistics.variance(y) - 0.005 ** 2
    assert reference.between_variance(y, [0.005] * 5) == pytest.approx(expected, rel=1e-9)


def test_a_known_spread_is_recovered_from_many_nights():
    rng = random.Random(7)
    s = [rng.uniform(0.003, 0.01) for _ in range(400)]
    y = [rng.gauss(0.0, 0.02) + rng.gauss(0.0, si) for si in s]
    assert math.sqrt(reference.between_variance(y, s)) == pytest.approx(0.02, rel=0.1)
    center, se, tau = reference._summary(reference.posterior(y, s, math.log1p(FLOOR)))
    assert tau == pytest.approx(0.02, rel=0.1)
    assert abs(center) < 3 * se and se == pytest.approx(0.02 / math.sqrt(400), rel=0.2)


def test_fewer_than_three_nights_weigh_by_the_floor():
    y, s = [math.log(1.0), math.log(1.1)], [0.001, 0.02]
    floor = math.log1p(FLOOR)
    w = [1.0 / (v * v + floor * floor) for v in s]
    ((p, tau, mu, var),) = reference.posterior(y, s, floor)
    assert p == 1.0 and tau == floor
    assert mu == pytest.approx((w[0] * y[0] + w[1] * y[1]) / (w[0] + w[1]), rel=1e-12)
    assert var == pytest.approx(1.0 / (w[0] + w[1]), rel=1e-12)


def test_a_night_with_no_scatter_does_not_take_all_the_weight():
    # se 0 (identical rounds) is floored at SE_FLOOR: the two nights weigh 1/1e-6 against 1/1e-4
    ((_, _, mu, _),) = reference.posterior([0.0, 0.1], [0.0, 0.01], 0.0)
    assert mu == pytest.approx(0.1 * 1e4 / (1e6 + 1e4), rel=1e-9)


def test_nights_with_a_larger_error_pull_less():
    y, floor = [0.0, 0.0, 0.0, 0.05], math.log1p(FLOOR)
    precise = reference._summary(reference.posterior(y, [0.003] * 4, floor))[0]
    vague = reference._summary(reference.posterior(y, [0.003] * 3 + [0.05], floor))[0]
    assert 0 < vague < precise


def test_the_grid_is_a_probability_distribution_over_tau():
    comps = reference.posterior([0.0, 0.01, -0.01, 0.02], [0.004] * 4, math.log1p(FLOOR))
    assert math.fsum(p for p, *_ in comps) == pytest.approx(1.0)
    assert all(p > 0 and tau > 0 for p, tau, _, _ in comps)


def test_a_lucky_agreement_of_few_nights_does_not_make_the_gate_overconfident():
    # three identical nights measure no spread; the floor's prior keeps the verdict's spread near it,
    # and the predictive interval is wider than a normal one with that spread
    y, s, floor = [0.0, 0.0, 0.0], [0.003] * 3, math.log1p(FLOOR)
    assert reference.between_variance(y, s) == 0.0
    comps = reference.posterior(y, s, floor)
    _, se, tau = reference._summary(comps)
    assert tau > 0.5 * floor
    assert reference.predictive_se(comps, 0.003, 0.99) > math.sqrt(0.003 ** 2 + tau ** 2 + se ** 2)


def test_the_predictive_se_of_one_spread_is_the_normal_one():
    comps = reference.posterior([0.0, 0.01], [0.004, 0.005], 0.01)
    ((_, tau, _, var),) = comps
    assert reference.predictive_se(comps, 0.006, 0.99) == pytest.approx(math.sqrt(0.006 ** 2 + tau ** 2 + var))
    assert reference.predictive_se(comps, math.inf, 0.99) == math.inf


# -- reference_for --------------------------------------------------------------------------------

def nights(medians, se=0.003, **kw):
    return [(run(i, point(m, se=se, **kw)), point(m, se=se, **kw)) for i, m in enumerate(medians)]


def time_metric(center: float, n: int = 31, spread: float = 0.01, **kw) -> Metric:
    samples = [center * (1.0 + spread * (2.0 * i / (n - 1) - 1.0)) for i in range(n)]
    return Metric("time", "s", False, samples, **kw)


def test_reference_of_five_nights():
    pts = nights([1.0, 1.01, 0.99, 1.005, 0.995])
    ref = reference_for(pts, time_metric(1.0), FLOOR)
    assert ref is not None
    assert ref.label == "history:5" and ref.nights == 5
    assert ref.runs == ("r0", "r1", "r2", "r3", "r4")
    assert ref.first_time == "2026-12-01T23:00:00Z" and ref.last_time == "2026-12-05T23:00:00Z"
    assert ref.center == pytest.approx(1.0, abs=0.005) and ref.raw_center == pytest.approx(ref.center)
    assert ref.between_sd is not None and 0 < ref.between_sd < 0.02
    assert ref.measured_sd == pytest.approx(math.sqrt(reference.between_variance(ref.logs, ref.ses)))
    assert ref.adjusted is False and ref.probe_kind is None and ref.exact is False and ref.left_out == ()
    assert 0 < ref.se_log < 0.01


def test_two_nights_estimate_no_spread():
    ref = reference_for(nights([1.0, 1.02]), time_metric(1.0), FLOOR)
    assert ref is not None and ref.nights == 2 and ref.between_sd is None and ref.measured_sd is None
    floor = math.log1p(FLOOR)
    w = 1.0 / (0.003 ** 2 + floor ** 2)
    assert ref.se_log == pytest.approx(math.sqrt(1.0 / (2 * w)))
    assert ref.center == pytest.approx(math.sqrt(1.0 * 1.02))


def test_nights_that_cannot_serve_are_skipped():
    pts = nights([1.0, 1.0]) + [(run(5), point(1.0, unit="ms")), (run(6), point(1.0, higher=True)),
                                (run(7), point(1.0, se=None)), (run(8), point(1.0, se=math.inf))]
    ref = reference_for(pts, time_metric(1.0), FLOOR)
    assert ref is not None and ref.runs == ("r0", "r1")
    assert reference_for([(run(7), point(1.0, se=None))], time_metric(1.0), FLOOR) is None
    assert reference_for([], time_metric(1.0), FLOOR) is None


def test_a_wild_night_is_left_out():
    # one night 20% faster with a tight interval (an idle machine, verdict improved): not one of the spread
    pts = nights([1.0, 0.8, 1.005, 0.995, 1.01, 0.99])
    ref = reference_for(pts, time_metric(1.0), FLOOR)
    assert ref is not None and ref.left_out == ("r1",) and ref.nights == 5 and "r1" not in ref.runs
    assert ref.center == pytest.approx(1.0, abs=0.005)
    assert ref.between_sd is not None and ref.between_sd < 0.02
    v = compare_history("t", ref, time_metric(1.10), 0.05, 0.99, FLOOR)
    assert v.status == REGRESSED and v.details["left_out"] == "r1" and v.reference == "history:5"
    assert compare_history("t", ref, time_metric(1.0), 0.05, 0.99, FLOOR).status == OK


def test_a_real_spread_is_not_mistaken_for_outliers_and_a_wild_night_is_found():
    # nights that vary by 2% (twice the floor), 60 series of 6: under 1% of the 360 nights left out;
    # the same series with its first night 20% faster: that night left out in nearly all
    floor = math.log1p(FLOOR)
    dropped = found = 0
    for seed in range(60):
        rng = random.Random(seed)
        s = [rng.uniform(0.003, 0.01) for _ in range(6)]
        y = [rng.gauss(0.0, 0.02) + rng.gauss(0.0, si) for si in s]
        dropped += len(reference._outliers(y, s, floor))
        y[0] += math.log(0.8)
        found += reference._outliers(y, s, floor) == [0]
    assert dropped <= 3 and found >= 55


def test_no_screen_below_four_nights():
    assert reference._outliers([0.0, 0.0, 0.5], [0.003] * 3, 0.01) == []


def test_adjusted_when_every_night_and_tonight_have_probes_of_the_same_kind_and_are_cpu_bound():
    def night(i, raw, adj, kind="python", share=0.95):
        p = point(raw, adjusted=adj, probe=kind, share=share)
        return (run(i, p), p)
    # the machine was slower on the nights (raw 1.2), the work per probe the same (adjusted 10)
    pts = [night(i, 1.2, 10.0) for i in range(4)]
    cur = time_metric(1.1, probes=[0.1] * 31, cpu_share=0.9)  # tonight: adjusted 11 = +10%
    ref = reference_for(pts, cur, FLOOR)
    assert ref is not None and ref.adjusted is True and ref.probe_kind == "python"
    assert ref.center == pytest.approx(10.0) and ref.raw_center == pytest.approx(1.2)
    v = compare_history("t", ref, cur, 0.05, 0.99, FLOOR)
    assert v.adjusted is True and v.change == pytest.approx(0.10) and v.status == REGRESSED
    assert v.raw_change == pytest.approx(1.1 / 1.2 - 1) and v.baseline == pytest.approx(1.2)
    assert v.current == pytest.approx(1.1)
    # one night of another probe kind, one not CPU-bound, tonight without probes: raw medians
    for other in (night(9, 1.2, 10.0, kind="refrun-O3"), night(9, 1.2, 10.0, share=0.3),
                  (run(9), point(1.2))):
        ref = reference_for(pts + [other], cur, FLOOR)
        assert ref is not None and ref.adjusted is False and ref.center == pytest.approx(1.2)
        v = compare_history("t", ref, cur, 0.05, 0.99, FLOOR)
        assert v.adjusted is False and v.change == pytest.approx(v.raw_change) and v.status == IMPROVED
    assert reference_for(pts, time_metric(1.1, probes=[0.1] * 31, cpu_share=0.9, normalize="off"),
                         FLOOR).adjusted is False


# -- compare_history ------------------------------------------------------------------------------

def steady_reference(center: float = 1.0, k: int = 5, higher: bool = False):
    unit = "tok/s" if higher else "s"
    pts = [(run(i, point(center * f, unit=unit, higher=higher)), point(center * f, unit=unit, higher=higher))
           for i, f in enumerate((1.0, 1.004, 0.996, 1.002, 0.998, 1.001, 0.999)[:k])]
    cur = Metric("tok_per_s" if higher else "time", unit, higher, [center])
    ref = reference_for(pts, cur, FLOOR)
    assert ref is not None
    return ref


@pytest.mark.parametrize("factor, status", [(1.10, REGRESSED), (1.0, OK), (1.01, OK), (0.90, IMPROVED)])
def test_verdicts_against_a_steady_reference(factor, status):
    ref = steady_reference()
    v = compare_history("t::a", ref, time_metric(factor), 0.05, 0.99, FLOOR)
    assert v.status == status
    assert v.reference == "history:5" and v.n_baseline == 5 and v.n_current == 31
    assert v.baseline == pytest.approx(ref.raw_center) and v.current == pytest.approx(factor)
    assert v.change == pytest.approx(factor / ref.center - 1)
    assert v.raw_change == pytest.approx(v.change) and v.adjusted is False
    assert v.details == {"between_sd": f"{ref.between_sd * 100:.1f}%"}
    assert v.test == "t::a" and v.metric == "time" and v.confidence == 0.99 and v.tolerance == 0.05
    if status == REGRESSED:
        assert v.ci_low > 0 and v.p_value < 0.001 and v.failed


def test_a_rate_dropping_is_regressed():
    ref = steady_reference(100.0, higher=True)
    samples = [90.0 * (1 + 0.01 * (i - 15) / 15) for i in range(31)]
    v = compare_history("t", ref, Metric("tok_per_s", "tok/s", True, samples), 0.05, 0.99, FLOOR)
    assert v.status == REGRESSED and v.change == pytest.approx(-0.10, abs=0.005) and v.higher_is_better


def test_widely_spread_nights_make_a_moderate_change_noisy():
    pts = nights([1.0, 1.12, 0.9, 1.08, 0.95])
    ref = reference_for(pts, time_metric(1.0), FLOOR)
    assert ref is not None and ref.between_sd > 0.05 and ref.left_out == ()
    v = compare_history("t", ref, time_metric(ref.center * 1.06), 0.05, 0.99, FLOOR)
    assert v.status == NOISY and v.ci_low < 0 < v.ci_high
    assert v.details["between_sd"] == f"{ref.between_sd * 100:.1f}%"


def test_tonight_varies_by_the_spread_between_nights():
    # the same +2.5% is convincing against a saved baseline with a 0.1% floor but not against nights
    # that vary by 2%: tonight is one more of them
    pts = nights([1.0, 1.02, 0.98, 1.03, 0.97], se=0.002)
    ref = reference_for(pts, time_metric(1.0), 0.001)
    assert ref is not None and ref.between_sd > 0.015
    tonight = time_metric(ref.center * 1.025, spread=0.002)
    v = compare_history("t", ref, tonight, 0.02, 0.99, 0.001)
    assert v.ci_low < 0 and v.status == NOISY


def test_below_three_nights_the_floor_stands_in_for_the_spread():
    pts = nights([1.0, 1.0])
    ref = reference_for(pts, time_metric(1.0), FLOOR)
    tonight = time_metric(1.03)
    v = compare_history("t", ref, tonight, 0.05, 0.99, FLOOR)
    se = math.sqrt(stats.run_log_median_se(tonight.samples) ** 2 + math.log1p(FLOOR) ** 2 + ref.se_log ** 2)
    est = stats.ratio_estimate(1.03 / ref.center, se)
    assert v.ci_low == pytest.approx(est.low - 1) and v.ci_high == pytest.approx(est.high - 1)
    assert v.details == {} and v.reference == "history:2"


def test_too_few_samples_tonight_is_noisy():
    v = compare_history("t", steady_reference(), Metric("time", "s", False, [1.2, 1.2]), 0.05, 0.99, FLOOR)
    assert v.status == NOISY and v.reason == "too few samples to decide (2 current; need 3)"


def test_no_samples_tonight_is_noisy():
    v = compare_history("t", steady_reference(), Metric("time", "s", False, []), 0.05, 0.99, FLOOR)
    assert v.status == NOISY and v.current is None


def test_gate_false_is_info_and_the_note_is_kept():
    cur = time_metric(1.2, gate=False, note="derived")
    v = compare_history("t", steady_reference(), cur, 0.05, 0.99, FLOOR)
    assert v.status == INFO and v.reason.startswith("informational (regressed")
    assert v.details["note"] == "derived" and "between_sd" in v.details


def test_an_exact_metric_against_its_nights():
    def night(i, count):
        p = point(count, se=None, exact=True, unit="instr")
        return (run(i, p), p)
    pts = [night(i, 1_000_000.0) for i in range(3)] + [night(3, 1_000_100.0)]
    cur = Metric("time", "instr", False, [1_002_000.0], exact=True)
    ref = reference_for(pts, cur, FLOOR)
    assert ref is not None and ref.exact and ref.center == 1_000_000.0 and ref.se_log == 0.0
    v = compare_history("t", ref, cur, 0.001, 0.99, FLOOR)
    assert v.status == REGRESSED and v.change == pytest.approx(0.002) and v.p_value is None
    assert compare_history("t", ref, cur, 0.005, 0.99, FLOOR).status == OK
    # nights recorded before the metric was exact: statistics, and these have no se: no reference
    assert reference_for([(run(0), point(1e6, se=None, unit="instr"))], cur, FLOOR) is None


def test_compare_history_uses_the_one_decision_rule():
    ref = steady_reference()
    tonight = time_metric(1.045, spread=0.002)
    v = compare_history("t", ref, tonight, 0.05, 0.99, FLOOR)
    comps = reference.posterior(ref.logs, ref.ses, math.log1p(FLOOR))
    se = reference.predictive_se(comps, stats.run_log_median_se(tonight.samples), 0.99)
    est = stats.ratio_estimate(stats.median(tonight.samples) / ref.center, se)
    known = compare.Verdict(test="t", metric="time", status=NOISY, unit="s", higher_is_better=False, tolerance=0.05,
                            current=v.current, baseline=ref.raw_center, n_current=31, n_baseline=5, confidence=0.99,
                            raw_change=v.raw_change, reference="history:5", details=dict(v.details))
    assert compare.decide(known, est) == v


def test_a_speed_adjusted_reference_and_a_run_without_probes_is_noisy_not_an_error():
    p = point(1.2, adjusted=10.0, probe="python", share=0.95)
    pts = [(run(i), p) for i in range(3)]
    ref = reference_for(pts, time_metric(1.1, probes=[0.1] * 31, cpu_share=0.9), FLOOR)
    assert ref is not None and ref.adjusted
    v = compare_history("t", ref, time_metric(1.1), 0.05, 0.99, FLOOR)
    assert v.status == NOISY and "no probes" in v.reason


def test_since_reset_is_every_run_of_the_metric_since_the_last_reset_whatever_its_verdict():
    entries = [run(0), run(1, reset=True), run(2, point(status=REGRESSED), outcome="failed"), run(3, fp="fp2"),
               run(4, metric="other"), run(5)]
    assert [r.run_id for r in reference.since_reset(entries, "fp1", "time")] == ["r1", "r2", "r5"]
    assert reference.reset_start(entries) == (1, "r1")
    entries += [accept(6, None), run(7)]
    assert reference.reset_start(entries) == (7, None)
    assert [r.run_id for r in reference.since_reset(entries, "fp1", "time")] == ["r7"]
    assert reference.reset_start([run(0), run(1)]) == (0, None)


# -- comparable_nights --------------------------------------------------------------------------

def _p(median: float, status: str | None = "ok", adjusted: float | None = None, probe: str | None = None,
       ref: str | None = None, change: float | None = None) -> Point:
    return Point(name="tok_per_s", unit="tok/s", higher_is_better=True, median=median, n=12, se=0.01,
                 adjusted=adjusted, probe_kind=probe, cpu_share=1.0, status=status, change=change, reference=ref)


def test_comparable_nights_of_a_paired_tonight_are_the_ratios_to_the_same_build():
    points = [
        _p(100, adjusted=1.0, probe="refrun-O3", ref="saved"),  # the probed night that saved the baseline
        _p(80, ref="paired:git aaaa", change=0.01),  # a loaded night: raw median low, ratio fine
        _p(120, ref="paired:git bbbb", change=-0.2),  # paired with another build: not comparable
        _p(60, ref="paired:git aaaa", change=-0.09, status=compare.OVERSUBSCRIBED),
        _p(110, ref="paired:git aaaa", change=-0.1, status=REGRESSED),
    ]
    kind, chosen, values = reference.comparable_nights(points, "paired:git aaaa", None)
    assert kind == "paired" and chosen == [1, 4]
    assert values == pytest.approx([1.01, 0.9])


def test_comparable_nights_of_a_probed_tonight_leave_out_the_paired_nights():
    points = [_p(100, adjusted=1.00, probe="refrun-O3"), _p(70, ref="paired:git aaaa", change=0.0),
              _p(101, adjusted=1.02, probe="refrun-O3")]
    assert reference.comparable_nights(points, None, "refrun-O3") == ("adjusted", [0, 2], [1.0, 1.02])
    # a night probed with another kind: the plain medians of every night
    mixed = [*points, _p(99, adjusted=0.5, probe="refrun-q8-O3")]
    assert reference.comparable_nights(mixed, None, "refrun-O3") == ("median", [0, 1, 2, 3], [100, 70, 101, 99])
    # no probes tonight: the plain medians, oversubscribed nights left out
    points.append(_p(30, status=compare.OVERSUBSCRIBED))
    assert reference.comparable_nights(points, None, None) == ("median", [0, 1, 2], [100, 70, 101])


def test_an_oversubscribed_night_is_never_a_reference_night():
    entries = [run(0), run(1, point(status=compare.OVERSUBSCRIBED)), run(2)]
    assert ids(select(entries, "fp1", "time", 5)) == ["r0", "r2"]
