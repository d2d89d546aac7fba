"""Per-node history: one JSON line per test per run, appended, never rewritten but by retention.

Layout. A node's history directory holds one ``.jsonl`` file per test file, at the path its
baselines have (``baseline.relative_file_for``, suffix ``.jsonl``): ``suites/test_x.py::test_y``
on node ``sifive`` goes to ``baselines/sifive/history/suites/test_x.jsonl`` by default
(:func:`node_history_dir`: ``<baseline dir>/<node>/history``), or to ``<DIR>/<node>/suites/test_x.jsonl``
when a history directory DIR is given (``--llmperf-history-dir``: several nodes share DIR the
way they share the baseline dir). :class:`HistoryStore` takes the node's history directory itself.

Lines. One JSON object per line, keys sorted, compact separators, UTF-8, ``"\\n"``-terminated: a
``run`` line per test per run (time, run id, fingerprint digest, plugin version, commits, outcome,
reset, and per metric unit, direction, median, n, within-session standard error, speed-adjusted
median and probe kind, CPU share, this run's verdict, samples when asked) and ``accept`` lines
(the reference starts again). Floats carry 7 significant digits, and ``gate``/``exact`` are
written only when not their defaults; a typical test of three metrics (tok_per_s with a probe,
mbu, peak_rss) with the repository's and llama2.c's commits takes 882 bytes without samples
(tests/test_history.py and bench/history_cost.py measure it; the limit is 1 KB). Every line is
validated before it is written: nothing is written that :meth:`read` would refuse.

Appends. Under an exclusive lock on ``<history dir>/.llmperf.lock``, each file gets the lines of
one call in ONE ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``: concurrent sessions
(and the xdist controller, the only process of a session that appends) lose nothing, and a write
cut short by a power cut leaves at most one unterminated fragment at the end. Appends are atomic
per file, not across the files of one call.

A torn last line (no ``"\\n"`` at its end, does not parse, looks like the start of a record or is
NUL bytes, which is what a cut append leaves) was never a record: :meth:`read` skips it with a
warning naming file and line, and the next append cuts that fragment off (with the same warning)
before writing, so the file is whole again. An unterminated last line that does parse is a record
(a hand edit that lost the final newline): kept, and the next append writes the newline first.
Every other problem is a one-line :class:`HistoryError` naming file and line, and nothing is
rewritten: a corrupt line anywhere else, an unknown schema, a newer version ("upgrade
pytest-llmperf"), a bad field, a directory that cannot be read or written (:func:`check_writable`
tells before a run). An append without ``keep`` reads only the end of each file, so it does not
see a corrupt middle line; it adds lines after it and rewrites nothing, and the next read names it.

Order. :meth:`read` returns a test's entries in time order: a stable sort on the UTC time (one
second resolution, so the text sorts as the time does), which is file order for appends under the
lock, and also orders the lines of two branches that a union merge interleaved. In git, let
merges keep both sides' lines::

    # .gitattributes
    baselines/**/history/*.jsonl merge=union

Retention (``keep``): the newest ``keep`` runs of each test stay, counted by distinct run ids;
accept lines after the oldest kept run (or naming a kept run) stay, older ones go (every kept run
comes after them, so the reference they set is unchanged). Compaction rewrites a file through
``fileutil.atomic_write`` under the same lock, only when it drops something, and refuses (raising,
writing nothing) a file with any error.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .baseline import relative_file_for, split_nodeid
from .errors import short_repr as _short
from .fileutil import atomic_write, exclusive_lock, nearest_existing
from .history_lines import (
    DECODER,
    KINDS,
    SCHEMA,
    SCHEMA_VERSION,
    TIME_FORMAT,
    Accept,
    BadLine,
    Entry,
    HistoryError,
    Point,
    Run,
    decode_entry,
    entry_json,
    new_run_id,
    parse_line,
    run_record,
    to_line,
    utc_now_text,
)

# the line format's public names (history_lines.py), re-exported: the store and its records in one place
__all__ = [
    "DIR_NAME", "KINDS", "LOCK_NAME", "SCHEMA", "SCHEMA_VERSION", "SUFFIX", "TEMP_PATTERN", "TIME_FORMAT",
    "Accept", "Entry", "HistoryError", "HistoryStore", "Point", "Run", "check_writable", "entry_json",
    "new_run_id", "node_history_dir", "parse_line", "retained", "run_record", "to_line", "utc_now_text",
]

SUFFIX = ".jsonl"
LOCK_NAME = ".llmperf.lock"
DIR_NAME = "history"  # under <baseline dir>/<node>/ by default
TEMP_PATTERN = ".*" + SUFFIX + ".*.tmp"  # what fileutil.atomic_write leaves behind when killed
_BLOCK = 65536  # how far back an append reads at a time, looking for the last newline


def node_history_dir(baseline_dir: Path, node: str, history_dir: Path | None = None) -> Path:
    """The history directory of ``node``: ``<history_dir>/<node>`` when a history directory is
    given, else ``<baseline_dir>/<node>/history``."""
    if history_dir is not None:
        return Path(history_dir) / node
    return Path(baseline_dir) / node / DIR_NAME


def check_writable(directory: Path) -> None:
    """Raise HistoryError when history cannot be appended under ``directory`` (the node's history
    dir): a file in its place, a directory that denies writing, a history file or the lock that
    denies writing. Meant to run before the tests, so a nightly does not measure for an hour and
    then fail to record."""
    directory = Path(directory)
    probe = nearest_existing(directory)
    if probe.exists() and not probe.is_dir():
        raise HistoryError(f"history dir {directory}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise HistoryError(f"history dir {directory} is not writable ({probe} denies writing)")
    if probe == directory:
        for path in _files(directory):
            if not os.access(path, os.R_OK | os.W_OK):
                raise HistoryError(f"history file {path} is not writable")
        lock = directory / LOCK_NAME
        if lock.exists() and not os.access(lock, os.R_OK | os.W_OK):
            raise HistoryError(f"history lock {lock} is not writable")


def _walk_error(exc: OSError) -> None:
    raise HistoryError(f"cannot read history dir {exc.filename}: {exc.strerror or exc}")


def _files(directory: Path) -> list[Path]:
    """Every history file under ``directory``, sorted; an unreadable directory is an error (a
    silently empty listing would read as "no history")."""
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise HistoryError(f"history dir {directory} is a file, not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise HistoryError(f"cannot read history dir {directory}: permission denied")
    found: list[Path] = []
    for top, dirs, names in os.walk(directory, onerror=_walk_error):
        dirs.sort()
        found.extend(Path(top) / name for name in names if name.endswith(SUFFIX) and not name.startswith("."))
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# lines: to JSON and back


def _torn_fragment(fragment: bytes) -> bool:
    """An unterminated last line that an append cut short: the start of a record, or the NUL
    bytes a file system leaves where data never reached the disk (blank counts too)."""
    rest = fragment.lstrip(b"\x00 \t\r")
    return not rest or rest.startswith(b"{")


def _torn_warning(path: Path, line: int, action: str) -> str:
    return (f"history file {path}, line {line}: {action} a torn last line (no newline at its end: "
            "an append cut short, e.g. by a power cut)")


# ---------------------------------------------------------------------------------------------
# building records from a session's results



@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a file is parsed: reading makes millions of small
    objects, none in a cycle, and each of them counts towards the next collection, which walks
    every object alive. Measured on a year of 100 tests: 0.83 s to build the entries with it on,
    0.44 s with it off. It is on again afterwards, if it was on before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # the new objects go straight to the oldest generation (freeze, then unfreeze) instead of
        # waiting in the youngest, whose next collection would walk all of them at once (0.3 s
        # after reading a year of 100 tests)
        gc.freeze()
        gc.unfreeze()
        if was_on:
            gc.enable()


# ---------------------------------------------------------------------------------------------
# the store


class HistoryStore:
    """The history of one node, in its history directory (:func:`node_history_dir`)."""

    def __init__(self, directory: Path, lock_timeout: float = 120.0):
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self.warnings: list[str] = []  # torn last lines skipped or cut, each said once

    def path_for(self, nodeid: str) -> Path:
        rel = relative_file_for(split_nodeid(nodeid)[0])
        return self.directory / rel.with_suffix(SUFFIX)

    def files(self) -> list[Path]:
        return _files(self.directory)

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # reading

    def _load(self, path: Path) -> tuple[list[tuple[Entry, str]], bytes]:
        """The entries of one file in file order, each with its line's text, and the torn tail
        fragment (b"" when none)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return [], b""
        except IsADirectoryError:
            raise HistoryError(f"history file {path} is a directory") from None
        except OSError as exc:
            raise HistoryError(f"cannot read history file {path}: {exc.strerror or exc}") from None
        cut = raw.rfind(b"\n") + 1
        tail = raw[cut:]  # b"" when the file ends with a newline
        try:
            lines = raw[:cut].decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise HistoryError(f"history file {path}, line {line}: is not UTF-8 text (corrupt?); "
                               "fix it or restore it from git") from None
        lines.pop()  # the "" after the last newline
        torn = b""
        if tail:
            number = len(lines) + 1
            try:
                lines.append(tail.decode("utf-8"))
                parse_line(lines[-1], path, number)  # a record that lost its newline
            except (HistoryError, UnicodeDecodeError) as exc:
                if _torn_fragment(tail):
                    if len(lines) == number:
                        lines.pop()
                    torn = tail
                    self._warn(_torn_warning(path, number, "skipped"))
                elif isinstance(exc, UnicodeDecodeError):
                    raise HistoryError(f"history file {path}, line {number}: is not UTF-8 text (corrupt?); "
                                       "fix it or restore it from git") from None
                # else: not torn, the loop below names its problem
        out: list[tuple[Entry, str]] = []
        decode = DECODER.decode
        with _no_gc():
            for number, text in enumerate(lines, 1):
                if not text or text.isspace():
                    continue  # a blank line holds no record
                try:
                    entry = decode_entry(decode(text), path, number)
                except (BadLine, ValueError, RecursionError):
                    entry = parse_line(text, path, number)  # raises, worded
                out.append((entry, text))
        return out, torn

    def read(self, nodeid: str) -> list[Entry]:
        """The entries of one test, in time order."""
        entries = [e for e, _ in self._load(self.path_for(nodeid))[0] if e.nodeid == nodeid]
        entries.sort(key=lambda e: e.time)
        return entries

    def read_all(self) -> dict[str, list[Entry]]:
        """Every test of the node with its entries in time order, by nodeid (sorted)."""
        found: dict[str, list[Entry]] = {}
        with _no_gc():  # across the files: each collection between two would walk all read so far
            for path in self.files():
                for entry, _ in self._load(path)[0]:
                    found.setdefault(entry.nodeid, []).append(entry)
        for entries in found.values():
            entries.sort(key=lambda e: e.time)
        return dict(sorted(found.items()))

    # writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.directory / LOCK_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise HistoryError(f"history dir {self.directory} is a file, not a directory") from None
        except OSError as exc:
            raise HistoryError(f"cannot create history dir {self.directory}: {exc.strerror or exc}") from None
        try:  # the lock file made here, so that a directory denying it is a HistoryError, not the block's
            os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
        except OSError as exc:
            raise HistoryError(f"cannot lock history dir {self.directory}: {exc.strerror or exc}") from None
        try:
            with exclusive_lock(lock, self.lock_timeout):
                yield
        except TimeoutError as exc:
            raise HistoryError(f"history lock: {exc}") from None

    def _lines(self, entries: Sequence[Entry]) -> dict[Path, list[str]]:
        """The lines to write, by file, each checked as read() would check it."""
        by_file: dict[Path, list[str]] = {}
        for entry in entries:
            line = to_line(entry)
            parsed = parse_line(line, where=f"history record of test {_short(entry.nodeid, 80)} (not written)")
            if parsed != entry:  # a value that does not survive the trip (a float with more digits is fine)
                raise HistoryError(f"history record of test {_short(entry.nodeid, 80)} (not written) does not "
                                   "read back as it was written")
            by_file.setdefault(self.path_for(entry.nodeid), []).append(line)
        return by_file

    def append(self, runs: Sequence[Entry], keep: int | None = None) -> list[Path]:
        """Append ``runs`` (Run and Accept entries) to their files; with ``keep``, then compact
        those files to the newest ``keep`` runs of each test. Returns the files written."""
        if keep is not None and (type(keep) is not int or keep < 1):
            raise HistoryError(f"history keep {_short(keep)}: must be a positive number of runs")
        by_file = self._lines(runs)
        if not by_file:
            return []
        with self._locked():
            if keep is not None:  # a file compaction would refuse is refused before anything is appended
                for path in by_file:
                    self._load(path)
            for path, lines in sorted(by_file.items()):
                self._append_file(path, "".join(line + "\n" for line in lines).encode("utf-8"))
            if keep is not None:
                self._compact_files(sorted(by_file), keep)
        return sorted(by_file)

    def _append_file(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create history dir {path.parent}: {exc.strerror or exc}") from None
        created = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        except IsADirectoryError:
            raise HistoryError(f"history file {path} is a directory") from None
        except OSError as exc:
            raise HistoryError(f"cannot append to history file {path}: {exc.strerror or exc}") from None
        start = -1
        try:
            size = os.fstat(fd).st_size
            cut, prefix = self._mend_tail(fd, size, path) if size else (size, b"")
            if cut != size:
                os.ftruncate(fd, cut)
            start = cut
            data = prefix + data
            if os.write(fd, data) != len(data):  # a short write: the disk is full
                raise OSError(28, "short write (no space left on device?)")
            os.fsync(fd)
        except OSError as exc:
            if start >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # leave no fragment behind
            raise HistoryError(f"cannot append to history file {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        if created and hasattr(os, "O_DIRECTORY"):
            with contextlib.suppress(OSError):  # the new file's name reaches the disk too
                dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    def _mend_tail(self, fd: int, size: int, path: Path) -> tuple[int, bytes]:
        """Where the next line goes and what to write before it: after the last newline, cutting
        a torn fragment off; after an unterminated record, with a newline first."""
        end = size
        tail = b""
        while end > 0:
            begin = max(0, end - _BLOCK)
            os.lseek(fd, begin, os.SEEK_SET)
            block = os.read(fd, end - begin)
            at = block.rfind(b"\n")
            if at >= 0:
                tail = block[at + 1:] + tail
                break
            tail = block + tail
            end = begin
        if not tail:
            return size, b""
        cut = size - len(tail)
        os.lseek(fd, 0, os.SEEK_SET)
        line = os.read(fd, cut).count(b"\n") + 1
        try:
            parse_line(tail.decode("utf-8"), path, line)
            return size, b"\n"
        except (HistoryError, UnicodeDecodeError) as exc:
            if not _torn_fragment(tail):
                raise HistoryError(f"history file {path}, line {line}: the last line is not a record and has no "
                                   "newline at its end; fix it or restore it from git") from exc
        self._warn(_torn_warning(path, line, "cut off"))
        return cut, b""

    def accept(self, nodeids: Sequence[str], run_id: str | None = None, why: str = "accepted by hand",
               time: str | None = None) -> list[Path]:
        """Append an accept line for each test: its reference starts again at run ``run_id``
        (when given), else at its next run."""
        when = time or utc_now_text()
        return self.append([Accept(time=when, nodeid=n, run_id=run_id, why=why) for n in nodeids])

    def compact(self, keep: int, nodeids: Sequence[str] | None = None) -> list[Path]:
        """Keep the newest ``keep`` runs of each test (of ``nodeids``' files, or of every file);
        returns the files rewritten."""
        if type(keep) is not int or keep < 1:
            raise HistoryError(f"history keep {_short(keep)}: must be a positive number of runs")
        with self._locked():
            paths = sorted({self.path_for(n) for n in nodeids}) if nodeids is not None else self.files()
            return self._compact_files(paths, keep)

    def _compact_files(self, paths: Sequence[Path], keep: int) -> list[Path]:
        loaded = [(path, *self._load(path)) for path in paths]  # every file checked before any is rewritten
        for tmp in self.directory.rglob(TEMP_PATTERN):  # left by a compaction that was killed
            with contextlib.suppress(OSError):
                tmp.unlink()
        written = []
        for path, entries, _torn in loaded:
            kept = retained(entries, keep)
            if len(kept) == len(entries):
                continue
            atomic_write(path, "".join(text + "\n" for text in kept))
            written.append(path)
        return written


def retained(entries: Sequence[tuple[Entry, str]], keep: int) -> list[str]:
    """The texts of ``entries`` (file order) that retention keeps: per test, the runs of its newest
    ``keep`` run ids (in time order), and the accept lines after the oldest of them or naming one."""
    order = sorted(range(len(entries)), key=lambda i: entries[i][0].time)
    rank = {i: r for r, i in enumerate(order)}
    runs_of: dict[str, list[tuple[str, int]]] = {}  # nodeid -> [(run id, rank of its first line)], time order
    for i in order:
        entry = entries[i][0]
        if isinstance(entry, Run):
            seen = runs_of.setdefault(entry.nodeid, [])
            if all(run_id != entry.run_id for run_id, _ in seen):
                seen.append((entry.run_id, rank[i]))
    kept_ids: dict[str, set[str]] = {}
    oldest: dict[str, int] = {}
    for nodeid, runs in runs_of.items():
        newest = runs[-keep:]
        kept_ids[nodeid] = {run_id for run_id, _ in newest}
        oldest[nodeid] = newest[0][1]
    out = []
    for i, (entry, text) in enumerate(entries):
        ids = kept_ids.get(entry.nodeid)
        if ids is None:
            out.append(text)  # accept lines of a test with no runs
        elif isinstance(entry, Run):
            if entry.run_id in ids:
                out.append(text)
        elif rank[i] > oldest[entry.nodeid] or entry.run_id in ids:
            out.append(text)
    return out
