"""The pure-Python parts of an LLM decode loop, as gated benchmarks that run anywhere.

No torch, no compiler, nothing downloaded: the host-side work that wraps every decode step
(tokenizing the prompt, sampling the next token, decoding pieces) and a small transformer forward
pass in plain Python with the shapes of llama2.c's stories260K model. Each test records the time
of one operation and a throughput metric (higher is better), gated per node like any suite.

    pytest suites/test_python_llm.py --llmperf-node=mybox --llmperf-save-baseline
    pytest suites/test_python_llm.py --llmperf-node=mybox
"""

from __future__ import annotations

import math
import random

import pytest

# ---------------------------------------------------------------------------------------------
# A byte-pair-encoding tokenizer in the llama2.c style: code points first, then repeated merges of
# the adjacent pair whose merged piece has the highest score.


def make_vocab(size: int, seed: int = 7) -> tuple[list[str], dict[str, int], list[float]]:
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    pieces = [" "] + list(letters) + [c.upper() for c in letters] + list(".,!?'") + [" " + c for c in letters]
    seen = set(pieces)
    while len(pieces) < size:
        a, b = rng.choice(pieces), rng.choice(pieces[1:])
        merged = a + b
        if len(merged) <= 8 and merged not in seen:
            seen.add(merged)
            pieces.append(merged)
    scores = [-float(i) for i in range(len(pieces))]  # earlier (shorter) pieces merge first
    return pieces, {p: i for i, p in enumerate(pieces)}, scores


def bpe_encode(text: str, index: dict[str, int], pieces: list[str], scores: list[float]) -> list[int]:
    tokens = [index[c] for c in text if c in index]
    while True:
        best, best_at = -math.inf, -1
        for i in range(len(tokens) - 1):
            merged = pieces[tokens[i]] + pieces[tokens[i + 1]]
            j = index.get(merged)
            if j is not None and scores[j] > best:
                best, best_at = scores[j], i
        if best_at < 0:
            return tokens
        tokens[best_at:best_at + 2] = [index[pieces[tokens[best_at]] + pieces[tokens[best_at + 1]]]]


STORY = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball under a tree. She ran to the ball and kicked it very hard. "
)


@pytest.mark.parametrize("vocab", [512, 4096])
def test_tokenizer_encode(llmperf, vocab: int) -> None:
    pieces, index, scores = make_vocab(vocab)
    text = STORY * 2
    tokens = llmperf.measure(bpe_encode, text, index, pieces, scores)
    assert "".join(pieces[t] for t in tokens) == "".join(c for c in text if c in index)
    llmperf.rate("chars_per_s", len(text), unit="char/s")


# ---------------------------------------------------------------------------------------------
# Sampling the next token: softmax with temperature, then top-p (nucleus) selection.


def sample_top_p(logits: list[float], temperature: float, top_p: float, coin: float) -> int:
    peak = max(logits)
    probs = [math.exp((x - peak) / temperature) for x in logits]
    total = math.fsum(probs)
    cutoff = (1.0 - top_p) / (len(logits) - 1)
    candidates = sorted(((p / total, i) for i, p in enumerate(probs) if p / total >= cutoff), reverse=True)
    mass, last = 0.0, len(candidates) - 1
    for k, (p, _) in enumerate(candidates):
        mass += p
        if mass > top_p:
            last = k
            break
    r = coin * mass
    acc = 0.0
    for p, i in candidates[: last + 1]:
        acc += p
        if r < acc:
            return i
    return candidates[last][1]


@pytest.mark.parametrize("vocab", [512, 32000])
def test_sample_top_p(llmperf, vocab: int) -> None:
    rng = random.Random(11)
    logits = [rng.gauss(0.0, 3.0) for _ in range(vocab)]
    token = llmperf.measure(sample_top_p, logits, 1.0, 0.9, 0.5)
    assert 0 <= token < vocab


# ---------------------------------------------------------------------------------------------
# One decode step of a small llama-style transformer in plain Python (stories260K shapes:
# dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512), with a KV cache.

CONFIG_260K = {"dim": 64, "hidden": 172, "layers": 5, "heads": 8, "kv_heads": 4, "vocab": 512, "seq_len": 64}


def _matrix(rng: random.Random, rows: int, cols: int) -> list[list[float]]:
    scale = 1.0 / math.sqrt(cols)
    return [[rng.uniform(-scale, scale) for _ in range(cols)] for _ in range(rows)]


