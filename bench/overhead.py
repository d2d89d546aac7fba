#!/usr/bin/env python
"""Overhead of loading pytest-llmperf in a session that has no benchmark tests.

Target: a session with the plugin loaded and no llmperf tests is within 50 ms of the same session
with ``-p no:llmperf`` (and its feature plugins off: ``-p no:llmperf-llama2c`` ...). A temporary project holds ``--tests`` trivial tests (none uses llmperf);
``python -m pytest -q -p no:cacheprovider`` is timed with and without ``-p no:llmperf``,
alternating, ``--runs`` times each. A second comparison disables the other installed pytest plugins
(hypothesis, xdist, benchmark...) in both sessions: they cost seconds and add noise. Also
reported: child CPU time, the cumulative import time of
``pytest_llmperf.plugin`` (``python -X importtime``) and whether importing it pulls in torch.

    python bench/overhead.py [--runs 20] [--tests 50] [--out bench/out/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_MS = 50.0


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    # a user's Python caches compiled modules; pytest's own were compiled when pip installed them,
    # the plugin's (an editable install) are compiled on first import: let Python keep them, or
    # every session here would pay for compiling the plugin's source and nothing else's
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def make_project(root: Path, n_tests: int) -> None:
    (root / "pytest.ini").write_text("[pytest]\n")
    lines = ["import sys", ""]
    for i in range(n_tests):
        lines += [f"def test_trivial_{i}():", f"    assert {i} + 1 == {i + 1}", ""]
    # a session-level check that the plugin did not drag torch in (true in both sessions otherwise)
    lines += ["def test_no_torch_imported():", "    assert 'torch' not in sys.modules", ""]
    (root / "test_trivial.py").write_text("\n".join(lines))


def other_plugins() -> list[str]:
    """``-p no:NAME`` for every installed pytest11 entry point other than llmperf."""
    from importlib.metadata import entry_points

    names = sorted({ep.name for ep in entry_points(group="pytest11")} - {"llmperf"})
    return [arg for name in names for arg in ("-p", f"no:{name}")]


def time_session(root: Path, with_plugin: bool, extra: list[str]) -> tuple[float, float, int, str]:
    """(wall s, child CPU s (user+sys), exit code, output) of one pytest session."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    if not with_plugin:
        # the core and its three feature plugins
        cmd += ["-p", "no:llmperf", "-p", "no:llmperf-llama2c", "-p", "no:llmperf-torch", "-p", "no:llmperf-profilers"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=clean_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, proc.returncode, proc.stdout + proc.stderr


def compare_sessions(root: Path, runs: int, extra: list[str], label: str) -> dict | None:
    for with_plugin in (True, False):  # warm the OS file cache; not counted
        _, _, rc, out = time_session(root, with_plugin, extra)
        if rc != 0:
            print(f"session {'with' if with_plugin else 'without'} the plugin failed (rc {rc}):\n{out[-3000:]}")
            return None
    res: dict = {"label": label, "extra_args": extra, "on_ms": [], "off_ms": [], "on_cpu_ms": [], "off_cpu_ms": []}
    for i in range(runs):
        order = (True, False) if i % 2 == 0 else (False, True)
        for with_plugin in order:
            wall, cpu, rc, out = time_session(root, with_plugin, extra)
            if rc != 0:
                print(f"session failed (rc {rc}):\n{out[-3000:]}")
                return None
            key = "on" if with_plugin else "off"
            res[f"{key}_ms"].append(wall * 1000)
            res[f"{key}_cpu_ms"].append(cpu * 1000)
        print(f"[{label}] [{i + 1:2d}/{runs}] with plugin {res['on_ms'][-1]:7.1f} ms | "
              f"-p no:llmperf {res['off_ms'][-1]:7.1f} ms", flush=True)
    res["difference_of_medians_ms"] = statistics.median(res["on_ms"]) - statistics.median(res["off_ms"])
    res["median_paired_difference_ms"] = statistics.median(a - b for a, b in zip(res["on_ms"], res["off_ms"]))
    res["cpu_difference_of_medians_ms"] = statistics.median(res["on_cpu_ms"]) - statistics.median(res["off_cpu_ms"])
    return res


def print_sessions(res: dict, n_tests: int) -> None:
    on, off = res["on_ms"], res["off_ms"]
    extra = " ".join(res["extra_args"]) or "(none)"
    print(f"--- {res['label']}: extra args {extra}")
    print(f"{'session':<16} {'median ms':>10} {'mean ms':>10} {'min ms':>10} {'median CPU ms':>14}")
    print(f"{'with llmperf':<16} {statistics.median(on):>10.1f} {statistics.fmean(on):>10.1f} {min(on):>10.1f} "
          f"{statistics.median(res['on_cpu_ms']):>14.1f}")
    print(f"{'-p no:llmperf':<16} {statistics.median(off):>10.1f} {statistics.fmean(off):>10.1f} {min(off):>10.1f} "
          f"{statistics.median(res['off_cpu_ms']):>14.1f}")
    print(f"difference of medians: {res['difference_of_medians_ms']:+.1f} ms wall "
          f"({res['cpu_difference_of_medians_ms']:+.1f} ms CPU); median of paired differences: "
          f"{res['median_paired_difference_ms']:+.1f} ms; difference of means: "
          f"{statistics.fmean(on) - statistics.fmean(off):+.1f} ms; difference of minima: {min(on) - min(off):+.1f} ms")


def import_time_us(module: str = "pytest_llmperf.plugin", reps: int = 5,
                   pre: str = "") -> tuple[list[int], list[int], str]:
    """(cumulative us per rep, self us per rep, the importtime lines of the package of one rep);
    ``pre`` is imported first (e.g. pytest, which a session has imported before the plugin)."""
    cums, selfs, lines_kept = [], [], ""
    code = (f"import {pre}; " if pre else "") + f"import {module}"
    for _ in range(reps):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                              env=clean_env(), capture_output=True, text=True)
        found = None
        kept = []
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:"):
                continue
            parts = line[len("import time:"):].split("|")
            if len(parts) != 3:
                continue
            name = parts[2].strip()
            if name.startswith("pytest_llmperf"):
                kept.append(line)
            if name == module:
                try:
                    found = (int(parts[0].strip()), int(parts[1].strip()))
                except ValueError:
                    pass
        if found is None:
            raise RuntimeError(f"no importtime line for {module}:\n{proc.stderr[-2000:]}")
        selfs.append(found[0])
        cums.append(found[1])
        lines_kept = "\n".join(kept)
    return cums, selfs, lines_kept


