"""Compile a C source with a compiler and a flag set into a content-addressed cache. No pytest.

The cache key is the SHA-256 of everything that decides the binary: the source's bytes (and the
bytes of the local headers it includes with ``#include "..."``), the compiler's identity (its
resolved path, ``--version`` and ``-dumpmachine``), the flags and the link flags. Nothing changed:
the cached binary is used as is; anything changed: a new key, a new build. A build writes to a
temporary name in the key's directory and renames it into place, under an exclusive lock on that
key, so concurrent pytest-xdist workers build once and nobody ever runs a half-written binary.

A build also writes a small manifest beside the binary (``<name>.manifest.json``: its size and
SHA-256, written atomically before the binary is renamed into place), and a cached binary is used
only when it matches its manifest: a truncated or overwritten binary (which would otherwise crash
with SIGSEGV in every session, the cache never to blame) is rebuilt, with a warning naming it. A
binary without a manifest (a cache written before manifests, an interrupted build) is rebuilt
without one.

Two kinds of failure are told apart. Before building, the flags are tried on a trivial program:
if the compiler rejects them there (GCC on RISC-V rejects ``-march=native``; a compiler without
OpenMP rejects ``-fopenmp``), the flag set is unsupported on this node (:class:`FlagsRejected`,
a skip). If the trivial program builds but the source does not, the build is broken
(:class:`BuildError`, a failure of the tests that need that binary, with the compiler's stderr).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from ..fileutil import atomic_write, exclusive_lock, executable_problem, is_path
from .cache import CacheError

BUILD_SCHEME = 1  # bump when the way binaries are built changes
LINK_FLAGS = ("-lm",)
COMPILE_TIMEOUT = 600.0
_TRIVIAL = "#include <math.h>\n#include <stdio.h>\nint main(void) { printf(\"%f\\n\", sqrt(2.0)); return 0; }\n"
_LOCAL_INCLUDE = re.compile(rb'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)



class CompilerNotFound(RuntimeError):
    """The compiler named by ``--llmperf-cc`` is not there, or not an executable file."""


class FlagsRejected(RuntimeError):
    """The compiler rejects the flag set itself (a trivial program does not build with it)."""


class BuildError(RuntimeError):
    """The source does not build with flags the compiler accepts; the message ends with stderr."""


def split_flags(flags: str | Sequence[str]) -> list[str]:
    return shlex.split(flags) if isinstance(flags, str) else [str(f) for f in flags]


def uses_openmp(flags: str | Sequence[str]) -> bool:
    return any(f in ("-fopenmp", "-qopenmp", "-openmp") or f.startswith("-fopenmp=") for f in split_flags(flags))


_IDENTITY: dict[str, str] = {}


def compiler_identity(cc: str) -> str:
    """The resolved path, ``--version`` and ``-dumpmachine`` of ``cc``; :class:`CompilerNotFound`
    when it is missing or does not run. Cached per process."""
    if cc in _IDENTITY:
        return _IDENTITY[cc]
    if is_path(cc):  # an explicit path, not a name to look up
        problem = executable_problem(cc)
        if problem is not None:
            raise CompilerNotFound(f"--llmperf-cc {cc}: {problem}")
        path = cc
    else:
        found = shutil.which(cc)
        if found is None:
            raise CompilerNotFound(f"compiler {cc!r} not found on PATH (set --llmperf-cc)")
        path = found
    parts = [os.path.realpath(path)]
    for arg in ("--version", "-dumpmachine"):
        try:
            out = subprocess.run([path, arg], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CompilerNotFound(f"compiler {cc!r} ({path}) does not run: {exc}") from None
        if arg == "--version" and out.returncode != 0:
            raise CompilerNotFound(f"compiler {cc!r} ({path}) failed on --version: {_tail(out.stderr, 1)}")
        parts.append(out.stdout.strip())
    _IDENTITY[cc] = "\n".join(parts)
    return _IDENTITY[cc]


def source_bytes(source: Path) -> bytes:
    """The source and, recursively, the local headers it includes (missing ones are skipped: the
    compiler will say so). :class:`BuildError` when the source or a header cannot be read."""
    if not source.is_file():
        raise BuildError(f"{source}: source file not found")
    seen: set[Path] = set()
    chunks: list[bytes] = []
    todo = [source]
    while todo:
        path = todo.pop(0)
        try:
            path = path.resolve()
            if path in seen or not path.is_file():
                continue
        except (OSError, ValueError, RuntimeError):  # a name the OS refuses (NUL, too long), a loop
            continue
        seen.add(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BuildError(f"{path}: cannot read: {exc.strerror or exc}") from None
        chunks.append(str(len(data)).encode() + b":" + data)
        todo[:0] = [path.parent / name.decode(errors="replace") for name in _LOCAL_INCLUDE.findall(data)]
    return b"".join(chunks)


def build_key(source: Path, cc: str, flags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (f"scheme {BUILD_SCHEME}".encode(), source_bytes(source), compiler_identity(cc).encode(),
                 "\0".join(flags).encode(), "\0".join(LINK_FLAGS).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:20]


def _tail(text: str, lines: int = 20) -> str:
    rows = [r for r in text.strip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


_FLAGS_OK: dict[tuple[str, tuple[str, ...]], str | None] = {}


def check_flags(cc: str, flags: Sequence[str]) -> None:
    """Raise :class:`FlagsRejected` with the compiler's message if a trivial program does not
    build with ``flags``. Cached per process."""
    key = (cc, tuple(flags))
    if key not in _FLAGS_OK:
        with tempfile.TemporaryDirectory(prefix="llmperf-flags-") as tmp:
            src = Path(tmp) / "probe.c"
            src.write_text(_TRIVIAL)
            cmd = [cc, *flags, "-o", str(Path(tmp) / "probe"), str(src), *LINK_FLAGS]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
                _FLAGS_OK[key] = (None if out.returncode == 0
                                  else (_tail(out.stderr, 3) or f"exit code {out.returncode}"))
            except (OSError, subprocess.SubprocessError) as exc:
                _FLAGS_OK[key] = str(exc)
    message = _FLAGS_OK[key]
    if message is not None:
        raise FlagsRejected(f"{cc} rejects {' '.join(flags)}: {message}")


MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(binary: Path) -> Path:
    return binary.with_name(binary.name + MANIFEST_SUFFIX)


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


class Manifest(TypedDict):
    """What a build manifest says of its binary (the name it also holds is not checked)."""

    size: int
    sha256: str


def read_manifest(path: Path) -> Manifest | None:
    """The ``{"size", "sha256"}`` of a build manifest; None when there is none; :class:`CacheError`
    naming it when it cannot be read or is not a manifest."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(1 << 16)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"build manifest {path} cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError, int()'s digit limit, nesting
        raise CacheError(f"build manifest {path} is not valid JSON") from None
    size = data.get("size") if isinstance(data, dict) else None
    sha = data.get("sha256") if isinstance(data, dict) else None
    if (not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(sha, str)
            or re.fullmatch(r"[0-9a-f]{64}", sha) is None):
        raise CacheError(f"build manifest {path} is not a manifest (no size and sha256)")
    return {"size": size, "sha256": sha}


