"""The ``pytest-llmperf`` command line, run as a real process (``python -m pytest_llmperf.cli``)
on histories written with HistoryStore: the table, --json, accept, compact, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pytest_llmperf.compare import fmt_value
from pytest_llmperf.history import Accept, HistoryStore, Point, Run, node_history_dir, utc_now_text

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=timezone.utc)
TOK = "suites/test_x.py::test_tok[260K]"
LAT = "tests/test_y.py::test_latency"
# a deterministic wobble of +-0.4% around each level
WOBBLE = [0.0, 0.004, -0.003, 0.002, -0.004, 0.001, 0.003, -0.002, 0.0, -0.001, 0.004, -0.003]


def sha(night: int) -> str:
    return f"{night:02d}" + "ab" * 19


def point(name, median, unit="tok/s", higher=True, status="ok", **kw) -> Point:
    return Point(name=name, unit=unit, higher_is_better=higher, median=median, n=20, se=0.002, adjusted=None,
                 probe_kind=None, cpu_share=0.99, status=status, change=0.0, reference="history:5", **kw)


def night_run(nodeid, night, metrics, fp="fp1", outcome="passed") -> Run:
    return Run(time=utc_now_text(T0 + timedelta(days=night)), run_id=f"run{night:02d}", nodeid=nodeid,
               fingerprint=fp, plugin_version="0.1.0", commits={"repo": {"commit": sha(night), "dirty": False}},
               outcome=outcome, reset=night == 0, metrics=metrics)


@pytest.fixture
def node(tmp_path) -> Path:
    """12 nights of two tests: tok_per_s 100 tok/s for 8 nights, then 90 (regressed, failed);
    mbu steady; latency steady at 5 ms."""
    store = HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))
    runs = []
    for night in range(12):
        slow = night >= 8
        tok = (90.0 if slow else 100.0) * (1 + WOBBLE[night])
        runs.append(night_run(TOK, night, {
            "tok_per_s": point("tok_per_s", round(tok, 4), status="regressed" if slow else "ok"),
            "mbu": point("mbu", round(40.0 * (1 + WOBBLE[night]), 4), unit="%", status="info", gate=False),
        }, outcome="failed" if slow else "passed"))
        runs.append(night_run(LAT, night, {
            "latency": point("latency", round(5.0 * (1 + WOBBLE[night]), 5), unit="ms", higher=False)}))
    store.append(runs)
    return tmp_path


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_llmperf.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def listing(cwd: Path, *args: str) -> dict:
    out = cli(cwd, "history", "--node", "n1", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metric(data: dict, nodeid: str, name: str) -> dict:
    (test,) = [t for t in data["tests"] if t["nodeid"] == nodeid]
    (found,) = [m for m in test["metrics"] if m["metric"] == name]
    return found


def test_table(node):
    out = cli(node, "history", "--node", "n1")  # ./baselines by default
    assert out.returncode == 0 and out.stderr == ""
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["test", "metric", "nights", "newest", "date", "trend", "change", "points", "reference"]
    assert len(lines) == 2 + 3  # header, rule, three metrics
    (tok,) = [line for line in lines if TOK in line and "tok_per_s" in line]
    step = metric(listing(node), TOK, "tok_per_s")["change_points"][0]
    assert tok.split()[2:6] == ["12", "89.73", "tok/s", "2026-03-12"]
    # the step: dates and commits on both sides, its size
    assert f"2026-03-08..2026-03-09 07ababab..08ababab {step['change'] * 100:+.1f}%" in tok
    ref = metric(listing(node), TOK, "tok_per_s")["reference"]
    assert ref["raw_center"] == pytest.approx(100.0, rel=0.002)  # nights 0-7, the regressed ones left out
    assert tok.endswith(f"history:8 {fmt_value(ref['raw_center'])} ±{ref['between_sd'] * 100:.1f}%")
    (lat,) = [line for line in lines if LAT in line]
    assert lat.split()[1:6] == ["latency", "12", "4.985", "ms", "2026-03-12"]
    ref = metric(listing(node), LAT, "latency")["reference"]
    assert lat.endswith(f" -        -                                                 history:10 "
                        f"{fmt_value(ref['raw_center'])} ±{ref['between_sd'] * 100:.1f}%")


def test_trend(tmp_path):
    """20 flat nights, then -1% a night for 10: the trend shows the drift."""
    store = HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))
    values = [100.0 * (1 + WOBBLE[i % 12]) for i in range(20)]
    values += [values[-1] * 0.99 ** (i + 1) * (1 + WOBBLE[i]) for i in range(10)]
    store.append([night_run(TOK, i, {"tok_per_s": point("tok_per_s", round(v, 4))}) for i, v in enumerate(values)])
    data = listing(tmp_path)
    tok = metric(data, TOK, "tok_per_s")
    assert tok["trend"]["slope"] == pytest.approx(-0.01, abs=0.003) and tok["trend"]["p_value"] < 0.01
    out = cli(tmp_path, "history", "--node", "n1")
    trend = tok["trend"]
    assert f"{trend['slope'] * 100:+.2f}%/night over {trend['nights']} (p={trend['p_value']:.2g})" in out.stdout


def test_json(node):
    data = listing(node)
    assert data["history_dir"] == str(Path("baselines") / "n1" / "history")
    assert [t["nodeid"] for t in data["tests"]] == [TOK, LAT]
    tok = metric(data, TOK, "tok_per_s")
    assert (tok["nights"], tok["unit"], tok["direction"], tok["series"]) == (12, "tok/s", "higher", "median")
    assert tok["newest"]["run"] == "run11" and tok["newest"]["time"] == "2026-03-12T23:00:00Z"
    (step,) = tok["change_points"]
    assert step["index"] == 8 and step["kind"] == "step"
    assert step["before_run"]["run"] == "run07" and step["after_run"]["run"] == "run08"
    assert step["before_run"]["commits"]["repo"]["commit"] == sha(7)
    assert step["after_run"]["commits"]["repo"]["commit"] == sha(8)
    assert step["change"] == pytest.approx(-0.10, abs=0.01)
    ref = tok["reference"]  # the regressed nights are not the new normal: nights 0-7 at 100
    assert ref["label"] == "history:8" and ref["runs"] == [f"run{i:02d}" for i in range(8)]
    assert ref["raw_center"] == pytest.approx(100.0, rel=0.005)
    lat = metric(data, LAT, "latency")
    assert lat["change_points"] == [] and lat["trend"] is None
    assert lat["reference"]["label"] == "history:10"
    assert lat["reference"]["runs"] == [f"run{i:02d}" for i in range(2, 12)]
    five = metric(listing(node, "--nights", "5"), LAT, "latency")["reference"]
    assert five["label"] == "history:5" and five["runs"] == [f"run{i:02d}" for i in range(7, 12)]
    assert set(metric(data, TOK, "mbu")) >= {"trend", "change_points", "reference"}


def test_paired_nights_are_read_as_their_ratios_to_the_same_build(tmp_path):
    """Night 0 probed (it saved the baseline), nights 1-11 paired with its build: the raw medians
    carry each night's load (every third night the machine is 30% slower), the ratios do not, and
    the step is the slowed build from night 8, at its place in the window."""
    store = HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))
    runs = [night_run(TOK, 0, {"tok_per_s": Point(
        name="tok_per_s", unit="tok/s", higher_is_better=True, median=100.0, n=20, se=0.002, adjusted=1.0,
        probe_kind="refrun-O3", cpu_share=0.99, status="new", change=None, reference="saved")})]
    for night in range(1, 12):
        ratio = (0.9 if night >= 8 else 1.0) * (1 + WOBBLE[night])
        load = 0.7 if night % 3 == 0 else 1.0
        runs.append(night_run(TOK, night, {"tok_per_s": Point(
            name="tok_per_s", unit="tok/s", higher_is_better=True, median=round(100.0 * ratio * load, 4), n=20,
            se=0.002, adjusted=None, probe_kind=None, cpu_share=0.99, status="regressed" if night >= 8 else "ok",
            change=round(ratio - 1, 6), reference=f"paired:git {sha(0)[:12]}")}))
    store.append(runs)
    m = metric(listing(tmp_path), TOK, "tok_per_s")
    assert m["series"] == "paired" and m["indices"] == list(range(1, 12)) and m["nights"] == 11
    (step,) = m["change_points"]
    assert step["index"] == 8 and step["after_run"]["run"] == "run08"
    assert step["change"] == pytest.approx(-0.1, abs=0.01)


def test_filters_and_last(node):
    data = listing(node, "-k", "test_tok", "--metric", "tok_per_s")
    assert [(t["nodeid"], [m["metric"] for m in t["metrics"]]) for t in data["tests"]] == [(TOK, ["tok_per_s"])]
    data = listing(node, "--last", "4", "--nights", "2")
    tok = metric(data, TOK, "tok_per_s")
    assert tok["nights"] == 4 and tok["change_points"] == []  # four nights, all after the step
    assert metric(data, LAT, "latency")["reference"]["runs"] == ["run10", "run11"]
    assert listing(node, "-k", "nothing-matches")["tests"] == []
    out = cli(node, "history", "--node", "n1", "-k", "nothing-matches")
    assert out.returncode == 0 and out.stdout.strip() == "no runs recorded that match"


def test_accept_restarts_the_reference(node):
    out = cli(node, "history", "accept", "--node", "n1", TOK, "--why", "the slower build is the new normal")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("accepted 1 test(s): the reference starts again at its next run")
    assert metric(listing(node), TOK, "tok_per_s")["reference"] is None  # no run since the accept
    assert metric(listing(node), LAT, "latency")["reference"] is not None  # another test, untouched
    out = cli(node, "history", "--node", "n1", "accept", TOK, "--run", "run09")  # --node before the action
    assert out.returncode == 0, out.stderr
    ref = metric(listing(node), TOK, "tok_per_s")["reference"]
    # run09 is the new normal; runs 10 and 11 stay out, regressed against the old one
    assert ref["runs"] == ["run09"] and ref["raw_center"] == pytest.approx(90.0 * (1 + WOBBLE[9]))
    entries = HistoryStore(node / "baselines/n1/history").read(TOK)
    accepts = [e for e in entries if isinstance(e, Accept)]
    assert [(a.run_id, a.why) for a in accepts] == [(None, "the slower build is the new normal"),
                                                    ("run09", "accepted by hand")]
    out = cli(node, "history", "accept", "--node", "n1")  # every test
    assert out.returncode == 0 and out.stdout.startswith("accepted 2 test(s)")


def test_compact(node):
    out = cli(node, "history", "compact", "--node", "n1", "--keep", "5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("kept the newest 5 run(s) of each test; rewrote 2 file(s)")
    data = listing(node)
    assert metric(data, TOK, "tok_per_s")["nights"] == 5 and metric(data, LAT, "latency")["nights"] == 5
    out = cli(node, "history", "compact", "--node", "n1", "--keep", "5")
    assert out.returncode == 0 and out.stdout.startswith("nothing to compact")


def test_history_dir_option(node, tmp_path):
    other = tmp_path / "elsewhere"
    (other / "n1").parent.mkdir()
    (node / "baselines/n1/history").rename(other / "n1")
    data = listing(node, "--history-dir", str(other))
    assert data["history_dir"] == str(other / "n1") and len(data["tests"]) == 2


def test_torn_last_line_is_a_warning(node):
    path = node / "baselines/n1/history/tests/test_y.jsonl"
    with path.open("a") as fh:
        fh.write('{"commits":')
    out = cli(node, "history", "--node", "n1", "--json")
    assert out.returncode == 0
    assert out.stderr == (f"pytest-llmperf: warning: history file {Path('baselines/n1/history/tests/test_y.jsonl')}, "
                          "line 13: skipped a torn last line (no newline at its end: an append cut short, e.g. by a "
                          "power cut)\n")
    assert json.loads(out.stdout)["warnings"] == [out.stderr.removeprefix("pytest-llmperf: warning: ").strip()]


USAGE_ERRORS = [
    (["history"], "pytest-llmperf: error: --node is required: the node whose history to read"),
    (["history", "--node", "a/b"], "pytest-llmperf: error: --node: invalid node name 'a/b': use letters, digits, "
                                   "'.', '_' and '-'"),
    (["history", "--node", "n2"], f"pytest-llmperf: error: no history for node 'n2': "
                                  f"{Path('baselines/n2/history')} does not exist"),
    (["history", "--node", "n1", "--last", "0"], "pytest-llmperf history: error: argument --last: '0' must be at "
                                                 "least 1 (see pytest-llmperf history --help)"),
    (["history", "--node", "n1", "--bogus"], "pytest-llmperf: error: unrecognized arguments: --bogus "
                                             "(see pytest-llmperf --help)"),
    ([], "pytest-llmperf: error: the following arguments are required: COMMAND (see pytest-llmperf --help)"),
    (["history", "accept", "--node", "n1", "suites/test_x.py::test_gone"],
     f"pytest-llmperf: error: test 'suites/test_x.py::test_gone' has no history in {Path('baselines/n1/history')}"),
    (["history", "accept", "--node", "n1", TOK, "--run", "run99"],
     f"pytest-llmperf: error: test '{TOK}' has no run 'run99' in {Path('baselines/n1/history')}"),
    (["history", "compact", "--node", "n1"], "pytest-llmperf history compact: error: the following arguments are "
                                             "required: --keep (see pytest-llmperf history compact --help)"),
    (["history", "compact", "--node", "n1", "--keep", "x"], "pytest-llmperf history compact: error: argument "
                                                            "--keep: 'x' is not a whole number (see pytest-llmperf "
                                                            "history compact --help)"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS, ids=[" ".join(a) or "nothing" for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_with_one_line(node, args, message):
    before = {p: p.read_bytes() for p in (node / "baselines").rglob("*.jsonl")}
    out = cli(node, *args)
    assert out.returncode == 2
    assert out.stderr == message + "\n"
    assert out.stdout == ""
    assert {p: p.read_bytes() for p in (node / "baselines").rglob("*.jsonl")} == before


def test_corrupt_file_exit_2_with_one_line(node):
    path = node / "baselines/n1/history/suites/test_x.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace('"v":1', '"v":2')
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    rel = Path("baselines/n1/history/suites/test_x.jsonl")
    expected = (f"pytest-llmperf: error: history file {rel}, line 5: has history version 2, newer than this "
                "plugin's 1: upgrade pytest-llmperf; fix it or restore it from git\n")
    for args in (["history", "--node", "n1"], ["history", "accept", "--node", "n1"],
                 ["history", "compact", "--node", "n1", "--keep", "2"]):
        out = cli(node, *args)
        assert (out.returncode, out.stderr, out.stdout) == (2, expected, "")
        assert path.read_bytes() == before


def test_history_dir_is_a_file(tmp_path):
    (tmp_path / "baselines" / "n1").mkdir(parents=True)
    (tmp_path / "baselines" / "n1" / "history").write_text("")
    out = cli(tmp_path, "history", "--node", "n1")
    assert (out.returncode, out.stderr) == (2, f"pytest-llmperf: error: history dir "
                                               f"{Path('baselines/n1/history')} is a file, not a directory\n")


def test_the_command_does_not_import_pytest():
    out = subprocess.run([sys.executable, "-c", "import sys, pytest_llmperf.commands; "
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', 'torch')))"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_default_nights_are_the_plugins():
    from pytest_llmperf import cli as cli_module
    from pytest_llmperf import plugin_history

    assert cli_module.DEFAULT_NIGHTS == plugin_history.DEFAULT_NIGHTS


def test_the_console_script_is_declared():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '[project.scripts]\n# the history of a node' in text and 'pytest-llmperf = "pytest_llmperf.commands:main"' in text


def test_main_in_process_returns_the_status(node, monkeypatch, capsys):
    from pytest_llmperf import cli as cli_module

    monkeypatch.chdir(node)
    assert cli_module.main(["history", "--node", "n1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tests"]
    assert cli_module.main(["history", "--node", "nope"]) == 2
    assert "no history for node 'nope'" in capsys.readouterr().err
