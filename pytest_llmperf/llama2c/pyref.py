"""Float64 pure-Python reference of the llama2.c forward pass, sampler, generation loop and output.

This exists to check the C runners (refrun.c, or any llama2.c ``run``) against an independent
implementation: it reads the same legacy checkpoint and ``tokenizer.bin``, computes the same network
in Python floats (IEEE double) instead of float32, chooses tokens with the same sampler (greedy
argmax, or softmax with the same xorshift64* coin, whole-distribution or top-p) and prints pieces
by the same rules. So :func:`generate` returns exactly the bytes a C runner writes to stdout
(trailing newline included) for the same options, unless float32 rounding flips a close call:
:attr:`Generation.min_margin` tells how close the closest one was.

Standard library only; fast enough for the stories260K configuration (a few ms per token), far too
slow for stories15M and up.

Typical use::

    model = load("model.bin", "tokenizer.bin")
    text, tokens = generate_greedy(model, 48, "Once upon a time")
    sampled = generate(model, 48, None, temperature=1.0, topp=0.9, seed=42).stdout"""

from __future__ import annotations

import math
import operator
import re
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .models import ModelConfig, read_tokenizer, read_weights_f64

__all__ = [
    "Generation",
    "GenerationError",
    "Model",
    "XorShiftRng",
    "decode_piece",
    "encode",
    "forward",
    "generate",
    "generate_greedy",
    "load",
    "printable",
]

BOS = 1
RMS_EPS = 1e-5
ROPE_BASE = 10000.0

# sscanf("<0x%02hhX>") as the C runners use it accepts one or two hex digits after "<0x" and does not
# check the closing ">"; this covers every piece of real tokenizers (the leading whitespace and sign
# that sscanf would also skip over are left out on purpose).
_BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{1,2})")


Matrix = list[list[float]]


class GenerationError(ValueError):
    """A generation the model cannot run: a prompt (or BOS itself) needs a token id beyond the
    vocabulary, as refrun.c refuses it (a vocabulary without the 256 byte tokens, say)."""


@dataclass
class _Layer:
    att_norm: list[float]
    wq: Matrix
    wk: Matrix
    wv: Matrix
    wo: Matrix
    ffn_norm: list[float]
    w_gate: Matrix
    w_down: Matrix
    w_up: Matrix


@dataclass
class Model:
    """A loaded checkpoint and tokenizer, all floats as Python floats."""

    shape: ModelConfig
    embedding: Matrix
    layers: list[_Layer]
    final_norm: list[float]
    classifier: Matrix
    pieces: list[bytes]
    scores: list[float]
    _lookup: dict[bytes, int] = field(default_factory=dict, repr=False)

    def piece_id(self, piece: bytes) -> int:
        """Id of a piece, -1 when absent (the lowest id if a piece occurs twice)."""
        return self._lookup.get(piece, -1)


@dataclass
class Generation:
    """Result of :func:`generate`."""

    stdout: bytes  # exactly what a C runner prints, final newline included
    tokens: list[int]  # prompt tokens (BOS first) followed by every token produced after them
    positions: int  # forward passes run (what run.c counts for tok/s)
    prompt_tokens: int
    # the closest call over the sampled steps (inf if none): for argmax the lead of the best logit
    # over the runner-up, for sampling the distance from the coin to the nearer edge of the chosen
    # token's cdf interval; float32 rounding in a C runner can only flip a decision this close
    min_margin: float

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------
# loading


def _rows(flat: Sequence[float], n_rows: int, n_cols: int) -> Matrix:
    return [list(flat[r * n_cols : (r + 1) * n_cols]) for r in range(n_rows)]


