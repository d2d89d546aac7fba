#!/usr/bin/env python
"""Issue 13's gate figures on the llama2.c suite (targets 1, 2 and the real-run half of 4), with a
CPU-heavy process (``python3 -c "while True: pass"``) running for the whole measurement.

The binary under test is a "llama2.c checkout": a git repository made in a temporary directory whose
run.c is pytest_llmperf/llama2c/refrun.c, with three commits: R (the reference night), U (R plus a
comment: tonight's unchanged build) and S (R slowed: every mat_vec followed by a second one over
``rows / DIVISOR`` of its rows, bench/llama2c_gate.py's build). U and S are worktrees side by side,
given to the sessions as ``--llmperf-llama2c-src``. A "false regression" is a row ``regressed`` on U;
"caught" is a row ``regressed`` on S; a session's exit code counts too (alarm = exit 1).

    python bench/gate_llama2c.py slowdown --model stories260K --divisors 5,6,7   # the true slowdown
    python bench/gate_llama2c.py t1-old   # today's mode: the code of 62836fa, saved baseline
    python bench/gate_llama2c.py t1-new   # paired runs (--llmperf-llama2c-ref=<R>)
    python bench/gate_llama2c.py t2       # stories15M -O3 t1: history:5, paired, saved
    python bench/gate_llama2c.py t4       # 12 appending sessions, S after session 8, change points

Each writes its raw results to bench/out/gate_<target>.json and prints a table and PASS/FAIL lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    OUT,
    ROOT,
    Checkout,
    Code,
    Session,
    check_import,
    cpu_load,
    gate_checks,
    interleave,
    make_checkout,
    old_worktree,
    print_checks,
    progress,
    rows_of,
    run_session,
    session_env,
    side_by_side,
    slowed_run_c,
    snapshot_code,
    true_slowdown,
    write_json,
)

REFRUN = ROOT / "pytest_llmperf" / "llama2c" / "refrun.c"
OLD_REV = "62836fa"  # the code before issue 13
SELECT_260K = "test_run and 260K"
SELECT_15M = "test_run and 15M-O3-t1"
# the slowed builds, chosen with `slowdown` (R and S alternated, -O3, one thread, CPU load on):
# stories260K rows/4: tok/s -9.6% (pairwise median of 60 pairs; rows/6 -6.1%);
# stories15M: rows/D does not slow it measurably (rows/6 -1.0%, rows/10 -0.3%, 16 pairs: the repeated
# rows are still in the cache, and the model is memory-bound), stream/D depends on the load (stream/4
# -5.2% with a test suite running too, stream/8 +1.6%, 30 pairs); spin/N is fixed compute per product:
# spin/15000 -2.5% (3 pairs), spin/30000 -6.0% (pairwise -6.1%, 20 pairs) one day and -3.5% the next,
# spin/45000 -10.7% and spin/55000 -33.6% within the hour (a fixed time next to a step whose time
# moves with the machine's state); forward/K repeats the model's own work (8 more forward passes in
# 127 timed positions at K=16, -5.9% if the repeat cost as much as the first pass; measured -4.2%
# (30 pairs; the repeat finds part of the weights still in the cache), forward/12 -5.8% (pairwise
# -6.9%) and forward/10 -7.6% (24 pairs each), all beside the CPU hog)
DIVISOR_260K = "rows/4"
DIVISOR_15M = "forward/12"


class Bench:
    """One target's sessions: a temporary node with its own baseline, cache and history dirs."""

    def __init__(self, work: Path, code: Code, checkout: Checkout, select: str, new_options: bool):
        self.work, self.code, self.checkout, self.select = work, code, checkout, select
        self.base, self.cache, self.hist = work / "baselines", work / "cache", work / "history"
        self.new_options = new_options
        self.n = 0

    def args(self, label: str, extra: list[str]) -> list[str]:
        args = [str(self.code.suite), "-k", self.select, "--llmperf-node=gatebench",
                f"--llmperf-baseline-dir={self.base}", f"--llmperf-cache-dir={self.cache}",
                f"--llmperf-llama2c-src={self.checkout.path(label)}"]
        if self.new_options and has_option(self.code, "--llmperf-history-dir"):
            args.append(f"--llmperf-history-dir={self.hist}")
        return args + extra

    def run(self, label: str, extra: list[str], tag: str = "") -> Session:
        self.n += 1
        out = self.work / "json" / f"{self.n:03d}-{tag or label}.json"
        out.parent.mkdir(exist_ok=True)
        return run_session(self.code, self.args(label, extra), out, label)


