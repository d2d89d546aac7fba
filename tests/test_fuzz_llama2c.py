"""Property-based fuzzing of every parser and loader of pytest_llmperf.llama2c (issue 11).

Each property feeds a reader bytes or text built from a valid small file with mutations
(truncation, random bytes, header fields set to huge, negative or zero values, NaN and infinite
floats, token counts that do not match), or made up from scratch, and checks that only the
module's own error class escapes, with a one-line message:

* models: ``read_checkpoint_header``, ``read_q8_header``, ``read_tokenizer``, ``read_weights_f64``
  raise :class:`ModelFileError` only (and do not allocate memory for sizes the file does not have);
* pyref: ``load`` raises ModelFileError only, ``generate`` on what it loaded :class:`GenerationError`;
* runner: ``parse_tok_per_s`` raises :class:`RunError` only; the stats reader never raises;
* build: ``read_manifest`` raises :class:`CacheError` only, the cache check never raises,
  ``source_bytes`` raises :class:`BuildError` only;
* bandwidth: ``load_info``/``read_info``/``write_info`` raise :class:`NodeInfoError` only (and a
  refused file is never changed), ``parse_probe_output`` :class:`BandwidthError` only;
* refrun.c, the reference runner, reads checkpoints and tokenizers too: on any mutated file it
  exits 0 or 1 with a message, is never killed by a signal, and (built with AddressSanitizer and
  UBSan where the compiler has them) never reads out of bounds or does anything undefined.

``LLMPERF_FUZZ_EXAMPLES`` (default 200) sets the examples per property and seed; see fuzzing.py.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
import tracemalloc
from pathlib import Path

from fuzzing import fuzz, only_raises
from hypothesis import strategies as st

from pytest_llmperf.llama2c import models, pyref, runner
from pytest_llmperf.llama2c.models import ModelConfig, ModelFileError
from pytest_llmperf.llama2c.runner import RunError
from pytest_llmperf.native import bandwidth, build
from pytest_llmperf.native.bandwidth import BandwidthError, NodeInfoError
from pytest_llmperf.native.build import BuildError
from pytest_llmperf.native.cache import CacheError

SCRATCH = Path(tempfile.mkdtemp(prefix="llmperf-fuzz-"))
atexit.register(shutil.rmtree, SCRATCH, True)

# a model small enough that thousands of examples take seconds: head_size 4, grouped-query
# attention, 20 tokens, 6 positions
TINY = ModelConfig(dim=8, hidden_dim=12, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=20, seq_len=6)
PIECES = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b" ", b"a", b"b", b"c", b"ab", b"ba", b" a", b" b", b" ab",
          b"<0x41>", b"<0x0A>", b"\xc3", b"\xc3\xa9", b"Once", b" Once", b"\0x", b"t"]
assert len(PIECES) == TINY.vocab_size


def scratch(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def tokenizer_bytes(pieces=PIECES, scores=None, max_len: int | None = None) -> bytes:
    scores = scores if scores is not None else [0.0] * 3 + [-float(i) for i in range(len(pieces) - 3)]
    out = [struct.pack("<i", max(map(len, pieces)) if max_len is None else max_len)]
    for piece, score in zip(pieces, scores):
        out.append(struct.pack("<fi", score, len(piece)) + piece)
    return b"".join(out)


@functools.cache
def base(kind: str) -> bytes:
    """Valid small files: a legacy checkpoint (shared or separate classifier), a Q8_0 one, a
    tokenizer."""
    path = SCRATCH / f"base-{kind}"
    if kind == "ckpt":
        models.write_checkpoint(path, TINY, seed=3)
    elif kind == "ckpt-unshared":
        models.write_checkpoint(path, ModelConfig(**{**TINY.__dict__, "shared_classifier": False}), seed=4)
    elif kind == "q8":
        models.write_q8_checkpoint(path, TINY)
    else:
        path.write_bytes(tokenizer_bytes())
    return path.read_bytes()


INT_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 6, 8, -1, -2, -20, 1 << 16, (1 << 16) + 1, 1 << 20, 1 << 22, (1 << 22) + 1,
                     1 << 30, 2**31 - 1, -2**31, 20, 12, 0x616B3432]),
    st.integers(-2**31, 2**31 - 1),
)
FLOAT_VALUES = st.one_of(
    st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e-45, -0.0, 0.0, 1e30]),
    st.floats(width=32),
)


@st.composite
def mutated(draw, data: bytes, header_ints: int) -> bytes:
    """``data`` with up to four mutations: a header int32 set to a chosen value, a float32 of the
    body set to NaN/inf/huge/any, random bytes written over a span, truncation, appended bytes."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["header", "float", "bytes", "truncate", "extend"]))
        if op == "header" and len(out) >= 4 * header_ints:
            struct.pack_into("<i", out, 4 * draw(st.integers(0, header_ints - 1)), draw(INT_VALUES))
        elif op == "float" and len(out) >= 4 * header_ints + 4:
            at = draw(st.integers(header_ints, len(out) // 4 - 1))
            struct.pack_into("<f", out, 4 * at, draw(FLOAT_VALUES))
        elif op == "bytes" and out:
            at = draw(st.integers(0, len(out) - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            out[at:at + len(chunk)] = chunk
        elif op == "truncate":
            del out[draw(st.integers(0, len(out))):]
        elif op == "extend":
            out += draw(st.binary(max_size=64))
    return bytes(out)


@st.composite
def weights_mutated(draw, data: bytes, header_ints: int = 7) -> bytes:
    """``data`` with its header and size intact and some float32 weights set to NaN, infinities,
    huge or any values, or every weight scaled (overflow in the forward pass)."""
    values = list(struct.unpack(f"<{len(data) // 4 - header_ints}f", data[4 * header_ints:]))
    if draw(st.booleans()):
        factor = draw(st.sampled_from([1e10, 1e19, 1e30, -1e20, 0.0, 1e-30]))
        values = [max(-3.4e38, min(3.4e38, v * factor)) for v in values]
    for _ in range(draw(st.integers(0, 8))):
        values[draw(st.integers(0, len(values) - 1))] = draw(FLOAT_VALUES)
    return data[:4 * header_ints] + struct.pack(f"<{len(values)}f", *values)


@st.composite
def checkpoints(draw) -> bytes:
    """A small legacy checkpoint: mutated anywhere (mostly refused), or only in its weights (a
    file the checker accepts, with weights a trained model never has)."""
    data = base(draw(st.sampled_from(["ckpt", "ckpt-unshared"])))
    return draw(mutated(data, 7)) if draw(st.booleans()) else draw(weights_mutated(data))


def one_line(exc: BaseException) -> None:
    message = str(exc)
    assert message and "\n" not in message, f"{type(exc).__name__} message is not one line: {message!r}"


def _memory_peak(fn, *args):
    """fn(*args) (ModelFileError swallowed) and the peak of Python allocations during it."""
    tracemalloc.start()
    try:
        result = only_raises(ModelFileError, fn, *args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- models ------------------------------------------------------------------------------------------

@fuzz(st.sampled_from(["ckpt", "ckpt-unshared"]).flatmap(lambda kind: mutated(base(kind), 7)))
def test_fuzz_read_checkpoint_header(data: bytes) -> None:
    path = scratch("ckpt.bin", data)
    config = only_raises(ModelFileError, models.read_checkpoint_header, path)
    if config is not None:
        assert config.file_size() == len(data)
        assert all(getattr(config, f) > 0 for f in models._FIELDS)
        assert config.dim % config.n_heads == 0 and config.head_size % 2 == 0


@fuzz(mutated(base("q8"), 11))
def test_fuzz_read_q8_header(data: bytes) -> None:
    path = scratch("q8.bin", data)
    found = only_raises(ModelFileError, models.read_q8_header, path)
    if found is not None:
        config, group_size = found
        assert config.q8_file_size(group_size) == len(data)
        assert group_size > 0 and config.dim % group_size == 0


VOCAB_SIZES = st.one_of(st.integers(1, 24), st.sampled_from([259, 32000, 1 << 22]))


@st.composite
def tokenizers(draw) -> bytes:
    """A valid small tokenizer, mutated; one of made-up pieces, scores and max_token_length; or a
    well-formed one of at least TINY's vocab_size random pieces (some of them the base's, so that
    prompts merge) with finite scores."""
    kind = draw(st.sampled_from(["mutated", "made-up", "well-formed"]))
    if kind == "mutated":
        return draw(mutated(base("tok"), 1))
    if kind == "made-up":
        pieces = draw(st.lists(st.binary(max_size=12), min_size=0, max_size=30))
        scores = draw(st.lists(FLOAT_VALUES, min_size=len(pieces), max_size=len(pieces)))
        max_len = draw(st.one_of(st.none(), INT_VALUES))
        return tokenizer_bytes(pieces, scores, max_len) if pieces else draw(st.binary(max_size=12))
    n = draw(st.integers(TINY.vocab_size, TINY.vocab_size + 3))
    pieces = draw(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=6)), min_size=n, max_size=n))
    scores = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=n, max_size=n))
    return tokenizer_bytes(pieces, scores)


