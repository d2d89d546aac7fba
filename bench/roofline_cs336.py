"""Issue 16's second target: the roofline's forward and forward+backward times of the transformer
suite's sizes on an A100 SXM 80 GB next to our users' measured ones (../shared/seeds/003, CUDA
columns: float32, context 256, batch 4 as the report states for its A100 runs), and the efficiency
that implies (predicted at fe = hbme = 1 over measured).

    python3 bench/roofline_cs336.py
"""

from __future__ import annotations

from pytest_llmperf.roofline import devices, models, precision, training

# size -> (forward ms, forward+backward ms) measured; the xl row of the report is garbled (its
# forward+backward reads 285.7 ms, below its forward), so only its forward is used
MEASURED = {"small": (24.2, 80.4), "medium": (64.4, 243.7), "large": (139.9, 520.8), "xl": (285.7, None),
            "2.7B": (421.8, 1616.5)}


def main() -> None:
    dev = devices.device("a100-sxm-80gb")
    fp32 = precision.scheme("w32a32e32")
    print(f"{'size':<7} {'params':>9} {'fwd pred':>9} {'fwd meas':>9} {'eff':>5} {'f+b pred':>9} {'f+b meas':>9} "
          f"{'eff':>5}  bound")
    for size, (fwd, fb) in MEASURED.items():
        m = models.model(f"cs336-{size}")
        t = training.training_step(m, fp32, dev, context=256, batch=4)
        pf, pfb = t.forward.seconds * 1e3, t.forward_backward_s * 1e3
        fb_text = f"{fb:>9.1f} {pfb / fb:>5.2f}" if fb else f"{'-':>9} {'-':>5}"
        print(f"{size:<7} {m.params() / 1e6:>8.1f}M {pf:>9.1f} {fwd:>9.1f} {pf / fwd:>5.2f} {pfb:>9.1f} {fb_text}  "
              f"{t.forward.bound}")
    print("fp32 peak 19.5 TFLOP/s (PyTorch leaves TF32 off for float32 matmuls by default), HBM 2039 GB/s")


if __name__ == "__main__":
    main()
