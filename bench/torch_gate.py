"""Gate quality of the torch suites on this machine: false alarms on an unchanged workload, and
catches of a slowed one.

A baseline is saved for two tests, the transformer suite's mini forward+backward (fp32,
context 128) and the decode suite's eager variant (the default stories15M shape). Then ``--runs``
compare runs of the unchanged workload and of a slowed one alternate. The slowed workload runs
every training step (every one-token decode step) and then sleeps for ``--slow`` (default 15%) of
the time it took: a regression of that size in wall time, which the machine-speed probe must not
explain away (a sleep does not slow the probe). An alarm is pytest exiting non-zero.

    python bench/torch_gate.py --runs 6

Every run's output goes to bench/out/torch_gate-<time>.log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ["suites/test_transformer.py::test_transformer[mini-fwdbwd-fp32-ctx128]",
         "suites/test_decode.py::test_decode[eager]"]

# a plugin loaded with -p: when LLMPERF_BENCH_SLOW is set, each training step and each one-token
# decode step is followed by a sleep of that fraction of its own duration
SLOWER = textwrap.dedent('''
    import os, time
    import pytest

    FRACTION = float(os.environ.get("LLMPERF_BENCH_SLOW", "0") or 0)

    def _slowed(fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            time.sleep(FRACTION * (time.perf_counter() - t0))
            return out
        return wrapper

    @pytest.fixture(autouse=True)
    def _slow_down(monkeypatch):
        if not FRACTION:
            return
        import pytest_llmperf.torch_models.transformer as tr
        import pytest_llmperf.torch_models.generate as gen

        real_make_step = tr.make_step

        def make_step(*a, **k):
            step = real_make_step(*a, **k)
            return _slowed(step)

        monkeypatch.setattr(tr, "make_step", make_step)
        monkeypatch.setattr(gen, "decode_one_token", _slowed(gen.decode_one_token))
''')


def run(out: Path, plugin_dir: Path, extra: list[str], slow: float, log) -> tuple[int, dict]:
    report = out / "r.json"
    env = dict(os.environ, PYTHONPATH=str(plugin_dir), LLMPERF_BENCH_SLOW=str(slow))
    cmd = [sys.executable, "-m", "pytest", *TESTS, "-p", "no:cacheprovider", "-p", "llmperf_bench_slower", "-q",
           f"--llmperf-baseline-dir={out / 'baselines'}", "--llmperf-node=gate", f"--llmperf-json={report}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    log.write(f"$ LLMPERF_BENCH_SLOW={slow} {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    log.flush()
    verdicts = {}
    if report.exists():
        for v in json.loads(report.read_text())["verdicts"]:
            if v["metric"] in ("ms_per_step", "decode_tok_per_s"):
                verdicts[v["test"].split("[", 1)[1].rstrip("]")] = (v["status"], v.get("change"), v.get("raw_change"))
        report.unlink()
    return proc.returncode, verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--slow", type=float, default=0.15)
    ap.add_argument("--extra", default="", help="extra pytest options (one string)")
    args = ap.parse_args()
    extra = args.extra.split()
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    log_path = REPO / "bench" / "out" / f"torch_gate-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with tempfile.TemporaryDirectory() as tmp, open(log_path, "w") as log:
        out = Path(tmp)
        plugin_dir = out / "plugins"
        plugin_dir.mkdir()
        (plugin_dir / "llmperf_bench_slower.py").write_text(SLOWER)
        rc, _ = run(out, plugin_dir, extra + ["--llmperf-save-baseline"], 0.0, log)
        print(f"baseline saved (exit {rc})", flush=True)
        if rc != 0:
            print(f"saving the baseline failed; see {log_path}")
            return 1
        rows = {"unchanged": [], "slowed": []}
        for i in range(args.runs):
            for name, slow in (("unchanged", 0.0), ("slowed", args.slow)):
                rc, verdicts = run(out, plugin_dir, extra, slow, log)
                rows[name].append((rc, verdicts))
                cells = ", ".join(f"{t} {s} {c:+.1%} (raw {r:+.1%})" if c is not None else f"{t} {s}"
                                  for t, (s, c, r) in verdicts.items())
                print(f"run {i + 1} {name:9s} exit {rc}: {cells}", flush=True)
        print()
        for name, results in rows.items():
            alarms = sum(1 for rc, _ in results if rc != 0)
            print(f"{name:9s} alarms {alarms}/{len(results)}")
            tests = sorted({t for _, v in results for t in v})
            for t in tests:
                statuses: dict[str, int] = {}
                changes = []
                for _, v in results:
                    if t in v:
                        statuses[v[t][0]] = statuses.get(v[t][0], 0) + 1
                        if v[t][1] is not None:
                            changes.append(v[t][1])
                changes.sort()
                span = (f"{changes[0]:+.1%}/{changes[len(changes) // 2]:+.1%}/{changes[-1]:+.1%}"
                        if changes else "-")
                print(f"    {t:28s} {statuses}  change min/median/max {span}")
    print(f"log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
