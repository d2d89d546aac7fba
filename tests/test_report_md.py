"""The Markdown report for CI (report.markdown, report.markdown_many, ``pytest-llmperf markdown``):
the marker, rows by status with the quiet ones folded, the raw change, the cap with its left-out
line, several nodes merged, and the errors that name the file."""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from pathlib import Path

import pytest

from pytest_llmperf import cli, report
from pytest_llmperf.compare import Verdict
from pytest_llmperf.plugin_finish import RUN_SCHEMA, RUN_SCHEMA_VERSION


def verdict(test: str, status: str = "ok", metric: str = "ms_per_step", **kw) -> Verdict:
    values = {"unit": "ms", "higher_is_better": False, "tolerance": 0.05, "current": 125.1, "baseline": 123.4,
              "change": 0.014, "ci_low": -0.005, "ci_high": 0.032, "raw_change": 0.012}
    values.update(kw)
    return Verdict(test=test, metric=metric, status=status, **values)


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| `")]


def id_of(row: str) -> str:
    return row.split("`")[1]


def visible_and_folded(md: str) -> tuple[list[str], list[str]]:
    before, _, after = md.partition("<details>")
    return [id_of(r) for r in table_rows(before)], [id_of(r) for r in table_rows(after)]


def test_the_first_line_is_the_marker_a_bot_finds_its_comment_by():
    md = report.markdown("sifive-1", [verdict("t.py::a")])
    first = md.splitlines()[0]
    assert first == "<!-- pytest-llmperf node=sifive-1 -->"
    assert first.startswith(report.MARKER_PREFIX)
    assert md.count(report.MARKER_PREFIX) == 1
    assert "### pytest-llmperf on node `sifive-1`" in md


def test_rows_by_status_attention_visible_the_rest_folded():
    statuses = ["ok", "regressed", "info", "noisy", "new", "missing", "improved", "oversubscribed",
                "not-compared", "regressed", "ok"]
    verdicts = [verdict(f"t.py::t{i}", s) for i, s in enumerate(statuses)]
    md = report.markdown("n", verdicts)
    visible, folded = visible_and_folded(md)
    # STATUS_ORDER, and the run's order within a status (t1 before t9, t0 before t10)
    assert visible == ["t.py::t1", "t.py::t9", "t.py::t5", "t.py::t3", "t.py::t7", "t.py::t8"]
    assert folded == ["t.py::t4", "t.py::t6", "t.py::t0", "t.py::t10", "t.py::t2"]
    assert "<details><summary>5 more rows (1 new, 1 improved, 2 ok, 1 info)</summary>" in md
    assert md.index("</details>") > md.index("| `t.py::t2`")
    assert "**2 regressed, 1 missing, 1 noisy, 1 oversubscribed, 1 not-compared, 1 new, 1 improved, 2 ok, 1 info**" in md
    assert "| **regressed** |" in md and "| **missing** |" in md


def test_a_quiet_run_has_no_visible_table_only_the_folded_one():
    md = report.markdown("n", [verdict("t.py::a"), verdict("t.py::b", "info")])
    before, _, _ = md.partition("<details>")
    assert table_rows(before) == []
    assert "<details><summary>2 rows (1 ok, 1 info)</summary>" in md
    assert "2 rows left out" not in md and "left out" not in md


def test_raw_change_column_shows_the_plain_medians_change():
    adjusted = verdict("t.py::adj", "regressed", change=-0.10, ci_low=-0.12, ci_high=-0.08, raw_change=-0.20,
                       adjusted=True)
    new = verdict("t.py::new", "new", baseline=None, change=None, ci_low=None, ci_high=None, raw_change=None)
    md = report.markdown("n", [adjusted, new])
    header = next(line for line in md.splitlines() if line.startswith("| test |"))
    assert header == "| test | metric | reference | baseline | current | change | raw change | tolerance | status |"
    rows = {id_of(r): [c.strip() for c in r.strip("|").split("|")] for r in table_rows(md)}
    assert rows["t.py::adj"][5:7] == ["-10.0% [-12.0%, -8.0%] *", "-20.0%"]
    assert rows["t.py::new"][5:7] == ["-", "-"]
    assert "\\* speed-adjusted" in md


