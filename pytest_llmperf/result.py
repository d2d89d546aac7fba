"""The result of one benchmark test as it travels: from the test's process to the one that
reports (``user_properties``, also across pytest-xdist workers), into the baseline store, the
JSON and Markdown reports and the terminal summary. Pure core: no pytest.

A TestResult is written to JSON once, where the test ran (:meth:`TestResult.to_json`), and read
back once, where it is reported (:meth:`TestResult.from_json`). Its metrics are in the baseline
file's metric format (``baseline.metric_to_json``: unit, direction, summary, samples, ...), so the
store saves them as they are after checking them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .compare import Verdict

SCHEMA = 1  # bump when the JSON form changes
_VERDICT_FIELDS = frozenset(f.name for f in fields(Verdict))


class ResultError(ValueError):
    """A result's JSON that is not one (a plugin of another version on an xdist worker)."""


@dataclass(frozen=True)
class TestResult:
    nodeid: str
    params: dict[str, Any]  # the test's parameters: str, int, float, bool or None (else their repr)
    metrics: dict[str, dict[str, Any]]  # by name, in the baseline file's metric format
    verdicts: tuple[Verdict, ...]
    fingerprint: str  # the digest of the machine the test ran on
    artifacts: tuple[Mapping[str, Any], ...] = field(default=())  # profiler outputs: kind, paths, summary, details
    # roofline predictions (Recorder.estimate): metric, predicted, unit, bound, device
    roofline: tuple[Mapping[str, Any], ...] = field(default=())

    __test__ = False  # not a test class, whatever pytest's collection thinks of its name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "nodeid": self.nodeid,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "fingerprint": self.fingerprint,
        }
        if self.artifacts:
            out["artifacts"] = [dict(a) for a in self.artifacts]
        if self.roofline:
            out["roofline"] = [dict(e) for e in self.roofline]
        return out

    @classmethod
    def from_json(cls, data: object) -> TestResult:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ResultError(f"not a pytest-llmperf result of schema {SCHEMA}: {str(data)[:80]}")
        try:
            verdicts = tuple(Verdict(**{k: v for k, v in d.items() if k in _VERDICT_FIELDS})
                             for d in data["verdicts"])
            return cls(nodeid=str(data["nodeid"]), params=dict(data["params"]), metrics=dict(data["metrics"]),
                       verdicts=verdicts, fingerprint=str(data["fingerprint"]),
                       artifacts=tuple(data.get("artifacts", ())), roofline=_estimates(data.get("roofline", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultError(f"result of {data.get('nodeid')!r}: {exc}") from None

    def efficiency(self, estimate: Mapping[str, Any]) -> float | None:
        """How close the measured median came to the prediction ``estimate`` (one of
        ``roofline``): measured over predicted for a higher-is-better metric (tok/s), predicted
        over measured for a time; None when the metric has no median."""
        measured = self.median(str(estimate.get("metric")))
        predicted = estimate.get("predicted")
        if not measured or not isinstance(predicted, (int, float)) or predicted <= 0:
            return None
        direction = (self.metrics.get(str(estimate.get("metric"))) or {}).get("direction", "higher")
        return measured / predicted if direction == "higher" else predicted / measured

    def median(self, metric: str) -> float | None:
        summary = (self.metrics.get(metric) or {}).get("summary") or {}
        value = summary.get("median")
        return float(value) if isinstance(value, (int, float)) else None


def _estimates(data: object) -> tuple[Mapping[str, Any], ...]:
    """A result's ``roofline`` list as Recorder.estimate writes it; ValueError (one line) for an
    entry that is not one, so that a hand-edited run JSON is named instead of crashing a report."""
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"roofline is not a list: {str(data)[:60]}")
    for i, e in enumerate(data):
        ok = (isinstance(e, dict) and isinstance(e.get("metric"), str) and isinstance(e.get("unit", ""), str)
              and isinstance(e.get("device", ""), str) and e.get("bound") in ("compute", "memory")
              and isinstance(e.get("predicted"), (int, float)) and not isinstance(e.get("predicted"), bool)
              and e["predicted"] > 0 and e["predicted"] != float("inf"))
        if not ok:
            raise ValueError(f"roofline[{i}] is not a prediction (metric, predicted > 0, unit, bound compute or "
                             f"memory, device): {str(e)[:80]}")
    return tuple(data)


def baseline_applies(baseline_fingerprint: str | None, fingerprint: str, force_compare: bool) -> bool:
    """Whether a stored baseline may be compared with a run on this machine: taken on a machine of
    the same fingerprint, or ``--llmperf-force-compare``. (Each metric must also agree in unit and
    direction: compare.mismatch.)"""
    return force_compare or baseline_fingerprint == fingerprint
