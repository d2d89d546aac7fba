"""Figures of the fleet (issue 15), run by hand; none of them is asserted by the test suite.

    python3 bench/fleet.py llama --nodes 2     # a real 2-node cluster: the llama2.c 260K rows,
                                               # save-baseline then run; the report, per-node wall,
                                               # and the overhead over the same jobs run by hand
    python3 bench/fleet.py tiny --nodes 8      # the same on 8 node daemons with a tiny suite
    python3 bench/fleet.py merge --nodes 64 --template RUN.json
                                               # gather and render 64 simulated nodes' run JSONs
    python3 bench/fleet.py overhead --counts 2 8 --repeat 5
                                               # empty jobs: the fleet's wall against srun by hand

"By hand" is what a user did before the fleet: one ``srun --exclusive -w NODE`` per node, started
together, each running the same pytest command with its own --llmperf-node and --llmperf-json,
then waiting for all of them. The fleet's overhead is its wall time minus that one's.

The cluster is tests/slurm_cluster.py's (slurmctld and one slurmd per node on this machine). All
nodes share this machine's CPUs, so the nodes' jobs slow each other down; the figures say what the
fleet adds around the jobs, not how fast a board is.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pytest_llmperf.fleet import gather, plan, render  # noqa: E402

# sleeps: steady even with 8 node daemons on 2 cores (a sub-microsecond sum is not, and cries wolf)
TINY = '''
import time
import pytest

@pytest.mark.parametrize("ms", [1, 2])
def test_wait(llmperf, ms):
    llmperf.measure(time.sleep, ms / 1000)
'''


def fleet(env, cwd, *args):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest_llmperf.commands", "fleet", *args], cwd=cwd, env=env,
                         capture_output=True, text=True)
    return out, time.perf_counter() - t0


def by_hand(cluster, cwd, jobs, command, outdir, tool="srun"):
    """The same jobs as ``srun --exclusive`` (or ``sbatch --wait --exclusive``) per node, started
    together; wall time until all ended."""
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    procs = []
    for node, partition in jobs:
        head = ["srun"] if tool == "srun" else ["sbatch", "--wait", f"--output={outdir}/{node}.out", "--wrap"]
        tail = [*command, f"--llmperf-node={node}", f"--llmperf-json={outdir}/{node}.json"]
        argv = [*head[:1], "--exclusive", f"--nodelist={node}", f"--partition={partition}", *head[1:],
                *(tail if tool == "srun" else [shlex.join(tail)])]
        procs.append(subprocess.Popen(argv, cwd=cwd, env=cluster.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    codes = [p.wait() for p in procs]
    return time.perf_counter() - t0, codes


def cluster_figures(args, suite_command, nodes, partitions, work):
    from slurm_cluster import Cluster

    with Cluster(work / "slurm", partitions) as cluster:
        env = cluster.env
        pairs = [(n, p) for p, ns in partitions.items() for n in ns]
        where = [a for p in partitions for a in ("--partition", p)]
        saved, t_save = fleet(env, work, "save-baseline", *where, "--run-id", "save", "--width", "100", "--",
                              *suite_command)
        print(f"fleet save-baseline: exit {saved.returncode}, {t_save:.1f} s")
        if saved.returncode != 0:
            print(saved.stdout[-3000:], saved.stderr[-2000:])
        out, t_run = fleet(env, work, "run", *where, "--run-id", "night", "--width", "100", "--", *suite_command)
        print(f"fleet run: exit {out.returncode}, {t_run:.1f} s wall")
        text = (work / "llmperf-fleet" / "night" / "report.txt").read_text()
        print("\n--- terminal report ---\n" + text)
        print("--- Markdown report ---\n" + (work / "llmperf-fleet" / "night" / "report.md").read_text())
        data = json.loads((work / "llmperf-fleet" / "night" / "report.json").read_text())
        walls = {n["node"]: n["wall_s"] for n in data["nodes"]}
        print("per-node wall (SLURM RunTime):", ", ".join(f"{k} {v:.0f} s" for k, v in sorted(walls.items())))
        print(f"fleet wall minus the longest job: {t_run - max(walls.values()):+.1f} s (submit, wait, gather, "
              "four reports; RunTime is in whole seconds)")
        for tool in ("srun", "sbatch"):
            t_hand, codes = by_hand(cluster, work, pairs, suite_command, work / f"by-hand-{tool}", tool)
            print(f"by hand ({tool} --exclusive per node, together): {t_hand:.1f} s, exit codes {codes}; "
                  f"fleet overhead over it: {t_run - t_hand:+.1f} s ({(t_run - t_hand) / t_hand * 100:+.1f}%)")
        out2, t_rep = fleet(env, work, "report", "--run-id", "night", "--width", "100")
        print(f"fleet report (rebuild from the results directory): {t_rep:.2f} s, exit {out2.returncode}")


def cmd_llama(args):
    work = Path(tempfile.mkdtemp(prefix="fleet-llama-"))
    for name in ("suites", "conftest.py"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    nodes = ["sifive-1", "milkv-1", "sifive-2", "milkv-2"][: args.nodes]
    partitions: dict[str, list[str]] = {}
    for n in nodes:
        partitions.setdefault("mcimone-nodes" if n.startswith("sifive") else "mcimone-milkvs", []).append(n)
    command = [sys.executable, "-m", "pytest", "suites/test_llama2c.py", "-k", "260K and t1", "-p", "no:cacheprovider",
               "-q", "--llmperf-baseline-dir=baselines"]
    print(f"work dir {work}")
    cluster_figures(args, command, nodes, partitions, work)


def cmd_tiny(args):
    work = Path(tempfile.mkdtemp(prefix="fleet-tiny-"))
    (work / "test_tiny.py").write_text(TINY)
    nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
    half = (len(nodes) + 1) // 2
    partitions = {"mcimone-nodes": nodes[:half], "mcimone-milkvs": nodes[half:]}
    command = [sys.executable, "-m", "pytest", "test_tiny.py", "-p", "no:cacheprovider", "-q",
               "--llmperf-max-time=0.1", "--llmperf-baseline-dir=baselines"]
    print(f"work dir {work}")
    cluster_figures(args, command, nodes, partitions, work)


def cmd_overhead(args):
    """What the fleet adds around empty jobs (``true``): its wall time against srun by hand, per
    node count and poll interval, the median of --repeat runs each."""
    import statistics

    from slurm_cluster import Cluster

    for count in args.counts:
        work = Path(tempfile.mkdtemp(prefix=f"fleet-overhead-{count}-"))
        nodes = [f"n{i}" for i in range(1, count + 1)]
        with Cluster(work / "slurm", {"p": nodes}) as cluster:
            pairs = [(n, "p") for n in nodes]
            hand = [by_hand(cluster, work, pairs, ["true"], work / "hand")[0] for _ in range(args.repeat)]
            batch = [by_hand(cluster, work, pairs, ["true"], work / "hand", "sbatch")[0] for _ in range(args.repeat)]
            line = [f"{count} nodes: by hand, srun true per node together {statistics.median(hand):.2f} s, "
                    f"sbatch --wait {statistics.median(batch):.2f} s"]
            for poll in (2.0, 0.5):
                walls = []
                for k in range(args.repeat):
                    out, wall = fleet(cluster.env, work, "run", "--partition", "p", "--run-id", f"o{poll}-{k}",
                                      "--poll", str(poll), "--", "true")
                    # an empty job writes no run JSON (so the fleet exits 1): only the jobs' states count here
                    rep = json.loads((work / "llmperf-fleet" / f"o{poll}-{k}" / "report.json").read_text())
                    assert all(n["state"] == "COMPLETED" for n in rep["nodes"]), out.stdout + out.stderr
                    walls.append(wall)
                med = statistics.median(walls)
                line.append(f"fleet --poll {poll:g}: {med:.2f} s (+{med - statistics.median(hand):.2f} s)")
            print("; ".join(line))


def cmd_merge(args):
    """64 nodes' run JSONs, made from one real run JSON (--template, e.g. a 260K run's) with each
    node's values moved a little and one node regressed; time gather and each renderer."""
    template = json.loads(Path(args.template).read_text())
    work = Path(tempfile.mkdtemp(prefix="fleet-merge-"))
    rng = random.Random(1)
    jobs = [plan.Job(f"node-{i:02d}", "p", str(1000 + i), [str(1000 + i)], "COMPLETED", 0, run_time=60 + i)
            for i in range(args.nodes)]
    run = plan.Run("sim64", "run", ["pytest"], str(work), [], 0.0, jobs, work / "llmperf-fleet" / "sim64")
    plan.prepare(run)
    for i, job in enumerate(jobs):
        data = json.loads(json.dumps(template))
        data["node"] = job.node
        for v in data["verdicts"]:
            if isinstance(v.get("current"), (int, float)):
                v["current"] *= 1 + rng.uniform(-0.02, 0.02)
            if i == 7 and v["metric"] == "tok_per_s":
                v["status"], v["change"] = "regressed", -0.12
        d = run.attempt_dir(job)
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps(data))
        (d / "exit").write_text("0\n")
        (d / "started").write_text(f"{job.job_id} {job.node} 0\n")
        run.output_path(job).write_text("5 passed in 25.00s\n")
    t0 = time.perf_counter()
    results = gather.gather(run)
    t_gather = time.perf_counter() - t0
    timings = {}
    for name, fn in (("terminal", lambda: render.terminal(run, results, 100)),
                     ("markdown", lambda: render.markdown(run, results)),
                     ("json", lambda: render.json_text(render.to_json(run, results)))):
        t0 = time.perf_counter()
        text = fn()
        timings[name] = (time.perf_counter() - t0, len(text), text)
    t0 = time.perf_counter()
    paths = render.write_all(run, results, run.directory, 100)
    t_all = time.perf_counter() - t0
    print(f"{args.nodes} nodes x {len(gather.tests_of(results))} tests ({len(template['verdicts'])} verdicts each)")
    print(f"gather (read and check {args.nodes} run JSONs): {t_gather * 1000:.0f} ms")
    for name, (t, size, _text) in timings.items():
        print(f"render {name}: {t * 1000:.0f} ms, {size:,} characters")
    print(f"write_all (txt, md, json, html): {t_all * 1000:.0f} ms; html {paths['html'].stat().st_size:,} bytes")
    lines = timings["terminal"][2].splitlines()
    print(f"terminal: {len(lines)} lines, widest {max(len(line) for line in lines)}; first lines:")
    print("\n".join(lines[:14]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    for name, default in (("llama", 2), ("tiny", 8)):
        s = sub.add_parser(name)
        s.add_argument("--nodes", type=int, default=default)
    o = sub.add_parser("overhead")
    o.add_argument("--counts", type=int, nargs="+", default=[2, 8])
    o.add_argument("--repeat", type=int, default=5)
    m = sub.add_parser("merge")
    m.add_argument("--nodes", type=int, default=64)
    m.add_argument("--template", required=True, help="a real run JSON (--llmperf-json) to copy per node")
    args = p.parse_args()
    {"llama": cmd_llama, "tiny": cmd_tiny, "merge": cmd_merge, "overhead": cmd_overhead}[args.what](args)


if __name__ == "__main__":
    main()
