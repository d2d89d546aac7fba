"""Tests of pytest_llmperf.native.build: the content-addressed compile cache and its failures.

Real compiles with the system ``cc``; wrapper "compilers" (shell scripts in tmp_path that count
the compiles of the test's source and then run ``cc``) tell a rebuild from a cache hit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_llmperf.llama2c.session import FLAG_SETS
from pytest_llmperf.native import build
from pytest_llmperf.native.build import (
    BuildError,
    CompilerNotFound,
    FlagsRejected,
    split_flags,
    uses_openmp,
)
from pytest_llmperf.native.cache import CacheError

REAL_CC = shutil.which("cc")

PROGRAM = '#include <stdio.h>\n#include "local.h"\nint main(void) { printf("%d\\n", VALUE); return 0; }\n'


def make_cc(tmp_path: Path, name: str = "wcc", before: str = "", on_source: str = "") -> tuple[str, Path]:
    """A compiler script that appends a line to a counter file each time it compiles prog.c
    (identity queries and the flag probe are not counted), runs ``on_source`` then, and execs cc."""
    counter = tmp_path / f"{name}.calls"
    script = tmp_path / name
    script.write_text(
        "#!/bin/sh\n"
        f"{before}\n"
        'case "$*" in\n'
        f'  *prog.c*) echo compile >> "{counter}"\n {on_source}\n ;;\n'
        "esac\n"
        f'exec "{REAL_CC}" "$@"\n'
    )
    script.chmod(0o755)
    return str(script), counter


def calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def make_source(directory: Path, value: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "local.h").write_text('#include "nested.h"\n')
    (directory / "nested.h").write_text(f"#define VALUE {value}\n")
    src = directory / "prog.c"
    src.write_text(PROGRAM)
    return src


def output_of(binary: Path) -> str:
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def key_dirs(cache: Path) -> list[Path]:
    root = cache / "build"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_cache_hit_returns_the_same_binary_without_recompiling(tmp_path: Path) -> None:
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src", 7)
    cache = tmp_path / "cache"
    first = build.build(src, "-O1", cache, cc=cc)
    assert calls(counter) == 1
    assert first.name == "prog" and first.parent.parent == cache / "build"
    assert output_of(first) == "7"
    before = first.stat()
    t0 = time.perf_counter()
    second = build.build(src, "-O1", cache, cc=cc)
    elapsed = time.perf_counter() - t0
    assert second == first
    after = second.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert calls(counter) == 1  # no compile
    assert elapsed < 2.0  # a hash and a stat, far below a compile (generous bound)
    # the flags as a list are the same flags
    assert build.build(src, ["-O1"], cache, cc=cc) == first
    assert calls(counter) == 1
    # what decided the binary is written beside it
    info = (first.parent / "build.json").read_text()
    assert '"-O1"' in info and str(src) in info and "-lm" in info
    assert sorted(p.name for p in first.parent.iterdir()) == [".lock", "build.json", "prog", "prog.manifest.json"]


def test_name_of_the_binary(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    binary = build.build(src, "-O1", tmp_path / "cache", name="run")
    assert binary.name == "run" and os.access(binary, os.X_OK)


def test_source_change_rebuilds(tmp_path: Path) -> None:
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src")
    cache = tmp_path / "cache"
    first = build.build(src, "-O1", cache, cc=cc)
    src.write_text(PROGRAM.replace("return 0;", "return 0; /* changed */"))
    second = build.build(src, "-O1", cache, cc=cc)
    assert second != first and second.parent != first.parent
    assert calls(counter) == 2
    assert first.is_file()  # the old key stays usable
    assert len(key_dirs(cache)) == 2
    # an unrelated file beside the source changes nothing
    (src.parent / "README").write_text("unrelated\n")
    (src.parent / "other.h").write_text("#define OTHER 1\n")
    assert build.build(src, "-O1", cache, cc=cc) == second
    assert calls(counter) == 2


def test_included_local_header_change_rebuilds(tmp_path: Path) -> None:
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src", 1)
    cache = tmp_path / "cache"
    first = build.build(src, "-O1", cache, cc=cc)
    assert output_of(first) == "1"
    # nested.h is included by local.h, which prog.c includes: the change reaches the key
    (src.parent / "nested.h").write_text("#define VALUE 2\n")
    second = build.build(src, "-O1", cache, cc=cc)
    assert second.parent != first.parent
    assert calls(counter) == 2
    assert output_of(second) == "2"
    assert output_of(first) == "1"


def test_flags_change_rebuilds(tmp_path: Path) -> None:
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src")
    cache = tmp_path / "cache"
    o1 = build.build(src, "-O1", cache, cc=cc)
    o2 = build.build(src, "-O2", cache, cc=cc)
    o2_defined = build.build(src, "-O2 -DUNUSED=1", cache, cc=cc)
    assert len({o1.parent, o2.parent, o2_defined.parent}) == 3
    assert calls(counter) == 3
    assert '"-DUNUSED=1"' in (o2_defined.parent / "build.json").read_text()


def test_compiler_identity_change_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src")
    cache = tmp_path / "cache"
    first = build.build(src, "-O1", cache, cc=cc)
    assert build.build_key(src, cc, ["-O1"]) == first.parent.name
    # the same command name, another compiler behind it (an upgrade, another version)
    monkeypatch.setitem(build._IDENTITY, cc, "/opt/other/cc\nother cc 99.1\nriscv64-linux-gnu")
    second = build.build(src, "-O1", cache, cc=cc)
    assert second.parent != first.parent
    assert calls(counter) == 2
    assert "other cc 99.1" in (second.parent / "build.json").read_text()


def test_another_compiler_path_is_another_key(tmp_path: Path) -> None:
    cc_a, counter_a = make_cc(tmp_path, "cc_a")
    cc_b, counter_b = make_cc(tmp_path, "cc_b")
    src = make_source(tmp_path / "src")
    cache = tmp_path / "cache"
    a = build.build(src, "-O1", cache, cc=cc_a)
    b = build.build(src, "-O1", cache, cc=cc_b)
    assert a.parent != b.parent
    assert (calls(counter_a), calls(counter_b)) == (1, 1)


def test_compiler_identity_names_path_version_and_machine(tmp_path: Path) -> None:
    identity = build.compiler_identity(REAL_CC)
    lines = identity.splitlines()
    assert lines[0] == os.path.realpath(REAL_CC)
    machine = subprocess.run([REAL_CC, "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    assert machine and lines[-1] == machine
    assert build.compiler_identity(REAL_CC) is identity  # cached per process


def test_flags_rejected_carries_the_compilers_message(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    cache = tmp_path / "cache"
    flag = "-fno-such-flag-llmperf-test"
    with pytest.raises(FlagsRejected) as info:
        build.build(src, f"-O2 {flag}", cache, cc=REAL_CC)
    message = str(info.value)
    assert f"rejects -O2 {flag}" in message
    # the compiler's own words about the flag, not ours
    direct = subprocess.run([REAL_CC, flag, "-x", "c", "-c", "-o", os.devnull, "-"], input="int x;\n",
                            capture_output=True, text=True)
    assert direct.returncode != 0
    assert direct.stderr.strip().splitlines()[-1].split(":", 1)[-1].strip() in message
    # nothing was built: the key directory holds its lock only
    (key,) = key_dirs(cache)
    assert [p.name for p in key.iterdir()] == [".lock"]


def test_build_error_carries_stderr_and_leaves_no_file(tmp_path: Path) -> None:
    src = tmp_path / "src" / "prog.c"
    src.parent.mkdir()
    src.write_text("int main(void) { return undeclared_thing_llmperf; }\n")
    cache = tmp_path / "cache"
    with pytest.raises(BuildError) as info:
        build.build(src, "-O1", cache, cc=REAL_CC)
    message = str(info.value)
    assert message.startswith(f"prog.c does not build with {REAL_CC} -O1 (exit code ")
    assert "undeclared_thing_llmperf" in message and "error" in message
    (key,) = key_dirs(cache)
    assert [p.name for p in key.iterdir()] == [".lock"]
    # fixing the source builds (the lock left behind does not get in the way)
    src.write_text("int main(void) { return 0; }\n")
    assert os.access(build.build(src, "-O1", cache, cc=REAL_CC), os.X_OK)


def test_link_error_leaves_no_binary(tmp_path: Path) -> None:
    src = tmp_path / "prog.c"
    src.write_text("int missing_function_llmperf(void);\nint main(void) { return missing_function_llmperf(); }\n")
    cache = tmp_path / "cache"
    with pytest.raises(BuildError, match="missing_function_llmperf"):
        build.build(src, "-O1", cache, cc=REAL_CC)
    (key,) = key_dirs(cache)
    assert [p.name for p in key.iterdir()] == [".lock"]


def test_half_written_output_of_a_failed_compile_is_removed(tmp_path: Path) -> None:
    # a compiler that writes part of its output, then fails
    on_source = ('out=""; prev=""; for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\n'
                 'printf "partial" > "$out"; echo "fake-cc: internal compiler error: killed" >&2; exit 1')
    cc, counter = make_cc(tmp_path, "badcc", on_source=on_source)
    src = make_source(tmp_path / "src")
    cache = tmp_path / "cache"
    with pytest.raises(BuildError, match="internal compiler error: killed"):
        build.build(src, "-O1", cache, cc=cc)
    assert calls(counter) == 1
    (key,) = key_dirs(cache)
    assert [p.name for p in key.iterdir()] == [".lock"]


def test_compile_timeout_is_a_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cc, _counter = make_cc(tmp_path, "slowcc", on_source="exec sleep 30")
    src = make_source(tmp_path / "src")
    build.compiler_identity(cc)
    monkeypatch.setitem(build._FLAGS_OK, (cc, ("-O1",)), None)  # the flag probe is not what is timed
    monkeypatch.setattr(build, "COMPILE_TIMEOUT", 1.0)
    t0 = time.monotonic()
    with pytest.raises(BuildError, match=r"prog.c: .*slowcc did not finish within 1 s"):
        build.build(src, "-O1", tmp_path / "cache", cc=cc)
    assert time.monotonic() - t0 < 20
    (key,) = key_dirs(tmp_path / "cache")
    assert [p.name for p in key.iterdir()] == [".lock"]


def test_missing_source_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="nothere.c: source file not found"):
        build.build(tmp_path / "nothere.c", "-O1", tmp_path / "cache", cc=REAL_CC)


def test_compiler_not_found(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src")
    with pytest.raises(CompilerNotFound, match=r"'no-such-compiler-llmperf' not found on PATH \(set --llmperf-cc\)"):
        build.build(src, "-O1", tmp_path / "cache", cc="no-such-compiler-llmperf")
    assert not (tmp_path / "cache").exists()


def test_explicit_compiler_path_that_is_not_an_executable_file(tmp_path: Path) -> None:
    # issue 11, item 18: --llmperf-cc=/etc/passwd said "not found on PATH"; an explicit path says
    # what is wrong with it, naming the option and the path
    src = make_source(tmp_path / "src")
    plain = tmp_path / "passwd"
    plain.write_text("root:x:0:0:root:/root:/bin/sh\n")
    missing = tmp_path / "missing" / "cc"
    for cc, message in ((plain, f"--llmperf-cc {plain}: is not an executable file"),
                        (missing, f"--llmperf-cc {missing}: does not exist"),
                        (tmp_path, f"--llmperf-cc {tmp_path}: is a directory, not an executable file")):
        with pytest.raises(CompilerNotFound) as info:
            build.build(src, "-O1", tmp_path / "cache", cc=str(cc))
        assert str(info.value) == message
    assert not (tmp_path / "cache").exists()
    # a relative path with a directory part is a path too, and an executable one is used (a
    # wrapper script, not a symlink: ccache's cc would look for a compiler named mycc)
    (tmp_path / "mycc").write_text(f'#!/bin/sh\nexec "{REAL_CC}" "$@"\n')
    (tmp_path / "mycc").chmod(0o755)
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert output_of(build.build(src, "-O1", tmp_path / "cache", cc="./mycc")) == "1"
    finally:
        os.chdir(here)


def test_compiler_that_fails_version_is_not_found(tmp_path: Path) -> None:
    broken = tmp_path / "brokencc"
    broken.write_text("#!/bin/sh\necho 'brokencc: cannot load its backend' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(CompilerNotFound, match="failed on --version: brokencc: cannot load its backend"):
        build.build(make_source(tmp_path / "src"), "-O1", tmp_path / "cache", cc=str(broken))


def test_concurrent_threads_compile_once(tmp_path: Path) -> None:
    cc, counter = make_cc(tmp_path, on_source="sleep 0.3")
    src = make_source(tmp_path / "src", 5)
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(build.build(src, "-O1", cache, cc=cc))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert len(results) == 4 and len(set(results)) == 1
    assert calls(counter) == 1
    assert output_of(results[0]) == "5"
    assert sorted(p.name for p in results[0].parent.iterdir()) == [".lock", "build.json", "prog", "prog.manifest.json"]


def test_concurrent_processes_compile_once(tmp_path: Path) -> None:
    cc, counter = make_cc(tmp_path, on_source="sleep 0.3")
    src = make_source(tmp_path / "src", 6)
    cache = tmp_path / "cache"
    code = ("import sys; from pytest_llmperf.native.build import build; "
            "print(build(sys.argv[1], '-O1', sys.argv[2], cc=sys.argv[3]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(src), str(cache), cc],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    paths = {out.strip() for out, _err in outs}
    assert len(paths) == 1
    assert calls(counter) == 1
    assert output_of(Path(paths.pop())) == "6"


def test_unwritable_cache_raises_cache_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory\n")
    cache = blocker / "cache"
    with pytest.raises(CacheError) as info:
        build.build(make_source(tmp_path / "src"), "-O1", cache, cc=REAL_CC)
    assert str(blocker) in str(info.value)
    assert "cannot create the build cache" in str(info.value)


# -- verification of cached binaries ---------------------------------------------------------------

def test_manifest_records_size_and_sha256(tmp_path: Path) -> None:
    import hashlib
    import json

    binary = build.build(make_source(tmp_path / "src"), "-O1", tmp_path / "cache", cc=REAL_CC)
    manifest = json.loads(build.manifest_path(binary).read_text())
    data = binary.read_bytes()
    assert manifest == {"name": "prog", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert build.read_manifest(build.manifest_path(binary)) == {"size": len(data),
                                                                "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("damage", ["truncated", "same-size", "not-executable", "corrupt-manifest"])
def test_damaged_cached_binary_is_rebuilt_with_a_warning(tmp_path: Path, damage: str) -> None:
    # issue 11, item 17: a truncated cached binary was trusted (every session then said "killed by
    # SIGSEGV", with no hint at the cache) and never healed
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src", 3)
    cache = tmp_path / "cache"
    binary = build.build(src, "-O1", cache, cc=cc)
    good = binary.read_bytes()
    if damage == "truncated":
        binary.write_bytes(good[:len(good) // 2])
        reason = f"is {len(good) // 2} bytes, but {len(good)} were built (truncated or overwritten?)"
    elif damage == "same-size":
        binary.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
        reason = "does not match the SHA-256 of the build (corrupted or overwritten?)"
    elif damage == "not-executable":
        binary.chmod(0o644)
        reason = "is not executable"
    else:
        build.manifest_path(binary).write_text("<<<<<<< HEAD\n")
        reason = f"has an unusable manifest (build manifest {build.manifest_path(binary)} is not valid JSON)"
    with pytest.warns(UserWarning) as caught:
        again = build.build(src, "-O1", cache, cc=cc)
    assert [str(w.message) for w in caught] == [f"llmperf: the cached build {binary} {reason}: rebuilding it"]
    assert again == binary
    assert calls(counter) == 2
    assert binary.read_bytes() == good and output_of(binary) == "3"
    # healed: the next call uses it as is
    assert build.build(src, "-O1", cache, cc=cc) == binary
    assert calls(counter) == 2


def test_cached_binary_without_a_manifest_is_rebuilt_quietly(tmp_path: Path, recwarn) -> None:
    # a cache written before manifests existed, or a build interrupted before its manifest
    cc, counter = make_cc(tmp_path)
    src = make_source(tmp_path / "src")
    binary = build.build(src, "-O1", tmp_path / "cache", cc=cc)
    build.manifest_path(binary).unlink()
    assert build.build(src, "-O1", tmp_path / "cache", cc=cc) == binary
    assert calls(counter) == 2
    assert build.manifest_path(binary).is_file()
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"[]", b'{"size": 5}', b'{"size": -1, "sha256": "' +
                                     b"0" * 64 + b'"}', b'{"size": true, "sha256": "' + b"0" * 64 + b'"}',
                                     b'{"size": 5, "sha256": "ABC"}', b'{"size": ' + b"9" * 5000 + b"}",
                                     b"[" * 30000 + b"]" * 30000],
                         ids=lambda c: repr(c[:40]))
def test_read_manifest_refuses_what_is_not_a_manifest(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "prog.manifest.json"
    path.write_bytes(content)
    with pytest.raises(CacheError, match=f"build manifest {path} is not"):
        build.read_manifest(path)
    assert build.read_manifest(tmp_path / "absent.json") is None


def test_source_bytes_with_odd_includes(tmp_path: Path) -> None:
    # an include name the OS refuses (a NUL byte), a header that includes itself, a deep chain
    src = tmp_path / "prog.c"
    chain = [tmp_path / f"h{i}.h" for i in range(1500)]
    for i, header in enumerate(chain):
        header.write_text(f'#include "h{i + 1}.h"\n' if i + 1 < len(chain) else '#include "h0.h"\n')
    src.write_bytes(b'#include "a\0b.h"\n#include "prog.c"\n#include "h0.h"\nint main(void) { return 0; }\n')
    data = build.source_bytes(src)
    assert data.count(b'#include "h') == 1 + 1500  # the source's line, then each header once


def test_split_flags() -> None:
    assert split_flags("-O3 -fopenmp") == ["-O3", "-fopenmp"]
    assert split_flags("  -Ofast   -march=native ") == ["-Ofast", "-march=native"]
    assert split_flags("-DNAME='a b' -O2") == ["-DNAME=a b", "-O2"]
    assert split_flags(["-O3", "-fopenmp"]) == ["-O3", "-fopenmp"]
    assert split_flags(("-O2", Path("x"))) == ["-O2", "x"]
    assert split_flags("") == [] and split_flags([]) == []


def test_uses_openmp() -> None:
    assert uses_openmp("-O3 -fopenmp")
    assert uses_openmp(["-Ofast", "-fopenmp", "-march=native"])
    assert uses_openmp("-fopenmp=libomp")
    assert uses_openmp("-qopenmp") and uses_openmp("-openmp")
    assert not uses_openmp("-O3")
    assert not uses_openmp("-fopenmp-simd")  # SIMD directives only: no threads
    assert not uses_openmp("")
    assert {k for k, v in FLAG_SETS.items() if uses_openmp(v)} == {"O3-omp", "O3-omp-Ofast", "Ofast-omp-native"}
