"""End-to-end tests of the llama2.c support through pytester (a pytest subprocess per run).

Every run gets ``--llmperf-cache-dir`` under a cache directory shared by this module's tests (the
reference runner is compiled, the synthetic stories260K written and the node's memory bandwidth
measured once), so the user's cache is never touched. Runs are kept short: stories260K, few
steps, ``--llmperf-max-time=0.3``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import run_isolated
from pytest_llmperf.llama2c import models

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "suites" / "test_llama2c.py"
FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]
ENV_OPTIONS = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_LLAMA2C_SRC", "LLMPERF_CC", "LLMPERF_MODELS",
               "LLMPERF_CACHE_DIR", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llama2c-cache")


def run(pytester: pytest.Pytester, cache: Path, *args: str, env: dict | None = None) -> pytest.RunResult:
    return run_isolated(pytester, *FAST, f"--llmperf-cache-dir={cache}", *args, clear=ENV_OPTIONS, env=env)


def assert_cache_clean(cache: Path) -> None:
    """No temporary file anywhere; each build directory holds its lock and, when the build
    succeeded, build.json, and executables each with its manifest."""
    for path in cache.rglob("*"):
        assert not path.name.endswith(".tmp"), path
        assert not path.name.startswith("llmperf-"), path
    builds = cache / "llama2c" / "build"
    for key in (builds.iterdir() if builds.is_dir() else []):
        names = sorted(p.name for p in key.iterdir())
        if names == [".lock"]:
            continue
        binaries = [n for n in names if n not in (".lock", "build.json") and not n.endswith(".manifest.json")]
        assert binaries and names == sorted([".lock", "build.json", *binaries,
                                             *(n + ".manifest.json" for n in binaries)]), (key, names)
        assert all(os.access(key / n, os.X_OK) for n in binaries)


def failure_section(result: pytest.RunResult, test: str) -> list[str]:
    """The lines of the FAILURES section of one test."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if line.strip("_ ") == test)
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("____") or lines[i].startswith("====")), len(lines))
    return lines[start + 1:end]


# -- a real run: save, compare, summary, node info ---------------------------------------------

BENCH = """
import pytest

@pytest.mark.parametrize("threads", [1])
@pytest.mark.parametrize("flags", [pytest.param("-O3", id="O3")])
def test_bench(llama2c, flags, threads):
    binary = llama2c.build(flags)
    llama2c.bench(binary, llama2c.model("stories260K"), steps=64, threads=threads)
"""


