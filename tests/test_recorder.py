"""Unit tests of pytest_llmperf.recorder.Recorder (measure/measure_as/record and their errors)."""

from __future__ import annotations

import math

import pytest

from pytest_llmperf import measure
from pytest_llmperf.compare import Metric
from pytest_llmperf.measure import MeasureSettings
from pytest_llmperf.recorder import Recorder, RecordError


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake_run(monkeypatch):
    """Route Recorder's measure.run through a fake clock; remember every call's settings and decisive."""
    clock = FakeClock()
    calls = []
    real_run = measure.run

    def run(fn, args, kwargs, settings, decisive=None):  # as the Recorder calls it
        calls.append({"settings": settings, "decisive": decisive})
        return real_run(fn, args, kwargs, settings, decisive=decisive, clock=clock)

    monkeypatch.setattr(measure, "run", run)
    monkeypatch.setattr(measure, "speed_probe", lambda: setattr(clock, "now", clock.now + 0.5))
    run.clock = clock
    run.calls = calls
    return run


def costing(clock, seconds, value="done"):
    def fn(*args, **kwargs):
        clock.now += seconds
        return (value, args, kwargs)
    return fn


SETTINGS = MeasureSettings(warmup=0, min_rounds=5, max_time=100.0)


def make(baseline=None, normalize="auto", tolerances=None):
    tolerances = tolerances or {}
    return Recorder(SETTINGS, lambda name: tolerances.get(name, 0.05), baseline=baseline, normalize=normalize)


# -- record -------------------------------------------------------------------------------------

def test_record_single_number():
    rec = make()
    rec.record("tok_per_s", 42, unit="tok/s", higher_is_better=True)
    m = rec.metrics["tok_per_s"]
    assert m.samples == [42.0] and isinstance(m.samples[0], float)
    assert m.unit == "tok/s" and m.higher_is_better is True and m.probes is None
    assert m.normalize == "off"


def test_record_list_and_generator():
    rec = make()
    rec.record("ms_per_step", [1.5, 2, 2.5], unit="ms", higher_is_better=False)
    rec.record("bytes", (x * 10 for x in range(1, 4)), higher_is_better=False)
    assert rec.metrics["ms_per_step"].samples == [1.5, 2.0, 2.5]
    assert rec.metrics["ms_per_step"].higher_is_better is False
    assert rec.metrics["bytes"].samples == [10.0, 20.0, 30.0] and rec.metrics["bytes"].unit == ""


def test_record_appends_with_the_same_name():
    rec = make()
    rec.record("tok_per_s", 10.0, unit="tok/s", higher_is_better=True)
    rec.record("tok_per_s", [11.0, 12.0])  # unit and direction may be left out the second time
    rec.record("tok_per_s", 13.0, unit="tok/s", higher_is_better=True)
    m = rec.metrics["tok_per_s"]
    assert m.samples == [10.0, 11.0, 12.0, 13.0]
    assert m.unit == "tok/s" and m.higher_is_better is True
    assert list(rec.metrics) == ["tok_per_s"]


def test_record_requires_higher_is_better_the_first_time():
    rec = make()
    with pytest.raises(RecordError) as exc:
        rec.record("tok_per_s", 10.0, unit="tok/s")
    assert "'tok_per_s'" in str(exc.value) and "higher_is_better" in str(exc.value)
    assert rec.metrics == {}


def test_record_direction_conflict():
    rec = make()
    rec.record("tok_per_s", 10.0, higher_is_better=True)
    with pytest.raises(RecordError, match=r"llmperf.record\('tok_per_s'\): direction differs"):
        rec.record("tok_per_s", 11.0, higher_is_better=False)
    assert rec.metrics["tok_per_s"].samples == [10.0]


def test_record_unit_conflict():
    rec = make()
    rec.record("lat", 10.0, unit="ms", higher_is_better=False)
    with pytest.raises(RecordError) as exc:
        rec.record("lat", 0.01, unit="s")
    assert str(exc.value) == "llmperf.record('lat'): unit 's' differs from the earlier 'ms'"
    assert rec.metrics["lat"].samples == [10.0]