_HELP: dict[Path, str] = {}


def has_option(code: Code, option: str) -> bool:
    """Does ``python3 -m pytest --help`` under ``code`` list ``option``?"""
    if code.root not in _HELP:
        _HELP[code.root] = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
                                          cwd=code.root, env=session_env(code), capture_output=True,
                                          text=True).stdout
    return option in _HELP[code.root]


def series(bench: Bench, labels: list[str], runs: int, extra: list[str], tag: str,
           sessions: dict[str, list[Session]], t0: float) -> None:
    order = interleave(labels, runs)
    for i, label in enumerate(order, 1):
        s = bench.run(label, extra, tag=f"{tag}-{label}")
        sessions.setdefault(label, []).append(s)
        progress(i, len(order), s, t0)


def refrun_text() -> str:
    return REFRUN.read_text()


def setup(args: argparse.Namespace, divisor: str) -> tuple[Path, Checkout]:
    work = Path(tempfile.mkdtemp(prefix=f"llmperf-gate-{args.cmd}-"))
    checkout = make_checkout(work, refrun_text(), divisor)
    print(f"work dir {work}; run.c commits {checkout.shas}; slowed: {checkout.divisor}", flush=True)
    return work, checkout


def save_session(bench: Bench, extra: list[str], t0: float) -> Session:
    s = bench.run("R", ["--llmperf-save-baseline", *extra], tag="save-R")
    progress(0, 0, s, t0)
    if s.rc != 0:
        raise SystemExit(f"saving the baseline with R failed (exit {s.rc}):\n{s.tail}")
    return s


def doc_of(sessions: dict[str, list[Session]]) -> dict[str, Any]:
    return {k: [s.to_json() for s in v] for k, v in sessions.items()}


# -- slowdown ----------------------------------------------------------------------------------------

def cmd_slowdown(args: argparse.Namespace) -> int:
    from pytest_llmperf.llama2c.models import ensure_synthetic_model
    from pytest_llmperf.llama2c.session import DEFAULT_STEPS

    work = Path(tempfile.mkdtemp(prefix="llmperf-slowdown-"))
    ckpt, tok = ensure_synthetic_model(work / "cache", args.model)
    argv = [str(ckpt), "-z", str(tok), "-n", str(DEFAULT_STEPS[args.model]), "-s", "42", "-t", "1.0", "-p", "0.9"]
    text = refrun_text()
    results = {}
    with cpu_load(not args.no_load):
        for d in args.divisors.split(","):
            r = true_slowdown({"R": text, "S": slowed_run_c(text, d)}, argv, args.pairs, work / d.replace("/", "-"),
                              flags=args.flags)
            results[d] = r
            print(f"{args.model} {args.flags} {d}: tok/s medians R {r['R']['tok_median']:.1f} "
                  f"S {r['S']['tok_median']:.1f}: {r.get('tok_ratio', 0) * 100:+.2f}% (pairwise median "
                  f"{r.get('paired_median_ratio', 0) * 100:+.2f}%); wall medians R {r['R']['wall_median']:.3f} s "
                  f"S {r['S']['wall_median']:.3f} s: {r['wall_ratio'] * 100:+.2f}%  ({args.pairs} pairs)", flush=True)
    write_json(OUT / f"gate_slowdown_{args.model}.json", {"model": args.model, "results": results,
                                                           "load": not args.no_load})
    return 0


# -- target 1 ----------------------------------------------------------------------------------------

