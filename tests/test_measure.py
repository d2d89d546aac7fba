"""Unit tests of pytest_llmperf.measure.run with a fake clock: nothing here depends on real time."""

from __future__ import annotations

import random
import time

import pytest

from pytest_llmperf import measure
from pytest_llmperf.measure import MeasureSettings, run


class FakeClock:
    """Time stands still except when the workload (or the fake probe) advances it."""

    def __init__(self):
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Workload:
    """Each call costs costs[i] fake seconds (the last cost repeats) and returns the call count."""

    def __init__(self, clock: FakeClock, costs):
        self.clock = clock
        self.costs = costs if callable(costs) else (lambda i, c=list(costs): c[min(i, len(c) - 1)])
        self.calls = 0
        self.args = None

    def __call__(self, *args, **kwargs):
        self.args = (args, kwargs)
        self.clock.advance(self.costs(self.calls))
        self.calls += 1
        return self.calls


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def probe_cost(monkeypatch, clock):
    """Make the speed probe take 0.5 fake seconds, so that probe times are known."""
    cost = 0.5
    monkeypatch.setattr(measure, "speed_probe", lambda: clock.advance(cost))
    return cost


@pytest.fixture
def probe_costs(monkeypatch, clock):
    """Make the i-th speed probe take costs[i] fake seconds; returns the list of costs taken."""
    taken = []

    def use(costs):
        it = iter(costs)

        def probe():
            cost = next(it)
            taken.append(cost)
            clock.advance(cost)

        monkeypatch.setattr(measure, "speed_probe", probe)
        return taken

    return use


class CpuClock(FakeClock):
    """This thread's CPU time: advanced by the workload only while it runs on the CPU."""


class SharedWorkload:
    """Each call costs wall[i] seconds of wall time, of which share(i) runs on this thread's CPU."""

    def __init__(self, clock: FakeClock, cpu: CpuClock, wall, share):
        self.clock, self.cpu = clock, cpu
        self.wall = wall if callable(wall) else (lambda i, c=list(wall): c[min(i, len(c) - 1)])
        self.share = share
        self.calls = 0

    def __call__(self):
        w = self.wall(self.calls)
        self.clock.advance(w)
        self.cpu.advance(w * self.share(self.calls))
        self.calls += 1
        return self.calls


def settings(**kw) -> MeasureSettings:
    base = {"warmup": "auto", "min_rounds": 5, "max_time": 1000.0, "tolerance": 0.05, "probe": False}
    base.update(kw)
    return MeasureSettings(**base)


def test_speed_probe_is_deterministic():
    assert measure.speed_probe() == measure.speed_probe()
    assert measure.speed_probe() == sum(i * i for i in range(measure.PROBE_LOOPS))


def test_speed_probe_takes_no_arguments_and_has_fixed_work():
    # the amount of work is fixed (baselines store its times): no loop count to pass
    with pytest.raises(TypeError):
        measure.speed_probe(20)
    assert measure.PROBE_LOOPS == 600


def test_fixed_warmup_discards_exactly_that_many_rounds(clock):
    fn = Workload(clock, [5.0, 4.0, 1.0])
    m = run(fn, settings=settings(warmup=2), clock=clock)
    assert m.warmup["discarded"] == 2
    assert m.samples == [1.0] * 5  # constant data: precise as soon as min_rounds are in
    assert m.stop_reason == "precise"
    assert m.rounds_total == 7 == fn.calls
    assert m.warmup["first"] == 5.0 and m.warmup["steady"] == 1.0 and m.warmup["ratio"] == 5.0
    assert "note" not in m.warmup
    assert m.iterations == 1


def test_fixed_warmup_zero_keeps_the_first_round(clock):
    fn = Workload(clock, [3.0, 1.0])
    m = run(fn, settings=settings(warmup=0), clock=clock)
    assert m.warmup["discarded"] == 0
    assert m.samples[0] == 3.0 and m.samples[1:] == [1.0] * (len(m.samples) - 1)
    assert m.rounds_total == len(m.samples)