def torch_after_import(module: str = "pytest_llmperf.plugin") -> tuple[bool, bool]:
    """(torch in sys.modules after importing the plugin, torch importable at all)."""
    code = (f"import importlib.util, sys; import {module}; "
            "print('torch' in sys.modules, importlib.util.find_spec('torch') is not None)")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    loaded, available = out.stdout.split()
    return loaded == "True", available == "True"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="sessions of each kind (default 20)")
    ap.add_argument("--tests", type=int, default=50, help="trivial tests in the project (default 50)")
    ap.add_argument("--out", default=str(HERE / "out" / "overhead.json"))
    ap.add_argument("--no-quiet", action="store_true",
                    help="skip the second comparison with the other installed pytest plugins disabled")
    opts = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="llmperf-overhead-") as tmp:
        root = Path(tmp)
        make_project(root, opts.tests)
        main_res = compare_sessions(root, opts.runs, [], "as specified")
        if main_res is None:
            return 2
        quiet_res = None
        if not opts.no_quiet and other_plugins():
            quiet_res = compare_sessions(root, opts.runs, other_plugins(), "other plugins off")

    cums, selfs, lines = import_time_us()
    cums_p, _selfs_p, lines_p = import_time_us(pre="pytest")
    torch_loaded, torch_available = torch_after_import()
    med_diff = main_res["difference_of_medians_ms"]

    print()
    print(f"=== session overhead: {opts.tests + 1} trivial tests, {opts.runs} alternating sessions each ===")
    print_sessions(main_res, opts.tests)
    if quiet_res:
        print_sessions(quiet_res, opts.tests)
    print()
    print(f"import pytest_llmperf.plugin alone (python -X importtime, {len(cums)} processes): cumulative "
          f"median {statistics.median(cums) / 1000:.1f} ms (min {min(cums) / 1000:.1f}, max {max(cums) / 1000:.1f}); "
          f"self median {statistics.median(selfs) / 1000:.2f} ms  [includes importing pytest itself]")
    print(f"import pytest_llmperf.plugin after 'import pytest' (as in a session): cumulative median "
          f"{statistics.median(cums_p) / 1000:.1f} ms (min {min(cums_p) / 1000:.1f}, max {max(cums_p) / 1000:.1f})")
    print("  importtime lines of the package after 'import pytest' (self us | cumulative us | module):")
    for line in lines_p.splitlines():
        print("   " + line)
    print(f"torch in sys.modules after importing the plugin: {torch_loaded} "
          f"(torch {'is' if torch_available else 'is NOT'} installed here"
          f"{'' if torch_available else ', so this check is trivially true'})")
    print()
    ok_session = med_diff <= TARGET_MS
    print(f"{'PASS' if ok_session else 'FAIL'}  session overhead (difference of medians, as specified) "
          f"{med_diff:+.1f} ms <= {TARGET_MS:.0f} ms")
    if quiet_res:
        q = quiet_res["difference_of_medians_ms"]
        print(f"{'PASS' if q <= TARGET_MS else 'FAIL'}  (info) same with the other pytest plugins off: {q:+.1f} ms")
    print(f"{'PASS' if not torch_loaded else 'FAIL'}  torch not imported by the plugin module")

    out_path = Path(opts.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({
        "tests": opts.tests + 1, "runs": opts.runs, "sessions": main_res, "sessions_other_plugins_off": quiet_res,
        "import_cumulative_us": cums, "import_self_us": selfs, "importtime_lines": lines,
        "import_after_pytest_cumulative_us": cums_p, "importtime_lines_after_pytest": lines_p,
        "torch_loaded": torch_loaded, "torch_available": torch_available, "target_ms": TARGET_MS,
    }, indent=1))
    print(f"raw results: {out_path}")
    return 0 if ok_session and not torch_loaded else 1


if __name__ == "__main__":
    sys.exit(main())