def cmd_t1(args: argparse.Namespace) -> int:
    old = args.cmd == "t1-old"
    work, checkout = setup(args, args.divisor or DIVISOR_260K)
    code = old_worktree(Path(args.old_tree), OLD_REV) if old else snapshot_code(work / "code")
    print(f"code under test: {code.label}; pytest_llmperf imported from {check_import(code, work)}", flush=True)
    bench = Bench(work, code, checkout, args.select or SELECT_260K, new_options=not old)
    ref = checkout.shas["R"] if args.ref == "R" else args.ref
    extra = [] if old else [f"--llmperf-llama2c-ref={ref}", *args.extra]
    sessions: dict[str, list[Session]] = {}
    t0 = time.perf_counter()
    with cpu_load(not args.no_load):
        save = save_session(bench, [] if old else ["--llmperf-llama2c-ref=off", *args.extra], t0)
        series(bench, ["U", "S"], args.runs, extra, "t1", sessions, t0)
    name = "today (62836fa, saved)" if old else ("paired" if args.ref == "R" else f"ref={args.ref}")
    print()
    print(f"=== target 1, {name}: stories260K rows, {args.runs} U and {args.runs} S sessions interleaved ===")
    print(side_by_side({name: sessions}))
    print(f"mean wall per session: {statistics.fmean(s.wall for ss in sessions.values() for s in ss):.1f} s "
          f"({len(rows_of([s for ss in sessions.values() for s in ss]))} rows); baseline save {save.wall:.1f} s")
    ok = print_checks(gate_checks(name, sessions.get("U", []), sessions.get("S", [])))
    write_json(OUT / f"gate_{args.cmd}{'' if old or args.ref == 'R' else '-' + args.ref}.json", {"code": code.label, "shas": checkout.shas, "divisor": checkout.divisor,
                                               "extra": extra, "save": save.to_json(), "sessions": doc_of(sessions)})
    return 0 if ok else 1


# -- target 2 ----------------------------------------------------------------------------------------

def cmd_t2(args: argparse.Namespace) -> int:
    work, checkout = setup(args, args.divisor or DIVISOR_15M)
    code = snapshot_code(work / "code")
    print(f"code under test: {code.label}; pytest_llmperf imported from {check_import(code, work)}", flush=True)
    bench = Bench(work, code, checkout, args.select or SELECT_15M, new_options=True)
    r_sha = checkout.shas["R"]
    modes: dict[str, dict[str, list[Session]]] = {}
    t0 = time.perf_counter()
    with cpu_load(not args.no_load):
        nights = []
        for i in range(args.nights):
            extra = ["--llmperf-history-append", "--llmperf-llama2c-ref=off"]
            if i == 0:
                extra.append("--llmperf-save-baseline")
            s = bench.run("R", extra, tag=f"night{i}")
            nights.append(s)
            progress(i + 1, args.nights, s, t0)
        plans = {
            "history:5": ["--llmperf-baseline=history:5", "--llmperf-llama2c-ref=off"],
            "paired": [f"--llmperf-llama2c-ref={r_sha}"],
            "saved": ["--llmperf-baseline=saved", "--llmperf-llama2c-ref=off"],
        }
        for name in args.modes.split(","):
            print(f"--- {name}: {plans[name]}", flush=True)
            modes[name] = {}
            series(bench, ["U", "S"], args.runs, plans[name], name, modes[name], t0)
    print()
    print(f"=== target 2: stories15M -O3 t1, {args.nights} nights of R, then {args.runs} U / {args.runs} S per mode ===")
    print(side_by_side(modes))
    checks = []
    for name, m in modes.items():
        checks += gate_checks(name, m.get("U", []), m.get("S", []), ok_frac=None)
    ok = print_checks(checks)
    write_json(OUT / "gate_t2.json", {"code": code.label, "shas": checkout.shas, "divisor": checkout.divisor,
                                      "nights": [s.to_json() for s in nights],
                                      "modes": {k: doc_of(v) for k, v in modes.items()}})
    return 0 if ok else 1


