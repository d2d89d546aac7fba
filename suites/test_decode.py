"""gpt-fast-style decoding on this node: one test per variant, decode tok/s gated per node.

Our users' sequence (baseline, torch.compile, int8 weight-only, speculative decoding, tensor
parallel), batch size 1, a static pre-allocated KV cache:

    pytest suites/test_decode.py --llmperf-node=a100 --llmperf-save-baseline     # record
    pytest suites/test_decode.py --llmperf-node=a100                             # compare
    pytest suites/test_decode.py --llmperf-decode-model=llama2-7b --llmperf-device=cuda
    pytest suites/test_decode.py --llmperf-decode-checkpoint ~/models/stories110M.bin

Without options: seeded random weights of the stories15M shape, fp32 on the CPU (bf16 on a GPU),
an 8-token prompt and 64 new tokens per round. Each test records ``decode_tok_per_s`` (gated),
``ttft_ms``, ``ms_per_token``, ``peak_mem`` and ``mbu`` (weight bytes per token x tok/s over the
node's measured memory bandwidth); the compiled variant adds ``compile_s`` (kept out of the
steady-state figures), speculative decoding adds ``acceptance`` and fails if its greedy output
differs from plain decoding. Tensor parallelism needs more than one GPU and skips otherwise.
"""

import pytest

pytest.importorskip("torch", reason="torch is not installed: pip install 'pytest-llmperf[torch]'", exc_type=ImportError)

from pytest_llmperf.torch_models.fixtures import decode_variants


def pytest_generate_tests(metafunc):
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", decode_variants(metafunc.config))


def test_decode(torch_decode, variant):
    torch_decode.bench(variant)
