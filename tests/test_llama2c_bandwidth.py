"""Tests of pytest_llmperf.llama2c.bandwidth: probe size, MBU, the node-info file, a real probe."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from pytest_llmperf.llama2c import bandwidth
from pytest_llmperf.llama2c.bandwidth import BandwidthError, mbu, probe_bytes, read_info, write_info

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


@pytest.mark.parametrize("content", [
    "", "{", "not json at all", "[1, 2, 3]", '"a string"', "null",
    '{"memory_bandwidth": []}', '{"memory_bandwidth": {"fp-a": "fast"}}',
    '{"memory_bandwidth": {"fp-a": {"bytes": 5}}}',
    '{"memory_bandwidth": {"fp-a": {"read_GBps": "12"}}}',
    '{"memory_bandwidth": {"fp-a": {"read_GBps": 0}}}',
    '{"memory_bandwidth": {"fp-a": {"read_GBps": -3.0}}}',
])
def test_corrupt_or_unusable_file_reads_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "node-info.json"
    path.write_text(content)
    assert read_info(path, "fp-a") is None


def test_missing_file_and_directory_read_as_none(tmp_path: Path) -> None:
    assert read_info(tmp_path / "absent.json", "fp-a") is None
    assert read_info(tmp_path, "fp-a") is None  # a directory, not a file


@pytest.mark.parametrize("content", ["{", "[1, 2]", "null", '{"memory_bandwidth": [1]}', '{"memory_bandwidth": 3}'])
def test_write_replaces_a_corrupt_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "node-info.json"
    path.write_text(content)
    write_info(path, "fp-a", ENTRY_A)
    assert json.loads(path.read_text()) == {"memory_bandwidth": {"fp-a": ENTRY_A}}


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