def test_bench_saves_then_compares(pytester: pytest.Pytester, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the note on one line (notes wrap to the width)
    pytester.makepyfile(test_llama=BENCH)
    saved = run(pytester, cache_dir, "--llmperf-save-baseline")
    saved.assert_outcomes(passed=1)
    assert saved.ret == 0
    node_dir = pytester.path / "baselines" / "testnode"
    baseline = json.loads((node_dir / "test_llama.json").read_text())
    entry = baseline["tests"]["test_bench[O3-1]"]
    assert entry["params"] == {"flags": "-O3", "threads": 1}
    metrics = entry["metrics"]
    assert set(metrics) == {"tok_per_s", "mbu", "peak_rss", "pred_tok_per_s"}
    # the roofline's tok/s from the node's bandwidth: informational, one figure for every round
    pred = metrics["pred_tok_per_s"]
    assert pred["gate"] is False and pred["unit"] == "tok/s" and pred["summary"]["min"] == pred["summary"]["max"]
    assert metrics["tok_per_s"].get("gate", True) is True and metrics["tok_per_s"]["unit"] == "tok/s"
    assert metrics["tok_per_s"]["direction"] == "higher"
    assert metrics["mbu"]["gate"] is False and metrics["mbu"]["unit"] == "%"
    assert metrics["peak_rss"]["gate"] is False and metrics["peak_rss"]["unit"] == "MiB"
    assert metrics["peak_rss"]["direction"] == "lower"
    for name in metrics:
        assert metrics[name]["summary"]["n"] >= 5 and metrics[name]["summary"]["median"] > 0

    # the bandwidth behind the MBU is written beside the baselines, under the baseline's fingerprint
    info = json.loads((node_dir / "node-info.json").read_text())
    bandwidth = info["memory_bandwidth"][entry["fingerprint"]]
    assert bandwidth["read_GBps"] > 0 and bandwidth["bytes"] >= 64 << 20
    cached = cache_dir / "nodes" / "testnode.json"
    assert json.loads(cached.read_text())["memory_bandwidth"][entry["fingerprint"]] == bandwidth

    from pytest_llmperf.compare import fmt_value

    # the summary's roofline table: the prediction next to the measured median, and the bound
    saved.stdout.fnmatch_lines([
        f"roofline of test_llama.py::test_bench: tok_per_s (tok/s) on this node: {bandwidth['read_GBps']:.1f} GB/s:",
        "test*measured*predicted*efficiency*bound",
        f"?O3-1?*{fmt_value(pred['summary']['median'])}*%*memory",
    ])
    saved.stdout.fnmatch_lines([
        "*llmperf: node testnode*",
        "test_llama.py::test_bench?O3-1?*tok_per_s*tok/s*new*",
        "test_llama.py::test_bench?O3-1?*peak_rss*MiB*info*",
        "test_llama.py::test_bench?O3-1?*mbu*%*info*",
        "test_llama.py::test_bench by parameters (medians):",
        "flags*threads*tok_per_s (tok/s)*",
        "-O3*1*",
        "llmperf: 1 new, 3 info",
        "llmperf: saved baseline *testnode*test_llama.json",
    ])
    per_token = models.CONFIGS["stories260K"].weight_bytes_per_token()
    note = "llmperf: note: mbu of test_llama.py::test_bench?O3-1?: the weights (1.0 MiB read per token) fit in the " \
           "last-level cache (* MiB): decode reads them from the cache, and MBU may exceed 100%"
    # which note (if any) depends on this machine's last-level cache: the weights fit in it, are
    # under 8x its size (a 512 KiB L2 of a small Arm board), or neither (or no LLC known)
    llc = bandwidth.get("llc_bytes")
    if llc and per_token <= llc:
        saved.stdout.fnmatch_lines([note])
    elif llc and per_token <= 8 * llc:
        saved.stdout.fnmatch_lines(["llmperf: note: mbu of test_llama.py::test_bench?O3-1?: the weights (1 MiB read "
                                    "per token) are only *x the last-level cache (* MiB): part of them may come "
                                    "from the cache, so MBU reads high"])
    else:
        saved.stdout.no_fnmatch_line("*llmperf: note: mbu*")

    # a compare run uses the bandwidth stored beside the baselines: no probe, no node cache.
    # The tolerance is wide: this checks the compare path, not this machine's steadiness (the
    # other xdist worker may halve the runner's speed while this run compares)
    cached.unlink()
    # the roofline on a datasheet device instead, at 90% of its bandwidth
    report = pytester.path / "compared.json"
    compared = run(pytester, cache_dir, "--llmperf-tolerance=tok_per_s=300%", f"--llmperf-json={report}",
                   "--llmperf-roofline-device=a100-sxm-80gb", "--llmperf-roofline-hbme=90%", env={"COLUMNS": "200"})
    compared.assert_outcomes(passed=1)
    assert compared.ret == 0
    from pytest_llmperf.roofline.models import model as roofline_model
    from pytest_llmperf.roofline.node import Assumption, decode
    from pytest_llmperf.roofline.precision import scheme

    (estimate,) = json.loads(report.read_text())["tests"][0]["roofline"]
    expected = decode(roofline_model("stories260K"), scheme("w32a32e32"), 32, Assumption("a100-sxm-80gb", 1.0, 0.9))
    assert estimate == {"metric": "tok_per_s", "predicted": pytest.approx(expected.value), "unit": "tok/s",
                        "bound": "memory", "device": "a100-sxm-80gb (datasheet), fe 1, hbme 0.9"}
    compared.stdout.fnmatch_lines(["roofline of test_llama.py::test_bench: tok_per_s (tok/s) on a100-sxm-80gb "
                                   "(datasheet), fe 1, hbme 0.9:"])
    compared.stdout.fnmatch_lines([
        "test_llama.py::test_bench?O3-1?*tok_per_s*tok/s*tok/s*%*300.0%*",
        "test_llama.py::test_bench by parameters (medians):",
    ])
    # never regressed; noisy (the interval spans both no change and the tolerance) passes too
    compared.stdout.re_match_lines([r"llmperf: 1 (ok|improved|noisy), 3 info"])
    assert not cached.exists()
    assert json.loads((node_dir / "test_llama.json").read_text()) == baseline  # a compare run never writes
    assert_cache_clean(cache_dir)


NODE_INFO_CONFLICT = """{
  "memory_bandwidth": {
<<<<<<< HEAD
    "fp-machine-a": {"read_GBps": 12.5, "threads": 4}
=======
    "fp-machine-b": {"read_GBps": 3.25, "threads": 1}
>>>>>>> nightly
  }
}
"""


def test_corrupt_node_info_skips_mbu_with_a_warning_and_keeps_the_file(pytester: pytest.Pytester,
                                                                        cache_dir: Path) -> None:
    # issue 11, item 5: a node-info file that cannot be parsed (a merge conflict holding two other
    # machines' bandwidth) was silently replaced, losing both entries. Now it is never overwritten;
    # the bench records and saves its gate (tok/s) and peak RSS, and skips MBU with a warning
    # naming the file
    pytester.makepyfile(test_llama=BENCH)
    node_dir = pytester.path / "baselines" / "testnode"
    node_dir.mkdir(parents=True)
    info = node_dir / "node-info.json"
    info.write_text(NODE_INFO_CONFLICT)
    saved = run(pytester, cache_dir, "--llmperf-save-baseline")
    saved.assert_outcomes(passed=1)
    assert saved.ret == 0
    assert info.read_text() == NODE_INFO_CONFLICT
    saved.stdout.fnmatch_lines([f"*llmperf: mbu not recorded: node-info file {info} is corrupt JSON (Expecting "
                                f"property name enclosed in double quotes at line 3 column 1): fix it or restore it "
                                f"from git"])
    metrics = json.loads((node_dir / "test_llama.json").read_text())["tests"]["test_bench[O3-1]"]["metrics"]
    assert set(metrics) == {"tok_per_s", "peak_rss"}
    assert "Traceback" not in saved.stdout.str()
    # a test that asks for the bandwidth itself fails with the same line
    pytester.makepyfile(test_bw="def test_bw(llama2c):\n    llama2c.bandwidth()\n")
    asked = run(pytester, cache_dir, "test_bw.py")
    asked.assert_outcomes(failed=1)
    assert failure_section(asked, "test_bw") == [
        f"llmperf: node-info file {info} is corrupt JSON (Expecting property name enclosed in double quotes at "
        f"line 3 column 1): fix it or restore it from git"]
    assert info.read_text() == NODE_INFO_CONFLICT


# -- bad input ---------------------------------------------------------------------------------

def test_missing_compiler_fails_the_tests_that_build(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_cc="""
        def test_build(llama2c):
            llama2c.build("-O3")

        def test_model_only(llama2c):
            assert llama2c.model("stories260K").checkpoint.is_file()
    """)
    result = run(pytester, cache_dir, "--llmperf-cc=no-such-cc-llmperf")
    result.assert_outcomes(failed=1, passed=1)
    assert failure_section(result, "test_build") == [
        "llmperf: compiler 'no-such-cc-llmperf' not found on PATH (set --llmperf-cc)"]
    assert "Traceback" not in result.stdout.str()


def test_compiler_path_that_is_not_an_executable_is_a_usage_error(pytester: pytest.Pytester, cache_dir: Path) -> None:
    # issue 11, item 18: --llmperf-cc=/etc/passwd said "compiler '/etc/passwd' not found on PATH"
    pytester.makepyfile(test_cc="def test_build(llama2c):\n    llama2c.build('-O3')\n")
    passwd = pytester.path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    result = run(pytester, cache_dir, f"--llmperf-cc={passwd}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: --llmperf-cc {passwd}: is not an executable file"])
    missing = pytester.path / "bin" / "gcc-99"
    result = run(pytester, cache_dir, env={"LLMPERF_CC": str(missing)})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: LLMPERF_CC {missing}: does not exist"])
    result = run(pytester, cache_dir, f"--llmperf-cc={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: --llmperf-cc {pytester.path}: is a directory, not an executable "
                                 f"file"])


