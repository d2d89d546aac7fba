"""The fleet's parts without a cluster: the parsers of SLURM's machine-readable output (on output
recorded from slurm-wlm 22.05), the plan (nodes, command, job script, state file), the mount
checks, and the gathering and rendering of run JSONs into the nodes x tests report. The real
cluster's end-to-end tests are in test_fleet.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pytest_llmperf.fleet import gather, plan, render, shared, slurm
from pytest_llmperf.fleet.plan import Job, PlanError, Run

# recorded: scontrol show job -o 7 after `exit 3` (one line; trimmed of fields the parser does not use)
SCONTROL_FAILED = ("JobId=7 JobName=llmperf-x UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901754 "
                   "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
                   "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:01 TimeLimit=UNLIMITED "
                   "TimeMin=N/A SubmitTime=2026-12-02T12:40:01 NodeList=milkv-1 BatchHost=milkv-1 "
                   "Command=/tmp/r/job.sh /tmp/r/milkv-1 milkv-1 python3 -m pytest WorkDir=/work/main")
SCONTROL_TIMEOUT = ("JobId=9 JobName=llmperf-x JobState=TIMEOUT Reason=TimeLimit Dependency=(null) "
                    "ExitCode=0:15 RunTime=00:01:03 TimeLimit=00:01:00 NodeList=sifive-1")
SCONTROL_RUNNING = "JobId=10 JobName=llmperf-x JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:04"


def test_sbatch_parsable_gives_the_job_id_with_or_without_a_cluster():
    assert slurm.parse_sbatch("42\n") == "42"
    assert slurm.parse_sbatch("42;cluster\n") == "42"
    with pytest.raises(slurm.SlurmError, match="sbatch --parsable printed 'Submitted batch job 42', not a job id"):
        slurm.parse_sbatch("Submitted batch job 42\n")


def test_squeue_lines_by_job_id_keep_a_job_name_with_a_bar_whole():
    jobs = slurm.parse_queue("12|PENDING||milkv-1|Resources|llmperf-a\n13|RUNNING|milkv-1|milkv-1|None|llmperf-a|b\n\n")
    assert jobs["12"] == slurm.Live("12", "PENDING", "", "Resources", "llmperf-a", "milkv-1")
    assert jobs["13"].state == "RUNNING" and jobs["13"].nodes == "milkv-1" and jobs["13"].name == "llmperf-a|b"
    with pytest.raises(slurm.SlurmError, match="squeue printed '12 PENDING'"):
        slurm.parse_queue("12 PENDING\n")


def test_scontrol_key_values_keep_a_value_with_spaces_whole():
    kv = slurm.parse_keyvalues(SCONTROL_FAILED)
    assert kv["JobState"] == "FAILED" and kv["ExitCode"] == "3:0" and kv["UserId"] == "root(0)"
    assert kv["Command"] == "/tmp/r/job.sh /tmp/r/milkv-1 milkv-1 python3 -m pytest"
    assert kv["WorkDir"] == "/work/main"


def test_scontrol_tells_how_a_job_ended_and_none_while_it_runs():
    assert slurm.parse_scontrol_job(SCONTROL_FAILED) == slurm.Ended("FAILED", 3, 0, "NonZeroExitCode", 1.0, "scontrol")
    assert slurm.parse_scontrol_job(SCONTROL_TIMEOUT) == slurm.Ended("TIMEOUT", 0, 15, "TimeLimit", 63.0, "scontrol")
    assert slurm.parse_scontrol_job(SCONTROL_RUNNING) is None


def test_sacct_reads_the_allocation_line_not_the_steps():
    out = "5|CANCELLED by 0|0:15|00:00:07|None\n5.batch|CANCELLED|0:15|00:00:07|\n"
    assert slurm.parse_sacct(out, "5") == slurm.Ended("CANCELLED", 0, 15, "None", 7.0, "sacct")
    assert slurm.parse_sacct("6|RUNNING|0:0|00:00:01|None\n", "6") is None
    assert slurm.parse_sacct("", "6") is None
    assert slurm.parse_sacct("5|COMPLETED|0:0|1-02:03:04|None\n", "5").run_time == 93784.0


def test_sinfo_merges_a_node_in_several_partitions():
    nodes = slurm.parse_nodes("n1|p1|idle|localhost|none\nn1|p2|idle|localhost|none\n"
                              "n2|p2|down*|board2|Not responding\n")
    assert nodes["n1"].partitions == ["p1", "p2"] and nodes["n1"].hostname == "localhost"
    assert nodes["n2"].state == "down*" and nodes["n2"].reason == "Not responding"


@pytest.mark.parametrize(("state", "bad"), [("idle", False), ("allocated", False), ("mixed", False),
                                            ("down", True), ("down*", True), ("drained", True), ("draining", True),
                                            ("idle+drain", True), ("fail", True), ("idle~", False), ("completing", False)])
def test_a_pending_job_waits_in_vain_on_these_node_states(state, bad):
    assert slurm.unusable(state) is bad


def test_a_missing_tool_is_named():
    with pytest.raises(slurm.SlurmError, match="SLURM is not installed here: sbatch is not on PATH"):
        slurm.Slurm(env={"PATH": "/nonexistent"}).run(["sbatch", "--version"])


KNOWN = {"sifive-1": slurm.NodeInfo("sifive-1", ["mcimone-nodes"], "idle", "none", "localhost"),
         "milkv-1": slurm.NodeInfo("milkv-1", ["mcimone-milkvs"], "idle", "none", "localhost"),
         "milkv-2": slurm.NodeInfo("milkv-2", ["mcimone-milkvs", "all"], "down*", "gone", "localhost")}


def test_targets_are_one_job_per_node_of_the_partitions_and_node_lists():
    jobs = plan.targets(["mcimone-milkvs"], [["sifive-1", "milkv-1"]], KNOWN)
    assert [(j.node, j.partition) for j in jobs] == [("milkv-1", "mcimone-milkvs"), ("milkv-2", "mcimone-milkvs"),
                                                     ("sifive-1", "mcimone-nodes")]
    # a node of two partitions, none of them named: SLURM's default partition decides
    assert [(j.node, j.partition) for j in plan.targets([], [["milkv-2"]], KNOWN)] == [("milkv-2", None)]
    assert plan.down_nodes(jobs, KNOWN) == ["milkv-2"]


def test_targets_name_an_unknown_partition_or_node():
    with pytest.raises(PlanError, match=r"--partition a100: no such partition \(SLURM has: all, mcimone-milkvs, mcimone-nodes\)"):
        plan.targets(["a100"], [], KNOWN)
    with pytest.raises(PlanError, match="--nodelist: no such node 'visionfive-1'"):
        plan.targets([], [["visionfive-1"]], KNOWN)
    with pytest.raises(PlanError, match="no node to run on: give --partition or --nodelist"):
        plan.targets([], [], KNOWN)


def test_the_command_may_not_set_what_the_fleet_sets():
    assert plan.check_command(["pytest", "suites/", "-k", "260K"]) == ["pytest", "suites/", "-k", "260K"]
    for bad in (["pytest", "--llmperf-node=x"], ["pytest", "--llmperf-json", "a.json"]):
        with pytest.raises(PlanError, match="the pytest command sets --llmperf-"):
            plan.check_command(bad)


def _run(tmp_path: Path, jobs: list[Job], command: list[str] | None = None) -> Run:
    return Run("r1", "run", command or ["true"], str(tmp_path), ["--exclusive"], 0.0, jobs, tmp_path / "res" / "r1")


def test_the_job_script_runs_the_command_with_the_node_and_run_json_and_records_the_exit(tmp_path):
    run = _run(tmp_path, [Job("n1", "p")], ["sh", "-c", 'echo "$@" > args.txt; exit 3', "sh"])
    plan.prepare(run)
    args = plan.sbatch_args(run, run.jobs[0])
    assert args[:5] == ["--job-name=llmperf-r1", "--nodelist=n1", f"--output={run.directory}/n1/%j.out",
                        f"--chdir={tmp_path}", "--partition=p"]
    assert args[5] == "--exclusive" and args[6] == str(run.directory / "job.sh")
    # run the script as sbatch would on the node (SLURM_JOB_ID set): the fleet's options come last
    out = subprocess.run(["bash", *args[6:]], env={"SLURM_JOB_ID": "77", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert out.returncode == 3
    attempt = run.directory / "n1" / "77"
    assert (attempt / "exit").read_text() == "3\n" and (attempt / "started").read_text().startswith("77 ? ")
    assert (tmp_path / "args.txt").read_text() == f"--llmperf-node=n1 --llmperf-json={attempt}/run.json\n"


def test_the_state_file_round_trips_and_a_bad_one_is_named(tmp_path):
    run = _run(tmp_path, [Job("n1", "p", job_id="5", attempts=["4", "5"], state="COMPLETED", exit_code=0)])
    plan.prepare(run)
    back = plan.load(tmp_path / "res", "r1")
    assert back.jobs == run.jobs and back.command == run.command and back.directory == run.directory
    with pytest.raises(PlanError, match=r"no fleet run 'r2' in .*res \(.*r2/fleet.json does not exist\)"):
        plan.load(tmp_path / "res", "r2")
    (run.directory / "fleet.json").write_text('{"schema": "other"}')
    with pytest.raises(PlanError, match=r"fleet.json: not a fleet run's state"):
        plan.load(tmp_path / "res", "r1")
    with pytest.raises(PlanError, match=r"run id '\.\./x': use letters"):
        plan.load(tmp_path / "res", "../x")


def test_a_results_directory_that_cannot_be_written_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    assert plan.writable_problem(tmp_path / "file" / "sub") == f"{tmp_path / 'file'} is not a directory"
    assert plan.writable_problem(tmp_path / "new" / "dir") is None


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
mgs@tcp:/lfs /lustre lustre rw,localflock 0 0
mgs@tcp:/lfs2 /lustre2 lustre rw,flock 0 0
srv:/home /home nfs4 rw,vers=4.2 0 0
srv:/old /old nfs rw,vers=3,nolock 0 0
srv:/sp /with\\040space nfs4 rw 0 0
"""


