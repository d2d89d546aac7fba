"""The Llama-style decoder of the decoding benchmarks: static KV cache, llama2.c loading against
the float64 reference, speculative decoding, int8 weight-only quantization, torch.compile."""

import copy
import itertools
import math
import time

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.llama2c import models, pyref  # noqa: E402
from pytest_llmperf.torch_models import generate as gen  # noqa: E402
from pytest_llmperf.torch_models import llama, quantize  # noqa: E402

PROMPT = [1, 17, 42, 99, 3, 250, 7]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """One torch thread for this module (see conftest.one_torch_thread)."""


@pytest.fixture
def tiny():
    return llama.build_llama(llama.get_decode_config("tiny"), seed=0)


def greedy_tokens(model, n, prompt=PROMPT, **kw):
    return gen.generate(model, prompt, n, **kw).tokens


# -- configurations ------------------------------------------------------------------------------------

def test_decode_sizes():
    tiny = llama.get_decode_config("tiny")
    assert (tiny.dim, tiny.n_layers, tiny.n_heads, tiny.n_kv_heads, tiny.vocab_size,
            tiny.hidden_dim, tiny.max_seq_len) == (64, 2, 4, 2, 512, 172, 256)
    assert tiny.head_dim == 16
    for name in ("stories15M", "stories42M", "stories110M"):
        cfg, shape = llama.get_decode_config(name), models.CONFIGS[name]
        assert (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
                cfg.vocab_size, cfg.max_seq_len) == (shape.dim, shape.hidden_dim, shape.n_layers,
                                                     shape.n_heads, shape.n_kv_heads,
                                                     shape.vocab_size, shape.seq_len)
        assert cfg.tied_classifier
    draft, target = llama.get_decode_config("draft-15M"), llama.get_decode_config("stories15M")
    assert draft.vocab_size == target.vocab_size and draft.params() < target.params() / 5
    assert llama.get_decode_config("draft-tiny").vocab_size == tiny.vocab_size
    big = llama.get_decode_config("llama2-7b")
    assert (big.dim, big.n_layers, big.n_heads, big.hidden_dim, big.max_seq_len) == (
        4096, 32, 32, 11008, 4096)
    assert 6.6e9 < big.params() < 6.8e9
    for name, cfg in llama.DECODE_SIZES.items():
        assert cfg.name == name


def test_unknown_size():
    with pytest.raises(llama.UnknownSize, match=r"unknown decode model 'foo' \(known: tiny, "):
        llama.get_decode_config("foo")
    assert issubclass(llama.UnknownSize, ValueError)


@pytest.mark.parametrize("change, field", [
    ({"dim": 0}, "dim"), ({"n_heads": 3}, "n_heads"), ({"n_kv_heads": 3}, "n_kv_heads"),
    ({"vocab_size": -1}, "vocab_size"), ({"norm_eps": 0.0}, "norm_eps"),
    ({"rope_base": float("nan")}, "rope_base"), ({"max_seq_len": 2.5}, "max_seq_len"),
    ({"dim": 48, "n_heads": 16, "n_kv_heads": 16}, "head_dim"),
])
def test_config_validation(change, field):
    fields = {"name": "x", "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 512,
                  "hidden_dim": 172, "max_seq_len": 256}
    fields.update(change)
    with pytest.raises(ValueError, match=field):
        llama.LlamaConfig(**fields)


# -- the model and its cache ------------------------------------------------------------------------------

def test_build_is_seeded_and_logits_not_degenerate(tiny):
    again = llama.build_llama(tiny.config, seed=0)
    other = llama.build_llama(tiny.config, seed=1)
    idx = torch.tensor([PROMPT])
    with torch.no_grad():
        a, b, c = tiny(idx), again(idx), other(idx)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (1, len(PROMPT), 512)
    assert torch.isfinite(a).all() and 2.0 < float(a.std()) < 8.0
    # the next-token choice depends on the context
    assert len(set(a[0].argmax(-1).tolist())) > 1


def test_setup_caches_shapes_dtype_and_limits(tiny):
    tiny.setup_caches(2, 40)
    for block in tiny.layers:
        cache = block.attention.kv_cache
        assert cache.k_cache.shape == cache.v_cache.shape == (2, 2, 40, 16)
        assert cache.k_cache.dtype == torch.float32 and cache.k_cache.device.type == "cpu"
    assert tiny.causal_mask.shape == (40, 40) and tiny.causal_mask.dtype == torch.bool
    with pytest.raises(ValueError, match="max_seq_length 257 must be in 1..256"):
        tiny.setup_caches(1, 257)
    half = llama.build_llama(tiny.config, dtype=torch.bfloat16)
    half.setup_caches(1, 8)
    assert half.layers[0].attention.kv_cache.k_cache.dtype == torch.bfloat16
    fresh = llama.build_llama(tiny.config)
    with pytest.raises(RuntimeError, match="setup_caches"):
        fresh(torch.tensor([[1]]), torch.tensor([0]))


