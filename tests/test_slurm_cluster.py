"""tests/slurm_cluster.py against the real daemons: a two-node cluster of two partitions (the
fleet's lab: sifive-1 in mcimone-nodes, milkv-1 in mcimone-milkvs), jobs through srun and sbatch,
node states, and the stop that leaves nothing behind. Skips, naming why, where SLURM cannot run."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slurm_cluster import Cluster, _process_table, missing  # tests/ is on sys.path (pytest's rootdir import)

if missing() is not None:
    pytest.skip(f"no SLURM cluster here: {missing()}", allow_module_level=True)

NODES = {"mcimone-nodes": ["sifive-1"], "mcimone-milkvs": ["milkv-1"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("slurm"), NODES) as c:
        yield c


def _until(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _state(cluster: Cluster, job: str) -> str:
    return cluster.run("squeue", "--noheader", "--states=all", f"--jobs={job}", "--format=%T").stdout.strip()


def _show(cluster: Cluster, job: str) -> dict[str, str]:
    out = cluster.run("scontrol", "show", "job", "-o", job).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def test_sinfo_shows_both_partitions_idle(cluster: Cluster) -> None:
    out = cluster.run("sinfo", "--noheader", "--format=%R|%a|%t|%N").stdout.split()
    assert sorted(out) == ["mcimone-milkvs|up|idle|milkv-1", "mcimone-nodes|up|idle|sifive-1"]
    assert cluster.node_states() == {"sifive-1": "idle", "milkv-1": "idle"}


def test_srun_runs_on_the_partitions_node(cluster: Cluster) -> None:
    for partition, (node,) in NODES.items():
        out = cluster.run("srun", "-p", partition, "printenv", "SLURMD_NODENAME")
        assert out.stdout.strip() == node


def test_sbatch_job_completes_in_the_callers_environment(cluster: Cluster, tmp_path: Path) -> None:
    cluster.env["LLMPERF_SLURM_PROBE"] = "from-the-caller"
    try:
        job = cluster.run("sbatch", "--parsable", "--nodelist=milkv-1", "--partition=mcimone-milkvs",
                          "--exclusive", f"--chdir={tmp_path}", "--output=out-%j.txt",
                          "--wrap", "echo hi $LLMPERF_SLURM_PROBE on $SLURMD_NODENAME").stdout.strip()
    finally:
        del cluster.env["LLMPERF_SLURM_PROBE"]
    assert job.isdigit()
    assert _until(lambda: _state(cluster, job) == "COMPLETED"), _state(cluster, job)
    assert (tmp_path / f"out-{job}.txt").read_text() == "hi from-the-caller on milkv-1\n"
    info = _show(cluster, job)  # still known to the controller after the end (MinJobAge)
    assert (info["JobState"], info["ExitCode"], info["NodeList"]) == ("COMPLETED", "0:0", "milkv-1")


def test_a_failing_job_is_failed_with_its_exit_code(cluster: Cluster, tmp_path: Path) -> None:
    job = cluster.run("sbatch", "--parsable", "--partition=mcimone-nodes", f"--chdir={tmp_path}",
                      "--wrap", "exit 3").stdout.strip()
    assert _until(lambda: _state(cluster, job) == "FAILED"), _state(cluster, job)
    info = _show(cluster, job)
    assert (info["ExitCode"], info["Reason"]) == ("3:0", "NonZeroExitCode")


def test_a_node_set_down_stays_down_until_resumed(cluster: Cluster) -> None:
    cluster.set_node_state("milkv-1", "DOWN", "board unplugged")
    try:
        assert cluster.node_states()["milkv-1"].startswith("down")
        reasons = cluster.run("sinfo", "--noheader", "--list-reasons", "--format=%N|%E").stdout.split("\n")
        assert "milkv-1|board unplugged" in reasons
        assert not _until(lambda: not cluster.node_states()["milkv-1"].startswith("down"), 2)
    finally:
        cluster.set_node_state("milkv-1", "RESUME")
    assert _until(lambda: cluster.node_states()["milkv-1"] == "idle", 10), cluster.node_states()


def test_stop_ends_the_daemons_and_the_running_jobs(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "slurm", {"p": ["solo-1"]})
    c.start()
    try:
        # a job with a child that left its process tree (a new session): SLURM loses it, stop may not
        c.run("sbatch", f"--chdir={tmp_path}", "--wrap", "setsid sleep 4321 & sleep 4321")
        assert _until(lambda: len(_sleeps()) == 2), _sleeps()
    finally:
        c.stop()
    assert c._processes() == []
    assert _sleeps() == []
    c.stop()  # again: nothing to do, no error


def test_a_bad_configuration_fails_the_start_naming_why(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "slurm", {"p": ["bad-1"]}, extra_conf="NoSuchKey=1")
    with pytest.raises(RuntimeError, match="NoSuchKey"):
        c.start(timeout=20)
    assert c._processes() == []


def test_the_command_line_starts_and_stops_a_cluster(tmp_path: Path) -> None:
    script = Path(__file__).parent / "slurm_cluster.py"
    root = tmp_path / "by-hand"
    out = subprocess.run([sys.executable, str(script), "start", "--dir", str(root), "--nodes", "hand-1:hand"],
                         capture_output=True, text=True, timeout=90)
    try:
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"export SLURM_CONF={root.absolute() / 'slurm.conf'}"
        assert Cluster(root, {}).node_states() == {"hand-1": "idle"}
    finally:
        stop = subprocess.run([sys.executable, str(script), "stop", "--dir", str(root)],
                              capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert Cluster(root, {})._processes() == []


def _sleeps() -> list[int]:
    return [pid for pid, (_, _, cmdline, _) in _process_table().items() if cmdline == b"sleep\x004321\x00"]