def test_source_dir_without_run_c_is_a_usage_error(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_src="def test_build(llama2c):\n    llama2c.build('-O3')\n")
    empty = pytester.mkdir("not-llama2c")
    (empty / "README.md").write_text("no sources here\n")
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={empty}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: --llmperf-llama2c-src {empty}: no run.c in it "
                                 f"(expected a llama2.c checkout)"])
    absent = pytester.path / "absent"
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={absent}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: --llmperf-llama2c-src {absent}: not a directory"])
    # the same from the environment
    result = run(pytester, cache_dir, env={"LLMPERF_LLAMA2C_SRC": str(empty)})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: llmperf: --llmperf-llama2c-src {empty}: no run.c in it*"])


def test_bad_run_timeout_is_a_usage_error(pytester: pytest.Pytester, cache_dir: Path) -> None:
    pytester.makepyfile(test_t="def test_a():\n    pass\n")
    result = run(pytester, cache_dir, "--llmperf-run-timeout=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: llmperf: --llmperf-run-timeout: invalid value 'soon'*"])


MODELS_TEST = """
import os, pytest

@pytest.mark.parametrize("name", ["stories260K", "stories15M", "stories42M"])
def test_model(llama2c, name):
    model = llama2c.model(name)
    llama2c.run(os.environ["MARKER_BINARY"], model, steps=16)
"""


