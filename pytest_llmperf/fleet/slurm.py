"""SLURM's command-line tools, run and parsed: sbatch --parsable, squeue, scontrol, sacct, scancel,
sinfo. Only their machine-readable forms are read (a format string with ``|`` between fields,
``--parsable2``, ``scontrol -o``), never the human tables.

Finished jobs are read from ``scontrol show job -o`` while the controller still holds them
(MinJobAge, 300 s by default), else from ``sacct`` (when accounting is on), else the fleet falls back
to the exit status the job script wrote (plan.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import OneLine

# states of a job that has not ended (squeue --states=all shows the ended ones too)
LIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                  "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})
# node states (sinfo %T, lower case, with a suffix such as '*' for not responding) a job waits on in vain
NODE_UNUSABLE = ("down", "drain", "drained", "draining", "fail", "failing", "future", "inval", "unknown",
                 "power_down", "powered_down", "not_responding")

QUEUE_FORMAT = "%i|%T|%N|%n|%r|%j"  # %n: the nodes the job asked for (--nodelist)
NODES_FORMAT = "%N|%R|%T|%n|%E"


class SlurmError(OneLine, Exception):
    """SLURM cannot be used (not installed, controller unreachable) or refused a command; one line."""


@dataclass
class Live:
    """A job as squeue shows it."""

    job_id: str
    state: str
    nodes: str
    reason: str
    name: str
    requested: str = ""


@dataclass
class Ended:
    """A job's end as scontrol or sacct tells it: state (COMPLETED, FAILED, CANCELLED, TIMEOUT,
    NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE), exit code and signal, reason,
    run time in seconds where known."""

    state: str
    exit_code: int | None
    signal: int | None
    reason: str
    run_time: float | None
    source: str  # scontrol or sacct


@dataclass
class NodeInfo:
    name: str
    partitions: list[str]
    state: str
    reason: str
    hostname: str = ""


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_sbatch(stdout: str) -> str:
    """The job id of ``sbatch --parsable``'s output: ``123`` or ``123;cluster``."""
    text = first_line(stdout)
    job_id = text.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise SlurmError(f"sbatch --parsable printed {text!r}, not a job id")
    return job_id


def parse_queue(stdout: str) -> dict[str, Live]:
    """``squeue --noheader --format=QUEUE_FORMAT`` lines by job id (a job name holding ``|`` is
    kept whole: it is the last field)."""
    jobs: dict[str, Live] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 5)
        if len(parts) != 6:
            raise SlurmError(f"squeue printed {line!r}, not {QUEUE_FORMAT!r}")
        job_id, state, nodes, requested, reason, name = (p.strip() for p in parts)
        jobs[job_id] = Live(job_id, state.split()[0].upper() if state else "", nodes, reason, name, requested)
    return jobs


_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def parse_keyvalues(line: str) -> dict[str, str]:
    """``scontrol show ... -o``'s one line of ``Key=value`` pairs. A value runs to the next
    `` Key=``; a value with spaces (a Reason, a Command) is kept whole."""
    found = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(line)
        out[match.group(1)] = line[match.end():end].strip()
    return out


def _seconds(text: str) -> float | None:
    """SLURM's ``[days-]hours:minutes:seconds`` (or ``minutes:seconds``) as seconds."""
    text = text.strip()
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        if not head.isdigit():
            return None
        days = int(head)
    parts = text.split(":")
    if not parts or not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return float(days * 86400 + seconds)


def _exit_pair(text: str) -> tuple[int | None, int | None]:
    code, _, sig = text.partition(":")
    return (int(code) if code.strip().isdigit() else None, int(sig) if sig.strip().isdigit() else None)


def parse_scontrol_job(stdout: str) -> Ended | None:
    """``scontrol show job -o ID``: the job's end, or None while it has not ended."""
    kv = parse_keyvalues(first_line(stdout))
    state = kv.get("JobState", "").split()[0].upper() if kv.get("JobState") else ""
    if not state or state in LIVE:
        return None
    code, sig = _exit_pair(kv.get("ExitCode", ""))
    return Ended(state, code, sig, kv.get("Reason", ""), _seconds(kv.get("RunTime", "")), "scontrol")


def parse_sacct(stdout: str, job_id: str) -> Ended | None:
    """``sacct -X --parsable2 --noheader --format=JobID,State,ExitCode,Elapsed,Reason -j ID``: the
    allocation's line (steps such as ``ID.batch`` are skipped), or None while it has not ended. A
    state such as ``CANCELLED by 0`` keeps its first word."""
    for line in stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 4 or parts[0] != job_id:
            continue
        state = parts[1].split()[0].upper() if parts[1].strip() else ""
        if not state or state in LIVE:
            return None
        code, sig = _exit_pair(parts[2])
        return Ended(state, code, sig, parts[4] if len(parts) > 4 else "", _seconds(parts[3]), "sacct")
    return None