def _matvec(w: list[list[float]], x: list[float]) -> list[float]:
    return [math.fsum(a * b for a, b in zip(row, x)) for row in w]


def _rmsnorm(x: list[float], weight: list[float]) -> list[float]:
    scale = 1.0 / math.sqrt(math.fsum(v * v for v in x) / len(x) + 1e-5)
    return [v * scale * g for v, g in zip(x, weight)]


class TinyLlama:
    def __init__(self, dim, hidden, layers, heads, kv_heads, vocab, seq_len, seed=3):
        rng = random.Random(seed)
        self.dim, self.layers, self.heads, self.kv_heads = dim, layers, heads, kv_heads
        self.head = dim // heads
        kv_dim = dim * kv_heads // heads
        self.embed = _matrix(rng, vocab, dim)
        self.wq = [_matrix(rng, dim, dim) for _ in range(layers)]
        self.wk = [_matrix(rng, kv_dim, dim) for _ in range(layers)]
        self.wv = [_matrix(rng, kv_dim, dim) for _ in range(layers)]
        self.wo = [_matrix(rng, dim, dim) for _ in range(layers)]
        self.w1 = [_matrix(rng, hidden, dim) for _ in range(layers)]
        self.w2 = [_matrix(rng, dim, hidden) for _ in range(layers)]
        self.w3 = [_matrix(rng, hidden, dim) for _ in range(layers)]
        self.norm = [1.0] * dim
        self.seq_len = seq_len
        self.reset()

    def reset(self) -> None:
        self.k_cache = [[] for _ in range(self.layers)]
        self.v_cache = [[] for _ in range(self.layers)]
        self.pos = 0

    def _rope(self, v: list[float], pos: int) -> list[float]:
        out = list(v)
        for i in range(0, len(v), 2):
            freq = 10000.0 ** (-((i % self.head) / self.head))
            c, s = math.cos(pos * freq), math.sin(pos * freq)
            out[i], out[i + 1] = v[i] * c - v[i + 1] * s, v[i] * s + v[i + 1] * c
        return out

    def step(self, token: int) -> int:
        pos = self.pos
        x = list(self.embed[token])
        group = self.heads // self.kv_heads
        for layer in range(self.layers):
            h = _rmsnorm(x, self.norm)
            q = self._rope(_matvec(self.wq[layer], h), pos)
            self.k_cache[layer].append(self._rope(_matvec(self.wk[layer], h), pos))
            self.v_cache[layer].append(_matvec(self.wv[layer], h))
            att_out = []
            for head in range(self.heads):
                qs = q[head * self.head:(head + 1) * self.head]
                kv = (head // group) * self.head
                scores = [math.fsum(a * b for a, b in zip(qs, k[kv:kv + self.head])) / math.sqrt(self.head)
                          for k in self.k_cache[layer]]
                peak = max(scores)
                weights = [math.exp(s - peak) for s in scores]
                total = math.fsum(weights)
                for d in range(self.head):
                    att_out.append(math.fsum(w * v[kv + d] for w, v in zip(weights, self.v_cache[layer])) / total)
            x = [a + b for a, b in zip(x, _matvec(self.wo[layer], att_out))]
            h = _rmsnorm(x, self.norm)
            gate, up = _matvec(self.w1[layer], h), _matvec(self.w3[layer], h)
            act = [g / (1.0 + math.exp(-g)) * u for g, u in zip(gate, up)]
            x = [a + b for a, b in zip(x, _matvec(self.w2[layer], act))]
        logits = _matvec(self.embed, _rmsnorm(x, self.norm))
        self.pos += 1
        return max(range(len(logits)), key=logits.__getitem__)


@pytest.fixture(scope="module")
def tiny_llama() -> TinyLlama:
    return TinyLlama(**CONFIG_260K)


@pytest.mark.llmperf(max_time=3)
def test_tiny_llama_decode(llmperf, tiny_llama: TinyLlama) -> None:
    steps = 8

    def decode() -> list[int]:
        tiny_llama.reset()
        out = [1]
        for _ in range(steps):
            out.append(tiny_llama.step(out[-1]))
        return out

    tokens = llmperf.measure(decode)
    assert len(tokens) == steps + 1 and all(0 <= t < CONFIG_260K["vocab"] for t in tokens)
    assert decode() == tokens  # greedy decoding is deterministic
    llmperf.rate("tok_per_s", steps, unit="tok/s")
