"""Hashing projection: pinned hash vectors, NumPy reference == TF op == TFLite
kernel (bit for bit), invalid inputs, and an ASan/UBSan run of the C++ core
and TFLite kernel through a standalone driver. Config versions 1 (7 entries),
2 (8 entries, token shape features), 3 (9 entries, letter n-grams) and 4
(11 + 2K entries, a word dictionary of K words)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from ondevice_nlp import projection_ref as ref

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20
INT32_MAX = (1 << 31) - 1


# --------------------------------------------------------------------------
# (a) Pinned vectors: any drift of the hash or the tokenizer fails loudly.
# --------------------------------------------------------------------------

def test_fnv1a64_standard_vectors():
    assert ref.fnv1a64(b"") == 0xCBF29CE484222325
    assert ref.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert ref.fnv1a64(b"foobar") == 0x85944171F73967E8


def test_pinned_unit_and_derived_hashes():
    assert ref.fmix64(0) == 0
    assert ref.fmix64(1) == 0xB456BCFC34C2CB2C
    assert ref.unit_hash(b"", 0) == 0xEFD01F60BA992926
    assert ref.unit_hash(b"a", 0) == 0x82A2A958A9BECE5B
    assert ref.unit_hash(b"hello", 0) == 0xE9C562C0FDB23244
    assert ref.unit_hash(b"hello", 7) == 0x454DAE2851EDA39C
    assert ref.unit_hash(b"\x02he", 0) == 0x39ACF4C384491F31
    assert ref.unit_hash("สวั".encode(), 3) == 0x14CC90904083580F
    assert ref.unit_hash(b"\xef\xbf\xbd", INT32_MAX) == 0xEBCFE20453640796
    derived = ref.derived_hashes(ref.unit_hash(b"hello", 0), 4)
    assert derived.dtype == np.uint64
    assert [int(x) for x in derived] == [0x70093FF1D7ED1D36, 0x494E7936F3347E21,
                                         0x1DBB3718C25A5443, 0x24179ADCC264309B]


def test_pinned_token_features():
    cps = ref.tokenize("Hello", 4)[0][2]
    mh = ref.minhash_features(cps, ref.ProjectionConfig("minhash", 1024, 16, 0, 4, 0))
    assert np.nonzero(mh)[0].tolist() == [78, 114, 163, 341, 352, 404, 412, 622, 623, 633,
                                          647, 749, 779, 890, 938, 1020]
    assert mh.sum() == 16
    tern = ref.ternary_features(cps, ref.ProjectionConfig("ternary", 40, 1, 0, 4, 5))
    assert tern.astype(int).tolist() == [
        -1, -1, 0, -1, -1, 0, 1, -1, 0, -1, 0, 0, 0, 1, 0, 1, 0, 1, 0, -1,
        -1, 1, 1, 1, 0, 1, -1, -1, 1, 1, 1, 1, 0, -1, 1, -1, -1, 0, 0, 0]


def test_lowercase_table_pins():
    """Fixed lowercase table: Latin-1, Ext-A pairs (U+0130 capital I with dot -> i), Greek, Cyrillic."""
    pairs = {0x41: 0x61, 0xC9: 0xE9, 0xD7: 0xD7, 0xDF: 0xDF, 0x100: 0x101, 0x130: 0x69, 0x131: 0x131,
             0x139: 0x13A, 0x178: 0xFF, 0x391: 0x3B1, 0x3A2: 0x3A2, 0x410: 0x430, 0x401: 0x451,
             0x0E01: 0x0E01}
    assert {cp: ref.lower_cp(cp) for cp in pairs} == pairs


def test_pinned_tokenization():
    toks = ref.tokenize("Hello, wörld! สวัสดี 😀👍🏽 e\u0301 ÿ\x00\xa0x", 20)
    assert [(s, e) for s, e, _ in toks] == [
        (0, 5), (5, 6), (7, 13), (13, 14), (15, 18), (18, 24), (24, 27), (27, 33), (34, 38),
        (38, 42), (42, 46), (47, 50), (51, 53), (56, 57)]
    # U+FFFD is a word character: ill-formed bytes join the word next to them.
    assert ref.tokenize(b"a \xff\xc0\x80b", 2) == [(0, 1, [0x61]), (2, 6, [0xFFFD] * 3 + [0x62])]


# Config version 2: token shape features (shape=1).
SHAPE_MINHASH = ref.ProjectionConfig("minhash", 64, 8, 1, 8, 7, shape=1)
SHAPE_TERNARY = ref.ProjectionConfig("ternary", 40, 1, 1, 8, 5, shape=1)
# Per string: shape flags of each token [upper first, all caps, some digit,
# all digits], then sha256 (first 16 hex digits) of the reference's features,
# mask and offsets bytes for SHAPE_MINHASH and SHAPE_TERNARY.
SHAPE_PINS = {
    "Call Dean": ([[1, 0, 0, 0], [1, 0, 0, 0]], "8b8fed895fd83885", "28fca6967e669d64"),
    "NASA": ([[1, 1, 0, 0]], "1ccb24cb75258897", "ff3365d144003170"),
    "at 8pm": ([[0, 0, 0, 0], [0, 0, 1, 0]], "e49f0bfc64f61db8", "704084521db73834"),
    "350": ([[0, 0, 1, 1]], "42f11de33e80facb", "6b01731a2673ae5c"),
    "๓๕๐ บาท": ([[0, 0, 1, 1]] * 3 + [[0, 0, 0, 0]] * 3, "14a5611d774b0191", "9e6bf18acc0cb344"),
    "९१२ रुपये": ([[0, 0, 1, 1], [0, 0, 0, 0]], "716d6aba914915f2", "18a1959f8c423e67"),
    "": ([], "180729b9da7f6458", "86ba91448ac836d8"),
    b"\xffAB\xc0 x": ([[0, 0, 0, 0], [0, 0, 0, 0]], "1a92e03d7483bb5d", "e47830f0e9a2c4d3"),
    "İstanbul ÀÉ Ωμέγα": ([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]], "5b0d627f90b174cb",
                           "b072bb69cd6cbb0c"),
}
SHAPE_TEXTS = tuple(t if isinstance(t, bytes) else t.encode() for t in SHAPE_PINS)


def _digest(outputs) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(o).tobytes() for o in outputs)).hexdigest()[:16]


@pytest.mark.parametrize("text", list(SHAPE_PINS), ids=repr)
def test_pinned_shape_projection(text):
    flags, *digests = SHAPE_PINS[text]
    for cfg, digest in zip((SHAPE_MINHASH, SHAPE_TERNARY), digests):
        out = ref.project_one(text, cfg)
        assert _digest(out) == digest, (cfg.method, _digest(out))
        n, f = int(out[1].sum()), cfg.feature_size
        center = out[0][:, f:2 * f]  # window 1: the token's own block
        assert center[:n, f - 4:].tolist() == flags
        assert not out[0][n:].any()  # padding rows stay zero
        if cfg.method == "minhash":  # Bloom filter over F - 4 slots, no count lost
            assert center[:n, :f - 4].sum(axis=1).tolist() == [cfg.num_hashes] * n


def test_pinned_shape_token_features():
    cps = ref.tokenize("Call Dean", 4)[1][2]
    mh = ref.minhash_features(cps, SHAPE_MINHASH)
    assert np.nonzero(mh[:60])[0].tolist() == [2, 12, 25, 29, 35, 41, 48, 59]
    assert mh[60:].tolist() == [1, 0, 0, 0]
    tern = ref.ternary_features(ref.tokenize("NASA", 4)[0][2], SHAPE_TERNARY)
    assert tern.astype(int).tolist() == [
        0, 0, 0, 0, 0, 0, 0, 0, -1, -1, 0, -1, 0, 0, 0, 1, 1, 0, -1, -1,
        1, 0, 1, 1, 0, 0, 0, 1, 1, -1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    # Ternary: the first F - 4 features are those of shape=0.
    plain = ref.ternary_features(ref.tokenize("NASA", 4)[0][2],
                                 dataclasses.replace(SHAPE_TERNARY, shape=0))
    np.testing.assert_array_equal(tern[:36], plain[:36])


def test_shape_flags_edge_cases():
    flags = lambda cps: ref.shape_features(cps).astype(int).tolist()  # noqa: E731
    assert flags([0x41]) == [1, 0, 0, 0]  # one capital: not "all caps"
    assert flags([0x41] * 70) == [1, 1, 0, 0]  # all 70 code points count, not 64
    assert flags([0x41] * 70 + [0x62]) == [1, 0, 0, 0]
    assert flags([0x31] * 80 + [0x78]) == [0, 0, 1, 0]
    assert flags([0x130, 0xC0, 0x178, 0x391, 0x401]) == [1, 1, 0, 0]  # table's upper case
    assert flags([0xD7, 0xDF, 0x131, 0xFFFD]) == [0, 0, 0, 0]  # not in the table: not upper
    assert flags([0x0966, 0x096F, 0x0E50, 0x0E59, 0x30, 0x39]) == [0, 0, 1, 1]
    assert flags([0xFF11]) == [0, 0, 0, 0] and flags([0x0661]) == [0, 0, 0, 0]  # other digits
    assert [ref.is_decimal_digit(cp) for cp in (0x2F, 0x3A, 0x965, 0x970, 0xE4F, 0xE5A)] == [False] * 6
    # Thai marks extend a Thai digit's token: some digit, not all.
    assert [ref.shape_features(c).tolist() for _, _, c in ref.tokenize("๓\u0e31 7", 4)] == [
        [0, 0, 1, 0], [0, 0, 1, 1]]
    # Tokens beyond 64 code points, in the full projection.
    feats, mask, _ = ref.project_one("A" * 70 + " " + "A" * 70 + "b", SHAPE_MINHASH)
    assert feats[:2, 124:128].tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]


def test_config_vectors_versions_and_round_trips():
    v1 = ref.ProjectionConfig("minhash", 1024, 64, 1, 64, 0)
    assert v1.shape == 0 and v1.hashed_size == 1024
    vec = v1.to_vector()
    assert vec.dtype == np.int32 and vec.tolist() == [1, 0, 1024, 64, 1, 64, 0]
    v2 = ref.ProjectionConfig("ternary", 512, 1, 0, 64, 3, shape=1)
    assert v2.hashed_size == 508 and v2.output_size == 512
    vec = v2.to_vector()
    assert vec.dtype == np.int32 and vec.tolist() == [2, 1, 512, 1, 0, 64, 3, 1]
    for cfg in (v1, v2, SHAPE_MINHASH):
        assert ref.ProjectionConfig.from_vector(cfg.to_vector()) == cfg
        assert ref.ProjectionConfig(**dataclasses.asdict(cfg)) == cfg
    # Version 2 with shape=0 is the version-1 config (written back as version 1).
    same = ref.ProjectionConfig.from_vector([2, 0, 1024, 64, 1, 64, 0, 0])
    assert same == v1 and same.to_vector().tolist() == [1, 0, 1024, 64, 1, 64, 0]
    # the metadata of a config without a word dictionary is what it was before version 4
    assert v1.summary() == {"method": "minhash", "feature_size": 1024, "num_hashes": 64,
                            "window": 1, "max_tokens": 64, "seed": 0, "shape": 0, "ngram": 0}
    # dicts written before the shape (version 2) and ngram (version 3) fields load as before
    old = {k: v for k, v in v1.summary().items() if k not in ("shape", "ngram")}
    assert ref.ProjectionConfig(**old) == v1
    # Version 2 with shape=0 projects exactly as version 1.
    for a, b in zip(ref.project(SHAPE_TEXTS, same), ref.project(SHAPE_TEXTS, v1)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape=2), "shape"), (dict(shape=-1), "shape"), (dict(shape=1.0), "shape"),
    (dict(shape="1"), "shape"), (dict(feature_size=7, shape=1), "feature_size"),
    (dict(feature_size=1, shape=1), "feature_size"),
])
def test_shape_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ref.ProjectionConfig(**kwargs)


def test_smallest_shape_config():
    cfg = ref.ProjectionConfig("minhash", 8, 64, 0, 4, 0, shape=1)
    feats, _, _ = ref.project_one("NASA 12", cfg)
    assert feats[:, :4].sum(axis=1).tolist() == [64, 64, 0, 0]
    assert feats[:, 4:].tolist() == [[1, 1, 0, 0], [0, 0, 1, 1], [0] * 4, [0] * 4]


# --------------------------------------------------------------------------
# (a2) Letter n-gram units (config version 3, ``ngram``).
# --------------------------------------------------------------------------

NGRAM_MINHASH = ref.ProjectionConfig("minhash", 1024, 64, 1, 64, 0, shape=1, ngram=4)  # base-ng4
NGRAM_SMALL = ref.ProjectionConfig("minhash", 64, 16, 0, 12, 0, ngram=3)
NGRAM_PINS = {  # text: (sha256[:16] of project_one with NGRAM_MINHASH, with NGRAM_SMALL)
    "ส่งข้อความสุขสันต์วันปีใหม่ให้ Steve และ Steve": ("0cc5ab027ab7cc9b", "5ae5b8faab86defd"),
    "ตั้งเวลา 7 โมง": ("9756098677f9bd86", "ee0dcba4f0178ed4"),
    "日本語のテキスト": ("05c271715eb9213d", "925ef452a63bbd30"),
    "set an alarm": ("d2cc07c86d79c6fa", "df894fff68a2fcee"),  # no nospace token: as ngram=0
}


@pytest.mark.parametrize("text", list(NGRAM_PINS))
def test_pinned_ngram_projection(text):
    for cfg, digest in zip((NGRAM_MINHASH, NGRAM_SMALL), NGRAM_PINS[text]):
        out = ref.project_one(text, cfg)
        assert _digest(out) == digest, (cfg.ngram, _digest(out))
        n, h = int(out[1].sum()), cfg.hashed_size
        block = out[0][:n, cfg.window * cfg.feature_size:][:, :h]  # the token's own block
        # N counts of its own fingerprint, N more for a token in a stretch of touching letters
        toks = ref.tokenize(text, cfg.max_tokens)
        in_run = [any(0 < j - i < cfg.ngram and all(
            ref.char_class(toks[m][2][0]) == ref.NOSPACE for m in range(i, j + 1)) and all(
            toks[m][1] == toks[m + 1][0] for m in range(i, j)) for i in range(len(toks))
            for j in range(len(toks)) if i <= t <= j) for t in range(n)]
        assert block.sum(axis=1).tolist() == [cfg.num_hashes * (1 + r) for r in in_run]
        assert any(in_run) == (text != "set an alarm")


def test_pinned_ngram_units():
    # "เพื่อน" (friend) is four tokens: เ, พื่, อ, น; the unit of a stretch is 0x04 + its bytes.
    toks = ref.tokenize("เพื่อน", 8)
    assert [b"".join(ref.normalize_token(c)).decode() for _, _, c in toks] == ["เ", "พื่", "อ", "น"]
    assert ref.unit_hash(b"\x04" + "เพื่".encode(), 0) == 10146232657158489809
    fps = ref.ngram_fingerprints(toks, NGRAM_SMALL)
    assert [np.nonzero(ref.minhash_features(c, NGRAM_SMALL, fp))[0].tolist()
            for (_, _, c), fp in zip(toks, fps)] == [
        [1, 4, 5, 7, 8, 11, 13, 14, 17, 19, 20, 21, 22, 23, 25, 27, 30, 31, 32, 33, 40, 44, 53,
         54, 57, 63],
        [3, 4, 7, 14, 17, 20, 21, 22, 25, 30, 31, 33, 35, 37, 38, 39, 40, 41, 44, 47, 49, 53, 54,
         56, 59, 63],
        [2, 3, 6, 7, 18, 20, 21, 22, 23, 26, 30, 31, 33, 37, 38, 40, 42, 46, 53, 56, 59, 60],
        [1, 4, 5, 7, 9, 12, 14, 18, 19, 21, 22, 23, 28, 31, 36, 39, 42, 46, 48, 51, 52, 58, 59,
         60]]
    # the n-gram fingerprint of token 1 (พื่) is the minimum over its stretches (K = 3):
    # เพื่, พื่อ, เพื่อ and พื่อน; its own fingerprint is counted beside it, unchanged
    units = ["เพื่", "พื่อ", "เพื่อ", "พื่อน"]
    want = np.minimum.reduce([ref.derived_hashes(ref.unit_hash(b"\x04" + u.encode(), 0), 16)
                              for u in units])
    np.testing.assert_array_equal(fps[1], want)
    own = ref.minhash_features(toks[1][2], NGRAM_SMALL)
    assert own.sum() == 16 and (ref.minhash_features(toks[1][2], NGRAM_SMALL, fps[1]) >= own).all()
    assert ref.ngram_fingerprints(ref.tokenize("ก ข", 4), NGRAM_SMALL) == [None, None]


def _rows(text, cfg):
    feats, mask, _ = ref.project_one(text, cfg)
    return feats[:int(mask.sum())]


def test_ngram_reach_and_runs():
    """With ngram = K and window 0, a Thai letter's features change with the letters up to K - 1
    away in its run and with nothing else: not beyond, not across a space or a Latin letter."""
    k3 = dataclasses.replace(NGRAM_SMALL, ngram=3)
    base = _rows("กขคงจฉชซ", k3)  # 8 letters, one token each
    swapped = _rows("กขคญจฉชซ", k3)  # token 3 replaced
    changed = [not np.array_equal(a, b) for a, b in zip(base, swapped)]
    assert changed == [False, True, True, True, True, True, False, False]
    plain = dataclasses.replace(k3, ngram=0)
    assert [not np.array_equal(a, b) for a, b in zip(_rows("กขคงจฉชซ", plain),
                                                     _rows("กขคญจฉชซ", plain))] == [False] * 3 + [True] + [False] * 4
    # runs end at a space and at a token of another class
    np.testing.assert_array_equal(_rows("กข คง", k3)[:2], _rows("กข", k3))
    np.testing.assert_array_equal(_rows("กขAคง", k3)[:2], _rows("กข", k3))
    np.testing.assert_array_equal(_rows("กขAคง", k3)[2:], _rows("A คง", k3))
    # a lone Thai letter and every other script: the features of ngram=0
    for text in ("ก", "set an alarm for 7 am", "नमस्ते दुनिया", "Ωμέγα 12", "ก a ข"):
        np.testing.assert_array_equal(_rows(text, k3), _rows(text, plain))
    # CJK characters are nospace tokens too; only the kept tokens (first S) take part
    assert not np.array_equal(_rows("日本語", k3), _rows("日本語", plain))
    short = dataclasses.replace(k3, max_tokens=2)
    np.testing.assert_array_equal(_rows("กขคง", short), _rows("กข", short))


def test_ngram_config_vectors_and_validation():
    vec = NGRAM_MINHASH.to_vector()
    assert vec.dtype == np.int32 and vec.tolist() == [3, 0, 1024, 64, 1, 64, 0, 1, 4]
    assert ref.ProjectionConfig.from_vector(vec) == NGRAM_MINHASH
    assert ref.ProjectionConfig(**dataclasses.asdict(NGRAM_MINHASH)) == NGRAM_MINHASH
    assert NGRAM_SMALL.to_vector().tolist() == [3, 0, 64, 16, 0, 12, 0, 0, 3]
    # version 3 with ngram=0 is the version-2 (or -1) config and projects as it
    same = ref.ProjectionConfig.from_vector([3, 0, 1024, 64, 1, 64, 0, 1, 0])
    assert same == dataclasses.replace(NGRAM_MINHASH, ngram=0)
    assert same.to_vector().tolist() == [2, 0, 1024, 64, 1, 64, 0, 1]
    for bad in ([3, 0, 1024, 64, 1, 64, 0, 1], [2, 0, 1024, 64, 1, 64, 0, 1, 4],
                [3, 1, 1024, 64, 1, 64, 0, 1, 4], [3, 0, 1024, 64, 1, 64, 0, 1, 1],
                [3, 0, 1024, 64, 1, 64, 0, 1, 9], [3, 0, 1024, 64, 1, 64, 0, 1, -1]):
        with pytest.raises(ValueError):
            ref.ProjectionConfig.from_vector(bad)


# --------------------------------------------------------------------------
# (a3) Word dictionary (config version 4, ``words``): maximal matching.
# --------------------------------------------------------------------------

TEST_WORDS = ["ส่ง", "ข้อความ", "วัน", "อังคาร", "ตั้งแต่", "เพื่อน", "ร่วม", "งาน", "ชั่วโมง", "นาที",
              "สี่", "สิบ", "ห้า", "ก", "กข", "ข่", "日本", "語", "ເພາະ"]
WORD_HASHES, WORD_LEN = ref.word_dictionary(TEST_WORDS)


def _pieces(text: str, words, word_len=None, max_tokens=64) -> list[str]:
    h, L = ref.word_dictionary(words)
    data = text.encode()
    return [data[s:e].decode() for s, e, _ in
            ref.tokenize(data, max_tokens, frozenset(h), word_len or L)]


def test_pinned_word_hashes_and_config_vector():
    assert ref.word_hash("วัน".encode()) == 0xB4BFD8E2635990CF
    assert ref.word_hash("日本".encode()) == 0x1230C55089FE4E43
    assert ref.word_hash(b"") == 0xEFD01F60BA992926
    # duplicates collapse; hashes sorted as uint64; L = most letters (อั ง ค า ร: 5)
    h, L = ref.word_dictionary(["วัน", "อังคาร", "วัน"])
    assert h == (0xAA9655F3823BBAE2, 0xB4BFD8E2635990CF) and L == 5
    cfg = ref.ProjectionConfig("ternary", 8, 1, 0, 8, 0, words=h, word_len=L)
    # low then high 32 bits of each hash, as int32
    assert cfg.to_vector().tolist() == [4, 1, 8, 1, 0, 8, 0, 0, 0, 2, 5, -2110014750, -1432988173,
                                        1666814159, -1262495518]
    assert ref.ProjectionConfig.from_vector(cfg.to_vector()) == cfg
    assert cfg.summary() == {"method": "ternary", "feature_size": 8, "num_hashes": 1, "window": 0,
                             "max_tokens": 8, "seed": 0, "shape": 0, "ngram": 0, "words": 2,
                             "word_len": 5}


def test_pinned_word_segmentation():
    text = "ตั้งแต่วันอังคาร กลุ่มเพื่อนร่วมงานได้ส่งข้อความ 日本語のテキスト Steve"
    assert _pieces(text, TEST_WORDS) == [
        "ตั้งแต่", "วัน", "อังคาร", "ก", "ลุ่", "ม", "เพื่อน", "ร่วม", "งาน", "ไ", "ด้", "ส่ง",
        "ข้อความ", "日本", "語", "の", "テ", "キ", "ス", "ト", "Steve"]
    # without a dictionary: one token per letter with its marks, as before
    letters = ref.tokenize(text.encode(), 64)
    assert ref.tokenize(text.encode(), 64, frozenset(), 0) == letters and len(letters) == 43


def test_segmentation_rules():
    # fewest letters outside words first: ก + ขคง (1 outside), not greedy กข + ค + ง (2)
    assert _pieces("กขคง", ["กข", "ขคง"]) == ["ก", "ขคง"]
    # then fewest pieces
    assert _pieces("กขค", ["กข", "ค", "กขค"]) == ["กขค"]
    # on a tie (ab|c and a|bc, each 0 outside, 2 pieces) the split through the earliest cut wins
    assert _pieces("กขค", ["ก", "ขค", "กข", "ค"]) == ["ก", "ขค"]
    # a word is made of whole letters: ส is known, but ส่ keeps its tone mark
    assert _pieces("ส่ง", ["ส", "ง"]) == ["ส่", "ง"]
    # runs end at spaces and at letters of other classes; they are not joined across them
    assert _pieces("วัน วัน", ["วันวัน", "วัน"]) == ["วัน", "วัน"]
    assert _pieces("วันAวัน", ["วัน"]) == ["วัน", "A", "วัน"]
    # a word longer than word_len letters is not tried
    assert _pieces("วันวัน", ["วันวัน", "วัน"], word_len=3) == ["วัน", "วัน"]
    # S counts pieces; the run is segmented before the cut
    assert _pieces("ข้อความข้อความส่ง", ["ข้อความ", "ส่ง"], max_tokens=2) == ["ข้อความ", "ข้อความ"]


def test_long_runs_are_segmented_in_chunks():
    # ข้อความ is 6 letters; 256 letters end 4 letters into the 43rd copy
    text = "ข้อความ" * 50
    pieces = _pieces(text, ["ข้อความ"], max_tokens=4096)
    assert pieces[:42] == ["ข้อความ"] * 42
    assert pieces[42:46] == ["ข้", "อ", "ค", "ว"]  # the chunk ends: no word fits
    assert pieces[46:48] == ["า", "ม"] and pieces[48:] == ["ข้อความ"] * 7
    assert "".join(pieces) == text


@pytest.mark.parametrize("words, match", [
    (["วัน วัน"], "not one run"), (["abc"], "not one run"), (["ก1"], "not one run"),
    ([""], "not one run"), (["ก" * 33], "more than 32"), (["ก\u00a0ข"], "not one run"),
])
def test_word_dictionary_errors(words, match):
    with pytest.raises(ValueError, match=match):
        ref.word_dictionary(words)


@pytest.mark.parametrize("kwargs, match", [
    (dict(words=[1, 2], word_len=1), "tuple"), (dict(words=(2, 1), word_len=1), "increasing"),
    (dict(words=(1, 1), word_len=1), "increasing"), (dict(words=(1 << 64,), word_len=1), "increasing"),
    (dict(words=(-1,), word_len=1), "increasing"), (dict(words=(1,), word_len=0), "word_len"),
    (dict(words=(1,), word_len=33), "word_len"), (dict(word_len=1), "word_len"),
    (dict(words=(1,), word_len=1, ngram=4), "ngram"),
])
def test_word_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ref.ProjectionConfig(**kwargs)


def test_word_config_vectors_rejected():
    ok = [4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0]
    assert ref.ProjectionConfig.from_vector(ok).words == (5,)
    for bad in BAD_WORD_VECTORS:
        with pytest.raises(ValueError):
            ref.ProjectionConfig.from_vector(bad)


@pytest.mark.parametrize("kwargs", [
    dict(ngram=1), dict(ngram=9), dict(ngram=-1), dict(ngram=2.0),
    dict(method="ternary", ngram=2), dict(method="hashid", window=0, feature_size=100, ngram=3),
])
def test_ngram_config_validation(kwargs):
    with pytest.raises(ValueError, match="ngram"):
        ref.ProjectionConfig(**kwargs)


# --------------------------------------------------------------------------
# Corpus of nasty text.
# --------------------------------------------------------------------------

_PIECES = [
    "set an alarm for 7 am", "What's the weather like in New York?", "CALL MOM", "x",
    "\U0001F469\u200D\U0001F4BB", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
    "\U0001F1EB\U0001F1F7", "\U0001F44D\U0001F3FD", "\u2764\ufe0f", "\U0001F600\U0001F600",
    "สวัสดีครับ", "ภาษาไทย", "ัุ่", "ເພາະວ່າ", "नमस्ते दुनिया", "क्या हाल है?", "।॥",
    "e\u0301\u0302", "a\u0308\u0323", "\u0301abc", "مرحبا بالعالم", "שלום עולם",
    "\u202eabc\u202c", "\u200f\u200e", "日本語のテキスト", "中文分词", "한국어 텍스트",
    "ΑΒΓΔ Ωμέγα ΣΑΣ", "ПРИВЕТ Мир Ёж ЂЏ", "ŸÀÉÎ×Þ ĲĳŁłŃŇŽ", "İı ſ", "\x00", "\t\n\r\x0b",
    "\u00a0", "\u3000", "\ufeff", "\u200b", "\u2028\u2029", "\u1680", "\x7f\x85",
    "y" * 300, "Ａｂｃ１２３", "¡Hola! ¿Qué tal?", "«quoted» §1 ¶·", "a—b…c‰", "→↑⌘", "、。〃",
    "မြန်မာ", "ខ្មែរ", "𠀀𠀁", "\U0010FFFF\U000E0001", "\uFFFD", "〄ぁァ",
    "ab12CD", "'\"!@#$%^&*()[]{}<>", "tab\tsep", "z" * 70,
]
_BAD_BYTES = [b"\xff", b"\xfe\xfe", b"\xc0\x80", b"\xc1\xbf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"\xf5\x80", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xbf\xbf", b"\xe0\x9f\x80",
              b"\xf0\x8f\xbf\xbf", b"\x00\x00", b"\xc3"]


def _random_text(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.randint(0, 9)):
        r = rng.random()
        if r < 0.55:
            out.append(rng.choice(_PIECES).encode())
        elif r < 0.7:
            out.append(rng.choice(_BAD_BYTES))
        elif r < 0.85:
            cps = []
            for _ in range(rng.randint(1, 12)):
                cp = rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x7FF),
                                 rng.randint(0x800, 0xFFFF), rng.randint(0x10000, 0x10FFFF),
                                 rng.randint(0x0E00, 0x0EFF)])
                cps.append(chr(cp if not 0xD800 <= cp <= 0xDFFF else 0xFFFD))
            out.append("".join(cps).encode())
        else:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))))
        out.append(rng.choice([b"", b" ", b"  ", b"\t", b"\n", b"\xc2\xa0"]))
    return b"".join(out)


@functools.lru_cache(maxsize=None)
def corpus() -> tuple[bytes, ...]:
    rng = random.Random(20240611)
    fixed = [b"", b" ", b"   \t\n  ", b"\x00", b"a\x00b", "\u3000\u00a0\ufeff".encode(),
             b"\xff" * 5, "Hello, World!".encode(), ("w" * 5000).encode(),
             " ".join(f"tok{i}" for i in range(300)).encode()]
    # Shape-feature cases last (earlier slices of the corpus stay as they were).
    shape = [*SHAPE_TEXTS, b"A" * 70 + b" " + b"A" * 70 + b"b " + b"1" * 80 + b"x NASA's"]
    return tuple(fixed + [_random_text(rng) for _ in range(70)] + shape)


@functools.lru_cache(maxsize=None)
def huge_strings() -> tuple[bytes, ...]:
    rng = random.Random(7)
    words = " ".join("".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 9)))
                     for _ in range(200000)).encode()[:MB]
    return (b"a" * MB, words, b" " * MB + b"end", "กั่".encode() * (MB // 9))


CONFIGS = [
    ref.ProjectionConfig("minhash", 1024, 64, 1, 64, 0),
    ref.ProjectionConfig("minhash", 64, 8, 0, 16, 7),
    ref.ProjectionConfig("minhash", 7, 3, 2, 5, 123),
    ref.ProjectionConfig("minhash", 1, 1, 0, 1, 0),
    ref.ProjectionConfig("minhash", 300, 200, 3, 24, INT32_MAX),
    ref.ProjectionConfig("ternary", 1024, 64, 1, 64, 0),
    ref.ProjectionConfig("ternary", 33, 1, 2, 7, 99),
    ref.ProjectionConfig("ternary", 1, 1, 16, 3, 5),
    ref.ProjectionConfig("ternary", 100, 4096, 0, 40, INT32_MAX),
    # Version 2: token shape features.
    ref.ProjectionConfig("minhash", 1024, 64, 1, 64, 0, shape=1),
    ref.ProjectionConfig("minhash", 8, 3, 2, 5, 123, shape=1),
    ref.ProjectionConfig("ternary", 37, 1, 1, 9, 99, shape=1),
    ref.ProjectionConfig("ternary", 8, 1, 16, 3, 5, shape=1),
    # hashid: token ids for the baselines (F = vocabulary size, one feature per token).
    ref.ProjectionConfig("hashid", 8000, 1, 0, 64, 0),
    ref.ProjectionConfig("hashid", 2, 1, 0, 5, INT32_MAX),
    ref.ProjectionConfig("hashid", 65536, 4096, 0, 24, 7),
    # Version 3: letter n-gram units (also run on THAI_TEXTS, see texts_for).
    NGRAM_MINHASH,
    ref.ProjectionConfig("minhash", 16, 4, 2, 9, 7, ngram=8),
    ref.ProjectionConfig("minhash", 32, 8, 0, 3, INT32_MAX, ngram=5),
    ref.ProjectionConfig("minhash", 8, 3, 1, 5, 123, shape=1, ngram=2),
]
NGRAM_CONFIGS = CONFIGS[-4:]
# Version 4: a word dictionary (also run on THAI_TEXTS and long runs, see texts_for).
WORD_CONFIGS = [
    ref.ProjectionConfig("ternary", 64, 1, 0, 64, 0, words=WORD_HASHES, word_len=WORD_LEN),
    ref.ProjectionConfig("minhash", 64, 8, 1, 16, 7, shape=1, words=WORD_HASHES, word_len=WORD_LEN),
    ref.ProjectionConfig("hashid", 100, 1, 0, 5, 3, words=WORD_HASHES, word_len=2),
    ref.ProjectionConfig("minhash", 16, 4, 0, 400, INT32_MAX, words=WORD_HASHES, word_len=WORD_LEN),
]
CONFIGS += WORD_CONFIGS
TFLITE_CONFIGS = [CONFIGS[0], CONFIGS[2], CONFIGS[5], CONFIGS[6], CONFIGS[9], CONFIGS[11],
                  CONFIGS[13], CONFIGS[15], *NGRAM_CONFIGS[:2], *WORD_CONFIGS]
THAI_TEXTS = tuple(t.encode() for t in (
    "ส่งข้อความสุขสันต์วันปีใหม่ให้ Steve และ Steve", "ตั้งแต่วันอังคาร กลุ่มเพื่อนร่วมงานได้ส่งข้อความหาฉันบ้างไหม",
    "ช่วยส่งข้อความไปยังเธรดยูเอฟโอได้ไหม", "จับเวลาหลังสี่ชั่วโมงเก้านาทีและสี่ชั่วโมงสี่สิบห้านาที" * 3,
    "พรุ่งนี้ฟีนิกซ์\u200bจะอากาศร้อนแค่ไหน", "ก", "กข", "ก ข", "ก่ำ๓", "ເພາະວ່າ ລາວ", "日本語のテキスト abc 中文分词",
    "กAข1ค\u0e31\u0e48ง", "\u0e48\u0e31กข", "ก\xa0ข\u3000ค", "ก" * 70 + "ข่" * 30))


LONG_RUNS = tuple(t.encode() for t in (
    "ข้อความ" * 50, "ส่งข้อความ" * 40 + " วัน", "ก" * 255 + "ข่", "ก" * 256 + "ข่", "ก" * 257 + "ข่"))


def texts_for(cfg: ref.ProjectionConfig) -> tuple[bytes, ...]:
    """The corpus, and for ngram and word configs runs of Thai letters besides (its random
    texts have few); for word configs, runs longer than a segmentation chunk too."""
    thai = THAI_TEXTS + tuple(b"\xff".join(THAI_TEXTS[:3]).split(b" "))
    return corpus() + (thai if cfg.ngram or cfg.words else ()) + (LONG_RUNS if cfg.words else ())


def _cfg_id(cfg: ref.ProjectionConfig) -> str:
    return (f"{cfg.method}-F{cfg.feature_size}-N{cfg.num_hashes}-w{cfg.window}"
            f"-S{cfg.max_tokens}-seed{cfg.seed}" + ("-shape" if cfg.shape else "")
            + (f"-ngram{cfg.ngram}" if cfg.ngram else "")
            + (f"-words{len(cfg.words)}-L{cfg.word_len}" if cfg.words else ""))


@functools.lru_cache(maxsize=None)
def reference(texts: tuple[bytes, ...], cfg: ref.ProjectionConfig):
    return ref.project(list(texts), cfg)


def assert_bit_exact(got, want, what: str = ""):
    names = ("features", "mask", "offsets")
    dtypes = (np.float32, np.float32, np.int32)
    for name, dtype, g, w in zip(names, dtypes, got, want):
        g = np.asarray(g)
        assert g.dtype == dtype, f"{what} {name}: dtype {g.dtype}"
        assert g.shape == w.shape, f"{what} {name}: shape {g.shape} != {w.shape}"
        # Compare the raw bits (catches -0.0 vs 0.0 too).
        np.testing.assert_array_equal(g.view(np.uint32), w.astype(dtype).view(np.uint32),
                                      err_msg=f"{what} {name}")


# --------------------------------------------------------------------------
# TensorFlow op.
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def ops(tf):
    from ondevice_nlp import ops as ops_module
    ops_module.load_tf_op_library()
    return ops_module


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cfg_id)
def test_tf_op_matches_reference(ops, cfg):
    texts = texts_for(cfg)
    got = ops.projection(list(texts), cfg.to_vector())
    assert_bit_exact([t.numpy() for t in got], reference(texts, cfg), _cfg_id(cfg))


def test_tf_op_shapes_and_empty_batch(ops, tf):
    cfg = CONFIGS[1]
    vec = cfg.to_vector()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def const_config(x):
        return ops.projection(x, tf.constant(vec))

    out = const_config.get_concrete_function().structured_outputs
    assert [o.shape.as_list() for o in out] == [[None, 16, 64], [None, 16], [None, 16, 2]]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([7], tf.int32)])
    def runtime_config(x, c):
        return ops.projection(x, c)

    out = runtime_config.get_concrete_function().structured_outputs
    assert [o.shape.as_list() for o in out] == [[None, None, None], [None, None], [None, None, 2]]
    got = runtime_config(tf.constant(list(corpus()[:12])), tf.constant(vec))
    assert_bit_exact([t.numpy() for t in got], reference(corpus()[:12], cfg))

    f, m, o = ops.projection(tf.zeros([0], tf.string), vec)
    assert f.shape == (0, 16, 64) and m.shape == (0, 16) and o.shape == (0, 16, 2)


def test_tf_op_accepts_config_of_7_8_or_9_entries(ops, tf):
    """One graph, config of unknown length: version 1 (7 entries), 2 (8) and 3 (9)."""
    v1, v2, v3 = CONFIGS[1], CONFIGS[10], NGRAM_CONFIGS[1]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int32)])
    def any_config(x, c):
        return ops.projection(x, c)

    texts = corpus()[-12:] + THAI_TEXTS
    for cfg in (v1, v2, v3):
        assert len(cfg.to_vector()) == (9 if cfg.ngram else 8 if cfg.shape else 7)
        got = any_config(tf.constant(list(texts)), tf.constant(cfg.to_vector()))
        assert_bit_exact([t.numpy() for t in got], reference(texts, cfg), _cfg_id(cfg))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def const_v2(x):
        return ops.projection(x, tf.constant(v2.to_vector()))

    out = const_v2.get_concrete_function().structured_outputs
    assert [o.shape.as_list() for o in out] == [[None, 5, 40], [None, 5], [None, 5, 2]]
    for size in (6, 10):
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=r"\[7\]"):
            tf.function(ops.projection, input_signature=[
                tf.TensorSpec([None], tf.string),
                tf.TensorSpec([size], tf.int32)]).get_concrete_function()


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[6], NGRAM_MINHASH], ids=_cfg_id)
def test_tf_op_huge_strings(ops, cfg):
    texts = huge_strings()
    start = time.perf_counter()
    got = ops.projection(list(texts), cfg.to_vector())
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"4 x 1 MB strings took {elapsed:.2f} s"
    assert_bit_exact([t.numpy() for t in got], reference(texts, cfg), "1MB")


BAD_VECTORS = [
    [0, 0, 16, 4, 1, 8, 0], [2, 0, 16, 4, 1, 8, 0], [1, 2, 16, 4, 1, 8, 0], [1, -1, 16, 4, 1, 8, 0],
    [1, 0, 0, 4, 1, 8, 0], [1, 0, 65537, 4, 1, 8, 0], [1, 0, -(1 << 31), 4, 1, 8, 0],
    [1, 0, 16, 0, 1, 8, 0], [1, 1, 16, 4097, 1, 8, 0], [1, 0, 16, 4, -1, 8, 0],
    [1, 0, 16, 4, 17, 8, 0], [1, 0, 16, 4, 1, 0, 0], [1, 0, 16, 4, 1, 4097, 0],
    [1, 0, 16, 4, 1, 8, -1], [1, 0, 16, 4, 1, 8], [1, 0, 16, 4, 1, 8, 0, 0],
    # Version 2: 8 entries, shape 0 or 1, F >= 8 with shape.
    [2, 0, 16, 4, 1, 8, 0, 2], [2, 1, 16, 4, 1, 8, 0, -1], [2, 0, 7, 4, 1, 8, 0, 1],
    [2, 1, 1, 1, 0, 8, 0, 1], [3, 0, 16, 4, 1, 8, 0, 1], [0, 0, 16, 4, 1, 8, 0, 0],
    [2, 2, 16, 4, 1, 8, 0, 1], [2, 0, 16, 4, 1, 8, -1, 1], [2, 0, 16, 4, 1, 8, 0, 1, 0],
    # hashid (method 2): vocabulary >= 2, window 0, shape 0; no method 3.
    [1, 2, 1, 4, 0, 8, 0], [2, 2, 16, 4, 0, 8, 0, 1], [1, 3, 16, 4, 0, 8, 0],
    # Version 3: 9 entries, ngram 0 or 2..8, minhash only.
    [3, 0, 16, 4, 1, 8, 0, 0, 1], [3, 0, 16, 4, 1, 8, 0, 0, 9], [3, 0, 16, 4, 1, 8, 0, 1, -1],
    [3, 1, 16, 4, 1, 8, 0, 0, 2], [3, 2, 16, 4, 0, 8, 0, 0, 2], [2, 0, 16, 4, 1, 8, 0, 1, 4],
    [3, 0, 16, 4, 1, 8, 0, 2, 4], [3, 0, 16, 4, 1, 8, 0, 1, 4, 0],
]
# Version 4: 11 + 2K entries; K hashes strictly increasing as uint64 (the int32 halves read
# unsigned), word_len 1..32 with words and 0 without, ngram 0 (custom_ops/tests has the same).
BAD_WORD_VECTORS = [
    [4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1], [4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0, 6],
    [4, 0, 16, 4, 1, 8, 0, 0, 0, 2, 1, 5, 0, 5, 0], [4, 0, 16, 4, 1, 8, 0, 0, 0, 2, 1, -1, 0, 1, 0],
    [4, 0, 16, 4, 1, 8, 0, 0, 0, 2, 1, 0, 1, 5, 0], [4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 0, 5, 0],
    [4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 33, 5, 0], [4, 0, 16, 4, 1, 8, 0, 0, 0, 0, 1],
    [4, 0, 16, 4, 1, 8, 0, 0, 4, 1, 1, 5, 0], [4, 0, 16, 4, 1, 8, 0, 0, 0, -1, 1],
    [4, 0, 16, 4, 1, 8, 0, 0, 0, (1 << 31) - 1, 1], [4, 3, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0],
    [4, 2, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0], [4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5],
]
BAD_VECTORS += BAD_WORD_VECTORS


@pytest.mark.parametrize("vec", BAD_VECTORS, ids=lambda v: ",".join(map(str, v)))
def test_invalid_config_tf_eager(ops, tf, vec):
    with pytest.raises(ValueError):
        ref.ProjectionConfig.from_vector(vec)
    with pytest.raises(tf.errors.InvalidArgumentError, match="OndeviceProjection"):
        ops.projection([b"hello world"], np.array(vec, np.int32))


def test_invalid_config_tf_graph(ops, tf):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def fn(x):
        return ops.projection(x, tf.constant([1, 0, 0, 4, 1, 8, 0]))

    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="feature_size"):
        fn.get_concrete_function()


def test_invalid_input_rank_tf(ops, tf):
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        ops.projection(tf.constant([[b"a"]]), CONFIGS[1].to_vector())
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        ops.projection(tf.constant(b"a"), CONFIGS[1].to_vector())


# --------------------------------------------------------------------------
# TFLite kernel.
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def tflite_model(cfg: ref.ProjectionConfig, runtime_config: bool = False,
                 config_size: int | None = 7) -> bytes:
    """A .tflite of the op alone: config constant, or a model input of
    ``config_size`` entries (None: any length)."""
    import tensorflow as tf
    from ondevice_nlp import ops
    vec = cfg.to_vector()
    if runtime_config:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                      tf.TensorSpec([config_size], tf.int32)])
        def fn(x, c):
            return ops.projection(x, c)
    else:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def fn(x):
            return ops.projection(x, tf.constant(vec))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.allow_custom_ops = True
    return converter.convert()


def run_tflite(interpreter, texts, config=None):
    inputs = sorted(interpreter.get_input_details(), key=lambda d: d["index"])
    interpreter.resize_tensor_input(inputs[0]["index"], [len(texts)])
    if config is not None:  # a config input of [7] or [8] entries, or of any length
        interpreter.resize_tensor_input(inputs[1]["index"], [len(config)])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs[0]["index"], np.array(list(texts), dtype=object))
    if config is not None:
        interpreter.set_tensor(inputs[1]["index"], np.asarray(config, np.int32))
    interpreter.invoke()
    outs = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    # Converted tuple outputs are named Identity, Identity_1, Identity_2.
    return [outs[k] for k in sorted(outs, key=lambda n: (len(n), n))]


@pytest.mark.parametrize("cfg", TFLITE_CONFIGS, ids=_cfg_id)
def test_tflite_matches_reference(ops, cfg):
    model = tflite_model(cfg)
    interpreter = ops.make_interpreter(model_content=model)
    texts = texts_for(cfg)
    assert_bit_exact(run_tflite(interpreter, texts), reference(texts, cfg), "batch")
    # Re-prepare with other batch sizes on the same interpreter.
    for i in (0, 3, 17):
        assert_bit_exact(run_tflite(interpreter, texts[i:i + 1]), reference(texts[i:i + 1], cfg),
                         f"single {i}")
    assert_bit_exact(run_tflite(interpreter, texts[:5]), reference(texts[:5], cfg), "batch 5")


@pytest.mark.parametrize("op_resolver", ["default", "no-delegates", "reference"])
def test_tflite_every_op_resolver(ops, op_resolver):
    """Our op is registered whichever builtin kernels the interpreter uses."""
    assert op_resolver in ops.OP_RESOLVERS
    cfg = CONFIGS[0]
    interpreter = ops.make_interpreter(model_content=tflite_model(cfg), op_resolver=op_resolver)
    texts = corpus()[:9]
    assert_bit_exact(run_tflite(interpreter, texts), reference(texts, cfg), op_resolver)


def test_tflite_huge_strings_and_latency(ops):
    cfg = CONFIGS[0]
    interpreter = ops.make_interpreter(model_content=tflite_model(cfg))
    texts = huge_strings()
    assert_bit_exact(run_tflite(interpreter, texts), reference(texts, cfg), "1MB")
    run_tflite(interpreter, [b"set an alarm for seven am tomorrow"])
    start = time.perf_counter()
    for _ in range(20):
        interpreter.invoke()
    per_call = (time.perf_counter() - start) / 20
    assert per_call < 0.05, f"one utterance took {per_call * 1e3:.1f} ms"


def test_tflite_model_path_and_empty_batch(ops, tmp_path):
    cfg = CONFIGS[2]
    path = tmp_path / "projection.tflite"
    path.write_bytes(tflite_model(cfg))
    interpreter = ops.make_interpreter(model_path=path, num_threads=2)
    outs = run_tflite(interpreter, [])
    assert [o.shape for o in outs] == [(0, 5, 35), (0, 5), (0, 5, 2)]
    assert_bit_exact(run_tflite(interpreter, corpus()[:9]), reference(corpus()[:9], cfg))


def test_tflite_runtime_config_input(ops):
    """Config as a model input: outputs are dynamic and sized in Eval."""
    cfg = CONFIGS[6]
    interpreter = ops.make_interpreter(model_content=tflite_model(cfg, runtime_config=True))
    texts = corpus()[:20]
    assert_bit_exact(run_tflite(interpreter, texts, cfg.to_vector()), reference(texts, cfg))
    other = CONFIGS[1]
    assert_bit_exact(run_tflite(interpreter, texts, other.to_vector()), reference(texts, other))
    with pytest.raises(RuntimeError, match="feature_size"):
        run_tflite(interpreter, texts, [1, 0, 0, 4, 1, 8, 0])
    with pytest.raises(RuntimeError, match="version"):
        run_tflite(interpreter, texts, [7, 0, 16, 4, 1, 8, 0])


def test_tflite_runtime_config_of_7_8_or_9_entries(ops):
    """Config input of any length: version 1 (7 entries), 2 (8) and 3 (9) on one
    interpreter (the kernel rebuilds its cached projector when the config changes)."""
    v1 = CONFIGS[6]
    v2 = dataclasses.replace(v1, shape=1)
    interpreter = ops.make_interpreter(
        model_content=tflite_model(v1, runtime_config=True, config_size=None))
    texts = corpus()[-12:] + THAI_TEXTS
    # the last two differ in ngram only: the cached projector must not be reused
    for cfg in (v1, v2, v1, CONFIGS[12], NGRAM_CONFIGS[1], NGRAM_CONFIGS[3], v1, NGRAM_CONFIGS[1],
                dataclasses.replace(NGRAM_CONFIGS[1], ngram=0), NGRAM_CONFIGS[1]):
        assert_bit_exact(run_tflite(interpreter, texts, cfg.to_vector()), reference(texts, cfg),
                         _cfg_id(cfg))
    for bad, match in (([2, 1, 33, 1, 2, 7, 99, 5], "shape"), ([2, 1, 7, 1, 2, 7, 99, 1], "feature_size"),
                       ([1, 1, 33, 1, 2, 7, 99, 1], "version"), ([2, 1, 33, 1, 2, 7], r"\[7\]"),
                       ([2, 1, 33, 1, 2, 7, 99, 1, 0], "version"),
                       ([3, 1, 33, 1, 2, 7, 99, 1, 2], "ngram"), ([3, 0, 33, 1, 2, 7, 99, 1, 4, 0], r"\[7\]")):
        with pytest.raises(RuntimeError, match=match):
            run_tflite(interpreter, texts, bad)


@pytest.mark.parametrize("vec", [[1, 0, 0, 64, 1, 64, 0], [3, 0, 1024, 64, 1, 64, 0],
                                 [1, 9, 1024, 64, 1, 64, 0], [1, 0, 1024, 64, 1, 64, -5],
                                 [1, 0, 1024, 64, 99, 64, 0], [1, 0, 1024, 64, 1, 0, 0],
                                 [2, 0, 1024, 64, 1, 64, 0, 2], [2, 0, 7, 64, 1, 64, 0, 1],
                                 [1, 0, 1024, 64, 1, 64, 0, 1], [2, 0, 1024, 64, 1, 64, 0, -1],
                                 [3, 0, 1024, 64, 1, 64, 0, 1, 9], [3, 1, 1024, 64, 1, 64, 0, 1, 4],
                                 [2, 0, 1024, 64, 1, 64, 0, 1, 4]])
def test_invalid_config_tflite(ops, vec):
    """A model whose constant config was corrupted: an error, never a crash."""
    base = {8: CONFIGS[9], 9: NGRAM_MINHASH}.get(len(vec), CONFIGS[0])
    model = tflite_model(base)
    good = base.to_vector().tobytes()
    assert model.count(good) == 1
    bad = model.replace(good, np.array(vec, np.int32).tobytes())
    interpreter = ops.make_interpreter(model_content=bad)
    with pytest.raises(RuntimeError, match="OndeviceProjection"):
        run_tflite(interpreter, [b"hello world"])


def test_tflite_with_tensorflow_interpreter(ops):
    """The same registerer works with tensorflow's own InterpreterWithCustomOps."""
    try:
        from tensorflow.lite.python.interpreter import InterpreterWithCustomOps
    except ImportError:
        pytest.skip("tensorflow.lite interpreter not available")
    cfg = CONFIGS[2]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = InterpreterWithCustomOps(custom_op_registerers=[ops.tflite_registerer],
                                               model_content=tflite_model(cfg))
    texts = corpus()[:10]
    assert_bit_exact(run_tflite(interpreter, texts), reference(texts, cfg))


