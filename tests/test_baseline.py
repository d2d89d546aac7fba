"""Unit tests of pytest_llmperf.baseline: paths, JSON round trip, load errors, merging saves."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from pytest_llmperf import baseline
from pytest_llmperf.baseline import (
    NODE_INFO,
    SCHEMA,
    SCHEMA_VERSION,
    BaselineError,
    BaselineFile,
    BaselineStore,
    atomic_write,
    bound_samples,
    check_writable,
    metric_from_json,
    metric_to_json,
    relative_file_for,
    split_nodeid,
)
from pytest_llmperf.compare import Metric

FP_FIELDS = {"cpu": "Test CPU", "cores": 4}
FP = "fp0001"


def time_metric(samples, probes=None, warmup=None, name="time"):
    return Metric(name, "s", False, list(samples), probes, warmup)


def record(nodeid, *metrics, params=None):
    rec = {"nodeid": nodeid, "metrics": list(metrics)}
    if params is not None:
        rec["params"] = params
    return rec


def save(store, *records, fp=FP, fields=FP_FIELDS, meta=None):
    return store.save(list(records), fields, fp, meta or {"saved_at": "2024-01-01T00:00:00"})


def valid_file_dict(**metric_overrides) -> dict:
    metric = {"unit": "s", "direction": "lower", "samples": [1.0, 2.0, 3.0]}
    metric.update(metric_overrides)
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "node": "n", "test_file": "test_a.py",
        "fingerprints": {FP: FP_FIELDS}, "tests": {"test_x": {"fingerprint": FP, "metrics": {"time": metric}}},
    }


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(BaselineError) as exc:
        BaselineFile.load(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# -- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodeid, expected", [
    ("suites/test_x.py::TestA::test_b[p]", ("suites/test_x.py", "TestA::test_b[p]")),
    ("test_x.py::test_b", ("test_x.py", "test_b")),
    ("test_x.py::test_b[a::b]", ("test_x.py", "test_b[a::b]")),
    ("test_x.py::test_b[a/b.py]", ("test_x.py", "test_b[a/b.py]")),
    ("README.md", ("README.md", "README.md")),
])
def test_split_nodeid(nodeid, expected):
    assert split_nodeid(nodeid) == expected


@pytest.mark.parametrize("test_path, expected", [
    ("suites/test_llama2c.py", "suites/test_llama2c.json"),
    ("test_a.py", "test_a.json"),
    ("./tests/test_a.py", "tests/test_a.json"),
    ("../other/test_a.py", "_up_/other/test_a.json"),
    ("/abs/dir/test_a.py", "abs/dir/test_a.json"),
    ("docs/README.md", "docs/README.md.json"),
    ("tests/test_dir", "tests/test_dir.json"),
    ("", "tests.json"),
])
def test_relative_file_for(test_path, expected):
    rel = relative_file_for(test_path)
    assert rel == Path(expected)
    assert not rel.is_absolute()
    assert ".." not in rel.parts


def test_store_path_for():
    store = BaselineStore(Path("/b"), "sifive")
    assert store.path_for("suites/test_llama2c.py::test_tok_s[15M--O3]") == (
        Path("/b/sifive/suites/test_llama2c.json"), "test_tok_s[15M--O3]")


# -- bound_samples / metric JSON ----------------------------------------------------------------

def test_bound_samples_under_the_limit_copies():
    samples, probes = [1.0, 2.0], [0.1, 0.2]
    s, p = bound_samples(samples, probes, limit=5)
    assert s == samples and p == probes
    assert s is not samples and p is not probes
    assert bound_samples(samples, None, limit=5) == ([1.0, 2.0], None)


@pytest.mark.parametrize("n, limit", [(1001, 1000), (5000, 1000), (10, 3), (7, 6)])
def test_bound_samples_keeps_pairs_aligned_and_spread(n, limit):
    samples = [float(i) for i in range(n)]
    probes = [1000.0 + i for i in range(n)]
    s, p = bound_samples(samples, probes, limit=limit)
    assert len(s) == len(p) == limit
    assert all(pv - 1000.0 == sv for sv, pv in zip(s, p))  # each round keeps its own probe
    assert s == sorted(set(s))  # distinct rounds, in order
    assert s[0] == 0.0 and s[-1] >= n - n / limit - 1  # spread over the whole run


def test_metric_json_round_trip():
    m = time_metric([0.1234567891, 0.2, 0.3, 0.25], [0.01, 0.011, 0.012, 0.013],
                    {"discarded": 2, "first": 1.5, "steady": 0.2, "ratio": 7.5, "note": "x"})
    data = metric_to_json(m)
    assert data["unit"] == "s" and data["direction"] == "lower"
    assert list(data["summary"]) == ["n", "min", "q1", "median", "q3", "max", "mean", "stdev"]
    assert data["summary"]["n"] == 4 and data["summary"]["median"] == pytest.approx(0.225)
    assert data["samples"][0] == 0.1234568  # seven significant digits
    back = metric_from_json("time", json.loads(json.dumps(data)), "where")
    assert back.name == "time" and back.unit == "s" and back.higher_is_better is False
    assert back.samples == pytest.approx(m.samples, rel=1e-6)
    assert back.probes == pytest.approx(m.probes)
    assert len(data["probes"]) == len(data["samples"]) == 4
    assert back.warmup == {"discarded": 2, "first": 1.5, "steady": 0.2, "ratio": 7.5, "note": "x"}


def test_metric_json_higher_is_better_without_probes():
    m = Metric("tok_per_s", "tok/s", True, [100.0, 101.0, 99.0])
    data = metric_to_json(m)
    assert data["direction"] == "higher"
    assert "probes" not in data and "warmup" not in data
    back = metric_from_json("tok_per_s", data, "w")
    assert back.higher_is_better is True and back.probes is None and back.samples == [100.0, 101.0, 99.0]


def test_metric_to_json_bounds_samples_but_summarizes_all():
    m = time_metric([float(i) for i in range(1, 2501)], [1.0] * 2500)
    data = metric_to_json(m)
    assert len(data["samples"]) == baseline.MAX_STORED_SAMPLES == len(data["probes"])
    assert data["summary"]["n"] == 2500 and data["summary"]["max"] == 2500.0


@pytest.mark.parametrize("data, fragment", [
    ([1, 2], "is not an object"),
    ({"unit": "s", "direction": "down", "samples": [1.0]}, "has direction 'down'"),
    ({"unit": "s", "samples": [1.0]}, "has direction None"),
    ({"direction": "lower", "samples": [1.0]}, "has no unit"),
    ({"unit": "s", "direction": "lower"}, "no list of numeric samples"),
    ({"unit": "s", "direction": "lower", "samples": []}, "no list of numeric samples"),
    ({"unit": "s", "direction": "lower", "samples": [1.0, "2"]}, "no list of numeric samples"),
    ({"unit": "s", "direction": "lower", "samples": [True]}, "no list of numeric samples"),
    ({"unit": "s", "direction": "lower", "samples": [1.0, 2.0], "probes": [1.0]}, "probes that do not pair"),
    ({"unit": "s", "direction": "lower", "samples": [1.0], "probes": [1.0, 1.0, 1.0]}, "probes that do not pair"),
    # one probe per sample exactly: the old n + 1 form (a probe after the last round) is rejected
    ({"unit": "s", "direction": "lower", "samples": [1.0, 2.0], "probes": [1.0, 1.0, 1.0]}, "probes that do not pair"),
    ({"unit": "s", "direction": "lower", "samples": [1.0, 2.0], "probes": []}, "probes that do not pair"),
    ({"unit": "s", "direction": "lower", "samples": [1.0, 2.0], "probes": [1.0, True]}, "probes that do not pair"),
    ({"unit": "s", "direction": "lower", "samples": [1.0], "probes": "x"}, "probes that do not pair"),
])
def test_metric_from_json_errors(data, fragment):
    with pytest.raises(BaselineError) as exc:
        metric_from_json("time", data, "baseline file F")
    msg = str(exc.value)
    assert msg.startswith("baseline file F: metric 'time' ")
    assert fragment in msg


# -- BaselineFile.load errors -------------------------------------------------------------------

def test_load_valid_file(tmp_path):
    path = write_json(tmp_path / "a.json", valid_file_dict())
    bfile = BaselineFile.load(path)
    metrics = bfile.metrics("test_x")
    assert list(metrics) == ["time"] and metrics["time"].samples == [1.0, 2.0, 3.0]
    assert bfile.metrics("missing") == {}
    assert bfile.fingerprint("test_x") == (FP, FP_FIELDS)
    assert bfile.fingerprint("missing") == (None, None)


def test_load_corrupt_json(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"schema": pytest-llmperf}\n')
    msg = load_error(path)
    assert "corrupt JSON" in msg and "line 1" in msg and "restore it from git" in msg


def test_load_truncated_json(tmp_path):
    path = write_json(tmp_path / "a.json", valid_file_dict())
    text = json.dumps(valid_file_dict(), indent=2, sort_keys=True)
    # cut after a complete number, in the middle of the samples list
    cut = text.index("2.0") + len("2.0")
    path.write_text(text[:cut])
    assert "is truncated JSON" in load_error(path)


def test_load_any_prefix_of_a_valid_file_fails_with_the_path(tmp_path):
    text = json.dumps(valid_file_dict(), indent=2, sort_keys=True) + "\n"
    path = tmp_path / "a.json"
    for cut in (1, len(text) // 3, len(text) // 2, 2 * len(text) // 3, len(text) - 3):
        path.write_text(text[:cut])
        msg = load_error(path)
        assert " JSON (" in msg


def test_load_cut_inside_a_string_says_truncated(tmp_path):
    # A file cut off in the middle of a string (a key or a unit) is truncated, not corrupt:
    # json reports the error at the start of the unterminated string, not at the end of the text.
    text = json.dumps(valid_file_dict(), indent=2, sort_keys=True) + "\n"
    path = tmp_path / "a.json"
    cut = text.index('"samples"') + 4
    path.write_text(text[:cut])
    msg = load_error(path)
    assert "is truncated JSON" in msg
    # json's own message ends in "at"; the location must follow it once, not as "at at"
    assert "Unterminated string starting at line " in msg
    assert "at at" not in msg


def test_load_error_never_says_at_at(tmp_path):
    text = json.dumps(valid_file_dict(), indent=2, sort_keys=True) + "\n"
    path = tmp_path / "a.json"
    for cut in range(1, len(text.rstrip())):  # every proper prefix of the JSON text
        path.write_text(text[:cut])
        msg = load_error(path)
        assert "at at" not in msg, msg
        assert " at line " in msg and " column " in msg, msg


def test_load_empty_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("")
    assert "truncated JSON" in load_error(path)


def test_load_not_utf8(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"schema": "\xff\xfe"}')
    assert "not UTF-8" in load_error(path)


@pytest.mark.parametrize("data", [[1, 2], {"schema": "other"}, {"tests": {}}, "text"])
def test_load_wrong_schema(tmp_path, data):
    path = write_json(tmp_path / "a.json", data)
    assert "is not a pytest-llmperf baseline file" in load_error(path)


def test_load_newer_schema_version_says_upgrade(tmp_path):
    path = write_json(tmp_path / "a.json", dict(valid_file_dict(), schema_version=SCHEMA_VERSION + 1))
    msg = load_error(path)
    assert f"schema version {SCHEMA_VERSION + 1}" in msg and "upgrade pytest-llmperf" in msg


@pytest.mark.parametrize("version", [0, "1", None, 1.5])
def test_load_unknown_schema_version(tmp_path, version):
    path = write_json(tmp_path / "a.json", dict(valid_file_dict(), schema_version=version))
    msg = load_error(path)
    assert f"unknown schema version {version!r}" in msg and "upgrade" not in msg


@pytest.mark.parametrize("change, fragment", [
    ({"tests": []}, '"tests" and "fingerprints" must be objects'),
    ({"fingerprints": [1]}, '"tests" and "fingerprints" must be objects'),
    ({"tests": {"test_x": {"fingerprint": FP}}}, "test 'test_x': no \"metrics\" object"),
    ({"tests": {"test_x": []}}, "no \"metrics\" object"),
])
def test_load_bad_structure(tmp_path, change, fragment):
    path = write_json(tmp_path / "a.json", dict(valid_file_dict(), **change))
    assert fragment in load_error(path)


@pytest.mark.parametrize("override, fragment", [
    ({"samples": []}, "metric 'time' has no list of numeric samples"),
    ({"direction": "sideways"}, "metric 'time' has direction 'sideways'"),
])
def test_load_bad_metric(tmp_path, override, fragment):
    path = write_json(tmp_path / "a.json", valid_file_dict(**override))
    msg = load_error(path)
    assert fragment in msg and "test 'test_x'" in msg


def test_load_directory_in_place_of_the_file(tmp_path):
    path = tmp_path / "a.json"
    path.mkdir()
    assert "is a directory" in load_error(path)


def test_load_missing_file(tmp_path):
    assert "cannot read baseline file" in load_error(tmp_path / "none.json")


# -- check_writable / atomic_write --------------------------------------------------------------

def test_check_writable_accepts_a_new_dir_under_a_writable_one(tmp_path):
    check_writable(tmp_path / "baselines" / "node")
    assert not (tmp_path / "baselines").exists()  # checking creates nothing


def test_check_writable_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BaselineError) as exc:
        check_writable(blocker / "baselines")
    msg = str(exc.value)
    assert str(blocker / "baselines") in msg and f"{blocker} is a file, not a directory" in msg
    with pytest.raises(BaselineError, match="is a file"):
        check_writable(blocker)


def test_check_writable_denied(tmp_path, monkeypatch):
    calls = []

    def deny(path, mode):
        calls.append((Path(path), mode))
        return False

    monkeypatch.setattr(baseline.os, "access", deny)
    with pytest.raises(BaselineError) as exc:
        check_writable(tmp_path / "baselines")
    msg = str(exc.value)
    assert "not writable" in msg and str(tmp_path / "baselines") in msg and f"({tmp_path} denies writing)" in msg
    assert calls == [(tmp_path, os.W_OK | os.X_OK)]


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write(path, "one\n")
    assert path.read_text() == "one\n"
    atomic_write(path, "two\n")
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(baseline.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


# -- BaselineStore ------------------------------------------------------------------------------

def test_lookup_without_files(tmp_path):
    store = BaselineStore(tmp_path, "node")
    metrics, digest, fields, path = store.lookup("suites/test_a.py::test_x")
    assert metrics == {} and digest is None and fields is None
    assert path == tmp_path / "node" / "suites" / "test_a.json"
    assert store.validate() == 0


def test_save_then_lookup_round_trip(tmp_path):
    store = BaselineStore(tmp_path, "node")
    m = time_metric([0.5, 0.6, 0.55], [0.01, 0.01, 0.01], {"discarded": 1, "first": 2.0, "steady": 0.55})
    tok = Metric("tok_per_s", "tok/s", True, [100.0, 110.0, 105.0])
    written = save(store, record("suites/test_a.py::test_x[p1]", m, tok, params={"p": "p1"}))
    path = tmp_path / "node" / "suites" / "test_a.json"
    assert written == [path]
    for reader in (store, BaselineStore(tmp_path, "node")):  # cached and fresh
        metrics, digest, fields, where = reader.lookup("suites/test_a.py::test_x[p1]")
        assert where == path and digest == FP and fields == FP_FIELDS
        assert sorted(metrics) == ["time", "tok_per_s"]
        assert metrics["time"].samples == [0.5, 0.6, 0.55] and metrics["time"].probes == [0.01] * 3
        assert metrics["time"].warmup == {"discarded": 1, "first": 2.0, "steady": 0.55}
        assert metrics["tok_per_s"].higher_is_better is True and metrics["tok_per_s"].unit == "tok/s"
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    assert data["node"] == "node" and data["test_file"] == "suites/test_a.py"
    entry = data["tests"]["test_x[p1]"]
    assert entry["params"] == {"p": "p1"} and entry["saved_at"] == "2024-01-01T00:00:00"
    assert entry["fingerprint"] == FP and data["fingerprints"] == {FP: FP_FIELDS}


def test_saved_file_is_sorted_indented_json_with_final_newline(tmp_path):
    store = BaselineStore(tmp_path, "node")
    save(store, record("test_a.py::test_z", time_metric([3.0, 2.0, 1.0])),
         record("test_a.py::test_b", time_metric([1.0, 1.0, 1.0])))
    text = (tmp_path / "node" / "test_a.json").read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert list(json.loads(text)["tests"]) == ["test_b", "test_z"]


def test_save_merges_and_replaces(tmp_path):
    store = BaselineStore(tmp_path, "node")
    save(store, record("test_a.py::test_a", time_metric([1.0, 1.0, 1.0]), Metric("extra", "", True, [5.0])))
    save(BaselineStore(tmp_path, "node"), record("test_a.py::test_b", time_metric([2.0, 2.0, 2.0])))
    fresh = BaselineStore(tmp_path, "node")
    assert fresh.lookup("test_a.py::test_a")[0]["time"].samples == [1.0, 1.0, 1.0]  # A kept
    assert fresh.lookup("test_a.py::test_b")[0]["time"].samples == [2.0, 2.0, 2.0]
    # re-saving A replaces its entry whole: the metric it no longer records is gone
    save(fresh, record("test_a.py::test_a", time_metric([3.0, 3.0, 3.0])))
    final = BaselineStore(tmp_path, "node")
    metrics_a = final.lookup("test_a.py::test_a")[0]
    assert list(metrics_a) == ["time"] and metrics_a["time"].samples == [3.0, 3.0, 3.0]
    assert final.lookup("test_a.py::test_b")[0]["time"].samples == [2.0, 2.0, 2.0]
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "node").iterdir()) == [baseline.LOCK_NAME, "test_a.json"]


def test_save_to_several_files_and_nodes(tmp_path):
    written = save(BaselineStore(tmp_path, "n1"), record("a/test_x.py::t", time_metric([1.0, 1.0, 1.0])),
                   record("b/test_y.py::t", time_metric([2.0, 2.0, 2.0])))
    assert sorted(written) == [tmp_path / "n1" / "a" / "test_x.json", tmp_path / "n1" / "b" / "test_y.json"]
    save(BaselineStore(tmp_path, "n2"), record("a/test_x.py::t", time_metric([9.0, 9.0, 9.0])))
    assert BaselineStore(tmp_path, "n1").lookup("a/test_x.py::t")[0]["time"].samples == [1.0, 1.0, 1.0]
    assert BaselineStore(tmp_path, "n2").lookup("a/test_x.py::t")[0]["time"].samples == [9.0, 9.0, 9.0]
    assert BaselineStore(tmp_path, "n1").validate() == 2


def test_save_prunes_unused_fingerprints(tmp_path):
    store = BaselineStore(tmp_path, "node")
    save(store, record("test_a.py::a", time_metric([1.0] * 3)), fp="old", fields={"cpu": "old"})
    save(store, record("test_a.py::b", time_metric([1.0] * 3)), fp="new", fields={"cpu": "new"})
    data = json.loads((tmp_path / "node" / "test_a.json").read_text())
    assert data["fingerprints"] == {"old": {"cpu": "old"}, "new": {"cpu": "new"}}
    save(store, record("test_a.py::a", time_metric([1.0] * 3)), fp="new", fields={"cpu": "new"})
    data = json.loads((tmp_path / "node" / "test_a.json").read_text())
    assert data["fingerprints"] == {"new": {"cpu": "new"}}
    assert data["tests"]["a"]["fingerprint"] == data["tests"]["b"]["fingerprint"] == "new"


def test_failed_save_leaves_a_corrupt_file_untouched(tmp_path):
    path = tmp_path / "node" / "test_a.json"
    path.parent.mkdir(parents=True)
    corrupt = b'{"schema": "pytest-llmperf-baseline", "tests": {\x00 broken'
    path.write_bytes(corrupt)
    with pytest.raises(BaselineError) as exc:
        save(BaselineStore(tmp_path, "node"), record("test_a.py::test_x", time_metric([1.0] * 3)))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    assert path.read_bytes() == corrupt
    assert leftovers(tmp_path) == []


def test_failed_save_over_a_newer_schema_leaves_it_untouched(tmp_path):
    path = write_json(tmp_path / "node" / "test_a.json", dict(valid_file_dict(), schema_version=99))
    before = path.read_bytes()
    with pytest.raises(BaselineError, match="upgrade"):
        save(BaselineStore(tmp_path, "node"), record("test_a.py::test_x", time_metric([1.0] * 3)))
    assert path.read_bytes() == before


def test_lookup_and_validate_report_bad_files(tmp_path):
    good = write_json(tmp_path / "node" / "test_good.json", valid_file_dict())
    bad = tmp_path / "node" / "sub" / "test_bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    store = BaselineStore(tmp_path, "node")
    assert store.lookup("test_good.py::test_x")[0]["time"].samples == [1.0, 2.0, 3.0]
    with pytest.raises(BaselineError) as exc:
        store.lookup("sub/test_bad.py::test_x")
    assert str(bad) in str(exc.value)
    with pytest.raises(BaselineError) as exc:
        BaselineStore(tmp_path, "node").validate()
    assert str(bad) in str(exc.value)
    bad.unlink()
    assert BaselineStore(tmp_path, "node").validate() == 1
    assert good.exists()


def test_lookup_directory_in_place_of_the_file(tmp_path):
    (tmp_path / "node" / "test_a.json").mkdir(parents=True)
    with pytest.raises(BaselineError, match="is a directory"):
        BaselineStore(tmp_path, "node").lookup("test_a.py::test_x")


def test_validate_root_or_node_dir_is_a_file(tmp_path):
    root_file = tmp_path / "baselines"
    root_file.write_text("")
    with pytest.raises(BaselineError, match=f"baseline dir {root_file} is a file"):
        BaselineStore(root_file, "node").validate()
    root = tmp_path / "root"
    root.mkdir()
    (root / "node").write_text("")
    with pytest.raises(BaselineError, match="is a file, not a directory"):
        BaselineStore(root, "node").validate()


def _save_many(root: str, worker: int, count: int) -> None:
    store = BaselineStore(Path(root), "shared")
    for i in range(count):
        metric = time_metric([1.0 + worker, 1.0 + i, 1.0 + worker + i])
        store.save([record(f"suites/test_conc.py::test_w{worker}_{i}", metric)],
                   {"worker": worker}, f"fp{worker}", {"n": i})


def test_concurrent_saves_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() \
        else multiprocessing.get_context()
    workers, count = 4, 10
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    path = tmp_path / "shared" / "suites" / "test_conc.json"
    data = json.loads(path.read_text())
    assert sorted(data["tests"]) == sorted(f"test_w{w}_{i}" for w in range(workers) for i in range(count))
    assert sorted(data["fingerprints"]) == [f"fp{w}" for w in range(workers)]
    store = BaselineStore(tmp_path, "shared")
    for w in range(workers):
        for i in range(count):
            metrics, digest, fields, _ = store.lookup(f"suites/test_conc.py::test_w{w}_{i}")
            assert metrics["time"].samples == [1.0 + w, 1.0 + i, 1.0 + w + i]
            assert digest == f"fp{w}" and fields == {"worker": w}
    assert leftovers(tmp_path) == []


def test_cpu_share_round_trips_and_is_validated():
    m = Metric("time", "s", False, [1.0, 2.0, 3.0], [0.5, 0.5, 0.5], cpu_share=0.97)
    data = metric_to_json(m)
    assert data["cpu_share"] == 0.97
    assert metric_from_json("time", data, "w").cpu_share == 0.97
    assert "cpu_share" not in metric_to_json(Metric("x", "u", True, [1.0]))
    for bad in (-1, "high", True):
        with pytest.raises(BaselineError, match="invalid cpu_share"):
            metric_from_json("time", {**data, "cpu_share": bad}, "w")


def test_probe_kind_round_trips_and_defaults_to_python():
    m = Metric("tok_per_s", "tok/s", True, [1.0, 2.0], probes=[0.5, 0.5], probe_kind="refrun-O3")
    data = metric_to_json(m)
    assert data["probe_kind"] == "refrun-O3"
    assert metric_from_json("tok_per_s", data, "f.json").probe_kind == "refrun-O3"
    plain = metric_to_json(Metric("time", "s", False, [1.0], probes=[0.5]))
    assert "probe_kind" not in plain
    assert metric_from_json("time", plain, "f.json").probe_kind == "python"
    with pytest.raises(BaselineError, match="f.json: metric 'time' has an invalid probe_kind 3"):
        metric_from_json("time", {**plain, "probe_kind": 3}, "f.json")


def test_exact_metric_round_trips_unrounded():
    m = Metric("instructions", "instr", False, [454771383.0, 454771383.0], exact=True)
    data = metric_to_json(m)
    assert data["exact"] is True and data["samples"] == [454771383, 454771383]
    assert isinstance(data["samples"][0], int) and data["summary"]["median"] == 454771383
    back = metric_from_json("instructions", json.loads(json.dumps(data)), "f.json")
    assert back.exact and back.samples == [454771383.0, 454771383.0]
    plain = metric_to_json(Metric("x", "", False, [454771383.0]))
    assert "exact" not in plain and plain["samples"] == [454771400.0]  # seven digits for the rest
    with pytest.raises(BaselineError, match="invalid exact 'yes'"):
        metric_from_json("instructions", {**data, "exact": "yes"}, "f.json")


# -- issue 11: numbers a baseline must not hold, and where saves go -------------------------------

def _raw_metric_file(tmp_path: Path, metric_json: str) -> Path:
    """A baseline file whose one metric is the given JSON text (NaN and friends cannot be written
    with json.dumps(allow_nan=False), so the file is put together by hand)."""
    text = ('{"schema": "pytest-llmperf-baseline", "schema_version": 1, "fingerprints": {"fp": {}}, '
            '"tests": {"test_x": {"fingerprint": "fp", "metrics": {"tok": ' + metric_json + '}}}}\n')
    path = tmp_path / "a.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("metric_json, fragment", [
    ('{"unit": "", "direction": "higher", "samples": [NaN, 1, 2]}', "test 'test_x': metric 'tok' has NaN in samples[0], which is not a number a baseline"),
    ('{"unit": "", "direction": "higher", "samples": [Infinity, 1]}', "metric 'tok' has Infinity in samples[0]"),
    ('{"unit": "", "direction": "higher", "samples": [-Infinity, 1]}', "metric 'tok' has -Infinity in samples[0]"),
    ('{"unit": "", "direction": "higher", "samples": [1e400, 1]}', "metric 'tok' has the number 1e400, out of float range in samples[0]"),
    ('{"unit": "", "direction": "higher", "samples": [1, 2], "summary": {"mean": NaN}}', "metric 'tok' has NaN in summary.mean"),
    ('{"unit": "", "direction": "higher", "samples": [' + "9" * 400 + ']}', "metric 'tok' has a 400-digit integer, out of range in samples[0]"),
    ('{"unit": "", "direction": "higher", "samples": [' + "9" * 5000 + ']}', "has a 5000-digit integer, out of range in samples[0]"),
    ('{"unit": "", "direction": "higher", "samples": [0, 0, 0]}', "test 'test_x': metric 'tok' has a sample 0 that is zero in a gated metric"),
    ('{"unit": "", "direction": "higher", "samples": [5, -5]}', "metric 'tok' has a sample -5 that is negative"),
    ('{"unit": "", "direction": "higher", "samples": [1.7e308]}', "metric 'tok' has a sample 1.7e+308 that is out of range"),
    ('{"unit": "", "direction": "higher", "samples": [1, 2], "probes": [0, 1]}', "metric 'tok' has a probe time 0 that is zero"),
    ('{"unit": "", "direction": "higher", "samples": [1, 2], "probes": [1, -1]}', "has a probe time -1 that is negative"),
    ('{"unit": "", "direction": "higher", "samples": [1, 2], "cpu_share": -0.5}', "has an invalid cpu_share -0.5"),
    ('{"unit": "", "direction": "higher", "samples": [1, 2], "warmup": [1]}', "has an invalid warmup [1]"),
])
def test_numbers_a_baseline_must_not_hold_are_refused_naming_the_file(tmp_path, metric_json, fragment):
    path = _raw_metric_file(tmp_path, metric_json)
    before = path.read_bytes()
    msg = load_error(path)
    assert fragment in msg
    assert path.read_bytes() == before


def test_zero_samples_are_fine_in_an_informational_metric(tmp_path):
    path = _raw_metric_file(tmp_path, '{"unit": "", "direction": "lower", "gate": false, "samples": [0, 0, 1]}')
    assert BaselineFile.load(path).metrics("test_x")["tok"].samples == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("change, fragment", [
    ({"fingerprints": {FP: [1, 2]}}, "fingerprint 'fp0001' is [1, 2], not an object"),
    ({"fingerprints": {FP: "abc"}}, "fingerprint 'fp0001' is 'abc', not an object"),
    ({"fingerprints": {FP: 7}}, "fingerprint 'fp0001' is 7, not an object"),
    ({"fingerprints": [1]}, "\"tests\" and \"fingerprints\" must be objects"),
    ({"fingerprints": "abc"}, "\"tests\" and \"fingerprints\" must be objects"),
])
def test_fingerprints_that_are_not_objects_are_refused(tmp_path, change, fragment):
    path = write_json(tmp_path / "a.json", dict(valid_file_dict(), **change))
    assert fragment in load_error(path)


@pytest.mark.parametrize("digest", [["fp1"], 5, {"a": 1}, True])
def test_a_test_fingerprint_that_is_not_a_string_is_refused(tmp_path, digest):
    data = valid_file_dict()
    data["tests"]["test_x"]["fingerprint"] = digest
    msg = load_error(write_json(tmp_path / "a.json", data))
    assert f"test 'test_x': \"fingerprint\" is {digest!r}, not a string" in msg


@pytest.mark.parametrize("version", [True, 1.0, "1", None])
def test_schema_version_must_be_the_integer_1(tmp_path, version):
    msg = load_error(write_json(tmp_path / "a.json", dict(valid_file_dict(), schema_version=version)))
    assert f"unknown schema version {version!r} (expected 1)" in msg


@pytest.mark.parametrize("cut_at", ['"direc', '"direction": "low', '"samples": [1.0, 2', '"samples": [1.0, 2.0, 3.0]}}',
                                    '"fingerprint": tr', '"schema_version": 1', '"samples": [1.0, 2.0, 3.', '{'])
def test_a_file_cut_short_is_called_truncated(tmp_path, cut_at):
    text = json.dumps(valid_file_dict())
    text = text.replace('"fingerprint": "fp0001"', '"fingerprint": true') if "tr" in cut_at else text
    path = tmp_path / "a.json"
    path.write_text(text[: text.index(cut_at) + len(cut_at)])
    assert "is truncated JSON" in load_error(path)


def test_a_broken_but_complete_file_is_called_corrupt(tmp_path):
    text = json.dumps(valid_file_dict(), indent=2)
    path = tmp_path / "a.json"
    path.write_text("<<<<<<< HEAD\n" + text + "=======\n" + text + ">>>>>>> other\n")
    assert "is corrupt JSON" in load_error(path)


def test_the_store_never_writes_what_it_would_refuse_to_read(tmp_path):
    store = BaselineStore(tmp_path, "node")
    bad = Metric("tok", "tok/s", True, [0.0, 0.0, 0.0])
    with pytest.raises(BaselineError, match="test 'suites/test_a.py::test_x' .not saved.: metric 'tok' has a sample 0.0"):
        store.save([record("suites/test_a.py::test_x", bad)], {}, "fp", {})
    assert not (tmp_path / "node" / "suites" / "test_a.json").exists()


def test_fingerprint_fields_that_are_not_json_are_a_baseline_error_not_a_traceback(tmp_path):
    store = BaselineStore(tmp_path, "node")
    with pytest.raises(BaselineError, match="cannot be written"):
        store.save([record("test_a.py::test_x", time_metric([1.0, 2.0, 3.0]))], {"x": {1, 2}}, "fp", {})
    assert leftovers(tmp_path) == []


def test_saves_honour_the_umask_and_keep_an_existing_mode(tmp_path):
    import os
    import stat

    store = BaselineStore(tmp_path, "node")
    old = os.umask(0o022)
    try:
        paths = store.save([record("test_a.py::test_x", time_metric([1.0, 2.0, 3.0]))], {}, "fp", {})
        assert stat.S_IMODE(paths[0].stat().st_mode) == 0o644  # not the temporary file's 0600
        os.chmod(paths[0], 0o664)  # a group-shared baseline directory
        store.save([record("test_a.py::test_y", time_metric([1.0, 2.0, 3.0]))], {}, "fp", {})
        assert stat.S_IMODE(paths[0].stat().st_mode) == 0o664
        os.umask(0o077)
        other = store.save([record("test_b.py::test_x", time_metric([1.0, 2.0, 3.0]))], {}, "fp", {})
        assert stat.S_IMODE(other[0].stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_save_removes_temporary_files_of_killed_writes(tmp_path):
    node = tmp_path / "node"
    (node / "suites").mkdir(parents=True)
    stale = [node / ".test_a.json.k2j3h4.tmp", node / "suites" / ".test_b.json.x8y9z0.tmp"]
    for path in stale:
        path.write_text('{"half": ')
    keep = node / "notes.tmp"
    keep.write_text("mine")
    BaselineStore(tmp_path, "node").save([record("test_a.py::test_x", time_metric([1.0, 2.0, 3.0]))], {}, "fp", {})
    assert not any(p.exists() for p in stale)
    assert keep.read_text() == "mine"


def test_a_save_killed_with_sigkill_loses_nothing_and_the_next_save_cleans_up(tmp_path):
    """kill -9 in the middle of saves: every file is whole (old or new) and no temporary file
    survives the next save."""
    import multiprocessing
    import os
    import signal
    import time

    ctx = multiprocessing.get_context("fork")
    for attempt in range(5):
        proc = ctx.Process(target=_save_many, args=(str(tmp_path), attempt, 200))
        proc.start()
        time.sleep(0.05 + 0.03 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    path = tmp_path / "shared" / "suites" / "test_conc.json"
    if path.exists():
        BaselineFile.load(path)  # whole, never half-written
    BaselineStore(tmp_path, "shared").save([record("suites/test_conc.py::test_last", time_metric([1.0, 2.0, 3.0]))],
                                           {}, "fp", {})
    assert leftovers(tmp_path) == []
    assert "test_last" in json.loads(path.read_text())["tests"]


def test_a_test_file_named_node_info_keeps_out_of_the_node_facts_file(tmp_path):
    store = BaselineStore(tmp_path, "node")
    info = tmp_path / "node" / NODE_INFO
    info.parent.mkdir(parents=True)
    info.write_text('{"memory_bandwidth": {}}\n')
    written = store.save([record("node-info.py::test_x", time_metric([1.0, 2.0, 3.0]))], {}, "fp", {})
    assert written == [tmp_path / "node" / "node-info.py.json"]
    assert info.read_text() == '{"memory_bandwidth": {}}\n'
    assert store.path_for("sub/node-info.py::test_x")[0] == tmp_path / "node" / "sub" / "node-info.json"
    assert BaselineStore(tmp_path, "node").validate() == 1


def test_paired_rounds_round_trip_through_the_metric_json():
    m = Metric("tok_per_s", "tok/s", True, samples=[100.0, 101.0, 99.0], paired=[110.0, 111.5, 109.0],
               paired_ref="git 1a2b3c4d")
    data = metric_to_json(m)
    assert data["paired"] == [110.0, 111.5, 109.0] and data["paired_ref"] == "git 1a2b3c4d"
    back = metric_from_json("tok_per_s", data, "here")
    assert back.paired == [110.0, 111.5, 109.0] and back.paired_ref == "git 1a2b3c4d"
    assert "paired" not in metric_to_json(Metric("t", "s", False, samples=[1.0, 2.0, 3.0]))


@pytest.mark.parametrize(("paired", "fragment"), [
    ([1.0, 2.0], "do not pair with its samples"),
    ([1.0, 2.0, -3.0], "paired reference value -3.0 that is negative"),
    ("x", "do not pair"),
])
def test_paired_rounds_that_do_not_pair_are_refused(paired, fragment):
    data = metric_to_json(Metric("tok_per_s", "tok/s", True, samples=[100.0, 101.0, 99.0]))
    data["paired"] = paired
    with pytest.raises(BaselineError, match=fragment):
        metric_from_json("tok_per_s", data, "here")


def test_store_lists_every_saved_test_with_its_metrics(tmp_path):
    store = BaselineStore(tmp_path, "n1")
    metric = Metric("time", "s", False, samples=[1.0, 1.1, 0.9])
    other = Metric("tok_per_s", "tok/s", True, samples=[5.0, 5.1, 4.9])
    store.save([{"nodeid": "suites/test_a.py::test_x[1]", "metrics": [metric, other], "params": {}},
                {"nodeid": "test_b.py::TestK::test_y", "metrics": [metric], "params": {}}], {"os": "x"}, "d1", {})
    assert BaselineStore(tmp_path, "n1").tests() == {
        "suites/test_a.py::test_x[1]": {"time", "tok_per_s"}, "test_b.py::TestK::test_y": {"time"}}
    assert BaselineStore(tmp_path, "nobody").tests() == {}


def test_stale_temp_files_of_the_history_are_not_the_baselines_to_remove(tmp_path):
    from pytest_llmperf.baseline import remove_stale_temp_files

    node = tmp_path / "n1"
    (node / "history").mkdir(parents=True)
    mine = node / ".test_a.json.abc123.tmp"
    theirs = node / "history" / ".test_a.jsonl.def456.tmp"
    mine.write_text("x")
    theirs.write_text("y")
    assert remove_stale_temp_files(node) == [mine]
    assert theirs.exists() and not mine.exists()
