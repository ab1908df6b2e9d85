#!/usr/bin/env python3
"""Write a word-segmented copy of an MTOP Thai folder: what would a segmenter give?

An experiment, not a feature. The op reads Thai (no spaces between words) one
letter per token ("Projection" in README.md); the published systems read
multilingual-BERT word pieces. Before a segmenter goes into the C++ op, this
tool measures what word tokens are worth: it rewrites the utterances of
``DATA_DIR/th/{train,eval,test}.txt`` with a space between the words of each
Thai stretch and writes them to ``OUT/th/`` for ``ondevice-nlp build
--data-dir OUT`` to train and test on, unchanged otherwise.

* Dictionary: the words of the *training* split's slot values (the flat
  parse's words, which MTOP writes segmented), those with a Thai letter. The
  eval and test splits are never read for it.
* Segmentation (maximal matching): each stretch of Thai letters is cut as the
  op cuts it with the dictionary's words (``projection_ref.tokenize`` with a
  word dictionary, ``segment_run``): the fewest letters outside a dictionary
  word, then the fewest pieces; a letter outside every word is a piece by
  itself, with its vowel and tone marks (``projection_ref.THAI_LAO_MARKS``).
  Only the words that are one run of Thai letters can match (``op_words``).
* Script: every Thai code point U+0E00..U+0E7F is moved to the same offset
  in U+0900..U+097F (Devanagari), which the op tokenizes by spaces
  (``projection_ref.char_class`` gives WORD, no case), in the utterance and
  in both parses, so the slot values still align. No Devanagari is in MTOP's
  Thai files (checked: the tool refuses a file that has some).

A gold slot whose edge falls inside a piece cannot be predicted exactly with
these tokens and counts as an error in the build's exact match: nothing is
dropped, so exact match stays over the same utterances as the letter runs.

``--write-words FILE`` writes those words as a word list for ``ondevice-nlp
build --words FILE``, which puts the same cuts into the op itself (config
version 4), without moving the script: one word per line, sorted.

Usage: python tools/thai_words.py --data-dir ../shared/data/mtop --out runs/mtop-th-words
       python tools/thai_words.py --data-dir ../shared/data/mtop --write-words runs/th-words.txt

Raises SystemExit with the file and line on a malformed line (not 5 tab
separated columns, undecodable UTF-8, an unparsable flat parse) or on
Devanagari already in the input.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ondevice_nlp.data.mtop import parse_flat_parse  # noqa: E402
from ondevice_nlp.projection_ref import (  # noqa: E402
    THAI_LAO_MARKS, ProjectionConfig, tokenize, word_dictionary, word_letters)

SPLITS = ("train", "eval", "test")
THAI_FIRST, THAI_LAST = 0x0E00, 0x0E7F
SHIFT = 0x0E00 - 0x0900  # Thai block -> Devanagari block, same offsets


def is_thai(ch: str) -> bool:
    """True for a code point of the Thai block U+0E00..U+0E7F."""
    return THAI_FIRST <= ord(ch) <= THAI_LAST


def _lines(path: str):
    """(line number, the 5 columns) of an MTOP flat file; SystemExit names the bad line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise SystemExit(f"{path}:{lineno}: invalid UTF-8 ({exc.reason})") from None
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 5:
                raise SystemExit(f"{path}:{lineno}: expected 5 tab-separated columns "
                                 f"(utterance, flat parse, parse, domain, locale), got {len(cols)}")
            if any(0x0900 <= ord(c) <= 0x097F for c in line):
                raise SystemExit(f"{path}:{lineno}: Devanagari in the input; the tool moves Thai "
                                 "letters there and would merge the two")
            yield lineno, cols


def build_dictionary(train_path: str) -> frozenset[str]:
    """Thai words of the slot values of an MTOP flat training file.

    Returns:
        The words (whitespace-separated pieces of the flat parse under a slot)
        with at least one Thai letter.

    Raises:
        SystemExit: a malformed line (file and line named).
    """
    words = set()
    for lineno, cols in _lines(train_path):
        try:
            _, slots = parse_flat_parse(cols[1])
        except ValueError as exc:
            raise SystemExit(f"{train_path}:{lineno}: flat parse: {exc}") from None
        for _, value in slots:
            words.update(w for w in value.split() if any(is_thai(c) for c in w))
    return frozenset(words)