# -- target 4 ----------------------------------------------------------------------------------------

def cmd_t4(args: argparse.Namespace) -> int:
    work, checkout = setup(args, args.divisor or DIVISOR_260K)
    code = snapshot_code(work / "code")
    print(f"code under test: {code.label}; pytest_llmperf imported from {check_import(code, work)}", flush=True)
    bench = Bench(work, code, checkout, args.select or SELECT_260K, new_options=True)
    sessions = []
    t0 = time.perf_counter()
    with cpu_load(not args.no_load):
        for i in range(args.sessions):
            # R saves the baseline (the reference starts there: auto pairs with R's commit); U (R's code
            # at another commit, as a nightly checkout moves on) until the swap, then S
            label = "R" if i == 0 else ("U" if i < args.swap else "S")
            extra = ["--llmperf-history-append", *args.extra]
            if i == 0:
                extra.append("--llmperf-save-baseline")
            s = bench.run(label, extra, tag=f"night{i}")
            sessions.append(s)
            progress(i + 1, args.sessions, s, t0)
    print()
    print(f"=== target 4: {args.sessions} appending sessions, R at 0 (saves), U for 1..{args.swap - 1}, "
          f"S from index {args.swap} ===")
    hist_args = ["--history-dir", str(bench.hist)] if has_option(code, "--llmperf-history-dir") else []
    cmd = [sys.executable, "-m", "pytest_llmperf.cli", "history", "--node", "gatebench",
           "--baseline-dir", str(bench.base), *hist_args, "--json"]
    print("$ " + " ".join(cmd))
    out = subprocess.run(cmd, cwd=code.root, capture_output=True, text=True, env=session_env(code))
    print(f"exit {out.returncode}; stderr: {out.stderr.strip()[-1000:]}")
    try:
        found: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        found = {"error": (out.stdout + out.stderr)[-3000:]}
        print(found["error"])
    hits = 0
    total = 0
    unfit = []
    for test in found.get("tests", []):
        for m in test["metrics"]:
            if m["metric"] != "tok_per_s":
                continue
            row = test["nodeid"].rsplit("[", 1)[-1].rstrip("]")
            if m["newest"]["status"] == "oversubscribed" and not m["change_points"]:
                unfit.append(row)
                print(f"{row:26s} oversubscribed: its nights are left out of the series (series {m['series']}, "
                      f"{m['nights']} nights)")
                continue
            total += 1
            cps = [(c["index"], c["kind"], c["change"]) for c in m["change_points"]]
            hit = any(i == args.swap for i, _, _ in cps)
            hits += hit
            trend = m["trend"]
            print(f"{row:26s} {m['series']:8s} nights {m['nights']:2d} change points "
                  + (", ".join(f"index {i} ({k}) {c * 100:+.1f}%" for i, k, c in cps) or "none")
                  + (f"; trend {trend['slope'] * 100:+.2f}%/night over {trend['nights']}" if trend else "")
                  + ("  <- found at the swap" if hit else ""))
    print(f"  {'PASS' if total and hits == total else 'FAIL'}  change point at index {args.swap} "
          f"(the first S session) in {hits}/{total} rows' tok_per_s"
          + (f" ({len(unfit)} oversubscribed rows left out: {', '.join(unfit)})" if unfit else ""))
    write_json(OUT / "gate_t4.json", {"code": code.label, "shas": checkout.shas, "divisor": checkout.divisor,
                                      "swap": args.swap, "sessions": [s.to_json() for s in sessions],
                                      "history_cli": found})
    return 0


def logged_sessions(workdir: Path, log: str) -> list[tuple[str, Session]]:
    """The sessions of a run's work dir: json/sessions.jsonl, or for a run started before that log
    existed, its progress log with the session JSON files."""
    import re

    from _common import load_sessions, row_id

    jdir = workdir / "json"
    if (jdir / "sessions.jsonl").exists():
        return load_sessions(jdir)
    lines = re.findall(r"\[\s*(\d+)/\d+\] (\S+)\s+exit (\d+)\s+([\d.]+) s", Path(log).read_text())
    files = sorted(f for f in jdir.glob("*.json") if not f.name.startswith("001-"))
    out = []
    for f, (_, label, rc, wall) in zip(files, lines[1:], strict=False):
        data = json.loads(f.read_text())
        vs = {row_id(v["test"]): v for v in data.get("verdicts", []) if v.get("metric") == "tok_per_s"}
        out.append((f.name, Session(label, int(rc), float(wall), vs)))
    return out


