"""Node names: automatic (SLURM node or partition, else the host name), sanitized, validated.

Kept apart from hardware.py so that the plugin can name the node at start-up without importing
the detection code."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping

_NODE_OK = re.compile(r"[A-Za-z0-9._-]+")
_NODE_BAD_CHAR = re.compile(r"[^A-Za-z0-9._-]")
_NODE_MAX = 255


def sanitize_node_name(name: str | None) -> str:
    """Make *name* safe as one directory name.

    Characters outside ``[A-Za-z0-9._-]`` become '-', the result is cut to
    255 characters, and an empty result, "." or ".." becomes
    "unknown-node".
    """
    cleaned = _NODE_BAD_CHAR.sub("-", (name or "").strip())[:_NODE_MAX]
    if cleaned in ("", ".", ".."):
        return "unknown-node"
    return cleaned


def validate_node_name(name: str) -> str:
    """Return a user-given node name unchanged, or raise ValueError if unsafe."""
    hint = "use letters, digits, '.', '_' and '-'"
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid node name {name!r}: must not be empty; {hint}")
    if name in (".", ".."):
        raise ValueError(f"invalid node name {name!r}: '.' and '..' are reserved; {hint}")
    if len(name) > _NODE_MAX:
        raise ValueError(f"invalid node name {name[:20]!r}...: longer than {_NODE_MAX} characters")
    if not _NODE_OK.fullmatch(name):
        raise ValueError(f"invalid node name {name!r}: {hint}")
    return name


def auto_node_name(environ: Mapping[str, str] | None = None, hostname: str | None = None) -> str:
    """Node name for baselines: SLURMD_NODENAME, else SLURM_JOB_PARTITION,
    else the short host name (before the first dot); sanitized with
    :func:`sanitize_node_name`.
    """
    env = os.environ if environ is None else environ
    for var in ("SLURMD_NODENAME", "SLURM_JOB_PARTITION"):
        value = (env.get(var) or "").strip()
        if value:
            return sanitize_node_name(value)
    if hostname is None:
        try:
            hostname = socket.gethostname()
        except OSError:
            hostname = ""
    short = hostname.strip().split(".", 1)[0]
    return sanitize_node_name(short)
