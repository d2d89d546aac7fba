"""What the issue-13 gate scripts share (bench/gate_llama2c.py, bench/gate_history.py): a CPU-heavy
load for the whole measurement, a git checkout of run.c with a reference, an unchanged and a slowed
commit, a frozen copy of the plugin, real pytest sessions and their verdicts, and the tables.

Not a test helper: the scripts are run by hand (``python bench/gate_llama2c.py t1-old``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))

from llama2c_gate import slowed_source, wrap_mat_vec  # noqa: E402  (the slowed run.c: a second mat_vec over rows / 5)

STATUSES = ("ok", "noisy", "regressed", "improved")


# -- a CPU-heavy neighbour ---------------------------------------------------------------------------

@contextlib.contextmanager
def cpu_load(enabled: bool = True) -> Iterator[int | None]:
    """``python3 -c "while True: pass"`` for the whole block (the brief's "another CPU-heavy process"),
    killed by its pid at the end; yields the pid (None when disabled)."""
    if not enabled:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    print(f"CPU load: pid {proc.pid} running `python3 -c \"while True: pass\"` for the whole measurement",
          flush=True)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        print(f"CPU load: pid {proc.pid} killed", flush=True)


# -- the run.c checkout: R (reference night), U (R + a comment), S (R slowed) -------------------------

STREAM_WRAPPER = """
/* the slowed build's cold reads: a buffer as large as a model, read round-robin, rows / {divisor} of
   every product's bytes after it (memory traffic, which a memory-bound model feels and a repeat of
   rows just read, still in the cache, does not) */
#define LLMPERF_COLD_WORDS ((size_t)1 << 24) /* 64 MiB */
static uint32_t *llmperf_cold;
static size_t llmperf_cold_at;
uint32_t llmperf_bench_sink; /* external linkage: the sums cannot be dropped */
static void {name}(float *out, const float *in, const float *mat, int cols, int rows) {{
    {name}_base(out, in, mat, cols, rows);
    if (!llmperf_cold) {{
        llmperf_cold = malloc(LLMPERF_COLD_WORDS * sizeof(uint32_t));
        if (!llmperf_cold) abort();
        for (size_t i = 0; i < LLMPERF_COLD_WORDS; i++) llmperf_cold[i] = (uint32_t)i; /* real pages */
    }}
    size_t left = (size_t)cols * (size_t)(rows / {divisor});
    uint32_t sum = 0;
    while (left > 0) {{
        size_t n = LLMPERF_COLD_WORDS - llmperf_cold_at < left ? LLMPERF_COLD_WORDS - llmperf_cold_at : left;
        const uint32_t *p = llmperf_cold + llmperf_cold_at;
        for (size_t i = 0; i < n; i++) sum += p[i];
        left -= n;
        llmperf_cold_at = (llmperf_cold_at + n) % LLMPERF_COLD_WORDS;
    }}
    llmperf_bench_sink += sum;
}}
"""


SPIN_WRAPPER = """
/* the slowed build's extra compute: {divisor} steps of a dependent 64-bit LCG after every product
   (about 4 cycles a step, whatever the memory does) */
uint64_t llmperf_bench_spin = 1; /* external linkage: the loop cannot be dropped */
static void {name}(float *out, const float *in, const float *mat, int cols, int rows) {{
    {name}_base(out, in, mat, cols, rows);
    uint64_t x = llmperf_bench_spin;
    for (int i = 0; i < {divisor}; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    llmperf_bench_spin = x;
}}
"""


def slowed_run_c(text: str, slowing: str | int) -> str:
    """run.c slowed by ``slowing``: ``rows/D`` (an int D alone means this) makes every mat_vec
    followed by a second one over ``rows / D`` of its rows (bench/llama2c_gate.py's build, whose D is
    5): compute, which a model whose weights stay in the cache feels (stories260K); ``stream/D``
    makes every mat_vec followed by a read of ``1/D`` of its weights' bytes from a cold 64 MiB
    buffer: memory traffic, which a memory-bound model feels (stories15M: a repeat of rows just read
    costs it nothing measurable, see ``slowdown``); ``spin/N`` makes every mat_vec followed by N
    steps of a dependent integer loop: a fixed time per product, whatever the memory does (measured:
    the slowdown of rows/D and stream/D on stories15M changes with the machine's load, from none to
    7%); ``forward/K`` runs the forward pass of every K-th position twice (the same token at the
    same position: the same output, the same cache entries): 1/K more of exactly the model's own
    work, reads and compute alike, so the slowdown is K/(K+1) in tok/s whatever state the machine is
    in (measured on stories15M: spin/N's relative cost moved from -3.5% to -33% with the machine's
    state within an hour, being a fixed time next to a memory-bound step whose time moves)."""
    kind, divisor = parse_slowing(slowing)
    if kind == "forward":
        return repeat_forward(text, divisor)
    if kind in ("stream", "spin"):
        wrapper = STREAM_WRAPPER if kind == "stream" else SPIN_WRAPPER
        return wrap_mat_vec(text, wrapper.format(name="mat_vec", divisor=divisor))
    slow = slowed_source(text)
    if slow.count("rows / 5)") != 1:
        raise SystemExit("bench/llama2c_gate.py's slowed build changed: cannot set the row fraction")
    return slow.replace("rows / 5)", f"rows / {divisor})")


FORWARD_CALL = "        else\n            forward(&model, token, pos);\n"


def repeat_forward(text: str, every: int) -> str:
    """run.c whose float forward pass runs twice at every position ``pos`` with ``pos % every ==
    every - 1`` (``forward/K`` of :func:`slowed_run_c`). The call stays one call site, in a loop of
    one or two trips: two call sites stop gcc from inlining ``forward`` into ``main``, and that
    alone made refrun.c 15% faster on stories15M here (65 against 56 tok/s, -O3), more than the
    slowing it was meant to add."""
    if text.count(FORWARD_CALL) != 1:
        raise SystemExit("refrun.c's generation loop changed: cannot repeat its forward pass")
    twice = ("        else\n"
             f"            for (int again = 0; again <= (pos % {every} == {every - 1}); again++)\n"
             "                forward(&model, token, pos);\n")
    return text.replace(FORWARD_CALL, twice)


def parse_slowing(slowing: str | int) -> tuple[str, int]:
    """(kind, D) of a slowing spec ``rows/D``, ``stream/D``, ``spin/N``, ``forward/K`` or a bare D (rows)."""
    text = str(slowing)
    kind, _, num = text.rpartition("/")
    kind = kind or "rows"
    if kind not in ("rows", "stream", "spin", "forward") or not num.isdigit() or int(num) < 1:
        raise SystemExit(f"slowing {text!r}: expected rows/D, stream/D, spin/N or forward/K with a positive integer")
    return kind, int(num)


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} in {repo}: {out.stderr.strip()}")
    return out.stdout.strip()


@dataclass
class Checkout:
    """A git repository of run.c with commits R, U, S; ``r`` is the repository itself (checked out at R),
    ``u`` and ``s`` are worktrees of U and S side by side."""

    repo: Path
    shas: dict[str, str]
    divisor: str  # the slowing of S: rows/D or stream/D (slowed_run_c)

    @property
    def r(self) -> Path:
        return self.repo

    @property
    def u(self) -> Path:
        return self.repo.parent / "wt-U"

    @property
    def s(self) -> Path:
        return self.repo.parent / "wt-S"

    def path(self, label: str) -> Path:
        return {"R": self.r, "U": self.u, "S": self.s}[label]


def make_checkout(work: Path, refrun_text: str, divisor: str | int) -> Checkout:
    repo = work / "llama2c"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    shas = {}
    (repo / "run.c").write_text(refrun_text)
    _git(repo, "add", "run.c")
    _git(repo, "commit", "-q", "-m", "R: the reference night (pytest_llmperf/llama2c/refrun.c)")
    shas["R"] = _git(repo, "rev-parse", "HEAD")
    (repo / "run.c").write_text("/* tonight's unchanged build: a comment only */\n" + refrun_text)
    _git(repo, "commit", "-q", "-am", "U: a comment, code unchanged")
    shas["U"] = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", shas["R"], "--", "run.c")
    (repo / "run.c").write_text(slowed_run_c(refrun_text, divisor))
    _git(repo, "commit", "-q", "-am", f"S: every mat_vec slowed by {divisor}")
    shas["S"] = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach", shas["R"])
    _git(repo, "worktree", "add", "-q", "--detach", str(work / "wt-U"), shas["U"])
    _git(repo, "worktree", "add", "-q", "--detach", str(work / "wt-S"), shas["S"])
    return Checkout(repo, shas, str(divisor))


# -- the code under test: a frozen copy, or an old commit's worktree ----------------------------------

@dataclass
class Code:
    """Where the sessions run: ``root`` holds pytest_llmperf/ and suites/ (first on PYTHONPATH)."""

    root: Path
    label: str

    @property
    def suite(self) -> Path:
        return self.root / "suites" / "test_llama2c.py"


def snapshot_code(dest: Path) -> Code:
    """Copy the working tree's package, suites and config, so that the others' edits during a long
    run do not change the code under test half-way."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pytest_llmperf", "suites"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy(ROOT / name, dest / name)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    return Code(dest, f"working tree of /work/main at {head} (+ uncommitted), copied to {dest}")


def old_worktree(path: Path, rev: str) -> Code:
    """A worktree of /work/main at ``rev`` (today's mode); made when missing."""
    if not (path / "pytest_llmperf").is_dir():
        _git(ROOT, "worktree", "add", "-q", "--detach", str(path), rev)
    return Code(path, f"worktree {path} of /work/main at {rev}")


def session_env(code: Code, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMPERF_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(code.root), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def check_import(code: Code, work: Path) -> str:
    """pytest_llmperf.__file__ as a pytest session under ``code`` sees it (printed by a test)."""
    probe = work / "importcheck"
    probe.mkdir(exist_ok=True)
    (probe / "test_where.py").write_text(
        "import pytest_llmperf\n\ndef test_where():\n    print('PLUGIN_FILE', pytest_llmperf.__file__)\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(probe)],
                         cwd=code.root, env=session_env(code), capture_output=True, text=True)
    found = re.search(r"PLUGIN_FILE (\S+)", out.stdout)
    return found.group(1) if found else f"(not found: exit {out.returncode}) {out.stdout[-500:]}"


# -- sessions -----------------------------------------------------------------------------------------

@dataclass
class Session:
    """One pytest session: exit code, wall seconds, its verdicts of ``metric`` by test id."""

    label: str
    rc: int
    wall: float
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "rc": self.rc, "wall": self.wall, "verdicts": self.verdicts,
                "tail": self.tail}


def row_id(test: str) -> str:
    return test.split("[", 1)[1].rstrip("]") if "[" in test else test.rsplit("::", 1)[-1]


def run_session(code: Code, args: Sequence[str], json_out: Path, label: str, metric: str = "tok_per_s",
                cwd: Path | None = None, env: dict[str, str] | None = None) -> Session:
    """``python3 -m pytest ARGS --llmperf-json=JSON_OUT`` under ``code``; the verdicts of ``metric``."""
    if json_out.exists():
        json_out.unlink()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, f"--llmperf-json={json_out}"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd or code.root, env=env or session_env(code), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sess = Session(label, out.returncode, wall)
    try:
        data = json.loads(json_out.read_text())
    except (OSError, ValueError):
        data = {}
    for v in data.get("verdicts", []):
        if v.get("metric") == metric:
            sess.verdicts[row_id(v["test"])] = v
    if out.returncode not in (0, 1) or not sess.verdicts:
        sess.tail = "\n".join((out.stdout + out.stderr).rstrip().splitlines()[-25:])
    with (json_out.parent / "sessions.jsonl").open("a") as log:  # what `summarize` reads after a kill
        log.write(json.dumps({"json": json_out.name, **sess.to_json()}) + "\n")
    return sess


def load_sessions(json_dir: Path) -> list[tuple[str, Session]]:
    """(json file name, Session) of every session logged in ``json_dir/sessions.jsonl``, in order."""
    out = []
    for line in (json_dir / "sessions.jsonl").read_text().splitlines():
        d = json.loads(line)
        out.append((d["json"], Session(d["label"], d["rc"], d["wall"], d["verdicts"], d.get("tail", ""))))
    return out


def describe(sess: Session) -> str:
    parts = []
    for row, v in sess.verdicts.items():
        ch = v.get("change")
        parts.append(f"{row} {v['status']}" + (f" {ch * 100:+.1f}%" if ch is not None else ""))
    return "; ".join(parts)


def progress(i: int, total: int, sess: Session, t0: float) -> None:
    print(f"[{i:3d}/{total}] {sess.label:10s} exit {sess.rc} {sess.wall:6.1f} s  {describe(sess)}"
          f"  | t={time.perf_counter() - t0:.0f}s", flush=True)
    if sess.tail:
        print("    | " + sess.tail.replace("\n", "\n    | "), flush=True)


def interleave(labels: Sequence[str], runs: int) -> list[str]:
    """``runs`` sessions of each label, in an order that alternates which goes first (A B B A A B ...)."""
    order: list[str] = []
    for i in range(runs):
        order += list(labels) if i % 2 == 0 else list(reversed(labels))
    return order


# -- tables ---------------------------------------------------------------------------------------------

def counts(sessions: Sequence[Session], row: str) -> dict[str, int]:
    c = dict.fromkeys((*STATUSES, "other"), 0)
    for s in sessions:
        v = s.verdicts.get(row)
        status = v["status"] if v else "absent"
        c[status if status in c else "other"] += 1
    return c


def rows_of(sessions: Sequence[Session]) -> list[str]:
    seen: dict[str, None] = {}
    for s in sessions:
        for row in s.verdicts:
            seen.setdefault(row)
    return list(seen)


def references(sessions: Sequence[Session]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sessions:
        for v in s.verdicts.values():
            ref = str(v.get("reference", "saved(old)"))
            out[ref] = out.get(ref, 0) + 1
    return out


def median_change(sessions: Sequence[Session], row: str, key: str = "change") -> float | None:
    vals = [s.verdicts[row][key] for s in sessions if row in s.verdicts and s.verdicts[row].get(key) is not None]
    return statistics.median(vals) if vals else None


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def side_by_side(modes: dict[str, dict[str, list[Session]]], unchanged: str = "U", slowed: str = "S") -> str:
    """Per row and mode: U ok/noisy/regressed/improved (+other) and S regressed/noisy/ok/improved (+other),
    with the median change of each."""
    lines = []
    rows: list[str] = []
    for m in modes.values():
        for row in rows_of([*m.get(unchanged, []), *m.get(slowed, [])]):
            if row not in rows:
                rows.append(row)
    head = f"{'row':26s}"
    for name in modes:
        head += f" | {name + ': U ok/noisy/reg/impr/oth  med':38s} | {'S reg/noisy/ok/impr/oth  med':32s}"
    lines.append(head)
    lines.append("-" * len(head))
    for row in rows:
        line = f"{row:26s}"
        for m in modes.values():
            cu, cs = counts(m.get(unchanged, []), row), counts(m.get(slowed, []), row)
            u = f"{cu['ok']}/{cu['noisy']}/{cu['regressed']}/{cu['improved']}/{cu['other']}"
            s = f"{cs['regressed']}/{cs['noisy']}/{cs['ok']}/{cs['improved']}/{cs['other']}"
            line += (f" | {u:>26s} {pct(median_change(m.get(unchanged, []), row)):>11s}"
                     f" | {s:>20s} {pct(median_change(m.get(slowed, []), row)):>11s}")
        lines.append(line)
    for name, m in modes.items():
        for label in (unchanged, slowed):
            ss = m.get(label, [])
            if ss:
                alarms = sum(s.rc != 0 for s in ss)
                errors = sum(s.rc not in (0, 1) for s in ss)
                lines.append(f"{name} {label}: session exit != 0 in {alarms}/{len(ss)} (errors {errors}); "
                             f"mean wall {statistics.fmean(s.wall for s in ss):.1f} s; references {references(ss)}")
    return "\n".join(lines)


def gate_checks(name: str, unchanged: Sequence[Session], slowed: Sequence[Session], caught_frac: float = 0.9,
                ok_frac: float | None = 0.9) -> list[tuple[bool, str]]:
    """The issue's targets on one mode: 0 false regressions in any row; every slowed row regressed in
    >= caught_frac of the sessions and never improved; >= ok_frac of the unchanged rows ok."""
    import math

    checks: list[tuple[bool, str]] = []
    rows = rows_of([*unchanged, *slowed])
    false = {row: counts(unchanged, row)["regressed"] for row in rows}
    # a row oversubscribed in every session (more OpenMP threads than free CPUs) is not measurable
    # on this machine: it is shown, must never be a false regression, and is left out of the rest
    unfit = [row for row in rows if all(s.verdicts.get(row, {}).get("status") == "oversubscribed"
                                        for s in [*unchanged, *slowed] if row in s.verdicts)]
    for row in unfit:
        checks.append((True, f"{name}: {row} oversubscribed in all its sessions (its threads never got their "
                             f"CPUs): not decided, left out of the counts below"))
    rows = [row for row in rows if row not in unfit]
    checks.append((sum(false.values()) == 0,
                   f"{name}: 0 false regressions in any row: {sum(false.values())} "
                   f"({', '.join(f'{r} {n}' for r, n in false.items() if n) or 'none'})"))
    need = math.ceil(caught_frac * len(slowed))
    for row in rows:
        c = counts(slowed, row)
        checks.append((c["regressed"] >= need and c["improved"] == 0,
                       f"{name}: {row} slowed regressed {c['regressed']}/{len(slowed)} (need {need}), "
                       f"improved {c['improved']}"))
    if ok_frac is not None and unchanged:
        total = len(rows) * len(unchanged)
        ok = sum(counts(unchanged, row)["ok"] for row in rows)
        checks.append((ok >= ok_frac * total, f"{name}: unchanged rows ok {ok}/{total} "
                                             f"({ok / max(total, 1) * 100:.0f}%, need {ok_frac * 100:.0f}%)"))
    return checks


def print_checks(checks: Sequence[tuple[bool, str]]) -> bool:
    for ok, text in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for ok, _ in checks)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {path}")


# -- the true slowdown: the two binaries alternated --------------------------------------------------

def true_slowdown(run_c: dict[str, str], argv_tail: Sequence[str], pairs: int, work: Path, flags: str = "-O3",
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build each run.c with ``cc FLAGS``, then run them alternately (A B, B A, ...) ``pairs`` times and
    compare the medians of the tok/s they print (and of wall time): the slowdown the gate should see."""
    binaries = {}
    for label, text in run_c.items():
        d = work / f"true-{label}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "run.c").write_text(text)
        subprocess.run(["cc", *flags.split(), "-o", str(d / "run"), str(d / "run.c"), "-lm"], check=True)
        binaries[label] = d / "run"
    labels = list(run_c)
    tok: dict[str, list[float]] = {k: [] for k in labels}
    wall: dict[str, list[float]] = {k: [] for k in labels}
    for i in range(pairs):
        for label in (labels if i % 2 == 0 else labels[::-1]):
            t0 = time.perf_counter()
            out = subprocess.run([str(binaries[label]), *argv_tail], capture_output=True, text=True,
                                 env=env or {**os.environ, "OMP_NUM_THREADS": "1"})
            wall[label].append(time.perf_counter() - t0)
            found = re.search(r"achieved tok/s:\s*([0-9.]+)", out.stderr + out.stdout)
            if found:
                tok[label].append(float(found.group(1)))
    a, b = labels
    res: dict[str, Any] = {"pairs": pairs, "flags": flags, "argv": list(argv_tail)}
    for label in labels:
        res[label] = {"tok_median": statistics.median(tok[label]) if tok[label] else None,
                      "wall_median": statistics.median(wall[label])}
    if tok[a] and tok[b]:
        res["tok_ratio"] = statistics.median(tok[b]) / statistics.median(tok[a]) - 1
        # pairwise: each B run against the A run next to it
        ratios = [tb / ta for ta, tb in zip(tok[a], tok[b], strict=False)]
        res["paired_median_ratio"] = statistics.median(ratios) - 1
    res["wall_ratio"] = statistics.median(wall[b]) / statistics.median(wall[a]) - 1
    return res
