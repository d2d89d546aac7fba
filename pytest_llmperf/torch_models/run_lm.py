"""Run steps of the transformer LM in a process of their own, for the process profilers.

``python -m pytest_llmperf.torch_models.run_lm --size small --kind forward --steps 3`` builds the
model the ``torch_lm`` fixture times (same config, seed and inputs), runs ``--warmup`` steps, then
``--steps`` steps inside an NVTX range named ``llmperf:steps`` (a no-op without CUDA), and prints
one line: ``llmperf run_lm: N steps, X ms per step``. nsys, perf stat and perf record wrap this
process, so their overhead never touches the fixture's timed rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import cast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_llmperf.torch_models.run_lm")
    parser.add_argument("--size", required=True)
    parser.add_argument("--kind", required=True, choices=("forward", "forward_backward", "train_step"))
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from .device import nvtx_range, resolve_device, resolve_dtype, synchronize
    from .transformer import build_model, get_config, make_step

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision)
    cfg = get_config(args.size)
    if args.context > cfg.context_length:
        cfg = get_config(args.size, context_length=args.context)
    model = build_model(cfg, device=device, seed=0, attention=args.attention)
    # torch.compile of a Module gives an OptimizedModule, a Module too (the stubs say a callable)
    runnable = cast(torch.nn.Module, torch.compile(model)) if args.compile else model
    step = make_step(runnable, args.kind, args.batch, args.context, device=device,
                     autocast_dtype=None if dtype == torch.float32 else dtype)
    for _ in range(args.warmup):
        step()
    synchronize(device)
    with nvtx_range(device, "llmperf:steps"):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - t0
    print(f"llmperf run_lm: {args.steps} steps, {elapsed / args.steps * 1e3:.3f} ms per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
