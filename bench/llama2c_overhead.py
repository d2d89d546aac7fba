#!/usr/bin/env python
"""The llama2.c runner's own cost per run, and that its tok/s is the binary's own figure.

Builds the reference runner (-O3) and runs it on the synthetic stories260K checkpoint:

1. ``Runner.run`` ``--runs`` times: the plugin's cost of one run is the call's duration minus the
   child's lifetime (spawn to exit, ``RunResult.wall_s``): temporary files, environment, waiting,
   reading the output and the stats file, parsing. Process start and the child's own work are
   excluded. For scale, a plain ``subprocess.run`` of the same command is timed too.
2. ``runner.bench`` (the rounds engine the suite uses, with its machine-speed probe): its cost per
   round is its elapsed time minus the children's lifetimes, divided by the rounds.
3. Every recorded tok/s equals the number on the binary's own ``achieved tok/s:`` line, read here
   independently (split on the colon).

    python bench/llama2c_overhead.py [--runs 50] [--steps 64]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_llmperf.llama2c import models
from pytest_llmperf.llama2c.runner import Runner, RunSpec, bench
from pytest_llmperf.llama2c.session import REFERENCE_SOURCE
from pytest_llmperf.measure import MeasureSettings
from pytest_llmperf.native.build import build


def own_figure(stderr: str) -> float:
    line = [ln for ln in stderr.splitlines() if ln.startswith("achieved tok/s")][-1]
    return float(line.split(":", 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=64)
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="llmperf-l2c-overhead-"))
    binary = build(REFERENCE_SOURCE, "-O3", cache)
    ckpt, tok = models.ensure_synthetic_model(cache, "stories260K")
    spec = RunSpec(checkpoint=ckpt, tokenizer=tok, steps=args.steps, threads=1)
    runner = Runner()

    costs, lifetimes, equal = [], [], 0
    runner.run(binary, spec)  # page cache
    for _ in range(args.runs):
        t0 = time.perf_counter()
        r = runner.run(binary, spec)
        costs.append(time.perf_counter() - t0 - r.wall_s)
        lifetimes.append(r.wall_s)
        equal += r.tok_per_s == own_figure(r.stderr)
    plain = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(spec.argv(binary), capture_output=True, env={**runner.env, "OMP_NUM_THREADS": "1"})
        plain.append(time.perf_counter() - t0)

    print(f"reference runner -O3, stories260K (synthetic), {args.steps} steps, {args.runs} runs")
    print(f"Runner.run cost outside the child: median {statistics.median(costs) * 1e3:.3f} ms, "
          f"max {max(costs) * 1e3:.3f} ms")
    print(f"child lifetime (spawn to exit):    median {statistics.median(lifetimes) * 1e3:.2f} ms")
    print(f"plain subprocess.run, same command: median {statistics.median(plain) * 1e3:.2f} ms (whole call)")
    print(f"tok/s equal to the binary's own line: {equal}/{args.runs}")

    settings = MeasureSettings(warmup=1, min_rounds=args.runs, max_time=0.001, adaptive=False)
    t0 = time.perf_counter()
    b = bench(lambda: runner.run(binary, spec), settings)
    elapsed = time.perf_counter() - t0
    rounds = len(b.all_results)
    per_round = (elapsed - sum(r.wall_s for r in b.all_results)) / rounds
    same = sum(s == own_figure(r.stderr) for s, r in zip(b.measurement.samples, b.results))
    print(f"bench(): {rounds} rounds, cost per round outside the children {per_round * 1e3:.3f} ms "
          f"(probe and bookkeeping included)")
    print(f"bench() samples equal to the binary's own lines: {same}/{len(b.measurement.samples)}")
    ok = statistics.median(costs) < 0.005 and per_round < 0.005 and equal == args.runs
    print(f"{'PASS' if ok else 'FAIL'}: plugin cost per run under 5 ms, tok/s as printed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