@fuzz(tokenizers(), VOCAB_SIZES)
def test_fuzz_read_tokenizer(data: bytes, vocab_size: int) -> None:
    path = scratch("tokenizer.bin", data)
    tok, peak = _memory_peak(models.read_tokenizer, path, vocab_size)
    assert peak < 64 * len(data) + (1 << 20)  # nothing sized by vocab_size or max_token_length alone
    if tok is not None:
        assert len(tok.pieces) == len(tok.scores) == vocab_size
        assert all(math.isfinite(s) for s in tok.scores)
        assert all(len(p) <= tok.max_token_length for p in tok.pieces)


@fuzz(checkpoints())
def test_fuzz_read_weights_f64(data: bytes) -> None:
    path = scratch("weights.bin", data)
    weights, peak = _memory_peak(models.read_weights_f64, path)
    assert peak < 64 * len(data) + (1 << 20)
    if weights is not None:
        config = weights["config"]
        assert len(weights["token_embedding"]) == config.vocab_size * config.dim
        assert all(math.isfinite(v) for v in weights["rms_final"])


# -- pyref -------------------------------------------------------------------------------------------

@fuzz(checkpoints(), tokenizers(), st.one_of(st.none(), st.text(max_size=12), st.binary(max_size=8)),
      st.integers(-1, 8),
      st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_fuzz_pyref_load_and_generate(ckpt: bytes, tok: bytes, prompt, steps: int, temperature: float,
                                      topp: float) -> None:
    model = only_raises(ModelFileError, pyref.load, scratch("ref.bin", ckpt), scratch("ref-tok.bin", tok))
    if model is not None:
        g = only_raises(pyref.GenerationError, pyref.generate, model, steps, prompt, temperature, topp, 7)
        if g is not None:
            assert 1 <= g.positions <= model.shape.seq_len and g.stdout.endswith(b"\n")
            assert all(0 <= t < model.shape.vocab_size for t in g.tokens)


# -- runner ------------------------------------------------------------------------------------------

NUMBERISH = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=0, max_value=1e15).map(lambda v: f"{v:f}"),
    st.sampled_from(["inf", "-inf", "nan", "-nan", "INF", "1e308", "1e400", "0", "-0.0", "0x10", "1_000", "12.",
                     ".5", "+7", "1e", "\u0661", "\uff11", "12.5 (approx)", "5 tok/s", ""]),
    st.text(max_size=20),
)
LINE = st.one_of(
    st.tuples(st.sampled_from(["", " ", "\t", "we "]), st.sampled_from(["achieved tok/s:", "achieved tok/s: ",
                                                                          "Achieved tok/s:", "achieved tok/s"]),
              NUMBERISH, st.sampled_from(["", " ", "\r", "\t"])).map("".join),
    st.text(max_size=40),
)
OUTPUT = st.lists(LINE, max_size=6).map("\n".join)