def realistic_run(n: int = 1440) -> list[Verdict]:
    """The torch suites' shape: long parametrized ids, 83% info, a few regressions and noisy rows."""
    out = []
    ids = itertools.product(["tiny", "mini", "small", "medium", "large", "xl"],
                            ["forward", "forward_backward", "train_step", "decode"], ["fp32", "bf16"],
                            ["ctx128", "ctx256", "ctx512"], range(10))
    for i, (size, kind, dtype, ctx, batch) in zip(range(n), ids):
        test = f"suites/test_transformer.py::test_step[{size}-{kind}-{dtype}-{ctx}-b{batch}]"
        if i % 6:
            out.append(verdict(test, "info", metric=f"mbu_{i % 6}", unit="%", tolerance=0.05, current=41.2,
                               baseline=40.3, change=0.022, raw_change=0.022))
        elif i % 120 == 0:
            out.append(verdict(test, "regressed", change=0.25, ci_low=0.2, ci_high=0.3, raw_change=0.27,
                               adjusted=True))
        elif i % 60 == 0:
            out.append(verdict(test, "noisy", change=0.06, ci_low=-0.02, ci_high=0.14))
        else:
            out.append(verdict(test, "ok"))
    return out


def test_over_the_cap_the_end_of_the_folded_rows_is_left_out_and_said_where():
    verdicts = realistic_run()
    assert len(verdicts) == 1440 and sum(v.status == "info" for v in verdicts) == 1200
    assert len(report.markdown("n", verdicts, cap=None)) > 150_000  # what the cap is for
    md = report.markdown("n", verdicts, where="`out/r.json`")
    assert len(md) <= report.DEFAULT_CAP < report.GITHUB_LIMIT
    shown = [id_of(r) for r in table_rows(md)]
    # the rows kept are the first ones in status order: every attention row, the ok rows, then as
    # many info rows as fit; the left-out line counts the others
    in_order = [v.test for v in report.by_status(verdicts)]
    assert shown == in_order[:len(shown)]
    assert report.by_status(verdicts)[0].status == "regressed" and visible_and_folded(md)[0][0] == in_order[0]
    left_out = 1440 - len(shown)
    assert left_out > 0
    assert md.rstrip("\n").splitlines()[-1] == \
        f"{left_out} rows left out (over GitHub's 65,536-character limit): see `out/r.json`"
    # the fewest left out: one more row would not have fitted
    assert len(report.markdown("n", verdicts, where="`out/r.json`", cap=len(md) + 160)) > len(md)
    assert md.count("<details>") == 1 and md.count("</details>") == 1


def test_attention_rows_go_only_when_nothing_else_is_left():
    verdicts = [verdict(f"t.py::r{i}", "regressed") for i in range(100)] + [verdict("t.py::quiet", "ok")]
    md = report.markdown("n", verdicts, cap=3000)
    assert len(md) <= 3000
    shown = [id_of(r) for r in table_rows(md)]
    assert shown == [f"t.py::r{i}" for i in range(len(shown))]  # the first regressions, the ok row gone
    assert md.rstrip().splitlines()[-1] == f"{101 - len(shown)} rows left out (over the cap of 3,000 characters)"


def test_the_cap_holds_whatever_else_the_report_holds():
    missing = [f"t.py::m{i}: test of the saved baseline recorded none of its metrics (tok): skipped" for i in range(500)]
    verdicts = [verdict(f"t.py::m{i}", "missing") for i in range(500)]
    md = report.markdown("n", verdicts, missing=missing, cap=5000, where="the log")
    assert len(md) <= 5000
    assert md.startswith("<!-- pytest-llmperf node=n -->")
    assert re.search(r"500 rows and \d+ other lines left out \(over the cap of 5,000 characters\): see the log$",
                     md.rstrip())
    for cap in (1, 40, 200):
        assert len(report.markdown("n", verdicts, missing=missing, cap=cap)) <= cap