def parse_nodes(stdout: str) -> dict[str, NodeInfo]:
    """``sinfo --noheader --Node --format=NODES_FORMAT``: a line per node and partition, merged."""
    nodes: dict[str, NodeInfo] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 4)
        if len(parts) != 5:
            raise SlurmError(f"sinfo printed {line!r}, not {NODES_FORMAT!r}")
        name, partition, state, hostname, reason = (p.strip() for p in parts)
        info = nodes.setdefault(name, NodeInfo(name, [], state.lower(), reason, hostname))
        if partition and partition not in info.partitions:
            info.partitions.append(partition)
    return nodes


def unusable(state: str) -> bool:
    """True for a node state a pending job waits on in vain (down, drained, failing...). sinfo's
    ``%T`` may carry a suffix (``down*``: not responding; ``idle~``: powered off) or join states
    with ``+`` (``idle+drain``)."""
    words = re.split(r"[+]", state.lower().rstrip("*~#!%$@^-"))
    return any(w.rstrip("*~#!%$@^-") in NODE_UNUSABLE for w in words)


class Slurm:
    """Runs the SLURM tools with ``env`` (SLURM_CONF and the like are the caller's environment)."""

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
        self.env = dict(os.environ if env is None else env)
        self.timeout = timeout

    def tool(self, name: str) -> str:
        path = shutil.which(name, path=self.env.get("PATH"))
        if path is None:
            raise SlurmError(f"SLURM is not installed here: {name} is not on PATH")
        return path

    def run(self, argv: Sequence[str], check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a SLURM tool; SlurmError with its first line of stderr when ``check`` and it fails."""
        exe = self.tool(argv[0])
        try:
            proc = subprocess.run([exe, *argv[1:]], env=self.env, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{argv[0]} did not answer within {self.timeout:g} s (is slurmctld up?)") from None
        if check and proc.returncode != 0:
            raise SlurmError(f"{argv[0]} failed (exit status {proc.returncode}): "
                             f"{first_line(proc.stderr) or first_line(proc.stdout) or 'no output'}")
        return proc

    def nodes(self) -> dict[str, NodeInfo]:
        """Every node with its partitions and state; SlurmError naming why SLURM is not reachable."""
        proc = self.run(["sinfo", "--noheader", "--Node", f"--format={NODES_FORMAT}"], check=False)
        if proc.returncode != 0:
            why = first_line(proc.stderr) or first_line(proc.stdout) or f"exit status {proc.returncode}"
            raise SlurmError(f"SLURM is not reachable: sinfo: {why}")
        return parse_nodes(proc.stdout)

    def node_states(self, names: Iterable[str]) -> dict[str, NodeInfo]:
        names = sorted(set(names))
        if not names:
            return {}
        proc = self.run(["sinfo", "--noheader", "--Node", f"--nodes={','.join(names)}", f"--format={NODES_FORMAT}"])
        return parse_nodes(proc.stdout)

    def expand(self, hostlist: str) -> list[str]:
        """A hostlist expression (``milkv-[1-4],sifive-1``) as node names (scontrol show hostnames)."""
        proc = self.run(["scontrol", "show", "hostnames", hostlist])
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def submit(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """``sbatch --parsable ARGS`` (not checked: the caller names the node of a rejection)."""
        return self.run(["sbatch", "--parsable", *args], check=False)

    def queue(self, name: str) -> dict[str, Live]:
        """This run's jobs (job name ``name``) that the controller holds, ended ones included."""
        proc = self.run(["squeue", "--noheader", "--states=all", f"--name={name}", f"--format={QUEUE_FORMAT}"])
        return parse_queue(proc.stdout)

    def ended(self, job_id: str) -> Ended | None:
        """How an ended job ended (scontrol, else sacct), or None when neither knows it (still
        running, or gone from the controller with accounting off)."""
        proc = self.run(["scontrol", "show", "job", "-o", job_id], check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return parse_scontrol_job(proc.stdout)
        proc = self.run(["sacct", "-X", "--parsable2", "--noheader", "--format=JobID,State,ExitCode,Elapsed,Reason",
                         "-j", job_id], check=False)
        if proc.returncode == 0:
            return parse_sacct(proc.stdout, job_id)
        return None

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = sorted(set(job_ids), key=int)
        if ids:
            self.run(["scancel", *ids], check=False)
