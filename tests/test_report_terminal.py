"""The terminal table (report_terminal.terminal_table): rows by status, fitted to the terminal's width
(grouped by file, then by test, columns folded or left out, names cut in the middle), the status
coloured only when asked, widths measured without the escape codes; and the plugin's summary at
COLUMNS=80 and with --color=yes."""

from __future__ import annotations

import re
import textwrap

import pytest

from pytest_llmperf import report, report_terminal
from pytest_llmperf.compare import Verdict

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def verdict(test: str, status: str = "ok", metric: str = "tok_per_s", **kw) -> Verdict:
    values = {"unit": "tok/s", "higher_is_better": True, "tolerance": 0.05, "current": 1234.5, "baseline": 1250.0,
              "change": -0.0124, "ci_low": -0.031, "ci_high": 0.006, "raw_change": -0.0124}
    values.update(kw)
    return Verdict(test=test, metric=metric, status=status, **values)


LLAMA = "suites/test_llama2c.py::test_run"
TORCH = "suites/test_transformer.py::test_step"


def suite() -> list[Verdict]:
    """Rows as the built-in suites write them, in run order (the regressions in the middle)."""
    out = []
    for flags in ("15M-Ofast-omp-native-t2", "15M-O3-omp-native-t1", "260K-Ofast-native-t2"):
        out.append(verdict(f"{LLAMA}[{flags}]", "ok"))
        out.append(verdict(f"{LLAMA}[{flags}]", "info", metric="mbu", unit="%", current=41.2, baseline=40.3,
                           change=0.022, ci_low=None, ci_high=None, raw_change=0.022))
    out.append(verdict(f"{LLAMA}[15M-Ofast-omp-native-t2]", "regressed", metric="peak_rss", unit="MiB",
                       higher_is_better=False, current=88.5, baseline=70.25, change=0.26, ci_low=0.2, ci_high=0.31,
                       raw_change=0.26))
    for kind in ("forward", "forward_backward"):
        for dtype in ("fp32", "bf16"):
            test = f"{TORCH}[small-{kind}-{dtype}-ctx256]"
            out.append(verdict(test, "ok", metric="ms_per_step", unit="ms", higher_is_better=False, current=123.4,
                               baseline=121.9, change=0.0123, ci_low=-0.004, ci_high=0.028, raw_change=0.019,
                               adjusted=True))
    out.append(verdict(f"{TORCH}[small-forward-bf16-ctx256]", "noisy", metric="tok_per_s", current=9876.0,
                       baseline=10234.0, change=-0.035, ci_low=-0.12, ci_high=0.04, raw_change=-0.04, adjusted=True))
    out.append(verdict(f"{TORCH}[small-forward-fp32-ctx256]", "oversubscribed", metric="tok_per_s"))
    return out


def widths(text: str) -> list[int]:
    return [report_terminal.visible_width(line) for line in text.splitlines()]


def status_of(line: str) -> str | None:
    last = line.split()[-1] if line.split() else ""
    return last if last in report.STATUS_ORDER else None


def test_without_a_width_it_is_the_full_table_by_status():
    text = report_terminal.terminal_table(suite())
    lines = text.splitlines()
    assert lines[0].split() == ["test", "metric", "reference", "baseline", "current", "change", "raw", "change",
                                "tolerance", "status"]
    statuses = [status_of(line) for line in lines[2:]]
    assert statuses == sorted(statuses, key=lambda s: report.STATUS_ORDER[s])
    assert statuses[:3] == ["regressed", "noisy", "oversubscribed"]
    assert lines[2].split()[:3] == [f"{LLAMA}[15M-Ofast-omp-native-t2]", "peak_rss", "\u2193"]
    assert "+26.0% [+20.0%, +31.0%]" in lines[2] and "\x1b" not in text
    assert max(widths(text)) > 120  # what the fitting is for