@fuzz(OUTPUT, OUTPUT)
def test_fuzz_parse_tok_per_s(stderr: str, stdout: str) -> None:
    try:
        value = runner.parse_tok_per_s(stderr, stdout, "fuzzbin")
    except RunError as exc:
        first, *rest = str(exc).split("\n")
        assert first.startswith("fuzzbin printed ")
        if "printed no 'achieved tok/s:' line" not in first:
            assert rest == []  # a line that is there but unusable: one line naming it
        return
    assert math.isfinite(value) and 0 < value <= runner.MAX_TOK_S


@fuzz(st.one_of(st.binary(max_size=200),
                st.lists(st.tuples(st.sampled_from(["positions", "prompt_tokens", "elapsed_ns", "elapsed_ms", ""]),
                                   st.sampled_from(["=", "==", ""]),
                                   st.one_of(st.integers(-10, 10**30).map(str), st.text(max_size=6))),
                         max_size=6).map(lambda parts: " ".join("".join(p) for p in parts).encode("utf-8",
                                                                                                    "surrogatepass"))))
def test_fuzz_read_stats(data: bytes) -> None:
    stats = runner._read_stats(str(scratch("run.stats", data)))
    assert all(isinstance(k, str) and isinstance(v, int) and 0 <= v < 10**18 for k, v in stats.items())


