"""Tests of pytest_llmperf.native.bandwidth: probe size, MBU, the node-info file, a real probe."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from pytest_llmperf.native import bandwidth
from pytest_llmperf.native.bandwidth import (
    BandwidthError,
    NodeInfoError,
    mbu,
    parse_probe_output,
    probe_bytes,
    read_info,
    store_info,
    write_info,
)

MiB = 1 << 20
GiB = 1 << 30


# -- probe size --------------------------------------------------------------------------------

def test_probe_bytes_is_at_least_one_gib() -> None:
    assert probe_bytes(None, None) == GiB
    assert probe_bytes(32 * MiB, None) == GiB  # 8 x 32 MiB = 256 MiB < 1 GiB
    assert probe_bytes(32 * MiB, 64 * GiB) == GiB


def test_probe_bytes_is_eight_times_the_llc() -> None:
    assert probe_bytes(256 * MiB, None) == 2 * GiB
    assert probe_bytes(256 * MiB, 64 * GiB) == 8 * 256 * MiB
    assert probe_bytes(105 * MiB, 1024 * GiB) == GiB  # 840 MiB: the 1 GiB floor


def test_probe_bytes_is_at_most_a_quarter_of_memory() -> None:
    assert probe_bytes(256 * MiB, 4 * GiB) == GiB
    assert probe_bytes(None, 2 * GiB) == 512 * MiB
    assert probe_bytes(None, 1 * GiB) == 256 * MiB
    # never below 64 MiB, even on a tiny board
    assert probe_bytes(None, 128 * MiB) == 64 * MiB
    assert probe_bytes(1 * MiB, 64 * MiB) == 64 * MiB


def test_probe_bytes_follows_min_probe_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bandwidth, "MIN_PROBE_BYTES", 64 * MiB)
    assert probe_bytes(1 * MiB, None) == 64 * MiB
    assert probe_bytes(16 * MiB, None) == 128 * MiB


# -- MBU ---------------------------------------------------------------------------------------

def test_mbu_formula() -> None:
    # 1 GB read per token at 2 tok/s is 2 GB/s: half of a 4 GB/s memory
    assert mbu(1_000_000_000, 2.0, 4.0) == pytest.approx(0.5)
    assert mbu(60_000_000, 100.0, 6.0) == pytest.approx(1.0)
    # proportional to the rate and the bytes, inversely to the bandwidth
    assert mbu(2_000_000, 10.0, 1.0) == pytest.approx(2 * mbu(1_000_000, 10.0, 1.0))
    assert mbu(1_000_000, 20.0, 1.0) == pytest.approx(2 * mbu(1_000_000, 10.0, 1.0))
    assert mbu(1_000_000, 10.0, 2.0) == pytest.approx(mbu(1_000_000, 10.0, 1.0) / 2)
    # weights served from a cache: above 1
    assert mbu(1 * MiB, 10_000.0, 5.0) > 1


# -- node-info file ----------------------------------------------------------------------------

ENTRY_A = {"read_GBps": 12.5, "bytes": GiB, "threads": 4, "passes": 8, "llc_bytes": 32 * MiB,
           "method": "bwprobe -O2 -fopenmp", "measured_at": "2026-01-01T00:00:00+00:00"}
ENTRY_B = dict(ENTRY_A, read_GBps=3.25, threads=1)


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "node" / "node-info.json"  # the parent is created
    write_info(path, "fp-a", ENTRY_A)
    assert read_info(path, "fp-a") == ENTRY_A
    assert read_info(path, "fp-other") is None  # another machine
    data = json.loads(path.read_text())
    assert data == {"memory_bandwidth": {"fp-a": ENTRY_A}}
    assert [p.name for p in path.parent.iterdir()] == ["node-info.json"]  # no temp file left


def test_write_merges_by_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "node-info.json"
    write_info(path, "fp-a", ENTRY_A)
    write_info(path, "fp-b", ENTRY_B)
    assert read_info(path, "fp-a") == ENTRY_A
    assert read_info(path, "fp-b") == ENTRY_B
    newer = dict(ENTRY_A, read_GBps=13.0)
    write_info(path, "fp-a", newer)  # replaces its own fingerprint's entry only
    assert read_info(path, "fp-a") == newer
    assert read_info(path, "fp-b") == ENTRY_B


def test_write_keeps_other_keys_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node-info.json"
    path.write_text(json.dumps({"comment": "kept", "memory_bandwidth": {"fp-b": ENTRY_B}}))
    write_info(path, "fp-a", ENTRY_A)
    data = json.loads(path.read_text())
    assert data["comment"] == "kept"
    assert set(data["memory_bandwidth"]) == {"fp-a", "fp-b"}


def test_missing_file_reads_as_none_and_other_keys_are_allowed(tmp_path: Path) -> None:
    assert read_info(tmp_path / "absent.json", "fp-a") is None
    path = tmp_path / "node-info.json"
    path.write_text('{"comment": "no bandwidth yet"}')
    assert read_info(path, "fp-a") is None


MERGE_CONFLICT = """{
  "memory_bandwidth": {
<<<<<<< HEAD
    "fp-a": {"read_GBps": 12.5, "threads": 4}
=======
    "fp-b": {"read_GBps": 3.25, "threads": 1}
>>>>>>> other-machine
  }
}
"""


@pytest.mark.parametrize(("content", "problem"), [
    (MERGE_CONFLICT, "is corrupt JSON (Expecting property name enclosed in double quotes at line 3 column 1)"),
    ("", "is truncated JSON (the file is empty)"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": 1', "is truncated JSON (Expecting ',' delimiter at line 1 "
                                                     "column 46)"),
    ("not json at all", "is corrupt JSON (Expecting value at line 1 column 1)"),
    ("[1, 2, 3]", "is not a JSON object (it holds a list)"),
    ('"a string"', "is not a JSON object (it holds a str)"),
    ("null", "is not a JSON object (it holds a NoneType)"),
    ('{"memory_bandwidth": []}', '"memory_bandwidth" is not an object of entries by machine fingerprint'),
    ('{"memory_bandwidth": 3}', '"memory_bandwidth" is not an object of entries by machine fingerprint'),
    ('{"memory_bandwidth": {"fp-a": "fast"}}', "entry 'fp-a' of \"memory_bandwidth\" is not an object"),
    ('{"memory_bandwidth": {"fp-a": {"bytes": 5}}}',
     "entry 'fp-a' of \"memory_bandwidth\" has no positive finite read_GBps (it is null)"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": "12"}}}',
     "entry 'fp-a' of \"memory_bandwidth\" has no positive finite read_GBps (it is \"12\")"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": 0}}}',
     "entry 'fp-a' of \"memory_bandwidth\" has no positive finite read_GBps (it is 0)"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": -3.0}}}',
     "entry 'fp-a' of \"memory_bandwidth\" has no positive finite read_GBps (it is -3.0)"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": true}}}',
     "entry 'fp-a' of \"memory_bandwidth\" has no positive finite read_GBps (it is true)"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": NaN}}}', "holds NaN at memory_bandwidth.'fp-a'.read_GBps, which is not a number it can hold"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": 1e999}}}', "holds the number 1e999, out of float range at memory_bandwidth.'fp-a'.read_GBps, which is not a number it can hold"),
    ('{"comment": -Infinity, "memory_bandwidth": {}}', "holds -Infinity at comment, which is not a number it can hold"),
    # another machine's entry is unusable: the file is refused all the same (a write would keep it)
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": 1.0}, "fp-b": {"read_GBps": 2.0, "llc_bytes": "big"}}}',
     "entry 'fp-b' of \"memory_bandwidth\" has llc_bytes \"big\", not a byte or thread count"),
    ('{"memory_bandwidth": {"fp-a": {"read_GBps": 1.0, "bytes": -1}}}',
     "entry 'fp-a' of \"memory_bandwidth\" has bytes -1, not a byte or thread count"),
])
def test_unusable_file_is_refused_naming_it_and_never_overwritten(tmp_path: Path, content: str, problem: str) -> None:
    # issue 11, item 5: an unparseable node-info file (a merge conflict holding two other machines'
    # entries) was silently replaced, and both entries were lost
    path = tmp_path / "node-info.json"
    path.write_text(content)
    expected = f"node-info file {path} {problem}: fix it or restore it from git"
    with pytest.raises(NodeInfoError) as info:
        read_info(path, "fp-a")
    assert str(info.value) == expected and info.value.problem == problem and info.value.path == path
    assert isinstance(info.value, BandwidthError)
    with pytest.raises(NodeInfoError) as info:
        write_info(path, "fp-c", ENTRY_A)
    assert str(info.value) == expected
    with pytest.raises(NodeInfoError):
        store_info(tmp_path, "fp-c", ENTRY_A)
    assert path.read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [".llmperf.lock", "node-info.json"]  # no temp file


def test_deeply_nested_and_huge_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "node-info.json"
    for content in ("[" * 100000 + "]" * 100000, '{"memory_bandwidth": {}, "x": ' + "9" * 5000 + "}"):
        path.write_text(content)
        with pytest.raises(NodeInfoError, match="is corrupt JSON [(]nested too deeply[)]|holds a 5000-digit integer") as info:
            read_info(path, "fp-a")
        assert "\n" not in str(info.value)


def test_directory_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeInfoError, match=f"^node-info file {tmp_path} is a directory: fix it"):
        read_info(tmp_path, "fp-a")
    path = tmp_path / "node-info.json"
    path.write_bytes(b'{"memory_bandwidth": {"\xff": {}}}')
    with pytest.raises(NodeInfoError, match="is not UTF-8 text"):
        read_info(path, "fp-a")


def test_store_info_adds_an_entry_once_under_the_node_lock(tmp_path: Path) -> None:
    import threading
    import time

    from pytest_llmperf.baseline import node_lock

    node_dir = tmp_path / "baselines" / "node"
    done = threading.Event()
    results: list[bool] = []

    def store() -> None:
        results.append(store_info(node_dir, "fp-a", ENTRY_A))
        done.set()

    with node_lock(node_dir):
        worker = threading.Thread(target=store)
        worker.start()
        time.sleep(0.3)
        assert not done.is_set() and not (node_dir / "node-info.json").exists()  # waits for the lock
    worker.join(30)
    assert results == [True]
    assert read_info(node_dir / "node-info.json", "fp-a") == ENTRY_A
    # an entry already there is kept; another fingerprint is merged in
    assert store_info(node_dir, "fp-a", dict(ENTRY_A, read_GBps=99.0)) is False
    assert store_info(node_dir, "fp-b", ENTRY_B) is True
    assert json.loads((node_dir / "node-info.json").read_text()) == {"memory_bandwidth": {"fp-a": ENTRY_A,
                                                                                           "fp-b": ENTRY_B}}


PROBE_LINE = "bytes=67108864 threads=2 passes=8 best_s=0.004 read_GBps=16.777 check=12\n"


def test_parse_probe_output() -> None:
    assert parse_probe_output(PROBE_LINE) == {"read_GBps": 16.777, "bytes": 64 * MiB, "threads": 2, "passes": 8}


@pytest.mark.parametrize(("stdout", "message"), [
    ("", "bwprobe printed no read_GBps: (no output)"),
    (PROBE_LINE.replace("read_GBps=16.777", "read_GBps=inf"), "bwprobe printed read_GBps=inf, not a positive finite rate"),
    (PROBE_LINE.replace("read_GBps=16.777", "read_GBps=0.000"), "bwprobe printed read_GBps=0.000, not a positive"),
    (PROBE_LINE.replace("read_GBps=16.777", "read_GBps=fast"), "bwprobe printed read_GBps=fast, not a positive"),
    (PROBE_LINE.replace("bytes=67108864 ", ""), "bwprobe printed bytes=, not a positive integer"),
    (PROBE_LINE.replace("threads=2", "threads=two"), "bwprobe printed threads=two, not a positive integer"),
    (PROBE_LINE.replace("passes=8", "passes=\u0668"), "bwprobe printed passes=\u0668, not a positive integer"),
])
def test_parse_probe_output_refuses_what_it_cannot_use(stdout: str, message: str) -> None:
    # a missing field used to escape as KeyError, a bad number as ValueError; inf and 0 were accepted
    with pytest.raises(BandwidthError) as info:
        parse_probe_output(stdout)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# -- a real probe --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_probe(tmp_path_factory) -> tuple[dict, Path]:
    cache = tmp_path_factory.mktemp("bw-cache")
    mp = pytest.MonkeyPatch()
    mp.setattr(bandwidth, "MIN_PROBE_BYTES", 64 * MiB)
    try:
        return bandwidth.measure(cache, "cc", llc_bytes=1 * MiB, memory_bytes=None), cache
    finally:
        mp.undo()


def test_measure_reports_the_bandwidth(small_probe: tuple[dict, Path]) -> None:
    info, _cache = small_probe
    assert set(info) == {"read_GBps", "bytes", "threads", "passes", "llc_bytes", "method", "measured_at"}
    assert isinstance(info["read_GBps"], float) and info["read_GBps"] > 0
    assert info["bytes"] == 64 * MiB
    assert info["threads"] >= 1
    assert info["passes"] == bandwidth.PASSES
    assert info["llc_bytes"] == 1 * MiB
    assert info["method"].startswith("bwprobe -O3")
    measured = dt.datetime.fromisoformat(info["measured_at"])
    assert measured.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - measured).total_seconds()) < 3600
    json.dumps(info)  # storable as is


def test_measure_builds_the_probe_into_the_cache(small_probe: tuple[dict, Path]) -> None:
    _info, cache = small_probe
    probes = list((cache / "build").glob("*/bwprobe"))
    assert len(probes) == 1


def test_measure_without_openmp_runs_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a compiler that rejects -fopenmp, as one without OpenMP does
    cc = tmp_path / "noompcc"
    cc.write_text("#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = -fopenmp ]; then\n"
                  "    echo 'noompcc: error: unsupported option -fopenmp' >&2; exit 1\n  fi\ndone\n"
                  f"exec \"{shutil.which('cc')}\" \"$@\"\n")
    cc.chmod(0o755)
    monkeypatch.setattr(bandwidth, "MIN_PROBE_BYTES", 64 * MiB)
    info = bandwidth.measure(tmp_path / "cache", str(cc), llc_bytes=None, memory_bytes=None)
    assert info["threads"] == 1
    assert info["method"] == "bwprobe -O3 (no OpenMP: one thread)"
    assert info["read_GBps"] > 0


def test_measure_failure_is_a_bandwidth_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bandwidth, "probe_bytes", lambda llc, mem: 1000)  # below the probe's 1 MiB minimum
    with pytest.raises(BandwidthError, match=r"bwprobe failed \(exit code 1\): bwprobe: need at least 1 MiB"):
        bandwidth.measure(tmp_path / "cache", "cc", llc_bytes=None, memory_bytes=None)


# -- the fixture's use of the node-info file and the cache ----------------------------------------

def _bandwidth_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, save: bool = False) -> tuple[dict, list]:
    """bandwidth.node_entry for node node1 of a machine with a 32 MiB LLC, with a probe that only
    counts its calls."""
    probes: list[int] = []

    def fake_measure(cache_dir, cc, llc, memory, timeout=300.0):
        probes.append(llc)
        return dict(ENTRY_A, read_GBps=7.5)

    monkeypatch.setattr(bandwidth, "measure", fake_measure)
    entry = bandwidth.node_entry(tmp_path / "baselines" / "node1", tmp_path / "cache", "node1", "fp-here", "cc",
                                 32 * MiB, 64 * GiB, save)
    return entry, probes


def test_bandwidth_measured_once_then_cached_then_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, probes = _bandwidth_of(tmp_path, monkeypatch)
    assert entry["read_GBps"] == 7.5 and probes == [32 * MiB]
    assert read_info(tmp_path / "cache" / "nodes" / "node1.json", "fp-here") == entry
    assert not (tmp_path / "baselines").exists()  # a compare run writes nothing beside the baselines
    again, probes = _bandwidth_of(tmp_path, monkeypatch, save=True)
    assert again == entry and probes == []
    stored = tmp_path / "baselines" / "node1" / "node-info.json"
    assert read_info(stored, "fp-here") == entry
    assert (stored.parent / ".llmperf.lock").exists()  # written under the node lock


def test_corrupt_node_info_is_refused_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = tmp_path / "baselines" / "node1" / "node-info.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(MERGE_CONFLICT)
    for save in (False, True):
        with pytest.raises(NodeInfoError) as info:
            _bandwidth_of(tmp_path, monkeypatch, save=save)
        assert str(info.value).startswith(f"node-info file {stored} is corrupt JSON (")
        assert stored.read_text() == MERGE_CONFLICT


def test_corrupt_cache_copy_is_healed_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / "cache" / "nodes" / "node1.json"
    cached.parent.mkdir(parents=True)
    cached.write_text("{")
    with pytest.warns(UserWarning) as caught:
        entry, probes = _bandwidth_of(tmp_path, monkeypatch)
    assert [str(w.message) for w in caught] == [
        f"llmperf: the bandwidth cache {cached} is truncated JSON (Expecting property name enclosed in double "
        f"quotes at line 1 column 2); it is only a cache: measuring the bandwidth again and rewriting it"]
    assert probes == [32 * MiB]
    assert read_info(cached, "fp-here") == entry