def test_auto_warmup_discards_the_slow_first_round(clock):
    fn = Workload(clock, [10.0, 1.0])
    m = run(fn, settings=settings(), clock=clock)
    assert m.warmup["discarded"] == 1
    assert 10.0 not in m.samples and m.samples == [1.0] * len(m.samples)
    assert m.warmup["first"] == 10.0 and m.warmup["steady"] == 1.0
    assert m.warmup["ratio"] == pytest.approx(10.0)
    assert "note" not in m.warmup


def test_auto_warmup_discards_several_slow_rounds(clock):
    fn = Workload(clock, [50.0, 20.0, 10.0, 10.1, 9.9, 10.0])
    m = run(fn, settings=settings(), clock=clock)
    assert m.warmup["discarded"] == 2
    assert min(m.samples) >= 9.9 and max(m.samples) <= 10.1


def test_auto_warmup_of_a_steady_callable_discards_nothing(clock):
    fn = Workload(clock, [2.0])
    m = run(fn, settings=settings(), clock=clock)
    assert m.warmup["discarded"] == 0
    assert m.warmup["ratio"] == 1.0


def test_auto_warmup_bound_when_never_steady(clock):
    # alternating 1, 2, 1, 2...: never within 10% of the median
    fn = Workload(clock, lambda i: 1.0 + (i % 2))
    m = run(fn, settings=settings(max_warmup_rounds=6, min_rounds=4, max_time=30.0), clock=clock)
    assert m.warmup["discarded"] == 1
    assert "no steady state" in m.warmup["note"]
    assert m.rounds_total - 1 == len(m.samples)


def test_auto_warmup_bound_of_one_round_still_discards_the_first(clock):
    # the bound is hit after a single round: that round is still discarded (warm_end is always 1)
    fn = Workload(clock, [7.0, 1.0])
    m = run(fn, settings=settings(max_warmup_rounds=1), clock=clock)
    assert m.warmup["discarded"] == 1
    assert "no steady state" in m.warmup["note"]
    assert 7.0 not in m.samples and m.samples == [1.0] * len(m.samples)
    assert m.rounds_total == len(m.samples) + 1


def test_auto_warmup_of_a_slow_callable_discards_the_cold_first_round(clock):
    # One call takes longer than half the budget (the usual case for an LLM workload): the warm-up
    # gives up after one round and its note says it discarded the first round; the cold round must
    # then not be among the samples.
    fn = Workload(clock, [10.0, 1.0])
    m = run(fn, settings=settings(max_time=1.0), clock=clock)
    assert "discarded the first round" in m.warmup["note"]
    assert m.warmup["discarded"] == 1
    assert 10.0 not in m.samples


def test_tiny_callable_gets_iterations_so_a_round_lasts_min_round_time(clock):
    cost = 1e-5
    fn = Workload(clock, [cost])
    m = run(fn, settings=settings(min_round_time=0.001), clock=clock)
    assert m.iterations > 1
    assert m.iterations * cost >= 0.001 * (1 - 1e-9)
    assert m.iterations == pytest.approx(100, abs=1)
    assert all(s == pytest.approx(cost) for s in m.samples)  # samples are per call, not per round
    assert fn.calls == 1 + m.iterations * (m.rounds_total - 1)


def test_stops_on_the_time_budget_when_data_stay_noisy(clock):
    rng = random.Random(42)
    fn = Workload(clock, lambda i: rng.uniform(1.0, 3.0))
    m = run(fn, settings=settings(warmup=0, max_time=100.0), clock=clock)
    assert m.stop_reason == "time budget"
    assert m.elapsed >= 100.0
    assert m.elapsed < 100.0 + 3.0  # at most one round past the budget
    assert len(m.samples) == m.rounds_total >= 5


def test_min_rounds_taken_even_when_the_first_round_exceeds_the_budget(clock):
    fn = Workload(clock, [10.0])
    m = run(fn, settings=settings(warmup=0, min_rounds=5, max_time=1.0), clock=clock)
    assert len(m.samples) == 5
    assert m.stop_reason == "time budget"
    assert fn.calls == 5