def test_the_mount_of_a_directory_and_its_lock_warnings():
    mounts = shared.parse_mounts(MOUNTS)
    assert shared.mount_of(Path("/lustre/a/b"), mounts).point == "/lustre"
    assert shared.mount_of(Path("/lustre2"), mounts).options >= {"flock"}
    assert shared.mount_of(Path("/with space/x"), mounts).fstype == "nfs4"
    assert shared.mount_of(Path("/tmp"), mounts).point == "/"
    lustre = shared.lock_warning(shared.mount_of(Path("/lustre/x"), mounts))
    assert lustre == "Lustre at /lustre locks only within each client (localflock): mount it with -o flock for " \
                     "baselines saved from several nodes"
    assert shared.lock_warning(shared.mount_of(Path("/lustre2/x"), mounts)) is None
    assert shared.lock_warning(shared.mount_of(Path("/home/x"), mounts)) is None
    assert "nolock" in shared.lock_warning(shared.mount_of(Path("/old/x"), mounts))


def test_a_local_results_directory_is_flagged_only_when_nodes_are_other_hosts():
    root = shared.Mount("/", "ext4", frozenset())
    assert shared.shared_warning(root, ["localhost", "vm"], here={"localhost", "vm"}) is None
    text = shared.shared_warning(root, ["board1", "board2", "localhost"], here={"localhost"})
    assert text == "the results directory is on a local file system (ext4 at /) and 2 node host(s) are other " \
                   "machines (board1, board2): give a directory on a shared file system"
    assert shared.shared_warning(shared.Mount("/home", "nfs4", frozenset()), ["board1"], here=set()) is None


