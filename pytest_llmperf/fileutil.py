"""File helpers shared by the baseline store and the llama2.c caches: an exclusive lock and an
atomic write. No pytest."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest ancestor that does: where a write under
    ``path`` would have to create the missing directories."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def is_path(name: str) -> bool:
    """True when ``name`` names a file by its path (has a directory part), not a command to look
    up on PATH."""
    return os.sep in name or bool(os.altsep and os.altsep in name)


def executable_problem(path: str) -> str | None:
    """Why ``path``, an executable the user named by its path (a compiler, perf, valgrind, nsys),
    cannot be run, or None: it must exist and be an executable file. Said after the path."""
    if "\x00" in path:
        return "is not a path (it holds a NUL character)"
    if not os.path.exists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory, not an executable file"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return "is not an executable file"
    return None


class LockUnsupported(OSError):
    """The file system refuses ``flock`` (Lustre mounted without ``-o flock`` answers ENOSYS; an
    NFSv3 mount without lockd, ENOLCK): one line naming the lock file and the remedy."""

    def __init__(self, lock_path: Path, code: int) -> None:
        super().__init__(code, f"cannot lock {lock_path}: its file system refuses flock ({os.strerror(code)}); "
                               "mount Lustre with -o flock, and NFSv3 with lockd running (not nolock)")

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the ``with`` block: an
    ``fcntl.flock`` where there is one, else an exclusive-create marker file polled until
    ``timeout`` (TimeoutError). LockUnsupported when the file system refuses flock: on a shared
    file system the lock must hold across hosts (fleet/shared.py says what NFS and Lustre need)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # Windows
            pass
        else:  # an exception raised in the block is not caught by the except above
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
                    raise LockUnsupported(lock_path, exc.errno) from None
                raise
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
        marker = Path(str(lock_path) + ".held")
        deadline = time.monotonic() + timeout
        while True:
            try:
                mfd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out waiting for the lock {marker}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            os.close(mfd)
            os.unlink(marker)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: Path) -> int:
    """The mode a rewritten ``path`` gets: the existing file's (a re-save keeps 0644, or a shared
    group's 0664), else what ``open()`` would give a new file under this process's umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def atomic_write(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    part. The file gets the mode of the file it replaces, or the umask's for a new one (the
    temporary file's private 0600 would otherwise survive the rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
