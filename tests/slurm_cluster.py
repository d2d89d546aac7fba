"""A real SLURM cluster on this one machine, for the tests and bench scripts: one slurmctld and one
slurmd per node (``slurmd -N NAME``: every node has ``NodeHostname=localhost`` and a port of its
own), from Debian's slurm-wlm and munge packages. Root is needed (slurmd starts the jobs as their
user). There is no accounting daemon: ``sacct`` says "Slurm accounting storage is disabled" (exit
1), and finished jobs stay visible to ``squeue --states=all`` and ``scontrol show job`` for
MinJobAge (an hour).

    with Cluster(tmp_path, {"mcimone-nodes": ["sifive-1"], "mcimone-milkvs": ["milkv-1"]}) as c:
        c.run("sinfo")          # c.env (os.environ + SLURM_CONF) is for the caller's subprocesses

By hand::

    python3 tests/slurm_cluster.py start --dir D --nodes sifive-1:mcimone-nodes,milkv-1:mcimone-milkvs
    export SLURM_CONF=D/slurm.conf         # what start prints
    python3 tests/slurm_cluster.py stop --dir D

munged is started when it is not running, and left running by ``stop`` (another cluster, or the
machine's own SLURM, may be using it); ``munge-stop`` stops it (``.ci/run`` does, at its end, when
it started it).

Timings on a 2-CPU machine: ``start`` takes 0.1-0.3 s for 2 or 8 nodes; ``stop`` 0.1-0.3 s, up to
5 s while a job ignores its SIGTERM (KillWait). A submitted job starts within about a second (the
backfill scheduler runs every second). Jobs that the backfill scheduler started without a --time
show ``TimeLimit=365-00:00:00`` (its stand-in for the partition's INFINITE), others ``UNLIMITED``.
Time limits are whole minutes (``--time=0:05`` is one minute), and the controller looks for jobs
over their limit every 30 s (a period fixed in its code): a job with ``--time=1`` reaches TIMEOUT
60-90 s after it started. The quickest TIMEOUT is ``scontrol update jobid=N timelimit=0`` on the
running job: TIMEOUT at the next 30 s check (0-30 s; then SIGTERM, SIGKILL KillWait=2 s later).
A node set DOWN stays DOWN until RESUME; right after RESUME sinfo shows it ``idle*`` for about a
second (not responding until the controller has pinged it).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
MUNGE_TOOLS = ("munged", "munge", "unmunge")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
# root's daemons live in sbin, which a plain user's PATH (or a test's trimmed one) may lack
SBIN = (Path("/usr/sbin"), Path("/sbin"), Path("/usr/local/sbin"))
# the processes of a cluster, by their name (/proc/PID/comm): slurmctld's slurmscriptd keeps its name
SLURM_COMMS = {"slurmctld", "slurmd", "slurmstepd", "slurmscriptd"}
STOP_WAIT = 10.0  # how long stop() lets the daemons exit on their own before SIGKILL


def tool(name: str) -> str | None:
    """The path of a SLURM or munge program, looked for on PATH and in the sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        if (d / name).is_file() and os.access(d / name, os.X_OK):
            return str(d / name)
    return None