def test_fixed_warmup_rounds_are_taken_beyond_the_budget_too(clock):
    fn = Workload(clock, [10.0])
    m = run(fn, settings=settings(warmup=3, min_rounds=3, max_time=1.0), clock=clock)
    assert m.warmup["discarded"] == 3 and len(m.samples) == 3 and fn.calls == 6


def test_stops_at_max_rounds(clock):
    rng = random.Random(1)
    fn = Workload(clock, lambda i: rng.uniform(1.0, 3.0))
    m = run(fn, settings=settings(warmup=0, min_rounds=3, max_rounds=7), clock=clock)
    assert m.stop_reason == "max rounds"
    assert len(m.samples) == 7


def test_precise_data_stop_early(clock):
    fn = Workload(clock, lambda i: 1.0 + 0.0001 * (i % 3))
    m = run(fn, settings=settings(warmup=0, min_rounds=5), clock=clock)
    assert m.stop_reason == "precise"
    assert len(m.samples) < 20


def test_decisive_false_keeps_going_until_the_budget(clock):
    seen = []

    def decisive(samples, probes):
        seen.append((list(samples), probes))
        return False

    fn = Workload(clock, [1.0])
    m = run(fn, settings=settings(warmup=0, max_time=40.0), decisive=decisive, clock=clock)
    assert m.stop_reason == "time budget"
    assert len(seen) >= 2
    assert seen[0][0] == [1.0] * 5  # first consulted once min_rounds are in
    assert [len(s) for s, _ in seen] == sorted(len(s) for s, _ in seen)
    assert all(p is None for _, p in seen)  # probe disabled
    assert len(m.samples) == 40  # 1 s rounds: the first check at or past 40 s


def test_decisive_true_stops_as_soon_as_precise(clock, probe_cost):
    seen = []

    def decisive(samples, probes):
        seen.append((list(samples), list(probes)))
        return True

    fn = Workload(clock, [1.0])
    m = run(fn, settings=settings(warmup=0, probe=True), decisive=decisive, clock=clock)
    assert m.stop_reason == "precise and decisive"
    assert len(seen) == 1
    samples, probes = seen[0]
    assert len(samples) == 5 and len(probes) == 5  # one probe time per round so far
    assert probes == [probe_cost] * 5
    assert m.probes == [probe_cost] * len(m.samples)


def test_decisive_not_consulted_while_imprecise(clock):
    calls = []
    rng = random.Random(3)
    fn = Workload(clock, lambda i: rng.uniform(1.0, 3.0))
    m = run(fn, settings=settings(warmup=0, max_time=30.0), decisive=lambda s, p: calls.append(1) or True, clock=clock)
    assert calls == []
    assert m.stop_reason == "time budget"


def test_probes_pair_with_rounds_and_are_not_in_the_samples(clock, probe_cost):
    fn = Workload(clock, [4.0, 2.0])
    m = run(fn, settings=settings(probe=True), clock=clock)
    assert m.warmup["discarded"] == 1
    assert m.samples == [2.0] * len(m.samples)  # the probe's 0.5 s is not counted in a round
    assert m.probes == [probe_cost] * len(m.samples)  # exactly one probe time per kept round


def test_each_round_is_paired_with_the_smaller_probe_around_it(clock, probe_costs):
    # 5 rounds (constant data: precise at min_rounds), a probe before each and one after the last
    taken = probe_costs([0.375, 0.125, 0.5, 0.25, 0.625, 0.0625])
    m = run(Workload(clock, [1.0]), settings=settings(warmup=0, probe=True), clock=clock)
    assert m.rounds_total == 5 and len(taken) == 6
    assert m.samples == [1.0] * 5
    assert m.probes == [0.125, 0.125, 0.25, 0.25, 0.0625]  # min(before, after) for each round


