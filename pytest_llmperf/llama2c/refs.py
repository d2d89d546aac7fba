"""The reference build of a paired llama2.c run (``--llmperf-llama2c-ref``). No pytest.

A paired run (the model of ``asv continuous``) builds a second llama2.c, the reference, with the
same flags as the build under test, and interleaves rounds of both in the same session; the gate
then compares their ratios, which a faster or slower machine tonight moves alike on both sides.
What the option names is decided here, once, at configure time:

* ``auto`` (the default): a reference only when ``--llmperf-llama2c-src`` is a git checkout, the
  core's hook ``pytest_llmperf_reference_commit`` knows the commit the test's reference (the
  saved or history night) was measured with, and the checkout is now at another commit or
  dirty: that commit's run.c (and runq.c) is the reference (:func:`auto`). Otherwise none.
* ``off``: never.
* a path that exists: a directory with run.c (and runq.c), built with the same flags; or an
  executable file, used as the reference of the ``run`` rows as it is.
* anything else: a git revision (branch, tag, sha, ``HEAD~1``) of the ``--llmperf-llama2c-src``
  checkout; its run.c and runq.c are read with git (:func:`..gitinfo.show`) into
  ``<cache>/llama2c/ref/<sha>/`` and built from there (native.build keys its cache on the source's
  bytes, so a reference identical to the current source shares its binary).

A value that cannot be used is a :class:`RefError`, one line naming the option. A reference
without runq.c (a revision or directory that has none, or an executable) gives the runq rows no
pairing: they fall back to the probe mode, with a note saying why (:meth:`Reference.program`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import gitinfo
from ..errors import OneLine
from .options import REF_AUTO, REF_OFF

PROGRAMS = ("run", "runq")


class RefError(OneLine, ValueError):
    """A ``--llmperf-llama2c-ref`` value that cannot be used; the message is one line naming the
    option (or the environment variable or ini key it came from) and the value."""


@dataclass(frozen=True)
class Reference:
    """A resolved reference: what it is (``label``, the paired verdicts' ``paired_ref``), the
    sources to build for each program, or a binary to use as is."""

    label: str  # "git 1a2b3c4d5e6f", "dir /x/llama2.c-old", "binary /x/run"
    sources: Mapping[str, Path] = field(default_factory=dict)  # program -> the source to build
    binary: Path | None = None  # an executable: the reference of the run rows as it is
    missing: Mapping[str, str] = field(default_factory=dict)  # program -> why there is none of it

    def program(self, name: str) -> tuple[Path | None, Path | None, str]:
        """(source to build, or None; binary to use as is, or None; why neither, or "")."""
        if name == "run" and self.binary is not None:
            return None, self.binary, ""
        if name in self.sources:
            return self.sources[name], None, ""
        return None, None, self.missing.get(name, f"{self.label} has no {name}.c")


def resolve(ref: str, ref_path: Path | None, where: str, src: Path | None, cache_dir: Path) -> Reference | None:
    """The reference an explicit ``--llmperf-llama2c-ref`` value names, checked (None for
    ``auto`` and ``off``, which name none by themselves); a RefError otherwise."""
    if ref in (REF_AUTO, REF_OFF):
        return None
    if ref_path is not None and (ref_path.exists() or ref_path.is_symlink()):
        if ref_path.is_dir():
            return from_directory(ref_path, where)
        return from_binary(ref_path, where)
    if src is None:
        raise RefError(f"{where} {ref}: no such file or directory, and without --llmperf-llama2c-src there "
                       f"is no git checkout to take it as a revision of")
    return from_revision(src, ref, cache_dir, where)


def from_directory(path: Path, where: str) -> Reference:
    """A directory of llama2.c sources: run.c (required) and runq.c (when there)."""
    if not (path / "run.c").is_file():
        raise RefError(f"{where} {path}: no run.c in it (expected a llama2.c checkout, a git revision of "
                       f"--llmperf-llama2c-src, or an executable)")
    sources = {name: path / f"{name}.c" for name in PROGRAMS if (path / f"{name}.c").is_file()}
    missing = {name: f"no {name}.c in {path}" for name in PROGRAMS if name not in sources}
    return Reference(label=f"dir {path}", sources=sources, missing=missing)


def from_binary(path: Path, where: str) -> Reference:
    """An executable file: the reference of the run rows as it is (the runq rows have none)."""
    if not path.is_file():
        raise RefError(f"{where} {path}: not a regular file or a directory")
    if not os.access(path, os.X_OK):
        raise RefError(f"{where} {path}: not an executable file (chmod +x it, or name a directory or a revision)")
    return Reference(label=f"binary {path}", binary=path,
                     missing={"runq": f"the reference {path} is an executable, which stands for run.c only"})


def from_revision(src: Path, rev: str, cache_dir: Path, where: str) -> Reference:
    """run.c (required) and runq.c (when there) of the ``--llmperf-llama2c-src`` checkout at
    revision ``rev``, written once to ``<cache_dir>/llama2c/ref/<sha>/``."""
    top = gitinfo.toplevel(src)
    if top is None:
        raise RefError(f"{where} {rev}: no such file or directory, and --llmperf-llama2c-src {src} is not a git "
                       f"checkout to take it as a revision of")
    try:
        sha = gitinfo.resolve(top, rev)
    except gitinfo.GitError as exc:
        raise RefError(f"{where} {rev}: not a file, a directory or a revision of {src} ({exc})") from None
    try:
        rel = PurePosixPath(Path(os.path.realpath(src)).relative_to(os.path.realpath(top)).as_posix())
    except ValueError:
        rel = PurePosixPath(".")
    short = sha[:12]
    out_dir = cache_dir / "llama2c" / "ref" / sha
    sources: dict[str, Path] = {}
    missing: dict[str, str] = {}
    for name in PROGRAMS:
        relpath = str(rel / f"{name}.c") if str(rel) != "." else f"{name}.c"
        try:
            content = gitinfo.show(top, sha, relpath)
        except gitinfo.GitError:
            if name == "run":
                raise RefError(f"{where} {rev}: no {relpath} at commit {short} of {top}") from None
            missing[name] = f"no {relpath} at commit {short}"
            continue
        sources[name] = _write_once(out_dir / f"{name}.c", content, where)
    return Reference(label=f"git {short}", sources=sources, missing=missing)


def _write_once(path: Path, content: bytes, where: str) -> Path:
    """``content`` at ``path``, written atomically unless it is there already (sources of one
    commit never change; concurrent xdist workers write the same bytes)."""
    try:
        if path.is_file() and path.read_bytes() == content:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(content)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as exc:
        raise RefError(f"{where}: cannot write the reference source {path}: {exc.strerror or exc}") from None
    return path


def auto(src: Path, commit: str, cache_dir: Path) -> tuple[Reference | None, str]:
    """The reference of ``auto`` for a test whose reference was measured at ``commit`` of the
    ``src`` checkout: (that commit's sources, "") when the checkout is now at another commit or
    dirty; (None, "") when it is that very commit, clean (the build is the reference's: nothing
    to pair); (None, why) when the commit cannot be had (the probe mode then, with that note)."""
    now = gitinfo.commit_of(src)
    if now is None:
        return None, f"{src} is not a git checkout: no paired reference"
    if now["commit"] == commit and not now["dirty"]:
        return None, ""
    try:
        return from_revision(src, commit, cache_dir, "--llmperf-llama2c-ref auto"), ""
    except RefError as exc:
        return None, f"the reference commit {commit[:12]} cannot be built: {exc}"
