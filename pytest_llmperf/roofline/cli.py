"""``pytest-llmperf roofline``: the estimates of one configuration as a table (or JSON).

    pytest-llmperf roofline --model llama-7b --gpu a100-sxm-80gb --dtype w4a16e16 --tp 1 \\
        --seq-len 512 --tokens 32 [--batch 1] [--fe 0.7] [--hbme 0.9] [--json]
    pytest-llmperf roofline --model stories110M --device node --node sifive --dtype w32a32e32

``--device node`` is a node the suites ran on: its read bandwidth from the bandwidth probe's entry
in ``<baseline dir>/<node>/node-info.json`` (written with a baseline; the newest, when several
machines left one), else in this machine's cache (``nodes/<node>.json``), or the one
``--bandwidth`` gives; its peak from ``--peak`` (TFLOP/s), else unbounded (memory only). Its
memory is not known, so nothing is refused for size and no largest batch is given.

Exit status 2 with one line for an unknown model, device or scheme (the known ones listed), a
tensor-parallel size that does not divide the heads, efficiencies outside (0, 1], a configuration
that does not fit in the device's memory (by how much).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .devices import Device, device
from .inference import Inference, inference, largest_batch, memory_per_device
from .models import RooflineError, from_config, from_llama2c, model
from .node import node_device
from .precision import scheme


def add_commands(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("roofline", help="estimate prefill and decode latency from FLOPs and bytes",
                            description="Analytical roofline: each part bounded by compute or memory.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a named model (llama-7b ... llama-2-70b, stories15M, gpt2, opt-6.7b ...)")
    which.add_argument("--model-file", type=Path, metavar="FILE",
                       help="a llama2.c checkpoint (its header) or a Hugging Face config.json")
    p.add_argument("--gpu", "--device", dest="device", required=True,
                   help="a named device (a100-sxm-80gb ...), or 'node': a node the suites ran on (--node, --bandwidth)")
    p.add_argument("--node", help="with --device node: whose node-info.json to read the bandwidth from")
    p.add_argument("--baseline-dir", type=Path, default=Path("baselines"),
                   help="with --device node: where the node folders are (default: baselines)")
    p.add_argument("--bandwidth", type=float, metavar="GBPS", help="with --device node: the read bandwidth, GB/s")
    p.add_argument("--peak", type=float, metavar="TFLOPS", help="with --device node: the compute peak, TFLOP/s")
    p.add_argument("--dtype", default="w16a16e16", help="the precision scheme (default w16a16e16)")
    p.add_argument("--tp", type=int, default=1, help="tensor parallel size (default 1)")
    p.add_argument("--seq-len", type=int, default=512, help="prompt length (default 512)")
    p.add_argument("--tokens", type=int, default=32, help="tokens generated (default 32)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--fe", type=float, default=1.0, help="flops efficiency in (0, 1] (default 1)")
    p.add_argument("--hbme", type=float, default=1.0, help="memory efficiency in (0, 1] (default 1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_roofline)


def node_target(args: argparse.Namespace) -> Device:
    """The node of ``--device node``: ``--bandwidth``, else the newest bandwidth entry of
    ``--baseline-dir/--node/node-info.json``; ``--peak`` TFLOP/s, else no compute bound."""
    for flag, value in (("--bandwidth", args.bandwidth), ("--peak", args.peak)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise RooflineError(f"{flag} {value:g}: must be a positive number")
    peak = args.peak * 1e12 if args.peak else None
    if args.bandwidth is not None:
        return node_device(args.bandwidth, peak, "this node")
    if not args.node:
        raise RooflineError("--device node needs --node NAME (whose node-info.json to read) or --bandwidth GBPS")
    from ..native.bandwidth import NodeInfoError, load_info
    from ..native.cache import default_cache_dir

    paths = [args.baseline_dir / args.node / "node-info.json", default_cache_dir() / "nodes" / f"{args.node}.json"]
    entries: list[dict[str, Any]] = []
    for path in paths:
        try:
            entries += list(load_info(path).get("memory_bandwidth", {}).values())
        except NodeInfoError as exc:
            raise RooflineError(str(exc)) from None
        if entries:
            break
    if not entries:
        raise RooflineError(f"{paths[0]}: no bandwidth measured for node {args.node!r}, nor in {paths[1]} (run the "
                            f"llama2.c or decode suite there first, or give --bandwidth GBPS)")
    newest = max(entries, key=lambda e: str(e.get("measured_at", "")))
    return node_device(float(newest["read_GBps"]), peak, f"node {args.node}")


def to_json(est: Inference, args: argparse.Namespace, memory: dict[str, float],
            batch_max: int | None) -> dict[str, Any]:
    def stage(st: Any) -> dict[str, Any]:
        return {"seconds": st.seconds, "bound": st.bound,
                "parts": [{"name": p.name, "seconds": p.seconds, "bound": p.bound, "flops": p.flops, "bytes": p.bytes}
                          for p in st.parts]}
    return {"model": args.model, "device": args.device, "dtype": args.dtype, "tp": args.tp, "seq_len": args.seq_len,
            "tokens": args.tokens, "batch": args.batch, "fe": args.fe, "hbme": args.hbme,
            "prefill": stage(est.prefill), "decode": stage(est.decode), "total_s": est.total_s,
            "memory_per_device": memory, "largest_batch": batch_max}


def cmd_roofline(args: argparse.Namespace) -> int:
    if args.model_file is not None:
        m = from_config(args.model_file) if args.model_file.suffix == ".json" else from_llama2c(args.model_file)
        args.model = m.name
    else:
        m = model(args.model)
    d, s = (node_target(args) if args.device == "node" else device(args.device)), scheme(args.dtype)
    est = inference(m, s, d, args.seq_len, args.tokens, args.batch, args.tp, args.fe, args.hbme)
    memory = memory_per_device(m, s, args.seq_len + args.tokens, args.batch, args.tp)
    batch_max = largest_batch(m, s, d, args.seq_len + args.tokens, args.tp) if math.isfinite(d.memory) else None
    if args.json:
        print(json.dumps(to_json(est, args, memory, batch_max), indent=1))
        return 0
    n = m.params()
    count = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"
    where = d.name if math.isfinite(d.memory) else (
        f"{d.name} ({d.bandwidth / 1e9:.1f} GB/s" + (f", {d.peak_for('fp32') / 1e12:.2f} TFLOP/s)"
                                                     if math.isfinite(d.peak_for("fp32")) else ", no compute bound)"))
    print(f"{m.name} ({count} parameters) on {where}, {s.name}, tp {args.tp}, batch {args.batch}, "
          f"prompt {args.seq_len}, {args.tokens} tokens, fe {args.fe:g}, hbme {args.hbme:g}")
    rows = []
    for st in (est.prefill, est.decode):
        for p in st.parts:
            rows.append([st.name, p.name, f"{p.seconds * 1e3:.3f}", p.bound])
        rows.append([st.name, "total", f"{st.seconds * 1e3:.2f}", st.bound])
    print(tabulate(rows, headers=["stage", "part", "ms", "bound"], tablefmt="simple", disable_numparse=True))
    print(f"total for {args.tokens} tokens: {est.total_s * 1e3:.1f} ms; memory per device: "
          + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in memory.items())
          + (f"; largest batch that fits: {batch_max}" if batch_max is not None else ""))
    return 0


def run_args(args: argparse.Namespace) -> int:
    try:
        result: int = args.handler(args)
        return result
    except RooflineError as exc:
        print(f"pytest-llmperf roofline: error: {exc}", file=sys.stderr)
        return 2
