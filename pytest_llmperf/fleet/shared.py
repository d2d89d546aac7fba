"""Is the results directory shared with the nodes, and do its locks hold across hosts?

The baselines and the history are written under a lock (fileutil.exclusive_lock: ``flock``). On
NFS the Linux client turns ``flock`` into a POSIX lock that the server arbitrates (NFSv4 itself,
NFSv3 through lockd), so it holds across hosts unless the file system is mounted ``nolock`` (then
each client locks only against itself). On Lustre it holds across clients only when the client
is mounted with ``-o flock``; ``localflock`` locks within one client, and without either a lock
fails with ENOSYS (which fileutil reports naming the file). GPFS, BeeGFS and CephFS arbitrate
``flock`` across nodes themselves.

This module reads /proc/mounts (Linux) to warn before a run, never to refuse: a file system it
does not know may well be shared.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..fileutil import nearest_existing

LOCAL = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "vfat", "ramfs"})
SHARED = frozenset({"nfs", "nfs4", "lustre", "gpfs", "beegfs", "ceph", "cifs", "smb3", "glusterfs", "fuse.glusterfs",
                    "panfs", "wekafs", "fuse.sshfs", "9p", "virtiofs"})


@dataclass
class Mount:
    point: str
    fstype: str
    options: frozenset[str]


def _unescape(field: str) -> str:
    """/proc/mounts writes a space in a path as ``\\040`` (and tab, newline, backslash likewise)."""
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field


def parse_mounts(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append(Mount(_unescape(parts[1]), parts[2], frozenset(parts[3].split(","))))
    return out


def mount_of(path: Path, mounts: Sequence[Mount]) -> Mount | None:
    """The mount that holds ``path`` (the longest mount point above it; the last one mounted
    there when several are)."""
    target = os.path.realpath(path)
    best: Mount | None = None
    for m in mounts:
        point = m.point.rstrip("/") or "/"
        inside = target == point or target.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = m
    return best


def lock_warning(mount: Mount) -> str | None:
    """Why the locks on this mount would not hold across hosts, or None."""
    if mount.fstype == "lustre" and "flock" not in mount.options:
        how = "locks only within each client (localflock)" if "localflock" in mount.options else \
            "refuses flock (ENOSYS)"
        return f"Lustre at {mount.point} {how}: mount it with -o flock for baselines saved from several nodes"
    if mount.fstype.startswith("nfs") and ("nolock" in mount.options or "local_lock=all" in mount.options
                                           or "local_lock=flock" in mount.options):
        return f"NFS at {mount.point} is mounted with local locks (nolock/local_lock): locks do not hold " \
               "across hosts; remount without them"
    return None


def this_host() -> set[str]:
    name = socket.gethostname()
    return {"localhost", name, name.split(".", 1)[0]}


def shared_warning(mount: Mount, hostnames: Iterable[str], here: set[str] | None = None) -> str | None:
    """A warning when the results directory is on a local file system and some node is another
    host (sinfo's NodeHostname): that node's job could not write its results here."""
    others = sorted({h for h in hostnames if h and h not in (here if here is not None else this_host())})
    if mount.fstype in LOCAL and others:
        return (f"the results directory is on a local file system ({mount.fstype} at {mount.point}) and "
                f"{len(others)} node host(s) are other machines ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): give a directory on a shared file system")
    return None


def warnings(results: Path, hostnames: Iterable[str], mounts_file: Path = Path("/proc/mounts")) -> list[str]:
    try:
        mounts = parse_mounts(mounts_file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []
    probe = nearest_existing(results)
    m = mount_of(probe, mounts)
    if m is None:
        return []
    return [w for w in (lock_warning(m), shared_warning(m, hostnames)) if w]