def cmd_summarize(args: argparse.Namespace) -> int:
    """Tables of (killed or finished) runs from their work dirs, side by side: one column pair per
    work dir and session tag (``llmperf-gate-<cmd>-*/json/NNN-<tag>-<label>.json``)."""
    groups: dict[str, dict[str, list[Session]]] = {}
    logs = args.log or []
    for k, workdir in enumerate(args.workdirs):
        wd = Path(workdir)
        cmd = wd.name.removeprefix("llmperf-gate-")  # <cmd>-<random>: two runs of one cmd stay apart
        for name, s in logged_sessions(wd, logs[k] if k < len(logs) else ""):
            tag = name[4:-5].rsplit("-", 1)[0]  # NNN-<tag>-<label>.json
            if tag.startswith(("night", "save")):
                continue
            groups.setdefault(f"{cmd}/{tag}", {}).setdefault(s.label, []).append(s)
    print(f"=== {', '.join(args.workdirs)}: {sum(len(v) for g in groups.values() for v in g.values())} sessions ===")
    print(side_by_side(groups))
    checks = []
    for tag, g in groups.items():
        checks += gate_checks(tag, g.get("U", []), g.get("S", []), ok_frac=0.9 if tag.startswith("t1") else None)
    ok = print_checks(checks)
    if args.out:
        write_json(Path(args.out), {"workdirs": args.workdirs, "groups": {k: doc_of(v) for k, v in groups.items()}})
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("slowdown", "t1-old", "t1-new", "t2", "t4"):
        p = sub.add_parser(name)
        p.add_argument("--no-load", action="store_true", help="no CPU-heavy neighbour")
        p.add_argument("--divisor", default="", help="slowed build: rows/D (mat_vec + rows/D of its rows), "
                                                      "stream/D (mat_vec + 1/D of its bytes read from a cold buffer), "
                                                      "spin/N (mat_vec + N integer steps) or forward/K (every K-th "
                                                      "position's forward pass twice)")
        p.add_argument("--extra", action="append", default=[], help="extra pytest argument (repeatable)")
        p.add_argument("--select", default="", help="-k expression instead of the target's")
        if name == "slowdown":
            p.add_argument("--model", default="stories260K")
            p.add_argument("--divisors", default="rows/4,rows/6", help="slowings, comma-separated (see --divisor)")
            p.add_argument("--pairs", type=int, default=60)
            p.add_argument("--flags", default="-O3")
        if name in ("t1-old", "t1-new"):
            p.add_argument("--runs", type=int, default=20)
            p.add_argument("--old-tree", default="/tmp/f-old")
            p.add_argument("--ref", default="R", help="t1-new: --llmperf-llama2c-ref (R: the sha of R; off: the probe)")
        if name == "t2":
            p.add_argument("--runs", type=int, default=20)
            p.add_argument("--nights", type=int, default=5)
            p.add_argument("--modes", default="paired,history:5,saved")
        if name == "t4":
            p.add_argument("--sessions", type=int, default=12)
            p.add_argument("--swap", type=int, default=8)
    p = sub.add_parser("summarize")
    p.add_argument("workdirs", nargs="+")
    p.add_argument("--log", action="append", help="progress log of a work dir without sessions.jsonl (in order)")
    p.add_argument("--out", default="")
    args = ap.parse_args()
    if args.cmd == "summarize":
        return cmd_summarize(args)
    return {"slowdown": cmd_slowdown, "t1-old": cmd_t1, "t1-new": cmd_t1, "t2": cmd_t2, "t4": cmd_t4}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