def test_models_dir_missing_and_invalid_files(pytester: pytest.Pytester, cache_dir: Path, tmp_path: Path) -> None:
    models_dir = pytester.mkdir("models")
    # stories260K: a valid tokenizer, a checkpoint cut short of what its header says
    small = models.CONFIGS["stories260K"]
    (models_dir / "stories260K.bin").write_bytes(small.header_bytes() + bytes(1000))
    models.write_tokenizer(models_dir / "tok512.bin", 512)
    # stories15M: a checkpoint of the right size (sparse), a tokenizer of 300 tokens, not 32000
    big = models.CONFIGS["stories15M"]
    with open(models_dir / "stories15M.bin", "wb") as fh:
        fh.write(big.header_bytes())
        fh.truncate(big.file_size())
    assert models.read_checkpoint_header(models_dir / "stories15M.bin") == big
    models.write_tokenizer(models_dir / "tokenizer.bin", 300)
    # stories42M: not there at all
    marker = tmp_path / "binary-ran"
    binary = tmp_path / "fake-run"
    binary.write_text(f"#!/bin/sh\ntouch '{marker}'\necho 'achieved tok/s: 1.0' >&2\n")
    binary.chmod(0o755)
    pytester.makepyfile(test_models=MODELS_TEST)
    result = run(pytester, cache_dir, f"--llmperf-models={models_dir}", "-rs", env={"MARKER_BINARY": str(binary)})
    result.assert_outcomes(failed=2, skipped=1)
    ckpt = models_dir / "stories260K.bin"
    assert failure_section(result, "test_model[stories260K]") == [
        f"llmperf: {ckpt}: size {ckpt.stat().st_size} bytes, but its header ({small.describe()}) needs "
        f"{small.file_size()}: truncated or not a llama2.c checkpoint"]
    assert failure_section(result, "test_model[stories15M]") == [
        f"llmperf: {models_dir / 'tokenizer.bin'} has only 300 complete tokens, the model's vocab_size is 32000"]
    result.stdout.fnmatch_lines([f"SKIPPED *{models_dir / 'stories42M.bin'} not found (--llmperf-models {models_dir})"])
    assert not marker.exists()  # nothing was run on an invalid model


