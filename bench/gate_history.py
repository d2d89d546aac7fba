#!/usr/bin/env python
"""Issue 13, target 3: the issue-2 Python gate workload (bench/gate_quality.py's ~1 ms loop, llmperf side
only) gated against a multi-night history reference, with a CPU-heavy process
(``python3 -c "while True: pass"``) running for the whole measurement.

Procedure: ``--nights`` sessions at scale 1.00 append to the node's history (the first also saves the
baseline); then ``--runs`` sessions at each scale (1.00, 1.03, 1.05, 1.10, interleaved) with
``--llmperf-baseline=history:5 --llmperf-tolerance=3%`` that do not append, so the reference stays
those nights; then the same at the default 5% tolerance at ``--scales-5`` (1.05, 1.10), the
figures bench/gate_quality.py gives today (19/20 and 20/20); and, for comparison, the saved
baseline (``--llmperf-baseline=saved``) at 3% on the same scales. An alarm is a session that exits
non-zero; each row counts the verdict statuses too.

    python bench/gate_history.py               # 20 runs per scale (about 15 minutes here)
    python bench/gate_history.py --runs 5 --no-saved
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gate_quality as gq
from _common import OUT, cpu_load, print_checks, write_json

STATUSES = ("ok", "noisy", "regressed", "improved")


def run(tools: gq.Tools, scale: float, extra: list[str], save: bool = False) -> dict[str, Any]:
    tools.llmperf_extra = extra
    rec = tools.run_llmperf(scale, save=save)
    try:
        data = json.loads(tools.llm_json.read_text())
        vs = [v for v in data.get("verdicts", []) if v.get("metric") == "time"]
        rec["reference"] = vs[0].get("reference") if vs else None
    except (OSError, ValueError):
        rec["reference"] = None
    rec["extra"] = extra
    return rec


def show(i: int, total: int, name: str, rec: dict[str, Any], t0: float) -> None:
    print(f"[{i:3d}/{total}] {name:9s} scale {rec['scale']:.2f} rc={rec['rc']} {rec.get('status', '?'):<10} "
          f"{gq.fmt_pct(rec.get('change'))} [{gq.fmt_pct(rec.get('ci_low'))}, {gq.fmt_pct(rec.get('ci_high'))}] "
          f"ref={rec.get('reference')} {rec['wall_s']:.2f}s | t={time.perf_counter() - t0:.0f}s", flush=True)
    if rec.get("output_tail") and rec["rc"] not in (0, 1):
        print("    | " + rec["output_tail"].replace("\n", "\n    | "), flush=True)


def table(name: str, recs: list[dict[str, Any]], scales: list[float]) -> dict[float, int]:
    print(f"{name}:")
    print(f"  {'scale':>5} {'alarms':>7} " + " ".join(f"{s:>9}" for s in (*STATUSES, "other"))
          + f" {'change min/median/max':>24} {'mean wall s':>11} references")
    alarms = {}
    for scale in scales:
        rs = [r for r in recs if r["scale"] == scale]
        c = dict.fromkeys((*STATUSES, "other"), 0)
        for r in rs:
            c[r.get("status") if r.get("status") in c else "other"] += 1
        ch = sorted(r["change"] for r in rs if r.get("change") is not None)
        spread = f"{gq.fmt_pct(ch[0])}/{gq.fmt_pct(statistics.median(ch))}/{gq.fmt_pct(ch[-1])}" if ch else "-"
        refs: dict[str, int] = {}
        for r in rs:
            refs[str(r.get("reference"))] = refs.get(str(r.get("reference")), 0) + 1
        alarms[scale] = sum(r["alarm"] for r in rs)
        print(f"  {scale:>5.2f} {f'{alarms[scale]}/{len(rs)}':>7} " + " ".join(f"{c[s]:>9}" for s in (*STATUSES, "other"))
              + f" {spread:>24} {statistics.fmean(r['wall_s'] for r in rs):>11.2f} {refs}")
    return alarms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--nights", type=int, default=5)
    ap.add_argument("--scales", default="1.00,1.03,1.05,1.10")
    ap.add_argument("--scales-5", default="1.05,1.10", help="scales gated at the default 5%% tolerance")
    ap.add_argument("--no-saved", action="store_true", help="skip the saved-baseline comparison at 3%%")
    ap.add_argument("--plans", default="", help="comma-separated: history@3%%,history@5%%,saved@3%%,saved@5%%")
    ap.add_argument("--out", default=str(OUT / "gate_t3.json"))
    ap.add_argument("--no-load", action="store_true", help="no CPU-heavy neighbour")
    ap.add_argument("--target-ms", type=float, default=1.0)
    opts = ap.parse_args()
    scales = [float(s) for s in opts.scales.split(",")]
    scales5 = [float(s) for s in opts.scales_5.split(",") if s]

    root = Path(tempfile.mkdtemp(prefix="llmperf-gate-history-"))
    gq.SNAPSHOT = gq.snapshot_plugin(root / "plugin-snapshot")
    digest = gq.plugin_digest()
    print(f"plugin sources digest {digest}, snapshot {gq.SNAPSHOT}")
    n, t_cal = gq.calibrate(opts.target_ms / 1000.0)
    print(f"calibrated: N = {n} iterations -> {t_cal * 1e3:.3f} ms per call")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "workload.py").write_text(gq.WORKLOAD_MODULE.format(n=n, target_ms=opts.target_ms))
    (root / "test_llmperf_work.py").write_text(gq.TEST_LLMPERF)
    tools = gq.Tools(root, [], [])
    hist = f"--llmperf-history-dir={root / 'history'}"
    tol3 = "--llmperf-tolerance=3%"
    every: dict[str, tuple[list[str], list[float]]] = {
        "history@3%": ([hist, "--llmperf-baseline=history:5", tol3], scales),
        "history@5%": ([hist, "--llmperf-baseline=history:5"], scales5),
        "saved@3%": ([hist, "--llmperf-baseline=saved", tol3], scales),  # today's reference, same nights
        "saved@5%": ([hist, "--llmperf-baseline=saved"], scales5),  # gate_quality.py's figure, same load
    }
    names = opts.plans.split(",") if opts.plans else [n for n in every if not (opts.no_saved and "saved" in n)]
    plans = [(name, *every[name]) for name in names if every[name][1]]
    results: dict[str, list[dict[str, Any]]] = {"nights": []}
    t0 = time.perf_counter()
    with cpu_load(not opts.no_load):
        for i in range(opts.nights):
            rec = run(tools, 1.0, [hist, "--llmperf-history-append", tol3], save=i == 0)
            results["nights"].append(rec)
            show(i + 1, opts.nights, "night", rec, t0)
            if rec["rc"] != 0 and i == 0:
                print("saving the baseline failed:\n" + rec.get("output_tail", ""))
                return 2
        for name, extra, sc in plans:
            results[name] = []
            total = len(sc) * opts.runs
            k = 0
            for i in range(opts.runs):
                for scale in (sc if i % 2 == 0 else sc[::-1]):
                    k += 1
                    rec = run(tools, scale, extra)
                    rec["run"] = i
                    results[name].append(rec)
                    show(k, total, name, rec, t0)
    print()
    print(f"=== target 3: gate_quality workload, {opts.nights} nights at 1.00, {opts.runs} sessions per scale ===")
    alarms = {name: table(name, results[name], sc) for name, _, sc in plans}
    print("(alarm = session exit code != 0; CPU load running throughout)")
    runs = opts.runs
    checks = []
    for name, a in alarms.items():
        if 1.0 in a:
            checks.append((a[1.0] == 0, f"{name}: 0/{runs} false at 1.00: got {a[1.0]}/{runs}"))
        if 1.03 in a:
            need = math.ceil(runs * 15 / 20)
            checks.append((a[1.03] >= need, f"{name}: >= {need}/{runs} caught at 1.03: got {a[1.03]}/{runs}"))
    for name in alarms:
        for scale, today in ((1.05, 19), (1.10, 20)):
            if scale in alarms.get(name, {}):
                need = math.ceil(runs * today / 20)
                checks.append((alarms[name][scale] >= need,
                               f"{name}: >= {need}/{runs} caught at {scale:.2f} (today's {today}/20): "
                               f"got {alarms[name][scale]}/{runs}"))
    ok = print_checks(checks)
    print("mean wall per session: " + ", ".join(
        f"{k} {statistics.fmean(r['wall_s'] for r in v):.2f} s" for k, v in results.items() if v))
    write_json(Path(opts.out), {"calibration": {"N": n, "seconds_per_call": t_cal}, "digest": digest,
                                      "plans": plans, "results": results})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