def test_kv_cache_decode_equals_full_forward(tiny):
    gen_ = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 512, (1, 48), generator=gen_)
    tiny.setup_caches(1, 64)
    with torch.no_grad():
        full = tiny(idx)  # no cache: a causal forward over the whole sequence
        pieces = [tiny(idx[:, :9], torch.arange(9))]  # prefill
        pieces += [tiny(idx[:, 9:14], torch.arange(9, 14))]  # a chunk in the middle
        for p in range(14, 48):  # one token at a time
            pieces.append(tiny(idx[:, p:p + 1], torch.tensor([p])))
    cached = torch.cat(pieces, dim=1)
    assert cached.shape == full.shape
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)


def test_stale_cache_positions_are_masked(tiny):
    """Later positions left over from an earlier sequence do not leak into a new one."""
    tiny.setup_caches(1, 32)
    a = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    b = torch.tensor([[100, 200, 300]])
    with torch.no_grad():
        tiny(a, torch.arange(8))
        reused = tiny(b, torch.arange(3))
        tiny.setup_caches(1, 32)
        clean = tiny(b, torch.arange(3))
    torch.testing.assert_close(reused, clean, atol=1e-5, rtol=1e-5)


# -- llama2.c checkpoints against the float64 reference -----------------------------------------------------

SMALL = {"dim": 32, "hidden_dim": 72, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 300,
             "seq_len": 64}


@pytest.fixture(scope="module")
def l2c_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("l2c")
    tok = root / "tok300.bin"
    models.write_tokenizer(tok, SMALL["vocab_size"])
    files = {}
    for shared in (True, False):
        shape = models.ModelConfig(**SMALL, shared_classifier=shared)
        path = root / f"small-{'shared' if shared else 'separate'}.bin"
        models.write_checkpoint(path, shape, seed=7)
        files[shared] = path
    return files, tok


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_load_llama2c_matches_float64_reference(l2c_files, shared):
    files, tok = l2c_files
    model = llama.load_llama2c(files[shared])
    cfg = model.config
    assert cfg.tied_classifier is shared and model.is_tied is shared
    assert (cfg.dim, cfg.n_kv_heads, cfg.max_seq_len, cfg.name) == (32, 2, 64, files[shared].stem)
    ref = pyref.load(str(files[shared]), str(tok))
    prompt = [1, 40, 41, 60]
    steps = 40
    _, ref_tokens = pyref.generate_greedy(ref, steps, prompt)
    new_ref = ref_tokens[len(prompt):]
    assert len(new_ref) == steps - len(prompt) + 1  # no early stop at BOS
    ours = gen.generate(model, prompt, len(new_ref)).tokens
    assert ours == new_ref
    # logits of every position of the whole sequence, cached decode and float64 reference
    seq = prompt + new_ref[:-1]
    cache = pyref._Cache(ref.shape.n_layers)
    ref_logits = torch.tensor([pyref.forward(ref, cache, t, p) for p, t in enumerate(seq)],
                              dtype=torch.float64)
    model.setup_caches(1, len(seq))
    with torch.no_grad():
        logits = model(torch.tensor([seq]), torch.arange(len(seq)))[0].double()
    assert float(ref_logits.std()) > 1.0
    torch.testing.assert_close(logits, ref_logits, atol=2e-4, rtol=1e-4)


def test_load_llama2c_expected_config(l2c_files):
    files, _ = l2c_files
    path = files[True]
    shape = models.ModelConfig(**SMALL)
    good = llama.config_from_llama2c("small", shape)
    model = llama.load_llama2c(path, expected=good)
    assert model.config.name == "small"
    with pytest.raises(llama.CheckpointError) as info:
        llama.load_llama2c(path, expected=llama.get_decode_config("tiny"))
    msg = str(info.value)
    assert msg.startswith(f"checkpoint {path} has dim 32, n_layers 2")
    assert "but decode model 'tiny' expects dim 64, n_layers 2, n_heads 4" in msg
    assert "\n" not in msg
    sep = llama.config_from_llama2c("small-sep", models.ModelConfig(**SMALL, shared_classifier=False))
    with pytest.raises(llama.CheckpointError, match="separate classifier"):
        llama.load_llama2c(path, expected=sep)


