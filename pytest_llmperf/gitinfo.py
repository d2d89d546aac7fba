"""What git says about a source checkout: its commit and whether its tree is dirty, a revision's
commit, a file's content at a revision. Pure core: runs the ``git`` program, no pytest.

Each call has a short timeout and turns every failure into one line (:class:`GitError`) or None,
so a checkout on a slow network disk, a missing git or a directory that is no repository never
stops a benchmark run: the history records the commit as unknown.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TypedDict

from .errors import OneLine

TIMEOUT = 10.0


class GitError(OneLine, Exception):
    """A revision or file git cannot give; the message is one line naming the repository."""


class Commit(TypedDict):
    commit: str
    dirty: bool


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=TIMEOUT, env=env,
                          check=False)


def _stderr(out: subprocess.CompletedProcess[bytes]) -> str:
    text = out.stderr.decode("utf-8", "replace").strip().splitlines()
    return text[-1] if text else f"git exited with {out.returncode}"


def commit_of(path: Path) -> Commit | None:
    """``{"commit": <40 hex>, "dirty": <tracked files changed>}`` of the work tree at ``path``, or
    None when it is not in a git work tree (or git is missing, or too slow). Untracked files do
    not make a tree dirty: build outputs and caches would make every checkout dirty."""
    try:
        head = _git(path, "rev-parse", "--verify", "-q", "HEAD")
        if head.returncode != 0:
            return None
        status = _git(path, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    sha = head.stdout.decode("ascii", "replace").strip()
    if len(sha) != 40 or status.returncode != 0:
        return None
    return {"commit": sha, "dirty": bool(status.stdout.strip())}


def resolve(repo: Path, rev: str) -> str:
    """The full commit id of ``rev`` (a branch, tag, short id, ``HEAD~3``) in ``repo``."""
    if not rev or rev.startswith("-"):
        raise GitError(f"{repo}: {rev!r} is not a git revision")
    try:
        out = _git(repo, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"{repo}: cannot run git: {exc}") from None
    sha = out.stdout.decode("ascii", "replace").strip()
    if out.returncode != 0 or len(sha) != 40:
        raise GitError(f"{repo}: no commit {rev!r} in this repository")
    return sha


def show(repo: Path, rev: str, relpath: str) -> bytes:
    """The content of ``relpath`` (relative to the repository's top) at revision ``rev``."""
    sha = resolve(repo, rev)
    try:
        out = _git(repo, "show", f"{sha}:{relpath}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"{repo}: cannot run git: {exc}") from None
    if out.returncode != 0:
        raise GitError(f"{repo}: no file {relpath} at {sha[:12]}: {_stderr(out)}")
    return out.stdout


def toplevel(path: Path) -> Path | None:
    """The top directory of the work tree that holds ``path``, or None."""
    try:
        out = _git(path, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.decode("utf-8", "replace").strip()
    return Path(text) if out.returncode == 0 and text else None