def test_probe_pairing_skips_the_warmup_rounds(clock, probe_costs):
    probe_costs([9.0, 8.0, 0.375, 0.25, 0.5, 0.75, 0.625, 0.875, 0.125])
    m = run(Workload(clock, [5.0, 4.0, 1.0]), settings=settings(warmup=2, probe=True), clock=clock)
    assert m.warmup["discarded"] == 2 and m.rounds_total == 7
    # kept rounds 2..6: probes[2..7] around them
    assert m.probes == [0.25, 0.25, 0.5, 0.625, 0.625]


def test_decisive_gets_one_probe_time_per_sample_so_far(clock, probe_costs):
    seen = []

    def decisive(samples, probes):
        seen.append((list(samples), list(probes)))
        return True

    probe_costs([0.375, 0.125, 0.5, 0.25, 0.625, 0.0625])
    m = run(Workload(clock, [1.0]), settings=settings(warmup=0, probe=True), decisive=decisive, clock=clock)
    assert m.stop_reason == "precise and decisive"
    # while measuring, the last round has no probe after it yet: its own probe before it is used
    assert seen == [([1.0] * 5, [0.125, 0.125, 0.25, 0.25, 0.625])]
    assert m.probes == [0.125, 0.125, 0.25, 0.25, 0.0625]  # the final probe then pairs with the last round


def test_no_probes_when_disabled(clock, monkeypatch):
    monkeypatch.setattr(measure, "speed_probe", lambda *a: pytest.fail("probe ran although disabled"))
    m = run(Workload(clock, [1.0]), settings=settings(probe=False), clock=clock)
    assert m.probes is None


def test_result_is_the_last_result_and_arguments_are_passed(clock):
    fn = Workload(clock, [1.0])
    m = run(fn, args=(1, 2), kwargs={"k": "v"}, settings=settings(warmup=1), clock=clock)
    assert m.result == fn.calls  # the count returned by the last call
    assert fn.args == ((1, 2), {"k": "v"})


def test_elapsed_covers_warmup_and_rounds(clock):
    fn = Workload(clock, [10.0, 1.0])
    m = run(fn, settings=settings(), clock=clock)
    assert m.elapsed == pytest.approx(10.0 + 1.0 * (fn.calls - 1))


def test_real_clock_smoke():
    # no fake clock: only structure is checked, never durations
    m = run(lambda: sum(range(100)), settings=MeasureSettings(max_time=0.05, min_rounds=3, warmup=1))
    assert m.result == 4950
    dropped = m.warmup.get("descheduled_rounds", 0)
    assert dropped == 0 or ("descheduled_rounds" in m.warmup and dropped > 0)
    assert len(m.samples) >= 1 and all(s >= 0 for s in m.samples)
    assert len(m.samples) + dropped == m.rounds_total - 1 >= 3
    assert m.probes is not None and len(m.probes) == len(m.samples)


def test_real_clock_uses_the_thread_cpu_time_by_default(monkeypatch):
    reads = []
    real = time.thread_time
    monkeypatch.setattr(time, "thread_time", lambda: reads.append(1) or real())
    m = run(lambda: sum(range(100)), settings=MeasureSettings(max_time=0.02, min_rounds=3, warmup=1))
    assert len(reads) == 2 * m.rounds_total  # read around every round


def test_fake_clock_without_cpu_clock_does_not_read_the_thread_cpu_time(clock, monkeypatch):
    monkeypatch.setattr(time, "thread_time", lambda: pytest.fail("thread_time read with a fake clock"))
    m = run(Workload(clock, [1.0]), settings=settings(warmup=0), clock=clock)
    assert m.samples == [1.0] * 5


# -- descheduled rounds -------------------------------------------------------------------------

def test_preempted_rounds_drops_the_round_that_lost_the_cpu():
    # a CPU-bound workload (share ~1.0): round 3 took twice the wall time for the same CPU time
    wall = [1.0, 1.0, 1.01, 2.0, 0.99, 1.0]
    cpu = [0.99, 0.98, 1.0, 1.0, 0.98, 0.99]
    assert measure.preempted_rounds(wall, cpu) == {3}


