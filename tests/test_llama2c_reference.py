"""The reference runner refrun.c against the float64 reference pyref.py, and refrun's command line.

refrun.c is compiled once for this module with ``cc -O2``; a missing compiler is a failure, not a
skip (CI has gcc, and without the runner nothing llama2.c-related can be trusted). The models are
the synthetic stories260K-shaped files of :mod:`pytest_llmperf.llama2c.models` (deterministic
bytes), one with the classifier shared with the embedding and one with a separate classifier.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import struct
import subprocess
from array import array
from pathlib import Path
from types import SimpleNamespace

import pytest

import pytest_llmperf.llama2c as llama2c_pkg
from pytest_llmperf.llama2c import models, pyref

SOURCE = Path(llama2c_pkg.__file__).with_name("refrun.c")
CONFIG = models.CONFIGS["stories260K"]
TOK_PER_S = re.compile(rb"^achieved tok/s: (\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def refrun(tmp_path_factory) -> SimpleNamespace:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler: `cc` is not on PATH, and refrun.c must be compiled to test it "
                    "(install gcc or put a compiler named cc on PATH)", pytrace=False)
    binary = tmp_path_factory.mktemp("refrun") / "refrun"
    proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(SOURCE), "-lm"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cc} could not compile {SOURCE}:\n{proc.stderr}"
    return SimpleNamespace(path=binary, compiler_stderr=proc.stderr)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("models")
    shared, unshared, tok = d / "shared.bin", d / "unshared.bin", d / "tok512.bin"
    models.write_checkpoint(shared, CONFIG, seed=0)
    models.write_checkpoint(unshared, dataclasses.replace(CONFIG, shared_classifier=False), seed=1)
    models.write_tokenizer(tok, CONFIG.vocab_size)
    return SimpleNamespace(dir=d, shared=shared, unshared=unshared, tokenizer=tok)


@pytest.fixture(scope="module")
def reference(files) -> dict:
    return {name: pyref.load(getattr(files, name), files.tokenizer) for name in ("shared", "unshared")}


def run(binary, *args, stats=None, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LLMPERF_REFRUN_STATS"}
    if stats is not None:
        env["LLMPERF_REFRUN_STATS"] = str(stats)
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, env=env, cwd=cwd,
                          timeout=60)


def read_stats(path: Path) -> dict:
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1, text
    fields = dict(item.split("=", 1) for item in text.split())
    assert list(fields) == ["positions", "prompt_tokens", "elapsed_ms", "elapsed_ns"], text
    return {k: int(v) for k, v in fields.items()}


def test_compiles_without_warnings(refrun):
    assert "warning" not in refrun.compiler_stderr, refrun.compiler_stderr


# -- agreement with the float64 reference -------------------------------------------------------------

# (model, prompt, temperature, top-p, seed, steps). The synthetic files are the same bytes on every
# machine, so these cases are fixed computations. For each of them the closest call (pyref's
# min_margin) is at least 5e-3 between the two best logits when greedy and 2.7e-4 between the coin
# and a cdf edge when sampling, while float32 rounding moves logits by ~1e-5 and probabilities by
# ~1e-7: a mismatch here is a bug, not rounding. The café/über prompt has two-byte code points that
# are not pieces (byte fallback; the lone bytes are then not printed); the sampled cases cover the
# whole-distribution scan (p 1.0) and the nucleus (p 0.9, 0.5).
AGREEMENT_CASES = [
    ("shared", None, 0.0, 0.9, 1, 48),
    ("unshared", None, 0.0, 0.9, 1, 48),
    ("shared", "Once upon a time", 0.0, 0.9, 1, 48),
    ("unshared", "Once upon a time", 0.0, 0.9, 1, 48),
    ("unshared", None, 1.0, 0.9, 42, 48),
    ("unshared", "Lily saw a café über the park", 1.0, 1.0, 7, 48),
    ("shared", None, 0.8, 0.5, 3, 48),
]


@pytest.mark.parametrize("model,prompt,temperature,topp,seed,steps", AGREEMENT_CASES)
def test_output_matches_float64_reference(refrun, files, reference, tmp_path, model, prompt,
                                          temperature, topp, seed, steps):
    args = [getattr(files, model), "-z", files.tokenizer, "-n", steps, "-t", temperature,
            "-p", topp, "-s", seed]
    if prompt is not None:
        args += ["-i", prompt]
    stats = tmp_path / "stats.txt"
    proc = run(refrun.path, *args, stats=stats)
    assert proc.returncode == 0, proc.stderr
    expected = pyref.generate(reference[model], steps, prompt, temperature, topp, seed)
    assert proc.stdout == expected.stdout, (
        f"refrun and the float64 reference differ (closest call in the reference: "
        f"{expected.min_margin:.3g})\nrefrun:    {proc.stdout!r}\nreference: {expected.stdout!r}")
    got = read_stats(stats)
    assert got["positions"] == expected.positions == steps
    assert got["prompt_tokens"] == expected.prompt_tokens  # both encoders agree on the token count
    if prompt is not None and prompt.isascii():
        assert proc.stdout.startswith(prompt.encode())  # no leading space after BOS


def test_greedy_helper_returns_stdout_text_and_tokens(refrun, files, reference):
    text, tokens = pyref.generate_greedy(reference["unshared"], 20, "Once upon a time")
    proc = run(refrun.path, files.unshared, "-z", files.tokenizer, "-n", 20, "-t", 0,
               "-i", "Once upon a time")
    assert text == proc.stdout.decode()
    assert tokens[:5] == pyref.encode(reference["unshared"], "Once upon a time")
    assert len(tokens) == 21  # BOS and one token per position after it


def test_stops_before_steps_when_bos_comes_next(refrun, files, reference, tmp_path):
    # a copy of the unshared model whose classifier row for BOS is 50 x the embedding of the last
    # prompt token: after the forced prompt, BOS beats every other logit by far, so both runners
    # stop there, having printed the prompt only
    prompt = "Once upon a time"
    ids = pyref.encode(reference["unshared"], prompt)
    cfg = dataclasses.replace(CONFIG, shared_classifier=False)
    data = bytearray(files.unshared.read_bytes())
    d = cfg.dim
    emb_at = models.LEGACY_HEADER_BYTES + 4 * ids[-1] * d
    row = array("f", data[emb_at:emb_at + 4 * d])
    classifier_at = cfg.file_size() - 4 * cfg.vocab_size * d
    bos_row_at = classifier_at + 4 * pyref.BOS * d
    data[bos_row_at:bos_row_at + 4 * d] = struct.pack(f"<{d}f", *(50.0 * v for v in row))
    patched = tmp_path / "bos_stop.bin"
    patched.write_bytes(bytes(data))

    stats = tmp_path / "stats.txt"
    proc = run(refrun.path, patched, "-z", files.tokenizer, "-n", 40, "-t", 0, "-i", prompt,
               stats=stats)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == prompt.encode() + b"\n"
    got = read_stats(stats)
    assert got["positions"] == len(ids) < 40
    expected = pyref.generate(pyref.load(patched, files.tokenizer), 40, prompt)
    assert (expected.stdout, expected.positions) == (proc.stdout, got["positions"])


def write_tie_tokenizer(path: Path) -> list:
    """A 512-token tokenizer whose merges "ab" and "ba" have the same score, so that encoding
    "aba" depends on the tie rule (leftmost pair first); the rest are filler pieces."""
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
    pieces += [b" ", b"a", b"b", b"ab", b"ba"]
    pieces += [b"w%d " % i for i in range(CONFIG.vocab_size - len(pieces))]
    scores = [0.0] * 259 + [-1.0, -1.0, -1.0, -5.0, -5.0] + [-10.0] * (CONFIG.vocab_size - 264)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<i", max(map(len, pieces))))
        for piece, score in zip(pieces, scores):
            fh.write(struct.pack("<fi", score, len(piece)) + piece)
    return pieces


def test_prompt_with_tied_merges_matches_reference(refrun, files, tmp_path):
    # the printed prompt is the same whichever pair merges first; the token ids fed to the model
    # are not, so the greedy continuation tells whether both encoders broke the ties alike
    tok = tmp_path / "ties.bin"
    pieces = write_tie_tokenizer(tok)
    model = pyref.load(files.unshared, tok)
    prompt = "aba bab abab baba"
    ids = pyref.encode(model, prompt)
    assert [pieces[i] for i in ids[2:6]] == [b"ab", b"a", b" ", b"ba"]
    proc = run(refrun.path, files.unshared, "-z", tok, "-t", 0, "-n", 40, "-i", prompt)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(prompt.encode())
    assert proc.stdout == pyref.generate(model, 40, prompt).stdout


# -- the tokenizer of the reference --------------------------------------------------------------------

def test_encode_prepends_bos_and_dummy_space_and_merges_words(reference):
    m = reference["shared"]
    assert pyref.encode(m, "") == [1]
    assert pyref.encode(m, "Once upon a time") == [
        1, m.piece_id(b" Once"), m.piece_id(b" upon"), m.piece_id(b" a"), m.piece_id(b" time")]


def test_encode_falls_back_to_byte_tokens(reference):
    m = reference["shared"]
    assert m.piece_id("ü".encode()) == -1
    assert pyref.encode(m, "ü") == [1, m.piece_id(b" "), 0xC3 + 3, 0xBC + 3]


def test_encode_breaks_score_ties_leftmost():
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
    pieces += [b" ", b"a", b"b", b"ab", b"ba"]
    scores = [0.0] * 259 + [-1.0, -1.0, -1.0, -5.0, -5.0]  # "ab" and "ba" tie
    model = pyref.Model(shape=None, embedding=[], layers=[], final_norm=[], classifier=[],
                        pieces=pieces, scores=scores,
                        _lookup={p: i for i, p in enumerate(pieces)})
    a, b, ab = pieces.index(b"a"), pieces.index(b"b"), pieces.index(b"ab")
    # " " + "aba": pairs "ab" (left) and "ba" (right) score the same: the left one merges
    assert pyref.encode(model, "aba")[2:] == [ab, a]
    assert pyref.encode(model, "bab")[2:] == [pieces.index(b"ba"), b]


def test_decode_and_print_rules(reference):
    m = reference["shared"]
    once = m.piece_id(b" Once")
    assert pyref.decode_piece(m, pyref.BOS, once) == b"Once"
    assert pyref.decode_piece(m, once, once) == b" Once"
    assert pyref.decode_piece(m, once, 0x41 + 3) == b"A"
    assert pyref.printable(pyref.decode_piece(m, once, 0x07 + 3)) == b""  # BEL is not printed
    assert pyref.printable(b"\n") == b"\n"
    assert pyref.printable(b"\xc3") == b""


def test_xorshift_matches_values_computed_in_c():
    # the first two outputs of xorshift64* seeded with 42, computed with a small C program
    # (state after one step: 1409286176)
    rng = pyref.XorShiftRng(42)
    assert rng.next_u32() == 1456360119
    assert rng.state == 1409286176
    assert rng.next_u32() == 3359763283
    assert pyref.XorShiftRng(42).next_unit() == (1456360119 >> 8) / 16777216.0


# -- command line ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    [],
    ["{ckpt}", "-x", "1"],
    ["{ckpt}", "-n"],
    ["{ckpt}", "--n", "5"],
    ["{ckpt}", "n", "5"],
    ["{ckpt}", "-n", "5", "-t"],
], ids=["no-args", "unknown-flag", "missing-value", "long-flag", "no-dash", "trailing-flag"])
def test_malformed_command_line_prints_usage(refrun, files, argv):
    proc = run(refrun.path, *[a.format(ckpt=files.shared) for a in argv])
    assert proc.returncode == 1
    assert b"Usage:" in proc.stderr
    assert proc.stdout == b""


def test_missing_checkpoint_names_the_file(refrun, files, tmp_path):
    missing = tmp_path / "no_such_model.bin"
    proc = run(refrun.path, missing, "-z", files.tokenizer)
    assert proc.returncode == 1
    assert str(missing).encode() in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_tokenizer_names_the_file(refrun, files, tmp_path):
    missing = tmp_path / "no_such_tokenizer.bin"
    proc = run(refrun.path, files.shared, "-z", missing, "-n", 4)
    assert proc.returncode == 1
    assert str(missing).encode() in proc.stderr


def test_default_tokenizer_is_tokenizer_bin_in_working_directory(refrun, files, tmp_path):
    proc = run(refrun.path, files.shared, "-n", 4, "-t", 0, cwd=tmp_path)
    assert proc.returncode == 1 and b"tokenizer.bin" in proc.stderr
    shutil.copy(files.tokenizer, tmp_path / "tokenizer.bin")
    proc = run(refrun.path, files.shared, "-n", 4, "-t", 0, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_truncated_checkpoint_is_an_error_not_a_crash(refrun, files, tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(files.shared.read_bytes()[:100_000])
    proc = run(refrun.path, short, "-z", files.tokenizer, "-n", 4)
    assert proc.returncode == 1
    assert str(short).encode() in proc.stderr


@pytest.mark.parametrize("mode,message", [("chat", b"chat mode is not supported"),
                                          ("bogus", b"unknown mode")])
def test_only_generate_mode(refrun, files, mode, message):
    proc = run(refrun.path, files.shared, "-z", files.tokenizer, "-m", mode, "-y", "be nice")
    assert proc.returncode == 1
    assert message in proc.stderr


@pytest.mark.parametrize("steps", [0, -3, 100_000])
def test_steps_zero_negative_or_too_many_run_seq_len_positions(refrun, files, tmp_path, steps):
    stats = tmp_path / "stats.txt"
    proc = run(refrun.path, files.shared, "-z", files.tokenizer, "-t", 0, "-n", steps, stats=stats)
    assert proc.returncode == 0, proc.stderr
    assert read_stats(stats)["positions"] == CONFIG.seq_len


def test_tok_per_s_line_and_stats_file_agree(refrun, files, tmp_path):
    stats = tmp_path / "stats.txt"
    steps = 200
    proc = run(refrun.path, files.unshared, "-z", files.tokenizer, "-n", steps, "-s", 5, stats=stats)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(b"\n")
    lines = TOK_PER_S.findall(proc.stderr)
    assert len(lines) == 1, proc.stderr
    rate = float(lines[0])  # "inf" when the run took under a millisecond: still a float
    got = read_stats(stats)
    assert got["positions"] == steps  # no BOS stop: the synthetic BOS logit stays low
    assert got["prompt_tokens"] == 1
    assert got["elapsed_ns"] > 0 and got["elapsed_ms"] >= 0
    if got["elapsed_ms"] > 0:
        assert rate == pytest.approx((steps - 1) / got["elapsed_ms"] * 1000, rel=1e-6)
        # the two clocks measure the same region (the millisecond one truncates both ends)
        assert abs(got["elapsed_ns"] / 1e6 - got["elapsed_ms"]) <= 2.5
    else:
        assert rate == float("inf")


def test_one_position_prints_no_rate_and_zero_elapsed(refrun, files, tmp_path):
    stats = tmp_path / "stats.txt"
    proc = run(refrun.path, files.shared, "-z", files.tokenizer, "-n", 1, "-t", 0, stats=stats)
    assert proc.returncode == 0
    assert b"achieved tok/s" not in proc.stderr
    assert read_stats(stats) == {"positions": 1, "prompt_tokens": 1, "elapsed_ms": 0, "elapsed_ns": 0}


def test_no_stats_file_without_the_variable(refrun, files, tmp_path):
    proc = run(refrun.path, files.shared, "-z", files.tokenizer, "-n", 3, cwd=tmp_path)
    assert proc.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_text_different_seed_different_text(refrun, files):
    def sample(seed, *extra):
        proc = run(refrun.path, files.unshared, "-z", files.tokenizer, "-n", 64, "-t", 1,
                   "-s", seed, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = sample(42)
    assert sample(42) == first
    assert sample(43) != first
    assert sample(42, "-p", 1.0) == sample(42, "-p", 1.0) != first


def test_out_of_range_temperature_and_topp_are_normalised(refrun, files):
    def out(*extra):
        proc = run(refrun.path, files.unshared, "-z", files.tokenizer, "-n", 48, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert out("-t", -1) == out("-t", 0)  # negative temperature: greedy
    assert out("-t", 1, "-s", 9, "-p", 7) == out("-t", 1, "-s", 9, "-p", 0.9)
    assert out("-t", 1, "-s", 9, "-p", -0.5) == out("-t", 1, "-s", 9)  # default top-p is 0.9


# -- files a trained model never has (found by tests/test_fuzz_llama2c.py) ------------------------------

def _small_vocab_files(tmp_path):
    """A stories260K-shaped model cut to a vocabulary of 20 tokens, without the 256 byte tokens."""
    cfg = dataclasses.replace(CONFIG, vocab_size=20)
    ckpt = tmp_path / "small_vocab.bin"
    models.write_checkpoint(ckpt, cfg)
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b" ", b"a", b"b"] + [b"w%d" % i for i in range(14)]
    tok = tmp_path / "tok20.bin"
    with open(tok, "wb") as fh:
        fh.write(struct.pack("<i", 6))
        for i, piece in enumerate(pieces):
            fh.write(struct.pack("<fi", -float(i), len(piece)) + piece)
    return ckpt, tok


def test_prompt_beyond_a_small_vocabulary_is_an_error_not_a_crash(refrun, tmp_path):
    # the merges looked up the pieces of byte-token ids the vocabulary does not have (SIGSEGV)
    ckpt, tok = _small_vocab_files(tmp_path)
    proc = run(refrun.path, ckpt, "-z", tok, "-n", 8, "-t", 0, "-i", "0")
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (f"refrun: the prompt needs token ids the tokenizer {tok} does not have "
                                            f"(BOS is 1, byte tokens 3 to 258)")
    assert run(refrun.path, ckpt, "-z", tok, "-n", 8, "-t", 0, "-i", "ab").returncode == 0
    model = pyref.load(ckpt, tok)
    with pytest.raises(pyref.GenerationError, match="the prompt needs token id 51, beyond the vocabulary of 20"):
        pyref.generate(model, 8, "0")


def test_nan_logits_with_top_p_sample_within_the_vocabulary(refrun, files, tmp_path):
    # NaN weights make every probability NaN: no token passed the nucleus floor and the sampler
    # read the candidate before its array (heap overflow)
    data = bytearray(files.shared.read_bytes())
    final_norm_at = models.LEGACY_HEADER_BYTES + 4 * (CONFIG.vocab_size * CONFIG.dim
                                                      + CONFIG.n_layers * CONFIG._layer_floats())
    data[final_norm_at:final_norm_at + 4 * CONFIG.dim] = struct.pack(f"<{CONFIG.dim}f", *[math.nan] * CONFIG.dim)
    nan_model = tmp_path / "nan.bin"
    nan_model.write_bytes(bytes(data))
    proc = run(refrun.path, nan_model, "-z", files.tokenizer, "-n", 8, "-t", 1, "-p", 0.9, "-s", 3)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(models.ModelFileError, match="is nan, not a finite number"):
        pyref.load(nan_model, files.tokenizer)  # the float64 reference refuses such a file


def test_header_whose_sizes_would_overflow_is_invalid(refrun, files, tmp_path):
    data = bytearray(files.shared.read_bytes())
    struct.pack_into("<7i", data, 0, 1 << 30, 1 << 30, 1 << 30, 2, 2, 512, 4)
    path = tmp_path / "huge.bin"
    path.write_bytes(bytes(data))
    proc = run(refrun.path, path, "-z", files.tokenizer, "-n", 4)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == f"refrun: checkpoint {path} has an invalid header"


# -- Q8_0 (version 2) checkpoints: runq.c's int8 arithmetic, the probe of the runq rows -------------

@pytest.fixture(scope="module")
def q8(tmp_path_factory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("q8")
    path, other = d / "q80.bin", d / "q80-other.bin"
    models.write_q8_checkpoint(path, CONFIG, seed=0)
    models.write_q8_checkpoint(other, CONFIG, seed=1)
    return SimpleNamespace(dir=d, path=path, other=other)


def test_runs_a_q8_checkpoint_with_the_same_text_at_any_optimization(refrun, files, q8, tmp_path):
    unoptimized = tmp_path / "refrun-O0"
    subprocess.run(["cc", "-O0", "-o", str(unoptimized), str(SOURCE), "-lm"], check=True, timeout=120)
    stats = tmp_path / "stats.txt"
    fast = run(refrun.path, q8.path, "-z", files.tokenizer, "-n", 64, "-t", 0, stats=stats)
    assert fast.returncode == 0, fast.stderr
    assert read_stats(stats)["positions"] == 64
    assert len(TOK_PER_S.findall(fast.stderr)) == 1
    slow = run(unoptimized, q8.path, "-z", files.tokenizer, "-n", 64, "-t", 0)
    assert slow.returncode == 0 and slow.stdout == fast.stdout and fast.stdout.strip()
    # other weights, other text; the float32 file of the same shape is read as float32
    other = run(refrun.path, q8.other, "-z", files.tokenizer, "-n", 64, "-t", 0)
    assert other.returncode == 0 and other.stdout != fast.stdout
    plain = run(refrun.path, files.shared, "-z", files.tokenizer, "-n", 64, "-t", 0)
    assert plain.returncode == 0 and plain.stdout != fast.stdout


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: b[:100_000], b"is truncated"),
    (lambda b: b[:20], b"shorter than its versioned header"),
    (lambda b: b[:4] + (3).to_bytes(4, "little") + b[8:], b"not version 2 (Q8_0)"),
    (lambda b: b[:37] + (5).to_bytes(4, "little") + b[41:], b"invalid Q8_0 header"),  # group size 5
])
def test_a_broken_q8_checkpoint_is_an_error_not_a_crash(refrun, files, q8, tmp_path, edit, message):
    broken = tmp_path / "broken.bin"
    broken.write_bytes(edit(q8.path.read_bytes()))
    proc = run(refrun.path, broken, "-z", files.tokenizer, "-n", 4)
    assert proc.returncode == 1 and message in proc.stderr and str(broken).encode() in proc.stderr
