"""pytest glue of the PyTorch benchmarks: the ``torch_device``, ``torch_lm`` and ``torch_decode``
fixtures, and what the suites read from the options (``lm_grid``, ``decode_variants``).

Loading this module imports pytest only. torch and the model modules are imported when a test asks
for one of the fixtures; without torch those tests skip with the reason. Exceptions become test
outcomes here: an unknown size or device option is a usage error at configure time (options.py); a
device that was asked for by name and is not there, a checkpoint that does not load and an
out-of-memory fail the test with one line; a dtype the device cannot compute in and a size that
cannot fit skip it, before it starts.

The old single module is split by concern: options.py (the options, parsed once), session.py
(TorchSession, the probe), bench.py (what both benchmarks share), lm.py (TorchLM) and decode.py
(TorchDecode); the names the suites and tests import from here stay importable from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .decode import TorchDecode as TorchDecode
from .lm import TorchLM as TorchLM
from .options import DECODE_MODEL_NAMES as DECODE_MODEL_NAMES
from .options import DECODE_VARIANTS as DECODE_VARIANTS
from .options import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from .options import DEFAULT_CONTEXTS as DEFAULT_CONTEXTS
from .options import DEFAULT_DECODE_MODEL as DEFAULT_DECODE_MODEL
from .options import DEFAULT_DECODE_TOKENS as DEFAULT_DECODE_TOKENS
from .options import DEFAULT_LM_SIZES as DEFAULT_LM_SIZES
from .options import DEFAULT_PROMPT_TOKENS as DEFAULT_PROMPT_TOKENS
from .options import DEFAULT_SPECULATE_K as DEFAULT_SPECULATE_K
from .options import LM_PASSES as LM_PASSES
from .options import LM_SIZE_NAMES as LM_SIZE_NAMES
from .options import PASS_IDS as PASS_IDS
from .options import PRECISIONS as PRECISIONS
from .session import OPTIONS_KEY as OPTIONS_KEY
from .session import PROBE_KIND as PROBE_KIND
from .session import PROBE_SIZE as PROBE_SIZE
from .session import SESSION as SESSION
from .session import TORCH_MISSING as TORCH_MISSING
from .session import TorchSession as TorchSession
from .session import need_torch, options
from .session import session as session
from .session import torch_threads as torch_threads

if TYPE_CHECKING:
    import torch


def lm_grid(config: pytest.Config) -> dict[str, Any]:
    """The transformer suite's parameters from the options: sizes, contexts, batch_size, passes,
    precisions and compile (lists, but the batch size)."""
    return options(config).lm.as_dict()


def decode_variants(config: pytest.Config) -> list[str]:
    """The decode suite's variants (``--llmperf-decode-variants``, default all)."""
    return list(options(config).variants)


@pytest.fixture
def torch_device(request: pytest.FixtureRequest) -> torch.device:
    """The torch.device of the benchmarks (``--llmperf-device``, default auto); skips without torch."""
    need_torch()
    return session(request.config).device()


@pytest.fixture
def torch_lm(request: pytest.FixtureRequest) -> TorchLM:
    """The transformer LM benchmarks: ``torch_lm.bench("mini", "forward_backward", "bf16", context=256)``
    records ms_per_step (gated), tok_per_s, mfu, first_step_ms and peak_mem."""
    need_torch()
    return TorchLM(request)


@pytest.fixture
def torch_decode(request: pytest.FixtureRequest) -> TorchDecode:
    """gpt-fast-style decoding: ``torch_decode.bench("int8")`` records decode_tok_per_s (gated),
    ttft_ms, ms_per_token, peak_mem and mbu."""
    need_torch()
    return TorchDecode(request)