def load(checkpoint_path: str, tokenizer_path: str) -> Model:
    """Read (and validate, see models.py) a legacy llama2.c checkpoint and a tokenizer.bin of the
    model's vocab_size tokens."""
    w = read_weights_f64(checkpoint_path)
    shape = w["config"]
    V, D, H, KV = shape.vocab_size, shape.dim, shape.hidden_dim, shape.kv_dim
    embedding = _rows(w["token_embedding"], V, D)
    classifier = embedding if shape.shared_classifier else _rows(w["wcls"], V, D)
    layers = [
        _Layer(
            att_norm=list(w["rms_att"][layer]),
            wq=_rows(w["wq"][layer], D, D),
            wk=_rows(w["wk"][layer], KV, D),
            wv=_rows(w["wv"][layer], KV, D),
            wo=_rows(w["wo"][layer], D, D),
            ffn_norm=list(w["rms_ffn"][layer]),
            w_gate=_rows(w["w1"][layer], H, D),
            w_down=_rows(w["w2"][layer], D, H),
            w_up=_rows(w["w3"][layer], H, D),
        )
        for layer in range(shape.n_layers)
    ]
    tok = read_tokenizer(tokenizer_path, V)
    # C treats every piece as a NUL-terminated string: keep what it sees
    pieces = [piece.split(b"\0", 1)[0] for piece in tok.pieces]
    lookup: dict[bytes, int] = {}
    for i, piece in enumerate(pieces):
        lookup.setdefault(piece, i)
    return Model(shape, embedding, layers, list(w["rms_final"]), classifier, pieces, list(tok.scores), lookup)


# --------------------------------------------------------------------------------------------------
# tokenizer


def encode(model: Model, text: str | bytes) -> list[int]:
    """Token ids of a prompt as llama2.c encodes it: BOS, a dummy-prefix " " for non-empty text, one
    token per UTF-8 code point (byte tokens byte+3 as fallback), then repeated merging of the
    adjacent pair whose concatenation is the highest-scoring piece (leftmost pair on ties).
    :class:`GenerationError` when an id is beyond the vocabulary."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    ids = [BOS]
    if raw:
        space = model.piece_id(b" ")
        ids.append(space if space >= 0 else ord(" ") + 3)
    # split into code points the way the C loop does: a unit starts at every byte that is not a
    # continuation byte (10xxxxxx) and takes continuation bytes while it is shorter than 4 bytes
    unit = bytearray()
    for i, b in enumerate(raw):
        if b & 0xC0 != 0x80:
            unit = bytearray()
        unit.append(b)
        nxt = raw[i + 1] if i + 1 < len(raw) else 0
        if nxt & 0xC0 == 0x80 and len(unit) < 4:
            continue
        tid = model.piece_id(bytes(unit))
        if tid >= 0:
            ids.append(tid)
        else:
            ids.extend(c + 3 for c in unit)
        unit = bytearray()
    bad = next((t for t in ids if not 0 <= t < len(model.pieces)), None)
    if bad is not None:  # before the merges look it up, as refrun.c checks
        raise GenerationError(f"the prompt needs token id {bad}, beyond the vocabulary of {len(model.pieces)} "
                              f"tokens (BOS is 1, byte tokens 3 to 258)")
    pieces, scores = model.pieces, model.scores
    while True:
        best, best_id, at = -1e10, -1, -1
        for i in range(len(ids) - 1):
            tid = model.piece_id(pieces[ids[i]] + pieces[ids[i + 1]])
            if tid >= 0 and scores[tid] > best:
                best, best_id, at = scores[tid], tid, i
        if at < 0:
            return ids
        ids[at : at + 2] = [best_id]


def decode_piece(model: Model, prev: int, token: int) -> bytes:
    """Bytes that stand for ``token`` after ``prev``: no leading space right after BOS, and a
    ``<0xHH>`` piece becomes that single byte."""
    piece = model.pieces[token]
    if prev == BOS and piece[:1] == b" ":
        piece = piece[1:]
    m = _BYTE_PIECE.match(piece)
    if m:
        piece = bytes([int(m.group(1), 16)])
    return piece


def printable(piece: bytes) -> bytes:
    """What the C runners actually print for a piece: nothing for a lone byte that is neither
    printable ASCII nor whitespace (C locale isprint/isspace)."""
    if len(piece) == 1:
        c = piece[0]
        if not (0x20 <= c <= 0x7E or c in b" \t\n\v\f\r"):
            return b""
    return piece


# --------------------------------------------------------------------------------------------------
# forward pass


def _matvec(mat: Matrix, x: list[float]) -> list[float]:
    mul = operator.mul
    return [sum(map(mul, row, x)) for row in mat]


def _rmsnorm(x: list[float], weight: list[float]) -> list[float]:
    ss = sum(v * v for v in x) / len(x) + RMS_EPS
    scale = 1.0 / math.sqrt(ss)
    return [w * (scale * v) for w, v in zip(weight, x)]


def _softmax(v: list[float]) -> list[float]:
    top = max(v)
    e = [math.exp(a - top) for a in v]
    total = sum(e)
    return [a / total for a in e]


class _Cache:
    """Keys and values per layer and position (lists grow with the position)."""

    def __init__(self, n_layers: int) -> None:
        self.keys: list[list[list[float]]] = [[] for _ in range(n_layers)]
        self.values: list[list[list[float]]] = [[] for _ in range(n_layers)]


def _rope(vec: list[float], pos: int, head_size: int) -> None:
    for i in range(0, len(vec), 2):
        freq = 1.0 / ROPE_BASE ** ((i % head_size) / head_size)
        angle = pos * freq
        c, s = math.cos(angle), math.sin(angle)
        a, b = vec[i], vec[i + 1]
        vec[i] = a * c - b * s
        vec[i + 1] = a * s + b * c


def forward(model: Model, cache: _Cache, token: int, pos: int) -> list[float]:
    """Logits for ``token`` at position ``pos``; ``cache`` must hold positions 0..pos-1."""
    sh = model.shape
    hs = sh.head_size
    group = sh.n_heads // sh.n_kv_heads
    root = math.sqrt(hs)
    mul = operator.mul
    x = list(model.embedding[token])
    for index, layer in enumerate(model.layers):
        xn = _rmsnorm(x, layer.att_norm)
        q = _matvec(layer.wq, xn)
        k = _matvec(layer.wk, xn)
        v = _matvec(layer.wv, xn)
        _rope(q, pos, hs)  # k is rotated over its own (kv_dim) width: the same pairs as in C
        _rope(k, pos, hs)
        keys, values = cache.keys[index], cache.values[index]
        if len(keys) != pos:
            raise ValueError(f"cache holds {len(keys)} positions, forward called at {pos}")
        keys.append(k)
        values.append(v)
        att_out: list[float] = []
        for h in range(sh.n_heads):
            qh = q[h * hs : (h + 1) * hs]
            kv0 = (h // group) * hs
            scores = [sum(map(mul, qh, kt[kv0 : kv0 + hs])) / root for kt in keys]
            weights = _softmax(scores)
            out = [0.0] * hs
            for a, vt in zip(weights, values):
                out = [o + a * vv for o, vv in zip(out, vt[kv0 : kv0 + hs])]
            att_out.extend(out)
        x = [a + b for a, b in zip(x, _matvec(layer.wo, att_out))]
        xn = _rmsnorm(x, layer.ffn_norm)
        gate = _matvec(layer.w_gate, xn)
        up = _matvec(layer.w_up, xn)
        act = [g / (1.0 + math.exp(-g)) * u if g > -700.0 else 0.0 for g, u in zip(gate, up)]
        x = [a + b for a, b in zip(x, _matvec(layer.w_down, act))]
    return _matvec(model.classifier, _rmsnorm(x, model.final_norm))


# --------------------------------------------------------------------------------------------------
# sampling and generation


def _f32(v: float) -> float:
    """The float32 value nearest to ``v`` (how the C runners store temperature and top-p)."""
    rounded: float = struct.unpack("<f", struct.pack("<f", v))[0]
    return rounded


class XorShiftRng:
    """run.c's generator: xorshift64* state, the upper 32 bits of the product as output."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self.MASK

    def next_u32(self) -> int:
        s = self.state
        s ^= s >> 12
        s = (s ^ (s << 25)) & self.MASK
        s ^= s >> 27
        self.state = s
        return ((s * 0x2545F4914F6CDD1D) & self.MASK) >> 32

    def next_unit(self) -> float:
        """A float in [0, 1) with 24 random bits, exactly the C runners' coin."""
        return (self.next_u32() >> 8) / 16777216.0