def test_load_llama2c_file_errors(tmp_path, l2c_files):
    files, _ = l2c_files
    missing = tmp_path / "nope.bin"
    with pytest.raises(llama.CheckpointError, match=f"{missing}: no such file"):
        llama.load_llama2c(missing)
    truncated = tmp_path / "cut.bin"
    truncated.write_bytes(files[True].read_bytes()[:-100])
    with pytest.raises(llama.CheckpointError, match=f"{truncated}: size .* truncated"):
        llama.load_llama2c(truncated)
    assert issubclass(llama.CheckpointError, ValueError)


def test_load_llama2c_dtype(l2c_files):
    files, _ = l2c_files
    model = llama.load_llama2c(files[False], dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    full = llama.load_llama2c(files[False])
    idx = torch.tensor([[1, 40, 41, 60, 70]])
    with torch.no_grad():
        torch.testing.assert_close(model(idx), full(idx), atol=0.3, rtol=0.05)


# -- generation ------------------------------------------------------------------------------------------

def test_generate_rejects_too_long_requests(tiny):
    with pytest.raises(ValueError, match=r"prompt of 7 tokens \+ 250 new tokens = 257 positions "
                                         r"exceeds max_seq_len 256"):
        gen.generate(tiny, PROMPT, 250)
    draft = llama.build_llama(llama.get_decode_config("draft-tiny"))
    with pytest.raises(ValueError, match=r"7 tokens \+ 247 new tokens \+ speculate_k 4 = 258"):
        gen.generate(tiny, PROMPT, 247, draft=draft)
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate(tiny, PROMPT, 0)
    with pytest.raises(ValueError, match="at least one token"):
        gen.generate(tiny, [], 4)
    with pytest.raises(ValueError, match="separate model"):
        gen.generate(tiny, PROMPT, 4, draft=tiny)
    # the largest request that fits
    assert len(gen.generate(tiny, list(range(1, 251)), 6).tokens) == 6


def test_generation_metrics_with_a_fake_clock(tiny):
    ticks = itertools.count()
    syncs = []
    g = gen.generate(tiny, PROMPT, 10, clock=lambda: float(next(ticks)),
                     sync=lambda: syncs.append(1))
    assert (g.ttft_s, g.decode_s, g.prompt_len, len(g.tokens)) == (1.0, 1.0, 7, 10)
    assert g.decode_tok_per_s == 9.0 and g.ms_per_token == pytest.approx(1000 / 9)
    assert len(syncs) == 3 and g.per_token_s is None
    assert (g.accepted, g.proposed, g.acceptance_rate) == (0, 0, None)
    ticks = itertools.count()
    g = gen.generate(tiny, PROMPT, 10, clock=lambda: float(next(ticks)), per_token=True)
    assert g.per_token_s == [1.0] * 9 and g.decode_s == 10.0


def test_generation_metrics_real_clock(tiny):
    g = gen.generate(tiny, torch.tensor([PROMPT]), 12)
    assert g.ttft_s > 0 and g.decode_s > 0
    assert g.decode_tok_per_s == pytest.approx((len(g.tokens) - 1) / g.decode_s)
    assert g.ms_per_token == pytest.approx(1000 * g.decode_s / 11)
    one = gen.generate(tiny, PROMPT, 1)
    assert len(one.tokens) == 1 and math.isnan(one.decode_tok_per_s)
    assert one.tokens == g.tokens[:1]
    assert all(0 <= t < 512 for t in g.tokens)


def test_generate_reuses_big_enough_caches(tiny):
    tiny.setup_caches(1, 200)
    cache = tiny.layers[0].attention.kv_cache
    a = greedy_tokens(tiny, 20)
    assert tiny.layers[0].attention.kv_cache is cache and tiny.max_seq_length == 200
    tiny.clear_caches()
    assert greedy_tokens(tiny, 20) == a
    assert tiny.max_seq_length == len(PROMPT) + 20


def test_sampling_is_seeded(tiny):
    a = gen.generate(tiny, PROMPT, 24, temperature=1.0, seed=5).tokens
    b = gen.generate(tiny, PROMPT, 24, temperature=1.0, seed=5).tokens
    c = gen.generate(tiny, PROMPT, 24, temperature=1.0, seed=6).tokens
    assert a == b and a != c
    assert a != greedy_tokens(tiny, 24)


def test_sample_draws_the_softmax_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([gen.sample(logits.expand(4000, -1), 1.0, g) for _ in range(5)])
    freq = torch.bincount(draws.flatten(), minlength=4).double() / draws.numel()
    torch.testing.assert_close(freq, torch.softmax(logits[0].double(), -1), atol=0.01, rtol=0)
    assert gen.sample(logits, 0.0).tolist() == [[2]]


# -- speculative decoding ------------------------------------------------------------------------------------

def _draft(kind, target):
    if kind == "copy":
        return copy.deepcopy(target)
    if kind == "random":
        return llama.build_llama(llama.get_decode_config("draft-tiny"), seed=11)
    return quantize.quantize_int8_(copy.deepcopy(target))


@pytest.mark.parametrize("kind", ["copy", "random", "int8"])
@pytest.mark.parametrize("k", [1, 4, 6])
def test_speculative_greedy_equals_plain_greedy(tiny, kind, k):
    n = 40
    plain = greedy_tokens(tiny, n)
    g = gen.generate(tiny, PROMPT, n, draft=_draft(kind, tiny), speculate_k=k)
    assert g.tokens == plain
    # every round verifies its proposals and adds the target's own token
    assert len(g.tokens) - 1 == g.accepted + g.rounds
    assert 0 <= g.accepted <= g.proposed <= k * g.rounds
    assert g.proposed > 0 and g.acceptance_rate == g.accepted / g.proposed
    if kind == "copy":
        assert g.acceptance_rate == 1.0 and g.rounds == math.ceil((n - 1) / (k + 1))
    elif kind == "random":
        assert g.acceptance_rate < 0.3
    else:
        assert g.acceptance_rate > 0.6


def test_speculative_sampling(tiny):
    draft = copy.deepcopy(tiny)
    a = gen.generate(tiny, PROMPT, 30, draft=draft, temperature=0.8, seed=2)
    b = gen.generate(tiny, PROMPT, 30, draft=draft, temperature=0.8, seed=2)
    assert a.tokens == b.tokens and len(a.tokens) == 30
    assert a.acceptance_rate > 0.9  # draft == target: p/q is 1 up to rounding
    assert len(a.tokens) - 1 == a.accepted + a.rounds
    other = _draft("random", tiny)
    c = gen.generate(tiny, PROMPT, 30, draft=other, temperature=0.8, seed=2)
    assert len(c.tokens) == 30 and all(0 <= t < 512 for t in c.tokens)


# -- int8 weight-only quantization ---------------------------------------------------------------------------

def _linear_bytes(model):
    return sum(m.weight.numel() * m.weight.element_size()
               + (m.scales.numel() * m.scales.element_size() if hasattr(m, "scales") else 0)
               for m in model.modules()
               if isinstance(m, (torch.nn.Linear, quantize.Int8WeightOnlyLinear)))


def test_int8_quantization(tiny):
    wq_float = tiny.layers[0].attention.wq.weight.detach().clone()
    q = quantize.quantize_int8_(copy.deepcopy(tiny))
    assert quantize.is_quantized(q) and not quantize.is_quantized(tiny)
    linears = [m for m in q.modules() if isinstance(m, quantize.Int8WeightOnlyLinear)]
    assert len(linears) == 7 * 2 + 1  # wq wk wv wo w1 w2 w3 per layer, the classifier
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())
    assert isinstance(q.tok_embeddings, torch.nn.Embedding)
    layer = q.layers[0].attention.wq
    assert layer.weight.dtype == torch.int8 and layer.weight.shape == (64, 64)
    assert layer.scales.shape == (64,)  # one scale per output channel
    torch.testing.assert_close(layer.scales, wq_float.abs().amax(dim=1) / 127)
    assert (layer.weight.abs().amax(dim=1) == 127).all()
    assert float((layer.dequantized() - wq_float).abs().max()) <= float(layer.scales.max()) / 2 + 1e-7
    # logits (std about 4): int8 rounding moves them by 0.03 rms (0.8% of their spread) and at
    # most about 0.2 over these 47 x 512 values; tolerance rms < 0.05, max < 0.3
    idx = torch.tensor([PROMPT + list(range(100, 140))])
    with torch.no_grad():
        lf, lq = tiny(idx), q(idx)
    assert float((lf - lq).pow(2).mean().sqrt()) < 0.05
    assert float((lf - lq).abs().max()) < 0.3
    # the same next-token choice at (almost) every position of a teacher-forced sequence
    agree = (lf.argmax(-1) == lq.argmax(-1)).double().mean()
    assert agree >= 0.95
    # free-running greedy: the first tokens agree
    assert greedy_tokens(q, 16)[:8] == greedy_tokens(tiny, 16)[:8]
    # memory traffic of the Linears: a quarter plus one float scale per row
    ratio = _linear_bytes(q) / _linear_bytes(tiny)
    assert 0.25 < ratio < 0.27
    # weight bytes per token: the Linears, the 5 float norms and one float embedding row
    assert llama.weight_bytes_per_token(q) == _linear_bytes(q) + 4 * (5 * 64) + 4 * 64
    assert quantize.quantize_int8_(q) is q and _linear_bytes(q) == _linear_bytes(
        quantize.quantize_int8_(q))


