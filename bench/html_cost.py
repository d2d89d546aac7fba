#!/usr/bin/env python
"""Cost of the HTML report (pytest_llmperf.html_report): target at most 1 s to render 100 tests x
365 nights.

Builds, in a temporary directory, a node's history of ``--tests`` tests (10 files) x ``--nights``
nights, one metric each (tok_per_s, a step of -8% at two thirds of the year in every tenth test,
so the change-point markers are drawn), written as lines directly (not through 365 appends), and a
run JSON of the same tests tonight (40 samples each, the first test regressed). Then times, each
the median of ``--repeat``:

* history_data: cli.history_data of the directory (read_all + describe_metric per metric: the
  series, change points, trend and reference the report draws);
* render: html_report.render of the run and that history (the figure of the target);

and prints the report's size in bytes.

    python bench/html_cost.py [--tests 100] [--nights 365] [--repeat 3] [--out FILE.html]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pytest_llmperf import cli, history, html_report  # noqa: E402
from pytest_llmperf.baseline import metric_to_json  # noqa: E402
from pytest_llmperf.compare import Metric, Verdict  # noqa: E402

START = datetime(2025, 12, 1, 23, 0, tzinfo=timezone.utc)


def nodeids(tests: int) -> list[str]:
    return [f"suites/test_file{i % 10}.py::test_tok_s[stories15M--O3-{i // 10}t]" for i in range(tests)]


def level(index: int, night: int, nights: int) -> float:
    return 250.0 * (0.92 if index % 10 == 0 and night >= nights * 2 // 3 else 1.0)


def build(directory: Path, tests: int, nights: int, rng: random.Random) -> None:
    store = history.HistoryStore(directory)
    lines: dict[Path, list[str]] = {}
    for night in range(nights):
        when = history.utc_now_text(START + timedelta(days=night))
        for i, nodeid in enumerate(nodeids(tests)):
            median = round(level(i, night, nights) * (1 + rng.gauss(0, 0.004)), 4)
            point = history.Point(name="tok_per_s", unit="tok/s", higher_is_better=True, median=median, n=40,
                                  se=0.002, adjusted=None, probe_kind=None, cpu_share=0.99, status="ok", change=0.0,
                                  reference="history:10")
            run = history.Run(time=when, run_id=f"night{night:03d}", nodeid=nodeid, fingerprint="fp1",
                              plugin_version="0.1.0", commits={"repo": {"commit": f"{night:08x}" + "ab" * 16, "dirty": False}},
                              outcome="passed", reset=night == 0, metrics={"tok_per_s": point})
            lines.setdefault(store.path_for(nodeid), []).append(history.to_line(run))
    for path, texts in lines.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")


def run_json(tests: int, nights: int, rng: random.Random) -> dict[str, object]:
    out_tests, verdicts = [], []
    for i, nodeid in enumerate(nodeids(tests)):
        base = level(i, nights, nights)
        now = base * (0.85 if i == 0 else 1.0)
        samples = [now * (1 + rng.gauss(0, 0.004)) for _ in range(40)]
        out_tests.append({"schema": 1, "nodeid": nodeid, "params": {"model": "stories15M", "threads": i // 10},
                          "metrics": {"tok_per_s": metric_to_json(Metric("tok_per_s", "tok/s", True, samples))},
                          "verdicts": [], "fingerprint": "fp1"})
        change = now / base - 1
        verdicts.append(Verdict(test=nodeid, metric="tok_per_s", status="regressed" if i == 0 else "ok",
                                unit="tok/s", higher_is_better=True, tolerance=0.05, current=now, baseline=base,
                                change=change, ci_low=change - 0.002, ci_high=change + 0.002, confidence=0.99,
                                reference="history:10").to_dict())
    return {"node": "bench", "schema": "pytest-llmperf-run", "schema_version": 2,
            "time": history.utc_now_text(START + timedelta(days=nights)), "run_id": "tonight",
            "tests": out_tests, "verdicts": verdicts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the report here")
    args = parser.parse_args()
    rng = random.Random(13)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "bench"
        build(directory, args.tests, args.nights, rng)
        run = run_json(args.tests, args.nights, rng)
        data_times, render_times = [], []
        data: dict[str, object] = {}
        page = ""
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            data = cli.history_data(directory)
            t1 = time.perf_counter()
            page = html_report.render([("run.json", run)], {"bench": data})
            t2 = time.perf_counter()
            data_times.append(t1 - t0)
            render_times.append(t2 - t1)
    size = len(page.encode("utf-8"))
    markers = page.count('class="cp"')
    print(f"{args.tests} tests x {args.nights} nights: history_data {statistics.median(data_times):.3f} s, "
          f"render {statistics.median(render_times):.3f} s (median of {args.repeat}), "
          f"report {size:,} bytes ({size / args.tests / 1024:.1f} KiB a test), "
          f"{markers} change-point markers")
    if args.out is not None:
        args.out.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