def test_a_lock_on_a_file_system_without_flock_names_the_file_and_the_remedy(tmp_path, monkeypatch):
    import errno
    import fcntl

    from pytest_llmperf import fileutil

    def refuse(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(fileutil.LockUnsupported) as info, fileutil.exclusive_lock(tmp_path / ".lock"):
        pass
    assert str(info.value) == (f"cannot lock {tmp_path / '.lock'}: its file system refuses flock (Function not "
                               "implemented); mount Lustre with -o flock, and NFSv3 with lockd running (not nolock)")


# ------------------------------------------------------------------------- gathering, rendering


def verdict(test, metric, status, current, change=None, unit="tok/s"):
    return {"test": test, "metric": metric, "status": status, "unit": unit, "higher_is_better": True,
            "tolerance": 0.05, "current": current, "baseline": None, "change": change, "reason": "",
            "reference": "saved", "details": {}}


def run_json(node, rows):
    """A run JSON of tests ``rows``: [(nodeid, tok/s, status, change)]."""
    tests = [{"nodeid": t, "params": {}, "metrics": {"peak_rss": {"unit": "MiB", "gate": False, "summary": {"median": 38.7}},
                                                     "tok_per_s": {"unit": "tok/s", "summary": {"median": v}}}}
             for t, v, _s, _c in rows]
    # the ungated metric comes first: the headline is the first gated one
    verdicts = [verdict(t, "tok_per_s", s, v, c) for t, v, s, c in rows]
    verdicts += [verdict(t, "peak_rss", "info", 38.7, unit="MiB") for t, *_ in rows]
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    return {"node": node, "schema": "pytest-llmperf-run", "schema_version": 1, "counts": counts, "tests": tests,
            "verdicts": verdicts, "missing": [], "saved_baselines": []}


def attempt(run, job, data=None, text=None, exit_code=0, output="1 passed in 3.00s\n"):
    d = run.attempt_dir(job)
    d.mkdir(parents=True, exist_ok=True)
    (d / "started").write_text(f"{job.job_id} {job.node} 0\n")
    (d / "exit").write_text(f"{exit_code}\n")
    if data is not None or text is not None:
        (d / "run.json").write_text(text if text is not None else json.dumps(data))
    run.output_path(job).write_text(output)


A, B = "suites/test_llama2c.py::test_run[260K-O3-t1]", "suites/test_llama2c.py::test_run[260K-Ofast-t1]"


def test_nodes_are_ok_regressed_or_failed_with_a_reason_and_failed_first(tmp_path):
    jobs = [Job("sifive-1", "mcimone-nodes", "11", ["11"], "COMPLETED", 0, run_time=30.0),
            Job("milkv-1", "mcimone-milkvs", "12", ["12"], "FAILED", 1, "NonZeroExitCode", run_time=31.0),
            Job("milkv-2", "mcimone-milkvs", "13", ["13"], "FAILED", 1, "NonZeroExitCode", run_time=5.0),
            Job("milkv-3", "mcimone-milkvs", "14", ["14"], "TIMEOUT", 0, "TimeLimit", run_time=60.0),
            Job("milkv-4", "mcimone-milkvs", "15", ["15"], "COMPLETED", 0),
            Job("milkv-5", "mcimone-milkvs", None, [], "NOT_SUBMITTED", None, "sbatch refused it: sbatch: error: x")]
    run = _run(tmp_path, jobs)
    attempt(run, jobs[0], run_json("sifive-1", [(A, 6710.3, "ok", 0.01), (B, 12649.0, "ok", -0.002)]))
    attempt(run, jobs[1], run_json("milkv-1", [(A, 5900.0, "regressed", -0.121), (B, 12600.0, "ok", 0.0)]),
            exit_code=1)
    attempt(run, jobs[2], run_json("milkv-2", [(A, 6700.0, "ok", 0.0)]), exit_code=1,
            output="E   assert False\n1 failed, 1 passed in 5.00s\n")
    attempt(run, jobs[3], output="slurmstepd: error: *** JOB 14 ON milkv-3 CANCELLED DUE TO TIME LIMIT ***\n")
    attempt(run, jobs[4], text='{"node": "milkv-4", "tests": [')
    results = gather.gather(run)
    by = {r.node: r for r in results}
    assert [r.node for r in results] == ["milkv-2", "milkv-3", "milkv-4", "milkv-5", "milkv-1", "sifive-1"]
    assert by["sifive-1"].status == "ok" and by["sifive-1"].wall == 30.0
    assert (by["milkv-1"].status, by["milkv-1"].reason) == ("regressed", "1 regressed metric(s)")
    assert by["milkv-2"].reason == "job 13: pytest exit status 1; output ends: E   assert False | 1 failed, 1 passed in 5.00s"
    assert by["milkv-3"].reason == ("job 14 TIMEOUT: TimeLimit; output ends: slurmstepd: error: *** JOB 14 ON "
                                    "milkv-3 CANCELLED DUE TO TIME LIMIT ***")
    assert by["milkv-4"].status == "failed" and by["milkv-4"].reason.startswith(
        f"job 15 COMPLETED, but its run JSON {run.directory}/milkv-4/15/run.json is truncated JSON")
    assert by["milkv-5"].reason == "sbatch refused it: sbatch: error: x"
    assert gather.exit_status(results) == 1
    assert gather.exit_status([by["sifive-1"]]) == 0
    # the headline is the first gated metric, and the regressed row comes first
    assert by["milkv-1"].cells[A] == gather.Cell("tok_per_s", "tok/s", 5900.0, "regressed", -0.121)
    assert gather.tests_of(results) == [A, B]


def test_a_job_that_left_nothing_in_the_results_directory_points_at_the_shared_file_system(tmp_path):
    job = Job("n1", "p", "21", ["21"], "COMPLETED", 0)
    run = _run(tmp_path, [job])
    run.node_dir("n1").mkdir(parents=True)
    (r,) = gather.gather(run)
    assert r.status == "failed" and r.reason == (
        f"job 21 COMPLETED, but it wrote no run JSON; nothing of the job is in {run.node_dir('n1')}: is the results "
        "directory on a file system shared with the node?")


def test_the_terminal_report_fits_the_width_by_splitting_the_node_columns(tmp_path):
    jobs = [Job(f"node-{i:02d}", "p", str(100 + i), [str(100 + i)], "COMPLETED", 0, run_time=20.0 + i)
            for i in range(12)]
    run = _run(tmp_path, jobs)
    for i, job in enumerate(jobs):
        rows = [(A, 6000.0 + i, "regressed" if i == 3 else "ok", -0.2 if i == 3 else 0.001), (B, 12000.0 + i, "ok", 0.0)]
        attempt(run, job, run_json(job.node, rows))
    results = gather.gather(run)
    text = render.terminal(run, results, width=100)
    assert all(len(line) <= 100 for line in text.splitlines()), max(text.splitlines(), key=len)
    assert text.splitlines()[0] == "pytest-llmperf fleet run r1: 12 nodes: 11 ok, 1 regressed, 0 failed"
    assert "headline metric: tok_per_s (tok/s); regressed rows first" in text
    assert "  node-03: regressed: 1 regressed metric(s)" in text
    # every node's column is in some table, the regressed node's first
    tables = text.split("headline metric")[1]
    assert all(f"node-{i:02d}" in tables for i in range(12))
    assert tables.index("node-03") < tables.index("node-00")
    assert "6,003 -20.0% regressed" in tables
    md = render.markdown(run, results)
    assert md.startswith("<!-- pytest-llmperf-fleet run=r1 -->")
    assert "| `suites/test_llama2c.py::test_run[260K-O3-t1]` | 6,003 -20.0% regressed |" in md
    data = render.to_json(run, results)
    assert data["exit_status"] == 1 and data["nodes"][0]["node"] == "node-03"
    assert data["matrix"][A]["node-03"] == {"metric": "tok_per_s", "unit": "tok/s", "value": 6003.0,
                                            "status": "regressed", "change": -0.2}
    paths = render.write_all(run, results, run.directory, 100)
    page = paths["html"].read_text()
    assert "<h2>fleet</h2>" in page and "node-03" in page and page.count("<h2 id=\"node-") == 12
    assert json.loads(paths["json"].read_text()) == data