def test_int8_of_a_tied_model():
    cfg = llama.get_decode_config("tiny")
    tied = llama.build_llama(llama.LlamaConfig(**{**cfg.__dict__, "name": "tied",
                                                  "tied_classifier": True}))
    assert tied.is_tied
    fbytes = llama.weight_bytes_per_token(tied)
    q = quantize.quantize_int8_(tied)
    assert not q.is_tied and q.tok_embeddings.weight.dtype == torch.float32
    # the table is no longer read as the classifier: an int8 classifier plus one float row
    assert llama.weight_bytes_per_token(q) == _linear_bytes(q) + 4 * (5 * 64) + 4 * 64
    assert llama.weight_bytes_per_token(q) < fbytes / 3


# -- memory traffic ------------------------------------------------------------------------------------------

def _analytic_bytes(cfg, bytes_per=4):
    d, kv, h, L, V = cfg.dim, cfg.kv_dim, cfg.hidden_dim, cfg.n_layers, cfg.vocab_size
    layer = 2 * d + 2 * d * d + 2 * kv * d + 3 * h * d
    classifier = V * d if cfg.tied_classifier else V * d + d  # untied: plus one embedding row
    return bytes_per * (L * layer + d + classifier)


@pytest.mark.parametrize("name", ["stories15M", "llama2-7b", "tiny"])
def test_weight_bytes_per_token(name):
    cfg = llama.get_decode_config(name)
    model = llama.build_llama(cfg, device="meta")
    assert llama.weight_bytes_per_token(model) == _analytic_bytes(cfg)
    if name == "stories15M":
        # 15.2M parameters in float32, the tied table read once
        assert llama.weight_bytes_per_token(model) == 4 * cfg.params() == 60_766_848
        # llama2.c's count reads the shared table as classifier and one extra row for the lookup
        shape = models.CONFIGS[name]
        assert llama.weight_bytes_per_token(model) == shape.weight_bytes_per_token() - 4 * cfg.dim
    half = llama.build_llama(cfg, device="meta", dtype=torch.bfloat16)
    assert llama.weight_bytes_per_token(half) == _analytic_bytes(cfg, 2)


