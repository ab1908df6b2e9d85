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
* Segmentation (maximal matching): each stretch of Thai letters is cut into
  the fewest pieces that leave the fewest letters outside a dictionary word;
  a letter outside every word is a piece by itself (with its vowel and tone
  marks, ``projection_ref.THAI_LAO_MARKS``), and no piece starts on a mark.
* Script: every Thai code point U+0E00..U+0E7F is moved to the same offset
  in U+0900..U+097F (Devanagari), which the op tokenizes by spaces
  (``projection_ref.char_class`` gives WORD, no case), in the utterance and
  in both parses, so the slot values still align. No Devanagari is in MTOP's
  Thai files (checked: the tool refuses a file that has some).

A gold slot whose edge falls inside a piece cannot be predicted exactly with
these tokens and counts as an error in the build's exact match: nothing is
dropped, so exact match stays over the same utterances as the letter runs.

``--write-words FILE`` writes the same dictionary as a word list for ``ondevice-nlp
build --words FILE``, which puts maximal matching into the op itself (config
version 4, ``projection_ref.segment_run``: the same cuts on Thai text, without
moving the script): the words that are one run of Thai letters (the op's rule,
``projection_ref.word_dictionary``), one per line, sorted.

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
from ondevice_nlp.projection_ref import THAI_LAO_MARKS, word_letters  # noqa: E402

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


def segment(run: str, dictionary: frozenset[str], max_len: int) -> list[str]:
    """Cut one stretch of Thai letters into pieces by maximal matching.

    Args:
        run: Thai code points only (no space).
        dictionary: the known words; ``max_len`` the longest one's length.

    Returns:
        The pieces, in order, joined back equal to ``run``: dictionary words
        and single letters with their marks, chosen to leave the fewest letters
        outside words, then to give the fewest pieces (dynamic programming
        over the positions where a piece may start: not on a mark).
    """
    n = len(run)
    cuts = [i for i in range(n) if i == 0 or ord(run[i]) not in THAI_LAO_MARKS] + [n]
    is_cut = set(cuts)
    inf = (n + 1, n + 1)
    best = {0: (0, 0)}  # position -> (letters outside words, pieces)
    back = {}
    for k, i in enumerate(cuts[:-1]):
        if i not in best:
            continue
        unknown, pieces = best[i]
        nxt = cuts[k + 1]  # one letter and its marks
        options = [(nxt, (unknown + 1, pieces + 1))]
        for j in range(i + 1, min(n, i + max_len) + 1):
            if j in is_cut and run[i:j] in dictionary:
                options.append((j, (unknown, pieces + 1)))
        for j, cost in options:
            if cost < best.get(j, inf):
                best[j] = cost
                back[j] = i
    out, j = [], n
    while j > 0:
        out.append(run[back[j]:j])
        j = back[j]
    return out[::-1]


def segment_text(text: str, dictionary: frozenset[str], max_len: int) -> str:
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
        out.append(" ".join(segment(text[i:j], dictionary, max_len)))
        i = j
    return "".join(out)


def to_word_script(text: str) -> str:
    """Thai code points moved to the Devanagari block (same offset); others unchanged."""
    return "".join(chr(ord(c) - SHIFT) if is_thai(c) else c for c in text)


def convert(src: str, dst: str, dictionary: frozenset[str]) -> dict:
    """Write the segmented, moved copy of one MTOP flat file; returns counts.

    Returns:
        ``{"lines": int, "pieces": int, "thai_letters": int}``: lines written,
        Thai pieces and Thai letters (code points without marks) in the utterances.
    """
    max_len = max((len(w) for w in dictionary), default=1)
    lines, pieces, letters = [], 0, 0
    for _, cols in _lines(src):
        utterance = segment_text(cols[0], dictionary, max_len)
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
    if args.write_words:
        words = op_words(dictionary)
        os.makedirs(os.path.dirname(args.write_words) or ".", exist_ok=True)
        with open(args.write_words, "w", encoding="utf-8") as f:
            f.write("".join(w + "\n" for w in words))
        print(f"word list: {len(words)} words (of {len(dictionary)}; the others hold a letter of "
              f"another script or a digit) -> {args.write_words}")
    for split in SPLITS if args.out else ():
        dst = os.path.join(args.out, "th", f"{split}.txt")
        c = convert(os.path.join(src, f"{split}.txt"), dst, dictionary)
        print(f"{split}: {c['lines']} lines, {c['thai_letters']} Thai letters in "
              f"{c['pieces']} pieces ({c['thai_letters'] / max(c['pieces'], 1):.2f} letters per piece) "
              f"-> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
