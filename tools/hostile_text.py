"""Seeded generators of hostile input text for the projection op (bytes, not str).

Used by ``tests/test_hostile_projection.py`` (differential property test of the
NumPy reference, the TensorFlow op and the TFLite kernel, in process and under
ASan/UBSan) and by ``tools/fuzz_projection.py`` (seed corpus of the atheris
fuzzer). Everything is deterministic for a given seed.

Categories (``CATEGORIES``; ``case(rng, category)`` makes one string):

* ``random_bytes``: uniform random bytes, 0..80 of them;
* ``high_bytes``: random bytes in 0x80..0xFF (UTF-8 lead/continuation bytes
  in every wrong order);
* ``invalid_utf8``: valid text with ill-formed sequences spliced in
  (overlong forms, encoded surrogates, code points past U+10FFFF, truncated
  sequences, 5- and 6-byte forms, lone continuation bytes);
* ``nul``: text with embedded, leading and trailing NUL bytes, or only NULs;
* ``whitespace``: only whitespace and control characters of every kind the
  tokenizer knows (ASCII, C1, NBSP, U+1680, U+2000..U+200B, U+2028/9, U+202F,
  U+205F, U+3000, U+FEFF);
* ``combining``: base letters under piles of combining marks, marks at the
  start, marks only;
* ``rtl``: Arabic and Hebrew text with bidi controls (U+200E/F, U+202A..E,
  U+2066..9) and Arabic-Indic digits;
* ``emoji``: ZWJ sequences, skin-tone modifiers, flags, keycaps, tag
  sequences, variation selectors;
* ``thai_hindi``: Thai, Lao, Khmer, Myanmar and Devanagari, with their marks
  in and out of place (marks after spaces, after Latin, doubled);
* ``boundary``: code points at class and encoding boundaries (U+007F/80,
  U+07FF/800, U+FFFF/10000, U+10FFFF, noncharacters, private use);
* ``long_tokens``: tokens past ``MAX_TOKEN_CHARS`` (64 code points) and more
  tokens than S;
* ``mixed``: concatenations of pieces of all the others.

``huge_cases()`` gives 1 MiB strings (one per kind) for the cases where
only a few can be afforded.
"""

from __future__ import annotations

import random

MIB = 1 << 20

CATEGORIES = ("random_bytes", "high_bytes", "invalid_utf8", "nul", "whitespace", "combining",
              "rtl", "emoji", "thai_hindi", "boundary", "long_tokens", "mixed")

_WORDS = ["set", "an", "alarm", "for", "7", "am", "Weather", "PARIS", "Zürich", "São", "Ĳssel",
          "İstanbul", "ΣΟΦΊΑ", "Ёлка", "naïve", "x", "a1b2", "don't", "e-mail", "C++", "100%"]
_INVALID = [b"\xff", b"\xfe", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf",
            b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80",
            b"\x80", b"\xbf", b"\x80\x80\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",
            b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xef\xbb\xbf"]
_SPACES = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x00", "\x1f", "\x7f", "\x85", "\x9f", "\xa0",
           "\u1680", "\u2000", "\u2005", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f",
           "\u205f", "\u3000", "\ufeff"]
_MARKS = ["\u0300", "\u0301", "\u0302", "\u0308", "\u0323", "\u0336", "\u034f", "\u0489",
          "\u20dd", "\u20e3", "\ufe0f", "\ufe0e", "\u200d", "\u200c", "\u0e31", "\u0e48",
          "\u0e4c", "\u093f", "\u094d", "\u0902", "\u05b7", "\u064b", "\u0670"]
_RTL = ["مرحبا", "بالعالم", "السلام عليكم", "٠١٢٣٤٥٦٧٨٩", "שלום", "עולם", "ﷺ", "ﻻ",
        "\u200f", "\u200e", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066",
        "\u2067", "\u2068", "\u2069", "\u061c"]
_EMOJI = ["\U0001F469\u200D\U0001F4BB", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
          "\U0001F3F3\uFE0F\u200D\U0001F308", "\U0001F1EB\U0001F1F7", "\U0001F1FA",
          "\U0001F44D\U0001F3FD", "\U0001F9D1\U0001F3FF\u200D\U0001F91D\u200D\U0001F9D1\U0001F3FB",
          "#\uFE0F\u20E3", "1\u20E3", "\u2764\uFE0F", "\u2764\uFE0F\u200D\U0001F525",
          "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F",
          "\U0001F600" * 3, "\u200D\u200D", "\U0001FAF6\U0001F3FC", "\u263A", "\U0001F004"]
_SCRIPTS = ["สวัสดีครับ", "ภาษาไทย", "กั่", "ำ", "\u0e31\u0e48", "เ", "ໄປໃສ", "ເພາະວ່າ",
            "ខ្មែរ", "မြန်မာ", "नमस्ते", "क्या हाल है?", "क़ि", "।", "॥", "\u094d\u094d", "ि",
            "हिन्दी", "ಕನ್ನಡ", "தமிழ்", "日本語", "中文", "한국어", "ｶﾀｶﾅ"]
_BOUNDARY = [0x7F, 0x80, 0x9F, 0xA0, 0xA1, 0xBF, 0xFF, 0x100, 0x7FF, 0x800, 0xD7FF, 0xE000,
             0xF8FF, 0xFDD0, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1F000, 0x1FAFF, 0x1FB00, 0xE0001,
             0xF0000, 0x10FFFD, 0x10FFFF, 0x0E00, 0x0E7F, 0x0E80, 0x0EFF, 0x1000, 0x1780,
             0x3000, 0x3001, 0x3003, 0x3004, 0x4E00, 0x9FFF, 0x2010, 0x2027, 0x2030, 0x205E,
             0x2190, 0x2BFF, 0x0130, 0x0131, 0x0178, 0x03A2, 0x0400, 0x042F, 0x0450]


