#!/usr/bin/env python
"""Change-point detection on seeded series: the chosen method against the alternatives it was chosen from.

Every series is 30 nightly values of a rate (100 * exp(level + noise)), the noise Gaussian on the log
scale with sd 1% and 2%, ``--series`` seeded series per case (seeds fixed: the case's offset + i):

* step:  the level drops by 5% (ln 0.95) from night 20 (index 20) on; found when a step is placed
         at index 20 exactly (the +-1 figure is printed beside it);
* noise: no change; a false change point is any step (or, in the second column, a drift too);
* ramp:  20 flat nights, then -1% a night for 10 nights (index 20 is 1% down, index 29 10%);
         flagged when a step or a drift is found (the drift alone is printed too);
* last:  the newest night (index 29) is 5% down; found when index 29 is reported that night
         (the module: kind "last").

Methods (binary segmentation in all; the module's is the first):

* ``t-bonferroni``: pytest_llmperf.changepoint (find_steps + find_drift), the chosen one;
* ``t-permutation``: the same split statistic (largest pooled two-sample |t|), its p-value from
  ``--permutations`` shuffles of the segment (random.Random(seed)) instead of Bonferroni;
* ``e-divisive``: Matteson and James' E-divisive means (energy distance, exponent 1), the split
  with the largest q-hat, its p-value from the same number of shuffles;
* ``e-divisive+t``: E-divisive's split, kept when a Welch t-test of its two sides gives p < alpha
  (the way Apache Otava tests its candidates, with no correction for choosing the split).

The alternatives test no newest-night change and no drift. Then the time per 365-night series (the
module and E-divisive+t on 20 series, noise and noise with a 5% step every 60 nights alternating; the
permutation tests on 2, E-divisive with ``--long-permutations`` shuffles).

    python bench/changepoints.py                  # 100 series per case, 199 permutations (minutes)
    python bench/changepoints.py --quick          # 20 series per case
    python bench/changepoints.py --methods t-bonferroni
    python bench/changepoints.py --methods t-bonferroni --series 1000 --start-params 1,2,3
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pytest_llmperf.changepoint import find_drift, find_steps  # noqa: E402

ALPHA = 0.01
NIGHTS = 30
CASES = {"step": 0, "noise": 10_000, "ramp": 20_000, "last": 30_000}  # seed offsets
METHODS = ("t-bonferroni", "t-permutation", "e-divisive", "e-divisive+t")
MIN_SEGMENT = 2


def series(case: str, sd: float, seed: int, n: int = NIGHTS) -> list[float]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        level = 0.0
        if case == "step" and i >= 20:
            level = math.log(0.95)
        elif case == "ramp" and i >= 20:
            level = (i - 19) * math.log(0.99)
        elif case == "last" and i == n - 1:
            level = math.log(0.95)
        out.append(100.0 * math.exp(level + rng.gauss(0.0, sd)))
    return out


# ---------------------------------------------------------------------------------------------- alternatives


def max_t(z: Sequence[float]) -> tuple[int, float]:
    """(split, |t|) of the split of z with the largest pooled two-sample |t|."""
    n = len(z)
    mean = math.fsum(z) / n
    d = [v - mean for v in z]
    squares = math.fsum(v * v for v in d)
    best, where, left = -1.0, MIN_SEGMENT, math.fsum(d[:MIN_SEGMENT - 1])
    for i in range(MIN_SEGMENT - 1, n - MIN_SEGMENT):
        left += d[i]
        n1, n2 = i + 1, n - i - 1
        right = -left
        within = max(squares - left * left / n1 - right * right / n2, 1e-300)
        t = abs(right / n2 - left / n1) / math.sqrt(within / (n - 2) * (1 / n1 + 1 / n2))
        if t > best:
            best, where = t, n1
    return where, best


def qhat(z: Sequence[float]) -> tuple[int, float]:
    """(split, q-hat) of the split of z with the largest E-divisive statistic (exponent 1)."""
    n = len(z)
    within_left, between = 0.0, 0.0
    within_right = math.fsum(abs(z[j] - z[k]) for j in range(n) for k in range(j + 1, n))
    best, where = -math.inf, MIN_SEGMENT
    for p in range(n - MIN_SEGMENT):
        to_left = math.fsum(abs(z[i] - z[p]) for i in range(p))
        to_right = math.fsum(abs(z[p] - z[j]) for j in range(p + 1, n))
        within_left += to_left
        within_right -= to_right
        between += to_right - to_left
        m, k = p + 1, n - p - 1
        if m < MIN_SEGMENT:
            continue
        e = 2 * between / (m * k) - 2 * within_left / (m * (m - 1)) - 2 * within_right / (k * (k - 1))
        q = m * k / n * e
        if q > best:
            best, where = q, m
    return where, best


def permutation_p(z: Sequence[float], stat: Callable[[Sequence[float]], tuple[int, float]],
                  observed: float, permutations: int, rng: random.Random) -> float:
    work = list(z)
    above = 0
    for _ in range(permutations):
        rng.shuffle(work)
        if stat(work)[1] >= observed:
            above += 1
    return (above + 1) / (permutations + 1)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    from pytest_llmperf import changepoint as cp  # the module's t distribution, for the Otava-like test

    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0 if ma != mb else 1.0
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return cp._t_two_sided(abs(ma - mb) / se, max(1, round(df)))


def binseg(values: Sequence[float], method: str, permutations: int, seed: int) -> list[int]:
    """The splits that ``method`` finds in ``values`` (logs taken), sorted."""
    x = [math.log(v) for v in values]
    rng = random.Random(seed)
    found: list[int] = []
    todo = [(0, len(x))]
    while todo:
        a, b = todo.pop()
        z = x[a:b]
        if len(z) < 2 * MIN_SEGMENT:
            continue
        if method == "t-permutation":
            k, t = max_t(z)
            p = permutation_p(z, max_t, t, permutations, rng)
        elif method == "e-divisive":
            k, q = qhat(z)
            p = permutation_p(z, qhat, q, permutations, rng)
        else:  # e-divisive+t
            k, _ = qhat(z)
            p = welch_p(z[:k], z[k:])
        if p < ALPHA or (method != "e-divisive+t" and p <= ALPHA):  # a permutation p is exact at <=
            found.append(a + k)
            todo += [(a, a + k), (a + k, b)]
    return sorted(found)


# ---------------------------------------------------------------------------------------------- scoring


def judge(method: str, case: str, values: Sequence[float], permutations: int, seed: int) -> dict[str, bool]:
    if method == "t-bonferroni":
        steps = find_steps(values, ALPHA)
        drift = find_drift(values, ALPHA)
        at = {c.index: c.kind for c in steps}
        step_idx = [c.index for c in steps if c.kind == "step"]
        last = at.get(NIGHTS - 1) == "last"
    else:
        step_idx = binseg(values, method, permutations, seed)
        at = dict.fromkeys(step_idx, "step")
        drift = None
        last = False
    return {
        "exact": at.get(20) == "step",
        "near": any(abs(k - 20) <= 1 for k in step_idx),
        "any_step": bool(at),
        "drift": drift is not None,
        "flagged": bool(at) or drift is not None,
        "last": last,
    }


def run_case(method: str, case: str, sd: float, count: int, permutations: int) -> dict[str, float]:
    tally: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(count):
        seed = CASES[case] + i
        for key, hit in judge(method, case, series(case, sd, seed), permutations, seed).items():
            tally[key] = tally.get(key, 0) + int(hit)
    out = {k: 100.0 * v / count for k, v in tally.items()}
    out["ms"] = 1000.0 * (time.perf_counter() - t0) / count
    return out


def time_long(method: str, permutations: int, count: int) -> tuple[float, float]:
    """(mean, max) ms per 365-night series: noise, and noise with a 5% step every 60 nights."""
    times = []
    for i in range(count):
        rng = random.Random(90_000 + i)
        shape = i % 2
        values = [100 * math.exp(0.05 * shape * (j // 60 % 2) + rng.gauss(0, 0.01)) for j in range(365)]
        t0 = time.perf_counter()
        if method == "t-bonferroni":
            find_steps(values, ALPHA)
            find_drift(values, ALPHA)
        else:
            binseg(values, method, permutations, i)
        times.append(1000.0 * (time.perf_counter() - t0))
    return statistics.fmean(times), max(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100, help="seeded series per case (default 100)")
    ap.add_argument("--permutations", type=int, default=199, help="shuffles per test of the alternatives")
    ap.add_argument("--quick", action="store_true", help="20 series")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    ap.add_argument("--long-permutations", type=int, default=19,
                    help="shuffles per test when timing E-divisive on 365 nights (default 19: 199 take minutes)")
    ap.add_argument("--start-params", default="", metavar="1,2,3",
                    help="also count drifts with these values of changepoint.START_PARAMS (how it was chosen)")
    ap.add_argument("--out", default=str(HERE / "out" / "changepoints.json"))
    args = ap.parse_args()
    if args.quick:
        args.series = 20
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")

    results: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for method in methods:
        for sd in (0.01, 0.02):
            key = f"{method} sd={sd:.0%}"
            print(f"{key} ...", file=sys.stderr, flush=True)
            res = {case: run_case(method, case, sd, args.series, args.permutations) for case in CASES}
            results[key] = res
            rows.append([
                method, f"{sd:.0%}",
                f"{res['step']['exact']:.0f}% / {res['step']['near']:.0f}%",
                f"{res['noise']['any_step']:.0f}% / {res['noise']['flagged']:.0f}%",
                f"{res['ramp']['flagged']:.0f}% ({res['ramp']['drift']:.0f}%)",
                f"{res['last']['last']:.0f}%" if method == "t-bonferroni" else "-",
                f"{res['step']['drift']:.0f}%" if method == "t-bonferroni" else "-",
                f"{statistics.fmean(r['ms'] for r in res.values()):.1f}",
            ])
    head = ["method", "noise", "step@20 exact / +-1", "noise: false step / +drift", "ramp flagged (drift)",
            "last@29", "step: false drift", "ms/series"]
    print(f"\n{args.series} series per case, alpha {ALPHA}, {args.permutations} permutations for the "
          f"permutation tests\n")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))

    print("\ntime per 365-night series (noise, and a 5% step every 60 nights):")
    long: dict[str, tuple[float, float]] = {}
    for method in methods:
        count = 20 if method in ("t-bonferroni", "e-divisive+t") else 2
        perms = args.long_permutations if method == "e-divisive" else args.permutations
        mean, worst = time_long(method, perms, count)
        long[method] = (mean, worst)
        extra = f" ({perms} permutations per test)" if method in ("t-permutation", "e-divisive") else ""
        print(f"  {method}: mean {mean:.1f} ms, max {worst:.1f} ms over {count} series{extra}")

    ok = True
    if "t-bonferroni" in methods:
        one = results["t-bonferroni sd=1%"]
        targets = [
            ("5% step at night 20 of 30 found at index 20 exactly (sd 1%)", one["step"]["exact"], ">=", 95),
            ("pure noise, false change point (steps and newest night, sd 1%)", one["noise"]["any_step"], "<=", 5),
            ("pure noise, false change point or drift (sd 1%)", one["noise"]["flagged"], "<=", 5),
            ("-1%/night for 10 nights flagged, drift or step (sd 1%)", one["ramp"]["flagged"], ">=", 95),
            ("5% step at the newest night flagged that night, kind last (sd 1%)", one["last"]["last"], ">=", 95),
            ("365 nights, steps and drift, worst time in ms", long["t-bonferroni"][1], "<=", 100),
        ]
        print()
        for label, value, op, bound in targets:
            passed = value >= bound if op == ">=" else value <= bound
            ok &= passed
            print(f"{'PASS' if passed else 'FAIL'}: {label}: {value:.1f} {op} {bound}")
    if args.start_params:
        from pytest_llmperf import changepoint as cp

        print(f"\ndrift found, by START_PARAMS ({args.series} series per case):")
        chosen = cp.START_PARAMS
        for value in (int(v) for v in args.start_params.split(",")):
            cp.START_PARAMS = value
            cells = []
            for sd in (0.01, 0.02):
                for case in ("noise", "step", "ramp"):
                    hits = sum(find_drift(series(case, sd, CASES[case] + i), ALPHA) is not None
                               for i in range(args.series))
                    cells.append(f"{case}@{sd:.0%} {100 * hits / args.series:.1f}%")
            print(f"  {value}{' (chosen)' if value == chosen else ''}: " + ", ".join(cells))
        cp.START_PARAMS = chosen
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"series": args.series, "permutations": args.permutations, "alpha": ALPHA,
                               "results": results, "long_ms": long}, indent=1, sort_keys=True) + "\n")
    print(f"\nraw results: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
