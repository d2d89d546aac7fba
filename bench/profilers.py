#!/usr/bin/env python
"""The process profilers on the llama2.c 260K configuration of the suite, by hand.

Builds the reference runner with the users' flag sets and writes the synthetic stories260K
checkpoint (into a fresh cache), then, for the command the suite benchmarks
(``run stories260K.bin -z tok512.bin -n 512 -s 42``, one thread):

1. instructions: the count under callgrind ``--runs`` times per flag set, with the fake clock
   (the default) and without it (the shim's build made to fail), to show that repeated runs give
   the same count and what the fake clock removes;
2. perf stat: every default event once, counted or recorded with its status;
3. perf record: the top symbols and their share.

    python bench/profilers.py [--runs 5] [--flags "-O3" "-O3 -fopenmp -Ofast"] [--out bench/out/profilers]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from pytest_llmperf.llama2c import models
from pytest_llmperf.llama2c.runner import RunSpec
from pytest_llmperf.llama2c.session import REFERENCE_SOURCE
from pytest_llmperf.native.build import build
from pytest_llmperf.profilers import ProfilerOptions, base, create


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--flags", nargs="+", default=["-O3", "-O3 -fopenmp", "-O3 -fopenmp -Ofast"])
    ap.add_argument("--out", default="bench/out/profilers")
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="llmperf-profilers-"))
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    ckpt, tok = models.ensure_synthetic_model(cache, "stories260K")
    spec = RunSpec(checkpoint=ckpt, tokenizer=tok, steps=args.steps, threads=1)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}

    print(f"stories260K (synthetic), {args.steps} steps, seed 42, 1 thread; files under {out}")
    print("\n1. instructions (valgrind callgrind), identical runs?")
    for flags in args.flags:
        binary = build(REFERENCE_SOURCE, flags, cache / "llama2c", name="run")
        argv = spec.argv(binary)
        for label, cc in (("fake clock", "cc"), ("real clock", "no-such-cc")):
            prof = create("instructions", ProfilerOptions(cc=cc, cache_dir=cache / ("shim" if cc == "cc" else "none")))
            counts = []
            for i in range(args.runs):
                p = base.run(prof, argv, out / "instructions", tag=f"{flags.replace(' ', '')}-{cc}-{i}", env=env)
                counts.append(int(p.readings[0].value))
            same = "identical" if len(set(counts)) == 1 else f"{len(set(counts))} different, spread {max(counts) - min(counts)}"
            print(f"  {flags:<22} {label}: {', '.join(f'{c:,}' for c in counts)}  -> {same}")
        print(f"  {'':<22} top: {p.summary.split('top: ', 1)[-1]}")

    binary = build(REFERENCE_SOURCE, "-O3", cache / "llama2c", name="run")
    argv = spec.argv(binary)
    print("\n2. perf stat -x, (default events), -O3:")
    p = base.run(create("perf-stat"), argv, out / "perf", tag="stat", env=env)
    for c in p.details["counters"]:
        value = f"{c['value']:,.2f} {c['unit']}".rstrip() if c["value"] is not None else f"<{c['status']}>"
        print(f"  {c['event']:<18} {value}")
    described = []
    for r in p.readings:
        how = ("higher" if r.higher_is_better else "lower") + " is better" + ("" if r.gate else ", informational")
        described.append(f"{r.name} ({how})")
    print("  metrics: " + ", ".join(described))

    print("\n3. perf record -F 999 -g, -O3:")
    p = base.run(create("perf-record"), argv, out / "perf", tag="record", env=env)
    print(f"  {p.details['samples']} samples of {p.details['event']}")
    for s in p.details["top_symbols"][:6]:
        print(f"  {s['share']:6.2f}%  {s['symbol']:<32} {s['dso']}")
    print(f"  kept: {', '.join(str(f) for f in p.files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