def _utf8(s: str) -> bytes:
    return s.encode("utf-8")


def _pick(rng: random.Random, seq, k: int) -> list:
    return [rng.choice(seq) for _ in range(k)]


def case(rng: random.Random, category: str) -> bytes:
    """One hostile string of ``category`` (see the module doc), as bytes.

    Raises:
      ValueError: unknown category.
    """
    if category == "random_bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
    if category == "high_bytes":
        return bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 40)))
    if category == "invalid_utf8":
        out = []
        for _ in range(rng.randint(1, 8)):
            out.append(_utf8(rng.choice(_WORDS + _SCRIPTS)) if rng.random() < 0.5
                       else rng.choice(_INVALID))
            if rng.random() < 0.4:
                out.append(b" ")
        return b"".join(out)
    if category == "nul":
        kind = rng.randrange(4)
        if kind == 0:
            return b"\x00" * rng.randint(1, 50)
        words = [_utf8(w) for w in _pick(rng, _WORDS + _SCRIPTS, rng.randint(1, 6))]
        sep = b"\x00" * rng.randint(1, 3)
        body = sep.join(words)
        return {1: b"\x00" + body, 2: body + b"\x00", 3: body.replace(b"a", b"a\x00")}[kind]
    if category == "whitespace":
        return _utf8("".join(_pick(rng, _SPACES, rng.randint(1, 30))))
    if category == "combining":
        kind = rng.randrange(3)
        if kind == 0:  # marks only
            return _utf8("".join(_pick(rng, _MARKS, rng.randint(1, 40))))
        parts = []
        for _ in range(rng.randint(1, 5)):
            base = rng.choice(["a", "e", "Z", "ก", "क", "ß", "😀", " "])
            parts.append(base + "".join(_pick(rng, _MARKS, rng.randint(0, 30))))
        text = "".join(parts)
        return _utf8(rng.choice(_MARKS) + text if kind == 1 else text)
    if category == "rtl":
        pieces = _pick(rng, _RTL + _WORDS[:5], rng.randint(1, 8))
        return _utf8("".join(p + rng.choice(["", " ", "\u200f", "\u00a0"]) for p in pieces))
    if category == "emoji":
        pieces = _pick(rng, _EMOJI + [" ", "a", "\u200d"], rng.randint(1, 10))
        return _utf8("".join(pieces))
    if category == "thai_hindi":
        pieces = _pick(rng, _SCRIPTS + [" ", "a", "\u0e48", "\u093f", "\u0e31"], rng.randint(1, 10))
        return _utf8("".join(pieces))
    if category == "boundary":
        cps = _pick(rng, _BOUNDARY, rng.randint(1, 12))
        return _utf8("".join(chr(c) + rng.choice(["", " "]) for c in cps))
    if category == "long_tokens":
        if rng.random() < 0.5:  # one token longer than MAX_TOKEN_CHARS code points
            unit = rng.choice(["a", "é", "ก", "क", "😀", "\ufffd", "\u0301"])
            return _utf8(unit * rng.randint(60, 400))
        return _utf8(" ".join(_pick(rng, _WORDS, rng.randint(60, 200))))  # more tokens than S
    if category == "mixed":
        return b"".join(case(rng, rng.choice(CATEGORIES[:-1])) for _ in range(rng.randint(2, 5)))
    raise ValueError(f"unknown category {category!r}; choose from {CATEGORIES}")


def cases(seed: int, n: int) -> list[tuple[str, bytes]]:
    """``n`` (category, text) pairs, categories in turn, from ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [(CATEGORIES[i % len(CATEGORIES)], case(rng, CATEGORIES[i % len(CATEGORIES)]))
            for i in range(n)]


def fixed_cases() -> list[bytes]:
    """Hand-picked edge cases (empty, single bytes, lone marks, BOMs, ...)."""
    singles = [bytes([b]) for b in range(256)]
    return singles + [b"", b"\x00" * 3, b" " * 7, b"\xef\xbb\xbf", b"\xef\xbb\xbfhello",
                      _utf8("\u0301"), _utf8("\u0e48\u0e48"), _utf8("\u200d"),
                      _utf8("a\u200db"), _utf8("\ufffd"), b"\xed\xa0\x80\xed\xb0\x80",
                      _utf8("\U0010FFFF"), b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80"]


def huge_cases() -> list[tuple[str, bytes]]:
    """1 MiB strings, one per kind: (name, bytes)."""
    rng = random.Random(1)
    zwj = _utf8("\U0001F468\u200D\U0001F469\u200D\U0001F467 ")
    return [
        ("nul", b"\x00" * MIB),
        ("random_bytes", rng.randbytes(MIB)),
        ("whitespace_then_word", _utf8("\u3000") * (MIB // 3) + b"end"),
        ("combining_pile", b"a" + _utf8("\u0301") * (MIB // 2)),
        ("emoji_zwj", zwj * (MIB // len(zwj))),
        ("rtl", _utf8("مرحبا \u202e") * (MIB // 14)),
        ("thai_marks", _utf8("กั่") * (MIB // 9)),
        ("lone_continuation", b"\x80" * MIB),
    ]
