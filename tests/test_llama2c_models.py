"""Unit tests of pytest_llmperf.llama2c.models: configurations, readers, synthetic writers, cache."""

from __future__ import annotations

import math
import os
import random
import struct
import threading
from pathlib import Path

import pytest

from pytest_llmperf.llama2c import models
from pytest_llmperf.llama2c.models import (
    CONFIGS,
    ModelConfig,
    ModelFileError,
    ensure_synthetic_model,
    ensure_synthetic_q8_model,
    read_checkpoint_header,
    read_q8_header,
    read_tokenizer,
    read_weights_f64,
    write_checkpoint,
    write_q8_checkpoint,
    write_tokenizer,
)

SMALL = CONFIGS["stories260K"]
TINY = ModelConfig(dim=16, hidden_dim=40, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, seq_len=8)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "stories260K.bin"
    write_checkpoint(path, SMALL)
    return path


@pytest.fixture(scope="module")
def small_weights(small_checkpoint) -> dict:
    return read_weights_f64(small_checkpoint)


@pytest.fixture(scope="module")
def tokenizer_32k(tmp_path_factory) -> models.TokenizerInfo:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.bin"
    write_tokenizer(path, 32000)
    return read_tokenizer(path, 32000)


def floats(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def std(values: list[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def one_line_error_naming(excinfo, path) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert os.path.basename(os.fspath(path)) in message


# -- configurations --------------------------------------------------------------------------------

def test_published_file_sizes_match_the_real_files():
    assert CONFIGS["stories260K"].file_size() == 1_056_540
    assert CONFIGS["stories15M"].file_size() == 60_816_028


@pytest.mark.parametrize("name, millions", [("stories260K", 0.26), ("stories15M", 15.2),
                                            ("stories42M", 41.7), ("stories110M", 109.5)])
def test_published_parameter_counts(name, millions):
    assert round(CONFIGS[name].params() / 1e6, 2 if millions < 1 else 1) == millions


def test_configs_and_tokenizers_are_exactly_the_published_ones():
    assert set(CONFIGS) == {"stories260K", "stories15M", "stories42M", "stories110M"}
    assert all(c.shared_classifier for c in CONFIGS.values())
    assert models.TOKENIZER_FOR == {"stories260K": "tok512.bin", "stories15M": "tokenizer.bin",
                                    "stories42M": "tokenizer.bin", "stories110M": "tokenizer.bin"}
    assert (SMALL.head_size, SMALL.kv_dim) == (8, 32)


def test_n_floats_counts_the_rope_tables_and_the_separate_classifier():
    c = CONFIGS["stories15M"]
    assert c.n_floats() == c.params() + c.seq_len * c.head_size
    unshared = ModelConfig(**{**c.__dict__, "shared_classifier": False})
    assert unshared.params() == c.params() + c.vocab_size * c.dim


def test_weight_bytes_per_token():
    c = CONFIGS["stories110M"]
    # everything but the RoPE tables, plus one embedding row for the lookup
    assert c.weight_bytes_per_token() == c.file_size() - 28 - 4 * c.seq_len * c.head_size + 4 * c.dim
    unshared = ModelConfig(**{**c.__dict__, "shared_classifier": False})
    # the embedding table is read for one row only; the separate classifier whole
    assert unshared.weight_bytes_per_token() == c.weight_bytes_per_token()


def test_q8_group_size_is_halved_until_it_divides_dim_and_hidden():
    assert [CONFIGS[n].q8_group_size() for n in CONFIGS] == [4, 32, 32, 64]


# -- header reading --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_header_round_trip_of_every_published_config(tmp_path, name):
    config = CONFIGS[name]
    path = tmp_path / f"{name}.bin"
    with open(path, "wb") as fh:  # a sparse file: only the header and the size matter here
        fh.write(config.header_bytes())
        fh.truncate(config.file_size())
    assert read_checkpoint_header(path) == config


@pytest.mark.parametrize("shared", [True, False])
def test_written_checkpoint_round_trip(tmp_path, shared):
    config = ModelConfig(**{**TINY.__dict__, "shared_classifier": shared})
    path = tmp_path / "tiny.bin"
    write_checkpoint(path, config)
    assert path.stat().st_size == config.file_size()
    assert read_checkpoint_header(path) == config
    assert struct.unpack_from("<i", path.read_bytes(), 20)[0] == (300 if shared else -300)


def _bad_file(tmp_path: Path, good: bytes, case: str) -> Path:
    path = tmp_path / f"{case}.bin"
    header = list(struct.unpack_from("<7i", good))
    if case == "missing":
        return path
    if case == "directory":
        path.mkdir()
        return path
    data = {
        "truncated_by_one": good[:-1],
        "extended_by_four": good + b"\0\0\0\0",
        "versioned_magic": struct.pack("<Ii", models.VERSIONED_MAGIC, 1) + good[8:],
        "header_only": good[:28],
        "empty": b"",
        "short": good[:10],
    }.get(case)
    if data is None:
        field, value = {"zero_dim": (0, 0), "negative_layers": (2, -1), "dim_not_multiple": (3, 7),
                        "kv_not_divisor": (4, 3), "odd_head_size": (3, 64), "absurd_dim": (0, 1 << 20),
                        "absurd_seq_len": (6, 1 << 24)}[case]
        header[field] = value
        data = struct.pack("<7i", *header) + good[28:]
    path.write_bytes(data)
    return path


BAD_CASES = {
    "truncated_by_one": "truncated", "extended_by_four": "trailing data",
    "versioned_magic": "version 1", "header_only": "needs 1056540", "empty": "empty",
    "short": "shorter than", "missing": "no such file", "directory": "directory",
    "zero_dim": "dim is 0", "negative_layers": "n_layers is -1", "dim_not_multiple": "multiple of n_heads",
    "kv_not_divisor": "multiple of n_kv_heads", "odd_head_size": "is odd", "absurd_dim": "beyond any",
    "absurd_seq_len": "seq_len is 16777216",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_checkpoints_raise_one_line_naming_the_file(tmp_path, small_checkpoint, case):
    path = _bad_file(tmp_path, small_checkpoint.read_bytes(), case)
    with pytest.raises(ModelFileError, match=BAD_CASES[case]) as excinfo:
        read_checkpoint_header(path)
    one_line_error_naming(excinfo, path)


def test_size_message_describes_the_header(tmp_path, small_checkpoint):
    path = tmp_path / "stories260K.bin"
    path.write_bytes(small_checkpoint.read_bytes()[:-4])
    with pytest.raises(ModelFileError) as excinfo:
        read_checkpoint_header(path)
    assert str(excinfo.value) == (
        f"{path}: size 1056536 bytes, but its header (dim 64, hidden_dim 172, n_layers 5, n_heads 8, "
        "n_kv_heads 4, vocab 512 (shared classifier), seq_len 512) needs 1056540: "
        "truncated or not a llama2.c checkpoint")


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)


# -- synthetic checkpoint contents -----------------------------------------------------------------

def test_write_checkpoint_is_deterministic_and_seeded(tmp_path, small_checkpoint):
    again, other, chunked = tmp_path / "again.bin", tmp_path / "other.bin", tmp_path / "chunked.bin"
    write_checkpoint(again, SMALL, seed=0)
    write_checkpoint(other, SMALL, seed=1)
    write_checkpoint(chunked, SMALL, seed=0, chunk_bytes=1 << 16)  # tensors span several chunks
    assert again.read_bytes() == small_checkpoint.read_bytes() == chunked.read_bytes()
    assert other.read_bytes() != again.read_bytes()
    assert other.read_bytes()[:28] == again.read_bytes()[:28]


def test_chunk_bytes_must_be_a_multiple_of_the_block(tmp_path):
    with pytest.raises(ValueError, match="multiple"):
        write_checkpoint(tmp_path / "x.bin", TINY, chunk_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_matrices_are_finite_bell_shaped_and_of_the_intended_scale(small_weights):
    for key in ("token_embedding", "wq", "w2"):
        tensor = small_weights[key]
        if key == "token_embedding":  # without the scaled-down BOS row
            values = tensor[:SMALL.dim] + tensor[2 * SMALL.dim:]
        else:
            values = [v for layer in tensor for v in layer]
        magnitudes = [abs(v) for v in values]
        assert all(math.isfinite(v) for v in values)
        assert min(magnitudes) >= 2.0 ** -15 and max(magnitudes) < 0.125  # no zero, no denormal
        assert abs(math.fsum(values) / len(values)) < 0.002
        assert std(values) == pytest.approx(models.MATRIX_STD, rel=0.05)
        # bell-shaped: more mass near zero than a uniform distribution of the same spread
        assert sum(m < models.MATRIX_STD for m in magnitudes) / len(values) > 0.6
    assert pytest.approx(0.02, rel=0.05) == models.MATRIX_STD


def test_norms_rope_and_bos_row(small_weights):
    config = small_weights["config"]
    norms = [v for layer in small_weights["rms_att"] + small_weights["rms_ffn"] for v in layer]
    assert all(0.95 <= v <= 1.05 for v in norms)
    final_scale = models.LOGIT_STD / (math.sqrt(config.dim) * models.MATRIX_STD)
    assert all(0.95 * final_scale <= v <= 1.05 * final_scale for v in small_weights["rms_final"])
    embedding, d = small_weights["token_embedding"], config.dim
    row_rms = [math.sqrt(math.fsum(v * v for v in embedding[i * d:(i + 1) * d]) / d) for i in range(8)]
    assert row_rms[1] < 0.15 * min(row_rms[0], *row_rms[2:])
    assert small_weights["wcls"] is embedding


def test_rope_tables_hold_the_real_cos_and_sin(small_checkpoint):
    c = SMALL
    data = small_checkpoint.read_bytes()
    rope_at = 28 + 4 * (c.params())
    half = c.head_size // 2
    real = floats(data[rope_at:rope_at + 4 * c.seq_len * half])
    imag = floats(data[rope_at + 4 * c.seq_len * half:])
    for pos, i in ((0, 0), (1, 0), (3, 1), (511, 3)):
        angle = pos * 10000.0 ** (-2 * i / c.head_size)
        assert real[pos * half + i] == pytest.approx(math.cos(angle), abs=1e-6)
        assert imag[pos * half + i] == pytest.approx(math.sin(angle), abs=1e-6)


def test_logits_of_a_normalised_state_have_a_std_of_about_four(small_weights):
    config = small_weights["config"]
    rng = random.Random(5)
    d = config.dim
    spreads = []
    for _ in range(10):
        h = [rng.gauss(0.0, 1.0) for _ in range(d)]
        rms = math.sqrt(math.fsum(x * x for x in h) / d)
        scaled = [x / rms * w for x, w in zip(h, small_weights["rms_final"])]
        wcls = small_weights["wcls"]
        logits = [math.fsum(wcls[t * d + j] * scaled[j] for j in range(d)) for t in range(config.vocab_size)]
        spreads.append(std(logits))
        assert abs(logits[models.BOS_ID]) < max(logits) - 6.0
    assert sum(spreads) / len(spreads) == pytest.approx(models.LOGIT_STD, rel=0.15)


def test_read_weights_f64_shapes(small_weights):
    c = SMALL
    assert len(small_weights["token_embedding"]) == c.vocab_size * c.dim
    shapes = {"rms_att": c.dim, "wq": c.dim * c.dim, "wk": c.kv_dim * c.dim, "wv": c.kv_dim * c.dim,
              "wo": c.dim * c.dim, "rms_ffn": c.dim, "w1": c.hidden_dim * c.dim,
              "w2": c.dim * c.hidden_dim, "w3": c.hidden_dim * c.dim}
    for key, size in shapes.items():
        assert [len(layer) for layer in small_weights[key]] == [size] * c.n_layers
    assert len(small_weights["rms_final"]) == c.dim


def test_read_weights_f64_separate_classifier(tmp_path):
    config = ModelConfig(**{**TINY.__dict__, "shared_classifier": False})
    write_checkpoint(tmp_path / "t.bin", config)
    weights = read_weights_f64(tmp_path / "t.bin")
    assert len(weights["wcls"]) == config.vocab_size * config.dim
    assert weights["wcls"] != weights["token_embedding"]


# -- atomic writes ---------------------------------------------------------------------------------

def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "tiny.bin"
    write_checkpoint(path, TINY)
    before = path.read_bytes()

    def boom(config):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(models, "_rope_tables", boom)  # fails after most tensors are written
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_checkpoint(path, TINY, seed=3)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.bin"]
    assert path.read_bytes() == before


def test_failed_tokenizer_and_q8_writes_leave_nothing(tmp_path, monkeypatch):
    def boom(*args):
        raise OSError("no space left")

    monkeypatch.setattr(models, "_write_q8_tensor", boom)
    with pytest.raises(OSError):
        write_q8_checkpoint(tmp_path / "q.bin", TINY)
    monkeypatch.setattr(models, "_synthetic_pieces", boom)
    with pytest.raises(OSError):
        write_tokenizer(tmp_path / "t.bin", 512)
    assert list(tmp_path.iterdir()) == []


# -- tokenizer -------------------------------------------------------------------------------------

def encode(text: str, tok: models.TokenizerInfo, ids: dict[bytes, int] | None = None) -> list[bytes]:
    """llama2.c's encoder without BOS: a dummy space, one token per character, then repeatedly merge
    the adjacent pair whose concatenation has the highest score. ``ids``: piece -> id, if known."""
    ids = ids or {piece: i for i, piece in enumerate(tok.pieces)}
    tokens = [ids[b" "]] + [ids.get(ch.encode(), ch.encode()[0] + 3) for ch in text]
    while True:
        best = None
        for i in range(len(tokens) - 1):
            merged = ids.get(tok.pieces[tokens[i]] + tok.pieces[tokens[i + 1]])
            if merged is not None and (best is None or tok.scores[merged] > tok.scores[best[1]]):
                best = (i, merged)
        if best is None:
            return [tok.pieces[t] for t in tokens]
        tokens[best[0]:best[0] + 2] = [best[1]]


@pytest.mark.parametrize("vocab_size", [512, 32000])
def test_tokenizer_round_trip(tmp_path, vocab_size):
    path = tmp_path / "tok.bin"
    write_tokenizer(path, vocab_size)
    tok = read_tokenizer(path, vocab_size)
    assert tok.file_size == path.stat().st_size
    assert len(tok.pieces) == len(set(tok.pieces)) == vocab_size
    assert tok.pieces[:3] == [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
    assert tok.pieces[3:259] == [f"<0x{b:02X}>".encode() for b in range(256)]
    assert tok.scores[:259] == [0.0] * 259
    assert tok.scores[259:] == [-float(i) for i in range(vocab_size - 259)]
    assert tok.max_token_length == max(len(p) for p in tok.pieces)
    assert all(bytes([c]) in tok.pieces for c in range(0x20, 0x7F))
    assert b" the" in tok.pieces and (vocab_size == 512 or b"ing" in tok.pieces)
    assert encode("Once upon a time", tok) == [b" Once", b" upon", b" a", b" time"]


def test_tokenizer_encodes_every_common_word_as_one_token(tokenizer_32k):
    ids = {piece: i for i, piece in enumerate(tokenizer_32k.pieces)}
    for word in models._WORDS:
        assert encode(word, tokenizer_32k, ids) == [b" " + word.encode()]
    assert encode("The little dog played in the garden.", tokenizer_32k, ids) == [
        b" The", b" little", b" dog", b" played", b" in", b" the", b" garden", b"."]


def test_tokenizer_is_deterministic_and_seeded(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_tokenizer(tmp_path / name, 2000, seed=seed)
    a, b, c = ((tmp_path / n).read_bytes() for n in "abc")
    assert a == b != c


def test_tokenizer_trailing_tokens_are_ignored(tmp_path):
    write_tokenizer(tmp_path / "big.bin", 600)
    write_tokenizer(tmp_path / "small.bin", 512)
    big, small = read_tokenizer(tmp_path / "big.bin", 512), read_tokenizer(tmp_path / "small.bin", 512)
    assert big.pieces == small.pieces and big.scores == small.scores


def _tokenizer_bytes(entries: list[tuple[float, bytes]], max_len: int = 8) -> bytes:
    out = [struct.pack("<i", max_len)]
    for score, piece in entries:
        out.append(struct.pack("<fi", score, len(piece)) + piece)
    return b"".join(out)


@pytest.mark.parametrize("case, expected", [
    ("truncated_mid_token", "has only 299 complete tokens, the model's vocab_size is 512"),
    ("too_few_tokens", "has only 300 complete tokens, the model's vocab_size is 512"),
    ("header_only", "has only 0 complete tokens"),
    ("empty", "too short for the tokenizer header"),
    ("negative_length", "token 2 has length -1"),
    ("too_long", "token 2 has length 9, outside 0..max_token_length 8"),
    ("nan_score", "token 1 has a non-finite score"),
    ("bad_max_length", "max_token_length 0"),
    ("missing", "no such file"),
    ("directory", "directory"),
])
def test_bad_tokenizers_raise_one_line_naming_the_file(tmp_path, case, expected):
    path = tmp_path / "tokenizer.bin"
    entries = [(0.0, b"ab")] * 300
    if case == "directory":
        path.mkdir()
    elif case != "missing":
        data = {
            "truncated_mid_token": _tokenizer_bytes(entries)[:-1],
            "too_few_tokens": _tokenizer_bytes(entries),
            "header_only": struct.pack("<i", 8),
            "empty": b"",
            "negative_length": _tokenizer_bytes(entries[:2]) + struct.pack("<fi", 0.0, -1),
            "too_long": _tokenizer_bytes(entries[:2] + [(0.0, b"x" * 9)]),
            "nan_score": _tokenizer_bytes([(0.0, b"a"), (math.nan, b"b")] + entries),
            "bad_max_length": _tokenizer_bytes(entries, max_len=0),
        }[case]
        path.write_bytes(data)
    with pytest.raises(ModelFileError, match=expected) as excinfo:
        read_tokenizer(path, 512)
    one_line_error_naming(excinfo, path)


def test_synthetic_vocab_needs_the_fixed_tokens():
    with pytest.raises(ValueError, match="259"):
        models.synthetic_vocab(100)


# -- Q8_0 (version 2) ------------------------------------------------------------------------------

def test_q8_round_trip_of_stories260k(tmp_path):
    path = tmp_path / "stories260K_q80.bin"
    write_q8_checkpoint(path, SMALL)
    assert path.stat().st_size == SMALL.q8_file_size(4)
    assert read_q8_header(path) == (SMALL, 4)
    data = path.read_bytes()
    assert data[:4] == b"24ka" and struct.unpack_from("<i", data, 37)[0] == 4
    assert data[41:256] == bytes(215)
    # the quantized embedding: int8 values, then one scale per group of 4
    d, n = SMALL.dim, SMALL.vocab_size * SMALL.dim
    at = 256 + 4 * (2 * SMALL.n_layers * d + d)
    q = struct.unpack_from(f"<{n}b", data, at)
    s = struct.unpack_from(f"<{n // 4}f", data, at + n)
    assert -128 not in q and max(q) == 127 and min(q) == -127
    weights = [q[i] * s[i // 4] for i in range(n)]
    assert std(weights[2 * d:]) == pytest.approx(models.MATRIX_STD, rel=0.05)
    assert std(weights[d:2 * d]) < 0.15 * std(weights[2 * d:])  # the BOS row
    write_q8_checkpoint(tmp_path / "again.bin", SMALL, chunk_bytes=1 << 16)
    assert (tmp_path / "again.bin").read_bytes() == data


def test_q8_group_size_option_and_separate_classifier(tmp_path):
    config = ModelConfig(**{**TINY.__dict__, "shared_classifier": False})
    write_q8_checkpoint(tmp_path / "q.bin", config, group_size=8)
    assert read_q8_header(tmp_path / "q.bin") == (config, 8)
    assert (tmp_path / "q.bin").stat().st_size == config.q8_file_size(8)
    with pytest.raises(ValueError, match="group size 32"):
        write_q8_checkpoint(tmp_path / "bad.bin", config, group_size=32)


@pytest.mark.parametrize("case, expected", [
    ("legacy", "no versioned llama2.c magic"), ("version1", "version 1"),
    ("truncated", "truncated"), ("short", "shorter than"), ("bad_group", "group size 64"),
])
def test_bad_q8_files(tmp_path, case, expected):
    good_path = tmp_path / "good.bin"
    write_q8_checkpoint(good_path, SMALL)
    good = good_path.read_bytes()
    path = tmp_path / "model_q80.bin"
    path.write_bytes({
        "legacy": b"\0" * 300,
        "version1": good[:4] + struct.pack("<i", 1) + good[8:],
        "truncated": good[:-1],
        "short": good[:100],
        "bad_group": good[:37] + struct.pack("<i", 64) + good[41:],
    }[case])
    with pytest.raises(ModelFileError, match=expected) as excinfo:
        read_q8_header(path)
    one_line_error_naming(excinfo, path)


# -- the cache -------------------------------------------------------------------------------------

def test_ensure_generates_once_and_reuses(tmp_path):
    ckpt, tok = ensure_synthetic_model(tmp_path, "stories260K")
    assert ckpt == tmp_path / "models" / f"synthetic-v{models.FORMAT_VERSION}" / "stories260K.bin"
    assert tok.name == "tok512.bin" and tok.parent == ckpt.parent
    assert read_checkpoint_header(ckpt) == SMALL
    assert len(read_tokenizer(tok, 512).pieces) == 512
    stats = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (ckpt, tok)]
    assert ensure_synthetic_model(tmp_path, "stories260K") == (ckpt, tok)
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (ckpt, tok)] == stats
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [".lock", "stories260K.bin", "tok512.bin"]


def test_ensure_regenerates_corrupted_files(tmp_path):
    ckpt, tok = ensure_synthetic_model(tmp_path, "stories260K")
    good = ckpt.read_bytes(), tok.read_bytes()
    ckpt.write_bytes(good[0][:-100])
    tok.write_bytes(good[1][:50])
    ensure_synthetic_model(tmp_path, "stories260K")
    assert (ckpt.read_bytes(), tok.read_bytes()) == good


def test_ensure_quantized(tmp_path):
    ckpt, tok = ensure_synthetic_q8_model(tmp_path, "stories260K")
    assert ckpt.name == "stories260K_q80.bin" and tok.name == "tok512.bin"
    assert read_q8_header(ckpt) == (SMALL, 4)


def test_ensure_in_parallel_generates_once(tmp_path, monkeypatch):
    calls = []
    real = models.write_checkpoint

    def counting(*args, **kwargs):
        calls.append(args[0])
        real(*args, **kwargs)

    monkeypatch.setattr(models, "write_checkpoint", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_synthetic_model(tmp_path, "stories260K")))
               for _ in range(4)]  # flock locks open files, so threads exclude each other too
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert len(calls) == 1


def test_ensure_unwritable_cache_dir_names_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelFileError, match="cannot create the model cache directory") as excinfo:
        ensure_synthetic_model(blocker / "cache", "stories260K")
    assert str(blocker / "cache") in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_ensure_unknown_model(tmp_path):
    with pytest.raises(ValueError, match="stories15M"):
        ensure_synthetic_model(tmp_path, "stories1B")


def test_q8_header_accepts_export_py_group_size_that_does_not_divide_hidden(tmp_path):
    # export.py picks 64 for stories260K (it only needs dim % 64 == 0); runq.c runs such a file
    config = CONFIGS["stories260K"]
    good = tmp_path / "good.bin"
    write_q8_checkpoint(good, config)
    header = bytearray(good.read_bytes()[:256])
    header[37:41] = struct.pack("<i", 64)
    path = tmp_path / "stories260K_q80.bin"
    path.write_bytes(bytes(header) + b"\0" * (config.q8_file_size(64) - 256))
    assert read_q8_header(path) == (config, 64)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_q8_bytes_per_token_is_the_file_less_header_plus_one_float_row(name):
    # shared classifier: every tensor of the file is read per token, plus one dequantized float
    # embedding row; the quantized embedding table is read whole as the classifier
    config = CONFIGS[name]
    gs = config.q8_group_size()
    assert config.q8_weight_bytes_per_token(gs) == config.q8_file_size(gs) - 256 + 4 * config.dim
    assert config.q8_weight_bytes_per_token(gs) <= 0.55 * config.weight_bytes_per_token()  # 260K: group 4


# -- files that are not regular files, huge claims, non-finite weights ---------------------------------

def test_fifo_and_device_are_refused_without_reading(tmp_path):
    # a FIFO would block open() or read() forever; /dev/zero would never end
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    done = []
    worker = threading.Thread(target=lambda: done.append(pytest.raises(ModelFileError, read_checkpoint_header, fifo)),  # noqa: RUF061 (a call, in a thread)
                              daemon=True)
    worker.start()
    worker.join(10)
    if not done:  # unblock the reader before failing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(10)
        pytest.fail("reading a FIFO blocked")
    assert "not a regular file" in str(done[0].value)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ModelFileError, match="/dev/zero: not a regular file"):
            read_tokenizer("/dev/zero", 512)


def test_tokenizer_reads_no_more_than_vocab_size_tokens_can_take(tmp_path, monkeypatch):
    path = tmp_path / "tokenizer.bin"
    write_tokenizer(path, 600)
    with open(path, "ab") as fh:
        fh.truncate(path.stat().st_size + (1 << 30))  # a sparse GiB of trailing bytes
    reads = []
    real = models._read_head
    monkeypatch.setattr(models, "_read_head", lambda p, n=-1: reads.append(n) or real(p, n))
    tok = read_tokenizer(path, 512)
    assert len(tok.pieces) == 512 and tok.file_size == path.stat().st_size
    assert 0 < max(reads) <= 4 + 512 * (8 + tok.max_token_length)


def test_read_weights_f64_refuses_non_finite_weights_and_large_files(tmp_path, small_checkpoint):
    data = bytearray(small_checkpoint.read_bytes())
    at = models.LEGACY_HEADER_BYTES + 4 * 1000
    data[at:at + 4] = struct.pack("<f", math.nan)
    path = tmp_path / "nan.bin"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"nan.bin: weight 1000 \(byte 4028\) is nan, not a finite number"):
        read_weights_f64(path)
    with pytest.raises(ModelFileError, match="too large for the float64 reference"):
        read_weights_f64(small_checkpoint, max_bytes=1 << 20)


# -- the session's model lookup ------------------------------------------------------------------------

def _session(models_dir):
    from pytest_llmperf.llama2c.session import Llama2cSession, Settings

    return Llama2cSession(Settings(models_dir=models_dir, cache_dir=models_dir / "cache"))


def test_model_path_that_is_a_directory_says_so(tmp_path):
    # issue 11, item 18: a directory named stories260K.bin was reported as "not found" (a skip)
    from pytest_llmperf.llama2c.session import ModelMissing

    (tmp_path / "stories260K.bin").mkdir()
    write_tokenizer(tmp_path / "tok512.bin", 512)
    with pytest.raises(ModelFileError) as excinfo:
        _session(tmp_path).model("stories260K")
    assert str(excinfo.value) == f"{tmp_path / 'stories260K.bin'}: is a directory, not a model file"
    # the tokenizer too
    (tmp_path / "stories260K.bin").rmdir()
    write_checkpoint(tmp_path / "stories260K.bin", SMALL)
    (tmp_path / "tok512.bin").unlink()
    (tmp_path / "tok512.bin").mkdir()
    with pytest.raises(ModelFileError) as excinfo:
        _session(tmp_path).model("stories260K")
    assert str(excinfo.value) == f"{tmp_path / 'tok512.bin'}: is a directory, not a model file"
    # what is not there at all is still missing (a skip)
    with pytest.raises(ModelMissing, match="stories15M.bin not found"):
        _session(tmp_path).model("stories15M")
