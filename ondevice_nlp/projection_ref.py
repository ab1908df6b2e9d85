"""Pure NumPy/Python reference of the hashing projections (the specification).

The C++ core in ``custom_ops/`` (used by the TensorFlow op and by the TFLite
custom kernel) must reproduce this module bit for bit; the tests hold all
three against each other. Everything here works on UTF-8 *bytes*, read as
unsigned values, so results never depend on the platform's ``char``.

Pipeline for one input string (``bytes``):

1. **UTF-8 decoding.** Well-formed sequences follow Unicode 15, Table 3-7.
   A byte that does not start a well-formed sequence decodes to U+FFFD and
   covers exactly that one byte (decoding resumes at the next byte).
2. **Tokenization** (``tokenize``), by code point class:

   * *space*: ``cp <= 0x20``, ``0x7F <= cp <= 0xA0``, U+1680, U+2000..U+200B,
     U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF. Separates tokens; all
     C0/C1 controls (including NUL) count as space.
   * *single*: punctuation and symbols, each one token of its own: ASCII
     punctuation, U+00A1, U+00A7, U+00AB, U+00B6, U+00B7, U+00BB, U+00BF,
     U+0964, U+0965, U+2010..U+2027, U+2030..U+205E, U+2190..U+2BFF,
     U+3001..U+3003, U+1F000..U+1FAFF (emoji).
   * *nospace*: scripts written without spaces (Thai, Lao, Myanmar, Khmer,
     CJK, kana): each code point starts a token, except the Thai and Lao
     combining marks (``THAI_LAO_MARKS``), which extend the preceding nospace
     token when it ends right before them. So a Thai token is one base letter
     with its vowel and tone marks (measured in ``docs``/README: MTOP Thai
     utterances give 25 tokens on average).
   * *word*: everything else; a run of word code points is one token.

   With a *word dictionary* (config version 4, ``ProjectionConfig.words``)
   runs of nospace tokens that touch (each one's byte end is the next one's
   byte start) are then joined into words by maximal matching: a run, cut
   into chunks of at most ``MAX_RUN_TOKENS`` tokens, is split into pieces
   that are either a dictionary word (a stretch of at most ``word_len``
   tokens whose UTF-8 bytes, as written, have ``word_hash`` in ``words``)
   or one token outside every word, choosing the split with the fewest
   tokens outside words, then the fewest pieces (ties as ``segment_run``
   breaks them: the longest last piece, position by position). A piece is one token with the
   code points of its letters. So Thai, written without spaces, is read
   word by word where the dictionary knows the words (Thai word
   segmentation by maximal matching: Sornlertlamvanich 1993; the published
   pNLP-Mixer read multilingual-BERT word pieces instead).

   Only the first ``max_tokens`` tokens are kept. The C++ op stops reading
   once it has them, so a 1 MB string costs no more than its first tokens
   (this reference decodes the whole input first: same result, slower).
   U+FFFD, ZWJ and variation selectors are word characters, so invalid bytes
   join their neighbours and an emoji ZWJ sequence gives several tokens.
3. **Normalization.** Each token's code points are lowercased with a fixed
   table (``lower_cp``: ASCII, Latin-1, Latin Extended-A with U+0130 -> i, Greek, Cyrillic;
   other scripts unchanged), cut to the first ``MAX_TOKEN_CHARS`` code points
   and re-encoded as UTF-8 (U+FFFD as EF BF BD).
4. **Hashing.** ``unit_hash(b, seed) = fmix64(fnv1a64(b) ^ (seed * GOLDEN))``
   where ``fnv1a64`` is 64-bit FNV-1a (offset 0xcbf29ce484222325, prime
   0x100000001b3) over unsigned bytes and ``fmix64`` is the MurmurHash3
   64-bit finalizer. The k-th derived hash (k = 0, 1, ...) is
   ``fmix64(base + (k + 1) * GOLDEN)`` with ``GOLDEN = 0x9E3779B97F4A7C15``
   (splitmix64 stream). All arithmetic is modulo 2**64.
5. **Features** of one token, size F:

   * ``minhash`` (pNLP-Mixer, Fusco et al. 2022, Sec. 2.1): units are the
     character trigrams of ``0x02 + token + 0x03`` (so every token has at
     least one trigram). The fingerprint is, for k < N, the minimum over units
     of derived hash k. Counting Bloom filter: ``feat[h_k % F] += 1``; the
     entries sum to N.
   * ``ternary`` (pQRNN, Kaliamoorthi et al. 2021, Sec. 3; reference op
     ``SequenceStringProjection``): base = ``unit_hash(token)``; derived word
     j supplies features 32j..32j+31, two bits each from the least
     significant end; ``{00: 0, 01: +1, 10: -1, 11: 0}``.

   * ``hashid`` (token ids for the baselines' embedding tables, BiLSTM and
     transformer in ``models/baselines.py``): one feature per token, the id
     ``1 + unit_hash(token) % (F - 1)`` (the same bytes as ternary), with F the
     vocabulary size (>= 2, at most 2**16 so every id is exact in float32);
     id 0 is left to padding rows. Needs ``window=0`` and ``shape=0``; the
     output is [S, 1]. This is the hashing trick (Weinberger et al. 2009,
     "Feature Hashing for Large Scale Multitask Learning") on whole tokens.

   With ``shape=1`` (config version 2) the last ``NUM_SHAPE_FEATURES = 4``
   of the F features are token shape flags instead, after the extra features
   of the pQRNN reference op that overwrite its last feature slots (first
   letter capital, all caps; see shared/design/reference-notes.md). Minhash
   indices are taken modulo ``F - 4`` (``feat[h_k % (F - 4)] += 1``, the first
   F - 4 entries still sum to N); ternary features 0 .. F-5 are those of
   ``shape=0``. The flags are 0.0 or 1.0, computed from *all* code points of
   the token as decoded (before lowercasing, not cut to ``MAX_TOKEN_CHARS``),
   where a code point is *upper case* when ``lower_cp(cp) != cp`` (the fixed
   table of step 3) and a *decimal digit* when it is ASCII 0-9, Devanagari
   U+0966..U+096F or Thai U+0E50..U+0E59:

   * ``feat[F-4]``: the first code point is upper case;
   * ``feat[F-3]``: the token has at least 2 code points, all upper case;
   * ``feat[F-2]``: some code point is a decimal digit;
   * ``feat[F-1]``: every code point is a decimal digit.

   So "Call" gives 1, 0, 0, 0; "NASA" 1, 1, 0, 0; "8pm" 0, 0, 1, 0; "350"
   0, 0, 1, 1; U+FFFD (invalid bytes) is neither upper case nor a digit.
   With ``ngram = K`` (config version 3, minhash only; K in 2..8, 0 is off)
   a *nospace* token also reads the letter n-grams around it: tokens of the
   nospace class that touch (each one's byte end is the next one's byte
   start) form runs, and every stretch of 2..K consecutive tokens of a run
   is the unit ``0x04 + the normalized bytes of its tokens`` (step 3,
   without the 0x02/0x03 frame). A token's *n-gram fingerprint* is the
   MinHash (N values, the same hashes) over the stretches that contain it;
   it is counted into the same Bloom filter as the token's own fingerprint,
   whose entries then sum to 2N (N for a token in no stretch). So a Thai
   letter keeps its own features and adds the syllables and words it is part
   of, up to K letters: conjunctions of letters that the bottleneck, linear
   over a window of single letters, cannot form. Only the kept tokens (the
   first S) take part; other scripts' features are those of ``ngram=0``.
6. **Window** (pNLP-Mixer): the features of tokens ``i-w .. i+w`` are
   concatenated, zeros outside the text; output size ``(2w+1) * F``.

Outputs for a batch of B strings: ``features`` float32 [B, S, (2w+1)F],
``mask`` float32 [B, S] (1.0 for real tokens), ``offsets`` int32 [B, S, 2]
(UTF-8 byte start, end of each token; 0, 0 for padding), S = max_tokens.
Padding rows of ``features`` are all zero (shape flags included).

Config vector (``ProjectionConfig.to_vector``, the op's int32 input; method
id 0 minhash, 1 ternary, 2 hashid):
version 1, 7 entries ``[1, method, F, N, w, S, seed]`` (``shape=0``, every
model made before version 2); version 2, 8 entries ``[2, method, F, N, w, S,
seed, shape]`` (written for ``shape=1``; ``shape=0`` is accepted and equals
version 1); version 3, 9 entries ``[3, method, F, N, w, S, seed, shape,
ngram]`` (written for ``ngram > 0``; ``ngram=0`` is accepted and equals
version 2); version 4, ``11 + 2K`` entries ``[4, method, F, N, w, S, seed,
shape, ngram, K, L, lo_0, hi_0, ..., lo_{K-1}, hi_{K-1}]`` (written when
there is a word dictionary: K word hashes, each as its low and high 32 bits
in int32 two's complement, strictly increasing as uint64; L = ``word_len``;
ngram must be 0).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Sequence

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MAX_TOKEN_CHARS = 64
METHODS = ("minhash", "ternary", "hashid")
MIN_HASHID_VOCAB = 2
"""Smallest vocabulary size F of ``hashid`` (ids 1 .. F-1; 0 is padding)."""
CONFIG_VERSION = 1
"""Version of a 7-entry config vector (no shape features)."""
SHAPE_CONFIG_VERSION = 2
"""Version of an 8-entry config vector, whose last entry is ``shape``."""
NGRAM_CONFIG_VERSION = 3
"""Version of a 9-entry config vector: ``shape``, then ``ngram``."""
MAX_NGRAM = 8
"""Largest ``ngram`` (touching nospace tokens joined into one n-gram unit)."""
NGRAM_UNIT_PREFIX = b"\x04"
"""First byte of a letter n-gram unit (``ngram > 0``); trigram units start 0x02 or a letter."""
NUM_SHAPE_FEATURES = 4
"""Token shape flags that take the last feature slots when ``shape=1``."""
MIN_SHAPE_FEATURE_SIZE = 8
"""Smallest F allowed with ``shape=1`` (F - 4 >= 4 hashed features)."""
WORDS_CONFIG_VERSION = 4
"""Version of a config vector with a word dictionary: 11 entries, then 2 per word hash."""
WORDS_HEADER_SIZE = 11
"""Entries of a version-4 config vector before the word hashes."""
MAX_WORDS = 1 << 16
"""Largest word dictionary (K word hashes)."""
MAX_WORD_LEN = 32
"""Largest ``word_len``: nospace tokens (letters with their marks) in one dictionary word."""
MAX_RUN_TOKENS = 256
"""Touching nospace tokens segmented at once; a longer run is cut into chunks of this many."""
DECIMAL_DIGITS = ((0x30, 0x39), (0x0966, 0x096F), (0x0E50, 0x0E59))
"""Inclusive code point ranges of the shape features' decimal digits: ASCII, Devanagari, Thai."""