def missing() -> str | None:
    """Why a SLURM cluster cannot be started here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform}): the cluster helper reads /proc"
    absent = [t for t in (*DAEMONS, *CLIENTS, *MUNGE_TOOLS) if tool(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "not root (slurmd must run as root to start the jobs)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (apt-get install munge)"
    return None


# ---------------------------------------------------------------------------------------- munge


def munge_running(timeout: float = 10) -> bool:
    """Whether a munged answers on the default socket (a credential made and decoded)."""
    munge, unmunge = tool("munge"), tool("unmunge")
    if munge is None or unmunge is None:
        return False
    try:
        cred = subprocess.run([munge, "-n"], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if cred.returncode != 0:
            return False
        back = subprocess.run([unmunge], input=cred.stdout, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return back.returncode == 0


def start_munge(timeout: float = 15) -> bool:
    """Start munged, as the munge user, unless one runs already; True when this call started it.

    The key (/etc/munge/munge.key) is made from /dev/urandom when there is none: 1024 bytes, owned
    by munge, mode 0400. munged is started directly (no systemd in a container): it forks into
    the background itself and refuses a key, socket or log directory that others could write."""
    if munge_running():
        return False
    munged = tool("munged")
    if munged is None:
        raise RuntimeError("munged is not installed (apt-get install munge)")
    user = pwd.getpwnam("munge")
    # the directories munged insists on: owned by munge and not writable by others
    for path, mode in ((MUNGE_KEY.parent, 0o700), (MUNGE_RUN, 0o755), (Path("/var/lib/munge"), 0o711),
                       (Path("/var/log/munge"), 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, mode)
    if not MUNGE_KEY.exists():
        fd = os.open(MUNGE_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as key:
            key.write(os.urandom(1024))
    os.chown(MUNGE_KEY, user.pw_uid, user.pw_gid)
    os.chmod(MUNGE_KEY, 0o400)
    out = subprocess.run([munged], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    deadline = time.monotonic() + timeout
    while not munge_running():
        if time.monotonic() > deadline:
            raise RuntimeError(f"munged did not start (exit {out.returncode}): {out.stderr.strip()} "
                               f"{_tail(Path('/var/log/munge/munged.log'), 5)}")
        time.sleep(0.1)
    return True


def stop_munge(timeout: float = 10) -> None:
    """Stop the munged of the default socket (by its pid file); nothing when none runs."""
    try:
        pid = int((MUNGE_RUN / "munged.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


# -------------------------------------------------------------------------------------- cluster


class SlurmCommandError(subprocess.CalledProcessError):
    """A SLURM command that failed: CalledProcessError whose message holds the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()} stdout: {str(self.stdout).strip()!r} stderr: {str(self.stderr).strip()!r}"


class _PortTaken(Exception):
    """A daemon of the cluster could not bind its port."""


