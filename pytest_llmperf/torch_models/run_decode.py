"""Decode in a process of its own, for the process profilers (the ``torch_decode`` fixture's
counterpart of :mod:`.run_lm`).

``python -m pytest_llmperf.torch_models.run_decode --model stories15M --variant int8 --tokens 64``
builds the target the fixture times (same shape and seed, or ``--checkpoint``), applies the
variant (eager, compile, int8, speculative with ``--draft int8`` or a decode model name), decodes
the fixture's fixed prompt once to warm up (and compile), then ``--generations`` times inside the
NVTX range ``llmperf:decode`` (a no-op without CUDA), and prints
``llmperf run_decode: N generations, X tok/s``.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys

VARIANTS = ("eager", "compile", "int8", "speculative")
PROMPT_SEED = 1234


def fixed_prompt(vocab_size: int, length: int) -> list[int]:
    """BOS (1), then seeded token ids: the same prompt in every session and process."""
    rng = random.Random(PROMPT_SEED)
    return [1] + [rng.randrange(3, vocab_size) for _ in range(length - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_llmperf.torch_models.run_decode")
    parser.add_argument("--model", default="stories15M")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--draft", default="int8")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from . import generate as gen
    from .device import nvtx_range, resolve_device, resolve_dtype, synchronize
    from .llama import Llama, build_llama, get_decode_config, load_llama2c
    from .quantize import quantize_int8_

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)

    def load(name: str, path: str | None) -> Llama:
        """The llama2.c checkpoint at ``path`` when given, else the decode model ``name``."""
        if path:
            return load_llama2c(path, device=device, dtype=dtype)
        return build_llama(get_decode_config(name), device=device, dtype=dtype, seed=0)

    model = load(args.model, args.checkpoint)
    prompt = fixed_prompt(model.config.vocab_size, args.prompt_tokens)
    need = len(prompt) + args.tokens + args.k + 1
    draft: Llama | None = None
    if args.variant == "int8":
        quantize_int8_(model)
    elif args.variant == "speculative":
        if args.draft.lower() == "int8":
            draft = quantize_int8_(copy.deepcopy(model))
        else:
            draft = load(args.draft, args.draft if os.path.exists(args.draft) else None)
        draft.setup_caches(1, need)
    model.setup_caches(1, need)
    decode_fn = gen.compile_decode(device) if args.variant == "compile" else None
    sync = lambda: synchronize(device)  # noqa: E731

    def run():
        return gen.generate(model, prompt, args.tokens, decode_fn=decode_fn, draft=draft, speculate_k=args.k,
                            sync=sync)

    run()  # warm-up (and compilation)
    with nvtx_range(device, "llmperf:decode"):
        rates = [run().decode_tok_per_s for _ in range(args.generations)]
    print(f"llmperf run_decode: {args.generations} generations, {sorted(rates)[len(rates) // 2]:.1f} tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
