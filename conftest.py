"""Repository-level conftest: pytester for the plugin's own end-to-end tests."""

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module: its models are far too small to gain from intra-op
    threads, and on a small shared machine a busy second core turns every OpenMP barrier into a
    stall (10-50x slower steps). Imports torch only when a module asks for it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_isolated(pytester, *args: str, clear=(), env=None, timeout: float = 300, subprocess: bool = True):
    """``pytester.runpytest_subprocess(*args)`` (or ``runpytest`` in this process, with
    ``subprocess=False``) with the environment variables ``clear`` removed and ``env`` set, for
    that run only (the plugin reads LLMPERF_* variables, which a developer's shell may have set)."""
    mp = pytest.MonkeyPatch()
    try:
        for key in clear:
            mp.delenv(key, raising=False)
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        if not subprocess:
            return pytester.runpytest(*args)
        return pytester.runpytest_subprocess(*args, timeout=timeout)
    finally:
        mp.undo()


def compile_c(directory, name: str, source: str, flags=("-O1",)):
    """Write ``source`` to DIR/NAME.c, compile it with cc into DIR/NAME and return that path."""
    import subprocess
    from pathlib import Path

    directory = Path(directory)
    (directory / f"{name}.c").write_text(source)
    subprocess.run(["cc", *flags, "-o", str(directory / name), str(directory / f"{name}.c")], check=True)
    return directory / name