# -- build -------------------------------------------------------------------------------------------

SHA = "0" * 64
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3),
                           max_leaves=8)


@st.composite
def manifests(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "shaped", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    manifest = {"name": "prog", "size": draw(st.one_of(st.integers(-5, 2**64), JSON_VALUES)),
                "sha256": draw(st.one_of(st.just(SHA), st.text(alphabet="0123456789abcdefABCDEF", max_size=70),
                                         JSON_VALUES))}
    for key in draw(st.lists(st.sampled_from(["name", "size", "sha256"]), max_size=2)):
        manifest.pop(key, None)
    text = json.dumps(manifest)
    return text[:draw(st.integers(0, len(text)))].encode() if draw(st.booleans()) else text.encode()


@fuzz(manifests())
def test_fuzz_read_manifest_and_the_cache_check(data: bytes) -> None:
    binary = SCRATCH / "cached-prog"
    if not binary.exists():
        binary.write_bytes(b"\x7fELF" + bytes(60))
        binary.chmod(0o755)
    manifest = scratch("cached-prog" + build.MANIFEST_SUFFIX, data)
    found = only_raises(CacheError, build.read_manifest, manifest)
    if found is not None:
        assert set(found) == {"size", "sha256"} and found["size"] >= 0 and len(found["sha256"]) == 64
    problem = build._cached_problem(binary)  # never raises: any unusable manifest means a rebuild
    assert problem is None or isinstance(problem, str)
    if found is None:
        assert problem is not None


INCLUDE_NAMES = st.one_of(st.sampled_from(["local.h", "nested.h", "prog.c", "missing.h", "../x.h", "/dev/zero",
                                           "/proc/self/status", ".", "", "a\0b", "sub/../local.h", "x" * 300,
                                           "\udcff.h"]),
                          st.text(max_size=12))


@fuzz(st.lists(st.one_of(INCLUDE_NAMES.map(lambda n: f'#include "{n}"'), st.text(max_size=30)), max_size=8),
      st.lists(INCLUDE_NAMES.map(lambda n: f'#include "{n}"'), max_size=3))
def test_fuzz_source_bytes(source_lines: list[str], header_lines: list[str]) -> None:
    directory = SCRATCH / "src"
    directory.mkdir(exist_ok=True)
    (directory / "local.h").write_text("\n".join(header_lines) + "\n", errors="surrogateescape")
    (directory / "nested.h").write_text('#include "local.h"\n')
    src = directory / "prog.c"
    src.write_bytes("\n".join(source_lines).encode("utf-8", "surrogateescape"))
    data = only_raises(BuildError, build.source_bytes, src)
    assert data is not None and data.startswith(f"{src.stat().st_size}:".encode())


# -- bandwidth ---------------------------------------------------------------------------------------

@st.composite
def node_infos(draw) -> bytes:
    kind = draw(st.sampled_from(["json", "shaped", "bytes", "conflict"]))
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    entry = {"read_GBps": draw(st.one_of(st.floats(), st.integers(-5, 10**30), JSON_VALUES)),
             "bytes": draw(st.one_of(st.integers(-5, 2**40), JSON_VALUES)),
             "llc_bytes": draw(st.one_of(st.none(), st.integers(-5, 2**40), JSON_VALUES)),
             "method": "bwprobe"}
    data = {"memory_bandwidth": draw(st.one_of(st.dictionaries(st.text(max_size=8), st.just(entry), max_size=2),
                                               JSON_VALUES))}
    text = json.dumps(data)  # NaN and Infinity included, as Python writes them
    if kind == "conflict":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\n<<<<<<< HEAD\n" + text[at:] + "\n=======\n>>>>>>> other\n"
    return text.encode()


@fuzz(node_infos(), st.sampled_from(["fp-a", "", "x"]))
def test_fuzz_node_info(data: bytes, fingerprint: str) -> None:
    path = scratch("node-info.json", data)
    entry = only_raises(NodeInfoError, bandwidth.read_info, path, fingerprint)
    loaded = only_raises(NodeInfoError, bandwidth.load_info, path)
    if entry is not None:
        assert math.isfinite(entry["read_GBps"]) and entry["read_GBps"] > 0
    new = {"read_GBps": 1.5, "bytes": 1 << 30, "threads": 1, "passes": 8, "llc_bytes": None, "method": "m"}
    try:
        bandwidth.write_info(path, "fp-new", new)
    except NodeInfoError as exc:
        one_line(exc)
        assert loaded is None  # refused only what the reader refuses
        assert path.read_bytes() == data  # and never overwritten
        return
    assert loaded is not None
    assert bandwidth.read_info(path, "fp-new") == new
    assert bandwidth.load_info(path)["memory_bandwidth"].keys() >= loaded.get("memory_bandwidth", {}).keys()


PROBE_VALUES = st.one_of(st.sampled_from(["16.5", "0", "0.000", "inf", "nan", "-3", "1e999", "", "x", "\u0661",
                                          "99999999999999999999", "8"]),
                         st.floats().map(repr), st.integers(-5, 10**25).map(str), st.text(max_size=6))


@fuzz(st.one_of(st.text(max_size=80),
                st.lists(st.tuples(st.sampled_from(["bytes", "threads", "passes", "best_s", "read_GBps", "check"]),
                                   st.sampled_from(["=", ""]), PROBE_VALUES), max_size=8)
                .map(lambda parts: " ".join("".join(p) for p in parts))))
def test_fuzz_parse_probe_output(stdout: str) -> None:
    fields = only_raises(BandwidthError, bandwidth.parse_probe_output, stdout)
    if fields is not None:
        assert math.isfinite(fields["read_GBps"]) and fields["read_GBps"] > 0
        assert all(isinstance(fields[k], int) and fields[k] > 0 for k in ("bytes", "threads", "passes"))


# -- refrun.c ----------------------------------------------------------------------------------------

# with AddressSanitizer and UBSan where the compiler has them, so that an out-of-bounds read or an
# undefined operation fails the property even when it does not crash; their reports exit 99 and 98
SANITIZERS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer")
SANITIZER_ENV = {"ASAN_OPTIONS": "exitcode=99:detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "exitcode=98"}


@functools.cache
def refrun() -> Path:
    binary = SCRATCH / "refrun"
    source = str(Path(pyref.__file__).with_name("refrun.c"))
    cc = shutil.which("cc") or "cc"
    sanitized = subprocess.run([cc, "-O1", "-g", *SANITIZERS, "-o", str(binary), source, "-lm"], capture_output=True,
                               timeout=300)
    if sanitized.returncode != 0 or subprocess.run([str(binary)], capture_output=True, env=SANITIZER_ENV,
                                                   timeout=60).returncode != 1:
        subprocess.run([cc, "-O1", "-o", str(binary), source, "-lm"], check=True, capture_output=True, timeout=300)
    return binary


@fuzz(checkpoints(), tokenizers(), st.one_of(st.none(), st.text(max_size=10).filter(lambda t: "\0" not in t)),
      st.integers(-1, 8),
      st.sampled_from(["0", "0.7", "1", "5"]), st.sampled_from(["0.5", "0.9", "1", "0"]))
def test_fuzz_refrun_never_crashes(ckpt: bytes, tok: bytes, prompt, steps: int, temperature: str, topp: str) -> None:
    args = [str(refrun()), str(scratch("run.bin", ckpt)), "-z", str(scratch("run-tok.bin", tok)), "-n", str(steps),
            "-t", temperature, "-p", topp, "-s", "5"]
    if prompt:
        args += ["-i", prompt]
    proc = subprocess.run(args, capture_output=True, timeout=30, env={"PATH": os.environ.get("PATH", ""), **SANITIZER_ENV})
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr[-500:])
    if proc.returncode == 1:
        assert proc.stderr.strip(), "exit code 1 without a message"
