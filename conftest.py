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
