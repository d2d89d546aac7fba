"""The torch suites' figures with their spread: runs suites/test_transformer.py and
suites/test_decode.py through pytest (a throw-away baseline directory, JSON report) and prints,
per test, the median and the spread of the gated metric with the informational ones beside it.

    python bench/torch_figures.py                                   # defaults of both suites
    python bench/torch_figures.py --lm "--llmperf-lm-sizes=small --llmperf-lm-contexts=128" --no-decode
    python bench/torch_figures.py --device cuda --lm "--llmperf-lm-sizes=small --llmperf-lm-contexts=256 \\
        --llmperf-precisions=fp32" --decode "--llmperf-decode-model=llama2-7b"

Spread: min, quartiles and max of the kept rounds, and the relative half-width of the
interquartile range. Everything the run printed goes to bench/out/torch_figures-<time>.log.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def run_suite(suite: str, extra: list[str], device: str, out: Path, log) -> dict:
    report = out / f"{Path(suite).stem}.json"
    cmd = [sys.executable, "-m", "pytest", str(REPO / suite), "-p", "no:cacheprovider", "-q", "-rs",
           f"--llmperf-baseline-dir={out / 'baselines'}", "--llmperf-node=figures",
           f"--llmperf-device={device}", f"--llmperf-json={report}", *extra]
    print("$", shlex.join(cmd), flush=True)
    log.write("$ " + shlex.join(cmd) + "\n")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    log.write(proc.stdout + proc.stderr)
    tail = [line for line in proc.stdout.splitlines() if " passed" in line or " failed" in line or "SKIPPED" in line]
    print("\n".join(tail[-8:]))
    print(f"(exit {proc.returncode}, {time.perf_counter() - t0:.0f} s)")
    if not report.exists():
        print(proc.stdout[-3000:], proc.stderr[-2000:])
        return {}
    return json.loads(report.read_text())


def fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def table(data: dict, gated: str, extras: list[str]) -> None:
    rows = []
    for r in data.get("tests", []):
        m = r["metrics"]
        if gated not in m:
            continue
        xs = m[gated]["samples"]
        lo, med, hi = quartiles(xs)
        row = [r["nodeid"].split("::", 1)[1], str(len(xs)), fmt(med), f"{fmt(min(xs))}..{fmt(max(xs))}",
               f"±{(hi - lo) / 2 / med:.1%}" if med else "-"]
        for name in extras:
            if name in m:
                row.append(fmt(statistics.median(m[name]["samples"])))
            else:
                row.append("-")
        rows.append(row)
    headers = ["test", "rounds", f"{gated} median", "min..max", "IQR/2"] + extras
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lm", default="", help="extra options of the transformer suite (one string)")
    ap.add_argument("--decode", default="", help="extra options of the decode suite (one string)")
    ap.add_argument("--no-lm", action="store_true")
    ap.add_argument("--no-decode", action="store_true")
    args = ap.parse_args()
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    log_path = REPO / "bench" / "out" / f"torch_figures-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with tempfile.TemporaryDirectory() as tmp, open(log_path, "w") as log:
        out = Path(tmp)
        if not args.no_lm:
            data = run_suite("suites/test_transformer.py", shlex.split(args.lm), args.device, out, log)
            table(data, "ms_per_step", ["first_step_ms", "tok_per_s", "mfu", "peak_mem", "compile_s"])
        if not args.no_decode:
            data = run_suite("suites/test_decode.py", shlex.split(args.decode), args.device, out, log)
            table(data, "decode_tok_per_s", ["ttft_ms", "ms_per_token", "mbu", "acceptance", "compile_s", "peak_mem"])
    print(f"log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
