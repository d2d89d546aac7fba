"""The published llm-analysis inference figures for LLaMA on an A100 SXM 80 GB (our users' report,
../shared/seeds/001): context 512, batch 1, 32 generated tokens; milliseconds. The estimates are
checked against them (tests/test_roofline.py, bench/roofline_seed.py)."""

from __future__ import annotations

DEVICE = "a100-sxm-80gb"
SEQ_LEN, TOKENS = 512, 32
MODELS = ("llama-7b", "llama-13b", "llama-33b", "llama-65b")

# model -> (ideal prefill, ideal decode, prefill at fe=0.7 hbme=0.9, decode at fe=0.7 hbme=0.9), w16a16e16
W16 = {
    "llama-7b": (22.41, 6.73, 31.89, 7.48),
    "llama-13b": (43.1, 12.94, 61.38, 14.38),
    "llama-33b": (107.74, 32.36, 153.6, 35.95),
    "llama-65b": (113.33, 33.85, 159.47, 37.47),
}
W16_TP = {"llama-65b": 2}

# scheme -> model -> (ideal prefill, ideal decode); LLaMA-65B at tensor parallel 2 for w16a16e16 only
SCHEMES = {
    "w16a16e16": {"llama-7b": (22.41, 6.73), "llama-13b": (43.1, 12.94), "llama-33b": (107.74, 32.36),
                  "llama-65b": (113.33, 33.85)},
    "w4a4e16": {"llama-7b": (5.9, 1.78), "llama-13b": (11.2, 3.36), "llama-33b": (27.69, 8.25),
                "llama-65b": (55.2, 16.41)},
    "w4a8e16": {"llama-7b": (11.4, 1.85), "llama-13b": (21.83, 3.47), "llama-33b": (54.38, 8.46),
                "llama-65b": (108.83, 16.76)},
    "w4a16e16": {"llama-7b": (22.41, 1.99), "llama-13b": (43.1, 3.69), "llama-33b": (107.74, 8.89),
                 "llama-65b": (216.08, 17.47)},
    "w8a8e16": {"llama-7b": (11.4, 3.43), "llama-13b": (21.83, 6.55), "llama-33b": (54.38, 16.28),
                "llama-65b": (108.83, 32.56)},
}
SCHEME_TP = {("w16a16e16", "llama-65b"): 2}


def cells() -> list[tuple[str, str, int, float, float, str, float]]:
    """Every published cell: (table, model, tp, fe, hbme, scheme, value in ms) with ``table`` naming
    the figure (``prefill``/``decode``) and its table."""
    out = []
    for m, (p, d, p7, d7) in W16.items():
        tp = W16_TP.get(m, 1)
        out += [("w16 ideal prefill", m, tp, 1.0, 1.0, "w16a16e16", p),
                ("w16 ideal decode", m, tp, 1.0, 1.0, "w16a16e16", d),
                ("w16 fe0.7 prefill", m, tp, 0.7, 0.9, "w16a16e16", p7),
                ("w16 fe0.7 decode", m, tp, 0.7, 0.9, "w16a16e16", d7)]
    for sch, rows in SCHEMES.items():
        for m, (p, d) in rows.items():
            tp = SCHEME_TP.get((sch, m), 1)
            out += [(f"{sch} prefill", m, tp, 1.0, 1.0, sch, p), (f"{sch} decode", m, tp, 1.0, 1.0, sch, d)]
    return out