@pytest.mark.parametrize("width", [80, 100, 120, 60, 45])
def test_no_line_is_longer_than_the_width_and_regressions_come_first(width):
    text = report_terminal.terminal_table(suite(), width=width)
    assert max(widths(text)) <= width, text
    statuses = [[w for w in line.split() if w in report.STATUS_ORDER] for line in text.splitlines()]
    statuses = [found[0] for found in statuses if found]
    assert statuses == ["regressed", "noisy", "oversubscribed"] + ["ok"] * 7 + ["info"] * 3


def test_at_80_columns_rows_are_grouped_by_file_and_test_with_whole_numbers():
    text = report_terminal.terminal_table(suite(), width=80)
    lines = text.splitlines()
    assert "suites/test_llama2c.py" in lines and "suites/test_transformer.py" in lines
    assert "  test_run[15M-Ofast-omp-native-t2]" in lines
    assert "  test_step[small-forward_backward-bf16-ctx256]" in lines
    # a metric row under its test, the numbers whole
    regressed = next(line for line in lines if line.endswith("regressed"))
    assert regressed.startswith("    peak_rss \u2193")
    assert "70.25 MiB" in regressed and "88.5 MiB" in regressed and "+26.0%" in regressed
    assert lines[lines.index(regressed) - 1] == "  test_run[15M-Ofast-omp-native-t2]"
    for value in ("1,250 tok/s", "1,234 tok/s", "123.4 ms", "121.9 ms", "9,876 tok/s", "10,234 tok/s"):
        assert value in text
    # the raw change stays (it differs where speed-adjusted), the interval goes, said under the table
    assert "-4.0%" in text and "[-12.0%, +4.0%]" not in text
    assert "every row: reference saved, tolerance 5.0% where it applies" in lines
    assert "left out to fit 80 columns: the change's confidence interval" in lines


def test_short_ids_stay_whole_on_their_row_when_they_fit():
    verdicts = [verdict("t.py::test_a", "ok"), verdict("t.py::test_b", "regressed", change=-0.2, raw_change=-0.2)]
    text = report_terminal.terminal_table(verdicts, width=100)
    assert text.splitlines()[2].startswith("t.py::test_b  tok_per_s \u2191")
    assert max(widths(text)) <= 100


def test_a_name_longer_than_the_line_is_cut_in_the_middle():
    long = f"suites/test_x.py::test_y[{'-'.join(f'p{i}' for i in range(60))}]"
    text = report_terminal.terminal_table([verdict(long)], width=80)
    assert max(widths(text)) <= 80
    heading = next(line for line in text.splitlines() if "\u2026" in line)
    assert heading.startswith("  test_y[p0-p1-") and heading.endswith("p58-p59]") and len(heading) == 80


def test_a_newline_or_an_escape_in_a_test_id_neither_breaks_the_row_nor_acts():
    text = report_terminal.terminal_table([verdict("t.py::test_x[a\nb\x1b[31m]", "regressed")], width=80, color=True)
    assert "test_x[a b\\x1b[31m]" in text  # one line, the escape shown as its name
    assert text.count("\x1b") == 2  # only the status's own codes: its colour and the reset
    assert max(widths(text)) <= 80


def test_a_very_narrow_terminal_still_gets_lines_within_its_width():
    for width in (1, 10, 25, 35):
        assert max(widths(report_terminal.terminal_table(suite(), width=width))) <= width


def test_the_raw_change_column_only_when_it_says_something():
    plain = [verdict("t.py::a"), verdict("t.py::b", "new", baseline=None, change=None, ci_low=None, ci_high=None,
                                         raw_change=None)]
    assert "raw change" not in report_terminal.terminal_table(plain)
    adjusted = plain + [verdict("t.py::c", change=-0.01, raw_change=-0.05, adjusted=True)]
    text = report_terminal.terminal_table(adjusted)
    assert "raw change" in text and re.search(r"-1\.0% \[-3\.1%, \+0\.6%\] \*  +-5\.0% ", text)


