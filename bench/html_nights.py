#!/usr/bin/env python
"""The HTML report of a real history: ``--nights`` sessions of the default suites (``pytest
suites/``), one after another on this machine, then the report over that history and the last
night's run JSON; its size, the time to generate it and the time headless Chromium takes to
render it, and a screenshot.

Night 1 saves the baseline and starts the history; every later night compares against the
history (``--llmperf-baseline=history``) and appends to it. The sessions run back to back, so
each one's history lines are dated one night apart afterwards (``--start``, 02:00 UTC, one day
per session): the report draws one point per run either way, and the dates only label the axis.
``--time-scale`` shortens every budget (0.1 by default: about 1.5 min a session here); the
results are real runs of the real suites, only fewer rounds each.

    python bench/html_nights.py [--nights 30] [--time-scale 0.1] [--out bench/out/nights]

Writes ``OUT/history`` (the node's history), ``OUT/runs/night-NN.json``, ``OUT/logs/``,
``OUT/report.html`` and ``OUT/report.png``; re-running with ``--report-only`` renders the report
again from what is there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

NODE = "nights"


def session(out: Path, night: int, scale: float) -> tuple[int, float]:
    """Run one night of ``pytest suites/``; (exit status, wall seconds)."""
    argv = [sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:cacheprovider", f"--llmperf-node={NODE}",
            f"--llmperf-baseline-dir={out / 'baselines'}", f"--llmperf-history-dir={out / 'history'}",
            f"--llmperf-time-scale={scale:g}", f"--llmperf-json={out / 'runs' / f'night-{night:02d}.json'}",
            "--llmperf-history-append"]
    argv += ["--llmperf-save-baseline"] if night == 1 else ["--llmperf-baseline=history"]
    log = out / "logs" / f"night-{night:02d}.log"
    t0 = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        code = subprocess.run(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "COLUMNS": "100"}).returncode
    return code, time.perf_counter() - t0


def restamp(history_dir: Path, start: datetime) -> int:
    """Date each run of the history one night after the one before (in the order the runs were
    made), keeping every other field; returns the number of runs. Each file is rewritten whole
    through a temporary file (this is a bench directory, not a live history)."""
    from pytest_llmperf.history_lines import TIME_FORMAT

    files = sorted((history_dir / NODE).glob("**/*.jsonl"))
    runs: dict[str, str] = {}
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            data = json.loads(line)
            if data.get("kind") == "run":
                runs.setdefault(data["run"], data["time"])
    order = sorted(runs, key=lambda r: runs[r])
    when = {run: (start + timedelta(days=i)).strftime(TIME_FORMAT) for i, run in enumerate(order)}
    for path in files:
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            data = json.loads(line)
            if data.get("kind") == "run":
                line = line.replace(f'"time":"{data["time"]}"', f'"time":"{when[data["run"]]}"')
            out.append(line + "\n")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(out), encoding="utf-8")
        tmp.replace(path)
    return len(order)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-headless-shell")


def render_in_browser(binary: str, page: Path, shot: Path, profile: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={shot}",
                           "--window-size=1280,2400", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t0, done.stderr


def report(out: Path, repeat: int) -> None:
    """``pytest-llmperf report`` over the history and the last night's run JSON, in this process
    (cli.main: reading, rendering and writing; no interpreter start), timed; then Chromium."""
    import contextlib
    import io

    from pytest_llmperf import cli

    runs = sorted((out / "runs").glob("night-*.json"))
    last = runs[-1]
    target = out / "report.html"
    argv = ["report", f"--baseline-dir={out / 'baselines'}", f"--history-dir={out / 'history'}",
            "--nights=10", str(last), "-o", str(target)]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as said:
            code = cli.main(argv)
        times.append(time.perf_counter() - t0)
        if code != 0:
            raise SystemExit(f"pytest-llmperf {' '.join(argv)}: exit {code}")
    page = target.read_text(encoding="utf-8")
    run = json.loads(last.read_text(encoding="utf-8"))
    cards = {s: page.count(f'class="card {s}"') for s in ("regressed", "noisy", "improved", "ok", "info")}
    markers = page.count('class="cp"')
    print(f"pytest-llmperf report {last.name} over {len(runs)} nights: {len(run.get('tests', []))} tests; "
          f"{statistics.median(times):.3f} s (median of {repeat}: {', '.join(f'{t:.3f}' for t in times)}); "
          f"{len(page.encode('utf-8')):,} bytes; {markers} change-point markers; cards: "
          + ", ".join(f"{s} {n}" for s, n in cards.items()) + f"; said: {said.getvalue().strip()}")
    binary = chromium()
    if binary is None:
        print("chromium not installed: no browser timing (apt-get install chromium)")
        return
    walls = []
    stderr = ""
    for i in range(repeat):
        wall, stderr = render_in_browser(binary, target, out / "report.png", out / f"profile{i}")
        walls.append(wall)
        shutil.rmtree(out / f"profile{i}", ignore_errors=True)
    errors = [line for line in stderr.splitlines() if "CONSOLE" in line or "ERR_" in line]
    print(f"chromium --headless --screenshot (1280x2400): {statistics.median(walls):.2f} s wall "
          f"(median of {repeat}: {', '.join(f'{w:.2f}' for w in walls)}); console errors: {len(errors)}; "
          f"screenshot {out / 'report.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "nights")
    parser.add_argument("--start", default="2026-11-02", help="the first night's date (YYYY-MM-DD)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    out = args.out.resolve()
    if not args.report_only:
        if out.exists():
            shutil.rmtree(out)
        for sub in ("runs", "logs", "history", "baselines"):
            (out / sub).mkdir(parents=True)
        for night in range(1, args.nights + 1):
            code, wall = session(out, night, args.time_scale)
            print(f"night {night:2d}: exit {code}, {wall:.0f} s", flush=True)
        start = datetime.strptime(args.start, "%Y-%m-%d").replace(hour=2, tzinfo=timezone.utc)
        print(f"restamped {restamp(out / 'history', start)} runs one night apart from {args.start}")
    report(out, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
