"""The HTML report (html_report.py) and the ``pytest-llmperf report`` command: order (regressed first,
with its message), change-point markers, balanced SVG markup, nothing external, escaping, and each
bad input refused with exit status 2 and one line naming the file, nothing written."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_llmperf import cli, html_report
from pytest_llmperf.baseline import BaselineStore, metric_to_json
from pytest_llmperf.compare import Metric, Verdict
from pytest_llmperf.history import HistoryStore, Point, Run, node_history_dir, utc_now_text

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=timezone.utc)
TOK = "suites/test_x.py::test_tok[260K]"
LAT = "tests/test_y.py::test_latency"
EVIL = "tests/test_z.py::test_evil[<script>alert(1)</script>]"
WOBBLE = [0.0, 0.004, -0.003, 0.002, -0.004, 0.001, 0.003, -0.002, 0.0, -0.001, 0.004, -0.003]


def point(name, median, unit="tok/s", higher=True, status="ok") -> Point:
    return Point(name=name, unit=unit, higher_is_better=higher, median=median, n=20, se=0.002, adjusted=None,
                 probe_kind=None, cpu_share=0.99, status=status, change=0.0, reference="history:5")


def night_run(nodeid, night, metrics) -> Run:
    return Run(time=utc_now_text(T0 + timedelta(days=night)), run_id=f"run{night:02d}", nodeid=nodeid,
               fingerprint="fp1", plugin_version="0.1.0",
               commits={"repo": {"commit": f"{night:02d}" + "ab" * 19, "dirty": False}},
               outcome="passed", reset=night == 0, metrics=metrics)


def write_history(root: Path, node: str = "n1") -> Path:
    """12 nights: tok_per_s 100 tok/s for 8 nights, then 90 (a change point); latency steady."""
    store = HistoryStore(node_history_dir(root / "baselines", node))
    runs = []
    for night in range(12):
        tok = (90.0 if night >= 8 else 100.0) * (1 + WOBBLE[night])
        runs.append(night_run(TOK, night, {"tok_per_s": point("tok_per_s", round(tok, 4))}))
        runs.append(night_run(LAT, night, {"latency": point("latency", round(5 * (1 + WOBBLE[night]), 5), "ms",
                                                            higher=False)}))
    store.append(runs)
    return store.directory


def verdict(test, metric, status, current, baseline, unit="tok/s", higher=True, reason="") -> dict:
    change = current / baseline - 1
    return Verdict(test=test, metric=metric, status=status, unit=unit, higher_is_better=higher, tolerance=0.05,
                   current=current, baseline=baseline, change=change, ci_low=change - 0.01, ci_high=change + 0.01,
                   confidence=0.99, p_value=0.001, raw_change=change, n_current=10, n_baseline=10, reason=reason,
                   reference="history:10").to_dict()


def test_json(nodeid, name, samples, unit, higher, params=None) -> dict:
    return {"schema": 1, "nodeid": nodeid, "params": params or {}, "verdicts": [], "fingerprint": "fp1",
            "metrics": {name: metric_to_json(Metric(name, unit, higher, samples))}}


test_json.__test__ = False  # a helper, not a test


def run_json(node: str = "n1", version: int = 2) -> dict:
    return {
        "node": node, "schema": "pytest-llmperf-run", "schema_version": version, "time": "2026-03-13T23:00:00Z",
        "run_id": "tonight", "fingerprint": {"hash": "fp1", "fields": {}},
        "tests": [
            test_json(LAT, "latency", [5.0, 5.01, 4.99, 5.02, 4.98], "ms", False),
            test_json(TOK, "tok_per_s", [80.0 + i * 0.1 for i in range(10)], "tok/s", True, {"model": "260K"}),
            test_json(EVIL, "time", [1.0, 1.1, 0.9], "s", False, {"p": "<b>x</b>"}),
        ],
        "verdicts": [
            verdict(LAT, "latency", "ok", 5.0, 5.0, "ms", False, "within the tolerance"),
            verdict(EVIL, "time", "noisy", 1.0, 0.9, "s", False, "too noisy <to> decide & more"),
            verdict(TOK, "tok_per_s", "regressed", 80.4, 90.0, reason="slower than the reference"),
        ],
    }


class Balance(HTMLParser):
    """Every tag closed in order (void HTML elements aside; SVG's self-closing ones count as closed)."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def balanced(text: str) -> Balance:
    parser = Balance()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert parser.stack == [], parser.stack
    return parser


@pytest.fixture
def page(tmp_path) -> str:
    directory = write_history(tmp_path)
    return html_report.render([("run.json", run_json())], {"n1": cli.history_data(directory)})


def test_regressed_first_with_its_message(page):
    cards = re.findall(r'<div class="card (\S+)" id="m\d+"><h3>(.*?)<span', page)
    assert [c[0] for c in cards][:2] == ["regressed", "noisy"]
    assert "tok_per_s" in cards[0][1]
    assert "slower than the reference" in page
    assert "tok_per_s regressed: baseline 90 tok/s -&gt; current 80.4 tok/s, change -10.7%" in page
    assert page.index("needs attention") < page.index('class="card regressed"')


def test_change_point_markers_reference_band_and_today(page):
    assert page.count('class="cp"') >= 1
    (tip,) = re.findall(r'<g class="cpg"><title>(change point [^<]*)</title>', page)
    assert "2026-03-09" in tip and "07abab" in tip and "08abab" in tip and "-10.1%" in tip
    assert 'class="band"' in page and 'class="today"' in page


def test_markup_balanced_and_self_contained(page):
    parser = balanced(page)
    assert parser.tags.count("svg") >= 4
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "@import" not in page and "url(" not in page


def test_escaping_of_a_test_id(page):
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "too noisy &lt;to&gt; decide &amp; more" in page
    assert "<b>x</b>" not in page


def test_params_table_and_baseline_strip(tmp_path):
    store = BaselineStore(tmp_path / "baselines", "n1")
    store.save([{"nodeid": TOK, "metrics": [Metric("tok_per_s", "tok/s", True, [90.0, 90.5, 89.5, 90.2])],
                 "params": {}}], {}, "fp1", {})
    samples = html_report.baseline_samples(tmp_path / "baselines", "n1", [TOK, LAT])
    assert samples == {TOK: {"tok_per_s": [90.0, 90.5, 89.5, 90.2]}}
    page = html_report.render([("run.json", run_json())], None, {"n1": samples})
    assert "baseline (4)" in page and "current (10)" in page
    assert "<th>model</th>" in page and "<td>260K</td>" in page
    balanced(page)


def test_render_session_for_the_glue(tmp_path):
    directory = write_history(tmp_path)
    page = html_report.render_session(run_json(), cli.history_data(directory))
    assert "node n1" in page and 'class="card regressed"' in page
    assert html_report.render_session(run_json()).count("<svg") >= 3  # no history: today and the samples


def test_a_long_history_is_compact(tmp_path):
    store = HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))
    store.append([night_run(TOK, n, {"tok_per_s": point("tok_per_s", 100.0 + (n % 7) * 0.1)}) for n in range(365)])
    page = html_report.render([], {"n1": cli.history_data(store.directory)})
    assert len(page) < 20_000
    assert 'class="dt"' not in page  # over DOTS_MAX nights: the line alone


