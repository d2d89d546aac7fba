"""Unit tests of pytest_llmperf.history: the line format, appends, torn and corrupt lines,
concurrent appends, retention, and the records built from a session's results."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import re
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pytest_llmperf import history, stats
from pytest_llmperf.baseline import metric_to_json
from pytest_llmperf.compare import Metric
from pytest_llmperf.history import (
    SCHEMA,
    Accept,
    HistoryError,
    HistoryStore,
    Point,
    Run,
    check_writable,
    new_run_id,
    node_history_dir,
    parse_line,
    run_record,
    to_line,
    utc_now_text,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
T0 = datetime(2026, 3, 1, 23, 0, tzinfo=timezone.utc)
NODE_A = "suites/test_x.py::test_tok[260K]"
NODE_B = "suites/test_x.py::test_tok[15M]"
NODE_C = "tests/test_y.py::TestK::test_lat"


def point(name="tok_per_s", median=100.0, **kw) -> Point:
    fields = {"name": name, "unit": "tok/s", "higher_is_better": True, "median": median, "n": 20, "se": 0.004,
              "adjusted": None, "probe_kind": None, "cpu_share": None, "status": "ok", "change": -0.01,
              "reference": "saved"}
    fields.update(kw)
    return Point(**fields)


def run(nodeid=NODE_A, night=0, median=100.0, run_id=None, reset=False, outcome="passed", **kw) -> Run:
    when = T0 + timedelta(days=night)
    fields = {"time": utc_now_text(when), "run_id": run_id or f"r{night:03d}", "nodeid": nodeid, "fingerprint": "fp1",
              "plugin_version": "0.1.0", "commits": {"repo": {"commit": SHA, "dirty": False}}, "outcome": outcome,
              "reset": reset, "metrics": {"tok_per_s": point(median=median)}}
    fields.update(kw)
    return Run(**fields)


def accept(nodeid=NODE_A, night=0, run_id=None, why="new compiler", minutes=30) -> Accept:
    return Accept(time=utc_now_text(T0 + timedelta(days=night, minutes=minutes)), nodeid=nodeid, run_id=run_id,
                  why=why)


def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(node_history_dir(tmp_path / "baselines", "n1"))


def good_line(**overrides) -> dict:
    data = json.loads(to_line(run()))
    data.update(overrides)
    return data


def write_lines(path: Path, *lines: str | dict, end: str = "\n") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    texts = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(texts) + end, encoding="utf-8")
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------
# layout and format


def test_layout_default_and_given_dir(tmp_path):
    assert node_history_dir(Path("baselines"), "sifive") == Path("baselines/sifive/history")
    assert node_history_dir(Path("baselines"), "sifive", Path("/h")) == Path("/h/sifive")
    s = store(tmp_path)
    assert s.path_for(NODE_A) == tmp_path / "baselines/n1/history/suites/test_x.jsonl"
    assert s.path_for(NODE_C) == tmp_path / "baselines/n1/history/tests/test_y.jsonl"


def test_round_trip_of_every_field(tmp_path):
    full = Point(name="tok_per_s", unit="tok/s", higher_is_better=True, median=123.4567, n=40, se=0.0041,
                 adjusted=1.234, probe_kind="refrun-O3", cpu_share=0.987, status="regressed", change=0.0734,
                 reference="history:5", gate=True, exact=False, samples=(120.0, 123.4567, 130.5))
    info = Point(name="instructions", unit="count", higher_is_better=False, median=12345678901234.0, n=3, se=None,
                 adjusted=None, probe_kind=None, cpu_share=None, status=None, change=None, reference=None,
                 gate=False, exact=True, samples=None)
    r = Run(time="2026-12-01T23:14:34Z", run_id="20261201T231434Z-3f9a1c2b", nodeid="suites/t.py::test_ü[a b]",
            fingerprint="ab12", plugin_version="0.2.0",
            commits={"repo": {"commit": SHA, "dirty": True}, "llama2c": {"commit": SHA[::-1], "dirty": False}},
            outcome="failed", reset=True, metrics={"tok_per_s": full, "instructions": info})
    a = Accept(time="2026-12-02T08:00:00Z", nodeid=r.nodeid, run_id=r.run_id, why="the new compiler is the norm")
    a_next = Accept(time="2026-12-02T08:00:01Z", nodeid=r.nodeid, run_id=None, why="")
    for entry in (r, a, a_next):
        line = to_line(entry)
        assert "\n" not in line
        assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert parse_line(line) == entry
    s = store(tmp_path)
    assert s.append([r, a, a_next]) == [s.path_for(r.nodeid)]
    back = s.read(r.nodeid)
    assert back == [r, a, a_next]
    assert [(e.path, e.line) for e in back] == [(s.path_for(r.nodeid), 1), (s.path_for(r.nodeid), 2),
                                                 (s.path_for(r.nodeid), 3)]
    assert back[0].metrics["tok_per_s"].samples == (120.0, 123.4567, 130.5)
    data = json.loads(s.path_for(r.nodeid).read_text().splitlines()[0])
    assert data["schema"] == SCHEMA and data["v"] == 1 and data["kind"] == "run" and data["fp"] == "ab12"
    assert data["metrics"]["tok_per_s"] == {
        "unit": "tok/s", "dir": "higher", "median": 123.4567, "n": 40, "se": 0.0041, "adj": 1.234,
        "probe": "refrun-O3", "share": 0.987, "status": "regressed", "change": 0.0734, "ref": "history:5",
        "samples": [120.0, 123.4567, 130.5]}  # gate true and exact false are the defaults, left out
    assert data["metrics"]["instructions"] == {"unit": "count", "dir": "lower", "median": 12345678901234.0, "n": 3,
                                               "gate": False, "exact": True}
    assert json.loads(s.path_for(r.nodeid).read_text().splitlines()[2])["run"] is None


def test_append_and_read(tmp_path):
    s = store(tmp_path)
    written = s.append([run(NODE_A, 0), run(NODE_B, 0), run(NODE_C, 0)])
    assert written == [s.path_for(NODE_A), s.path_for(NODE_C)]
    s.append([run(NODE_A, 1, median=101.0), run(NODE_B, 1)])
    s.accept([NODE_A], why="ok now", time="2026-03-02T23:30:00Z")
    assert [e.run_id for e in s.read(NODE_A)] == ["r000", "r001", None]
    assert isinstance(s.read(NODE_A)[2], Accept) and s.read(NODE_A)[2].why == "ok now"
    assert s.read(NODE_A)[1].metrics["tok_per_s"].median == 101.0
    assert [e.run_id for e in s.read(NODE_C)] == ["r000"]
    assert s.read("suites/test_x.py::test_other") == []
    everything = s.read_all()
    assert list(everything) == sorted([NODE_A, NODE_B, NODE_C])
    assert everything[NODE_A] == s.read(NODE_A)
    assert s.path_for(NODE_A).read_text().count("\n") == 5
    assert s.warnings == []


def test_read_is_in_time_order_after_a_union_merge(tmp_path):
    """Two branches appended nights 2 and 1; a union merge put night 2 first: read sorts by time,
    stable for equal times (the file order of one writer)."""
    s = store(tmp_path)
    path = s.path_for(NODE_A)
    write_lines(path, to_line(run(night=2)), to_line(run(night=0)), to_line(run(night=1)),
                to_line(Accept(time=utc_now_text(T0 + timedelta(days=1)), nodeid=NODE_A, run_id=None, why="b")))
    assert [e.run_id for e in s.read(NODE_A)] == ["r000", "r001", None, "r002"]


def test_no_history_reads_empty(tmp_path):
    s = store(tmp_path)
    assert s.read_all() == {} and s.read(NODE_A) == [] and s.files() == []


def test_run_ids_sort_and_differ():
    ids = [new_run_id(T0) for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"20260301T230000Z-[0-9a-f]{8}", i) for i in ids)
    assert new_run_id(T0 + timedelta(seconds=1)) > max(ids)
    assert utc_now_text(T0) == "2026-03-01T23:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_now_text())


# ---------------------------------------------------------------------------------------------
# torn last lines


def test_torn_last_line_skipped_then_cut_off_by_the_next_append(tmp_path):
    s = store(tmp_path)
    s.append([run(night=0), run(night=1)])
    path = s.path_for(NODE_A)
    whole = path.read_bytes()
    torn = to_line(run(night=2))[:150]
    with path.open("ab") as fh:
        fh.write(torn.encode())
    assert [e.run_id for e in s.read(NODE_A)] == ["r000", "r001"]
    assert s.warnings == [f"history file {path}, line 3: skipped a torn last line (no newline at its end: "
                          "an append cut short, e.g. by a power cut)"]
    s2 = HistoryStore(s.directory)
    s2.append([run(night=3)])
    assert s2.warnings == [f"history file {path}, line 3: cut off a torn last line (no newline at its end: "
                           "an append cut short, e.g. by a power cut)"]
    assert path.read_bytes() == whole + (to_line(run(night=3)) + "\n").encode()
    s3 = HistoryStore(s.directory)
    assert [e.run_id for e in s3.read(NODE_A)] == ["r000", "r001", "r003"] and s3.warnings == []


def test_torn_line_of_nul_bytes_and_torn_first_line(tmp_path):
    s = store(tmp_path)
    path = s.path_for(NODE_A)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"commits":{"re')  # the very first append was cut
    assert s.read(NODE_A) == [] and "line 1: skipped a torn last line" in s.warnings[0]
    s.append([run(night=0)])
    assert path.read_text() == to_line(run(night=0)) + "\n"
    with path.open("ab") as fh:
        fh.write(b"\x00" * 300)  # what a file system leaves where the data never reached the disk
    assert len(s.read(NODE_A)) == 1 and "line 2: skipped a torn last line" in s.warnings[-1]
    s.append([run(night=1)])
    assert [e.run_id for e in HistoryStore(s.directory).read(NODE_A)] == ["r000", "r001"]


def test_unterminated_record_is_kept_and_completed(tmp_path):
    s = store(tmp_path)
    path = s.path_for(NODE_A)
    write_lines(path, to_line(run(night=0)), end="")  # a hand edit lost the last newline
    assert [e.run_id for e in s.read(NODE_A)] == ["r000"] and s.warnings == []
    s.append([run(night=1)])
    assert path.read_text() == to_line(run(night=0)) + "\n" + to_line(run(night=1)) + "\n"
    assert s.warnings == []


def test_unterminated_garbage_is_not_torn(tmp_path):
    s = store(tmp_path)
    path = s.path_for(NODE_A)
    before = write_lines(path, to_line(run(night=0)), ">>>>>>> theirs", end="")
    with pytest.raises(HistoryError) as exc:
        s.read(NODE_A)
    assert str(exc.value).startswith(f"history file {path}, line 2: is corrupt JSON")
    with pytest.raises(HistoryError, match=re.escape(f"history file {path}, line 2: the last line is not a record "
                                                     "and has no newline at its end; fix it or restore it from git")):
        s.append([run(night=1)])
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# errors: one line naming file and line, nothing rewritten


BAD_LINES = {
    "corrupt": ('{"schema": "pytest-llmperf-history", "v": 1, "kind": "run", "time": <<<<<<< HEAD',
                "is corrupt JSON"),
    "non-object": ("[1, 2, 3]", "is [1, 2, 3], not a JSON object"),
    "unknown schema": (json.dumps(good_line(schema="pytest-benchmark")),
                       'is not a pytest-llmperf history line (no "schema": "pytest-llmperf-history")'),
    "newer version": (json.dumps(good_line(v=2)),
                      "has history version 2, newer than this plugin's 1: upgrade pytest-llmperf"),
    "unknown version": (json.dumps(good_line(v="1")), "has unknown history version '1' (expected 1)"),
    "unknown kind": (json.dumps(good_line(kind="note")), "has unknown kind 'note' (expected 'run' or 'accept')"),
    "bad time": (json.dumps(good_line(time="2026-13-01T00:00:00Z")),
                 "'time' is '2026-13-01T00:00:00Z', not a valid date and time"),
    "local time": (json.dumps(good_line(time="2026-03-01 23:00")),
                   "'time' is '2026-03-01 23:00', not a UTC time like 2026-12-01T23:14:34Z"),
    "run id": (json.dumps(good_line(run=7)), "'run' is 7, not a non-empty string"),
    "reset": (json.dumps(good_line(reset="no")), "'reset' is 'no', not true or false"),
    "metrics": (json.dumps(good_line(metrics=[1])), "'metrics' is [1], not an object"),
    "commits": (json.dumps(good_line(commits={"repo": {"commit": 5}})), "commit of 'repo' is 5, not a string"),
    "median": (json.dumps(good_line(metrics={"t": {"unit": "s", "dir": "lower", "median": "fast", "n": 3}})),
               "metric 't': 'median' is 'fast', not a finite number in [0, 1e+18)"),
    "negative": (json.dumps(good_line(metrics={"t": {"unit": "s", "dir": "lower", "median": -1, "n": 3}})),
                 "metric 't': 'median' is -1, not a finite number in [0, 1e+18)"),
    "n": (json.dumps(good_line(metrics={"t": {"unit": "s", "dir": "lower", "median": 1, "n": 2.5}})),
          "metric 't': 'n' is 2.5, not a positive integer"),
    "direction": (json.dumps(good_line(metrics={"t": {"unit": "s", "dir": "up", "median": 1, "n": 2}})),
                  "metric 't': 'dir' is 'up', not 'higher' or 'lower'"),
    "gate": (json.dumps(good_line(metrics={"t": {"unit": "s", "dir": "lower", "median": 1, "n": 2, "gate": 1}})),
             "metric 't': 'gate' is 1, not true or false"),
    "sample": (json.dumps(good_line(metrics={"t": {"unit": "s", "dir": "lower", "median": 1, "n": 2,
                                                   "samples": [1, 0]}})),
               "metric 't': sample 0 is zero in a gated metric"),
    "NaN": (json.dumps(good_line()).replace('"median": 100.0', '"median": NaN'),
            "holds NaN, which is not a number a history line can hold"),
    "out of range": (json.dumps(good_line()).replace('"median": 100.0', '"median": 1e400'),
                     "metric 'tok_per_s': 'median' is inf, not a finite number in [0, 1e+18)"),
    "accept why": (json.dumps({"schema": SCHEMA, "v": 1, "kind": "accept", "time": "2026-03-01T23:00:00Z",
                               "nodeid": NODE_A, "run": None, "why": 3}), "'why' is 3, not a string"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_in_the_middle_is_one_line_and_nothing_is_rewritten(tmp_path, case):
    bad, problem = BAD_LINES[case]
    s = store(tmp_path)
    path = s.path_for(NODE_A)
    before = write_lines(path, to_line(run(night=0)), bad, to_line(run(night=2)))
    expected = f"history file {path}, line 2: {problem}"
    for attempt in (lambda: s.read(NODE_A), s.read_all, lambda: s.compact(1),
                    lambda: s.append([run(night=3)], keep=1)):
        with pytest.raises(HistoryError) as exc:
            attempt()
        message = str(exc.value)
        assert message.startswith(expected), message
        assert "\n" not in message and message.endswith("; fix it or restore it from git")
        assert path.read_bytes() == before


def test_not_utf8_line(tmp_path):
    s = store(tmp_path)
    path = s.path_for(NODE_A)
    path.parent.mkdir(parents=True)
    before = (to_line(run(night=0)) + "\n").encode() + b'{"x": "\xff\xfe"}\n' + (to_line(run(night=1)) + "\n").encode()
    path.write_bytes(before)
    with pytest.raises(HistoryError, match=re.escape(f"history file {path}, line 2: is not UTF-8 text (corrupt?)")):
        s.read_all()
    with pytest.raises(HistoryError):
        s.compact(1)
    assert path.read_bytes() == before


def test_nothing_is_written_that_read_would_refuse(tmp_path):
    s = store(tmp_path)
    bad = [
        (run(metrics={"t": point(median=float("nan"))}), "cannot be written: Out of range float values"),
        (run(metrics={"t": point(median=-3.0)}), "'median' is -3.0"),
        (run(metrics={"t": point(n=0)}), "'n' is 0, not a positive integer"),
        (run(time="yesterday"), "'time' is 'yesterday'"),
        (dataclasses.replace(run(), run_id=""), "'run' is '', not a non-empty string"),
        (run(metrics={"t": point(name="other")}), "does not read back as it was written"),
        (run(metrics={"t": point(samples=(1.0, float("inf")))}), "cannot be written"),
    ]
    for entry, problem in bad:
        with pytest.raises(HistoryError) as exc:
            s.append([run(NODE_C), entry])  # the good record is not written either
        assert problem in str(exc.value) and NODE_A in str(exc.value), str(exc.value)
    assert not s.directory.exists()


def test_history_dir_is_a_file(tmp_path):
    blocker = tmp_path / "baselines"
    blocker.write_text("")
    s = HistoryStore(blocker / "n1" / "history")
    with pytest.raises(HistoryError, match=re.escape(f"history dir {s.directory}: {blocker} is a file, not a directory")):
        check_writable(s.directory)
    with pytest.raises(HistoryError, match=re.escape(f"cannot create history dir {s.directory}")):
        s.append([run()])
    flat = tmp_path / "flat"
    flat.write_text("")
    with pytest.raises(HistoryError, match=re.escape(f"history dir {flat} is a file, not a directory")):
        HistoryStore(flat).read_all()
    with pytest.raises(HistoryError, match=re.escape(f"history dir {flat}: {flat} is a file, not a directory")):
        check_writable(flat)


def _unprivileged(fn) -> str:
    """Run ``fn`` where permissions apply: in a forked child as user nobody when the tests run as
    root (root may write anywhere). Returns ``"ok"`` or the HistoryError's message."""

    def call() -> str:
        try:
            fn()
        except HistoryError as exc:
            return str(exc)
        return "ok"

    if os.geteuid() != 0:
        return call()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery past this point, only os._exit
        code = 0
        try:
            os.close(read_fd)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_fd, call().encode())
        except BaseException as exc:
            os.write(write_fd, f"child failed: {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_unwritable_directory_and_file():
    """Real permissions: as root the checks run as nobody, and "read-only" is "not the owner's"."""
    root = os.geteuid() == 0
    ro_dir, ro_file, unlisted = (0o755, 0o644, 0o700) if root else (0o555, 0o444, 0o300)
    base = Path(tempfile.mkdtemp(prefix="llmperf-history-"))  # not under tmp_path: nobody must reach it
    try:
        base.chmod(0o755)
        hist = base / "history"
        s = HistoryStore(hist)
        s.append([run(night=0)])
        for p in [hist, *hist.rglob("*")]:
            p.chmod(ro_dir if p.is_dir() else ro_file)
        before = s.path_for(NODE_A).read_bytes()
        assert _unprivileged(lambda: check_writable(hist / "new-node")) == \
            f"history dir {hist / 'new-node'} is not writable ({hist} denies writing)"
        assert _unprivileged(lambda: check_writable(hist)) == f"history dir {hist} is not writable ({hist} denies writing)"
        message = _unprivileged(lambda: HistoryStore(hist).append([run(night=1)]))
        assert message == f"cannot lock history dir {hist}: Permission denied"
        assert _unprivileged(lambda: HistoryStore(hist).read_all()) == "ok"  # reading needs no write access
        assert s.path_for(NODE_A).read_bytes() == before
        hist.chmod(0o777)  # the directory and the lock let anyone write, the file does not
        (hist / history.LOCK_NAME).chmod(0o666)
        message = _unprivileged(lambda: check_writable(hist))
        assert message == f"history file {s.path_for(NODE_A)} is not writable", message
        message = _unprivileged(lambda: HistoryStore(hist).append([run(night=1)]))
        assert message == f"cannot append to history file {s.path_for(NODE_A)}: Permission denied"
        assert s.path_for(NODE_A).read_bytes() == before
        (hist / "suites").chmod(unlisted)  # a directory that cannot be listed: not "no history"
        message = _unprivileged(lambda: HistoryStore(hist).read_all())
        assert message == f"cannot read history dir {hist / 'suites'}: Permission denied", message
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(base)


# ---------------------------------------------------------------------------------------------
# concurrent appends


def _append_many(directory: str, worker: int, count: int) -> None:
    s = HistoryStore(Path(directory))
    for i in range(count):
        night = worker * 1000 + i
        s.append([run(NODE_A, night, run_id=f"w{worker}-{i}"), run(NODE_C, night, run_id=f"w{worker}-{i}")])


def test_concurrent_appends_lose_nothing(tmp_path):
    directory = tmp_path / "history"
    workers, count = 4, 60
    ctx = multiprocessing.get_context("spawn")  # real processes, each with its own interpreter
    procs = [ctx.Process(target=_append_many, args=(str(directory), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    s = HistoryStore(directory)
    for nodeid in (NODE_A, NODE_C):
        assert s.path_for(nodeid).read_bytes().count(b"\n") == workers * count
        ids = [e.run_id for e in s.read(nodeid)]
        assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(workers) for i in range(count))
    assert s.warnings == []


# ---------------------------------------------------------------------------------------------
# retention


def test_compaction_keeps_the_newest_runs_and_later_accepts(tmp_path):
    s = store(tmp_path)
    entries: list[Run | Accept] = [run(NODE_A, n) for n in range(6)]
    entries += [run(NODE_B, n) for n in range(2)]
    entries += [accept(NODE_A, 1, why="old"), accept(NODE_A, 3, run_id="r004", why="names a kept run"),
                accept(NODE_A, 4, why="after")]
    entries.append(run(NODE_A, 5, run_id="r005", metrics={"mbu": point("mbu", 40.0)}))  # a second line of r005
    s.append(entries)
    s.append([run(NODE_C, n) for n in range(5)])
    path = s.path_for(NODE_A)
    path.chmod(0o640)
    (path.parent / f".{path.name}.x1y2.tmp").write_text("left by a compaction that was killed")
    assert s.compact(3, [NODE_A]) == [path]
    kept = s.read(NODE_A)
    assert [(type(e).__name__, e.run_id) for e in kept] == [
        ("Run", "r003"), ("Accept", "r004"), ("Run", "r004"), ("Accept", None), ("Run", "r005"), ("Run", "r005")]
    assert [e.why for e in kept if isinstance(e, Accept)] == ["names a kept run", "after"]
    assert [e.run_id for e in s.read(NODE_B)] == ["r000", "r001"]  # fewer runs than kept: untouched
    assert len(s.read(NODE_C)) == 5  # another file, not named
    assert path.stat().st_mode & 0o777 == 0o640
    assert list(path.parent.glob(".*.tmp")) == []
    lines = path.read_text().splitlines()
    assert all(parse_line(line) for line in lines) and len(lines) == 8
    before = path.read_bytes()
    assert s.compact(3) == [s.path_for(NODE_C)]  # nothing more to drop in test_x: not rewritten
    assert path.read_bytes() == before
    assert [e.run_id for e in s.read(NODE_C)] == ["r002", "r003", "r004"]


def test_append_with_keep_compacts_the_files_it_touched(tmp_path):
    s = store(tmp_path)
    s.append([run(NODE_C, n) for n in range(4)])
    for n in range(5):
        s.append([run(NODE_A, n)], keep=2)
    assert [e.run_id for e in s.read(NODE_A)] == ["r003", "r004"]
    assert len(s.read(NODE_C)) == 4
    with pytest.raises(HistoryError, match="history keep 0: must be a positive number of runs"):
        s.append([run(NODE_A, 9)], keep=0)
    with pytest.raises(HistoryError, match="history keep 0: must be a positive number of runs"):
        s.compact(0)


def test_compaction_refuses_when_any_file_is_bad(tmp_path):
    s = store(tmp_path)
    s.append([run(NODE_A, n) for n in range(4)] + [run(NODE_C, n) for n in range(4)])
    good = s.path_for(NODE_A).read_bytes()
    bad_path = s.path_for(NODE_C)
    bad = bad_path.read_bytes().replace(b'"v":1', b'"v":9', 1)
    bad_path.write_bytes(bad)
    with pytest.raises(HistoryError, match="line 1: has history version 9, newer than this plugin's 1"):
        s.compact(1)
    assert s.path_for(NODE_A).read_bytes() == good and bad_path.read_bytes() == bad


# ---------------------------------------------------------------------------------------------
# records from a session's results


def _result(metrics, nodeid=NODE_A, verdicts=()):
    return {"nodeid": nodeid, "metrics": {m.name: metric_to_json(m) for m in metrics}, "verdicts": list(verdicts)}


def _typical(rng_seed=3):
    import random

    rng = random.Random(rng_seed)
    tok = [rng.gauss(250.0, 5.0) for _ in range(40)]
    probes = [rng.gauss(0.01, 0.0002) for _ in range(40)]
    return [
        Metric("tok_per_s", "tok/s", True, tok, probes, probe_kind="refrun-O3", cpu_share=0.9934567),
        Metric("mbu", "%", True, [rng.gauss(41.0, 1.0) for _ in range(40)], gate=False),
        Metric("peak_rss", "MiB", False, [123.0] * 40, exact=True),
    ]


VERDICTS = [{"metric": "tok_per_s", "status": "ok", "change": -0.012345678, "reference": "history:5"},
            {"metric": "mbu", "status": "info", "change": 0.001, "reference": "history:5"},
            {"metric": "peak_rss", "status": "ok", "change": 0.0, "reference": "history:5"}]


def _record(result, verdicts=VERDICTS, samples=0, commits=None):
    return run_record(result, verdicts, run_id="20260301T230000Z-0badf00d", time="2026-03-01T23:00:00Z",
                      fingerprint="3f2a9c0d1e5b7a64", plugin_version="0.1.0",
                      commits=commits if commits is not None else {
                          "repo": {"commit": SHA, "dirty": False, "path": "/src/repo"},
                          "llama2c": {"commit": SHA, "dirty": True, "path": "/src/llama2.c"}},
                      outcome="passed", reset=False, samples=samples)


def test_run_record_fields():
    metrics = _typical()
    tok, mbu, _ = metrics
    result = _result(metrics)
    r = _record(result)
    tok.samples, tok.probes = result["metrics"]["tok_per_s"]["samples"], result["metrics"]["tok_per_s"]["probes"]
    mbu.samples = result["metrics"]["mbu"]["samples"]  # what travels: 7 digits (baseline.metric_to_json)
    assert r.commits == {"llama2c": {"commit": SHA, "dirty": True}, "repo": {"commit": SHA, "dirty": False}}
    p = r.metrics["tok_per_s"]
    adjusted = stats.speed_adjusted(tok.samples, tok.probes, rate=True)
    assert p.median == float(f"{stats.median(tok.samples):.7g}") and p.n == 40
    assert p.adjusted == float(f"{stats.median(adjusted):.7g}")
    assert p.se == float(f"{stats.run_log_median_se(adjusted):.7g}")
    assert p.se != float(f"{stats.run_log_median_se(tok.samples):.7g}")
    assert (p.probe_kind, p.cpu_share, p.status, p.change, p.reference) == (
        "refrun-O3", 0.9934567, "ok", -0.01234568, "history:5")
    assert p.samples is None and p.gate and not p.exact and p.higher_is_better and p.unit == "tok/s"
    m = r.metrics["mbu"]
    assert m.adjusted is None and m.probe_kind is None and not m.gate and m.status == "info"
    assert m.se == float(f"{stats.run_log_median_se(mbu.samples):.7g}")
    x = r.metrics["peak_rss"]
    assert x.exact and x.median == 123.0 and x.se == 0.0 and not x.higher_is_better
    assert list(r.metrics) == ["mbu", "peak_rss", "tok_per_s"]
    s = HistoryStore(Path(tempfile.mkdtemp()))
    s.append([r])
    assert s.read(NODE_A) == [r]


def test_run_record_without_verdicts_and_few_samples():
    few = Metric("t", "s", False, [1.0, 2.0])
    r = _record(_result([few], verdicts=[{"metric": "t", "status": "new", "change": None}]), verdicts=None,
                commits={"repo": None, "llama2c": {"commit": None, "dirty": False}})
    p = r.metrics["t"]
    assert (p.status, p.change, p.reference, p.se) == ("new", None, None, None)  # se is infinite with 2 samples
    assert r.commits == {}
    r2 = _record(_result([few]), verdicts=[])
    assert r2.metrics["t"].status is None


def test_run_record_samples_bounded_and_evenly_spread():
    metric = Metric("t", "s", False, [float(i) for i in range(1, 101)])
    r = _record(_result([metric]), verdicts=[], samples=10)
    assert r.metrics["t"].samples == tuple(float(i) for i in range(1, 101, 10))
    assert _record(_result([metric]), verdicts=[], samples=500).metrics["t"].samples == tuple(
        float(i) for i in range(1, 101))
    counts = Metric("instructions", "count", False, [12345678901.0] * 5, exact=True)
    r = _record(_result([counts]), verdicts=[], samples=3)
    assert r.metrics["instructions"].samples == (12345678901.0,) * 3
    assert r.metrics["instructions"].median == 12345678901.0  # a count is not rounded to 7 digits


def test_run_record_bad_result():
    with pytest.raises(HistoryError, match="history record: result has no nodeid"):
        _record({"metrics": {}})
    bad = _result([Metric("t", "s", False, [1.0, 2.0, 3.0])])
    bad["metrics"]["t"]["direction"] = "sideways"
    with pytest.raises(HistoryError, match="history record of test 'suites/test_x.py::test_tok\\[260K\\]': metric 't' "
                                           "has direction 'sideways'"):
        _record(bad)


def test_line_of_a_typical_test_is_under_1kb_without_samples():
    r = _record(_result(_typical(), nodeid="suites/test_llama2c.py::test_tok_s[stories15M--O3-1t]"))
    size = len(to_line(r).encode("utf-8"))
    assert 700 < size <= 1024, size  # 882 bytes with the repository's and llama2.c's commits
    with_samples = _record(_result(_typical()), samples=40)
    assert len(with_samples.metrics["tok_per_s"].samples) == 40
