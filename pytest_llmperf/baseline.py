"""Per-node baseline store: one JSON file per test file under ``<baseline dir>/<node>/``.

``suites/test_llama2c.py::test_tok_s[15M--O3]`` on node ``sifive`` lives in
``baselines/sifive/suites/test_llama2c.json`` under the key ``test_tok_s[15M--O3]``. Files are
written with sorted keys and two-space indentation (stable and readable in ``git diff``), through a
temporary file and a rename (never half-written: atomic per file, not across the files of one
save, so a save killed midway leaves each file whole, some new and some as they were), under an exclusive lock on
``<node dir>/.llmperf.lock`` while the file is read, merged and replaced (concurrent savers, such
as pytest-xdist workers or two sessions, lose nothing). A file that cannot be read is never
overwritten. The temporary files of a write that was killed are removed by the next save.

Samples are validated on the way in and on the way out (compare.sample_problem): finite, positive,
below 1e18, zero only in an informational metric; NaN, Infinity and integers of more than 20 digits
are refused anywhere in a file. A test file named ``node-info.py`` at the top keeps its baselines
in ``node-info.py.json``: ``node-info.json`` holds the node's measured facts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import jsonfile, stats
from .compare import MAX_SAMPLE, Metric, sample_problem
from .errors import OneLine
from .errors import short_repr as _short
from .fileutil import atomic_write, exclusive_lock, nearest_existing

SCHEMA = "pytest-llmperf-baseline"
SCHEMA_VERSION = 1
MAX_STORED_SAMPLES = 1000
LOCK_NAME = ".llmperf.lock"
NODE_INFO = "node-info.json"  # the node's measured facts (memory bandwidth), not a baseline file


class BaselineError(OneLine, Exception):
    """A baseline file or directory that cannot be used; the message is one line naming it."""


def _round(value: float) -> float:
    """Seven significant digits: far below any tolerance, keeps the files short and stable."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.7g}")


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """``"suites/test_x.py::TestA::test_b[p]"`` -> (``"suites/test_x.py"``, ``"TestA::test_b[p]"``)."""
    path, sep, rest = nodeid.partition("::")
    if not sep:
        return path, path
    return path, rest


def relative_file_for(test_path: str) -> Path:
    """Where, under the node directory, the baselines of one test file go."""
    parts = [("_up_" if p == ".." else p) for p in Path(test_path).parts if p not in ("", ".", "/")]
    if not parts:
        parts = ["tests"]
    rel = Path(*parts)
    rel = rel.with_suffix(".json") if rel.suffix == ".py" else rel.with_name(rel.name + ".json")
    if rel == Path(NODE_INFO):  # a test file named node-info.py must not take the node's facts file
        rel = Path(parts[0] + ".json")
    return rel


def bound_samples(samples: list[float], probes: list[float] | None,
                  limit: int = MAX_STORED_SAMPLES) -> tuple[list[float], list[float] | None]:
    """Keep at most ``limit`` rounds, evenly spread over the run, keeping each round with its probe."""
    n = len(samples)
    if n <= limit:
        return list(samples), (list(probes) if probes is not None else None)
    idx = [int(i * n / limit) for i in range(limit)]
    return [samples[i] for i in idx], ([probes[i] for i in idx] if probes is not None else None)


def _exact(value: float) -> float | int:
    """A deterministic count is stored as it is (an integer when it is one): rounding it to seven
    digits would make equal counts look unequal to a reader."""
    return int(value) if float(value).is_integer() else value


def metric_to_json(metric: Metric) -> dict[str, Any]:
    samples, probes = bound_samples(metric.samples, metric.probes)
    keep = _exact if metric.exact else _round
    out: dict[str, Any] = {
        "unit": metric.unit,
        "direction": metric.direction,
        "summary": {k: (keep(v) if isinstance(v, float) else v) for k, v in stats.summarize(metric.samples).items()},
        "samples": [keep(v) for v in samples],
    }
    if probes is not None:
        out["probes"] = [_round(v) for v in probes]
        if metric.probe_kind != "python":
            out["probe_kind"] = metric.probe_kind
    if metric.cpu_share is not None:
        out["cpu_share"] = _round(metric.cpu_share)
    if not metric.gate:
        out["gate"] = False
    if metric.exact:
        out["exact"] = True
    if metric.paired is not None:
        paired, _ = bound_samples(metric.paired, None)
        out["paired"] = [_round(v) for v in paired]
        out["paired_ref"] = metric.paired_ref
    if metric.warmup:
        out["warmup"] = {k: (_round(v) if isinstance(v, float) else v) for k, v in metric.warmup.items()}
    return out


