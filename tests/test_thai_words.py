"""Tests for tools/thai_words.py: the word-segmented copy of MTOP Thai (an experiment)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ondevice_nlp.data import read_mtop
from ondevice_nlp.projection_ref import WORD, char_class, tokenize
from tools import thai_words as tw


def line(utt: str, parse: str) -> str:
    return "\t".join([utt, parse, parse, "messaging", "th_XX"])


def write_folder(root: Path, train, eval_=None, test=None) -> Path:
    (root / "th").mkdir(parents=True)
    for split, lines in (("train", train), ("eval", eval_ or train), ("test", test or train)):
        (root / "th" / f"{split}.txt").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return root


def back(text: str) -> str:
    """The moved text back in the Thai block (spaces kept)."""
    return "".join(chr(ord(c) + tw.SHIFT) if 0x0900 <= ord(c) <= 0x097F else c for c in text)


def test_segment_known_words():
    d = frozenset(["ตั้งแต่", "วัน", "อังคาร"])
    assert tw.segment("ตั้งแต่วันอังคาร", tw.word_config(d)) == ["ตั้งแต่", "วัน", "อังคาร"]


def test_segment_unknown_letters_keep_their_marks():
    # ก and ข are in no word: one piece each; ส่ keeps its tone mark
    assert tw.segment("กวัน", tw.word_config(frozenset(["วัน"]))) == ["ก", "วัน"]
    # a word may not end before a mark: ส is known, but ส่ง cuts as ส่ + ง
    assert tw.segment("ส่ง", tw.word_config(frozenset(["ส"]))) == ["ส่", "ง"]


def test_segment_fewest_unknown_letters_not_greedy():
    # greedy longest match would take กข, leaving ค and ง unknown (2 letters);
    # maximal matching leaves one (ก + ขคง)
    d = frozenset(["กข", "ขคง"])
    assert tw.segment("กขคง", tw.word_config(d)) == ["ก", "ขคง"]
    # with no unknown letter either way, the fewest pieces win
    assert tw.segment("กขค", tw.word_config(frozenset(["กข", "ค", "กขค"]))) == ["กขค"]


def test_segment_text_leaves_other_scripts():
    d = frozenset(["ส่ง", "ข้อความ"])
    assert tw.segment_text("ส่งข้อความ Steve 3", tw.word_config(d)) == "ส่ง ข้อความ Steve 3"
    assert tw.segment_text("ส่งข้อความให้", tw.word_config(d)) == "ส่ง ข้อความ ใ ห้"


def test_moved_script_is_one_token_per_piece():
    moved = tw.to_word_script("ส่ง ข้อความ Steve")
    assert all(char_class(ord(c)) == WORD for c in moved if c != " ")
    toks = tokenize(moved.encode("utf-8"), 64)
    assert len(toks) == 3
    # no case: the op's lowercase table leaves the moved letters as they are
    assert back(moved) == "ส่ง ข้อความ Steve"


def test_convert_keeps_utterances_and_slots(tmp_path):
    train = [
        line("ตั้งแต่วันอังคารส่งข้อความหาฉัน",
             "[IN:GET_MESSAGE [SL:DATE_TIME ตั้งแต่ วัน อังคาร ] [SL:RECIPIENT ฉัน ] ]"),
        line("ส่งข้อความให้ Steve", "[IN:SEND_MESSAGE [SL:RECIPIENT Steve ] ]"),
    ]
    test = [line("วันอังคารหาแม่", "[IN:GET_MESSAGE [SL:DATE_TIME วัน อังคาร ] [SL:RECIPIENT แม่ ] ]")]
    src = write_folder(tmp_path / "src", train, test=test)
    d = tw.build_dictionary(str(src / "th" / "train.txt"))
    # training slot words only: แม่ is in the test parse, not in the dictionary
    assert d == frozenset(["ตั้งแต่", "วัน", "อังคาร", "ฉัน"])
    assert tw.main(["--data-dir", str(src), "--out", str(tmp_path / "out")]) == 0
    got, report = read_mtop(str(tmp_path / "out" / "th" / "test.txt"))
    want, _ = read_mtop(str(src / "th" / "test.txt"))
    assert report.aligned_fraction == 1.0
    (g,), (w,) = got, want
    assert back(g.text).replace(" ", "") == w.text
    assert g.intent == w.intent
    assert [(s.type, back(g.text[s.start:s.end]).replace(" ", "")) for s in g.slots] == \
        [(s.type, w.text[s.start:s.end]) for s in w.slots]
    # the known words are pieces; แม่ (unknown) is two letters, each with its marks
    assert back(g.text) == "วัน อังคาร ห า แ ม่"


def test_bad_lines_name_file_and_line(tmp_path):
    src = write_folder(tmp_path / "a", [line("วัน", "[IN:X ]"), "only\ttwo"])
    with pytest.raises(SystemExit, match=r"train.txt:2: expected 5 tab-separated columns"):
        tw.main(["--data-dir", str(src), "--out", str(tmp_path / "o")])
    src = write_folder(tmp_path / "b", [line("वन", "[IN:X ]")])
    with pytest.raises(SystemExit, match=r"train.txt:1: Devanagari"):
        tw.main(["--data-dir", str(src), "--out", str(tmp_path / "o")])
    src = write_folder(tmp_path / "c", [line("วัน", "[IN:X [SL:Y วัน ]")])
    with pytest.raises(SystemExit, match=r"train.txt:1: flat parse: unbalanced"):
        tw.main(["--data-dir", str(src), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="no such file"):
        tw.main(["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")])


def test_real_mtop_thai_eval(tmp_path):
    """On the real eval split every slot still aligns and 99% of slot edges fall between pieces."""
    root = os.environ.get("ONDEVICE_NLP_DATA") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    src = Path(root) / "mtop"
    if not (src / "th" / "train.txt").is_file():
        pytest.skip(f"real data not found at {src}")
    d = tw.build_dictionary(str(src / "th" / "train.txt"))
    out = tmp_path / "eval.txt"
    counts = tw.convert(str(src / "th" / "eval.txt"), str(out), tw.word_config(tw.op_words(d)))
    got, report = read_mtop(str(out))
    want, want_report = read_mtop(str(src / "th" / "eval.txt"))
    assert counts["lines"] == len(want) == len(got)
    assert report.n_aligned_slots == want_report.n_aligned_slots
    # fewer than a third of the letter tokens
    assert counts["pieces"] < counts["thai_letters"] / 2.5
    edges = inside = 0
    for ex in got:
        toks = tokenize(ex.text.encode("utf-8"), 1 << 30)
        starts, ends = {t[0] for t in toks}, {t[1] for t in toks}
        for s in ex.slots:
            b0, b1 = len(ex.text[:s.start].encode("utf-8")), len(ex.text[:s.end].encode("utf-8"))
            edges += 1
            inside += not (b0 in starts and b1 in ends)
    assert edges == report.n_aligned_slots
    assert 0 < inside / edges < 0.01


def test_write_words_and_the_op_cut_thai_as_the_tool_does(tmp_path):
    """`--write-words` keeps the words the op accepts; with them the C++ op (config
    version 4, through the TF op) cuts real MTOP Thai exactly where this tool's copy has spaces."""
    import numpy as np

    from ondevice_nlp import ops
    from ondevice_nlp.projection_ref import ProjectionConfig, word_dictionary

    root = os.environ.get("ONDEVICE_NLP_DATA") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    src = Path(root) / "mtop"
    if not (src / "th" / "train.txt").is_file():
        pytest.skip(f"real data not found at {src}")
    out = tmp_path / "words.txt"
    assert tw.main(["--data-dir", str(src), "--write-words", str(out)]) == 0
    listed = out.read_text(encoding="utf-8").split("\n")[:-1]
    d = tw.build_dictionary(str(src / "th" / "train.txt"))
    assert listed == sorted(listed) and set(listed) <= d and len(listed) > 0.99 * len(d)
    hashes, word_len = word_dictionary(listed)
    cfg = ProjectionConfig("ternary", 8, 1, 0, 128, 0, words=hashes, word_len=word_len)
    texts = [line.split("\t")[0] for line in
             (src / "th" / "eval.txt").read_text(encoding="utf-8").splitlines()]
    _, mask, offsets = (np.asarray(x) for x in ops.projection([t.encode() for t in texts], cfg))
    tool = tw.word_config(listed)
    for text, m, offs in zip(texts, mask, offsets):
        data = text.encode("utf-8")
        got = [data[s:e].decode() for s, e in offs[:int(m.sum())]]
        # the Thai pieces (the op splits other text by its own rules)
        want = re.findall("[\u0e00-\u0e7f]+", tw.segment_text(text, tool))
        assert [w for w in got if tw.is_thai(w[0])] == want, text


def test_write_words_alone_needs_no_out(tmp_path):
    src = write_folder(tmp_path / "src", [line("ส่งข้อความ", "[IN:SEND_MESSAGE [SL:CONTENT ส่ง ข้อความ 3 ] ]")])
    words = tmp_path / "w" / "words.txt"
    assert tw.main(["--data-dir", str(src), "--write-words", str(words)]) == 0
    # "3" is not Thai: not in the dictionary; both words are one run of Thai letters
    assert words.read_text(encoding="utf-8") == "ข้อความ\nส่ง\n"
    assert not (tmp_path / "w" / "th").exists()
    with pytest.raises(SystemExit):
        tw.main(["--data-dir", str(src)])