def _argmax(logits: list[float]) -> tuple[int, float]:
    """First index of the maximum, and its lead over the runner-up."""
    best = 0
    top = logits[0]
    for i in range(1, len(logits)):
        if logits[i] > top:
            top = logits[i]
            best = i
    second = max((v for i, v in enumerate(logits) if i != best), default=-math.inf)
    return best, top - second


def _scan(probs: Sequence[float], coin: float) -> tuple[int, float]:
    """Index where the running sum first exceeds ``coin`` (the last one if never), and the distance
    from ``coin`` to the nearer edge of that index's interval."""
    cdf = 0.0
    for i, p in enumerate(probs):
        below = cdf
        cdf += p
        if coin < cdf:
            return i, min(coin - below, cdf - coin)
    return len(probs) - 1, 0.0


def _sample(logits: list[float], temperature: float, topp: float, rng: XorShiftRng) -> tuple[int, float]:
    """run.c's sampler in float64: argmax at temperature 0, else softmax(logits / temperature),
    a coin from the generator, then a scan of the whole distribution (topp <= 0 or >= 1) or of
    the nucleus: the tokens of probability >= (1 - topp) / (n - 1), most likely first, up to the
    first whose running sum passes topp, with the coin scaled by that sum."""
    if temperature == 0.0:
        return _argmax(logits)
    probs = _softmax([v / temperature for v in logits])
    coin = rng.next_unit()
    if topp <= 0 or topp >= 1:
        return _scan(probs, coin)
    cutoff = (1.0 - topp) / (len(probs) - 1)
    cand = sorted(((p, i) for i, p in enumerate(probs) if p >= cutoff), key=lambda c: -c[0])
    mass = 0.0
    last = len(cand) - 1
    for j, (p, _) in enumerate(cand):
        mass += p
        if mass > topp:
            last = j
            break
    j, margin = _scan([p for p, _ in cand[: last + 1]], coin * mass)
    return cand[j][1], margin