def test_make_interpreter_rejects_bad_models(ops, tmp_path):
    missing = tmp_path / "nope.tflite"
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        ops.make_interpreter(model_path=missing)
    with pytest.raises(ValueError, match="not a file"):
        ops.make_interpreter(model_path=tmp_path)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="junk.tflite"):
        ops.make_interpreter(model_path=junk)
    short = tmp_path / "short.tflite"
    short.write_bytes(b"TFL3")
    with pytest.raises(ValueError, match="short.tflite"):
        ops.make_interpreter(model_path=short)
    model = tflite_model(CONFIGS[2])
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(model[:len(model) // 2])
    with pytest.raises(ValueError):
        ops.make_interpreter(model_path=truncated)
    with pytest.raises(ValueError):
        ops.make_interpreter(model_content=model[:100])
    with pytest.raises(ValueError):
        ops.make_interpreter()
    with pytest.raises(ValueError):
        ops.make_interpreter(model_path=truncated, model_content=model)
    with pytest.raises(ValueError):
        ops.make_interpreter(model_content=model, num_threads=0)
    with pytest.raises(ValueError, match="op_resolver must be one of default, no-delegates"):
        ops.make_interpreter(model_content=model, op_resolver="BUILTIN_REF")


def test_tflite_library_exports(ops):
    import ctypes
    lib = ops.load_tflite_library()
    reg = lib.OndeviceNlp_ProjectionRegistration()
    assert reg
    # TfLiteRegistration: custom_name at +48, version at +56 (see tflite_abi.h).
    name = ctypes.cast(ctypes.c_void_p.from_address(reg + 48).value, ctypes.c_char_p).value
    assert name == ops.CUSTOM_OP_NAME.encode()
    assert ctypes.c_int.from_address(reg + 56).value == 1
    with pytest.raises(ValueError):
        ops.tflite_registerer(0)


# --------------------------------------------------------------------------
# (d) Sanitizers: core + TFLite kernel under ASan/UBSan via a C++ driver.
# --------------------------------------------------------------------------

def _checksum(array: np.ndarray) -> int:
    words = np.ascontiguousarray(array).view(np.uint32).reshape(-1).astype(np.uint64)
    weights = np.arange(words.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return int((words * weights).sum(dtype=np.uint64))


def _string_buffer(texts) -> bytes:
    header = 4 * (len(texts) + 2)
    offsets = [header]
    for t in texts:
        offsets.append(offsets[-1] + len(t))
    return (np.array([len(texts)] + offsets, np.int32).tobytes() + b"".join(texts))


@pytest.fixture(scope="module")
def sanitize_driver(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import build_ops
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("sanitize")
    return build_ops.build(out_dir=out, sanitize=True, targets=("driver",))["driver"]


_SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def _run_driver(driver: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **_SAN_ENV)
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([str(driver), *args], capture_output=True, text=True, env=env,
                          timeout=240)
    for marker in ("runtime error", "AddressSanitizer", "LeakSanitizer",
                   "UndefinedBehaviorSanitizer"):
        assert marker not in proc.stderr, proc.stderr[-4000:]
    return proc


def test_sanitized_driver_selftest(sanitize_driver):
    proc = _run_driver(sanitize_driver, "selftest")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    counts = dict(item.split("=") for item in proc.stdout.split())
    assert counts["failures"] == "0" and int(counts["checks"]) > 10000, proc.stdout


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[2], CONFIGS[6], CONFIGS[7], CONFIGS[9],
                                 CONFIGS[10], CONFIGS[11], CONFIGS[13], CONFIGS[14], *NGRAM_CONFIGS,
                                 *WORD_CONFIGS],
                         ids=_cfg_id)
def test_sanitized_driver_checksums_match_reference(sanitize_driver, tmp_path, cfg):
    texts = list(corpus()[:30]) + list(corpus()[-len(SHAPE_TEXTS) - 1:])
    if cfg.ngram:
        texts += THAI_TEXTS
    path = tmp_path / "batch.bin"
    path.write_bytes(cfg.to_vector().tobytes() + _string_buffer(texts))
    proc = _run_driver(sanitize_driver, "checksum", str(path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = dict(item.split("=") for item in proc.stdout.split())
    features, mask, offsets = reference(tuple(texts), cfg)
    assert int(got["features"]) == _checksum(features)
    assert int(got["mask"]) == _checksum(mask)
    assert int(got["offsets"]) == _checksum(offsets)