def word_config(words) -> ProjectionConfig:
    """A ``ProjectionConfig`` whose word dictionary holds ``words`` (strings that
    are each one run of Thai letters, e.g. ``op_words``' list)."""
    hashes, word_len = word_dictionary(words)
    return ProjectionConfig(words=hashes, word_len=word_len)


def segment(run: str, cfg: ProjectionConfig) -> list[str]:
    """Cut one stretch of Thai letters as the op does with ``cfg``'s word dictionary.

    Args:
        run: Thai code points only (no space).
        cfg: from ``word_config``.

    Returns:
        The pieces, in order, joined back equal to ``run``: dictionary words
        and single letters with their marks (``projection_ref.tokenize``).
    """
    data = run.encode("utf-8")
    return [data[s:e].decode("utf-8")
            for s, e, _ in tokenize(data, 1 << 30, cfg.word_set, cfg.word_len)]


def segment_text(text: str, cfg: ProjectionConfig) -> str:
    """``text`` with a space between the pieces of each Thai stretch (other text as it was)."""
    out, i = [], 0
    while i < len(text):
        if not is_thai(text[i]):
            out.append(text[i])
            i += 1
            continue
        j = i
        while j < len(text) and is_thai(text[j]):
            j += 1
        out.append(" ".join(segment(text[i:j], cfg)))
        i = j
    return "".join(out)


def to_word_script(text: str) -> str:
    """Thai code points moved to the Devanagari block (same offset); others unchanged."""
    return "".join(chr(ord(c) - SHIFT) if is_thai(c) else c for c in text)


def convert(src: str, dst: str, cfg: ProjectionConfig) -> dict:
    """Write the segmented, moved copy of one MTOP flat file; returns counts.

    Returns:
        ``{"lines": int, "pieces": int, "thai_letters": int}``: lines written,
        Thai pieces and Thai letters (code points without marks) in the utterances.
    """
    lines, pieces, letters = [], 0, 0
    for _, cols in _lines(src):
        utterance = segment_text(cols[0], cfg)
        pieces += sum(1 for w in utterance.split() if any(is_thai(c) for c in w))
        letters += sum(1 for c in cols[0] if is_thai(c) and ord(c) not in THAI_LAO_MARKS)
        cols = [to_word_script(utterance), to_word_script(cols[1]), to_word_script(cols[2])] + cols[3:]
        lines.append("\t".join(cols))
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return {"lines": len(lines), "pieces": pieces, "thai_letters": letters}


def op_words(dictionary: frozenset[str]) -> list[str]:
    """The dictionary's words that the op accepts (one run of nospace letters), sorted."""
    out = []
    for w in sorted(dictionary):
        try:
            word_letters(w)
        except ValueError:
            continue
        out.append(w)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="MTOP folder with th/{train,eval,test}.txt")
    ap.add_argument("--out", help="folder to write th/{train,eval,test}.txt to")
    ap.add_argument("--write-words", metavar="FILE",
                    help="write the dictionary as a word list for `ondevice-nlp build --words`")
    args = ap.parse_args(argv)
    if not args.out and not args.write_words:
        ap.error("give --out, --write-words or both")
    src = os.path.join(args.data_dir, "th")
    for split in SPLITS:
        if not os.path.isfile(os.path.join(src, f"{split}.txt")):
            raise SystemExit(f"{os.path.join(src, split + '.txt')}: no such file")
    dictionary = build_dictionary(os.path.join(src, "train.txt"))
    print(f"dictionary: {len(dictionary)} words from {os.path.join(src, 'train.txt')}")
    words = op_words(dictionary)
    if args.write_words:
        os.makedirs(os.path.dirname(args.write_words) or ".", exist_ok=True)
        with open(args.write_words, "w", encoding="utf-8") as f:
            f.write("".join(w + "\n" for w in words))
        print(f"word list: {len(words)} words (of {len(dictionary)}; the others hold a letter of "
              f"another script or a digit) -> {args.write_words}")
    cfg = word_config(words) if args.out else None
    for split in SPLITS if args.out else ():
        dst = os.path.join(args.out, "th", f"{split}.txt")
        c = convert(os.path.join(src, f"{split}.txt"), dst, cfg)
        print(f"{split}: {c['lines']} lines, {c['thai_letters']} Thai letters in "
              f"{c['pieces']} pieces ({c['thai_letters'] / max(c['pieces'], 1):.2f} letters per piece) "
              f"-> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