@pytest.mark.parametrize("samples, fragment", [
    (math.nan, "sample nan is not a finite number"),
    ([1.0, math.inf], "sample inf is not a finite number"),
    ([-math.inf], "sample -inf is not a finite number"),
    # issue 11, item 2/13: zero and negative rates, numeric strings and bools, huge numbers
    (0, "sample 0.0 is zero in a gated metric"),
    ([5.0, -1.0], "sample -1.0 is negative"),
    (["1.0", "2.0"], "samples must be a number or a list of numbers, got '1.0'"),
    ([True, False], "samples must be a number or a list of numbers, got True"),
    ([10**400], "sample 1000000000000000000000000000000000000... is out of range"),
    ([1.7e308] * 3, "sample 1.7e+308 is out of range (must be below 1e+18)"),
    ([], "no samples"),
    (None, "samples must be a number or a list of numbers, got None"),
    (True, "samples must be a number or a list of numbers, got True"),
    (["1.0", "fast"], "samples must be a number or a list of numbers"),
    ("42", "samples must be a number or a list of numbers, got '42'"),
    ("", "samples must be a number or a list of numbers, got ''"),
    (b"42", "samples must be a number or a list of numbers, got b'42'"),
])
def test_record_bad_samples(samples, fragment):
    rec = make()
    with pytest.raises(RecordError) as exc:
        rec.record("tok_per_s", samples, higher_is_better=True)
    assert str(exc.value).startswith("llmperf.record('tok_per_s'): ")
    assert fragment in str(exc.value)
    assert rec.metrics == {}


def test_record_rejects_a_string_of_digits():
    # A number parsed from a program's output and passed as text must not turn into one sample per
    # character ("42" -> [4.0, 2.0]).
    rec = make()
    with pytest.raises(RecordError, match="tok_per_s"):
        rec.record("tok_per_s", "42", higher_is_better=True)
    assert rec.metrics == {}
    with pytest.raises(RecordError, match=r"llmperf.record\('tok_per_s'\): samples must be a number"):
        rec.record("tok_per_s", b"42", higher_is_better=True)
    assert rec.metrics == {}


def test_record_rejects_a_string_when_appending():
    rec = make()
    rec.record("tok_per_s", [10.0, 11.0], unit="tok/s", higher_is_better=True)
    with pytest.raises(RecordError, match="samples must be a number or a list of numbers, got '12'"):
        rec.record("tok_per_s", "12")
    assert rec.metrics["tok_per_s"].samples == [10.0, 11.0]


def test_record_bad_unit():
    with pytest.raises(RecordError, match=r"llmperf.record\('x'\): unit must be a string, got 3"):
        make().record("x", 1.0, unit=3, higher_is_better=True)


@pytest.mark.parametrize("name", ["", "tok per s", "9lives", "a/b", None, 3, "é"])
def test_record_bad_name(name):
    with pytest.raises(RecordError) as exc:
        make().record(name, 1.0, higher_is_better=True)
    assert f"invalid metric name {name!r}" in str(exc.value)


@pytest.mark.parametrize("name", ["tok_per_s", "_x", "mem.peak-rss", "T1"])
def test_record_good_names(name):
    rec = make()
    rec.record(name, 1.0, higher_is_better=True)
    assert rec.metrics[name].name == name


# -- measure / measure_as -----------------------------------------------------------------------

def test_measure_records_time_and_returns_the_result(fake_run):
    rec = make()
    result = rec.measure(costing(fake_run.clock, 2.0, "out"), 1, k=2)
    assert result == ("out", (1,), {"k": 2})
    m = rec.metrics["time"]
    assert m.unit == "s" and m.higher_is_better is False
    assert m.samples == [2.0] * len(m.samples) and len(m.samples) >= 5
    assert m.probes == [0.5] * len(m.samples)  # one probe time per round
    assert m.warmup == rec.measurements["time"].warmup
    assert m.normalize == "auto"
    assert rec.measurements["time"].samples is m.samples


def test_measure_twice_with_the_same_name_points_to_measure_as(fake_run):
    rec = make()
    rec.measure(costing(fake_run.clock, 1.0))
    with pytest.raises(RecordError) as exc:
        rec.measure(costing(fake_run.clock, 1.0))
    msg = str(exc.value)
    assert "'time'" in msg and "already recorded" in msg and "measure_as" in msg
    assert len(fake_run.calls) == 1


def test_measure_as_names_and_tolerances(fake_run):
    rec = make(tolerances={"prefill": 0.10, "decode": 0.02})
    rec.measure_as("prefill", costing(fake_run.clock, 3.0))
    rec.measure_as("decode", costing(fake_run.clock, 1.0))
    assert sorted(rec.metrics) == ["decode", "prefill"]
    assert rec.metrics["prefill"].samples[0] == 3.0 and rec.metrics["decode"].samples[0] == 1.0
    assert [c["settings"].tolerance for c in fake_run.calls] == [0.10, 0.02]
    assert all(c["settings"].min_rounds == 5 and c["settings"].max_time == 100.0 for c in fake_run.calls)


