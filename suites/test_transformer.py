"""A CS336-style transformer LM on this node: sizes x pass x precision x context, gated per node.

Our users' table (forward, forward+backward, per size and device) and their mixed-precision table
(fp32 vs bf16 over context lengths), one test per cell:

    pytest suites/test_transformer.py --llmperf-node=a100 --llmperf-save-baseline      # record
    pytest suites/test_transformer.py --llmperf-node=a100                              # compare
    pytest suites/test_transformer.py --llmperf-lm-sizes=table --llmperf-lm-contexts=128,256,512,1024 \\
        --llmperf-device=cuda --llmperf-lm-compile=both                                # the full table

Without options: the tiny and mini sizes at contexts 128 and 256, batch 4, forward,
forward+backward and a full AdamW training step, fp32 and bf16 autocast, eager, on the best device
(cuda, else mps, else cpu). Each test records ``ms_per_step`` (gated), ``tok_per_s``, ``mfu``
(against the GPU's datasheet peak, or a matmul probe on the CPU), ``first_step_ms`` (the warm-up
effect) and ``peak_mem``. A cell that cannot fit the device skips before it starts.
"""

import pytest

pytest.importorskip("torch", reason="torch is not installed: pip install 'pytest-llmperf[torch]'", exc_type=ImportError)

from pytest_llmperf.torch_models.fixtures import PASS_IDS, lm_grid


def pytest_generate_tests(metafunc):
    if "size" not in metafunc.fixturenames:
        return
    grid = lm_grid(metafunc.config)
    cases = []
    for size in grid["sizes"]:
        for kind in grid["passes"]:
            for precision in grid["precisions"]:
                for context in grid["contexts"]:
                    for compiled in grid["compile"]:
                        name = f"{size}-{PASS_IDS[kind]}-{precision}-ctx{context}" + ("-compiled" if compiled else "")
                        cases.append(pytest.param(size, kind, precision, context, grid["batch_size"], compiled,
                                                  id=name))
    metafunc.parametrize(("size", "kind", "precision", "context", "batch", "compiled"), cases)


def test_transformer(torch_lm, size, kind, precision, context, batch, compiled):
    torch_lm.bench(size, kind, precision=precision, context=context, batch_size=batch, compile=compiled)