def run_json(node: str, verdicts: list[Verdict], **meta) -> dict:
    payload = report.to_json(node, {"arch": "x86_64"}, "abc", [], verdicts,
                             {"schema": RUN_SCHEMA, "schema_version": RUN_SCHEMA_VERSION, **meta})
    return json.loads(report.json_text(payload))  # as the CLI reads it back


def test_several_nodes_merge_into_one_report_with_one_marker():
    a = run_json("board-a", [verdict("t.py::x", "ok"), verdict("t.py::y", "regressed")], saved_baselines=[],
                 missing=[{"test": "t.py::gone", "metrics": ["tok"], "reason": "skipped: no GPU", "whole_test": True,
                           "gated": True, "sources": ["saved"]}])
    b = run_json("board-b", [verdict("t.py::x", "noisy"), verdict("t.py::z", "info")])
    md = report.markdown_many([("a.json", a), ("b.json", b)])
    lines = md.splitlines()
    assert lines[0] == "<!-- pytest-llmperf nodes=board-a,board-b -->"
    assert md.count(report.MARKER_PREFIX) == 1
    assert "- `board-a`: 1 regressed, 1 ok" in lines and "- `board-b`: 1 noisy, 1 info" in lines
    assert md.index("### pytest-llmperf on node `board-a`") < md.index("### pytest-llmperf on node `board-b`")
    section_b = md[md.index("### pytest-llmperf on node `board-b`"):]
    assert visible_and_folded(section_b) == (["t.py::x"], ["t.py::z"])
    assert "- t.py::gone: test of the saved baseline recorded none of its metrics (tok): skipped: no GPU" in md


def test_merged_nodes_share_one_cap_and_take_turns():
    runs = [(f"{n}.json", run_json(n, realistic_run(720))) for n in ("a", "b")]
    md = report.markdown_many(runs, cap=30_000, where="the run JSONs")
    assert len(md) <= 30_000
    a, b = md.split("### pytest-llmperf on node `b`")
    kept_a, kept_b = len(table_rows(a)), len(table_rows(b))
    assert abs(kept_a - kept_b) <= 1 and kept_a > 50
    assert md.rstrip().endswith(f"{1440 - kept_a - kept_b} rows left out (over the cap of 30,000 characters): "
                                "see the run JSONs")


def test_the_same_node_twice_is_told_apart_by_its_file():
    run = run_json("n", [verdict("t.py::x")])
    md = report.markdown_many([("mon.json", run), ("tue.json", run)])
    assert "### pytest-llmperf on node `n` (`mon.json`)" in md and "(`tue.json`)" in md
    assert md.splitlines()[0] == "<!-- pytest-llmperf node=n -->"  # one node: its own report's marker


@pytest.mark.parametrize("key, value", [("schema_version", 1), ("schema", "other-tool")])
def test_runs_of_different_schemas_are_refused_naming_the_file(key, value):
    good = run_json("a", [verdict("t.py::x")])
    other = {**run_json("b", [verdict("t.py::x")]), key: value}
    with pytest.raises(ValueError, match=f"^runs/b.json: {key} {value!r} differs from ") as info:
        report.markdown_many([("runs/a.json", good), ("runs/b.json", other)])
    assert "runs/a.json" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("payload, fragment", [
    ({"node": "n"}, 'not a pytest-llmperf run JSON (no "verdicts" list'),
    ([1, 2], "not a pytest-llmperf run JSON"),
    ({"node": "n", "verdicts": [{"test": 1, "metric": "m", "status": "ok"}]}, "verdicts[0]: 'test' is not a string"),
    ({"node": "n", "verdicts": [{"test": "t", "metric": "m", "status": "ok", "change": "big"}]},
     "verdicts[0]: 'change' is not a number"),
    ({"verdicts": []}, '"node" is not a name'),
    ({"node": "n", "verdicts": [], "missing": [{"x": 1}]}, "missing[0]: not a missing test"),
])
def test_a_file_that_is_not_a_run_json_is_one_line_naming_it(payload, fragment):
    with pytest.raises(ValueError) as info:
        report.markdown_many([("r.json", payload)])
    message = str(info.value)
    assert message.startswith("r.json: ") and fragment in message and "\n" not in message