def test_measure_as_after_record_with_the_same_name_fails(fake_run):
    rec = make()
    rec.record("decode", 1.0, unit="s", higher_is_better=False)
    with pytest.raises(RecordError, match="'decode' is already recorded"):
        rec.measure_as("decode", costing(fake_run.clock, 1.0))


def test_record_onto_a_measured_name_fails(fake_run):
    rec = make()
    rec.measure(costing(fake_run.clock, 1.0))
    n = len(rec.metrics["time"].samples)
    with pytest.raises(RecordError, match=r"llmperf.record\('time'\): the name is taken by llmperf.measure"):
        rec.record("time", [1.0, 2.0], unit="s", higher_is_better=False)
    assert len(rec.metrics["time"].samples) == n


def test_measure_rejects_non_callables_and_bad_names(fake_run):
    rec = make()
    with pytest.raises(RecordError, match="is not callable"):
        rec.measure(42)
    with pytest.raises(RecordError, match="invalid metric name 'a b'"):
        rec.measure_as("a b", costing(fake_run.clock, 1.0))
    assert fake_run.calls == [] and rec.metrics == {}


def test_normalize_off_disables_the_probe(fake_run):
    rec = make(normalize="off")
    rec.measure(costing(fake_run.clock, 1.0))
    assert fake_run.calls[0]["settings"].probe is False
    assert rec.metrics["time"].probes is None
    assert rec.metrics["time"].normalize == "off"


def test_no_decisive_rule_without_a_baseline(fake_run):
    rec = make()
    rec.measure(costing(fake_run.clock, 1.0))
    assert fake_run.calls[0]["decisive"] is None
    assert rec.measurements["time"].stop_reason == "precise"


def test_decisive_rule_with_a_time_baseline(fake_run):
    base = Metric("time", "s", False, [1.0] * 10, [0.5] * 10)
    rec = make(baseline={"time": base})
    rec.measure(costing(fake_run.clock, 1.0))
    decisive = fake_run.calls[0]["decisive"]
    assert decisive is not None
    assert rec.measurements["time"].stop_reason == "precise and decisive"
    # the rule is "the verdict is not noisy": five wildly scattered rounds against the baseline are noisy
    assert decisive([0.5, 1.0, 2.0, 4.0, 0.25], None) is False
    assert decisive([1.0] * 5, None) is True
    assert decisive([1.0] * 5, [0.5] * 5) is True  # one probe time per round, like the baseline


def test_no_decisive_rule_for_a_baseline_of_another_kind(fake_run):
    # a metric named like the measured one but recorded as tok/s (higher is better) is no time baseline
    base = Metric("time", "tok/s", True, [1.0] * 10)
    rec = make(baseline={"time": base})
    rec.measure(costing(fake_run.clock, 1.0))
    assert fake_run.calls[0]["decisive"] is None


def test_decisive_rule_only_for_a_baseline_of_the_same_unit_and_direction():
    # the rule of compare.mismatch: a unit or a direction that differs leaves the adaptive stop alone
    rec = make(baseline={"tok": Metric("tok", "tok/s", True, [100.0] * 10)})
    assert rec.decisive_for("tok", "tok/s", True) is not None
    assert rec.decisive_for("tok", "tok/min", True) is None
    assert rec.decisive_for("tok", "tok/s", False) is None
    assert rec.decisive_for("other", "tok/s", True) is None


# -- rate ---------------------------------------------------------------------------------------

def test_rate_derived_from_the_measured_time(fake_run):
    rec = make()
    rec.measure(costing(fake_run.clock, 2.0))
    rec.rate("tok_per_s", 256, "tok/s")
    t, r = rec.metrics["time"], rec.metrics["tok_per_s"]
    assert r.samples == [128.0] * len(t.samples)  # 256 tokens per 2 s round
    assert r.unit == "tok/s" and r.higher_is_better is True
    assert r.probes == t.probes and r.probes is not t.probes
    assert len(r.probes) == len(r.samples)
    assert r.normalize == t.normalize == "auto"


