"""llama2.c model files: configurations, validating readers, synthetic writers. No pytest, no numpy.

Formats (see llama2.c's run.c, runq.c and export.py):

* A legacy ("version 0") checkpoint, what run.c reads: 7 little-endian int32 (dim, hidden_dim,
  n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means a separate
  classifier), then float32 tensors: token embedding, attention norms, wq, wk, wv, wo, FFN norms,
  w1, w2, w3, final norm, the two RoPE tables, the classifier when unshared.
* A version 2 ("Q8_0") checkpoint, what runq.c reads: a 256-byte header (magic "24ka", version 2,
  the 7 parameters, a shared-classifier byte, the int32 group size GS at byte 37), the float32
  norms, then every other tensor, one layer at a time, as int8 values followed by one float32
  scale per group of GS values.
* tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, the bytes.

The readers check a file before any binary is run on it, so that a truncated, foreign or versioned
file gives one clear line (:class:`ModelFileError`) instead of a crash of the C program.

The synthetic writers produce files of the published shapes with deterministic pseudo-random
weights, fast and with the standard library only. The random bytes are SHAKE-128 of a key naming
the seed, the tensor and a 64 KiB block, so the bytes do not depend on how the writer chunks its
work. A float32 weight is four such bytes with the top byte (sign and the 7 high exponent bits)
mapped through a 256-entry table: a random sign and an exponent that picks one of six pairs of
binades below 0.125, the lowest exponent bit and the mantissa staying random. The table's
weights follow a normal distribution, so the weights are bell-shaped with a standard deviation of
about 0.02 (exactly :data:`MATRIX_STD`) and never zero, denormal, infinite or NaN. RMSNorm
weights are 1 +- 5%; the RoPE tables hold the real cos/sin values. In the Q8 file the int8 values
follow a discretized normal distribution reaching +-127 and the scales are set so that the
dequantized weights have the same standard deviation as in the float file.

Two choices keep generation with these files like generation with a trained model, which matters
because they are used to benchmark it:

* Peaked softmax. The final RMSNorm weights are ``LOGIT_STD / (sqrt(dim) * MATRIX_STD)``, so that
  for a normalised hidden state the logits (classifier = embedding table) have a standard
  deviation of about ``LOGIT_STD`` = 4: the softmax is peaked and top-p sampling keeps few
  candidates, as with a trained model, instead of sorting a nearly flat distribution.
* No early stop. run.c stops when it samples BOS (id 1), so embedding row 1 is scaled by 0.1: its
  logit stays near 0 while the best logits are many standard deviations above it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import secrets
import stat
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import BinaryIO, NamedTuple, TypedDict, Union

from ..errors import OneLine
from ..fileutil import exclusive_lock

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_VERSION = 1  # bump whenever the synthetic files change; it names the cache directory
LEGACY_HEADER_BYTES = 28
Q8_HEADER_BYTES = 256
VERSIONED_MAGIC = 0x616B3432  # on disk: b"24ka"
LOGIT_STD = 4.0
BOS_ROW_SCALE = 0.1
BOS_ID = 1

_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
# the header's 7 parameters in _FIELDS order: ModelConfig's positional fields
_HeaderFields = tuple[int, int, int, int, int, int, int]
# beyond these a header is not a llama2.c model but a foreign file read as one
_FIELD_LIMITS = {
    "dim": 1 << 16,
    "hidden_dim": 1 << 18,
    "n_layers": 1 << 10,
    "n_heads": 1 << 12,
    "n_kv_heads": 1 << 12,
    "vocab_size": 1 << 22,
    "seq_len": 1 << 20,
}
_MAX_TOKEN_LENGTH_LIMIT = 1 << 16
_BLOCK_BYTES = 1 << 16
DEFAULT_CHUNK_BYTES = 1 << 24


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a llama2.c model. ``vocab_size`` is always positive here."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool = True

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    def describe(self) -> str:
        """One line, e.g. "dim 288, hidden_dim 768, ..., vocab 32000 (shared), seq_len 256"."""
        return (
            f"dim {self.dim}, hidden_dim {self.hidden_dim}, n_layers {self.n_layers}, "
            f"n_heads {self.n_heads}, n_kv_heads {self.n_kv_heads}, vocab {self.vocab_size} "
            f"({'shared' if self.shared_classifier else 'separate'} classifier), seq_len {self.seq_len}"
        )

    def header_bytes(self) -> bytes:
        """The 28-byte legacy header (vocab_size negative for a separate classifier)."""
        vocab = self.vocab_size if self.shared_classifier else -self.vocab_size
        return struct.pack("<7i", self.dim, self.hidden_dim, self.n_layers, self.n_heads,
                           self.n_kv_heads, vocab, self.seq_len)

    def _layer_floats(self) -> int:
        d, kv, h = self.dim, self.kv_dim, self.hidden_dim
        return 2 * d + 2 * d * d + 2 * kv * d + 3 * h * d

    def params(self) -> int:
        """Parameter count, RoPE tables excluded."""
        classifier = 0 if self.shared_classifier else self.vocab_size * self.dim
        return (self.vocab_size * self.dim + self.n_layers * self._layer_floats() + self.dim
                + classifier)

    def n_floats(self) -> int:
        """Float count of a legacy file's body: the parameters plus both RoPE tables."""
        return self.params() + self.seq_len * self.head_size

    def file_size(self) -> int:
        """Bytes of the legacy checkpoint."""
        return LEGACY_HEADER_BYTES + 4 * self.n_floats()

    def weight_bytes_per_token(self) -> int:
        """Checkpoint bytes a forward pass of one token reads (float32): every layer's matrices and
        norms, the final norm, the classifier (the whole embedding table when shared) and one
        embedding row for the token lookup. The RoPE tables are not read."""
        return 4 * (self.n_layers * self._layer_floats() + self.dim
                    + self.vocab_size * self.dim + self.dim)

    def q8_weight_bytes_per_token(self, group_size: int) -> int:
        """Bytes runq.c reads for one token of a Q8_0 checkpoint: the int8 matrices with their
        float32 group scales (the classifier included: the quantized embedding table when shared),
        the float32 norms, and one row of the embedding table, which runq.c dequantizes at load."""
        quantized = sum(count * (n + 4 * n // group_size) for _, count, n in _q8_tensor_sizes(self))
        return quantized + 4 * (2 * self.n_layers * self.dim + self.dim) + 4 * self.dim

    def q8_group_size(self) -> int:
        """The group size of our synthetic Q8_0 files: 64 halved until it divides dim and
        hidden_dim. (export.py halves it only until it divides dim; runq.c then computes the FFN
        wrongly when hidden_dim is not a multiple, as with stories260K at 64.)"""
        gs = 64
        while self.dim % gs or self.hidden_dim % gs:
            gs //= 2
        return gs

    def q8_file_size(self, group_size: int | None = None) -> int:
        """Bytes of the version 2 (Q8_0) checkpoint with that group size (default: q8_group_size)."""
        gs = self.q8_group_size() if group_size is None else group_size
        return Q8_HEADER_BYTES + 4 * (2 * self.n_layers * self.dim + self.dim) + sum(
            count * (n + 4 * n // gs) for _, count, n in _q8_tensor_sizes(self))


CONFIGS: dict[str, ModelConfig] = {
    "stories260K": ModelConfig(64, 172, 5, 8, 4, 512, 512),
    "stories15M": ModelConfig(288, 768, 6, 6, 6, 32000, 256),
    "stories42M": ModelConfig(512, 1376, 8, 8, 8, 32000, 1024),
    "stories110M": ModelConfig(768, 2048, 12, 12, 12, 32000, 1024),
}
TOKENIZER_FOR: dict[str, str] = {
    name: "tok512.bin" if name == "stories260K" else "tokenizer.bin" for name in CONFIGS
}


class ModelFileError(OneLine, ValueError):
    """A model or tokenizer file that cannot be used; the message is one line naming the file."""


class TokenizerInfo(NamedTuple):
    """What :func:`read_tokenizer` found: the pieces and scores of the first vocab_size tokens."""

    max_token_length: int
    pieces: list[bytes]
    scores: list[float]
    file_size: int


# -- readers ---------------------------------------------------------------------------------------

def _read_head(path: PathLike, nbytes: int = -1) -> tuple[bytes, int]:
    """The first ``nbytes`` bytes of a regular file (all of it by default) and its size. A FIFO,
    a device or a directory is refused before anything is read (a FIFO would block, a device
    never end)."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ModelFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{name}: is a directory, not a model file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise ModelFileError(f"{name}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ModelFileError(f"{name}: is a directory, not a model file")
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(f"{name}: not a regular file (a FIFO, socket or device), not a model file")
        # never ask for more than the file holds: read(n) allocates n bytes before reading
        want = info.st_size if nbytes < 0 else min(nbytes, info.st_size)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(want), info.st_size
    except OSError as exc:
        raise ModelFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _check_fields(name: str, values: _HeaderFields, shared: bool) -> ModelConfig:
    """Validate the 7 header parameters (vocab_size already made positive)."""
    for field, value in zip(_FIELDS, values):
        if value <= 0:
            raise ModelFileError(
                f"{name}: header field {field} is {value}, must be positive: "
                f"not a llama2.c checkpoint")
    for field, value in zip(_FIELDS, values):
        if value > _FIELD_LIMITS[field]:
            raise ModelFileError(
                f"{name}: header field {field} is {value}, beyond any llama2.c model "
                f"(limit {_FIELD_LIMITS[field]}): not a llama2.c checkpoint")
    config = ModelConfig(*values, shared_classifier=shared)
    if config.dim % config.n_heads:
        raise ModelFileError(f"{name}: dim {config.dim} is not a multiple of n_heads {config.n_heads}")
    if config.n_heads % config.n_kv_heads:
        raise ModelFileError(
            f"{name}: n_heads {config.n_heads} is not a multiple of n_kv_heads {config.n_kv_heads}")
    if config.head_size % 2:
        raise ModelFileError(
            f"{name}: head_size {config.head_size} (dim / n_heads) is odd; RoPE rotates pairs")
    return config


def _check_size(name: str, size: int, expected: int, what: str) -> None:
    if size != expected:
        cause = "truncated" if size < expected else "trailing data"
        raise ModelFileError(
            f"{name}: size {size} bytes, but its header ({what}) needs {expected}: "
            f"{cause} or not a llama2.c checkpoint")


def read_checkpoint_header(path: PathLike) -> ModelConfig:
    """Read and validate a legacy ("version 0") checkpoint's header against the file's size.

    Raises :class:`ModelFileError` for a missing or unreadable file, a versioned export.py file,
    impossible or absurd parameters, and any size other than the one the header implies."""
    name = os.fspath(path)
    head, size = _read_head(path, LEGACY_HEADER_BYTES)
    if size == 0:
        raise ModelFileError(f"{name}: empty file, not a llama2.c checkpoint")
    if head[:4] == struct.pack("<I", VERSIONED_MAGIC):
        version = struct.unpack_from("<i", head, 4)[0] if size >= 8 else "unknown"
        raise ModelFileError(
            f"{name}: a versioned export.py checkpoint (version {version}); "
            f"run.c reads only legacy (version 0) checkpoints")
    if size < LEGACY_HEADER_BYTES:
        raise ModelFileError(
            f"{name}: {size} bytes, shorter than the {LEGACY_HEADER_BYTES}-byte llama2.c header")
    values = struct.unpack("<7i", head)
    config = _check_fields(name, values[:5] + (abs(values[5]), values[6]), values[5] > 0)
    _check_size(name, size, config.file_size(), config.describe())
    return config


def read_q8_header(path: PathLike) -> tuple[ModelConfig, int]:
    """Read and validate a version 2 (Q8_0, runq.c) checkpoint's header: magic, version,
    parameters, group size (dividing dim, as export.py guarantees) and the exact file size."""
    name = os.fspath(path)
    head, size = _read_head(path, Q8_HEADER_BYTES)
    if size < Q8_HEADER_BYTES:
        raise ModelFileError(
            f"{name}: {size} bytes, shorter than the {Q8_HEADER_BYTES}-byte versioned header")
    magic, version = struct.unpack_from("<Ii", head, 0)
    if magic != VERSIONED_MAGIC:
        raise ModelFileError(f"{name}: no versioned llama2.c magic (0x{magic:08x}): not a Q8_0 checkpoint")
    if version != 2:
        raise ModelFileError(f"{name}: versioned checkpoint version {version}, runq.c reads version 2 (Q8_0)")
    values = struct.unpack_from("<7i", head, 8)
    shared, group_size = struct.unpack_from("<Bi", head, 36)
    if shared not in (0, 1):
        raise ModelFileError(f"{name}: shared-classifier flag is {shared}, must be 0 or 1")
    config = _check_fields(name, values, bool(shared))
    if group_size <= 0 or config.dim % group_size:
        raise ModelFileError(f"{name}: group size {group_size} does not divide dim {config.dim}")
    _check_size(name, size, config.q8_file_size(group_size),
                f"{config.describe()}, group size {group_size}")
    return config, group_size


def read_tokenizer(path: PathLike, vocab_size: int) -> TokenizerInfo:
    """Read and validate the first ``vocab_size`` tokens of a tokenizer.bin.

    The file does not store its token count; like run.c, this reads exactly ``vocab_size`` tokens
    and ignores any bytes after them (a larger tokenizer works with a model of a smaller vocab).
    Raises :class:`ModelFileError` when the file is too short for the header or for vocab_size
    tokens, a piece length is negative or above max_token_length, or a score is not finite."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, not {vocab_size}")
    name = os.fspath(path)
    head, size = _read_head(path, 4)
    if size < 4 or len(head) < 4:
        raise ModelFileError(f"{name}: {size} bytes, too short for the tokenizer header")
    max_len = struct.unpack_from("<i", head, 0)[0]
    if not 0 < max_len <= _MAX_TOKEN_LENGTH_LIMIT:
        raise ModelFileError(f"{name}: max_token_length {max_len} is impossible: not a tokenizer.bin")
    # vocab_size tokens take at most this many bytes: read no more, whatever the file's size
    data, size = _read_head(path, 4 + vocab_size * (8 + max_len))
    end = len(data)  # the file may have changed since its header was read
    pieces: list[bytes] = []
    scores: list[float] = []
    entry = struct.Struct("<fi")
    pos = 4
    for i in range(vocab_size):
        if pos + 8 > end:
            break
        score, length = entry.unpack_from(data, pos)
        if not 0 <= length <= max_len:
            raise ModelFileError(
                f"{name}: token {i} has length {length}, outside 0..max_token_length {max_len}")
        if not math.isfinite(score):
            raise ModelFileError(f"{name}: token {i} has a non-finite score {score}")
        pos += 8
        if pos + length > end:
            break
        pieces.append(data[pos:pos + length])
        scores.append(score)
        pos += length
    if len(pieces) < vocab_size:
        raise ModelFileError(
            f"{name} has only {len(pieces)} complete tokens, "
            f"the model's vocab_size is {vocab_size}")
    return TokenizerInfo(max_len, pieces, scores, size)


F64_MAX_BYTES = 64 << 20


class WeightsF64(TypedDict):
    """What :func:`read_weights_f64` returns; the per-layer keys hold one flat list per layer."""

    config: ModelConfig
    token_embedding: list[float]
    rms_att: list[list[float]]
    wq: list[list[float]]
    wk: list[list[float]]
    wv: list[list[float]]
    wo: list[list[float]]
    rms_ffn: list[list[float]]
    w1: list[list[float]]
    w2: list[list[float]]
    w3: list[list[float]]
    rms_final: list[float]
    wcls: list[float]


def read_weights_f64(path: PathLike, max_bytes: int = F64_MAX_BYTES) -> WeightsF64:
    """All weights of a small legacy checkpoint as Python floats, for a float64 reference model.

    Keys: "config" (ModelConfig), "token_embedding" (flat, vocab x dim), "rms_final", "wcls"
    (the embedding table itself when shared) and, as one list per layer, "rms_att", "wq", "wk",
    "wv", "wo", "rms_ffn", "w1", "w2", "w3"; matrices flat, row-major (out, in). Slow and memory
    hungry (a Python float per weight, about 8x the file): meant for stories260K-sized models, and
    a file above ``max_bytes`` is refused. :class:`ModelFileError` also for a weight that is NaN or
    infinite (the reference would compute nothing meaningful with it)."""
    config = read_checkpoint_header(path)
    name = os.fspath(path)
    if config.file_size() > max_bytes:
        raise ModelFileError(f"{name}: {config.file_size()} bytes, too large for the float64 reference "
                             f"(at most {max_bytes}; it holds a Python float per weight)")
    data, _size = _read_head(path, config.file_size())
    floats = array("f")
    floats.frombytes(data[LEGACY_HEADER_BYTES:LEGACY_HEADER_BYTES + 4 * config.n_floats()])
    if len(floats) != config.n_floats():
        raise ModelFileError(f"{name}: changed while it was read (now shorter than its header says)")
    if sys.byteorder == "big":
        floats.byteswap()
    values = floats.tolist()
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        raise ModelFileError(f"{name}: weight {bad} (byte {LEGACY_HEADER_BYTES + 4 * bad}) is {values[bad]}, "
                             f"not a finite number: a corrupt checkpoint")
    d, kv, h, n_layers = config.dim, config.kv_dim, config.hidden_dim, config.n_layers
    pos = 0

    def take(n: int) -> list[float]:
        nonlocal pos
        pos += n
        return values[pos - n:pos]

    def per_layer(n: int) -> list[list[float]]:
        return [take(n) for _ in range(n_layers)]

    # the calls to take() follow the file's order
    token_embedding = take(config.vocab_size * d)
    rms_att, wq, wk, wv, wo = per_layer(d), per_layer(d * d), per_layer(kv * d), per_layer(kv * d), per_layer(d * d)
    rms_ffn, w1, w2, w3 = per_layer(d), per_layer(h * d), per_layer(d * h), per_layer(h * d)
    rms_final = take(d)
    take(config.seq_len * config.head_size)  # the RoPE tables
    wcls = token_embedding if config.shared_classifier else take(config.vocab_size * d)
    return WeightsF64(config=config, token_embedding=token_embedding, rms_att=rms_att, wq=wq, wk=wk, wv=wv,
                      wo=wo, rms_ffn=rms_ffn, w1=w1, w2=w2, w3=w3, rms_final=rms_final, wcls=wcls)


# -- random weights --------------------------------------------------------------------------------

# (A, n): with probability n/128 a weight's biased exponent is 2A or 2A+1 (the random lowest
# exponent bit), that is |w| in [2^(2A-127), 2^(2A-125)). The counts bin a normal distribution of
# standard deviation about 0.015 into these factor-4 intervals; with the mantissa uniform within
# each binade, the standard deviation of the weights comes out at 0.0197 (MATRIX_STD).
_MATRIX_LEVELS = ((61, 4), (60, 73), (59, 38), (58, 9), (57, 3), (56, 1))


def _matrix_table() -> bytes:
    """The map of a random top float byte to a random sign and an exponent pair of _MATRIX_LEVELS."""
    table = bytearray(256)
    levels = [a for a, count in _MATRIX_LEVELS for _ in range(count)]
    for value in range(256):
        table[value] = (value & 0x80) | levels[value & 0x7F]
    return bytes(table)


def _matrix_std() -> float:
    """The exact standard deviation of the weights _MATRIX_TABLE makes."""
    # a binade [b, 2b) with a uniform mantissa has E[w^2] = 7/3 b^2; a pair is b and 2b equally
    mean_square = sum(count / 128 * 7 / 3 * (1 + 4) / 2 * math.ldexp(1.0, 2 * a - 127) ** 2
                      for a, count in _MATRIX_LEVELS)
    return math.sqrt(mean_square)


def _int8_table() -> bytes:
    """A discretized normal distribution over -127..127 (as unsigned bytes), by inverse CDF."""
    normal = NormalDist()
    sigma = 127 / normal.inv_cdf(255.5 / 256)
    return bytes(round(sigma * normal.inv_cdf((i + 0.5) / 256)) & 0xFF for i in range(256))


_MATRIX_TABLE = _matrix_table()
MATRIX_STD = _matrix_std()
_INT8_TABLE = _int8_table()
_INT8_STD = math.sqrt(sum((b - 256 if b > 127 else b) ** 2 for b in _INT8_TABLE) / 256)
_NORM_NOISE = 0.05


def _random_chunks(key: str, nbytes: int, chunk_bytes: int) -> Iterator[bytearray]:
    """``nbytes`` of the deterministic random stream named ``key``, in pieces of ``chunk_bytes``.

    Block k of the stream is SHAKE-128 of "key:k", ``_BLOCK_BYTES`` long (the last one shorter), so
    the stream does not depend on ``chunk_bytes``, a multiple of ``_BLOCK_BYTES``."""
    block = 0
    pos = 0
    while pos < nbytes:
        end = min(nbytes, pos + chunk_bytes)
        buf = bytearray()
        while pos < end:
            n = min(_BLOCK_BYTES, end - pos)
            buf += hashlib.shake_128(f"{key}:{block}".encode()).digest(n)
            block += 1
            pos += n
        yield buf


def _write_matrix(fh: BinaryIO, key: str, count: int, chunk_bytes: int) -> None:
    """``count`` bell-shaped float32 weights of standard deviation MATRIX_STD."""
    for buf in _random_chunks(key, 4 * count, chunk_bytes):
        buf[3::4] = buf[3::4].translate(_MATRIX_TABLE)
        fh.write(buf)


def _norm_values(key: str, count: int, scale: float = 1.0) -> list[float]:
    rng = random.Random(key)
    return [scale * (1.0 + _NORM_NOISE * (2.0 * rng.random() - 1.0)) for _ in range(count)]


def _write_floats(fh: BinaryIO, values: list[float]) -> None:
    fh.write(struct.pack(f"<{len(values)}f", *values))


def _rope_tables(config: ModelConfig) -> tuple[list[float], list[float]]:
    """cos and sin of pos * 10000^(-2i/head_size), seq_len rows of head_size/2."""
    half = config.head_size // 2
    freqs = [10000.0 ** (-2.0 * i / config.head_size) for i in range(half)]
    angles = [pos * f for pos in range(config.seq_len) for f in freqs]
    return [math.cos(a) for a in angles], [math.sin(a) for a in angles]


def _scale_floats_at(fh: BinaryIO, offset: int, count: int, factor: float) -> None:
    """Multiply ``count`` float32 values at byte ``offset`` of an open read-write file."""
    fh.seek(offset)
    values = struct.unpack(f"<{count}f", fh.read(4 * count))
    fh.seek(offset)
    _write_floats(fh, [v * factor for v in values])


def _final_norm_scale(config: ModelConfig) -> float:
    """The final RMSNorm weight that makes the logits' standard deviation about LOGIT_STD."""
    return LOGIT_STD / (math.sqrt(config.dim) * MATRIX_STD)


@contextlib.contextmanager
def _atomic_output(path: PathLike) -> Iterator[BinaryIO]:
    """A new file opened read-write under a temporary name in ``path``'s directory, renamed to
    ``path`` when the block succeeds and removed when it fails."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x+b") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _check_chunk(chunk_bytes: int) -> None:
    if chunk_bytes <= 0 or chunk_bytes % _BLOCK_BYTES:
        raise ValueError(f"chunk_bytes must be a positive multiple of {_BLOCK_BYTES}, not {chunk_bytes}")


# -- writers ---------------------------------------------------------------------------------------

def write_checkpoint(path: PathLike, config: ModelConfig, seed: int = 0, *,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
    """Write a synthetic legacy checkpoint of shape ``config`` (see the module docstring), atomically.

    The bytes depend only on ``config`` and ``seed``; ``chunk_bytes`` (a multiple of 64 KiB) only
    bounds the memory used."""
    _check_chunk(chunk_bytes)
    d, n_layers = config.dim, config.n_layers
    with _atomic_output(path) as fh:
        fh.write(config.header_bytes())
        _write_matrix(fh, f"{seed}:token_embedding", config.vocab_size * d, chunk_bytes)
        matrix_sizes = {"wq": d * d, "wk": config.kv_dim * d, "wv": config.kv_dim * d, "wo": d * d,
                        "w1": config.hidden_dim * d, "w2": d * config.hidden_dim,
                        "w3": config.hidden_dim * d}
        for key in ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3"):
            for layer in range(n_layers):
                if key in matrix_sizes:
                    _write_matrix(fh, f"{seed}:{key}:{layer}", matrix_sizes[key], chunk_bytes)
                else:
                    _write_floats(fh, _norm_values(f"{seed}:{key}:{layer}", d))
        _write_floats(fh, _norm_values(f"{seed}:rms_final", d, _final_norm_scale(config)))
        for table in _rope_tables(config):
            _write_floats(fh, table)
        if not config.shared_classifier:
            _write_matrix(fh, f"{seed}:wcls", config.vocab_size * d, chunk_bytes)
        _scale_floats_at(fh, LEGACY_HEADER_BYTES + 4 * BOS_ID * d, d, BOS_ROW_SCALE)


def _q8_tensor_sizes(config: ModelConfig) -> list[tuple[str, int, int]]:
    """(name, tensor count, elements each) of a Q8 file's quantized tensors, in file order."""
    d, kv, h, n_layers = config.dim, config.kv_dim, config.hidden_dim, config.n_layers
    sizes = [("token_embedding", 1, config.vocab_size * d), ("wq", n_layers, d * d),
             ("wk", n_layers, kv * d), ("wv", n_layers, kv * d), ("wo", n_layers, d * d),
             ("w1", n_layers, h * d), ("w2", n_layers, d * h), ("w3", n_layers, h * d)]
    if not config.shared_classifier:
        sizes.append(("wcls", 1, config.vocab_size * d))
    return sizes


def _write_q8_tensor(fh: BinaryIO, key: str, count: int, group_size: int, scale: float,
                     chunk_bytes: int) -> None:
    """``count`` int8 values, then ``count / group_size`` float32 scales within 1% of ``scale``
    (random low mantissa bits)."""
    for buf in _random_chunks(f"{key}:q", count, chunk_bytes):
        fh.write(buf.translate(_INT8_TABLE))
    fixed = struct.pack("<f", scale)
    n_scales = count // group_size
    for buf in _random_chunks(f"{key}:s", 4 * n_scales, chunk_bytes):
        n = len(buf) // 4
        buf[2::4] = fixed[2:3] * n
        buf[3::4] = fixed[3:4] * n
        fh.write(buf)


def write_q8_checkpoint(path: PathLike, config: ModelConfig, seed: int = 0,
                        group_size: int | None = None, *,
                        chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
    """Write a synthetic version 2 (Q8_0) checkpoint for runq.c, atomically.

    The dequantized weights have the float file's standard deviation; the final norm and the BOS
    row get the same treatment as in :func:`write_checkpoint`. ``group_size`` defaults to
    :meth:`ModelConfig.q8_group_size` and must divide dim and hidden_dim."""
    _check_chunk(chunk_bytes)
    gs = config.q8_group_size() if group_size is None else group_size
    if gs <= 0 or config.dim % gs or config.hidden_dim % gs:
        raise ValueError(f"group size {gs} must divide dim {config.dim} and hidden_dim {config.hidden_dim}")
    d, n_layers = config.dim, config.n_layers
    scale = MATRIX_STD / _INT8_STD
    header = struct.pack("<Ii7iBi", VERSIONED_MAGIC, 2, d, config.hidden_dim, n_layers,
                         config.n_heads, config.n_kv_heads, config.vocab_size, config.seq_len,
                         int(config.shared_classifier), gs)
    with _atomic_output(path) as fh:
        fh.write(header.ljust(Q8_HEADER_BYTES, b"\0"))
        for key in ("rms_att", "rms_ffn"):
            for layer in range(n_layers):
                _write_floats(fh, _norm_values(f"{seed}:{key}:{layer}", d))
        _write_floats(fh, _norm_values(f"{seed}:rms_final", d, _final_norm_scale(config)))
        embedding_at = fh.tell()
        for name, count, size in _q8_tensor_sizes(config):
            for index in range(count):
                _write_q8_tensor(fh, f"{seed}:q8:{name}:{index}", size, gs, scale, chunk_bytes)
        bos_scales_at = embedding_at + config.vocab_size * d + 4 * BOS_ID * d // gs
        _scale_floats_at(fh, bos_scales_at, d // gs, BOS_ROW_SCALE)


# -- synthetic tokenizer ---------------------------------------------------------------------------

# Common words of simple English stories, most frequent first. Every prefix of " word" becomes a
# piece, so the encoder turns each of these words (after a space) into one token.
_WORDS = [
    "the", "and", "Once", "upon", "time", "to", "was", "he", "she", "it", "they", "a", "little", "there", "day", "One",
    "The", "her", "his", "in", "of", "said", "with", "you", "on", "big", "that", "had", "named", "Lily", "Tom", "Ben",
    "Sam", "Sue", "Tim", "Anna", "Max", "Mia", "but", "so", "is", "we", "were", "very", "play", "played", "happy",
    "saw", "went", "wanted", "see", "not", "for", "at", "be", "what", "are", "all", "can", "do", "like", "up", "out",
    "have", "go", "them", "too", "help", "sad", "look", "looked", "asked", "when", "then", "this", "from", "back",
    "made", "fun", "toy", "tree", "park", "ball", "dog", "cat", "bird", "fish", "sun", "water", "house", "home",
    "girl", "boy", "friend", "friends", "new", "away", "did", "could", "would", "about", "an", "into", "no", "yes",
    "get", "got", "find", "found", "other", "good", "nice", "red", "blue", "green", "run", "ran", "jump", "jumped",
    "smiled", "laughed", "loved", "love", "thought", "know", "came", "come", "took", "give", "gave", "felt", "feel",
    "make", "food", "cake", "box", "car", "garden", "flower", "flowers", "sky", "rain", "outside", "inside",
    "together", "because", "something", "some", "every", "each", "many", "more", "let", "night", "sleep", "bed",
    "story", "book", "best", "learned", "learn", "careful", "kind", "share", "shared", "sorry", "thank", "thanks",
    "hug", "small", "tall", "bright", "shiny", "pretty", "strong", "brave", "scared", "excited", "surprised", "mommy",
    "daddy", "hat", "She", "He", "They", "It", "Mom", "Dad", "But", "Then", "When", "We", "I", "His", "Her", "one",
    "two", "three", "first", "again", "always", "never", "just", "now", "here", "where", "who", "why", "how", "way",
    "old", "long", "over", "under", "around", "near", "far", "walk", "walked", "talk", "talked", "say", "says", "tell",
    "told", "hear", "heard", "hold", "held", "eat", "ate", "open", "opened", "close", "closed", "show", "showed",
    "fly", "flew", "swim", "sing", "song", "dance", "danced", "laugh", "cry", "cried", "smile", "hand", "head", "eyes",
    "face", "door", "window", "room", "table", "chair", "bag", "hole", "rock", "stick", "leaf", "leaves", "grass",
    "forest", "river", "sea", "beach", "boat", "sand", "shell", "star", "moon", "cloud", "wind", "snow", "cold",
    "warm", "hot", "wet", "dry", "fast", "slow", "loud", "quiet",
]
# word endings and syllables, without a leading space
_SUFFIXES = [
    "ing", "ed", "er", "ly", "es", "en", "on", "an", "in", "at", "or", "ar", "le", "re", "st", "nd", "ll", "ou", "ow",
    "th", "he", "ight", "tion", "ful", "ness", "est", "ter", "ent", "ant", "all", "ill", "ell", "ook", "ake", "ame",
    "ine", "ide", "ove", "ound", "ack", "ick", "ock", "ong", "ang", "ice", "ace", "ate",
]
_VOWELS = frozenset("aeiouy")


def _prefix_chain(word: str) -> Iterator[str]:
    """The prefixes of ``word`` longer than one character, shortest first."""
    for end in range(2, len(word) + 1):
        yield word[:end]


def _pronounceable(piece: str) -> bool:
    """No three consonants or three vowels in a row (a leading space ignored)."""
    run_kind, run = None, 0
    for ch in piece.lstrip(" "):
        kind = ch in _VOWELS
        run = run + 1 if kind == run_kind else 1
        run_kind = kind
        if run >= 3:
            return False
    return True


def _synthetic_pieces(count: int, seed: int) -> list[str]:
    """``count`` unique pieces after the 259 fixed ones, in decreasing priority (score)."""
    pieces: list[str] = []
    seen: set[str] = set()

    def add(piece: str) -> None:
        if piece not in seen and len(pieces) < count:
            seen.add(piece)
            pieces.append(piece)

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for c in range(0x20, 0x7F):
        add(chr(c))
    for letter in letters + [ch.upper() for ch in letters]:
        add(" " + letter)
    for word in _WORDS:
        for prefix in _prefix_chain(" " + word):
            add(prefix)
    for word in _SUFFIXES + [w.lower() for w in _WORDS]:
        for prefix in _prefix_chain(word):
            add(prefix)
    # the rest: pronounceable concatenations of two lower-case pieces
    left = [p for p in pieces if p.lstrip(" ").isalpha() and p.lstrip(" ").islower()]
    right = [p for p in left if not p.startswith(" ") and len(p) <= 3]
    rng = random.Random(f"llama2c-tokenizer:{seed}")
    while len(pieces) < count:
        a = left[int(rng.random() * len(left))]
        b = right[int(rng.random() * len(right))]
        piece = a + b
        if len(piece) > 12 or piece in seen or not _pronounceable(piece):
            continue
        add(piece)
        left.append(piece)
        if len(piece) <= 3 and not piece.startswith(" "):
            right.append(piece)
    return pieces


def synthetic_vocab(vocab_size: int, seed: int = 0) -> list[bytes]:
    """The pieces of :func:`write_tokenizer`'s file: ``<unk>``, BOS, EOS, the 256 byte tokens, then
    printable ASCII, " "+letter, every prefix of common words (with a leading space), common
    endings and the words without a space, then seeded pronounceable concatenations."""
    if vocab_size < 259:
        raise ValueError(f"vocab_size must be at least 259 (the special and byte tokens), not {vocab_size}")
    fixed = ["<unk>", "\n<s>\n", "\n</s>\n"] + [f"<0x{b:02X}>" for b in range(256)]
    return [p.encode() for p in fixed + _synthetic_pieces(vocab_size - 259, seed)]


def write_tokenizer(path: PathLike, vocab_size: int, seed: int = 0) -> None:
    """Write a synthetic tokenizer.bin of exactly ``vocab_size`` tokens, atomically.

    The special and byte tokens score 0.0; piece ``id`` >= 259 scores ``-(id - 259)``, so the
    standard encoder (merge the adjacent pair whose concatenation scores highest) prefers the
    earlier pieces and encodes common English words as one token each."""
    pieces = synthetic_vocab(vocab_size, seed)
    parts = [struct.pack("<i", max(len(p) for p in pieces))]
    for token_id, piece in enumerate(pieces):
        score = 0.0 if token_id < 259 else -float(token_id - 259)
        parts.append(struct.pack("<fi", score, len(piece)))
        parts.append(piece)
    with _atomic_output(path) as fh:
        fh.write(b"".join(parts))


# -- the cache of synthetic models -----------------------------------------------------------------

def _model_cache_dir(cache_dir: PathLike) -> Path:
    directory = Path(cache_dir) / "models" / f"synthetic-v{FORMAT_VERSION}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(
            f"{directory}: cannot create the model cache directory: {exc.strerror or exc}") from None
    return directory


def _ensure(cache_dir: PathLike, name: str, quantized: bool) -> tuple[Path, Path]:
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(CONFIGS)}")
    config = CONFIGS[name]
    directory = _model_cache_dir(cache_dir)
    checkpoint = directory / (f"{name}_q80.bin" if quantized else f"{name}.bin")
    tokenizer = directory / TOKENIZER_FOR[name]
    try:
        with exclusive_lock(directory / ".lock"):
            try:
                valid = (read_q8_header(checkpoint) == (config, config.q8_group_size()) if quantized
                         else read_checkpoint_header(checkpoint) == config)
            except ModelFileError:
                valid = False
            if not valid:
                (write_q8_checkpoint if quantized else write_checkpoint)(checkpoint, config)
            try:
                read_tokenizer(tokenizer, config.vocab_size)
            except ModelFileError:
                write_tokenizer(tokenizer, config.vocab_size)
    except OSError as exc:
        raise ModelFileError(
            f"{directory}: cannot write the synthetic {name} model: {exc.strerror or exc}") from None
    return checkpoint, tokenizer


def ensure_synthetic_model(cache_dir: PathLike, name: str) -> tuple[Path, Path]:
    """The legacy checkpoint and the tokenizer of the synthetic ``CONFIGS[name]`` model, made once.

    Files live in ``cache_dir/models/synthetic-v{FORMAT_VERSION}``: ``{name}.bin`` and
    ``TOKENIZER_FOR[name]``. Files that validate are reused; others are (re)generated, under an
    exclusive lock on the directory, so that concurrent pytest-xdist workers generate once.
    Raises :class:`ModelFileError` naming the directory when it cannot be created or written."""
    return _ensure(cache_dir, name, quantized=False)


def ensure_synthetic_q8_model(cache_dir: PathLike, name: str) -> tuple[Path, Path]:
    """Like :func:`ensure_synthetic_model` for the version 2 (Q8_0) checkpoint ``{name}_q80.bin``
    at the default group size, with the same tokenizer."""
    return _ensure(cache_dir, name, quantized=True)