def test_preempted_rounds_keeps_rounds_just_above_the_drop_threshold():
    wall = [1.0] * 5
    # median share 1.0: below 0.85 is dropped, 0.86 is kept
    assert measure.preempted_rounds(wall, [1.0, 1.0, 0.86, 1.0, 1.0]) == set()
    assert measure.preempted_rounds(wall, [1.0, 1.0, 0.84, 1.0, 1.0]) == {2}
    assert measure.preempted_rounds(wall, [1.0, 0.5, 0.84, 1.0, 1.0]) == {1, 2}


def test_preempted_rounds_ignores_a_workload_that_is_not_on_this_cpu():
    # sleeps / waits for a GPU / other threads: CPU share low everywhere, even if very uneven
    wall = [1.0, 1.0, 2.0, 1.0, 1.0, 5.0]
    cpu = [0.05, 0.04, 0.05, 0.06, 0.05, 0.01]
    assert measure.preempted_rounds(wall, cpu) == set()
    # the median share must reach share_floor (0.9 by default) before anything is dropped
    assert measure.preempted_rounds([1.0] * 5, [0.89, 0.89, 0.89, 0.5, 0.89]) == set()
    assert measure.preempted_rounds([1.0] * 5, [0.89, 0.89, 0.89, 0.5, 0.89], share_floor=0.8) == {3}


def test_preempted_rounds_parameters_and_edge_cases():
    assert measure.preempted_rounds([], []) == set()
    assert measure.preempted_rounds([0.0, 1.0, 1.0], [0.0, 1.0, 1.0]) == set()  # zero wall time: share 1
    wall, cpu = [1.0] * 4, [1.0, 1.0, 0.9, 1.0]
    assert measure.preempted_rounds(wall, cpu) == set()
    assert measure.preempted_rounds(wall, cpu, drop_below=0.95) == {2}


def test_run_drops_a_descheduled_round(clock):
    cpu = CpuClock()
    # round 2 is preempted: twice the wall time, CPU time unchanged
    fn = SharedWorkload(clock, cpu, lambda i: 2.0 if i == 2 else 1.0, share=lambda i: 0.5 if i == 2 else 1.0)
    m = run(fn, settings=settings(warmup=0), clock=clock, cpu_clock=cpu)
    assert 2.0 not in m.samples and m.samples == [1.0] * len(m.samples)
    assert m.warmup["descheduled_rounds"] == 1
    assert m.rounds_total == len(m.samples) + 1
    assert m.stop_reason == "precise"
    assert len(m.samples) == 5  # the precision check counts kept samples only


def test_run_keeps_rounds_of_a_workload_that_sleeps(clock):
    cpu = CpuClock()
    # a sleep-like workload: 5% of the wall time on the CPU, one round with even less
    fn = SharedWorkload(clock, cpu, [1.0], share=lambda i: 0.01 if i == 2 else 0.05)
    m = run(fn, settings=settings(warmup=0), clock=clock, cpu_clock=cpu)
    assert m.samples == [1.0] * len(m.samples) == [1.0] * m.rounds_total
    assert "descheduled_rounds" not in m.warmup


def test_run_without_descheduled_rounds_has_no_count(clock):
    cpu = CpuClock()
    fn = SharedWorkload(clock, cpu, [1.0], share=lambda i: 1.0)
    m = run(fn, settings=settings(warmup=0), clock=clock, cpu_clock=cpu)
    assert "descheduled_rounds" not in m.warmup
    assert m.samples == [1.0] * 5 == [1.0] * m.rounds_total


