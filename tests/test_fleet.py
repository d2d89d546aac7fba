"""The fleet end to end on a real SLURM: a controller and node daemons started on this machine
(tests/slurm_cluster.py), driven through ``pytest-llmperf fleet`` as a user runs it. Each job runs
a tiny benchmark suite with pytest on its node; the node's behaviour is steered by files in the
project directory (``fail-on-NODE``: a test fails there; ``sleep-on-NODE``: a test sleeps that
many seconds there).

The module skips, naming what is missing, only where SLURM cannot be started (slurm_cluster.missing).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import Cluster, missing

if missing() is not None:
    pytest.skip(f"no SLURM cluster here: {missing()}", allow_module_level=True)

# the seed's two-board lab, and a node of its own for the job over its time limit: SLURM's limits are
# whole minutes and it checks them every 30 s, so that job takes 60-90 s and runs beside the others
NODES = {"mcimone-nodes": ["sifive-1"], "mcimone-milkvs": ["milkv-1"], "overtime": ["sifive-9"]}
OVERTIME = "overtime1"

SUITE = '''
import os, time
from pathlib import Path
import pytest

NODE = os.environ.get("SLURMD_NODENAME", "")


def _file(name, default):
    path = Path(name + "-on-" + NODE)
    return float(path.read_text() or 0) if path.exists() else default


@pytest.mark.parametrize("ms", [1, 2])
def test_wait(llmperf, ms):
    llmperf.measure(time.sleep, ms / 1000)


def test_steered(llmperf):
    time.sleep(_file("sleep", 0.0))
    assert not Path("fail-on-" + NODE).exists(), "this test fails on " + NODE
    llmperf.measure(time.sleep, _file("slow", 0.002))
'''

# sleeps measure steadily even on a loaded machine; a 50% tolerance leaves only a deliberate slowdown
FAST = ["--llmperf-max-time=0.1", "--llmperf-warmup=0", "--llmperf-tolerance=50%", "-p", "no:cacheprovider", "-q"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("slurm"), NODES)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def project(tmp_path, cluster):
    (tmp_path / "test_tiny.py").write_text(SUITE)
    yield tmp_path
    # nothing of a test's jobs may outlive it (they would hold the nodes the next test needs), but
    # the job over its time limit, which runs beside the tests on a node of its own
    def left():
        out = cluster.run("squeue", "--noheader", "--format=%i|%j", check=False).stdout.split()
        return [line.split("|")[0] for line in out if not line.endswith("|llmperf-" + OVERTIME)]

    if left():
        cluster.run("scancel", *left(), check=False)
        _until(lambda: not left(), 30)
    for node in ("sifive-1", "milkv-1"):
        cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)


def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def fleet(cluster, project, *args, timeout=240, env=None):
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.commands", "fleet", *args], cwd=project,
                          env=env or cluster.env, capture_output=True, text=True, timeout=timeout)


def start_fleet(cluster, cwd, run_id, *args, nodes="milkv-1,sifive-1", output=True):
    """``fleet run`` in the background (the tests that act while it waits: cancel, node down,
    Ctrl-C), its output in ``proc.communicate()``."""
    where = ["--nodelist", nodes] if nodes else []
    return subprocess.Popen([sys.executable, "-m", "pytest_llmperf.commands", "fleet", "run", *where, "--run-id",
                             run_id, "--poll", "0.5", *args, *command()], cwd=cwd, env=cluster.env,
                            stdout=subprocess.PIPE if output else subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            text=True)


def command(*extra):
    return ["--", sys.executable, "-m", "pytest", "test_tiny.py", "--llmperf-baseline-dir=baselines", *FAST, *extra]


def report(project, run_id):
    return json.loads((project / "llmperf-fleet" / run_id / "report.json").read_text())


def state(project, run_id):
    return json.loads((project / "llmperf-fleet" / run_id / "fleet.json").read_text())


@pytest.fixture(scope="module")
def overtime(cluster, tmp_path_factory):
    """A fleet run on sifive-9 whose job sleeps past its 1-minute limit, started with the first test
    and waited for by the last (test_a_job_over_its_time_limit_is_named)."""
    where = tmp_path_factory.mktemp("overtime")
    (where / "test_tiny.py").write_text(SUITE)
    (where / "sleep-on-sifive-9").write_text("600")
    proc = start_fleet(cluster, where, OVERTIME, "--partition", "overtime", "--time", "1", nodes=None)
    yield proc, where
    proc.kill()
    proc.wait()


def test_a_run_on_two_nodes_gathers_one_report(cluster, project, overtime):
    saved = fleet(cluster, project, "save-baseline", "--partition", "mcimone-nodes", "--partition",
                  "mcimone-milkvs", "--run-id", "save1", *command())
    assert saved.returncode == 0, saved.stdout + saved.stderr
    # both nodes saved into one baselines directory at once: every test of both is there
    for node in ("sifive-1", "milkv-1"):
        data = json.loads((project / "baselines" / node / "test_tiny.json").read_text())
        assert sorted(data["tests"]) == ["test_steered", "test_wait[1]", "test_wait[2]"]
    out = fleet(cluster, project, "run", "--partition", "mcimone-nodes", "--nodelist", "milkv-1",
                "--run-id", "night1", "--width", "100", *command("--llmperf-history-append"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pytest-llmperf fleet run night1: 2 nodes: 2 ok, 0 regressed, 0 failed" in out.stdout
    assert "sifive-1: job" in out.stdout and "submitted to mcimone-nodes" in out.stdout
    data = report(project, "night1")
    assert data["exit_status"] == 0 and {n["node"] for n in data["nodes"]} == {"sifive-1", "milkv-1"}
    assert {n["partition"] for n in data["nodes"]} == {"mcimone-nodes", "mcimone-milkvs"}
    assert all(n["state"] == "COMPLETED" and n["wall_s"] is not None for n in data["nodes"])
    assert sorted(data["matrix"]) == ["test_tiny.py::test_steered", "test_tiny.py::test_wait[1]",
                                      "test_tiny.py::test_wait[2]"]
    cell = data["matrix"]["test_tiny.py::test_wait[2]"]["milkv-1"]
    assert cell["metric"] == "time" and cell["unit"] == "s" and cell["status"] == "ok"
    assert 0.002 <= cell["value"] < 0.004
    directory = project / "llmperf-fleet" / "night1"
    assert "| `test_tiny.py::test_wait[2]` |" in (directory / "report.md").read_text()
    assert "<h2>fleet</h2>" in (directory / "report.html").read_text()
    # both nodes appended their night to their history in the one baselines directory
    for node in ("sifive-1", "milkv-1"):
        lines = (project / "baselines" / node / "history" / "test_tiny.jsonl").read_text().splitlines()
        assert len(lines) >= 3 and all(json.loads(line) for line in lines)
    # rebuilt from the results directory alone
    again = fleet(cluster, project, "report", "--run-id", "night1", "--width", "100")
    assert again.returncode == 0 and report(project, "night1") == data


def test_a_node_that_regressed_fails_the_run_and_comes_first(cluster, project):
    saved = fleet(cluster, project, "save-baseline", "--nodelist", "sifive-1,milkv-1", *command())
    assert saved.returncode == 0, saved.stdout + saved.stderr
    (project / "slow-on-milkv-1").write_text("0.006")  # 2 ms -> 6 ms: +200%
    out = fleet(cluster, project, "run", "--nodelist", "sifive-1,milkv-1", "--run-id", "g1", "--width", "100",
                *command())
    assert out.returncode == 1, out.stdout + out.stderr
    data = report(project, "g1")
    assert [(n["node"], n["status"]) for n in data["nodes"]] == [("milkv-1", "regressed"), ("sifive-1", "ok")]
    assert data["tests"][0] == "test_tiny.py::test_steered"
    assert data["matrix"]["test_tiny.py::test_steered"]["milkv-1"]["status"] == "regressed"
    assert data["matrix"]["test_tiny.py::test_steered"]["sifive-1"]["status"] == "ok"
    assert "milkv-1: regressed: 1 regressed metric(s)" in out.stdout


def test_a_test_that_fails_on_one_node_fails_that_node_alone(cluster, project):
    (project / "fail-on-milkv-1").write_text("")
    out = fleet(cluster, project, "run", "--nodelist", "sifive-1,milkv-1", "--run-id", "f1", *command())
    assert out.returncode == 1, out.stdout + out.stderr
    by = {n["node"]: n for n in report(project, "f1")["nodes"]}
    assert by["sifive-1"]["status"] == "ok"
    assert by["milkv-1"]["status"] == "failed" and by["milkv-1"]["state"] == "FAILED"
    assert "pytest exit status 1" in by["milkv-1"]["reason"] and "1 failed" in by["milkv-1"]["reason"]
    assert report(project, "f1")["nodes"][0]["node"] == "milkv-1"  # failures first
    assert "milkv-1: failed: job" in out.stdout


def _running(cluster, name, count=1):
    return _until(lambda: cluster.run("squeue", "--noheader", f"--name={name}", "--states=RUNNING",
                                      "--format=%i", check=False).stdout.split().__len__() >= count, 60)


def test_a_job_cancelled_from_outside_is_named(cluster, project):
    (project / "sleep-on-milkv-1").write_text("120")
    proc = start_fleet(cluster, project, "c1")
    try:
        assert _until(lambda: (project / "llmperf-fleet" / "c1" / "fleet.json").exists(), 30)
        assert _running(cluster, "llmperf-c1")
        _until(lambda: next(j for j in state(project, "c1")["jobs"] if j["node"] == "milkv-1")["job_id"], 30)
        milkv = next(j for j in state(project, "c1")["jobs"] if j["node"] == "milkv-1")
        cluster.run("scancel", milkv["job_id"])
        text, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, text
    by = {n["node"]: n for n in report(project, "c1")["nodes"]}
    assert by["milkv-1"]["state"] == "CANCELLED" and by["milkv-1"]["status"] == "failed"
    assert by["milkv-1"]["reason"].startswith(f"job {milkv['job_id']} CANCELLED")
    assert by["sifive-1"]["status"] == "ok"


def test_a_node_set_down_while_its_job_waits_fails_that_node(cluster, project):
    blocker = cluster.run("sbatch", "--parsable", "--nodelist=milkv-1", "--partition=mcimone-milkvs",
                          "--exclusive", "--output=/dev/null", "--wrap", "sleep 300").stdout.strip()
    assert _until(lambda: cluster.run("squeue", "--noheader", "--jobs", blocker, "--format=%T").stdout.strip()
                  == "RUNNING", 30)
    proc = start_fleet(cluster, project, "d1")
    try:
        assert _until(lambda: any(j["node"] == "milkv-1" and j["state"] == "PENDING"
                                  for j in (state(project, "d1")["jobs"] if (project / "llmperf-fleet" / "d1" /
                                                                            "fleet.json").exists() else [])), 60)
        cluster.set_node_state("milkv-1", "down", "board unplugged")
        text, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, text
    by = {n["node"]: n for n in report(project, "d1")["nodes"]}
    assert by["milkv-1"]["state"] == "NODE_DOWN"
    assert "node milkv-1 is down" in by["milkv-1"]["reason"] and "board unplugged" in by["milkv-1"]["reason"]
    assert by["sifive-1"]["status"] == "ok"


def test_ctrl_c_cancels_the_jobs_and_a_resume_runs_only_the_unfinished_node(cluster, project):
    (project / "sleep-on-milkv-1").write_text("120")
    proc = start_fleet(cluster, project, "i1")
    try:
        # wait until sifive-1 has finished and milkv-1 is running, then press Ctrl-C
        assert _until(lambda: (project / "llmperf-fleet" / "i1" / "fleet.json").exists() and
                      {j["node"]: j["state"] for j in state(project, "i1")["jobs"]}
                      == {"milkv-1": "RUNNING", "sifive-1": "COMPLETED"}, 90)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, text
    assert "interrupted: cancelled 1 job(s); resume with --resume i1" in text
    jobs = {j["node"]: j for j in state(project, "i1")["jobs"]}
    assert jobs["milkv-1"]["state"] == "CANCELLED"
    first = jobs["milkv-1"]["job_id"]
    assert _until(lambda: cluster.run("squeue", "--noheader", "--jobs", first, "--states=all",
                                      "--format=%T", check=False).stdout.strip() in ("CANCELLED", ""), 30)
    (project / "sleep-on-milkv-1").unlink()
    out = fleet(cluster, project, "run", "--resume", "i1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sifive-1: job" in out.stdout and "finished before (COMPLETED): kept" in out.stdout
    jobs = {j["node"]: j for j in state(project, "i1")["jobs"]}
    assert len(jobs["sifive-1"]["attempts"]) == 1 and len(jobs["milkv-1"]["attempts"]) == 2
    assert jobs["milkv-1"]["state"] == "COMPLETED"
    # the cancelled attempt's output is kept beside the new one
    assert (project / "llmperf-fleet" / "i1" / "milkv-1" / f"{first}.out").exists()


def test_the_fleet_time_limit_cancels_what_is_left(cluster, project):
    (project / "sleep-on-sifive-1").write_text("300")
    out = fleet(cluster, project, "run", "--nodelist", "sifive-1", "--run-id", "l1", "--fleet-timeout", "3",
                "--poll", "0.5", *command())
    assert out.returncode == 1, out.stdout + out.stderr
    (node,) = report(project, "l1")["nodes"]
    assert node["state"] == "CANCELLED" and "the fleet's time limit (3 s) passed" in node["reason"]


def test_bad_input_is_one_line_naming_it(cluster, project, tmp_path):
    out = fleet(cluster, project, "run", "--partition", "a100", *command())
    assert (out.returncode, out.stderr) == (2, "pytest-llmperf fleet: error: --partition a100: no such partition "
                                               "(SLURM has: mcimone-milkvs, mcimone-nodes, overtime)\n")
    out = fleet(cluster, project, "run", "--nodelist", "visionfive-1", *command())
    assert out.returncode == 2 and "--nodelist: no such node 'visionfive-1'" in out.stderr
    (project / "afile").write_text("")
    out = fleet(cluster, project, "run", "--results", "afile/sub", "--nodelist", "sifive-1", *command())
    assert (out.returncode, out.stderr) == (2, "pytest-llmperf fleet: error: results directory afile/sub: "
                                               f"{Path('afile')} is not a directory\n")
    out = fleet(cluster, project, "run", "--nodelist", "sifive-1", *command("--llmperf-node=x"))
    assert out.returncode == 2 and "the pytest command sets --llmperf-node" in out.stderr
    env = dict(cluster.env, PATH="/nonexistent")
    out = fleet(cluster, project, "run", "--nodelist", "sifive-1", *command(), env=env)
    assert (out.returncode, out.stderr) == (2, "pytest-llmperf fleet: error: SLURM is not installed here: sinfo "
                                               "is not on PATH\n")
    dead = tmp_path / "dead.conf"
    dead.write_text(re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=9", cluster.conf.read_text()))
    out = fleet(cluster, project, "run", "--nodelist", "sifive-1", *command(), env=dict(cluster.env, SLURM_CONF=str(dead)))
    assert out.returncode == 2 and out.stderr.startswith("pytest-llmperf fleet: error: SLURM is not reachable: sinfo: ")
    assert out.stderr.count("\n") == 1


def test_an_sbatch_rejection_fails_its_node_and_keeps_the_others(cluster, project):
    # an inactive partition takes no job: sbatch refuses milkv-1's, sifive-1's runs
    cluster.run("scontrol", "update", "partitionname=mcimone-milkvs", "state=inactive")
    try:
        out = fleet(cluster, project, "run", "--partition", "mcimone-milkvs", "--partition", "mcimone-nodes",
                    "--run-id", "r1", *command())
    finally:
        cluster.run("scontrol", "update", "partitionname=mcimone-milkvs", "state=up")
    assert out.returncode == 1, out.stdout + out.stderr
    by = {n["node"]: n for n in report(project, "r1")["nodes"]}
    assert by["milkv-1"]["state"] == "NOT_SUBMITTED" and by["milkv-1"]["job_id"] is None
    assert by["milkv-1"]["reason"].startswith("sbatch refused it: sbatch: error: "), by["milkv-1"]["reason"]
    assert by["sifive-1"]["status"] == "ok"
    assert "milkv-1: not submitted: sbatch refused it" in out.stdout


def test_a_job_over_its_time_limit_is_named(cluster, overtime):
    proc, where = overtime
    text, _ = proc.communicate(timeout=240)
    assert proc.returncode == 1, text
    (node,) = report(where, OVERTIME)["nodes"]
    assert node["node"] == "sifive-9" and node["state"] == "TIMEOUT" and node["status"] == "failed"
    assert node["reason"].startswith(f"job {node['job_id']} TIMEOUT: TimeLimit"), node["reason"]
    assert "sifive-9: job" in text and "timeout" in text


def test_eight_node_daemons_run_one_fleet(tmp_path):
    nodes = [f"board-{i}" for i in range(1, 9)]
    with Cluster(tmp_path / "slurm8", {"lab-a": nodes[:4], "lab-b": nodes[4:]}) as big:
        (tmp_path / "test_tiny.py").write_text(SUITE)
        out = fleet(big, tmp_path, "run", "--partition", "lab-a", "--nodelist", "board-[5-8]", "--run-id", "n8",
                    "--width", "100", *command())
        assert out.returncode == 0, out.stdout + out.stderr
        data = report(tmp_path, "n8")
        assert sorted(n["node"] for n in data["nodes"]) == nodes
        assert all(n["state"] == "COMPLETED" and n["status"] == "ok" for n in data["nodes"])
        assert all(len(row) == 8 for row in data["matrix"].values())
        text = (tmp_path / "llmperf-fleet" / "n8" / "report.txt").read_text()
        assert all(len(line) <= 100 for line in text.splitlines())
        assert "pytest-llmperf fleet run n8: 8 nodes: 8 ok, 0 regressed, 0 failed" in text


def test_a_resume_after_a_crash_adopts_the_job_the_state_file_missed(cluster, project):
    (project / "sleep-on-milkv-1").write_text("120")
    proc = start_fleet(cluster, project, "a1", nodes="milkv-1", output=False)
    path = project / "llmperf-fleet" / "a1" / "fleet.json"
    assert _until(lambda: path.exists() and state(project, "a1")["jobs"][0]["state"] == "RUNNING", 60)
    proc.kill()  # the fleet dies without cancelling anything
    proc.wait()
    data = state(project, "a1")
    job_id = data["jobs"][0]["job_id"]
    # as if it had died between sbatch and writing the state file
    data["jobs"][0].update(job_id=None, attempts=[], state="NEW")
    path.write_text(json.dumps(data))
    resumed = subprocess.Popen([sys.executable, "-m", "pytest_llmperf.commands", "fleet", "run", "--resume", "a1",
                                "--poll", "0.5"], cwd=project, env=cluster.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert _until(lambda: state(project, "a1")["jobs"][0]["job_id"] == job_id, 30)
        cluster.run("scancel", job_id)
        text, _ = resumed.communicate(timeout=60)
    finally:
        resumed.kill()
    assert f"milkv-1: job {job_id} found in the queue: adopted" in text, text
    assert state(project, "a1")["jobs"][0]["attempts"] == [job_id]
    names = cluster.run("squeue", "--noheader", "--states=all", "--name=llmperf-a1", "--format=%i").stdout.split()
    assert names == [job_id]
