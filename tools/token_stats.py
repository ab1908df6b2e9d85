#!/usr/bin/env python3
"""Measure the op's tokenization per language on a dataset split.

Prints a markdown table: utterances, mean / 99th percentile / max tokens per
utterance, share of utterances longer than S (cut by the op), and the share of
gold slots whose character span both starts and ends on token boundaries
(the ceiling of slot F1 that our tokenization allows), plus the share of slots
lost to the cut at S.

Usage: python tools/token_stats.py --dataset mtop --data-dir ../shared/data/mtop \
           --languages en,es,fr,de,hi,th [--split train] [--max-tokens 64] [--words FILE]

``--words FILE``: tokenize with that word list (``build --words``; Thai read word by word).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ondevice_nlp.data import load_dataset  # noqa: E402
from ondevice_nlp.projection_ref import tokenize  # noqa: E402
from ondevice_nlp.tagging import byte_to_char_offsets  # noqa: E402


def stats(examples, max_tokens: int, words: frozenset = frozenset(), word_len: int = 0) -> dict:
    """Token-count and slot-boundary statistics for one language's examples, tokenized as the
    op does (with the word dictionary ``words``/``word_len`` of a ``ProjectionConfig``, if any)."""
    lengths, on_boundary, cut, n_slots = [], 0, 0, 0
    for ex in examples:
        toks = tokenize(ex.text.encode("utf-8"), 1 << 30, words, word_len)
        lengths.append(len(toks))
        offs = byte_to_char_offsets(ex.text, [(s, e) for s, e, _ in toks])
        starts = {s: i for i, (s, _) in enumerate(offs)}
        ends = {e: i for i, (_, e) in enumerate(offs)}
        for sl in ex.slots:
            n_slots += 1
            if sl.start in starts and sl.end in ends:
                on_boundary += 1
                if ends[sl.end] >= max_tokens:
                    cut += 1
    L = np.array(lengths)
    return {"n": len(L), "mean": L.mean(), "p99": np.percentile(L, 99), "max": int(L.max()),
            "over_S": float((L > max_tokens).mean()), "slots": n_slots,
            "slots_on_boundaries": on_boundary / max(n_slots, 1),
            "slots_cut_at_S": cut / max(n_slots, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mtop")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--languages", default="en")
    p.add_argument("--split", default="train")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--words", metavar="FILE", help="word list, as for `ondevice-nlp build --words`")
    a = p.parse_args()
    words, word_len = frozenset(), 0
    if a.words:
        from ondevice_nlp.pipeline import with_word_list
        from ondevice_nlp.projection_ref import ProjectionConfig
        cfg = with_word_list(ProjectionConfig(), a.words)
        words, word_len = cfg.word_set, cfg.word_len
    langs = [x for x in a.languages.split(",") if x]
    data = load_dataset(a.dataset, a.data_dir, langs, a.split)
    print(f"| {a.dataset} {a.split} | utterances | tokens mean | p99 | max | > S={a.max_tokens} "
          "| slots | slots on token boundaries | slots cut at S |")
    print("|---|---|---|---|---|---|---|---|---|")
    for lang in langs:
        s = stats(data[lang], a.max_tokens, words, word_len)
        print(f"| {lang} | {s['n']} | {s['mean']:.1f} | {s['p99']:.0f} | {s['max']} | "
              f"{100 * s['over_S']:.2f}% | {s['slots']} | {100 * s['slots_on_boundaries']:.2f}% | "
              f"{100 * s['slots_cut_at_S']:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