def _cached_problem(binary: Path) -> str | None:
    """None when ``binary`` is there, executable and matches its manifest; otherwise why not:
    "" when there is nothing to warn about (no binary, or no manifest), else a reason."""
    try:
        if not binary.is_file():
            return ""
        manifest = read_manifest(manifest_path(binary))
    except CacheError as exc:
        return f"has an unusable manifest ({exc})"
    except OSError:
        return ""
    if manifest is None:
        return ""
    if not os.access(binary, os.X_OK):
        return "is not executable"
    try:
        size, sha = _digest(binary)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size != manifest["size"]:
        return f"is {size} bytes, but {manifest['size']} were built (truncated or overwritten?)"
    if sha != manifest["sha256"]:
        return "does not match the SHA-256 of the build (corrupted or overwritten?)"
    return None


def build(source: str | os.PathLike[str], flags: str | Sequence[str], cache_dir: str | os.PathLike[str],
          cc: str = "cc", name: str | None = None) -> Path:
    """Compile ``source`` with ``cc`` and ``flags`` (linking ``-lm``) into the cache and return the
    binary's path; no rebuild when the key is unchanged and the cached binary matches its manifest
    (else a rebuild, with a warning when the binary was there but did not match). Raises
    :class:`CompilerNotFound`, :class:`FlagsRejected`, :class:`BuildError` or
    :class:`~.cache.CacheError`."""
    source = Path(source).absolute()
    if is_path(cc):
        cc = os.path.abspath(cc)  # the compile runs in the source's directory
    flag_list = split_flags(flags)
    key = build_key(source, cc, flag_list)
    out_dir = Path(cache_dir) / "build" / key
    binary = out_dir / (name or source.stem)
    if _cached_problem(binary) is None:
        return binary
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the build cache {out_dir}: {exc.strerror or exc}") from None
    with exclusive_lock(out_dir / ".lock"):
        problem = _cached_problem(binary)
        if problem is None:
            return binary  # another worker built it while we waited
        if problem:
            warnings.warn(f"llmperf: the cached build {binary} {problem}: rebuilding it", stacklevel=2)
        check_flags(cc, flag_list)
        tmp = out_dir / f".{binary.name}.{os.getpid()}.tmp"
        cmd = [cc, *flag_list, "-o", str(tmp), str(source), *LINK_FLAGS]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, cwd=source.parent)
        except subprocess.TimeoutExpired:
            _remove(tmp)
            raise BuildError(f"{source.name}: {cc} did not finish within {COMPILE_TIMEOUT:.0f} s") from None
        except OSError as exc:
            _remove(tmp)
            raise BuildError(f"{source.name}: cannot run {cc}: {exc}") from None
        if out.returncode != 0 or not tmp.is_file():
            _remove(tmp)
            raise BuildError(f"{source.name} does not build with {cc} {' '.join(flag_list)} "
                             f"(exit code {out.returncode}):\n{_tail(out.stderr) or _tail(out.stdout)}")
        info = {"source": str(source), "cc": cc, "compiler": compiler_identity(cc), "flags": flag_list,
                "link": list(LINK_FLAGS), "warnings": _tail(out.stderr)}
        try:
            size, sha = _digest(tmp)
            atomic_write(out_dir / "build.json", json.dumps(info, indent=1) + "\n")
            # the manifest first: a crash before the rename leaves a binary that does not match it
            atomic_write(manifest_path(binary), json.dumps({"name": binary.name, "size": size, "sha256": sha},
                                                           indent=1) + "\n")
            os.replace(tmp, binary)
        except OSError as exc:
            _remove(tmp)
            raise CacheError(f"cannot write the build cache {out_dir}: {exc.strerror or exc}") from None
    return binary


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
