#!/usr/bin/env python
"""Gate quality of pytest-llmperf against pytest-benchmark, side by side on the same workload.

Both tools gate the same CPU-bound pure-Python callable (about 1 ms at scale 1.00):

* pytest-llmperf:   ``llmperf.measure(work)``, default settings (tolerance 5%).
* pytest-benchmark: ``benchmark(work)`` compared with ``--benchmark-compare-fail=median:5%``.

Procedure: save a baseline of each tool at scale 1.00; then ``--runs`` compare runs at each scale
(default 1.00, 1.05, 1.10), interleaved (1.00, 1.05, 1.10, 1.00, ...), and within each step the
two tools run back to back, alternating which goes first, so that drifts of the machine's speed
hit both tools alike. A run "alarms" when its pytest process exits non-zero.

The scale multiplies the number of loop iterations (N * scale iterations of the same loop body),
so the extra work is exact; the fixed cost of the call itself (well under 1 us against ~1 ms)
makes the time ratio very slightly below the scale.

    python bench/gate_quality.py                 # 20 runs per scale (about 10 minutes)
    python bench/gate_quality.py --quick         # 5 runs per scale
    python bench/gate_quality.py --llmperf-args "--llmperf-max-time 0.5"
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

LOOP_SOURCE = '''
def work(n=ITERATIONS):
    acc = 0
    for i in range(n):
        acc += (i ^ (i >> 3)) % 11
    return acc
'''

WORKLOAD_MODULE = '''"""Workload for bench/gate_quality.py: N * scale iterations of a fixed pure-Python loop body."""
import os

N = {n}  # calibrated so that scale 1.00 takes about {target_ms:g} ms
SCALE = float(os.environ.get("LLMPERF_BENCH_SCALE", "1.0"))
ITERATIONS = round(N * SCALE)
''' + LOOP_SOURCE

TEST_LLMPERF = '''from workload import work


def test_work(llmperf):
    llmperf.measure(work)
'''

TEST_BENCHMARK = '''from workload import work


def test_work(benchmark):
    benchmark(work)
'''


def calibrate(target_s: float) -> tuple[int, float]:
    """N such that the loop of N iterations takes about ``target_s`` here; returns (N, measured s)."""
    ns: dict = {"ITERATIONS": 1}
    exec(LOOP_SOURCE, ns)
    work = ns["work"]

    def med_time(n: int, reps: int) -> float:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            work(n)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    med_time(20_000, 20)  # warm up
    n = 20_000
    for _ in range(3):
        t = med_time(n, 41)
        n = max(1000, round(n * target_s / t))
    return n, med_time(n, 101)


SNAPSHOT: Path | None = None  # a copy of the plugin's package, first on PYTHONPATH of every session


def snapshot_plugin(dest: Path) -> Path:
    """Copy the plugin's package under ``dest`` so that edits to the editable install during the
    run do not change the code under test half-way (baselines saved by one version may not load
    in another)."""
    import pytest_llmperf

    src = Path(pytest_llmperf.__file__).parent
    shutil.copytree(src, dest / src.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def clean_env(scale: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    env["LLMPERF_BENCH_SCALE"] = f"{scale:.4f}"
    if SNAPSHOT is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(SNAPSHOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_pytest(args: list[str], cwd: Path, scale: float) -> tuple[int, float, str]:
    cmd = [sys.executable, "-m", "pytest", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=clean_env(scale), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return proc.returncode, wall, proc.stdout + proc.stderr


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Tools:
    """The command lines of both tools in one temporary project."""

    def __init__(self, root: Path, llmperf_extra: list[str], benchmark_extra: list[str]):
        self.root = root
        self.llm_base = root / "llmperf-baselines"
        self.pb_store = root / "benchmark-storage"
        self.llm_json = root / "llmperf.json"
        self.pb_json = root / "benchmark.json"
        self.llmperf_extra = llmperf_extra
        self.benchmark_extra = benchmark_extra
        self.llmperf_plugin_args = ["-p", "no:benchmark"]  # replaced by --benchmark-disable if that fails
        self.pb_baseline_median: float | None = None

    def common(self) -> list[str]:
        return ["-q", "-p", "no:cacheprovider"]

    def llmperf_args(self, save: bool) -> list[str]:
        args = ["test_llmperf_work.py", *self.common(), *self.llmperf_plugin_args,
                "--llmperf-node=bench", f"--llmperf-baseline-dir={self.llm_base}",
                f"--llmperf-json={self.llm_json}", *self.llmperf_extra]
        if save:
            args.append("--llmperf-save-baseline")
        return args

    def benchmark_args(self, save: bool) -> list[str]:
        args = ["test_benchmark_work.py", *self.common(), "-p", "no:llmperf",
                f"--benchmark-storage=file://{self.pb_store}", f"--benchmark-json={self.pb_json}",
                *self.benchmark_extra]
        if save:
            args.append("--benchmark-save=base")
        else:
            args += ["--benchmark-compare=0001", "--benchmark-compare-fail=median:5%"]
        return args

    # -- one run of each tool ---------------------------------------------------------------
    def run_llmperf(self, scale: float, save: bool = False) -> dict:
        if self.llm_json.exists():
            self.llm_json.unlink()
        rc, wall, out = run_pytest(self.llmperf_args(save), self.root, scale)
        rec: dict = {"tool": "llmperf", "scale": scale, "rc": rc, "wall_s": wall, "alarm": rc != 0,
                     "error": rc not in (0, 1)}
        try:
            data = json.loads(self.llm_json.read_text())
            verdicts = [v for v in data.get("verdicts", []) if v.get("metric") == "time"]
            if verdicts:
                v = verdicts[0]
                for key in ("status", "change", "ci_low", "ci_high", "raw_change", "adjusted", "current",
                            "baseline", "n_current", "n_baseline", "p_value", "reason"):
                    rec[key] = v.get(key)
            else:
                rec["status"] = "no-verdict"
            for payload in data.get("tests") or []:
                if isinstance(payload, dict) and "metrics" in payload:
                    m = payload["metrics"].get("time", {})
                    if isinstance(m, dict) and "warmup" in m:
                        rec["warmup"] = m["warmup"]
        except (OSError, ValueError) as exc:
            rec["status"] = "no-json"
            rec["json_error"] = str(exc)
        unexpected = rc not in (0, 1) or rec.get("status") in ("no-json", "no-verdict", "not-compared", "new")
        if unexpected and not save:
            rec["output_tail"] = tail(out)
        return rec

    def run_benchmark(self, scale: float, save: bool = False) -> dict:
        if self.pb_json.exists():
            self.pb_json.unlink()
        rc, wall, out = run_pytest(self.benchmark_args(save), self.root, scale)
        rec: dict = {"tool": "pytest-benchmark", "scale": scale, "rc": rc, "wall_s": wall, "alarm": rc != 0,
                     "error": rc not in (0, 1)}
        try:
            data = json.loads(self.pb_json.read_text())
            st = data["benchmarks"][0]["stats"]
            rec["median"] = st["median"]
            rec["rounds"] = st["rounds"]
            rec["iterations"] = st.get("iterations")
            if save:
                self.pb_baseline_median = st["median"]
            if self.pb_baseline_median:
                rec["change"] = st["median"] / self.pb_baseline_median - 1.0
        except (OSError, ValueError, KeyError, IndexError) as exc:
            rec["json_error"] = str(exc)
        regressed = "Performance has regressed" in out
        rec["regression_reported"] = regressed
        if (rc != 0 and not regressed) or (rc == 0 and regressed):
            rec["output_tail"] = tail(out)
        return rec


def plugin_digest() -> str:
    """A digest of the plugin's source files (others may edit the editable install mid-run)."""
    import hashlib

    import pytest_llmperf

    h = hashlib.sha256()
    for path in sorted(Path(pytest_llmperf.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def summarize(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.median(values)) if values else (math.nan, math.nan)


def fmt_pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="compare runs per scale and tool (default 20)")
    ap.add_argument("--quick", action="store_true", help="5 runs per scale")
    ap.add_argument("--scales", default="1.00,1.05,1.10", help="comma-separated workload scales")
    ap.add_argument("--out", default=str(HERE / "out" / "gate.json"), help="JSON file for all raw results")
    ap.add_argument("--llmperf-args", default="", help="extra pytest args for the llmperf sessions (one string)")
    ap.add_argument("--benchmark-args", default="", help="extra pytest args for the pytest-benchmark sessions")
    ap.add_argument("--target-ms", type=float, default=1.0, help="cost of the workload at scale 1.00 (ms)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="run the live (editable) plugin instead of a copy taken at start")
    opts = ap.parse_args(argv)
    global SNAPSHOT
    runs = 5 if opts.quick else opts.runs
    scales = [float(s) for s in opts.scales.split(",") if s.strip()]

    root = Path(tempfile.mkdtemp(prefix="llmperf-gate-"))
    digest_start = plugin_digest()
    if not opts.no_snapshot:
        SNAPSHOT = snapshot_plugin(root / "plugin-snapshot")
        check = subprocess.run([sys.executable, "-c", "import pytest_llmperf.plugin as p; print(p.__file__)"],
                               env=clean_env(1.0), cwd=root, capture_output=True, text=True)
        if not check.stdout.strip().startswith(str(SNAPSHOT)):
            print(f"cannot load the plugin snapshot ({check.stdout.strip()} {check.stderr[-500:]}); using the live one")
            SNAPSHOT = None
    print(f"plugin sources digest: {digest_start} "
          f"({'snapshot ' + str(SNAPSHOT) if SNAPSHOT else 'live editable install'})")
    n, t_cal = calibrate(opts.target_ms / 1000.0)
    print(f"calibrated: N = {n} iterations -> {t_cal * 1e3:.3f} ms per call here (target {opts.target_ms:g} ms)")
    print("slowdown is exact in work: N*scale iterations of the same loop body; the fixed call overhead "
          "(<1 us) makes the time ratio very slightly below the scale")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "workload.py").write_text(WORKLOAD_MODULE.format(n=n, target_ms=opts.target_ms))
    (root / "test_llmperf_work.py").write_text(TEST_LLMPERF)
    (root / "test_benchmark_work.py").write_text(TEST_BENCHMARK)
    tools = Tools(root, shlex.split(opts.llmperf_args), shlex.split(opts.benchmark_args))
    print(f"project: {root}")

    # -- baselines at scale 1.00 ---------------------------------------------------------------
    base_l = tools.run_llmperf(1.0, save=True)
    if base_l["rc"] != 0:
        print(f"llmperf save with -p no:benchmark failed (rc {base_l['rc']}); retrying with --benchmark-disable")
        print(textwrap.indent(base_l.get("output_tail", ""), "    "))
        tools.llmperf_plugin_args = ["--benchmark-disable"]
        shutil.rmtree(tools.llm_base, ignore_errors=True)
        base_l = tools.run_llmperf(1.0, save=True)
        if base_l["rc"] != 0:
            print("llmperf baseline save failed:\n" + base_l.get("output_tail", ""))
            return 2
    base_b = tools.run_benchmark(1.0, save=True)
    if base_b["rc"] != 0:
        print("pytest-benchmark baseline save failed:\n" + base_b.get("output_tail", ""))
        return 2
    print(f"llmperf session plugin args: {' '.join(tools.llmperf_plugin_args)}")
    print(f"saved baselines: llmperf median {base_l.get('current', math.nan) * 1e3:.4f} ms "
          f"({base_l.get('n_current')} rounds, {base_l['wall_s']:.2f} s wall); "
          f"pytest-benchmark median {base_b.get('median', math.nan) * 1e3:.4f} ms "
          f"({base_b.get('rounds')} rounds, {base_b['wall_s']:.2f} s wall)")
    print(f"llmperf extra args: {opts.llmperf_args or '(none)'}; "
          f"pytest-benchmark extra args: {opts.benchmark_args or '(none)'}")

    # -- interleaved compare runs ----------------------------------------------------------------
    results: list[dict] = []
    total = runs * len(scales)
    step = 0
    t_start = time.perf_counter()
    for i in range(runs):
        for j, scale in enumerate(scales):
            step += 1
            llmperf_first = (i + j) % 2 == 0
            order = ("llmperf", "pytest-benchmark") if llmperf_first else ("pytest-benchmark", "llmperf")
            line = []
            for tool in order:
                rec = tools.run_llmperf(scale) if tool == "llmperf" else tools.run_benchmark(scale)
                rec["run"] = i
                rec["step"] = step
                rec["first"] = tool == order[0]
                results.append(rec)
                if tool == "llmperf":
                    line.append(f"llmperf rc={rec['rc']} {rec.get('status', '?'):<10} "
                                f"{fmt_pct(rec.get('change'))} [{fmt_pct(rec.get('ci_low'))}, "
                                f"{fmt_pct(rec.get('ci_high'))}] n={rec.get('n_current')} {rec['wall_s']:.2f}s")
                else:
                    line.append(f"pytest-benchmark rc={rec['rc']} median {fmt_pct(rec.get('change'))} "
                                f"{rec['wall_s']:.2f}s")
                if "output_tail" in rec and rec["rc"] not in (0, 1) and tool == "llmperf":
                    print(textwrap.indent(rec["output_tail"], "    | "))
            elapsed = time.perf_counter() - t_start
            print(f"[{step:3d}/{total}] scale {scale:.2f} | " + " | ".join(line) + f" | t={elapsed:.0f}s",
                  flush=True)

    # -- report ------------------------------------------------------------------------------------
    digest_end = plugin_digest()
    if digest_end != digest_start:
        print(f"note: the live plugin's sources changed during the run ({digest_start} -> {digest_end})"
              + ("; this run used the snapshot taken at start" if SNAPSHOT else "; RESULTS MIX VERSIONS"))
    out_path = Path(opts.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "calibration": {"N": n, "seconds_per_call": t_cal, "target_ms": opts.target_ms},
        "runs_per_scale": runs, "scales": scales,
        "llmperf_args": opts.llmperf_args, "benchmark_args": opts.benchmark_args,
        "llmperf_plugin_args": tools.llmperf_plugin_args,
        "baselines": {"llmperf": base_l, "pytest-benchmark": base_b},
        "results": results,
        "plugin_digest": [digest_start, digest_end],
        "python": sys.version, "cpu_count": os.cpu_count(),
    }
    out_path.write_text(json.dumps(doc, indent=1, default=str))

    print()
    print(f"=== gate quality: {runs} compare runs per scale, interleaved; N={n} ({t_cal * 1e3:.3f} ms/call) ===")
    header = (f"{'tool':<18} {'scale':>5} {'alarms/runs':>11} {'errors':>6} {'mean wall s':>11} "
              f"{'median wall s':>13}")
    print(header)
    print("-" * len(header))
    table: dict = {}
    for tool in ("llmperf", "pytest-benchmark"):
        for scale in scales:
            rs = [r for r in results if r["tool"] == tool and r["scale"] == scale]
            alarms = sum(r["alarm"] for r in rs)
            errors = sum(r["error"] for r in rs)
            mean_w, med_w = summarize([r["wall_s"] for r in rs])
            table[(tool, scale)] = alarms
            print(f"{tool:<18} {scale:>5.2f} {f'{alarms}/{len(rs)}':>11} {errors:>6} {mean_w:>11.2f} {med_w:>13.2f}")
        mean_all, med_all = summarize([r["wall_s"] for r in results if r["tool"] == tool])
        print(f"{tool:<18} {'all':>5} {'':>11} {'':>6} {mean_all:>11.2f} {med_all:>13.2f}")
    print("(alarm = pytest exit code != 0; errors = exit code other than 0/1, counted as alarms too)")

    print()
    print("llmperf verdicts per scale (change = speed-adjusted when adjusted; raw = plain medians):")
    statuses = ("ok", "noisy", "regressed", "improved", "other")
    print(f"{'scale':>5} " + " ".join(f"{s:>9}" for s in statuses)
          + f" {'change min/median/max':>24} {'raw min/median/max':>24} {'adjusted':>8} {'rounds med':>10}")
    for scale in scales:
        rs = [r for r in results if r["tool"] == "llmperf" and r["scale"] == scale]
        counts = dict.fromkeys(statuses, 0)
        for r in rs:
            s = r.get("status")
            counts[s if s in counts else "other"] += 1
        ch = sorted(r["change"] for r in rs if r.get("change") is not None)
        raw = sorted(r["raw_change"] for r in rs if r.get("raw_change") is not None)
        spread = lambda v: (f"{fmt_pct(v[0])}/{fmt_pct(statistics.median(v))}/{fmt_pct(v[-1])}"  # noqa: E731
                            if v else "-")
        adj = sum(bool(r.get("adjusted")) for r in rs)
        nrounds = [r["n_current"] for r in rs if r.get("n_current")]
        print(f"{scale:>5.2f} " + " ".join(f"{counts[s]:>9}" for s in statuses)
              + f" {spread(ch):>24} {spread(raw):>24} {f'{adj}/{len(rs)}':>8}"
              + f" {statistics.median(nrounds) if nrounds else '-':>10}")
    print()
    print("pytest-benchmark median change vs its baseline per scale (min/median/max):")
    for scale in scales:
        ch = sorted(r["change"] for r in results
                    if r["tool"] == "pytest-benchmark" and r["scale"] == scale and r.get("change") is not None)
        if ch:
            print(f"{scale:>5.2f} {fmt_pct(ch[0])}/{fmt_pct(statistics.median(ch))}/{fmt_pct(ch[-1])}")
    odd = [r for r in results if r["rc"] not in (0, 1) or r.get("status") in ("no-json", "no-verdict",
                                                                               "not-compared", "new")]
    if odd:
        print(f"\nunexpected outcomes: {len(odd)} runs (exit codes "
              f"{sorted({(r['tool'], r['rc']) for r in odd})}); see {out_path}")

    # -- targets -----------------------------------------------------------------------------------
    print()
    print("targets (llmperf):")
    checks = []
    wall_l = statistics.fmean(r["wall_s"] for r in results if r["tool"] == "llmperf")
    wall_b = statistics.fmean(r["wall_s"] for r in results if r["tool"] == "pytest-benchmark")

    def check(ok: bool, text: str) -> None:
        checks.append(ok)
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")

    def alarms_at(scale: float) -> int | None:
        return table.get(("llmperf", scale))

    if 1.0 in scales:
        check(alarms_at(1.0) == 0, f"0/{runs} false regressions at 1.00: got {alarms_at(1.0)}/{runs}")
    if 1.1 in scales:
        need = math.ceil(runs * 19 / 20)
        check(alarms_at(1.1) >= need, f">= {need}/{runs} caught at 1.10: got {alarms_at(1.1)}/{runs}")
    if 1.05 in scales:
        need = math.ceil(runs * 15 / 20)
        check(alarms_at(1.05) >= need, f">= {need}/{runs} caught at 1.05: got {alarms_at(1.05)}/{runs}")
    n_err = sum(r["error"] for r in results if r["tool"] == "llmperf")
    check(n_err == 0, f"no llmperf session errors (exit code other than 0/1): got {n_err}")
    check(wall_l <= wall_b, f"mean wall per run <= pytest-benchmark's: {wall_l:.2f} s vs {wall_b:.2f} s")
    print(f"raw results: {out_path}")
    if opts.keep:
        print(f"kept project: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