def test_dropped_round_and_its_probe_leave_the_pairing_aligned(clock, probe_costs):
    cpu = CpuClock()
    taken = probe_costs([0.375, 0.125, 0.5, 0.25, 0.625, 0.75, 0.0625])
    fn = SharedWorkload(clock, cpu, lambda i: 3.0 if i == 2 else 1.0, share=lambda i: 1.0 / 3.0 if i == 2 else 1.0)
    m = run(fn, settings=settings(warmup=0, probe=True), clock=clock, cpu_clock=cpu)
    assert m.rounds_total == 6 and m.warmup["descheduled_rounds"] == 1
    assert len(taken) == 7  # a probe before each of the 6 rounds and one after the last
    assert m.samples == [1.0] * 5
    # rounds 0, 1, 3, 4, 5 with min(probe before, probe after); round 2 (0.5 / 0.25) is gone
    assert m.probes == [0.125, 0.125, 0.25, 0.625, 0.0625]


def test_descheduled_rounds_are_counted_after_the_warmup_only(clock):
    cpu = CpuClock()
    # warm-up round 0 is preempted too, but it is discarded anyway; round 3 is a measured round
    fn = SharedWorkload(clock, cpu, lambda i: 2.0 if i in (0, 3) else 1.0,
                        share=lambda i: 0.5 if i in (0, 3) else 1.0)
    m = run(fn, settings=settings(warmup=1), clock=clock, cpu_clock=cpu)
    assert m.warmup["discarded"] == 1
    assert m.warmup["descheduled_rounds"] == 1
    assert m.samples == [1.0] * len(m.samples) and m.rounds_total == len(m.samples) + 2


def test_cpu_time_is_per_call_when_rounds_have_iterations(clock):
    cpu = CpuClock()
    fn = SharedWorkload(clock, cpu, [1e-5], share=lambda i: 1.0)
    m = run(fn, settings=settings(warmup=0, min_round_time=0.001), clock=clock, cpu_clock=cpu)
    assert m.iterations > 1
    assert "descheduled_rounds" not in m.warmup
    assert len(m.samples) == m.rounds_total
    assert m.samples == pytest.approx([1e-5] * len(m.samples))


def test_cpu_share_tells_cpu_bound_work_from_sleeping():
    def spin():
        return sum(i * i for i in range(3000))

    busy = measure.run(spin, settings=MeasureSettings(warmup=0, min_rounds=5, max_time=0.05))
    asleep = measure.run(time.sleep, (0.002,), settings=MeasureSettings(warmup=0, min_rounds=5, max_time=0.05))
    assert busy.cpu_share is not None and busy.cpu_share > 0.8
    assert asleep.cpu_share is not None and asleep.cpu_share < 0.3


def test_cpu_share_is_none_without_a_cpu_clock(clock):
    fn = Workload(clock, [1.0])
    m = measure.run(fn, settings=MeasureSettings(warmup=0, min_rounds=3, max_time=100.0, probe=False), clock=clock)
    assert m.cpu_share is None


def test_not_adaptive_spends_the_whole_budget(clock):
    # perfectly steady rounds would stop as "precise" after a few rounds; a baseline run does not
    fn = Workload(clock, [1.0])
    quick = measure.run(fn, settings=MeasureSettings(warmup=0, min_rounds=5, max_time=100.0, probe=False), clock=clock)
    assert quick.stop_reason == "precise" and len(quick.samples) < 20
    fn = Workload(clock, [1.0])
    full = measure.run(fn, settings=MeasureSettings(warmup=0, min_rounds=5, max_time=100.0, probe=False,
                                                    adaptive=False), clock=clock)
    assert full.stop_reason == "time budget"
    assert len(full.samples) >= 99


def test_a_probe_function_replaces_the_speed_probe(clock):
    # e.g. a reference binary's seconds per token: its return value is the probe time as is
    values = iter([0.3, 0.1, 0.2, 0.4, 0.5, 0.05, 0.6])
    m = measure.run_rounds(lambda: (1.0, 1.0, None), settings(warmup=0, probe=True), clock=clock,
                           probe_fn=lambda: next(values))
    assert m.rounds_total == 5
    assert m.probes == [0.1, 0.1, 0.2, 0.4, 0.05]


# -- rounds that carry what was measured within them (a probe, a reference build) ----------------

