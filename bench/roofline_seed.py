"""Issue 16's first target: the roofline estimates against both of the seed's inference tables
(llm-analysis, LLaMA 7B-65B on an A100 SXM 80 GB, context 512, batch 1, 32 tokens).

    python3 bench/roofline_seed.py

Prints every cell: the seed's figure, ours, the difference; then the largest difference."""

from __future__ import annotations

from pytest_llmperf.roofline import devices, inference, models, precision, seed


def main() -> None:
    dev = devices.device(seed.DEVICE)
    worst = 0.0
    print(f"{'table':<22} {'model':<10} {'tp':>2} {'seed ms':>9} {'ours ms':>9} {'diff':>7}")
    for table, name, tp, fe, hbme, sch, value in seed.cells():
        est = inference.inference(models.model(name), precision.scheme(sch), dev, seed.SEQ_LEN, seed.TOKENS,
                                  tp=tp, fe=fe, hbme=hbme)
        ours = (est.prefill if table.endswith("prefill") else est.decode).seconds * 1e3
        diff = ours / value - 1
        worst = max(worst, abs(diff))
        print(f"{table:<22} {name:<10} {tp:>2} {value:>9.2f} {ours:>9.2f} {diff * 100:>+6.1f}%")
    print(f"{len(seed.cells())} cells, largest difference {worst * 100:.2f}%")


if __name__ == "__main__":
    main()
