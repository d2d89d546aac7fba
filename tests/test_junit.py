"""JUnit XML gets plain per-metric properties (median, unit, status, change), not a repr of the
result's JSON, in-process and from pytest-xdist workers alike; the plugin's own summary still
sees every result."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET

import pytest

FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]

TESTS = textwrap.dedent(
    """
    import pytest

    def _samples(scale):
        return [100.0 * scale * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(30)]

    def test_tok(llmperf, record_property):
        record_property("mine", "kept")
        llmperf.record("tok_per_s", _samples(1.0), unit="tok/s", higher_is_better=True)
        llmperf.record("ms_per_step", _samples(2.0), unit="ms", higher_is_better=False)

    def test_plain():
        pass
    """
)


def _properties(xml_path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[case.get("name")] = props
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_junit_properties_are_plain_values(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                           workers: int) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_j=TESTS)
    args = [*FAST, "--junitxml=out.xml"]
    if workers:
        pytest.importorskip("xdist")
        args += ["-n", str(workers)]
        result = pytester.runpytest_subprocess(*args)
    else:
        result = pytester.runpytest(*args)
    assert result.ret == 0, result.stdout.str()
    # the plugin's summary still got the results (they travel in the call report)
    result.stdout.fnmatch_lines(["*test_j.py::test_tok*tok_per_s*new*"])
    props = _properties(pytester.path / "out.xml")
    tok = props["test_tok"]
    assert tok["mine"] == "kept"
    assert "llmperf" not in tok and not any(k.startswith("llmperf-") for k in tok)
    assert float(tok["llmperf.tok_per_s.median"]) == pytest.approx(100.0, rel=0.01)
    assert tok["llmperf.tok_per_s.unit"] == "tok/s"
    assert tok["llmperf.tok_per_s.status"] == "new"
    assert tok["llmperf.tok_per_s.change"] == ""
    assert float(tok["llmperf.ms_per_step.median"]) == pytest.approx(200.0, rel=0.01)
    assert all(len(v) < 100 for v in tok.values()), tok  # no blobs
    assert props["test_plain"] == {}


def test_junit_change_after_a_baseline(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_j=TESTS)
    assert pytester.runpytest(*FAST, "--llmperf-save-baseline").ret == 0
    result = pytester.runpytest(*FAST, "--junitxml=out.xml")
    assert result.ret == 0, result.stdout.str()
    tok = _properties(pytester.path / "out.xml")["test_tok"]
    assert tok["llmperf.tok_per_s.status"] == "ok"
    assert abs(float(tok["llmperf.tok_per_s.change"])) < 0.01