THAI_LAO_MARKS = frozenset(
    [0x0E31, *range(0x0E34, 0x0E3B), *range(0x0E47, 0x0E4F),
     0x0EB1, *range(0x0EB4, 0x0EBD), *range(0x0EC8, 0x0ECF)])

SPACE, SINGLE, NOSPACE, WORD = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class ProjectionConfig:
    """Settings of a projection; travels in the model as an int32 vector.

    Attributes:
      method: "minhash" (pNLP-Mixer), "ternary" (pQRNN) or "hashid" (token
        ids for the baselines; needs window=0, shape=0).
      feature_size: F, features per token; for hashid the vocabulary size
        (one feature per token, the id).
      num_hashes: N, MinHash fingerprint length (minhash only).
      window: w, neighbours concatenated on each side.
      max_tokens: S, sequence length of the output (tokens beyond are dropped).
      seed: non-negative int32 hash seed.
      shape: 0, or 1 for the 4 token shape flags in the last feature slots
        (config version 2; needs F >= 8; see the module doc, step 5).
      ngram: 0, or K in 2..8: a nospace token (Thai letter) also counts a
        MinHash fingerprint of the stretches of 2..K touching nospace tokens
        that contain it (config version 3, minhash only; module doc, step 5).
      words: the word dictionary (config version 4; module doc, step 2):
        strictly increasing ``word_hash`` values (uint64), at most
        ``MAX_WORDS``; ``()`` for none. Build it with ``word_dictionary``.
      word_len: L, the most nospace tokens in a dictionary word (1 ..
        ``MAX_WORD_LEN`` with words, 0 without).

    Raises:
      ValueError: a field out of range (its name is in the message).
    """

    method: str = "minhash"
    feature_size: int = 1024
    num_hashes: int = 64
    window: int = 1
    max_tokens: int = 64
    seed: int = 0
    shape: int = 0
    ngram: int = 0
    words: tuple = dataclasses.field(default=(), repr=False)
    word_len: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name, lo, hi in (("feature_size", 1, 1 << 16), ("num_hashes", 1, 4096),
                             ("window", 0, 16), ("max_tokens", 1, 4096),
                             ("seed", 0, (1 << 31) - 1), ("shape", 0, 1),
                             ("ngram", 0, MAX_NGRAM)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {v!r}")
        if self.ngram == 1:
            raise ValueError("ngram must be 0 (off) or in [2, 8], got 1")
        if self.ngram and self.method != "minhash":
            raise ValueError(f"ngram must be 0 with method {self.method}, got {self.ngram}")
        if self.shape and self.feature_size < MIN_SHAPE_FEATURE_SIZE:
            raise ValueError(f"feature_size must be >= {MIN_SHAPE_FEATURE_SIZE} with shape=1, "
                             f"got {self.feature_size}")
        if self.method == "hashid":
            if self.feature_size < MIN_HASHID_VOCAB:
                raise ValueError(f"feature_size (the vocabulary size) must be >= "
                                 f"{MIN_HASHID_VOCAB} with method hashid, got {self.feature_size}")
            if self.window or self.shape:
                raise ValueError(f"window and shape must be 0 with method hashid, got "
                                 f"window={self.window}, shape={self.shape}")
        if not isinstance(self.words, tuple):
            raise ValueError(f"words must be a tuple of word hashes, got {type(self.words).__name__}")
        if len(self.words) > MAX_WORDS:
            raise ValueError(f"words must hold at most {MAX_WORDS} hashes, got {len(self.words)}")
        prev = -1
        for h in self.words:
            if not isinstance(h, (int, np.integer)) or not prev < h <= MASK64:
                raise ValueError("words must be strictly increasing ints in [0, 2**64), got "
                                 f"{h!r} after {prev}")
            prev = h
        lo = 1 if self.words else 0
        hi = MAX_WORD_LEN if self.words else 0
        if not isinstance(self.word_len, (int, np.integer)) or not lo <= self.word_len <= hi:
            raise ValueError(f"word_len must be an int in [{lo}, {hi}] with {len(self.words)} "
                             f"words, got {self.word_len!r}")
        if self.words and self.ngram:
            raise ValueError(f"ngram must be 0 with a word dictionary, got {self.ngram}")

    def summary(self) -> dict:
        """The fields as a JSON-able dict for a model's metadata: ``dataclasses.asdict``
        without ``words`` and ``word_len`` when there is no word dictionary (so the
        metadata of such configs is what it was before version 4), and with the
        number of words in place of their hashes otherwise (the hashes travel in
        the model's config vector)."""
        d = dataclasses.asdict(self)
        if self.words:
            d["words"] = len(self.words)
        else:
            del d["words"], d["word_len"]
        return d

    def summary_differences(self, other: dict) -> list[tuple[str, object, object]]:
        """The fields in which ``other``, a ``summary()`` dict (a model's metadata, a
        checkpoint's config), differs from this config's, as ``(field, other's, ours)``.
        A field ``other`` lacks counts as its default (metadata written before ``shape``,
        ``ngram`` or ``words`` existed; ``words`` 0 without a dictionary), so an older
        file's summary of the same config gives no differences. The word hashes are not
        compared, only their number."""
        ours = self.summary()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        defaults.update(words=0, word_len=0)
        return [(k, other.get(k, defaults[k]), ours.get(k, defaults[k]))
                for k in defaults if other.get(k, defaults[k]) != ours.get(k, defaults[k])]

    @functools.cached_property
    def word_set(self) -> frozenset:
        """``words`` as a frozenset, for ``tokenize`` (computed once per config)."""
        return frozenset(self.words)

    @property
    def token_size(self) -> int:
        """Features of one token before windowing: F, or 1 (the id) for hashid."""
        return 1 if self.method == "hashid" else self.feature_size

    @property
    def output_size(self) -> int:
        """Features per token after windowing, (2w+1)*F (1 for hashid)."""
        return (2 * self.window + 1) * self.token_size

    @property
    def hashed_size(self) -> int:
        """Hashed features per token: F, or F - 4 with shape=1 (the rest are shape flags)."""
        return self.feature_size - NUM_SHAPE_FEATURES * self.shape

    def to_vector(self) -> np.ndarray:
        """The op's config input (int32).

        Returns int32 [7] ``[1, method id, F, N, w, S, seed]`` (version 1) when
        ``shape=0`` and ``ngram=0``, so older configs keep their vector; int32 [8]
        ``[2, method id, F, N, w, S, seed, 1]`` when ``shape=1`` and ``ngram=0``;
        int32 [9] ``[3, method id, F, N, w, S, seed, shape, ngram]`` when ``ngram > 0``;
        int32 [11 + 2K] of version 4 with K > 0 word hashes (module doc).
        """
        vec = [METHODS.index(self.method), self.feature_size, self.num_hashes, self.window,
               self.max_tokens, self.seed]
        if self.words:
            halves = np.array(self.words, dtype=np.uint64)
            pairs = np.stack([halves & np.uint64(0xFFFFFFFF), halves >> np.uint64(32)], axis=1)
            head = np.array([WORDS_CONFIG_VERSION, *vec, self.shape, self.ngram, len(self.words),
                             self.word_len], dtype=np.int32)
            return np.concatenate([head, pairs.astype(np.uint32).view(np.int32).reshape(-1)])
        if self.ngram:
            return np.array([NGRAM_CONFIG_VERSION, *vec, self.shape, self.ngram], dtype=np.int32)
        if self.shape:
            return np.array([SHAPE_CONFIG_VERSION, *vec, self.shape], dtype=np.int32)
        return np.array([CONFIG_VERSION, *vec], dtype=np.int32)

    @classmethod
    def from_vector(cls, vec: Sequence[int]) -> "ProjectionConfig":
        """Inverse of ``to_vector``: 7 entries of version 1, 8 of version 2 (last:
        shape), 9 of version 3 (shape, ngram) or 11 + 2K of version 4.

        Raises:
          ValueError: another length, a version that does not match it, an
            unknown method id or a field out of range.
        """
        vec = [int(v) for v in vec]
        if len(vec) >= WORDS_HEADER_SIZE and vec[0] == WORDS_CONFIG_VERSION:
            k = vec[9]
            if not 0 <= vec[1] < len(METHODS) or k < 0 or len(vec) != WORDS_HEADER_SIZE + 2 * k:
                raise ValueError(f"bad projection config vector (version 4, {len(vec)} entries, "
                                 f"K = {k})")
            u = [v & 0xFFFFFFFF for v in vec[WORDS_HEADER_SIZE:]]
            words = tuple(u[2 * i] | (u[2 * i + 1] << 32) for i in range(k))
            return cls(METHODS[vec[1]], *vec[2:9], words=words, word_len=vec[10])
        versions = {7: CONFIG_VERSION, 8: SHAPE_CONFIG_VERSION, 9: NGRAM_CONFIG_VERSION}
        if (len(vec) not in versions or vec[0] != versions[len(vec)]
                or not 0 <= vec[1] < len(METHODS)):
            raise ValueError(f"bad projection config vector {vec}")
        return cls(METHODS[vec[1]], *vec[2:])


def fmix64(k: int) -> int:
    """MurmurHash3 64-bit finalizer on a Python int (mod 2**64)."""
    k &= MASK64
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    k ^= k >> 33
    return k


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a over unsigned bytes."""
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def unit_hash(data: bytes, seed: int = 0) -> int:
    """Base 64-bit hash of a byte string: fmix64(fnv1a64(data) ^ seed*GOLDEN)."""
    return fmix64(fnv1a64(data) ^ ((seed * GOLDEN) & MASK64))


def derived_hashes(base: int, n: int) -> np.ndarray:
    """uint64 [n]: fmix64(base + (k+1)*GOLDEN) for k < n (vectorized)."""
    with np.errstate(over="ignore"):
        k = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN) + np.uint64(base)
        k ^= k >> np.uint64(33)
        k *= np.uint64(0xFF51AFD7ED558CCD)
        k ^= k >> np.uint64(33)
        k *= np.uint64(0xC4CEB9FE1A85EC53)
        k ^= k >> np.uint64(33)
    return k


def decode_utf8(data: bytes) -> list[tuple[int, int, int]]:
    """Decode bytes into (code point, byte start, byte end) triples.

    Ill-formed bytes give (0xFFFD, i, i+1), one per byte (see module doc).
    """
    out = []
    i, n = 0, len(data)
    while i < n:
        b0 = data[i]
        if b0 < 0x80:
            out.append((b0, i, i + 1))
            i += 1
            continue
        if 0xC2 <= b0 <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif b0 == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF
        elif 0xE1 <= b0 <= 0xEC or 0xEE <= b0 <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif b0 == 0xED:
            need, lo, hi = 2, 0x80, 0x9F
        elif b0 == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= b0 <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif b0 == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F
        else:
            out.append((0xFFFD, i, i + 1))
            i += 1
            continue
        ok = i + need < n  # all continuation bytes present
        if ok:
            ok = lo <= data[i + 1] <= hi and all(
                0x80 <= data[i + j] <= 0xBF for j in range(2, need + 1))
        if not ok:
            out.append((0xFFFD, i, i + 1))
            i += 1
            continue
        cp = b0 & (0x1F if need == 1 else 0x0F if need == 2 else 0x07)
        for j in range(1, need + 1):
            cp = (cp << 6) | (data[i + j] & 0x3F)
        out.append((cp, i, i + need + 1))
        i += need + 1
    return out


def char_class(cp: int) -> int:
    """SPACE, SINGLE, NOSPACE or WORD for a code point (see module doc)."""
    if cp <= 0x20 or 0x7F <= cp <= 0xA0 or cp == 0x1680 or 0x2000 <= cp <= 0x200B \
            or cp in (0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF):
        return SPACE
    if cp < 0x80:
        return SINGLE if not (0x30 <= cp <= 0x39 or 0x41 <= cp <= 0x5A or 0x61 <= cp <= 0x7A) else WORD
    if cp in (0xA1, 0xA7, 0xAB, 0xB6, 0xB7, 0xBB, 0xBF, 0x0964, 0x0965) \
            or 0x2010 <= cp <= 0x2027 or 0x2030 <= cp <= 0x205E or 0x2190 <= cp <= 0x2BFF \
            or 0x3001 <= cp <= 0x3003 or 0x1F000 <= cp <= 0x1FAFF:
        return SINGLE
    if 0x0E00 <= cp <= 0x0EFF or 0x1000 <= cp <= 0x109F or 0x1780 <= cp <= 0x17FF \
            or 0x2E80 <= cp <= 0x2FFF or 0x3004 <= cp <= 0x31FF or 0x3400 <= cp <= 0x4DBF \
            or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FFFF:
        return NOSPACE
    return WORD


def _raw_tokens(data: bytes):
    """Tokens before word segmentation: (byte start, byte end, code points, class) each."""
    cur = None  # [start, end, cps, cls]
    for cp, s, e in decode_utf8(data):
        cls = char_class(cp)
        if cls == WORD and cur is not None and cur[3] == WORD and cur[1] == s:
            cur[1] = e
            cur[2].append(cp)
            continue
        if cp in THAI_LAO_MARKS and cur is not None and cur[3] == NOSPACE and cur[1] == s:
            cur[1] = e
            cur[2].append(cp)
            continue
        if cur is not None:
            yield tuple(cur)
            cur = None
        if cls == SPACE:
            continue
        cur = [s, e, [cp], cls]
    if cur is not None:
        yield tuple(cur)


def word_hash(data: bytes) -> int:
    """uint64 hash of a word's UTF-8 bytes as written: ``fmix64(fnv1a64(data))`` (no seed)."""
    return fmix64(fnv1a64(data))


def segment_run(data: bytes, run: Sequence[tuple[int, int]], words: frozenset,
                word_len: int) -> list[tuple[int, int]]:
    """Maximal matching of one run of touching nospace tokens (module doc, step 2).

    Args:
      data: the UTF-8 input.
      run: (byte start, byte end) of each token; each one's end is the next
        one's start; at most ``MAX_RUN_TOKENS`` of them.
      words: the ``word_hash`` values of the dictionary; ``word_len`` the
        most tokens in a word.

    Returns:
      The pieces as (first token, one past the last token) index pairs, in
      order, covering the run. Dynamic programming over token positions i =
      0, 1, ...: from i, one token outside every word costs (1 outside, 1
      piece), a dictionary word of j - i <= word_len tokens (0, 1); the
      cost of reaching j only changes when strictly lower (so, on a tie, the
      split through the earliest i wins).
    """
    n = len(run)
    best: list[tuple[int, int] | None] = [None] * (n + 1)
    best[0] = (0, 0)
    back = [0] * (n + 1)
    for i in range(n):
        outside, pieces = best[i]
        options = [(i + 1, (outside + 1, pieces + 1))]
        for j in range(i + 1, min(n, i + word_len) + 1):
            if word_hash(data[run[i][0]:run[j - 1][1]]) in words:
                options.append((j, (outside, pieces + 1)))
        for j, cost in options:
            if best[j] is None or cost < best[j]:
                best[j] = cost
                back[j] = i
    out, j = [], n
    while j > 0:
        out.append((back[j], j))
        j = back[j]
    return out[::-1]


def tokenize(data: bytes, max_tokens: int, words: frozenset = frozenset(),
             word_len: int = 0) -> list[tuple[int, int, list[int]]]:
    """Split UTF-8 bytes into at most ``max_tokens`` tokens (module doc, step 2).

    ``words`` (``ProjectionConfig.word_set``) and ``word_len``: the word
    dictionary, if any, that joins touching nospace tokens into words.
    Returns a list of (byte start, byte end, code points) per token.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    tokens: list[tuple[int, int, list[int]]] = []
    run: list[tuple[int, int, list[int], int]] = []  # touching nospace tokens, not yet split

    def flush():
        spans = [(t[0], t[1]) for t in run]
        for i, j in segment_run(data, spans, words, word_len):
            if len(tokens) < max_tokens:
                tokens.append((run[i][0], run[j - 1][1], [cp for t in run[i:j] for cp in t[2]]))
        run.clear()

    for tok in _raw_tokens(data):
        if len(tokens) >= max_tokens:
            break
        if not words:
            tokens.append(tok[:3])
            continue
        if tok[3] == NOSPACE:
            if run and run[-1][1] != tok[0]:
                flush()
            run.append(tok)
            if len(run) == MAX_RUN_TOKENS:
                flush()
        else:
            flush()
            if len(tokens) < max_tokens:
                tokens.append(tok[:3])
    if run:
        flush()
    return tokens


def word_letters(word: str) -> int:
    """The number of nospace tokens (letters with their marks) of one dictionary word.

    Raises:
      ValueError: ``word`` is not one run of touching nospace tokens (``tokenize``:
        empty, a space, a letter of another class) or has more than ``MAX_WORD_LEN``.
    """
    data = word.encode("utf-8")
    toks = list(_raw_tokens(data))
    if not toks or any(t[3] != NOSPACE for t in toks) or toks[0][0] != 0 \
            or toks[-1][1] != len(data) or any(a[1] != b[0] for a, b in zip(toks, toks[1:])):
        raise ValueError(f"{word!r} is not one run of letters of a script written without "
                         "spaces (Thai, Lao, Myanmar, Khmer, CJK)")
    if len(toks) > MAX_WORD_LEN:
        raise ValueError(f"{word!r} has {len(toks)} letters, more than {MAX_WORD_LEN}")
    return len(toks)


def word_dictionary(words: Iterable[str]) -> tuple[tuple[int, ...], int]:
    """The ``words`` and ``word_len`` of a ``ProjectionConfig`` for a list of words.

    Args:
      words: words of a script written without spaces (e.g. Thai), each one
        run of touching nospace tokens (``tokenize``): no space, no letter of
        another class; duplicates are allowed.

    Returns:
      (strictly increasing ``word_hash`` values of their UTF-8 bytes, the
      most tokens in one word).

    Raises:
      ValueError: a word that is not one run of nospace tokens, longer than
        ``MAX_WORD_LEN`` tokens (``word_letters``), or more than ``MAX_WORDS``
        distinct words; the message names the word's position (0-based) and the word.
    """
    hashes, longest = set(), 0
    for k, w in enumerate(words):
        try:
            letters = word_letters(w)
        except ValueError as exc:
            raise ValueError(f"word {k}: {exc}") from None
        hashes.add(word_hash(w.encode("utf-8")))
        longest = max(longest, letters)
    if len(hashes) > MAX_WORDS:
        raise ValueError(f"{len(hashes)} distinct words, more than {MAX_WORDS}")
    return tuple(sorted(hashes)), longest


def lower_cp(cp: int) -> int:
    """Fixed lowercase table: ASCII, Latin-1, Latin Ext-A, Greek, Cyrillic."""
    if 0x41 <= cp <= 0x5A:
        return cp + 0x20
    if cp < 0xC0:
        return cp
    if 0xC0 <= cp <= 0xDE and cp != 0xD7:
        return cp + 0x20
    if cp == 0x130:  # capital I with dot above -> i (U+0131 dotless i is already lower)
        return 0x69
    if 0x100 <= cp <= 0x137 or 0x14A <= cp <= 0x177:
        return cp | 1
    if 0x139 <= cp <= 0x148 or 0x179 <= cp <= 0x17E:
        return cp + 1 if cp & 1 else cp
    if cp == 0x178:
        return 0xFF
    if 0x391 <= cp <= 0x3A9 and cp != 0x3A2:
        return cp + 0x20
    if 0x410 <= cp <= 0x42F:
        return cp + 0x20
    if 0x400 <= cp <= 0x40F:
        return cp + 0x50
    return cp


def _encode_cp(cp: int) -> bytes:
    return chr(cp).encode("utf-8")


def normalize_token(cps: Sequence[int]) -> list[bytes]:
    """Lowercase, cut to MAX_TOKEN_CHARS; returns the UTF-8 bytes per code point."""
    return [_encode_cp(lower_cp(cp)) for cp in cps[:MAX_TOKEN_CHARS]]


def is_decimal_digit(cp: int) -> bool:
    """True for the shape features' decimal digits (``DECIMAL_DIGITS``)."""
    return any(lo <= cp <= hi for lo, hi in DECIMAL_DIGITS)


def shape_features(cps: Sequence[int]) -> np.ndarray:
    """float32 [4]: shape flags of a token's code points (all of them, as decoded).

    [first is upper case, >= 2 code points all upper case, some decimal digit,
    all decimal digits], each 0.0 or 1.0; upper case means ``lower_cp(cp) != cp``
    (module doc, step 5). ``cps`` must not be empty.
    """
    upper = [lower_cp(cp) != cp for cp in cps]
    digit = [is_decimal_digit(cp) for cp in cps]
    return np.array([upper[0], len(cps) >= 2 and all(upper), any(digit), all(digit)],
                    dtype=np.float32)


def _with_shape(feat: np.ndarray, cps: Sequence[int], cfg: ProjectionConfig) -> np.ndarray:
    """``feat`` (float32 [F]) with its last 4 entries set to the shape flags when cfg.shape."""
    if cfg.shape:
        feat[cfg.hashed_size:] = shape_features(cps)
    return feat


def minhash_fingerprint(cps: Sequence[int], cfg: ProjectionConfig) -> np.ndarray:
    """uint64 [N]: MinHash fingerprint of the token's character trigram units."""
    chars = [b"\x02", *normalize_token(cps), b"\x03"]
    fp = None
    for i in range(len(chars) - 2):
        h = derived_hashes(unit_hash(b"".join(chars[i:i + 3]), cfg.seed), cfg.num_hashes)
        fp = h if fp is None else np.minimum(fp, h)
    return fp


def minhash_features(cps: Sequence[int], cfg: ProjectionConfig,
                     ngram_fingerprint: np.ndarray | None = None) -> np.ndarray:
    """float32 [F]: counting Bloom filter of the token's MinHash fingerprint.

    Indices modulo ``cfg.hashed_size`` (F, or F - 4 followed by the shape flags).
    ``ngram_fingerprint`` (uint64 [N], from ``ngram_fingerprints``), when given,
    is counted into the same filter (entries then sum to 2N).
    """
    fps = [minhash_fingerprint(cps, cfg)]
    if ngram_fingerprint is not None:
        fps.append(ngram_fingerprint)
    idx = np.concatenate([fp % np.uint64(cfg.hashed_size) for fp in fps]).astype(np.int64)
    feat = np.bincount(idx, minlength=cfg.feature_size).astype(np.float32)
    return _with_shape(feat, cps, cfg)


def ternary_features(cps: Sequence[int], cfg: ProjectionConfig) -> np.ndarray:
    """float32 [F]: 2 hash bits per feature mapped {00:0, 01:+1, 10:-1, 11:0}.

    With cfg.shape the last 4 features are the shape flags instead.
    """
    base = unit_hash(b"".join(normalize_token(cps)), cfg.seed)
    words = derived_hashes(base, (cfg.feature_size + 31) // 32)
    shifts = np.arange(0, 64, 2, dtype=np.uint64)
    bits = ((words[:, None] >> shifts[None, :]) & np.uint64(3)).reshape(-1)[:cfg.feature_size]
    table = np.array([0.0, 1.0, -1.0, 0.0], dtype=np.float32)
    return _with_shape(table[bits.astype(np.int64)], cps, cfg)


def hashid_features(cps: Sequence[int], cfg: ProjectionConfig) -> np.ndarray:
    """float32 [1]: the token id ``1 + unit_hash(token) % (F - 1)`` (in [1, F - 1])."""
    base = unit_hash(b"".join(normalize_token(cps)), cfg.seed)
    return np.array([1 + base % (cfg.feature_size - 1)], dtype=np.float32)


def ngram_fingerprints(toks: Sequence[tuple[int, int, Sequence[int]]],
                       cfg: ProjectionConfig) -> list[np.ndarray | None]:
    """Per token, uint64 [N]: the MinHash over the letter n-gram units (stretches
    of 2..``cfg.ngram`` touching nospace tokens) that contain it, or None when
    the token is in no stretch.

    ``toks`` are ``tokenize``'s (byte start, byte end, code points) triples
    (module doc, step 5, ``ngram``).
    """
    fps: list[np.ndarray | None] = [None] * len(toks)
    data = [b"".join(normalize_token(cps)) for _, _, cps in toks]
    nospace = [char_class(cps[0]) == NOSPACE for _, _, cps in toks]
    for last in range(len(toks)):
        for n in range(2, cfg.ngram + 1):
            first = last - n + 1
            # Stop at the first stretch that leaves the run: longer ones leave it too.
            if first < 0 or not (nospace[first] and nospace[first + 1]
                                 and toks[first][1] == toks[first + 1][0]):
                break
            unit = NGRAM_UNIT_PREFIX + b"".join(data[first:last + 1])
            h = derived_hashes(unit_hash(unit, cfg.seed), cfg.num_hashes)
            for t in range(first, last + 1):
                fps[t] = h if fps[t] is None else np.minimum(fps[t], h)
    return fps


_FEATURE_FNS = {"minhash": minhash_features, "ternary": ternary_features,
                "hashid": hashid_features}


def project_one(data: bytes | str, cfg: ProjectionConfig):
    """Project one string. Returns (features [S, D] f32, mask [S] f32, offsets [S, 2] i32)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    S, F, w = cfg.max_tokens, cfg.token_size, cfg.window
    toks = tokenize(data, S, cfg.word_set, cfg.word_len)
    per_tok = np.zeros((S + 2 * w, F), dtype=np.float32)
    fn = _FEATURE_FNS[cfg.method]
    if cfg.ngram:
        for t, ((_, _, cps), fp) in enumerate(zip(toks, ngram_fingerprints(toks, cfg))):
            per_tok[t + w] = minhash_features(cps, cfg, fp)
    else:
        for t, (_, _, cps) in enumerate(toks):
            per_tok[t + w] = fn(cps, cfg)
    n = len(toks)
    feats = np.zeros((S, cfg.output_size), dtype=np.float32)
    for t in range(n):
        feats[t] = per_tok[t:t + 2 * w + 1].reshape(-1)
    mask = np.zeros((S,), dtype=np.float32)
    mask[:n] = 1.0
    offsets = np.zeros((S, 2), dtype=np.int32)
    for t, (s, e, _) in enumerate(toks):
        offsets[t] = (s, e)
    return feats, mask, offsets


def project(texts: Iterable[bytes | str], cfg: ProjectionConfig):
    """Project a batch. Returns features [B,S,D] f32, mask [B,S] f32, offsets [B,S,2] i32."""
    outs = [project_one(t, cfg) for t in texts]
    if not outs:
        S = cfg.max_tokens
        return (np.zeros((0, S, cfg.output_size), np.float32), np.zeros((0, S), np.float32),
                np.zeros((0, S, 2), np.int32))
    return tuple(np.stack(x) for x in zip(*outs))