class Cluster:
    """slurmctld and one slurmd per node; everything (conf, state, spool, logs, pids) under ``root``.

    ``partitions`` maps a partition's name to its nodes' names (a node may be in several); the first
    partition is the default one. Every node has ``cpus`` CPUs, whatever the machine has.
    ``extra_conf`` is appended to slurm.conf (a later line overrides an earlier one)."""

    def __init__(self, root: Path, partitions: Mapping[str, Sequence[str]], cpus: int = 1,
                 extra_conf: str = "") -> None:
        self.root: Path = Path(root).absolute()
        self.partitions: dict[str, list[str]] = {p: list(nodes) for p, nodes in partitions.items()}
        self.nodes: list[str] = list(dict.fromkeys(n for nodes in self.partitions.values() for n in nodes))
        self.cpus = cpus
        self.extra_conf = extra_conf
        self.conf: Path = self.root / "slurm.conf"
        self.env: dict[str, str] = dict(os.environ, SLURM_CONF=str(self.conf))
        self.ctld_port = 0
        self.node_ports: dict[str, int] = {}
        self.started = False

    # -- slurm.conf

    def _write_conf(self) -> None:
        ports = _free_ports(1 + len(self.nodes))
        self.ctld_port = ports[0]
        self.node_ports = dict(zip(self.nodes, ports[1:]))
        r = self.root
        host = socket.gethostname().split(".")[0]
        lines = [
            "ClusterName=llmperf-test",
            # slurmctld runs only where its name is the short host name; the address in brackets
            # is where the commands and slurmd reach it, whatever the name resolves to (or not)
            f"SlurmctldHost={host}(127.0.0.1)",
            # a port of the controller's and one per node, free when start() chose them: two
            # clusters at once (or the leftover of a killed one) do not collide
            f"SlurmctldPort={self.ctld_port}",
            # the daemons run as root: no slurm user must own the state; slurmd (root) starts each
            # job as its submitter
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # no cgroups in a container: a job's processes are tracked by their parentage, not bound
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            # whole cores are allocated: a one-CPU node runs one job at a time
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            # a node set DOWN by hand stays DOWN until RESUME (the tests rely on it); with
            # ReturnToService=2 it would be back at its slurmd's next registration (a reconfigure,
            # a restart, the controller's occasional request). A node DOWN for not answering comes
            # back when its slurmd answers again
            "ReturnToService=1",
            # a node's CPUs as configured, whatever the machine has (8 one-CPU nodes on a 2-CPU
            # machine are accepted anyway; more CPUs than the machine's would drain the node)
            "SlurmdParameters=config_overrides",
            # all the state, spool, logs and pids of this cluster under its root; %n: per node
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd-%n.pid",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # no accounting daemon: finished jobs stay in the controller (squeue --states=all,
            # scontrol show job) for an hour instead of the default 300 s
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MinJobAge=3600",
            "MailProg=/bin/true",
            # jobs start within about a second of sbatch. sbatch only queues a job; the main
            # scheduler runs from the controller's once-a-second loop, but waits batch_sched_delay
            # (3 s) after the previous run, and reads batch_sched_delay=0 only on its first run,
            # 3 s after the start. The backfill scheduler, every bf_interval=1 s from the start on,
            # starts jobs too (scontrol show job says Scheduler=Backfill or Main)
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
            # a job over its time limit (checked every 30 s) or cancelled gets SIGKILL KillWait
            # seconds after its SIGTERM (default 30); no grace minutes over the limit
            "KillWait=2",
            "OverTimeLimit=0",
            # an srun or salloc whose client stopped answering is not cancelled for it
            "InactiveLimit=0",
            # a slurmd that died is noticed (its node DOWN) within 30 s (default 300); there is no
            # backup controller for SlurmctldTimeout to matter to; replies wait 10 s on a slow machine
            "SlurmdTimeout=30",
            "SlurmctldTimeout=30",
            "MessageTimeout=10",
        ]
        for node, port in self.node_ports.items():
            lines.append(f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
                         f"CPUs={self.cpus} State=UNKNOWN")
        for i, (name, nodes) in enumerate(self.partitions.items()):
            lines.append(f"PartitionName={name} Nodes={','.join(nodes)} Default={'YES' if i == 0 else 'NO'} "
                         "MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n" + self.extra_conf + "\n")

    # -- commands

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A SLURM command (or any program) with this cluster's environment; its output as text.
        With ``check``, a failure raises SlurmCommandError (a CalledProcessError naming stderr)."""
        if not argv:
            raise ValueError("run() needs a command")
        out = subprocess.run([tool(argv[0]) or argv[0], *argv[1:]], env=self.env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise SlurmCommandError(out.returncode, list(argv), out.stdout, out.stderr)
        return out

    def set_node_state(self, node: str, state: str, reason: str = "test") -> None:
        """``scontrol update nodename=NODE state=STATE reason=REASON``: DOWN, DRAIN (both need the
        reason), RESUME, ... The controller takes it at once; a resumed node shows as ``idle*`` (not
        responding) for about a second, until the controller has pinged its slurmd."""
        self.run("scontrol", "update", f"nodename={node}", f"state={state}", f"reason={reason}")

    def node_states(self) -> dict[str, str]:
        """Every node's state as sinfo names it (idle, allocated, down*, drained, ...)."""
        try:
            out = self.run("sinfo", "--noheader", "--Node", "--format=%N|%T", check=False, timeout=5)
        except subprocess.TimeoutExpired:
            return {}
        return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)

    # -- start and stop

    def start(self, timeout: float = 60.0) -> None:
        """munged (unless it runs), slurmctld, a slurmd per node; back when sinfo shows every node
        idle. On a failure: RuntimeError with the tails of the logs, what was started stopped."""
        if self.started:
            raise RuntimeError(f"the cluster in {self.root} is started already")
        why = missing()
        if why is not None:
            raise RuntimeError(f"cannot start a SLURM cluster: {why}")
        if not self.nodes:
            raise ValueError("a cluster needs at least one node")
        start_munge()
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            try:
                self._start(deadline, timeout)
                return
            except _PortTaken:
                # a port chosen free was taken before the daemon bound it: again, with new ports
                self.stop()
                if attempt == 2:
                    raise RuntimeError(f"the SLURM cluster in {self.root}: its ports were taken three "
                                       f"times\n{self.logs()}") from None
            except BaseException:
                self.stop()
                raise

    def _start(self, deadline: float, timeout: float) -> None:
        # a fresh cluster: what a previous one in this directory left (its daemons, jobs, saved
        # state with its jobs and node states, spool, logs) is gone first
        self._kill(self._processes())
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ("state", "spool", "log"):
            shutil.rmtree(self.root / name, ignore_errors=True)
            (self.root / name).mkdir()
        for pidfile in self.root.glob("*.pid"):
            pidfile.unlink(missing_ok=True)
        self._write_conf()
        self.started = True
        began = time.monotonic()
        self._daemon("slurmctld", [tool("slurmctld") or "slurmctld", "-f", str(self.conf)])
        for node in self.nodes:
            self._daemon(f"slurmd-{node}", [tool("slurmd") or "slurmd", "-f", str(self.conf), "-N", node])
        while True:
            # a daemon that found its port taken dies ("fatal: ... Address already in use")
            fatal = self._fatal()
            if any("Address already in use" in line for line in fatal):
                raise _PortTaken()
            states = self.node_states()
            if len(states) == len(self.nodes) and all(s == "idle" for s in states.values()):
                return
            # a node the controller refused (INVAL: more CPUs configured than slurmd found,
            # without config_overrides) or a daemon that died will not come up: say so now
            refused = {n: s for n, s in states.items() if s.startswith(("inval", "drain"))}
            dead = [name for name in ("slurmctld", *(f"slurmd-{n}" for n in self.nodes))
                    if not _alive(_read_pid(self.root / f"{name}.pid"))]
            if fatal or refused or (dead and time.monotonic() - began > 3) or time.monotonic() > deadline:
                why = ("; ".join(fatal) if fatal else f"nodes refused: {refused}" if refused
                       else f"{', '.join(dead)} not running" if dead else f"not up in {timeout:g} s")
                raise RuntimeError(f"the SLURM cluster in {self.root}: {why}; sinfo says {states}\n"
                                   f"{self.logs()}")
            time.sleep(0.1)

    def _fatal(self) -> list[str]:
        """The daemons' fatal errors (each is its last word) in their logs."""
        found = []
        for path in sorted((self.root / "log").glob("*")):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            found += [f"{path.stem}: {line.strip()}" for line in text.splitlines() if "fatal:" in line]
        return found

    def _daemon(self, name: str, argv: list[str]) -> None:
        """Start a SLURM daemon, which forks into the background itself; its early complaints
        (before it has its log file) go to log/NAME.out."""
        with open(self.root / "log" / f"{name}.out", "w") as out:
            done = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=30, start_new_session=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed (exit {done.returncode})\n{self.logs()}")

    def logs(self, lines: int = 8) -> str:
        """The last lines of each of the cluster's logs, for error messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = _tail(path, lines)
            if text:
                parts.append(f"--- {path.name}:\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel the jobs, ``scontrol shutdown``, SIGKILL to whatever of this cluster is left after
        about 10 s (daemons, slurmstepd, the jobs' processes, also those that left their job's
        process tree). Idempotent; never raises. munged stays (another cluster may use it)."""
        try:
            if not self.started and not self._processes():
                return
            if self._named("slurmctld"):
                try:
                    jobs = self.run("squeue", "--noheader", "--format=%i", check=False, timeout=10).stdout.split()
                    if jobs:
                        self.run("scancel", *jobs, check=False, timeout=10)
                        # the jobs end soon after their SIGTERM, or their SIGKILL KillWait later
                        # (5 s in all for a job that ignores SIGTERM): a shutdown first would leave
                        # them running under their slurmstepd, which the shutdown does not stop
                        _wait(lambda: not self._named("slurmstepd"), 8)
                    self.run("scontrol", "shutdown", check=False, timeout=10)
                except (OSError, subprocess.SubprocessError):
                    pass
                _wait(lambda: not self._named("slurmctld", "slurmscriptd", "slurmd"), STOP_WAIT)
            # without a controller (it died, or never started) there is nobody to ask: the rest is killed
            self._kill(self._processes())
        except Exception:  # stop() runs on the way out of failed tests: it must not hide their error
            try:
                self._kill(self._processes())
            except Exception:
                pass
        finally:
            self.started = False

    def _processes(self, table: dict[int, tuple[int, str, bytes, list[bytes]]] | None = None) -> list[int]:
        """This cluster's processes: its daemons and slurmstepd (their command line or environment
        names this slurm.conf), the processes of its jobs (SLURM_JOB_ID and this SLURM_CONF in their
        environment), and every descendant of those. Never this process or its ancestors."""
        conf = str(self.conf).encode()
        mark = b"SLURM_CONF=" + conf
        if table is None:
            table = _process_table()
        roots = []
        for pid, (_, comm, cmdline, environ) in table.items():
            is_slurm = comm in SLURM_COMMS and (conf in cmdline.split(b"\0") or mark in environ)
            is_job = mark in environ and any(e.startswith(b"SLURM_JOB_ID=") for e in environ)
            if is_slurm or is_job:
                roots.append(pid)
        found = _descendants(roots, {pid: row[0] for pid, row in table.items()})
        return sorted(pid for pid in found - _ancestors(os.getpid()) if pid in table)

    def _named(self, *comms: str) -> list[int]:
        """This cluster's processes of these names (slurmctld, slurmd, slurmstepd, ...)."""
        table = _process_table()
        return [pid for pid in self._processes(table) if table[pid][1] in comms]

    def _kill(self, pids: Iterable[int]) -> None:
        pids = list(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _wait(lambda: not any(_alive(p) for p in pids), 5)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


# ------------------------------------------------------------------------------------- helpers


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on this machine now (bound together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _process_table() -> dict[int, tuple[int, str, bytes, list[bytes]]]:
    """pid -> (parent pid, name, command line, environment) of every process readable in /proc."""
    table: dict[int, tuple[int, str, bytes, list[bytes]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # "PID (NAME) STATE PPID ...": NAME may hold spaces and brackets
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (ppid, comm, cmdline, environ)
    return table


def _descendants(roots: Iterable[int], parents: Mapping[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return seen


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (a daemon that exited, not yet reaped) is not alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


# ---------------------------------------------------------------------------------------- main


def _parse_nodes(spec: str) -> dict[str, list[str]]:
    partitions: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        node, _, partition = item.partition(":")
        partitions.setdefault(partition or "debug", []).append(node)
    return partitions


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start or stop a SLURM cluster (slurmctld and a slurmd per node) "
                                            "on this machine, or munged alone.")
    p.add_argument("action", choices=["start", "stop", "munge-start", "munge-stop"])
    p.add_argument("--dir", type=Path, help="the cluster's directory: slurm.conf, state, logs (start, stop)")
    p.add_argument("--nodes", default="sifive-1:mcimone-nodes,milkv-1:mcimone-milkvs",
                   help="NODE:PARTITION,... (a node without a partition goes to 'debug'); "
                        "default: %(default)s")
    p.add_argument("--cpus", type=int, default=1, help="CPUs of every node (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds start waits for the nodes (default 60)")
    args = p.parse_args(argv)
    if args.action == "munge-start":
        why = missing()
        if why is not None:
            print(f"cannot start munged: {why}", file=sys.stderr)
            return 2
        start_munge()
        return 0
    if args.action == "munge-stop":
        stop_munge()
        return 0
    if args.dir is None:
        p.error(f"{args.action} needs --dir")
    cluster = Cluster(args.dir, _parse_nodes(args.nodes), args.cpus)
    if args.action == "start":
        try:
            cluster.start(args.timeout)
        except (RuntimeError, ValueError) as e:
            print(f"cannot start the cluster: {e}", file=sys.stderr)
            return 1
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    cluster.started = True
    cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