def test_rate_of_a_named_measurement(fake_run):
    rec = make(normalize="off")
    rec.measure_as("decode", costing(fake_run.clock, 0.5))
    rec.rate("decode_tok_s", 10, "tok/s", of="decode")
    assert rec.metrics["decode_tok_s"].samples == [20.0] * len(rec.metrics["decode"].samples)
    assert rec.metrics["decode_tok_s"].probes is None and rec.metrics["decode_tok_s"].normalize == "off"


def test_rate_needs_a_measured_metric(fake_run):
    rec = make()
    with pytest.raises(RecordError, match=r"llmperf.rate\('tok_per_s'\): no timed metric 'time'"):
        rec.rate("tok_per_s", 10, "tok/s")
    rec.record("lat", [1.0, 2.0], unit="s", higher_is_better=False)
    with pytest.raises(RecordError, match="no timed metric 'lat'"):
        rec.rate("tok_per_s", 10, "tok/s", of="lat")
    assert "tok_per_s" not in rec.metrics


def test_rate_name_already_taken(fake_run):
    rec = make()
    rec.measure(costing(fake_run.clock, 1.0))
    with pytest.raises(RecordError, match="'time' is already recorded"):
        rec.rate("time", 10, "tok/s")
    rec.rate("tok_per_s", 10, "tok/s")
    with pytest.raises(RecordError, match="'tok_per_s' is already recorded"):
        rec.rate("tok_per_s", 20, "tok/s")
    assert rec.metrics["tok_per_s"].samples[0] == 10.0


@pytest.mark.parametrize("amount", [0, -5, math.nan, True, "10", None, 1e300])
def test_rate_amount_must_be_a_positive_number(fake_run, amount):
    rec = make()
    rec.measure(costing(fake_run.clock, 1.0))
    with pytest.raises(RecordError) as exc:
        rec.rate("tok_per_s", amount, "tok/s")
    assert str(exc.value) == f"llmperf.rate('tok_per_s'): amount must be a positive number below 1e+18, got {amount!r}"


def test_rate_bad_name(fake_run):
    rec = make()
    rec.measure(costing(fake_run.clock, 1.0))
    with pytest.raises(RecordError, match="invalid metric name 'tok/s'"):
        rec.rate("tok/s", 10, "tok/s")


def test_measure_with_the_real_clock(monkeypatch):
    # no fake clock: structure only, never durations
    rec = Recorder(MeasureSettings(warmup=1, min_rounds=3, max_time=0.05), lambda name: 0.05)
    assert rec.measure(sum, [1, 2, 3]) == 6
    m = rec.metrics["time"]
    # min_rounds rounds are taken; a round found descheduled (real CPU clock) is left out of the samples
    assert len(m.samples) >= 1 and len(m.samples) + m.warmup.get("descheduled_rounds", 0) >= 3
    assert m.probes is not None and len(m.probes) == len(m.samples)


# -- issue 11, item 13: what record() takes ------------------------------------------------------

@pytest.mark.parametrize("value", ["no", "yes", 0, 1, None, "False"])
def test_record_direction_must_be_a_bool(value):
    rec = make()
    with pytest.raises(RecordError) as exc:
        rec.record("tok_per_s", [1.0, 2.0], higher_is_better=value)
    assert str(exc.value) == f"llmperf.record('tok_per_s'): higher_is_better must be True or False, got {value!r}"
    assert "tok_per_s" not in rec.metrics


def test_record_zero_is_allowed_only_in_an_informational_metric():
    rec = make()
    rec.record("cpu_migrations", [0, 0, 1], higher_is_better=False, gate=False)
    assert rec.metrics["cpu_migrations"].samples == [0.0, 0.0, 1.0]
    rec.record("cpu_migrations", 0)  # more samples of the informational metric: still allowed
    with pytest.raises(RecordError, match=r"sample 0\.0 is zero in a gated metric"):
        rec.record("page_faults", [3, 0], higher_is_better=False)
    with pytest.raises(RecordError, match=r"sample -2\.0 is negative"):
        rec.record("cpu_migrations", -2)


def test_record_takes_real_number_types_but_not_strings():
    from decimal import Decimal
    from fractions import Fraction

    rec = make()
    rec.record("x", [Decimal("1.5"), Fraction(1, 2), 3], higher_is_better=True)
    assert rec.metrics["x"].samples == [1.5, 0.5, 3.0]
    with pytest.raises(RecordError, match="got b'1'"):
        rec.record("x", [b"1"])