FAKE_RUN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = getenv("FAKE_MODE");
    if (mode == NULL || !strcmp(mode, "ok")) {
        printf("Once upon a time\n");
        fprintf(stderr, "achieved tok/s: 1234.500000\n");
        return 0;
    }
    if (!strcmp(mode, "garbage")) {
        printf("Once upon a garbage time\n");
        fprintf(stderr, "#@!%% no rate here\n");
        return 0;
    }
    if (!strcmp(mode, "nothing")) return 0;
    if (!strcmp(mode, "hang")) for (;;) pause();
    if (!strcmp(mode, "crash")) {
        fprintf(stderr, "run: loading checkpoint\nrun: corrupt weights, giving up\n");
        fflush(stderr);
        abort();
    }
    if (!strcmp(mode, "exit")) {
        fprintf(stderr, "run: cannot open tokenizer\n");
        return 1;
    }
    return 2;
}
"""

FAKE_RUN_TEST = """
import pytest

@pytest.fixture
def binary(llama2c):
    return llama2c.build("-O2")

@pytest.mark.parametrize("mode", ["garbage", "nothing", "hang", "crash", "exit"])
def test_broken(llama2c, binary, mode, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", mode)
    llama2c.run(binary, llama2c.model("stories260K"), steps=16)

def test_goes_on(llama2c, binary, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "ok")
    result = llama2c.bench(binary, llama2c.model("stories260K"), mbu=False, steps=16)
    assert result.tok_per_s and set(result.tok_per_s) == {1234.5}
"""


def test_broken_runners_fail_their_tests_and_the_suite_goes_on(pytester: pytest.Pytester, cache_dir: Path,
                                                             tmp_path: Path) -> None:
    src = pytester.mkdir("llama2c")
    (src / "run.c").write_text(FAKE_RUN_C)
    pytester.makepyfile(test_fake=FAKE_RUN_TEST)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={src}", "--llmperf-run-timeout=1",
                 env={"TMPDIR": str(tmpdir)})
    result.assert_outcomes(failed=5, passed=1)
    garbage = failure_section(result, "test_broken[garbage]")
    assert garbage[0].startswith("llmperf: run printed no 'achieved tok/s:' line")
    assert garbage[-1] == "#@!% no rate here"
    nothing = failure_section(result, "test_broken[nothing]")
    assert nothing[0].startswith("llmperf: run printed no 'achieved tok/s:' line")
    assert nothing[-1] == "(no output)"
    (hang,) = failure_section(result, "test_broken[hang]")
    assert hang.startswith("llmperf: run did not finish within the timeout of 1 s (--llmperf-run-timeout) "
                           "and was killed with its process group; command: ")
    assert "stories260K.bin" in hang
    assert failure_section(result, "test_broken[crash]") == [
        "llmperf: run was killed by SIGABRT; stderr ends with:",
        "run: loading checkpoint",
        "run: corrupt weights, giving up",
    ]
    assert failure_section(result, "test_broken[exit]") == [
        "llmperf: run exited with code 1; stderr ends with:",
        "run: cannot open tokenizer",
    ]
    result.stdout.fnmatch_lines(["*test_fake.py::test_goes_on*tok_per_s*1,234*tok/s*"])
    assert "Traceback" not in result.stdout.str()
    assert_cache_clean(cache_dir)
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("llmperf-")] == []


BUILD_TEST = """
def test_build(llama2c):
    llama2c.build("-O2")

def test_flags_rejected(llama2c):
    llama2c.build("-O2 -fno-such-flag-llmperf")

def test_model_only(llama2c):
    assert llama2c.model("stories260K").checkpoint.is_file()
"""


def test_source_that_does_not_build(pytester: pytest.Pytester, cache_dir: Path) -> None:
    src = pytester.mkdir("broken-llama2c")
    (src / "run.c").write_text("int main(void) {\n    return undeclared_llmperf_symbol;\n}\n")
    pytester.makepyfile(test_build=BUILD_TEST)
    result = run(pytester, cache_dir, f"--llmperf-llama2c-src={src}", "-rs")
    result.assert_outcomes(failed=1, skipped=1, passed=1)
    section = failure_section(result, "test_build")
    assert section[0] == "llmperf: run.c does not build with cc -O2 (exit code 1):"
    assert any("undeclared_llmperf_symbol" in line and "error" in line for line in section[1:])
    # the flag set the compiler rejects: a skip with the compiler's own message
    result.stdout.fnmatch_lines(["SKIPPED *cc rejects -O2 -fno-such-flag-llmperf: *-fno-such-flag-llmperf*"])
    assert_cache_clean(cache_dir)
    built = [key for key in (cache_dir / "llama2c" / "build").iterdir()
             if (key / "build.json").exists() and str(src) in (key / "build.json").read_text()]
    assert built == []  # no binary of the broken source anywhere


def test_unwritable_cache_dir(pytester: pytest.Pytester, tmp_path: Path) -> None:
    blocker = tmp_path / "regular-file"
    blocker.write_text("not a directory\n")
    cache = blocker / "cache"
    pytester.makepyfile(test_cache="""
        def test_build(llama2c):
            llama2c.build("-O3")

        def test_model(llama2c):
            llama2c.model("stories260K")

        def test_plain():
            pass
    """)
    result = run(pytester, cache)
    result.assert_outcomes(failed=2, passed=1)
    expected = [f"llmperf: cache directory (--llmperf-cache-dir) {cache} is not writable: Not a directory"]
    assert failure_section(result, "test_build") == expected
    assert failure_section(result, "test_model") == expected


# -- the suite file ------------------------------------------------------------------------------

def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def expected_ids(model_names: list[str], threads: list[int]) -> list[str]:
    ids = []
    for model in model_names:
        for flag_id, openmp in [("O3", False), ("O3-omp", True), ("O3-omp-Ofast", True), ("Ofast", False),
                                ("Ofast-omp-native", True)]:
            for t in (threads if openmp else [1]):
                ids.append(f"test_llama2c.py::test_run[{model}-{flag_id}-t{t}]")
    return ids + ["test_llama2c.py::test_runq[no-runq]"]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(SUITE, pytester.path / "test_llama2c.py")
    return pytester


def test_suite_default_models(suite: pytest.Pytester, cache_dir: Path) -> None:
    result = run(suite, cache_dir, "--collect-only", "-q", "--llmperf-threads=1,2")
    assert result.ret == 0
    assert collected(result) == expected_ids(["260K", "15M"], [1, 2])
    assert len(collected(result)) == 17


def test_suite_all_models_and_aliases(suite: pytest.Pytester, cache_dir: Path) -> None:
    result = run(suite, cache_dir, "--collect-only", "-q", "--llmperf-threads=2,1", "--llmperf-llama2c-models=all")
    assert result.ret == 0
    assert collected(result) == expected_ids(["260K", "15M", "42M", "110M"], [1, 2])
    result = run(suite, cache_dir, "--collect-only", "-q", "--llmperf-threads=4",
                 "--llmperf-llama2c-models=110m, stories260K")
    assert result.ret == 0
    assert collected(result) == expected_ids(["110M", "260K"], [4])


def test_suite_bad_options_are_usage_errors(suite: pytest.Pytester, cache_dir: Path) -> None:
    result = run(suite, cache_dir, "--collect-only", "-q", "--llmperf-llama2c-models=stories7B")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --llmperf-llama2c-models: unknown model 'stories7B' (known: stories260K, "
                                 "stories15M, stories42M, stories110M, all)"])
    for bad in ("0", "1,-2", "two", "1,99999999999999999999"):
        result = run(suite, cache_dir, "--collect-only", "-q", f"--llmperf-threads={bad}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: --llmperf-threads: expected positive integers up to 1024 like 1,2,4; "
                                     f"got '{bad}'"])


def test_suite_no_runq_skips_with_its_reason(suite: pytest.Pytester, cache_dir: Path) -> None:
    result = run(suite, cache_dir, "-k", "no-runq", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *no runq.c: the reference runner stands for run.c only*"])