def generate(
    model: Model,
    steps: int,
    prompt: str | bytes | Sequence[int] | None = None,
    temperature: float = 0.0,
    topp: float = 0.9,
    seed: int = 0,
) -> Generation:
    """Generation with run.c's loop and sampler: ``steps`` positions (0 or more than seq_len means
    seq_len), prompt tokens forced, stop when BOS would come next; temperature, top-p and seed
    normalised as run.c does (seed 0 = the current time).

    ``prompt`` is text (encoded with :func:`encode`), a list of token ids (used as the encoded
    prompt, BOS included) or None for no prompt."""
    sh = model.shape
    steps = max(steps, 0)
    if steps == 0 or steps > sh.seq_len:
        steps = sh.seq_len
    temperature = _f32(max(temperature, 0.0))
    topp = _f32(0.9 if topp < 0.0 or topp > 1.0 else topp)
    rng = XorShiftRng(seed if seed != 0 else int(time.time()) & 0xFFFFFFFF)
    if prompt is None:
        ids = [BOS]
    elif isinstance(prompt, (str, bytes)):
        ids = encode(model, prompt)
    else:
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("a token prompt needs at least one token (BOS)")
    bad = next((t for t in ids if not 0 <= t < sh.vocab_size), None)
    if bad is not None:
        raise GenerationError(f"the prompt needs token id {bad}, beyond the vocabulary of {sh.vocab_size} tokens "
                              f"(BOS is 1, byte tokens 3 to 258)")
    cache = _Cache(sh.n_layers)
    out = bytearray()
    tokens = list(ids)
    margin = math.inf
    token = ids[0]
    pos = 0
    while pos < steps:
        logits = forward(model, cache, token, pos)
        if pos < len(ids) - 1:
            nxt = ids[pos + 1]
        else:
            nxt, gap = _sample(logits, temperature, topp, rng)
            margin = min(margin, gap)
            tokens.append(nxt)
        pos += 1
        if nxt == BOS:
            tokens.pop()
            break
        out += printable(decode_piece(model, token, nxt))
        token = nxt
    out += b"\n"
    return Generation(bytes(out), tokens, pos, len(ids), margin)


def generate_greedy(
    model: Model, steps: int, prompt: str | bytes | Sequence[int] | None = None
) -> tuple[str, list[int]]:
    """``(text, tokens)`` of greedy :func:`generate`: the text a C runner prints with ``-t 0``
    (UTF-8 decoded, undecodable bytes replaced, final newline included) and the token sequence."""
    g = generate(model, steps, prompt)
    return g.text, g.tokens


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="float64 reference generation for llama2.c checkpoints")
    ap.add_argument("checkpoint")
    ap.add_argument("-z", "--tokenizer", default="tokenizer.bin")
    ap.add_argument("-n", "--steps", type=int, default=256)
    ap.add_argument("-i", "--prompt", default=None)
    ap.add_argument("-t", "--temperature", type=float, default=0.0)
    ap.add_argument("-p", "--topp", type=float, default=0.9)
    ap.add_argument("-s", "--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model = load(args.checkpoint, args.tokenizer)
    g = generate(model, args.steps, args.prompt, args.temperature, args.topp, args.seed)
    sys.stdout.buffer.write(g.stdout)
    sys.stderr.write(f"positions={g.positions} prompt_tokens={g.prompt_tokens} min_margin={g.min_margin:g}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