# ------------------------------------------------------------------------------------ the command


def run_cli(*args: str, cwd: Path, capsys) -> tuple[int, str, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = cli.main(list(args))
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_report(tmp_path, capsys):
    write_history(tmp_path)
    write_history(tmp_path, "n2")
    (tmp_path / "run.json").write_text(json.dumps(run_json()))
    code, out, err = run_cli("report", "run.json", "--node", "n2", "-o", "out/report.html", cwd=tmp_path,
                             capsys=capsys)
    assert code == 0, err
    assert out.startswith("wrote out/report.html (") and "2 node(s), 1 run(s)" in out
    page = (tmp_path / "out" / "report.html").read_text()
    assert "node n1" in page and "node n2" in page and page.count('class="cp"') >= 2
    balanced(page)


@pytest.mark.parametrize("case", ["directory", "unwritable", "under-a-file", "history-file", "schemas", "not-json", "no-node",
                                  "other-node-baseline", "nothing"])
def test_cli_bad_input_exit_2(tmp_path, capsys, case):
    directory = write_history(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps(run_json()))
    (tmp_path / "run1.json").write_text(json.dumps(run_json(version=1)))
    args = ["report", "run.json", "-o", "report.html"]
    named = "run.json"
    if case == "directory":
        (tmp_path / "report.html").mkdir()
        named = "report.html"
    elif case == "unwritable":
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        (tmp_path / "ro").mkdir(mode=0o555)
        args[-1] = named = "ro/report.html"
    elif case == "under-a-file":  # unwritable for root too
        args[-1] = "run.json/report.html"
    elif case == "history-file":
        (history_file,) = sorted(directory.rglob("test_x.jsonl"))
        args[1] = named = str(history_file)
    elif case == "schemas":
        args[1:2] = ["run.json", "run1.json"]
        named = "run1.json"
    elif case == "not-json":
        (tmp_path / "run.json").write_text("{not json")
    elif case == "no-node":
        args += ["--node", "ghost"]
        named = "ghost"
    elif case == "other-node-baseline":
        BaselineStore(tmp_path / "baselines", "elsewhere").save(
            [{"nodeid": TOK, "metrics": [Metric("tok_per_s", "tok/s", True, [1.0, 2.0])], "params": {}}], {}, "fp", {})
        src = tmp_path / "baselines" / "elsewhere" / "suites" / "test_x.json"
        (tmp_path / "baselines" / "n1" / "suites").mkdir(parents=True)
        src.rename(tmp_path / "baselines" / "n1" / "suites" / "test_x.json")
        named = "test_x.json"
    elif case == "nothing":
        args = ["report", "-o", "report.html"]
        named = "nothing to report"
    code, out, err = run_cli(*args, cwd=tmp_path, capsys=capsys)
    assert code == 2, (out, err)
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("pytest-llmperf: error: ")
    assert named in err
    if case != "directory":
        assert not (tmp_path / "report.html").exists()
        assert not (tmp_path / "ro" / "report.html").exists()


def test_history_alone_orders_by_the_newest_night(tmp_path):
    store = HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))
    store.append([night_run(LAT, n, {"latency": point("latency", 5.0 + 0.01 * n, "ms", False,
                                                      status="regressed" if n == 5 else "ok")}) for n in range(6)]
                 + [night_run(TOK, n, {"tok_per_s": point("tok_per_s", 100.0)}) for n in range(6)])
    page = html_report.render([], {"n1": cli.history_data(store.directory)})
    cards = re.findall(r'<div class="card (\S+)" id="m\d+"><h3>(.*?)<span', page)
    assert [c[0] for c in cards] == ["regressed", "ok"] and "latency" in cards[0][1]
    assert "newest night 2026-03-06" in page
    balanced(page)


