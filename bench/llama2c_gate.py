#!/usr/bin/env python
"""Gate quality of the llama2.c suite on a real binary: false alarms on an unchanged build, and
how often a build at least 10% slower is caught.

The binary is the reference runner (pytest_llmperf/llama2c/refrun.c) compiled by the suite itself
(``suites/test_llama2c.py``, flag set ``-O3``, one thread), given to it as a "llama2.c checkout"
through ``--llmperf-llama2c-src``:

* unchanged: a directory whose run.c is refrun.c as shipped;
* slowed:    a directory whose run.c is refrun.c with every matrix-vector product followed by a
             second product over its first fifth of rows (into a scratch buffer the compiler
             cannot drop): 20% more multiply-adds in the products. They are about 60% of a
             stories260K token (attention over up to 512 positions is most of the rest) and 98%
             of a stories15M token at 128 steps, so tokens take about 12% and 20% longer. The
             run prints the measured slowdown (raw medians).

Procedure: save a baseline with the unchanged build; then ``--runs`` compare runs of each build,
interleaved (unchanged, slowed, unchanged, ...). A run "alarms" when its pytest exits non-zero.
Selected tests (``-k``): stories260K and stories15M at -O3, one thread (synthetic checkpoints).

    python bench/llama2c_gate.py            # 10 runs per build (about 6 minutes)
    python bench/llama2c_gate.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFRUN = ROOT / "pytest_llmperf" / "llama2c" / "refrun.c"
SELECT = "test_run and (260K-O3-t1 or 15M-O3-t1)"

SLOW_WRAPPER = """
float llmperf_bench_scratch[1 << 16]; /* external linkage: the extra products cannot be dropped */
static void {name}(float *out, const float *in, const float *mat, int cols, int rows) {{
    {name}_base(out, in, mat, cols, rows);
    {name}_base(llmperf_bench_scratch, in, mat, cols, rows / 5);
}}
"""


def slowed_source(text: str) -> str:
    """refrun.c with every mat_vec call doing 1/5 more rows of work."""
    return wrap_mat_vec(text, SLOW_WRAPPER.format(name="mat_vec"))


def wrap_mat_vec(text: str, wrapper: str) -> str:
    """refrun.c with its mat_vec renamed mat_vec_base and ``wrapper`` (C code defining a new
    mat_vec on top of it) put before forward()."""
    name = "mat_vec"
    definition = re.search(rf"^static void {name}\(", text, re.MULTILINE)
    forward = re.search(r"^static void forward\(", text, re.MULTILINE)
    if not definition or not forward:
        raise SystemExit(f"{REFRUN}: cannot find {name}() and forward() to make the slowed build")
    text = text[:definition.start()] + f"static void {name}_base(" + text[definition.end():]
    forward = re.search(r"^static void forward\(", text, re.MULTILINE)
    assert forward is not None
    return text[:forward.start()] + wrapper + "\n" + text[forward.start():]


def pytest_run(src: Path, base: Path, cache: Path, extra: list[str], json_out: Path) -> tuple[int, float]:
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "suites" / "test_llama2c.py"), "-q", "-p", "no:cacheprovider",
           "-k", SELECT, "--llmperf-node=gatebench", f"--llmperf-baseline-dir={base}",
           f"--llmperf-cache-dir={cache}", f"--llmperf-llama2c-src={src}", f"--llmperf-json={json_out}", *extra]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
    return out.returncode, wall


def verdicts(json_out: Path) -> list[dict]:
    try:
        data = json.loads(json_out.read_text())
    except (OSError, ValueError):
        return []
    return [v for v in data.get("verdicts", []) if v["metric"] == "tok_per_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "llama2c_gate.json"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmperf-l2c-gate-"))
    normal, slow = work / "unchanged", work / "slowed"
    normal.mkdir()
    slow.mkdir()
    shutil.copy(REFRUN, normal / "run.c")
    (slow / "run.c").write_text(slowed_source(REFRUN.read_text()))
    base, cache = work / "baselines", work / "cache"
    print(f"work dir {work}; selection -k {SELECT!r}", flush=True)

    code, wall = pytest_run(normal, base, cache, ["--llmperf-save-baseline"], work / "save.json")
    print(f"baseline saved: exit {code}, {wall:.1f} s", flush=True)
    if code != 0:
        return 2
    results: dict[str, list[dict]] = {"unchanged": [], "slowed": []}
    for i in range(args.runs):
        for label, src in (("unchanged", normal), ("slowed", slow)) if i % 2 == 0 else (("slowed", slow), ("unchanged", normal)):
            out = work / f"{label}-{i}.json"
            code, wall = pytest_run(src, base, cache, [], out)
            vs = verdicts(out)
            results[label].append({"exit": code, "wall": wall, "verdicts": vs})
            desc = "; ".join(f"{v['test'].split('[')[1].rstrip(']')} {v['status']} {v['change'] * 100:+.1f}%"
                             f" (raw {v['raw_change'] * 100:+.1f}%)" for v in vs if v.get("change") is not None)
            print(f"run {i + 1:2d} {label:9s} exit {code} {wall:5.1f} s  {desc}", flush=True)

    print()
    print(f"{'build':10s} {'alarms/runs':>11s} {'errors':>6s}  per test: statuses, change min/median/max (raw median)")
    ok = True
    for label, runs in results.items():
        alarms = sum(r["exit"] != 0 for r in runs)
        errors = sum(r["exit"] not in (0, 1) for r in runs)
        per_test: dict[str, list[dict]] = {}
        for r in runs:
            for v in r["verdicts"]:
                per_test.setdefault(v["test"].split("[")[1].rstrip("]"), []).append(v)
        print(f"{label:10s} {alarms:>5d}/{len(runs):<5d} {errors:>6d}")
        for test, vs in per_test.items():
            counts: dict[str, int] = {}
            for v in vs:
                counts[v["status"]] = counts.get(v["status"], 0) + 1
            ch = sorted(v["change"] * 100 for v in vs if v.get("change") is not None)
            raw = statistics.median(v["raw_change"] * 100 for v in vs if v.get("raw_change") is not None)
            print(f"    {test:14s} {counts}  {ch[0]:+.1f}%/{statistics.median(ch):+.1f}%/{ch[-1]:+.1f}%  (raw {raw:+.1f}%)")
        if label == "unchanged":
            ok &= alarms == 0
        else:
            ok &= alarms == len(runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n{'PASS' if ok else 'FAIL'}: 0 false alarms on the unchanged build and every slowed run caught")
    print(f"raw results: {args.out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
