#!/usr/bin/env python
"""The history reference on simulated nights: false regressions and catches, next to the alternatives.

Each trial draws ``--nights`` reference nights and one night tonight of a time metric (lower is
better). A night: ``N`` = 30 rounds, log-normal; the night's level is exp(b), b ~ N(0, tau^2) (the
spread between nights, tau 0.5%, 1%, 2%); its rounds scatter so that the median's within-session
standard error is s, drawn uniformly from 0.3%..1% per night. The history keeps what a run line
keeps (median, n, within-session se of ln(median) from stats.run_log_median_se). Tonight is
unchanged, 3% slower or 5% slower (the same rounds, scaled), judged at tolerance 3% and 5%.
``--wild`` makes the oldest reference night 10% faster (a lucky night, verdict improved, kept).

Rows (all through compare.decide, confidence 99%, noise floor 1%):

* ``history``: pytest_llmperf.reference (select, reference_for, compare_history), the chosen one:
  random-effects posterior of tau on a grid with a half-Cauchy prior of scale the floor, tonight's
  interval from the posterior predictive, outlier nights left out;
* ``history, no screen``: the same without leaving out outlier nights (``--wild`` shows why);
* ``shrink``: the Paule-Mandel tau^2 shrunk towards the floor as a prior worth 2 nights, normal
  interval (tonight's se^2 + tau^2 + the center's se^2);
* ``shrink + t``: the same, the interval scaled by t(k+1)/z (the conjugate predictive);
* ``PM + t(k-1)``: the plain Paule-Mandel tau, the interval scaled by t(k-1)/z;
* ``saved``: compare.compare_metric against the newest reference night as the saved baseline,
  the fixed 1% noise floor (the saved-baseline mode).

    python bench/reference_figures.py                   # 1000 trials per case (about a minute a case)
    python bench/reference_figures.py --trials 200 --nights 10 --wild
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_llmperf import compare, reference, stats
from pytest_llmperf.compare import Metric
from pytest_llmperf.history import Point, Run

N = 30
FLOOR = 0.01
CHANGES = (0.0, 0.03, 0.05)
TOLERANCES = (0.03, 0.05)


def rounds(rng: random.Random, level: float, s: float) -> list[float]:
    sigma = s * math.sqrt(N) / 1.2533  # the sd of the rounds whose median has se s
    return [math.exp(level + rng.gauss(0.0, sigma)) for _ in range(N)]


def run_line(i: int, samples: list[float], status: str = "ok") -> Run:
    point = Point(name="time", unit="s", higher_is_better=False, median=stats.median(samples), n=len(samples),
                  se=stats.run_log_median_se(samples), adjusted=None, probe_kind=None, cpu_share=None,
                  status=status, change=None, reference=None)
    return Run(time=f"2026-12-{i + 1:02d}T23:00:00Z", run_id=f"r{i}", nodeid="t::a", fingerprint="fp",
               plugin_version="0", commits={}, outcome="passed", reset=False, metrics={"time": point})


def alternative(kind: str, ref: reference.Reference, tonight: list[float], tol: float) -> str:
    y, s = list(ref.logs), list(ref.ses)
    k, floor = len(y), math.log1p(FLOOR)
    t2 = reference.between_variance(y, s)
    if kind == "pm-t":
        tau2, df = t2, k - 1
    else:
        tau2, df = (2.0 * floor * floor + (k - 1) * t2) / (2.0 + k - 1), k + 1
    if k < reference.MIN_SPREAD_NIGHTS:
        tau2 = floor * floor
    w = [1.0 / (v * v + tau2) for v in s]
    center = math.fsum(a * b for a, b in zip(w, y)) / math.fsum(w)
    s0 = stats.run_log_median_se(tonight)
    se = math.sqrt(s0 * s0 + tau2 + 1.0 / math.fsum(w))
    if kind != "shrink" and k >= reference.MIN_SPREAD_NIGHTS:
        se *= stats.t_quantile(0.995, df) / stats.t_quantile(0.995, math.inf)
    est = stats.ratio_estimate(stats.median(tonight) / math.exp(center), se)
    known = compare.Verdict(test="t", metric="time", status="new", unit="s", higher_is_better=False, tolerance=tol,
                            current=stats.median(tonight), confidence=0.99)
    return compare.decide(known, est).status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--nights", type=int, default=5)
    ap.add_argument("--wild", action="store_true", help="the oldest reference night 10%% faster")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{args.trials} trials, {args.nights} reference nights, within-session se 0.3-1%, floor {FLOOR:.0%}"
          + (", oldest night 10% faster" if args.wild else ""))
    rows = ("history", "history, no screen", "shrink", "shrink + t", "PM + t(k-1)", "saved")
    for tau in (0.005, 0.01, 0.02):
        rng = random.Random(args.seed)
        counts = {(row, d, tol): 0 for row in rows for d in CHANGES for tol in TOLERANCES}
        left_out = 0
        started = time.perf_counter()
        for _ in range(args.trials):
            nights = [rounds(rng, rng.gauss(0.0, tau), rng.uniform(0.003, 0.01)) for _ in range(args.nights)]
            if args.wild:
                nights[0] = [v * 0.9 for v in nights[0]]
            entries = [run_line(i, r) for i, r in enumerate(nights)]
            level, s0 = rng.gauss(0.0, tau), rng.uniform(0.003, 0.01)
            base = rounds(rng, level, s0)
            cur0 = Metric("time", "s", False, base)
            points = reference.select(entries, "fp", "time", args.nights)
            ref = reference.reference_for(points, cur0, FLOOR)
            screen, reference.OUTLIER_Z = reference.OUTLIER_Z, math.inf
            unscreened = reference.reference_for(points, cur0, FLOOR)
            reference.OUTLIER_Z = screen
            assert ref is not None and unscreened is not None
            left_out += len(ref.left_out)
            saved = Metric("time", "s", False, nights[-1])
            for d in CHANGES:
                tonight = [v * (1.0 + d) for v in base]
                cur = Metric("time", "s", False, tonight)
                for tol in TOLERANCES:
                    got = {
                        "history": reference.compare_history("t", ref, cur, tol, 0.99, FLOOR).status,
                        "history, no screen": reference.compare_history("t", unscreened, cur, tol, 0.99, FLOOR).status,
                        "shrink": alternative("shrink", unscreened, tonight, tol),
                        "shrink + t": alternative("shrink-t", unscreened, tonight, tol),
                        "PM + t(k-1)": alternative("pm-t", unscreened, tonight, tol),
                        "saved": compare.compare_metric("t", saved, cur, tol, 0.99, FLOOR).status,
                    }
                    for row, status in got.items():
                        counts[(row, d, tol)] += status == compare.REGRESSED
        took = time.perf_counter() - started
        print(f"\ntau {tau:.1%}: regressed, % of {args.trials} trials ({took:.0f} s; the history's screen left out "
              f"{left_out} of {args.trials * args.nights} nights)")
        print(f"  {'':20s} {'unchanged':>15s} {'3% slower':>15s} {'5% slower':>15s}")
        print(f"  {'tolerance':20s}" + "".join(f"{'3%':>8s}{'5%':>7s}" for _ in CHANGES))
        for row in rows:
            cells = "".join(f"{counts[(row, d, 0.03)] / args.trials:8.1%}{counts[(row, d, 0.05)] / args.trials:7.1%}"
                            for d in CHANGES)
            print(f"  {row:20s}{cells}")


if __name__ == "__main__":
    main()
