#!/usr/bin/env python
"""How long must a llama2.c round be? Spread of round values and of probe-adjusted / paired ratios
for k runs per round (stories260K synthetic, refrun built by the suite's rules as the binary under
test). The k configurations are interleaved block by block, so that each sees the same background.

    python bench/llama2c_rounds.py --blocks 20 --ks 1,2,4,8 [--load]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from pytest_llmperf.llama2c import models
from pytest_llmperf.llama2c.runner import Runner, RunSpec, round_seconds_per_token, round_tok_per_s
from pytest_llmperf.llama2c.session import PROBE_FLAGS, PROBE_STEPS, REFERENCE_SOURCE
from pytest_llmperf.native.build import build


def cv(xs):
    return statistics.stdev(xs) / statistics.mean(xs)


def rcv(xs):
    """Robust CV: 1.4826 MAD / median (what a median-based gate sees)."""
    m = statistics.median(xs)
    return 1.4826 * statistics.median(abs(x - m) for x in xs) / m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--flags", default="-O3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="stories260K")
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--cur-src", default=str(REFERENCE_SOURCE))
    ap.add_argument("--cur-name", default="cur")
    ap.add_argument("--quantized", action="store_true", help="the binary under test runs the Q8_0 model")
    ap.add_argument("--probe-quantized", action="store_true", help="the probe runs the Q8_0 model")
    ap.add_argument("--ref-src", default=None, help="paired reference source (default: the current's)")
    ap.add_argument("--cache", default="/tmp/e_bench/cache")
    ap.add_argument("--out", default=None)
    ap.add_argument("--only-il", action="store_true", help="only the interleaved rounds (what the plugin does)")
    ap.add_argument("--compare-probes", action="store_true",
                    help="probe-adjusted CV with the float32 and the Q8_0 probe, interleaved block by block")
    args = ap.parse_args()
    cache = Path(args.cache)
    ckpt, tok = models.ensure_synthetic_model(cache / "llama2c", args.model)
    qckpt, _ = models.ensure_synthetic_q8_model(cache / "llama2c", args.model)
    cur = build(args.cur_src, args.flags, cache / "llama2c", name=args.cur_name)
    ref = build(args.ref_src or args.cur_src, args.flags, cache / "llama2c", name=args.cur_name)
    probe = build(REFERENCE_SOURCE, PROBE_FLAGS, cache / "llama2c", name="run")
    spec = RunSpec(checkpoint=qckpt if args.quantized else ckpt, tokenizer=tok, steps=args.steps,
                   threads=args.threads)
    pspec = replace(spec, steps=min(PROBE_STEPS[args.model], args.steps), threads=1,
                    checkpoint=qckpt if args.probe_quantized else ckpt)
    r = Runner()
    ks = [int(x) for x in args.ks.split(",")]
    loader = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    data = {k: {"vals": [], "probes": [], "adj": [], "ratios": [], "t_probe": 0.0, "t_pair": 0.0,
                "iratios": [], "iadj": [], "t_ipair": 0.0, "t_iprobe": 0.0} for k in ks}

    def interleaved(a_bin, a_spec, b_bin, b_spec, k, a_first):
        """k runs of each side, alternating A B B A A B ...: (A's runs, B's runs)."""
        a_runs, b_runs = [], []
        for j in range(k):
            first = (j % 2 == 0) == a_first
            if first:
                a_runs.append(r.run(a_bin, a_spec))
                b_runs.append(r.run(b_bin, b_spec))
            else:
                b_runs.append(r.run(b_bin, b_spec))
                a_runs.append(r.run(a_bin, a_spec))
        return a_runs, b_runs
    try:
        for _ in range(3):
            r.run(cur, spec)
            r.run(probe, pspec)
        one = r.run(cur, spec)
        print(f"one run: wall {one.wall_s*1000:.0f} ms; probe run: {r.run(probe, pspec).wall_s*1000:.0f} ms",
              flush=True)
        for b in range(args.blocks):
            for k in (ks if b % 2 == 0 else ks[::-1]):
                d = data[k]
                if args.compare_probes:
                    qspec = replace(pspec, checkpoint=qckpt)
                    fspec = replace(pspec, checkpoint=ckpt)
                    for name, ps in (("f", fspec), ("q", qspec)) if b % 2 == 0 else (("q", qspec), ("f", fspec)):
                        rp, rc = interleaved(probe, ps, cur, spec, k, b % 2 == 0)
                        d.setdefault("adj_" + name, []).append(round_tok_per_s(rc) * round_seconds_per_token(rp))
                        d.setdefault("raw_" + name, []).append(round_tok_per_s(rc))
                    continue
                if args.only_il:
                    t0 = time.perf_counter()
                    ra, rc = interleaved(ref, spec, cur, spec, k, b % 2 == 0)
                    d["t_ipair"] += time.perf_counter() - t0
                    d["iratios"].append(round_tok_per_s(rc) / round_tok_per_s(ra))
                    d["vals"].append(round_tok_per_s(rc))
                    t0 = time.perf_counter()
                    rp, rc = interleaved(probe, pspec, cur, spec, k, b % 2 == 0)
                    d["t_iprobe"] += time.perf_counter() - t0
                    d["iadj"].append(round_tok_per_s(rc) * round_seconds_per_token(rp))
                    continue
                t0 = time.perf_counter()
                p0 = round_seconds_per_token([r.run(probe, pspec) for _ in range(k)])
                v = round_tok_per_s([r.run(cur, spec) for _ in range(k)])
                p1 = round_seconds_per_token([r.run(probe, pspec) for _ in range(k)])
                d["t_probe"] += time.perf_counter() - t0
                d["vals"].append(v)
                d["adj"].append(v * min(p0, p1))
                t0 = time.perf_counter()
                if b % 2 == 0:
                    a = round_tok_per_s([r.run(ref, spec) for _ in range(k)])
                    c = round_tok_per_s([r.run(cur, spec) for _ in range(k)])
                else:
                    c = round_tok_per_s([r.run(cur, spec) for _ in range(k)])
                    a = round_tok_per_s([r.run(ref, spec) for _ in range(k)])
                d["t_pair"] += time.perf_counter() - t0
                d["ratios"].append(c / a)
                t0 = time.perf_counter()
                ra, rc = interleaved(ref, spec, cur, spec, k, b % 2 == 0)
                d["t_ipair"] += time.perf_counter() - t0
                d["iratios"].append(round_tok_per_s(rc) / round_tok_per_s(ra))
                t0 = time.perf_counter()
                rp, rc = interleaved(probe, pspec, cur, spec, k, b % 2 == 0)
                d["t_iprobe"] += time.perf_counter() - t0
                d["iadj"].append(round_tok_per_s(rc) * round_seconds_per_token(rp))
    finally:
        if loader is not None:
            loader.kill()
            loader.wait()
    n = args.blocks
    print("CV and robust CV (1.4826 MAD/median), in %; seq: whole rounds back to back; il: runs interleaved ABBA")
    print(f"{'k':>3} {'round':>13} | {'probe-adj seq':>13} | {'probe-adj il':>13} | {'paired seq':>13} | "
          f"{'paired il':>13} | s/round: probe, paired")
    summary = {}
    if args.compare_probes:
        print("k | raw round CV, robust | float32 probe: adjusted CV, robust | Q8_0 probe: adjusted CV, robust")
        for k in ks:
            d = data[k]
            raw = d["raw_f"] + d["raw_q"]
            summary[k] = {"cv_raw": cv(raw), "rcv_raw": rcv(raw), "cv_f": cv(d["adj_f"]), "rcv_f": rcv(d["adj_f"]),
                          "cv_q": cv(d["adj_q"]), "rcv_q": rcv(d["adj_q"])}
            x = summary[k]
            print(f"{k} | {x['cv_raw']*100:6.2f} {x['rcv_raw']*100:6.2f} | {x['cv_f']*100:6.2f} {x['rcv_f']*100:6.2f} | "
                  f"{x['cv_q']*100:6.2f} {x['rcv_q']*100:6.2f}", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "data": data}, indent=1))
        return
    if args.only_il:
        print(f"{'k':>3} {'round':>13} | {'probe-adj il':>13} | {'paired il':>13} | s/round: probe, paired")
        for k in ks:
            d = data[k]
            s = {"cv_round": cv(d["vals"]), "rcv_round": rcv(d["vals"]), "cv_iadj": cv(d["iadj"]),
                 "rcv_iadj": rcv(d["iadj"]), "cv_iratio": cv(d["iratios"]), "rcv_iratio": rcv(d["iratios"]),
                 "s_probe_round": d["t_iprobe"] / n, "s_paired_round": d["t_ipair"] / n}
            summary[k] = s

            def two(name, s=s):
                return f"{s['cv_' + name]*100:6.2f} {s['rcv_' + name]*100:6.2f}"

            print(f"{k:>3} {two('round')} | {two('iadj')} | {two('iratio')} | "
                  f"{s['s_probe_round']:.2f} s, {s['s_paired_round']:.2f} s", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "data": data}, indent=1))
        return
    for k in ks:
        d = data[k]
        summary[k] = {"cv_round": cv(d["vals"]), "rcv_round": rcv(d["vals"]), "cv_adj": cv(d["adj"]),
                      "rcv_adj": rcv(d["adj"]), "cv_ratio": cv(d["ratios"]), "rcv_ratio": rcv(d["ratios"]),
                      "cv_iratio": cv(d["iratios"]), "rcv_iratio": rcv(d["iratios"]),
                      "cv_iadj": cv(d["iadj"]), "rcv_iadj": rcv(d["iadj"]),
                      "s_probe_round": d["t_probe"] / n, "s_paired_round": d["t_pair"] / n}
        s = summary[k]

        def two(name, s=s):
            return f"{s['cv_' + name]*100:6.2f} {s['rcv_' + name]*100:6.2f}"

        print(f"{k:>3} {two('round')} | {two('adj')} | {two('iadj')} | {two('ratio')} | {two('iratio')} | "
              f"{s['s_probe_round']:.2f} s, {s['s_paired_round']:.2f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "data": data}, indent=1))


if __name__ == "__main__":
    main()