def test_record_gate_and_exact_must_be_bools():
    rec = make()
    with pytest.raises(RecordError, match="gate must be True or False, got 'no'"):
        rec.record("x", 1.0, higher_is_better=True, gate="no")
    with pytest.raises(RecordError, match="exact must be True or False, got 1"):
        rec.record("y", 1.0, higher_is_better=True, exact=1)


# -- record_rounds: probes, paired rounds, notes --------------------------------------------------

def rounds(samples, probes=None, paired=None) -> measure.Measurement:
    return measure.Measurement(samples=list(samples), probes=probes, iterations=1,
                               warmup={"discarded": 0, "first": samples[0], "steady": samples[0], "ratio": 1.0},
                               result=None, stop_reason="time budget", elapsed=1.0, paired=paired)


def test_record_rounds_keeps_the_probes():
    rec = make()
    rec.record_rounds("tok_per_s", rounds([10.0, 11.0, 12.0], probes=[0.1, 0.2, 0.3]), "tok/s", True,
                      normalize="on", probe_kind="refrun-O3")
    m = rec.metrics["tok_per_s"]
    assert (m.samples, m.probes, m.probe_kind, m.normalize) == ([10.0, 11.0, 12.0], [0.1, 0.2, 0.3], "refrun-O3", "on")
    assert m.paired is None and m.paired_ref == "" and m.note == ""


def test_record_rounds_carries_the_paired_reference():
    rec = make()
    rec.record_rounds("tok_per_s", rounds([10.0, 11.0, 12.0], paired=[20.0, 21.0, 22.0]), "tok/s", True,
                      paired_ref="git 1a2b3c4d5e6f", note="paired with the reference")
    m = rec.metrics["tok_per_s"]
    assert m.paired == [20.0, 21.0, 22.0] and m.paired_ref == "git 1a2b3c4d5e6f"
    assert m.probes is None and m.note == "paired with the reference"


@pytest.mark.parametrize(("m", "paired_ref", "message"), [
    (rounds([10.0, 11.0, 12.0], paired=[20.0, 21.0]), "git x",
     "llmperf.record_rounds('tok_per_s'): 2 paired reference values for 3 samples"),
    (rounds([10.0, 11.0, 12.0], paired=[20.0, 0.0, 22.0]), "git x",
     "llmperf.record_rounds('tok_per_s') (paired reference): sample 0.0 is zero in a gated metric"),
    (rounds([10.0, 11.0, 12.0], paired=[20.0, 21.0, 22.0]), "",
     "llmperf.record_rounds('tok_per_s'): a paired measurement needs paired_ref (what the reference is)"),
    (rounds([10.0, 11.0, 12.0]), "git x",
     "llmperf.record_rounds('tok_per_s'): paired_ref 'git x' given, but the measurement is not paired"),
])
def test_record_rounds_refuses_paired_values_that_do_not_pair(m, paired_ref, message):
    rec = make()
    with pytest.raises(RecordError) as info:
        rec.record_rounds("tok_per_s", m, "tok/s", True, paired_ref=paired_ref)
    assert str(info.value).startswith(message)
    assert "tok_per_s" not in rec.metrics


def test_paired_decisive_rule_needs_no_baseline():
    rec = make()
    assert rec.decisive_for("tok_per_s", "tok/s", True) is None  # no baseline: no rule for the probe mode
    decisive = rec.decisive_for("tok_per_s", "tok/s", True, paired_ref="git 1a2b3c4d5e6f")
    assert decisive is not None
    steady = [100.0, 100.2, 99.9, 100.1, 100.0, 99.8, 100.1]
    # the same build on both sides, tightly paired: ok, a decisive verdict
    assert decisive(steady, [s * 1.001 for s in steady]) is True
    # pairs that scatter by +-30%: the paired verdict is noisy
    assert decisive(steady, [s * f for s, f in zip(steady, [0.7, 1.3, 0.8, 1.25, 0.75, 1.3, 0.7])]) is False
    # no reference values, or values that do not pair with the samples: never decisive
    assert decisive(steady, None) is False
    assert decisive(steady, steady[:-1]) is False


def test_paired_decisive_rule_ignores_a_baseline_of_another_unit():
    base = Metric("tok_per_s", "tok/min", True, [6000.0] * 5)
    rec = make(baseline={"tok_per_s": base})
    decisive = rec.decisive_for("tok_per_s", "tok/s", True, paired_ref="dir /x")
    steady = [100.0, 100.2, 99.9, 100.1, 100.0]
    assert decisive is not None and decisive(steady, steady) is True
