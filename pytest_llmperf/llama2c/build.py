"""Compile a C source with a compiler and a flag set into a content-addressed cache. No pytest.

The cache key is the SHA-256 of everything that decides the binary: the source's bytes (and the
bytes of the local headers it includes with ``#include "..."``), the compiler's identity (its
resolved path, ``--version`` and ``-dumpmachine``), the flags and the link flags. Nothing changed:
the cached binary is used as is; anything changed: a new key, a new build. A build writes to a
temporary name in the key's directory and renames it into place, under an exclusive lock on that
key, so concurrent pytest-xdist workers build once and nobody ever runs a half-written binary.

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
from pathlib import Path
from typing import Sequence

from ..fileutil import exclusive_lock
from .cache import CacheError

BUILD_SCHEME = 1  # bump when the way binaries are built changes
LINK_FLAGS = ("-lm",)
COMPILE_TIMEOUT = 600.0
_TRIVIAL = "#include <math.h>\n#include <stdio.h>\nint main(void) { printf(\"%f\\n\", sqrt(2.0)); return 0; }\n"
_LOCAL_INCLUDE = re.compile(rb'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)

# the flag sets of our users' table and of llama2.c's Makefile, by test id
FLAG_SETS: dict[str, str] = {
    "O3": "-O3",
    "O3-omp": "-O3 -fopenmp",
    "O3-omp-Ofast": "-O3 -fopenmp -Ofast",
    "Ofast": "-Ofast",
    "Ofast-omp-native": "-Ofast -fopenmp -march=native",
}


class CompilerNotFound(RuntimeError):
    """The compiler named by ``--llmperf-cc`` is not there."""


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
    path = shutil.which(cc)
    if path is None:
        raise CompilerNotFound(f"compiler {cc!r} not found on PATH (set --llmperf-cc)")
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
    compiler will say so)."""
    seen: set[Path] = set()
    chunks: list[bytes] = []

    def add(path: Path) -> None:
        path = path.resolve()
        if path in seen or not path.is_file():
            return
        seen.add(path)
        data = path.read_bytes()
        chunks.append(str(len(data)).encode() + b":" + data)
        for name in _LOCAL_INCLUDE.findall(data):
            add(path.parent / name.decode(errors="replace"))

    if not source.is_file():
        raise BuildError(f"{source}: source file not found")
    add(source)
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
                _FLAGS_OK[key] = None if out.returncode == 0 else (_tail(out.stderr, 3) or f"exit code {out.returncode}")
            except (OSError, subprocess.SubprocessError) as exc:
                _FLAGS_OK[key] = str(exc)
    message = _FLAGS_OK[key]
    if message is not None:
        raise FlagsRejected(f"{cc} rejects {' '.join(flags)}: {message}")


def build(source: str | os.PathLike, flags: str | Sequence[str], cache_dir: str | os.PathLike,
          cc: str = "cc", name: str | None = None) -> Path:
    """Compile ``source`` with ``cc`` and ``flags`` (linking ``-lm``) into the cache and return the
    binary's path; no rebuild when the key is unchanged. Raises :class:`CompilerNotFound`,
    :class:`FlagsRejected`, :class:`BuildError` or :class:`~.files.CacheError`."""
    source = Path(source).absolute()
    flag_list = split_flags(flags)
    key = build_key(source, cc, flag_list)
    out_dir = Path(cache_dir) / "build" / key
    binary = out_dir / (name or source.stem)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the build cache {out_dir}: {exc.strerror or exc}") from None
    with exclusive_lock(out_dir / ".lock"):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary  # another worker built it while we waited
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
        (out_dir / "build.json").write_text(json.dumps(info, indent=1) + "\n")
        os.replace(tmp, binary)
    return binary


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
