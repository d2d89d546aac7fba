"""What a fleet run is: the nodes its command names, the job script each node runs, and the run's
state file, which makes a run resumable.

A results directory holds one directory per run id:

    RESULTS/RUN_ID/fleet.json           the state: command, sbatch arguments, a job per node
    RESULTS/RUN_ID/job.sh               the batch script (the same for every node)
    RESULTS/RUN_ID/NODE/JOB_ID.out      the job's output (sbatch --output)
    RESULTS/RUN_ID/NODE/JOB_ID/started  written by the job when it starts on its node
    RESULTS/RUN_ID/NODE/JOB_ID/run.json pytest's run JSON (--llmperf-json)
    RESULTS/RUN_ID/NODE/JOB_ID/exit     pytest's exit status
    RESULTS/RUN_ID/report.{txt,md,json,html}

An attempt's files are kept under its job id: a resumed run submits a new job for a node whose job
did not finish, and nothing of the old one is overwritten.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OneLine
from ..fileutil import atomic_write, nearest_existing
from ..node import validate_node_name
from .slurm import NodeInfo, unusable

SCHEMA = "pytest-llmperf-fleet-run"
SCHEMA_VERSION = 1
STATE_NAME = "fleet.json"
SCRIPT_NAME = "job.sh"
JOB_PREFIX = "llmperf-"
# options the fleet sets itself on every job's pytest command line
OWN_OPTIONS = ("--llmperf-node", "--llmperf-json")
# exit statuses of the job script before pytest runs (pytest's own are 0-5)
NO_DIR, NO_WORKDIR = 97, 98


class PlanError(OneLine, Exception):
    """A fleet command that cannot be carried out (exit status 2), one line."""


@dataclass
class Job:
    """One node's job of a run. ``state`` is SLURM's (PENDING ... COMPLETED, FAILED, TIMEOUT) or
    the fleet's own: NOT_SUBMITTED (sbatch refused), NODE_DOWN (cancelled: its node went down
    while it waited), UNKNOWN (gone from SLURM with no trace)."""

    node: str
    partition: str | None
    job_id: str | None = None
    attempts: list[str] = field(default_factory=list)
    state: str = "NEW"
    exit_code: int | None = None
    reason: str = ""
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    run_time: float | None = None


@dataclass
class Run:
    run_id: str
    mode: str  # run or save-baseline
    command: list[str]
    workdir: str
    sbatch: list[str]
    created: float
    jobs: list[Job]
    directory: Path = field(default=Path("."), repr=False)

    @property
    def job_name(self) -> str:
        return JOB_PREFIX + self.run_id

    def node_dir(self, node: str) -> Path:
        return self.directory / node

    def attempt_dir(self, job: Job) -> Path:
        return self.node_dir(job.node) / str(job.job_id)

    def output_path(self, job: Job) -> Path:
        return self.node_dir(job.node) / f"{job.job_id}.out"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("directory")
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **data}

    def save(self) -> None:
        atomic_write(self.directory / STATE_NAME, json.dumps(self.to_json(), indent=1) + "\n")


def new_run_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    try:
        return validate_node_name(run_id)
    except ValueError:
        raise PlanError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-'") from None


def load(results: Path, run_id: str) -> Run:
    """The state of run ``run_id`` in ``results``; PlanError naming the file."""
    path = results / check_run_id(run_id) / STATE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"no fleet run {run_id!r} in {results} ({path} does not exist)") from None
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read the fleet run's state: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise PlanError(f"{path}: not a fleet run's state (schema {SCHEMA!r})")
    try:
        jobs = [Job(**j) for j in data["jobs"]]
        return Run(run_id=data["run_id"], mode=data["mode"], command=list(data["command"]),
                   workdir=data["workdir"], sbatch=list(data["sbatch"]), created=data["created"], jobs=jobs,
                   directory=path.parent)
    except (KeyError, TypeError) as exc:
        raise PlanError(f"{path}: a fleet run's state with a bad field ({exc})") from None


def check_command(command: Sequence[str]) -> list[str]:
    """The pytest command after ``--``; PlanError when it sets what the fleet sets per job."""
    for arg in command:
        for own in OWN_OPTIONS:
            if arg == own or arg.startswith(own + "="):
                raise PlanError(f"the pytest command sets {own}: the fleet sets it for each job (the node from "
                                "SLURM, the run JSON in the results directory)")
    return list(command)


def targets(partitions: Sequence[str], nodelists: Sequence[list[str]], known: Mapping[str, NodeInfo]) -> list[Job]:
    """One job per node: every node of each ``--partition`` (submitted to that partition) and each
    node of each ``--nodelist`` (submitted to its first partition that was also named, else with
    no partition: SLURM's default, or the node's own when it has one). The union, in the order
    named. PlanError for an unknown partition or node."""
    by_partition: dict[str, list[str]] = {}
    for name, info in known.items():
        for p in info.partitions:
            by_partition.setdefault(p, []).append(name)
    jobs: dict[str, Job] = {}
    for p in partitions:
        if p not in by_partition:
            have = ", ".join(sorted(by_partition)) or "none"
            raise PlanError(f"--partition {p}: no such partition (SLURM has: {have})")
        for node in by_partition[p]:
            jobs.setdefault(node, Job(node, p))
    for nodes in nodelists:
        for node in nodes:
            if node not in known:
                raise PlanError(f"--nodelist: no such node {node!r} (sinfo does not list it)")
            own = known[node].partitions
            chosen = next((p for p in partitions if p in own), own[0] if len(own) == 1 else None)
            jobs.setdefault(node, Job(node, chosen))
    for node in jobs:
        try:
            validate_node_name(node)
        except ValueError as exc:
            raise PlanError(f"node {node!r}: cannot be a baseline directory: {exc}") from None
    if not jobs:
        raise PlanError("no node to run on: give --partition or --nodelist")
    return list(jobs.values())


def down_nodes(jobs: Sequence[Job], known: Mapping[str, NodeInfo]) -> list[str]:
    return [j.node for j in jobs if j.node in known and unusable(known[j.node].state)]


def script(run: Run) -> str:
    """The batch script: arguments NODE_DIR NODE COMMAND...; it records its start, runs the pytest
    command in the work directory with the node's name and run JSON added, and records the exit
    status (written to a temporary name and renamed: the gatherer never reads half of it)."""
    return "\n".join([
        "#!/bin/bash",
        "# written by pytest-llmperf fleet: one node's job of a fleet run",
        "# arguments: NODE_DIR NODE COMMAND...",
        'node_dir="$1"; node="$2"; shift 2',
        'out="$node_dir/$SLURM_JOB_ID"',
        f'mkdir -p "$out" || exit {NO_DIR}',
        'printf \'%s %s %s\\n\' "$SLURM_JOB_ID" "${SLURMD_NODENAME:-?}" "$(date +%s)" > "$out/started"',
        f"cd {shlex.quote(run.workdir)} || exit {NO_WORKDIR}",
        '"$@" --llmperf-node="$node" --llmperf-json="$out/run.json"',
        "rc=$?",
        'echo "$rc" > "$out/exit.tmp" && mv -f "$out/exit.tmp" "$out/exit"',
        'exit "$rc"',
        "",
    ])


def sbatch_args(run: Run, job: Job) -> list[str]:
    """sbatch's arguments for one node's job (before --parsable is added by Slurm.submit)."""
    args = [f"--job-name={run.job_name}", f"--nodelist={job.node}", f"--output={run.node_dir(job.node)}/%j.out",
            f"--chdir={run.workdir}"]
    if job.partition:
        args.append(f"--partition={job.partition}")
    args += run.sbatch
    return args + [str(run.directory / SCRIPT_NAME), str(run.node_dir(job.node)), job.node, *run.command]


def prepare(run: Run) -> None:
    """Create the run's directories and job script, and write its state; PlanError naming the
    directory that cannot be written."""
    try:
        for job in run.jobs:
            run.node_dir(job.node).mkdir(parents=True, exist_ok=True)
        path = run.directory / SCRIPT_NAME
        atomic_write(path, script(run))
        os.chmod(path, 0o755)
        run.save()
    except OSError as exc:
        raise PlanError(f"results directory {run.directory.parent}: cannot write: {exc.strerror or exc}") from None


def writable_problem(results: Path) -> str | None:
    """Why ``results`` cannot hold fleet runs, or None."""
    probe = nearest_existing(results)
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None
