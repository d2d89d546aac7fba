"""The history glue: its option parsers, and (pytester, real sessions) the append at the end of a
session, the history reference, the change-point gate, the reference commit hook."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

# imported here, so that the in-process pytester runs below (which drop the modules they import when
# they end) share one history.Run class with the reference module
import pytest_llmperf.history
import pytest_llmperf.reference  # noqa: F401
from pytest_llmperf.api import Option, Value
from pytest_llmperf.config import ConfigError
from pytest_llmperf.plugin_history import DEFAULT_NIGHTS, OPTIONS, parse, parse_flag, parse_reference


@pytest.mark.parametrize(("raw", "expected"), [
    (None, ("saved", DEFAULT_NIGHTS)), ("saved", ("saved", DEFAULT_NIGHTS)), ("history", ("history", DEFAULT_NIGHTS)),
    ("history:5", ("history", 5)), (" HISTORY:3 ", ("history", 3)),
])
def test_parse_reference(raw, expected):
    assert parse_reference(raw, "--llmperf-baseline") == expected


@pytest.mark.parametrize(("raw", "fragment"), [
    ("history:0", "must be >= 1"), ("history:x", "expected a whole number"), ("saved:3", "expected 'saved'"),
    ("latest", "expected 'saved', 'history' or 'history:N'"), ("history:99999", "must be <= 1,000"),
])
def test_parse_reference_errors(raw, fragment):
    with pytest.raises(ConfigError, match=fragment) as exc:
        parse_reference(raw, "--llmperf-baseline")
    assert "--llmperf-baseline" in str(exc.value)


def _value(raw, source="LLMPERF_HISTORY_APPEND"):
    return Value(raw, source, Option("--llmperf-history-append", help=""))


@pytest.mark.parametrize(("raw", "expected"), [
    (True, True), (False, False), (None, False), ("1", True), ("yes", True), ("ON", True), ("0", False),
    ("false", False), ("", False),
])
def test_parse_flag(raw, expected):
    assert parse_flag(_value(raw)) is expected


def test_parse_flag_error_names_the_variable():
    with pytest.raises(ConfigError, match="LLMPERF_HISTORY_APPEND: invalid value 'maybe'"):
        parse_flag(_value("maybe"))


def _values(tmp_path: Path, **raw):
    return {o.key: Value(raw.get(o.key), o.flag if o.key in raw else None, o, tmp_path) for o in OPTIONS}


def test_parse_defaults_and_layout(tmp_path):
    opts = parse(_values(tmp_path), tmp_path / "baselines", "n1")
    assert (opts.reference, opts.append, opts.accept, opts.samples, opts.keep) == ("saved", False, False, 0, None)
    assert opts.directory == tmp_path / "baselines" / "n1" / "history"
    opts = parse(_values(tmp_path, llmperf_history_dir="hist", llmperf_accept=True, llmperf_history_keep="30",
                         llmperf_history_samples="50", llmperf_baseline="history:4"), tmp_path / "b", "n1")
    assert opts.directory == tmp_path / "hist" / "n1"
    assert (opts.reference, opts.nights, opts.append, opts.accept, opts.samples, opts.keep) == (
        "history", 4, True, True, 50, 30)


@pytest.mark.parametrize(("key", "raw", "fragment"), [
    ("llmperf_history_keep", "0", "--llmperf-history-keep: invalid value '0', must be >= 1"),
    ("llmperf_history_samples", "-1", "must be >= 0"),
    ("llmperf_history_samples", "5000", "must be <= 1,000"),
])
def test_parse_errors_name_the_option(tmp_path, key, raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse(_values(tmp_path, **{key: raw}), tmp_path, "n1")


def test_history_directory_agrees_with_the_store(tmp_path):
    from pytest_llmperf.history import node_history_dir
    from pytest_llmperf.plugin_history import history_directory

    assert history_directory(tmp_path / "b", "n1", None) == node_history_dir(tmp_path / "b", "n1")
    assert history_directory(tmp_path / "b", "n1", tmp_path / "h") == node_history_dir(tmp_path / "b", "n1",
                                                                                        tmp_path / "h")


# ------------------------------------------------------------------------------ real sessions

NODE = "histnode"
TESTS = textwrap.dedent(
    """
    import os, pytest

    def samples(s):
        return [100.0 * s * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(30)]

    def test_tok(llmperf):
        if os.environ.get("WIDE") == "1":  # three samples far apart: a verdict that cannot decide
            llmperf.record("tok_per_s", [50.0, 100.0, 150.0], unit="tok/s", higher_is_better=True)
            return
        if os.environ.get("WIDE") == "low":  # the same, around a median 20% low
            llmperf.record("tok_per_s", [40.0, 80.0, 120.0], unit="tok/s", higher_is_better=True)
            return
        llmperf.record("tok_per_s", samples(float(os.environ.get("TOK_SCALE", "1"))), unit="tok/s",
                       higher_is_better=True)

    def test_other(llmperf):
        if os.environ.get("SKIP") == "1":
            pytest.skip("no accelerator tonight")
        llmperf.record("ms", samples(1.0), unit="ms", higher_is_better=False)
    """
)
CLEAR = ("LLMPERF_NODE", "LLMPERF_BASELINE_DIR", "LLMPERF_HISTORY_APPEND", "LLMPERF_HISTORY_DIR",
         "LLMPERF_BASELINE", "LLMPERF_STRICT", "PYTEST_ADDOPTS")


@pytest.fixture
def project(pytester, monkeypatch):
    for key in CLEAR:
        monkeypatch.delenv(key, raising=False)
    pytester.makepyfile(test_bench=TESTS)
    return pytester


def _run(pytester, *args, scale=1.0, **env):
    import os

    old = dict(os.environ)
    os.environ["TOK_SCALE"] = str(scale)
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        return pytester.runpytest("-p", "no:cacheprovider", f"--llmperf-node={NODE}", *args)
    finally:
        os.environ.clear()
        os.environ.update(old)


def _lines(pytester, name="test_bench.jsonl"):
    path = pytester.path / "baselines" / NODE / "history" / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _nights(pytester, scales, *extra):
    for s in scales:
        assert _run(pytester, "--llmperf-history-append", *extra, scale=s).ret == 0


def test_append_writes_one_line_per_test_and_nothing_by_default(project):
    assert _run(project).ret == 0
    assert _lines(project) == []
    result = _run(project, "--llmperf-history-append")
    assert result.ret == 0
    lines = _lines(project)
    assert [line["nodeid"] for line in lines] == ["test_bench.py::test_tok", "test_bench.py::test_other"]
    first = lines[0]
    assert first["kind"] == "run" and first["outcome"] == "passed" and first["reset"] is False
    assert first["metrics"]["tok_per_s"]["median"] == pytest.approx(100.0, rel=0.01)
    assert first["metrics"]["tok_per_s"]["status"] == "new" and first["metrics"]["tok_per_s"]["n"] == 30
    assert "samples" not in first["metrics"]["tok_per_s"]
    assert all(len(json.dumps(line)) < 1024 for line in lines)
    result.stdout.fnmatch_lines([f"llmperf: appended run * to the history in *{NODE}*history"])
    _run(project, env_append="1")  # an unrelated variable: still not appended
    _run(project, LLMPERF_HISTORY_APPEND="1", scale=1.0)
    assert len(_lines(project)) == 4
    assert len({line["run"] for line in _lines(project)}) == 2


def test_samples_kept_only_when_asked(project):
    assert _run(project, "--llmperf-history-append", "--llmperf-history-samples=10").ret == 0
    assert len(_lines(project)[0]["metrics"]["tok_per_s"]["samples"]) == 10


def test_history_reference_decides_and_says_which(project):
    _nights(project, [1.0, 1.002, 0.998, 1.001, 0.999])
    ok = _run(project, "--llmperf-baseline=history:5", "--llmperf-json=ok.json", scale=1.0)
    assert ok.ret == 0
    verdict = next(v for v in json.loads((project.path / "ok.json").read_text())["verdicts"]
                   if v["metric"] == "tok_per_s")
    assert verdict["reference"] == "history:5" and verdict["status"] == "ok" and verdict["n_baseline"] == 5
    bad = _run(project, "--llmperf-baseline=history:5", "--llmperf-json=bad.json", scale=0.9)
    assert bad.ret == 1
    verdict = next(v for v in json.loads((project.path / "bad.json").read_text())["verdicts"]
                   if v["metric"] == "tok_per_s")
    assert verdict["status"] == "regressed" and verdict["reference"] == "history:5"
    assert verdict["change"] == pytest.approx(-0.1, abs=0.01)
    ok.stdout.fnmatch_lines(["*test_tok*tok_per_s*history:5*ok*"])


def test_a_regressed_night_does_not_become_the_reference_until_accepted(project):
    _nights(project, [1.0, 1.001, 0.999])
    assert _run(project, "--llmperf-baseline=history", "--llmperf-history-append", scale=0.9).ret == 1
    assert _run(project, "--llmperf-baseline=history", "--llmperf-history-append", scale=0.9).ret == 1
    assert _run(project, "--llmperf-baseline=history", "--llmperf-accept", "--llmperf-report-only",
                scale=0.9).ret == 0
    assert _lines(project)[-2]["reset"] is True
    assert _run(project, "--llmperf-baseline=history", scale=0.9).ret == 0


def test_a_step_at_the_newest_night_fails_the_test_with_dates(project):
    _nights(project, [1.0, 1.002, 0.998, 1.001, 0.999, 1.0])
    result = _run(project, scale=0.85)  # no saved baseline: only the change-point check can fail it
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*llmperf: change point in test_bench.py::test_tok tok_per_s (nightly medians, 7 "
                                 "nights): 20*-*(tonight): -15.0%, worse beyond the tolerance 5.0% at the newest night*"])
    assert _run(project, scale=1.0).ret == 0


def test_a_step_at_the_newest_night_that_tonight_cannot_tell_from_noise_is_a_note(project):
    _nights(project, [1.0, 1.002, 0.998, 1.001, 0.999, 1.0])
    result = _run(project, "--llmperf-baseline=history", WIDE="low")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*change point in test_bench.py::test_tok tok_per_s (nightly medians, 7 nights): "
                                 "20*-20.0% at the newest night, but tonight's own interval [[]-*, +*[]] covers "
                                 "no change: not failed*"])


def test_a_slow_drift_fails_once_it_adds_up_beyond_the_tolerance(project):
    # -1% a night: no night is a step beyond the 5% tolerance, the sum of them is
    _nights(project, [1.0, 1.002, 0.998, 1.001, 0.999, 0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93],
            "--llmperf-report-only")
    result = _run(project, scale=0.92)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*llmperf: drift in test_bench.py::test_tok tok_per_s (nightly medians, 13 nights): "
                                 "-1.0%/night since 20*, -*% in all (p=*): worse beyond the tolerance 5.0%*"])


def test_saving_a_baseline_restarts_the_history_reference(project):
    _nights(project, [1.0, 1.0])
    assert _run(project, "--llmperf-save-baseline", scale=0.9).ret == 0
    accepts = [line for line in _lines(project) if line["kind"] == "accept"]
    assert {a["nodeid"] for a in accepts} == {"test_bench.py::test_tok", "test_bench.py::test_other"}
    assert accepts[0]["why"] == "baseline saved"
    assert _run(project, "--llmperf-save-baseline", "--llmperf-history-append", scale=0.9).ret == 0
    assert _lines(project)[-1]["reset"] is True


def test_unwritable_history_dir_is_a_usage_error(project):
    (project.path / "afile").write_text("x")
    result = _run(project, "--llmperf-history-append", "--llmperf-history-dir=afile")
    assert result.ret == 4
    assert "afile" in result.stderr.str() and "llmperf:" in result.stderr.str()


def test_a_corrupt_history_is_one_error_line_and_is_not_rewritten(project):
    _nights(project, [1.0, 1.0])
    path = project.path / "baselines" / NODE / "history" / "test_bench.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    before = path.read_bytes()
    result = _run(project, "--llmperf-history-append")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*llmperf: ERROR: history not used: *test_bench.jsonl*line 2*"])
    assert path.read_bytes().startswith(before)


def test_run_json_has_schema_time_commits_and_host(project):
    import socket
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=project.path, check=True)
    subprocess.run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=project.path, check=True)
    assert _run(project, "--llmperf-json=run.json", "--llmperf-history-append").ret == 0
    data = json.loads((project.path / "run.json").read_text())
    assert data["schema"] == "pytest-llmperf-run" and data["schema_version"] == 2
    assert data["time"].endswith("Z") and data["host"] == socket.gethostname()
    assert len(data["commits"]["repo"]["commit"]) == 40
    assert _lines(project)[0]["run"] == data["run_id"]
    assert _lines(project)[0]["commits"]["repo"] == data["commits"]["repo"]


# a llama2c checkout at $SRC_COMMIT, and what the reference-commit hook answers at the end
HOOK_CONFTEST = textwrap.dedent(
    """
    import os, pytest
    from pytest_llmperf.api import session

    @pytest.hookimpl(trylast=True)
    def pytest_configure(config):
        session(config).sources["llama2c"] = {"path": "/src", "commit": os.environ["SRC_COMMIT"], "dirty": False}

    def pytest_terminal_summary(terminalreporter, config):
        answer = config.hook.pytest_llmperf_reference_commit(config=config, nodeid="test_bench.py::test_tok",
                                                             source="llama2c")
        terminalreporter.write_line(f"REFERENCE-COMMIT {answer}")
    """)


def test_reference_commit_hook_answers_from_the_history(project):
    project.makeconftest(HOOK_CONFTEST)
    first = _run(project, "--llmperf-history-append", SRC_COMMIT="a" * 40)
    first.stdout.fnmatch_lines(["REFERENCE-COMMIT None"])
    again = _run(project, "--llmperf-history-append", SRC_COMMIT="b" * 40)
    again.stdout.fnmatch_lines([f"REFERENCE-COMMIT {'a' * 40}"])
    assert _lines(project)[-1]["commits"]["llama2c"] == {"commit": "b" * 40, "dirty": False}


def test_a_test_of_the_history_that_skips_is_missing(project):
    _nights(project, [1.0])
    result = _run(project, SKIP="1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*WARNING missing*test_other*no accelerator tonight*"])
    strict = _run(project, "--llmperf-strict", "--llmperf-report-only", SKIP="1")
    assert "missing" in strict.stdout.str()


def test_under_xdist_the_controller_appends_every_test_once(project):
    result = _run(project, "-p", "xdist", "-n", "2", "--llmperf-history-append")
    assert result.ret == 0
    lines = _lines(project)
    assert sorted(line["nodeid"] for line in lines) == ["test_bench.py::test_other", "test_bench.py::test_tok"]
    assert len({line["run"] for line in lines}) == 1
    assert _run(project, "-p", "xdist", "-n", "2", "--llmperf-baseline=history", "--llmperf-json=x.json").ret == 0
    found = {v["test"]: v["reference"] for v in json.loads((project.path / "x.json").read_text())["verdicts"]}
    assert found == {"test_bench.py::test_tok": "history:1", "test_bench.py::test_other": "history:1"}


def test_a_noisy_night_does_not_become_the_commit_to_pair_against(project):
    project.makeconftest(HOOK_CONFTEST)
    assert _run(project, "--llmperf-history-append", "--llmperf-save-baseline", SRC_COMMIT="a" * 40).ret == 0
    noisy = _run(project, "--llmperf-history-append", SRC_COMMIT="b" * 40, WIDE="1")
    assert noisy.ret == 0
    assert _lines(project)[-2]["metrics"]["tok_per_s"]["status"] == "noisy"
    noisy.stdout.fnmatch_lines([f"REFERENCE-COMMIT {'a' * 40}"])
    after = _run(project, "--llmperf-history-append", SRC_COMMIT="c" * 40)
    after.stdout.fnmatch_lines([f"REFERENCE-COMMIT {'a' * 40}"])  # the noisy night b is skipped
    again = _run(project, SRC_COMMIT="d" * 40)
    again.stdout.fnmatch_lines([f"REFERENCE-COMMIT {'a' * 40}"])  # the saved baseline's build, every night


def test_without_a_saved_baseline_the_newest_decided_night_is_paired_against(project):
    project.makeconftest(HOOK_CONFTEST)
    hist = ("--llmperf-history-append", "--llmperf-baseline=history")
    assert _run(project, *hist, SRC_COMMIT="a" * 40).ret == 0
    assert _run(project, *hist, SRC_COMMIT="b" * 40).ret == 0
    noisy = _run(project, *hist, SRC_COMMIT="c" * 40, WIDE="1")
    noisy.stdout.fnmatch_lines([f"REFERENCE-COMMIT {'b' * 40}"])
    assert _lines(project)[-2]["metrics"]["tok_per_s"]["status"] == "noisy"
    after = _run(project, "--llmperf-baseline=history", SRC_COMMIT="d" * 40)
    after.stdout.fnmatch_lines([f"REFERENCE-COMMIT {'b' * 40}"])  # the noisy night c is skipped


PAIRED_TESTS = textwrap.dedent(
    """
    import os
    from pytest_llmperf.measure import Measurement

    def test_tok(llmperf):
        # paired rounds: the reference build's tok/s beside this build's in every round; LOAD moves
        # both (the machine that night), RATIO is the code's own speed against the reference
        load, ratio = float(os.environ.get("LOAD", "1")), float(os.environ.get("RATIO", "1"))
        ref = [100.0 * load * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(20)]
        cur = [r * ratio * (1 + ((i * 5) % 7 - 3) / 1000.0) for i, r in enumerate(ref)]
        m = Measurement(samples=cur, probes=None, iterations=len(cur), result=None, stop_reason="budget",
                        elapsed=1.0, warmup={"discarded": 0, "first": cur[0], "steady": cur[0], "ratio": 1.0},
                        paired=ref)
        llmperf.record_rounds("tok_per_s", m, "tok/s", True, normalize="off", paired_ref="git 0123456789ab")
    """
)


def test_paired_nights_are_checked_for_steps_in_their_ratios_not_their_load(project):
    project.makepyfile(test_bench=PAIRED_TESTS)
    for load in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0):
        assert _run(project, "--llmperf-history-append", LOAD=str(load)).ret == 0
    # tonight the machine is 30% slower for both builds: the raw medians step, the ratios do not
    slower = _run(project, "--llmperf-history-append", LOAD="0.7")
    assert slower.ret == 0, slower.stdout.str()
    assert "change point" not in slower.stdout.str()
    assert _lines(project)[-1]["metrics"]["tok_per_s"]["ref"] == "paired:git 0123456789ab"
    # a step in the ratios at the newest night that the paired verdict alone lets through (within
    # the tolerance of 10%) is a note; the ratio series says where it is
    small = _run(project, "--llmperf-history-append", "--llmperf-tolerance=tok_per_s=10%", LOAD="0.7", RATIO="0.94")
    assert small.ret == 0
    small.stdout.fnmatch_lines(["*change point in test_bench.py::test_tok tok_per_s (paired ratios to the "
                                "reference build, 8 nights)*-6.0%*"])