def test_the_module_imports_no_pytest():
    import subprocess
    import sys

    code = "import sys, pytest_llmperf.html_report; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- the plugin's --llmperf-html, end to end ------------------------------------------------------

_SESSION = """
import os

def test_tok(llmperf):
    scale = float(os.environ.get("TOK_SCALE", "1.0"))
    llmperf.record("tok_per_s", [100.0 * scale * (1 + ((i * 7) % 11 - 5) / 1000.0) for i in range(20)],
                   unit="tok/s", higher_is_better=True)
"""


def test_plugin_writes_the_html_report(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_h=_SESSION)
    args = ["-p", "no:cacheprovider", "--llmperf-node=hnode", "--llmperf-max-time=0.3"]
    assert pytester.runpytest(*args, "--llmperf-save-baseline", "--llmperf-history-append").ret == 0
    for _ in range(2):
        assert pytester.runpytest(*args, "--llmperf-history-append").ret == 0
    monkeypatch.setenv("TOK_SCALE", "0.8")
    result = pytester.runpytest(*args, "--llmperf-history-append", "--llmperf-html=out/r.html")
    assert result.ret == 1  # the 20% regression fails; the report is written all the same
    text = (pytester.path / "out" / "r.html").read_text()
    assert "test_h.py::test_tok" in text and "regressed" in text and "<svg" in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    (pytester.path / "adir").mkdir()
    bad = pytester.runpytest(*args, "--llmperf-html=adir")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: llmperf: --llmperf-html */adir: is a directory"])


def test_a_speed_adjusted_trend_is_not_labelled_with_the_metric_s_unit(tmp_path):
    """Adjusted values (the metric over the probe's speed, e.g. 3.5 for 213 tok/s) are not in tok/s:
    the axis says 'adjusted' (a real 30-night history drew 1.574-3.488 labelled tok/s)."""
    store = HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))
    runs = []
    for night in range(12):
        p = Point(name="tok_per_s", unit="tok/s", higher_is_better=True, median=213.0 * (1 + WOBBLE[night]), n=20,
                  se=0.002, adjusted=3.4 * (1 + WOBBLE[night]), probe_kind="loop", cpu_share=0.99, status="ok",
                  change=0.0, reference="history:5")
        runs.append(night_run(TOK, night, {"tok_per_s": p}))
    store.append(runs)
    data = cli.history_data(store.directory)
    assert data["tests"][0]["metrics"][0]["series"] == "adjusted"
    page = html_report.render([], {"n1": data})
    (svg,) = re.findall(r'<svg viewBox[^>]*aria-label="tok_per_s trend">.*?</svg>', page, re.S)
    axis = re.findall(r'text-anchor="end">([^<]*)</text>', svg)
    assert "adjusted" in axis and "tok/s" not in axis