def _number_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _bad_number(values: Sequence[float], gate: bool) -> tuple[float, str] | None:
    """The first value that cannot be a sample, and why (see compare.sample_problem)."""
    for v in values:
        try:
            problem = sample_problem(float(v), gate)
        except OverflowError:
            problem = f"is out of range (must be below {MAX_SAMPLE:g})"
        if problem:
            return v, problem
    return None


def metric_from_json(name: str, data: Any, where: str) -> Metric:
    if not isinstance(data, dict):
        raise BaselineError(f"{where}: metric {name!r} is not an object")
    if data.get("direction") not in ("higher", "lower"):
        raise BaselineError(f"{where}: metric {name!r} has direction {_short(data.get('direction'))}, "
                            "expected 'higher' or 'lower'")
    if not isinstance(data.get("unit"), str):
        raise BaselineError(f"{where}: metric {name!r} has no unit")
    gate = data.get("gate", True)
    if not isinstance(gate, bool):
        raise BaselineError(f"{where}: metric {name!r} has an invalid gate {_short(gate)}")
    samples = data.get("samples")
    if not _number_list(samples) or not samples:
        raise BaselineError(f"{where}: metric {name!r} has no list of numeric samples")
    bad = _bad_number(samples, gate)
    if bad:
        raise BaselineError(f"{where}: metric {name!r} has a sample {_short(bad[0])} that {bad[1]}")
    probes = data.get("probes")
    if probes is not None and (not _number_list(probes) or len(probes) != len(samples)):
        raise BaselineError(f"{where}: metric {name!r} has probes that do not pair with its samples")
    bad = _bad_number(probes or [], True)
    if bad:
        raise BaselineError(f"{where}: metric {name!r} has a probe time {_short(bad[0])} that {bad[1]}")
    share = data.get("cpu_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                              or not 0 <= share < 1e6):
        raise BaselineError(f"{where}: metric {name!r} has an invalid cpu_share {_short(share)}")
    kind = data.get("probe_kind", "python")
    if not isinstance(kind, str) or not kind:
        raise BaselineError(f"{where}: metric {name!r} has an invalid probe_kind {_short(kind)}")
    exact = data.get("exact", False)
    if not isinstance(exact, bool):
        raise BaselineError(f"{where}: metric {name!r} has an invalid exact {_short(exact)}")
    warmup = data.get("warmup")
    if warmup is not None and not isinstance(warmup, dict):
        raise BaselineError(f"{where}: metric {name!r} has an invalid warmup {_short(warmup)}")
    paired = data.get("paired")
    if paired is not None and (not _number_list(paired) or len(paired) != len(samples)):
        raise BaselineError(f"{where}: metric {name!r} has paired reference rounds that do not pair with its samples")
    bad = _bad_number(paired or [], True)
    if bad:
        raise BaselineError(f"{where}: metric {name!r} has a paired reference value {_short(bad[0])} that {bad[1]}")
    paired_ref = data.get("paired_ref", "")
    if not isinstance(paired_ref, str):
        raise BaselineError(f"{where}: metric {name!r} has an invalid paired_ref {_short(paired_ref)}")
    return Metric(
        name=name, unit=data["unit"], higher_is_better=data["direction"] == "higher", gate=gate, exact=exact,
        probe_kind=kind,
        cpu_share=float(share) if share is not None else None,
        samples=[float(v) for v in samples], probes=[float(v) for v in probes] if probes is not None else None,
        warmup=warmup,
        paired=[float(v) for v in paired] if paired is not None else None, paired_ref=paired_ref,
    )


def parse_json(text: str, path: Path, what: str = "baseline file") -> Any:
    """The strict JSON of a baseline file (jsonfile.loads), or a one-line BaselineError naming the
    file, and for a bad number the test and metric it belongs to."""
    try:
        return jsonfile.loads(text)
    except jsonfile.StrictJSONError as exc:
        loc = exc.location
        if exc.kind == "number" and len(loc) >= 4 and loc[0] == "tests" and loc[2] == "metrics":
            rest = jsonfile.describe_location(loc[4:]) if len(loc) > 4 else "the metric"
            bad = exc.problem.split(" at ", 1)[0].removeprefix("holds ")
            raise BaselineError(f"{what} {path}, test {loc[1]!r}: metric {loc[3]!r} has {bad} in {rest}, "
                                "which is not a number a baseline can hold; fix it or restore it from git") from None
        raise BaselineError(f"{what} {path} {exc.problem}; fix it or restore it from git") from None


class BaselineFile:
    """The parsed content of one baseline file."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def empty(cls, path: Path, node: str, test_file: str) -> BaselineFile:
        return cls(path, {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "node": node, "test_file": test_file,
            "fingerprints": {}, "tests": {},
        })

    @classmethod
    def load(cls, path: Path) -> BaselineFile:
        try:
            text = path.read_text(encoding="utf-8")
        except IsADirectoryError:
            raise BaselineError(f"baseline file {path} is a directory") from None
        except OSError as exc:
            raise BaselineError(f"cannot read baseline file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise BaselineError(f"baseline file {path} is not UTF-8 text (corrupt?)") from None
        data = parse_json(text, path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise BaselineError(f"{path} is not a pytest-llmperf baseline file (no \"schema\": \"{SCHEMA}\")")
        version = data.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:  # not True, not 1.0
            if type(version) is int and version > SCHEMA_VERSION:
                raise BaselineError(
                    f"baseline file {path} has schema version {version}, newer than this plugin's "
                    f"{SCHEMA_VERSION}: upgrade pytest-llmperf"
                )
            raise BaselineError(f"baseline file {path} has unknown schema version {_short(version)} "
                                f"(expected {SCHEMA_VERSION})")
        if not isinstance(data.get("tests"), dict) or not isinstance(data.get("fingerprints", {}), dict):
            raise BaselineError(f"baseline file {path}: \"tests\" and \"fingerprints\" must be objects")
        for digest, fields in data.get("fingerprints", {}).items():
            if not isinstance(fields, dict):
                raise BaselineError(f"baseline file {path}: fingerprint {_short(digest)} is {_short(fields)}, "
                                    "not an object")
        for key, entry in data["tests"].items():
            where = f"baseline file {path}, test {key!r}"
            if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
                raise BaselineError(f"{where}: no \"metrics\" object")
            digest = entry.get("fingerprint")
            if digest is not None and not isinstance(digest, str):
                raise BaselineError(f"{where}: \"fingerprint\" is {_short(digest)}, not a string")
            for name, metric in entry["metrics"].items():
                metric_from_json(name, metric, where)
        return cls(path, data)

    def test_entry(self, key: str) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = self.data["tests"].get(key)  # load() checked it is an object
        return entry

    def metrics(self, key: str) -> dict[str, Metric]:
        entry = self.test_entry(key)
        if entry is None:
            return {}
        where = f"baseline file {self.path}, test {key!r}"
        return {name: metric_from_json(name, m, where) for name, m in entry["metrics"].items()}

    def fingerprint(self, key: str) -> tuple[str | None, dict[str, Any] | None]:
        entry = self.test_entry(key) or {}
        digest = entry.get("fingerprint")
        return digest, self.data.get("fingerprints", {}).get(digest)

    def dumps(self) -> str:
        try:
            return json.dumps(self.data, indent=2, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:  # a value that is not JSON (a set, NaN) got in
            raise BaselineError(f"baseline file {self.path}: cannot be written: {exc}") from None


def check_writable(root: Path) -> None:
    """Raise BaselineError when baselines cannot be written under ``root``."""
    probe = nearest_existing(root)
    if probe.exists() and not probe.is_dir():
        raise BaselineError(f"baseline dir {root}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BaselineError(f"baseline dir {root} is not writable ({probe} denies writing)")


@contextlib.contextmanager
def node_lock(directory: Path, timeout: float = 120.0) -> Iterator[None]:
    """Hold the node directory's lock (``<node dir>/.llmperf.lock``): every read-merge-write of a
    file under the node directory (baseline files, node-info.json) happens under it."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(directory / LOCK_NAME, timeout):
            yield
    except TimeoutError as exc:
        raise BaselineError(f"baseline lock: {exc}") from None


TEMP_PATTERN = ".*.json.*.tmp"  # what fileutil.atomic_write leaves behind when killed mid-write


def remove_stale_temp_files(node_dir: Path) -> list[Path]:
    """Remove the temporary files of writes that were killed (``.<name>.json.<random>.tmp``) under
    ``node_dir``. Call it holding the node lock: every writer of those files holds it too, so any
    temporary file found then belongs to a write that died. Returns what was removed."""
    removed = []
    for tmp in node_dir.rglob(TEMP_PATTERN):
        if ".jsonl." in tmp.name:  # a history file's, whose writers hold the history's own lock
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


class BaselineStore:
    """Baselines of one node; reads lazily and caches, saves by merging."""

    def __init__(self, root: Path, node: str):
        self.root = Path(root)
        self.node = node
        self.node_dir = self.root / node
        self._files: dict[Path, BaselineFile | None] = {}

    def path_for(self, nodeid: str) -> tuple[Path, str]:
        test_file, key = split_nodeid(nodeid)
        return self.node_dir / relative_file_for(test_file), key

    def _file(self, path: Path) -> BaselineFile | None:
        if path not in self._files:
            self._files[path] = BaselineFile.load(path) if path.exists() else None
        return self._files[path]

    def validate(self) -> int:
        """Load every baseline file of this node (raises on the first bad one); returns how many."""
        if self.root.exists() and not self.root.is_dir():
            raise BaselineError(f"baseline dir {self.root} is a file, not a directory")
        if not self.node_dir.exists():
            return 0
        if not self.node_dir.is_dir():
            raise BaselineError(f"baseline dir {self.node_dir} is a file, not a directory")
        count = 0
        for path in sorted(self.node_dir.rglob("*.json")):
            if path.parent == self.node_dir and path.name == NODE_INFO:
                continue
            self._file(path)
            count += 1
        return count

    def lookup(self, nodeid: str) -> tuple[dict[str, Metric], str | None, dict[str, Any] | None, Path]:
        """Baseline metrics of one test, with its fingerprint digest and fields and the file."""
        path, key = self.path_for(nodeid)
        bfile = self._file(path)
        if bfile is None:
            return {}, None, None, path
        digest, fields = bfile.fingerprint(key)
        return bfile.metrics(key), digest, fields, path

    def tests(self) -> dict[str, set[str]]:
        """Every test of the node's baseline files (its nodeid) with the names of its metrics."""
        self.validate()
        out: dict[str, set[str]] = {}
        for bfile in self._files.values():
            if bfile is None:
                continue
            test_file = bfile.data.get("test_file")
            for key, entry in bfile.data["tests"].items():
                nodeid = key if not isinstance(test_file, str) or key == test_file else f"{test_file}::{key}"
                out[nodeid] = set(entry["metrics"])
        return out

    def save(self, records: Sequence[Mapping[str, Any]], fingerprint_fields: dict[str, Any], fingerprint_digest: str,
             meta: dict[str, Any]) -> list[Path]:
        """Merge ``records`` (``{"nodeid", "metrics": [Metric], "params"}``) into the node's files.

        Tests not in ``records`` keep their entries; a test in ``records`` is replaced whole.
        """
        by_file: dict[Path, list[tuple[str, Mapping[str, Any]]]] = {}
        for record in records:
            path, key = self.path_for(record["nodeid"])
            by_file.setdefault(path, []).append((key, record))
        # everything is checked before anything is written: never a file that load() would refuse
        entries_json = {}
        for record in records:
            metrics = {m.name: metric_to_json(m) for m in record["metrics"]}
            for name, m in metrics.items():
                metric_from_json(name, m, f"test {record['nodeid']!r} (not saved)")
            entries_json[record["nodeid"]] = metrics
        written = []
        with node_lock(self.node_dir):
            remove_stale_temp_files(self.node_dir)
            for path, entries in sorted(by_file.items()):
                bfile = BaselineFile.load(path) if path.exists() else BaselineFile.empty(
                    path, self.node, split_nodeid(entries[0][1]["nodeid"])[0])
                data = bfile.data
                data["fingerprints"][fingerprint_digest] = fingerprint_fields
                for key, record in entries:
                    entry = {"fingerprint": fingerprint_digest, "metrics": entries_json[record["nodeid"]]}
                    entry.update(meta)
                    if record.get("params"):
                        entry["params"] = record["params"]
                    data["tests"][key] = entry
                used = {e.get("fingerprint") for e in data["tests"].values()}
                data["fingerprints"] = {k: v for k, v in data["fingerprints"].items() if k in used}
                atomic_write(path, bfile.dumps())
                self._files[path] = bfile
                written.append(path)
        return written
