"""A real SLURM cluster on this one machine, for the fleet's tests and bench scripts: one slurmctld
and one slurmd per node (``slurmd -N NAME``; each node has ``NodeHostname=localhost`` and a port of
its own), from Debian's slurm-wlm and munge packages. Root is needed (slurmd runs jobs as their
user). No accounting daemon: finished jobs stay visible to ``scontrol show job`` for MinJobAge.

    with Cluster(tmp_path, {"mcimone-nodes": ["sifive-1"], "mcimone-milkvs": ["milkv-1"]}) as c:
        c.run("sinfo")                      # c.env holds SLURM_CONF for the caller's subprocesses

By hand: ``python3 tests/slurm_cluster.py start --dir D --nodes sifive-1:mcimone-nodes,milkv-1:mcimone-milkvs``
prints the ``export SLURM_CONF=...`` line; ``python3 tests/slurm_cluster.py stop --dir D`` stops it.

munged is started when it is not running and left running at stop (another cluster may use it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel", "munged", "munge")
KEY = Path("/etc/munge/munge.key")
SOCKET_DIR = Path("/run/munge")


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [t for t in TOOLS if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "not root (slurmd must run as root to start jobs)"
    return None


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _which(tool: str) -> str:
    return shutil.which(tool) or str(Path("/usr/sbin", tool))


def munge_running() -> bool:
    try:
        enc = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=10)
        if enc.returncode != 0:
            return False
        dec = subprocess.run([_which("unmunge")], input=enc.stdout, capture_output=True, timeout=10)
        return dec.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_munge() -> None:
    """munged with a key (made from /dev/urandom when there is none), as the munge user."""
    if munge_running():
        return
    import pwd

    user = pwd.getpwnam("munge")
    if not KEY.exists():
        KEY.parent.mkdir(parents=True, exist_ok=True)
        KEY.write_bytes(os.urandom(1024))
    os.chown(KEY, user.pw_uid, user.pw_gid)
    os.chmod(KEY, 0o400)
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    os.chown(SOCKET_DIR, user.pw_uid, user.pw_gid)
    os.chmod(SOCKET_DIR, 0o755)
    subprocess.run(["runuser", "-u", "munge", "--", _which("munged")], check=True, timeout=30)
    deadline = time.monotonic() + 15
    while not munge_running():
        if time.monotonic() > deadline:
            raise RuntimeError("munged did not start (see /var/log/munge/munged.log)")
        time.sleep(0.1)


def stop_munge() -> int:
    """Stop munged (its pid file), for .ci/run once the tests are done."""
    pidfile = Path("/run/munge/munged.pid")
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return 0
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return 0


class Cluster:
    """slurmctld and a slurmd per node under ``root`` (conf, state, spool, logs, pids)."""

    def __init__(self, root: Path, partitions: Mapping[str, Sequence[str]], cpus: int = 1,
                 extra_conf: str = "") -> None:
        self.root = Path(root)
        self.partitions = {p: list(ns) for p, ns in partitions.items()}
        self.nodes = list(dict.fromkeys(n for ns in self.partitions.values() for n in ns))
        self.cpus = cpus
        self.extra_conf = extra_conf
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.ctld_port = 0
        self.started = False

    def _write_conf(self) -> None:
        ports = _free_ports(1 + len(self.nodes))
        self.ctld_port = ports[0]
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        lines = [
            "ClusterName=llmperf-test",
            f"SlurmctldHost={socket.gethostname().split('.')[0]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # no cgroups in a container: processes tracked by their parent, no task binding
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            # a node set DOWN by hand stays DOWN (the tests need it to); one that stopped answering returns
            "ReturnToService=1",
            f"SlurmctldPort={self.ctld_port}",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd-%n.pid",
            "MpiDefault=none",
            # no accounting daemon: finished jobs stay in the controller (scontrol show job) for an hour
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MinJobAge=3600",
            # jobs start within a second or two, are killed promptly, and a lost node is noticed soon
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_min_interval=200000",
            "KillWait=2",
            "OverTimeLimit=0",
            "InactiveLimit=0",
            "SlurmdTimeout=30",
            "SlurmctldTimeout=30",
            "MessageTimeout=10",
            # a node's CPUs as configured, whatever the host has (8 one-CPU nodes on a 2-CPU machine)
            "SlurmdParameters=config_overrides",
        ]
        for node, port in zip(self.nodes, ports[1:]):
            lines.append(f"NodeName={node} NodeHostname=localhost Port={port} CPUs={self.cpus} State=UNKNOWN")
        for i, (p, ns) in enumerate(self.partitions.items()):
            lines.append(f"PartitionName={p} Nodes={','.join(ns)} Default={'YES' if i == 0 else 'NO'} "
                         "MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n" + self.extra_conf + "\n")

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_which(argv[0]), *argv[1:]], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def _logs(self) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-5:]
            out.append(f"{path.name}: " + " | ".join(lines))
        return "\n".join(out)

    def start(self, timeout: float = 60.0) -> None:
        start_munge()
        self._write_conf()
        self.started = True
        try:
            subprocess.run([_which("slurmctld"), "-f", str(self.conf)], env=self.env, check=True, timeout=30)
            for node in self.nodes:
                subprocess.run([_which("slurmd"), "-f", str(self.conf), "-N", node], env=self.env, check=True,
                               timeout=30)
            deadline = time.monotonic() + timeout
            while True:
                out = self.run("sinfo", "--noheader", "--Node", "--format=%N|%T", check=False)
                states = dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)
                if len(states) == len(self.nodes) and all(s == "idle" for s in states.values()):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster did not come up in {timeout:g} s: sinfo says {states}; "
                                       f"logs:\n{self._logs()}")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise

    def _pids(self) -> list[int]:
        pids = []
        for path in self.root.glob("*.pid"):
            try:
                pids.append(int(path.read_text().strip()))
            except (OSError, ValueError):
                continue
        return pids

    def _steps(self) -> list[int]:
        """The processes of this cluster's jobs: slurmstepd and the job scripts and what they
        started, found by ``SLURM_CONF=<this cluster's conf>`` in their environment (slurmd passes
        its own to slurmstepd, sbatch the submitter's to the job)."""
        mark = f"SLURM_CONF={self.conf}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ:
                found.append(int(proc.name))
        return found

    def stop(self) -> None:
        """scontrol shutdown, then SIGKILL to what is left after 10 s (daemons and job steps)."""
        if not self.started:
            return
        try:
            jobs = self.run("squeue", "--noheader", "--format=%i", check=False, timeout=15).stdout.split()
            if jobs:
                self.run("scancel", *jobs, check=False, timeout=15)
            self.run("scontrol", "shutdown", check=False, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in self._pids()):
            time.sleep(0.2)
        for pid in self._pids() + self._steps():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.started = False

    def set_node_state(self, node: str, state: str, reason: str = "test") -> None:
        self.run("scontrol", "update", f"nodename={node}", f"state={state}", f"reason={reason}")

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="start or stop a SLURM cluster on this machine")
    p.add_argument("action", choices=["start", "stop", "munge-start", "munge-stop"])
    p.add_argument("--dir", type=Path, default=None, help="the cluster's directory (start, stop)")
    p.add_argument("--nodes", default="sifive-1:mcimone-nodes,milkv-1:mcimone-milkvs",
                   help="NODE:PARTITION,... (default the seed's two-board lab)")
    p.add_argument("--cpus", type=int, default=1)
    args = p.parse_args(argv)
    if args.action == "munge-start":
        start_munge()
        return 0
    if args.action == "munge-stop":
        return stop_munge()
    partitions: dict[str, list[str]] = {}
    for item in args.nodes.split(","):
        node, _, part = item.partition(":")
        partitions.setdefault(part or "debug", []).append(node)
    if args.dir is None:
        p.error("--dir is needed to start or stop a cluster")
    c = Cluster(args.dir, partitions, args.cpus)
    if args.action == "start":
        why = missing()
        if why:
            print(f"cannot start: {why}", file=sys.stderr)
            return 2
        c.start()
        print(f"export SLURM_CONF={c.conf}")
    else:
        c.started = True
        c.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
