#!/usr/bin/env python
"""Accuracy of pytest-llmperf's timing against a plain ``time.perf_counter`` loop.

Target: for a callable of known cost, the recorded median is within 1% of a plain timer loop's.

Callables: pure-Python loops calibrated to about 1 us (batched: many calls per round), 100 us,
1 ms and 10 ms. Each is timed three ways:

* plain:   a ``time.perf_counter`` loop: 3 warm-up rounds, then rounds for ``--plain-time``
           seconds (at least 5); a round runs the callable k times back to back, k chosen like the
           plugin's (a round lasts at least 1 ms), and gives the time per call; median of rounds.
* run:     ``pytest_llmperf.measure.run(fn)`` with default settings, median of ``.samples``.
* session: a real pytest session, ``llmperf.measure(fn)`` in a test, the verdict's ``current``
           (the median) from ``--llmperf-json``.

Machine drift is cancelled by bracketing: each plugin measurement is taken between two plain ones
(in the same process; for the session, plain timings run as tests just before and just after the
llmperf test) and compared with their geometric mean. This VM changes speed by tens of percent
within seconds: a bracket whose two plain timings differ by more than ``--bracket-tol`` is
dropped and retried, until ``--pairs`` stable brackets (at most pairs * 3 attempts); the reported
difference is the median over the stable ones.

    python bench/accuracy.py [--pairs 5] [--plain-time 0.3] [--bracket-tol 0.02] [--out bench/out/accuracy.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 0.01

# name -> target seconds per call
CALLABLES = {"loop_1us": 1e-6, "loop_100us": 1e-4, "loop_1ms": 1e-3, "loop_10ms": 1e-2}

FUNC_TEMPLATE = '''
def {name}():
    acc = 0
    for i in range({n}):
        acc += (i ^ (i >> 3)) % 11
    return acc
'''

PLAIN_TIMER = '''

def plain_median(fn, budget=0.5, warmup_rounds=3, min_round_time=0.001, min_rounds=5):
    """Median seconds per call of fn with a plain perf_counter loop; returns (median, k, rounds)."""
    clock = time.perf_counter
    # calls per round, chosen like the plugin's: a round lasts at least min_round_time
    t0 = clock()
    fn()
    one = clock() - t0
    k = 1
    if one < min_round_time:
        t0 = clock()
        for _ in range(100):
            fn()
        one = (clock() - t0) / 100
        k = max(1, math.ceil(min_round_time / max(one, 1e-9)))
    for _ in range(warmup_rounds):
        for _ in range(k):
            fn()
    samples = []
    start = clock()
    while len(samples) < min_rounds or clock() - start < budget:
        t0 = clock()
        for _ in range(k):
            fn()
        samples.append((clock() - t0) / k)
    return statistics.median(samples), k, len(samples)


def record_plain(name, when, budget):
    med, k, rounds = plain_median(globals()[name], budget)
    with open(os.environ["ACC_PLAIN_OUT"], "a") as fh:
        fh.write(json.dumps({"name": name, "when": when, "median": med, "k": k, "rounds": rounds}) + "\\n")
'''


def loop_time(n: int, reps: int) -> float:
    ns: dict = {}
    exec(FUNC_TEMPLATE.format(name="f", n=n), ns)
    f = ns["f"]
    k = max(1, int(2000 / max(n, 1)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(k):
            f()
        times.append((time.perf_counter() - t0) / k)
    return statistics.median(times)


def calibrate(target: float) -> int:
    """Iterations n for which the function takes about ``target`` s; t(n) = t0 + c*n (the call's
    fixed cost t0 matters for the tiny one)."""
    loop_time(1000, 5)
    t_small, t_big = loop_time(1, 41), loop_time(1000, 41)
    c = max((t_big - t_small) / 999, 1e-12)
    t0 = max(t_small - c, 0.0)
    n = max(1, round((target - t0) / c))
    if target >= 1e-4:
        for _ in range(2):
            t = loop_time(n, 21 if target < 5e-3 else 7)
            n = max(1, round(n * target / t))
    return n


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def geo(a: float, b: float) -> float:
    return math.sqrt(a * b)


def pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5, help="bracketed plain/plugin measurements per callable")
    ap.add_argument("--plain-time", type=float, default=0.3, help="seconds of rounds per plain measurement")
    ap.add_argument("--bracket-tol", type=float, default=0.02,
                    help="a bracket counts when its two plain timings agree within this fraction (default 0.02)")
    ap.add_argument("--max-attempts-factor", type=int, default=3,
                    help="give up after pairs * this many attempts per callable (default 3)")
    ap.add_argument("--out", default=str(HERE / "out" / "accuracy.json"))
    ap.add_argument("--no-session", action="store_true", help="skip the pytest-session measurements")
    opts = ap.parse_args(argv)

    from pytest_llmperf import measure

    sizes = {name: calibrate(t) for name, t in CALLABLES.items()}
    tmp = tempfile.TemporaryDirectory(prefix="llmperf-accuracy-")
    root = Path(tmp.name)
    src = "import json, math, os, statistics, time\n"
    for name, n in sizes.items():
        src += FUNC_TEMPLATE.format(name=name, n=n)
    src += PLAIN_TIMER
    (root / "acc_workload.py").write_text(src)
    (root / "pytest.ini").write_text("[pytest]\n")
    tests = ["import acc_workload as w", ""]
    for name in sizes:
        tests += [f"def test_plain_before_{name}():", f"    w.record_plain({name!r}, 'before', {opts.plain_time!r})", "",
                  f"def test_llmperf_{name}(llmperf):", f"    llmperf.measure(w.{name})", "",
                  f"def test_plain_after_{name}():", f"    w.record_plain({name!r}, 'after', {opts.plain_time!r})", ""]
    (root / "test_accuracy.py").write_text("\n".join(tests))
    sys.path.insert(0, str(root))
    wl = importlib.import_module("acc_workload")
    print("callables: " + ", ".join(f"{name} = {n} iterations" for name, n in sizes.items()))

    rows: dict[str, dict] = {name: {"run": [], "session": []} for name in sizes}
    max_attempts = opts.pairs * opts.max_attempts_factor

    def valid(a: float, b: float) -> bool:
        return abs(a / b - 1) <= opts.bracket_tol

    def n_valid(name: str, kind: str) -> int:
        return sum(r["valid"] for r in rows[name][kind])

    # in-process: plain, measure.run, plain; repeated until `pairs` brackets are stable
    for attempt in range(max_attempts):
        todo = [name for name in sizes if n_valid(name, "run") < opts.pairs]
        if not todo:
            break
        for name in todo:
            fn = getattr(wl, name)
            a, k, ra = wl.plain_median(fn, opts.plain_time)
            m = measure.run(fn)
            b, _, rb = wl.plain_median(fn, opts.plain_time)
            med = statistics.median(m.samples)
            rel = med / geo(a, b) - 1
            ok = valid(a, b)
            rows[name]["run"].append({"plain_before": a, "plain_after": b, "plugin": med, "rel": rel, "valid": ok,
                                      "plain_k": k, "plain_rounds": [ra, rb], "plugin_iterations": m.iterations,
                                      "plugin_rounds": len(m.samples), "stop": m.stop_reason,
                                      "warmup_discarded": m.warmup.get("discarded")})
            print(f"[run {attempt + 1}] {name:<11} plain {a * 1e6:10.3f}/{b * 1e6:10.3f} us  "
                  f"plugin {med * 1e6:10.3f} us  {pct(rel)}  {'' if ok else '(bracket unstable: dropped) '}"
                  f"(k={k}, iterations={m.iterations}, rounds={len(m.samples)}, stop={m.stop_reason})", flush=True)

    # pytest sessions: plain before / llmperf / plain after, as tests in the same process
    for attempt in range(0 if opts.no_session else max_attempts):
        if all(n_valid(name, "session") >= opts.pairs for name in sizes):
            break
        plain_out = root / f"plain_{attempt}.jsonl"
        js = root / f"llmperf_{attempt}.json"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_accuracy.py",
               "--llmperf-node=bench", f"--llmperf-baseline-dir={root / 'no-baselines'}", f"--llmperf-json={js}"]
        proc = subprocess.run(cmd, cwd=root, env=clean_env({"ACC_PLAIN_OUT": str(plain_out)}),
                              capture_output=True, text=True)
        if proc.returncode != 0 or not js.exists():
            print(f"pytest session failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
            return 2
        verdicts = {v["test"].split("::test_llmperf_")[-1]: v for v in json.loads(js.read_text())["verdicts"]}
        plain = {}
        for line in plain_out.read_text().splitlines():
            r = json.loads(line)
            plain[(r["name"], r["when"])] = r
        for name in sizes:
            if n_valid(name, "session") >= opts.pairs:
                continue
            v = verdicts[name]
            a, b = plain[(name, "before")]["median"], plain[(name, "after")]["median"]
            rel = v["current"] / geo(a, b) - 1
            ok = valid(a, b)
            rows[name]["session"].append({"plain_before": a, "plain_after": b, "plugin": v["current"], "rel": rel,
                                          "valid": ok, "status": v["status"], "plugin_rounds": v.get("n_current")})
            print(f"[session {attempt + 1}] {name:<11} plain {a * 1e6:10.3f}/{b * 1e6:10.3f} us  "
                  f"plugin {v['current'] * 1e6:10.3f} us  {pct(rel)}  {'' if ok else '(bracket unstable: dropped) '}"
                  f"(rounds={v.get('n_current')}, status={v['status']})", flush=True)

    print()
    print(f"=== accuracy: plugin median vs plain perf_counter loop; relative difference, median over stable "
          f"brackets [min, max] (n = stable/attempted; a bracket is stable when the plain timings before and "
          f"after agree within {opts.bracket_tol:.0%}) ===")
    header = (f"{'callable':<11} {'plain median':>13} {'measure.run':>47} {'':>4} "
              f"{'pytest session':>47} {'':>4}")
    print(header)
    print("-" * len(header))
    checks = []
    for name in sizes:
        run = [r for r in rows[name]["run"] if r["valid"]] or rows[name]["run"]
        plain_med = statistics.median(geo(r["plain_before"], r["plain_after"]) for r in run)
        cells = [f"{name:<11}", f"{plain_med * 1e6:>10.3f} us"]
        for kind in ("run", "session"):
            rs = [r for r in rows[name][kind] if r["valid"]]
            if not rs:
                cells += [f"{'no stable bracket':>47}", f"{'':>4}"]
                if rows[name][kind]:
                    checks.append(False)
                continue
            rels = [r["rel"] for r in rs]
            med = statistics.median(rels)
            ok = abs(med) <= TARGET
            checks.append(ok)
            all_med = statistics.median(r["rel"] for r in rows[name][kind])
            cells += [(f"{pct(med):>8} [{pct(min(rels))}, {pct(max(rels))}] "
                       f"n={len(rs)}/{len(rows[name][kind])} (all {pct(all_med)})").rjust(47), "PASS" if ok else "FAIL"]
        print(" ".join(cells))
    print()
    tiny = [r for r in rows["loop_1us"]["run"] if r["valid"]] or rows["loop_1us"]["run"]
    if tiny:
        print(f"batching (loop_1us): plain k = {tiny[0]['plain_k']} calls per round; plugin iterations per round = "
              f"{sorted({r['plugin_iterations'] for r in tiny})}")
    print(f"{'PASS' if all(checks) else 'FAIL'}  all medians within {TARGET:.0%} of the plain timer's")

    out_path = Path(opts.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"sizes": sizes, "pairs": opts.pairs, "plain_time": opts.plain_time,
                                    "results": rows, "target": TARGET}, indent=1))
    print(f"raw results: {out_path}")
    tmp.cleanup()
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
