"""gitinfo on real git repositories made in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_llmperf import gitinfo

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                                reason="git not installed")


def _repo(path: Path) -> list[str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    shas = []
    for text in ("one\n", "two\n"):
        (path / "run.c").write_text(text)
        git("add", "run.c")
        git("commit", "-q", "-m", text.strip())
        shas.append(git("rev-parse", "HEAD"))
    return shas


def test_commit_of_a_clean_then_dirty_tree(tmp_path):
    _first, second = _repo(tmp_path / "r")
    assert gitinfo.commit_of(tmp_path / "r") == {"commit": second, "dirty": False}
    (tmp_path / "r" / "untracked.o").write_text("x")
    assert gitinfo.commit_of(tmp_path / "r") == {"commit": second, "dirty": False}
    (tmp_path / "r" / "run.c").write_text("changed\n")
    assert gitinfo.commit_of(tmp_path / "r") == {"commit": second, "dirty": True}
    assert gitinfo.toplevel(tmp_path / "r") == (tmp_path / "r").resolve()


def test_not_a_repository_is_none(tmp_path):
    assert gitinfo.commit_of(tmp_path) is None
    assert gitinfo.commit_of(tmp_path / "missing") is None
    assert gitinfo.toplevel(tmp_path) is None


def test_resolve_and_show_a_file_at_a_revision(tmp_path):
    first, _second = _repo(tmp_path / "r")
    assert gitinfo.resolve(tmp_path / "r", "HEAD~1") == first
    assert gitinfo.resolve(tmp_path / "r", first[:8]) == first
    assert gitinfo.show(tmp_path / "r", "HEAD~1", "run.c") == b"one\n"
    assert gitinfo.show(tmp_path / "r", "HEAD", "run.c") == b"two\n"


@pytest.mark.parametrize("rev", ["no-such-branch", "-x", ""])
def test_bad_revision_is_one_line(tmp_path, rev):
    _repo(tmp_path / "r")
    with pytest.raises(gitinfo.GitError) as exc:
        gitinfo.resolve(tmp_path / "r", rev)
    assert str(tmp_path / "r") in str(exc.value) and "\n" not in str(exc.value)


def test_missing_file_at_a_revision(tmp_path):
    _repo(tmp_path / "r")
    with pytest.raises(gitinfo.GitError, match="no file runq.c at"):
        gitinfo.show(tmp_path / "r", "HEAD", "runq.c")
