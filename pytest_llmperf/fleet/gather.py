"""Each node's outcome, and the nodes x tests matrix of a fleet run.

A node is ``ok`` (its job completed and its run JSON shows no regression), ``regressed`` (its run
JSON holds a regressed verdict) or ``failed``: the job did not complete (its SLURM state and
reason), pytest exited non-zero with no regression to explain it (the exit status and the tail of
its output), or it left no run JSON, or a truncated or corrupt one. A failed node never hides the
other nodes' results.

The matrix has a row per test and a column per node. A cell is the test's headline metric on that
node: the first metric the test recorded that is gated (tok/s for a llama2.c row), its value and
its verdict's status and change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import jsonfile, report
from ..compare import Verdict
from .plan import Job, Run

TAIL_LINES = 5


@dataclass
class Cell:
    metric: str
    unit: str
    value: float | None
    status: str
    change: float | None


@dataclass
class NodeResult:
    node: str
    job: Job
    status: str  # ok, regressed, failed
    reason: str
    run_path: Path | None
    run: dict[str, Any] | None
    wall: float | None
    counts: dict[str, int] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last non-empty ``lines`` lines of a job's output, joined with `` | ``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def read_run(path: Path) -> tuple[dict[str, Any] | None, str]:
    """A node's run JSON, or None and why not (missing, truncated, corrupt, not a run JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "it wrote no run JSON"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"its run JSON {path} cannot be read ({exc})"
    try:
        data = jsonfile.loads(text)
    except jsonfile.StrictJSONError as exc:
        return None, f"its run JSON {path} {exc.problem}"
    if not isinstance(data, dict) or not isinstance(data.get("verdicts"), list) \
            or not isinstance(data.get("tests"), list):
        return None, f"its run JSON {path} is not a pytest-llmperf run JSON"
    return data, ""


def headline(test: Mapping[str, Any]) -> str | None:
    """The test's headline metric: the first it recorded that is gated, else its first."""
    metrics = test.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return None
    for name, m in metrics.items():
        if not isinstance(m, dict) or m.get("gate", True) is not False:
            return str(name)
    return str(next(iter(metrics)))


def cells(run: Mapping[str, Any], where: str) -> tuple[dict[str, Cell], dict[str, int]]:
    """The headline cell of every test of a run JSON, and the counts of its verdicts by status
    (counted here, not taken from the file's ``counts``); ValueError naming ``where`` for a bad
    verdict."""
    verdicts: dict[tuple[str, str], Verdict] = {}
    for i, data in enumerate(run.get("verdicts") or []):
        v = report.verdict_from_json(data, f"{where}: verdicts[{i}]")
        verdicts[(v.test, v.metric)] = v
    out: dict[str, Cell] = {}
    for test in run.get("tests") or []:
        if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str):
            continue
        name = headline(test)
        if name is None:
            continue
        m = test["metrics"][name]
        found = verdicts.get((test["nodeid"], name))
        summary = m.get("summary") if isinstance(m, dict) else None
        value = found.current if found is not None else (summary or {}).get("median")
        out[test["nodeid"]] = Cell(name, str(m.get("unit", "")) if isinstance(m, dict) else "",
                                   value if isinstance(value, (int, float)) else None,
                                   found.status if found is not None else "recorded",
                                   found.change if found is not None else None)
    # a regression of any metric shows in the row, even when the headline metric held
    for (nodeid, _metric), v in verdicts.items():
        if v.status == "regressed" and nodeid in out and out[nodeid].status != "regressed":
            out[nodeid].status = "regressed"
    return out, report.counts(verdicts.values())


def node_result(run: Run, job: Job) -> NodeResult:
    wall = job.run_time
    if wall is None and job.started is not None and job.ended is not None:
        wall = job.ended - job.started
    if job.job_id is None:
        return NodeResult(job.node, job, "failed", job.reason or "not submitted", None, None, wall)
    path = run.attempt_dir(job) / "run.json"
    out = tail(run.output_path(job))
    data, why = read_run(path)
    result = NodeResult(job.node, job, "ok", "", path if data is not None else None, data, wall)
    if data is not None:
        try:
            result.cells, result.counts = cells(data, str(path))
        except ValueError as exc:
            data, why = None, f"its run JSON is damaged: {exc}"
            result.run, result.run_path = None, None
    regressed = result.counts.get("regressed", 0)
    if job.state != "COMPLETED" and not (job.state == "FAILED" and data is not None):
        result.status = "failed"
        code = f", exit status {job.exit_code}" if job.exit_code not in (None, 0) else ""
        result.reason = f"job {job.job_id} {job.state}{code}" + (f": {job.reason}" if job.reason else "")
        if data is None and not (run.attempt_dir(job) / "started").exists() and job.state in ("COMPLETED", "FAILED"):
            result.reason += "; it never started in the results directory (is it shared with the node?)"
    elif data is None:
        result.status = "failed"
        result.reason = f"job {job.job_id} {job.state}, but {why}"
        if not (run.attempt_dir(job) / "started").exists():
            result.reason += f"; nothing of the job is in {run.node_dir(job.node)}: is the results directory on a " \
                             "file system shared with the node?"
    elif regressed:
        result.status = "regressed"
        result.reason = f"{regressed} regressed metric(s)"
    elif job.exit_code not in (None, 0):
        result.status = "failed"
        result.reason = f"job {job.job_id}: pytest exit status {job.exit_code}"
    if result.status == "failed" and out:
        result.reason += f"; output ends: {out}"
    return result


def gather(run: Run) -> list[NodeResult]:
    """Every node's result, failed and regressed nodes first, then by name."""
    results = [node_result(run, job) for job in run.jobs]
    order = {"failed": 0, "regressed": 1, "ok": 2}
    return sorted(results, key=lambda r: (order[r.status], r.node))


def tests_of(results: Sequence[NodeResult]) -> list[str]:
    """The matrix's rows: every test of any node, the ones with a regressed cell first (most
    regressed nodes first), then in the order the nodes ran them."""
    seen: dict[str, int] = {}
    for r in results:
        for nodeid, cell in r.cells.items():
            seen[nodeid] = seen.get(nodeid, 0) + (cell.status == "regressed")
    first = list(seen)
    return sorted(first, key=lambda t: (-seen[t], first.index(t)))


def exit_status(results: Sequence[NodeResult]) -> int:
    """1 when any node regressed or failed, else 0."""
    return 1 if any(r.status != "ok" for r in results) else 0