class Paired:
    """A paired round: 1 fake second, this build's value cur(i) and the reference's ref(i), with
    CPU times cpu(i) and ref_cpu(i) (1 s: never descheduled, by default)."""

    def __init__(self, clock, cur, ref, cpu=None, ref_cpu=None):
        self.clock, self.cur, self.ref = clock, cur, ref
        self.cpu = cpu or (lambda i: 1.0)
        self.ref_cpu = ref_cpu or (lambda i: 1.0)
        self.calls = 0

    def __call__(self):
        i = self.calls
        self.calls += 1
        self.clock.advance(1.0)
        return measure.Round(self.cur(i), 0.5, self.cpu(i) / 2, reference=(self.ref(i), 0.5, self.ref_cpu(i) / 2))


def test_paired_rounds_keep_the_reference_values_aligned(clock, probe_costs):
    taken = probe_costs([0.5] * 100)
    sample = Paired(clock, lambda i: 100.0 + i, lambda i: 200.0 + i)
    m = measure.run_rounds(sample, settings(warmup=0, probe=True, max_time=9.5, adaptive=False), clock=clock,
                           paired=True)
    assert m.rounds_total == sample.calls >= 5
    assert taken == []  # no speed probe in paired mode, whatever settings.probe says
    assert m.probes is None
    assert m.samples == [100.0 + i for i in m.kept_rounds]
    assert m.paired == [200.0 + i for i in m.kept_rounds]


def test_paired_rounds_leave_out_a_round_where_either_side_was_descheduled(clock):
    sample = Paired(clock, lambda i: 100.0, lambda i: 90.0 + i, cpu=lambda i: 0.2 if i == 3 else 1.0,
                    ref_cpu=lambda i: 0.2 if i == 5 else 1.0)
    m = measure.run_rounds(sample, settings(warmup=0, max_time=12.0, adaptive=False), clock=clock, paired=True)
    assert m.kept_rounds == [i for i in range(m.rounds_total) if i not in (3, 5)]
    assert m.paired == [90.0 + i for i in m.kept_rounds]
    assert m.warmup["descheduled_rounds"] == 2


def test_paired_rounds_give_decisive_the_reference_values(clock):
    seen: list[tuple[list[float], list[float] | None]] = []

    def decisive(samples, paired):
        seen.append((list(samples), None if paired is None else list(paired)))
        return True

    m = measure.run_rounds(Paired(clock, lambda i: 10.0, lambda i: 20.0), settings(warmup=0), clock=clock,
                           decisive=decisive, paired=True)
    assert m.stop_reason == "precise and decisive"
    assert seen and all(p == [20.0] * len(s) for s, p in seen)


def test_a_paired_measurement_needs_rounds_with_the_reference(clock):
    with pytest.raises(ValueError, match="returns a Round with the reference's figures"):
        measure.run_rounds(lambda: (1.0, 1.0, None), settings(warmup=0), clock=clock, paired=True)
    with pytest.raises(ValueError, match="returns a Round with its probe time"):
        measure.run_rounds(lambda: measure.Round(1.0, 1.0, None), settings(warmup=0, probe=True), clock=clock,
                           probe_in_round=True)


def test_a_probe_within_the_round_is_the_rounds_speed(clock, probe_costs):
    taken = probe_costs([0.5] * 100)
    speeds = [0.3, 0.1, 0.2, 0.4, 0.5, 0.05, 0.6, 0.7]

    def sample():
        i = len(made)
        made.append(i)
        clock.advance(1.0)
        return measure.Round(1.0, 1.0, None, probe=speeds[i])

    made: list[int] = []
    m = measure.run_rounds(sample, settings(warmup=0, probe=True), clock=clock, probe_in_round=True)
    assert taken == []  # none taken around the rounds
    assert m.rounds_total == 5 and m.probes == speeds[:5]  # each round's own, not the smaller of two
    assert m.paired is None


def test_unpaired_rounds_have_no_paired_values(clock):
    m = measure.run_rounds(lambda: (1.0, 1.0, None), settings(warmup=0), clock=clock)
    assert m.paired is None
