#!/usr/bin/env python
"""Cost of the per-node history store (pytest_llmperf.history), issue 13 target 5.

Targets: an append costs at most 5 ms per test; reading 365 nights x 100 tests takes at most 1 s.

* append, batch:  one ``HistoryStore.append`` of 100 tests' records (10 test files x 10 tests, a
                  typical 3-metric record each: tok_per_s with a probe, mbu, peak_rss), divided
                  by 100; repeated ``--repeat`` times on a fresh directory, median.
* append, single: one ``append`` of one test's record (lock, open, one write, fsync), median of
                  ``--repeat``. Appends are timed in wall time (the fsync waits for the disk) and
                  in the process's CPU time.
* read_all:       ``read_all()`` of a node holding ``--nights`` runs of 100 tests (10 files of 10
                  tests; written directly as lines, not through 365 appends), median of 3 reads,
                  wall time and the process's CPU time (which other work on the machine moves less).
* line bytes:     the size of one record without samples.

Each figure includes the fsync of the file (an append is durable when it returns); on tmpfs or
a laptop SSD it is far cheaper than on a board's SD card, so run it where the history lives:

    python bench/history_cost.py [--dir DIR] [--nights 365] [--repeat 20] [--out bench/out/history_cost.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pytest_llmperf import history  # noqa: E402
from pytest_llmperf.baseline import metric_to_json  # noqa: E402
from pytest_llmperf.compare import Metric  # noqa: E402

FILES = 10
TESTS_PER_FILE = 10
SHA = "0123456789abcdef0123456789abcdef01234567"


def nodeids() -> list[str]:
    return [f"suites/test_file{f}.py::test_tok_s[stories15M--O3-{t}t]"
            for f in range(FILES) for t in range(TESTS_PER_FILE)]


def result_json(nodeid: str, rng: random.Random) -> dict[str, object]:
    tok = [rng.gauss(250.0, 5.0) for _ in range(40)]
    probes = [rng.gauss(0.01, 0.0002) for _ in range(40)]
    metrics = [
        Metric("tok_per_s", "tok/s", True, tok, probes, probe_kind="refrun-O3", cpu_share=0.99),
        Metric("mbu", "%", True, [rng.gauss(41.0, 1.0) for _ in range(40)], gate=False),
        Metric("peak_rss", "MiB", False, [123.0] * 40, exact=True),
    ]
    return {"nodeid": nodeid, "metrics": {m.name: metric_to_json(m) for m in metrics}}


VERDICTS = [{"metric": "tok_per_s", "status": "ok", "change": -0.0042, "reference": "history:5"},
            {"metric": "mbu", "status": "info", "change": 0.001, "reference": "history:5"},
            {"metric": "peak_rss", "status": "ok", "change": 0.0, "reference": "history:5"}]


def record(nodeid: str, when: datetime, rng: random.Random) -> history.Run:
    return history.run_record(
        result_json(nodeid, rng), VERDICTS, run_id=history.new_run_id(when), time=history.utc_now_text(when),
        fingerprint="3f2a9c0d1e5b7a64", plugin_version="0.1.0",
        commits={"repo": {"commit": SHA, "dirty": False}, "llama2c": {"commit": SHA, "dirty": False}},
        outcome="passed", reset=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(13)
    ids = nodeids()
    start = datetime(2026, 1, 1, 23, 0, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        batch = [record(n, start, rng) for n in ids]
        line_bytes = len(history.to_line(batch[0]).encode("utf-8"))
        batch_ms, batch_cpu, single_ms, single_cpu = [], [], [], []
        for i in range(args.repeat):
            store = history.HistoryStore(root / f"batch{i}")
            t0, c0 = time.perf_counter(), time.process_time()
            store.append(batch)
            batch_ms.append((time.perf_counter() - t0) * 1000 / len(batch))
            batch_cpu.append((time.process_time() - c0) * 1000 / len(batch))
            one = history.HistoryStore(root / "single")
            rec = record(ids[0], start + timedelta(days=i), rng)
            t0, c0 = time.perf_counter(), time.process_time()
            one.append([rec])
            single_ms.append((time.perf_counter() - t0) * 1000)
            single_cpu.append((time.process_time() - c0) * 1000)
        # a year of nights, written as lines (365 appends would measure the appends again)
        big = history.HistoryStore(root / "year")
        lines: dict[Path, list[str]] = {}
        template = {n: history.to_line(record(n, start, rng)) for n in ids}
        for night in range(args.nights):
            when = start + timedelta(days=night)
            stamp, run_id = history.utc_now_text(when), history.new_run_id(when)
            for n in ids:
                text = template[n].replace(history.utc_now_text(start), stamp, 1)
                text = text.replace(json.loads(template[n])["run"], run_id, 1)
                lines.setdefault(big.path_for(n), []).append(text)
        for path, texts in lines.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        size = sum(p.stat().st_size for p in lines)
        read_s = []
        read_cpu = []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            found = big.read_all()
            read_s.append(time.perf_counter() - t0)
            read_cpu.append(time.process_time() - c0)
        entries = sum(len(v) for v in found.values())
    figures = {
        "line_bytes_3_metrics_no_samples": line_bytes,
        "append_batch_ms_per_test": round(statistics.median(batch_ms), 3),
        "append_batch_cpu_ms_per_test": round(statistics.median(batch_cpu), 3),
        "append_single_test_ms": round(statistics.median(single_ms), 3),
        "append_single_test_cpu_ms": round(statistics.median(single_cpu), 3),
        "read_all_s": round(statistics.median(read_s), 3),
        "read_all_cpu_s": round(statistics.median(read_cpu), 3),
        "read_all_entries": entries,
        "read_all_bytes": size,
        "nights": args.nights, "tests": len(ids), "repeat": args.repeat,
    }
    print(f"line: {line_bytes} bytes per test (3 metrics, no samples; target <= 1024)")
    print(f"append, 100 tests in one call: {figures['append_batch_ms_per_test']:.3f} ms per test wall, "
          f"{figures['append_batch_cpu_ms_per_test']:.3f} ms CPU (target <= 5)")
    print(f"append, one test:              {figures['append_single_test_ms']:.3f} ms wall, "
          f"{figures['append_single_test_cpu_ms']:.3f} ms CPU (target <= 5)")
    print(f"read_all, {args.nights} nights x {len(ids)} tests ({entries} lines, {size / 1e6:.1f} MB): "
          f"{figures['read_all_s']:.3f} s wall, {figures['read_all_cpu_s']:.3f} s CPU (target <= 1)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