def write_runs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(run_json("a", [verdict("t.py::x", "regressed"), verdict("t.py::y")])))
    b.write_text(json.dumps(run_json("b", realistic_run(300))))
    return a, b


def test_cli_markdown_merges_runs_to_a_file_or_stdout(tmp_path, capsys):
    a, b = write_runs(tmp_path)
    out = tmp_path / "comment.md"
    assert cli.main(["markdown", str(a), str(b), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!-- pytest-llmperf nodes=a,b -->") and "### pytest-llmperf on node `b`" in text
    assert f"wrote {out}" in capsys.readouterr().out
    assert cli.main(["markdown", str(a), "--cap", "1500"]) == 0  # exit 0 with a regression: it formats
    printed = capsys.readouterr().out
    assert printed.startswith("<!-- pytest-llmperf node=a -->") and len(printed) <= 1500
    assert cli.main(["markdown", str(b), "--cap", "2000"]) == 0
    assert f"left out (over the cap of 2,000 characters): see `{b}`" in capsys.readouterr().out


def run_cli(*args: str) -> int:
    """cli.main's exit status, also when argparse exits."""
    try:
        return cli.main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


def test_cli_markdown_bad_input_is_exit_2_and_one_line_naming_the_file(tmp_path, capsys):
    a, _b = write_runs(tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"node": "x", "verdicts": [')
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**run_json("c", []), "schema_version": 1}))
    cases = [
        ([str(a), str(tmp_path / "nope.json")], f"error: {tmp_path / 'nope.json'}: cannot read the run JSON: "),
        ([str(a), str(broken)], f"error: {broken}: not JSON ("),
        ([str(a), str(old)], f"error: {old}: schema_version 1 differs from {RUN_SCHEMA_VERSION} of {a}"),
        ([str(a), "--cap", "0"], "error: argument --cap: '0' must be at least 1"),
        ([], "error: the following arguments are required: RUN.json"),
    ]
    for args, fragment in cases:
        assert run_cli("markdown", *args) == 2, args
        captured = capsys.readouterr()
        assert fragment in captured.err and captured.err.count("\n") == 1, captured.err
        assert captured.out == ""


def test_a_session_s_run_json_merges(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """End to end: the JSON the plugin writes is what the command merges."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_rec=textwrap.dedent(
        """
        import os
        def test_tok(llmperf):
            s = float(os.environ.get("TOK_SCALE", "1"))
            llmperf.record("tok_per_s", [100 * s + i % 5 / 1000 for i in range(20)], unit="tok/s",
                           higher_is_better=True)
        """))
    fast = ["-p", "no:cacheprovider", "--llmperf-node=nodeA", "--llmperf-max-time=0.3"]
    assert pytester.runpytest(*fast, "--llmperf-save-baseline").ret == 0
    monkeypatch.setenv("TOK_SCALE", "0.8")
    result = pytester.runpytest(*fast, "--llmperf-json=r.json", "--llmperf-markdown=r.md")
    assert result.ret == 1
    own = (pytester.path / "r.md").read_text()
    assert own.startswith("<!-- pytest-llmperf node=nodeA -->")
    assert "| `test_rec.py::test_tok` | tok_per_s ↑ | saved | 100 tok/s | 80 tok/s | -20.0% [" in own
    assert "| -20.0% | 5.0% | **regressed** |" in own  # the raw change beside it
    merged = report.markdown_many([("r.json", json.loads((pytester.path / "r.json").read_text()))])
    assert merged.splitlines()[0] == "<!-- pytest-llmperf node=nodeA -->"  # the same comment as its own
    assert table_rows(merged) == table_rows(own)