# -- torch.compile -----------------------------------------------------------------------------------------

def _cxx_compiler() -> str | None:
    """The C++ compiler inductor would build CPU kernels with (``$CXX``, else g++ or clang++)."""
    import os
    import shutil

    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")


@pytest.mark.skipif(_cxx_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler (g++ or clang++)")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, imported by inductor
def test_compiled_decode_matches_eager(tiny):
    """The compiled one-token step (CPU default of compile_decode) gives eager's tokens, greedy
    and seeded sampling. Each of the two graphs compiles at its first call: about 5 s each here
    with a warm inductor cache on disk, 40-60 s in all with a cold one."""
    step = gen.compile_decode("cpu")
    tiny.setup_caches(1, 64)
    started = time.perf_counter()
    compiled = gen.generate(tiny, PROMPT, 24, decode_fn=step)
    compile_s = time.perf_counter() - started
    again = gen.generate(tiny, PROMPT, 24, decode_fn=step)  # no recompilation: same shapes
    eager = gen.generate(tiny, PROMPT, 24)
    assert compiled.tokens == eager.tokens == again.tokens
    assert again.decode_s < compile_s
    # sampling: the seeded noise is drawn outside the graph, so the draws match eager's
    sampled = gen.generate(tiny, PROMPT, 24, decode_fn=step, temperature=0.8, seed=4)
    assert sampled.tokens == gen.generate(tiny, PROMPT, 24, temperature=0.8, seed=4).tokens
    assert sampled.tokens != compiled.tokens