def test_color_only_when_asked_and_widths_ignore_it():
    plain = report_terminal.terminal_table(suite(), width=80)
    colored = report_terminal.terminal_table(suite(), width=80, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31mregressed\x1b[0m" in colored
    assert "\x1b[33mnoisy\x1b[0m" in colored and "\x1b[33moversubscribed\x1b[0m" in colored
    assert not re.search(r"\x1b\[[0-9;]*mok", colored)  # ok is plain
    assert ANSI.sub("", colored) == plain  # the same table: the codes take no column
    assert max(widths(colored)) <= 80 < max(len(line) for line in colored.splitlines())
    assert "\x1b[32mimproved\x1b[0m" in report_terminal.terminal_table([verdict("t.py::a", "improved")], color=True)


def test_visible_width_ignores_escape_codes_and_counts_wide_characters():
    assert report_terminal.visible_width("\x1b[1;31mregressed\x1b[0m") == 9
    assert report_terminal.visible_width("t[\u4e2d\u6587]") == 7
    assert report_terminal.truncate_middle("abcdefghij", 5) == "ab\u2026ij"
    assert report_terminal.truncate_middle("abc", 5) == "abc"


@pytest.mark.parametrize("option, hasmarkup, env, expected", [
    ("yes", False, {}, True),
    ("yes", False, {"NO_COLOR": "1"}, True),  # the command line wins over the environment
    ("no", True, {}, False),
    ("auto", True, {}, True),
    ("auto", False, {}, False),
    ("auto", True, {"NO_COLOR": "1"}, False),
    ("auto", True, {"NO_COLOR": ""}, True),  # NO_COLOR counts when not empty
    ("auto", True, {"NO_COLOR": "1", "PY_COLORS": "1"}, True),
])
def test_use_color_follows_pytest_s_color_option_and_no_color(option, hasmarkup, env, expected):
    assert report_terminal.use_color(option, hasmarkup, env) is expected


SUITE = textwrap.dedent(
    """
    import os, pytest

    @pytest.mark.parametrize("flags", ["15M-Ofast-omp-native-t2", "15M-O3-omp-native-t1"])
    def test_run(llmperf, flags):
        s = float(os.environ.get("TOK_SCALE", "1"))
        llmperf.record("tok_per_s", [1234.5 * s + i % 7 / 100 for i in range(20)], unit="tok/s",
                       higher_is_better=True)
        llmperf.record("mbu", [41.0 + i % 3 / 100 for i in range(20)], unit="%", higher_is_better=True, gate=False)
    """
)


FAST = ["-p", "no:cacheprovider", "--llmperf-node=testnode", "--llmperf-max-time=0.3"]


@pytest.fixture
def suites(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "test_llama2c.py").write_text(SUITE)
    assert pytester.runpytest(*FAST, "--llmperf-save-baseline").ret == 0
    monkeypatch.setenv("TOK_SCALE", "0.8")
    return pytester


def summary_table(lines: list[str]) -> list[str]:
    """The lines of the verdict table: after the summary's separator, up to the first blank line."""
    start = next(i for i, line in enumerate(lines) if "llmperf: node testnode" in line and line.startswith("="))
    end = lines.index("", start)
    return lines[start + 1:end]


def test_the_summary_table_fits_80_columns(suites: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = suites.runpytest(*FAST)
    assert result.ret == 1
    table = summary_table(result.outlines)
    assert max(len(line) for line in table) <= 80, "\n".join(table)
    assert "suites/test_llama2c.py" in table and "  test_run[15M-Ofast-omp-native-t2]" in table
    rows = [line for line in table if line.rstrip().endswith(("regressed", "info"))]
    assert [line.split()[-1] for line in rows] == ["regressed", "regressed", "info", "info"]
    assert "\x1b[" not in result.stdout.str()  # pytester's PY_COLORS=0 and --color=auto: plain
    monkeypatch.setenv("COLUMNS", "200")
    wide = summary_table(suites.runpytest(*FAST).outlines)
    assert wide[2].startswith("suites/test_llama2c.py::test_run[15M-Ofast-omp-native-t2]  tok_per_s")


def test_color_yes_shows_the_regressed_status_red(suites: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = suites.runpytest(*FAST, "--color=yes")
    assert result.ret == 1
    table = summary_table([ANSI.sub("", line) for line in result.outlines])
    assert max(len(line) for line in table) <= 80
    assert result.stdout.str().count("\x1b[1;31mregressed\x1b[0m") == 2
    plain = suites.runpytest(*FAST, "--color=no")
    assert "\x1b[1;31mregressed" not in plain.stdout.str()


def test_warmup_table_fits_the_width() -> None:
    warmups = [(f"suites/test_llama2c.py::test_run[260K-Ofast-omp-native-t{i}]", "tok_per_s",
                {"discarded": 2, "first": 4236.0, "steady": 5283.0, "ratio": 0.8018}) for i in range(3)]
    wide = report_terminal.warmup_table(warmups)
    assert max(len(line) for line in wide.splitlines()) > 80  # the suites' ids make it wider than 80
    fitted = report_terminal.warmup_table(warmups, width=80)
    lines = fitted.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "ratio" in lines[0] and "0.80x" in lines[2]
    assert "suites/test_l" in lines[2] and "native-t0]" in lines[2] and "\u2026" in lines[2]
    assert report_terminal.warmup_table(warmups, width=200) == wide


def transformer_table(rows: int = 12) -> report.ParamsTable:
    """The shape of the transformer suite's table: four varying parameters, two constant ones,
    five metrics with units (the default suites print it 166 columns wide)."""
    params = ["size", "kind", "precision", "context", "batch", "compiled"]
    metrics = [("ms_per_step", "ms"), ("tok_per_s", "tok/s"), ("first_step_ms", "ms"), ("peak_mem", "MiB"),
               ("mfu", "%")]
    cells = []
    for i in range(rows):
        cells.append(["tiny" if i < rows // 2 else "mini", ("forward", "forward_backward", "train_step")[i % 3],
                      ("fp32", "bf16")[i % 2], str(128 << (i % 2)), "4", "False",
                      f"{9.6 + i:.4g}", f"{53106 - i:,}", f"{29 + i:.4g}", f"{470.9 + i:.4g}", f"{23.4 - i:.4g}"])
    return report.ParamsTable("suites/test_transformer.py::test_transformer", params, metrics, cells)


def test_a_params_table_that_fits_is_tabulate_s_own():
    table = transformer_table()
    wide = report_terminal.params_table_text(table)
    assert wide.splitlines()[0].split() == " ".join(table.headers).split()
    assert report_terminal.params_table_text(table, width=400) == wide
    assert max(widths(wide)) > 80


def test_a_params_table_at_80_columns_keeps_every_value_and_repeats_the_parameters():
    table = transformer_table()
    text = report_terminal.params_table_text(table, width=80)
    lines = text.splitlines()
    assert max(widths(text)) <= 80, text
    assert lines[-1] == "every row: batch=4, compiled=False"  # constant parameters leave the grid
    parts = text.rsplit("\n", 1)[0].split("\n\n")
    assert len(parts) >= 2  # the metric columns split over tables
    for part in parts:
        head = part.splitlines()[0].split()
        assert head[:4] == ["size", "kind", "precision", "context"]  # every part reads across
        assert part.splitlines()[1].split()[0].startswith("(")  # units under the names
    names = [line.split()[4:] for part in parts for line in part.splitlines()[:1]]
    assert [n for group in names for n in group] == [m for m, _ in table.metrics]  # each metric once, in order
    body = [line.split() for part in parts for line in part.splitlines()[3:]]
    for row in table.rows:  # every cell of every row is printed
        printed = [cells for cells in body if cells[:4] == row[:4]]
        assert sorted(c for cells in printed for c in cells[4:]) == sorted(row[6:])


def test_two_line_headers_alone_when_they_are_enough():
    table = report.ParamsTable("f", ["variant"], [("decode_tok_per_s", "tok/s"), ("ttft_ms", "ms")],
                               [["eager", "225.1", "8.607"], ["compile", "367.3", "10.17"]])
    one_line = report_terminal.params_table_text(table)
    assert max(widths(one_line)) == 53  # the rule under the headers: 9 + 2 + 26 + 2 + 14
    text = report_terminal.params_table_text(table, width=40)
    assert [line.rstrip() for line in text.splitlines()[:2]] == ["variant    decode_tok_per_s    ttft_ms",
                                                                 "           (tok/s)             (ms)"]
    assert "\n\n" not in text and "every row" not in text


@pytest.mark.parametrize("width", [20, 30, 45])
def test_a_narrow_terminal_cuts_the_widest_parameter_then_the_lines(width):
    flags = "-Ofast -fopenmp -march=native -funroll-all-loops"
    table = report.ParamsTable("suites/test_llama2c.py::test_run", ["model", "flags"], [("tok_per_s", "tok/s")],
                               [["stories15M", flags, "745.2"], ["stories260K", "-O3", "5,283"]])
    text = report_terminal.params_table_text(table, width=width)
    assert max(widths(text)) <= width, text
    if width == 45:  # the flags column is cut in the middle, the rest of the row stays whole
        row = text.splitlines()[3]
        assert row.startswith("stories15M") and "\u2026" in row and row.endswith("745.2")


WIDE_SUITE = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("batch", [4])
    @pytest.mark.parametrize("context", [128, 256])
    @pytest.mark.parametrize("kind", ["forward", "forward_backward", "train_step"])
    def test_transformer(llmperf, kind, context, batch):
        for name, unit in [("ms_per_step", "ms"), ("tok_per_s", "tok/s"), ("first_step_ms", "ms"),
                           ("peak_mem", "MiB"), ("mfu", "%")]:
            llmperf.record(name, [100.0 + context + i % 5 / 10 for i in range(10)], unit=unit, gate=False,
                           higher_is_better=name in ("tok_per_s", "mfu"),
                           note="MFU against a fp32 matmul probe on cpu (337.0 GFLOP/s), not a datasheet peak, "
                                "measured once per node and kept beside the baselines" if name == "mfu" else "")
    """
)


def test_the_whole_summary_fits_80_columns(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "test_transformer.py").write_text(WIDE_SUITE)
    result = pytester.runpytest(*FAST)
    assert result.ret == 0, result.stdout.str()
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "llmperf: node testnode" in line and line.startswith("="))
    end = max(i for i, line in enumerate(lines) if line.startswith(("llmperf: ", "    ")))
    section = lines[start:end + 1]
    assert "suites/test_transformer.py::test_transformer by parameters (medians):" in section
    notes = [i for i, line in enumerate(section) if line.startswith("llmperf: note: mfu")]
    assert len(notes) == 1 and section[notes[0] + 1].startswith("    ")  # wrapped, not cut
    assert "kept beside the baselines" in " ".join(line.strip() for line in section[notes[0]:notes[0] + 4])
    assert max(len(line) for line in section) <= 80, "\n".join(line for line in section if len(line) > 80)
    assert "every row: batch=4" in section
    params = section[section.index("suites/test_transformer.py::test_transformer by parameters (medians):"):]
    params = params[:next(i for i, line in enumerate(params) if line.startswith("llmperf: "))]
    words = " ".join(params).split()
    for name in ("ms_per_step", "tok_per_s", "first_step_ms", "peak_mem", "mfu"):
        assert words.count(name) == 1, name  # every metric, once
    monkeypatch.setenv("COLUMNS", "250")
    wide = pytester.runpytest(*FAST).outlines
    assert any(line.startswith("kind") and line.rstrip().endswith("mfu (%)") for line in wide)
